"""``vireid embed``: features of a folder of images or a manifest, saved with their metadata."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vireid.cli import HelpFormatter


def progress_enabled() -> bool:
    """Progress bars on an interactive terminal only (as ``vireid train`` and ``vireid test``)."""
    return sys.stderr.isatty()


def device_name(spec: str) -> str:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` as a torch device string."""
    from vireid.engine.distributed import resolve_device

    return str(resolve_device(spec))


def add_model_options(parser: argparse.ArgumentParser, *, checkpoint_required: bool = False) -> None:
    """``--checkpoint``, ``--backend``, ``--onnx``, ``--device``, ``--batch-size``, ``--flip``."""
    parser.add_argument("--checkpoint", type=Path, metavar="PATH", required=checkpoint_required,
                        help="vireid checkpoint (last.pt or best.pt)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                        help="run the model with PyTorch (default) or ONNX Runtime")
    parser.add_argument("--onnx", type=Path, nargs="+", metavar="GRAPH", default=None,
                        help="ONNX graph(s) written by 'vireid export' (model.onnx stands for model_visible.onnx "
                        "and model_infrared.onnx)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="images per forward pass (default test.batch_size)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation: mean of the features of the image and its mirror "
                        "(default test.flip)")


def add_image_options(parser: argparse.ArgumentParser, *, required: bool = True,
                      folder_modality: str = "required for a folder") -> None:
    """``--images``, ``--modality``, ``--split``, ``--workers``; ``folder_modality`` says what a folder's
    modality is when ``--modality`` is not given (in the help)."""
    parser.add_argument("--images", type=Path, metavar="DIR|manifest.csv", required=required,
                        help="a dataset in its official layout (person ids and cameras from its files), a folder "
                        "of images (searched recursively; no person ids) or a manifest.csv")
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="the layout of --images: sysu, regdb, llcm (default: detected from its files) or "
                        "'folder' (plain images, no person ids)")
    parser.add_argument("--modality", choices=["visible", "infrared"], default=None,
                        help=f"modality of the images of a folder ({folder_modality}); with a dataset or a "
                        "manifest, keep only its images of this modality")
    parser.add_argument("--split", choices=["test", "train", "all", "query", "gallery"], default=None,
                        help="with a dataset: test (its test identities, default), train or all; with a manifest: "
                        "keep only the rows of this split (train, query, gallery)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="processes reading images (default 0: in this process)")


def build_cli_extractor(args: argparse.Namespace, cfg: Any) -> Any:
    from vireid.retrieval.embed import build_extractor

    flip = bool(cfg.test.flip) if args.flip is None else bool(args.flip)
    batch = int(cfg.test.batch_size) if args.batch_size is None else int(args.batch_size)
    return build_extractor(backend=args.backend, cfg=cfg, checkpoint=args.checkpoint, onnx=args.onnx,
                           device=device_name(args.device), batch_size=batch, flip=flip)


def check_backend_args(args: argparse.Namespace) -> str | None:
    """An error message when the backend options do not fit together, else None."""
    if args.backend == "torch" and args.checkpoint is None:
        return "--checkpoint is required with --backend torch"
    if args.backend == "torch" and args.onnx:
        return "--onnx is used with --backend onnx only"
    if args.backend == "onnx" and not args.onnx:
        return "--backend onnx needs --onnx GRAPH (write it with 'vireid export')"
    return None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="extract features of images and save them with their metadata",
        description="Extract the L2-normalised test features of the images of a folder (all of --modality; "
        "camera parsed from a cam<N>/ folder or a _c<N> file-name token, else 0) or of a manifest.csv "
        "(pid, camera and modality from its rows) with the model of CONFIG and --checkpoint, or with "
        "exported ONNX graphs (--backend onnx). Writes OUT.npz (features, model info and fingerprint) and "
        "OUT.jsonl (one line of metadata per image: path, pid, camera, modality, timestamp), each atomically.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid embed configs/sysu/agw.yaml --checkpoint runs/agw/checkpoints/last.pt --images photos/ "
        "--modality infrared --out feats\n"
        "  vireid embed configs/sysu/agw.yaml --checkpoint last.pt --images data/mine/manifest.csv --split gallery "
        "--out gallery --flip\n"
        "  vireid embed configs/sysu/agw.yaml --backend onnx --onnx model.onnx --images photos/ --modality visible "
        "--out feats",
    )
    parser.add_argument("config", help="YAML config file of the model")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    add_image_options(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="OUT",
                        help="output name: OUT.npz and OUT.jsonl are written")
    add_model_options(parser)
    from vireid.cli.train import accept_late_overrides

    accept_late_overrides(parser)
    parser.set_defaults(func=cmd_embed)


def cmd_embed(args: argparse.Namespace) -> int:
    from vireid.config import load_config
    from vireid.retrieval.embed import embed
    from vireid.retrieval.feature_files import save_features
    from vireid.retrieval.image_lists import list_images

    problem = check_backend_args(args)
    if problem:
        print(f"vireid embed: error: {problem}", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.overrides)
    rows = list_images(args.images, modality=args.modality, split=args.split, dataset=args.dataset)
    extractor = build_cli_extractor(args, cfg)
    features = embed(extractor, rows, progress=progress_enabled(), workers=args.workers)
    source = Path(args.images).resolve()
    features.model_info["image_root"] = str(source if source.is_dir() else source.parent)  # for 'index build'
    npz, jsonl = save_features(args.out, features)
    print(f"{len(features)} features of dimension {features.features.shape[1]} ({extractor.backend}, "
          f"flip={extractor.flip}, model {extractor.fingerprint[:12]})")
    print(f"features: {npz}\nmetadata: {jsonl}")
    return 0
