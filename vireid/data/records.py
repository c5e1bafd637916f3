"""The record every dataset reader yields: one image, its person, camera and modality."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VISIBLE = "visible"
INFRARED = "infrared"
MODALITIES = (VISIBLE, INFRARED)

#: Integer codes used in training batches (``batch["modality"]``).
#: ``INTERMEDIATE`` is a view derived from a visible image (CAJ's channel-exchanged view,
#: FAFE's grayscale view); it goes through the visible stem of two-stream models.
MODALITY_CODES = {VISIBLE: 0, INFRARED: 1}
INTERMEDIATE_CODE = 2


def values_outside(values: Any, high: int) -> list[int]:
    """The distinct values of an integer array (host memory) outside ``0..high-1``, ascending; empty when
    every value is valid. The one range check of labels and modality codes read on the host."""
    array = np.asarray(values)
    return sorted(set(array[(array < 0) | (array >= high)].tolist()))


@dataclass(frozen=True, order=True)
class ImageRecord:
    """One image of a dataset.

    ``pid`` is the person id exactly as the dataset names it (not relabelled); ``camera`` is the
    dataset's own camera number (SYSU-MM01: 1..6, RegDB: 1 visible / 2 thermal, LLCM: 1..9).
    ``path`` is absolute.
    """

    path: Path
    pid: int
    camera: int
    modality: str

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r} for {self.path}")


def load_rgb(path: Any) -> Any:
    """Open an image file as a 3-channel RGB PIL image (infrared images get three equal channels); a missing
    or unreadable file is a :class:`~vireid.errors.DatasetError` naming it."""
    from PIL import Image

    from vireid.errors import DatasetError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DatasetError("image file is missing", path=path) from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise DatasetError(f"image cannot be read ({type(exc).__name__}: {exc})", path=path) from exc
