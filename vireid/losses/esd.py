"""CAJ's enhanced squared difference (ESD) objective (Ye et al., "Channel Augmented Joint Learning
for Visible-Infrared Recognition", ICCV 2021; ``--method adp --square 1`` of the authors' code).

Over the channel-mixed batch (visible, channel-exchanged and infrared views together), for an anchor
``a`` with positives ``P(a)`` (same identity, ``a`` itself excluded) and negatives ``N(a)``, Euclidean
``d``, and the adaptive weights of AGW's WRT sharpened by ``alpha``::

    w_p = softmax_{p in P(a)}(alpha d(a,p)),   w_n = softmax_{n in N(a)}(-alpha d(a,n))
    d_p = sum_p w_p d(a,p),                    d_n = sum_n w_n d(a,n)
    s(a) = clamp(gamma (d_p - d_n) |d_p - d_n|, -88, 88)
    L = mean_a log(1 + exp(s(a)))

i.e. the soft-margin ranking loss applied to the *squared* difference of the weighted positive and
negative distances, with the sign of the difference (the reference computes it as
``SoftMarginLoss(gamma (d_p - d_n)^2, y)`` with ``y = -1`` when ``d_p > d_n`` else ``+1``, and clamps
the squared term at 88). The reference uses ``alpha = gamma = 1``.

``variant="reference"`` (default, ``loss.wrt_variant``) takes ``d_p`` and ``d_n`` with the reference
code's weights (:func:`vireid.losses.triplet.reference_weighted_distances`: the anchor among its own
positives, ``+1e-6`` normalisers, unshifted negatives, every anchor counted); ``variant="softmax"`` with
exact softmax weights over ``P(a)`` and ``N(a)`` (anchors without a positive or a negative contribute no
term).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vireid.losses.distance import masked_mean, pairwise_euclidean
from vireid.losses.triplet import WRT_VARIANTS, reference_weighted_distances


class EnhancedSquaredDifferenceLoss(nn.Module):
    """CAJ ESD loss ``forward(features [N, D], pids [N]) -> scalar`` (see the module docstring)."""

    def __init__(self, *, alpha: float = 1.0, gamma: float = 1.0, max_squared: float = 88.0,
                 variant: str = "reference") -> None:
        super().__init__()
        if variant not in WRT_VARIANTS:
            raise ValueError(f"ESD: variant must be one of {WRT_VARIANTS}, got {variant!r}")
        self.variant = variant
        if gamma <= 0 or max_squared <= 0:
            raise ValueError(f"ESD needs gamma > 0 and max_squared > 0, got gamma={gamma}, max_squared={max_squared}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.max_squared = float(max_squared)

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or pids.shape != (features.shape[0],):
            raise ValueError(
                f"ESD expects features [N, D] and pids [N], got {tuple(features.shape)} and {tuple(pids.shape)}"
            )
        x = features.float()
        if self.variant == "reference":
            d_p, d_n = reference_weighted_distances(pairwise_euclidean(x, x), pids, self.alpha)
            return self._objective(d_p - d_n).mean()
        same = pids.unsqueeze(1) == pids.unsqueeze(0)
        eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
        pos, neg = same & ~eye, ~same
        valid = pos.any(1) & neg.any(1)
        invalid = ~valid.unsqueeze(1)  # widened masks keep the unused rows' softmax finite
        dist = pairwise_euclidean(x, x)
        w_pos = torch.softmax((self.alpha * dist).masked_fill(~(pos | invalid), float("-inf")), dim=1)
        w_neg = torch.softmax((-self.alpha * dist).masked_fill(~(neg | invalid), float("-inf")), dim=1)
        return masked_mean(self._objective((w_pos * dist).sum(1) - (w_neg * dist).sum(1)), valid)

    def _objective(self, diff: torch.Tensor) -> torch.Tensor:
        signed_square = (self.gamma * diff * diff.abs()).clamp(-self.max_squared, self.max_squared)
        return F.softplus(signed_square)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, max_squared={self.max_squared}, variant={self.variant!r}"
