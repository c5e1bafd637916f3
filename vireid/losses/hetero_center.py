"""Losses on per-identity modality centres in a batch: DAM eqs 11, 12 and 13.

Centres: for identity ``i`` and modality code ``m`` present in the batch,
``c_i^m = mean of the features of i with code m``; codes are 0 visible (v), 1 infrared (t, thermal)
and 2 the visible-derived view (m: CAJ channel-exchanged / FAFE grayscale). Pairs (i, m) absent from
the batch have no centre; every term that needs a missing centre is skipped.

DAM eq 11, three-modality hetero-centre triplet (``HeteroCenterTripletLoss``, the paper's
``L_center``)::

    L_center = mean over the valid terms of
        [rho + ||c_i^v - c_i^t|| - min_{j != i, n} ||c_i^v - c_j^n||]_+      (visible anchor)
        [rho + ||c_i^t - c_i^v|| - min_{j != i, n} ||c_i^t - c_j^n||]_+      (infrared anchor)
        [rho + ||c_i^m - c_i^t|| - min_{j != i, n} ||c_i^m - c_j^n||]_+      (derived-view anchor)

with ``||.||`` the Euclidean norm, ``n`` ranging over every modality centre present (v, t, m) of
every other identity ``j``. The paper writes each line as a sum over the P identities; the
hetero-centre triplet's reference code (Liu et al. 2020, which DAM follows) averages over anchor
centres, and so does vireid: the paper's value is this mean times the number of valid terms.

DAM eq 12, hetero-centre loss (``HeteroCenterLoss``, Zhu et al. 2020)::

    L_hc = sum_i ||c_i^v - c_i^t||_2^2      over identities with both a visible and an infrared centre

summed over identities and dimensions, as in the paper and in Zhu et al.'s loss.

DAM eq 13, modality-mean MSE (``ModalityMeanMSELoss``; eq 14 adds it into L_global)::

    L_mse = 1/(|I| D) sum_{i in I} ||c_i^v - c_i^t||_2^2      I = identities with both centres

i.e. ``F.mse_loss`` between the per-identity visible and infrared mean features (the paper's
``x_i^v - x_i^t`` read as modality means, as decided in the project notes).
Derived views (code 2) never count as visible in eqs 12 and 13.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vireid.data.records import INTERMEDIATE_CODE
from vireid.errors import ConfigError
from vireid.losses.distance import (
    INFRARED_CODE,
    NUM_MODALITY_CODES,
    VISIBLE_CODE,
    check_features,
    check_modality,
    masked_mean,
    pairwise_euclidean,
    rowwise_euclidean,
)

#: (anchor code, positive code) of the three lines of DAM eq 11: v->t, t->v, m->t.
EQ11_TERMS = (
    (VISIBLE_CODE, INFRARED_CODE),
    (INFRARED_CODE, VISIBLE_CODE),
    (INTERMEDIATE_CODE, INFRARED_CODE),
)


def modality_centers(
    features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-(identity, modality code) mean features of a batch of ``N`` samples.

    Identity ``i`` owns the row of its first sample in the batch, so every shape is fixed by ``N`` and
    nothing is read back from the device. Returns ``(owner, centers, present)``: ``owner`` ``[N]`` the
    identity of each row, ``centers`` ``[N, 3, D]`` (rows of absent pairs are 0), ``present`` bool
    ``[N, 3]`` (all false on the rows no identity owns).
    """
    n = pids.shape[0]
    first = (pids.unsqueeze(1) == pids.unsqueeze(0)).int().argmax(1)  # each sample's first same-id sample
    slot = first * NUM_MODALITY_CODES + modality
    num_slots = n * NUM_MODALITY_CODES
    sums = features.new_zeros(num_slots, features.shape[1]).index_add(0, slot, features)
    counts = features.new_zeros(num_slots).index_add(0, slot, torch.ones_like(features[:, 0]))
    centers = sums / counts.clamp(min=1).unsqueeze(1)
    shape = (n, NUM_MODALITY_CODES)
    return pids, centers.view(*shape, features.shape[1]), (counts > 0).view(shape)


def _centers_of(features, pids, modality, loss: str):
    x = check_features(features, pids, loss=loss)
    modality = check_modality(modality, x.shape[0], loss=loss)
    return x, modality_centers(x, pids.long(), modality)


class HeteroCenterTripletLoss(nn.Module):
    """Three-modality hetero-centre triplet of DAM eq 11 with margin ``rho`` (see the module docstring
    for the exact formula); mean over valid (identity, anchor modality) terms."""

    def __init__(self, *, margin: float = 0.3):
        super().__init__()
        margin = float(margin)
        if not margin >= 0.0:
            raise ValueError(f"HeteroCenterTripletLoss: margin must be >= 0, got {margin!r}")
        self.margin = margin

    @classmethod
    def from_config(cls, cfg) -> HeteroCenterTripletLoss:
        """Reads ``loss.margin`` (rho)."""
        try:
            return cls(margin=cfg.loss.margin)
        except ValueError as err:
            raise ConfigError(f"loss.margin: expected a value >= 0, got {cfg.loss.margin!r}") from err

    def forward(self, features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        x, (_, centers, present) = _centers_of(features, pids, modality, "HeteroCenterTripletLoss")
        rows = centers.shape[0]
        flat = centers.reshape(rows * NUM_MODALITY_CODES, -1)
        owner = torch.arange(rows, device=x.device).repeat_interleave(NUM_MODALITY_CODES)
        # negatives of identity row i: every present centre of every other identity row
        negative = (owner.unsqueeze(0) != torch.arange(rows, device=x.device).unsqueeze(1)) & present.reshape(1, -1)
        has_negative = negative.any(1)
        terms, valids = [], []
        for anchor_code, positive_code in EQ11_TERMS:
            valid = present[:, anchor_code] & present[:, positive_code] & has_negative
            anchor = centers[:, anchor_code]
            d_pos = rowwise_euclidean(anchor, centers[:, positive_code])
            d_neg = pairwise_euclidean(anchor, flat).masked_fill(~negative, float("inf")).amin(1)
            # rows without a term (absent centres, no negative) reach -inf here; masked_mean drops them
            terms.append(F.relu(torch.where(valid, self.margin + d_pos - d_neg, torch.zeros_like(d_pos))))
            valids.append(valid)
        return masked_mean(torch.cat(terms), torch.cat(valids))

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class HeteroCenterLoss(nn.Module):
    """Hetero-centre loss of DAM eq 12: ``sum_i ||c_i^v - c_i^t||_2^2`` over identities with both a
    visible (code 0) and an infrared (code 1) centre in the batch."""

    def forward(self, features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        x, (_, centers, present) = _centers_of(features, pids, modality, "HeteroCenterLoss")
        both = present[:, VISIBLE_CODE] & present[:, INFRARED_CODE]
        diff = centers[:, VISIBLE_CODE] - centers[:, INFRARED_CODE]
        return torch.where(both, (diff * diff).sum(1), torch.zeros_like(diff[:, 0])).sum()


class ModalityMeanMSELoss(nn.Module):
    """Visible/infrared MSE of DAM eq 13: ``F.mse_loss`` between per-identity visible-mean (code 0)
    and infrared-mean (code 1) features, averaged over identities and dimensions."""

    def forward(self, features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        x, (_, centers, present) = _centers_of(features, pids, modality, "ModalityMeanMSELoss")
        both = present[:, VISIBLE_CODE] & present[:, INFRARED_CODE]
        diff = centers[:, VISIBLE_CODE] - centers[:, INFRARED_CODE]
        # F.mse_loss over the identities with both centres: their squared differences / (count * D)
        return masked_mean((diff * diff).mean(1), both)
