"""``vireid demo``: the whole pipeline on built-in synthetic data (what ``make demo`` runs)."""

from __future__ import annotations

import argparse

from vireid.cli import HelpFormatter
from vireid.demo import DEMO_IDS, DEMO_TEST_IDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate synthetic data, train tiny DAM on the CPU, test it and draw ranked lists",
        description="Generate a synthetic SYSU-MM01-layout dataset, check it, train tiny DAM (paper B) "
        "on the CPU, run the 10-trial SYSU-MM01 protocol on the trained and the untrained model, and "
        "draw ranked lists (infrared queries against the visible gallery). Re-running reuses what is done.",
        formatter_class=HelpFormatter,
        epilog="example:\n  vireid demo --out out/demo\n  vireid demo --out out/demo2 train.epochs=5",
    )
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--config", default=None, help="config to train (default: configs/sysu/dam_tiny.yaml)")
    parser.add_argument("--ids", type=int, default=DEMO_IDS,
                        help=f"identities in the synthetic dataset, {DEMO_TEST_IDS} of them for testing (default: "
                        f"{DEMO_IDS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset (default: 0)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=5")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from vireid.cli.train import setup_console_logging
    from vireid.demo import DEFAULT_CONFIG, run_demo

    setup_console_logging()
    run_demo(args.out, config=args.config or DEFAULT_CONFIG, overrides=tuple(args.overrides), ids=args.ids,
             seed=args.seed)
    return 0
