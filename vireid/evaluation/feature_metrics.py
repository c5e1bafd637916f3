"""Rank metrics from features: distances between query and gallery features computed block by block
(never the full ``Q x G`` matrix), with NumPy or, for tensors, with torch on their device (a GPU when the
features are there), then the metrics of :func:`vireid.evaluation.metrics.rank_metrics` on each block.

Cosine distance is ``1 - cos``; Euclidean distance is the plain L2 distance. The torch path gives the
numbers of the NumPy path (tested on CPU tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vireid.evaluation.metrics import (
    check_chunk_size,
    check_max_rank,
    check_protocol,
    prepare_labels,
    run_chunks,
    to_numpy,
)
from vireid.evaluation.ranking_layout import GalleryLayout, Workspace

#: Metrics accepted by :func:`pairwise_distances` and :func:`rank_metrics_from_features`.
DISTANCE_METRICS = ("cosine", "euclidean")


#: Query rows per matrix product in :func:`rank_metrics_from_features` (at least): products of a few
#: rows re-read the whole gallery for little work and run memory-bound.
MATMUL_ROWS = 256


_NORM_EPS = 1e-12


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
            q = to_numpy(q_feats, "q_feats")
            g = to_numpy(g_feats, "g_feats")
            dtype = np.result_type(_numpy_float(q.dtype, "q_feats"), _numpy_float(g.dtype, "g_feats"))
            self.q, g = q.astype(dtype, copy=False), g.astype(dtype, copy=False)
        if g.ndim != 2:
            raise ValueError(f"g_feats must be 2-D [gallery, dim], got shape {tuple(g.shape)}")
        if self.q.ndim != 2 or self.q.shape[1] != g.shape[1]:
            raise ValueError(
                f"q_feats must be 2-D [queries, {g.shape[1]}] like g_feats, got shape {tuple(self.q.shape)}"
            )
        # no normalised copy of the gallery: cosine scales the columns of each block instead
        self.g = g
        self.g_sq = self._sq_norms(g)
        if metric == "cosine":
            if self.torch:
                import torch

                self.g_scale = 1.0 / torch.clamp(torch.sqrt(self.g_sq), min=_NORM_EPS)
            else:
                self.g_scale = 1.0 / np.maximum(np.sqrt(self.g_sq), _NORM_EPS)

    def _sq_norms(self, x: Any) -> Any:
        if self.torch:
            import torch

            return torch.einsum("ij,ij->i", x, x)
        return np.einsum("ij,ij->i", x, x)

    def __call__(self, rows: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Distances ``[rows, G]`` of the query rows ``rows`` as a NumPy array (written to ``out``
        when given and the computation runs in NumPy).

        cosine: ``-(q / |q|) . g * (1 / |g|)``; euclidean: ``sqrt(max(|q|^2 + |g|^2 - 2 q . g, 0))``.
        """
        q = self.q[rows]
        if self.torch:
            import torch

            if self.metric == "cosine":
                qn = q / torch.clamp(torch.sqrt(self._sq_norms(q)), min=_NORM_EPS)[:, None]
                d = -(qn @ self.g.T) * self.g_scale[None, :]
            else:
                sq = self._sq_norms(q)[:, None] + self.g_sq[None, :] - 2.0 * (q @ self.g.T)
                d = torch.sqrt(torch.clamp(sq, min=0.0))
            return d.cpu().numpy()
        if self.metric == "cosine":
            qn = q / np.maximum(np.sqrt(self._sq_norms(q)), _NORM_EPS)[:, None]
            d = np.matmul(qn, self.g.T, out=out)
            d *= -self.g_scale[None, :]
            return d
        d = np.matmul(q, self.g.T, out=out)
        d *= -2.0
        d += self._sq_norms(q)[:, None]
        d += self.g_sq[None, :]
        np.maximum(d, 0.0, out=d)
        return np.sqrt(d, out=d)


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
    return fd(slice(None))


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
    (default :func:`vireid.evaluation.metrics.default_chunk_size`), so memory beyond the features is a few ``chunk x G``
    buffers reused by every chunk, plus one ``max(chunk, 256) x G`` block of distances (the matrix
    product runs on at least :data:`MATMUL_ROWS` query rows: products of a few rows are memory-bound).
    No normalised copy of the gallery is made. Torch tensors are multiplied with torch on the query
    tensor's device.

    The results equal ``rank_metrics(pairwise_distances(q_feats, g_feats, metric=metric), ...)``
    whenever the matrix product of a block of rows gives the same bits as the full product (ties are
    broken by gallery index in both). Arguments and return value as :func:`rank_metrics`.
    """
    check_protocol(protocol)
    max_rank = check_max_rank(max_rank)
    fd = _FeatureDistance(q_feats, g_feats, metric)
    num_q, num_g = int(fd.q.shape[0]), int(fd.g.shape[0])
    if num_q == 0 or num_g == 0:
        raise ValueError(f"need at least one query and one gallery feature, got {num_q} and {num_g}")
    labels = prepare_labels(num_q, num_g, q_pids, g_pids, q_cams, g_cams, protocol)
    chunk = check_chunk_size(chunk_size, num_g, num_q)

    # distances for `span` rows at a time (a multiple of the chunk), ranked `chunk` rows at a time
    span = chunk * max(1, -(-min(MATMUL_ROWS, num_q) // chunk))
    current: dict[str, Any] = {"start": -1, "block": None}

    def block_of(rows: slice, layout: GalleryLayout, ws: Workspace) -> np.ndarray:
        first = rows.start - rows.start % span
        if current["start"] != first:
            stop = min(first + span, num_q)
            out = None
            if not fd.torch:
                buf = current.get("buf")
                if buf is None:
                    buf = current["buf"] = np.empty(span * num_g, dtype=fd.q.dtype)
                out = buf[: (stop - first) * num_g].reshape(stop - first, num_g)
            current["start"], current["block"] = first, fd(slice(first, stop), out=out)
        d = current["block"][rows.start - first : rows.stop - first]
        if layout.cols is None:
            return d
        return np.take(d, layout.cols, axis=1, out=ws.get("block_cols", d.dtype, d.shape))

    return run_chunks(num_q, num_g, block_of, labels, protocol=protocol, max_rank=max_rank, chunk=chunk,
                progress=progress, desc=f"{protocol} metrics ({metric})")
