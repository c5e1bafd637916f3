"""Attention and activation maps over person images (paper A Fig. 3).

What is drawn for a model:

- a model with a spatial attention map (FAFE with ``model.csa``): the CSA spatial attention ``A_s``
  (FAFE eq 12), one value per patch token / feature-map cell;
- any other model with ``feature_map(images, modality)`` (AGW, CAJ, DAM, FAFE without CSA): the
  activation map ``sum_c F_c^2`` of the final feature map (ResNet layer4, or FAFE's patch-token map).

Each map is min-max normalised per image (the figure shows where a model looks, not how strongly),
upsampled bilinearly to the displayed image, coloured with a colour map (``jet``) and alpha-blended over
the image. :func:`render_attention` writes one PNG per input image -- the image, then the model's map,
then the baseline's when one is given, side by side, each captioned -- and a grid of all of them; every PNG is written
atomically (temporary file, then rename).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vireid.io import atomic_path
from vireid.models.base import ReIDModel
from vireid.visualization.fonts import slide_font

LABEL_HEIGHT = 40  # two text lines above each tile
FONT_SIZE = 14
COLOUR_BAR_WIDTH = 64
GAP = 4
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


@dataclass
class MapSource:
    """A model to draw and the caption of its column."""

    model: ReIDModel
    label: str


def attention_maps(model: ReIDModel, images: torch.Tensor, modality: torch.Tensor | str) -> tuple[torch.Tensor, str]:
    """``(maps, kind)``: ``[N, h, w]`` maps in [0, 1] (min-max normalised per image) of images in [0, 1],
    and what they are (``"attention (CSA)"``: the spatial map of eq 12, or ``"activation"``). The model
    must be in eval mode."""
    with torch.no_grad():
        if getattr(model, "csa", None) is not None and hasattr(model, "spatial_attention"):
            maps, kind = model.spatial_attention(images, modality), "attention (CSA)"
        elif hasattr(model, "feature_map"):
            maps, kind = model.feature_map(images, modality).float().pow(2).sum(1), "activation"
        else:
            raise ValueError(
                f"{type(model).__name__} has neither spatial_attention() nor feature_map(); no map to draw"
            )
    return normalize_maps(maps), kind


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each ``[h, w]`` map of ``[N, h, w]`` scaled to [0, 1] (a constant map becomes zeros)."""
    flat = maps.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    span = (hi - lo).clamp_min(1e-12)
    return ((flat - lo) / span * (hi > lo)).view_as(maps)


def colorize(heat: torch.Tensor, size: tuple[int, int], *, cmap: str = "jet") -> np.ndarray:
    """A ``[h, w]`` map in [0, 1] upsampled (bilinear) to ``size`` = (height, width), as RGB uint8."""
    from matplotlib import colormaps

    up = F.interpolate(heat[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    rgba = colormaps[cmap](up.clamp(0, 1).cpu().numpy())
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * image + alpha * heat`` for uint8 RGB arrays of the same shape."""
    if image.shape != heat.shape:
        raise ValueError(f"image {image.shape} and heat map {heat.shape} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return out.round().clip(0, 255).astype(np.uint8)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG atomically (:func:`vireid.io.atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def colour_bar(height: int, *, cmap: str = "jet") -> np.ndarray:
    """A vertical colour bar ``[height, COLOUR_BAR_WIDTH, 3]``: the map's scale from high (top) to low,
    labelled (each map is normalised per image, so the scale is relative)."""
    from matplotlib import colormaps

    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(16, axis=1)
    bar = (colormaps[cmap](ramp)[..., :3] * 255).round().astype(np.uint8)
    tile = Image.new("RGB", (COLOUR_BAR_WIDTH, height), BACKGROUND)
    tile.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(tile)
    font = slide_font(FONT_SIZE)
    draw.text((20, 0), "high", fill=TEXT, font=font)
    draw.text((20, height - FONT_SIZE - 4), "low", fill=TEXT, font=font)
    return np.asarray(tile)


def _labelled_row(tiles: Sequence[np.ndarray], labels: Sequence[str]) -> Image.Image:
    h = tiles[0].shape[0]
    widths = [t.shape[1] for t in tiles]
    row = Image.new("RGB", (sum(widths) + (len(tiles) - 1) * GAP, h + LABEL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(row)
    font = slide_font(FONT_SIZE)
    x = 0
    for tile, label, w in zip(tiles, labels, widths):
        row.paste(Image.fromarray(tile), (x, LABEL_HEIGHT))
        lines = [line[: max(4, w // 8)] for line in label.split("\n")[:2]]
        draw.multiline_text((x + 2, 1), "\n".join(lines), fill=TEXT, spacing=3, font=font)
        x += w + GAP
    return row


def picture_name(path: str | Path) -> str:
    """A file-name stem for an input image: its two parent folders and its stem (re-id datasets reuse
    frame names across identities and cameras: ``cam3/0007/0001.jpg`` -> ``cam3_0007_0001``)."""
    p = Path(path)
    folders = [q for q in p.parent.parts[-2:] if q not in (p.anchor, ".", "..")]
    return "_".join([*folders, p.stem]).replace(" ", "_")


def _display_scale(height: int, min_height: int) -> int:
    return max(1, -(-min_height // height))  # ceil


def render_attention(
    sources: Sequence[MapSource],
    image_paths: Sequence[str | Path],
    *,
    modality: str,
    size: tuple[int, int],
    out_dir: str | Path,
    alpha: float = 0.5,
    min_height: int = 256,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Draw each source's map over each image; returns the written PNG paths.

    ``size`` is the models' input (height, width): each image is resized to it (as the test transform),
    the maps are computed there, and everything is shown enlarged by an integer factor to at least
    ``min_height`` pixels. Writes ``<name>_attention.png`` per image (:func:`picture_name`; columns: the
    image, then one per source) and ``attention_grid.png`` (all rows).
    """
    from vireid.data.records import load_rgb

    if not sources:
        raise ValueError("render_attention needs at least one model")
    if not image_paths:
        raise ValueError("render_attention needs at least one image")
    h, w = int(size[0]), int(size[1])
    scale = _display_scale(h, min_height)
    disp = (h * scale, w * scale)
    pil_images = [load_rgb(p).resize((w, h), Image.BICUBIC) for p in image_paths]
    batch = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1) for im in pil_images])
    batch = batch.to(device)
    columns = []
    for source in sources:
        source.model.eval()
        maps, kind = attention_maps(source.model, batch, modality)
        columns.append((maps.cpu(), f"{source.label}\n{kind}"))
    out_dir = Path(out_dir)
    written, rows = [], []
    used: dict[str, int] = {}
    for i, (path, im) in enumerate(zip(image_paths, pil_images)):
        shown = np.asarray(im.resize((disp[1], disp[0]), Image.NEAREST))
        tiles, labels = [shown], [f"{picture_name(path)}\n{modality}"]
        for maps, label in columns:
            tiles.append(blend(shown, colorize(maps[i], disp), alpha))
            labels.append(label)
        tiles.append(colour_bar(disp[0]))
        labels.append("attention\n(per image)")
        row = _labelled_row(tiles, labels)
        rows.append(row)
        stem = picture_name(path)
        used[stem] = used.get(stem, 0) + 1
        name = stem if used[stem] == 1 else f"{stem}_{used[stem]}"
        written.append(save_png(row, out_dir / f"{name}_attention.png"))
    grid = Image.new("RGB", (rows[0].width, sum(r.height for r in rows) + GAP * (len(rows) - 1)), BACKGROUND)
    y = 0
    for row in rows:
        grid.paste(row, (0, y))
        y += row.height + GAP
    written.append(save_png(grid, out_dir / "attention_grid.png"))
    return written
