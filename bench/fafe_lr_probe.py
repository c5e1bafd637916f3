"""Does FAFE train under a learning-rate setting? Loss over the first steps on synthetic data.

For each setting (optimiser overrides), builds the model of CONFIG, trains ``--steps`` steps with the
engine's optimiser and schedule (``vireid.engine.optim``) on the same batches (same seed), and prints
the loss at the start and the end, the smallest loss seen, the accuracy of the last steps, whether
any loss was non-finite, and (``--eval``) rank-1 / mAP on the protocol's first trial afterwards.

Usage (after ``vireid synth sysu --out out/fafe/synth-sysu --ids 40 --seed 0``)::

    python bench/fafe_lr_probe.py configs/sysu/fafe_tiny.yaml data.root=out/fafe/synth-sysu --steps 40 \\
        --setting paper:optim.lr=0.1,optim.backbone_lr=0.1,optim.warmup_epochs=0 \\
        --setting recommended:
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from vireid.config import load_config
from vireid.data import build_dataset
from vireid.data.training import build_train_loader
from vireid.engine.optim import build_optimizer, build_scheduler
from vireid.engine.trainer import seed_everything
from vireid.models import build_model


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition(":")
    return name, [kv for kv in rest.split(",") if kv]


def probe(config: str, overrides: list[str], steps: int, evaluate: bool) -> dict:
    cfg = load_config(config, overrides)
    seed_everything(int(cfg.train.seed))
    dataset = build_dataset(cfg.data.name, cfg.data.root)
    loader = build_train_loader(cfg, dataset.train_records())
    model = build_model(cfg, loader.num_classes)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    model.train()
    losses, accs, parts, nonfinite = [], [], [], 0
    step, epoch = 0, 0
    t0 = time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for batch in loader:
            out = model(batch)
            total = sum(v for k, v in out.items() if k.startswith("loss"))
            if not torch.isfinite(total):
                nonfinite += 1
                losses.append(float("nan"))
                step += 1
                if step >= steps:
                    break
                continue
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            losses.append(float(total.detach()))
            accs.append(float(out["acc"]))
            parts.append({k: float(v.detach()) for k, v in out.items() if k.startswith("loss")})
            step += 1
            if step >= steps:
                break
        scheduler.step()
        epoch += 1
    seconds = time.perf_counter() - t0
    finite = [x for x in losses if math.isfinite(x)]
    k = max(1, min(10, len(losses) // 4))
    result = {
        "first": statistics.fmean(losses[:k]) if all(math.isfinite(x) for x in losses[:k]) else float("nan"),
        "last": statistics.fmean(losses[-k:]) if all(math.isfinite(x) for x in losses[-k:]) else float("nan"),
        "min": min(finite) if finite else float("nan"),
        "acc_last": statistics.fmean(accs[-k:]) if accs else float("nan"),
        "parts_last": {name: statistics.fmean(p[name] for p in parts[-k:]) for name in (parts[-1] if parts else {})},
        "num_classes": loader.num_classes,
        "nonfinite": nonfinite,
        "s_per_step": seconds / max(1, len(losses)),
    }
    if evaluate:
        from vireid.engine.run import build_protocol
        from vireid.evaluation.evaluator import Evaluator

        protocol = build_protocol(dataset, cfg)
        model.eval()
        res = Evaluator.from_config(cfg, protocol, device=torch.device("cpu"), progress=False).evaluate(
            model, [protocol.trials[0]])
        result["rank1"], result["mAP"] = res["mean"]["rank1"], res["mean"]["mAP"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides shared by every setting")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME:k=v,k=v",
                        help="a named setting (extra overrides); repeatable")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval", action="store_true", help="rank-1 / mAP on the first trial after training")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [parse_setting(s) for s in args.setting] or [("config", [])]
    print(f"{args.config} {' '.join(args.overrides)}; {args.steps} steps per setting")
    header = f"{'setting':<14}{'loss first':>11}{'last':>9}{'min':>9}{'acc last':>9}{'non-finite':>11}{'s/step':>8}"
    if args.eval:
        header += f"{'R1':>8}{'mAP':>8}"
    header += "  last-steps loss terms"
    print(header, flush=True)
    for name, extra in settings:
        r = probe(args.config, [*args.overrides, *extra], args.steps, args.eval)
        row = (f"{name:<14}{r['first']:>11.3f}{r['last']:>9.3f}{r['min']:>9.3f}{r['acc_last']:>9.3f}"
               f"{r['nonfinite']:>11d}{r['s_per_step']:>8.2f}")
        if args.eval:
            row += f"{r['rank1']:>8.2f}{r['mAP']:>8.2f}"
        row += "  " + " ".join(f"{k} {v:.3f}" for k, v in r["parts_last"].items())
        print(row, flush=True)
    described = "; ".join(f"{n}: {' '.join(e) or '(config)'}" for n, e in settings)
    print(f"settings: {described}")
    print(f"'first' / 'last': mean total loss of the first / last {max(1, min(10, args.steps // 4))} steps; "
          f"chance level of the ID loss: ln({r['num_classes']}) = {math.log(r['num_classes']):.3f}")


if __name__ == "__main__":
    main()
