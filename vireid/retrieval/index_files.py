"""The files of a gallery index folder and how a generation is committed (see
:mod:`vireid.retrieval.index` for the layout and the crash-safety argument): generation file names, the
writer lock, the ``CURRENT`` pointer written last, ``fsync`` of files and folder, the raw vectors file,
and the removal of uncommitted and superseded generations."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vireid.errors import GalleryIndexError
from vireid.io import fsync_dir, write_text_atomic
from vireid.retrieval.faiss_build import ADD_CHUNK

FORMAT = "vireid-gallery-index"


FORMAT_VERSION = 1


CURRENT_FILE = "CURRENT"


VECTORS_FILE = "vectors.f32"


LOCK_FILE = ".lock"


GEN_RE = re.compile(r"^gen-(\d{6,})\.(faiss|sqlite)$")


def gen_name(generation: int, ext: str) -> str:
    return f"gen-{generation:06d}.{ext}"


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``folder/.lock``: one process changes an index at a time."""
    import fcntl

    with open(folder / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_leftovers_only(folder: Path) -> bool:
    """Whether ``folder`` holds only what a killed ``index build`` leaves (its lock, generation files and
    their temporary copies, the vectors file): such a folder may be overwritten."""
    for child in folder.iterdir():
        name = child.name.lstrip(".")
        if not (child.is_file() and (name == LOCK_FILE.lstrip(".") or name.startswith(("gen-", VECTORS_FILE))
                                     or name.startswith(CURRENT_FILE))):
            return False
    return True


def prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise GalleryIndexError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise GalleryIndexError(f"{folder}: folder is not empty; choose a new folder or pass overwrite (--overwrite)")
        if not (folder / CURRENT_FILE).is_file() and not build_leftovers_only(folder):
            raise GalleryIndexError(f"{folder}: not a vireid index folder (no {CURRENT_FILE}); refusing to overwrite it")
        for child in folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def write_vectors(folder: Path, start: int, feats: np.ndarray) -> None:
    """Rows ``start..`` of ``vectors.f32``: rows past ``start`` (an interrupted add's) are cut first."""
    path = folder / VECTORS_FILE
    row_bytes = feats.shape[1] * 4
    with open(path, "r+b" if path.exists() else "w+b") as fh:
        fh.truncate(start * row_bytes)
        fh.seek(start * row_bytes)
        for lo in range(0, feats.shape[0], ADD_CHUNK):
            fh.write(np.ascontiguousarray(feats[lo : lo + ADD_CHUNK], dtype=np.float32).tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def write_faiss(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))
    fsync_file(path)


def commit_generation(folder: Path, generation: int, index: Any, tmp_db: Path) -> None:
    """Write the FAISS file, move both files to their generation names, then replace CURRENT."""
    faiss_path = folder / gen_name(generation, "faiss")
    db_path = folder / gen_name(generation, "sqlite")
    tmp_faiss = folder / f".{faiss_path.name}.tmp"
    try:
        write_faiss(index, tmp_faiss)
        fsync_file(tmp_db)
        os.replace(tmp_faiss, faiss_path)
        os.replace(tmp_db, db_path)
        fsync_dir(folder)
        write_current(folder, generation)
    except BaseException:
        tmp_faiss.unlink(missing_ok=True)
        raise


def write_current(folder: Path, generation: int) -> None:
    """The commit point: ``CURRENT`` names ``generation`` (written to a temporary file, then renamed)."""
    write_text_atomic(folder / CURRENT_FILE, json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "generation": generation}) + "\n")


def list_generations(folder: Path) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for child in folder.iterdir():
        m = GEN_RE.match(child.name)
        if m:
            out.setdefault(int(m.group(1)), []).append(child)
    return out


def remove_uncommitted(folder: Path, committed: int) -> None:
    """Files of generations after ``committed`` and temporary files left by an interrupted update."""
    for gen, files in list_generations(folder).items():
        if gen > committed:
            for f in files:
                f.unlink(missing_ok=True)
    for child in folder.iterdir():
        if child.name.startswith(".gen-") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)


def remove_old_generations(folder: Path, *, keep_from: int) -> None:
    for gen, files in list_generations(folder).items():
        if gen < keep_from:
            for f in files:
                f.unlink(missing_ok=True)
