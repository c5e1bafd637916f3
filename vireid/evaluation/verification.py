"""Open-set figures: verification of query-gallery pairs (ROC, TPR at a fixed FPR) and the similarity
threshold that a given false-positive rate allows.

Ranking metrics assume the person is in the gallery; a deployed search must also say "no match". Each
query-gallery pair is a **genuine** pair (same person) or an **impostor** pair (different people); a pair is
accepted when its cosine similarity is **strictly above** a threshold ``t``:

- ``FPR(t)`` = impostor pairs accepted / impostor pairs; ``TPR(t)`` = genuine pairs accepted / genuine pairs;
- **TPR at FPR f** (as fastreid reports at f = 1e-4, 1e-3, 1e-2): with the ``N`` impostor scores sorted in
  decreasing order ``s_0 >= s_1 >= ...``, the threshold is ``t_f = s_k`` with ``k = floor(f N)``, so at
  most ``k`` impostors lie strictly above it (``FPR <= f``, ties only lower it) and no lower threshold
  keeps that bound; TPR is then measured at ``t_f``. When ``f N < 1`` the rate cannot be resolved with
  that many impostor pairs and the figure is ``None``;
- **AUC**: the probability that a genuine pair scores above an impostor pair (ties count one half), the
  area under the ROC curve.

Pairs follow the protocol's removal rule (:func:`vireid.evaluation.metrics.gallery_exclusion_mask`): a
pair a query ignores for ranking is neither genuine nor impostor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vireid.evaluation.metrics import gallery_exclusion_mask

#: The false-positive rates verification figures are reported at (fastreid's).
DEFAULT_FPRS = (1e-4, 1e-3, 1e-2)


def fpr_key(fpr: float) -> str:
    """The result key of TPR at ``fpr``: ``"TPR@FPR=1e-04"``."""
    return f"TPR@FPR={fpr:.0e}"


def _threshold_position(n: int, fpr: float) -> int | None:
    """Index of ``t_f`` among ``n`` impostor scores sorted ascending (``n - 1 - floor(fpr n)``), None when
    ``fpr n < 1``."""
    if not 0.0 < float(fpr) < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr!r}")
    k = int(np.floor(float(fpr) * n))
    return None if k < 1 else n - 1 - k


def threshold_at_fpr(impostor_scores: Any, fpr: float) -> float | None:
    """``t_f`` of the module docstring: accepting scores strictly above it accepts at most ``floor(fpr N)``
    of the ``N`` impostor scores. None when ``fpr N < 1`` (the rate is finer than the pairs resolve)."""
    scores = np.asarray(impostor_scores, dtype=np.float64).reshape(-1)
    position = _threshold_position(scores.size, fpr)
    if scores.size == 0:
        raise ValueError("no impostor pairs (pairs of different people) to calibrate a threshold on")
    if position is None:
        return None
    return float(np.partition(scores, position)[position])  # the (k + 1)-th largest score


def _auc_sorted(g: np.ndarray, imp: np.ndarray) -> float:
    below = np.searchsorted(imp, g, side="left")  # impostors strictly below each genuine score
    equal = np.searchsorted(imp, g, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (g.size * imp.size))


def auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(genuine score > impostor score) + P(equal) / 2 (the Mann-Whitney form of the ROC area)."""
    return _auc_sorted(np.sort(np.asarray(genuine, dtype=np.float64)), np.sort(np.asarray(impostor, dtype=np.float64)))


def roc_figures(genuine: Any, impostor: Any, fprs: Sequence[float] = DEFAULT_FPRS) -> dict[str, Any]:
    """TPR at each FPR (percent, or None where unresolvable), AUC (percent) and the pair counts; every
    figure is None when there are no genuine or no impostor pairs (a gallery of one person). Both score
    sets are sorted once: every threshold and the AUC are read from them."""
    g = np.sort(np.asarray(genuine, dtype=np.float64).reshape(-1))
    imp = np.sort(np.asarray(impostor, dtype=np.float64).reshape(-1))
    if g.size == 0 or imp.size == 0:
        return {**{fpr_key(f): None for f in fprs}, "AUC": None, "genuine_pairs": int(g.size),
                "impostor_pairs": int(imp.size)}
    out: dict[str, Any] = {}
    for f in fprs:
        position = _threshold_position(imp.size, f)
        accepted = None if position is None else g.size - np.searchsorted(g, imp[position], side="right")
        out[fpr_key(f)] = None if accepted is None else 100.0 * float(accepted) / g.size
    out["AUC"] = 100.0 * _auc_sorted(g, imp)
    out["genuine_pairs"] = int(g.size)
    out["impostor_pairs"] = int(imp.size)
    return out


def pair_scores(similarity: np.ndarray, q_pids: Any, g_pids: Any, q_cams: Any = None, g_cams: Any = None, *,
                protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of a ``[Q, G]`` similarity matrix under ``protocol``'s removal rule."""
    sim = np.asarray(similarity)
    qp, gp = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
    if sim.shape != (qp.size, gp.size):
        raise ValueError(f"similarity has shape {sim.shape}, expected ({qp.size}, {gp.size}) from the ids")
    kept = ~gallery_exclusion_mask(qp, gp, q_cams, g_cams, protocol=protocol)
    same = qp[:, None] == gp[None, :]
    return sim[same & kept], sim[~same & kept]


def verification_metrics(q_feats: Any, g_feats: Any, q_pids: Any, g_pids: Any, q_cams: Any = None,
                         g_cams: Any = None, *, protocol: str, fprs: Sequence[float] = DEFAULT_FPRS) -> dict[str, Any]:
    """:func:`roc_figures` of every query-gallery pair of L2-normalised features (cosine similarity)."""
    q = np.asarray(q_feats, dtype=np.float32)
    g = np.asarray(g_feats, dtype=np.float32)
    genuine, impostor = pair_scores(q @ g.T, q_pids, g_pids, q_cams, g_cams, protocol=protocol)
    return roc_figures(genuine, impostor, fprs)


def mean_verification(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean over trials of each figure (a figure that is None in some trial is None)."""
    keys = [k for k in rows[0] if k not in ("trial", "genuine_pairs", "impostor_pairs")]
    out: dict[str, Any] = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        out[k] = None if any(v is None for v in values) else float(np.mean(values))
    out["genuine_pairs"] = int(np.mean([r["genuine_pairs"] for r in rows]))
    out["impostor_pairs"] = int(np.mean([r["impostor_pairs"] for r in rows]))
    return out


def format_verification(results: dict[str, Any]) -> str:
    """One line of a result's open-set figures: the pair direction, TPR at each FPR, AUC and pair counts."""
    v = results["verification"]
    protocol = results.get("protocol") or {}
    default = "infrared_to_visible" if protocol.get("dataset") == "sysu" else "query-gallery"
    direction = str(protocol.get("direction", default)).replace("_", "-")
    figures = ", ".join(f"{k} {'n/a' if val is None else f'{val:.2f}'}" for k, val in v.items()
                        if k.startswith("TPR@"))
    auc_text = "n/a" if v["AUC"] is None else f"{v['AUC']:.2f}"
    return (f"verification ({direction} pairs, cosine similarity; mean over trials): {figures}, AUC {auc_text} "
            f"({v['genuine_pairs']:,} genuine / {v['impostor_pairs']:,} impostor pairs per trial; n/a: FPR finer "
            "than the pairs resolve)")
