"""The training data pipeline: paired visible/infrared samples, batch collation, the training loader.

A batch (``docs/architecture.md``, "Training batches") is a dict:

- ``images``: float ``[N, 3, H, W]`` in [0, 1], blocks ``[visible | derived | infrared]`` of ``B = P x K``
  images each (the derived block only when ``data.channel_exchange`` or ``data.grayscale_view``);
- ``pids``: long ``[N]``, labels ``0..num_classes-1``; element ``i`` of every block shows the same person;
- ``modality``: long ``[N]``: 0 visible, 2 derived, 1 infrared;
- ``camera``: long ``[N]``, the dataset's camera numbers (the derived view keeps its visible camera).

Identities are relabelled ``0..C-1`` in ascending order of their raw ids, over the identities that have
both visible and infrared training images; the others are dropped (and counted in a log line), since
the sampler can never pair them.

Reproducibility: batch ``b`` of epoch ``e`` draws its identities and images from ``(train.seed, e, b)``
(:class:`~vireid.data.sampler.IdentitySampler`), and every sample of that batch is augmented under its
own torch seed derived from ``(train.seed, e, b, position)``. Augmentations therefore do not depend on
the number of workers, on which worker loads a sample, or on any RNG state of the training process
(which the loader leaves untouched): a run resumed at epoch ``e`` sees the batches and augmentations of
an uninterrupted run at epoch ``e``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vireid.config.checks import AUGMENT_SITES
from vireid.data.batch_augment import BatchAugment, SplitView
from vireid.data.records import INFRARED, INTERMEDIATE_CODE, MODALITY_CODES, VISIBLE, ImageRecord, load_rgb
from vireid.data.sampler import IdentitySampler, reference_batches_per_epoch
from vireid.data.transforms import build_train_transforms
from vireid.errors import ConfigError, DatasetError, check_choice

logger = logging.getLogger(__name__)

#: A training sample key: ``(visible_index, infrared_index)`` or with a per-sample augmentation seed.
SampleKey = tuple[int, int] | tuple[int, int, int]


def paired_identities(records: Sequence[ImageRecord]) -> list[int]:
    """The identities of ``records`` that have both visible and infrared images, ascending: the training
    classes (label ``i`` is the ``i``-th of them). A :class:`DatasetError` when there is none."""
    vis_pids = {r.pid for r in records if r.modality == VISIBLE}
    ir_pids = {r.pid for r in records if r.modality == INFRARED}
    both = sorted(vis_pids & ir_pids)
    if not both:
        raise DatasetError(
            f"no identity has both visible and infrared training images "
            f"({len(vis_pids)} visible-only ids, {len(ir_pids)} infrared-only ids)"
        )
    return both


class TrainSet(Dataset):
    """Visible and infrared training images with identities relabelled ``0..num_classes-1``.

    Indexed by ``(visible_index, infrared_index)`` pairs (positions in :attr:`visible_records` and
    :attr:`infrared_records`), optionally with a third element: a torch seed under which the sample is
    augmented (the global torch RNG state is restored afterwards). A sample is a dict with the
    transformed ``visible``, ``infrared`` and (when ``transforms`` has it) ``derived`` images, the
    ``pid`` label, and ``visible_camera`` / ``infrared_camera``. With ``augment_on_device`` each view is
    instead its uint8 image after the picture steps, with a ``<view>_params`` row of the remaining steps'
    drawn parameters (:mod:`vireid.data.batch_augment`).
    """

    def __init__(
        self,
        visible: Sequence[ImageRecord],
        infrared: Sequence[ImageRecord],
        *,
        transforms: Mapping[str, Callable[[Image.Image], torch.Tensor]],
        images: Any = None,
        augment_on_device: bool = False,
    ):
        missing = {"visible", "infrared"} - set(transforms)
        if missing:
            raise ValueError(f"transforms lacks {sorted(missing)}; got keys {sorted(transforms)}")
        for name, recs, modality in (("visible", visible, VISIBLE), ("infrared", infrared, INFRARED)):
            wrong = next((r for r in recs if r.modality != modality), None)
            if wrong is not None:
                raise ValueError(f"{name} records must all be {modality!r}; got {wrong}")
        vis_pids = {r.pid for r in visible}
        ir_pids = {r.pid for r in infrared}
        both = paired_identities([*visible, *infrared])
        self.pid_to_label: dict[int, int] = {pid: label for label, pid in enumerate(both)}
        self.visible_records: list[ImageRecord] = [r for r in visible if r.pid in self.pid_to_label]
        self.infrared_records: list[ImageRecord] = [r for r in infrared if r.pid in self.pid_to_label]
        self.visible_labels: list[int] = [self.pid_to_label[r.pid] for r in self.visible_records]
        self.infrared_labels: list[int] = [self.pid_to_label[r.pid] for r in self.infrared_records]
        #: identities (and their images) dropped because they lack one modality
        self.dropped = {
            "visible_only_ids": len(vis_pids - ir_pids),
            "infrared_only_ids": len(ir_pids - vis_pids),
            "visible_images": len(visible) - len(self.visible_records),
            "infrared_images": len(infrared) - len(self.infrared_records),
        }
        if self.dropped["visible_only_ids"] or self.dropped["infrared_only_ids"]:
            logger.info(
                "training set: dropped %d visible-only identities (%d images) and %d infrared-only "
                "identities (%d images); %d identities have both modalities",
                self.dropped["visible_only_ids"],
                self.dropped["visible_images"],
                self.dropped["infrared_only_ids"],
                self.dropped["infrared_images"],
                len(both),
            )
        self.transforms = dict(transforms)
        #: decoded and resized images (:class:`vireid.data.cache.DecodedImages`), or None: read each file
        self.images = images
        #: data.augment_on=device: per view, the picture steps and the parameter draws of the rest
        #: (:mod:`vireid.data.batch_augment`); samples then hold uint8 images and ``<view>_params`` rows
        self.split_views = ({v: SplitView(t) for v, t in self.transforms.items()} if augment_on_device else None)

    @property
    def num_classes(self) -> int:
        return len(self.pid_to_label)

    @property
    def derived(self) -> bool:
        """Whether samples carry the derived view of the visible image (modality code 2)."""
        return "derived" in self.transforms

    def __len__(self) -> int:
        """The number of visible training images (samples are addressed by pairs, not by position)."""
        return len(self.visible_records)

    def _image(self, path: Any) -> Image.Image:
        if self.images is not None and path in self.images:
            return self.images[path]
        return load_rgb(path)

    def _augment(self, vis_img: Image.Image, ir_img: Image.Image) -> dict[str, Any]:
        views = [("visible", vis_img), *([("derived", vis_img)] if self.derived else []), ("infrared", ir_img)]
        out: dict[str, Any] = {}
        for name, img in views:  # in this order: the views draw from one seeded RNG stream
            if self.split_views is None:
                out[name] = self.transforms[name](img)
            else:
                out[name], out[f"{name}_params"] = self.split_views[name].run_host(img)
        return out

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        if not isinstance(key, (tuple, list)) or len(key) not in (2, 3):
            raise TypeError(f"TrainSet is indexed by (visible_index, infrared_index[, seed]), got {key!r}")
        vis_rec = self.visible_records[key[0]]
        ir_rec = self.infrared_records[key[1]]
        if vis_rec.pid != ir_rec.pid:
            raise ValueError(f"pair {tuple(key[:2])} mixes identities {vis_rec.pid} and {ir_rec.pid}")
        vis_img, ir_img = self._image(vis_rec.path), self._image(ir_rec.path)
        if len(key) == 3:
            state = torch.get_rng_state()
            try:
                torch.default_generator.manual_seed(int(key[2]))
                views = self._augment(vis_img, ir_img)
            finally:
                torch.set_rng_state(state)
        else:
            views = self._augment(vis_img, ir_img)
        views["pid"] = self.pid_to_label[vis_rec.pid]
        views["visible_camera"] = vis_rec.camera
        views["infrared_camera"] = ir_rec.camera
        return views


def verify_images(records: Sequence[ImageRecord], *, progress: bool = False) -> int:
    """Decode every image of ``records`` once and raise :class:`DatasetError` naming the first that is
    missing or unreadable, before a training starts (one bad image would otherwise stop the run midway).
    A set that passed is remembered (a marker keyed by :func:`vireid.data.cache.files_digest` under
    ``$VIREID_CACHE``), so later runs on unchanged files skip the check. Returns the number of images
    decoded (0 on a remembered set)."""
    from vireid.data.base import check_image_files
    from vireid.data.cache import files_digest, vireid_cache_dir

    marker = vireid_cache_dir() / "checked-images" / f"{files_digest([r.path for r in records])}.ok"
    if marker.is_file():
        return 0
    check_image_files(records, desc="checking training images", progress=progress)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{len(records)} images\n", encoding="utf-8")
    except OSError:
        pass  # a read-only home: the check simply runs again next time
    return len(records)


def collate_train_batch(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into the batch dict, blocks ``[visible | derived (if present) | infrared]``."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    n = len(samples)
    derived = "derived" in samples[0]
    pids = torch.tensor([s["pid"] for s in samples], dtype=torch.long)
    vis_cams = torch.tensor([s["visible_camera"] for s in samples], dtype=torch.long)
    ir_cams = torch.tensor([s["infrared_camera"] for s in samples], dtype=torch.long)
    blocks = [torch.stack([s["visible"] for s in samples])]
    codes = [MODALITY_CODES[VISIBLE]]
    cams = [vis_cams]
    if derived:
        blocks.append(torch.stack([s["derived"] for s in samples]))
        codes.append(INTERMEDIATE_CODE)
        cams.append(vis_cams)
    blocks.append(torch.stack([s["infrared"] for s in samples]))
    codes.append(MODALITY_CODES[INFRARED])
    cams.append(ir_cams)
    batch = {
        "images": torch.cat(blocks),
        "pids": pids.repeat(len(blocks)),
        "modality": torch.cat([torch.full((n,), c, dtype=torch.long) for c in codes]),
        "camera": torch.cat(cams),
    }
    if "visible_params" in samples[0]:  # data.augment_on=device: uint8 images and one parameter row each
        views = ["visible", *(["derived"] if derived else []), "infrared"]
        batch["augment"] = torch.tensor([s[f"{v}_params"] for v in views for s in samples], dtype=torch.long)
    return batch


def sample_seeds(seed: int, epoch: int, batch_index: int, n: int) -> list[int]:
    """The augmentation seeds of the ``n`` samples of global batch ``batch_index`` of ``epoch``."""
    # the trailing 1 separates this stream from the sampler's (seed, epoch, batch) stream
    state = np.random.SeedSequence([seed, epoch, batch_index, 1]).generate_state(n, dtype=np.uint64)
    return [int(s) for s in state]


class _SeededBatches:
    """The sampler's batches with a per-sample augmentation seed appended to each pair."""

    def __init__(self, sampler: IdentitySampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        s = self.sampler
        for index, pairs in s.indexed_batches():
            seeds = sample_seeds(s.seed, s.epoch, index, len(pairs))
            yield [(v, i, seed) for (v, i), seed in zip(pairs, seeds)]


def _seed_worker(worker_id: int) -> None:
    # Python's and NumPy's RNGs of a worker follow the worker's torch seed (itself drawn from the
    # loader's generator, seeded from (seed, epoch)), for transforms that would use them.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class TrainLoader:
    """Iterates over one epoch of training batches; call :meth:`set_epoch` before each epoch.

    ``num_classes``, ``sampler`` (the :class:`IdentitySampler`, whose ``state_dict`` is the loader's
    state) and ``dataset`` (the :class:`TrainSet`) are attributes; ``len(loader)`` is the number of
    batches this rank yields per epoch. ``batch_augment`` (a :class:`~vireid.data.batch_augment.BatchAugment`,
    with ``data.augment_on=device``) finishes the augmentation of a batch on the training device: such
    batches carry uint8 ``images`` and their ``augment`` parameter rows.
    """

    def __init__(
        self,
        dataset: TrainSet,
        sampler: IdentitySampler,
        *,
        workers: int = 0,
        pin_memory: bool = False,
        batch_augment: BatchAugment | None = None,
    ):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.dataset = dataset
        self.sampler = sampler
        self.workers = workers
        self.pin_memory = pin_memory
        self.batch_augment = batch_augment
        self._dataloader: DataLoader | None = None

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    def __len__(self) -> int:
        return len(self.sampler)

    def _loader(self) -> DataLoader:
        """The DataLoader, built once: with workers, they persist across epochs (no re-fork, no re-import
        per epoch). Its batch sampler reads the sampler's current epoch when an epoch starts."""
        if self._dataloader is None:
            generator = torch.Generator()
            # seeds the workers' base seed (Python/NumPy RNGs of the workers) from the run's seed; the
            # augmentations draw from per-sample torch seeds, not from these
            generator.manual_seed(int(np.random.SeedSequence([self.sampler.seed, 2]).generate_state(1, np.uint64)[0]))
            self._dataloader = DataLoader(
                self.dataset,
                batch_sampler=_SeededBatches(self.sampler),
                num_workers=self.workers,
                collate_fn=collate_train_batch,
                pin_memory=self.pin_memory,
                worker_init_fn=_seed_worker if self.workers > 0 else None,
                generator=generator,
                persistent_workers=self.workers > 0,
                prefetch_factor=4 if self.workers > 0 else None,
            )
        return self._dataloader

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        loader = self._loader()
        try:
            yield from loader
        except DatasetError as exc:
            # a worker's error arrives wrapped in its traceback: keep the message that names the file
            lines = [line for line in str(exc).splitlines() if line.strip()]
            message = lines[-1].split("DatasetError: ", 1)[-1] if lines else str(exc)
            raise DatasetError(message) from None


def augments_on_device(augment_on: str, on_cuda: bool) -> bool:
    """``data.augment_on``: whether batches are augmented as tensors on the training device (``auto``: when
    training on CUDA, ``on_cuda``)."""
    check_choice("data.augment_on", augment_on, AUGMENT_SITES)
    return augment_on == "device" or (augment_on == "auto" and on_cuda)


def trains_on_cuda(device: str) -> bool:
    """Whether ``train.device`` names CUDA (``cuda``, ``cuda:N``, or ``auto`` with a GPU present): the
    loader's one reading of the device (pinned memory, where augmentations run); the trainer resolves and
    checks it (:func:`vireid.engine.distributed.resolve_device`)."""
    device = str(device).strip().lower()
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def build_train_loader(
    cfg: DictConfig,
    records: Sequence[ImageRecord],
    *,
    rank: int = 0,
    world_size: int = 1,
    seed_offset: int = 0,
    progress: bool = False,
) -> TrainLoader:
    """The training loader of ``records`` (visible and infrared, raw pids) as configured by ``cfg``: the data
    package's one reading of the config (values checked by the loader, :mod:`vireid.config.checks`).

    Reads ``data.ids_per_batch`` (P), ``data.images_per_id`` (K), ``data.workers``, ``data.cache`` (with
    ``data.height``, ``data.width`` and ``data.resize``: images decoded and resized once,
    :mod:`vireid.data.cache`, showing ``progress``), ``data.augment_on``, ``train.seed`` (plus
    ``seed_offset``), ``train.iters_per_epoch`` and ``train.device`` (pinned memory and augmentations on
    CUDA), then hands the ``data`` section to :func:`build_train_transforms`. Batches per epoch:
    ``train.iters_per_epoch``, or when it is 0 the reference code's
    ``floor(max(#visible, #infrared) / (P x K)) + 1`` (:func:`reference_batches_per_epoch`); with
    ``world_size`` processes each rank yields its share (see :class:`IdentitySampler`).
    """
    data = cfg.data
    ids_per_batch, images_per_id, workers = int(data.ids_per_batch), int(data.images_per_id), int(data.workers)
    cache, size, resize = bool(data.cache), (int(data.height), int(data.width)), str(data.resize)
    pad, fill, augment_on = int(data.pad), [float(v) for v in data.erasing_fill], str(data.augment_on)
    iters_per_epoch, seed = int(cfg.train.iters_per_epoch), int(cfg.train.seed) + int(seed_offset)
    on_cuda = trains_on_cuda(str(cfg.train.device))
    transforms = build_train_transforms(data)  # the last reading of the config
    if seed < 0:
        raise ConfigError(f"train.seed + seed_offset must be >= 0, got {seed}")
    visible = [r for r in records if r.modality == VISIBLE]
    infrared = [r for r in records if r.modality == INFRARED]
    images = None
    if cache:
        from vireid.data.cache import DecodedImages

        images = DecodedImages.build([*visible, *infrared], size, resize, progress=progress)
    on_device = augments_on_device(augment_on, on_cuda)
    dataset = TrainSet(visible, infrared, transforms=transforms, images=images, augment_on_device=on_device)
    if dataset.num_classes < ids_per_batch:
        raise ConfigError(
            f"data.ids_per_batch={ids_per_batch} but only {dataset.num_classes} training identities "
            "have both visible and infrared images"
        )
    num_batches = iters_per_epoch or reference_batches_per_epoch(
        len(dataset.visible_records), len(dataset.infrared_records), ids_per_batch, images_per_id
    )
    sampler = IdentitySampler(
        dataset.visible_labels,
        dataset.infrared_labels,
        ids_per_batch=ids_per_batch,
        images_per_id=images_per_id,
        num_batches=num_batches,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    pin = torch.cuda.is_available() and on_cuda
    augment = BatchAugment(pad, fill) if on_device else None
    return TrainLoader(dataset, sampler, workers=default_workers(workers), pin_memory=pin, batch_augment=augment)


def default_workers(workers: int) -> int:
    """``data.workers``, with -1 (the default) meaning the machine's usable CPU count minus one for the
    training process, at most 16 (0 on a 1-CPU machine)."""
    if workers >= 0:
        return workers
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(16, cpus - 1))
