"""SYSU-MM01 in its official layout.

::

    ROOT/cam{1..6}/{id:04d}/{frame}.jpg      cameras 1, 2, 4, 5 visible; 3, 6 infrared
    ROOT/exp/train_id.txt                    one line of comma-separated ids (296)
    ROOT/exp/val_id.txt                      (99)
    ROOT/exp/test_id.txt                     (96)
    ROOT/exp/rand_perm_cam.mat               optional: the authors' gallery permutations (official sampler)

Training uses train ∪ val ids (all six cameras). The protocol is :class:`SysuProtocol`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vireid.data.base import VIReIDDataset
from vireid.data.parsing import list_id_folders, list_images, read_id_list
from vireid.data.protocols import SYSU_GALLERY_CAMERAS, SysuProtocol
from vireid.data.records import INFRARED, VISIBLE, ImageRecord
from vireid.data.registry import register_dataset
from vireid.errors import DatasetError

#: Camera number -> modality.
SYSU_CAMERAS = {1: VISIBLE, 2: VISIBLE, 3: INFRARED, 4: VISIBLE, 5: VISIBLE, 6: INFRARED}
_ID_FOLDER = re.compile(r"^(\d{4})$")


@register_dataset("sysu")
class SYSUMM01(VIReIDDataset):
    """SYSU-MM01 reader: ``SYSUMM01(root)``; ``protocol(mode, shots, sampler, perm_file)``.

    Records are ordered by person id, then camera, then file name.
    """

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        return (root / "exp" / "test_id.txt").is_file() and any((root / f"cam{c}").is_dir() for c in range(1, 7))

    def __init__(self, root: str | Path):
        super().__init__(root)
        exp = self.root / "exp"
        if not exp.is_dir():
            raise DatasetError(
                "SYSU-MM01 folder 'exp' (train_id.txt, val_id.txt, test_id.txt) is missing", path=exp
            )
        self.train_ids = read_id_list(exp / "train_id.txt")
        self.val_ids = read_id_list(exp / "val_id.txt")
        self.test_ids = read_id_list(exp / "test_id.txt")
        self._check_disjoint(exp)

        #: (camera, pid) -> images in file-name order.
        self.images: dict[tuple[int, int], list[ImageRecord]] = {}
        for cam, modality in SYSU_CAMERAS.items():
            cam_dir = self.root / f"cam{cam}"
            if not cam_dir.is_dir():
                raise DatasetError(
                    f"camera folder 'cam{cam}' is missing; expected cam1..cam6 each holding {{id:04d}}/ folders",
                    path=cam_dir,
                )
            for pid, folder in list_id_folders(cam_dir, _ID_FOLDER, "a 4-digit person id such as '0001'"):
                files = list_images(folder)
                if files:
                    self.images[(cam, pid)] = [ImageRecord(p, pid, cam, modality) for p in files]

        present = {pid for (_, pid) in self.images}
        for name, ids in (
            ("train_id.txt", self.train_ids),
            ("val_id.txt", self.val_ids),
            ("test_id.txt", self.test_ids),
        ):
            missing = [pid for pid in ids if pid not in present]
            if missing:
                raise DatasetError(
                    f"person ids {missing[:10]}{' ...' if len(missing) > 10 else ''} have no images in any "
                    f"cam*/{{id:04d}}/ folder; expected every listed id to have images",
                    path=exp / name,
                )
        test = set(self.test_ids)
        if not any((cam, pid) in self.images for pid in test for cam in (3, 6)):
            raise DatasetError(
                "no test id has infrared images (cam3, cam6); expected query images", path=exp / "test_id.txt"
            )

    def _check_disjoint(self, exp: Path) -> None:
        train, val, test = set(self.train_ids), set(self.val_ids), set(self.test_ids)
        for a, b, sa, sb in (
            ("train_id.txt", "test_id.txt", train, test),
            ("val_id.txt", "test_id.txt", val, test),
        ):
            both = sorted(sa & sb)
            if both:
                raise DatasetError(
                    f"person ids {both[:10]} are listed in both {a} and {b}; expected disjoint splits",
                    path=exp / b,
                )

    # -- records ----------------------------------------------------------------------------
    def _records_of(self, pids: set[int]) -> list[ImageRecord]:
        out: list[ImageRecord] = []
        for (_cam, pid), recs in sorted(self.images.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if pid in pids:
                out.extend(recs)
        return out

    def train_records(self, trial: int | None = None) -> list[ImageRecord]:
        """Images of train ∪ val ids, all cameras (``trial`` is ignored)."""
        return self._records_of(set(self.train_ids) | set(self.val_ids))

    def test_records(self) -> list[ImageRecord]:
        return self._records_of(set(self.test_ids))

    def all_records(self) -> list[ImageRecord]:
        return self._records_of({pid for (_, pid) in self.images})

    # -- protocol ---------------------------------------------------------------------------
    def protocol(
        self,
        *,
        mode: str = "all",
        shots: int = 1,
        sampler: str = "community",
        perm_file: str | Path | None = None,
    ) -> SysuProtocol:
        """The SYSU-MM01 protocol: ``mode`` all|indoor, ``shots`` 1|10, ``sampler`` community|official.

        ``official`` reads ``perm_file`` (default ``ROOT/exp/rand_perm_cam.mat``) and checks every
        gallery permutation's length against the person's files of that camera.
        """
        if mode not in SYSU_GALLERY_CAMERAS:
            raise ValueError(f"mode must be one of {tuple(SYSU_GALLERY_CAMERAS)}, got {mode!r}")
        permutations = None
        perm_path = None
        if sampler == "official":
            perm_path = (
                Path(perm_file).expanduser()
                if perm_file is not None
                else self.root / "exp" / "rand_perm_cam.mat"
            )
            permutations = self._load_permutations(perm_path, SYSU_GALLERY_CAMERAS[mode])
        elif perm_file is not None:
            raise ValueError("perm_file is only used by sampler='official'")
        return SysuProtocol(
            images=self.images,
            test_ids=self.test_ids,
            mode=mode,
            shots=shots,
            sampler=sampler,
            permutations=permutations,
            perm_file=str(perm_path) if perm_path is not None else None,
        )

    def _load_permutations(self, path: Path, cameras: tuple[int, ...]) -> dict[tuple[int, int], np.ndarray]:
        """``rand_perm_cam`` (a 6-cell array, cell ``cam`` indexed by 1-based person id) for the test ids."""
        cells = read_rand_perm_cam(path)
        out: dict[tuple[int, int], np.ndarray] = {}
        for cam in cameras:
            if cam > len(cells):
                raise DatasetError(f"'rand_perm_cam' has {len(cells)} camera cells; expected 6", path=path)
            per_id = cells[cam - 1]
            for pid in self.test_ids:
                raw = per_id[pid - 1] if pid <= len(per_id) else None
                if raw is None or raw.size == 0:
                    perm = np.zeros((10, 0), dtype=np.int64)  # the person has no image in this camera
                else:
                    perm = np.atleast_2d(raw).astype(np.int64)
                n_files = len(self.images.get((cam, pid), ()))
                n_perm = perm.shape[1]
                if n_perm != n_files:
                    raise DatasetError(
                        f"camera {cam}, person {pid}: the permutation has {n_perm} images but cam{cam}/{pid:04d}/ "
                        f"holds {n_files} image files; expected equal counts",
                        path=path,
                    )
                if n_files == 0:
                    continue
                if perm.shape[0] < 10:
                    raise DatasetError(
                        f"camera {cam}, person {pid}: the permutation has {perm.shape[0]} rows; expected 10 (one per trial)",
                        path=path,
                    )
                expected = np.arange(1, n_perm + 1)
                for t, row in enumerate(perm[:10]):
                    if not np.array_equal(np.sort(row), expected):
                        raise DatasetError(
                            f"camera {cam}, person {pid}, row {t}: expected a permutation of 1..{n_perm}",
                            path=path,
                        )
                out[(cam, pid)] = perm
        return out


def read_rand_perm_cam(path: Path) -> list[list[np.ndarray]]:
    """The cells of ``rand_perm_cam.mat``: ``cells[cam - 1][pid - 1]`` is a ``[10, n]`` index matrix."""
    if not path.is_file():
        raise DatasetError(
            "SYSU-MM01 permutation file is missing; the official sampler needs the authors' rand_perm_cam.mat "
            "(pass perm_file=... or put it in ROOT/exp/)",
            path=path,
        )
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types on a broken file
        raise DatasetError(f"cannot read the MATLAB file ({type(exc).__name__}: {exc})", path=path) from exc
    if "rand_perm_cam" not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"expected a variable 'rand_perm_cam', found {names}", path=path)
    cells = np.asarray(mat["rand_perm_cam"]).ravel()
    if cells.dtype != object:
        raise DatasetError("expected 'rand_perm_cam' to be a cell array (one cell per camera)", path=path)
    out: list[list[np.ndarray]] = []
    for cell in cells:
        per_id = np.asarray(cell).ravel()
        out.append([np.asarray(m) for m in per_id])
    return out
