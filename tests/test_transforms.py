"""Training and test transforms, and the CAJ channel augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vireid.config import load_config
from vireid.data.transforms import (
    IMAGENET_MEAN,
    ChannelAdaptiveGray,
    ChannelExchange,
    ChannelRandomErasing,
    build_test_transform,
    build_train_transforms,
)
from vireid.errors import ConfigError

H, W = 16, 8


def cfg_with(*overrides: str):
    return load_config(None, [f"data.height={H}", f"data.width={W}", "data.pad=2", *overrides])


def random_pil(seed: int, size: tuple[int, int] = (11, 23), gray: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    if gray:
        plane = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
        arr = np.stack([plane] * 3, axis=-1)
    else:
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, mode="RGB")


def equal_channels(t: torch.Tensor) -> bool:
    return torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def erased_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int]:
    """The bounding box (top, left, h, w) of the pixels that changed in any channel."""
    changed = (before != after).any(dim=0)
    rows = torch.nonzero(changed.any(dim=1)).flatten()
    cols = torch.nonzero(changed.any(dim=0)).flatten()
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1


@pytest.mark.parametrize(
    "overrides, keys",
    [
        ((), {"visible", "infrared"}),
        (("data.channel_exchange=true",), {"visible", "derived", "infrared"}),
        (("data.grayscale_view=true", "data.trivial_augment=true"), {"visible", "derived", "infrared"}),
        (("data.flip=false", "data.pad=0", "data.random_erasing=0"), {"visible", "infrared"}),
    ],
)
def test_train_transforms_shapes_and_range(overrides, keys) -> None:
    tfs = build_train_transforms(cfg_with(*overrides))
    assert set(tfs) == keys
    torch.manual_seed(0)
    for seed in range(6):
        img = random_pil(seed)
        for tf in tfs.values():
            out = tf(img)
            assert out.dtype == torch.float32
            assert out.shape == (3, H, W)
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_both_derived_views_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="channel_exchange.*grayscale_view"):
        build_train_transforms(cfg_with("data.channel_exchange=true", "data.grayscale_view=true"))


def test_bad_probability_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.random_erasing"):
        build_train_transforms(cfg_with("data.random_erasing=1.5"))


def test_no_augmentation_equals_resize_and_to_tensor() -> None:
    cfg = cfg_with("data.flip=false", "data.pad=0", "data.random_erasing=0")
    img = random_pil(3)
    expected = torch.from_numpy(np.asarray(img.resize((W, H), Image.BILINEAR), dtype=np.float32) / 255.0)
    expected = expected.permute(2, 0, 1)
    for out in (build_train_transforms(cfg)["visible"](img), build_test_transform(cfg)(img)):
        assert out.shape == (3, H, W)
        assert torch.allclose(out, expected, atol=1.5 / 255)


def test_test_transform_of_a_constant_image() -> None:
    img = Image.new("RGB", (30, 70), color=(51, 102, 204))
    out = build_test_transform(cfg_with())(img)
    assert out.shape == (3, H, W)
    for c, v in enumerate((51, 102, 204)):
        assert torch.allclose(out[c], torch.full((H, W), v / 255.0))


def test_pad_and_crop_shift_the_image_within_the_pad() -> None:
    # with pad p, the crop is the image shifted by at most p pixels, padding filled with zeros
    cfg = cfg_with("data.flip=false", "data.random_erasing=0", "data.pad=2")
    img = Image.new("RGB", (W, H), color=(255, 255, 255))
    tf = build_train_transforms(cfg)["visible"]
    shifts = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = tf(img)[0]
        ones = torch.nonzero(out == 1.0)
        top, left = int(ones[:, 0].min()), int(ones[:, 1].min())
        bottom, right = int(ones[:, 0].max()), int(ones[:, 1].max())
        # the white part is a solid rectangle and the rest zero padding
        assert float(out[top : bottom + 1, left : right + 1].min()) == 1.0
        assert float(out.sum()) == (bottom - top + 1) * (right - left + 1)
        assert bottom - top + 1 >= H - 2 and right - left + 1 >= W - 2
        shifts.add((top, left, bottom, right))
    assert len(shifts) > 3


def test_flip_is_applied_about_half_the_time() -> None:
    cfg = cfg_with("data.pad=0", "data.random_erasing=0")
    img = random_pil(4, size=(W, H))
    plain = build_test_transform(cfg)(img)
    tf = build_train_transforms(cfg)["visible"]
    torch.manual_seed(1)
    flips = 0
    for _ in range(200):
        out = tf(img)
        if torch.equal(out, plain.flip(-1)):
            flips += 1
        else:
            assert torch.equal(out, plain)
    assert 70 < flips < 130


def test_channel_exchange_copies_one_channel() -> None:
    img = torch.rand(3, H, W)
    original = img.clone()
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = ChannelExchange()(img)
        assert out.shape == img.shape and equal_channels(out)
        matches = [c for c in range(3) if torch.equal(out[0], img[c])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2}
    assert torch.equal(img, original)  # the input is not modified


def test_channel_exchange_with_gray_gives_the_luma() -> None:
    img = torch.rand(3, H, W)
    original = img.clone()
    luma = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    seen = set()
    torch.manual_seed(0)
    for _ in range(80):
        out = ChannelExchange(include_gray=True)(img)
        assert equal_channels(out)
        if torch.allclose(out[0], luma, atol=1e-6):
            seen.add("gray")
        else:
            seen.add(next(c for c in range(3) if torch.equal(out[0], img[c])))
    assert seen == {0, 1, 2, "gray"}
    assert torch.equal(img, original)


def test_channel_exchange_view_of_the_pipeline_has_equal_channels() -> None:
    tfs = build_train_transforms(cfg_with("data.channel_exchange=true"))
    torch.manual_seed(0)
    for seed in range(10):
        assert equal_channels(tfs["derived"](random_pil(seed)))


def test_grayscale_view_has_equal_channels_and_the_luma() -> None:
    cfg = cfg_with("data.grayscale_view=true", "data.flip=false", "data.pad=0", "data.random_erasing=0")
    img = random_pil(5, size=(W, H))
    out = build_train_transforms(cfg)["derived"](img)
    assert equal_channels(out)
    arr = np.asarray(img, dtype=np.float64)
    luma = (0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]) / 255.0
    assert np.allclose(out[0].numpy(), luma, atol=1.01 / 255)


def test_channel_adaptive_gray() -> None:
    img = torch.rand(3, H, W)
    assert ChannelAdaptiveGray(p=0.0)(img) is img
    torch.manual_seed(0)
    kinds = set()
    for _ in range(60):
        out = ChannelAdaptiveGray(p=1.0)(img)
        assert equal_channels(out)
        match = [c for c in range(3) if torch.equal(out[0], img[c])]
        kinds.add(match[0] if match else "gray")
    assert kinds == {0, 1, 2, "gray"}
    torch.manual_seed(0)
    changed = sum(not torch.equal(ChannelAdaptiveGray(p=0.5)(img), img) for _ in range(400))
    assert 150 < changed < 250
    with pytest.raises(ValueError, match="probability"):
        ChannelAdaptiveGray(p=2)


def test_channel_random_erasing_fills_a_rectangle_per_channel() -> None:
    img = torch.rand(3, 40, 20) * 0.3 + 0.6  # never equal to the fill values below
    value = (0.1, 0.2, 0.3)
    erasing = ChannelRandomErasing(p=1.0, value=value)
    torch.manual_seed(0)
    for _ in range(30):
        out = erasing(img)
        top, left, h, w = erased_box(img, out)
        box = out[:, top : top + h, left : left + w]
        for c in range(3):
            assert torch.allclose(box[c], torch.full((h, w), value[c]))
        # outside the box nothing changed
        mask = torch.ones(40, 20, dtype=torch.bool)
        mask[top : top + h, left : left + w] = False
        assert torch.equal(out[:, mask], img[:, mask])
        area = h * w / (40 * 20)
        assert 0.02 * 0.5 <= area <= 0.4 * 1.5  # rounding of the sides
    assert ChannelRandomErasing(p=0.0)(img) is img


def test_pipeline_random_erasing_fills_the_imagenet_mean() -> None:
    cfg = cfg_with("data.flip=false", "data.pad=0", "data.random_erasing=1.0")
    img = Image.new("RGB", (W, H), color=(250, 5, 250))
    tf = build_train_transforms(cfg)["visible"]
    plain = build_test_transform(cfg)(img)
    torch.manual_seed(0)
    for _ in range(10):
        out = tf(img)
        top, left, h, w = erased_box(plain, out)
        for c in range(3):
            assert torch.allclose(out[c, top : top + h, left : left + w], torch.tensor(IMAGENET_MEAN[c]))


@pytest.mark.parametrize(
    "overrides",
    [("data.channel_exchange=true",), ("data.grayscale_view=true", "data.trivial_augment=true")],
)
def test_deterministic_under_seeded_torch_generator(overrides) -> None:
    tfs = build_train_transforms(cfg_with("data.random_erasing=0.5", *overrides))
    img = random_pil(7)

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [tfs[k](img) for k in ("visible", "derived", "infrared") for _ in range(4)]

    a, b, c = run(11), run(11), run(12)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_trivial_augment_keeps_infrared_images_gray() -> None:
    cfg = cfg_with("data.trivial_augment=true", "data.random_erasing=0")
    tf = build_train_transforms(cfg)["infrared"]
    torch.manual_seed(0)
    for seed in range(40):
        out = tf(random_pil(seed, gray=True))
        assert out.shape == (3, H, W)
        assert equal_channels(out)
