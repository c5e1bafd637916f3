"""Centre loss of Wen et al. (ECCV 2016), the L_center alternative of FAFE Table 4.

One learnable centre ``c_k`` per training identity (``nn.Parameter``, trained by the optimiser with
the rest of the model, initialised from a standard normal)::

    L_C = 1/N sum_i 1/2 ||x_i - c_{y_i}||_2^2

(Wen et al. write the sum over the mini-batch; vireid averages it, like the other losses.)
"""

from __future__ import annotations

import torch
from torch import nn

from vireid.losses.distance import check_features


class CenterLoss(nn.Module):
    """Wen et al. centre loss with ``num_classes`` learnable centres of dimension ``feat_dim``."""

    def __init__(self, *, num_classes: int, feat_dim: int):
        super().__init__()
        if int(num_classes) < 1 or int(feat_dim) < 1:
            raise ValueError(
                f"CenterLoss: num_classes and feat_dim must be >= 1, got num_classes={num_classes!r}, "
                f"feat_dim={feat_dim!r}"
            )
        self.num_classes = int(num_classes)
        self.feat_dim = int(feat_dim)
        self.centers = nn.Parameter(torch.randn(self.num_classes, self.feat_dim))

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """``features`` ``[N, feat_dim]``, ``pids`` long ``[N]`` in ``0..num_classes-1``."""
        x = check_features(features, pids, loss="CenterLoss")
        if x.shape[1] != self.feat_dim:
            raise ValueError(
                f"CenterLoss: features have dimension {x.shape[1]}, expected feat_dim={self.feat_dim}"
            )
        if pids.numel() and (int(pids.min()) < 0 or int(pids.max()) >= self.num_classes):
            raise ValueError(
                f"CenterLoss: pids must lie in 0..{self.num_classes - 1}, "
                f"got values in {int(pids.min())}..{int(pids.max())}"
            )
        diff = x - self.centers[pids.long()].float()
        return 0.5 * (diff * diff).sum(1).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"
