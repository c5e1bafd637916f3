"""Two-stream ResNet backbone of the CNN models (AGW, CAJ, DAM).

The first stages are modality-specific: the visible stream processes visible images (code 0) and
views derived from visible images (code 2), the infrared stream infrared images (code 1); later
stages are shared. ``specific_stages=0`` gives one stem (conv1, bn1, relu, maxpool) per modality and
shares layers 1-4 (AGW, CAJ); ``specific_stages=1`` keeps layer1 modality-specific too ("parameters
not shared before the second residual stage", DAM §1.1).

Pretrained weights come from torchvision: ``"imagenet"`` (torchvision's ``IMAGENET1K_V1`` file from
the torch hub cache, downloaded when online), a path to a torchvision ResNet state-dict file, or
``"none"`` (random initialisation). Both streams start from the same weights.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torchvision
from torch import nn

from vireid.errors import CheckpointError, ConfigError
from vireid.models.base import host_codes
from vireid.models.layers import NonLocalBlock
from vireid.models.weights import WeightLoadReport, load_fitting_weights, read_state_dict

logger = logging.getLogger(__name__)

#: arch -> (torchvision constructor, ImageNet weights enum member, channels of layer1..layer4)
ARCHS: dict[str, tuple[Callable[..., torchvision.models.ResNet], Any, tuple[int, int, int, int]]] = {
    "resnet50": (
        torchvision.models.resnet50,
        torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
        (256, 512, 1024, 2048),
    ),
    "resnet18": (
        torchvision.models.resnet18,
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
        (64, 128, 256, 512),
    ),
}

#: AGW's non-local placement: after the last 2 blocks of layer2 and the last 3 blocks of layer3.
AGW_NON_LOCAL_BLOCKS = {1: 0, 2: 2, 3: 3, 4: 0}

#: A weight file must provide at least this fraction of the backbone's tensors.

STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")


def _imagenet_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    weights = ARCHS[arch][1]
    url = weights.url
    filename = Path(urlparse(url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except Exception as exc:  # offline (URLError), HTTP errors, unreadable cache, hash mismatch
        if cached.is_file():
            reason = f"the cached file {cached} could not be read ({type(exc).__name__}: {exc})"
        else:
            reason = (
                f"they are not in the torch hub cache ({cached}) and could not be downloaded from {url} "
                f"({type(exc).__name__}: {exc})"
            )
        raise CheckpointError(
            f"model.pretrained=imagenet: cannot load torchvision's ImageNet weights for {arch}: {reason}. "
            f"Copy {filename} into {cached.parent}, or set model.pretrained=/path/to/{filename} "
            f"(a torchvision {arch} state dict) or model.pretrained=none (random initialisation)."
        ) from exc
    return state, f"{cached} (torchvision {weights})"


def load_resnet_weights(resnet: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> WeightLoadReport:
    """Copy a torchvision ResNet state dict into ``resnet`` (its ``fc`` classifier is ignored).

    Missing and unexpected keys are logged; a tensor of the wrong shape, or fewer than
    ``vireid.models.weights.MIN_MATCHED_FRACTION`` of the backbone's tensors found in the file, raises ``CheckpointError``
    naming ``source``.
    """
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    own = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    return load_fitting_weights(
        resnet, state, own, source=source, what="the backbone", expected_file="a torchvision ResNet state dict",
        counted=[k for k in own if not k.endswith("num_batches_tracked")],
        ignore_unexpected=lambda k: k.startswith("fc."),
    )


def _set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    first = layer4[0]
    for module in first.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (stride, stride)


class TwoStreamResNet(nn.Module):
    """ResNet with modality-specific first stages: ``forward(images, modality) -> [N, C, h, w]``.

    ``images`` are normalised images; ``modality`` a long tensor of codes (0 visible, 1 infrared,
    2 visible-derived view) or a string. Codes 0 and 2 go through the ``visible`` stream, code 1
    through the ``infrared`` stream; a mixed batch is routed by masks and re-assembled in its
    original order. Stages are numbered 1..4 (layer1..layer4); ``hooks`` maps a stage to a module
    applied to the whole batch after that stage (stage >= ``specific_stages``, i.e. where the
    streams have merged). ``non_local`` inserts AGW's non-local blocks after the last blocks of
    the shared stages (``AGW_NON_LOCAL_BLOCKS``).
    """

    def __init__(
        self,
        *,
        arch: str = "resnet50",
        pretrained: str = "none",
        specific_stages: int = 0,
        last_stride: int = 1,
        non_local: bool = False,
        non_local_inter_channels_one: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ConfigError(f"model.arch: unknown backbone {arch!r}; expected one of {', '.join(ARCHS)}")
        if not 0 <= specific_stages <= 3:
            raise ConfigError(f"model.specific_stages must be 0..3 (stages after the stem kept per modality), got {specific_stages}")
        if last_stride not in (1, 2):
            raise ConfigError(f"model.last_stride must be 1 or 2, got {last_stride}")
        if non_local and specific_stages >= 2:
            raise ConfigError(
                f"model.non_local places blocks in layer2 and layer3, which must be shared; got model.specific_stages={specific_stages}"
            )
        constructor, _, channels = ARCHS[arch]
        resnet = constructor(weights=None)
        self.pretrained_report: WeightLoadReport | None = None
        if pretrained == "imagenet":
            state, source = _imagenet_state_dict(arch)
            self.pretrained_report = load_resnet_weights(resnet, state, source=source)
        elif pretrained != "none":
            path = Path(pretrained).expanduser()
            self.pretrained_report = load_resnet_weights(resnet, read_state_dict(path, expected="the path of a torchvision ResNet state-dict file"), source=str(path))
        _set_last_stride(resnet.layer4, last_stride)

        self.arch = arch
        self.specific_stages = specific_stages
        self.stage_channels = dict(zip((1, 2, 3, 4), channels))
        self.out_channels = channels[-1]
        stages: dict[str, nn.Module] = {
            "stem": nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool),
            **{f"layer{s}": getattr(resnet, f"layer{s}") for s in (1, 2, 3, 4)},
        }
        specific = STAGE_NAMES[: specific_stages + 1]
        self.visible = nn.ModuleDict({name: stages[name] for name in specific})
        self.infrared = nn.ModuleDict({name: copy.deepcopy(stages[name]) for name in specific})
        self.shared = nn.ModuleDict({name: stages[name] for name in STAGE_NAMES[specific_stages + 1 :]})
        self.non_local = nn.ModuleDict()
        if non_local:
            for stage, count in AGW_NON_LOCAL_BLOCKS.items():
                name = f"layer{stage}"
                count = min(count, len(self.shared[name]))
                if count:
                    inter = 1 if non_local_inter_channels_one else None
                    self.non_local[name] = nn.ModuleList(
                        NonLocalBlock(channels[stage - 1], inter_channels=inter) for _ in range(count)
                    )

    #: Constructor argument -> config key (the ``model.*`` key of the same name), declared for the models that
    #: embed the backbone (:attr:`vireid.models.base.ReIDModel.CONFIG_KEYS`).
    CONFIG_KEYS = {key: f"model.{key}" for key in ("arch", "pretrained", "specific_stages", "last_stride",
                                                   "non_local", "non_local_inter_channels_one")}

    def _run_stage(self, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if name not in self.non_local:
            return module(x)
        blocks = self.non_local[name]
        first = len(module) - len(blocks)
        for i, block in enumerate(module):
            x = block(x)
            if i >= first:
                x = blocks[i - first](x)
        return x

    def _run_stream(self, stream: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        for name, module in stream.items():
            x = self._run_stage(name, module, x)
        return x

    def _route(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        """The modality-specific stages: infrared images (code 1) through the infrared stream, the rest
        (visible 0, derived views 2) through the visible one, outputs in the input order. Planned on the
        host when the codes are there (a string or CPU tensor: no device synchronisation); codes on an
        accelerator are read back once."""
        if isinstance(modality, str):  # one modality for the whole batch (evaluation, exported graphs)
            host_codes(modality, 0)  # checks the name
            return self._run_stream(self.infrared if modality == "infrared" else self.visible, images)
        n = images.shape[0]
        codes = host_codes(modality, n)
        if codes is None:  # codes only on the device: one read
            codes = host_codes(modality.detach().cpu(), n)
        infrared = codes == 1
        if infrared.all():
            return self._run_stream(self.infrared, images)
        if not infrared.any():
            return self._run_stream(self.visible, images)
        vis_idx, ir_idx = np.flatnonzero(~infrared), np.flatnonzero(infrared)
        order = np.argsort(np.concatenate([vis_idx, ir_idx]), kind="stable")

        def index(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(images.device, non_blocking=True)

        merged = torch.cat([self._run_stream(self.visible, images[index(vis_idx)]),
                            self._run_stream(self.infrared, images[index(ir_idx)])])
        return merged[index(order)]

    def forward(
        self,
        images: torch.Tensor,
        modality: torch.Tensor | str,
        hooks: Mapping[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        hooks = dict(hooks or {})
        for stage in hooks:
            if not self.specific_stages <= stage <= 4 or stage < 1:
                raise ValueError(
                    f"a module after stage {stage} needs a shared stage; valid stages are "
                    f"{max(1, self.specific_stages)}..4 with specific_stages={self.specific_stages}"
                )
        x = self._route(images, modality)
        if self.specific_stages in hooks:
            x = hooks[self.specific_stages](x)
        for name, module in self.shared.items():
            x = self._run_stage(name, module, x)
            stage = STAGE_NAMES.index(name)
            if stage in hooks:
                x = hooks[stage](x)
        return x


def stage_list(values: Sequence[int], key: str) -> list[int]:
    """Validate a list of ResNet stage numbers (1..4) read from config key ``key``."""
    stages = [int(v) for v in values]
    bad = [v for v in stages if not 1 <= v <= 4]
    if bad:
        raise ConfigError(f"{key}: stage numbers must be 1..4 (layer1..layer4), got {stages}")
    if len(set(stages)) != len(stages):
        raise ConfigError(f"{key}: repeated stage in {stages}")
    return stages
