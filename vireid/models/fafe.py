"""FAFE (paper A: Huang & Shen 2024, "Cross-modal person re-identification based on fused attention and
feature enhancement"): a CrossViT encoder (§1.2, eqs 1-8), channel + spatial attention (CSA, §1.3,
eqs 9-12), a BNNeck, label-smoothing cross-entropy (eq 13) and the adaptive-weight hard triplet
(eqs 14-15). TrivialAugment (§1.1) and the grayscale view are the training pipeline's
(``data.trivial_augment``, ``data.grayscale_view``).

Backbone (``model.arch``):

- ``crossvit_*`` (the paper): one :class:`~vireid.models.crossvit.CrossViTEncoder` shared by every
  modality -- visible, infrared and the grayscale view of the visible image (modality code 2, a third
  stream trained with the same losses). The CSA feature map ``M`` is the patch tokens of one branch
  (``model.csa_branch``, default ``coarse``: the deeper, wider branch) reshaped to ``[N, d, h, w]``;
- ``resnet50`` / ``resnet18``: AGW's two-stream ResNet (modality-specific stems, non-local blocks as
  ``model.non_local``), ``M`` its layer4 map -- Table 3's rows without CrossViT.

Feature (pre-BN, ``[N, D]``): CrossViT: ``[CLS_fine ; CLS_coarse ; pool(M'')]`` (``D = d_f + d_c + d_M``);
ResNet: ``pool(M'')``. ``M'' = CSA(M)`` with ``model.csa``, else ``M`` itself (so switching CSA off changes
nothing else). ``pool`` is ``model.pool`` (FAFE's CrossViT configs use ``avg``: transformer tokens are
signed, and GeM clamps negatives).

Losses, on all three views of the batch (every term already weighted; their sum is the objective):

- ``loss_id``: eq 13, label-smoothing cross-entropy (xi = ``loss.id_smoothing``) on the BNNeck logits;
- the metric loss ``loss.metric`` on the pre-BN feature: ``adaptive`` (eq 15; ``loss.adaptive_mode``
  ``hinge`` with alpha = ``loss.margin``, or ``softplus``), ``batch_hard`` (eq 14, margin
  ``loss.margin``, ``loss.cross_modality``), ``wrt`` (AGW) -- returned as ``loss_tri``; ``center`` (Wen et
  al., Table 4) -- returned as ``loss_center = loss.center_weight * L_C``; or ``none``.

Test (``extract``): the feature after (``model.neck_feat=after``) or before the BNNeck, L2-normalised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from vireid.errors import ConfigError, check_choice
from vireid.losses import CenterLoss, CrossEntropyLabelSmooth, apply_metric_loss, metric_loss
from vireid.models.agw import NECK_FEATS, unpack_batch
from vireid.models.backbones import ARCHS, TwoStreamResNet
from vireid.models.base import ReIDModel, host_codes, routing_modality
from vireid.models.crossvit import TIMM_COARSE_SCALE, CrossViTEncoder, crossvit_names, is_crossvit
from vireid.models.csa import ChannelSpatialAttention
from vireid.models.layers import POOLS, BNNeck, build_pool, l2_normalize
from vireid.models.registry import register_model

METRICS = ("adaptive", "batch_hard", "center", "wrt", "none")
CSA_BRANCHES = ("fine", "coarse")


@register_model("fafe")
class FAFE(ReIDModel):
    """FAFE: CrossViT (or AGW's two-stream ResNet) + CSA + BNNeck; ID (eq 13) + metric (eq 15) losses."""

    def __init__(
        self,
        *,
        num_classes: int,
        arch: str = "crossvit_small_240",
        pretrained: str = "imagenet",
        img_size: Sequence[int] = (288, 144),
        crossvit_patch_size: Sequence[int] | None = None,
        crossvit_coarse_scale: float = TIMM_COARSE_SCALE,
        multiscale_residual: bool = True,
        drop_path_rate: float = 0.0,
        specific_stages: int = 0,
        last_stride: int = 1,
        non_local: bool = True,
        non_local_inter_channels_one: bool = False,
        csa: bool = True,
        csa_branch: str = "coarse",
        csa_reduction: int = 16,
        csa_kernel: int = 7,
        csa_combine: str = "concat",
        pool: str = "avg",
        gem_p: float = 3.0,
        neck_feat: str = "after",
        id_smoothing: float = 0.1,
        metric: str = "adaptive",
        margin: float = 1.0,
        adaptive_mode: str = "hinge",
        wrt_variant: str = "reference",
        cross_modality: bool = False,
        center_weight: float = 0.0005,
        test_feature: str = "global",
    ) -> None:
        super().__init__()
        if test_feature != "global":
            raise ConfigError(f"model.test_feature={test_feature!r}: FAFE has only the global feature (use 'global')")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        check_choice("model.pool", pool, POOLS)
        check_choice("model.neck_feat", neck_feat, NECK_FEATS)
        check_choice("model.csa_branch", csa_branch, CSA_BRANCHES)
        if center_weight < 0:
            raise ConfigError(f"loss.center_weight must be >= 0, got {center_weight}")
        self.num_classes = num_classes
        self.neck_feat = neck_feat
        self.arch = arch
        self.uses_crossvit = is_crossvit(arch)
        if self.uses_crossvit:
            self.backbone: nn.Module = CrossViTEncoder(
                arch=arch,
                img_size=img_size,
                patch_size=list(crossvit_patch_size) if crossvit_patch_size else None,
                coarse_scale=crossvit_coarse_scale,
                multiscale_residual=multiscale_residual,
                drop_path_rate=drop_path_rate,
                pretrained=pretrained,
            )
            self.csa_branch = CSA_BRANCHES.index(csa_branch)
            dims = self.backbone.embed_dims
            map_channels = dims[self.csa_branch]
            self.feat_dim = dims[0] + dims[1] + map_channels
        elif arch in ARCHS:
            self.backbone = TwoStreamResNet(
                arch=arch, pretrained=pretrained, specific_stages=specific_stages, last_stride=last_stride,
                non_local=non_local, non_local_inter_channels_one=non_local_inter_channels_one,
            )
            self.csa_branch = -1
            map_channels = self.feat_dim = self.backbone.out_channels
        else:
            raise ConfigError(
                f"model.arch: FAFE takes a CrossViT ({', '.join(crossvit_names())}) or a ResNet "
                f"({', '.join(ARCHS)}) backbone, got {arch!r}"
            )
        self.csa = (
            ChannelSpatialAttention(map_channels, reduction=csa_reduction, kernel_size=csa_kernel, combine=csa_combine)
            if csa
            else None
        )
        self.pool = build_pool(pool, gem_p=gem_p)
        self.neck = BNNeck(self.feat_dim, num_classes)
        self.id_loss = CrossEntropyLabelSmooth.checked(id_smoothing)
        self.metric = metric
        self.center_weight = float(center_weight)
        self.metric_loss = metric_loss(metric, margin=margin, cross_modality=cross_modality,
                                       adaptive_mode=adaptive_mode, wrt_variant=wrt_variant,
                                       num_classes=num_classes,
                                       feat_dim=self.feat_dim, allowed=METRICS)

    CONFIG_KEYS = {
        **TwoStreamResNet.CONFIG_KEYS,  # arch, pretrained and the ResNet keys (Table 3 rows without CrossViT)
        "img_size": ("data.height", "data.width"),
        **{key: f"model.{key}" for key in ("crossvit_patch_size", "crossvit_coarse_scale", "multiscale_residual",
                                           "drop_path_rate", "csa", "csa_branch", "csa_reduction", "csa_kernel",
                                           "csa_combine", "pool", "gem_p", "neck_feat", "test_feature")},
        **{key: f"loss.{key}" for key in ("id_smoothing", "metric", "margin", "adaptive_mode", "wrt_variant",
                                          "cross_modality", "center_weight")},
    }

    # ---------------------------------------------------------------------------------------------
    def _encode(self, images: torch.Tensor, modality: torch.Tensor | str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(M, cls_tokens)``: the CSA input map ``[N, C, h, w]`` and the CLS tokens (CrossViT only)."""
        x = self.normalize(images)
        if not self.uses_crossvit:
            return self.backbone(x, modality), []  # the two-stream backbone checks and routes the codes
        host_codes(modality, images.shape[0])  # checked where that is free (a string or CPU tensor)
        tokens = self.backbone(x)  # one encoder shared by all modalities
        fmap = self.backbone.patch_map(tokens[self.csa_branch], self.csa_branch)
        return fmap, [t[:, 0] for t in tokens]

    def feature_map(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        """The feature map ``M`` (before CSA) ``[N, C, h, w]`` of images in [0, 1]."""
        return self._encode(images, modality)[0]

    def spatial_attention(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        """CSA's spatial attention map ``A_s`` (eq 12) ``[N, h, w]`` in (0, 1); needs ``model.csa``."""
        if self.csa is None:
            raise ValueError("this FAFE model has no CSA module (model.csa=false): no spatial attention map")
        fmap, _ = self._encode(images, modality)
        return self.csa.forward_with_maps(fmap)[2][:, 0]

    def features(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        """The pre-BN feature ``[N, feat_dim]`` (module docstring)."""
        fmap, cls_tokens = self._encode(images, modality)
        if self.csa is not None:
            fmap = self.csa(fmap)
        return torch.cat([*cls_tokens, self.pool(fmap)], dim=1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, pids, modality = unpack_batch(batch)
        feat = self.features(images, routing_modality(batch))
        _, logits = self.neck(feat)
        out = {"loss_id": self.id_loss(logits, pids)}
        if isinstance(self.metric_loss, CenterLoss):
            out["loss_center"] = self.center_weight * self.metric_loss(feat, pids)
        elif self.metric_loss is not None:
            out["loss_tri"] = apply_metric_loss(self.metric_loss, feat, pids, modality)
        out["acc"] = (logits.argmax(1) == pids).float().mean().detach()
        return out

    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        feat = self.features(images, modality)
        return l2_normalize(self.neck.bn(feat) if self.neck_feat == "after" else feat)
