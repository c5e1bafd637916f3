"""Base classes of the dataset plug-ins and of the evaluation protocols they offer.

A dataset reader parses a folder in its official layout when constructed (raising
:class:`~vireid.errors.DatasetError` that names the file and line on any mismatch), exposes its
training records, and builds :class:`EvalProtocol` objects that list the query and gallery images of
each trial in the protocol's order.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from vireid.data.records import ImageRecord
from vireid.errors import DatasetError


class EvalProtocol(abc.ABC):
    """Which images are queries, which are the gallery of trial ``t``, and which metric rules apply.

    ``metric`` is the ``protocol`` argument of :func:`vireid.evaluation.rank_metrics`
    (``"sysu"``, ``"regdb"`` or ``"llcm"``): it selects CMC de-duplication and the removal rule.
    ``trials`` lists the valid trial numbers in the dataset's own numbering (SYSU-MM01 and LLCM:
    0..9, the ``random.seed`` of the community code; RegDB: 1..10, the ``idx`` file suffix).
    """

    metric: ClassVar[str]
    trials: tuple[int, ...]

    @abc.abstractmethod
    def query(self, trial: int) -> list[ImageRecord]:
        """Query images of ``trial`` in the protocol's order."""

    @abc.abstractmethod
    def gallery(self, trial: int) -> list[ImageRecord]:
        """Gallery images of ``trial`` in the protocol's order."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The protocol's settings as a JSON-able mapping (dataset, mode, shots, sampler, direction...)."""

    def check_trial(self, trial: int) -> None:
        if trial not in self.trials:
            raise ValueError(f"trial {trial} is not valid for {self.describe()}; expected one of {list(self.trials)}")


class VIReIDDataset(abc.ABC):
    """A visible-infrared re-id dataset read from its on-disk layout.

    Subclasses set ``name``, parse ``root`` in ``__init__`` and implement :meth:`train_records` and
    :meth:`protocol`. Register them with :func:`vireid.data.registry.register_dataset`.
    """

    name: ClassVar[str]

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DatasetError(f"dataset root of {self.name!r} is not a folder", path=self.root)

    # -- what subclasses provide ------------------------------------------------------------
    @abc.abstractmethod
    def train_records(self, trial: int | None = None) -> list[ImageRecord]:
        """Training images with raw person ids. RegDB needs ``trial`` (1..10); others ignore it."""

    @abc.abstractmethod
    def protocol(self, **options: Any) -> EvalProtocol:
        """The evaluation protocol with the given options (mode, shots, sampler, direction...)."""

    @abc.abstractmethod
    def all_records(self) -> list[ImageRecord]:
        """Every image the layout references (training and test), each once, for checking and previews."""

    def test_records(self) -> list[ImageRecord]:
        """Images of the test identities (default: every image not in the training split; RegDB: trial 1's)."""
        train = {r.path for r in self.train_records(trial=1)}
        return [r for r in self.all_records() if r.path not in train]

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        """Whether ``root`` has this dataset's official layout (its marker files), without parsing it;
        :func:`vireid.data.registry.detect_dataset` asks every registered reader. Default: never."""
        return False

    # -- shared behaviour ---------------------------------------------------------------------
    def relpath(self, record: ImageRecord) -> str:
        """The record's path relative to the dataset root, with forward slashes."""
        return record.path.relative_to(self.root).as_posix()

    def check_images(self, records: Iterable[ImageRecord] | None = None, *, progress: bool = True) -> int:
        """Open every image (header and data) and raise :class:`DatasetError` naming the first bad one.

        Returns the number of images checked.
        """
        recs: Sequence[ImageRecord] = list(records if records is not None else self.all_records())
        return check_image_files(recs, desc=f"checking {self.name} images", progress=progress)


def check_image_files(records: Sequence[ImageRecord], *, desc: str = "checking images", progress: bool = True) -> int:
    """Decode every image of ``records``; a missing or unreadable one is a :class:`DatasetError` naming it.
    Returns the number of images decoded."""
    from PIL import Image
    from tqdm import tqdm

    for rec in tqdm(records, desc=desc, unit="img", disable=not progress):
        if not rec.path.is_file():
            raise DatasetError("image file is missing", path=rec.path)
        try:
            with Image.open(rec.path) as im:
                im.load()
        except Exception as exc:  # PIL raises many types for corrupt files
            raise DatasetError(f"image cannot be read ({type(exc).__name__}: {exc})", path=rec.path) from exc
    return len(records)
