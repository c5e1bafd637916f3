"""The part-label map of a synthetic person: the body's geometry for a shot (viewpoint, walking phase,
build), drawn with PIL as labelled parts -- skin, hair, upper and lower garment with their patterns, inner
layer, shoes, carried object and strap, eyes -- with ``| SHADE`` on the parts on the far side of the body.
:mod:`vireid.data.synthetic.render` colours the map (visible colours or infrared intensities), textures
and shades it, and composites it over the scene.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vireid.data.synthetic.cameras import Shot
from vireid.data.synthetic.person import PersonIdentity

# Part labels of the person's label map; SHADE marks parts on the far side of the body.
BACKGROUND, SKIN, HAIR, UPPER, UPPER_PATTERN, INNER, LOWER, LOWER_PATTERN, SHOES, CARRIED, STRAP, EYES = range(12)


SHADE = 16


N_LABELS = 32


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
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
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
    yy, xx = grid(h, w)
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
