"""Fonts of vireid's pictures: Pillow's scalable default font at a size readable on a slide."""

from __future__ import annotations

from PIL import ImageFont


def slide_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` pixels (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()
