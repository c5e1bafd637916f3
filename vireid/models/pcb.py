"""PCB local branch of DAM (paper B §1.1, after Sun et al., "Beyond part models", ECCV 2018).

The final feature map is cut into ``parts`` horizontal stripes; each stripe is pooled (GeM, average
or max, as the global branch), reduced by its own 1x1 conv to ``local_dim`` channels + BatchNorm +
ReLU, and classified by its own bias-free linear classifier. A height not divisible by ``parts`` is
split with ``torch.tensor_split`` (first stripes one row taller); ``H < parts`` is an error.
"""

from __future__ import annotations

import torch
from torch import nn

from vireid.models.layers import build_pool


class PCBHead(nn.Module):
    """``forward(feature_map) -> (stripe features [N, parts, local_dim], logits [parts][N, classes])``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        parts: int = 3,
        local_dim: int = 256,
        pool: str = "gem",
        gem_p: float = 3.0,
    ) -> None:
        super().__init__()
        if parts < 1:
            raise ValueError(f"the PCB branch needs at least one stripe, got {parts}")
        if local_dim < 1:
            raise ValueError(f"local_dim must be positive, got {local_dim}")
        self.parts = parts
        self.local_dim = local_dim
        self.pool = build_pool(pool, gem_p=gem_p)
        self.reduce = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, local_dim, kernel_size=1, bias=False),
                nn.BatchNorm2d(local_dim),
                nn.ReLU(inplace=True),
            )
            for _ in range(parts)
        )
        self.classifiers = nn.ModuleList(nn.Linear(local_dim, num_classes, bias=False) for _ in range(parts))
        for block in self.reduce:
            nn.init.kaiming_normal_(block[0].weight, mode="fan_out", nonlinearity="relu")
        for classifier in self.classifiers:
            nn.init.normal_(classifier.weight, 0.0, 0.001)

    def stripe_features(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Reduced stripe features ``[N, parts, local_dim]``, top stripe first."""
        if feature_map.shape[2] < self.parts:
            raise ValueError(f"cannot cut a feature map of height {feature_map.shape[2]} into {self.parts} stripes")
        features = []
        for stripe, reduce in zip(torch.tensor_split(feature_map, self.parts, dim=2), self.reduce):
            pooled = self.pool(stripe)[:, :, None, None]
            features.append(reduce(pooled).flatten(1))
        return torch.stack(features, dim=1)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.stripe_features(feature_map)
        logits = [classifier(features[:, i]) for i, classifier in enumerate(self.classifiers)]
        return features, logits
