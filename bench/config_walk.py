"""Follow the configuration through a training run: which vireid files read it, and how often the reading
moves between files.

Two traces of ``run_training`` (tiny DAM, one step, on a small synthetic SYSU-MM01 set):

- ``reads`` (default): every attribute or item read of an OmegaConf config, attributed to the vireid file
  whose code made it;
- ``calls``: every call of a vireid function that receives the config, or a section of it, as an argument
  (where the config travels, read or not).

Printed: the number of events, the files, the *stays* (runs of consecutive events in one file) and the
*returns* (stays in a file the walk had already left), the walk itself, then the events per file. Fewer
files and returns mean the configuration is read in fewer places (docs/architecture.md, "Two journeys").

Usage::

    python bench/config_walk.py [--by reads|calls]
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

import vireid

ROOT = str(Path(vireid.__file__).parent)
REPO = Path(vireid.__file__).resolve().parents[1]


@contextmanager
def config_reads(root: str = ROOT) -> Iterator[list[str]]:
    """Inside, every attribute or item read of an OmegaConf config made by code under ``root`` is appended to the
    yielded list, as that file's path relative to ``root`` (OmegaConf's own frames skipped)."""
    reads: list[str] = []
    get_attr, get_item = DictConfig.__getattr__, DictConfig.__getitem__

    def record() -> None:
        frame = sys._getframe(2)
        while frame and "omegaconf" in frame.f_code.co_filename:
            frame = frame.f_back
        if frame and frame.f_code.co_filename.startswith(root):
            reads.append(os.path.relpath(frame.f_code.co_filename, root))

    def traced_attr(self, key):
        record()
        return get_attr(self, key)

    def traced_item(self, key):
        record()
        return get_item(self, key)

    DictConfig.__getattr__, DictConfig.__getitem__ = traced_attr, traced_item
    try:
        yield reads
    finally:
        DictConfig.__getattr__, DictConfig.__getitem__ = get_attr, get_item


def main() -> None:
    import argparse

    from vireid.config import load_config
    from vireid.data.synthetic import generate
    from vireid.engine.run import run_training

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--by", choices=("reads", "calls"), default="reads")
    by = parser.parse_args().by
    calls: list[str] = []

    def traced_call(frame, event, arg):
        code = frame.f_code
        if event != "call" or not code.co_filename.startswith(ROOT):
            return
        # at a call the locals are the arguments, then the closure's variables: the arguments only
        arguments = list(frame.f_locals.values())[:code.co_argcount + code.co_kwonlyargcount]
        if any(isinstance(v, DictConfig) for v in arguments):
            calls.append(os.path.relpath(code.co_filename, ROOT))

    with tempfile.TemporaryDirectory(prefix="vireid-config-walk-") as folder:
        tmp = Path(folder)
        generate("sysu", tmp / "data", ids=10, seed=0, images_per_camera=2, size=(32, 16), workers=1, progress=False)
        cfg = load_config(REPO / "configs" / "sysu" / "dam_tiny.yaml",
                          [f"data.root={tmp / 'data'}", f"output_dir={tmp / 'run'}", "train.epochs=1",
                           "train.iters_per_epoch=1", "test.trials=1", "data.ids_per_batch=2", "train.eval_every=0"])
        if by == "reads":
            with config_reads() as reads:
                run_training(cfg)
        else:
            sys.setprofile(traced_call)
            try:
                run_training(cfg)
            finally:
                sys.setprofile(None)
            reads = calls
    stays = reads[:1]
    for name in reads[1:]:
        if name != stays[-1]:
            stays.append(name)
    seen: set[str] = set()
    returns = 0
    for name in stays:
        returns += name in seen
        seen.add(name)
    print(f"{len(reads)} {by} in {len(set(reads))} files, {len(stays)} stays, {returns} returns")
    print("walk: " + " > ".join(stays))
    for name, count in Counter(reads).most_common():
        print(f"  {count:4d}  {name}")


if __name__ == "__main__":
    main()
