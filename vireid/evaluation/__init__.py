"""Evaluation: the field's metrics (CMC, mAP, mINP) under the SYSU-MM01, RegDB and LLCM protocols, the
evaluator, k-reciprocal re-ranking, and ``evaluate_rank``, the call of torchreid and fastreid. The protocols are part of each dataset's definition and live in
:mod:`vireid.data.protocols`; they are re-exported here."""

from vireid.data.protocols import LlcmProtocol, ManifestProtocol, RegdbProtocol, SysuProtocol
from vireid.evaluation.feature_metrics import pairwise_distances, rank_metrics_from_features
from vireid.evaluation.market import evaluate_rank
from vireid.evaluation.metrics import rank_metrics

__all__ = [
    "LlcmProtocol",
    "evaluate_rank",
    "ManifestProtocol",
    "RegdbProtocol",
    "SysuProtocol",
    "pairwise_distances",
    "rank_metrics",
    "rank_metrics_from_features",
]
