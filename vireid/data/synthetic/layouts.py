"""Writing synthetic datasets in the official layouts of SYSU-MM01, RegDB and LLCM.

The layouts follow ``docs`` / the shared protocol notes exactly, so the dataset readers accept them
unchanged:

* SYSU-MM01: ``cam{1..6}/{id:04d}/{frame:04d}.jpg`` (cameras 1, 2, 4, 5 visible; 3, 6 infrared, camera 3
  in the same room as camera 2), ``exp/{train,val,test}_id.txt`` (one line of comma-separated ids, split
  in the real proportions 296 / 99 / 96) and ``exp/rand_perm_cam.mat`` in the authors' structure.
* RegDB: ``Visible/<id>/<sex>_<front|back>_v_<frame5>_<id>.bmp``, ``Thermal/<id>/..._t_...bmp`` (a
  visible and a thermal image of the same frame show the same pose, as RegDB's co-located cameras do),
  ``idx/{train,test}_{visible,thermal}_{1..10}.txt`` (``<relative path> <label>``, label 0-based within
  the file; half the ids train, half test, a different seeded split per trial).
* LLCM: ``{train,test}_{vis,nir}/cam<c>/{id:04d}/{id:04d}_c{c:02d}_s<seq>_f<frame>_{vis,nir}.jpg``
  (nine cameras, no near-infrared camera 3), ``idx/train_{vis,nir}.txt`` (``<relative path> <label>``,
  0-based) and ``idx/test_id.txt`` (about 1/3 of the ids).

Every image is drawn from a NumPy generator seeded by ``(seed, dataset, person, camera, frame)`` and
written with fixed encoder settings, so the same arguments give byte-identical files whatever the
number of worker processes. ``vireid_synthetic.incomplete`` exists while a dataset is being written and
``vireid_synthetic.json`` (the generation settings, no time stamps) is written last.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vireid.data.records import INFRARED, VISIBLE
from vireid.data.synthetic.cameras import CameraSpec, Shot, Track, sample_shot, sample_track
from vireid.data.synthetic.person import PersonIdentity, sample_identity
from vireid.data.synthetic.render import render_shot
from vireid.data.synthetic.sysu_shape import (
    SYSU_DEFAULT_IMAGES,
    SYSU_SEED_CODE,
    SYSU_VISIBLE,
    SysuShape,
    proportional_split,
    sysu_shape,
    sysu_shape_from,
    write_rand_perm_cam,
)
from vireid.errors import DatasetError
from vireid.io import write_text_atomic

DATASETS = ("sysu", "regdb", "llcm")
_CODES = {"sysu": SYSU_SEED_CODE, "regdb": 2, "llcm": 3}

#: Default images per (person, camera): SYSU-MM01 and LLCM per camera folder, RegDB per modality.
DEFAULT_IMAGES = {"sysu": SYSU_DEFAULT_IMAGES, "regdb": 10, "llcm": 4}
DEFAULT_SIZE = (128, 64)
JPEG_QUALITY = 90

MARKER_DONE = "vireid_synthetic.json"
MARKER_INCOMPLETE = "vireid_synthetic.incomplete"
#: Top-level entries a synthetic dataset may write (what ``overwrite=True`` removes).
_LAYOUT_ENTRIES = (
    [f"cam{c}" for c in range(1, 7)]
    + ["exp", "Visible", "Thermal", "idx", "train_vis", "train_nir", "test_vis", "test_nir"]
    + [MARKER_DONE, MARKER_INCOMPLETE]
)

#: Real LLCM: 713 training and 351 test ids.
LLCM_SPLIT = (713, 351)
LLCM_CAMERAS = {VISIBLE: (1, 2, 3, 4, 5, 6, 7, 8, 9), INFRARED: (1, 2, 4, 5, 6, 7, 8, 9)}


# ----------------------------------------------------------------------------------------------
# Cameras of each dataset
# ----------------------------------------------------------------------------------------------
#: The generator's version, recorded in every set's manifest: raised whenever the same settings would draw
#: different images (2: patterns 3-6 pixels wide at a 64-pixel height, docs/synthetic-data.md), so a set made
#: by an older generator is regenerated rather than reused (:func:`is_current`).
GENERATOR_VERSION = 2


def is_current(root: str | Path, **settings: Any) -> bool:
    """Whether ``root`` holds a finished synthetic set of this generator version made with ``settings``
    (manifest keys such as ``ids``, ``test_ids``, ``seed``): one that can be reused instead of generated."""
    root = Path(root).expanduser()
    manifest = root / MARKER_DONE
    if not manifest.is_file() or (root / MARKER_INCOMPLETE).exists():
        return False
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("generator_version") == GENERATOR_VERSION and all(info.get(k) == v for k, v in settings.items())


def is_synthetic(root: str | Path) -> bool:
    """Whether ``root`` is a finished synthetic dataset (the generator's marker file is there): pictures and
    reports say so, since its numbers compare with nothing published."""
    return (Path(root).expanduser() / MARKER_DONE).is_file()


def camera_specs(dataset: str, seed: int = 0) -> dict[tuple[int, str], CameraSpec]:
    """The cameras of a synthetic ``dataset``, keyed by ``(camera number, modality)``.

    SYSU-MM01: two indoor visible cameras (1, 2), an indoor near-infrared camera in camera 2's room (3),
    two outdoor visible cameras (4, 5) and an outdoor near-infrared camera (6). RegDB: a visible and a
    thermal camera at the same place. LLCM: nine cameras, each a dim, noisy low-light visible camera by
    day and evening and a near-infrared camera at night (no near-infrared camera 3).
    """
    if dataset not in _CODES:
        raise ValueError(f"unknown synthetic dataset {dataset!r}; expected one of {DATASETS}")
    base = (seed * 7919 + _CODES[dataset] * 104729) % (2**31)
    specs: list[CameraSpec] = []
    if dataset == "sysu":
        specs = [
            CameraSpec(number=1, modality=VISIBLE, scene="indoor", scene_seed=base + 1, views=(0.55, 0.15, 0.15, 0.15),
                       cast=(1.04, 1.0, 0.9), scale=(0.84, 0.95), noise=0.015),
            CameraSpec(number=2, modality=VISIBLE, scene="indoor", scene_seed=base + 2, views=(0.15, 0.55, 0.15, 0.15),
                       cast=(0.98, 1.0, 1.03), gain=0.95, scale=(0.8, 0.92), noise=0.02),
            CameraSpec(number=3, modality=INFRARED, scene="indoor", scene_seed=base + 2, views=(0.3, 0.3, 0.2, 0.2),
                       infrared="nir", noise=0.025, scale=(0.8, 0.94)),
            CameraSpec(number=4, modality=VISIBLE, scene="outdoor", scene_seed=base + 4, views=(0.15, 0.15, 0.35, 0.35),
                       gain=1.08, contrast=1.1, scale=(0.78, 0.9), noise=0.012),
            CameraSpec(number=5, modality=VISIBLE, scene="outdoor", scene_seed=base + 5, views=(0.45, 0.35, 0.1, 0.1),
                       cast=(0.92, 0.98, 1.08), scale=(0.82, 0.94), noise=0.015),
            CameraSpec(number=6, modality=INFRARED, scene="outdoor", scene_seed=base + 6, views=(0.3, 0.3, 0.2, 0.2),
                       infrared="nir", gain=0.9, contrast=1.15, noise=0.03, scale=(0.8, 0.93)),
        ]
    elif dataset == "regdb":
        specs = [
            CameraSpec(number=1, modality=VISIBLE, scene="outdoor", scene_seed=base + 1, views=(0.5, 0.5, 0.0, 0.0),
                       scale=(0.84, 0.94), noise=0.02, blur=0.2, occlusion=0.03, view_persistence=0.9),
            CameraSpec(number=2, modality=INFRARED, scene="outdoor", scene_seed=base + 1, views=(0.5, 0.5, 0.0, 0.0),
                       infrared="thermal", scale=(0.84, 0.94), noise=0.02, blur=0.2, occlusion=0.03,
                       view_persistence=0.9),
        ]
    else:
        rng = np.random.default_rng([seed, _CODES[dataset], 0xCA])
        for cam in range(1, 10):
            scene = "outdoor" if cam in (2, 4, 6, 7, 9) else "indoor"
            views = tuple(float(v) for v in rng.dirichlet((2.0, 2.0, 1.2, 1.2)))
            warm = float(rng.uniform(0.0, 1.0))
            cast = (1.0 + 0.15 * warm, 1.0, 1.0 - 0.25 * warm)  # sodium or LED street lighting
            specs.append(
                CameraSpec(number=cam, modality=VISIBLE, scene=scene, scene_seed=base + cam, views=views,
                           gain=float(rng.uniform(0.38, 0.62)), cast=cast, contrast=0.9, noise=0.035,
                           scale=(0.8, 0.94), blur=0.2)
            )
            if cam != 3:
                specs.append(
                    CameraSpec(number=cam, modality=INFRARED, scene=scene, scene_seed=base + cam, views=views,
                               infrared="nir", gain=float(rng.uniform(0.85, 1.05)), noise=0.03, scale=(0.8, 0.94),
                               blur=0.2)
                )
    return {(s.number, s.modality): s for s in specs}


def identity_of(dataset: str, seed: int, pid: int) -> PersonIdentity:
    """The synthetic person ``pid`` of ``dataset`` generated with ``seed``."""
    return sample_identity(np.random.default_rng([seed, _CODES[dataset], 0, pid]), pid)


def _camera_code(camera: int, modality: str) -> int:
    return camera * 2 + (1 if modality == INFRARED else 0)


# ----------------------------------------------------------------------------------------------
# Jobs: the images of one person, rendered by a worker
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Image:
    relpath: str
    camera: int
    modality: str
    frame: int
    shot_key: int  # images with equal (camera group, shot_key) share a shot (RegDB pairs)


@dataclass(frozen=True)
class _Job:
    dataset: str
    seed: int
    pid: int
    size: tuple[int, int]
    images: tuple[_Image, ...]


def _render_job(args: tuple[_Job, str]) -> int:
    job, root = args
    specs = camera_specs(job.dataset, job.seed)
    ident = identity_of(job.dataset, job.seed, job.pid)
    code = _CODES[job.dataset]
    tracks: dict[tuple[int, str], Track] = {}
    shots: dict[tuple[int, int], Shot] = {}
    for img in job.images:
        cam = specs[(img.camera, img.modality)]
        # RegDB's cameras see the same frame: both modalities share the visible camera's track and shot
        group = 0 if job.dataset == "regdb" else _camera_code(img.camera, img.modality)
        track_cam = specs[(1, VISIBLE)] if job.dataset == "regdb" else cam
        key = (track_cam.number, track_cam.modality)
        if key not in tracks:
            tracks[key] = sample_track(track_cam, np.random.default_rng([job.seed, code, job.pid, group, 0x7AC]))
        skey = (group, img.shot_key)
        if skey not in shots:
            srng = np.random.default_rng([job.seed, code, job.pid, group, 0x5407, img.shot_key])
            shots[skey] = sample_shot(track_cam, srng, track=tracks[key], frame=img.frame)
        noise_rng = np.random.default_rng([job.seed, code, job.pid, _camera_code(img.camera, img.modality), img.frame])
        im = render_shot(ident, cam, shots[skey], noise_rng, job.size)
        path = Path(root) / img.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".bmp":
            im.save(path, format="BMP")
        else:
            im.save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return len(job.images)


def _run_jobs(jobs: Sequence[_Job], root: Path, *, workers: int | None, progress: bool, desc: str) -> int:
    from tqdm import tqdm

    total = sum(len(j.images) for j in jobs)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(1, min(workers, len(jobs)))
    args = [(j, str(root)) for j in jobs]
    done = 0
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        if workers == 1:
            for a in args:
                n = _render_job(a)
                done += n
                bar.update(n)
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ctx.Pool(workers) as pool:
                for n in pool.imap_unordered(_render_job, args, chunksize=1):
                    done += n
                    bar.update(n)
    return done


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError("output path exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(
                "output folder is not empty; choose an empty or new folder, or pass --overwrite "
                "(overwrite=True) to replace a synthetic dataset there",
                path=out,
            )
        for name in _LAYOUT_ENTRIES:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_INCOMPLETE).write_text(
        "A vireid synthetic dataset is being written here; if this file remains, the run was interrupted.\n",
        encoding="utf-8",
    )


def _finish(out: Path, info: dict) -> None:
    write_text_atomic(out / MARKER_DONE, json.dumps(info, indent=2, sort_keys=True) + "\n")
    (out / MARKER_INCOMPLETE).unlink()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _id_line(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(ids)) + "\n"


# ----------------------------------------------------------------------------------------------
# SYSU-MM01 (the shape of a set: vireid/data/synthetic/sysu_shape.py)
# ----------------------------------------------------------------------------------------------


def _sysu_jobs(shape: SysuShape, seed: int, size: tuple[int, int]) -> list[_Job]:
    by_pid: dict[int, list[_Image]] = {}
    for (cam, pid), n in sorted(shape.counts.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        modality = VISIBLE if cam in SYSU_VISIBLE else INFRARED
        by_pid.setdefault(pid, []).extend(
            _Image(f"cam{cam}/{pid:04d}/{f:04d}.jpg", cam, modality, f - 1, f) for f in range(1, n + 1)
        )
    return [_Job("sysu", seed, pid, size, tuple(imgs)) for pid, imgs in sorted(by_pid.items())]


def _write_sysu(out: Path, shape: SysuShape, seed: int, size, workers, progress) -> int:
    if not shape.test or not shape.train:
        raise ValueError("a SYSU-MM01 layout needs at least one training and one test id")
    n = _run_jobs(_sysu_jobs(shape, seed, size), out, workers=workers, progress=progress, desc="synth sysu")
    # empty id folders are not written: a person without images in a camera has no folder there
    for c in range(1, 7):
        (out / f"cam{c}").mkdir(exist_ok=True)
    _write_text(out / "exp" / "train_id.txt", _id_line(shape.train))
    _write_text(out / "exp" / "val_id.txt", _id_line(shape.val))
    _write_text(out / "exp" / "test_id.txt", _id_line(shape.test))
    write_rand_perm_cam(out / "exp" / "rand_perm_cam.mat", shape, seed=seed)
    return n


# ----------------------------------------------------------------------------------------------
# RegDB
# ----------------------------------------------------------------------------------------------
def _write_regdb(out: Path, ids: int, seed: int, k: int, size, workers, progress) -> int:
    if ids < 2:
        raise ValueError(f"a RegDB layout needs at least 2 ids (train and test), got {ids}")
    code = _CODES["regdb"]
    specs = camera_specs("regdb", seed)
    frame_rng = np.random.default_rng([seed, code, 7])
    frame = int(frame_rng.integers(100, 2000))
    jobs: list[_Job] = []
    files: dict[int, dict[str, list[str]]] = {}
    for pid in range(1, ids + 1):
        ident = identity_of("regdb", seed, pid)
        track = sample_track(specs[(1, VISIBLE)], np.random.default_rng([seed, code, pid, 0, 0x7AC]))
        imgs: list[_Image] = []
        files[pid] = {VISIBLE: [], INFRARED: []}
        for f in range(k):
            frame += int(frame_rng.integers(1, 4))
            if frame > 99999:
                raise ValueError(f"{ids} ids x {k} images do not fit RegDB's 5-digit frame numbers")
            srng = np.random.default_rng([seed, code, pid, 0, 0x5407, f])
            view = sample_shot(specs[(1, VISIBLE)], srng, track=track, frame=f).view
            for modality, folder, letter in ((VISIBLE, "Visible", "v"), (INFRARED, "Thermal", "t")):
                rel = f"{folder}/{pid}/{ident.sex}_{view}_{letter}_{frame:05d}_{pid}.bmp"
                cam = 1 if modality == VISIBLE else 2
                imgs.append(_Image(rel, cam, modality, f, f))
                files[pid][modality].append(rel)
        jobs.append(_Job("regdb", seed, pid, size, tuple(imgs)))
    n = _run_jobs(jobs, out, workers=workers, progress=progress, desc="synth regdb")
    n_train = ids // 2
    for trial in range(1, 11):
        order = np.random.default_rng([seed, code, 8, trial]).permutation(np.arange(1, ids + 1))
        split = {"train": sorted(int(i) for i in order[:n_train]), "test": sorted(int(i) for i in order[n_train:])}
        for name, pids in split.items():
            for modality, kind in ((VISIBLE, "visible"), (INFRARED, "thermal")):
                lines = [f"{rel} {label}" for label, pid in enumerate(pids) for rel in sorted(files[pid][modality])]
                _write_text(out / "idx" / f"{name}_{kind}_{trial}.txt", "\n".join(lines) + "\n")
    return n


# ----------------------------------------------------------------------------------------------
# LLCM
# ----------------------------------------------------------------------------------------------
def _write_llcm(out: Path, ids: int, seed: int, k: int, size, workers, progress) -> int:
    if ids < 2:
        raise ValueError(f"an LLCM layout needs at least 2 ids (train and test), got {ids}")
    code = _CODES["llcm"]
    n_train, n_test = proportional_split(ids, LLCM_SPLIT)
    order = np.random.default_rng([seed, code, 9]).permutation(np.arange(1, ids + 1))
    test = sorted(int(i) for i in order[:n_test])
    train = sorted(int(i) for i in order[n_test:])
    is_test = set(test)
    jobs: list[_Job] = []
    lists: dict[str, list[tuple[int, str]]] = {VISIBLE: [], INFRARED: []}
    label_of = {pid: i for i, pid in enumerate(train)}
    for pid in range(1, ids + 1):
        rng = np.random.default_rng([seed, code, 1, pid])
        imgs: list[_Image] = []
        for modality, low, high, suffix in ((VISIBLE, 2, 4, "vis"), (INFRARED, 1, 3, "nir")):
            cams = LLCM_CAMERAS[modality]
            chosen = sorted(int(c) for c in rng.choice(cams, size=int(rng.integers(low, high + 1)), replace=False))
            split = "test" if pid in is_test else "train"
            for cam in chosen:
                seq = int(rng.integers(100000, 999999))
                frame = int(rng.integers(100, 5000))
                for f in range(k):
                    frame += int(rng.integers(2, 40))
                    rel = f"{split}_{suffix}/cam{cam}/{pid:04d}/{pid:04d}_c{cam:02d}_s{seq:06d}_f{frame}_{suffix}.jpg"
                    imgs.append(_Image(rel, cam, modality, f, f))
                    if split == "train":
                        lists[modality].append((pid, rel))
        jobs.append(_Job("llcm", seed, pid, size, tuple(imgs)))
    n = _run_jobs(jobs, out, workers=workers, progress=progress, desc="synth llcm")
    for modality, name in ((VISIBLE, "train_vis.txt"), (INFRARED, "train_nir.txt")):
        lines = [f"{rel} {label_of[pid]}" for pid, rel in sorted(lists[modality])]
        _write_text(out / "idx" / name, "\n".join(lines) + "\n")
    _write_text(out / "idx" / "test_id.txt", _id_line(test))
    return n


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------
def generate(
    dataset: str,
    out: str | Path,
    *,
    ids: int | None = None,
    seed: int = 0,
    images_per_camera: int | None = None,
    shape_from: str | Path | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    test_ids: int | None = None,
) -> Path:
    """Write a synthetic VI-ReID dataset in ``dataset``'s official layout into ``out``; returns the folder.

    ``dataset`` is ``sysu``, ``regdb`` or ``llcm``; ``ids`` the number of persons (required unless
    ``shape_from`` is given); ``images_per_camera`` the images per (person, camera) -- default 6 for
    SYSU-MM01, 4 for LLCM, and 10 per modality for RegDB. ``shape_from`` (SYSU-MM01 only) is the
    authors' ``rand_perm_cam.mat``: the set then has the real dataset's ids, cameras and image counts
    (see :func:`sysu_shape_from`). ``size`` is (height, width) in pixels; ``workers`` the number of
    worker processes (default: the CPU count, at most 8; the files do not depend on it). ``out`` must
    be empty or new unless ``overwrite``, which removes a previous synthetic dataset's folders there.
    ``test_ids`` (SYSU-MM01 only, without ``shape_from``): the number of test identities (default: the
    real proportions, about a fifth).
    """
    if dataset not in _CODES:
        raise ValueError(f"unknown synthetic dataset {dataset!r}; expected one of {DATASETS}")
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 8 or h % 2 or w % 2:
        raise ValueError(f"size must be even and at least 16 x 8 (height x width), got {h} x {w}")
    if shape_from is not None and dataset != "sysu":
        raise ValueError("shape_from (a rand_perm_cam.mat) is only used with dataset 'sysu'")
    if ids is None and shape_from is None:
        raise ValueError("ids (the number of persons) is required")
    if test_ids is not None and (dataset != "sysu" or shape_from is not None):
        raise ValueError("test_ids is used with dataset 'sysu' without shape_from only")
    if images_per_camera is not None and images_per_camera < 1:
        raise ValueError(f"images_per_camera must be >= 1, got {images_per_camera}")
    out = Path(out).expanduser()
    if dataset == "sysu":
        shape = (
            sysu_shape_from(shape_from, ids=ids, seed=seed, images_per_camera=images_per_camera)
            if shape_from is not None
            else sysu_shape(int(ids), seed=seed, images_per_camera=images_per_camera,  # type: ignore[arg-type]
                            test_ids=test_ids)
        )
    _prepare_folder(out, overwrite)
    k = DEFAULT_IMAGES[dataset] if images_per_camera is None else images_per_camera
    if dataset == "sysu":
        n = _write_sysu(out, shape, seed, (h, w), workers, progress)
        n_ids = len({p for (_, p) in shape.counts})
    elif dataset == "regdb":
        n = _write_regdb(out, int(ids), seed, k, (h, w), workers, progress)  # type: ignore[arg-type]
        n_ids = int(ids)  # type: ignore[arg-type]
    else:
        n = _write_llcm(out, int(ids), seed, k, (h, w), workers, progress)  # type: ignore[arg-type]
        n_ids = int(ids)  # type: ignore[arg-type]
    from vireid import __version__

    _finish(
        out,
        {
            "generator": "vireid.data.synthetic",
            "vireid_version": __version__,
            "generator_version": GENERATOR_VERSION,
            "dataset": dataset,
            "ids": n_ids,
            "seed": seed,
            "images_per_camera": images_per_camera,
            "test_ids": test_ids,
            "shape_from": str(shape_from) if shape_from is not None else None,
            "size": [h, w],
            "images": n,
        },
    )
    return out
