"""What a longer schedule buys: runs of one tiny config that differ in their number of steps, drawn from the
JSON files of ``bench/learning.py``.

- Left panel: each run's learning curve (trial-0 cross-modal Rank-1 at each evaluation against optimiser
  steps), one colour per schedule length.
- Right panel: against each schedule's steps, the final cross-modal Rank-1 and mAP (means over the
  protocol's trials) and the within-modality ceilings on the test identities (visible-to-visible and
  infrared-to-infrared Rank-1); where a file holds several training seeds (``--train-seeds``) of a length,
  each seed is a small dot and the line joins their means. Chance Rank-1 is the grey line.

Printed: one line per schedule length with its seeds and mean figures.

Usage::

    python bench/budget_curve.py out/exp/s480/learning.json out/exp/s720/learning.json \\
        out/exp/s960/learning.json --model dam --target 40 --out docs/img/tiny_dam_steps.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The final figures drawn against steps: (key in a summary, label, colour, marker).
FIGURES = (("rank1", "cross-modal Rank-1", "tab:blue", "o"), ("mAP", "cross-modal mAP", "tab:orange", "s"),
           ("vv", "visible-to-visible Rank-1", "tab:green", "^"), ("ii", "infrared-to-infrared Rank-1", "tab:red", "v"))


def read_runs(paths: list[Path], model: str) -> list[dict[str, Any]]:
    """The runs of ``model`` in the ``bench/learning.py`` JSON files, each ``{"steps", "seed", "rank1",
    "mAP", "vv", "ii", "chance", "curve"}``. A file that is not such a JSON, or no run of
    ``model`` in any, is a :class:`~vireid.errors.VireidError` naming the file."""
    from vireid.errors import VireidError

    runs = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
            rows = report["models"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise VireidError(f"{path}: not a bench/learning.py JSON file with a 'models' list ({type(exc).__name__}: "
                              f"{exc})") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise VireidError(f"{path}: 'models' must be a list of bench/learning.py rows (objects)")
        for row in rows:
            if row.get("model") != model:
                continue
            try:
                runs.append({"steps": int(row["steps"]), "seed": row.get("train_seed"),
                             "rank1": float(row["trained"]["rank1"]), "mAP": float(row["trained"]["mAP"]),
                             "vv": (row.get("visible_to_visible") or {}).get("rank1"),
                             "ii": (row.get("infrared_to_infrared") or {}).get("rank1"),
                             "chance": float(row["chance_rank1"]), "curve": list(row.get("curve") or [])})
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise VireidError(f"{path}: a {model} run is not a bench/learning.py row with steps, trained rank1 "
                                  f"and mAP, and chance_rank1 ({type(exc).__name__}: {exc})") from None
    if not runs:
        raise VireidError(f"no {model} run in {', '.join(map(str, paths))}")
    return runs


def by_steps(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per schedule length, shortest first: its seeds and the mean of each of :data:`FIGURES`
    over the runs that have it (None where none has)."""
    lengths = sorted({r["steps"] for r in runs})
    out = []
    for steps in lengths:
        group = [r for r in runs if r["steps"] == steps]
        summary: dict[str, Any] = {"steps": steps, "seeds": [r["seed"] for r in group], "runs": len(group)}
        for key, *_ in FIGURES:
            values = [float(r[key]) for r in group if r[key] is not None]
            summary[key] = statistics.fmean(values) if values else None
        out.append(summary)
    return out


def plot_budget(runs: list[dict[str, Any]], summaries: list[dict[str, Any]], out: Path, *, title: str,
                target: float | None = None) -> Path:
    """The two panels (module docstring) of ``runs`` and their :func:`by_steps` ``summaries``, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vireid.visualization.figures import save_png

    palette = plt.get_cmap("viridis")
    colour = {s["steps"]: palette(i / max(1, len(summaries) - 1) * 0.85) for i, s in enumerate(summaries)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(14.4, 4.6), dpi=150)
    seeds_of = {s["steps"]: [seed for seed in s["seeds"] if seed is not None] for s in summaries}
    labelled = set()
    for run in runs:
        curve = [p for p in run["curve"] if "step" in p and "rank1" in p]
        if curve:
            seeds = seeds_of[run["steps"]]
            label = None
            if run["steps"] not in labelled:  # one legend entry per schedule length
                labelled.add(run["steps"])
                label = f"{run['steps']} steps" + (f", seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"
                                                   if seeds else "")
            left.plot([p["step"] for p in curve], [p["rank1"] for p in curve], marker="o", linewidth=1.8,
                      color=colour[run["steps"]], label=label)
    left.set_xlabel("optimiser steps", fontsize=12)
    left.set_ylabel("cross-modal Rank-1, trial 0 (%)", fontsize=12)
    left.set_title("learning curves", fontsize=12)
    for key, label, col, marker in FIGURES:
        points = [(s["steps"], s[key]) for s in summaries if s[key] is not None]
        if not points:
            continue
        right.plot(*zip(*points), marker=marker, color=col, linewidth=2, label=label)
        singles = [(r["steps"], r[key]) for r in runs if r[key] is not None]
        right.scatter(*zip(*singles), color=col, s=12, alpha=0.45)
    right.axhline(statistics.fmean(r["chance"] for r in runs), color="grey", linestyle="--", linewidth=1,
                  label="chance Rank-1")
    if target is not None:
        for ax in (left, right):
            ax.axhline(target, color="black", linestyle=":", linewidth=1.2, label=f"target {target:g}")
    right.set_xlabel("steps of the schedule", fontsize=12)
    right.set_ylabel("final figure, mean over trials (%)", fontsize=12)
    right.set_ylim(0, 100)
    right.set_title("final figures (dots: single seeds)", fontsize=12)
    left.legend(fontsize=8, loc="lower right")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the panel: the lines fill it
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=11)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench/learning.py JSON files")
    parser.add_argument("--model", default="dam", help="the model whose runs are drawn (agw | caj | dam | fafe)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file")
    parser.add_argument("--title", default=None, help="figure title (default: tiny MODEL, what steps buy)")
    parser.add_argument("--target", type=float, default=None, help="a target figure (percent) drawn as a dotted line")
    args = parser.parse_args(argv)
    from vireid.errors import VireidError

    try:
        runs = read_runs(args.files, args.model)
    except VireidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summaries = by_steps(runs)
    written = plot_budget(runs, summaries, args.out, title=args.title or f"tiny {args.model.upper()}: what steps buy",
                          target=args.target)
    for s in summaries:
        figures = ", ".join(f"{label} {s[key]:.2f}" for key, label, *_ in FIGURES if s[key] is not None)
        print(f"{s['steps']:>6} steps, seeds {s['seeds']}: {figures}")
    print(f"written: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
