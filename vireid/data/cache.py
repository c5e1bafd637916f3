"""Training images decoded once: a memory-mapped uint8 array at the training size (``data.cache``).

Every training view starts by resizing the decoded image to ``(data.height, data.width)``
(:mod:`vireid.data.transforms`), so the resized images can be computed once per dataset and input
size, and each step then only augments them: no JPEG decoding and no resize of the full image per
view (the reference code pre-resizes its training arrays the same way). The cache is one file
``<key>.u8`` (``[N, H, W, 3]`` uint8, row ``i`` the ``i``-th record) plus ``<key>.json`` (the records'
paths), under ``$VIREID_CACHE/decoded`` (default ``~/.cache/vireid/decoded``); the key hashes the paths,
sizes and modification times of the files, the input size and the resize filter, so a changed file or
setting builds a new cache. Both files are written to temporary names and renamed, so a killed build
leaves no half cache. Worker processes map the same file (the operating system shares its pages).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vireid.data.records import ImageRecord

logger = logging.getLogger(__name__)

def vireid_cache_dir() -> Path:
    """vireid's cache folder: ``$VIREID_CACHE``, default ``~/.cache/vireid``."""
    return Path(os.environ.get("VIREID_CACHE", Path.home() / ".cache" / "vireid"))


def cache_dir() -> Path:
    return vireid_cache_dir() / "decoded"


def files_digest(paths: Sequence[str | Path], *extra: str) -> str:
    """A SHA-256 of ``extra`` and each file's path, size and modification time: the key of what is
    computed from those files (a changed file changes it). A missing file is a :class:`DatasetError`."""
    from vireid.errors import DatasetError

    digest = hashlib.sha256("\0".join(extra).encode() + b"\n")
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            raise DatasetError("image file is missing", path=p) from None
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class DecodedImages:
    """``images[path]`` -> the record's image resized to ``size`` as a PIL RGB image, from the cache."""

    def __init__(self, paths: Sequence[str], file: Path, shape: tuple[int, int, int, int]):
        self.paths = list(paths)
        self.row = {p: i for i, p in enumerate(self.paths)}
        self.file = Path(file)
        self.shape = shape
        self.array = np.memmap(self.file, dtype=np.uint8, mode="r", shape=shape)

    def __getstate__(self) -> dict:
        # worker processes re-map the file instead of receiving a copy of the images
        return {"paths": self.paths, "file": self.file, "shape": self.shape}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["paths"], state["file"], state["shape"])

    def __contains__(self, path: object) -> bool:
        return str(path) in self.row

    def __getitem__(self, path: str | Path) -> Image.Image:
        return Image.fromarray(np.asarray(self.array[self.row[str(path)]]), mode="RGB")

    @classmethod
    def build(cls, records: Sequence[ImageRecord], size: tuple[int, int], resize: str, *,
              folder: Path | None = None, progress: bool = False) -> DecodedImages:
        """Open the cache of ``records`` at ``size`` (height, width) with the ``resize`` filter, building
        it first when it does not exist."""
        from torchvision import transforms as T
        from tqdm import tqdm

        from vireid.data.records import load_rgb
        from vireid.data.transforms import RESIZE_FILTERS

        paths = sorted({str(r.path) for r in records})
        h, w = int(size[0]), int(size[1])
        folder = cache_dir() if folder is None else Path(folder)
        key = files_digest(paths, f"{h}x{w}", resize)[:32]
        data, index = folder / f"{key}.u8", folder / f"{key}.json"
        shape = (len(paths), h, w, 3)
        resized = T.Resize((h, w), interpolation=RESIZE_FILTERS[resize])  # the first step of every view
        if not (data.is_file() and index.is_file() and data.stat().st_size == int(np.prod(shape))):
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{key}.{os.getpid()}.u8.tmp"
            try:
                out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
                for i, p in enumerate(tqdm(paths, desc="decoding training images once", unit="img",
                                           disable=not progress)):
                    out[i] = np.asarray(resized(load_rgb(p)), dtype=np.uint8)
                out.flush()
                del out
                os.replace(tmp, data)
            finally:
                tmp.unlink(missing_ok=True)  # an unreadable image (DatasetError) leaves no half cache
            tmp_index = folder / f".{key}.{os.getpid()}.json.tmp"
            tmp_index.write_text(json.dumps({"size": [h, w], "resize": resize, "paths": paths}), encoding="utf-8")
            os.replace(tmp_index, index)
            logger.info("decoded %d training images once into %s (%.0f MB)", len(paths), data,
                        data.stat().st_size / 2**20)
        return cls(paths, data, shape)
