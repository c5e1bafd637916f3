"""AGW (Ye et al., "Deep learning for person re-identification: a survey and outlook", TPAMI 2022),
the cross-modality baseline: a two-stream ResNet-50 with modality-specific stems, non-local blocks,
GeM pooling and a BNNeck.

Training (``forward(batch)``): ID loss (cross-entropy, label smoothing ``loss.id_smoothing``) on the
classifier logits of the post-BN feature, plus the metric loss ``loss.metric`` on the pre-BN pooled
feature (``wrt`` = AGW's weighted regularisation triplet, ``batch_hard``, ``adaptive``, ``esd`` (CAJ)
or ``none``). Every view of the batch (visible, derived, infrared) takes part in both losses.

Test (``extract``): the pooled feature after the BNNeck (``model.neck_feat=after``) or before it,
L2-normalised (as the reference code; cosine and Euclidean rankings then agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from vireid.config.checks import NECK_FEATS
from vireid.errors import ConfigError, check_choice
from vireid.losses import CrossEntropyLabelSmooth, apply_metric_loss, metric_loss
from vireid.models.backbones import TwoStreamResNet
from vireid.models.base import ReIDModel, routing_modality
from vireid.models.layers import POOLS, BNNeck, build_pool, l2_normalize
from vireid.models.registry import register_model


def unpack_batch(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, pids, modality)`` of a training batch, checked against docs/architecture.md."""
    missing = [k for k in ("images", "pids", "modality") if k not in batch]
    if missing:
        raise ValueError(f"training batch lacks {missing}; expected keys images, pids, modality (and camera)")
    images, pids, modality = batch["images"], batch["pids"], batch["modality"]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"batch['images'] must be [N, 3, H, W], got {tuple(images.shape)}")
    n = images.shape[0]
    for key, value in (("pids", pids), ("modality", modality)):
        if value.shape != (n,) or value.is_floating_point():
            raise ValueError(f"batch[{key!r}] must be an integer tensor of shape ({n},), got {value.dtype} {tuple(value.shape)}")
    return images, pids.long(), modality.long()


@register_model("agw")
class AGW(ReIDModel):
    """AGW: ``TwoStreamResNet`` + optional non-local + GeM/avg/max pooling + BNNeck."""

    def __init__(
        self,
        *,
        num_classes: int,
        arch: str = "resnet50",
        pretrained: str = "imagenet",
        specific_stages: int = 0,
        last_stride: int = 1,
        non_local: bool = True,
        non_local_inter_channels_one: bool = False,
        pool: str = "gem",
        gem_p: float = 3.0,
        neck_feat: str = "after",
        id_smoothing: float = 0.0,
        metric: str = "wrt",
        margin: float = 0.3,
        cross_modality: bool = True,
        wrt_variant: str = "reference",
        test_feature: str = "global",
    ) -> None:
        super().__init__()
        if test_feature != "global":
            name = getattr(type(self), "name", type(self).__name__)
            raise ConfigError(f"model.test_feature={test_feature!r} needs a local branch; {name} has only the global "
                              "feature (use 'global', or model.name=dam with model.local_parts > 0)")
        check_choice("model.pool", pool, POOLS)
        check_choice("model.neck_feat", neck_feat, NECK_FEATS)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.neck_feat = neck_feat
        self.backbone = TwoStreamResNet(
            arch=arch,
            pretrained=pretrained,
            specific_stages=specific_stages,
            last_stride=last_stride,
            non_local=non_local,
            non_local_inter_channels_one=non_local_inter_channels_one,
        )
        self.feat_dim = self.backbone.out_channels
        self.pool = build_pool(pool, gem_p=gem_p)
        self.neck = BNNeck(self.feat_dim, num_classes)
        self.id_loss = CrossEntropyLabelSmooth.checked(id_smoothing)
        self.metric_loss = metric_loss(metric, margin=margin, cross_modality=cross_modality,
                                       wrt_variant=wrt_variant, allowed=("wrt", "batch_hard", "adaptive", "esd", "none"))

    CONFIG_KEYS = {
        **TwoStreamResNet.CONFIG_KEYS,
        **{key: f"model.{key}" for key in ("pool", "gem_p", "neck_feat", "test_feature")},
        **{key: f"loss.{key}" for key in ("id_smoothing", "metric", "margin", "cross_modality", "wrt_variant")},
    }

    # ---------------------------------------------------------------------------------------------
    def stage_hooks(self) -> dict[int, Callable[[torch.Tensor], torch.Tensor]]:
        """Modules applied after backbone stages (none in AGW; DAM's MCA and PCA)."""
        return {}

    def feature_map(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        """Final backbone feature map ``[N, C, h, w]`` of images in [0, 1]."""
        return self.backbone(self.normalize(images), modality, hooks=self.stage_hooks())

    def metric_term(self, features: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        return apply_metric_loss(self.metric_loss, features, pids, modality)

    def global_losses(
        self, fmap: torch.Tensor, pids: torch.Tensor, modality: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        pooled = self.pool(fmap)
        _, logits = self.neck(pooled)
        out = {"loss_id": self.id_loss(logits, pids)}
        if self.metric_loss is not None:
            out["loss_tri"] = self.metric_term(pooled, pids, modality)
        out["acc"] = (logits.argmax(1) == pids).float().mean().detach()
        return out

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, pids, modality = unpack_batch(batch)
        fmap = self.feature_map(images, routing_modality(batch))
        return self.global_losses(fmap, pids, modality)

    def global_feature(self, fmap: torch.Tensor) -> torch.Tensor:
        """The global test feature (pre- or post-BNNeck), not normalised."""
        pooled = self.pool(fmap)
        return self.neck.bn(pooled) if self.neck_feat == "after" else pooled

    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        return l2_normalize(self.global_feature(self.feature_map(images, modality)))
