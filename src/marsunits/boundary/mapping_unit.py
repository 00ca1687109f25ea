"""Minimum mapping unit: merge unit patches too small to map into the unit that surrounds them.

Geological maps have a minimum mapping unit (MMU): a polygon smaller than it is not drawn, its area goes to
the neighbouring unit. A segmentation network produces many such specks -- a few pixels of rough terrain
inside smooth ground, or the reverse -- and each one becomes a short closed "contact" that a geologist
would not draw and that boundary scores count as a false contact.

:func:`merge_small_units` applies an MMU to a class-probability map *before* the label mask and the contact
lines are derived from it, so mask, overlay, contact lines and metrics agree. A connected patch (8-connected)
of unit ``u`` (0 or 1) whose area is below ``min_area_px`` is merged into the other unit ``1 - u`` when that
unit holds more of the pixels around the patch (its one-pixel outer ring) than ``other`` does; the merge
swaps ``p0`` and ``p1`` inside the patch, so each pixel keeps its confidence and its ``other`` probability,
and the iso-line ``p0 = p1`` no longer encircles the patch. A patch surrounded mostly by ``other`` (sky,
hardware) is left alone: that is not a contact question. Unit 0 patches are merged first, then unit 1
patches of the updated map.

Written with ``scipy.ndimage`` (labelling, bounding boxes, dilation) rather than
``skimage.morphology.remove_small_objects``, which can only delete a patch, not hand it to a chosen unit.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["merge_small_units"]

_EIGHT = np.ones((3, 3), dtype=bool)


def merge_small_units(probs: np.ndarray, min_area_px: int) -> int:
    """Merge unit-0/unit-1 patches smaller than ``min_area_px`` pixels into the surrounding unit, in place.

    Args:
        probs: ``(3, H, W)`` float class probabilities (smooth_volcanic, rough_olivine, other), modified in
            place (``p0`` and ``p1`` swapped inside merged patches). Non-finite pixels belong to no patch.
        min_area_px: Patches with fewer pixels than this are candidates; 0 or 1 changes nothing.

    Returns:
        The number of patches merged.

    Raises:
        ValueError: If ``probs`` is not ``(3, H, W)`` or ``min_area_px`` is negative.
    """
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(f"probs must have shape (3, H, W), got {probs.shape}")
    if min_area_px < 0:
        raise ValueError(f"min_area_px must be >= 0 (0 disables the minimum mapping unit), got {min_area_px}")
    if min_area_px <= 1:
        return 0
    labels = np.argmax(probs, axis=0).astype(np.uint8)
    labels[~np.isfinite(probs).all(axis=0)] = 255
    merged = 0
    H, W = labels.shape
    for unit in (0, 1):
        other_unit = 1 - unit
        patches, n = ndimage.label(labels == unit, structure=_EIGHT)
        if n == 0:
            continue
        sizes = np.bincount(patches.ravel(), minlength=n + 1)
        for k, box in enumerate(ndimage.find_objects(patches), start=1):
            if box is None or sizes[k] >= min_area_px:
                continue
            # The patch's bounding box grown by one pixel holds its whole outer ring.
            rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, H))
            cols = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, W))
            patch = patches[rows, cols] == k
            ring = ndimage.binary_dilation(patch, _EIGHT) & ~patch
            around = labels[rows, cols][ring]
            if np.count_nonzero(around == other_unit) <= np.count_nonzero(around == 2):
                continue
            p0, p1 = probs[0, rows, cols], probs[1, rows, cols]
            swapped = p0[patch].copy()
            p0[patch] = p1[patch]
            p1[patch] = swapped
            labels[rows, cols][patch] = other_unit
            merged += 1
    return merged
