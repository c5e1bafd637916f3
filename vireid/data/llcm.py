"""LLCM in the layout its authors' code uses.

::

    ROOT/idx/train_vis.txt, ROOT/idx/train_nir.txt    lines '<relative path> <label>'
    ROOT/idx/test_id.txt                              one line of comma-separated test ids
    ROOT/test_vis/cam{1..9}/{id:04d}/*.jpg            visible test images
    ROOT/test_nir/cam{1,2,4..9}/{id:04d}/*.jpg        near-infrared test images

A training record's person id and camera are parsed from its path (``.../cam<c>/<id>/<file>``); the
0-based label of the split file is only checked for consistency. Test images are read from the camera
folders of the lists above that exist (the authors' code uses exactly these camera lists).
"""

from __future__ import annotations

import re
from pathlib import Path

from vireid.data.base import VIReIDDataset
from vireid.data.parsing import (
    check_label_consistency,
    list_id_folders,
    list_images,
    read_id_list,
    read_label_file,
)
from vireid.data.protocols import LlcmProtocol
from vireid.data.records import INFRARED, VISIBLE, ImageRecord
from vireid.data.registry import register_dataset
from vireid.errors import DatasetError

#: Test cameras of each modality, in the authors' order (ascending).
LLCM_CAMERAS = {VISIBLE: (1, 2, 3, 4, 5, 6, 7, 8, 9), INFRARED: (1, 2, 4, 5, 6, 7, 8, 9)}
_TEST_FOLDERS = {VISIBLE: "test_vis", INFRARED: "test_nir"}
_TRAIN_FILES = {VISIBLE: "train_vis.txt", INFRARED: "train_nir.txt"}
_TRAIN_PATH = re.compile(r"(?:^|/)cam(\d+)/(\d+)/[^/]+$")
_ID_FOLDER = re.compile(r"^(\d{4})$")


@register_dataset("llcm")
class LLCM(VIReIDDataset):
    """LLCM reader: ``LLCM(root)``; ``protocol(direction)``, trials 0..9."""

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        return (root / "idx" / "test_id.txt").is_file() and (root / "test_vis").is_dir()

    def __init__(self, root: str | Path):
        super().__init__(root)
        idx = self.root / "idx"
        if not idx.is_dir():
            raise DatasetError(
                "LLCM folder 'idx' (train_vis.txt, train_nir.txt, test_id.txt) is missing", path=idx
            )
        self._train: list[ImageRecord] = []
        for modality, name in _TRAIN_FILES.items():
            self._train.extend(self._read_train(idx / name, modality))
        self.test_ids = read_id_list(idx / "test_id.txt")
        train_ids = {r.pid for r in self._train}
        both = sorted(train_ids & set(self.test_ids))
        if both:
            raise DatasetError(
                f"persons {both[:10]} are both training persons and test ids; expected disjoint",
                path=idx / "test_id.txt",
            )

        #: (modality, camera, pid) -> test images in file-name order (every id folder on disk).
        self.test_images: dict[tuple[str, int, int], list[ImageRecord]] = {}
        for modality, folder in _TEST_FOLDERS.items():
            base = self.root / folder
            if not base.is_dir():
                raise DatasetError(
                    f"LLCM test folder {folder!r} is missing; expected {folder}/cam<c>/<id:04d>/", path=base
                )
            for cam in LLCM_CAMERAS[modality]:
                cam_dir = base / f"cam{cam}"
                if not cam_dir.is_dir():
                    continue
                for pid, sub in list_id_folders(cam_dir, _ID_FOLDER, "a 4-digit person id such as '0001'"):
                    files = list_images(sub)
                    if files:
                        self.test_images[(modality, cam, pid)] = [
                            ImageRecord(p, pid, cam, modality) for p in files
                        ]
        present = {(mod, pid) for (mod, _cam, pid) in self.test_images}
        for modality, folder in _TEST_FOLDERS.items():
            missing = [pid for pid in self.test_ids if (modality, pid) not in present]
            if len(missing) == len(self.test_ids):
                raise DatasetError(
                    f"no test id has images under {folder}/cam<c>/<id:04d>/; expected the test images",
                    path=self.root / folder,
                )

    def _read_train(self, path: Path, modality: str) -> list[ImageRecord]:
        lines = read_label_file(path, self.root)
        records: list[ImageRecord] = []
        for entry in lines:
            m = _TRAIN_PATH.search(entry.relpath)
            if m is None:
                raise DatasetError(
                    f"expected a path '.../cam<c>/<id:04d>/<file>' to read camera and person from, found {entry.relpath!r}",
                    path=path,
                    line=entry.line,
                )
            records.append(ImageRecord(entry.path, int(m.group(2)), int(m.group(1)), modality))
        check_label_consistency(path, lines, [r.pid for r in records])
        return records

    def train_records(self, trial: int | None = None) -> list[ImageRecord]:
        """train_vis.txt then train_nir.txt images, in file order (``trial`` is ignored)."""
        return list(self._train)

    def test_records(self) -> list[ImageRecord]:
        out: list[ImageRecord] = []
        test = set(self.test_ids)
        for (_mod, _cam, pid), recs in sorted(self.test_images.items()):
            if pid in test:
                out.extend(recs)
        return out

    def all_records(self) -> list[ImageRecord]:
        seen: set[Path] = set()
        out: list[ImageRecord] = []
        for rec in self._train + [r for recs in self.test_images.values() for r in recs]:
            if rec.path not in seen:
                seen.add(rec.path)
                out.append(rec)
        return out

    def protocol(self, *, direction: str = "visible_to_infrared") -> LlcmProtocol:
        """Query = all test images of the query modality; gallery = one random image per (id, camera)."""
        return LlcmProtocol(
            images=self.test_images, test_ids=self.test_ids, cameras=LLCM_CAMERAS, direction=direction
        )
