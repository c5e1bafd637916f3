"""``vireid visualize``: pictures from trained models, one subcommand each.

Structure: :func:`register` adds the ``visualize`` group; each subcommand has an
``add_<name>_parser(sub)`` function that adds its parser and sets ``func`` to its ``cmd_<name>(args)``.
A new subcommand adds its two functions and one line to :func:`register`.

- ``attention``: CSA spatial attention (FAFE) or activation maps (CNN models) over person images,
  next to a baseline's (paper A Fig. 3).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="draw pictures from trained models (attention maps, ...)",
        description="Pictures from trained models. Run 'vireid visualize WHAT --help' for each.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="visualize_command", metavar="WHAT")
    add_attention_parser(sub)
    parser.set_defaults(func=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def load_trained_model(config: str | Path, overrides: list[str], checkpoint: str | Path, device: Any = "cpu"):
    """``(cfg, model)``: the model of ``config`` (with overrides) holding the weights of a vireid
    ``checkpoint`` (strict: a file that does not fit is a :class:`~vireid.errors.CheckpointError`),
    in eval mode on ``device``."""
    import copy

    from vireid.config import load_config
    from vireid.engine.checkpoint import apply_model_state, load_checkpoint
    from vireid.errors import CheckpointError
    from vireid.models import build_model

    cfg = load_config(config, overrides)
    ckpt = load_checkpoint(checkpoint)
    num_classes = ckpt.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise CheckpointError(f"{checkpoint}: checkpoint does not record num_classes")
    model_cfg = copy.deepcopy(cfg)
    model_cfg.model.pretrained = "none"  # every weight comes from the checkpoint
    model = build_model(model_cfg, num_classes)
    apply_model_state(model, ckpt["model"], source=str(checkpoint), strict=True)
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
