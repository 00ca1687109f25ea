"""Contact sheet of scenes: each image beside its mask in the class palette, with the true contact."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from marsunits.constants import CONTACT_COLOR, IGNORE_COLOR, PALETTE
from marsunits.data.io import write_png_atomic
from marsunits.data.synthetic.scene import Scene


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) class ids to (H, W, 3) uint8 with :data:`PALETTE` (ignore and unknown ids black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = IGNORE_COLOR
    for k, c in enumerate(PALETTE):
        lut[k] = c
    return lut[mask]


def scene_tile(scene: Scene) -> np.ndarray:
    """(H, 2W + gap, 3) uint8: the image (grey shown as RGB) and the coloured mask with the contact."""
    img = scene.image if scene.image.ndim == 3 else np.repeat(scene.image[..., None], 3, axis=2)
    panel = Image.fromarray(colour_mask(scene.mask))
    draw = ImageDraw.Draw(panel)
    for line in scene.contacts:
        # Pixel coordinates have their origin at the corner of the top-left pixel; PIL draws at centres.
        draw.line([(float(u) - 0.5, float(v) - 0.5) for u, v in line.pixels], fill=CONTACT_COLOR, width=2)
    gap = np.full((img.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([img, gap, np.asarray(panel)], axis=1)


def contact_sheet(scenes: Sequence[Scene], columns: int = 2) -> np.ndarray:
    """Grid of :func:`scene_tile` tiles, ``columns`` tiles per row, white gaps; (H', W', 3) uint8."""
    if not scenes:
        raise ValueError("contact_sheet needs at least one scene")
    tiles = [scene_tile(s) for s in scenes]
    th, tw = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * (th + 6), columns * (tw + 6), 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * (th + 6) : r * (th + 6) + th, c * (tw + 6) : c * (tw + 6) + tw] = t
    return sheet


def write_preview(scenes: Sequence[Scene], path: str | os.PathLike[str], columns: int = 2) -> Path:
    """Write :func:`contact_sheet` of ``scenes`` as a PNG (atomically)."""
    return write_png_atomic(Path(path), contact_sheet(scenes, columns))
