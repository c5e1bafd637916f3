"""A user's own visible-infrared data described by one CSV file.

``manifest.csv`` (header exactly ``path,pid,camera,modality,split``)::

    path,pid,camera,modality,split
    images/0001_c1_01.jpg,1,1,visible,train
    images/0001_c3_01.jpg,1,3,infrared,query
    images/0002_c1_07.jpg,2,1,visible,gallery

``path`` is relative to the manifest's folder (``..`` allowed, e.g. a sibling folder) or absolute; it is
normalised and must exist (a manifest is the user's own list of local files, not a security boundary:
what ``vireid serve`` serves is bounded by its index's image roots). ``pid`` and
``camera`` are integers, ``modality`` is ``visible`` or ``infrared``, ``split`` is ``train``, ``query``
or ``gallery``. The root given to the reader is the folder holding ``manifest.csv`` or the CSV file
itself. The protocol has one trial (``0``): the query and gallery rows in file order.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from vireid.data.base import VIReIDDataset
from vireid.data.protocols import ManifestProtocol
from vireid.data.records import MODALITIES, ImageRecord
from vireid.data.registry import register_dataset
from vireid.errors import DatasetError

MANIFEST_NAME = "manifest.csv"
MANIFEST_HEADER = ("path", "pid", "camera", "modality", "split")
MANIFEST_SPLITS = ("train", "query", "gallery")
_INT = re.compile(r"^-?\d+$")


@register_dataset("manifest")
class ManifestDataset(VIReIDDataset):
    """Reader of ``manifest.csv``: ``ManifestDataset(root)``; ``protocol(metric="llcm"|"regdb")``."""

    def __init__(self, root: str | Path):
        given = Path(root).expanduser()
        if given.is_file():
            csv_path = given.resolve()
            super().__init__(csv_path.parent)
        else:
            super().__init__(given)
            csv_path = self.root / MANIFEST_NAME
        self.manifest = csv_path
        if not csv_path.is_file():
            raise DatasetError(
                f"manifest file is missing; expected a CSV with header {','.join(MANIFEST_HEADER)}",
                path=csv_path,
            )
        self.splits: dict[str, list[ImageRecord]] = {s: [] for s in MANIFEST_SPLITS}
        self._read(csv_path)

    def _read(self, path: Path) -> None:
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"cannot read the CSV file ({type(exc).__name__}: {exc})", path=path) from exc
        if not rows or tuple(c.strip() for c in rows[0]) != MANIFEST_HEADER:
            found = ",".join(rows[0]) if rows else "an empty file"
            raise DatasetError(
                f"expected the header '{','.join(MANIFEST_HEADER)}', found {found!r}", path=path, line=1
            )
        first: dict[tuple[Path, str], int] = {}
        identity: dict[Path, tuple[int, int, str, int]] = {}
        for lineno, row in enumerate(rows[1:], start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(MANIFEST_HEADER):
                raise DatasetError(
                    f"expected {len(MANIFEST_HEADER)} fields ({','.join(MANIFEST_HEADER)}), found {len(row)}",
                    path=path,
                    line=lineno,
                )
            rel, pid_s, cam_s, modality, split = (c.strip() for c in row)
            if not _INT.match(pid_s):
                raise DatasetError(f"pid must be an integer, found {pid_s!r}", path=path, line=lineno)
            if not _INT.match(cam_s):
                raise DatasetError(f"camera must be an integer, found {cam_s!r}", path=path, line=lineno)
            if modality not in MODALITIES:
                raise DatasetError(
                    f"modality must be one of {'|'.join(MODALITIES)}, found {modality!r}",
                    path=path,
                    line=lineno,
                )
            if split not in MANIFEST_SPLITS:
                raise DatasetError(
                    f"split must be one of {'|'.join(MANIFEST_SPLITS)}, found {split!r}",
                    path=path,
                    line=lineno,
                )
            if not rel:
                raise DatasetError("path is empty", path=path, line=lineno)
            image = Path(os.path.normpath(self.root / rel.replace("\\", "/")))
            if not image.is_file():
                raise DatasetError(
                    f"image {rel!r} does not exist (paths are relative to {self.root})",
                    path=path,
                    line=lineno,
                )
            if (image, split) in first:
                raise DatasetError(
                    f"image {rel!r} is listed twice in split {split!r} (first on line {first[(image, split)]})",
                    path=path,
                    line=lineno,
                )
            first[(image, split)] = lineno
            pid, cam = int(pid_s), int(cam_s)
            seen = identity.setdefault(image, (pid, cam, modality, lineno))
            if seen[:3] != (pid, cam, modality):
                raise DatasetError(
                    f"image {rel!r} is (pid {pid}, camera {cam}, {modality}) here but (pid {seen[0]}, camera {seen[1]}, "
                    f"{seen[2]}) on line {seen[3]}; expected one description per image",
                    path=path,
                    line=lineno,
                )
            self.splits[split].append(ImageRecord(image, pid, cam, modality))
        if not any(self.splits.values()):
            raise DatasetError("the manifest lists no images", path=path)

    def relpath(self, record: ImageRecord) -> str:
        """Relative to the manifest's folder where possible, else the absolute path."""
        try:
            return record.path.relative_to(self.root).as_posix()
        except ValueError:
            return record.path.as_posix()

    def train_records(self, trial: int | None = None) -> list[ImageRecord]:
        """Rows with split ``train`` in file order (``trial`` is ignored)."""
        return list(self.splits["train"])

    def all_records(self) -> list[ImageRecord]:
        seen: set[Path] = set()
        out: list[ImageRecord] = []
        for split in MANIFEST_SPLITS:
            for rec in self.splits[split]:
                if rec.path not in seen:
                    seen.add(rec.path)
                    out.append(rec)
        return out

    def protocol(self, *, metric: str = "llcm") -> ManifestProtocol:
        """Query and gallery rows in file order; ``metric`` ``"llcm"`` (default) or ``"regdb"``.

        ``"llcm"`` removes gallery images with the query's id and camera (the natural rule for a
        user's multi-camera data: a same-camera match is trivial); ``"regdb"`` removes nothing.
        """
        for split in ("query", "gallery"):
            if not self.splits[split]:
                raise DatasetError(
                    f"the manifest has no {split!r} rows; expected query and gallery rows to evaluate",
                    path=self.manifest,
                )
        return ManifestProtocol(
            query=self.splits["query"],
            gallery=self.splits["gallery"],
            metric=metric,
            source=str(self.manifest),
        )
