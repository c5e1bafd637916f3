"""Sorting distance rows into a stable order with one unstable integer sort.

Each distance row becomes unsigned 64-bit keys that sort like the distances, with the gallery index packed
into the low bits, so one fast in-place ``np.sort`` gives the order of a stable sort (ties broken by gallery
index). For 64-bit distances that float32 cannot hold exactly the value part is truncated, and the rows
where truncated keys collide are re-sorted exactly with ``np.lexsort``. The SYSU-MM01 camera rule sets the
top bits of the removed columns' keys, so they sort to the tail of the row. Used by
:func:`vireid.evaluation.metrics.rank_metrics` (see its module for the protocol rules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vireid.evaluation.ranking_layout import GalleryLayout, Workspace


_EXACT_IN_FLOAT32 = (np.int8, np.uint8, np.int16, np.uint16, np.bool_, np.float16, np.float32)


_MAX_INT_DISTANCE = 2**62


def check_distance_dtype(dtype: np.dtype) -> None:
    if dtype.type not in _EXACT_IN_FLOAT32 + (np.float64, np.int32, np.uint32, np.int64, np.uint64):
        raise ValueError(f"distances must be real numbers (float16/32/64 or integers), got dtype {dtype}")


def float32_codes(dist: np.ndarray, ws: Workspace) -> np.ndarray | None:
    """``uint32`` codes ``[c, G']`` (a view of the workspace's ``"f32"`` buffer) whose unsigned order is the
    order of ``dist``'s values, when every value is exactly a float32 (float16/32, small integers, float64
    holding float32 values); None otherwise. ``-0.0`` and ``+0.0`` get the same code."""
    shape = dist.shape
    dt = dist.dtype.type
    if dt not in _EXACT_IN_FLOAT32 and dt is not np.float64:
        return None
    b = ws.get("f32", np.float32, shape)
    if dt is np.float32:
        np.add(dist, np.float32(0.0), out=b)  # a working copy; -0.0 becomes +0.0
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(b, dist, casting="unsafe")
        eq = ws.get("match", np.bool_, shape)
        if dt is np.float64 and not bool(np.equal(b, dist, out=eq).all()):
            return None
        b += np.float32(0.0)
    flip = ws.get("codes", np.int32, shape)  # scratch: sign mask
    np.right_shift(b.view(np.int32), 31, out=flip)  # -1 for negative values, 0 otherwise
    fu = flip.view(np.uint32)
    fu |= np.uint32(0x80000000)
    bu = b.view(np.uint32)
    bu ^= fu  # negative: all bits flipped; positive: sign bit set -> unsigned order = float order
    return bu


def _keys(dist: np.ndarray, layout: GalleryLayout, ws: Workspace) -> tuple[np.ndarray, bool]:
    """Sort keys ``[c, G']`` (uint64, in the workspace) ordered like ``dist`` row by row, ties by
    gallery index; and whether the value part was truncated (64-bit values: collisions possible).

    32-bit value keys when the values are exactly float32 (:func:`float32_codes`) or integers spanning
    less than 2**32 in this block, 64-bit ones otherwise. Keys are only compared within one row.
    """
    shape = dist.shape
    keys = ws.get("keys", np.uint64, shape)
    dt = dist.dtype.type
    codes = float32_codes(dist, ws)
    if codes is not None:
        np.copyto(keys, codes)
        keys <<= np.uint64(layout.index_bits)
        keys |= layout.col_index
        return keys, False
    if dt is np.float64:
        fv = keys.view(np.float64)
        np.add(dist, 0.0, out=fv)
        flip = np.right_shift(fv.view(np.int64), 63).view(np.uint64)
        flip |= np.uint64(0x8000000000000000)
        keys ^= flip
    else:
        lo, hi = int(dist.min()), int(dist.max())
        if hi - lo < 2**32:
            np.subtract(dist, np.int64(lo) if dt is not np.uint64 else np.uint64(lo), out=keys, casting="unsafe")
            keys <<= np.uint64(layout.index_bits)
            keys |= layout.col_index
            return keys, False
        if hi >= _MAX_INT_DISTANCE or lo <= -_MAX_INT_DISTANCE:
            raise ValueError(f"integer distances must lie within +-2**62, got values in [{lo}, {hi}]")
        np.copyto(keys.view(np.int64), dist, casting="unsafe")
        keys ^= np.uint64(0x8000000000000000)
    keys >>= np.uint64(layout.index_bits)
    keys <<= np.uint64(layout.index_bits)
    keys |= layout.col_index
    return keys, True


def sorted_chunk(
    dist: np.ndarray, removed_rows: np.ndarray | None, layout: GalleryLayout, ws: Workspace
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sort each row; removed columns (SYSU-MM01 camera 2 for ``removed_rows``) go to the tail.

    Returns ``sorted_keys`` (uint64, increasing along each row), ``order`` (gallery index at each
    rank, int64) and, for the deduplicated CMC, ``best`` ``[c, identities]``: the smallest key of each
    identity block in the row (a removed column never counts as the best of anything real).
    """
    keys, truncated = _keys(dist, layout, ws)  # NaN was refused by the caller (chunk_metrics.chunk_metrics)
    if removed_rows is not None and layout.num_removed:
        high = np.where(layout.removed_cols, layout.high_bits, np.uint64(0))
        np.bitwise_or(keys, high[None, :], out=keys, where=removed_rows[:, None])
    best = None
    if layout.pid_starts is not None:
        best = np.minimum.reduceat(keys, layout.pid_starts, axis=1)
    keys.sort(axis=1)
    if truncated:
        _resolve_collisions(keys, best, dist, removed_rows, layout)
    order = ws.get("order", np.int64, dist.shape)
    np.bitwise_and(keys, layout.low_mask, out=order.view(np.uint64))
    return keys, order, best


def _resolve_collisions(
    keys: np.ndarray, best: np.ndarray | None, dist: np.ndarray, removed_rows: np.ndarray | None, layout: GalleryLayout
) -> None:
    """Rows whose truncated keys collide are re-sorted exactly (value, then gallery index); their keys
    become the ranks ``0..G'-1``, which order them the same way."""
    g = dist.shape[1]
    hi = keys >> np.uint64(layout.index_bits)
    same = hi[:, 1:] == hi[:, :-1]
    if removed_rows is not None and layout.num_removed:
        # removed columns all share the top key; only collisions among real keys matter
        real = np.arange(1, g)[None, :] < (g - layout.num_removed)
        same[removed_rows] &= real
    clash = np.flatnonzero(same.any(axis=1))
    if not clash.size:
        return
    sub = dist[clash]
    if removed_rows is not None and layout.num_removed:
        removed = np.broadcast_to(layout.removed_cols, sub.shape) & removed_rows[clash][:, None]
    else:
        removed = np.zeros(sub.shape, dtype=bool)
    index = np.broadcast_to(layout.col_index, sub.shape)
    pos = np.lexsort((index, sub, removed), axis=1)  # removed last, then by value, then gallery index
    ranks = np.broadcast_to(np.arange(g, dtype=np.uint64), pos.shape)
    sorted_index = np.take_along_axis(index, pos, axis=1)
    inv = np.empty(pos.shape, dtype=np.uint64)
    np.put_along_axis(inv, pos, ranks, axis=1)
    # rank keys: rank in the high bits (order preserved), gallery index in the low bits
    keys[clash] = (ranks << np.uint64(layout.index_bits)) | sorted_index
    if best is not None:  # removed columns hold the tail ranks: never ahead of a kept match
        inv_keys = (inv << np.uint64(layout.index_bits)) | index
        best[clash] = np.minimum.reduceat(inv_keys, layout.pid_starts, axis=1)
