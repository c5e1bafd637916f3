"""The global metric loss selected by ``loss.metric``, built in one place for every model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vireid.errors import ConfigError, check_choice
from vireid.losses.center import CenterLoss
from vireid.losses.esd import EnhancedSquaredDifferenceLoss
from vireid.losses.triplet import (
    TRIPLET_MODES,
    WRT_VARIANTS,
    AdaptiveWeightTripletLoss,
    BatchHardTripletLoss,
    WeightedRegularizationTriplet,
)

#: ``loss.metric`` values: what each is, and who uses it.
METRIC_LOSSES = {
    "wrt": "weighted regularisation triplet (AGW), loss.wrt_variant",
    "batch_hard": "batch-hard triplet, loss.margin, loss.cross_modality (DAM eq 10; FAFE Table 4)",
    "adaptive": "adaptive-weight hard triplet, alpha = loss.margin, loss.adaptive_mode (FAFE eq 15)",
    "esd": "enhanced squared difference (CAJ), loss.wrt_variant",
    "center": "centre loss, learnable centres (FAFE Table 4)",
    "none": "no metric loss",
}


def metric_loss(
    name: str,
    *,
    margin: float = 0.3,
    cross_modality: bool = True,
    adaptive_mode: str = "hinge",
    wrt_variant: str = "reference",
    num_classes: int | None = None,
    feat_dim: int | None = None,
    allowed: tuple[str, ...] | None = None,
) -> nn.Module | None:
    """The metric loss ``name`` (``None`` for ``none``). ``center`` needs ``num_classes`` and
    ``feat_dim``; ``allowed`` restricts the names a model supports (an error lists them)."""
    valid = allowed or tuple(METRIC_LOSSES)
    if name not in valid:
        raise ConfigError(f"loss.metric: unknown or unsupported metric loss {name!r}; expected one of: "
                          + ", ".join(valid))
    if margin < 0:
        raise ConfigError(f"loss.margin must be >= 0, got {margin}")
    if name == "wrt":
        check_choice("loss.wrt_variant", wrt_variant, WRT_VARIANTS)
        return WeightedRegularizationTriplet(variant=wrt_variant)
    if name == "batch_hard":
        return BatchHardTripletLoss(margin=margin, cross_modality=cross_modality)
    if name == "adaptive":
        check_choice("loss.adaptive_mode", adaptive_mode, TRIPLET_MODES)
        return AdaptiveWeightTripletLoss(margin=margin, mode=adaptive_mode)
    if name == "esd":
        check_choice("loss.wrt_variant", wrt_variant, WRT_VARIANTS)
        return EnhancedSquaredDifferenceLoss(variant=wrt_variant)
    if name == "center":
        if num_classes is None or feat_dim is None:
            raise ValueError("loss.metric=center needs num_classes and feat_dim")
        return CenterLoss(num_classes=num_classes, feat_dim=feat_dim)
    return None


def build_metric_loss(cfg: Any, *, num_classes: int | None = None, feat_dim: int | None = None) -> nn.Module | None:
    """:func:`metric_loss` for ``cfg.loss.metric`` with the ``loss.*`` keys of the config."""
    loss = cfg.loss
    return metric_loss(
        loss.metric,
        margin=float(loss.margin),
        cross_modality=bool(loss.cross_modality),
        adaptive_mode=str(getattr(loss, "adaptive_mode", "hinge")),
        wrt_variant=str(getattr(loss, "wrt_variant", "reference")),
        num_classes=num_classes,
        feat_dim=feat_dim,
    )


def apply_metric_loss(
    loss: nn.Module, features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor
) -> torch.Tensor:
    """Call a metric loss with what it needs: the cross-modality batch-hard triplet also takes the
    modality codes, the others features and labels only."""
    if isinstance(loss, BatchHardTripletLoss):
        return loss(features, pids, modality)
    return loss(features, pids)
