"""The synthetic generator's model of infrared appearance, as a picture: one row per garment material,
the same person in a colour camera, a near-infrared camera and a thermal camera (docs/synthetic-data.md).

    python -m vireid.visualization.materials docs/img/synthetic_materials.png
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vireid.data.synthetic.cameras import CameraSpec, sample_shot
from vireid.data.synthetic.person import MATERIALS, STYLE_LAYER_THERMAL, sample_identity
from vireid.data.synthetic.render import render_shot
from vireid.io import atomic_path
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
        return dataclasses.replace(garment, style=style, material=name, thermal=thermal, nir=m.nir,
                                   pattern="solid", pattern_thermal=thermal)

    return dataclasses.replace(ident, upper=wear(ident.upper, upper_style, material),
                               lower=wear(ident.lower, lower_style, lower_material), carried="none")


def material_sheet(path: str | Path, *, colours: int = 2) -> Path:
    """Write the sheet: for each material, ``colours`` differently coloured persons in the colour camera,
    then the first one in a near-infrared and in a thermal camera (the colours never change those)."""
    cams = [CameraSpec(number=1, modality="visible", views=(1.0, 0.0, 0.0, 0.0), scale=(0.9, 0.9), noise=0.0)] * colours
    cams += [CameraSpec(number=3, modality="infrared", infrared="nir", views=(1.0, 0.0, 0.0, 0.0), scale=(0.9, 0.9),
                        noise=0.0),
             CameraSpec(number=6, modality="infrared", infrared="thermal", views=(1.0, 0.0, 0.0, 0.0),
                        scale=(0.9, 0.9), noise=0.0)]
    titles = [f"colour {i + 1}" for i in range(colours)] + ["near infrared", "thermal"]
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
                  f"NIR {m.nir:.2f}", fill="black", font=text)
        for j, cam in enumerate(cams):
            ident = _dressed(row, j if j < colours else 0)
            shot = dataclasses.replace(sample_shot(cam, np.random.default_rng(0)), dx=0.0, dy=0.0, shading=0.4,
                                       occluder=None, motion_blur=0, defocus=0.0, light=1.0)
            img = render_shot(ident, cam, shot, np.random.default_rng(1), size=CELL)
            sheet.paste(img, (label_w + j * w, head + i * h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


if __name__ == "__main__":
    print(material_sheet(sys.argv[1] if len(sys.argv) > 1 else "synthetic_materials.png"))
