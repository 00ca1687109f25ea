"""The refusals every image and mask reader shares, whatever decodes the file: :class:`ImageReadError`, and
the size limit checked from the header before decoding (``max_megapixels``, or Pillow's decompression-bomb
limit and the lock that guards Pillow's global while :func:`marsunits.data.io._open_pil` lifts it).

Below :mod:`marsunits.data.io`, :mod:`marsunits.data.tiff_io` and :mod:`marsunits.data.mask_io`, which all
import it; it imports none of them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from marsunits.errors import DataError

__all__ = ["ImageReadError"]


class ImageReadError(DataError):
    """An image or mask file could not be read; the message names the file, the problem and the fix.

    A :class:`~marsunits.errors.DataError` (so a ``ValueError`` still, for code that catches that): ``except
    MarsUnitsError`` around a script's call catches it with the project's other errors of input."""


def _check_megapixels(path: Path, width: int, height: int, max_megapixels: float | None) -> None:
    """Refuse an image above ``max_megapixels`` (``inf``: none at all, and :func:`_open_pil` then lifts
    Pillow's too). None: the caller sets no limit, and Pillow's decompression-bomb limit applies, to a TIFF as
    well: tifffile has none of its own, so a 900-megapixel TIFF of 1 MB was decoded (4 GB) where the same
    image as a PNG was refused."""
    if max_megapixels is None:
        with _PIL_LIMIT_LOCK:  # not the None another thread's _open_pil holds while it lifts the limit
            limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and width * height > 2 * limit:  # where Pillow raises DecompressionBombError
            raise ImageReadError(
                _bomb_message(
                    path,
                    Image.DecompressionBombError(
                        f"Image size ({width * height} pixels) exceeds limit of {2 * limit} pixels, could be "
                        "decompression bomb DOS attack."
                    ),
                )
            )
        return
    if width * height > max_megapixels * 1e6:
        raise ImageReadError(
            f"{path}: the image is {width}x{height} = {width * height / 1e6:.1f} megapixels, more than the "
            f"allowed {max_megapixels:g} megapixels (checked from the header, before decoding). Downscale or "
            "tile the image, or raise max_megapixels if you trust this file."
        )


def _bomb_message(path: Path, err: Exception) -> str:
    return (
        f"{path}: refused as a possible decompression bomb ({err}). If the file is genuine, downscale or "
        "tile it first; predict.py reads it with max_megapixels set above its size (or max_megapixels=null), "
        "train.py has no such option."
    )


#: Held while Pillow opens a file: :func:`_open_pil` may lift Pillow's global pixel limit for that one call.
_PIL_LIMIT_LOCK = threading.Lock()
