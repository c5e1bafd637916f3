"""Image transforms of training and test: PIL image in, float tensor ``[3, H, W]`` in [0, 1] out.

The model normalises its own input (ImageNet mean/std buffers), so no transform here normalises.

Training (``build_train_transforms``), per view:

- every view: resize to ``(data.height, data.width)``; optional TrivialAugmentWide
  (``data.trivial_augment``, FAFE §1.1: torchvision's ``TrivialAugmentWide`` on the PIL image — an
  infrared image read as RGB has three equal channels and stays so under every operation of the set);
  zero padding of ``data.pad`` pixels and a random crop back to the input size; random horizontal flip
  (``data.flip``); conversion to a tensor;
- ``visible`` and ``infrared``: random erasing with probability ``data.random_erasing`` (torchvision
  ``RandomErasing`` on the tensor, scale 0.02–0.33, aspect 0.3–3.3). The erased rectangle is filled with
  the ImageNet mean of each channel, i.e. **zero after the model's normalisation** — the fill that the
  usual ``Normalize`` then ``RandomErasing(value=0)`` pipelines and CAJ's channel-level random erasing
  produce; torchvision's ``value="random"`` (standard-normal noise) is not used because it leaves [0, 1];
- ``derived`` (one of, never both):

  * ``data.channel_exchange`` (CAJ, Ye et al. ICCV 2021): an independently augmented copy of the visible
    image, then channel-level random erasing (:class:`ChannelRandomErasing`, probability
    ``data.channel_erasing``), then random channel exchange (:class:`ChannelExchange`: one of R, G, B
    copied to all three channels; grayscale as a fourth choice with ``data.channel_exchange_gray``).
    With channel exchange on, the infrared view also gets :class:`ChannelAdaptiveGray` (probability
    ``data.infrared_channel_gray``) after its erasing;
  * ``data.grayscale_view`` (FAFE §1.2): the visible image converted to grayscale (three equal
    channels, ITU-R 601 luma as PIL's ``"L"`` mode), then the visible view's augmentations.

Randomness comes from the global torch generator only (torchvision's transforms and the classes here
draw with ``torch.rand``/``torch.randint``), so ``torch.manual_seed`` (or seeding
``torch.default_generator``) makes a transform deterministic; the training data set seeds it per sample.

Test (``build_test_transform``): resize to ``(data.height, data.width)`` and convert to a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from omegaconf import DictConfig
from torchvision import transforms as T

from vireid.errors import ConfigError

#: ImageNet mean of the R, G, B channels in [0, 1]: the erasing fill (zero after the model normalises).
IMAGENET_MEAN = (0.485, 0.456, 0.406)

#: ITU-R 601-2 luma weights (PIL's ``convert("L")``) for the grayscale choices.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

Transform = Callable[..., torch.Tensor]


def _check_image_tensor(img: torch.Tensor, name: str) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{name} expects a tensor image of shape [3, H, W], got {shape}")


def _check_probability(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: probability must be in [0, 1], got {p}")


def grayscale(img: torch.Tensor) -> torch.Tensor:
    """The luma of a ``[3, H, W]`` image, ``0.299 R + 0.587 G + 0.114 B``, as ``[H, W]``."""
    r, g, b = LUMA_WEIGHTS
    return r * img[0] + g * img[1] + b * img[2]


class ChannelExchange:
    """CAJ's random channel exchange: one channel of a visible image copied to all three channels.

    Each call draws uniformly among R, G and B (and the grayscale image as a fourth choice when
    ``include_gray``); the result has three equal channels. CAJ's training script draws R, G or B only,
    which is the default. Input and output: float tensors ``[3, H, W]``; the input is not modified.
    """

    def __init__(self, *, include_gray: bool = False):
        self.include_gray = include_gray

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image_tensor(img, type(self).__name__)
        choices = 4 if self.include_gray else 3
        idx = int(torch.randint(choices, (1,)).item())
        source = img[idx] if idx < 3 else grayscale(img)
        return source.unsqueeze(0).expand(3, -1, -1).clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(include_gray={self.include_gray})"


class ChannelAdaptiveGray:
    """CAJ's augmentation of the infrared view: random channel replication or grayscale.

    With probability ``p`` the image is replaced by one of its channels copied to all three, or by its
    grayscale image, each of the four choices equally likely; otherwise it is returned unchanged. On an
    infrared image the channels differ only where a channel-specific erasing fill was applied, so this
    makes such occlusions modality-consistent.
    """

    def __init__(self, p: float = 0.5):
        _check_probability(p, type(self).__name__)
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image_tensor(img, type(self).__name__)
        if torch.rand(1).item() >= self.p:
            return img
        idx = int(torch.randint(4, (1,)).item())
        source = img[idx] if idx < 3 else grayscale(img)
        return source.unsqueeze(0).expand(3, -1, -1).clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class ChannelRandomErasing:
    """Channel-level random erasing (CAJ): with probability ``p``, a random rectangle is erased and
    channel ``c`` is filled with ``value[c]`` (by default the ImageNet channel means).

    The rectangle's area is a uniform fraction ``scale`` of the image and its aspect ratio (height /
    width) log-uniform in ``ratio``; up to 10 draws are tried until the rectangle fits, otherwise the image
    is returned unchanged. The input is not modified.
    """

    def __init__(
        self,
        p: float = 0.5,
        *,
        scale: tuple[float, float] = (0.02, 0.4),
        ratio: tuple[float, float] = (0.3, 1 / 0.3),
        value: Sequence[float] = IMAGENET_MEAN,
    ):
        _check_probability(p, type(self).__name__)
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        if len(value) != 3:
            raise ValueError(f"value must give one fill per channel (3), got {list(value)}")
        self.p = p
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.value = tuple(float(v) for v in value)

    def rectangle(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """A random ``(top, left, h, w)`` that fits the image, or None after 10 failed draws."""
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(1).item())
            aspect = math.exp(log_lo + (log_hi - log_lo) * torch.rand(1).item())
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(height - h + 1, (1,)).item())
                left = int(torch.randint(width - w + 1, (1,)).item())
                return top, left, h, w
        return None

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image_tensor(img, type(self).__name__)
        if torch.rand(1).item() >= self.p:
            return img
        box = self.rectangle(img.shape[1], img.shape[2])
        if box is None:
            return img
        top, left, h, w = box
        out = img.clone()
        fill = torch.tensor(self.value, dtype=img.dtype, device=img.device).view(3, 1, 1)
        out[:, top : top + h, left : left + w] = fill
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value})"
        )


# ---------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------
def _geometric(cfg: DictConfig) -> list[Callable]:
    """Resize, optional TrivialAugmentWide, pad + random crop, optional flip, to tensor."""
    data = cfg.data
    size = (int(data.height), int(data.width))
    steps: list[Callable] = [T.Resize(size)]
    if data.trivial_augment:
        steps.append(T.TrivialAugmentWide())
    if data.pad > 0:
        steps += [T.Pad(int(data.pad), fill=0), T.RandomCrop(size)]
    if data.flip:
        steps.append(T.RandomHorizontalFlip(p=0.5))
    steps.append(T.ToTensor())
    return steps


def _random_erasing(p: float) -> list[Callable]:
    if p <= 0:
        return []
    return [T.RandomErasing(p=p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=list(IMAGENET_MEAN))]


def _check_data_config(cfg: DictConfig) -> None:
    data = cfg.data
    if data.height <= 0 or data.width <= 0:
        raise ConfigError(f"data.height and data.width must be positive, got {data.height} x {data.width}")
    if data.pad < 0:
        raise ConfigError(f"data.pad must be >= 0, got {data.pad}")
    for key in ("random_erasing", "channel_erasing", "infrared_channel_gray"):
        if not 0.0 <= data[key] <= 1.0:
            raise ConfigError(f"data.{key} is a probability; expected a value in [0, 1], got {data[key]}")
    if data.channel_exchange and data.grayscale_view:
        raise ConfigError(
            "data.channel_exchange (CAJ) and data.grayscale_view (FAFE) both add the derived view "
            "(modality code 2); enable at most one of them"
        )


def derived_view(cfg: DictConfig) -> str | None:
    """Which derived view of the visible image training adds: ``"channel_exchange"``,
    ``"grayscale"`` or None. Raises ConfigError when both are enabled."""
    _check_data_config(cfg)
    if cfg.data.channel_exchange:
        return "channel_exchange"
    if cfg.data.grayscale_view:
        return "grayscale"
    return None


def build_train_transforms(cfg: DictConfig) -> dict[str, Transform]:
    """Training transforms per view: ``"visible"``, ``"infrared"`` and, when a derived view is enabled
    (``data.channel_exchange`` or ``data.grayscale_view``), ``"derived"``. Each maps a PIL RGB image to
    a float tensor ``[3, data.height, data.width]`` in [0, 1]."""
    view = derived_view(cfg)
    data = cfg.data
    erasing = _random_erasing(float(data.random_erasing))
    out: dict[str, Transform] = {"visible": T.Compose(_geometric(cfg) + erasing)}
    if view == "channel_exchange":
        out["derived"] = T.Compose(
            _geometric(cfg)
            + [
                ChannelRandomErasing(p=float(data.channel_erasing)),
                ChannelExchange(include_gray=bool(data.channel_exchange_gray)),
            ]
        )
    elif view == "grayscale":
        out["derived"] = T.Compose([T.Grayscale(num_output_channels=3)] + _geometric(cfg) + erasing)
    infrared = _geometric(cfg) + erasing
    if view == "channel_exchange" and data.infrared_channel_gray > 0:
        infrared.append(ChannelAdaptiveGray(p=float(data.infrared_channel_gray)))
    out["infrared"] = T.Compose(infrared)
    return out


def build_test_transform(cfg: DictConfig) -> Transform:
    """Resize to ``(data.height, data.width)`` and convert to a float tensor in [0, 1]."""
    _check_data_config(cfg)
    return T.Compose([T.Resize((int(cfg.data.height), int(cfg.data.width))), T.ToTensor()])
