"""The learning curve of a run: Rank-1 and mAP of each evaluation during training (``metrics.jsonl``),
next to the untrained model's and chance level."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vireid.errors import VireidError
from vireid.visualization.figures import save_png


def evaluation_points(metrics_file: str | Path) -> list[dict[str, Any]]:
    """``[{"epoch", "step", "rank1", "mAP"}]`` of the epochs of ``metrics.jsonl`` that were evaluated."""
    path = Path(metrics_file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VireidError(f"{path}: cannot read the run's metrics ({exc})") from exc
    points = []
    for number, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise VireidError(f"{path}:{number}: not a JSON line") from None
        if rec.get("type") == "epoch" and rec.get("eval"):
            mean = rec["eval"]["mean"]
            points.append({"epoch": int(rec["epoch"]), "step": int(rec["step"]), "rank1": float(mean["rank1"]),
                           "mAP": float(mean["mAP"])})
    return points


def plot_learning_curve(metrics_file: str | Path, out: str | Path, *, untrained: dict[str, float] | None = None,
                        chance_rank1: float | None = None, title: str = "learning curve") -> Path:
    """A PNG of Rank-1 and mAP (percent) against optimiser steps, from a run's ``metrics.jsonl``; with
    ``untrained`` (``{"rank1", "mAP"}``) the untrained model's values at step 0 and as dotted lines, and
    chance Rank-1 as a grey line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = evaluation_points(metrics_file)
    if not points:
        raise VireidError(f"{metrics_file}: no evaluated epoch (set train.eval_every > 0)")
    steps = [p["step"] for p in points]
    series = {"rank1": [p["rank1"] for p in points], "mAP": [p["mAP"] for p in points]}
    colours = {"rank1": "tab:blue", "mAP": "tab:orange"}
    names = {"rank1": "Rank-1", "mAP": "mAP"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for key in ("rank1", "mAP"):
        xs, ys = list(steps), list(series[key])
        if untrained is not None:
            xs, ys = [0, *xs], [untrained[key], *ys]
            ax.axhline(untrained[key], color=colours[key], linestyle=":", linewidth=1.2,
                       label=f"{names[key]}, untrained")
        ax.plot(xs, ys, marker="o", color=colours[key], linewidth=2, label=f"{names[key]}, trained")
    if chance_rank1 is not None:
        ax.axhline(chance_rank1, color="grey", linestyle="--", linewidth=1, label="chance Rank-1")
    ax.set_xlabel("optimiser steps", fontsize=12)
    ax.set_ylabel("percent (trial 0)", fontsize=12)
    import textwrap

    top = max(series["rank1"] + series["mAP"] + ([untrained["mAP"]] if untrained else []))
    ax.set_ylim(0, min(100.0, max(20.0, 10 * math.ceil(1.25 * top / 10))))  # room to read small values
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=12)
    ax.tick_params(labelsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left")
    fig.tight_layout()
    return save_png(fig, out)
