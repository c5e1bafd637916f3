"""``vireid synth``: write a synthetic VI-ReID dataset in the official SYSU-MM01, RegDB or LLCM layout."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from vireid.cli import HelpFormatter


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 128x64, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic visible-infrared dataset in an official layout",
        description="Draw synthetic persons (body, hair, garments with colours, patterns and thermal "
        "properties, carried objects) through each camera of SYSU-MM01, RegDB or LLCM -- visible images in "
        "colour, infrared images as intensity only -- and write them with the dataset's split files, so "
        "that every vireid command runs on them unchanged. The same arguments give byte-identical files.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid synth sysu --out data/synth-sysu --ids 100 --seed 0\n"
        "  vireid synth regdb --out data/synth-regdb --ids 40\n"
        "  vireid synth sysu --out data/sysu-shape --shape-from rand_perm_cam.mat --size 64x32",
    )
    parser.add_argument("dataset", choices=["sysu", "regdb", "llcm"], help="which official layout to write")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must be empty or new)")
    parser.add_argument(
        "--ids", type=int, default=None, help="number of persons (with --shape-from: a subset of the real ids)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--test-ids", type=int, default=None, metavar="N",
                        help="sysu only: N test identities, the rest train/val (default: the real proportions, "
                        "about a fifth)")
    parser.add_argument(
        "--images-per-camera",
        type=int,
        default=None,
        help="images per (person, camera): default 6 for sysu, 4 for llcm, 10 per modality for regdb",
    )
    parser.add_argument(
        "--shape-from",
        type=Path,
        default=None,
        metavar="FILE",
        help="sysu only: the authors' rand_perm_cam.mat; copy the real ids, cameras and image counts "
        "(test/train ids from test_id.mat/train_id.mat next to it when present)",
    )
    parser.add_argument(
        "--size", type=_size, default=(128, 64), metavar="HxW", help="image height x width (default 128x64)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: CPU count, at most 8)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset already in --out (removes its layout folders)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from vireid.data.synthetic import generate

    if args.ids is None and args.shape_from is None:
        print("vireid synth: error: --ids is required (unless --shape-from is given)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        out = generate(
            args.dataset,
            args.out,
            ids=args.ids,
            seed=args.seed,
            images_per_camera=args.images_per_camera,
            shape_from=args.shape_from,
            size=args.size,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.quiet,
            test_ids=args.test_ids,
        )
    except ValueError as exc:
        print(f"vireid synth: error: {exc}", file=sys.stderr)
        return 2
    import json

    from vireid.data.synthetic import MARKER_DONE

    info = json.loads((out / MARKER_DONE).read_text(encoding="utf-8"))
    print(
        f"wrote {info['images']} images of {info['ids']} persons ({args.dataset} layout) to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0
