"""Image transforms of training and test: PIL image in, float tensor ``[3, H, W]`` out.

The model normalises its own input (ImageNet mean/std buffers), so the tensors here are in pixel units
([0, 1] before the channel augmentations). The CAJ channel augmentations and the erasing are defined, as
in the AGW/CAJ reference code (mangye16/Cross-Modal-Re-ID-baseline, ``ChannelAug.py`` and
``data_loader.py``), on the **normalised** tensor: each one normalises, acts, and maps back
(:func:`in_normalised_space`), so after the model's normalisation its input is exactly what the
reference code feeds its network (up to float rounding).

Training (``build_train_transforms``), per view:

- every view: resize to ``(data.height, data.width)`` with ``data.resize`` (``lanczos``, default: the
  reference code pre-resizes every image once with PIL's ANTIALIAS = Lanczos; ``bilinear``); optional
  TrivialAugmentWide (``data.trivial_augment``, FAFE §1.1, on the PIL image: an infrared image read as
  RGB keeps three equal channels under every operation); zero padding of ``data.pad`` pixels and a
  random crop back to the input size; random horizontal flip (``data.flip``); conversion to a tensor;
- ``visible`` and ``infrared``: the reference's channel random erasing (:class:`ChannelRandomErasing`)
  with probability ``data.random_erasing``;
- ``derived`` (one of, never both):

  * ``data.channel_exchange`` (CAJ, Ye et al. ICCV 2021): an independently augmented copy of the visible
    image, channel random erasing (probability ``data.channel_erasing``), then random channel exchange
    (:class:`ChannelExchange`: one normalised channel of R, G, B copied to all three; the grayscale as a
    fourth choice with ``data.channel_exchange_gray``). With channel exchange on, the infrared view also
    gets :class:`ChannelAdaptiveGray` (the reference's ``ChannelAdapGray``) after its erasing;
  * ``data.grayscale_view`` (FAFE §1.2): the visible image, resized, converted to grayscale (three equal
    channels, ITU-R 601 luma as PIL's ``"L"`` mode), then the visible view's augmentations.

Randomness comes from the global torch generator only (torchvision's transforms and the classes here
draw with ``torch.rand``/``torch.randint``; the reference draws the same distributions from Python's
``random``), so ``torch.manual_seed`` (or seeding ``torch.default_generator``) makes a transform
deterministic; the training data set seeds it per sample.

Test (``build_test_transform``): resize to ``(data.height, data.width)`` with ``data.resize`` and convert
to a tensor.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import transforms as T

from vireid.config.checks import RESIZES
from vireid.errors import check_choice

#: ImageNet mean and standard deviation of the R, G, B channels in [0, 1]: the model's normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The reference code's erasing fill, per channel, **in normalised units** (``ChannelRandomErasing``'s
#: default ``mean=[0.4914, 0.4822, 0.4465]``, written after ``Normalize``).
REFERENCE_ERASING_FILL = (0.4914, 0.4822, 0.4465)

#: ITU-R 601-2 luma weights (PIL's ``convert("L")``) for the FAFE grayscale view.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: The luma weights of the reference code's channel augmentations (``0.2989 R + 0.5870 G + 0.1140 B``).
REFERENCE_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)

#: ``data.resize`` values and their PIL filters.
RESIZE_FILTERS = dict(zip(RESIZES, (T.InterpolationMode.LANCZOS, T.InterpolationMode.BILINEAR)))

Transform = Callable[..., torch.Tensor]


def _check_image_tensor(img: torch.Tensor, name: str) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{name} expects a tensor image of shape [3, H, W], got {shape}")


def _check_probability(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: probability must be in [0, 1], got {p}")


@functools.lru_cache(maxsize=8)
def _stats_of(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=device).view(3, 1, 1)
    return mean, std


def imagenet_stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std ``[3, 1, 1]`` of ``img``'s dtype and device (made once per dtype and device,
    not per call: these run for every view of every training sample; they broadcast over a batch too)."""
    return _stats_of(img.dtype, img.device)


def normalise(img: torch.Tensor) -> torch.Tensor:
    """``(img - mean) / std`` with the ImageNet statistics (what the model does to its input)."""
    mean, std = imagenet_stats(img)
    return (img - mean) / std


def denormalise(img: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalise`: ``img * std + mean``."""
    mean, std = imagenet_stats(img)
    return img * std + mean


def in_normalised_space(img: torch.Tensor, op: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``op`` to the normalised image and map the result back to pixel units, so the model,
    which normalises its input, sees ``op(normalise(img))``."""
    return denormalise(op(normalise(img)))


def weighted_gray(img: torch.Tensor | Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``weights[0] * img[0] + weights[1] * img[1] + weights[2] * img[2]`` (a ``[3, H, W]`` image, or the
    three channel planes of a batch, ``batch.unbind(1)``)."""
    return weights[0] * img[0] + weights[1] * img[1] + weights[2] * img[2]


def grayscale(img: torch.Tensor) -> torch.Tensor:
    """The luma of a ``[3, H, W]`` image, ``0.299 R + 0.587 G + 0.114 B``, as ``[H, W]``."""
    return weighted_gray(img, LUMA_WEIGHTS)


def _replicate(plane: torch.Tensor) -> torch.Tensor:
    return plane.unsqueeze(0).expand(3, -1, -1).clone()


class ChannelExchange:
    """CAJ's random channel exchange (reference ``ChannelExchange(gray=2)``): one channel of the
    **normalised** visible image copied to all three, so the model's input has three identical channels.

    Each call draws uniformly among R, G and B, and the reference's grayscale
    (``0.2989 R + 0.5870 G + 0.1140 B`` of the normalised channels) as a fourth choice when
    ``include_gray`` (``gray=3`` in the reference; its training script uses R, G, B only). Input and
    output: pixel-unit tensors ``[3, H, W]`` (see :func:`in_normalised_space`); the input is not modified.
    """

    def __init__(self, *, include_gray: bool = False):
        self.include_gray = include_gray

    def draw(self) -> int:
        """The channel this call copies (0, 1, 2), or 3 for the grayscale (one draw of the torch RNG)."""
        return int(torch.randint(4 if self.include_gray else 3, (1,)).item())

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image_tensor(img, type(self).__name__)
        idx = self.draw()
        return in_normalised_space(img, lambda x: _replicate(x[idx] if idx < 3 else weighted_gray(x, REFERENCE_GRAY_WEIGHTS)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(include_gray={self.include_gray})"


class ChannelAdaptiveGray:
    """CAJ's augmentation of the infrared view (reference ``ChannelAdapGray``), on the normalised image.

    Each call draws one of four cases with probability 1/4: channel R, G or B copied to all three
    channels, or the fourth case, which gives the grayscale (``0.2989 R + 0.5870 G + 0.1140 B``) with
    probability ``p`` and the unchanged image otherwise. The reference's outer probability is commented
    out, so with ``p = 0.5``: each channel 1/4, grayscale 1/8, unchanged 1/8. On an infrared image the
    normalised channels differ (the ImageNet statistics differ per channel), so a replication changes the
    model's input in 3/4 of the draws (7/8 with the grayscale).
    """

    def __init__(self, p: float = 0.5):
        _check_probability(p, type(self).__name__)
        self.p = p

    def draw(self) -> int | None:
        """This call's case: the channel copied (0, 1, 2), 3 for the grayscale, None for unchanged."""
        idx = int(torch.randint(4, (1,)).item())
        if idx < 3:
            return idx
        return None if torch.rand(1).item() > self.p else 3

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image_tensor(img, type(self).__name__)
        case = self.draw()
        if case is None:
            return img
        x = normalise(img)
        return denormalise(_replicate(x[case] if case < 3 else weighted_gray(x, REFERENCE_GRAY_WEIGHTS)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class ChannelRandomErasing:
    """The reference code's channel random erasing, on the normalised image: with probability ``p``, a
    rectangle is erased and channel ``c`` of the **normalised** image is set to ``value[c]``
    (:data:`REFERENCE_ERASING_FILL` by default; ``(0, 0, 0)`` is the ImageNet mean in pixel units).

    Up to 100 draws: area a uniform fraction ``scale`` of the image, aspect ratio (height / width)
    uniform in ``ratio``, ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``; the
    first with ``h < H`` and ``w < W`` is placed uniformly (top in ``0..H-h``, left in ``0..W-w``);
    when none fits the image is returned unchanged. The input is not modified.
    """

    def __init__(
        self,
        p: float = 0.5,
        *,
        scale: tuple[float, float] = (0.02, 0.4),
        ratio: tuple[float, float] = (0.3, 1 / 0.3),
        value: Sequence[float] = REFERENCE_ERASING_FILL,
        attempts: int = 100,
    ):
        _check_probability(p, type(self).__name__)
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        if len(value) != 3:
            raise ValueError(f"value must give one fill per channel (3), got {list(value)}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.p = p
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.value = tuple(float(v) for v in value)
        self.attempts = int(attempts)

    def rectangle(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """A random ``(top, left, h, w)`` that fits the image, or None after ``attempts`` failed draws."""
        area = height * width
        for _ in range(self.attempts):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(1).item())
            aspect = self.ratio[0] + (self.ratio[1] - self.ratio[0]) * torch.rand(1).item()
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if h < height and w < width:
                top = int(torch.randint(height - h + 1, (1,)).item())
                left = int(torch.randint(width - w + 1, (1,)).item())
                return top, left, h, w
        return None

    def draw(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """This call's ``(top, left, h, w)``, or None (not erased, or no box fits): the draws of ``__call__``."""
        if torch.rand(1).item() > self.p:
            return None
        return self.rectangle(height, width)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image_tensor(img, type(self).__name__)
        box = self.draw(img.shape[1], img.shape[2])
        if box is None:
            return img
        top, left, h, w = box
        out = img.clone()
        mean, std = imagenet_stats(img)
        fill = torch.tensor(self.value, dtype=img.dtype, device=img.device).view(3, 1, 1) * std + mean
        out[:, top : top + h, left : left + w] = fill
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value}, "
                f"attempts={self.attempts})")


# ---------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------
def _geometric(data: Any) -> Callable[..., list[Callable]]:
    """The geometric steps of ``data`` (read once) as a function of ``after_resize`` (the grayscale view's
    conversion): resize, ``after_resize``, optional TrivialAugmentWide, pad + random crop, optional flip, to
    tensor. The resize comes first, so a cache of images decoded and resized once (:mod:`vireid.data.cache`)
    gives the same tensors."""
    size, resize = (int(data.height), int(data.width)), RESIZE_FILTERS[data.resize]
    trivial, pad, flip = bool(data.trivial_augment), int(data.pad), bool(data.flip)

    def steps(*after_resize: Callable) -> list[Callable]:
        out: list[Callable] = [T.Resize(size, interpolation=resize), *after_resize]
        if trivial:
            out.append(T.TrivialAugmentWide())
        if pad > 0:
            out += [T.Pad(pad, fill=0), T.RandomCrop(size)]
        if flip:
            out.append(T.RandomHorizontalFlip(p=0.5))
        out.append(T.ToTensor())
        return out

    return steps


def _random_erasing(p: float, fill: Sequence[float]) -> list[Callable]:
    return [ChannelRandomErasing(p=p, value=fill)] if p > 0 else []


def derived_view(data: Any) -> str | None:
    """Which derived view of the visible image training adds: ``"channel_exchange"``,
    ``"grayscale"`` or None. ``data``: the config's ``data`` section (:class:`~vireid.config.defaults.DataConfig`,
    checked at load: at most one of the two views is on)."""
    if data.channel_exchange:
        return "channel_exchange"
    if data.grayscale_view:
        return "grayscale"
    return None


def build_train_transforms(data: Any) -> dict[str, Transform]:
    """Training transforms per view: ``"visible"``, ``"infrared"`` and, when a derived view is enabled
    (``data.channel_exchange`` or ``data.grayscale_view``), ``"derived"``. Each maps a PIL RGB image to
    a float tensor ``[3, data.height, data.width]`` in [0, 1]. ``data``: the config's ``data`` section
    (:class:`~vireid.config.defaults.DataConfig`), whose values the loader has checked."""
    view, geometric = derived_view(data), _geometric(data)
    fill = [float(v) for v in data.erasing_fill]
    erasing = _random_erasing(float(data.random_erasing), fill)
    channel_erasing, exchange_gray = float(data.channel_erasing), bool(data.channel_exchange_gray)
    infrared_gray = float(data.infrared_channel_gray)
    out: dict[str, Transform] = {"visible": T.Compose(geometric() + erasing)}
    if view == "channel_exchange":
        out["derived"] = T.Compose(
            geometric() + [*_random_erasing(channel_erasing, fill), ChannelExchange(include_gray=exchange_gray)]
        )
    elif view == "grayscale":
        out["derived"] = T.Compose(geometric(T.Grayscale(num_output_channels=3)) + erasing)
    infrared = geometric() + erasing
    if view == "channel_exchange" and infrared_gray > 0:
        infrared.append(ChannelAdaptiveGray(p=infrared_gray))
    out["infrared"] = T.Compose(infrared)
    return out


def build_test_transform(data: Any) -> Transform:
    """Resize to ``(data.height, data.width)`` with ``data.resize`` and convert to a float tensor in [0, 1].
    ``data``: the config's ``data`` section (:class:`~vireid.config.defaults.DataConfig`)."""
    return resize_to_tensor((int(data.height), int(data.width)), str(data.resize))


def resize_to_tensor(size: tuple[int, int], resize: str) -> Transform:
    """Resize to ``size`` (height, width) with the ``resize`` filter (:data:`~vireid.config.checks.RESIZES`)
    and convert to a float tensor in [0, 1]."""
    check_choice("data.resize", resize, RESIZES)
    return T.Compose([T.Resize(size, interpolation=RESIZE_FILTERS[resize]), T.ToTensor()])
