"""Does training help? Trained against untrained accuracy of each model's tiny config.

For each model (AGW, CAJ, DAM, FAFE tiny configs by default) the script trains on a fixed synthetic
set (generated once, seeded: the SYSU-MM01 layout with near-infrared cameras, or ``--layout regdb``
with a thermal camera; or on ``--data ROOT`` with ``--dataset``, e.g. a ``manifest.csv`` folder of real
photos), then reports, as a table and as JSON (``--out``):

- the Rank-1 / Rank-10 / mAP / mINP of the trained model and of the same model untrained (same
  architecture and seed), averaged over the protocol's trials, and chance Rank-1 (1 / gallery identities);
- the training ID accuracy of the last epoch (and DAM's local-branch accuracy);
- the within-modality ceilings on the test identities with the same trained model: visible-to-visible
  and infrared-to-infrared Rank-1 (each image against the images of its modality from the other
  cameras; where a modality has one camera, as RegDB's, against all its other images), so a reader sees
  which side limits the cross-modal figure;
- the learning curve (Rank-1 and mAP of trial 0 at each evaluation epoch), steps and wall time;
- once per data set, the hand-made matchers (``vireid.evaluation.handcrafted``: colour and grey
  histograms) under the same protocol: how much identity the set gives away without learning.

    .venv/bin/python bench/learning.py                         # all four tiny configs
    .venv/bin/python bench/learning.py --models dam            # one
    .venv/bin/python bench/learning.py --layout regdb --models dam   # thermal: synthetic RegDB
    .venv/bin/python bench/learning.py --data data/mine --dataset manifest --models dam

A benchmark, not a test: it takes minutes per model on a 2-core CPU. Numbers depend on the machine's
thread count only through floating-point order.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = ("agw", "caj", "dam", "fafe")
LAYOUTS = ("sysu", "regdb")
#: The fixed synthetic set: the demo's (vireid.demo.DEMO_IDS identities, DEMO_TEST_IDS of them for testing).
from vireid.demo import DEMO_IDS as DEFAULT_IDS  # noqa: E402
from vireid.demo import DEMO_TEST_IDS as DEFAULT_TEST_IDS  # noqa: E402

DEFAULT_SEED = 0
DEFAULT_SIZE = (128, 64)


def ensure_data(root: Path, ids: int, test_ids: int, seed: int, layout: str = "sysu") -> Path:
    """The synthetic set: SYSU-MM01 layout with ``test_ids`` of ``ids`` for testing, or RegDB layout with
    ``2 * test_ids`` identities (RegDB splits them in halves)."""
    from vireid.data.synthetic import generate, is_current

    if not is_current(root, seed=seed):
        if layout == "regdb":
            ids, test_ids = 2 * test_ids, None
        print(f"generating the synthetic {layout} set: {ids} identities ({test_ids or 'half'} test), seed {seed} -> "
              f"{root}", flush=True)
        generate(layout, root, ids=ids, seed=seed, size=DEFAULT_SIZE, overwrite=True, progress=False,
                 test_ids=test_ids)
    return root


def evaluated_records(dataset: Any, protocol: Any) -> list[Any]:
    if hasattr(dataset, "test_records"):
        return dataset.test_records()
    trial = protocol.trials[0]
    return sorted({*protocol.query(trial), *protocol.gallery(trial)})


def within_modality(model: Any, cfg: Any, records: list[Any], modality: str) -> dict[str, float]:
    """Retrieval of the test identities inside one modality: each image against the other images of that
    modality from the other cameras (same identity and camera removed, the LLCM rule), or, where the
    modality has one camera, against all its other images."""
    import torch

    from vireid.data.transforms import build_test_transform
    from vireid.evaluation.evaluator import extract_features
    from vireid.evaluation.metrics import rank_metrics

    chosen = [r for r in records if r.modality == modality]
    if len({r.pid for r in chosen}) < 2:
        return {}
    feats = extract_features(model, chosen, transform=build_test_transform(cfg.data), batch_size=128, progress=False)
    feats = torch.nn.functional.normalize(feats, dim=1)
    dist = -(feats @ feats.T).numpy()
    pids, cams = [r.pid for r in chosen], [r.camera for r in chosen]
    if len(set(cams)) == 1:
        cams = list(range(len(chosen)))  # one camera: each image its own "camera", so only itself is removed
    # the same-identity-same-camera removal of LLCM and Market-1501 (whose camera ids may be any numbers)
    m = rank_metrics(dist, pids, pids, cams, cams, protocol="market1501")
    return {"rank1": 100 * float(m["cmc"][0]), "mAP": 100 * float(m["mAP"]), "images": len(chosen)}


def last_epoch_losses(run_dir: Path) -> dict[str, float]:
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    epochs = [r for r in epochs if r.get("type") == "epoch"]
    return epochs[-1]["losses"] if epochs else {}


def bench_model(model: str, data_root: Path, dataset_name: str, out: Path, overrides: list[str],
                layout: str = "sysu") -> dict[str, Any]:
    from vireid.config import load_config
    from vireid.data import build_dataset
    from vireid.data.records import INFRARED, VISIBLE
    from vireid.engine.run import build_protocol, load_trained_model, run_test, run_training
    from vireid.visualization.learning import evaluation_points

    config = REPO / "configs" / layout / f"{model}_tiny.yaml"
    run_dir = out / model
    cfg = load_config(config, [f"data.name={dataset_name}", f"data.root={data_root}", f"output_dir={run_dir}",
                               *overrides])
    if (run_dir / "checkpoints" / "last.pt").exists():
        import shutil

        shutil.rmtree(run_dir)
    started = time.perf_counter()
    trained = run_training(cfg)
    wall = time.perf_counter() - started
    untrained = run_test(copy.deepcopy(cfg), untrained=True, progress=False)
    dataset = build_dataset(cfg.data.name, cfg.data.root)
    protocol = build_protocol(dataset, cfg)
    net, _ = load_trained_model(cfg, run_dir / "checkpoints" / "last.pt")
    gallery_ids = len({r.pid for r in protocol.gallery(protocol.trials[0])})
    records = evaluated_records(dataset, protocol)
    losses = last_epoch_losses(run_dir)
    keys = ("rank1", "rank10", "mAP", "mINP")
    return {
        "model": model,
        "config": str(config.relative_to(REPO)),
        "trained": {k: trained["mean"][k] for k in keys},
        "untrained": {k: untrained["mean"][k] for k in keys},
        "trials": len(trained["trials"]),
        "chance_rank1": 100.0 / gallery_ids,
        "gallery_ids": gallery_ids,
        "train_id_accuracy": 100 * losses.get("acc", float("nan")),
        "train_local_accuracy": 100 * losses["acc_local"] if "acc_local" in losses else None,
        "visible_to_visible": within_modality(net, cfg, records, VISIBLE),
        "infrared_to_infrared": within_modality(net, cfg, records, INFRARED),
        "curve": evaluation_points(run_dir / "metrics.jsonl"),
        "steps": int(cfg.train.epochs) * int(cfg.train.iters_per_epoch),
        "wall_s": round(wall, 1),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<6}{'trained R1':>11}{'untr. R1':>9}{'x':>6}{'chance':>7}{'R10':>7}{'mAP':>7}{'untr. mAP':>10}"
            f"{'mINP':>7}{'train acc':>10}{'local acc':>10}{'V->V R1':>9}{'I->I R1':>9}{'steps':>7}{'wall s':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        t, u = r["trained"], r["untrained"]
        local = f"{r['train_local_accuracy']:.1f}" if r["train_local_accuracy"] is not None else "-"
        vv, ii = (f"{r[k]['rank1']:.1f}" if r.get(k) else "-" for k in ("visible_to_visible", "infrared_to_infrared"))
        lines.append(f"{r['model']:<6}{t['rank1']:>11.2f}{u['rank1']:>9.2f}{t['rank1'] / max(u['rank1'], 1e-9):>6.1f}"
                     f"{r['chance_rank1']:>7.2f}{t['rank10']:>7.2f}{t['mAP']:>7.2f}{u['mAP']:>10.2f}{t['mINP']:>7.2f}"
                     f"{r['train_id_accuracy']:>10.1f}{local:>10}{vv:>9}{ii:>9}{r['steps']:>7}{r['wall_s']:>8.0f}")
    return "\n".join(lines)


def handcrafted_rows(data_root: Path, dataset_name: str, layout: str) -> list[dict[str, Any]]:
    """The colour- and grey-histogram matchers under the tiny configs' test protocol of this set."""
    from vireid.config import load_config
    from vireid.data import build_dataset
    from vireid.engine.run import build_protocol
    from vireid.evaluation.handcrafted import DESCRIPTORS, handcrafted_results

    cfg = load_config(REPO / "configs" / layout / "dam_tiny.yaml", [f"data.name={dataset_name}", f"data.root={data_root}"])
    protocol = build_protocol(build_dataset(cfg.data.name, cfg.data.root), cfg)
    size = (int(cfg.data.height), int(cfg.data.width))
    return [handcrafted_results(protocol, d, size=size, resize=cfg.data.resize) for d in DESCRIPTORS]


def format_handcrafted(rows: list[dict[str, Any]]) -> str:
    return "\n".join(f"{r['descriptor'] + ' histogram':<16} Rank-1 {r['rank1']:6.2f} ({r['rank1'] / r['chance_rank1']:.1f}x "
                     f"chance {r['chance_rank1']:.2f})  Rank-10 {r['rank10']:6.2f}  mAP {r['mAP']:6.2f}" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: the fixed synthetic set)")
    parser.add_argument("--dataset", default="sysu", help="reader of --data: sysu | regdb | llcm | manifest")
    parser.add_argument("--layout", choices=LAYOUTS, default="sysu",
                        help="synthetic set and tiny configs: sysu (near infrared) | regdb (thermal)")
    parser.add_argument("--ids", type=int, default=DEFAULT_IDS, help="identities of the synthetic SYSU-MM01 set")
    parser.add_argument("--test-ids", type=int, default=DEFAULT_TEST_IDS,
                        help="test identities of the synthetic set (RegDB: twice as many identities in all)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the synthetic set")
    parser.add_argument("--work", type=Path, default=REPO / "out" / "bench" / "learning", help="working folder")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default WORK/learning.json)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every model")
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from vireid.cli.train import setup_console_logging

    setup_console_logging()
    name = f"{args.layout}_{args.ids}_{args.test_ids}_seed{args.seed}" if args.layout == "sysu" else \
        f"regdb_{2 * args.test_ids}_seed{args.seed}"
    data_root = args.data or ensure_data(args.work / name, args.ids, args.test_ids, args.seed, args.layout)
    dataset_name = args.dataset if args.data else args.layout
    handcrafted = handcrafted_rows(data_root, dataset_name, args.layout)
    print("hand-made matchers, across modalities (the protocol's direction):\n" + format_handcrafted(handcrafted), flush=True)
    rows = []
    for model in args.models:
        print(f"== {model}: training the tiny config on {data_root}", flush=True)
        rows.append(bench_model(model, data_root, dataset_name, args.work / "runs", list(args.overrides), args.layout))
        print(format_table(rows[-1:]), flush=True)
    report = {"data": str(data_root), "dataset": dataset_name, "layout": args.layout,
              "synthetic": None if args.data else {"ids": args.ids, "test_ids": args.test_ids, "seed": args.seed, "size": list(DEFAULT_SIZE)},
              "threads": torch.get_num_threads(), "handcrafted": handcrafted, "models": rows}
    out = args.out or args.work / "learning.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\nmeans over the protocol's trials (percent); x = trained / untrained Rank-1; V->V, I->I: within-modality "
          "Rank-1 of the test identities (the ceilings)")
    print(format_table(rows))
    print(format_handcrafted(handcrafted))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
