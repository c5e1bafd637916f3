"""A report's table in Markdown, CSV or LaTeX.

One row per group of runs: its name (what differs), seeds x trials, each figure as mean ± standard
deviation (over seeds when the row has several, else over its trials), and how it was tested. With the
published numbers attached, a row under each shows the matching published figure with the difference
(run minus published) and its source, or why there is none.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from vireid.report.runs import METRIC_TITLES, REPORT_METRICS, Group, convention_words

#: ``--format`` values.
FORMATS = ("md", "csv", "latex")

STD_NOTE = ("± is the standard deviation over seeds (n - 1) where a row has several seeds, else over its "
            "trials; figures in percent")


def shown_metrics(groups: Sequence[Group]) -> list[str]:
    """The metrics some group (or its published row) has, in report order."""
    out = []
    for m in REPORT_METRICS:
        if any(g.stats(m) is not None or (g.published and m in g.published["metrics"]) for g in groups):
            out.append(m)
    return out


def _runs_text(g: Group) -> str:
    seeds = len(g.seeds)
    return f"{seeds} seeds x {g.num_trials} trials" if seeds > 1 else f"seed {g.seeds[0]}, {g.num_trials} trials"


def _tested_text(g: Group) -> str:
    return ", ".join(convention_words(g.first.conventions)) or "last weights"


def _published_cells(g: Group, metrics: Sequence[str]) -> list[str]:
    cells = []
    for m in metrics:
        value = g.published["metrics"].get(m) if g.published else None
        stats = g.stats(m)
        if value is None:
            cells.append("–")
        elif stats is None:
            cells.append(f"{value:.2f}")
        else:
            cells.append(f"{value:.2f} ({stats['mean'] - value:+.2f})")
    return cells


def to_markdown(groups: Sequence[Group], *, against: bool = False) -> str:
    metrics = shown_metrics(groups)
    head = ["row", "runs", *(METRIC_TITLES[m] for m in metrics), "tested"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g.name, _runs_text(g)]
        for m in metrics:
            s = g.stats(m)
            cells.append("–" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}")
        cells.append(_tested_text(g))
        lines.append("| " + " | ".join(cells) + " |")
        if against:
            label = f"↳ published: {g.published['label']}" if g.published else "↳ published: none"
            lines.append("| " + " | ".join([label, "", *_published_cells(g, metrics),
                                            g.published_note or ""]) + " |")
    notes = [STD_NOTE]
    if against:
        notes.append("published rows: the paper's figure and, in brackets, this row minus it; sources in "
                     "vireid/report/published.yaml")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def to_csv(groups: Sequence[Group], *, against: bool = False) -> str:
    metrics = shown_metrics(groups)
    head = ["row", "seeds", "trials"]
    for m in metrics:
        head += [m, f"{m}_std", f"{m}_std_trials", f"{m}_std_seeds"] + ([f"{m}_published", f"{m}_diff"] if against else [])
    head += ["tested", "sources"] + (["published_row", "published_source", "published_note"] if against else [])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for g in groups:
        row: list[object] = [g.name, " ".join(map(str, g.seeds)), g.num_trials]
        for m in metrics:
            s = g.stats(m)
            row += ["", "", "", ""] if s is None else [f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['std_trials']:.4f}",
                                                       f"{s['std_seeds']:.4f}"]
            if against:
                value = g.published["metrics"].get(m) if g.published else None
                row += ["", ""] if value is None else [f"{value:.2f}", "" if s is None else f"{s['mean'] - value:.4f}"]
        row += [_tested_text(g), " ".join(str(r.source) for r in g.runs)]
        if against:
            row += [g.published["label"] if g.published else "", g.published["source"] if g.published else "",
                    g.published_note]
        writer.writerow(row)
    return buf.getvalue()


#: Characters LaTeX treats specially, and how a table cell writes them.
TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
               "–": "--"}


def _tex(text: str) -> str:
    return "".join(TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(groups: Sequence[Group], *, against: bool = False) -> str:
    metrics = shown_metrics(groups)
    cols = "l" + "r" * len(metrics)
    lines = [r"% " + STD_NOTE, r"\begin{tabular}{" + cols + "}", r"\toprule",
             " & ".join(["Method", *(METRIC_TITLES[m] for m in metrics)]) + r" \\", r"\midrule"]
    for g in groups:
        cells = [_tex(g.name)]
        for m in metrics:
            s = g.stats(m)
            cells.append("--" if s is None else f"{s['mean']:.2f}$\\pm${s['std']:.2f}")
        lines.append(" & ".join(cells) + r" \\")
        if against and g.published:
            lines.append(" & ".join([r"\quad\textit{" + _tex(g.published["label"]) + "}",
                                     *(r"\textit{" + _tex(c) + "}" for c in _published_cells(g, metrics))]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def format_report(groups: Sequence[Group], fmt: str = "md", *, against: bool = False) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex}[fmt](groups, against=against)
