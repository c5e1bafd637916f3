"""Cameras of a synthetic dataset and the shots they take.

* :class:`CameraSpec` -- one camera of a dataset: modality, scene (indoor or outdoor), viewpoint
  distribution, scale, crop jitter, lighting, noise, blur and occlusion rates; infrared cameras are
  near-infrared (``nir``: active illumination, vegetation bright) or thermal (``thermal``: warm body
  bright, cold background dark, blurrier).
* :class:`Track` -- how one person passes one camera (their walking direction, distance, where they
  are in the scene): frames of a track share it, as detections of one tracklet do in real datasets.
* :class:`Shot` -- one frame: viewpoint, walking phase, placement, blur and occluder.

:mod:`vireid.data.synthetic.render` draws a person into a shot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vireid.data.records import INFRARED, VISIBLE
from vireid.data.synthetic.person import Colour

VIEWS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class CameraSpec:
    """One camera of a synthetic dataset (see the module docstring).

    ``views`` are the probabilities of seeing a person from the front, back, left and right;
    ``scale`` the range of the person's height as a fraction of the image height; ``shift`` the crop
    jitter as a fraction of the image size; ``gain`` and ``cast`` the brightness and per-channel
    colour cast (visible), ``contrast`` a contrast factor, ``noise`` the sensor noise's standard
    deviation, ``blur`` and ``occlusion`` the probabilities of a blurred or an occluded image.
    ``infrared`` is ``nir`` or ``thermal`` (ignored by visible cameras).
    """

    number: int
    modality: str
    scene: str = "indoor"
    scene_seed: int = 0
    views: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    scale: tuple[float, float] = (0.82, 0.94)
    shift: float = 0.05
    gain: float = 1.0
    cast: Colour = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    noise: float = 0.015
    blur: float = 0.12
    occlusion: float = 0.08
    infrared: str = "nir"
    view_persistence: float = 0.85

    def __post_init__(self) -> None:
        if self.modality not in (VISIBLE, INFRARED):
            raise ValueError(f"camera {self.number}: modality must be 'visible' or 'infrared', got {self.modality!r}")
        if self.scene not in ("indoor", "outdoor"):
            raise ValueError(f"camera {self.number}: scene must be 'indoor' or 'outdoor', got {self.scene!r}")
        if self.infrared not in ("nir", "thermal"):
            raise ValueError(f"camera {self.number}: infrared must be 'nir' or 'thermal', got {self.infrared!r}")
        if len(self.views) != 4 or min(self.views) < 0 or sum(self.views) <= 0:
            raise ValueError(f"camera {self.number}: views must be 4 non-negative probabilities, got {self.views!r}")


@dataclass(frozen=True)
class Track:
    """How one person passes one camera; the frames of a track vary around it."""

    view: str
    scale: float
    dx: float
    bg_x: float
    bg_y: float
    phase: float
    phase_step: float
    light: float


@dataclass(frozen=True)
class Shot:
    """One frame: viewpoint, walking phase, placement and what degrades the image.

    ``dx``/``dy`` shift the person by fractions of the image width/height; ``bg_x``/``bg_y`` (in [0, 1])
    place the crop in the camera's scene; ``light`` multiplies the camera's gain; ``motion_blur``
    (pixels) and ``defocus`` (Gaussian radius) are 0 for a sharp image; ``occluder`` is ``None`` or
    ``(kind, position, size, colour, infrared intensity)``.
    """

    view: str
    phase: float
    scale: float
    dx: float
    dy: float
    bg_x: float
    bg_y: float
    light: float
    shading: float
    arm_out: float
    motion_blur: int = 0
    defocus: float = 0.0
    occluder: tuple | None = field(default=None)


#: How bright a pass is against the camera's gain: every camera's exposure varies a little
#: (``TRACK_LIGHT``); a near-infrared camera also lights the scene itself, and its illuminator's light
#: falls off with the person's distance (auto exposure follows only in part), so a near-infrared pass is
#: further as much as 30% brighter or darker (``NIR_ILLUMINATION``): absolute grey levels say little,
#: relative ones (a light shirt over dark trousers) stay (docs/synthetic-data.md).
TRACK_LIGHT, NIR_ILLUMINATION = (0.9, 1.1), (0.7, 1.3)


def sample_track(camera: CameraSpec, rng: np.random.Generator) -> Track:
    """How a person passes ``camera``: walking direction (viewpoint), distance and place in the scene."""
    p = np.asarray(camera.views, dtype=np.float64)
    view = VIEWS[int(rng.choice(4, p=p / p.sum()))]
    return Track(
        view=view,
        scale=float(rng.uniform(*camera.scale)),
        dx=float(rng.uniform(-camera.shift, camera.shift)),
        bg_x=float(rng.uniform(0.0, 1.0)),
        bg_y=float(rng.uniform(0.0, 1.0)),
        phase=float(rng.uniform(0.0, 2 * math.pi)),
        phase_step=float(rng.uniform(0.7, 1.7)),
        light=float(rng.uniform(*TRACK_LIGHT) * _illuminator(camera, rng)),
    )


def _illuminator(camera: CameraSpec, rng: np.random.Generator) -> float:
    """A near-infrared camera's own light on this pass (:data:`NIR_ILLUMINATION`), a draw of its own on top
    of the pass's exposure; 1 for colour and thermal cameras."""
    if camera.modality == INFRARED and camera.infrared == "nir":
        return float(rng.uniform(*NIR_ILLUMINATION))
    return 1.0


def sample_shot(camera: CameraSpec, rng: np.random.Generator, *, track: Track | None = None, frame: int = 0) -> Shot:
    """One frame of ``track`` (a fresh track from ``rng`` when not given) in ``camera``."""
    if track is None:
        track = sample_track(camera, rng)
    if rng.random() < camera.view_persistence:
        view = track.view
    else:
        p = np.asarray(camera.views, dtype=np.float64)
        view = VIEWS[int(rng.choice(4, p=p / p.sum()))]
    motion_blur = 0
    defocus = 0.0
    if rng.random() < camera.blur:
        if rng.random() < 0.5:
            motion_blur = int(rng.integers(2, 5))
        else:
            defocus = float(rng.uniform(0.7, 1.4))
    occluder = None
    if rng.random() < camera.occlusion:
        kind = ("pole", "barrier", "passerby")[int(rng.integers(3))]
        occluder = (
            kind,
            float(rng.uniform(0.0, 1.0)),
            float(rng.uniform(0.0, 1.0)),
            tuple(float(c) for c in np.clip(rng.uniform(0.1, 0.7) * rng.uniform(0.8, 1.2, size=3), 0.0, 1.0)),
            float(rng.uniform(0.55, 0.75) if kind == "passerby" else rng.uniform(0.08, 0.3)),
        )
    return Shot(
        view=view,
        phase=float(track.phase + frame * track.phase_step + rng.normal(0.0, 0.3)),
        scale=float(np.clip(track.scale * rng.uniform(0.96, 1.04), 0.6, 0.99)),
        dx=float(np.clip(track.dx + rng.normal(0.0, camera.shift / 2), -2 * camera.shift, 2 * camera.shift)),
        dy=float(rng.uniform(-camera.shift, camera.shift) * 0.6),
        bg_x=float(np.clip(track.bg_x + rng.normal(0.0, 0.04), 0.0, 1.0)),
        bg_y=float(np.clip(track.bg_y + rng.normal(0.0, 0.04), 0.0, 1.0)),
        light=float(track.light * rng.uniform(0.93, 1.07)),
        shading=float(rng.uniform(-0.6, 0.6)),
        arm_out=float(rng.uniform(0.04, 0.2)),
        motion_blur=motion_blur,
        defocus=defocus,
        occluder=occluder,
    )
