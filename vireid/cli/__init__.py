"""The ``vireid`` command: a thin layer over the library.

Each command group lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
namespace, returning an exit status). Modules are imported lazily by name so that ``vireid --help``
stays fast and a heavy optional dependency is only imported by the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that spin while waiting make PyTorch's CPU kernels 10-20x slower as soon as another
# process uses the cores (measured: tiny DAM step 7 s instead of 0.45 s on 2 shared cores). Passive
# waiting costs nothing measurable on an idle machine. Set before torch is imported; a user's own
# OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Sequence

from vireid import __version__
from vireid.errors import VireidError

#: Command modules in the order ``vireid --help`` lists them.
COMMAND_MODULES = ["synth", "data", "train", "test", "report", "export", "embed", "index", "search", "demo", "visualize",
                   "serve", "convert"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in each command's epilog as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vireid",
        description="Visible-infrared person re-identification toolkit.",
        formatter_class=HelpFormatter,
        epilog="Run 'vireid COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"vireid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"vireid.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except VireidError as exc:
        print(f"vireid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
