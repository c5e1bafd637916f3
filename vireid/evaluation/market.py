"""``evaluate_rank``: the evaluation call of torchreid and fastreid, on vireid's ranking core.

Users of torchreid (``torchreid.metrics.evaluate_rank``) and fastreid
(``fastreid.evaluation.rank.evaluate_rank``) call::

    evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50)

on their own distance matrix. The same positional call works here, under the rule both apply by default
(the Market-1501 rule, vireid's ``protocol="market1501"``):

- for each query, gallery images with the query's person id **and** camera id are discarded;
- a query left without a true match is skipped (and at least one must remain);
- CMC is the standard one on the ranking after the removal (no identity de-duplication); AP is the mean of
  the precisions at the true matches; INP (fastreid's mINP) is the number of true matches over the
  position of the last one;
- when the gallery has fewer than ``max_rank`` images the curve has ``len(gallery)`` entries (both peers
  shorten ``max_rank`` to it); the CMC is float32, as theirs.

What comes back, by ``returns``:

- ``"torchreid"`` (default): ``(cmc, mAP)``, torchreid's pair;
- ``"fastreid"``: ``(cmc, all_AP, all_INP)``, fastreid's triple (per-query AP and INP of the valid queries,
  whose means are mAP and mINP).

Both are :class:`RankResult` tuples that also carry ``.cmc``, ``.mAP``, ``.mINP``, ``.all_AP``, ``.all_INP``
and ``.num_valid_queries`` by name. mAP and mINP are fractions, as the peers return them.

Ties: equal distances rank by gallery index (a stable sort); the peers' ``np.argsort`` (quicksort) may
order ties differently, so results can differ only on matrices with tied distances. The CUHK03 rule
(``use_metric_cuhk03=True``) is not provided and is refused; ``use_cython`` is accepted and has no effect
(the core is vectorised NumPy, faster than the peers' Cython: ``bench/eval_speed.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vireid.evaluation.metrics import rank_metrics, to_numpy

__all__ = ["RankResult", "evaluate_rank", "RETURN_STYLES"]

#: ``returns`` values: whose return shape :func:`evaluate_rank` gives.
RETURN_STYLES = ("torchreid", "fastreid")


class RankResult(tuple):
    """The peers' return tuple, with every figure also available by name."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    all_AP: np.ndarray
    all_INP: np.ndarray
    num_valid_queries: int

    def __new__(cls, values: tuple[Any, ...], **named: Any) -> RankResult:
        obj = super().__new__(cls, values)
        for key, value in named.items():
            setattr(obj, key, value)
        return obj


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    use_cython: bool = True,
    *,
    returns: str = "torchreid",
    threads: int | None = None,
) -> RankResult:
    """CMC and mAP of a ``[Q, G]`` distance matrix under the Market-1501 rule (module docstring), in the
    argument order and return shape of torchreid's and fastreid's ``evaluate_rank``.

    ``returns="torchreid"`` gives ``(cmc, mAP)``; ``"fastreid"`` gives ``(cmc, all_AP, all_INP)``. Either
    result also has ``.mINP`` and the other figures as attributes. ``threads``: as :func:`rank_metrics`.
    """
    if use_metric_cuhk03:
        raise ValueError("use_metric_cuhk03=True (the CUHK03 single-gallery-shot rule) is not provided by vireid; "
                         "evaluate_rank applies the Market-1501 rule")
    if returns not in RETURN_STYLES:
        raise ValueError(f"returns must be one of {list(RETURN_STYLES)}, got {returns!r}")
    dist = to_numpy(distmat, "distmat")
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D [queries, gallery], got shape {dist.shape}")
    metrics = rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, protocol="market1501",
                           max_rank=max(1, min(int(max_rank), dist.shape[1])), per_query=True, threads=threads)
    cmc = metrics["cmc"].astype(np.float32)
    named = {"cmc": cmc, "mAP": metrics["mAP"], "mINP": metrics["mINP"], "all_AP": metrics["AP"],
             "all_INP": metrics["INP"], "num_valid_queries": metrics["num_valid_queries"]}
    if returns == "fastreid":
        return RankResult((cmc, metrics["AP"], metrics["INP"]), **named)
    return RankResult((cmc, metrics["mAP"]), **named)
