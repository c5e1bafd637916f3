"""End-to-end training speed: the real loader and the real ``Trainer.run_step`` on a synthetic
SYSU-MM01-layout set on disk (``python bench/train_speed.py --end-to-end CONFIG``).

Reports, for one config, on the device it trains on:

- **end to end**: ms per step of ``for batch in loader: trainer.run_step(batch)`` (decoding, augmenting,
  collating, moving to the device, forward, backward, optimiser step), the median over ``steps``;
- **model only**: ms per step of ``run_step`` on one batch already built (no data work);
- **data only**: images/s the loader delivers without any model (its workers at full speed);
- **busy fraction**: model-only / end-to-end step time, the share of an end-to-end step the model's work
  takes: 1.0 when the input pipeline hides completely behind the model (an estimate of device
  utilisation; on CUDA it is the fraction of wall time the GPU has work queued).

The set is generated once into ``--work`` (identities ``--ids``, images ``--size``), with the config's
own input size and batch; ``train.iters_per_epoch`` is raised so one epoch covers the timed steps.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def end_to_end(config: Path, *, overrides: list[str], work: Path, ids: int, size: tuple[int, int], steps: int,
               warmup: int, device: str) -> dict[str, Any]:
    from vireid.config import load_config
    from vireid.data.synthetic import generate
    from vireid.engine.run import build_trainer
    from vireid.engine.trainer import move_batch

    root = work / f"sysu_{ids}_{size[0]}x{size[1]}"
    if not (root / "vireid_synthetic.json").is_file():
        generate("sysu", root, ids=ids, seed=0, size=size, overwrite=True, progress=False)
    total = warmup + steps
    cfg = load_config(config, [f"data.root={root}", f"output_dir={work / 'run'}", f"train.device={device}",
                               f"train.iters_per_epoch={total + 1}", "train.eval_every=0", "model.pretrained=none",
                               *overrides])
    trainer = build_trainer(cfg)
    trainer.hooks = []  # no evaluation, checkpoints or logs in the timed loop
    dev = trainer.device
    loader = trainer.train_loader
    loader.set_epoch(0)
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

    # end to end
    loader.set_epoch(0)
    times: list[float] = []
    batch0 = None
    it = iter(loader)
    _sync(dev)
    last = time.perf_counter()
    for i in range(total):
        batch = next(it)
        batch0 = batch0 or batch
        trainer.run_step(batch)
        _sync(dev)
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - last)
        last = now
    del it
    e2e = statistics.median(times)

    # model only: the same step on one batch already on the device
    on_device = move_batch(batch0, dev)
    model_times: list[float] = []
    for i in range(total):
        _sync(dev)
        t0 = time.perf_counter()
        trainer.run_step(on_device)
        _sync(dev)
        if i >= warmup:
            model_times.append(time.perf_counter() - t0)
    model = statistics.median(model_times)
    n = batch0["images"].shape[0]
    return {"config": str(config), "device": str(dev), "images_per_step": int(n), "workers": loader.workers,
            "end_to_end_ms": 1000 * e2e, "model_only_ms": 1000 * model, "data_images_per_s": data_ips,
            "busy_fraction": model / e2e, "end_to_end_images_per_s": n / e2e, "steps": steps, "warmup": warmup,
            "input": [int(cfg.data.height), int(cfg.data.width)], "dataset": {"ids": ids, "size": list(size)}}


def format_end_to_end(r: dict[str, Any]) -> str:
    return (f"{Path(r['config']).name} on {r['device']} ({r['images_per_step']} images/step at "
            f"{r['input'][0]}x{r['input'][1]}, {r['workers']} loader workers):\n"
            f"  end to end {r['end_to_end_ms']:.1f} ms/step ({r['end_to_end_images_per_s']:.1f} img/s) | model only "
            f"{r['model_only_ms']:.1f} ms/step | data only {r['data_images_per_s']:.1f} img/s | busy fraction "
            f"{r['busy_fraction']:.2f}")
