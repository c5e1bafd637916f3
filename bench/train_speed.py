"""Training and inference throughput of AGW, CAJ, DAM and FAFE against a bare backbone of the same size.

What is measured, in one process and on one device:

- **training images/s** of each model built from its paper config (``configs/sysu/{agw,caj,dam}.yaml``,
  ResNet-50 with ``model.pretrained=none``: the weights do not change the speed) at 288x144: one step is
  ``model(batch)`` (under ``torch.autocast`` with ``--amp``), the sum of the ``loss*`` outputs, backward
  (scaled by a ``GradScaler`` with ``--amp``) and the optimiser step of ``vireid.engine.optim.build_optimizer``
  (SGD, momentum, Nesterov, weight decay, two LR groups) -- the same operations as ``Trainer.run_step``;
- the same figure for a **bare torchvision ResNet-50** step (forward, cross-entropy on a
  ``num_classes``-way ``fc``, backward, SGD step) on the same input size and the same number of images
  per step, and the ratio model / ResNet-50;
- for FAFE (``configs/sysu/fafe.yaml``, a CrossViT backbone) the baseline is instead a **bare timm
  CrossViT of the same variant** (``model.arch``, e.g. ``crossvit_small_240``) built by
  ``timm.create_model(arch, img_size=(H, W), num_classes=...)`` at the same input size (timm resizes its
  coarse branch itself; its position embeddings are cut to the patch grid, see ``bench_crossvit``),
  stepped the same way with Adam (FAFE's optimiser);
- **inference images/s** of ``model.extract(images, "visible")`` (eval mode, ``torch.inference_mode``)
  and of the bare baseline up to its pooled feature (CrossViT: its two CLS tokens), on
  ``--extract-batch`` images.

Counting: images per training step = every image the model processes in the step. AGW sees the
visible and the infrared block (2 x P x K images); CAJ and DAM also see the channel-exchanged visible
view (``data.channel_exchange``), a third block: 3 x P x K images; FAFE likewise sees the grayscale view
(``data.grayscale_view``). The baseline of a model is timed with that model's image count.

Data loading is excluded: batches are synthetic tensors in the training-batch format of
docs/architecture.md (``images`` in [0, 1], ``pids`` paired by position across blocks, ``modality``
0 / 2 / 1 per block, ``camera``), built once on the device. Each measurement runs ``--warmup`` untimed
steps, then ``--steps`` timed ones (CUDA is synchronised around each); images/s = images per step /
the median step time (a step slowed down by another process on a shared machine does not count). Each
model is timed right after its ResNet-50 baseline.

Note what the ratio includes: the vireid models keep layer4 at stride 1 (``model.last_stride=1``, a
feature map 4x larger than torchvision's), have two modality stems (DAM: also two layer1), AGW/CAJ add
non-local blocks and DAM adds MCA, PCA and the PCB branch, and every model computes its metric losses.
FAFE's ratio to its bare CrossViT includes the multi-scale residuals, CSA, the BNNeck and the losses.

Usage::

    python bench/train_speed.py                              # CPU: 2 ids x 2 images, 1 warm-up + 3 timed steps
    python bench/train_speed.py --device cuda --amp          # GPU defaults: 4 ids x 4 images, 5 + 20 steps
    python bench/train_speed.py --device cuda --amp --batch-ids 8 --images-per-id 4 --models agw,caj
    python bench/train_speed.py --models dam --steps 5 --json out/train_speed.json
    python bench/train_speed.py --models fafe                # FAFE against a bare timm CrossViT-S
    python bench/train_speed.py --end-to-end configs/sysu/dam_tiny.yaml      # the real loader + run_step
    python bench/train_speed.py --end-to-end configs/sysu/dam.yaml --device cuda --e2e-ids 491

``--end-to-end CONFIG`` runs ``bench/end_to_end.py`` instead: the real training loader on a synthetic
SYSU-MM01-layout set on disk and ``Trainer.run_step``, reporting end-to-end and model-only ms per step,
data-only images/s and the busy fraction (see that module).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from vireid.config import load_config
from vireid.engine.optim import build_optimizer
from vireid.models import build_model

REPO = Path(__file__).resolve().parents[1]
#: SYSU-MM01 training identities (the classifier width of the SYSU configs).
SYSU_TRAIN_IDS = 395
DEFAULTS = {  # device -> (batch ids P, images per id K, warm-up steps, timed steps, extract batch)
    "cpu": (2, 2, 1, 3, 8),
    "cuda": (4, 4, 5, 20, 64),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__[__doc__.index("Usage::"):])
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (cuda when available)")
    p.add_argument("--models", default="agw,caj,dam,fafe",
                   help="comma-separated model names (configs/sysu/<name>.yaml) or config paths")
    p.add_argument("--batch-ids", type=int, default=None, help="P identities per batch (CPU 2, CUDA 4)")
    p.add_argument("--images-per-id", type=int, default=None, help="K images per identity and modality (CPU 2, CUDA 4)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (CPU 3, CUDA 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps first (CPU 1, CUDA 5)")
    p.add_argument("--extract-batch", type=int, default=None, help="images per extract call (CPU 8, CUDA 64)")
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--amp", action="store_true", help="mixed precision (torch.autocast float16 + GradScaler); CUDA only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--num-classes", type=int, default=SYSU_TRAIN_IDS, help="classifier width (SYSU-MM01: 395)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--end-to-end", type=Path, default=None, metavar="CONFIG",
                   help="time the real training loop of CONFIG on synthetic data on disk (bench/end_to_end.py)")
    p.add_argument("--bare", action="store_true", help="end-to-end: also time a bare ResNet-50 step (same images, precision)")
    p.add_argument("--e2e-ids", type=int, default=132, help="end-to-end: identities of the synthetic set")
    p.add_argument("--e2e-work", type=Path, default=REPO / "out" / "bench" / "end_to_end", help="end-to-end: folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="end-to-end: config overrides")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine")
    if device.type not in DEFAULTS:
        p.error(f"--device {args.device}: expected cpu or cuda[:N]")
    d = DEFAULTS[device.type]
    for name, default in zip(("batch_ids", "images_per_id", "warmup", "steps", "extract_batch"), d):
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("batch_ids", "images_per_id", "steps", "extract_batch", "height", "width", "num_classes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.amp and device.type != "cuda":
        print("note: --amp is ignored on the CPU (as train.amp is); timing in float32", file=sys.stderr)
        args.amp = False
    args.device = device
    return args


def config_path(name: str) -> Path:
    path = Path(name) if name.endswith((".yaml", ".yml")) else REPO / "configs" / "sysu" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"--models: no config {path}")
    return path


def synthetic_batch(*, ids: int, per_id: int, derived: bool, num_classes: int, size: tuple[int, int],
                    device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A training batch in the docs/architecture.md format: blocks [visible | derived | infrared],
    B = ids x per_id each, identity-major, element i of every block the same person."""
    b = ids * per_id
    codes = [0, 2, 1] if derived else [0, 1]
    people = torch.randperm(num_classes, generator=generator)[:ids].repeat_interleave(per_id)
    n = len(codes) * b
    batch = {
        "images": torch.rand(n, 3, *size, generator=generator),
        "pids": people.repeat(len(codes)),
        "modality": torch.tensor(codes).repeat_interleave(b),
        "camera": torch.tensor([1 if c != 1 else 3 for c in codes]).repeat_interleave(b),
    }
    return {k: v.to(device) for k, v in batch.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], *, warmup: int, steps: int, device: torch.device, bar: tqdm) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
        bar.update()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
        bar.update()
    return times


def throughput(images: int, times: list[float]) -> float:
    """Images/s of the median step (robust to a step slowed down by other processes)."""
    return images / statistics.median(times)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp)


def model_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     batch: dict[str, torch.Tensor], amp: bool) -> Callable[[], None]:
    device = batch["images"].device

    def step() -> None:
        with autocast(device, amp):
            out = model(batch)
        loss = sum(v.float() for k, v in out.items() if k.startswith("loss"))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def resnet50_train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                        images: torch.Tensor, labels: torch.Tensor, amp: bool) -> Callable[[], None]:
    def step() -> None:
        with autocast(images.device, amp):
            logits = net(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def bench_crossvit(arch: str, n_images: int, args: argparse.Namespace, bar: tqdm) -> dict[str, Any]:
    """The bare timm CrossViT ``arch`` at the benchmark's input size: train step and pooled feature."""
    import timm

    device, size = args.device, (args.height, args.width)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(n_images, 3, *size, generator=gen).to(device)
    labels = torch.randint(args.num_classes, (n_images,), generator=gen).to(device)
    torch.manual_seed(0)
    reset_peak(device)
    net = timm.create_model(arch, pretrained=False, img_size=size, num_classes=args.num_classes)
    # timm's _compute_num_patches evaluates `h // p * w // p` left to right, which over-sizes the position
    # embedding when a (resized) branch input is not divisible by its patch (288x144: the coarse branch
    # gets 268x134 -> a 16x8 patch grid, but 135 position tokens); size it to the grid the patch embedding
    # really produces, as vireid's encoder does
    for i, embed in enumerate(net.patch_embed):
        with torch.no_grad():
            tokens = embed(torch.zeros(1, 3, *embed.img_size)).shape[1]
        pos = getattr(net, f"pos_embed_{i}")
        if pos.shape[1] != tokens + 1:
            setattr(net, f"pos_embed_{i}", torch.nn.Parameter(pos.detach()[:, : tokens + 1].clone()))
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3.5e-4, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    train_times = timed(resnet50_train_step(net, optimizer, scaler, images, labels, args.amp), warmup=args.warmup,
                        steps=args.steps, device=device, bar=bar)
    train_memory = peak_memory_mib(device)
    net.eval()
    test_images = torch.rand(args.extract_batch, 3, *size, generator=gen).to(device)

    def extract() -> None:
        with torch.inference_mode(), autocast(device, args.amp):
            net.forward_head(net.forward_features(test_images), pre_logits=True)  # the two CLS tokens

    extract_times = timed(extract, warmup=args.warmup, steps=args.steps, device=device, bar=bar)
    return {
        "model": f"timm {arch}",
        "images_per_step": n_images,
        "train_images_per_s": throughput(n_images, train_times),
        "train_step_s": train_times,
        "train_peak_mib": train_memory,
        "extract_images_per_s": throughput(args.extract_batch, extract_times),
        "extract_step_s": extract_times,
    }


def bench_baseline(cfg: Any, n_images: int, args: argparse.Namespace, bar: tqdm) -> dict[str, Any]:
    """The bare backbone a model is compared with: its timm CrossViT (FAFE), else torchvision's ResNet-50."""
    if str(cfg.model.arch).startswith("crossvit"):
        return bench_crossvit(str(cfg.model.arch), n_images, args, bar)
    return bench_resnet50(n_images, args, bar)


def peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_model(path: Path, args: argparse.Namespace, bar: tqdm) -> dict[str, Any]:
    device, size = args.device, (args.height, args.width)
    cfg = load_config(path, ["model.pretrained=none", f"data.height={args.height}", f"data.width={args.width}",
                             f"data.ids_per_batch={args.batch_ids}", f"data.images_per_id={args.images_per_id}",
                             f"train.device={device}"])
    derived = bool(cfg.data.channel_exchange or cfg.data.grayscale_view)
    gen = torch.Generator().manual_seed(0)
    batch = synthetic_batch(ids=args.batch_ids, per_id=args.images_per_id, derived=derived,
                            num_classes=args.num_classes, size=size, device=device, generator=gen)
    n_train = batch["images"].shape[0]
    torch.manual_seed(0)
    reset_peak(device)
    model = build_model(cfg, args.num_classes).to(device).train()
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    train_times = timed(model_train_step(model, optimizer, scaler, batch, args.amp), warmup=args.warmup,
                        steps=args.steps, device=device, bar=bar)
    train_memory = peak_memory_mib(device)
    model.eval()
    images = torch.rand(args.extract_batch, 3, *size, generator=gen).to(device)

    def extract() -> None:
        with torch.inference_mode(), autocast(device, args.amp):
            model.extract(images, "visible")

    extract_times = timed(extract, warmup=args.warmup, steps=args.steps, device=device, bar=bar)
    return {
        "model": cfg.model.name,
        "config": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
        "derived_view": derived,
        "images_per_step": n_train,
        "train_images_per_s": throughput(n_train, train_times),
        "train_step_s": train_times,
        "train_peak_mib": train_memory,
        "extract_images_per_s": throughput(args.extract_batch, extract_times),
        "extract_step_s": extract_times,
    }


def bench_resnet50(n_images: int, args: argparse.Namespace, bar: tqdm) -> dict[str, Any]:
    device, size = args.device, (args.height, args.width)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(n_images, 3, *size, generator=gen).to(device)
    labels = torch.randint(args.num_classes, (n_images,), generator=gen).to(device)
    torch.manual_seed(0)
    reset_peak(device)
    net = torchvision.models.resnet50(num_classes=args.num_classes).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    train_times = timed(resnet50_train_step(net, optimizer, scaler, images, labels, args.amp), warmup=args.warmup,
                        steps=args.steps, device=device, bar=bar)
    train_memory = peak_memory_mib(device)
    net.fc = torch.nn.Identity()  # inference: the pooled 2048-d feature
    net.eval()
    test_images = torch.rand(args.extract_batch, 3, *size, generator=gen).to(device)

    def extract() -> None:
        with torch.inference_mode(), autocast(device, args.amp):
            net(test_images)

    extract_times = timed(extract, warmup=args.warmup, steps=args.steps, device=device, bar=bar)
    return {
        "model": "resnet50",
        "images_per_step": n_images,
        "train_images_per_s": throughput(n_images, train_times),
        "train_step_s": train_times,
        "train_peak_mib": train_memory,
        "extract_images_per_s": throughput(args.extract_batch, extract_times),
        "extract_step_s": extract_times,
    }


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "device": str(args.device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if args.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(args.device)
    return env


def format_table(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    head = (f"{'model':<6} {'img/step':>8} {'train img/s':>11} {'base img/s':>10} {'train ratio':>11} "
            f"{'extract img/s':>13} {'base extract':>12} {'extract ratio':>13}  baseline")
    lines = [head, "-" * len(head)]
    for r, base in pairs:
        lines.append(
            f"{r['model']:<6} {r['images_per_step']:>8} {r['train_images_per_s']:>11.2f} "
            f"{base['train_images_per_s']:>10.2f} {r['train_images_per_s'] / base['train_images_per_s']:>10.2f}x "
            f"{r['extract_images_per_s']:>13.2f} {base['extract_images_per_s']:>12.2f} "
            f"{r['extract_images_per_s'] / base['extract_images_per_s']:>12.2f}x  {base['model']}"
        )
        if r["train_peak_mib"] is not None:
            lines[-1] += f"   peak {r['train_peak_mib']:.0f} MiB (baseline {base['train_peak_mib']:.0f} MiB)"
    return "\n".join(lines)


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.end_to_end is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from end_to_end import end_to_end, format_end_to_end

        result = end_to_end(args.end_to_end, overrides=list(args.overrides), work=args.e2e_work, ids=args.e2e_ids,
                            size=(128, 64), steps=args.steps, warmup=max(args.warmup, 1), device=str(args.device),
                            bare=args.bare)
        result["threads"] = torch.get_num_threads()
        print(format_end_to_end(result))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    paths = [config_path(m.strip()) for m in args.models.split(",") if m.strip()]
    env = environment(args)
    print(f"vireid training speed at {args.height}x{args.width}, batch {args.batch_ids} ids x {args.images_per_id} "
          f"images per modality, {args.warmup} warm-up + {args.steps} timed steps (median step), amp={args.amp}, "
          f"extract batch {args.extract_batch}")
    print("  " + ", ".join(f"{k} {v}" for k, v in env.items()))
    print("  synthetic tensors on the device (data loading excluded); images/step counts every image the model "
          "processes (CAJ, DAM: + the channel-exchanged view; FAFE: + the grayscale view)")
    print(f"  load average at start: {load_average()}")
    # each model right after its baseline (same images per step), so that both see the same
    # machine state; each measurement: warm-up + timed steps for training, then for extract
    total = 4 * (args.warmup + args.steps) * len(paths)
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tqdm(total=total, desc="benchmark steps", unit="step", file=sys.stderr) as bar:
        for path in paths:
            cfg = load_config(path)
            n = (3 if cfg.data.channel_exchange or cfg.data.grayscale_view else 2) * args.batch_ids * args.images_per_id
            bar.set_postfix_str(f"baseline x {n} images")
            base = bench_baseline(cfg, n, args, bar)
            bar.set_postfix_str(path.stem)
            pairs.append((bench_model(path, args, bar), base))
    print(format_table(pairs))
    print("ratio = model images/s / its bare baseline's images/s (torchvision ResNet-50; FAFE: timm CrossViT of "
          "its variant) with the same images per step (train) or the same batch (extract), the baseline timed "
          "just before the model; < 1: slower than the baseline")
    print(f"  load average at end: {load_average()}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"settings": {k: (str(v) if isinstance(v, (Path, torch.device)) else v) for k, v in vars(args).items()},
                  "environment": env, "models": [dict(r, baseline=base) for r, base in pairs]}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
