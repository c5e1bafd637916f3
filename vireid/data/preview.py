"""Contact sheet of a dataset: a few identities as rows, their cameras and modalities as columns.

``contact_sheet(dataset, "sheet.png")`` works on any :class:`~vireid.data.base.VIReIDDataset` through
``all_records()``: a header row names each column ("cam1" over "visible"), the left column names each
row's person id, and each cell shows one image of that person in that camera and modality (a blank
cell where the person has none). Looking at one is the quickest check that a dataset was read with the
right ids, cameras and modalities.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from vireid.data.base import VIReIDDataset
from vireid.data.records import MODALITIES, ImageRecord
from vireid.errors import DatasetError
from vireid.io import atomic_path

#: Size (height, width) each image is fitted into, keeping its aspect ratio.
THUMB_SIZE = (128, 64)
PAD = 4
BACKGROUND = (255, 255, 255)
BLANK = (225, 225, 225)
TEXT = (20, 20, 20)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> tuple[int, int]:
    box = draw.multiline_textbbox((0, 0), text, font=font, spacing=2)
    return int(box[2] - box[0]), int(box[3] - box[1])


def _load_thumb(record: ImageRecord) -> Image.Image:
    try:
        with Image.open(record.path) as im:
            im = im.convert("RGB")
            return ImageOps.contain(im, (THUMB_SIZE[1], THUMB_SIZE[0]), Image.BILINEAR)
    except FileNotFoundError as exc:
        raise DatasetError("image file is missing", path=record.path) from exc
    except Exception as exc:  # PIL raises many types for corrupt files
        raise DatasetError(f"image cannot be read ({type(exc).__name__}: {exc})", path=record.path) from exc


def contact_sheet(dataset: VIReIDDataset, out: str | Path, *, identities: int = 6, seed: int = 0) -> Path:
    """Draw a PNG contact sheet of ``dataset`` to ``out`` (written atomically); returns its path.

    ``identities`` persons are picked with ``random.Random(seed)`` among those with images in both
    modalities (all persons when none has both), shown in ascending id order; columns are every
    (camera, modality) pair of the dataset in camera order, visible before infrared; each cell shows
    one image drawn with the same generator.
    """
    if identities < 1:
        raise ValueError(f"identities must be >= 1, got {identities}")
    records = dataset.all_records()
    if not records:
        raise DatasetError("the dataset has no images to show", path=dataset.root)
    groups: dict[tuple[int, int, str], list[ImageRecord]] = defaultdict(list)
    modalities_of: dict[int, set[str]] = defaultdict(set)
    for rec in records:
        groups[(rec.pid, rec.camera, rec.modality)].append(rec)
        modalities_of[rec.pid].add(rec.modality)
    columns = sorted({(cam, mod) for (_, cam, mod) in groups}, key=lambda cm: (cm[0], MODALITIES.index(cm[1])))
    both = sorted(pid for pid, mods in modalities_of.items() if len(mods) == len(MODALITIES))
    candidates = both if both else sorted(modalities_of)
    rng = random.Random(seed)
    pids = sorted(rng.sample(candidates, min(identities, len(candidates))))

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    headers = [f"cam{cam}\n{mod}" for cam, mod in columns]
    row_labels = [f"id {pid}" for pid in pids]
    title = f"{dataset.name}: {len(modalities_of)} ids, {len(records)} images"
    header_h = max(_text_size(probe, t, font)[1] for t in headers) + 2 * PAD
    title_h = _text_size(probe, title, font)[1] + 2 * PAD
    cell_w = max([THUMB_SIZE[1]] + [_text_size(probe, t, font)[0] for t in headers]) + 2 * PAD
    cell_h = THUMB_SIZE[0] + 2 * PAD
    left_w = max(_text_size(probe, t, font)[0] for t in row_labels) + 2 * PAD
    width = max(left_w + cell_w * len(columns), _text_size(probe, title, font)[0] + 2 * PAD)
    height = title_h + header_h + cell_h * len(pids)

    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), title, fill=TEXT, font=font)
    for j, text in enumerate(headers):
        tw, _ = _text_size(probe, text, font)
        x = left_w + j * cell_w + (cell_w - tw) // 2
        draw.multiline_text((x, title_h + PAD), text, fill=TEXT, font=font, spacing=2, align="center")
    for i, pid in enumerate(pids):
        y0 = title_h + header_h + i * cell_h
        _, th = _text_size(probe, row_labels[i], font)
        draw.text((PAD, y0 + (cell_h - th) // 2), row_labels[i], fill=TEXT, font=font)
        for j, (cam, mod) in enumerate(columns):
            x0 = left_w + j * cell_w
            box = (x0 + PAD, y0 + PAD, x0 + cell_w - PAD - 1, y0 + cell_h - PAD - 1)
            group = groups.get((pid, cam, mod))
            if not group:
                draw.rectangle(box, fill=BLANK)
                continue
            thumb = _load_thumb(rng.choice(sorted(group)))
            sheet.paste(thumb, (x0 + (cell_w - thumb.width) // 2, y0 + PAD + (THUMB_SIZE[0] - thumb.height) // 2))

    out = Path(out).expanduser()
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
