"""DAM (paper B: Wei, Han, Wang & Fan 2024, "Visible-infrared person re-identification based on dual
attention mechanism"): two-stream ResNet-50 (stem + layer1 per modality), MCA (eqs 1-4) and PCA
(eqs 5-8) after configurable stages, a global branch and a PCB local branch.

Losses (every term returned already weighted, their sum is eq 16 ``L = L_global + alpha L_local``):

- ``loss_id``: eq 9, cross-entropy on the global BNNeck logits;
- ``loss_tri``: eq 10, the ``loss.metric`` loss on the pre-BN global feature (DAM: ``batch_hard`` with
  ``loss.cross_modality``, margin rho);
- ``loss_mse``: eq 13, ``mse_weight * L_mse`` (visible/infrared per-identity mean features);
  eq 14: ``L_global = loss_id + loss_tri + loss_mse``;
- local branch (``local_parts > 0``), eq 15 scaled by ``alpha``:
  ``loss_local_id = alpha * lambda1 * mean over stripes of L_id(stripe)``,
  ``loss_center = alpha * lambda2 * L_center`` (eq 11, three-modality hetero-centre triplet on the
  concatenated stripe features), ``loss_hc = alpha * lambda3 * L_hc`` (eq 12, same features).
  With ``loss.center_normalize`` (default) eqs 11-12 see the L2-normalised concatenated stripe
  feature: eq 12 sums squared centre distances over identities, which on raw 768-d BN-ReLU features
  is ~10^3 at initialisation and, times lambda3 = 2, drowns every other term (docs/paper-notes.md).

Test feature (``model.test_feature``): ``global`` (paper; post- or pre-BNNeck by ``model.neck_feat``),
``local`` (concatenated stripe features), ``both`` (concatenation of the L2-normalised global and
local features); the result is L2-normalised. With ``mca_after=[]``, ``pca_after=[]`` and
``local_parts=0`` the model is the paper's "Base" (Table 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vireid.config.checks import TEST_FEATURES
from vireid.errors import ConfigError, check_choice
from vireid.losses import HeteroCenterLoss, HeteroCenterTripletLoss, ModalityMeanMSELoss
from vireid.models.agw import AGW, unpack_batch
from vireid.models.backbones import stage_list
from vireid.models.base import routing_modality
from vireid.models.layers import l2_normalize
from vireid.models.mca import MultiScaleCrossAttention
from vireid.models.pca import PartChannelAttention
from vireid.models.pcb import PCBHead
from vireid.models.registry import register_model


@register_model("dam")
class DAM(AGW):
    """DAM: AGW-style global branch + MCA/PCA after chosen stages + PCB local branch."""

    def __init__(
        self,
        *,
        num_classes: int,
        specific_stages: int = 1,
        non_local: bool = False,
        metric: str = "batch_hard",
        mca_after: Sequence[int] = (3,),
        mca_reduction: int = 8,
        mca_pool_sizes: Sequence[int] = (3, 5, 7),
        mca_dilations: Sequence[int] = (1, 2, 3),
        pca_after: Sequence[int] = (4,),
        pca_parts: int = 3,
        local_parts: int = 3,
        local_dim: int = 256,
        test_feature: str = "global",
        mse_weight: float = 1.0,
        alpha: float = 1.0,
        lambda1: float = 0.5,
        lambda2: float = 0.1,
        lambda3: float = 2.0,
        center_normalize: bool = True,
        margin: float = 0.3,
        pool: str = "gem",
        gem_p: float = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            specific_stages=specific_stages,
            non_local=non_local,
            metric=metric,
            margin=margin,
            pool=pool,
            gem_p=gem_p,
            **kwargs,
        )
        check_choice("model.test_feature", test_feature, TEST_FEATURES)
        if local_parts < 0:
            raise ConfigError(f"model.local_parts must be >= 0 (0 disables the local branch), got {local_parts}")
        if test_feature != "global" and local_parts == 0:
            raise ConfigError(f"model.test_feature={test_feature!r} needs the local branch: set model.local_parts > 0")
        if pca_parts < 1:
            raise ConfigError(f"model.pca_parts must be >= 1, got {pca_parts}")
        for key, value in (("loss.mse_weight", mse_weight), ("loss.alpha", alpha), ("loss.lambda1", lambda1),
                           ("loss.lambda2", lambda2), ("loss.lambda3", lambda3)):
            if value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value}")
        mca_stages = stage_list(mca_after, "model.mca_after")
        pca_stages = stage_list(pca_after, "model.pca_after")
        first = max(1, self.backbone.specific_stages)
        for key, stages in (("model.mca_after", mca_stages), ("model.pca_after", pca_stages)):
            early = [s for s in stages if s < first]
            if early:
                raise ConfigError(
                    f"{key}={stages}: stages before {first} are modality-specific "
                    f"(model.specific_stages={self.backbone.specific_stages}); attention goes after shared stages"
                )
        channels = self.backbone.stage_channels
        self.mca = nn.ModuleDict(
            {
                f"layer{s}": MultiScaleCrossAttention(
                    channels[s], reduction=mca_reduction, pool_sizes=mca_pool_sizes, dilations=mca_dilations
                )
                for s in mca_stages
            }
        )
        self.pca = nn.ModuleDict({f"layer{s}": PartChannelAttention(channels[s], parts=pca_parts) for s in pca_stages})
        self.local = (
            PCBHead(self.feat_dim, num_classes, parts=local_parts, local_dim=local_dim, pool=pool, gem_p=gem_p)
            if local_parts > 0
            else None
        )
        self.test_feature = test_feature
        self.mse_weight = float(mse_weight)
        self.alpha = float(alpha)
        self.lambda1, self.lambda2, self.lambda3 = float(lambda1), float(lambda2), float(lambda3)
        self.center_normalize = bool(center_normalize)
        self.mse_loss = ModalityMeanMSELoss()
        self.center_loss = HeteroCenterTripletLoss(margin=margin)
        self.hc_loss = HeteroCenterLoss()

    CONFIG_KEYS = {
        **AGW.CONFIG_KEYS,  # the backbone's and AGW's keys (model.test_feature: DAM's local branch takes it), then DAM's own
        **{key: f"model.{key}" for key in ("mca_after", "mca_reduction", "mca_pool_sizes", "mca_dilations", "pca_after",
                                           "pca_parts", "local_parts", "local_dim")},
        **{key: f"loss.{key}" for key in ("mse_weight", "alpha", "lambda1", "lambda2", "lambda3", "center_normalize")},
    }

    def stage_hooks(self) -> dict[int, Callable[[torch.Tensor], torch.Tensor]]:
        """After stage ``s``: MCA (if configured there), then PCA (if configured there)."""
        hooks: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        for s in range(1, 5):
            modules = [d[f"layer{s}"] for d in (self.mca, self.pca) if f"layer{s}" in d]
            if len(modules) == 1:
                hooks[s] = modules[0]
            elif modules:
                hooks[s] = nn.Sequential(*modules)
        return hooks

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, pids, modality = unpack_batch(batch)
        fmap = self.feature_map(images, routing_modality(batch))
        out = self.global_losses(fmap, pids, modality)
        if self.mse_weight > 0:
            out["loss_mse"] = self.mse_weight * self.mse_loss(self.pool(fmap), pids, modality)
        if self.local is not None and self.alpha > 0:
            stripes, logits = self.local(fmap)
            local = stripes.flatten(1)
            # eqs 11-12 on the L2-normalised local feature (loss.center_normalize): see the docstring
            centred = l2_normalize(local) if self.center_normalize else local
            if self.lambda1 > 0:
                part_id = torch.stack([self.id_loss(part_logits, pids) for part_logits in logits]).mean()
                out["loss_local_id"] = self.alpha * self.lambda1 * part_id
            if self.lambda2 > 0:
                out["loss_center"] = self.alpha * self.lambda2 * self.center_loss(centred, pids, modality)
            if self.lambda3 > 0:
                out["loss_hc"] = self.alpha * self.lambda3 * self.hc_loss(centred, pids, modality)
            out["acc_local"] = (torch.stack(logits).sum(0).argmax(1) == pids).float().mean().detach()
        return out

    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        fmap = self.feature_map(images, modality)
        if self.test_feature == "global":
            return l2_normalize(self.global_feature(fmap))
        local = self.local.stripe_features(fmap).flatten(1)
        if self.test_feature == "local":
            return l2_normalize(local)
        return l2_normalize(torch.cat([l2_normalize(self.global_feature(fmap)), l2_normalize(local)], dim=1))
