"""The training data pipeline: TrainSet relabelling, batch layout and pairing, determinism, workers."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vireid.config import load_config
from vireid.data.records import ImageRecord
from vireid.data.training import TrainSet, build_train_loader, collate_train_batch
from vireid.data.transforms import build_test_transform
from vireid.errors import ConfigError, DatasetError

H, W = 16, 8
# raw pid -> (visible images, infrared images); 5 is visible-only, 6 infrared-only
LAYOUT = {12: (3, 2), 3: (2, 3), 30: (1, 2), 7: (4, 1), 5: (2, 0), 6: (0, 3)}
BOTH = sorted(p for p, (v, i) in LAYOUT.items() if v and i)  # [3, 7, 12, 30]


def make_records(root: Path, noise: bool) -> list[ImageRecord]:
    """Tiny images; with ``noise=False`` each image is one colour that encodes its record."""
    rng = np.random.default_rng(0)
    records = []
    n = 0
    for pid, (n_vis, n_ir) in LAYOUT.items():
        for modality, count, camera in (("visible", n_vis, 1), ("infrared", n_ir, 3)):
            for j in range(count):
                n += 1
                if noise:
                    arr = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
                    if modality == "infrared":
                        arr[..., 1] = arr[..., 2] = arr[..., 0]
                else:
                    arr = np.empty((H, W, 3), dtype=np.uint8)
                    arr[...] = (n * 7 % 256, pid, camera + 10 * j)
                path = root / modality / f"{pid:04d}_{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr, mode="RGB").save(path)
                records.append(ImageRecord(path, pid, camera + (j % 2), modality))
    return records


@pytest.fixture(scope="module")
def colour_records(tmp_path_factory) -> list[ImageRecord]:
    return make_records(tmp_path_factory.mktemp("colour"), noise=False)


@pytest.fixture(scope="module")
def noise_records(tmp_path_factory) -> list[ImageRecord]:
    return make_records(tmp_path_factory.mktemp("noise"), noise=True)


def config(*overrides: str):
    base = [
        f"data.height={H}",
        f"data.width={W}",
        "data.ids_per_batch=2",
        "data.images_per_id=3",
        "data.workers=0",
        "train.seed=4",
    ]
    return load_config(None, base + list(overrides))


NO_AUG = ("data.flip=false", "data.pad=0", "data.random_erasing=0")


def test_relabelling_drops_single_modality_ids(colour_records, caplog) -> None:
    vis = [r for r in colour_records if r.modality == "visible"]
    ir = [r for r in colour_records if r.modality == "infrared"]
    with caplog.at_level(logging.INFO, logger="vireid.data.training"):
        ds = TrainSet(vis, ir, transforms={"visible": lambda x: x, "infrared": lambda x: x})
    assert ds.pid_to_label == {3: 0, 7: 1, 12: 2, 30: 3}
    assert ds.num_classes == 4
    assert [r.pid for r in ds.visible_records] == [r.pid for r in vis if r.pid != 5]
    assert [r.pid for r in ds.infrared_records] == [r.pid for r in ir if r.pid != 6]
    assert ds.visible_labels == [ds.pid_to_label[r.pid] for r in ds.visible_records]
    assert ds.dropped == {
        "visible_only_ids": 1,
        "infrared_only_ids": 1,
        "visible_images": 2,
        "infrared_images": 3,
    }
    assert (
        "dropped 1 visible-only identities (2 images) and 1 infrared-only identities (3 images)"
        in caplog.text
    )


def decode(image: torch.Tensor) -> tuple[int, int, int]:
    """The colour of a constant image tensor in [0, 1] as 0..255 integers."""
    pixel = (image[:, 0, 0] * 255).round().to(torch.int64)
    assert torch.equal(image, image[:, :1, :1].expand_as(image))  # still constant
    return tuple(pixel.tolist())


@pytest.mark.parametrize("derived", [False, True])
def test_batch_keys_shapes_order_and_pairing(colour_records, derived) -> None:
    overrides = NO_AUG + (
        ("data.channel_exchange=true", "data.channel_erasing=0", "data.infrared_channel_gray=0")
        if derived
        else ()
    )
    loader = build_train_loader(config(*overrides), colour_records)
    to_tensor = build_test_transform(config().data)
    by_colour = {}
    for r in colour_records:
        by_colour[decode(to_tensor(Image.open(r.path).convert("RGB")))] = r
    blocks = 3 if derived else 2
    b = 2 * 3
    batches = list(loader)
    assert len(batches) == len(loader) >= 1
    for batch in batches:
        assert set(batch) == {"images", "pids", "modality", "camera"}
        assert batch["images"].shape == (blocks * b, 3, H, W) and batch["images"].dtype == torch.float32
        for key in ("pids", "modality", "camera"):
            assert batch[key].shape == (blocks * b,) and batch[key].dtype == torch.long
        plain = torch.cat([batch["images"][:b], batch["images"][-b:]])  # the exchanged view is in pixel units
        assert float(plain.min()) >= 0 and float(plain.max()) <= 1
        codes = [0] * b + ([2] * b if derived else []) + [1] * b
        assert batch["modality"].tolist() == codes
        pids = batch["pids"].view(blocks, b)
        assert all(torch.equal(pids[k], pids[0]) for k in range(blocks))  # paired by position
        # identity-major: K consecutive equal labels, P distinct identities
        assert all(len(set(pids[0, j : j + 3].tolist())) == 1 for j in (0, 3))
        assert pids[0, 0] != pids[0, 3]
        vis = batch["images"][:b]
        ir = batch["images"][-b:]
        for i in range(b):
            v_rec = by_colour[decode(vis[i])]
            i_rec = by_colour[decode(ir[i])]
            assert v_rec.modality == "visible" and i_rec.modality == "infrared"
            assert (
                loader.dataset.pid_to_label[v_rec.pid] == pids[0, i] == loader.dataset.pid_to_label[i_rec.pid]
            )
            assert batch["camera"][i] == v_rec.camera
            assert batch["camera"][-b + i] == i_rec.camera
            if derived:
                d = batch["images"][b + i]
                assert batch["camera"][b + i] == v_rec.camera
                # channel exchange of a constant colour: one of its normalised channels everywhere
                mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
                std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
                d_norm, v_norm = ((d - mean) / std)[:, 0, 0], ((vis[i] - mean) / std)[:, 0, 0]
                assert torch.allclose(d_norm, d_norm[0].expand(3), atol=1e-5)
                assert any(abs(float(d_norm[0] - v_norm[c])) < 1e-5 for c in range(3))


def test_number_of_batches(colour_records) -> None:
    n_vis = sum(1 for r in colour_records if r.modality == "visible" and r.pid in BOTH)  # 10
    n_ir = sum(1 for r in colour_records if r.modality == "infrared" and r.pid in BOTH)  # 8
    loader = build_train_loader(config("data.ids_per_batch=2", "data.images_per_id=2"), colour_records)
    # the reference sampler: floor(max(#visible, #infrared) / (P * K)) + 1
    assert (n_vis, n_ir) == (10, 8) and len(loader) == 10 // 4 + 1 == 3 and loader.num_classes == 4
    assert len(build_train_loader(config(), colour_records)) == 10 // 6 + 1
    assert len(build_train_loader(config("train.iters_per_epoch=5"), colour_records)) == 5
    shards = [
        build_train_loader(config("train.iters_per_epoch=5"), colour_records, rank=r, world_size=2)
        for r in (0, 1)
    ]
    assert [len(s) for s in shards] == [math.ceil(5 / 2)] * 2
    assert len(list(shards[1])) == 3


def _reference_sampler_batches(num_visible: int, num_infrared: int, p: int, k: int) -> int:
    """How many batches the reference IdentitySampler + DataLoader(drop_last=True) yield, counted by
    simulating its loop: index lists for int(N / (p*k)) + 1 batches, then full batches of p*k."""
    n = max(num_visible, num_infrared)
    indices = 0
    for _ in range(int(n / (p * k)) + 1):
        indices += p * k
    return indices // (p * k)


@pytest.mark.parametrize("sizes", [(22258, 11909, 8, 4), (22258, 11909, 4, 4), (2060, 2060, 8, 4),
                                   (31, 32, 4, 4), (32, 5, 4, 4), (1, 1, 1, 1), (100, 3, 8, 2)])
def test_reference_batches_per_epoch(sizes) -> None:
    from vireid.data.sampler import reference_batches_per_epoch

    assert reference_batches_per_epoch(*sizes) == _reference_sampler_batches(*sizes)
    with pytest.raises(ValueError, match="ids_per_batch"):
        reference_batches_per_epoch(10, 10, 0, 4)


def test_reference_batches_on_sysu() -> None:
    from vireid.data.sampler import reference_batches_per_epoch

    # issue numbers: 22,258 visible SYSU-MM01 training images -> 696 (CAJ 8x4) and 1,392 (DAM 4x4)
    assert reference_batches_per_epoch(22258, 11909, 8, 4) == 696
    assert reference_batches_per_epoch(22258, 11909, 4, 4) == 1392


def epoch_batches(loader, epoch: int) -> list[dict[str, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


AUG = ("data.channel_exchange=true", "data.random_erasing=0.5", "train.iters_per_epoch=3")


def test_determinism_same_seed_and_epoch(noise_records) -> None:
    a = build_train_loader(config(*AUG), noise_records)
    b = build_train_loader(config(*AUG), noise_records)
    torch.manual_seed(123)  # the global RNG state does not matter
    first = epoch_batches(a, 1)
    torch.manual_seed(999)
    assert same(first, epoch_batches(b, 1))
    assert not same(first, epoch_batches(b, 2))
    c = build_train_loader(config(*AUG, "train.seed=5"), noise_records)
    assert not same(first, epoch_batches(c, 1))
    d = build_train_loader(config(*AUG), noise_records, seed_offset=1)
    assert same(epoch_batches(c, 1), epoch_batches(d, 1))


def test_resumed_epoch_sees_the_same_augmentations(noise_records) -> None:
    uninterrupted = build_train_loader(config(*AUG), noise_records)
    for epoch in range(2):
        epoch_batches(uninterrupted, epoch)
    third = epoch_batches(uninterrupted, 2)
    resumed = build_train_loader(config(*AUG), noise_records)
    resumed.load_state_dict(uninterrupted.state_dict())
    assert resumed.epoch == 2
    assert same(third, list(resumed))


def test_global_rng_is_left_untouched(noise_records) -> None:
    loader = build_train_loader(config(*AUG), noise_records)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(state, torch.get_rng_state())


def test_two_workers_give_the_batches_of_zero_workers(noise_records) -> None:
    serial = build_train_loader(config(*AUG), noise_records)
    parallel = build_train_loader(config(*AUG, "data.workers=2"), noise_records)
    assert parallel.workers == 2
    for epoch in (0, 3, 1):  # the workers persist across epochs (one DataLoader) and follow set_epoch
        assert same(epoch_batches(serial, epoch), epoch_batches(parallel, epoch))
    assert parallel._loader() is parallel._loader() and parallel._loader().persistent_workers


def test_default_worker_count_follows_the_cpus(monkeypatch) -> None:
    import os

    from vireid.data.training import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert default_workers(-1) == 15 and default_workers(3) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_workers(-1) == 0


def test_augmentations_are_applied(noise_records) -> None:
    # same sampler draws with and without augmentation: the augmented images differ from the plain ones
    aug = epoch_batches(build_train_loader(config(*AUG), noise_records), 0)
    plain = epoch_batches(build_train_loader(config(*NO_AUG, "train.iters_per_epoch=3"), noise_records), 0)
    b = 6
    differ = total = 0
    for x, y in zip(aug, plain):
        assert torch.equal(x["pids"][:b], y["pids"][:b])
        for i in range(b):
            total += 2
            differ += not torch.equal(x["images"][i], y["images"][i])  # visible
            differ += not torch.equal(x["images"][-b + i], y["images"][-b + i])  # infrared
    assert differ >= total * 0.6


def test_collate_rejects_empty() -> None:
    with pytest.raises(ValueError):
        collate_train_batch([])


def test_errors(colour_records, tmp_path) -> None:
    with pytest.raises(ConfigError, match="data.ids_per_batch=5"):
        build_train_loader(config("data.ids_per_batch=5"), colour_records)
    with pytest.raises(DatasetError, match="no identity has both"):
        build_train_loader(config(), [r for r in colour_records if r.modality == "visible"])
    missing = ImageRecord(tmp_path / "gone.png", 3, 1, "visible")
    ir = next(r for r in colour_records if r.modality == "infrared" and r.pid == 3)
    ds = TrainSet([missing], [ir], transforms={"visible": lambda x: x, "infrared": lambda x: x})
    with pytest.raises(DatasetError, match="gone.png"):
        ds[(0, 0)]
    with pytest.raises(ConfigError, match="grayscale_view"):
        config("data.channel_exchange=true", "data.grayscale_view=true")


def test_unreadable_training_image_is_found_before_training_and_named(tmp_path, monkeypatch):
    from vireid.data.training import verify_images

    monkeypatch.setenv("VIREID_CACHE", str(tmp_path / "cache"))
    records = make_records(tmp_path / "imgs", noise=True)
    assert verify_images(records) == len(records)
    assert verify_images(records) == 0  # remembered: unchanged files are not decoded again
    bad = records[3].path
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a cut file: a new size, so checked again
    with pytest.raises(DatasetError, match="image cannot be read") as err:
        verify_images(records)
    assert str(bad) in str(err.value)


def test_worker_errors_are_unwrapped_to_the_message_naming_the_file(tmp_path):
    records = make_records(tmp_path / "imgs", noise=True)
    loader = build_train_loader(config("data.workers=1", "train.iters_per_epoch=2", "data.cache=false"), records)
    bad = loader.dataset.visible_records[0].path
    for rec in loader.dataset.visible_records + loader.dataset.infrared_records:
        rec.path.write_bytes(b"not an image")
    with pytest.raises(DatasetError) as err:
        list(loader)
    message = str(err.value)
    assert "Traceback" not in message and "worker process" not in message
    assert "image cannot be read" in message and str(Path(bad).parent) in message


def test_decoded_image_cache_gives_the_same_batches(tmp_path, noise_records, monkeypatch) -> None:
    """data.cache decodes and resizes each image once; every view's tensors are the same as reading the
    files (the resize is the first step of every view), with workers too; one cache serves every run
    of the same images and input size."""
    monkeypatch.setenv("VIREID_CACHE", str(tmp_path / "cache"))
    for extra in (AUG, ("data.grayscale_view=true", "data.trivial_augment=true", "train.iters_per_epoch=3")):
        files = build_train_loader(config(*extra, "data.cache=false"), noise_records)
        cached = build_train_loader(config(*extra, "data.cache=true"), noise_records)
        assert files.dataset.images is None and cached.dataset.images is not None
        assert same(epoch_batches(files, 1), epoch_batches(cached, 1))
    workers = build_train_loader(config(*AUG, "data.cache=true", "data.workers=2"), noise_records)
    assert same(epoch_batches(workers, 0), epoch_batches(build_train_loader(config(*AUG, "data.cache=false"),
                                                                            noise_records), 0))
    made = sorted(p.suffix for p in (tmp_path / "cache" / "decoded").iterdir())
    assert made == [".json", ".u8"] and not [p for p in (tmp_path / "cache" / "decoded").iterdir()
                                            if p.name.endswith(".tmp")]


def augmented_on_device(batches: list[dict], loader) -> list[dict]:
    """The batches of a data.augment_on=device loader with their augmentation finished (what the trainer
    does after moving a batch)."""
    out = []
    for b in batches:
        assert b["images"].dtype == torch.uint8 and b["augment"].shape == (b["images"].shape[0], 8)
        rest = {k: v for k, v in b.items() if k not in ("images", "augment")}
        out.append({"images": loader.batch_augment(b["images"], b["augment"]), **rest})
    return out


@pytest.mark.parametrize("extra", [
    AUG,  # CAJ: channel exchange with erasing on the derived view, adaptive gray on infrared, erasing
    (*AUG, "data.channel_exchange_gray=true", "data.random_erasing=1.0", "data.channel_erasing=1.0"),
    ("data.grayscale_view=true", "data.trivial_augment=true", "data.random_erasing=0.5", "train.iters_per_epoch=3"),
    ("data.random_erasing=0", "data.pad=0", "train.iters_per_epoch=3"),  # AGW without erasing, no padding
])
def test_device_augmentation_gives_the_batches_of_the_workers(noise_records, extra) -> None:
    """data.augment_on=device: workers decode and draw each step's parameters from the same per-sample
    seed; the batch is padded, cropped, flipped, erased and channel-exchanged as tensors. Every image is
    the tensor the per-image pipeline makes, over several epochs; with workers too; the global RNG is
    left alone."""
    per_image = build_train_loader(config(*extra, "data.augment_on=workers"), noise_records)
    batched = build_train_loader(config(*extra, "data.augment_on=device"), noise_records)
    assert per_image.batch_augment is None and batched.batch_augment is not None
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for epoch in (0, 2):
        assert same(epoch_batches(per_image, epoch), augmented_on_device(epoch_batches(batched, epoch), batched))
    assert torch.equal(state, torch.get_rng_state())
    with_workers = build_train_loader(config(*extra, "data.augment_on=device", "data.workers=2"), noise_records)
    assert same(epoch_batches(per_image, 1), augmented_on_device(epoch_batches(with_workers, 1), with_workers))


def test_device_augmentation_site_follows_the_training_device() -> None:
    from vireid.data.training import augments_on_device, trains_on_cuda

    assert not augments_on_device("auto", trains_on_cuda("cpu"))
    assert augments_on_device("auto", trains_on_cuda("cuda"))
    assert augments_on_device("auto", trains_on_cuda("cuda:1"))
    assert augments_on_device("device", trains_on_cuda("cpu"))
    assert not augments_on_device("workers", trains_on_cuda("cuda"))
    with pytest.raises(ConfigError, match="data.augment_on"):
        augments_on_device("gpu", False)
    with pytest.raises(ConfigError, match="data.augment_on"):
        load_config(None, ["data.augment_on=gpu"])


def test_paired_identities_are_the_training_classes(tmp_path):
    """The identities with both modalities, ascending (the classes, in label order); none is a DatasetError."""
    from vireid.data.training import paired_identities

    rec = [ImageRecord(tmp_path / f"{i}.png", pid, cam, mod) for i, (pid, cam, mod) in enumerate(
        [(7, 1, "visible"), (3, 3, "infrared"), (3, 2, "visible"), (9, 6, "infrared"), (7, 6, "infrared")])]
    assert paired_identities(rec) == [3, 7]
    with pytest.raises(DatasetError, match="no identity has both visible and infrared"):
        paired_identities(rec[:1] + rec[3:4])
