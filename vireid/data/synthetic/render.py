"""Drawing a synthetic person into a camera's view, in visible light or in infrared.

The renderer draws a part-label map of the person (:mod:`vireid.data.synthetic.figure`: skin, hair, upper
and lower garment, their patterns, shoes, carried object) with PIL at twice the output size, colours it with the identity's
visible colours or infrared intensities, shades it, and composites it (anti-aliased by the 2x
downsampling) over the camera's scene. The camera then applies its own lighting, colour cast, blur,
sensor noise and occasional occluders.

Cameras and their shots are :mod:`vireid.data.synthetic.cameras`; scenes :mod:`vireid.data.synthetic.scenes`.

Infrared images carry no colour: one intensity channel (stored as three equal channels, as
SYSU-MM01's), computed from each part's near- or far-infrared intensity: in thermal the part's material
and layering, never its colour; in near infrared its dye's reflectance on its material, which follows
the colour's luminance only in part (see :mod:`vireid.data.synthetic.person`). The colour
image shows each garment's material as a texture over its colour (:func:`material_texture`), which
is how a network can learn to predict the infrared look from the colour look.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from vireid.data.records import INFRARED
from vireid.data.synthetic.cameras import CameraSpec, Shot, sample_shot
from vireid.data.synthetic.figure import (
    BACKGROUND,
    CARRIED,
    EYES,
    HAIR,
    INNER,
    LOWER,
    LOWER_PATTERN,
    N_LABELS,
    SHADE,
    SHOES,
    SKIN,
    STRAP,
    UPPER,
    UPPER_PATTERN,
    grid,
    person_labels,
)
from vireid.data.synthetic.person import MATERIALS, Garment, PersonIdentity
from vireid.data.synthetic.scenes import draw_scene

# ----------------------------------------------------------------------------------------------
# Sampling tracks and shots
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Scenes (backgrounds)
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# The person
# ----------------------------------------------------------------------------------------------


def _visible_lut(ident: PersonIdentity) -> np.ndarray:
    lut = np.zeros((N_LABELS, 3), dtype=np.float32)
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
    """Infrared intensity of each part label. Thermal: the garments' far-infrared value of their material
    and layering; skin warm, hair cool, bags and shoes cold. Near infrared: each garment, pattern, inner
    layer and bag as bright as its dye on its material (:func:`~vireid.data.synthetic.person.dye_nir`);
    skin bright, hair and shoes dim."""
    thermal = kind == "thermal"
    lut = np.zeros(N_LABELS, dtype=np.float32)
    lut[SKIN] = ident.skin_thermal
    lut[HAIR] = ident.hair_thermal
    lut[UPPER] = ident.upper.thermal if thermal else ident.upper.nir
    lut[UPPER_PATTERN] = ident.upper.pattern_thermal if thermal else ident.upper.pattern_nir
    lut[INNER] = ident.upper.inner_thermal if thermal else ident.upper.inner_nir
    lut[LOWER] = ident.lower.thermal if thermal else ident.lower.nir
    lut[LOWER_PATTERN] = ident.lower.pattern_thermal if thermal else ident.lower.pattern_nir
    lut[SHOES] = ident.shoes_thermal
    lut[CARRIED] = ident.carried_thermal if thermal else ident.carried_nir
    lut[STRAP] = lut[CARRIED] * 0.85
    lut[EYES] = ident.skin_thermal * 0.9
    if thermal:
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
    yy, xx = grid(*lab.shape)
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
    yy, _ = grid(*lab.shape)
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
        yy, xx = grid(h, w)
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
    yy, xx = grid(2 * h, 2 * w)
    u = (xx - cx) / (0.13 * hp)
    infrared = camera.modality == INFRARED
    rgb_scene, nir_scene, thermal_scene, _ = draw_scene(camera.scene, camera.scene_seed, h, w)
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
