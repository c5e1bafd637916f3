"""``vireid convert``: a checkpoint of the AGW/CAJ reference code as a vireid checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an AGW/CAJ reference-code checkpoint (.t/.pth) into a vireid checkpoint",
        description="Read SRC, a checkpoint of the AGW/CAJ reference code (mangye16/Cross-Modal-Re-ID-baseline: "
        "{'net': state_dict} or a bare state_dict of embed_net), map it onto the AGW or CAJ model of CONFIG "
        "(the non-local geometry and the class count are read from the weights) and write a vireid checkpoint "
        "that records the config. Every command also accepts SRC directly with --checkpoint; converting once "
        "lets them run without the config. Keys used and ignored are reported; a file that fits neither format "
        "is refused with the offending keys.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid convert sysu_agw_p4_n8_lr_0.1_seed_0_best.t --config configs/sysu/agw.yaml --out agw_sysu.pt\n"
        "  vireid test configs/sysu/agw.yaml data.root=data/SYSU-MM01 --checkpoint agw_sysu.pt",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="reference checkpoint (.t / .pth)")
    parser.add_argument("--config", required=True, metavar="CONFIG", help="YAML config of the AGW or CAJ model")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--out", type=Path, required=True, metavar="DST.pt", help="vireid checkpoint to write")
    from vireid.cli.train import accept_late_overrides

    accept_late_overrides(parser)
    parser.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from vireid.cli.train import setup_console_logging
    from vireid.config import load_config
    from vireid.engine.run import convert_checkpoint

    cfg = load_config(args.config, args.overrides)
    setup_console_logging()
    path, ckpt = convert_checkpoint(cfg, args.source, args.out)
    what = ckpt["reference"].summary() if ckpt.get("reference") is not None else "vireid checkpoint"
    print(f"{args.source}: {what}")
    print(f"wrote {path} ({cfg.model.name}, {ckpt['num_classes']} classes, epoch {ckpt.get('epoch')})")
    return 0
