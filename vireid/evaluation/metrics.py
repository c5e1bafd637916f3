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
``"market1501"`` (the single-modality re-id rule of torchreid, fastreid and the Market-1501 code)
    Removal as LLCM (same identity and same camera); standard CMC on the ranking after removal (no
    de-duplication). :func:`vireid.evaluation.market.evaluate_rank` is the peers' call over it.

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

**Implementation.** Queries are processed in chunks of rows (the sort keys: :mod:`vireid.evaluation.ranking_keys`;
from features: :mod:`vireid.evaluation.feature_metrics`); memory beyond the inputs is a few buffers
of ``chunk x gallery`` elements, allocated once per call and reused by every chunk. Each distance row is
converted to unsigned integer keys that sort like the distances, with the gallery index packed into the
low bits, so one fast (unstable) in-place ``np.sort`` gives the stable order; for 64-bit distances that
float32 cannot hold exactly the value part is truncated, and rows where truncated keys collide are
re-sorted exactly with ``np.lexsort``. The SYSU-MM01 camera rule sets the top bits of the removed
columns' keys, so they sort to the tail of the row and are cut off. True matches are located with one
boolean comparison per chunk, and AP, INP and ranks are computed on the sparse list of matches (LLCM's
removed matches are dropped there, shifting the ranks after them). For the deduplicated CMC the gallery
columns are grouped by identity and ``np.minimum.reduceat`` over the keys gives the best-ranked image of
each identity; the deduplicated rank of the first true match is one plus the number of other identities
whose best image ranks before it (keeping the first occurrence of each identity gives the same rank).
No Python loop runs over queries or gallery items.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vireid.evaluation.chunk_metrics import chunk_metrics
from vireid.evaluation.ranking_keys import check_distance_dtype
from vireid.evaluation.ranking_layout import GalleryLayout, Labels, Workspace

__all__ = [
    "PROTOCOLS",
    "DEFAULT_CHUNK_ELEMENTS",
    "default_chunk_size",
    "gallery_exclusion_mask",
    "rank_metrics",
]

#: Valid values of the ``protocol`` argument.
PROTOCOLS = ("sysu", "regdb", "llcm", "market1501")
#: Protocols that remove gallery images of the query's identity seen by the query's camera.
SAME_CAMERA_RULE = ("llcm", "market1501")
#: Protocols whose camera rule needs both sides' cameras.
NEEDS_CAMERAS = ("sysu",) + SAME_CAMERA_RULE
#: Default number of ``chunk x gallery`` elements per chunk (about 2 M: a few tens of MiB per array).
DEFAULT_CHUNK_ELEMENTS = 1 << 21


_SYSU_INFRARED_INDOOR_CAMERA = 3
_SYSU_VISIBLE_SAME_ROOM_CAMERA = 2
#: The camera numbers each dataset's rule is written for (the folder names ``cam1``.. of its layout).
#: A rule applied to other numbers would silently test something else (0-based ids switch SYSU-MM01's
#: camera-3/camera-2 rule off), so they are refused.
PROTOCOL_CAMERAS = {"sysu": range(1, 7), "llcm": range(1, 10)}


#: Most threads :func:`rank_metrics` uses by default (each holds a workspace of a few chunk x G buffers).
MAX_THREADS = 8


def default_threads() -> int:
    """The CPUs this process may run on, at most :data:`MAX_THREADS`."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def default_chunk_size(num_gallery: int, num_queries: int | None = None) -> int:
    """Query rows per chunk: ``DEFAULT_CHUNK_ELEMENTS // num_gallery``, at least 1 (at most ``num_queries``)."""
    size = max(1, DEFAULT_CHUNK_ELEMENTS // max(1, int(num_gallery)))
    if num_queries is not None:
        size = min(size, max(1, int(num_queries)))
    return size


# ---------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------
def to_numpy(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} is required")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(x: Any, name: str, length: int, length_name: str) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {length_name} is {length}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")


def check_max_rank(max_rank: int) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    return int(max_rank)


def check_chunk_size(chunk_size: int | None, num_gallery: int, num_queries: int) -> int:
    if chunk_size is None:
        return default_chunk_size(num_gallery, num_queries)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size)


def check_cameras(protocol: str, cams: np.ndarray, name: str) -> None:
    """Refuse camera numbers outside the dataset's own (:data:`PROTOCOL_CAMERAS`), naming them."""
    allowed = PROTOCOL_CAMERAS.get(protocol)
    if allowed is None or cams.size == 0:
        return
    lo, hi = allowed.start, allowed.stop - 1
    bad = np.unique(cams[(cams < lo) | (cams > hi)])
    if bad.size:
        shown = ", ".join(str(int(c)) for c in bad[:8]) + (", ..." if bad.size > 8 else "")
        hint = ""
        if int(cams.min()) == lo - 1 and int(cams.max()) <= hi - 1:
            hint = "; these look 0-based: add 1 to every camera id"
        raise ValueError(f"{name} holds camera ids {shown}, but protocol {protocol!r} numbers its cameras "
                         f"{lo}..{hi} (the dataset's cam{lo}..cam{hi} folders; its camera rule depends on "
                         f"them){hint}")


def prepare_labels(
    num_q: int, num_g: int, q_pids: Any, g_pids: Any, q_cams: Any, g_cams: Any, protocol: str
) -> Labels:
    check_protocol(protocol)
    qp = _labels(q_pids, "q_pids", num_q, "the number of queries")
    gp = _labels(g_pids, "g_pids", num_g, "the number of gallery items")
    if protocol in NEEDS_CAMERAS and (q_cams is None or g_cams is None):
        missing = " and ".join(n for n, v in (("q_cams", q_cams), ("g_cams", g_cams)) if v is None)
        raise ValueError(f"protocol {protocol!r} needs query and gallery cameras; {missing} not given")
    qc = _labels(q_cams, "q_cams", num_q, "the number of queries") if q_cams is not None else None
    gc = _labels(g_cams, "g_cams", num_g, "the number of gallery items") if g_cams is not None else None
    for name, cams in (("q_cams", qc), ("g_cams", gc)):
        if cams is not None:
            check_cameras(protocol, cams, name)
    uniq, g_codes = np.unique(gp, return_inverse=True)
    pos = np.minimum(np.searchsorted(uniq, qp), len(uniq) - 1)
    q_codes = np.where(uniq[pos] == qp, pos, -1)
    return Labels(q_codes.astype(np.int32), g_codes.reshape(-1).astype(np.int32), qc, gc)


def gallery_layout(labels: Labels, num_g: int, protocol: str) -> GalleryLayout:
    cols = pid_starts = pid_of_block = removed_cols = None
    num_removed = 0
    if protocol in ("sysu", "llcm"):
        perm = np.argsort(labels.g_codes, kind="stable")  # by identity, then gallery index
        codes = labels.g_codes[perm]
        pid_starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        pid_of_block = codes[pid_starts]
        if not np.array_equal(perm, np.arange(num_g)):
            cols = perm
    col_index = (cols if cols is not None else np.arange(num_g)).astype(np.uint64)
    if protocol == "sysu":
        assert labels.g_cams is not None
        g_cams_col = labels.g_cams[cols] if cols is not None else labels.g_cams
        removed_cols = g_cams_col == _SYSU_VISIBLE_SAME_ROOM_CAMERA
        num_removed = int(removed_cols.sum())
    index_bits = max(1, int(num_g - 1).bit_length())
    return GalleryLayout(num_g, index_bits, cols, col_index, pid_starts, pid_of_block, removed_cols, num_removed)


# ---------------------------------------------------------------------------------------------
# the core: one chunk of query rows
# ---------------------------------------------------------------------------------------------
def _chunk_metrics(
    dist: np.ndarray,
    q_codes: np.ndarray,
    q_cams: np.ndarray | None,
    labels: Labels,
    layout: GalleryLayout,
    ws: Workspace,
    protocol: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, INP and first-match rank of each row (NaN, NaN and 0 for rows without a true match), by
    :func:`vireid.evaluation.chunk_metrics.chunk_metrics`. ``dist`` holds the chunk's distances with
    columns in the layout's order."""
    removed_rows = None
    if protocol == "sysu":
        assert q_cams is not None
        removed_rows = q_cams == _SYSU_INFRARED_INDOOR_CAMERA
    return chunk_metrics(dist, q_codes, q_cams, removed_rows, protocol in SAME_CAMERA_RULE, labels, layout, ws)


class _Accumulator:
    """Per-query results collected over chunks, reduced in query order (chunk-size independent)."""

    def __init__(self, num_q: int):
        self.ap = np.full(num_q, np.nan)
        self.inp = np.full(num_q, np.nan)
        self.first_rank = np.zeros(num_q, dtype=np.int64)

    def put(self, rows: slice, result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.ap[rows], self.inp[rows], self.first_rank[rows] = result

    def finish(self, max_rank: int, protocol: str, per_query: bool = False) -> dict[str, Any]:
        valid = self.first_rank > 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"no query has a true match in the gallery under protocol {protocol!r} (after its removal "
                "rule); check that query and gallery person ids overlap"
            )
        hist = np.bincount(np.minimum(self.first_rank[valid], max_rank + 1), minlength=max_rank + 2)
        cmc = np.cumsum(hist[1 : max_rank + 1]) / num_valid
        out = {
            "cmc": cmc.astype(np.float64),
            "mAP": float(np.mean(self.ap[valid])),
            "mINP": float(np.mean(self.inp[valid])),
            "num_valid_queries": num_valid,
        }
        if per_query:
            out.update(AP=self.ap[valid], INP=self.inp[valid], first_rank=self.first_rank[valid],
                       valid=valid)
        return out


def run_chunks(
    num_q: int,
    num_g: int,
    block_of: Any,
    labels: Labels,
    *,
    protocol: str,
    max_rank: int,
    chunk: int,
    progress: bool,
    desc: str,
    per_query: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Evaluate every chunk of rows; ``block_of(rows, layout, ws)`` gives the chunk's distances.
    ``threads`` chunks at a time (each thread with its own workspace; the results do not depend on it)."""
    from tqdm import tqdm

    layout = gallery_layout(labels, num_g, protocol)
    acc = _Accumulator(num_q)
    starts = range(0, num_q, chunk)
    threads = max(1, min(int(threads), len(starts)))
    local = threading.local()

    def one(s: int) -> int:
        ws = getattr(local, "ws", None)
        if ws is None:
            ws = local.ws = Workspace(chunk, num_g)  # each thread its own buffers
        rows = slice(s, min(s + chunk, num_q))
        q_cams = labels.q_cams[rows] if labels.q_cams is not None else None
        dist = block_of(rows, layout, ws)
        acc.put(rows, _chunk_metrics(dist, labels.q_codes[rows], q_cams, labels, layout, ws, protocol))
        return rows.stop - rows.start

    with tqdm(total=num_q, desc=desc, unit="query", disable=not progress) as bar:
        if threads == 1:
            for s in starts:
                bar.update(one(s))
        else:  # NumPy's sorts and ufuncs release the GIL: chunks run side by side, results land by row
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                for done in pool.map(one, starts):
                    bar.update(done)
    return acc.finish(max_rank, protocol, per_query)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def gallery_exclusion_mask(q_pids: Any, g_pids: Any, q_cams: Any = None, g_cams: Any = None, *,
                           protocol: str) -> np.ndarray:
    """Boolean ``[Q, G]``: which gallery images each query ignores under ``protocol``'s removal rule
    (the rule :func:`rank_metrics` applies; for pictures and search results that must agree with it).

    ``"sysu"``: camera-3 queries ignore every camera-2 gallery image; ``"llcm"`` and ``"market1501"``:
    same id and same camera; ``"regdb"``: nothing.
    """
    check_protocol(protocol)
    qp, gp = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
    mask = np.zeros((qp.size, gp.size), dtype=bool)
    if protocol == "regdb":
        return mask
    if q_cams is None or g_cams is None:
        raise ValueError(f"protocol {protocol!r} needs query and gallery cameras")
    qc, gc = np.asarray(q_cams).reshape(-1), np.asarray(g_cams).reshape(-1)
    if protocol == "sysu":
        mask |= (qc == _SYSU_INFRARED_INDOOR_CAMERA)[:, None] & (gc == _SYSU_VISIBLE_SAME_ROOM_CAMERA)[None, :]
    else:
        mask |= (qp[:, None] == gp[None, :]) & (qc[:, None] == gc[None, :])
    return mask


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
    per_query: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """CMC, mAP and mINP of a query x gallery distance matrix under a dataset's protocol.

    Args:
        distmat: ``[Q, G]`` distances (smaller is more similar); float16/32/64 or integers
            (within +-2**62); NumPy array or CPU tensor. NaN is an error.
        q_pids, g_pids: integer person ids of the ``Q`` queries and ``G`` gallery images.
        q_cams, g_cams: integer camera numbers; required by ``"sysu"`` (1..6), ``"llcm"`` (1..9) and
            ``"market1501"`` (any), unused by ``"regdb"`` (checked for length when given). Numbers
            outside a dataset's own are an error (0-based ids would silently change its camera rule).
        protocol: ``"sysu"``, ``"regdb"``, ``"llcm"`` or ``"market1501"`` (the removal and de-duplication rules in the
            module docstring).
        max_rank: length of the CMC curve.
        chunk_size: query rows per chunk (default :func:`default_chunk_size`, about 2 M
            ``chunk x gallery`` elements); the results do not depend on it.
        progress: show a tqdm progress bar over the queries.
        threads: chunks ranked at once (default :func:`default_threads`: the CPUs this process may use, at
            most :data:`MAX_THREADS`); 1 ranks them one after another. The results do not depend on it.
        per_query: also return each valid query's ``"AP"``, ``"INP"`` and ``"first_rank"`` (arrays in
            query order) and ``"valid"`` (bool ``[Q]``: which queries kept a true match).

    Returns:
        ``{"cmc": float64 array [max_rank] of fractions in [0, 1], "mAP": float, "mINP": float,
        "num_valid_queries": int}``; mAP and mINP are fractions (multiply by 100 for the papers'
        percentages). Queries with no true match after removal are skipped; ``cmc`` saturates past
        the gallery's length.

    Ties in distance are broken by gallery index (lower index ranks first), as a stable sort would.

    Raises:
        ValueError: bad shapes, protocol name, missing cameras, NaN distances, or no valid query.
    """
    check_protocol(protocol)
    max_rank = check_max_rank(max_rank)
    dist = to_numpy(distmat, "distmat")
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D [queries, gallery], got shape {dist.shape}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat is empty (shape {dist.shape}): need at least one query and one gallery item")
    check_distance_dtype(dist.dtype)
    labels = prepare_labels(num_q, num_g, q_pids, g_pids, q_cams, g_cams, protocol)
    chunk = check_chunk_size(chunk_size, num_g, num_q)

    def block_of(rows: slice, layout: GalleryLayout, ws: Workspace) -> np.ndarray:
        if layout.cols is None:
            return dist[rows]
        out = ws.get("block", dist.dtype, (rows.stop - rows.start, num_g))
        return np.take(dist[rows], layout.cols, axis=1, out=out)

    return run_chunks(num_q, num_g, block_of, labels, protocol=protocol, max_rank=max_rank, chunk=chunk,
                      progress=progress, desc=f"{protocol} metrics", per_query=per_query,
                      threads=default_threads() if threads is None else check_threads(threads))


