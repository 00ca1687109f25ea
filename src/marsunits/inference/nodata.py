"""No-data pixels of an input image: the black border of a mosaic, a frame's unexposed margin.

A panorama stitched from frames (MarsScapes' Mastcam mosaics) is padded with black where no frame reached;
the network has no class for it and calls most of it rough terrain, which inflates the unit fractions of
every panorama (8 % of a typical MarsScapes panorama is border). Such pixels are marked ignore (255) in the
mask, drawn black in the overlay, left out of the unit fractions, and no contact is traced through them.

The rule: a pixel is no-data when every channel is at most ``max_value`` (in [0, 1]) **and** its region of
such pixels touches the image border and has at least ``MIN_REGION_PX`` pixels; so is every pixel sharing a
side with such a region (``FRINGE_PX``, one ring). Measured on the data in ``../shared/data``: MarsScapes
borders are 0 with a JPEG fringe up to about 9/255, terrain there is never that dark; of the AI4Mars Navcam
pixels the rule flags with 0.03 (0.08 % of them), 99.6 % are labelled null (rover, unlabelled), the rest soil
in shadow at the frame edge; synthetic scenes have none. Dark pixels inside the image (a shadow not touching
the border) are never flagged.

The ring: the pixel next to a mosaic's black border is a blend of black and terrain (JPEG's ringing, a
resampled panorama's interpolation), too bright for ``max_value`` (median 64/255 in its brightest channel
on three MarsScapes panoramas, terrain 150-180) and dark enough that the network read it as rough terrain:
31-37 % of those pixels came out ``rough_olivine`` against 2-11 % of the others, a rough rim along every
border with a contact traced between it and the smooth ground beside it (5-7 % of the panoramas' contact
length, 29 % of a greyscale one shrunk to half size, 2026-12-07). The ring is dropped with the border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["FRINGE_PX", "MIN_REGION_PX", "nodata_mask"]

#: Smallest no-data region, pixels: a few dark pixels of a shadow at the frame edge are terrain (a mosaic's
#: border is thousands of pixels).
MIN_REGION_PX = 256

#: Rings of pixels around a no-data region that are no data too: the border's blended fringe (module
#: docstring).
FRINGE_PX = 1


def nodata_mask(image: np.ndarray, max_value: float) -> np.ndarray:
    """``(H, W)`` bool, True on the no-data pixels of ``image`` (see the module docstring).

    Args:
        image: ``(H, W, C)`` float in [0, 1] (as :func:`marsunits.data.io.read_image` returns it).
        max_value: The brightest value, in every channel, a no-data pixel may have.

    Raises:
        ValueError: ``image`` is not ``(H, W, C)`` or ``max_value`` is outside [0, 1).
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    if not 0.0 <= max_value < 1.0:
        raise ValueError(f"nodata_max must be in [0, 1) (0.03: 8-bit values up to 7), got {max_value}")
    dark: np.ndarray = np.all(image <= max_value, axis=2)
    if not dark.any():
        return dark
    regions, _ = ndimage.label(dark)
    edge = np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]])
    touching = np.unique(edge[edge > 0])
    sizes = np.bincount(regions.ravel())
    touching = touching[sizes[touching] >= MIN_REGION_PX]
    if not touching.size:
        return np.zeros_like(dark)
    border = np.isin(regions, touching)
    # The blended fringe next to it (4-connected: a pixel sharing a side with the border).
    return np.asarray(ndimage.binary_dilation(border, iterations=FRINGE_PX), dtype=bool)
