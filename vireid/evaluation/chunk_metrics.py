"""AP, INP and first-match rank of a chunk of query rows: the core of
:func:`vireid.evaluation.metrics.rank_metrics` (the protocol rules are in that module's docstring).

Two paths give the same numbers:

- **value ranks** (values exactly float32; rows where no true match shares its distance with another
  image, and, deduplicated, no other identity's best image shares the first match's): the rank of a true
  match is one plus the number of the row's values below its own. The row's 32-bit order codes
  (:func:`~vireid.evaluation.ranking_keys.float32_codes`) are sorted (half the bytes of the packed 64-bit
  keys, about twice as fast to sort), and each match's count is one binary search in the sorted rows
  (made one array by putting the row number in the high 32 bits). Removed SYSU-MM01 columns get the
  largest code, so they count before no real value. Ties among other images change no match's rank, so
  the gallery index is never needed; the few rows where a tie does matter take the exact path.
- **exact ranks** (every other row): one sort of 64-bit keys holding the value and the gallery index
  (:func:`~vireid.evaluation.ranking_keys.sorted_chunk`), ties broken by gallery index.

Both list the kept true matches of each row in rank order and share the reduction to AP, INP and the
(deduplicated) first-match rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vireid.evaluation.ranking_keys import float32_codes, sorted_chunk

if TYPE_CHECKING:
    from vireid.evaluation.ranking_layout import GalleryLayout, Labels, Workspace

#: The code of a removed column (above every real value's code: +inf is 0xFF800000).
REMOVED_CODE = np.uint32(0xFFFFFFFF)

Result = tuple[np.ndarray, np.ndarray, np.ndarray]


def drop_removed_matches(rows: np.ndarray, ranks: np.ndarray, removed: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """``keep`` and the kept matches' ranks once ``removed`` matches leave the ranking (rows ascending,
    ranks ascending within a row): a kept rank drops by the removed matches before it in its row."""
    n_all = np.bincount(rows, minlength=c)
    nonempty = n_all > 0
    before = np.cumsum(removed) - removed
    before -= np.repeat(before[(np.cumsum(n_all) - n_all)[nonempty]], n_all[nonempty])
    keep = ~removed
    return keep, ranks[keep] - before[keep]


def reduce_matches(c: int, rows: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AP and INP of each row from its kept matches' ranks (rows ascending, ranks ascending within a
    row); the index of each valid row's first match in ``rows``, and the valid rows' mask."""
    ap = np.full(c, np.nan)
    inp = np.full(c, np.nan)
    n = np.bincount(rows, minlength=c)
    valid = n > 0
    start = np.cumsum(n) - n
    if not valid.any():
        return ap, inp, start[valid], valid
    hits = np.arange(rows.size) - np.repeat(start, n) + 1
    ap[valid] = np.bincount(rows, weights=hits / ranks, minlength=c)[valid] / n[valid]
    first = start[valid]
    inp[valid] = n[valid] / ranks[first + n[valid] - 1]
    return ap, inp, first, valid


def dedup_first_rank(best: np.ndarray, first_value: np.ndarray, own_block: np.ndarray) -> np.ndarray:
    """Deduplicated first-match rank: 1 + the other identities whose best value lies below the first true
    match's (``best`` ``[v, identities]``, ``own_block`` the query's identity block)."""
    ahead = best < first_value[:, None]
    own = ahead[np.arange(len(first_value)), own_block]
    return np.count_nonzero(ahead, axis=1) - own + 1


def drop_same_camera(rows: np.ndarray, cols: np.ndarray, ranks: np.ndarray, gallery_index: np.ndarray,
                     q_cams: np.ndarray, labels: Labels, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LLCM's and Market-1501's removal on a chunk's matches (rows ascending, ranks ascending within a row):
    the matches whose gallery image (``gallery_index``) shares the query's camera leave the ranking."""
    assert labels.g_cams is not None
    removed = labels.g_cams[gallery_index] == q_cams[rows]
    if not removed.any():
        return rows, cols, ranks
    keep, ranks = drop_removed_matches(rows, ranks, removed, c)
    return rows[keep], cols[keep], ranks


def exact_chunk(dist: np.ndarray, q_codes: np.ndarray, q_cams: np.ndarray | None, removed_rows: np.ndarray | None,
                same_camera_rule: bool, labels: Labels, layout: GalleryLayout, ws: Workspace) -> Result:
    """The exact path (module docstring) for every row of ``dist``."""
    c, g = dist.shape
    keys, order, best = sorted_chunk(dist, removed_rows, layout, ws)
    codes = ws.get("codes", np.int32, (c, g))
    np.take(labels.g_codes, order, out=codes)
    match = ws.get("match", np.bool_, (c, g))
    np.equal(codes, q_codes[:, None], out=match)
    rows, cols = np.nonzero(match)  # row-major: rows ascending, ranks ascending within a row
    ranks = cols + 1
    if removed_rows is not None and layout.num_removed:
        keep = ~(removed_rows[rows] & (cols >= g - layout.num_removed))  # the tail holds removed images
        rows, cols, ranks = rows[keep], cols[keep], ranks[keep]
    elif same_camera_rule:
        assert q_cams is not None
        rows, cols, ranks = drop_same_camera(rows, cols, ranks, order[rows, cols], q_cams, labels, c)
    ap, inp, first, valid = reduce_matches(c, rows, ranks)
    first_rank = np.zeros(c, dtype=np.int64)
    if not valid.any():
        return ap, inp, first_rank
    if best is None:  # raw CMC
        first_rank[valid] = ranks[first]
    else:
        vrows = np.flatnonzero(valid)
        vbest = best if vrows.size == c else best[vrows]
        own = np.searchsorted(layout.pid_of_block, q_codes[vrows])
        first_rank[valid] = dedup_first_rank(vbest, keys[vrows, cols[first]], own)
    return ap, inp, first_rank


def _value_chunk(dist: np.ndarray, q_codes: np.ndarray, q_cams: np.ndarray | None, removed_rows: np.ndarray | None,
                 same_camera_rule: bool, labels: Labels, layout: GalleryLayout,
                 ws: Workspace) -> tuple[Result, np.ndarray] | None:
    """The value-ranks path: the results of every row, and the rows where a tie decides (their results
    are to be replaced by :func:`exact_chunk`'s); None when the values are not exactly float32."""
    c, g = dist.shape
    u = float32_codes(dist, ws)
    if u is None:
        return None
    if removed_rows is not None and layout.num_removed:
        np.copyto(u, REMOVED_CODE, where=removed_rows[:, None] & layout.removed_cols[None, :])
    s = ws.get("u32", np.uint32, (c, g))
    np.copyto(s, u)
    s.sort(axis=1)
    g_codes = labels.g_codes[layout.cols] if layout.cols is not None else labels.g_codes
    match = ws.get("match", np.bool_, (c, g))
    np.equal(g_codes[None, :], q_codes[:, None], out=match)
    rows, cols = np.nonzero(match)
    values = u[rows, cols]
    real = values != REMOVED_CODE  # a SYSU-MM01 camera-2 match of a camera-3 query is not a match
    rows, cols, values = rows[real], cols[real], values[real]
    flat = ws.get("keys", np.uint64, (c, g))  # the sorted rows as one increasing array: row << 32 | code
    np.copyto(flat, s)
    flat |= np.arange(c, dtype=np.uint64)[:, None] << np.uint64(32)
    needles = (rows.astype(np.uint64) << np.uint64(32)) | values
    order = np.argsort(needles, kind="stable")  # by row, then value: rank order, and increasing lookups
    rows, cols, needles = rows[order], cols[order], needles[order]
    flat = flat.reshape(-1)
    below = np.searchsorted(flat, needles)  # the row's values strictly below each match's, plus row * g
    # a match whose value another column shares needs the gallery index to break the tie: its row goes
    # to the exact path (rare: distinct float32 values are the rule)
    after = np.minimum(below + 1, flat.size - 1)
    tie_rows = np.unique(rows[(flat[after] == needles) & (below + 1 < flat.size)])
    ranks = below - rows * g + 1
    if same_camera_rule:
        assert q_cams is not None
        gallery_index = layout.cols[cols] if layout.cols is not None else cols
        rows, cols, ranks = drop_same_camera(rows, cols, ranks, gallery_index, q_cams, labels, c)
    with np.errstate(divide="ignore", invalid="ignore"):  # tied rows may hold nonsense: replaced below
        ap, inp, first, valid = reduce_matches(c, rows, ranks)
    first_rank = np.zeros(c, dtype=np.int64)
    if valid.any():
        if layout.pid_starts is None:  # raw CMC
            first_rank[valid] = ranks[first]
        else:
            vrows = np.flatnonzero(valid)
            best = np.minimum.reduceat(u[vrows], layout.pid_starts, axis=1)
            own = np.searchsorted(layout.pid_of_block, q_codes[vrows])
            first_value = u[vrows, cols[first]]
            first_rank[valid] = dedup_first_rank(best, first_value, own)
            # another identity whose best value equals the first match's: the gallery index decides
            level = best == first_value[:, None]
            level[np.arange(vrows.size), own] = False
            tie_rows = np.union1d(tie_rows, vrows[level.any(axis=1)])
    return (ap, inp, first_rank), tie_rows


def chunk_metrics(dist: np.ndarray, q_codes: np.ndarray, q_cams: np.ndarray | None, removed_rows: np.ndarray | None,
                  same_camera_rule: bool, labels: Labels, layout: GalleryLayout, ws: Workspace) -> Result:
    """AP, INP and first-match rank of each row of ``dist`` (NaN, NaN and 0 without a true match); columns
    in the layout's order; ``removed_rows``: SYSU-MM01's camera-3 queries; ``same_camera_rule``: LLCM's and
    Market-1501's removal."""
    if dist.dtype.kind == "f" and np.isnan(dist).any():
        bad = np.argwhere(np.isnan(dist))[0]
        raise ValueError(f"distance matrix holds NaN (chunk row {bad[0]}, column {bad[1]})")
    fast = _value_chunk(dist, q_codes, q_cams, removed_rows, same_camera_rule, labels, layout, ws) if dist.shape[1] > 1 else None
    if fast is None:
        return exact_chunk(dist, q_codes, q_cams, removed_rows, same_camera_rule, labels, layout, ws)
    (ap, inp, first_rank), tie_rows = fast
    if tie_rows.size:
        sub = (q_cams[tie_rows] if q_cams is not None else None, removed_rows[tie_rows] if removed_rows is not None else None)
        ap[tie_rows], inp[tie_rows], first_rank[tie_rows] = exact_chunk(
            np.ascontiguousarray(dist[tie_rows]), q_codes[tie_rows], *sub, same_camera_rule, labels, layout, ws)
    return ap, inp, first_rank
