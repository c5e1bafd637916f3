"""Evaluation: the field's metrics (CMC, mAP, mINP) under the SYSU-MM01, RegDB and LLCM protocols."""

from vireid.evaluation.metrics import pairwise_distances, rank_metrics, rank_metrics_from_features

__all__ = ["pairwise_distances", "rank_metrics", "rank_metrics_from_features"]
