"""From run folders to a paper's table: ``vireid report RUN... [--against published] [--format md|csv|latex]
[--plot FILE]``.

::

    from vireid.report import build_report, format_report, plot_report
    groups = build_report(["runs/sysu/dam", "runs/sysu/dam_no_mca"], against_published=True)
    print(format_report(groups, "md", against=True))
    plot_report(groups, "out/report.png")

Runs are read and grouped over seeds by :mod:`vireid.report.runs`, matched to the published numbers by
:mod:`vireid.report.published` (``published.yaml``), written by :mod:`vireid.report.tables`; the picture is
:func:`vireid.visualization.bars.plot_grouped_bars`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vireid.report.published import PUBLISHED_FILE, PublishedRow, attach_published, load_published
from vireid.report.runs import METRIC_TITLES, REPORT_METRICS, Group, Run, group_runs, read_runs
from vireid.report.tables import FORMATS, STD_NOTE, format_report, shown_metrics

__all__ = ["FORMATS", "PUBLISHED_FILE", "REPORT_METRICS", "Group", "PublishedRow", "Run", "build_report",
           "format_report", "load_published", "plot_report", "read_runs"]


def build_report(paths: Sequence[str | Path], *, against_published: bool = False) -> list[Group]:
    """The report's rows: the runs of ``paths`` (run folders, ``--seeds`` folders or result files) grouped
    over seeds and named; with ``against_published``, each matched to its published row."""
    if not paths:
        raise ValueError("give at least one run folder or result file")
    groups = group_runs(run for p in paths for run in read_runs(p))
    if against_published:
        attach_published(groups)
    return groups


def plot_report(groups: Sequence[Group], out: str | Path, *, title: str = "") -> Path:
    """Grouped bars with error bars (one group per row, one bar per metric; published figures as ticks)."""
    from vireid.visualization.bars import plot_grouped_bars

    metrics = [m for m in shown_metrics(groups) if any(g.stats(m) is not None for g in groups)]
    means = [{m: (s["mean"] if (s := g.stats(m)) else None) for m in metrics} for g in groups]
    stds = [{m: (s["std"] if (s := g.stats(m)) else None) for m in metrics} for g in groups]
    published = [({m: v for m, v in g.published["metrics"].items() if m in metrics} if g.published else None)
                 for g in groups]
    return plot_grouped_bars([g.name for g in groups], metrics, means, stds, out, published=published,
                             title=title, note="error bars: " + STD_NOTE.replace("± is ", ""), labels=METRIC_TITLES)
