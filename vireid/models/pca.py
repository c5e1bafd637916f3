"""PCA, part channel-interaction attention (DAM paper B, §1.3, eqs 5-8).

``x`` (``[N, C, H, W]``) is split horizontally into ``p`` parts ``x_i`` (row bands). For each part,
with its own 1x1 convs:

- eq 5: ``x_i' = maxpool(ReLU(conv_i(x_i)))``: ``conv_i`` reduces ``C -> C / reduction`` (the
  "scaling transform"); ``maxpool`` is a 3x3 stride-1 max pooling with same padding;
- eq 6: ``x_i' = tanh(avgpool(conv_i'(x_i')))``: ``conv_i'`` restores ``C / reduction -> C`` and
  ``avgpool`` averages over the part's positions, giving one channel vector per part;
- eq 7: ``x' = concat(x_1', ..., x_p')`` along the height: each part's vector is broadcast over that
  part's rows, so ``x'`` has the shape of ``x``;
- eq 8: ``output = x + tanh(x')``.

The equations are kept literally, including the second ``tanh`` of eq 8 applied to the
already-``tanh``-ed ``x'`` (so each added value lies in ``(-tanh 1, tanh 1)``). A height not
divisible by ``p`` is split with ``torch.tensor_split`` (the first ``H mod p`` parts get one more row;
no row is dropped); ``H < p`` is an error. Decisions are recorded in docs/paper-notes.md ("Models").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PartChannelAttention(nn.Module):
    """PCA (DAM eqs 5-8): per-part channel vectors ``tanh(x')`` added to ``x``; shape-preserving."""

    def __init__(self, channels: int, *, parts: int = 3, reduction: int = 16, max_kernel: int = 3) -> None:
        super().__init__()
        if parts < 1:
            raise ValueError(f"PCA needs at least one part, got {parts}")
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"PCA reduction {reduction} leaves no channels of {channels}")
        if max_kernel < 1 or max_kernel % 2 == 0:
            raise ValueError(f"PCA max-pool kernel must be odd (same padding), got {max_kernel}")
        inner = channels // reduction
        self.channels = channels
        self.parts = parts
        self.max_kernel = max_kernel
        self.reduce = nn.ModuleList(nn.Conv2d(channels, inner, kernel_size=1) for _ in range(parts))  # conv_i, eq 5
        self.expand = nn.ModuleList(nn.Conv2d(inner, channels, kernel_size=1) for _ in range(parts))  # conv_i', eq 6

    def part_vectors(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Eqs 5-6 for every part: ``[N, C, 1, 1]`` vectors in (-1, 1), top part first."""
        if x.shape[2] < self.parts:
            raise ValueError(f"PCA cannot split a feature map of height {x.shape[2]} into {self.parts} parts")
        vectors = []
        for part, reduce, expand in zip(torch.tensor_split(x, self.parts, dim=2), self.reduce, self.expand):
            y = F.max_pool2d(F.relu(reduce(part)), self.max_kernel, stride=1, padding=self.max_kernel // 2)  # eq 5
            vectors.append(torch.tanh(expand(y).mean(dim=(2, 3), keepdim=True)))  # eq 6
        return vectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [t.shape[2] for t in torch.tensor_split(x, self.parts, dim=2)]
        x_prime = torch.cat(
            [v.expand(-1, -1, r, x.shape[3]) for v, r in zip(self.part_vectors(x), rows)], dim=2
        )  # eq 7
        return x + torch.tanh(x_prime)  # eq 8
