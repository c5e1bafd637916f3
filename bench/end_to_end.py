"""End-to-end training speed: the real loader and the real ``Trainer.run_step`` on a synthetic
SYSU-MM01-layout set on disk (``python bench/train_speed.py --end-to-end CONFIG``).

Reports, for one config, on the device it trains on:

- **end to end**: ms per step of ``for batch in loader: trainer.run_step(batch)`` (decoding, augmenting,
  collating, moving to the device, forward, backward, optimiser step), the median over ``steps``;
- **model only**: ms per step of ``run_step`` on one batch already built (no data work);
- **data only**: images/s the loader delivers without any model (its workers at full speed);
- **busy fraction**: model-only / end-to-end step time, the share of an end-to-end step the model's work
  takes: 1.0 when the input pipeline hides completely behind the model (an estimate of device
  utilisation); on CUDA also **GPU utilisation** as NVML reports it (the fraction of sample periods a
  kernel was running), sampled every 50 ms during the end-to-end loop when ``pynvml`` is importable;
- **bare ResNet-50 step** (``--bare``): ms per step of a torchvision ResNet-50 training step (forward,
  cross-entropy on a class-count ``fc``, backward, SGD) on the same number of images at the same input
  size and the same precision (the trainer's autocast dtype), and the ratio of the model-only step to it;
- **host reads per step** (CUDA): the device-to-host synchronisations of one ``run_step``, counted by
  ``torch.cuda.set_sync_debug_mode("warn")``.

Step times are throughput figures: ``steps`` steps run back to back and the device is synchronised once at
the end (as in training), so the loader's workers and the GPU overlap as they do in a real run.

The set is generated once into ``--work`` (identities ``--ids``, images ``--size``), with the config's
own input size and batch; ``train.iters_per_epoch`` is raised so one epoch covers the timed steps.
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _UtilisationSampler:
    """NVML's GPU utilisation sampled in a thread (``None`` without pynvml or on CPU)."""

    def __init__(self, device: torch.device, period: float = 0.05):
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception:  # pynvml missing or NVML unavailable (e.g. a sandbox): no utilisation figure
            return

        def run() -> None:
            while not self._stop.wait(period):
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

        self._thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> _UtilisationSampler:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def _timed_steps(step, count: int, device: torch.device) -> float:
    """Seconds per step of ``count`` calls of ``step()``, synchronised once before and once after."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(count):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / count


def count_host_reads(trainer: Any, batch: dict[str, Any]) -> int | None:
    """Device-to-host synchronisations of one ``trainer.run_step(batch)`` (CUDA only)."""
    if trainer.device.type != "cuda":
        return None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.run_step(batch)
            _sync(trainer.device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def bare_resnet50_step_ms(n: int, size: tuple[int, int], num_classes: int, device: torch.device,
                          amp_dtype: torch.dtype | None, channels_last: bool, steps: int, warmup: int) -> float:
    """ms per training step of a bare torchvision ResNet-50 on ``n`` random images (see the module)."""
    import torchvision

    model = torchvision.models.resnet50(num_classes=num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    x = torch.rand(n, 3, *size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (n,), device=device)

    def step() -> None:
        with torch.autocast(device_type=device.type, enabled=amp_dtype is not None, dtype=amp_dtype):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    _timed_steps(step, warmup, device)
    return 1000 * _timed_steps(step, steps, device)


def end_to_end(config: Path, *, overrides: list[str], work: Path, ids: int, size: tuple[int, int], steps: int,
               warmup: int, device: str, bare: bool = False) -> dict[str, Any]:
    from vireid.config import load_config
    from vireid.data.synthetic import generate
    from vireid.engine.run import build_trainer
    from vireid.engine.step import move_batch

    root = work / f"sysu_{ids}_{size[0]}x{size[1]}"
    if not (root / "vireid_synthetic.json").is_file():
        generate("sysu", root, ids=ids, seed=0, size=size, overwrite=True, progress=False)
    total = warmup + steps
    cfg = load_config(config, [f"data.root={root}", f"output_dir={work / 'run'}", f"train.device={device}",
                               f"train.iters_per_epoch={2 * total + 2}", "train.eval_every=0", "model.pretrained=none",
                               *overrides])
    t_build = time.perf_counter()
    trainer = build_trainer(cfg)
    build_s = time.perf_counter() - t_build
    trainer.hooks = []  # no evaluation, checkpoints or logs in the timed loop
    dev = trainer.device
    loader = trainer.train_loader
    trainer.model.train()

    # data only: the loader alone (its own epoch 1 so it does not share the batches timed below)
    loader.set_epoch(1)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    images = 0
    for _ in range(steps):
        images += next(it)["images"].shape[0]
    data_ips = images / (time.perf_counter() - t0)
    del it

    # end to end: warm-up steps (compilation, cuDNN autotuning), then the timed ones back to back
    loader.set_epoch(0)
    it = iter(loader)
    batch0 = next(it)
    t_first = time.perf_counter()
    trainer.run_step(batch0)
    _sync(dev)
    first_step_s = time.perf_counter() - t_first
    for _ in range(warmup - 1):
        trainer.run_step(next(it))
    batches = it
    with _UtilisationSampler(dev) as sampler:
        e2e = _timed_steps(lambda: trainer.run_step(next(batches)), steps, dev)

    # model only: the same step on one batch already on the device
    on_device = move_batch(batch0, dev)
    model = _timed_steps(lambda: trainer.run_step(on_device), steps, dev)
    reads = count_host_reads(trainer, on_device)
    n = batch0["images"].shape[0]
    result = {"config": str(config), "overrides": overrides, "device": str(dev),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "images_per_step": int(n),
              "workers": loader.workers, "end_to_end_ms": 1000 * e2e, "model_only_ms": 1000 * model,
              "data_images_per_s": data_ips, "busy_fraction": model / e2e, "gpu_utilisation": sampler.mean,
              "end_to_end_images_per_s": n / e2e, "host_reads_per_step": reads, "first_step_s": first_step_s,
              "build_s": build_s, "steps": steps, "warmup": warmup, "amp_dtype": str(trainer.amp_dtype),
              "channels_last": trainer.channels_last, "compile": trainer.compiled,
              "input": [int(cfg.data.height), int(cfg.data.width)], "dataset": {"ids": ids, "size": list(size)}}
    if bare:
        result["bare_resnet50_ms"] = bare_resnet50_step_ms(
            n, (int(cfg.data.height), int(cfg.data.width)), int(trainer.num_classes or 395), dev, trainer.amp_dtype,
            trainer.channels_last, steps, warmup)
        result["model_only_vs_bare"] = result["bare_resnet50_ms"] / result["model_only_ms"]
    return result


def format_end_to_end(r: dict[str, Any]) -> str:
    lines = [f"{Path(r['config']).name} {' '.join(r['overrides'])} on {r['gpu'] or r['device']} "
             f"({r['images_per_step']} images/step at {r['input'][0]}x{r['input'][1]}, {r['workers']} loader workers, "
             f"autocast {r['amp_dtype']}, channels_last {r['channels_last']}, compile {r['compile']}):",
             f"  end to end {r['end_to_end_ms']:.1f} ms/step ({r['end_to_end_images_per_s']:.1f} img/s) | model only "
             f"{r['model_only_ms']:.1f} ms/step | data only {r['data_images_per_s']:.1f} img/s | busy fraction "
             f"{r['busy_fraction']:.2f}"]
    extra = []
    if r.get("gpu_utilisation") is not None:
        extra.append(f"GPU utilisation (NVML) {r['gpu_utilisation']:.2f}")
    if r.get("host_reads_per_step") is not None:
        extra.append(f"host reads per step {r['host_reads_per_step']}")
    if "bare_resnet50_ms" in r:
        extra.append(f"bare ResNet-50 {r['bare_resnet50_ms']:.1f} ms/step (model only = "
                     f"{r['model_only_vs_bare']:.2f}x its speed)")
    extra.append(f"first step {r['first_step_s']:.1f} s, build {r['build_s']:.1f} s")
    lines.append("  " + " | ".join(extra))
    return "\n".join(lines)
