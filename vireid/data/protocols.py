"""Evaluation protocols of SYSU-MM01, RegDB and LLCM: which images are queries and which form the gallery.

A protocol object lists, for each trial, the query and gallery images in the order the field's reference
code builds them (that order fixes which images a seeded sampler draws, so it is part of the protocol).
The removal rules and the CMC variant live in the metrics, selected by the protocol's ``metric`` name
(``"sysu"``, ``"regdb"`` or ``"llcm"``, see :func:`vireid.evaluation.rank_metrics`).

Gallery samplers (``docs/paper-notes.md``, section "Protocols (datasets and galleries)"):

- **community** (AGW, CAJ, DEEN, MMN code; SYSU-MM01 and LLCM): a ``random.Random(trial)`` generator, the
  same stream as the reference code's ``random.seed(trial)`` followed by module-level ``random`` calls.
  Identities ascending, then cameras in the protocol's camera order; for each (identity, camera) that has a
  folder, the file names are sorted and one is drawn with ``choice`` (single-shot) or ``k`` with
  ``sample(files, k)`` (multi-shot). A missing (identity, camera) draws no number. A folder with fewer than
  ``k`` files, on which the reference code would crash, gives all its files in ``sample(files, n)`` order.
- **official** (SYSU-MM01 only): the dataset authors' ``rand_perm_cam.mat``; trial ``t`` takes the first
  ``k`` 1-based indices of row ``t`` of that (camera, identity)'s permutation, indexing the person's images
  of that camera in file-name order (all of them when there are fewer than ``k``).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vireid.config.checks import TEST_DIRECTIONS, TEST_SAMPLERS, TEST_SHOTS
from vireid.data.base import EvalProtocol, VIReIDDataset
from vireid.data.records import INFRARED, VISIBLE, ImageRecord

#: ``direction`` values of RegDB and LLCM: the query modality comes first.
DIRECTIONS = TEST_DIRECTIONS

#: SYSU-MM01 cameras: infrared query cameras and visible gallery cameras per search mode, in the
#: reference code's order.
SYSU_QUERY_CAMERAS = (3, 6)
SYSU_GALLERY_CAMERAS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SYSU_SHOTS = TEST_SHOTS
SYSU_SAMPLERS = TEST_SAMPLERS

#: Groups of images keyed by ``(camera, pid)``, each list in file-name order.
ImageGroups = Mapping[tuple[int, int], Sequence[ImageRecord]]


def _check_direction(direction: str) -> tuple[str, str]:
    """(query modality, gallery modality) of a direction name."""
    if direction == "visible_to_infrared":
        return VISIBLE, INFRARED
    if direction == "infrared_to_visible":
        return INFRARED, VISIBLE
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def groups_in_order(
    groups: ImageGroups, pids: Sequence[int], cameras: Sequence[int]
) -> Iterator[tuple[tuple[int, int], Sequence[ImageRecord]]]:
    """``((camera, pid), files)`` of every group with images: pids ascending, then ``cameras`` in the
    given order (the order of the community code's query and gallery lists)."""
    for pid in sorted(pids):
        for cam in cameras:
            files = groups.get((cam, pid))
            if files:
                yield (cam, pid), files


def ordered_images(groups: ImageGroups, pids: Sequence[int], cameras: Sequence[int]) -> list[ImageRecord]:
    """Every image of ``pids`` (ascending) in ``cameras`` (in the given order), files in name order."""
    return [rec for _, files in groups_in_order(groups, pids, cameras) for rec in files]


def sample_gallery_community(
    groups: ImageGroups, pids: Sequence[int], cameras: Sequence[int], trial: int, shots: int = 1
) -> list[ImageRecord]:
    """The community gallery sampler (``random.seed(trial)`` in the AGW/CAJ/DEEN/MMN code).

    For each pid ascending, each camera in ``cameras`` order, and each (camera, pid) present in
    ``groups`` (a missing one draws no number): ``choice(files)`` when ``shots == 1``, else
    ``sample(files, shots)`` — or ``sample(files, len(files))`` when there are fewer than ``shots``
    files (the reference code would raise there). ``files`` is the group in file-name order.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    rng = random.Random(trial)
    out: list[ImageRecord] = []
    for _, files in groups_in_order(groups, pids, cameras):
        files = list(files)
        if shots == 1:
            out.append(rng.choice(files))
        else:
            out.extend(rng.sample(files, min(shots, len(files))))
    return out


def sample_gallery_official(
    groups: ImageGroups,
    pids: Sequence[int],
    cameras: Sequence[int],
    permutations: Mapping[tuple[int, int], np.ndarray],
    trial: int,
    shots: int = 1,
) -> list[ImageRecord]:
    """The SYSU-MM01 authors' gallery: the first ``shots`` entries of row ``trial`` of each permutation.

    ``permutations[(camera, pid)]`` is a ``[trials, n]`` array of 1-based indices into the ``n`` images
    of that group in file-name order (its length was checked against the files by the reader). Groups
    without images are skipped; pids ascending, cameras in the given order.
    """
    return [files[int(i) - 1] for key, files in groups_in_order(groups, pids, cameras)
            for i in permutations[key][trial][:shots]]


class SysuProtocol(EvalProtocol):
    """SYSU-MM01 infrared-to-visible search (trials 0..9), metric ``"sysu"``.

    Query (the same in every trial and both modes): every infrared image of the test ids, for each id
    ascending, camera 3 then camera 6, file names sorted — the community code's query order.
    Gallery: visible cameras 1, 2, 4, 5 (``mode="all"``) or 1, 2 (``"indoor"``), ``shots`` (1 or 10)
    images per (id, camera), ids ascending then cameras in that order, drawn by the ``community`` or
    ``official`` sampler (see the module docstring). The camera rule (a camera-3 query ignores every
    camera-2 gallery image) is applied by the ``"sysu"`` metric.

    ``images`` maps ``(camera, pid)`` to that person's images of that camera in file-name order;
    ``permutations`` (``official`` only) maps the gallery ``(camera, pid)`` groups to their
    ``[10, n]`` 1-based permutation matrices.
    """

    metric = "sysu"

    def __init__(
        self,
        *,
        images: ImageGroups,
        test_ids: Sequence[int],
        mode: str = "all",
        shots: int = 1,
        sampler: str = "community",
        permutations: Mapping[tuple[int, int], np.ndarray] | None = None,
        perm_file: str | None = None,
        trials: Sequence[int] = tuple(range(10)),
    ):
        if mode not in SYSU_GALLERY_CAMERAS:
            raise ValueError(f"mode must be one of {tuple(SYSU_GALLERY_CAMERAS)}, got {mode!r}")
        if shots not in SYSU_SHOTS:
            raise ValueError(f"shots must be one of {SYSU_SHOTS}, got {shots!r}")
        if sampler not in SYSU_SAMPLERS:
            raise ValueError(f"sampler must be one of {SYSU_SAMPLERS}, got {sampler!r}")
        if sampler == "official" and permutations is None:
            raise ValueError("the official sampler needs the permutations of rand_perm_cam.mat")
        self.images = images
        self.test_ids = tuple(sorted(test_ids))
        self.mode = mode
        self.shots = shots
        self.sampler = sampler
        self.permutations = permutations
        self.perm_file = perm_file
        self.trials = tuple(trials)
        self.query_cameras = SYSU_QUERY_CAMERAS
        self.gallery_cameras = SYSU_GALLERY_CAMERAS[mode]
        self._query: list[ImageRecord] | None = None

    def query(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        if self._query is None:
            self._query = ordered_images(self.images, self.test_ids, self.query_cameras)
        return list(self._query)

    def gallery(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        if self.sampler == "community":
            return sample_gallery_community(
                self.images, self.test_ids, self.gallery_cameras, trial, self.shots
            )
        assert self.permutations is not None
        return sample_gallery_official(
            self.images, self.test_ids, self.gallery_cameras, self.permutations, trial, self.shots
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": "sysu",
            "metric": self.metric,
            "mode": self.mode,
            "shots": self.shots,
            "sampler": self.sampler,
        }
        if self.sampler == "official" and self.perm_file is not None:
            out["perm_file"] = self.perm_file
        return out


class RegdbProtocol(EvalProtocol):
    """RegDB (trials 1..10, the ``idx`` file suffix), metric ``"regdb"`` (standard CMC, nothing removed).

    ``test_split(trial)`` returns ``(visible, thermal)``: the trial's test images in ``idx`` file order.
    ``direction="visible_to_infrared"``: query = visible, gallery = thermal; ``"infrared_to_visible"``:
    the roles swapped. Each trial's test split belongs to the model trained on that trial's training split.
    """

    metric = "regdb"

    def __init__(
        self,
        *,
        test_split: Callable[[int], tuple[list[ImageRecord], list[ImageRecord]]],
        direction: str = "visible_to_infrared",
        trials: Sequence[int] = tuple(range(1, 11)),
    ):
        self.query_modality, self.gallery_modality = _check_direction(direction)
        self.direction = direction
        self.test_split = test_split
        self.trials = tuple(trials)

    def _side(self, trial: int, modality: str) -> list[ImageRecord]:
        self.check_trial(trial)
        visible, thermal = self.test_split(trial)
        return list(visible if modality == VISIBLE else thermal)

    def query(self, trial: int) -> list[ImageRecord]:
        return self._side(trial, self.query_modality)

    def gallery(self, trial: int) -> list[ImageRecord]:
        return self._side(trial, self.gallery_modality)

    def describe(self) -> dict[str, Any]:
        return {"dataset": "regdb", "metric": self.metric, "direction": self.direction}


class LlcmProtocol(EvalProtocol):
    """LLCM (trials 0..9), metric ``"llcm"`` (gallery images with the query's id and camera removed).

    Query: every test image of the query modality, ids ascending, cameras ascending, file names sorted.
    Gallery: one image per (id, camera) of the other modality, drawn by the community sampler with
    ``random.Random(trial)`` over ids ascending then cameras ascending (groups that exist), ``choice``
    over the sorted file names — the order of the LLCM authors' code.

    ``images`` maps ``(modality, camera, pid)`` to the test images of that group in file-name order;
    ``cameras`` maps each modality to its camera numbers.
    """

    metric = "llcm"

    def __init__(
        self,
        *,
        images: Mapping[tuple[str, int, int], Sequence[ImageRecord]],
        test_ids: Sequence[int],
        cameras: Mapping[str, Sequence[int]],
        direction: str = "visible_to_infrared",
        trials: Sequence[int] = tuple(range(10)),
    ):
        self.query_modality, self.gallery_modality = _check_direction(direction)
        self.direction = direction
        self.test_ids = tuple(sorted(test_ids))
        self.trials = tuple(trials)
        self._groups = {
            mod: {(cam, pid): recs for (m, cam, pid), recs in images.items() if m == mod}
            for mod in (VISIBLE, INFRARED)
        }
        self._cameras = {mod: tuple(sorted(cameras[mod])) for mod in (VISIBLE, INFRARED)}

    def query(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        mod = self.query_modality
        return ordered_images(self._groups[mod], self.test_ids, self._cameras[mod])

    def gallery(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        mod = self.gallery_modality
        return sample_gallery_community(self._groups[mod], self.test_ids, self._cameras[mod], trial, 1)

    def describe(self) -> dict[str, Any]:
        return {"dataset": "llcm", "metric": self.metric, "direction": self.direction}


class ManifestProtocol(EvalProtocol):
    """A fixed query and gallery (one trial, ``0``) listed by a user's ``manifest.csv``.

    ``metric`` is ``"llcm"`` by default (gallery images with the query's id and camera are removed, the
    usual rule for multi-camera data) or ``"regdb"`` (nothing removed).
    """

    metric = "llcm"
    METRICS = ("llcm", "regdb")

    def __init__(
        self,
        *,
        query: Sequence[ImageRecord],
        gallery: Sequence[ImageRecord],
        metric: str = "llcm",
        source: str | None = None,
    ):
        if metric not in self.METRICS:
            raise ValueError(f"manifest metric must be one of {self.METRICS}, got {metric!r}")
        self.metric = metric  # type: ignore[misc]  # instance value shadows the class default
        self._query = list(query)
        self._gallery = list(gallery)
        self.source = source
        self.trials = (0,)

    def query(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        return list(self._query)

    def gallery(self, trial: int) -> list[ImageRecord]:
        self.check_trial(trial)
        return list(self._gallery)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": "manifest", "metric": self.metric}
        if self.source is not None:
            out["manifest"] = self.source
        return out


#: ``test.*`` config keys that may be protocol options, by the option name they fill.
_CONFIG_OPTIONS = ("mode", "shots", "sampler", "direction")


def protocol_from_config(dataset: VIReIDDataset, cfg: Any, **overrides: Any) -> EvalProtocol:
    """``dataset.protocol(...)`` with the ``test.mode/shots/sampler/direction`` keys it accepts.

    Keys the dataset's ``protocol`` does not take are left out (RegDB has no ``mode``), unless it
    accepts ``**options``; ``overrides`` are passed as given.
    """
    params = inspect.signature(dataset.protocol).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    options: dict[str, Any] = {}
    test_cfg = cfg.test if hasattr(cfg, "test") else cfg["test"]
    for key in _CONFIG_OPTIONS:
        if key in params or takes_any:
            value = getattr(test_cfg, key, None) if not isinstance(test_cfg, Mapping) else test_cfg.get(key)
            if value is not None:
                options[key] = value
    options.update(overrides)
    return dataset.protocol(**options)


__all__ = [
    "DIRECTIONS",
    "LlcmProtocol",
    "ManifestProtocol",
    "RegdbProtocol",
    "SysuProtocol",
    "ordered_images",
    "protocol_from_config",
    "sample_gallery_community",
    "sample_gallery_official",
]


DATASET_TITLES = {"sysu": "SYSU-MM01", "regdb": "RegDB", "llcm": "LLCM", "manifest": "own data"}


def protocol_title(described: Mapping[str, Any], *, synthetic: bool = False) -> str:
    """A readable name of a protocol from its ``describe()`` dict (as results files record it), e.g.
    ``SYSU-MM01 all-search, single-shot, community gallery`` or ``RegDB visible to infrared``; on
    synthetic data ``synthetic SYSU-MM01-layout data all-search, ...`` (a picture must not pass for the
    real benchmark)."""
    name = DATASET_TITLES.get(str(described.get("dataset")), str(described.get("dataset", "dataset")))
    if synthetic:
        name = f"synthetic {name}-layout data"
    if "mode" in described:
        shots = "single-shot" if described.get("shots") == 1 else f"{described.get('shots')}-shot"
        return f"{name} {described['mode']}-search, {shots}, {described.get('sampler')} gallery"
    if "direction" in described:
        return f"{name} {str(described['direction']).replace('_', ' ')}"
    return name


def describe_protocol(protocol: EvalProtocol, *, synthetic: bool = False) -> str:
    """:func:`protocol_title` of a protocol object."""
    return protocol_title(protocol.describe(), synthetic=synthetic)
