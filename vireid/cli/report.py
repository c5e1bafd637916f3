"""``vireid report``: run folders to a paper's table (Markdown, CSV or LaTeX) and a bar chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="turn run folders into a paper's table (and a plot), optionally beside the published numbers",
        description="Read finished run folders (results.json and config.yaml), --seeds folders (one run per "
        "seed) or result files of 'vireid test --json', group runs that differ only in their seed, and print one "
        "row per group: mean ± standard deviation of Rank-1/10/20, mAP and mINP over trials and seeds, the row "
        "named by what differs between the configs (the ablation in words), and how it was tested (flip, "
        "re-ranking, weights selected on the test set, synthetic data: never merged silently). --against "
        "published adds the matching published row of paper A, paper B, AGW or CAJ (vireid/report/published.yaml) "
        "with the difference, or says why none matches.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid report runs/sysu/dam runs/sysu/dam/indoor.json --against published\n"
        "  vireid report runs/regdb/ablations/table3_* --format latex --out table3.tex\n"
        "  vireid report runs/dam_seeds --plot out/report.png",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="run folder, --seeds folder or result JSON file")
    parser.add_argument("--against", choices=("published",), default=None,
                        help="add the published figures of the matching table rows, with the differences")
    parser.add_argument("--format", choices=("md", "csv", "latex"), default="md", help="table format")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the table to FILE as well")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="grouped bars with error bars (published figures as black ticks), 16:9 for a slide")
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from vireid.io import write_text_atomic
    from vireid.report import build_report, format_report, plot_report

    against = args.against == "published"
    groups = build_report(args.runs, against_published=against)
    text = format_report(groups, args.format, against=against)
    print(text, end="")
    if args.out is not None:
        write_text_atomic(args.out, text)
        print(f"table: {args.out}")
    if args.plot is not None:
        print(f"plot: {plot_report(groups, args.plot)}")
    return 0
