"""Euclidean distances and input checks shared by the metric losses.

Every metric loss of vireid measures Euclidean distance ``d(x, y) = ||x - y||_2`` (FAFE eqs 14-15,
DAM eqs 10-11). Losses compute in float32 even under mixed precision: squared norms of 2048-d
features overflow float16.
"""

from __future__ import annotations

import torch

from vireid.data.records import INTERMEDIATE_CODE, MODALITY_CODES, values_outside

#: Smallest squared distance before the square root: keeps the gradient finite for identical points.
SQUARED_DISTANCE_FLOOR = 1e-12

VISIBLE_CODE = MODALITY_CODES["visible"]
INFRARED_CODE = MODALITY_CODES["infrared"]
NUM_MODALITY_CODES = max(VISIBLE_CODE, INFRARED_CODE, INTERMEDIATE_CODE) + 1


def pairwise_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[M, N]`` matrix of ``||x_i - y_j||_2`` for ``x`` ``[M, D]`` and ``y`` ``[N, D]``.

    Uses ``||x||^2 + ||y||^2 - 2 x.y`` floored at 1e-12 before the square root, so identical points
    have distance 1e-6 and a zero (not NaN) gradient.
    """
    squared = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    return squared.clamp(min=SQUARED_DISTANCE_FLOOR).sqrt()


def rowwise_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[N]`` vector of ``||x_i - y_i||_2`` (floored like :func:`pairwise_euclidean`)."""
    return ((x - y) ** 2).sum(1).clamp(min=SQUARED_DISTANCE_FLOOR).sqrt()


def zero_loss(features: torch.Tensor) -> torch.Tensor:
    """A scalar 0 still attached to the graph of ``features`` (a batch with no valid term)."""
    return features.sum() * 0.0


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``valid`` is true, 0 (attached to the graph) when none is.

    Equal to ``values[valid].mean()`` without reading ``valid`` on the host: no device synchronisation,
    no data-dependent shape. The entries outside ``valid`` must be finite-gradient (callers keep their
    inputs harmless, e.g. a mask widened on invalid rows), since they take part in the graph with weight 0.
    """
    kept = torch.where(valid, values, torch.zeros_like(values))
    return kept.sum() / valid.sum().clamp(min=1).to(values.dtype)


def check_features(features: torch.Tensor, pids: torch.Tensor, *, loss: str) -> torch.Tensor:
    """Check ``features`` ``[N, D]`` floating and ``pids`` long ``[N]``; return features in float32."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.is_floating_point():
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"{loss}: features must be a floating tensor [N, D], got {shape}")
    check_labels(pids, features.shape[0], name="pids", loss=loss)
    return features.float()


def check_labels(labels: torch.Tensor, n: int, *, name: str, loss: str) -> None:
    """Check ``labels`` is an integer tensor of shape ``[n]``."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{loss}: {name} must be a long tensor [{n}], got {type(labels).__name__}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{loss}: {name} must be an integer (long) tensor, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(
            f"{loss}: {name} must have shape ({n},) to match the features, got {tuple(labels.shape)}"
        )


def check_modality(modality: torch.Tensor | None, n: int, *, loss: str) -> torch.Tensor:
    """Check ``modality`` is a long tensor ``[n]`` of codes 0 (visible), 1 (infrared), 2 (derived view)."""
    if modality is None:
        raise ValueError(
            f"{loss}: modality is required (long tensor [N] of codes 0 visible, 1 infrared, "
            f"2 visible-derived view), got None"
        )
    check_labels(modality, n, name="modality", loss=loss)
    # the values are read on the host only where that is free (a CPU tensor); on an accelerator the training
    # loop checked the batch's codes on the host before moving it (vireid.engine.step.check_batch_codes)
    if n and modality.device.type == "cpu":
        bad = values_outside(modality.detach().numpy(), NUM_MODALITY_CODES)
        if bad:
            raise ValueError(
                f"{loss}: modality codes must be 0 (visible), 1 (infrared) or 2 (visible-derived view), got {bad}"
            )
    return modality.long()
