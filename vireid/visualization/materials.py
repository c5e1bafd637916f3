"""The synthetic generator's model of infrared appearance, as pictures (docs/synthetic-data.md).

- :func:`material_sheet`: one row per garment material, two colourings of the same person in a colour
  camera, each in a near-infrared camera (the dye shows), then in a thermal camera (the same for both);
- :func:`dye_chart`: each garment dye's near-infrared reflectance against its colour's luminance;
- :func:`pattern_sheet`: stripes, checks and dots at the generator's size and at the tiny configs' input, with
  the pattern periods of the first generator and of today's.

    python -m vireid.visualization.materials docs/img/synthetic_materials.png docs/img/synthetic_dyes.png \
        docs/img/synthetic_patterns.png
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vireid.data.synthetic.cameras import CameraSpec, sample_shot
from vireid.data.synthetic.person import (
    DYE_NIR,
    GARMENT_COLOURS,
    LUMINANCE,
    MATERIALS,
    PATTERN_PERIOD,
    STYLE_LAYER_THERMAL,
    dye_nir,
    sample_identity,
    weighted_correlation,
)
from vireid.data.synthetic.render import render_shot
from vireid.io import atomic_path
from vireid.visualization.figures import save_png
from vireid.visualization.fonts import slide_font

#: (material, upper style, lower style, lower material) of each row.
ROWS = (
    ("cotton", "tshirt", "shorts", "cotton"),
    ("knit", "longsleeve", "trousers", "wool"),
    ("denim", "jacket", "jeans", "denim"),
    ("leather", "jacket", "trousers", "leather"),
    ("down", "coat", "trousers", "nylon"),
    ("nylon", "jacket", "shorts", "nylon"),
    ("wool", "coat", "skirt", "wool"),
)
CELL = (256, 128)  # height, width of each rendered image


def _dressed(row: tuple[str, str, str, str], colour_seed: int):
    material, upper_style, lower_style, lower_material = row
    ident = sample_identity(np.random.default_rng([2024, colour_seed]), colour_seed)

    def wear(garment, style, name):
        m = MATERIALS[name]
        thermal = float(np.clip(m.thermal + STYLE_LAYER_THERMAL[style], 0.08, 0.92))
        return dataclasses.replace(garment, style=style, material=name, thermal=thermal,
                                   nir=dye_nir(garment.colour_name, garment.colour, name), pattern="solid",
                                   pattern_thermal=thermal)

    return dataclasses.replace(ident, upper=wear(ident.upper, upper_style, material),
                               lower=wear(ident.lower, lower_style, lower_material), carried="none")


def material_sheet(path: str | Path, *, colours: int = 2) -> Path:
    """Write the sheet: for each material, ``colours`` differently coloured persons in the colour camera,
    each of them in a near-infrared camera (where their dyes differ, so do the images), then the first
    one in a thermal camera (the colours never change that one)."""
    nir = CameraSpec(number=3, modality="infrared", infrared="nir", views=(1.0, 0.0, 0.0, 0.0), scale=(0.9, 0.9),
                     noise=0.0)
    cams = [CameraSpec(number=1, modality="visible", views=(1.0, 0.0, 0.0, 0.0), scale=(0.9, 0.9), noise=0.0)] * colours
    cams += [nir] * colours
    cams += [CameraSpec(number=6, modality="infrared", infrared="thermal", views=(1.0, 0.0, 0.0, 0.0),
                        scale=(0.9, 0.9), noise=0.0)]
    titles = ([f"colour {i + 1}" for i in range(colours)] + [f"NIR of {i + 1}" for i in range(colours)]
              + ["thermal (any)"])
    h, w = CELL
    label_w, head = 150, 30
    text = slide_font(15)
    sheet = Image.new("RGB", (label_w + w * len(cams), head + h * len(ROWS)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(titles):
        draw.text((label_w + j * w + 8, 6), title, fill="black", font=text)
    for i, row in enumerate(ROWS):
        m = MATERIALS[row[0]]
        draw.text((8, head + i * h + h // 2 - 30), f"{row[0]} {row[1]}\n({m.texture})\nthermal {m.thermal:.2f}\n"
                  f"NIR x{m.nir:.2f} of dye", fill="black", font=text)
        for j, cam in enumerate(cams):
            ident = _dressed(row, j % colours if j < 2 * colours else 0)
            sheet.paste(_front_view(ident, cam), (label_w + j * w, head + i * h))
    return _save_sheet(sheet, path)


def _front_view(ident, cam: CameraSpec) -> Image.Image:
    """``ident`` seen from the front by ``cam``, centred and steady (no occluder, blur or exposure change),
    at the sheets' cell size."""
    shot = dataclasses.replace(sample_shot(cam, np.random.default_rng(0)), dx=0.0, dy=0.0, shading=0.4,
                               occluder=None, motion_blur=0, defocus=0.0, light=1.0)
    return render_shot(ident, cam, shot, np.random.default_rng(1), size=CELL)


def _save_sheet(sheet: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:  # makes the folder too
        sheet.save(tmp, format="PNG")
    return path


def dye_chart(path: str | Path) -> Path:
    """Write the chart: each dye of :data:`~vireid.data.synthetic.person.GARMENT_COLOURS` as a disc of its
    colour (area by how often it is worn) at its luminance (x) and near-infrared reflectance (y), with the
    correlation across the garments as worn in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lum = np.array([float(np.dot(c, LUMINANCE)) for _, c, _ in GARMENT_COLOURS])
    nir = np.array([DYE_NIR[name] for name, _, _ in GARMENT_COLOURS])
    worn = np.array([w for _, _, w in GARMENT_COLOURS])
    r = weighted_correlation(lum, nir, worn)
    fig, ax = plt.subplots(figsize=(8, 5.6), dpi=150)
    ax.plot([0, 1], [0, 1], color="0.8", lw=1, ls="--", zorder=0, label="near infrared = luminance")
    for (name, colour, w), x, y in zip(GARMENT_COLOURS, lum, nir):
        ax.scatter([x], [y], s=90 * w, color=np.clip(np.asarray(colour) ** (1 / 2.2), 0, 1), edgecolors="black",
                   linewidths=0.8, zorder=2)
        ax.annotate(name, (x, y), xytext=(7, 4), textcoords="offset points", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("luminance of the dye's colour (linear RGB, Rec. 709)")
    ax.set_ylabel("near-infrared reflectance of the dye (on cotton)")
    ax.set_title(f"Synthetic dyes: near infrared follows luminance only in part (r = {r:.2f}, as worn)")
    ax.legend(loc="lower right", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)


#: The first generator's pattern periods (person heights), drawn beside today's (:data:`PATTERN_PERIOD`).
FIRST_PATTERN_PERIOD = (0.035, 0.07)


def pattern_sheet(path: str | Path, *, input_size: tuple[int, int] = (64, 32)) -> Path:
    """Write the sheet: one row per pattern (white stripes, checks and dots on a navy shirt, whose dyes differ
    in near infrared too), each in the colour and near-infrared cameras at the generator's size and resized to
    ``input_size`` (the tiny configs' input, drawn with square pixels), for the finest period the first generator
    drew and the finest it draws today."""
    cam = {m: CameraSpec(number=1 if m == "visible" else 3, modality=m, infrared="nir", views=(1.0, 0.0, 0.0, 0.0),
                         scale=(0.9, 0.9), noise=0.0) for m in ("visible", "infrared")}
    periods = {"first generator, finest": FIRST_PATTERN_PERIOD[0], "today, finest": PATTERN_PERIOD[0]}
    base = sample_identity(np.random.default_rng([2024, 7]), 7)
    navy, white = (dict((n, c) for n, c, _ in GARMENT_COLOURS)[k] for k in ("navy", "white"))
    h, w = CELL
    label_w, head = 110, 52
    text = slide_font(15)
    columns = [(name, period, m, small) for name, period in periods.items() for small in (False, True)
               for m in ("visible", "infrared")]
    sheet = Image.new("RGB", (label_w + w * len(columns), head + h * 3), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (name, period, m, small) in enumerate(columns):
        if j % 4 == 0:
            draw.text((label_w + j * w + 8, 4), f"{name}: period {period:.3f} of the height", fill="black", font=text)
        size = f"{input_size[0]}x{input_size[1]}" if small else f"{h}x{w}"
        draw.text((label_w + j * w + 8, 26), f"{'colour' if m == 'visible' else 'NIR'}, {size}", fill="black",
                  font=text)
    for i, pattern in enumerate(("stripes", "checks", "dots")):
        draw.text((8, head + i * h + h // 2 - 10), pattern, fill="black", font=text)
        for j, (_, period, m, small) in enumerate(columns):
            upper = dataclasses.replace(base.upper, style="longsleeve", material="cotton", colour=navy,
                                        colour_name="navy", nir=dye_nir("navy", navy), pattern=pattern,
                                        pattern_colour=white, pattern_colour_name="white",
                                        pattern_nir=dye_nir("white", white), pattern_period=period, pattern_phase=0.0)
            ident = dataclasses.replace(base, upper=upper, carried="none")
            img = _front_view(ident, cam[m])
            if small:  # the model's view: the resize of the tiny configs, then square pixels to the cell size
                img = img.resize(input_size[::-1], Image.LANCZOS).resize((w, h), Image.NEAREST)
            sheet.paste(img, (label_w + j * w, head + i * h))
    return _save_sheet(sheet, path)


if __name__ == "__main__":
    print(material_sheet(sys.argv[1] if len(sys.argv) > 1 else "synthetic_materials.png"))
    print(dye_chart(sys.argv[2] if len(sys.argv) > 2 else "synthetic_dyes.png"))
    print(pattern_sheet(sys.argv[3] if len(sys.argv) > 3 else "synthetic_patterns.png"))
