"""Channel and spatial attention (CSA) of FAFE §1.3 (eqs 9-12), applied to a feature map M [N, C, H, W].

Channel attention (eqs 9-10)::

    A_c(M) = sigmoid(C2(ReLU(C1(AvgPool(M)))) + C2(ReLU(C1(MaxPool(M)))))      [N, C, 1, 1]
    M'     = A_c(M) * M

with C1 (1x1 conv C -> C/r) and C2 (1x1 conv C/r -> C) shared by the two pooled descriptors (no bias,
as CBAM).

Spatial attention (eqs 11-12)::

    A_s(M') = sigmoid(Conv_kxk(pool_c(M')))                                      [N, 1, H, W]
    M''     = A_s(M') * M'

The prose of §1.3.2 pools over H x W, which would be a second channel attention; vireid pools **over
channels** (CBAM, the paper's reference [16]): ``pool_c`` is the channel-wise average and maximum maps,
either concatenated (``combine="concat"``, 2 x H x W, CBAM) or added (``combine="sum"``, 1 x H x W, the
paper's literal ``Avg(M) + Max(M)``), then a k x k conv (k = 7, "same" padding) and a sigmoid.
See docs/paper-notes.md, "FAFE".
"""

from __future__ import annotations

import torch
from torch import nn

from vireid.config.checks import COMBINES
from vireid.errors import ConfigError, check_choice


class ChannelAttention(nn.Module):
    """FAFE eq 10: ``A_c(M)`` ``[N, C, 1, 1]`` from the average- and max-pooled descriptors."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"ChannelAttention: channels and reduction must be >= 1, got {channels}, {reduction}")
        hidden = max(1, channels // reduction)
        self.c1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.c2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.c2(self.relu(self.c1(avg))) + self.c2(self.relu(self.c1(mx))))


class SpatialAttention(nn.Module):
    """FAFE eq 12 (CBAM form): ``A_s(M)`` ``[N, 1, H, W]`` from the channel-wise average and max maps,
    concatenated (``combine="concat"``) or summed (``combine="sum"``), a k x k conv and a sigmoid."""

    def __init__(self, *, kernel_size: int = 7, combine: str = "concat") -> None:
        super().__init__()
        check_choice("model.csa_combine", combine, COMBINES)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"model.csa_kernel must be a positive odd number (same padding), got {kernel_size}")
        self.combine = combine
        self.kernel_size = int(kernel_size)
        in_channels = 2 if combine == "concat" else 1
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=1, keepdim=True)
        mx = x.amax(dim=1, keepdim=True)
        pooled = torch.cat([avg, mx], dim=1) if self.combine == "concat" else avg + mx
        return torch.sigmoid(self.conv(pooled))

    def extra_repr(self) -> str:
        return f"combine={self.combine!r}"


class ChannelSpatialAttention(nn.Module):
    """FAFE's CSA module: channel attention (eqs 9-10), then spatial attention (eqs 11-12).

    ``forward(M) -> M''``; :meth:`forward_with_maps` also returns ``A_c`` ``[N, C, 1, 1]`` and ``A_s``
    ``[N, 1, H, W]`` (the spatial map is what ``vireid visualize attention`` draws).
    """

    def __init__(self, channels: int, *, reduction: int = 16, kernel_size: int = 7, combine: str = "concat") -> None:
        super().__init__()
        if reduction < 1:
            raise ConfigError(f"model.csa_reduction must be >= 1, got {reduction}")
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(kernel_size=kernel_size, combine=combine)

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a_c = self.channel(x)
        x1 = a_c * x  # eq 9
        a_s = self.spatial(x1)
        return a_s * x1, a_c, a_s  # eq 11

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_maps(x)[0]
