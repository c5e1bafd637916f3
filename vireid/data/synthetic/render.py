"""Drawing a synthetic person into a camera's view, in visible light or in infrared.

The renderer draws a part-label map of the person (skin, hair, upper and lower garment, their
patterns, shoes, carried object) with PIL at twice the output size, colours it with the identity's
visible colours or infrared intensities, shades it, and composites it (anti-aliased by the 2x
downsampling) over the camera's scene. The camera then applies its own lighting, colour cast, blur,
sensor noise and occasional occluders.

* :class:`CameraSpec` -- one camera of a dataset: modality, scene (indoor or outdoor), viewpoint
  distribution, scale, crop jitter, lighting, noise, blur and occlusion rates; infrared cameras are
  near-infrared (``nir``: active illumination, vegetation bright) or thermal (``thermal``: warm body
  bright, cold background dark, blurrier).
* :class:`Track` -- how one person passes one camera (their walking direction, distance, where they
  are in the scene): frames of a track share it, as detections of one tracklet do in real datasets.
* :class:`Shot` -- one frame: viewpoint, walking phase, placement, blur and occluder.

Infrared images carry no colour: one intensity channel (stored as three equal channels, as
SYSU-MM01's), computed from each part's near- or far-infrared intensity, which follows the part's
material and layering but never its colour (see :mod:`vireid.data.synthetic.person`). The colour
image shows each garment's material as a texture over its colour (:func:`material_texture`), which
is how a network can learn to predict the infrared look from the colour look.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vireid.data.records import INFRARED, VISIBLE
from vireid.data.synthetic.person import MATERIALS, Colour, Garment, PersonIdentity

VIEWS = ("front", "back", "left", "right")

# Part labels of the person's label map; SHADE marks parts on the far side of the body.
BACKGROUND, SKIN, HAIR, UPPER, UPPER_PATTERN, INNER, LOWER, LOWER_PATTERN, SHOES, CARRIED, STRAP, EYES = range(12)
SHADE = 16
_N_LABELS = 32


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


# ----------------------------------------------------------------------------------------------
# Sampling tracks and shots
# ----------------------------------------------------------------------------------------------
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
        light=float(rng.uniform(0.9, 1.1)),
    )


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


# ----------------------------------------------------------------------------------------------
# Scenes (backgrounds)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Material:
    colour: Colour
    nir: float
    thermal: float
    texture: float


_WALLS: tuple[Colour, ...] = ((0.86, 0.83, 0.76), (0.78, 0.78, 0.76), (0.92, 0.91, 0.88), (0.72, 0.80, 0.74), (0.74, 0.78, 0.86), (0.83, 0.74, 0.62))
_FLOORS: tuple[Colour, ...] = ((0.55, 0.53, 0.50), (0.45, 0.36, 0.26), (0.70, 0.68, 0.64), (0.35, 0.38, 0.40), (0.62, 0.50, 0.38))
_GROUNDS: tuple[tuple[Colour, float, float], ...] = (
    ((0.34, 0.34, 0.35), 0.22, 0.25),  # asphalt: colour, nir, thermal
    ((0.60, 0.55, 0.50), 0.30, 0.22),  # paving
    ((0.30, 0.50, 0.20), 0.62, 0.18),  # grass (bright in near infrared)
)


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.uniform(-1.0, 1.0, size=(max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _scene(kind: str, seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A camera's scene: (RGB [Hs, Ws, 3], near-infrared [Hs, Ws], thermal [Hs, Ws], -) in [0, 1].

    The scene is larger than one image; each image crops a window of it. Returned arrays are read-only.
    """
    rng = np.random.default_rng([seed, 0x5CE7E])
    hs, ws = int(round(h * 1.35)), int(round(w * 2.6))
    mats: list[_Material] = []

    def mat(colour: Colour, nir: float, thermal: float, texture: float) -> int:
        mats.append(_Material(tuple(float(c) for c in colour), float(nir), float(thermal), float(texture)))
        return len(mats) - 1

    def rand_colour(palette: tuple[Colour, ...], spread: float = 0.06) -> Colour:
        c = np.clip(np.asarray(palette[int(rng.integers(len(palette)))]) * rng.uniform(1 - spread, 1 + spread, 3), 0, 1)
        return (float(c[0]), float(c[1]), float(c[2]))

    label = Image.new("L", (ws, hs), 0)
    d = ImageDraw.Draw(label)
    if kind == "indoor":
        wall = mat(rand_colour(_WALLS), rng.uniform(0.35, 0.5), rng.uniform(0.2, 0.3), 0.04)
        d.rectangle([0, 0, ws, hs], fill=wall)
        floor_y = int(hs * rng.uniform(0.56, 0.7))
        # doors, windows, notice boards, a pillar
        for _ in range(int(rng.integers(1, 4))):
            kind_i = int(rng.integers(3))
            x0 = int(rng.uniform(0, ws - w * 0.3))
            if kind_i == 0:  # door, standing on the floor
                dw, dh = int(w * rng.uniform(0.35, 0.55)), int(hs * rng.uniform(0.4, 0.55))
                m = mat(rand_colour(((0.45, 0.30, 0.18), (0.55, 0.55, 0.58), (0.30, 0.36, 0.48))), 0.3, 0.22, 0.05)
                d.rectangle([x0, floor_y - dh, x0 + dw, floor_y], fill=m)
                frame = mat((0.25, 0.22, 0.2), 0.2, 0.2, 0.02)
                d.rectangle([x0, floor_y - dh, x0 + dw, floor_y], outline=frame, width=max(1, w // 40))
            elif kind_i == 1:  # window
                ww_, wh = int(w * rng.uniform(0.4, 0.8)), int(hs * rng.uniform(0.15, 0.28))
                y0 = int(floor_y * rng.uniform(0.12, 0.35))
                m = mat((0.80, 0.88, 0.95), 0.55, 0.12, 0.08)
                d.rectangle([x0, y0, x0 + ww_, y0 + wh], fill=m)
                bar = mat((0.35, 0.35, 0.37), 0.25, 0.2, 0.01)
                d.rectangle([x0, y0, x0 + ww_, y0 + wh], outline=bar, width=max(1, w // 32))
                d.line([x0 + ww_ // 2, y0, x0 + ww_ // 2, y0 + wh], fill=bar, width=max(1, w // 40))
            else:  # notice board or poster
                pw, ph = int(w * rng.uniform(0.2, 0.4)), int(hs * rng.uniform(0.1, 0.2))
                y0 = int(floor_y * rng.uniform(0.25, 0.55))
                m = mat(tuple(rng.uniform(0.2, 0.9, 3)), rng.uniform(0.3, 0.5), 0.22, 0.15)
                d.rectangle([x0, y0, x0 + pw, y0 + ph], fill=m)
        if rng.random() < 0.5:
            px = int(rng.uniform(0, ws - w * 0.2))
            m = mat(rand_colour(_WALLS), rng.uniform(0.35, 0.5), 0.24, 0.03)
            d.rectangle([px, 0, px + int(w * 0.2), floor_y], fill=m)
        floor = mat(rand_colour(_FLOORS), rng.uniform(0.25, 0.4), rng.uniform(0.18, 0.26), 0.06)
        d.rectangle([0, floor_y, ws, hs], fill=floor)
        skirting = mat((0.2, 0.19, 0.18), 0.18, 0.2, 0.02)
        d.rectangle([0, floor_y - max(1, h // 50), ws, floor_y], fill=skirting)
        grout = mat((0.3, 0.29, 0.28), 0.2, 0.2, 0.02)
        vx = ws * rng.uniform(0.3, 0.7)
        gap = max(3, int(hs * rng.uniform(0.05, 0.09)))
        y = floor_y + gap // 2
        while y < hs:
            d.line([0, y, ws, y], fill=grout, width=1)
            gap = int(gap * 1.35) + 1
            y += gap
        for k in range(-8, 9):
            d.line([vx + k * w * 0.08, floor_y, vx + k * w * 0.5, hs], fill=grout, width=1)
    else:
        horizon = int(hs * rng.uniform(0.38, 0.55))
        sky = mat((0.72, 0.82, 0.93) if rng.random() < 0.7 else (0.82, 0.83, 0.85), 0.5, 0.04, 0.03)
        d.rectangle([0, 0, ws, hs], fill=sky)
        if rng.random() < 0.55:  # building with a grid of windows
            top = int(horizon * rng.uniform(0.0, 0.35))
            b = mat(rand_colour(((0.75, 0.70, 0.62), (0.62, 0.36, 0.30), (0.80, 0.80, 0.78), (0.55, 0.56, 0.58))), 0.42, 0.3, 0.05)
            d.rectangle([0, top, ws, horizon], fill=b)
            win = mat((0.25, 0.32, 0.40), 0.15, 0.18, 0.1)
            step_x, step_y = max(4, int(w * rng.uniform(0.18, 0.3))), max(4, int(h * rng.uniform(0.12, 0.2)))
            for yy in range(top + step_y // 3, horizon - step_y // 2, step_y):
                for xx in range(int(rng.integers(step_x)), ws, step_x):
                    d.rectangle([xx, yy, xx + step_x // 2, yy + step_y // 2], fill=win)
        else:  # trees and bushes
            leaves = mat((0.20, 0.38, 0.16), 0.55, 0.2, 0.3)
            dark_leaves = mat((0.12, 0.25, 0.10), 0.45, 0.18, 0.3)
            for _ in range(int(rng.integers(4, 9))):
                cx, cy = rng.uniform(0, ws), horizon * rng.uniform(0.35, 0.9)
                rx, ry = w * rng.uniform(0.25, 0.6), horizon * rng.uniform(0.25, 0.5)
                d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=leaves if rng.random() < 0.5 else dark_leaves)
            trunk = mat((0.30, 0.22, 0.15), 0.35, 0.25, 0.05)
            for _ in range(int(rng.integers(1, 4))):
                tx = rng.uniform(0, ws)
                d.rectangle([tx, horizon * 0.6, tx + w * 0.05, horizon], fill=trunk)
        colour, nir, thermal = _GROUNDS[int(rng.integers(len(_GROUNDS)))]
        ground = mat(colour, nir, thermal, 0.12)
        d.rectangle([0, horizon, ws, hs], fill=ground)
        if rng.random() < 0.6:  # a paved path or a kerb
            c2, n2, t2 = _GROUNDS[int(rng.integers(2))]
            path = mat(tuple(np.clip(np.asarray(c2) * 1.1, 0, 1)), n2, t2, 0.08)
            y0 = int(horizon + (hs - horizon) * rng.uniform(0.15, 0.5))
            d.polygon([(0, y0), (ws, y0 - h * 0.05), (ws, hs), (0, hs)], fill=path)
        if rng.random() < 0.5:  # a lamp post
            m = mat((0.3, 0.3, 0.32), 0.25, 0.15, 0.02)
            lx = rng.uniform(0, ws)
            d.rectangle([lx, horizon * 0.1, lx + max(2, w * 0.04), horizon + h * 0.1], fill=m)

    labels = np.asarray(label, dtype=np.intp)
    colour = np.array([m.colour for m in mats], dtype=np.float32)
    nir = np.array([m.nir for m in mats], dtype=np.float32)
    thermal = np.array([m.thermal for m in mats], dtype=np.float32)
    tex_amp = np.array([m.texture for m in mats], dtype=np.float32)
    tex = 0.7 * _value_noise(rng, hs, ws, max(3, w // 10)) + 0.3 * rng.uniform(-1, 1, size=(hs, ws)).astype(np.float32)
    amp = tex_amp[labels] * tex
    rgb = np.clip(colour[labels] * (1.0 + amp)[..., None], 0.0, 1.0)
    # a light fall-off from the top of the scene
    rgb *= np.linspace(1.05, 0.9, hs, dtype=np.float32)[:, None, None]
    nir_img = np.clip(nir[labels] * (1.0 + 0.8 * amp), 0.0, 1.0)
    thermal_img = np.clip(thermal[labels] * (1.0 + 0.5 * amp), 0.0, 1.0)
    out = (rgb.astype(np.float32), nir_img.astype(np.float32), thermal_img.astype(np.float32), labels.astype(np.uint8))
    for a in out:
        a.setflags(write=False)
    return out


# ----------------------------------------------------------------------------------------------
# The person
# ----------------------------------------------------------------------------------------------
def _disc(d: ImageDraw.ImageDraw, c: tuple[float, float], r: float, label: int) -> None:
    d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=label)


def _ellipse(d: ImageDraw.ImageDraw, c: tuple[float, float], rx: float, ry: float, label: int) -> None:
    d.ellipse([c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry], fill=label)


def _limb(d: ImageDraw.ImageDraw, p0: tuple[float, float], p1: tuple[float, float], w0: float, w1: float, label: int) -> None:
    """A tapered segment from ``p0`` (width ``w0``) to ``p1`` (width ``w1``) with round ends."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length = math.hypot(dx, dy) or 1e-6
    nx, ny = -dy / length, dx / length
    d.polygon(
        [
            (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2),
            (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
            (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2),
            (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
        ],
        fill=label,
    )
    _disc(d, p0, w0 / 2, label)
    _disc(d, p1, w1 / 2, label)


def _lerp(p0: tuple[float, float], p1: tuple[float, float], t: float) -> tuple[float, float]:
    return (p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t)


@dataclass
class _Body:
    """Joint positions and widths of one drawn person (canvas pixels)."""

    cx: float
    top: float
    hp: float
    head: tuple[float, float]
    head_rx: float
    head_ry: float
    shoulder_y: float
    waist_y: float
    hip_y: float
    ankle_y: float
    shoulder_w: float
    waist_w: float
    hip_w: float
    thigh_w: float
    ankle_w: float
    arm_w: float
    forearm_w: float
    hem_y: float


def _body(ident: PersonIdentity, cx: float, top: float, hp: float) -> _Body:
    b = ident.build
    female = ident.sex == "female"
    hip_y = top + (1.0 - 0.48 * ident.leg_ratio) * hp
    shoulder_y = top + 0.168 * hp
    waist_y = shoulder_y + 0.72 * (hip_y - shoulder_y)
    hem_y = hip_y + 0.025 * hp if ident.upper.style != "coat" else top + 0.72 * hp
    return _Body(
        cx=cx,
        top=top,
        hp=hp,
        head=(cx, top + 0.068 * hp),
        head_rx=0.05 * hp * ident.head_scale,
        head_ry=0.066 * hp * ident.head_scale,
        shoulder_y=shoulder_y,
        waist_y=waist_y,
        hip_y=hip_y,
        ankle_y=top + 0.955 * hp,
        shoulder_w=(0.098 if female else 0.112) * hp * b,
        waist_w=(0.074 if female else 0.086) * hp * b**1.4,
        hip_w=(0.094 if female else 0.088) * hp * b,
        thigh_w=0.078 * hp * b,
        ankle_w=0.044 * hp * (0.5 + 0.5 * b),
        arm_w=0.046 * hp * b,
        forearm_w=0.036 * hp * b,
        hem_y=hem_y,
    )


def _leg_labels(ident: PersonIdentity) -> tuple[int, int]:
    """Labels of (thigh, shin) before any skirt or shorts is drawn over them."""
    style = ident.lower.style
    if style in ("trousers", "jeans"):
        return LOWER, LOWER
    return SKIN, SKIN


def _draw_leg(d: ImageDraw.ImageDraw, ident: PersonIdentity, body: _Body, hip, knee, ankle, shade: int, toe_dir: float) -> None:
    thigh, shin = _leg_labels(ident)
    knee_w = (body.thigh_w + body.ankle_w) / 2
    _limb(d, hip, knee, body.thigh_w, knee_w, thigh | shade)
    _limb(d, knee, ankle, knee_w, body.ankle_w, shin | shade)
    if ident.lower.style == "shorts":
        end = _lerp(hip, knee, 0.72)
        _limb(d, hip, end, body.thigh_w * 1.12, body.thigh_w * 1.08, LOWER | shade)
    hp = body.hp
    if toe_dir == 0:  # seen from the front or the back
        _ellipse(d, (ankle[0], ankle[1] + 0.022 * hp), 0.03 * hp, 0.02 * hp, SHOES | shade)
    else:
        _ellipse(d, (ankle[0] + toe_dir * 0.022 * hp, ankle[1] + 0.02 * hp), 0.045 * hp, 0.019 * hp, SHOES | shade)


def _draw_arm(d, ident: PersonIdentity, body: _Body, shoulder, elbow, wrist, shade: int) -> None:
    style = ident.upper.style
    _limb(d, shoulder, elbow, body.arm_w, body.forearm_w * 1.05, SKIN | shade)
    _limb(d, elbow, wrist, body.forearm_w * 1.05, body.forearm_w * 0.85, SKIN | shade)
    if style == "tshirt":
        _limb(d, shoulder, _lerp(shoulder, elbow, 0.55), body.arm_w * 1.1, body.arm_w * 1.05, UPPER | shade)
    else:
        _limb(d, shoulder, elbow, body.arm_w * 1.05, body.forearm_w * 1.1, UPPER | shade)
        _limb(d, elbow, wrist, body.forearm_w * 1.1, body.forearm_w * 0.95, UPPER | shade)
    hand = _lerp(elbow, wrist, 1.18)
    _disc(d, hand, body.forearm_w * 0.62, SKIN | shade)


def _draw_torso_front(d, ident: PersonIdentity, body: _Body, view: str) -> None:
    cx, hp = body.cx, body.hp
    flare = 1.25 if ident.upper.style == "coat" else 1.04
    pts = [
        (cx - body.shoulder_w, body.shoulder_y),
        (cx + body.shoulder_w, body.shoulder_y),
        (cx + body.waist_w, body.waist_y),
        (cx + body.hip_w * flare, body.hem_y),
        (cx - body.hip_w * flare, body.hem_y),
        (cx - body.waist_w, body.waist_y),
    ]
    d.polygon(pts, fill=UPPER)
    for s in (-1, 1):
        _disc(d, (cx + s * (body.shoulder_w - body.arm_w * 0.45), body.shoulder_y + body.arm_w * 0.45), body.arm_w * 0.55, UPPER)
    if view == "front":
        if ident.upper.style in ("jacket", "coat"):
            d.polygon(
                [
                    (cx - 0.032 * hp, body.shoulder_y),
                    (cx + 0.032 * hp, body.shoulder_y),
                    (cx + 0.012 * hp, body.hem_y if ident.upper.style == "jacket" else body.waist_y),
                    (cx - 0.012 * hp, body.hem_y if ident.upper.style == "jacket" else body.waist_y),
                ],
                fill=INNER,
            )
        else:
            _ellipse(d, (cx, body.shoulder_y + 0.004 * hp), 0.026 * hp, 0.016 * hp, SKIN)
        if ident.upper.pattern == "print":
            _draw_print(d, ident, (cx + (0.03 * hp if ident.upper.style == "jacket" else 0.0), body.shoulder_y + 0.1 * hp), 0.038 * hp)


def _draw_print(d, ident: PersonIdentity, c: tuple[float, float], r: float) -> None:
    shape = ident.upper.print_shape
    if ident.upper.style == "jacket":
        r *= 0.6
    if shape == "disc":
        _disc(d, c, r, UPPER_PATTERN)
    elif shape == "square":
        d.rectangle([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=UPPER_PATTERN)
    elif shape == "band":
        d.rectangle([c[0] - 2.2 * r, c[1] - 0.45 * r, c[0] + 2.2 * r, c[1] + 0.45 * r], fill=UPPER_PATTERN)
    else:
        d.polygon([(c[0], c[1] - r), (c[0] + r, c[1] + r * 0.8), (c[0] - r, c[1] + r * 0.8)], fill=UPPER_PATTERN)


def _draw_head(d, ident: PersonIdentity, body: _Body, view: str, facing: float) -> None:
    hx, hy = body.head
    rx, ry = body.head_rx, body.head_ry
    hp = body.hp
    # neck
    _limb(d, (hx, hy + 0.6 * ry), (hx, body.shoulder_y + 0.01 * hp), 0.042 * hp, 0.046 * hp, SKIN)
    long_hair = {"short": 0.0, "medium": 0.03, "long": 0.14}[ident.hair_length] * hp
    if view == "front":
        _ellipse(d, (hx, hy - 0.06 * ry), rx * 1.1, ry * 1.04, HAIR)
        if long_hair > 0:
            d.rectangle([hx - rx * 1.1, hy, hx + rx * 1.1, hy + ry * 0.6 + long_hair * 0.5], fill=HAIR)
        fringe = 0.22 if ident.hair_length != "short" else 0.16
        _ellipse(d, (hx, hy + fringe * ry), rx * 0.9, ry * (1.0 - fringe * 0.9), SKIN)
        for s in (-1, 1):
            _ellipse(d, (hx + s * 0.38 * rx, hy + 0.12 * ry), 0.13 * rx, 0.08 * ry, EYES)
    elif view == "back":
        _ellipse(d, (hx, hy), rx, ry, SKIN)
        cover = 0.85 if ident.hair_length == "short" else 1.0
        _ellipse(d, (hx, hy - (1 - cover) * ry), rx * 1.08, ry * (0.98 if cover < 1 else 1.04), HAIR)
        if long_hair > 0:
            d.polygon(
                [
                    (hx - rx * 1.05, hy),
                    (hx + rx * 1.05, hy),
                    (hx + rx * 1.2, body.shoulder_y + long_hair),
                    (hx - rx * 1.2, body.shoulder_y + long_hair),
                ],
                fill=HAIR,
            )
    else:
        _ellipse(d, (hx, hy), rx * 0.95, ry, SKIN)
        # hair covers the crown and the back of the head; the face looks forward
        _ellipse(d, (hx - facing * 0.3 * rx, hy - 0.16 * ry), rx * 0.8, ry * 0.86, HAIR)
        _ellipse(d, (hx, hy - 0.55 * ry), rx * 0.9, ry * 0.48, HAIR)
        if long_hair > 0:
            d.polygon(
                [
                    (hx - facing * rx * 0.9, hy - 0.2 * ry),
                    (hx - facing * rx * 0.1, hy),
                    (hx - facing * rx * 0.5, body.shoulder_y + long_hair),
                    (hx - facing * rx * 1.05, body.shoulder_y + long_hair),
                ],
                fill=HAIR,
            )
        _ellipse(d, (hx + facing * 0.5 * rx, hy + 0.12 * ry), 0.1 * rx, 0.07 * ry, EYES)


def _draw_person(d: ImageDraw.ImageDraw, ident: PersonIdentity, shot: Shot, body: _Body) -> None:
    view = shot.view
    hp, cx = body.hp, body.cx
    phase = shot.phase
    stride = ident.stride
    if view in ("front", "back"):
        mirror = 1.0 if view == "back" else -1.0  # image side of the person's right
        # long hair seen from the front hangs behind the shoulders
        if view == "front" and ident.hair_length == "long":
            hx, hy = body.head
            d.rectangle([hx - body.head_rx * 1.15, hy, hx + body.head_rx * 1.15, body.shoulder_y + 0.12 * hp], fill=HAIR)
        # legs
        hip_dx = body.hip_w - body.thigh_w * 0.5
        for i, s in enumerate((-1.0, 1.0)):
            lift = 0.035 * hp * max(0.0, math.sin(phase + i * math.pi)) * stride / 0.3
            spread = 0.012 * hp * (1 + math.cos(phase + i * math.pi))
            hip = (cx + s * hip_dx, body.hip_y)
            ankle = (cx + s * (hip_dx + spread), body.ankle_y - lift)
            knee = (cx + s * (hip_dx + spread * 0.4), (body.hip_y + ankle[1]) / 2 - 0.2 * lift)
            _draw_leg(d, ident, body, hip, knee, ankle, 0, 0.0)
        style = ident.lower.style
        if style == "skirt":
            y_sk = body.hip_y + 0.5 * (body.ankle_y - body.hip_y)
            d.polygon(
                [(cx - body.waist_w, body.waist_y), (cx + body.waist_w, body.waist_y), (cx + body.hip_w * 1.45, y_sk), (cx - body.hip_w * 1.45, y_sk)],
                fill=LOWER,
            )
        else:
            d.rectangle([cx - body.hip_w, body.waist_y, cx + body.hip_w, body.hip_y + 0.03 * hp], fill=LOWER)
        # bag behind the arm on its side
        if ident.carried == "bag":
            side = mirror * ident.bag_side
            bx = cx + side * (body.hip_w + 0.025 * hp)
            d.rectangle([bx - 0.045 * hp, body.hip_y - 0.07 * hp, bx + 0.045 * hp, body.hip_y + 0.02 * hp], fill=CARRIED)
        _draw_torso_front(d, ident, body, view)
        if ident.carried == "backpack":
            if view == "back":
                w = body.shoulder_w * 0.82
                d.rounded_rectangle(
                    [cx - w, body.shoulder_y + 0.02 * hp, cx + w, body.waist_y + 0.02 * hp], radius=0.03 * hp, fill=CARRIED
                )
                d.rectangle([cx - w * 0.6, body.waist_y - 0.07 * hp, cx + w * 0.6, body.waist_y - 0.005 * hp], fill=STRAP)
            else:
                for s in (-1, 1):
                    _limb(
                        d,
                        (cx + s * body.shoulder_w * 0.55, body.shoulder_y),
                        (cx + s * body.shoulder_w * 0.62, body.waist_y - 0.06 * hp),
                        0.02 * hp,
                        0.018 * hp,
                        STRAP,
                    )
        if ident.carried == "bag":
            side = mirror * ident.bag_side
            _limb(
                d,
                (cx - side * body.shoulder_w * 0.6, body.shoulder_y),
                (cx + side * (body.hip_w + 0.02 * hp), body.hip_y - 0.07 * hp),
                0.014 * hp,
                0.014 * hp,
                STRAP,
            )
        # arms hang beside the torso, swinging towards and away from the camera
        for i, s in enumerate((-1.0, 1.0)):
            swing = math.sin(phase + i * math.pi + math.pi)
            shoulder = (cx + s * (body.shoulder_w - body.arm_w * 0.45), body.shoulder_y + body.arm_w * 0.45)
            upper_len = 0.18 * hp * (1 - 0.12 * abs(swing))
            fore_len = 0.16 * hp * (1 - 0.3 * max(0.0, swing))
            out = shot.arm_out + 0.04
            elbow = (shoulder[0] + s * upper_len * math.sin(out), shoulder[1] + upper_len * math.cos(out))
            wrist = (elbow[0] + s * fore_len * math.sin(out * 0.6), elbow[1] + fore_len * math.cos(out * 0.6))
            _draw_arm(d, ident, body, shoulder, elbow, wrist, 0)
        _draw_head(d, ident, body, view, 0.0)
        return

    # side views: the person walks towards ``facing`` (+1 image right, -1 image left)
    facing = 1.0 if view == "right" else -1.0
    lean = 0.012 * hp
    # seen from the side the camera sees the person's left (walking right) or right (walking left) side
    near_side = -1 if facing > 0 else 1
    leg_len = (body.ankle_y - body.hip_y) / 2
    arm_len = (0.18 * hp, 0.16 * hp)
    depth = body.hip_w * 0.68

    def leg(i: int, shade: int) -> None:
        theta = stride * math.sin(phase + i * math.pi)
        bend = 0.08 + 0.9 * max(0.0, -theta) + 0.25 * max(0.0, math.cos(phase + i * math.pi)) * stride
        hip = (cx, body.hip_y)
        knee = (hip[0] + facing * leg_len * math.sin(theta), hip[1] + leg_len * math.cos(theta))
        ankle = (knee[0] + facing * leg_len * math.sin(theta - bend), knee[1] + leg_len * math.cos(theta - bend))
        _draw_leg(d, ident, body, hip, knee, ankle, shade, facing)

    def arm(i: int, shade: int) -> None:
        alpha = -0.9 * stride * math.sin(phase + i * math.pi)
        shoulder = (cx + facing * lean, body.shoulder_y + 0.028 * hp)
        elbow = (shoulder[0] + facing * arm_len[0] * math.sin(alpha), shoulder[1] + arm_len[0] * math.cos(alpha))
        beta = alpha + 0.25 + 0.3 * max(0.0, alpha)
        wrist = (elbow[0] + facing * arm_len[1] * math.sin(beta), elbow[1] + arm_len[1] * math.cos(beta))
        _draw_arm(d, ident, body, shoulder, elbow, wrist, shade)

    arm(1, SHADE)
    leg(1, SHADE)
    bag_near = ident.bag_side == near_side
    if ident.carried == "bag" and not bag_near:
        bx = cx - facing * 0.01 * hp
        d.rectangle([bx - 0.04 * hp, body.hip_y - 0.08 * hp, bx + 0.03 * hp, body.hip_y + 0.01 * hp], fill=CARRIED | SHADE)
    if ident.carried == "backpack":
        bx0 = cx - facing * (depth + 0.005 * hp)
        bx1 = bx0 - facing * 0.07 * hp
        d.rounded_rectangle(
            [min(bx0, bx1) - 0.005 * hp, body.shoulder_y + 0.015 * hp, max(bx0, bx1) + 0.01 * hp, body.waist_y + 0.03 * hp],
            radius=0.02 * hp,
            fill=CARRIED,
        )
    if ident.lower.style == "skirt":
        y_sk = body.hip_y + 0.5 * (body.ankle_y - body.hip_y)
        leg(0, 0)
        d.polygon(
            [(cx - depth, body.waist_y), (cx + depth, body.waist_y), (cx + depth * 1.5, y_sk), (cx - depth * 1.5, y_sk)],
            fill=LOWER,
        )
    else:
        d.rectangle([cx - depth, body.waist_y, cx + depth, body.hip_y + 0.02 * hp], fill=LOWER)
        leg(0, 0)
    flare = 1.3 if ident.upper.style == "coat" else 1.0
    chest = body.shoulder_w * 0.62
    pts = [
        (cx - facing * chest * 0.85 + facing * lean, body.shoulder_y),
        (cx + facing * chest * 0.75 + facing * lean, body.shoulder_y),
        (cx + facing * chest * 0.8, body.shoulder_y + 0.08 * hp),
        (cx + facing * body.waist_w * 0.75, body.waist_y),
        (cx + facing * depth * flare, body.hem_y),
        (cx - facing * depth * flare, body.hem_y),
        (cx - facing * body.waist_w * 0.8, body.waist_y),
    ]
    d.polygon(pts, fill=UPPER)
    if ident.carried == "backpack":
        _limb(
            d,
            (cx + facing * (lean + 0.01 * hp), body.shoulder_y + 0.005 * hp),
            (cx - facing * depth * 0.4, body.waist_y - 0.03 * hp),
            0.016 * hp,
            0.016 * hp,
            STRAP,
        )
    if ident.carried == "bag" and bag_near:
        bx = cx - facing * 0.005 * hp
        _limb(d, (cx + facing * lean, body.shoulder_y), (bx, body.hip_y - 0.07 * hp), 0.013 * hp, 0.013 * hp, STRAP)
        d.rectangle([bx - 0.045 * hp, body.hip_y - 0.08 * hp, bx + 0.035 * hp, body.hip_y + 0.015 * hp], fill=CARRIED)
    arm(0, 0)
    _draw_head(d, ident, body, view, facing)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, period: float, phase: float, vertical: bool) -> np.ndarray:
    """Where a garment's pattern colour shows, in person coordinates ``u``, ``v`` (units: person height)."""
    if pattern == "stripes":
        if vertical:
            return _frac(u / period + phase) < 0.28
        return _frac(v / period + phase) < 0.5
    if pattern == "checks":
        return (_frac(v / period + phase) < 0.5) ^ (_frac(u / period + phase) < 0.5)
    if pattern == "dots":
        a = _frac(u / period + phase) - 0.5
        b = _frac(v / period + phase) - 0.5
        return a * a + b * b < 0.27**2
    return np.zeros(u.shape, dtype=bool)


def person_labels(identity: PersonIdentity, shot: Shot, size: tuple[int, int]) -> tuple[np.ndarray, float, float, float]:
    """The person's part-label map at ``size`` (height, width) and its placement (cx, top, height).

    Labels are the part constants of this module, ``| SHADE`` on the far side of the body.
    """
    h, w = size
    hp = shot.scale * h * (0.96 + 0.04 * identity.height)
    cx = w / 2 + shot.dx * w
    top = (h - hp) / 2 + shot.dy * h
    img = Image.new("L", (w, h), BACKGROUND)
    d = ImageDraw.Draw(img)
    body = _body(identity, cx, top, hp)
    _draw_person(d, identity, shot, body)
    lab = np.array(img, dtype=np.uint8)
    yy, xx = _grid(h, w)
    u = (xx - cx) / hp
    v = (yy - top) / hp
    if shot.view in ("left", "right"):
        u = u * 1.6  # patterns foreshortened on the body's side
    base = lab & 15
    for garment, part, pat_label, vertical in (
        (identity.upper, UPPER, UPPER_PATTERN, False),
        (identity.lower, LOWER, LOWER_PATTERN, True),
    ):
        if garment.pattern in ("stripes", "checks", "dots"):
            sel = base == part
            if sel.any():
                m = sel & _pattern_mask(garment.pattern, u, v, garment.pattern_period, garment.pattern_phase, vertical)
                lab[m] = pat_label | (lab[m] & SHADE)
    return lab, cx, top, hp


def _visible_lut(ident: PersonIdentity) -> np.ndarray:
    lut = np.zeros((_N_LABELS, 3), dtype=np.float32)
    lut[SKIN] = ident.skin
    lut[HAIR] = ident.hair_colour
    lut[UPPER] = ident.upper.colour
    lut[UPPER_PATTERN] = ident.upper.pattern_colour
    lut[INNER] = ident.upper.inner_colour
    lut[LOWER] = ident.lower.colour
    lut[LOWER_PATTERN] = ident.lower.pattern_colour
    lut[SHOES] = ident.shoes
    lut[CARRIED] = ident.carried_colour
    lut[STRAP] = np.asarray(ident.carried_colour) * 0.55
    lut[EYES] = (0.08, 0.06, 0.06)
    lut[SHADE:] = lut[:SHADE] * 0.7
    return lut


def _infrared_lut(ident: PersonIdentity, kind: str) -> np.ndarray:
    """Infrared intensity of each part label: the garments' far-infrared (``thermal``) or near-infrared
    (``nir``) value of their material; skin warm, hair cool, bags and shoes cold."""
    lut = np.zeros(_N_LABELS, dtype=np.float32)
    upper = ident.upper.thermal if kind == "thermal" else ident.upper.nir
    lower = ident.lower.thermal if kind == "thermal" else ident.lower.nir
    lut[SKIN] = ident.skin_thermal
    lut[HAIR] = ident.hair_thermal
    lut[UPPER] = upper
    lut[UPPER_PATTERN] = ident.upper.pattern_thermal if kind == "thermal" else ident.upper.pattern_nir
    lut[INNER] = ident.upper.inner_thermal
    lut[LOWER] = lower
    lut[LOWER_PATTERN] = ident.lower.pattern_thermal if kind == "thermal" else ident.lower.pattern_nir
    lut[SHOES] = ident.shoes_thermal
    lut[CARRIED] = ident.carried_thermal
    lut[STRAP] = ident.carried_thermal * 0.85
    lut[EYES] = ident.skin_thermal * 0.9
    if kind == "thermal":
        # far infrared: the clothed body glows above the scene; the material sets how much
        lut[1:SHADE] = 0.35 + 0.6 * lut[1:SHADE]
        lut[CARRIED] = 0.25 + 0.3 * ident.carried_thermal
        lut[STRAP] = lut[CARRIED]
    lut[SHADE:] = lut[:SHADE] * 0.93
    return lut


#: Visible textures of the materials: period (person heights) and strength.
_RIB_PERIOD, _TWILL_PERIOD, _QUILT_PERIOD, _FUZZ_PERIOD, _SHEEN_PERIOD = 0.08, 0.09, 0.11, 0.07, 0.12


def material_texture(texture: str, u: np.ndarray, v: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """A material's look in a colour image at person coordinates ``u`` (across, from the body's centre
    line) and ``v`` (down from the head), in person heights: ``(factor, highlight)``, the colour is
    multiplied by ``factor`` and ``highlight`` (white) is added. ``side`` (-1 or 1) places a sheen's
    highlight on the lit side. The texture does not depend on the colour.

    ``plain`` (cotton) flat; ``ribbed`` (knit) vertical ribs; ``twill`` (denim) diagonal lines;
    ``quilted`` (down) horizontal puffs with dark seams; ``sheen`` (leather) darker with a sharp
    specular band; ``glossy`` (nylon) a broad soft highlight and crinkles; ``fuzzy`` (wool) a fine
    mottled surface.
    """
    one = np.ones_like(u)
    zero = np.zeros_like(u)
    tau = 2 * np.pi
    if texture == "plain":
        return one, zero
    if texture == "ribbed":
        return 1.0 + 0.17 * np.sign(np.sin(tau * u / _RIB_PERIOD)), zero
    if texture == "twill":
        return 1.0 + 0.13 * np.sign(np.sin(tau * (u + 0.6 * v) / _TWILL_PERIOD)), zero
    if texture == "quilted":
        phase = (v / _QUILT_PERIOD) % 1.0
        return 0.62 + 0.5 * np.sin(np.pi * phase), zero
    if texture in ("sheen", "glossy"):
        # highlights repeat across the body so that every limb and the torso catch one
        offset = ((u - 0.02 * side) / _SHEEN_PERIOD) % 1.0 - 0.5
        if texture == "sheen":
            return 0.78 * one, 0.45 * np.exp(-((offset / 0.1) ** 2))
        return 1.0 + 0.08 * np.sin(tau * v / 0.05), 0.2 * np.exp(-((offset / 0.22) ** 2))
    if texture == "fuzzy":
        return 1.0 + 0.12 * np.sign(np.sin(tau * u / _FUZZ_PERIOD) * np.sin(tau * v / _FUZZ_PERIOD + 1.3 * u / _FUZZ_PERIOD)), zero
    raise ValueError(f"unknown material texture {texture!r}")


def _garment_pixels(lab: np.ndarray, garment_labels: tuple[int, int]) -> np.ndarray:
    base = lab & 15
    return (base == garment_labels[0]) | (base == garment_labels[1])


def _texture_maps(ident: PersonIdentity, lab: np.ndarray, cx: float, top: float, hp: float,
                  side: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel colour factor and highlight of the garments' materials (1 and 0 elsewhere)."""
    yy, xx = _grid(*lab.shape)
    u = (xx - cx) / hp
    v = (yy - top) / hp
    factor = np.ones(lab.shape, dtype=np.float32)
    highlight = np.zeros(lab.shape, dtype=np.float32)
    for garment, labels in ((ident.upper, (UPPER, UPPER_PATTERN)), (ident.lower, (LOWER, LOWER_PATTERN))):
        sel = _garment_pixels(lab, labels)
        if not sel.any():
            continue
        f, h = material_texture(MATERIALS[garment.material].texture, u[sel], v[sel], side)
        factor[sel] = f
        highlight[sel] = h
    return factor, highlight


def _seams(garment: Garment, lab: np.ndarray, labels: tuple[int, int], top: float, hp: float) -> np.ndarray:
    """Down jackets' stitched seams leak heat: slightly warmer lines in far infrared."""
    if MATERIALS[garment.material].texture != "quilted":
        return np.zeros(lab.shape, dtype=np.float32)
    yy, _ = _grid(*lab.shape)
    phase = ((yy - top) / hp / _QUILT_PERIOD) % 1.0
    return (_garment_pixels(lab, labels) & ((phase < 0.12) | (phase > 0.88))).astype(np.float32) * 0.05


def _downsample2(a: np.ndarray) -> np.ndarray:
    """Average of each 2 x 2 block (the anti-aliasing step of the 2x-supersampled drawing)."""
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) * np.float32(0.25)


def _crop(scene: np.ndarray, shot: Shot, h: int, w: int) -> np.ndarray:
    hs, ws = scene.shape[:2]
    y0 = int(round(shot.bg_y * (hs - h)))
    x0 = int(round(shot.bg_x * (ws - w)))
    return scene[y0 : y0 + h, x0 : x0 + w]


def _occlude(img: np.ndarray, shot: Shot, infrared: bool) -> None:
    if shot.occluder is None:
        return
    kind, pos, size, colour, ir = shot.occluder
    h, w = img.shape[:2]
    value = ir if infrared else np.asarray(colour, dtype=np.float32)
    if kind == "pole":
        pw = max(2, int(w * (0.08 + 0.1 * size)))
        x0 = int(pos * (w - pw))
        img[:, x0 : x0 + pw] = value
    elif kind == "barrier":
        y0 = int(h * (0.72 + 0.12 * pos))
        img[y0:, :] = value
        img[y0 : y0 + max(1, h // 40), :] *= 0.6
    else:  # another pedestrian passing close to the camera at one edge of the crop
        yy, xx = _grid(h, w)
        cx = -0.12 * w if pos < 0.5 else 1.12 * w
        rx, ry = w * (0.28 + 0.1 * size), h * 0.45
        m = ((xx - cx) / rx) ** 2 + ((yy - 0.55 * h) / ry) ** 2 < 1.0
        img[m] = value


def _motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    pad = [(0, 0), (length, length)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="edge")
    w = img.shape[1]
    lo = -(length // 2)
    return sum(p[:, length + k : length + k + w] for k in range(lo, lo + length)) / length


def render_shot(
    identity: PersonIdentity,
    camera: CameraSpec,
    shot: Shot,
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 64),
) -> Image.Image:
    """Draw ``identity`` in ``camera`` as ``shot`` describes; ``rng`` draws the sensor noise.

    Returns an RGB image of ``size`` (height, width); an infrared camera's image has three equal channels.
    """
    h, w = size
    if h < 16 or w < 8:
        raise ValueError(f"image size must be at least 16 x 8 (height x width), got {h} x {w}")
    lab, cx, top, hp = person_labels(identity, shot, (2 * h, 2 * w))
    alpha_hi = (lab != BACKGROUND).astype(np.float32)
    yy, xx = _grid(2 * h, 2 * w)
    u = (xx - cx) / (0.13 * hp)
    infrared = camera.modality == INFRARED
    rgb_scene, nir_scene, thermal_scene, _ = _scene(camera.scene, camera.scene_seed, h, w)
    if infrared:
        kind = camera.infrared
        values = _infrared_lut(identity, kind)[lab]
        if kind == "thermal":
            values = values + _seams(identity.upper, lab, (UPPER, UPPER_PATTERN), top, hp) + _seams(
                identity.lower, lab, (LOWER, LOWER_PATTERN), top, hp)
        shade = 1.0 - 0.1 * np.clip(u * u, 0.0, 1.0)
        person = _downsample2(values * shade * alpha_hi)
        alpha = _downsample2(alpha_hi)
        scene = _crop(nir_scene if kind == "nir" else thermal_scene, shot, h, w)
        img = scene * (1.0 - alpha) + person
        _occlude(img, shot, True)
        img = img * (camera.gain * shot.light) + (camera.contrast - 1.0) * (img - 0.4)
        im = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        radius = (0.45 if kind == "nir" else 1.0) + shot.defocus
        im = im.filter(ImageFilter.GaussianBlur(radius))
        img = np.asarray(im, dtype=np.float32) / 255.0
        if shot.motion_blur:
            img = _motion_blur(img, shot.motion_blur)
        img = img + rng.normal(0.0, camera.noise, size=img.shape).astype(np.float32)
        g = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), mode="RGB")

    colours = _visible_lut(identity)[lab]
    factor, highlight = _texture_maps(identity, lab, cx, top, hp, 1.0 if shot.shading >= 0 else -1.0)
    colours = colours * factor[..., None] + highlight[..., None]
    light = 1.0 - 0.28 * np.clip(u * u, 0.0, 1.0) + 0.12 * shot.shading * np.clip(u, -1.0, 1.0)
    person = _downsample2(colours * (light * alpha_hi)[..., None])
    alpha = _downsample2(alpha_hi)[..., None]
    img = _crop(rgb_scene, shot, h, w) * (1.0 - alpha) + person
    _occlude(img, shot, False)
    img = img * (camera.gain * shot.light) * np.asarray(camera.cast, dtype=np.float32)
    img = (img - 0.45) * camera.contrast + 0.45
    if shot.motion_blur:
        img = _motion_blur(img, shot.motion_blur)
    img = img + rng.normal(0.0, camera.noise, size=img.shape).astype(np.float32)
    im = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if shot.defocus:
        im = im.filter(ImageFilter.GaussianBlur(shot.defocus))
    return im


def render_person(
    identity: PersonIdentity,
    camera: CameraSpec,
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 64),
) -> Image.Image:
    """One image of ``identity`` seen by ``camera``: a random viewpoint, pose and placement from ``rng``."""
    shot = sample_shot(camera, rng)
    return render_shot(identity, camera, shot, rng, size)
