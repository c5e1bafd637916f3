"""Scenes behind a synthetic person: indoor walls and floors, outdoor ground, value noise for texture,
each with its colour and its near-infrared and thermal intensity (grass is bright in near infrared, cold
ground dark in thermal). :func:`draw_scene` draws one, seeded, in both looks at once."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vireid.data.synthetic.person import Colour


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
def draw_scene(kind: str, seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
