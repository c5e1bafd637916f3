"""Contact sheet: identities as rows, (camera, modality) as columns, one image per cell, atomic write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vireid.data.base import EvalProtocol, VIReIDDataset
from vireid.data.preview import BLANK, contact_sheet
from vireid.data.records import INFRARED, VISIBLE, ImageRecord
from vireid.errors import DatasetError


class ListDataset(VIReIDDataset):
    """A dataset made from a list of records (no layout to parse)."""

    name = "listed"

    def __init__(self, root: Path, records: list[ImageRecord]):
        super().__init__(root)
        self._records = records

    def train_records(self, trial: int | None = None) -> list[ImageRecord]:
        return list(self._records)

    def all_records(self) -> list[ImageRecord]:
        return list(self._records)

    def protocol(self, **options: Any) -> EvalProtocol:
        raise NotImplementedError


# camera -> modality of the toy dataset: camera 2 has both modalities (as LLCM's cameras do)
CAMERAS = [(1, VISIBLE), (2, VISIBLE), (2, INFRARED), (3, INFRARED)]


def colour_of(pid: int, col: int, k: int) -> tuple[int, int, int]:
    """A unique, exactly representable colour per (person, column, image)."""
    return (20 + 30 * pid, 40 + 50 * col, 10 + 60 * k)


def make_dataset(root: Path, pids=(1, 2, 3, 4), missing=((2, 1),), only_visible=(4,)) -> ListDataset:
    records = []
    for pid in pids:
        for col, (cam, mod) in enumerate(CAMERAS):
            if (pid, col) in missing or (pid in only_visible and mod == INFRARED):
                continue
            for k in range(2):
                path = root / f"p{pid}_c{cam}_{mod}_{k}.png"
                Image.new("RGB", (32, 64), colour_of(pid, col, k)).save(path)
                records.append(ImageRecord(path, pid, cam, mod))
    return ListDataset(root, records)


def find(sheet: np.ndarray, colour) -> tuple[int, float, float]:
    """(pixel count, mean y, mean x) of an exact colour in the sheet."""
    m = np.all(sheet == np.asarray(colour, dtype=np.uint8), axis=2)
    if not m.any():
        return 0, -1.0, -1.0
    ys, xs = np.nonzero(m)
    return int(m.sum()), float(ys.mean()), float(xs.mean())


def test_rows_columns_and_blank_cells(tmp_path):
    ds = make_dataset(tmp_path)
    out = contact_sheet(ds, tmp_path / "sheet.png", identities=3, seed=0)
    assert out == tmp_path / "sheet.png"
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # person 4 has no infrared image: only persons 1, 2, 3 (both modalities) are candidates, all shown
    positions = {}
    for pid in (1, 2, 3):
        for col in range(len(CAMERAS)):
            found = [find(sheet, colour_of(pid, col, k)) for k in range(2)]
            shown = [f for f in found if f[0] > 0]
            if (pid, col) == (2, 1):
                assert not shown, "person 2 has no image in camera 2 visible"
                continue
            assert len(shown) == 1, f"person {pid} column {col}: expected exactly one image, found {len(shown)}"
            count, y, x = shown[0]
            assert count >= 32 * 64  # the 32x64 image is scaled to fill its 64x128 cell
            positions[(pid, col)] = (y, x)
    assert all(find(sheet, colour_of(4, col, k))[0] == 0 for col in range(4) for k in range(2))
    # rows ascend by id, columns by camera then modality (visible before infrared)
    for col in range(4):
        ys = [positions[(pid, col)][0] for pid in (1, 2, 3) if (pid, col) in positions]
        assert ys == sorted(ys)
    for pid in (1, 3):
        xs = [positions[(pid, col)][1] for col in range(4)]
        assert xs == sorted(xs) and len(set(xs)) == 4
    # the blank cell sits in person 2's row and camera-2-visible column
    y2 = positions[(2, 0)][0]
    x1 = positions[(1, 1)][1]
    assert tuple(sheet[int(y2), int(x1)]) == BLANK


def test_deterministic_and_atomic(tmp_path):
    ds = make_dataset(tmp_path)
    a = contact_sheet(ds, tmp_path / "out" / "a.png", identities=2, seed=5).read_bytes()
    b = contact_sheet(ds, tmp_path / "out" / "b.png", identities=2, seed=5).read_bytes()
    assert a == b
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"], "no temporary file left"
    # the seed changes which persons (2 of 3) or which images are shown
    sheets = {contact_sheet(ds, tmp_path / "out" / f"s{s}.png", identities=2, seed=s).read_bytes() for s in range(6)}
    assert len(sheets) > 1
    # asking for more persons than exist shows all candidates
    big = np.asarray(Image.open(contact_sheet(ds, tmp_path / "all.png", identities=50)).convert("RGB"))
    assert all(any(find(big, colour_of(pid, 0, k))[0] for k in range(2)) for pid in (1, 2, 3))


def test_errors(tmp_path):
    ds = make_dataset(tmp_path)
    with pytest.raises(ValueError, match="identities"):
        contact_sheet(ds, tmp_path / "x.png", identities=0)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    bad = ListDataset(tmp_path, [ImageRecord(broken, 1, 1, VISIBLE), ImageRecord(broken, 1, 2, INFRARED)])
    with pytest.raises(DatasetError, match="broken.jpg"):
        contact_sheet(bad, tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()
    with pytest.raises(DatasetError, match="no images"):
        contact_sheet(ListDataset(tmp_path, []), tmp_path / "z.png")


def test_sheet_of_a_synthetic_dataset(tmp_path):
    from vireid.data.registry import build_dataset
    from vireid.data.synthetic import generate

    root = generate("regdb", tmp_path / "regdb", ids=3, images_per_camera=2, size=(64, 32), workers=1, progress=False)
    out = contact_sheet(build_dataset("regdb", root), tmp_path / "regdb.png", identities=2)
    im = Image.open(out)
    assert im.format == "PNG" and im.width > 2 * 64 and im.height > 2 * 64
