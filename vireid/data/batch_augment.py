"""Augmenting whole batches as tensors, on the device that trains (``data.augment_on``).

With ``data.augment_on=device`` (the default on CUDA) a loader worker no longer produces the augmented
float images. For each view it runs only the steps that need the picture itself (the resize, the
grayscale view's conversion, TrivialAugment: PIL operations that come first in every view's pipeline),
and for every later step it only *draws the random parameters*, from the same per-sample seed and in the
same order as the per-sample pipeline draws them:

- pad + random crop: ``(top, left)`` of the crop (``torchvision``'s own ``RandomCrop.get_params``);
- horizontal flip: whether to flip;
- :class:`~vireid.data.transforms.ChannelRandomErasing`: the erased box, or none;
- :class:`~vireid.data.transforms.ChannelExchange` / :class:`~vireid.data.transforms.ChannelAdaptiveGray`:
  which channel (or the reference grayscale) replaces the image in normalised space, or none.

The worker hands over the uint8 image at the training size (a quarter of the bytes of a float image) and
one row of :data:`PARAM_FIELDS` per image; :class:`BatchAugment` then pads, crops, flips, converts, erases
and exchanges channels for the whole batch at once with tensor operations on the device. The
parameters are the per-sample pipeline's, so the result is the same tensor (tested equal on the CPU), and a
resumed run gives the weights of an uninterrupted one as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from vireid.data.transforms import (
    REFERENCE_GRAY_WEIGHTS,
    ChannelAdaptiveGray,
    ChannelExchange,
    ChannelRandomErasing,
    denormalise,
    imagenet_stats,
    normalise,
    weighted_gray,
)

#: One row of parameters per image: crop offsets, flip, erased box (height 0: none), channel operation
#: (-1 none, 0/1/2 that channel of the normalised image copied to all three, 3 the reference grayscale).
PARAM_FIELDS = ("crop_top", "crop_left", "flip", "erase_top", "erase_left", "erase_h", "erase_w", "channel")
NO_CHANNEL_OP = -1
GRAY_CHANNEL_OP = 3

#: Steps that need the picture (PIL) and run in the worker; they come first in every view's pipeline.
_HOST_STEPS = (T.Resize, T.Grayscale, T.TrivialAugmentWide)
#: Steps that only draw parameters in the worker and run on the batch.
_DEVICE_STEPS = (T.Pad, T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor, ChannelRandomErasing, ChannelExchange,
                 ChannelAdaptiveGray)


class SplitView:
    """One view's pipeline (a ``torchvision`` ``Compose`` of :func:`vireid.data.transforms.build_train_transforms`)
    split into the worker's part and the batch's part (see the module docstring).

    Raises:
        ValueError: a step of unknown kind, or a picture step after a batch step.
    """

    def __init__(self, pipeline: Callable[..., Any]):
        steps = list(getattr(pipeline, "transforms", [pipeline]))
        n_host = 0
        while n_host < len(steps) and isinstance(steps[n_host], _HOST_STEPS):
            n_host += 1
        self.host_steps = steps[:n_host]
        self.batch_steps = steps[n_host:]
        bad = [type(s).__name__ for s in self.batch_steps if not isinstance(s, _DEVICE_STEPS)]
        if bad:
            raise ValueError(f"cannot augment these steps on the batch (after the picture steps): {bad}")
        self.pad = sum(int(s.padding) if isinstance(s.padding, int) else -1 for s in self.batch_steps
                       if isinstance(s, T.Pad))
        if self.pad < 0 or any(isinstance(s, T.Pad) and (s.fill != 0 or s.padding_mode != "constant")
                               for s in self.batch_steps):
            raise ValueError("batch augmentation pads by one integer with zeros (data.pad)")

    def run_host(self, image: Image.Image) -> tuple[torch.Tensor, list[int]]:
        """The uint8 image ``[3, H, W]`` after the picture steps and the parameter row of the batch steps,
        drawn from the global torch RNG exactly as the full pipeline would draw them."""
        for step in self.host_steps:
            image = step(image)
        array = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        height, width = pixels.shape[1:]
        row = [0, 0, 0, 0, 0, 0, 0, NO_CHANNEL_OP]
        padded = (height + 2 * self.pad, width + 2 * self.pad)
        for step in self.batch_steps:
            if isinstance(step, T.RandomCrop):
                size = tuple(step.size)
                top, left, _, _ = T.RandomCrop.get_params(torch.empty(1, *padded, dtype=torch.uint8), size)
                row[0], row[1] = int(top), int(left)
                padded = size
            elif isinstance(step, T.RandomHorizontalFlip):
                row[2] = int(bool(torch.rand(1) < step.p))
            elif isinstance(step, ChannelRandomErasing):
                box = step.draw(*padded)
                if box is not None:
                    row[3:7] = list(box)
            elif isinstance(step, (ChannelExchange, ChannelAdaptiveGray)):
                choice = step.draw()
                row[7] = NO_CHANNEL_OP if choice is None else int(choice)
        if padded != (height, width) and not any(isinstance(s, T.RandomCrop) for s in self.batch_steps):
            raise ValueError("batch augmentation needs a crop after the padding")
        return pixels, row


@functools.lru_cache(maxsize=8)
def _fill_in_pixels(fill: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The erasing fill ``[3, 1, 1]`` in pixel units (made once per device, not per step)."""
    value = torch.tensor(fill, dtype=dtype, device=device).view(3, 1, 1)
    mean, std = imagenet_stats(value)
    return value * std + mean


class BatchAugment:
    """Applies the parameter rows of :class:`SplitView` to a uint8 batch ``[N, 3, H, W]`` on its device:
    pad, crop, flip, convert to [0, 1], erase (``fill`` in normalised units, as
    :class:`~vireid.data.transforms.ChannelRandomErasing`), channel operation in normalised space."""

    def __init__(self, pad: int, fill: Sequence[float]):
        self.pad = int(pad)
        self.fill = tuple(float(v) for v in fill)

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or params.shape != (images.shape[0], len(PARAM_FIELDS)):
            raise ValueError(f"expected uint8 images [N, 3, H, W] and parameters [N, {len(PARAM_FIELDS)}], got "
                             f"{images.dtype} {tuple(images.shape)} and {tuple(params.shape)}")
        device = images.device
        params = params.to(device)
        n, _, height, width = images.shape
        x = images
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad, self.pad, self.pad, self.pad))
            rows = params[:, 0, None] + torch.arange(height, device=device)
            cols = params[:, 1, None] + torch.arange(width, device=device)
            x = x[torch.arange(n, device=device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
            x = x.permute(0, 3, 1, 2)
        x = torch.where(params[:, 2, None, None, None].bool(), x.flip(-1), x)
        x = x.to(torch.float32).div(255)
        # erasing: the box of each image set to the fill (given in normalised units); the statistics and
        # the operations below are the per-image transforms' own, so the result is the same tensor
        ys = torch.arange(height, device=device).view(1, height, 1)
        xs = torch.arange(width, device=device).view(1, 1, width)
        top, left, h, w = (params[:, i].view(n, 1, 1) for i in range(3, 7))
        box = (ys >= top) & (ys < top + h) & (xs >= left) & (xs < left + w)
        x = torch.where(box[:, None], _fill_in_pixels(self.fill, x.dtype, device), x)
        # channel operation in normalised space: one channel (or the reference grayscale) for all three
        op = params[:, 7]
        z = normalise(x)
        gray = weighted_gray(z.unbind(1), REFERENCE_GRAY_WEIGHTS)
        channel = z.gather(1, op.clamp(0, 2).view(n, 1, 1, 1).expand(n, 1, height, width))[:, 0]
        plane = torch.where((op == GRAY_CHANNEL_OP).view(n, 1, 1), gray, channel)
        replaced = denormalise(plane.unsqueeze(1).expand(n, 3, height, width))
        return torch.where((op >= 0).view(n, 1, 1, 1), replaced, x)
