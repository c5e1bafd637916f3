"""``vireid visualize``: pictures from trained models, one subcommand each.

Structure: :func:`register` adds the ``visualize`` group; each subcommand has an
``add_<name>_parser(sub)`` function that adds its parser and sets ``func`` to its ``cmd_<name>(args)``.
A new subcommand adds its two functions and one line to :func:`register`.

- ``attention``: CSA spatial attention (FAFE) or activation maps (CNN models) over person images,
  next to a baseline's (paper A Fig. 3).
- ``ranks``: top-k ranked lists of chosen or worst queries, correct matches framed green, wrong red
  (paper A Fig. 4).
- ``curves``: CMC curves and per-trial metrics of ``vireid test --json`` results, runs side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="draw pictures: attention maps, ranked lists, CMC and per-trial curves",
        description="Pictures from trained models. Run 'vireid visualize WHAT --help' for each.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid visualize ranks configs/sysu/dam.yaml --checkpoint runs/sysu/dam/checkpoints/last.pt --out ranks.png\n"
        "  vireid visualize curves runs/sysu/dam/results.json runs/sysu/caj/results.json --out curves.png",
    )
    sub = parser.add_subparsers(dest="visualize_command", metavar="WHAT")
    add_attention_parser(sub)
    add_ranks_parser(sub)
    add_curves_parser(sub)
    parser.set_defaults(func=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def load_trained_model(config: str | Path, overrides: list[str], checkpoint: str | Path, device: Any = "cpu"):
    """``(cfg, model)``: the model of ``config`` (with overrides) holding the weights of ``checkpoint``
    (strict, :func:`vireid.models.loading.load_trained_model`), in eval mode on ``device``."""
    from vireid.config import load_config
    from vireid.models.loading import load_trained_model as load

    cfg = load_config(config, overrides)
    model, _ = load(cfg, checkpoint)
    return cfg, model.to(device).eval()


# -- attention ------------------------------------------------------------------------------------
def add_attention_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "attention",
        help="attention / activation maps over person images (paper A Fig. 3)",
        description="Overlay a trained model's map on person images: FAFE's CSA spatial attention (eq 12), "
        "or for CNN models (AGW, CAJ, DAM) the activation map (channel sum of squared final-stage "
        "activations). Each map is min-max normalised per image, upsampled, coloured (jet) and blended "
        "over the image as the model sees it (resized to data.height x data.width). With "
        "--baseline-config/--baseline-checkpoint the baseline's map is drawn next to it. Writes "
        "<folder>_<folder>_<image>_attention.png per image (e.g. cam3_0007_0001_attention.png) and "
        "attention_grid.png to --out and prints their paths.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid visualize attention configs/sysu/fafe.yaml --checkpoint runs/sysu/fafe/checkpoints/last.pt \\\n"
        "      --images data/SYSU-MM01/cam3/0001/0001.jpg --modality infrared --out out/attention \\\n"
        "      --baseline-config configs/sysu/agw.yaml --baseline-checkpoint runs/sysu/agw/checkpoints/last.pt",
    )
    parser.add_argument("config", help="YAML config of the model")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="vireid checkpoint")
    parser.add_argument("--images", nargs="+", required=True, metavar="IMG", help="person images")
    parser.add_argument("--modality", choices=("visible", "infrared"), default="visible",
                        help="modality of the images (selects the stream of two-stream models)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--baseline-config", type=Path, default=None, metavar="C", help="baseline's YAML config")
    parser.add_argument("--baseline-checkpoint", type=Path, default=None, metavar="P", help="baseline's checkpoint")
    parser.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity in [0, 1] (default 0.5)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    from vireid.cli.train import accept_late_overrides

    accept_late_overrides(parser)
    parser.set_defaults(func=cmd_attention)


def cmd_attention(args: argparse.Namespace) -> int:
    from vireid.errors import ConfigError
    from vireid.visualization.attention import MapSource, render_attention

    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1], got {args.alpha}")
    if (args.baseline_config is None) != (args.baseline_checkpoint is None):
        raise ConfigError("--baseline-config and --baseline-checkpoint go together: give both or neither")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"--images: no such file: {', '.join(missing)}")
    cfg, model = load_trained_model(args.config, args.overrides, args.checkpoint, args.device)
    sources = [MapSource(model, Path(args.config).stem)]
    if args.baseline_config is not None:
        bcfg, baseline = load_trained_model(args.baseline_config, [], args.baseline_checkpoint, args.device)
        if (bcfg.data.height, bcfg.data.width) != (cfg.data.height, cfg.data.width):
            raise ConfigError(
                f"the baseline takes {bcfg.data.height}x{bcfg.data.width} images ({args.baseline_config}), the model "
                f"{cfg.data.height}x{cfg.data.width} ({args.config}); both maps are drawn on the same image size"
            )
        sources.append(MapSource(baseline, f"baseline {Path(args.baseline_config).stem}"))
    paths = render_attention(sources, args.images, modality=args.modality,
                             size=(int(cfg.data.height), int(cfg.data.width)), out_dir=args.out,
                             alpha=args.alpha, device=args.device)
    for path in paths:
        print(path)
    return 0


# -- ranks ----------------------------------------------------------------------------------------
def add_ranks_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ranks",
        help="top-k ranked lists of queries, correct matches green, wrong red (paper A Fig. 4)",
        description="Extract the features of one trial of CONFIG's test protocol with the checkpoint's model "
        "and draw the top-k ranked list of each chosen query (the protocol's removal rule applied, as in "
        "evaluation): the first query of each identity (default), the worst queries (--worst: first true "
        "match ranked lowest, one per identity before a second of any), or given query indices (--query-index). "
        "A row whose true match ranks below --topk ends with it, labelled with its rank. --layout slide fills a "
        "16:9 picture.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid visualize ranks configs/sysu/dam.yaml --checkpoint runs/sysu/dam/checkpoints/last.pt --out ranks.png\n"
        "  vireid visualize ranks configs/sysu/dam.yaml --checkpoint runs/sysu/dam/checkpoints/last.pt --worst 8 "
        "--out worst.png",
    )
    parser.add_argument("config", help="YAML config of the model (its data.* and test.* keys give the protocol)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="vireid checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--trial", type=int, default=None, help="protocol trial (default: its first)")
    parser.add_argument("--topk", type=int, default=10, help="gallery images per row (default: 10)")
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--queries", type=int, default=8, help="rows: first query of N identities (default: 8)")
    choose.add_argument("--worst", type=int, metavar="N", help="rows: the N queries whose first match ranks lowest")
    choose.add_argument("--query-index", type=int, nargs="+", metavar="I", help="rows: these query indices")
    parser.add_argument("--layout", choices=("sheet", "slide"), default="sheet",
                        help="sheet: thumbnails at their size, as tall as the rows need; slide: everything scaled "
                        "to fill a 1920x1080 (16:9) picture")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(func=cmd_ranks)


def cmd_ranks(args: argparse.Namespace) -> int:
    from vireid.data import build_dataset
    from vireid.engine.run import build_protocol
    from vireid.errors import VireidError
    from vireid.evaluation.evaluator import Evaluator
    from vireid.visualization.ranks import ranked_list_picture

    if args.topk < 1:
        raise VireidError(f"--topk must be at least 1, got {args.topk}")
    cfg, model = load_trained_model(args.config, args.overrides, args.checkpoint, args.device)
    protocol = build_protocol(build_dataset(cfg.data.name, cfg.data.root), cfg)
    trial = protocol.trials[0] if args.trial is None else args.trial
    evaluator = Evaluator.from_config(cfg, protocol, device=args.device, progress=True)
    from vireid.data.protocols import describe_protocol
    from vireid.data.synthetic import is_synthetic
    from vireid.visualization.ranks import SLIDE_SIZE

    data = describe_protocol(protocol, synthetic=is_synthetic(str(cfg.data.root)))
    title = f"{cfg.model.name.upper()} ({Path(args.checkpoint).name}) on {data}, trial {trial}"
    print(ranked_list_picture(evaluator, model, args.out, trial=trial, how="worst" if args.worst else "per_identity",
                              count=args.worst or args.queries, rows=args.query_index, topk=args.topk, title=title,
                              canvas=SLIDE_SIZE if args.layout == "slide" else None))
    return 0


# -- curves ---------------------------------------------------------------------------------------
def add_curves_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curves",
        help="CMC curves and per-trial metrics of results files, runs side by side",
        description="Plot the mean CMC curve (rank 1..20) and the per-trial Rank-1, mAP and mINP of each "
        "results file written by 'vireid test --json' or 'vireid train' (results.json).",
        formatter_class=HelpFormatter,
        epilog="example:\n  vireid visualize curves runs/sysu/dam/results.json runs/sysu/caj/results.json "
        "--labels DAM CAJ --out curves.png",
    )
    parser.add_argument("results", nargs="+", type=Path, help="results JSON files")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--labels", nargs="+", help="one label per results file (default: the run folder names)")
    parser.set_defaults(func=cmd_curves)


def cmd_curves(args: argparse.Namespace) -> int:
    from vireid.visualization.curves import plot_curves

    print(plot_curves(args.results, args.out, labels=args.labels))
    return 0
