"""MCA, multi-scale cross attention (DAM paper B, §1.2, eqs 1-4).

For ``x`` of shape ``[N, C, H, W]``:

- ``Q = conv_q(x)``, ``K = conv_k(x)``: 1x1 convs to ``C' = C / reduction`` channels;
- eq 1: ``Q1 = conv_q2(maxpool_ms(conv_q1(Q)))``; eq 2: ``K1 = conv_k2(maxpool_ms(conv_k1(K)))`` with
  their own convs. ``maxpool_ms`` is a multi-scale max-pooling block: parallel max-pools with kernels
  ``pool_sizes``, stride 1 and same padding (so the spatial size is kept), concatenated along
  channels; ``conv_*2`` (1x1, ``len(pool_sizes) * C' -> C'``) fuses the scales;
- eq 3: ``V1 = avg(conv(Dilated(x)))``: parallel dilated 3x3 convs (rates ``dilations``, ``C -> C'``
  each, padding = rate), concatenated, a 1x1 conv back to ``C``, and a 3x3 stride-1 average pooling
  that keeps the spatial size;
- eq 4: ``output = x + gamma * Agg(Aff(Q1, K1), V1)``: ``Aff`` is the softmax over positions of
  ``Q1^T K1`` (an ``HW x HW`` affinity: row ``i`` holds the weights of every position ``j`` for
  position ``i``), ``Agg`` the affinity-weighted sum of ``V1`` (non-local / CCNet style). ``gamma`` is a
  learned scalar initialised to zero, so the block starts as the identity.

Decisions (docs/paper-notes.md, "Models"): scale fusion by concatenation + the eq-1/2 1x1 conv; the
value branch reduced to ``C'`` per dilation rate before its 1x1 conv; no scaling of ``Q1^T K1``
(literal; CCNet, whose Aff/Agg terms the paper uses, does not scale either).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class MultiScaleMaxPool(nn.Module):
    """Parallel stride-1 max-pools of several (odd) kernel sizes, concatenated along channels."""

    def __init__(self, pool_sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = [int(k) for k in pool_sizes]
        if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
            raise ValueError(f"pool sizes must be odd positive kernel sizes (same padding), got {list(pool_sizes)}")
        self.pool_sizes = sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.max_pool2d(x, k, stride=1, padding=k // 2) for k in self.pool_sizes], dim=1)

    def extra_repr(self) -> str:
        return f"pool_sizes={self.pool_sizes}"


class MultiScaleCrossAttention(nn.Module):
    """MCA (DAM eqs 1-4): ``x + gamma * Agg(Aff(Q1, K1), V1)``; shape-preserving, identity at init."""

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 8,
        pool_sizes: Sequence[int] = (3, 5, 7),
        dilations: Sequence[int] = (1, 2, 3),
    ) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"MCA reduction {reduction} leaves no channels of {channels}")
        rates = [int(d) for d in dilations]
        if not rates or any(d < 1 for d in rates):
            raise ValueError(f"MCA dilation rates must be positive, got {list(dilations)}")
        inner = channels // reduction
        self.channels = channels
        self.inner_channels = inner
        scales = len(list(pool_sizes))
        # eq 1
        self.conv_q = nn.Conv2d(channels, inner, kernel_size=1)
        self.conv_q1 = nn.Conv2d(inner, inner, kernel_size=1)
        self.pool_q = MultiScaleMaxPool(pool_sizes)
        self.conv_q2 = nn.Conv2d(scales * inner, inner, kernel_size=1)
        # eq 2
        self.conv_k = nn.Conv2d(channels, inner, kernel_size=1)
        self.conv_k1 = nn.Conv2d(inner, inner, kernel_size=1)
        self.pool_k = MultiScaleMaxPool(pool_sizes)
        self.conv_k2 = nn.Conv2d(scales * inner, inner, kernel_size=1)
        # eq 3
        self.dilated = nn.ModuleList(
            nn.Conv2d(channels, inner, kernel_size=3, padding=d, dilation=d) for d in rates
        )
        self.conv_v = nn.Conv2d(len(rates) * inner, channels, kernel_size=1)
        self.avg_v = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        # eq 4
        self.gamma = nn.Parameter(torch.zeros(1))

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Eq 1: ``Q1 = conv_q2(maxpool_ms(conv_q1(conv_q(x))))``."""
        return self.conv_q2(self.pool_q(self.conv_q1(self.conv_q(x))))

    def key(self, x: torch.Tensor) -> torch.Tensor:
        """Eq 2: ``K1 = conv_k2(maxpool_ms(conv_k1(conv_k(x))))``."""
        return self.conv_k2(self.pool_k(self.conv_k1(self.conv_k(x))))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """Eq 3: ``V1 = avg(conv(Dilated(x)))``."""
        return self.avg_v(self.conv_v(torch.cat([conv(x) for conv in self.dilated], dim=1)))

    def affinity(self, q1: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
        """Aff of eq 4: ``softmax_j(Q1_i . K1_j)``, shape ``[N, HW, HW]``."""
        return torch.softmax(torch.bmm(q1.flatten(2).transpose(1, 2), k1.flatten(2)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        attention = self.affinity(self.query(x), self.key(x))  # [N, HW, HW]
        v1 = self.value(x).flatten(2)  # [N, C, HW]
        aggregated = torch.bmm(v1, attention.transpose(1, 2)).reshape(n, c, h, w)  # Agg of eq 4
        return x + self.gamma * aggregated
