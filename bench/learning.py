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
- with ``--train-seeds S1 S2 ...``, one training per seed (``train.seed``; the synthetic set stays the same)
  and, per model, the mean and the standard deviation over the seeds (n - 1) of every figure above: one
  tiny run's Rank-1 moves by a few points with the seed alone, so a recipe change smaller than that
  spread needs several seeds before it is a finding (``--parallel N`` trains N seeds at a time);
- once per data set, the hand-made matchers (``vireid.evaluation.handcrafted``: colour and grey
  histograms) under the same protocol: how much identity the set gives away without learning.

    .venv/bin/python bench/learning.py                         # all four tiny configs
    .venv/bin/python bench/learning.py --models dam            # one
    .venv/bin/python bench/learning.py --layout regdb --models dam   # thermal: synthetic RegDB
    .venv/bin/python bench/learning.py --data data/mine --dataset manifest --models dam
    OMP_NUM_THREADS=1 .venv/bin/python bench/learning.py --models dam --train-seeds 0 1 2 --parallel 2

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
                layout: str = "sysu", seed: int | None = None) -> dict[str, Any]:
    """Train ``model``'s tiny config on the set and measure it (module docstring); ``seed``: its
    ``train.seed`` (run folder ``out/model/seed<seed>``), else the config's (``out/model``)."""
    from vireid.config import load_config
    from vireid.data import build_dataset
    from vireid.data.records import INFRARED, VISIBLE
    from vireid.engine.run import build_protocol, load_trained_model, run_test, run_training
    from vireid.engine.seeds import SEED_FOLDER
    from vireid.visualization.learning import evaluation_points

    config = REPO / "configs" / layout / f"{model}_tiny.yaml"
    run_dir = out / model if seed is None else out / model / SEED_FOLDER.format(seed=seed)
    seeded = [] if seed is None else [f"train.seed={seed}"]
    cfg = load_config(config, [f"data.name={dataset_name}", f"data.root={data_root}", f"output_dir={run_dir}",
                               *overrides, *seeded])
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
        "train_seed": int(cfg.train.seed),
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


#: The figures of a run that ``--train-seeds`` summarises over seeds: name -> where a row of
#: :func:`bench_model` holds it.
SEED_FIGURES: dict[str, tuple[str, ...]] = {
    "trained_rank1": ("trained", "rank1"), "trained_mAP": ("trained", "mAP"),
    "trained_rank10": ("trained", "rank10"), "trained_mINP": ("trained", "mINP"),
    "untrained_rank1": ("untrained", "rank1"), "untrained_mAP": ("untrained", "mAP"),
    "train_id_accuracy": ("train_id_accuracy",),
    "visible_to_visible_rank1": ("visible_to_visible", "rank1"),
    "infrared_to_infrared_rank1": ("infrared_to_infrared", "rank1"),
}


def over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's runs with different training seeds summarised: for each of :data:`SEED_FIGURES` that
    every run has, its mean, standard deviation over the seeds (n - 1; 0 for one seed), minimum and
    maximum."""
    import statistics

    models = {r["model"] for r in rows}
    if len(models) != 1:
        raise ValueError(f"over_seeds takes the runs of one model, got {sorted(models)}")
    figures = {}
    for name, path in SEED_FIGURES.items():
        values = []
        for row in rows:
            value: Any = row
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                values.append(float(value))
        if len(values) == len(rows):
            figures[name] = {"mean": statistics.fmean(values),
                             "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                             "min": min(values), "max": max(values)}
    return {"model": rows[0]["model"], "seeds": [r.get("train_seed") for r in rows], "figures": figures}


def format_over_seeds(summaries: list[dict[str, Any]]) -> str:
    def cell(f: dict[str, Any], name: str) -> str:
        return f"{f[name]['mean']:.2f} +- {f[name]['sd']:.2f}" if name in f else "-"

    lines = []
    for s in summaries:
        f = s["figures"]
        spread = f"{f['trained_rank1']['min']:.2f}-{f['trained_rank1']['max']:.2f}"
        lines.append(f"{s['model']:<6}{len(s['seeds'])} seeds {s['seeds']}: trained Rank-1 {cell(f, 'trained_rank1')} "
                     f"({spread}), mAP {cell(f, 'trained_mAP')}; untrained Rank-1 {cell(f, 'untrained_rank1')}; "
                     f"V->V {cell(f, 'visible_to_visible_rank1')}, I->I {cell(f, 'infrared_to_infrared_rank1')}")
    return "\n".join(lines)


def _bench_in_worker(threads: int, *args: Any) -> dict[str, Any]:
    """:func:`bench_model` in a worker process of ``--parallel`` (``threads`` torch threads)."""
    import torch

    from vireid.cli.train import setup_console_logging

    torch.set_num_threads(threads)
    setup_console_logging()
    return bench_model(*args)


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
    parser.add_argument("--train-seeds", nargs="+", default=None, metavar="S",
                        help="train each model once per seed (train.seed) and report the mean and spread over seeds")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="with --train-seeds: N trainings at a time, each in its own process with the "
                             "parent's threads divided among them")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every model")
    args = parser.parse_args(argv)
    seeds: list[int | None] = [None]
    if args.train_seeds is not None:
        from vireid.cli.train import split_seeds
        from vireid.engine.seeds import check_seeds
        from vireid.errors import ConfigError

        try:  # overrides written after the seeds go back to the overrides
            args.train_seeds = check_seeds(split_seeds(args.train_seeds, args.overrides))
        except ConfigError as exc:
            parser.error(str(exc).replace("--seeds", "--train-seeds"))
        seeds = list(args.train_seeds)
    if args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")

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
    jobs = [(model, data_root, dataset_name, args.work / "runs", list(args.overrides), args.layout, seed)
            for model in args.models for seed in seeds]
    rows = []
    if args.parallel > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, torch.get_num_threads() // args.parallel)
        print(f"== training {len(jobs)} runs, {args.parallel} at a time ({threads} thread(s) each) on {data_root}",
              flush=True)
        with ProcessPoolExecutor(max_workers=args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_bench_in_worker, threads, *job) for job in jobs]
            for future in futures:
                rows.append(future.result())
                print(format_table(rows[-1:]), flush=True)
    else:
        for job in jobs:
            seed_text = "" if job[-1] is None else f", train.seed={job[-1]}"
            print(f"== {job[0]}: training the tiny config on {data_root}{seed_text}", flush=True)
            rows.append(bench_model(*job))
            print(format_table(rows[-1:]), flush=True)
    summaries = [] if args.train_seeds is None else \
        [over_seeds([r for r in rows if r["model"] == model]) for model in args.models]
    report = {"data": str(data_root), "dataset": dataset_name, "layout": args.layout,
              "synthetic": None if args.data else {"ids": args.ids, "test_ids": args.test_ids, "seed": args.seed, "size": list(DEFAULT_SIZE)},
              "threads": torch.get_num_threads(), "handcrafted": handcrafted, "models": rows,
              "over_seeds": summaries}
    out = args.out or args.work / "learning.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\nmeans over the protocol's trials (percent); x = trained / untrained Rank-1; V->V, I->I: within-modality "
          "Rank-1 of the test identities (the ceilings)")
    print(format_table(rows))
    if summaries:
        print("\nover the training seeds: mean +- standard deviation (n - 1), trained Rank-1 range in brackets")
        print(format_over_seeds(summaries))
    print(format_handcrafted(handcrafted))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
