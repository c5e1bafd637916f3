"""Losses of vireid: one module per loss family, each docstring naming its paper equations.

- identity: ``CrossEntropyLabelSmooth`` (FAFE eq 13; DAM eq 9 with epsilon = 0)
- triplet: ``AdaptiveWeightTripletLoss`` (FAFE eqs 14-15), ``WeightedRegularizationTriplet`` (AGW),
  ``BatchHardTripletLoss`` (FAFE eq 14, DAM eq 10)
- center: ``CenterLoss`` (Wen et al., FAFE Table 4)
- esd: ``EnhancedSquaredDifferenceLoss`` (CAJ)
- build: ``metric_loss`` / ``build_metric_loss``, the one factory of ``loss.metric``
- hetero_center: ``HeteroCenterTripletLoss`` (DAM eq 11), ``HeteroCenterLoss`` (DAM eq 12),
  ``ModalityMeanMSELoss`` (DAM eq 13)

Decisions where the papers are ambiguous are in docs/paper-notes.md, section "Losses".
"""

from vireid.losses.build import METRIC_LOSSES, apply_metric_loss, build_metric_loss, metric_loss
from vireid.losses.center import CenterLoss
from vireid.losses.distance import pairwise_euclidean
from vireid.losses.esd import EnhancedSquaredDifferenceLoss
from vireid.losses.hetero_center import (
    HeteroCenterLoss,
    HeteroCenterTripletLoss,
    ModalityMeanMSELoss,
    modality_centers,
)
from vireid.losses.identity import CrossEntropyLabelSmooth
from vireid.losses.triplet import (
    AdaptiveWeightTripletLoss,
    BatchHardTripletLoss,
    WeightedRegularizationTriplet,
)

__all__ = [
    "METRIC_LOSSES",
    "AdaptiveWeightTripletLoss",
    "BatchHardTripletLoss",
    "CenterLoss",
    "CrossEntropyLabelSmooth",
    "EnhancedSquaredDifferenceLoss",
    "HeteroCenterLoss",
    "HeteroCenterTripletLoss",
    "ModalityMeanMSELoss",
    "WeightedRegularizationTriplet",
    "apply_metric_loss",
    "build_metric_loss",
    "metric_loss",
    "modality_centers",
    "pairwise_euclidean",
]
