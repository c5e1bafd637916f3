"""The interface every vireid model implements (see docs/architecture.md)."""

from __future__ import annotations

import abc
from collections.abc import Mapping

import numpy as np
import torch
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


class ReIDModel(nn.Module, abc.ABC):
    """A re-id model: losses in training, features in evaluation; normalises its own [0, 1] input."""

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
