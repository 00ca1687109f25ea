"""Decoded pixel arrays brought to the read contract of :mod:`marsunits.data.io`, whatever decoded them
(Pillow, tifffile, imagecodecs): an orientation tag applied, float pixels clipped to [0, 1] (or refused when
on another scale), an alpha band dropped after fully transparent pixels are made black, and the largest value
of 12-bit data.

Shared by :mod:`marsunits.data.io`, :mod:`marsunits.data.tiff_io` and :mod:`marsunits.data.mask_io`, below
all three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marsunits.data.read_checks import ImageReadError

__all__ = ["FLOAT_FULL_SCALE_MAX", "TWELVE_BIT_MAX"]


def _oriented(arr: np.ndarray, orientation: int) -> np.ndarray:
    """``arr`` ``(H, W, C)`` turned as ``ImageOps.exif_transpose`` turns an image with this Orientation.

    Hand-written because Pillow cannot hold 16-bit colour or float TIFF data; the mapping is Pillow's
    (checked against it for all eight values in the tests)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


#: Float images whose largest value exceeds this hold another scale (0-255, 0-65535), not [0, 1]: calibrated
#: [0, 1] data overshoots 1 a little where it saturates, never by a factor of 2.
FLOAT_FULL_SCALE_MAX = 2.0


def _unit_float(path: Path, arr: np.ndarray) -> np.ndarray:
    """Float pixels as read, NaN -> 0, +inf -> 1, clipped to [0, 1]; data on another scale is refused.

    Why refuse: float images hold [0, 1] by convention, but an export of 8-bit data as float keeps 0-255,
    and clipping that would turn the whole image white without a word. A few saturated pixels a little
    above 1 are clipped, as before.

    Raises:
        ImageReadError: The largest finite value exceeds ``FLOAT_FULL_SCALE_MAX`` (2).
    """
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    top = float(arr.max()) if arr.size else 0.0
    if top > FLOAT_FULL_SCALE_MAX:
        raise ImageReadError(
            f"{path}: float pixels reach {top:g}, but float images are read as values in [0, 1]. Scale the "
            f"image to [0, 1] (divide by 255 for 8-bit data, by 65535 or 4095 for 16- or 12-bit data) or "
            "save it as 8- or 16-bit integers."
        )
    return np.clip(arr, 0.0, 1.0)


def _to_gray_or_rgb(path: Path, arr: np.ndarray, alpha: bool) -> np.ndarray:
    """Drop the extra band: (H,W,2) -> (H,W,1); (H,W,4) -> (H,W,3). The dtype is kept. When the band is
    alpha (``alpha``, from the TIFF's ExtraSamples tag), fully transparent pixels become 0
    (:func:`_transparent_to_black`); another band (near-infrared, a mask) is just dropped."""
    c = arr.shape[2]
    if c in (1, 3):
        return arr
    if c in (2, 4):
        colour = arr[:, :, : c - 1]
        return _transparent_to_black(colour, arr[:, :, c - 1]) if alpha else colour
    raise ImageReadError(
        f"{path}: unsupported number of channels {c} (expected 1 grey, 2 grey+alpha, 3 RGB or 4 RGBA). "
        "Export a greyscale or RGB image."
    )


def _transparent_to_black(arr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fully transparent pixels (alpha 0) set to 0 in every channel; the array's dtype is kept.

    Why: a transparent mosaic border usually hides white or arbitrary colour, which the network would
    classify; black makes it the no-data region of :mod:`marsunits.inference.nodata` (dark, touching the
    border) that predict leaves out, as it does a black border. Partly transparent pixels keep their colour,
    and so does an image transparent everywhere: some tools write an alpha of 0 that means nothing.
    """
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return arr
    arr = np.array(arr, copy=True)
    arr[hidden] = 0
    return arr


#: Largest value of 12-bit data: rover cameras (Navcam, Hazcam, Mastcam) digitise 12 bits, and their
#: products often store them in 16-bit files without using the top 4 bits.
TWELVE_BIT_MAX = 4095
