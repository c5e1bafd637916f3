"""Tiny hand-made dataset layouts for the reader, protocol and CLI tests.

Images are real (tiny PIL images) only where a test opens them (``images=True``); otherwise empty files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def write_file(path: Path, *, image: bool = False, color: tuple[int, int, int] = (128, 64, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image:
        from PIL import Image

        fmt = {".bmp": "BMP", ".png": "PNG"}.get(path.suffix.lower(), "JPEG")
        Image.new("RGB", (4, 8), color).save(path, format=fmt)
    else:
        path.write_bytes(b"")
    return path


# -- SYSU-MM01 ------------------------------------------------------------------------------------
#: (camera, pid) -> number of images; ids 1-3 train/val, 4-6 test. Not every id has every camera.
SYSU_COUNTS: dict[tuple[int, int], int] = {
    (1, 1): 2, (3, 1): 2,
    (2, 2): 1, (6, 2): 3,
    (4, 3): 2, (3, 3): 1,
    (1, 4): 3, (2, 4): 2, (3, 4): 2, (5, 4): 4, (6, 4): 1,
    (1, 5): 2, (2, 5): 1, (4, 5): 3, (5, 5): 1, (3, 5): 3,
    (1, 6): 1, (4, 6): 2, (6, 6): 2,
}  # fmt: skip
SYSU_SPLITS = {"train": [1, 2], "val": [3], "test": [4, 5, 6]}


def sysu_name(j: int) -> str:
    return f"{j:04d}.jpg"


def make_sysu(
    root: Path,
    counts: Mapping[tuple[int, int], int] = SYSU_COUNTS,
    splits: Mapping[str, Sequence[int]] = SYSU_SPLITS,
    *,
    images: bool = False,
    names: Mapping[tuple[int, int], Sequence[str]] | None = None,
) -> Path:
    """``cam{1..6}/{id:04d}/{j:04d}.jpg`` (j = 1..n) and ``exp/{train,val,test}_id.txt``."""
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    for (cam, pid), n in counts.items():
        file_names = (
            names[(cam, pid)] if names and (cam, pid) in names else [sysu_name(j) for j in range(1, n + 1)]
        )
        for name in file_names:
            write_file(
                root / f"cam{cam}" / f"{pid:04d}" / name, image=images, color=(pid * 20 % 256, cam * 40, 90)
            )
    (root / "exp").mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (root / "exp" / f"{split}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    return root


# -- RegDB ----------------------------------------------------------------------------------------
def regdb_rel(modality: str, pid: int, j: int) -> str:
    folder, letter = ("Visible", "v") if modality == "visible" else ("Thermal", "t")
    sex = "female" if pid % 2 else "male"
    side = "front" if j % 2 else "back"
    return f"{folder}/{pid}/{sex}_{side}_{letter}_{pid * 100 + j:05d}_{pid}.bmp"


def make_regdb(
    root: Path,
    pids: Sequence[int] = (1, 2, 3, 4, 5, 6),
    *,
    per_person: int = 2,
    trials: Mapping[int, tuple[Sequence[int], Sequence[int]]] | None = None,
    images: bool = False,
) -> Path:
    """``Visible/<id>/``, ``Thermal/<id>/`` and ``idx`` files; ``trials[t] = (train pids, test pids)``."""
    trials = trials if trials is not None else {1: ((1, 2, 3), (4, 5, 6)), 2: ((4, 5, 6), (1, 2, 3))}
    for pid in pids:
        for j in range(1, per_person + 1):
            for mod in ("visible", "thermal"):
                write_file(root / regdb_rel(mod, pid, j), image=images, color=(pid * 30 % 256, j * 50, 10))
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for t, (train, test) in trials.items():
        for split, ids in (("train", train), ("test", test)):
            for mod in ("visible", "thermal"):
                lines = [
                    f"{regdb_rel(mod, pid, j)} {label}"
                    for label, pid in enumerate(ids)
                    for j in range(1, per_person + 1)
                ]
                (root / "idx" / f"{split}_{mod}_{t}.txt").write_text("\n".join(lines) + "\n")
    return root


# -- LLCM -----------------------------------------------------------------------------------------
#: (modality, camera, pid) -> number of test images; test ids 10, 11, 12.
LLCM_TEST_COUNTS: dict[tuple[str, int, int], int] = {
    ("vis", 1, 10): 2, ("vis", 5, 10): 3, ("vis", 9, 10): 1,
    ("vis", 2, 11): 2, ("vis", 3, 11): 1,
    ("vis", 1, 12): 1, ("vis", 4, 12): 2,
    ("nir", 1, 10): 2, ("nir", 4, 10): 1,
    ("nir", 2, 11): 3, ("nir", 9, 11): 2,
    ("nir", 6, 12): 1, ("nir", 8, 12): 2,
}  # fmt: skip
#: (modality, camera, pid, count) of training images.
LLCM_TRAIN: list[tuple[str, int, int, int]] = [
    ("vis", 1, 1, 2), ("vis", 2, 2, 1), ("vis", 3, 3, 2),
    ("nir", 1, 1, 1), ("nir", 4, 2, 2), ("nir", 6, 3, 1),
]  # fmt: skip


def make_llcm(
    root: Path,
    test_counts: Mapping[tuple[str, int, int], int] = LLCM_TEST_COUNTS,
    train: Iterable[tuple[str, int, int, int]] = LLCM_TRAIN,
    test_ids: Sequence[int] = (10, 11, 12),
    *,
    images: bool = False,
) -> Path:
    lines: dict[str, list[str]] = {"vis": [], "nir": []}
    labels: dict[int, int] = {}
    for mod, cam, pid, n in train:
        label = labels.setdefault(pid, len(labels))
        for j in range(1, n + 1):
            rel = f"{mod}/cam{cam}/{pid:04d}/{j:04d}.jpg"
            write_file(root / rel, image=images)
            lines[mod].append(f"{rel} {label}")
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for mod in ("vis", "nir"):
        (root / "idx" / f"train_{mod}.txt").write_text("\n".join(lines[mod]) + "\n")
    (root / "idx" / "test_id.txt").write_text(",".join(str(i) for i in test_ids) + "\n")
    (root / "test_vis").mkdir(parents=True, exist_ok=True)
    (root / "test_nir").mkdir(parents=True, exist_ok=True)
    for (mod, cam, pid), n in test_counts.items():
        for j in range(1, n + 1):
            write_file(
                root / f"test_{mod}" / f"cam{cam}" / f"{pid:04d}" / f"{cam}_{pid}_{j:03d}.jpg", image=images
            )
    return root


# -- manifest -------------------------------------------------------------------------------------
MANIFEST_ROWS: list[tuple[str, int, int, str, str]] = [
    ("img/a_v1.png", 1, 1, "visible", "train"),
    ("img/a_i1.png", 1, 2, "infrared", "train"),
    ("img/b_v1.png", 2, 1, "visible", "train"),
    ("img/b_i1.png", 2, 2, "infrared", "train"),
    ("img/c_i1.png", 3, 2, "infrared", "query"),
    ("img/d_i1.png", 4, 3, "infrared", "query"),
    ("img/c_v1.png", 3, 1, "visible", "gallery"),
    ("img/d_v1.png", 4, 1, "visible", "gallery"),
    ("img/c_v2.png", 3, 4, "visible", "gallery"),
]


def make_manifest(
    root: Path,
    rows: Sequence[tuple[str, int, int, str, str]] = MANIFEST_ROWS,
    *,
    header: str = "path,pid,camera,modality,split",
    images: bool = False,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, *_ in rows:
        write_file(root / rel, image=images)
    text = header + "\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]}\n" for r in rows)
    (root / "manifest.csv").write_text(text)
    return root


# -- tiny model configs -----------------------------------------------------------------------------
#: The keys every tiny CPU test config shares: AGW on ResNet-18 from scratch, 32x16 images.
TINY_CONFIG: dict = {
    "data": {"name": "sysu", "height": 32, "width": 16, "workers": 0},
    "model": {"name": "agw", "arch": "resnet18", "pretrained": "none"},
    "train": {"device": "cpu"},
}


def write_tiny_config(path: Path, *, root: Path, **sections: Mapping) -> Path:
    """Write a YAML config: :data:`TINY_CONFIG` with ``data.root`` and each section's keys overridden
    (``output_dir`` may be given as a plain value)."""
    import yaml

    cfg: dict = {key: dict(value) for key, value in TINY_CONFIG.items()}
    cfg["data"]["root"] = str(root)
    for section, values in sections.items():
        if isinstance(values, Mapping):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = str(values) if isinstance(values, Path) else values
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path

#: Data keys of the tiny configs that train: 2 identities x 2 images, pad 2.
SMALL_BATCH: dict = {"pad": 2, "ids_per_batch": 2, "images_per_id": 2}
