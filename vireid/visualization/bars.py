"""Grouped bars with error bars, for a slide: one group of bars per table row, one bar per metric, and the
published figure as a black tick on the bar it belongs to (``vireid report --plot``)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from vireid.visualization.figures import save_png


def plot_grouped_bars(
    rows: Sequence[str],
    metrics: Sequence[str],
    means: Sequence[Mapping[str, float | None]],
    stds: Sequence[Mapping[str, float | None]],
    out: str | Path,
    *,
    published: Sequence[Mapping[str, float] | None] | None = None,
    title: str = "",
    note: str = "",
    labels: Mapping[str, str] | None = None,
) -> Path:
    """A 16:9 PNG: for each row, bars of ``means[i][metric]`` with ``stds[i][metric]`` error bars (a missing
    metric leaves a gap); ``published[i]`` (optional) marks each metric's published value; ``labels`` names the
    metrics in the legend. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not rows or not metrics:
        raise ValueError("a bar chart needs at least one row and one metric")
    if not len(rows) == len(means) == len(stds):
        raise ValueError(f"{len(rows)} rows, {len(means)} means and {len(stds)} deviations: give one of each per row")
    fig, ax = plt.subplots(figsize=(12.8, 7.2))
    width = 0.8 / len(metrics)
    x = np.arange(len(rows))
    tick_drawn = False
    for j, metric in enumerate(metrics):
        pos = x - 0.4 + width * (j + 0.5)
        vals = [m.get(metric) for m in means]
        errs = [s.get(metric) or 0.0 for s in stds]
        heights = [np.nan if v is None else v for v in vals]
        bars = ax.bar(pos, heights, width * 0.92, yerr=errs, capsize=4, label=(labels or {}).get(metric, metric),
                      error_kw={"elinewidth": 1.2})
        for rect, v, e in zip(bars, vals, errs):
            if v is not None:  # the value above its error bar
                ax.annotate(f"{v:.1f}", (rect.get_x() + rect.get_width() / 2, v + e), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=10)
        for i, pub in enumerate(published or []):
            if pub and pub.get(metric) is not None:
                ax.hlines(pub[metric], pos[i] - width * 0.46, pos[i] + width * 0.46, colors="black", linewidth=2.5,
                          label="published" if not tick_drawn else None)
                tick_drawn = True
    top = max([v + (s.get(k) or 0.0) for m, s in zip(means, stds) for k, v in m.items() if v is not None]
              + [v for p in (published or []) if p for v in p.values()] + [1.0])
    ax.set_ylim(0, top * 1.08)  # room for the value labels above the tallest bar
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= min(100.0, top * 1.08)])
    ax.set_xticks(x, ["\n".join(textwrap.wrap(r, 28)) for r in rows], fontsize=13)
    ax.set_ylabel("%", fontsize=14)
    ax.tick_params(axis="y", labelsize=12)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=12, ncol=len(metrics) + 1, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=16)
    if note:
        fig.text(0.01, 0.01, note, fontsize=10, color="0.35")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    return save_png(fig, out, dpi=150)
