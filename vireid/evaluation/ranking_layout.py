"""The arrangement the ranking core works in: the labels as integer codes, the gallery columns' layout
(grouped by identity for the deduplicated CMC, the SYSU-MM01 camera rule's removed columns) and the reused
``chunk x G`` buffers. Shared by :mod:`vireid.evaluation.metrics`, :mod:`vireid.evaluation.ranking_keys` and
:mod:`vireid.evaluation.chunk_metrics`, so none of them imports another's importer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Labels:
    q_codes: np.ndarray  # int32 [Q], index into the gallery's sorted unique ids, -1 if absent
    g_codes: np.ndarray  # int32 [G]
    q_cams: np.ndarray | None
    g_cams: np.ndarray | None


@dataclass
class GalleryLayout:
    """How the gallery columns are arranged for the core, shared by every chunk of one call.

    Columns are grouped by identity for the deduplicated CMC (``cols`` is that permutation of the
    gallery, ``None`` when the gallery is already grouped or no deduplication is needed). Keys pack the
    **gallery index** (``col_index``) in their low bits, so ties are broken by gallery index whatever
    the column order.
    """

    num_g: int
    index_bits: int
    cols: np.ndarray | None  # gallery index of each column, None for the identity
    col_index: np.ndarray  # uint64 gallery index of each column
    pid_starts: np.ndarray | None  # first column of each identity block (deduplicated CMC only)
    pid_of_block: np.ndarray | None  # identity code of each block
    removed_cols: np.ndarray | None  # SYSU-MM01: bool [G] per column, camera 2 (removed for camera-3 queries)
    num_removed: int

    @property
    def low_mask(self) -> np.uint64:
        return np.uint64((1 << self.index_bits) - 1)

    @property
    def high_bits(self) -> np.uint64:
        """OR-ed into the key of a removed column: it sorts after every real key, keeping its index."""
        return np.uint64(~((1 << self.index_bits) - 1) & 0xFFFFFFFFFFFFFFFF)


class Workspace:
    """Buffers of ``chunk x G`` elements reused by every chunk (fewer page faults, bounded memory)."""

    def __init__(self, chunk: int, num_g: int):
        self.size = chunk * num_g
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}

    def get(self, name: str, dtype: Any, shape: tuple[int, int]) -> np.ndarray:
        key = (name, np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = np.empty(self.size, dtype=dtype)
        return buf[: shape[0] * shape[1]].reshape(shape)
