"""``vireid data``: check a dataset folder, list a protocol's query/gallery images, draw a contact sheet."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

from vireid.cli import HelpFormatter
from vireid.data.registry import build_dataset, dataset_names

#: Protocol options of the ``split`` command: CLI destination -> keyword of ``dataset.protocol``.
_PROTOCOL_OPTIONS = ("mode", "shots", "sampler", "perm_file", "direction", "metric")


def register(subparsers: argparse._SubParsersAction) -> None:
    names = dataset_names()
    parser = subparsers.add_parser(
        "data",
        help="check datasets, list protocol images, preview identities",
        description="Work with a dataset folder in its official layout (or a manifest.csv).",
        formatter_class=HelpFormatter,
        epilog="example:\n  vireid data check data/SYSU-MM01 --dataset sysu",
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    check = sub.add_parser(
        "check",
        help="validate a dataset folder, open every image and print its summary table",
        description="Parse the layout, open every image (unless --no-images) and print identities and "
        "images per split, modality and camera (training split and trial 0 of the default protocol).",
        formatter_class=HelpFormatter,
        epilog="examples:\n  vireid data check data/SYSU-MM01 --dataset sysu\n"
        "  vireid data check data/RegDB --dataset regdb --no-images",
    )
    _add_common(check, names)
    check.add_argument(
        "--no-images", action="store_true", help="check the layout only, do not open the images"
    )
    check.set_defaults(func=cmd_check)

    split = sub.add_parser(
        "split",
        help="print the query or gallery image paths of a protocol trial",
        description="Print the images a protocol uses in one trial, relative to ROOT, one per line, in the "
        "protocol's order. Options that a dataset's protocol does not take are rejected.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid data split data/SYSU-MM01 --dataset sysu --mode all --shots 1 --sampler community --trial 0 --set gallery\n"
        "  vireid data split data/RegDB --dataset regdb --direction infrared_to_visible --trial 1 --set query",
    )
    _add_common(split, names)
    split.add_argument(
        "--set",
        dest="image_set",
        required=True,
        choices=["query", "gallery", "train"],
        help="which images to print (train: the training records of the trial)",
    )
    split.add_argument(
        "--trial",
        type=int,
        default=None,
        help="trial number (SYSU-MM01, LLCM: 0..9; RegDB: 1..10); default: the protocol's first",
    )
    split.add_argument("--mode", choices=["all", "indoor"], default=None, help="SYSU-MM01 search mode")
    split.add_argument(
        "--shots", type=int, choices=[1, 10], default=None, help="SYSU-MM01 gallery images per (id, camera)"
    )
    split.add_argument(
        "--sampler", choices=["community", "official"], default=None, help="SYSU-MM01 gallery sampler"
    )
    split.add_argument(
        "--perm-file",
        default=None,
        help="SYSU-MM01 official sampler: rand_perm_cam.mat (default ROOT/exp/rand_perm_cam.mat)",
    )
    split.add_argument(
        "--direction",
        choices=["visible_to_infrared", "infrared_to_visible"],
        default=None,
        help="RegDB / LLCM: query modality first",
    )
    split.add_argument(
        "--metric",
        choices=["llcm", "regdb"],
        default=None,
        help="manifest: removal rule (llcm: drop same id and camera; regdb: none)",
    )
    split.set_defaults(func=cmd_split)

    preview = sub.add_parser(
        "preview",
        help="draw a contact sheet of a few identities in both modalities",
        description="Write a PNG contact sheet showing visible and infrared images of a few identities.",
        formatter_class=HelpFormatter,
        epilog="example:\n  vireid data preview data/SYSU-MM01 --dataset sysu --out sheet.png --identities 6",
    )
    _add_common(preview, names)
    preview.add_argument("--out", required=True, help="output image file (PNG)")
    preview.add_argument("--identities", type=int, default=6, help="number of identities shown (default 6)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the identity choice (default 0)")
    preview.set_defaults(func=cmd_preview)


def _add_common(parser: argparse.ArgumentParser, names: list[str]) -> None:
    parser.add_argument("root", metavar="ROOT", help="dataset folder (manifest: the folder or the CSV file)")
    parser.add_argument("--dataset", required=True, choices=names, help="dataset reader: " + ", ".join(names))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _error(args: argparse.Namespace, message: str) -> int:
    print(f"vireid data {args.data_command}: error: {message}", file=sys.stderr)
    return 2


def _protocol_options(args: argparse.Namespace, dataset: Any) -> tuple[dict[str, Any], list[str]]:
    """The given protocol options, and those the dataset's ``protocol`` does not take."""
    params = inspect.signature(dataset.protocol).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    options: dict[str, Any] = {}
    rejected: list[str] = []
    for key in _PROTOCOL_OPTIONS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in params or takes_any:
            options[key] = value
        else:
            rejected.append("--" + key.replace("_", "-"))
    return options, rejected


def cmd_check(args: argparse.Namespace) -> int:
    from vireid.data.summary import format_summary, summarize, summary_title

    dataset = build_dataset(args.dataset, args.root)
    if args.no_images:
        records = dataset.all_records()
        checked = f"{len(records)} images listed (not opened: --no-images)"
    else:
        n = dataset.check_images(progress=True)
        checked = f"{n} images opened"
    protocol = dataset.protocol()
    trial = protocol.trials[0]
    rows = summarize(dataset, protocol=protocol, trial=trial)
    print(format_summary(rows, title=summary_title(dataset, protocol, trial)))
    print(f"ok: {checked}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    dataset = build_dataset(args.dataset, args.root)
    options, rejected = _protocol_options(args, dataset)
    if rejected:
        verb = "does" if len(rejected) == 1 else "do"
        return _error(args, f"{', '.join(rejected)} {verb} not apply to dataset {args.dataset!r}")
    try:
        protocol = dataset.protocol(**options)
        trial = protocol.trials[0] if args.trial is None else args.trial
        protocol.check_trial(trial)
        if args.image_set == "query":
            records = protocol.query(trial)
        elif args.image_set == "gallery":
            records = protocol.gallery(trial)
        else:
            records = dataset.train_records(trial)
    except ValueError as exc:
        return _error(args, str(exc))
    out = sys.stdout
    for rec in records:
        out.write(dataset.relpath(rec) + "\n")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from vireid.data.preview import contact_sheet

    if args.identities < 1:
        return _error(args, f"--identities must be at least 1, got {args.identities}")
    dataset = build_dataset(args.dataset, args.root)
    path = contact_sheet(dataset, Path(args.out), identities=args.identities, seed=args.seed)
    print(f"wrote {path}")
    return 0
