"""Evaluation: the field's metrics (CMC, mAP, mINP) under the SYSU-MM01, RegDB and LLCM protocols."""

from vireid.evaluation.metrics import pairwise_distances, rank_metrics, rank_metrics_from_features
from vireid.evaluation.protocols import LlcmProtocol, ManifestProtocol, RegdbProtocol, SysuProtocol

__all__ = [
    "LlcmProtocol",
    "ManifestProtocol",
    "RegdbProtocol",
    "SysuProtocol",
    "pairwise_distances",
    "rank_metrics",
    "rank_metrics_from_features",
]
