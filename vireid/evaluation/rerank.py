"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking person re-identification with
k-reciprocal encoding", CVPR 2017), vectorised with NumPy and SciPy sparse matrices, in two variants.

``variant="code"`` (the default) is the arithmetic of the authors' code (zhunzhong07/person-re-ranking's
``re_ranking``, which torchreid and fastreid reproduce, and from which every re-ranked number in the
literature comes). It differs from the paper's equations (``variant="paper"``, below) in:

- the original distance: the Euclidean distance of the features, squared, each column divided by its
  maximum over the universe, then transposed (``C = (D² / max_col D²)ᵀ``); ranking lists are plain
  argsorts of ``C``'s rows (ties by index; the item itself comes first only because its distance is 0);
- ``R(y, k1/2)`` uses ``round(k1 / 2)`` with NumPy's half-to-even rounding, and a candidate is added when
  ``|R(x, k1) ∩ R(y, k1/2)| > 2/3 |R(y, k1/2)|`` (strict);
- ``V_x[y] = exp(-C[x, y]) / Σ_{y' ∈ R*(x)} exp(-C[x, y'])`` (each row sums to 1); local query
  expansion averages the rows of ``x``'s first ``k2`` ranking-list entries;
- ``d_J = 1 - m / (2 - m)`` with ``m = Σ_y min(V_p[y], V_g[y])`` (rows of unit sum);
- ``d* = (1 - λ) d_J + λ C[p, g]`` (the normalised squared distance).

The paper's variant:

Notation: the probe set P (queries) and the gallery G form the universe U = P ∪ G of ``n`` items (the
other queries take part in every neighbourhood, as in the authors' evaluation). For L2-normalised
features the **original distance** is ``d(x, y) = ||x - y||² / 4 = (1 - cos(x, y)) / 2``, in [0, 1].
The ranking list of ``x`` sorts U by ``d(x, .)`` with ``x`` itself first (other ties by index).

- Eq. 3: ``N(x, k)`` = ``x`` and its ``k`` nearest other items (the first ``k + 1`` of its ranking list).
- Eq. 4: ``R(x, k) = {y ∈ N(x, k) : x ∈ N(y, k)}`` (k-reciprocal nearest neighbours; contains ``x``).
- Eqs. 6–7: ``R*(x, k) = R(x, k) ∪ R(y, k/2)`` for every ``y ∈ R(x, k)`` with
  ``|R(x, k) ∩ R(y, k/2)| >= 2/3 |R(y, k/2)|``; ``k/2`` is rounded half up.
- Eq. 8: ``V_x[y] = exp(-d(x, y))`` if ``y ∈ R*(x, k1)``, else 0.
- Eq. 11 (local query expansion): ``V_x`` is replaced by the mean of ``V_y`` over the first ``k2``
  entries of ``x``'s ranking list (``x`` included); ``k2 = 1`` disables it.
- Eq. 10: Jaccard distance ``d_J(p, g) = 1 - Σ_y min(V_p[y], V_g[y]) / Σ_y max(V_p[y], V_g[y])``.
- Eq. 12: final distance ``d*(p, g) = (1 - λ) d_J(p, g) + λ d(p, g)``.

Defaults are the paper's: ``k1 = 20``, ``k2 = 6``, ``λ = 0.3``. Choices where the paper leaves room are
listed in docs/paper-notes.md (original distance and its scale, whether ``x`` belongs to its own
neighbourhoods, rounding of ``k/2``, unnormalised ``V``).

Cost: ``O(n²)`` memory for the distance matrix of U (float32) and two boolean matrices (ranking lists
are computed in row blocks); the Jaccard numerators are accumulated over the sparse non-zeros of ``V``
(a join on shared columns), never as a dense ``|P| x |G| x n`` array. A SYSU-MM01 single-shot trial
(3,803 queries, 301 gallery images, 512-d) takes about 4 s on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: The paper's parameters (Section 5.2): k1, k2 and λ.
K1, K2, LAMBDA = 20, 6, 0.3
#: ``variant`` values: the authors' code (default, what published re-ranked numbers use) or the paper.
RERANK_VARIANTS = ("code", "paper")
#: Largest accepted ``| ||row|| - 1 |`` of re-ranking's input features (float16 features pass).
UNIT_NORM_TOLERANCE = 1e-2
#: Query-gallery pairs per chunk of the Jaccard accumulation.
_PAIR_CHUNK = 1 << 22


def original_distance(features: np.ndarray) -> np.ndarray:
    """``(1 - cos) / 2`` between all rows of L2-normalised ``features`` ``[n, D]`` (float32, in [0, 1])."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    d = (1.0 - x @ x.T) / 2.0
    np.clip(d, 0.0, 1.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def code_original_distance(features: np.ndarray) -> np.ndarray:
    """The authors' code's original distance ``[n, n]`` (float32): squared Euclidean distances of
    ``features``, each column divided by its maximum, transposed."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d2, 0.0, out=d2)
    col_max = d2.max(axis=0, keepdims=True)
    col_max[col_max == 0] = 1.0  # a column of identical items: leave it at 0
    return np.ascontiguousarray((d2 / col_max).T, dtype=np.float32)


def ranking_lists(dist: np.ndarray, length: int, *, block: int = 1024, self_first: bool = True) -> np.ndarray:
    """The first ``length`` entries of each item's ranking list ``[n, length]``: by distance, ties by
    index, with the item itself first when ``self_first`` (the paper's N(x, k); the authors' code sorts
    plainly). Rows are ranked in blocks of ``block`` (memory: a few ``block x n`` arrays)."""
    n = dist.shape[0]
    length = min(int(length), n)
    out = np.empty((n, length), dtype=np.int64)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        rank_d = np.array(dist[rows], dtype=np.float32)
        if self_first:
            rank_d[np.arange(len(rows)), rows] = -np.inf  # the item itself comes first
        if length < n:
            part = np.argpartition(rank_d, length - 1, axis=1)[:, :length]
        else:
            part = np.broadcast_to(np.arange(n), rank_d.shape).copy()
        vals = np.take_along_axis(rank_d, part, axis=1)
        order = np.lexsort((part, vals), axis=1)
        out[rows] = np.take_along_axis(part, order, axis=1)
    return out


def _reciprocal(neigh: np.ndarray) -> np.ndarray:
    """Mask ``[n, k]``: ``neigh[x, j]`` has ``x`` among its own first ``k`` neighbours (Eq. 4)."""
    n = neigh.shape[0]
    back = neigh[neigh]  # [n, k, k]: the neighbour lists of x's neighbours
    return (back == np.arange(n)[:, None, None]).any(axis=2)


def k_reciprocal_sets(dist: np.ndarray, k1: int, *, variant: str = "paper") -> np.ndarray:
    """Boolean ``[n, n]``: row ``x`` marks ``R*(x, k1)`` (Eqs. 4–7; ``variant`` as the module says)."""
    n = dist.shape[0]
    k1 = min(int(k1), n - 1)
    code = variant == "code"
    kh = int(np.around(k1 / 2.0)) if code else (k1 + 1) // 2  # half-to-even (code) or half up (paper)
    neigh = ranking_lists(dist, k1 + 1, self_first=not code)  # N(x, k1)
    recip = _reciprocal(neigh)  # R(x, k1) within N(x, k1)
    half = neigh[:, : kh + 1]  # N(x, k1/2): the ranking list's prefix
    recip_half = _reciprocal(half)
    rows = np.arange(n)
    in_r = np.zeros((n, n), dtype=bool)
    in_r[np.repeat(rows, neigh.shape[1]), neigh.ravel()] = recip.ravel()
    # candidate sets R(y, k1/2) of every y in N(x, k1): [n, k1 + 1, kh + 1]
    cand = half[neigh]
    cand_mask = recip_half[neigh]
    overlap = (in_r[rows[:, None, None], cand] & cand_mask).sum(axis=2)
    size = cand_mask.sum(axis=2)
    # Eq. 7 in integers (paper); the code's strict float test ``> 2./3 * size``
    accept = recip & ((overlap > 2.0 / 3 * size) if code else (3 * overlap >= 2 * size))
    r_star = in_r.copy()
    add = accept[:, :, None] & cand_mask
    r_star[np.broadcast_to(rows[:, None, None], cand.shape)[add], cand[add]] = True
    return r_star


def encode(dist: np.ndarray, k1: int, k2: int, *, variant: str = "paper") -> Any:
    """The k-reciprocal feature ``V`` (Eq. 8) after local query expansion (Eq. 11), as a CSR matrix
    (rows normalised to unit sum in the ``code`` variant)."""
    from scipy import sparse

    n = dist.shape[0]
    r_star = k_reciprocal_sets(dist, k1, variant=variant)
    rows, cols = np.nonzero(r_star)
    vals = np.exp(-dist[rows, cols].astype(np.float64))
    if variant == "code":
        vals /= np.bincount(rows, weights=vals, minlength=n)[rows]
    v = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    k2 = min(int(k2), n)
    if k2 > 1:
        expand = ranking_lists(dist, k2, self_first=variant != "code")
        s = sparse.csr_matrix(
            (np.full(expand.size, 1.0 / k2), (np.repeat(np.arange(n), k2), expand.ravel())), shape=(n, n)
        )
        v = (s @ v).tocsr()
    return v


def jaccard_distance(v: Any, num_query: int, *, unit_rows: bool = False) -> np.ndarray:
    """``d_J`` (Eq. 10) between the first ``num_query`` rows of ``v`` and the others ``[Q, G]``; with
    ``unit_rows`` (the authors' code) the denominator is ``2 - Σ min``."""
    v = v.tocsr()
    n = v.shape[0]
    q_n, g_n = int(num_query), n - int(num_query)
    coo = v.tocoo()
    r, c, x = coo.row, coo.col, coo.data
    is_q = r < q_n
    qr, qc, qx = r[is_q], c[is_q], x[is_q]
    g_sel = ~is_q
    order = np.argsort(c[g_sel], kind="stable")
    gr, gc, gx = r[g_sel][order] - q_n, c[g_sel][order], x[g_sel][order]
    col_start = np.searchsorted(gc, np.arange(n), side="left")
    col_end = np.searchsorted(gc, np.arange(n), side="right")
    num_min = np.zeros(q_n * g_n, dtype=np.float64)
    counts = col_end[qc] - col_start[qc]
    total = np.cumsum(counts)
    start = 0
    while start < len(qc):
        # query entries [start, stop) whose pairs fit in one chunk
        base = total[start - 1] if start else 0
        stop = int(np.searchsorted(total, base + _PAIR_CHUNK, side="right"))
        stop = max(stop, start + 1)
        cnt = counts[start:stop]
        owner = np.repeat(np.arange(start, stop), cnt)
        offset = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        g_idx = col_start[qc[owner]] + offset
        mins = np.minimum(qx[owner], gx[g_idx])
        num_min += np.bincount(qr[owner] * g_n + gr[g_idx], weights=mins, minlength=q_n * g_n)
        start = stop
    num_min = num_min.reshape(q_n, g_n)
    if unit_rows:
        return 1.0 - num_min / (2.0 - num_min)
    sums = np.asarray(v.sum(axis=1)).ravel()
    num_max = sums[:q_n, None] + sums[None, q_n:] - num_min
    return 1.0 - num_min / num_max


def check_variant(variant: str) -> str:
    if variant not in RERANK_VARIANTS:
        raise ValueError(f"re-ranking variant must be one of {', '.join(RERANK_VARIANTS)}, got {variant!r}")
    return variant


def k_reciprocal_rerank_distance(
    dist: np.ndarray, num_query: int, *, k1: int = K1, k2: int = K2, lambda_value: float = LAMBDA,
    variant: str = "code",
) -> np.ndarray:
    """Final distance ``d*`` (Eq. 12) ``[Q, G]`` from the variant's original distances ``[n, n]`` of the
    universe (queries first, ``num_query`` of them, then the gallery): :func:`code_original_distance`
    for ``variant="code"``, :func:`original_distance` for ``"paper"``."""
    check_variant(variant)
    dist = np.asarray(dist)
    n = dist.shape[0]
    if dist.ndim != 2 or dist.shape[1] != n:
        raise ValueError(f"dist must be a square [n, n] matrix, got shape {dist.shape}")
    if not 1 <= num_query < n:
        raise ValueError(f"num_query must be in 1..{n - 1} (at least one gallery item), got {num_query}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    v = encode(dist, k1, k2, variant=variant)
    d_j = jaccard_distance(v, num_query, unit_rows=variant == "code")
    return (1.0 - lambda_value) * d_j + lambda_value * dist[:num_query, num_query:].astype(np.float64)


def unit_rows(x: np.ndarray, name: str, *, normalize: bool = False) -> np.ndarray:
    """``x`` checked (or, with ``normalize``, made) L2-normalised row by row.

    Re-ranking's input contract: both variants are defined on unit-length features (the paper's original
    distance is ``(1 - cos) / 2``; the code's squared Euclidean distance only orders like the cosine on the
    unit sphere). Rows whose norm differs from 1 by more than :data:`UNIT_NORM_TOLERANCE` are refused,
    naming their range, unless ``normalize`` is given (zero rows then stay zero).
    """
    norms = np.linalg.norm(x, axis=1)
    if normalize:
        return (x / np.maximum(norms, 1e-12)[:, None]).astype(np.float32, copy=False)
    off = np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE
    if off.any():
        raise ValueError(
            f"{name}: k-reciprocal re-ranking expects L2-normalised features (every row of norm 1), but "
            f"{int(off.sum())} of {len(x)} rows have norms in [{norms[off].min():.4g}, {norms[off].max():.4g}]; "
            "normalise them first, or pass normalize=True"
        )
    return x


def k_reciprocal_rerank(
    q_feats: np.ndarray, g_feats: np.ndarray, *, k1: int = K1, k2: int = K2, lambda_value: float = LAMBDA,
    variant: str = "code", normalize: bool = False,
) -> np.ndarray:
    """Re-ranked distances ``[Q, G]`` (smaller is more similar) of L2-normalised query and gallery
    features; ``variant``: ``code`` (the authors' code, default) or ``paper`` (see the module docstring).

    Features that are not L2-normalised are refused with a ``ValueError`` (:func:`unit_rows`: the
    re-ranked order of unnormalised features is not the published method's); ``normalize=True``
    normalises them first."""
    check_variant(variant)
    q = np.asarray(q_feats, dtype=np.float32)
    g = np.asarray(g_feats, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"expected features [Q, D] and [G, D], got {q.shape} and {g.shape}")
    if len(q) == 0 or len(g) == 0:
        raise ValueError("need at least one query and one gallery feature")
    q = unit_rows(q, "q_feats", normalize=normalize)
    g = unit_rows(g, "g_feats", normalize=normalize)
    universe = np.concatenate([q, g])
    dist = code_original_distance(universe) if variant == "code" else original_distance(universe)
    return k_reciprocal_rerank_distance(dist, len(q), k1=k1, k2=k2, lambda_value=lambda_value, variant=variant)


# -- evaluation with re-ranking (``vireid test --rerank``) ---------------------------------------------
def rerank_params(k1: int = K1, k2: int = K2, lambda_value: float = LAMBDA, variant: str = "code") -> dict[str, Any]:
    """The label a re-ranked result carries: method, variant and parameters."""
    return {"method": "k-reciprocal (Zhong et al. CVPR 2017)", "variant": check_variant(variant),
            "k1": int(k1), "k2": int(k2), "lambda": float(lambda_value)}


def format_reranked_table(results: Mapping[str, Any]) -> str:
    """:func:`vireid.evaluation.evaluator.format_results_table` with the title labelled as re-ranked."""
    from vireid.evaluation.evaluator import format_results_table

    lines = format_results_table(results).split("\n")
    p = results.get("rerank_params", rerank_params())
    variant = p.get("variant", "paper")
    lines[0] += (f" -- RE-RANKED: k-reciprocal, {variant} variant (k1={p['k1']}, k2={p['k2']}, "
                 f"lambda={p['lambda']})")
    return "\n".join(lines)
