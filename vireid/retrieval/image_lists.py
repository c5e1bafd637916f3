"""Image lists for embedding and indexing: the images of a dataset in its official layout (person ids and
cameras from its reader), of a folder (recursively, with the camera parsed from the path) or of a
``manifest.csv`` (pid, camera and modality from its rows).

A folder's ``camera`` comes from the path below the folder, the folder's own name included: a SYSU-MM01
``cam<N>/`` folder, else a Market-1501/DukeMTMC-style ``_c<N>`` / ``c<N>s`` file-name token, else 0; such
rows have no ``pid`` and no ``timestamp``.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from vireid.data.records import MODALITIES
from vireid.errors import ConfigError, DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


_CAM_DIR = re.compile(r"^cam(\d+)$", re.IGNORECASE)


_CAM_FILE = re.compile(r"(?:^|_)c(\d+)(?=s\d|_|\.)", re.IGNORECASE)


def parse_camera(path: str | Path) -> int:
    """Camera number of an image path: a ``cam<N>`` folder (SYSU-MM01 layout), else a ``_c<N>`` /
    ``c<N>s`` token of the file name (Market-1501, DukeMTMC-reID), else 0 (unknown)."""
    p = Path(path)
    for part in reversed(p.parent.parts):
        m = _CAM_DIR.match(part)
        if m:
            return int(m.group(1))
    m = _CAM_FILE.search(p.name)
    return int(m.group(1)) if m else 0


#: ``split`` values of a dataset in its official layout: the test identities' images (default), the
#: training split's (RegDB: trial 1's), or every image.
DATASET_SPLITS = ("test", "train", "all")
#: ``dataset`` value that reads a folder as plain images even when it has a dataset's layout.
PLAIN_FOLDER = "folder"


def dataset_rows(name: str, root: str | Path, *, modality: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """Metadata rows of a dataset in its official layout: person ids and cameras from the reader."""
    from vireid.data import build_dataset

    split = split or "test"
    if split not in DATASET_SPLITS:
        raise ConfigError(f"--split: a dataset's split is one of {', '.join(DATASET_SPLITS)} (query and gallery are manifest "
                         f"splits), got {split!r}")
    ds = build_dataset(name, root)
    records = {"test": ds.test_records, "train": lambda: ds.train_records(trial=1), "all": ds.all_records}[split]()
    rows = [{"path": str(r.path), "pid": r.pid, "camera": r.camera, "modality": r.modality, "timestamp": None}
            for r in records if modality is None or r.modality == modality]
    if not rows:
        raise DatasetError(f"the {name} layout has no {split} images{' of modality ' + modality if modality else ''}",
                           path=Path(root))
    return rows


def list_images(
    source: str | Path, *, modality: str | None = None, split: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """Metadata rows (``path`` absolute, ``pid``, ``camera``, ``modality``, ``timestamp``) of the images
    of a dataset in its official layout, a folder or a ``manifest.csv`` (see the module docstring).

    ``dataset``: the layout of the folder (``sysu``, ``regdb``, ``llcm``...; default: detected from its
    marker files, :func:`vireid.data.registry.detect_dataset`; ``"folder"``: plain images). A dataset gives
    person ids and cameras, its ``split`` (:data:`DATASET_SPLITS`, default test) and, when given, only
    ``modality``'s images. A plain folder needs ``modality`` (all its images have it) and has no person ids.
    A manifest keeps its rows' modalities, or only the rows of ``modality`` when given, and only the rows of
    ``split`` (train, query, gallery) when given; an image listed in several splits appears once.
    """
    src = Path(source).expanduser()
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {'|'.join(MODALITIES)}, got {modality!r}")
    if src.is_dir() and dataset != PLAIN_FOLDER:
        from vireid.data.registry import detect_dataset

        name = dataset or detect_dataset(src)
        if name is not None:
            return dataset_rows(name, src, modality=modality, split=split)
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise DatasetError("expected a folder of images or a manifest .csv file", path=src)
        from vireid.data.manifest import MANIFEST_SPLITS, ManifestDataset

        dataset = ManifestDataset(src)
        if split is not None and split not in MANIFEST_SPLITS:
            raise ConfigError(f"--split: a manifest's split is one of {', '.join(MANIFEST_SPLITS)} (test and all are "
                              f"dataset splits), got {split!r}")
        records = dataset.splits[split] if split is not None else dataset.all_records()
        seen: set[Path] = set()
        rows = []
        for rec in records:
            if rec.path in seen or (modality is not None and rec.modality != modality):
                continue
            seen.add(rec.path)
            rows.append({"path": str(rec.path), "pid": rec.pid, "camera": rec.camera, "modality": rec.modality,
                         "timestamp": None})
        if not rows:
            what = " ".join(x for x in (split, modality) if x)
            raise DatasetError(f"the manifest lists no {what + ' ' if what else ''}images", path=src)
        return rows
    if not src.is_dir():
        raise DatasetError("no such folder or manifest file", path=src)
    if split is not None:
        raise ConfigError(f"--split selects the rows of a manifest or a dataset layout; {src} is a folder of images "
                          "without splits")
    if modality is None:
        raise ValueError(f"the modality of the images in {src} is needed (visible or infrared)")
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder or its subfolders", path=src)
    # the camera is parsed below the folder given (its own name included): cam<N> folders above it are not
    # about its images
    return [{"path": os.path.abspath(f), "pid": None, "camera": parse_camera(Path(src.resolve().name) / f.relative_to(src)),
             "modality": modality, "timestamp": None} for f in files]


@functools.lru_cache(maxsize=4)
def _pids_by_path(name: str, root: Path) -> dict[Path, int]:
    from vireid.data import build_dataset

    return {rec.path: rec.pid for rec in build_dataset(name, root).all_records()}


def person_of_image(path: str | Path, *, levels: int = 4) -> int | None:
    """The person id of an image file that lies in a dataset's official layout (the dataset root found among
    its ``levels`` nearest parent folders, :func:`vireid.data.registry.detect_dataset`), else None. A layout
    is read once for all the queries of a process."""
    from vireid.data.registry import detect_dataset

    file = Path(path).expanduser().resolve()
    for root in list(file.parents)[:levels]:
        name = detect_dataset(root)
        if name is not None:
            return _pids_by_path(name, root.resolve()).get(file)
    return None
