"""RegDB in the layout its community code uses.

::

    ROOT/Visible/<id>/<sex>_<front|back>_v_<frame5>_<id>.bmp
    ROOT/Thermal/<id>/<sex>_<front|back>_t_<frame5>_<id>.bmp
    ROOT/idx/{train,test}_{visible,thermal}_{1..10}.txt      lines '<relative path> <label>'

The person id of a record is the ``<id>`` folder name (a file name of the form above must end in the
same id); the 0-based label of the split files is only checked for consistency (one person per label and
one label per person within a file). Cameras: visible images are camera 1, thermal images camera 2.
Trial ``t`` (1..10) trains on ``train_*_t`` and tests on ``test_*_t``; only the files of the trials
that are read need to exist.
"""

from __future__ import annotations

import re
from pathlib import Path

from vireid.data.base import VIReIDDataset
from vireid.data.parsing import check_label_consistency, list_id_folders, list_images, read_label_file
from vireid.data.protocols import RegdbProtocol
from vireid.data.records import INFRARED, VISIBLE, ImageRecord
from vireid.data.registry import register_dataset
from vireid.errors import DatasetError

REGDB_TRIALS = tuple(range(1, 11))
#: Camera number of each modality (RegDB has one camera per modality).
REGDB_CAMERAS = {VISIBLE: 1, INFRARED: 2}
_FOLDERS = {VISIBLE: "Visible", INFRARED: "Thermal"}
_FILE_KIND = {VISIBLE: "visible", INFRARED: "thermal"}
_LETTER = {VISIBLE: "v", INFRARED: "t"}
_REL = re.compile(r"^(Visible|Thermal)/(\d+)/([^/]+)$")
_NAME = re.compile(r"^.+_([vt])_(\d+)_(\d+)\.[A-Za-z]+$")
_ID_FOLDER = re.compile(r"^(\d+)$")


@register_dataset("regdb")
class RegDB(VIReIDDataset):
    """RegDB reader: ``RegDB(root)``; ``train_records(trial)`` and ``protocol(direction)``, trials 1..10."""

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        return all((root / sub).is_dir() for sub in ("idx", "Visible", "Thermal"))

    def __init__(self, root: str | Path):
        super().__init__(root)
        for sub in ("idx", "Visible", "Thermal"):
            if not (self.root / sub).is_dir():
                raise DatasetError(
                    f"RegDB folder {sub!r} is missing; expected idx/, Visible/<id>/ and Thermal/<id>/",
                    path=self.root / sub,
                )
        self._splits: dict[tuple[str, str, int], list[ImageRecord]] = {}

    # -- split files --------------------------------------------------------------------------
    def split_file(self, split: str, modality: str, trial: int) -> Path:
        """``idx/{split}_{visible|thermal}_{trial}.txt``."""
        return self.root / "idx" / f"{split}_{_FILE_KIND[modality]}_{trial}.txt"

    def available_trials(self) -> list[int]:
        """Trials whose four split files exist."""
        return [
            t
            for t in REGDB_TRIALS
            if all(self.split_file(s, m, t).is_file() for s in ("train", "test") for m in (VISIBLE, INFRARED))
        ]

    def _split(self, split: str, modality: str, trial: int) -> list[ImageRecord]:
        if trial not in REGDB_TRIALS:
            raise ValueError(f"RegDB trial must be one of {list(REGDB_TRIALS)}, got {trial!r}")
        key = (split, modality, trial)
        if key not in self._splits:
            self._splits[key] = self._read_split(self.split_file(split, modality, trial), modality)
        return self._splits[key]

    def _read_split(self, path: Path, modality: str) -> list[ImageRecord]:
        lines = read_label_file(path, self.root)
        folder = _FOLDERS[modality]
        records: list[ImageRecord] = []
        for entry in lines:
            m = _REL.match(entry.relpath)
            if m is None or m.group(1) != folder:
                raise DatasetError(
                    f"expected a path '{folder}/<id>/<file>.bmp' ({modality} images), found {entry.relpath!r}",
                    path=path,
                    line=entry.line,
                )
            pid = int(m.group(2))
            name = _NAME.match(m.group(3))
            if name is not None and (name.group(1) != _LETTER[modality] or int(name.group(3)) != pid):
                raise DatasetError(
                    f"file name {m.group(3)!r} does not fit folder {folder}/{m.group(2)}; expected "
                    f"'<sex>_<front|back>_{_LETTER[modality]}_<frame>_{pid}.bmp'",
                    path=path,
                    line=entry.line,
                )
            records.append(ImageRecord(entry.path, pid, REGDB_CAMERAS[modality], modality))
        check_label_consistency(path, lines, [r.pid for r in records])
        return records

    # -- records ------------------------------------------------------------------------------
    def train_records(self, trial: int | None = None) -> list[ImageRecord]:
        """Training images of ``trial`` (required, 1..10): visible file order, then thermal file order."""
        if trial is None:
            raise ValueError(
                f"RegDB needs the trial whose training split to read: one of {list(REGDB_TRIALS)}"
            )
        visible = self._split("train", VISIBLE, trial)
        thermal = self._split("train", INFRARED, trial)
        self._check_disjoint(trial)
        return visible + thermal

    def test_split(self, trial: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
        """``(visible, thermal)`` test images of ``trial`` in idx-file order."""
        return self._split("test", VISIBLE, trial), self._split("test", INFRARED, trial)

    def _check_disjoint(self, trial: int) -> None:
        test_file = self.split_file("test", VISIBLE, trial)
        if not test_file.is_file():
            return
        train = {r.pid for r in self._split("train", VISIBLE, trial)} | {
            r.pid for r in self._split("train", INFRARED, trial)
        }
        test = {r.pid for r in self._split("test", VISIBLE, trial)}
        both = sorted(train & test)
        if both:
            raise DatasetError(
                f"persons {both[:10]} are in both the training and the test split of trial {trial}; expected disjoint",
                path=test_file,
            )

    def all_records(self) -> list[ImageRecord]:
        """Every image under Visible/<id>/ and Thermal/<id>/ (ids ascending, file names sorted).

        Every split file present in ``idx/`` is parsed first, so a malformed one raises here.
        """
        for path in sorted((self.root / "idx").glob("*.txt")):
            m = re.match(r"^(train|test)_(visible|thermal)_(\d+)\.txt$", path.name)
            if m and int(m.group(3)) in REGDB_TRIALS:
                self._split(m.group(1), VISIBLE if m.group(2) == "visible" else INFRARED, int(m.group(3)))
        out: list[ImageRecord] = []
        for modality, folder in _FOLDERS.items():
            for pid, sub in list_id_folders(self.root / folder, _ID_FOLDER, "an integer person id folder"):
                out.extend(ImageRecord(p, pid, REGDB_CAMERAS[modality], modality) for p in list_images(sub))
        return out

    # -- protocol -----------------------------------------------------------------------------
    def protocol(self, *, direction: str = "visible_to_infrared") -> RegdbProtocol:
        """Trial ``t``: query = the query modality's ``test_*_t`` images, gallery = the other modality's."""
        return RegdbProtocol(test_split=self.test_split, direction=direction, trials=REGDB_TRIALS)
