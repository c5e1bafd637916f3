"""Training and test transforms, and the CAJ channel augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vireid.config import load_config
from vireid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ChannelAdaptiveGray,
    ChannelExchange,
    ChannelRandomErasing,
    build_test_transform,
    build_train_transforms,
    resize_to_tensor,
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


MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def model_input(t: torch.Tensor) -> torch.Tensor:
    """What the model computes from a transform's output: ImageNet normalisation (float64)."""
    return (t.double() - MEAN.double()) / STD.double()


def equal_normalised_channels(t: torch.Tensor, atol: float = 1e-5) -> bool:
    n = model_input(t)
    return torch.allclose(n[0], n[1], atol=atol) and torch.allclose(n[1], n[2], atol=atol)


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
    tfs = build_train_transforms(cfg_with(*overrides).data)
    assert set(tfs) == keys
    torch.manual_seed(0)
    for seed in range(6):
        img = random_pil(seed)
        for tf in tfs.values():
            out = tf(img)
            assert out.dtype == torch.float32
            assert out.shape == (3, H, W)
            # pixel units; the normalised-space fills and exchanges may leave [0, 1] (normalised: a few sigma)
            assert float(model_input(out).abs().max()) <= 3.0


def test_both_derived_views_is_refused_by_the_loader() -> None:
    with pytest.raises(ConfigError, match="channel_exchange.*grayscale_view"):
        cfg_with("data.channel_exchange=true", "data.grayscale_view=true")


def test_bad_probability_and_fill_are_refused_by_the_loader() -> None:
    with pytest.raises(ConfigError, match="data.random_erasing"):
        cfg_with("data.random_erasing=1.5")
    with pytest.raises(ConfigError, match=r"data.erasing_fill=\[0.5, 0.5\]: expected 3 values"):
        cfg_with("data.erasing_fill=[0.5,0.5]")


def test_no_augmentation_equals_resize_and_to_tensor() -> None:
    cfg = cfg_with("data.flip=false", "data.pad=0", "data.random_erasing=0")
    img = random_pil(3)
    # data.resize=lanczos (default): PIL's Lanczos filter, as the reference code's ANTIALIAS pre-resizing
    expected = torch.from_numpy(np.asarray(img.resize((W, H), Image.LANCZOS), dtype=np.float32) / 255.0)
    expected = expected.permute(2, 0, 1)
    for out in (build_train_transforms(cfg.data)["visible"](img), build_test_transform(cfg.data)(img)):
        assert out.shape == (3, H, W)
        assert torch.allclose(out, expected, atol=1.5 / 255)
    bilinear = torch.from_numpy(np.asarray(img.resize((W, H), Image.BILINEAR), dtype=np.float32) / 255.0)
    out = build_test_transform(cfg_with("data.resize=bilinear", "data.pad=0").data)(img)
    assert torch.allclose(out, bilinear.permute(2, 0, 1), atol=1.5 / 255)
    with pytest.raises(ConfigError, match="data.resize.*lanczos.*bilinear"):
        cfg_with("data.resize=cubic")
    with pytest.raises(ConfigError, match="data.resize.*lanczos.*bilinear"):
        resize_to_tensor((H, W), "cubic")


def test_test_transform_of_a_constant_image() -> None:
    img = Image.new("RGB", (30, 70), color=(51, 102, 204))
    out = build_test_transform(cfg_with().data)(img)
    assert out.shape == (3, H, W)
    for c, v in enumerate((51, 102, 204)):
        assert torch.allclose(out[c], torch.full((H, W), v / 255.0))


def test_pad_and_crop_shift_the_image_within_the_pad() -> None:
    # with pad p, the crop is the image shifted by at most p pixels, padding filled with zeros
    cfg = cfg_with("data.flip=false", "data.random_erasing=0", "data.pad=2")
    img = Image.new("RGB", (W, H), color=(255, 255, 255))
    tf = build_train_transforms(cfg.data)["visible"]
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
    plain = build_test_transform(cfg.data)(img)
    tf = build_train_transforms(cfg.data)["visible"]
    torch.manual_seed(1)
    flips = 0
    for _ in range(200):
        out = tf(img)
        if torch.equal(out, plain.flip(-1)):
            flips += 1
        else:
            assert torch.equal(out, plain)
    assert 70 < flips < 130


def test_channel_exchange_copies_one_normalised_channel() -> None:
    img = torch.rand(3, H, W)
    original = img.clone()
    normalised = model_input(img)
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = ChannelExchange()(img)
        assert out.shape == img.shape and equal_normalised_channels(out)
        matches = [c for c in range(3) if torch.allclose(model_input(out)[0], normalised[c], atol=1e-5)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2}
    assert torch.equal(img, original)  # the input is not modified


def test_channel_exchange_with_gray_gives_the_reference_gray_of_the_normalised_image() -> None:
    img = torch.rand(3, H, W)
    n = model_input(img)
    gray = 0.2989 * n[0] + 0.5870 * n[1] + 0.1140 * n[2]  # ChannelAug.py's weights, after Normalize
    seen = set()
    torch.manual_seed(0)
    for _ in range(80):
        out = model_input(ChannelExchange(include_gray=True)(img))
        if torch.allclose(out[0], gray, atol=1e-5):
            seen.add("gray")
        else:
            seen.add(next(c for c in range(3) if torch.allclose(out[0], n[c], atol=1e-5)))
        assert torch.allclose(out[1], out[0], atol=1e-5) and torch.allclose(out[2], out[0], atol=1e-5)
    assert seen == {0, 1, 2, "gray"}


def test_channel_exchange_view_of_the_pipeline_has_equal_normalised_channels() -> None:
    tfs = build_train_transforms(cfg_with("data.channel_exchange=true").data)
    torch.manual_seed(0)
    for seed in range(10):
        out = tfs["derived"](random_pil(seed))
        assert equal_normalised_channels(out)
        assert not equal_channels(out)  # in pixel units the channels differ (mean/std differ per channel)


def test_grayscale_view_has_equal_channels_and_the_luma() -> None:
    cfg = cfg_with("data.grayscale_view=true", "data.flip=false", "data.pad=0", "data.random_erasing=0")
    img = random_pil(5, size=(W, H))
    out = build_train_transforms(cfg.data)["derived"](img)
    assert equal_channels(out)
    arr = np.asarray(img, dtype=np.float64)
    luma = (0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]) / 255.0
    assert np.allclose(out[0].numpy(), luma, atol=1.01 / 255)


def test_channel_adaptive_gray_follows_the_reference_probabilities() -> None:
    # ChannelAdapGray: randint(0, 3) -> R, G, B copied (1/4 each); case 3: grayscale with probability p,
    # else unchanged. p = 0.5: 1/4, 1/4, 1/4, gray 1/8, unchanged 1/8.
    img = torch.rand(1, H, W).expand(3, -1, -1).clone()  # an infrared image: three equal pixel channels
    n = model_input(img)
    gray = 0.2989 * n[0] + 0.5870 * n[1] + 0.1140 * n[2]
    counts = {0: 0, 1: 0, 2: 0, "gray": 0, "same": 0}
    torch.manual_seed(0)
    draws = 4000
    for _ in range(draws):
        out = ChannelAdaptiveGray(p=0.5)(img)
        if out is img:
            counts["same"] += 1
            continue
        o = model_input(out)
        assert torch.allclose(o[0], o[1], atol=1e-5) and torch.allclose(o[1], o[2], atol=1e-5)
        if torch.allclose(o[0], gray, atol=1e-5):
            counts["gray"] += 1
        else:
            counts[next(c for c in range(3) if torch.allclose(o[0], n[c], atol=1e-5))] += 1
    for key, prob in ((0, 0.25), (1, 0.25), (2, 0.25), ("gray", 0.125), ("same", 0.125)):
        sd = (prob * (1 - prob) / draws) ** 0.5
        assert abs(counts[key] / draws - prob) < 4 * sd, (key, counts)
    with pytest.raises(ValueError, match="probability"):
        ChannelAdaptiveGray(p=2)


def test_infrared_channel_augmentation_changes_unerased_infrared_images() -> None:
    # the defect it fixes: applied before normalisation to three equal channels, it changed nothing
    cfg = cfg_with("data.channel_exchange=true", "data.random_erasing=0", "data.flip=false", "data.pad=0")
    tf = build_train_transforms(cfg.data)["infrared"]
    img = random_pil(2, gray=True)
    plain = build_test_transform(cfg.data)(img)
    torch.manual_seed(0)
    changed = sum(not torch.allclose(tf(img), plain, atol=1e-6) for _ in range(200))
    assert 150 <= changed <= 195  # 7/8 expected (175)


def test_channel_random_erasing_fills_a_rectangle_in_normalised_units() -> None:
    img = torch.rand(3, 40, 20) * 0.3 + 0.6  # never equal to the fill values below
    value = (0.1, 0.2, 0.3)
    erasing = ChannelRandomErasing(p=1.0, value=value)
    torch.manual_seed(0)
    for _ in range(30):
        out = erasing(img)
        top, left, h, w = erased_box(img, out)
        box = model_input(out)[:, top : top + h, left : left + w]
        for c in range(3):
            assert torch.allclose(box[c], torch.full((h, w), value[c], dtype=torch.float64), atol=1e-6)
        # outside the box nothing changed
        mask = torch.ones(40, 20, dtype=torch.bool)
        mask[top : top + h, left : left + w] = False
        assert torch.equal(out[:, mask], img[:, mask])
    assert ChannelRandomErasing(p=0.0)(img) is img


def test_channel_random_erasing_statistics_match_the_reference() -> None:
    # area uniform in (0.02, 0.4) of the image, aspect h/w uniform in (0.3, 1/0.3): re-derive the
    # distribution of (h, w) by simulating the reference's draw with NumPy and compare the means
    big_h, big_w = 288, 144
    erasing = ChannelRandomErasing(p=1.0)
    torch.manual_seed(0)
    boxes = [erasing.rectangle(big_h, big_w) for _ in range(3000)]
    assert all(b is not None for b in boxes)
    rng = np.random.default_rng(0)
    ref = []
    while len(ref) < 20000:
        area = rng.uniform(0.02, 0.4) * big_h * big_w
        aspect = rng.uniform(0.3, 1 / 0.3)
        h, w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if h < big_h and w < big_w:
            ref.append((h, w))
    ref = np.array(ref, dtype=float)
    got = np.array([(b[2], b[3]) for b in boxes], dtype=float)
    for k in range(2):
        sd = ref[:, k].std() / np.sqrt(len(got))
        assert abs(got[:, k].mean() - ref[:, k].mean()) < 4 * sd
    areas = got[:, 0] * got[:, 1] / (big_h * big_w)
    assert 0.015 <= areas.min() and areas.max() <= 0.41
    tops = np.array([b[0] for b in boxes])
    assert tops.min() == 0 or (got[:, 0] + tops).max() == big_h or len(set(tops)) > 100  # placed uniformly


def test_pipeline_erases_every_view_with_the_reference_fill() -> None:
    cfg = cfg_with("data.flip=false", "data.pad=0", "data.random_erasing=1.0", "data.channel_exchange=true",
                   "data.channel_erasing=1.0", "data.infrared_channel_gray=0.0")
    img = Image.new("RGB", (W, H), color=(250, 5, 250))
    tfs = build_train_transforms(cfg.data)
    plain = build_test_transform(cfg.data)(img)
    torch.manual_seed(0)
    for _ in range(10):
        out = tfs["visible"](img)
        top, left, h, w = erased_box(plain, out)
        for c, fill in enumerate((0.4914, 0.4822, 0.4465)):
            box = model_input(out)[c, top : top + h, left : left + w]
            assert torch.allclose(box, torch.tensor(fill, dtype=torch.float64), atol=1e-6)
    # [0, 0, 0] in normalised units is the ImageNet mean in pixel units (the former fill)
    zero = build_train_transforms(cfg_with("data.flip=false", "data.pad=0", "data.random_erasing=1.0",
                                           "data.erasing_fill=[0,0,0]").data)["visible"]
    out = zero(img)
    top, left, h, w = erased_box(plain, out)
    for c in range(3):
        assert torch.allclose(out[c, top : top + h, left : left + w], torch.tensor(IMAGENET_MEAN[c]), atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [("data.channel_exchange=true",), ("data.grayscale_view=true", "data.trivial_augment=true")],
)
def test_deterministic_under_seeded_torch_generator(overrides) -> None:
    tfs = build_train_transforms(cfg_with("data.random_erasing=0.5", *overrides).data)
    img = random_pil(7)

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [tfs[k](img) for k in ("visible", "derived", "infrared") for _ in range(4)]

    a, b, c = run(11), run(11), run(12)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_trivial_augment_keeps_infrared_images_gray() -> None:
    cfg = cfg_with("data.trivial_augment=true", "data.random_erasing=0")
    tf = build_train_transforms(cfg.data)["infrared"]
    torch.manual_seed(0)
    for seed in range(40):
        out = tf(random_pil(seed, gray=True))
        assert out.shape == (3, H, W)
        assert equal_channels(out)
