"""Ranking metrics of visible-infrared re-id: CMC, mAP and mINP under the field's three protocols.

The rules follow the datasets' documentation and the community's reference code (see
``/work/shared/notes/protocols.md``):

``"sysu"`` (SYSU-MM01)
    A query from camera 3 ignores **every** gallery image from camera 2, whatever its identity
    (camera 3 is infrared in the same room as camera 2); queries from any other camera ignore nothing.
    CMC is computed on the identity-deduplicated ranking, mAP and mINP on the raw ranking.
``"regdb"`` (RegDB)
    Nothing is removed; standard CMC (no de-duplication); cameras are optional.
``"llcm"`` (LLCM)
    Gallery images with the query's identity **and** camera are removed. CMC deduplicated as for
    SYSU-MM01, mAP and mINP on the raw ranking.

Definitions, per query, on its ranking after the removal rule:

- *AP* is the mean over the true matches of (true matches up to that position / position);
- *INP* is (number of true matches) / (position of the last true match);
- the *first-match rank* is the position of the first true match in the ranking used for CMC: the raw
  ranking (RegDB) or the identity-deduplicated one, where only the first occurrence of each gallery
  identity is kept (SYSU-MM01, LLCM);
- ``cmc[k - 1]`` is the fraction of valid queries whose first-match rank is ``<= k``. When the
  gallery holds fewer than ``max_rank`` images (or identities, deduplicated) the curve saturates:
  entries past the gallery's length repeat the last reachable value, and the array always has
  ``max_rank`` entries.

A query with no true match left after removal is skipped and not counted (``num_valid_queries``).

**Ties.** Equal distances are broken by gallery index: of two gallery images at the same distance, the
one with the lower index ranks first (the order of a stable sort of each distance row). Results are
therefore deterministic and do not depend on the chunk size.

**Implementation.** Queries are processed in chunks of rows; memory beyond the inputs is bounded by a
few arrays of ``chunk x gallery`` elements. Each distance row is converted to unsigned integer keys that
sort like the distances, with the gallery index packed into the low bits, so one fast (unstable)
``np.sort`` gives the stable order; for 64-bit distances the key is truncated and rows where truncated
keys collide are re-sorted exactly with ``np.lexsort``. True matches are then located with one boolean
comparison per chunk and AP, INP and ranks are computed on the sparse list of matches. For the
deduplicated CMC the gallery columns are grouped by identity, and ``np.minimum.reduceat`` over the
sort keys gives the best-ranked image of each identity; the deduplicated rank of the first true match is
one plus the number of other identities whose best image ranks before it. No Python loop runs over
queries or gallery items.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PROTOCOLS",
    "DEFAULT_CHUNK_ELEMENTS",
    "default_chunk_size",
    "pairwise_distances",
    "rank_metrics",
    "rank_metrics_from_features",
]

#: Valid values of the ``protocol`` argument.
PROTOCOLS = ("sysu", "regdb", "llcm")
#: Metrics accepted by :func:`pairwise_distances` and :func:`rank_metrics_from_features`.
DISTANCE_METRICS = ("cosine", "euclidean")
#: Default number of ``chunk x gallery`` elements per chunk (about 2 M: a few tens of MiB per array).
DEFAULT_CHUNK_ELEMENTS = 1 << 21

_SYSU_INFRARED_INDOOR_CAMERA = 3
_SYSU_VISIBLE_SAME_ROOM_CAMERA = 2


def default_chunk_size(num_gallery: int, num_queries: int | None = None) -> int:
    """Query rows per chunk: ``DEFAULT_CHUNK_ELEMENTS // num_gallery``, at least 1 (at most ``num_queries``)."""
    size = max(1, DEFAULT_CHUNK_ELEMENTS // max(1, int(num_gallery)))
    if num_queries is not None:
        size = min(size, max(1, int(num_queries)))
    return size


# ---------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------
def _to_numpy(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} is required")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(x: Any, name: str, length: int, length_name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {length_name} is {length}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")


def _check_max_rank(max_rank: int) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    return int(max_rank)


def _check_chunk_size(chunk_size: int | None, num_gallery: int, num_queries: int) -> int:
    if chunk_size is None:
        return default_chunk_size(num_gallery, num_queries)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size)


@dataclass
class _Labels:
    q_codes: np.ndarray  # int32 [Q], index into the gallery's sorted unique ids, -1 if absent
    g_codes: np.ndarray  # int32 [G]
    q_cams: np.ndarray | None
    g_cams: np.ndarray | None


def _prepare_labels(
    num_q: int, num_g: int, q_pids: Any, g_pids: Any, q_cams: Any, g_cams: Any, protocol: str
) -> _Labels:
    _check_protocol(protocol)
    qp = _labels(q_pids, "q_pids", num_q, "the number of queries")
    gp = _labels(g_pids, "g_pids", num_g, "the number of gallery items")
    if protocol in ("sysu", "llcm") and (q_cams is None or g_cams is None):
        missing = " and ".join(n for n, v in (("q_cams", q_cams), ("g_cams", g_cams)) if v is None)
        raise ValueError(f"protocol {protocol!r} needs query and gallery cameras; {missing} not given")
    qc = _labels(q_cams, "q_cams", num_q, "the number of queries") if q_cams is not None else None
    gc = _labels(g_cams, "g_cams", num_g, "the number of gallery items") if g_cams is not None else None
    uniq, g_codes = np.unique(gp, return_inverse=True)
    pos = np.minimum(np.searchsorted(uniq, qp), len(uniq) - 1)
    q_codes = np.where(uniq[pos] == qp, pos, -1)
    return _Labels(q_codes.astype(np.int32), g_codes.reshape(-1).astype(np.int32), qc, gc)


@dataclass
class _Group:
    """Queries that see the same gallery columns (SYSU-MM01 camera-3 queries lose camera 2)."""

    rows: np.ndarray  # query indices
    cols: np.ndarray  # gallery indices, in the column order the core expects
    cols_identity: bool  # cols == arange(G): no gather needed
    pid_starts: np.ndarray | None  # first column of each identity block (dedup only)
    pid_of_block: np.ndarray | None  # identity code of each block


def _groups(labels: _Labels, num_q: int, num_g: int, protocol: str) -> list[_Group]:
    dedup = protocol in ("sysu", "llcm")
    all_rows = np.arange(num_q)
    if protocol == "sysu":
        assert labels.q_cams is not None and labels.g_cams is not None
        cam3 = labels.q_cams == _SYSU_INFRARED_INDOOR_CAMERA
        parts = [
            (all_rows[~cam3], np.ones(num_g, dtype=bool)),
            (all_rows[cam3], labels.g_cams != _SYSU_VISIBLE_SAME_ROOM_CAMERA),
        ]
    else:
        parts = [(all_rows, np.ones(num_g, dtype=bool))]
    groups = []
    for rows, col_mask in parts:
        if rows.size == 0:
            continue
        cols = np.flatnonzero(col_mask)
        pid_starts = pid_of_block = None
        if dedup and cols.size:
            # group the columns by identity (stable: ascending gallery index inside each identity)
            cols = cols[np.argsort(labels.g_codes[cols], kind="stable")]
            codes = labels.g_codes[cols]
            pid_starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            pid_of_block = codes[pid_starts]
        identity = cols.size == num_g and bool(np.all(cols == np.arange(num_g)))
        groups.append(_Group(rows, cols, identity, pid_starts, pid_of_block))
    return groups


# ---------------------------------------------------------------------------------------------
# sorting: a stable order from one unstable integer sort
# ---------------------------------------------------------------------------------------------
_SMALL_EXACT_IN_FLOAT32 = (np.int8, np.uint8, np.int16, np.uint16, np.bool_, np.float16, np.float32)


def _monotone_bits(dist: np.ndarray) -> tuple[np.ndarray, int]:
    """Unsigned keys (uint64) ordered exactly like the rows of ``dist``, and how many low bits they use.

    32-bit keys when the values are exactly representable as float32 (float16/32, small integers,
    float64 holding float32 values) or are integers spanning less than 2**32 in this block; 64-bit
    keys otherwise. Keys are only compared within one block.
    """
    dt = dist.dtype.type
    if dt is np.float64:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, not equal, 64-bit keys
            as32 = dist.astype(np.float32)
        if np.array_equal(as32, dist):
            dist, dt = as32, np.float32
    elif dt in (np.int32, np.uint32, np.int64, np.uint64) and dist.size:
        lo, hi = dist.min(), dist.max()
        if int(hi) - int(lo) < 2**32:
            if dt is np.uint64:
                return dist - lo, 32
            return (dist.astype(np.int64) - np.int64(lo)).astype(np.uint64), 32
    if dt in _SMALL_EXACT_IN_FLOAT32:
        b = np.ascontiguousarray(dist, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
        u = b.view(np.uint32)
        u ^= (u >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000)
        return u.astype(np.uint64), 32
    if dt is np.float64:
        b = np.ascontiguousarray(dist, dtype=np.float64) + 0.0
        u = b.view(np.uint64)
        u ^= (u >> np.uint64(63)) * np.uint64(0x7FFFFFFFFFFFFFFF) | np.uint64(0x8000000000000000)
        return u, 64
    if dt in (np.int32, np.int64):
        return dist.astype(np.int64).view(np.uint64) ^ np.uint64(0x8000000000000000), 64
    if dt in (np.uint32, np.uint64):
        return dist.astype(np.uint64, copy=True), 64
    raise ValueError(f"distances must be real numbers (float16/32/64 or integers), got dtype {dist.dtype}")


def _sorted_rows(
    dist: np.ndarray, col_index: np.ndarray, index_bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each row of ``dist`` (columns named ``col_index``, ascending), ties by ``col_index``.

    Returns ``order`` (gallery index at each rank, int64), ``sorted_keys`` (uint64, increasing along
    each row) and ``keys`` (the same keys in column order), so that column ``j`` ranks before column
    ``l`` in row ``i`` exactly when ``keys[i, j] < keys[i, l]``.
    """
    if dist.dtype.kind == "f" and np.isnan(dist).any():
        bad = np.argwhere(np.isnan(dist))[0]
        raise ValueError(f"distance matrix holds NaN (first at chunk row {bad[0]}, column {bad[1]})")
    u, bits = _monotone_bits(dist)
    mask = np.uint64((1 << index_bits) - 1)
    idx = col_index.astype(np.uint64)
    drop = bits + index_bits - 64
    if drop > 0:
        u >>= np.uint64(drop)  # truncated: collisions are re-sorted exactly below
    u <<= np.uint64(index_bits)
    u |= idx
    keys = u
    sorted_keys = np.sort(keys, axis=1)
    order = np.bitwise_and(sorted_keys, mask).view(np.int64)
    if drop > 0:
        hi = sorted_keys >> np.uint64(index_bits)
        clash = np.flatnonzero((hi[:, 1:] == hi[:, :-1]).any(axis=1))
        if clash.size:
            sub = dist[clash]
            pos = np.lexsort((np.broadcast_to(col_index, sub.shape), sub), axis=1)  # by value, then index
            order[clash] = col_index[pos]
            ranks = np.broadcast_to(np.arange(dist.shape[1], dtype=np.uint64), pos.shape)
            sorted_keys[clash] = ranks
            inv = np.empty(pos.shape, dtype=np.uint64)
            np.put_along_axis(inv, pos, ranks, axis=1)
            keys[clash] = inv
    return order, sorted_keys, keys


# ---------------------------------------------------------------------------------------------
# the core: one chunk of query rows against one group's gallery columns
# ---------------------------------------------------------------------------------------------
def _chunk_metrics(
    dist: np.ndarray,
    q_codes: np.ndarray,
    group: _Group,
    labels: _Labels,
    *,
    protocol: str,
    index_bits: int,
    q_cams: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, INP and first-match rank of each row (rank 0 and NaN for rows without a true match)."""
    c = dist.shape[0]
    ap = np.full(c, np.nan)
    inp = np.full(c, np.nan)
    first_rank = np.zeros(c, dtype=np.int64)
    if dist.shape[1] == 0:
        return ap, inp, first_rank
    order, sorted_keys, keys = _sorted_rows(dist, group.cols, index_bits)
    match = labels.g_codes[order] == q_codes[:, None]
    rows, cols = np.nonzero(match)  # row-major: rows ascending, columns (ranks) ascending in each row
    del match
    ranks = cols + 1
    if protocol == "llcm":
        assert labels.g_cams is not None and q_cams is not None
        removed = labels.g_cams[order[rows, cols]] == q_cams[rows]
        if removed.any():
            # removed images are all true-identity images: the rank of a kept match drops by the
            # number of removed matches before it in the same row
            n_all = np.bincount(rows, minlength=c)
            start_all = np.cumsum(n_all) - n_all
            before = np.cumsum(removed) - removed
            before -= np.repeat(before[start_all[n_all > 0]], n_all[n_all > 0])
            keep = ~removed
            rows, cols, ranks = rows[keep], cols[keep], ranks[keep] - before[keep]
    n = np.bincount(rows, minlength=c)
    valid = n > 0
    if not valid.any():
        return ap, inp, first_rank
    start = np.cumsum(n) - n
    hits = np.arange(rows.size) - np.repeat(start, n) + 1
    precision = hits / ranks
    ap[valid] = np.bincount(rows, weights=precision, minlength=c)[valid] / n[valid]
    first = start[valid]
    last = first + n[valid] - 1
    inp[valid] = n[valid] / ranks[last]
    if protocol == "regdb":
        first_rank[valid] = ranks[first]
    else:
        # deduplicated rank: 1 + number of other identities whose best-ranked (kept) image ranks
        # before the first true match
        vrows = np.flatnonzero(valid)
        best = np.minimum.reduceat(keys if vrows.size == c else keys[vrows], group.pid_starts, axis=1)
        first_key = sorted_keys[vrows, cols[first]]
        ahead = best < first_key[:, None]
        own_block = np.searchsorted(group.pid_of_block, q_codes[vrows])
        own_ahead = ahead[np.arange(vrows.size), own_block]
        first_rank[valid] = ahead.sum(axis=1) - own_ahead + 1
    return ap, inp, first_rank


class _Accumulator:
    """Per-query results collected over chunks, reduced in query order (chunk-size independent)."""

    def __init__(self, num_q: int):
        self.ap = np.full(num_q, np.nan)
        self.inp = np.full(num_q, np.nan)
        self.first_rank = np.zeros(num_q, dtype=np.int64)

    def put(self, rows: np.ndarray | slice, result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.ap[rows], self.inp[rows], self.first_rank[rows] = result

    def finish(self, max_rank: int, protocol: str) -> dict[str, Any]:
        valid = self.first_rank > 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"no query has a true match in the gallery under protocol {protocol!r} (after its removal "
                "rule); check that query and gallery person ids overlap"
            )
        hist = np.bincount(np.minimum(self.first_rank[valid], max_rank + 1), minlength=max_rank + 2)
        cmc = np.cumsum(hist[1 : max_rank + 1]) / num_valid
        return {
            "cmc": cmc.astype(np.float64),
            "mAP": float(np.mean(self.ap[valid])),
            "mINP": float(np.mean(self.inp[valid])),
            "num_valid_queries": num_valid,
        }


def _chunks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for s in range(0, rows.size, size):
        yield rows[s : s + size]


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="query", disable=not enabled)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def rank_metrics(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_cams: Any = None,
    g_cams: Any = None,
    *,
    protocol: str,
    max_rank: int = 20,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """CMC, mAP and mINP of a query x gallery distance matrix under a dataset's protocol.

    Args:
        distmat: ``[Q, G]`` distances (smaller is more similar); float16/32/64 or integers; NumPy
            array or CPU tensor. NaN is an error.
        q_pids, g_pids: integer person ids of the ``Q`` queries and ``G`` gallery images.
        q_cams, g_cams: integer camera numbers; required by ``"sysu"`` and ``"llcm"``, unused by
            ``"regdb"`` (checked for length when given).
        protocol: ``"sysu"``, ``"regdb"`` or ``"llcm"`` (the removal and de-duplication rules in the
            module docstring).
        max_rank: length of the CMC curve.
        chunk_size: query rows per chunk (default :func:`default_chunk_size`, about 2 M
            ``chunk x gallery`` elements); the results do not depend on it.
        progress: show a tqdm progress bar over the queries.

    Returns:
        ``{"cmc": float array [max_rank] of fractions in [0, 1], "mAP": float, "mINP": float,
        "num_valid_queries": int}``; mAP and mINP are fractions (multiply by 100 for the papers'
        percentages). Queries with no true match after removal are skipped.

    Ties in distance are broken by gallery index (lower index ranks first), as a stable sort would.

    Raises:
        ValueError: bad shapes, protocol name, missing cameras, NaN distances, or no valid query.
    """
    _check_protocol(protocol)
    max_rank = _check_max_rank(max_rank)
    dist = _to_numpy(distmat, "distmat")
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D [queries, gallery], got shape {dist.shape}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat is empty (shape {dist.shape}): need at least one query and one gallery item")
    labels = _prepare_labels(num_q, num_g, q_pids, g_pids, q_cams, g_cams, protocol)
    _monotone_bits(dist[:1, :1])  # dtype check before any work
    chunk = _check_chunk_size(chunk_size, num_g, num_q)
    index_bits = max(1, int(num_g - 1).bit_length())
    acc = _Accumulator(num_q)
    with _progress(num_q, progress, f"{protocol} metrics") as bar:
        for group in _groups(labels, num_q, num_g, protocol):
            contiguous = group.rows.size == num_q  # all queries in one group: slice rows, no copy
            for r in _chunks(group.rows, chunk):
                if contiguous:
                    rows = slice(int(r[0]), int(r[-1]) + 1)
                    block = dist[rows] if group.cols_identity else dist[rows][:, group.cols]
                else:
                    rows = r
                    block = dist[r] if group.cols_identity else dist[np.ix_(r, group.cols)]
                q_c = labels.q_cams[rows] if labels.q_cams is not None else None
                res = _chunk_metrics(
                    block, labels.q_codes[rows], group, labels,
                    protocol=protocol, index_bits=index_bits, q_cams=q_c,
                )
                acc.put(rows, res)
                bar.update(r.size)
    return acc.finish(max_rank, protocol)


class _FeatureDistance:
    """Distances from blocks of query features to a fixed gallery, with NumPy or with torch.

    Torch is used (on the query tensor's device) when ``q_feats`` is a tensor; both feature sets are
    brought to one floating dtype (float32 stays float32; integers become float64).
    """

    def __init__(self, q_feats: Any, g_feats: Any, metric: str):
        if metric not in DISTANCE_METRICS:
            raise ValueError(f"metric must be one of {list(DISTANCE_METRICS)}, got {metric!r}")
        self.metric = metric
        self.torch = _is_tensor(q_feats)
        if self.torch:
            import torch

            q = q_feats.detach()
            g = g_feats.detach() if _is_tensor(g_feats) else torch.as_tensor(np.asarray(g_feats))
            dtype = torch.promote_types(_torch_float(q.dtype), _torch_float(g.dtype))
            self.q, g = q.to(dtype), g.to(device=q.device, dtype=dtype)
        else:
            q = _to_numpy(q_feats, "q_feats")
            g = _to_numpy(g_feats, "g_feats")
            dtype = np.result_type(_numpy_float(q.dtype, "q_feats"), _numpy_float(g.dtype, "g_feats"))
            self.q, g = q.astype(dtype, copy=False), g.astype(dtype, copy=False)
        if g.ndim != 2:
            raise ValueError(f"g_feats must be 2-D [gallery, dim], got shape {tuple(g.shape)}")
        if self.q.ndim != 2 or self.q.shape[1] != g.shape[1]:
            raise ValueError(
                f"q_feats must be 2-D [queries, {g.shape[1]}] like g_feats, got shape {tuple(self.q.shape)}"
            )
        self.g = self._normalise(g) if metric == "cosine" else g
        self.g_sq = (self.g * self.g).sum(1) if metric == "euclidean" else None

    def _normalise(self, x: Any) -> Any:
        if self.torch:
            import torch

            return x / torch.clamp(torch.linalg.vector_norm(x, dim=1, keepdim=True), min=1e-12)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def query_block(self, rows: np.ndarray | slice) -> Any:
        if self.torch and not isinstance(rows, slice):
            import torch

            return self.q[torch.as_tensor(rows, device=self.q.device)]
        return self.q[rows]

    def __call__(self, q: Any) -> np.ndarray:
        """Distances ``[len(q), G]`` as a NumPy array."""
        if self.metric == "cosine":
            d = -(self._normalise(q) @ self.g.T)
        else:
            sq = (q * q).sum(1)[:, None] + self.g_sq[None, :] - 2.0 * (q @ self.g.T)
            if self.torch:
                import torch

                d = torch.sqrt(torch.clamp(sq, min=0.0))
            else:
                d = np.sqrt(np.maximum(sq, 0.0))
        return d.cpu().numpy() if self.torch else d

    def take_columns(self, cols: np.ndarray) -> _FeatureDistance:
        """The same distances to the gallery restricted to (and reordered by) ``cols``."""
        sub = object.__new__(_FeatureDistance)
        sub.metric, sub.torch, sub.q = self.metric, self.torch, self.q
        if self.torch:
            import torch

            index = torch.as_tensor(cols, device=self.g.device)
            sub.g = self.g.index_select(0, index)
            sub.g_sq = self.g_sq.index_select(0, index) if self.g_sq is not None else None
        else:
            sub.g = self.g[cols]
            sub.g_sq = self.g_sq[cols] if self.g_sq is not None else None
        return sub


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _torch_float(dtype: Any) -> Any:
    import torch

    return dtype if dtype.is_floating_point else torch.float64


def _numpy_float(dtype: np.dtype, name: str) -> np.dtype:
    if dtype in (np.float32, np.float64):
        return dtype
    if dtype == np.float16:
        return np.dtype(np.float32)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        return np.dtype(np.float64)
    raise ValueError(f"{name} must hold float32/float64 (or integer) features, got dtype {dtype}")


def pairwise_distances(q_feats: Any, g_feats: Any, *, metric: str = "cosine") -> np.ndarray:
    """The full ``[Q, G]`` distance matrix: ``"cosine"`` = negative dot product of L2-normalised
    features, ``"euclidean"`` = Euclidean distance of the features as given.

    NumPy arrays are computed with NumPy (float32 stays float32, integers become float64); torch tensors
    with torch on the query tensor's device. Returns a NumPy array.
    """
    fd = _FeatureDistance(q_feats, g_feats, metric)
    return fd(fd.q)


def rank_metrics_from_features(
    q_feats: Any,
    g_feats: Any,
    q_pids: Any,
    g_pids: Any,
    q_cams: Any = None,
    g_cams: Any = None,
    *,
    protocol: str,
    max_rank: int = 20,
    metric: str = "cosine",
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """:func:`rank_metrics` of features, computing distances chunk by chunk (never the full ``Q x G``).

    Distances are those of :func:`pairwise_distances` (``metric`` ``"cosine"``: negative dot product
    of L2-normalised features, or ``"euclidean"``), computed for ``chunk_size`` queries at a time
    (default :func:`default_chunk_size`), so peak memory is a few ``chunk x G`` arrays besides the
    features. Torch tensors are multiplied with torch on the query tensor's device.

    The results equal ``rank_metrics(pairwise_distances(q_feats, g_feats, metric=metric), ...)``
    whenever the matrix product of a block of rows gives the same bits as the full product (ties are
    broken by gallery index in both). Arguments and return value as :func:`rank_metrics`.
    """
    _check_protocol(protocol)
    max_rank = _check_max_rank(max_rank)
    fd = _FeatureDistance(q_feats, g_feats, metric)
    num_q, num_g = int(fd.q.shape[0]), int(fd.g.shape[0])
    if num_q == 0 or num_g == 0:
        raise ValueError(f"need at least one query and one gallery feature, got {num_q} and {num_g}")
    labels = _prepare_labels(num_q, num_g, q_pids, g_pids, q_cams, g_cams, protocol)
    chunk = _check_chunk_size(chunk_size, num_g, num_q)
    index_bits = max(1, int(num_g - 1).bit_length())
    acc = _Accumulator(num_q)
    with _progress(num_q, progress, f"{protocol} metrics ({metric})") as bar:
        for group in _groups(labels, num_q, num_g, protocol):
            group_fd = fd if group.cols_identity else fd.take_columns(group.cols)
            contiguous = group.rows.size == num_q
            for r in _chunks(group.rows, chunk):
                rows = slice(int(r[0]), int(r[-1]) + 1) if contiguous else r
                block = group_fd(fd.query_block(rows))
                q_c = labels.q_cams[rows] if labels.q_cams is not None else None
                res = _chunk_metrics(
                    block, labels.q_codes[rows], group, labels,
                    protocol=protocol, index_bits=index_bits, q_cams=q_c,
                )
                acc.put(rows, res)
                bar.update(r.size)
    return acc.finish(max_rank, protocol)
