"""The interface every vireid model implements (see docs/architecture.md)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from vireid.data.records import INTERMEDIATE_CODE, MODALITY_CODES, values_outside
from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def modality_codes(modality: torch.Tensor | str, n: int, device: torch.device) -> torch.Tensor:
    """``modality`` as a long tensor of ``n`` codes (a string applies to the whole batch)."""
    if isinstance(modality, str):
        if modality not in MODALITY_CODES and modality != "intermediate":
            raise ValueError(f"modality must be 'visible', 'infrared' or 'intermediate', got {modality!r}")
        code = MODALITY_CODES.get(modality, INTERMEDIATE_CODE)
        return torch.full((n,), code, dtype=torch.long, device=device)
    if modality.shape != (n,):
        raise ValueError(f"modality codes must have shape ({n},), got {tuple(modality.shape)}")
    return modality.to(device=device, dtype=torch.long)


#: Batch key of the modality codes kept on the host (a CPU copy the training loop adds beside the device
#: tensor), so that routing a mixed batch through two streams needs no device synchronisation.
HOST_MODALITY_KEY = "modality_host"


def routing_modality(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The modality codes a model routes ``batch`` by: the host copy when the batch has one, else
    ``batch["modality"]``."""
    return batch.get(HOST_MODALITY_KEY, batch["modality"])


@torch.compiler.disable
def host_codes(modality: torch.Tensor | str, n: int, *, allowed: int = 3) -> np.ndarray | None:
    """``modality`` as a NumPy array of ``n`` codes when it can be read without a device synchronisation
    (a string or a CPU tensor), checked to lie in ``0..allowed-1``; ``None`` for a tensor on an accelerator."""
    if isinstance(modality, str):
        return modality_codes(modality, n, torch.device("cpu")).numpy()
    if modality.device.type != "cpu":
        return None
    if modality.shape != (n,):
        raise ValueError(f"modality codes must have shape ({n},), got {tuple(modality.shape)}")
    codes = modality.detach().numpy().astype(np.int64, copy=False)
    bad = values_outside(codes, allowed)
    if bad:
        raise ValueError(f"modality codes must be 0 (visible), 1 (infrared) or 2 (derived view), got {bad}")
    return codes


#: A constructor argument's source: a dotted config key, or a tuple of keys (the argument is the tuple of their
#: values, e.g. ``("data.height", "data.width")``).
ConfigSource = str | tuple[str, ...]


def source_keys(source: ConfigSource) -> tuple[str, ...]:
    """The config keys of one :data:`ConfigSource`."""
    return source if isinstance(source, tuple) else (source,)


def config_values(cfg: Any, keys: Mapping[str, ConfigSource]) -> dict[str, Any]:
    """``{argument: value}`` of ``keys`` (argument -> :data:`ConfigSource`) read from the resolved config ``cfg``,
    lists as plain lists. The loader has checked every value (:mod:`vireid.config.checks`)."""

    def value(key: str) -> Any:
        node = cfg
        for part in key.split("."):
            node = node[part]
        return OmegaConf.to_container(node) if OmegaConf.is_config(node) else node

    return {arg: tuple(value(k) for k in key) if isinstance(key, tuple) else value(key) for arg, key in keys.items()}


class ReIDModel(nn.Module, abc.ABC):
    """A re-id model: losses in training, features in evaluation; normalises its own [0, 1] input.

    A model declares the config keys its constructor takes in :attr:`CONFIG_KEYS`; the default
    :meth:`from_config` reads them, so a model's module never reads the configuration. A model whose
    arguments are not plain config values overrides :meth:`from_config`."""

    #: Constructor argument -> the config key it is read from (:data:`ConfigSource`); ``num_classes`` comes
    #: from the training set.
    CONFIG_KEYS: ClassVar[Mapping[str, ConfigSource]] = {}

    @classmethod
    def from_config(cls, cfg: Any, num_classes: int) -> ReIDModel:
        """The model of ``cfg`` for ``num_classes`` training identities: ``CONFIG_KEYS`` read from the config."""
        return cls(num_classes=num_classes, **config_values(cfg, cls.CONFIG_KEYS))

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet mean/std normalisation of images in [0, 1]."""
        return (images - self.pixel_mean) / self.pixel_std

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split for the optimiser: ``backbone`` (pretrained, lower LR: every
        parameter under the ``backbone`` attribute) and ``head`` (everything else: new layers)."""
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": []}
        for name, param in self.named_parameters():
            if param.requires_grad:
                groups["backbone" if name.startswith("backbone.") else "head"].append(param)
        return groups

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training step outputs: named losses (keys starting with ``loss``) and logged values."""

    @abc.abstractmethod
    def extract(self, images: torch.Tensor, modality: torch.Tensor | str) -> torch.Tensor:
        """Test features ``[N, D]`` of images in [0, 1] of the given modality codes."""
