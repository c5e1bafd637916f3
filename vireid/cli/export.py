"""``vireid export``: a trained model's feature extractor as ONNX graphs, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint's feature extractor to ONNX (one graph per modality)",
        description="Export the test-feature extractor of CONFIG with the weights of --checkpoint. The "
        "two-stream model routes images by modality, so each modality gets its own graph: input 'images' "
        "[batch, 3, H, W] in [0, 1] (dynamic batch; the model normalises its own input), output 'features' "
        "[batch, D], L2-normalised. --modality both (the default) writes three files: --out itself (model.onnx: "
        "one graph with both branches, outputs 'features_visible' and 'features_infrared', every image through "
        "both: the single file to deploy) and, beside it, model_visible.onnx and model_infrared.onnx (one branch "
        "each, half the work); 'vireid test --onnx model.onnx' and every other --onnx option take model.onnx and "
        "run the one-branch files beside it when they are there. One modality writes --out itself. Each graph "
        "is run with ONNX Runtime and compared with PyTorch; the max abs difference is printed and a difference "
        "above --tolerance is an error.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid export configs/sysu/agw.yaml --checkpoint runs/agw/checkpoints/last.pt --out model.onnx\n"
        "  vireid export configs/sysu/agw.yaml --checkpoint last.pt --out ir.onnx --modality infrared",
    )
    parser.add_argument("config", help="YAML config file of the model")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="vireid checkpoint")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    parser.add_argument("--out", type=Path, required=True, metavar="PATH",
                        help="output file, e.g. model.onnx (with both modalities also model_visible.onnx and "
                        "model_infrared.onnx beside it)")
    parser.add_argument("--modality", choices=["visible", "infrared", "both"], default="both",
                        help="which branch(es) to export (default both: two files)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted |PyTorch - ONNX Runtime| of the parity check (default 1e-4)")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    from vireid.cli.train import accept_late_overrides

    accept_late_overrides(parser)
    parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from vireid.config import load_config
    from vireid.retrieval.embed import load_model
    from vireid.retrieval.export import describe_graphs, export_onnx

    cfg = load_config(args.config, args.overrides)
    loaded = load_model(cfg, args.checkpoint, device="cpu")
    result = export_onnx(loaded, args.out, modality=args.modality, opset=args.opset, check=not args.no_check,
                         tolerance=args.tolerance)
    if "both" in result.paths:
        print(f"wrote {result.paths['both']} (both branches in one graph) and beside it "
              f"{result.paths['visible'].name}, {result.paths['infrared'].name} (one branch each); "
              f"--onnx {args.out} uses them")
    else:
        print(f"wrote {', '.join(str(p) for p in result.paths.values())}")
    for line in describe_graphs(result.paths):
        print(line)
    for mod, diff in result.max_abs_diff.items():
        if diff is None:
            print(f"parity check ({mod}): skipped")
        else:
            print(f"parity check ({mod}): max abs difference PyTorch vs ONNX Runtime = {diff:.3g} "
                  f"(tolerance {args.tolerance:g})")
    return 0
