"""Identity attributes of a synthetic person, drawn from a seeded NumPy generator.

A :class:`PersonIdentity` fixes everything that stays the same across cameras and modalities: body
build, height, skin, hair, upper and lower garments (each with a colour, a pattern and a *thermal*
property drawn independently of the colour), shoes and a carried object. What changes from image to
image (viewpoint, pose, placement) is a :class:`~vireid.data.synthetic.render.Shot`.

Colours are linear RGB triples in [0, 1]; thermal and near-infrared values are infrared intensities in
[0, 1] (how bright the part looks to an infrared camera). They follow the physical causes a colour image
also shows, as in a real camera (docs/synthetic-data.md):

- **garment material** (:data:`MATERIALS`): cotton, knit, denim, leather, down, nylon and wool differ in
  thickness, insulation and emissivity, so each has its own far-infrared (``thermal``) intensity and
  scales its dye's near-infrared reflectance (``nir``); a colour image shows the material as a
  **texture** (ribs, twill, quilting, sheen, fuzz) drawn over whatever colour the garment has;
- **dye** (:data:`DYE_NIR`), in near infrared only: under a near-infrared camera's active light a
  fabric is as bright as its dye's near-infrared reflectance times its material's factor. Many textile
  dyes are nearly transparent there (reds, blues, purples look light), carbon and sulphur blacks absorb,
  indigo is in between: near infrared follows the visible luminance only in part. Every print, stripe
  and check shows wherever its two dyes differ in near infrared. Thermal cameras see emission, not
  dyes: the far-infrared values never depend on the colour;
- **layering**: a jacket or a coat insulates (cooler), a T-shirt is thin (warmer); an open jacket shows
  the warmer inner layer;
- **exposed skin** (short sleeves, shorts, skirts, faces, hands) is the warmest part; **hair** is cool;
  **bags and straps** block body heat; **shoes** are cold; body build and pose shape every image alike;
- a small per-identity variation on top (``THERMAL_SPREAD``).

Colours, patterns and materials are drawn from the visible stream; the thermal values are then a function
of the material and the style plus noise from an independent stream (a red and a blue shirt of the same
material are equally warm), and the near-infrared values a function of the dye and the material plus
noise from a third stream. Neither is the colour's luminance, so a grey or colour histogram cannot match
across modalities, while the dye's colour and the texture in the colour image predict the infrared look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Colour = tuple[float, float, float]

#: Garment colours (name, RGB, weight): dark and neutral colours dominate, as in street clothing.
GARMENT_COLOURS: tuple[tuple[str, Colour, float], ...] = (
    ("black", (0.07, 0.07, 0.08), 3.0),
    ("charcoal", (0.24, 0.24, 0.26), 2.0),
    ("grey", (0.52, 0.52, 0.54), 1.5),
    ("white", (0.92, 0.92, 0.90), 2.0),
    ("navy", (0.09, 0.12, 0.30), 2.0),
    ("blue", (0.14, 0.30, 0.68), 1.5),
    ("light blue", (0.52, 0.67, 0.88), 1.0),
    ("denim", (0.22, 0.31, 0.48), 1.5),
    ("red", (0.75, 0.10, 0.12), 1.0),
    ("maroon", (0.42, 0.07, 0.12), 0.8),
    ("pink", (0.93, 0.56, 0.67), 0.7),
    ("orange", (0.92, 0.46, 0.10), 0.5),
    ("yellow", (0.93, 0.82, 0.20), 0.6),
    ("green", (0.14, 0.46, 0.20), 0.8),
    ("olive", (0.40, 0.42, 0.20), 0.7),
    ("khaki", (0.72, 0.63, 0.42), 1.0),
    ("beige", (0.87, 0.80, 0.64), 0.8),
    ("brown", (0.40, 0.25, 0.14), 0.8),
    ("purple", (0.42, 0.20, 0.52), 0.5),
    ("teal", (0.09, 0.46, 0.46), 0.4),
)

HAIR_COLOURS: tuple[tuple[str, Colour, float], ...] = (
    ("black", (0.05, 0.045, 0.045), 5.0),
    ("dark brown", (0.18, 0.11, 0.07), 2.0),
    ("brown", (0.38, 0.24, 0.12), 1.0),
    ("blonde", (0.80, 0.66, 0.40), 0.5),
    ("grey", (0.62, 0.62, 0.62), 0.3),
    ("auburn", (0.45, 0.16, 0.09), 0.3),
)

SHOE_COLOURS: tuple[tuple[str, Colour, float], ...] = (
    ("black", (0.06, 0.06, 0.06), 3.0),
    ("white", (0.90, 0.90, 0.88), 2.0),
    ("brown", (0.35, 0.22, 0.12), 1.0),
    ("grey", (0.45, 0.45, 0.47), 1.0),
)

#: Each garment colour's palette RGB by name.
GARMENT_COLOUR_BY_NAME: dict[str, Colour] = {name: colour for name, colour, _ in GARMENT_COLOURS}

#: Near-infrared reflectance of each garment dye of :data:`GARMENT_COLOURS` under active near-infrared
#: light (850 nm), at full shade on a material of factor 1 (cotton). Textile dyes absorb in the visible
#: and most pass near infrared, so most colours are light there whatever their visible darkness (reds,
#: blues, purples); blacks and greys pass part of it; indigo (denim), the vat greens and teals and the
#: khaki, yellow, beige and brown blends absorb in part. Across the garments as worn (the palette weighted
#: by how often a colour is drawn) the reflectance correlates with the colours' luminance only in part:
#: r = 0.39 (tested between 0.3 and 0.7; 0.20 with every dye counted once). docs/synthetic-data.md.
DYE_NIR: dict[str, float] = {
    "black": 0.34,  # reactive and disperse blacks pass part of it; only carbon pigment absorbs fully
    "charcoal": 0.42,
    "grey": 0.50,
    "white": 0.76,  # optical whites reflect
    "navy": 0.62,  # reactive navies pass most near infrared
    "blue": 0.72,
    "light blue": 0.78,
    "denim": 0.36,  # indigo absorbs in part
    "red": 0.82,  # red dyes are near-infrared transparent
    "maroon": 0.66,
    "pink": 0.84,
    "orange": 0.80,
    "yellow": 0.46,
    "green": 0.34,  # vat greens absorb in part
    "olive": 0.44,
    "khaki": 0.40,
    "beige": 0.50,
    "brown": 0.46,
    "purple": 0.68,
    "teal": 0.30,
}
#: Rec. 709 luminance weights of a linear RGB colour.
LUMINANCE = (0.2126, 0.7152, 0.0722)


def weighted_correlation(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` with each pair counted ``weights`` times (how often a dye
    is worn)."""
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - w @ x, y - w @ y
    return float((w @ (dx * dy)) / np.sqrt((w @ dx**2) * (w @ dy**2)))


#: Per-garment variation of a near-infrared intensity around its dye-and-material value (standard deviation).
NIR_SPREAD = 0.03

#: Skin tones at the two ends of the range; a tone is a blend of the two.
SKIN_LIGHT: Colour = (0.96, 0.80, 0.68)
SKIN_DARK: Colour = (0.34, 0.21, 0.14)

@dataclass(frozen=True)
class Material:
    """A garment material: the texture it shows in a colour image and its infrared intensities.

    ``thermal``: far-infrared brightness (emissivity times how much body heat reaches the surface: thin
    and high-emissivity fabrics are bright, insulating or low-emissivity ones dark); ``nir``: the factor
    the material puts on its dye's near-infrared reflectance (:data:`DYE_NIR`; tanned leather and
    coated nylon absorb, open knits and fills shadow a little). ``texture`` names the visible texture
    (:func:`vireid.data.synthetic.render.material_texture`).
    """

    name: str
    texture: str
    thermal: float
    nir: float


#: Materials, with their textures and intensities (see docs/synthetic-data.md for the reasoning).
MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material("cotton", "plain", thermal=0.74, nir=1.0),  # thin, high emissivity
        Material("knit", "ribbed", thermal=0.52, nir=0.9),  # thick loops trap air
        Material("denim", "twill", thermal=0.62, nir=1.0),  # dense weave
        Material("leather", "sheen", thermal=0.24, nir=0.5),  # low emissivity; tanning agents absorb NIR
        Material("down", "quilted", thermal=0.32, nir=0.92),  # insulating fill
        Material("nylon", "glossy", thermal=0.58, nir=0.75),  # thin synthetic shell, coated
        Material("wool", "fuzzy", thermal=0.42, nir=0.95),  # thick, insulating
    )
}
#: Materials each garment style is made of (with weights).
STYLE_MATERIALS: dict[str, tuple[tuple[str, float], ...]] = {
    "tshirt": (("cotton", 3.0), ("knit", 1.0), ("nylon", 1.0)),
    "longsleeve": (("cotton", 2.0), ("knit", 1.5), ("wool", 1.0)),
    "jacket": (("denim", 1.0), ("leather", 1.0), ("nylon", 1.2), ("down", 1.0)),
    "coat": (("wool", 1.5), ("down", 1.2), ("leather", 0.8)),
    "trousers": (("cotton", 2.0), ("wool", 1.0), ("nylon", 1.0), ("leather", 0.3)),
    "jeans": (("denim", 1.0),),
    "shorts": (("cotton", 2.0), ("denim", 1.0), ("nylon", 1.0)),
    "skirt": (("cotton", 1.5), ("wool", 1.0), ("knit", 1.0), ("leather", 0.6)),
}
#: Layering: how a style changes the garment's far-infrared intensity (insulating outer layers are cooler).
STYLE_LAYER_THERMAL = {"tshirt": 0.05, "longsleeve": 0.0, "jacket": -0.05, "coat": -0.09,
                       "trousers": 0.0, "jeans": 0.0, "shorts": 0.03, "skirt": 0.02}
#: Per-identity variation of a garment's far-infrared intensity around its material's value (standard deviation).
THERMAL_SPREAD = 0.03

UPPER_STYLES = ("tshirt", "longsleeve", "jacket", "coat")
LOWER_STYLES = ("trousers", "jeans", "shorts", "skirt")
#: A pattern's spatial period, in person heights (dots: their spacing): bold stripes, checks and dots whose
#: bands are 3-6 pixels wide at the tiny configs' 64-pixel height, so the pattern survives the resize in both
#: modalities (at 0.035-0.07 they were 1-2 pixels and averaged away: tiny DAM Rank-1 17.3, now 23.2, means of three seeds;
#: docs/paper-notes.md, "Learning on synthetic data, third round").
PATTERN_PERIOD = (0.10, 0.20)
DOT_PERIOD = (0.12, 0.20)
UPPER_PATTERNS = ("solid", "stripes", "checks", "dots", "print")
LOWER_PATTERNS = ("solid", "stripes", "checks", "dots")
PRINT_SHAPES = ("disc", "square", "band", "triangle")
HAIR_LENGTHS = ("short", "medium", "long")
CARRIED = ("none", "backpack", "bag")


@dataclass(frozen=True)
class Garment:
    """An upper or lower garment.

    ``pattern`` is ``solid``, ``stripes``, ``checks``, ``dots`` or ``print`` (a graphic on the chest,
    seen only from the front). ``pattern_period`` is the pattern's spatial period as a fraction of the
    person's height. ``thermal`` and ``pattern_thermal`` are far-infrared intensities (the pattern
    differs from the base by a few percent only: faint in thermal); ``nir`` and ``pattern_nir`` are the
    near-infrared intensities of the two dyes on the material (:func:`dye_nir`). A jacket shows an inner
    layer (``inner_colour``, ``inner_thermal``, ``inner_nir``) through its open front.
    """

    style: str
    colour: Colour
    colour_name: str
    thermal: float
    pattern: str = "solid"
    pattern_colour: Colour = (0.0, 0.0, 0.0)
    pattern_colour_name: str = "black"
    pattern_thermal: float = 0.0
    pattern_period: float = sum(PATTERN_PERIOD) / 2
    pattern_phase: float = 0.0
    print_shape: str = "disc"
    inner_colour: Colour = (0.0, 0.0, 0.0)
    inner_colour_name: str = "white"
    inner_thermal: float = 0.0
    inner_nir: float = 0.5
    material: str = "cotton"
    nir: float = 0.5
    pattern_nir: float = 0.5


@dataclass(frozen=True)
class PersonIdentity:
    """Everything about a synthetic person that does not change between images.

    ``height`` and ``build`` are relative (1.0 average); ``build`` scales body width. ``bag_side`` is
    the side of the body (+1 the person's right, -1 the left) a shoulder bag hangs on. ``stride`` is the
    walking stride amplitude in radians.
    """

    pid: int
    sex: str
    height: float
    build: float
    leg_ratio: float
    head_scale: float
    skin: Colour
    skin_thermal: float
    hair_colour: Colour
    hair_length: str
    hair_thermal: float
    upper: Garment
    lower: Garment
    shoes: Colour
    shoes_thermal: float
    carried: str
    carried_colour: Colour
    carried_thermal: float
    carried_nir: float
    bag_side: int
    stride: float


def _choice_weighted(rng: np.random.Generator, table: tuple[tuple[str, Colour, float], ...]) -> tuple[str, Colour]:
    weights = np.array([w for _, _, w in table], dtype=np.float64)
    i = int(rng.choice(len(table), p=weights / weights.sum()))
    return table[i][0], table[i][1]


def dye_nir(name: str, colour: Colour, material: str = "cotton") -> float:
    """Near-infrared reflectance of a garment dyed ``name`` (a :data:`GARMENT_COLOURS` name) whose
    shade came out as ``colour``, on ``material``: the dye's reflectance (:data:`DYE_NIR`), scaled by
    how much darker or lighter this shade is than the palette's (more dye absorbs more in both bands)
    and by the material's factor; no noise."""
    if name not in DYE_NIR:
        raise ValueError(f"dye {name!r} has no near-infrared reflectance; known: {', '.join(DYE_NIR)}")
    palette = GARMENT_COLOUR_BY_NAME[name]
    shade = float(np.mean(colour)) / max(float(np.mean(palette)), 1e-6)
    return DYE_NIR[name] * shade * MATERIALS[material].nir


def _nir(rng: np.random.Generator, name: str, colour: Colour, material: str) -> float:
    """:func:`dye_nir` plus the per-garment spread, kept inside the camera's range."""
    return float(np.clip(dye_nir(name, colour, material) + rng.normal(0.0, NIR_SPREAD), 0.04, 0.95))


def _jitter(rng: np.random.Generator, colour: Colour, amount: float = 0.08) -> Colour:
    """The colour with a small per-identity change of shade and hue (stays in [0, 1])."""
    shade = rng.uniform(1.0 - amount, 1.0 + amount)
    hue = rng.uniform(1.0 - amount / 2, 1.0 + amount / 2, size=3)
    c = np.clip(np.asarray(colour) * shade * hue, 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


def _contrasting(rng: np.random.Generator, base: Colour) -> tuple[str, Colour]:
    """A pattern colour that differs clearly from ``base`` (by luminance or hue)."""
    for _ in range(20):
        name, colour = _choice_weighted(rng, GARMENT_COLOURS)
        if float(np.abs(np.subtract(colour, base)).sum()) > 0.6:
            return name, colour
    lum = float(np.mean(base))
    return ("white", GARMENT_COLOURS[3][1]) if lum < 0.5 else ("black", GARMENT_COLOURS[0][1])


def _pattern_thermal(rng: np.random.Generator, thermal: float) -> float:
    """Infrared intensity of a pattern: the base's, a few percent brighter or darker (faint in infrared)."""
    delta = rng.uniform(0.025, 0.06) * (1 if rng.random() < 0.5 else -1)
    if not 0.05 <= thermal + delta <= 0.95:
        delta = -delta
    return float(thermal + delta)


def _garment(
    rng: np.random.Generator,
    thermal_rng: np.random.Generator,
    nir_rng: np.random.Generator,
    *,
    style: str,
    patterns: tuple[str, ...],
    pattern_weights: tuple[float, ...],
    colour: tuple[str, Colour] | None = None,
) -> Garment:
    name, base = colour if colour is not None else _choice_weighted(rng, GARMENT_COLOURS)
    base = _jitter(rng, base)
    w = np.asarray(pattern_weights, dtype=np.float64)
    pattern = patterns[int(rng.choice(len(patterns), p=w / w.sum()))]
    pname, pcol = _contrasting(rng, base)
    pcol = _jitter(rng, pcol)
    period = float(rng.uniform(*PATTERN_PERIOD)) if pattern != "dots" else float(rng.uniform(*DOT_PERIOD))
    options = STYLE_MATERIALS[style]
    mw = np.array([wt for _, wt in options], dtype=np.float64)
    material = MATERIALS[options[int(rng.choice(len(options), p=mw / mw.sum()))][0]]
    # Far infrared: the material and the layering, plus noise from the thermal stream; the colours drawn
    # above never enter.
    thermal = float(np.clip(material.thermal + STYLE_LAYER_THERMAL[style] + thermal_rng.normal(0.0, THERMAL_SPREAD),
                            0.08, 0.92))
    pattern_thermal = _pattern_thermal(thermal_rng, thermal)
    inner_name, inner = _choice_weighted(rng, GARMENT_COLOURS)
    inner = _jitter(rng, inner)
    inner_thermal = float(np.clip(max(thermal, 0.6) + thermal_rng.uniform(0.1, 0.2), 0.0, 0.95))
    return Garment(
        style=style,
        colour=base,
        colour_name=name,
        thermal=thermal,
        pattern=pattern,
        pattern_colour=pcol,
        pattern_colour_name=pname,
        pattern_thermal=pattern_thermal,
        pattern_period=period,
        pattern_phase=float(rng.uniform(0.0, 1.0)),
        print_shape=PRINT_SHAPES[int(rng.integers(len(PRINT_SHAPES)))],
        inner_colour=inner,
        inner_colour_name=inner_name,
        inner_thermal=inner_thermal,
        # near infrared: each dye on the material (the inner layer is a cotton top)
        inner_nir=_nir(nir_rng, inner_name, inner, "cotton"),
        material=material.name,
        nir=_nir(nir_rng, name, base, material.name),
        pattern_nir=_nir(nir_rng, pname, pcol, material.name),
    )


def sample_identity(rng: np.random.Generator, pid: int = 0) -> PersonIdentity:
    """Draw a person's attributes from ``rng`` (the same generator state gives the same person).

    Visible attributes (colours, patterns, shapes), the far-infrared noise and the near-infrared noise
    are drawn from three independent child streams of ``rng``.
    """
    vis_rng, thermal_rng, nir_rng = rng.spawn(3)
    r = vis_rng
    sex = "female" if r.random() < 0.45 else "male"
    female = sex == "female"
    height = float(r.uniform(0.93, 1.06) if not female else r.uniform(0.90, 1.02))
    build = float(np.clip(r.normal(0.95 if female else 1.05, 0.1), 0.78, 1.35))
    leg_ratio = float(r.uniform(0.95, 1.05))
    head_scale = float(r.uniform(0.92, 1.08))
    t = float(r.beta(1.6, 3.2))
    skin = tuple(float(a + (b - a) * t) for a, b in zip(SKIN_LIGHT, SKIN_DARK))
    hair_name, hair_colour = _choice_weighted(r, HAIR_COLOURS)
    if female:
        hair_length = HAIR_LENGTHS[int(r.choice(3, p=[0.12, 0.23, 0.65]))]
    else:
        hair_length = HAIR_LENGTHS[int(r.choice(3, p=[0.78, 0.18, 0.04]))]

    upper_style = UPPER_STYLES[int(r.choice(4, p=[0.38, 0.27, 0.23, 0.12]))]
    upper = _garment(
        r,
        thermal_rng,
        nir_rng,
        style=upper_style,
        patterns=UPPER_PATTERNS,
        pattern_weights=(0.26, 0.24, 0.16, 0.14, 0.2),
    )
    lower_p = [0.5, 0.25, 0.12, 0.13] if female else [0.52, 0.34, 0.14, 0.0]
    lower_style = LOWER_STYLES[int(r.choice(4, p=lower_p))]
    denim = next(c for c in GARMENT_COLOURS if c[0] == "denim")
    lower = _garment(
        r,
        thermal_rng,
        nir_rng,
        style=lower_style,
        patterns=LOWER_PATTERNS,
        pattern_weights=(0.55, 0.17, 0.16, 0.12) if lower_style != "jeans" else (1.0, 0.0, 0.0, 0.0),
        colour=(denim[0], denim[1]) if lower_style == "jeans" else None,
    )
    _, shoes = _choice_weighted(r, SHOE_COLOURS)
    carried = CARRIED[int(r.choice(3, p=[0.45, 0.33, 0.22]))]
    carried_name, carried_colour = _choice_weighted(r, GARMENT_COLOURS)
    carried_colour = _jitter(r, carried_colour)
    return PersonIdentity(
        pid=int(pid),
        sex=sex,
        height=height,
        build=build,
        leg_ratio=leg_ratio,
        head_scale=head_scale,
        skin=(skin[0], skin[1], skin[2]),
        skin_thermal=float(thermal_rng.uniform(0.82, 0.96)),
        hair_colour=_jitter(r, hair_colour, 0.05),
        hair_length=hair_length,
        hair_thermal=float(thermal_rng.uniform(0.3, 0.5)),
        upper=upper,
        lower=lower,
        shoes=_jitter(r, shoes, 0.05),
        shoes_thermal=float(thermal_rng.uniform(0.12, 0.35)),
        carried=carried,
        carried_colour=carried_colour,
        carried_thermal=float(thermal_rng.uniform(0.1, 0.4)),
        carried_nir=_nir(nir_rng, carried_name, carried_colour, "nylon"),  # bags: a coated synthetic
        bag_side=1 if r.random() < 0.5 else -1,
        stride=float(r.uniform(0.22, 0.42)),
    )
