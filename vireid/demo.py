"""The demo (``make demo``): the whole pipeline on built-in synthetic data, on the CPU.

1. generate a synthetic SYSU-MM01-layout dataset (:mod:`vireid.data.synthetic`), check it and print
   its protocol summary, write its contact sheet;
2. train tiny DAM (paper B; ResNet-18 from scratch, small images) with the regular engine;
3. run the 10-trial SYSU-MM01 all-search protocol on the trained model and on the same model
   untrained, and print both tables;
4. draw the learning curve (Rank-1 and mAP of each evaluation during training, next to the untrained
   model and chance) and a ranked-list picture (infrared queries against the visible gallery, correct
   matches framed green, wrong red).

The synthetic set has 252 identities of which 52 are test identities (a gallery of 52 people, chance
Rank-1 about 2%), so Rank-1, mAP and Rank-10 say something; 200 training identities teach the
cross-modal rule better than 80 in the same steps (docs/paper-notes.md, "Learning on synthetic data,
second round").

Re-running continues where it stopped: a finished dataset is reused, an interrupted training resumes.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("vireid.demo")

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = REPO_CONFIGS / "sysu" / "dam_tiny.yaml"
MEAN_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def _say(msg: str) -> None:
    print(msg, flush=True)


#: The demo's accuracy targets (10-trial means, percent) and its time budget after set-up (seconds):
#: what a tiny DAM should reach on the synthetic set in 5 CPU minutes (docs/paper-notes.md).
TARGETS = {"rank1": 40.0, "mAP": 40.0, "x_untrained_rank1": 5.0, "seconds": 300.0}


def target_lines(trained: dict[str, Any], untrained: dict[str, Any], seconds: float) -> list[str]:
    """One line per target: the figure, the target and whether it is met."""
    ratio = trained["mean"]["rank1"] / max(untrained["mean"]["rank1"], 1e-9)
    rows = [("Rank-1", trained["mean"]["rank1"], ">=", TARGETS["rank1"], "%"),
            ("mAP", trained["mean"]["mAP"], ">=", TARGETS["mAP"], "%"),
            ("Rank-1 / untrained Rank-1", ratio, ">=", TARGETS["x_untrained_rank1"], "x"),
            ("time after set-up", seconds, "<=", TARGETS["seconds"], " s")]
    return [f"  {name:<27}{value:8.2f}{unit:<2} target {op} {goal:g}{unit}: "
            f"{'met' if (value >= goal if op == '>=' else value <= goal) else 'not met'}"
            for name, value, op, goal, unit in rows]


#: The demo's synthetic set: identities and test identities.
DEMO_IDS, DEMO_TEST_IDS = 252, 52


def ensure_synthetic(root: Path, *, ids: int, seed: int, images_per_camera: int, size: tuple[int, int],
                     test_ids: int | None = None) -> Path:
    """Generate the synthetic dataset unless a complete one of the same settings and generator version (its
    manifest written last) is there."""
    from vireid.data.synthetic import generate, is_current

    if is_current(root, ids=ids, test_ids=test_ids, seed=seed):
        _say(f"[1/4] synthetic SYSU-MM01 dataset already at {root} (delete it to regenerate)")
        return root
    _say(f"[1/4] generating a synthetic SYSU-MM01-layout dataset: {ids} identities ({test_ids or 'a fifth'} for "
         f"testing) -> {root}")
    generate("sysu", root, ids=ids, seed=seed, images_per_camera=images_per_camera, size=size, overwrite=True,
             test_ids=test_ids)
    return root


def comparison_table(trained: dict[str, Any], untrained: dict[str, Any]) -> str:
    """The 10-trial means of the trained and untrained model side by side (percent)."""
    head = f"{'model':<22}" + "".join(f"{k:>9}" for k in MEAN_KEYS)
    lines = [head, "-" * len(head)]
    for name, res in (("tiny DAM, untrained", untrained), ("tiny DAM, trained", trained)):
        lines.append(f"{name:<22}" + "".join(f"{res['mean'][k]:9.2f}" for k in MEAN_KEYS))
    return "\n".join(lines)


def run_demo(
    out: str | Path = "out/demo",
    *,
    config: str | Path = DEFAULT_CONFIG,
    overrides: tuple[str, ...] = (),
    ids: int = DEMO_IDS,
    test_ids: int | None = DEMO_TEST_IDS,
    seed: int = 0,
    images_per_camera: int = 6,
    size: tuple[int, int] = (128, 64),
) -> dict[str, Any]:
    """Run the demo into ``out``; returns ``{"trained": results, "untrained": results, "pictures": [...]}``."""
    from vireid.config import load_config
    from vireid.data import build_dataset
    from vireid.data.preview import contact_sheet
    from vireid.data.summary import format_summary, summarize, summary_title
    from vireid.engine.run import build_protocol, run_test, run_training, write_json
    from vireid.evaluation.evaluator import Evaluator, format_results_table
    from vireid.models.loading import load_trained_model
    from vireid.visualization.ranks import ranked_list_picture

    started = time.perf_counter()
    out = Path(out)
    data_root = ensure_synthetic(out / "sysu", ids=ids, seed=seed, images_per_camera=images_per_camera, size=size,
                                 test_ids=test_ids)
    dataset = build_dataset("sysu", data_root)
    protocol = dataset.protocol(mode="all", shots=1, sampler="community")
    people = len({r.pid for r in protocol.gallery(0)})  # gallery identities: chance Rank-1 is 1 / people
    dataset.check_images(progress=True)
    print(format_summary(summarize(dataset, protocol=protocol, trial=0), title=summary_title(dataset, protocol, 0)))
    sheet = contact_sheet(dataset, out / "contact_sheet.png")
    _say(f"contact sheet: {sheet}")

    run_dir = out / "run"
    # the config's train.eval_every evaluates trial 0 during training: the learning curve's points
    cfg = load_config(config, [f"data.root={data_root}", f"output_dir={run_dir}", *overrides])
    last = run_dir / "checkpoints" / "last.pt"
    results_file = run_dir / "results.json"
    if results_file.is_file() and last.is_file():
        _say(f"[2/4] trained run already at {run_dir} (delete it to train again)")
        trained = json.loads(results_file.read_text(encoding="utf-8"))
    else:
        resume = last.is_file()
        _say(f"[2/4] training tiny DAM on the CPU ({cfg.train.epochs} epochs x "
             f"{cfg.train.iters_per_epoch or 'auto'} steps){'; resuming' if resume else ''} -> {run_dir}")
        trained = run_training(cfg, resume=resume)
    _say("[3/4] SYSU-MM01 all-search single-shot, 10 trials")
    _say("trained:\n" + format_results_table(trained))
    untrained = run_test(copy.deepcopy(cfg), untrained=True)
    write_json(untrained, out / "untrained_results.json")
    _say("untrained (same architecture and seed, no training):\n" + format_results_table(untrained))
    chance = 100.0 / people
    _say("\n10-trial means (percent):\n" + comparison_table(trained, untrained)
         + f"\nchance Rank-1 is {chance:.1f}% ({people} gallery identities): trained Rank-1 "
         f"{trained['mean']['rank1'] / chance:.1f}x chance, mAP {trained['mean']['mAP'] - untrained['mean']['mAP']:+.1f} "
         "points over the untrained model (docs/paper-notes.md, 'Learning on synthetic data, third round', says "
         "what limits it)")

    _say("[4/4] learning curve and ranked lists: infrared queries against the visible gallery (trial 0)")
    from vireid.visualization.learning import plot_learning_curve

    untrained_trial0 = {k: untrained["trials"][0][k] for k in ("rank1", "mAP")}
    curve = plot_learning_curve(run_dir / "metrics.jsonl", out / "learning_curve.png", untrained=untrained_trial0,
                                chance_rank1=chance,
                                title=f"tiny DAM on synthetic SYSU-MM01 ({people} test identities), "
                                "infrared -> visible")
    _say(f"learning curve: {curve}")
    model, _ = load_trained_model(cfg, last)
    evaluator = Evaluator.from_config(cfg, build_protocol(dataset, cfg), device="cpu", progress=False)
    picture = ranked_list_picture(evaluator, model, out / "ranked_lists.png", how="per_identity", count=8, topk=10,
                                  title="tiny DAM, synthetic SYSU-MM01, infrared query -> visible gallery (trial 0)")
    _say(f"ranked lists: {picture}")
    seconds = time.perf_counter() - started
    _say("targets (docs/paper-notes.md, 'Learning on synthetic data, third round'):\n"
         + "\n".join(target_lines(trained, untrained, seconds)))
    _say(f"demo finished in {seconds:.0f} s; outputs in {out}")
    return {"trained": trained, "untrained": untrained, "pictures": [str(sheet), str(curve), str(picture)]}
