"""The shape of a synthetic SYSU-MM01-layout set: which person is seen by which camera, how many images
each (camera, person) folder holds, the train / val / test id split, and ``exp/rand_perm_cam.mat`` in the
authors' structure -- made up for ``ids`` persons (:func:`sysu_shape`) or copied from the official split
files (:func:`sysu_shape_from`). :mod:`vireid.data.synthetic.layouts` writes the images of a shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.errors import DatasetError
from vireid.io import atomic_open

#: The SYSU-MM01 layout's part of every generator seed (``layouts`` uses the same code).
SYSU_SEED_CODE = 1
#: Default images per (person, camera) folder.
SYSU_DEFAULT_IMAGES = 6


#: Real SYSU-MM01 split sizes (train / val / test ids); a synthetic split keeps the proportions.
SYSU_SPLIT = (296, 99, 96)


SYSU_VISIBLE = (1, 2, 4, 5)


SYSU_INFRARED = (3, 6)


def proportional_split(n: int, sizes: Sequence[int]) -> list[int]:
    """Split ``n`` items in the proportions ``sizes``, at least 1 each (the first part takes the rest)."""
    total = sum(sizes)
    parts = [max(1, int(round(n * s / total))) for s in sizes[1:]]
    first = n - sum(parts)
    if first < 1:
        raise ValueError(f"{n} ids cannot be split into {len(sizes)} non-empty parts")
    return [first, *parts]


@dataclass
class SysuShape:
    """Which images a SYSU-MM01-layout set holds.

    ``counts[(camera, pid)]`` is the number of images; ``rows[camera]`` the number of person entries of
    that camera's cell in ``rand_perm_cam.mat``; ``permutations`` (optional) the permutations to write
    instead of fresh random ones (``(camera, pid) -> [10, n]``) and ``perm_dtype`` their integer type.
    """

    counts: dict[tuple[int, int], int]
    train: list[int]
    val: list[int]
    test: list[int]
    rows: dict[int, int]
    permutations: dict[tuple[int, int], np.ndarray] | None = None
    perm_dtype: np.dtype | None = None


def sysu_shape(ids: int, *, seed: int = 0, images_per_camera: int | None = None,
               test_ids: int | None = None) -> SysuShape:
    """A SYSU-MM01-like shape for ``ids`` persons (ids 1..N).

    Each person is seen by a random subset of the six cameras (some miss some cameras), always by at
    least one visible and one infrared camera; every (person, camera) folder holds
    ``images_per_camera`` images. Ids are split train / val / test in the real 296 / 99 / 96 proportions,
    or, with ``test_ids``, that many test ids and the rest train / val in the real 296 / 99 proportions
    (a test set large enough to measure with, next to a training set small enough to learn on a CPU).
    """
    if ids < 3:
        raise ValueError(f"a SYSU-MM01 layout needs at least 3 ids (train, val and test), got {ids}")
    if test_ids is not None and not 1 <= test_ids <= ids - 2:
        raise ValueError(f"test_ids must be in 1..{ids - 2} (at least one train and one val id), got {test_ids}")
    k = SYSU_DEFAULT_IMAGES if images_per_camera is None else images_per_camera
    if k < 1:
        raise ValueError(f"images_per_camera must be >= 1, got {k}")
    presence = {1: 0.75, 2: 0.8, 3: 0.85, 4: 0.8, 5: 0.8, 6: 0.8}
    counts: dict[tuple[int, int], int] = {}
    code = SYSU_SEED_CODE
    for pid in range(1, ids + 1):
        rng = np.random.default_rng([seed, code, 1, pid])
        cams = [c for c in range(1, 7) if rng.random() < presence[c]]
        if not any(c in cams for c in SYSU_VISIBLE):
            cams.append(int(SYSU_VISIBLE[int(rng.integers(4))]))
        if not any(c in cams for c in SYSU_INFRARED):
            cams.append(int(SYSU_INFRARED[int(rng.integers(2))]))
        for c in cams:
            counts[(c, pid)] = k
    if test_ids is None:
        n_train, n_val, n_test = proportional_split(ids, SYSU_SPLIT)
    else:
        n_test = int(test_ids)
        n_train, n_val = proportional_split(ids - n_test, SYSU_SPLIT[:2])
    order = np.random.default_rng([seed, code, 2]).permutation(np.arange(1, ids + 1))
    test = sorted(int(i) for i in order[:n_test])
    val = sorted(int(i) for i in order[n_test : n_test + n_val])
    train = sorted(int(i) for i in order[n_test + n_val :])
    assert len(train) == n_train
    return SysuShape(counts=counts, train=train, val=val, test=test, rows={c: ids for c in range(1, 7)})


def _load_mat_ids(path: Path) -> list[int]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types on a broken file
        raise DatasetError(f"cannot read the MATLAB file ({type(exc).__name__}: {exc})", path=path) from exc
    if "id" not in mat:
        raise DatasetError(f"expected a variable 'id', found {sorted(k for k in mat if not k.startswith('__'))}", path=path)
    return sorted(int(i) for i in np.asarray(mat["id"]).ravel())


def sysu_shape_from(
    perm_file: str | Path, *, ids: int | None = None, seed: int = 0, images_per_camera: int | None = None
) -> SysuShape:
    """The shape of the real SYSU-MM01 read from the authors' ``rand_perm_cam.mat``.

    The length of each permutation is the number of images that person has in that camera. Test ids
    come from ``test_id.mat`` next to the file and training ids from ``train_id.mat`` when present
    (otherwise a seeded split in the real proportions); validation ids are the remaining ids seen in
    both modalities. With ``ids`` a seeded subset of that many two-modality ids is kept (ids keep their
    numbers; the split keeps the real proportions). The file's own permutations are written to the new
    set, so the official sampler picks the same indices as on the real data. ``images_per_camera``
    caps the images per (camera, person) (the permutations then become fresh ones).
    """
    from vireid.data.sysu import read_rand_perm_cam

    path = Path(perm_file).expanduser()
    cells = read_rand_perm_cam(path)
    if len(cells) != 6:
        raise DatasetError(f"'rand_perm_cam' has {len(cells)} camera cells; expected 6", path=path)
    counts: dict[tuple[int, int], int] = {}
    perms: dict[tuple[int, int], np.ndarray] = {}
    dtype = None
    for cam, per_id in enumerate(cells, start=1):
        for pid, m in enumerate(per_id, start=1):
            m = np.atleast_2d(m)
            if m.size == 0:
                continue
            if m.shape[0] != 10:
                raise DatasetError(f"camera {cam}, person {pid}: permutation of shape {m.shape}; expected 10 rows", path=path)
            counts[(cam, pid)] = int(m.shape[1])
            perms[(cam, pid)] = m
            dtype = m.dtype
    rows = {cam: len(per_id) for cam, per_id in enumerate(cells, start=1)}
    vis = {p for (c, p) in counts if c in SYSU_VISIBLE}
    ir = {p for (c, p) in counts if c in SYSU_INFRARED}
    both = sorted(vis & ir)
    present = {p for (_, p) in counts}
    code = SYSU_SEED_CODE
    test_mat, train_mat = path.with_name("test_id.mat"), path.with_name("train_id.mat")
    if test_mat.is_file():
        test = [p for p in _load_mat_ids(test_mat) if p in present]
    else:
        n_test = proportional_split(len(both), SYSU_SPLIT)[2]
        test = sorted(int(i) for i in np.random.default_rng([seed, code, 3]).permutation(both)[:n_test])
    rest = [p for p in both if p not in set(test)]
    if train_mat.is_file():
        train = [p for p in _load_mat_ids(train_mat) if p in present and p not in set(test)]
    else:
        n_train = proportional_split(len(both), SYSU_SPLIT)[0]
        train = sorted(int(i) for i in np.random.default_rng([seed, code, 4]).permutation(rest)[:n_train])
    val = sorted(p for p in rest if p not in set(train))
    if ids is not None:
        if ids < 3:
            raise ValueError(f"a SYSU-MM01 layout needs at least 3 ids (train, val and test), got {ids}")
        pools = [sorted(set(train) & set(both)), sorted(set(val) & set(both)), sorted(set(test) & set(both))]
        if ids > sum(len(p) for p in pools):
            raise ValueError(f"--ids {ids} is more than the {sum(len(p) for p in pools)} two-modality ids of {path}")
        wanted = proportional_split(ids, [len(p) for p in pools])
        for i in (1, 2, 0):  # a short pool gives its remainder to the training split
            if wanted[i] > len(pools[i]):
                wanted[0] += wanted[i] - len(pools[i])
                wanted[i] = len(pools[i])
        rng = np.random.default_rng([seed, code, 5])
        train, val, test = (sorted(int(x) for x in rng.permutation(pool)[:n]) for pool, n in zip(pools, wanted))
        keep = set(train) | set(val) | set(test)
        counts = {k: v for k, v in counts.items() if k[1] in keep}
        perms = {k: v for k, v in perms.items() if k[1] in keep}
    permutations: dict[tuple[int, int], np.ndarray] | None = perms
    if images_per_camera is not None:
        if images_per_camera < 1:
            raise ValueError(f"images_per_camera must be >= 1, got {images_per_camera}")
        counts = {k: min(v, images_per_camera) for k, v in counts.items()}
        permutations = None
    return SysuShape(
        counts=counts, train=sorted(train), val=sorted(val), test=sorted(test), rows=rows,
        permutations=permutations, perm_dtype=dtype,
    )


def write_rand_perm_cam(path: Path, shape: SysuShape, *, seed: int = 0) -> None:
    """``rand_perm_cam.mat`` in the authors' structure (see :func:`build_rand_perm_cam`), byte-reproducible."""
    import io

    import scipy.io

    cell = build_rand_perm_cam(shape, seed=seed)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"rand_perm_cam": cell}, format="5", do_compression=False)
    raw = bytearray(buf.getvalue())
    # The 116-byte text header carries scipy's creation time; a fixed text keeps the file reproducible.
    header = b"MATLAB 5.0 MAT-file, written by vireid.data.synthetic (synthetic SYSU-MM01 gallery permutations)"
    raw[:116] = header[:116].ljust(116, b" ")
    with atomic_open(path, "wb") as fh:
        fh.write(bytes(raw))


def build_rand_perm_cam(shape: SysuShape, *, seed: int = 0) -> np.ndarray:
    """The ``rand_perm_cam`` cell array: ``[6, 1]`` object array; cell ``cam`` is ``[rows, 1]`` objects.

    Entry ``(cam, pid)`` (1-based id ``pid`` at row ``pid - 1``) is a ``10 x n`` unsigned integer
    matrix whose row ``t`` is a random permutation of ``1..n`` (``n`` = the person's images in that
    camera, in file-name order), ``10 x 0`` where the person has no image there -- the structure and
    integer type (``uint8``; ``uint16`` above 255 images) of the authors' file.
    """
    code = SYSU_SEED_CODE
    max_n = max(shape.counts.values(), default=0)
    dtype = shape.perm_dtype if shape.perm_dtype is not None else (np.uint8 if max_n <= 255 else np.uint16)
    if np.iinfo(dtype).max < max_n:
        dtype = np.uint16
    cell = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        rows = max([shape.rows.get(cam, 0)] + [p for (c, p) in shape.counts if c == cam])
        col = np.empty((rows, 1), dtype=object)
        for pid in range(1, rows + 1):
            n = shape.counts.get((cam, pid), 0)
            if n == 0:
                m = np.zeros((10, 0), dtype=dtype)
            elif shape.permutations is not None and (cam, pid) in shape.permutations:
                m = np.asarray(shape.permutations[(cam, pid)], dtype=dtype)
            else:
                rng = np.random.default_rng([seed, code, 6, cam, pid])
                m = np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(dtype)
            col[pid - 1, 0] = m
        cell[cam - 1, 0] = col
    return cell
