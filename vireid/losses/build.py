"""Build the global metric loss selected by ``loss.metric``."""

from __future__ import annotations

from torch import nn

from vireid.errors import ConfigError
from vireid.losses.triplet import (
    AdaptiveWeightTripletLoss,
    BatchHardTripletLoss,
    WeightedRegularizationTriplet,
)

METRIC_LOSSES = {
    "wrt": WeightedRegularizationTriplet,  # AGW
    "batch_hard": BatchHardTripletLoss,  # DAM eq 10 (loss.margin, loss.cross_modality)
    "adaptive": AdaptiveWeightTripletLoss,  # FAFE eq 15 (loss.margin is alpha; FAFE uses 1.0)
}


def build_metric_loss(cfg) -> nn.Module | None:
    """The metric loss named by ``loss.metric`` (``wrt | batch_hard | adaptive | none``), built with
    its ``from_config``; ``None`` for ``none``."""
    name = cfg.loss.metric
    if name == "none":
        return None
    if name not in METRIC_LOSSES:
        valid = ", ".join([*METRIC_LOSSES, "none"])
        raise ConfigError(f"loss.metric: unknown metric loss {name!r}; expected one of: {valid}")
    return METRIC_LOSSES[name].from_config(cfg)
