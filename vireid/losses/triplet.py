"""Triplet losses over a batch: adaptive-weight triplet (FAFE eqs 14-15), AGW's weighted
regularisation triplet, and batch-hard triplet (FAFE eq 14, DAM eq 10, optionally cross-modality).

All use Euclidean distance ``d``. For an anchor ``a``, ``P(a)`` are the other samples of its identity
(the anchor itself is not its own positive) and ``N(a)`` the samples of other identities. Anchors
without any positive or any negative contribute no term; the loss is the mean over the anchors that
do (a scalar 0, still attached to the graph, when none does).

Adaptive weights (FAFE eq 15)::

    w_p = exp(d(a,p)) / sum_{p' in P(a)} exp(d(a,p'))       (far positives weigh more)
    w_n = exp(-d(a,n)) / sum_{n' in N(a)} exp(-d(a,n'))     (near negatives weigh more)
    t(a) = sum_p w_p d(a,p) - sum_n w_n d(a,n)
    hinge:    L = mean_a [t(a) + alpha]_+      (FAFE eq 15 with the bracket read as a hinge, alpha = 1)
    softplus: L = mean_a log(1 + exp(t(a)))    (AGW's weighted regularisation triplet, no margin)

AGW's weighted regularisation triplet (WRT), ``variant="reference"`` (the default): the arithmetic of
the AGW/CAJ reference code, which published AGW numbers include. The weights are not a normalised
softmax: every anchor is its own positive (distance ``sqrt(1e-12)``), and with ``m_a`` the largest
positive distance::

    w_p = exp(d(a,p) - m_a) / (sum_{p' in P+(a)} exp(d(a,p') - m_a) + 1e-6)     (P+(a): P(a) and a)
    w_n = exp(-d(a,n)) / (sum_{n' in N(a)} exp(-d(a,n')) + 1e-6)
    L = mean_a log(1 + exp(sum_p w_p d(a,p) - sum_n w_n d(a,n)))

The negatives' shift is 0 (the reference takes the row maximum of ``-d * mask``, and the masked
positions contribute 0), so once every negative is far (``exp(-d) << 1e-6``, about ``d >= 14``) the
negative weights no longer sum to 1, the negative term vanishes and the loss tends to
``softplus(mean positive distance)``. ``variant="softmax"`` uses exact softmax weights over ``P(a)`` and
``N(a)`` (the adaptive weights above with a softplus), which the AGW paper's equation describes.

Batch-hard (FAFE eq 14, DAM eq 10)::

    L = mean_a [rho + max_{p in P(a)} d(a,p) - min_{n in N(a)} d(a,n)]_+

With ``cross_modality=True`` P(a) and N(a) keep only samples on the other side of the modality gap:
codes 0 (visible) and 2 (visible-derived view: CAJ channel exchange, FAFE grayscale) form the
visible side, code 1 the infrared side. See docs/paper-notes.md, "Losses".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vireid.config.checks import TRIPLET_MODES, WRT_VARIANTS
from vireid.errors import ConfigError
from vireid.losses.distance import (
    INFRARED_CODE,
    check_features,
    check_modality,
    masked_mean,
    pairwise_euclidean,
)

#: The reference code's constant added to the weights' normaliser ("avoid division by zero").
WRT_NORMALISER_EPS = 1e-6


def _check_margin(margin: float, loss: str) -> float:
    margin = float(margin)
    if not margin >= 0.0:
        raise ValueError(f"{loss}: margin must be >= 0, got {margin!r}")
    return margin


def positive_negative_masks(pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``[N, N]`` masks: ``pos[a, j]`` same identity and ``j != a``; ``neg[a, j]`` other identity."""
    same = pids.unsqueeze(1) == pids.unsqueeze(0)
    eye = torch.eye(pids.shape[0], dtype=torch.bool, device=pids.device)
    return same & ~eye, ~same


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax of ``scores`` over the entries where ``mask`` is true (rows must have one)."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)


class AdaptiveWeightTripletLoss(nn.Module):
    """Adaptive-weight hard triplet of FAFE eqs 14-15 (``mode="hinge"``, ``margin`` is alpha) or AGW's
    weighted regularisation triplet (``mode="softplus"``, margin unused). Mean over anchors."""

    def __init__(self, *, margin: float = 1.0, mode: str = "hinge"):
        super().__init__()
        if mode not in TRIPLET_MODES:
            raise ValueError(f"AdaptiveWeightTripletLoss: mode must be one of {TRIPLET_MODES}, got {mode!r}")
        self.margin = _check_margin(margin, "AdaptiveWeightTripletLoss")
        self.mode = mode

    @classmethod
    def from_config(cls, cfg) -> AdaptiveWeightTripletLoss:
        """Reads ``loss.margin`` as alpha (FAFE uses alpha = 1: set ``loss.margin: 1.0``)."""
        try:
            return cls(margin=cfg.loss.margin, mode="hinge")
        except ValueError as err:
            raise ConfigError(f"loss.margin: expected a value >= 0, got {cfg.loss.margin!r}") from err

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """``features`` ``[N, D]``, ``pids`` long ``[N]``; returns the mean over valid anchors."""
        x = check_features(features, pids, loss=type(self).__name__)
        pos, neg = positive_negative_masks(pids)
        valid = pos.any(1) & neg.any(1)
        # rows without a positive or a negative are averaged out; their masks are widened so that their
        # (unused) softmax stays finite
        invalid = ~valid.unsqueeze(1)
        dist = pairwise_euclidean(x, x)
        w_pos = _masked_softmax(dist, pos | invalid)
        w_neg = _masked_softmax(-dist, neg | invalid)
        term = (w_pos * dist).sum(1) - (w_neg * dist).sum(1)
        per_anchor = F.relu(term + self.margin) if self.mode == "hinge" else F.softplus(term)
        return masked_mean(per_anchor, valid)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mode={self.mode!r}"


def reference_weighted_distances(
    dist: torch.Tensor, pids: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor ``(sum_p w_p d(a,p), sum_n w_n d(a,n))`` with the AGW/CAJ reference code's weights (its
    ``softmax_weights`` on ``scale * d``; the module docstring): every anchor, itself among its positives,
    the positives shifted by their largest (scaled) distance, the negatives not shifted, ``+1e-6`` in
    both normalisers. Shared by WRT and CAJ's ESD (``scale`` is ESD's alpha)."""
    same = pids.unsqueeze(1) == pids.unsqueeze(0)
    pos, neg = same.to(dist.dtype), (~same).to(dist.dtype)
    d_pos, d_neg = dist * pos, dist * neg
    s_pos = scale * d_pos
    e_pos = torch.exp(s_pos - s_pos.amax(1, keepdim=True)) * pos
    e_neg = torch.exp(-scale * d_neg) * neg  # max over the row of (-scale d * mask) is 0
    w_pos = e_pos / (e_pos.sum(1, keepdim=True) + WRT_NORMALISER_EPS)
    w_neg = e_neg / (e_neg.sum(1, keepdim=True) + WRT_NORMALISER_EPS)
    return (d_pos * w_pos).sum(1), (d_neg * w_neg).sum(1)


class WeightedRegularizationTriplet(AdaptiveWeightTripletLoss):
    """AGW's weighted regularisation triplet (WRT), ``mean_a softplus(sum_p w_p d(a,p) - sum_n w_n d(a,n))``.

    ``variant="reference"`` (default) reproduces the AGW/CAJ reference code's weights (the anchor is its
    own positive, ``+1e-6`` in the normalisers, no shift for the negatives: see the module docstring);
    ``variant="softmax"`` uses exact softmax weights over the other positives and the negatives.
    """

    def __init__(self, *, variant: str = "reference") -> None:
        if variant not in WRT_VARIANTS:
            raise ValueError(f"WeightedRegularizationTriplet: variant must be one of {WRT_VARIANTS}, got {variant!r}")
        super().__init__(margin=0.0, mode="softplus")
        self.variant = variant

    @classmethod
    def from_config(cls, cfg) -> WeightedRegularizationTriplet:
        """Reads ``loss.wrt_variant``."""
        return cls(variant=str(cfg.loss.wrt_variant))

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        if self.variant == "softmax":
            return super().forward(features, pids)
        x = check_features(features, pids, loss=type(self).__name__)
        far_positive, close_negative = reference_weighted_distances(pairwise_euclidean(x, x), pids)
        return F.softplus(far_positive - close_negative).mean()

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"


class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet (FAFE eq 14, DAM eq 10): farthest positive and nearest negative per anchor,
    hinge with ``margin`` (rho), mean over anchors. ``cross_modality=True`` mines positives and
    negatives only on the other side of the modality gap (codes {0, 2} visible side vs {1} infrared)."""

    def __init__(self, *, margin: float = 0.3, cross_modality: bool = False):
        super().__init__()
        self.margin = _check_margin(margin, "BatchHardTripletLoss")
        self.cross_modality = bool(cross_modality)

    @classmethod
    def from_config(cls, cfg) -> BatchHardTripletLoss:
        """Reads ``loss.margin`` and ``loss.cross_modality``."""
        try:
            return cls(margin=cfg.loss.margin, cross_modality=cfg.loss.cross_modality)
        except ValueError as err:
            raise ConfigError(f"loss.margin: expected a value >= 0, got {cfg.loss.margin!r}") from err

    def forward(
        self, features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``features`` ``[N, D]``, ``pids`` and ``modality`` long ``[N]``; ``modality`` is required when
        ``cross_modality`` is set (and only checked otherwise)."""
        name = type(self).__name__
        x = check_features(features, pids, loss=name)
        pos, neg = positive_negative_masks(pids)
        if self.cross_modality or modality is not None:
            modality = check_modality(
                modality, x.shape[0], loss=f"{name}(cross_modality={self.cross_modality})"
            )
        if self.cross_modality:
            infrared = modality == INFRARED_CODE
            other_side = infrared.unsqueeze(1) != infrared.unsqueeze(0)
            pos, neg = pos & other_side, neg & other_side
        valid = pos.any(1) & neg.any(1)
        dist = pairwise_euclidean(x, x)
        # rows without a positive or a negative reach +-inf here and are averaged out by masked_mean
        hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(1)
        hardest_neg = dist.masked_fill(~neg, float("inf")).amin(1)
        per_anchor = torch.where(valid, hardest_pos - hardest_neg + self.margin, torch.zeros_like(hardest_pos))
        return masked_mean(F.relu(per_anchor), valid)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, cross_modality={self.cross_modality}"
