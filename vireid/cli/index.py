"""``vireid index``: build a persistent gallery index, add images to it, describe it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vireid.cli import HelpFormatter
from vireid.cli.embed import (
    add_image_options,
    add_model_options,
    build_cli_extractor,
    check_backend_args,
    device_name,
    progress_enabled,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build, extend and describe a gallery index (FAISS + SQLite)",
        description="A gallery index is a folder holding the FAISS index of the gallery features and their "
        "metadata (SQLite), with the model it was built with. Updates are crash-safe: an interrupted 'add' "
        "leaves the index as it was.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid index build configs/sysu/agw.yaml --checkpoint last.pt --images gallery/ --out idx\n"
        "  vireid index add idx --images new_photos/\n"
        "  vireid index info idx",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    sub = parser.add_subparsers(dest="index_command", metavar="SUBCOMMAND")

    build = sub.add_parser(
        "build",
        help="embed gallery images (or read a feature file) and write a new index",
        description="Embed the images of a folder (--modality, default visible) or a manifest.csv with the "
        "model of CONFIG and --checkpoint (CONFIG defaults to the checkpoint's recorded config), or read "
        "the features of 'vireid embed' (--features), and write the index to --out. --kind flat is exact "
        "inner-product search; ivfpq is an inverted file with product quantisation (approximate, for large "
        "galleries; nprobe lists searched per query); auto picks ivfpq above 200,000 images.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid index build configs/sysu/agw.yaml --checkpoint runs/agw/checkpoints/last.pt --images gallery/ "
        "--modality visible --out idx\n"
        "  vireid index build --features gallery.npz --out idx --kind ivfpq --nlist 1024 --nprobe 32",
    )
    build.add_argument("config", nargs="?", default=None, help="YAML config file of the model (optional)")
    build.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="index folder to create")
    add_image_options(build, required=False, folder_modality="default: visible")
    build.add_argument("--features", type=Path, metavar="FEATS", default=None,
                       help="build from a feature file of 'vireid embed' instead of images")
    build.add_argument("--kind", choices=["auto", "flat", "ivfpq"], default="auto", help="index kind (default auto)")
    build.add_argument("--nlist", type=int, default=None, help="IVF-PQ: number of lists (default ~sqrt(N))")
    build.add_argument("--pq-m", type=int, default=None, help="IVF-PQ: sub-quantizers (divides the dimension)")
    build.add_argument("--nbits", type=int, default=None, help="IVF-PQ: bits per sub-quantizer code (default 8)")
    build.add_argument("--nprobe", type=int, default=None, help="IVF-PQ: lists searched per query (default nlist/16)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing index in --out")
    build.add_argument("--image-root", type=Path, nargs="+", default=None, metavar="DIR",
                       help="folder(s) the gallery images lie in, recorded for 'vireid serve', which serves nothing "
                       "outside them (default: the --images folder, or the root recorded in --features)")
    build.add_argument("--allow-outside-roots", action="store_true",
                       help="accept images outside the image roots (the service will not serve them)")
    add_model_options(build)
    from vireid.cli.train import accept_late_overrides

    accept_late_overrides(build)
    build.set_defaults(func=cmd_build)

    add = sub.add_parser(
        "add",
        help="embed more gallery images (or read a feature file) and add them to an index",
        description="Embed the images with the model the index was built with (its recorded config and "
        "checkpoint, or --checkpoint with the same fingerprint) and add them as a new generation of the "
        "index. A folder's images get --modality (default: the gallery's modality).",
        formatter_class=HelpFormatter,
        epilog="examples:\n  vireid index add idx --images new_photos/\n  vireid index add idx --features more.npz",
    )
    add.add_argument("index", type=Path, metavar="DIR", help="index folder")
    add_image_options(add, required=False, folder_modality="default: the modality most of the gallery has")
    add.add_argument("--features", type=Path, metavar="FEATS", default=None,
                     help="add the features of a feature file of 'vireid embed' (same model) instead of images")
    add.add_argument("--checkpoint", type=Path, metavar="PATH", default=None,
                     help="the index's checkpoint at another location (must have the recorded fingerprint)")
    add.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="PyTorch or ONNX Runtime")
    add.add_argument("--onnx", type=Path, nargs="+", metavar="GRAPH", default=None, help="exported ONNX graph(s)")
    add.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    add.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default 64)")
    add.add_argument("--allow-outside-roots", action="store_true",
                     help="accept images outside the index's image roots (the service will not serve them)")
    add.set_defaults(func=cmd_add)

    info = sub.add_parser("info", help="print an index's size, kind, model and parameters",
                          description="Print what an index holds and which model built it.",
                          formatter_class=HelpFormatter, epilog="example:\n  vireid index info idx --json")
    info.add_argument("index", type=Path, metavar="DIR", help="index folder")
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    info.set_defaults(func=cmd_info)


def dataset_layout(source: Path, dataset: str | None) -> str | None:
    """The dataset layout ``--images`` is read with (named, or detected), None for a folder or a manifest."""
    from vireid.data.registry import detect_dataset
    from vireid.retrieval.image_lists import PLAIN_FOLDER

    if dataset == PLAIN_FOLDER or not source.is_dir():
        return None
    return dataset or detect_dataset(source)


def _fail(message: str) -> int:
    print(f"vireid index: error: {message}", file=sys.stderr)
    return 2


def cmd_build(args: argparse.Namespace) -> int:
    from vireid.retrieval.embed import embed
    from vireid.retrieval.feature_files import load_features
    from vireid.retrieval.image_lists import list_images
    from vireid.retrieval.index import GalleryIndex

    if (args.images is None) == (args.features is None):
        return _fail("give exactly one of --images and --features")
    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config, *args.overrides]
        args.config = None
    if args.features is not None:
        features = load_features(args.features)
        roots = args.image_root or ([features.model_info["image_root"]] if features.model_info.get("image_root")
                                    else None)
        if roots is None and not args.allow_outside_roots:
            return _fail(f"{args.features} records no image root; give the folder its images lie in (--image-root DIR)")
    else:
        problem = None if args.backend == "onnx" or args.checkpoint else "--checkpoint is required with --images"
        problem = problem or check_backend_args(args)
        if problem:
            return _fail(problem)
        cfg = _config(args)
        source = Path(args.images)
        layout = dataset_layout(source, args.dataset)
        modality = args.modality if args.modality or source.is_file() or layout else "visible"
        rows = list_images(source, modality=modality, split=args.split, dataset=args.dataset)
        features = embed(build_cli_extractor(args, cfg), rows, progress=progress_enabled(), workers=args.workers)
        roots = args.image_root or [source if source.is_dir() else source.parent]
    index = GalleryIndex.build(
        args.out, features.embeddings(), features.metadata, model_info=features.model_info, kind=args.kind,
        nlist=args.nlist, pq_m=args.pq_m, nbits=args.nbits, nprobe=args.nprobe, overwrite=args.overwrite,
        progress=progress_enabled(), image_roots=roots, allow_outside_roots=args.allow_outside_roots,
    )
    print(_describe(index.info()))
    return 0


def _config(args: argparse.Namespace) -> Any:
    """CONFIG with its overrides, else the checkpoint's recorded config, else the defaults (onnx backend)."""
    from vireid.config import config_from_yaml, load_config
    from vireid.errors import CheckpointError, ConfigError
    from vireid.models.checkpoint import load_checkpoint

    if args.config is not None:
        return load_config(args.config, args.overrides)
    if args.overrides:
        raise ConfigError(f"key=value overrides ({' '.join(args.overrides)}) need a CONFIG file")
    if args.checkpoint is None:
        return load_config(None)
    recorded = load_checkpoint(args.checkpoint).get("config")
    if not recorded:
        raise CheckpointError(f"{args.checkpoint}: checkpoint records no config; give the CONFIG file")
    return config_from_yaml(recorded, f"{args.checkpoint} (recorded config)")


def cmd_add(args: argparse.Namespace) -> int:
    from vireid.retrieval.feature_files import load_features
    from vireid.retrieval.image_lists import list_images
    from vireid.retrieval.index import Embeddings, GalleryIndex
    from vireid.retrieval.search import Searcher

    if (args.images is None) == (args.features is None):
        return _fail("give exactly one of --images and --features")
    if args.features is not None:
        features = load_features(args.features)
        index = GalleryIndex.open(args.index)
        new_ids = index.add(features.embeddings(), features.metadata, progress=progress_enabled(),
                            allow_outside_roots=args.allow_outside_roots)
    else:
        if args.backend == "torch" and args.onnx:
            return _fail("--onnx is used with --backend onnx only")
        searcher = Searcher.from_index(args.index, checkpoint=args.checkpoint, device=device_name(args.device),
                                       backend=args.backend, onnx=args.onnx, batch_size=args.batch_size)
        index = searcher.index
        source = Path(args.images)
        modality = args.modality
        if modality is None and not source.is_file() and not dataset_layout(source, args.dataset):
            counts = index.modalities()
            modality = max(counts, key=counts.get) if counts else "visible"
        rows = list_images(source, modality=modality, split=args.split, dataset=args.dataset)
        feats = searcher.extractor.embed_metadata(rows, progress=progress_enabled(), workers=args.workers)
        new_ids = index.add(Embeddings(feats, searcher.fingerprint), rows, progress=progress_enabled(),
                            allow_outside_roots=args.allow_outside_roots)
    # the ids this command added (other processes may add concurrently: len(index) would count theirs too)
    print(f"added {len(new_ids)} images (generation {index.generation})")
    print(_describe(index.info()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vireid.retrieval.index import GalleryIndex

    info = GalleryIndex.open(args.index).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(_describe(info))
    return 0


def _describe(info: dict[str, Any]) -> str:
    mi = info["model_info"]
    params = ", ".join(f"{k}={v}" for k, v in sorted(info["params"].items()))
    modalities = ", ".join(f"{m} {n}" for m, n in info["modalities"].items())
    lines = [
        f"index: {info['path']} (generation {info['generation']})",
        f"images: {info['count']} ({modalities}), dimension {info['dim']}",
        "person ids: " + (f"{info['with_pid']} of {info['count']} images" if info.get("with_pid")
                          else "none (a folder of images; search results cannot say who they are)"),
        f"kind: {info['kind']}" + (f" ({params})" if params else ""),
        f"model: {mi.get('model', '?')} {mi.get('arch', '')} fingerprint {str(mi.get('fingerprint'))[:12]}, "
        f"input {mi.get('input_size')}, flip={mi.get('flip')}",
        f"checkpoint: {mi.get('checkpoint')}",
        f"created: {info['created']}, updated: {info['updated']}",
    ]
    return "\n".join(lines)
