"""Building blocks of the AGW baseline (Ye et al., TPAMI 2022) shared by the CNN models.

- :class:`NonLocalBlock`: the non-local block of Wang et al. (CVPR 2018) in the dot-product form
  AGW uses, ``z = W(y) + x`` with ``y_i = 1/N sum_j theta(x_i)^T phi(x_j) g(x_j)``; ``W`` ends in a
  BatchNorm whose weight and bias start at zero, so the block starts as the identity.
- :class:`GeneralizedMeanPooling` (GeM, Radenovic et al.): ``(mean(clamp(x, eps)^p))^(1/p)``.
- :class:`BNNeck` (Luo et al., "Bag of tricks"): BatchNorm1d with a frozen zero bias, then a
  bias-free linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vireid.config.checks import POOLS


class NonLocalBlock(nn.Module):
    """Dot-product non-local block (Wang et al. 2018, eq. 1 with ``f = theta^T phi / N``), as in AGW.

    ``inter_channels`` defaults to ``in_channels // 2`` (the paper's bottleneck). The AGW reference
    code computed ``reduc_ratio // reduc_ratio = 1`` instead; ``inter_channels=1`` reproduces that.
    """

    def __init__(self, in_channels: int, *, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = in_channels // 2 if inter_channels is None else inter_channels
        if inter < 1:
            raise ValueError(f"inter_channels must be >= 1, got {inter} for {in_channels} input channels")
        self.in_channels = in_channels
        self.inter_channels = inter
        self.g = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.W = nn.Sequential(nn.Conv2d(inter, in_channels, kernel_size=1), nn.BatchNorm2d(in_channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)  # [N, HW, C']
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [N, HW, C']
        phi = self.phi(x).flatten(2)  # [N, C', HW]
        affinity = torch.bmm(theta, phi) / (h * w)  # [N, HW, HW]
        y = torch.bmm(affinity, g).transpose(1, 2).reshape(n, self.inter_channels, h, w)
        return x + self.W(y)


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling ``[N, C, H, W] -> [N, C]``: ``(mean_hw(clamp(x, min=eps)^p))^(1/p)``.

    ``p = 1`` is average pooling, ``p -> inf`` max pooling; AGW uses ``p = 3`` (fixed).
    """

    def __init__(self, *, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent p must be positive, got {p}")
        self.p = float(p)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}"


class GlobalPool(nn.Module):
    """Global average or max pooling ``[N, C, H, W] -> [N, C]``."""

    def __init__(self, *, kind: str) -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"GlobalPool kind must be 'avg' or 'max', got {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def build_pool(kind: str, *, gem_p: float = 3.0) -> nn.Module:
    """The global pooling ``model.pool`` names: ``gem`` (with ``gem_p``), ``avg`` or ``max``."""
    if kind == "gem":
        return GeneralizedMeanPooling(p=gem_p)
    if kind in ("avg", "max"):
        return GlobalPool(kind=kind)
    raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {kind!r}")


class BNNeck(nn.Module):
    """BatchNorm1d neck with a frozen zero bias and a bias-free classifier.

    ``forward(features) -> (bn_features, logits)``. Initialisation as in the AGW reference: BN weight
    ``N(1, 0.01)``, classifier weight ``N(0, 0.001)``.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        nn.init.normal_(self.bn.weight, 1.0, 0.01)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(in_features, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, 0.0, 0.001)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn_features = self.bn(features)
        return bn_features, self.classifier(bn_features)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm."""
    return F.normalize(x, p=2.0, dim=1)
