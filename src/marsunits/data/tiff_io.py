"""TIFF decoding (through ``tifffile``, since Pillow does not handle float or multi-sample 16-bit TIFFs):
the first page's layout and size from its header, its Orientation tag, its Photometric interpretation
(palette, MinisWhite, refusals), samples of 2-7 or 9-15 bits at their own full scale, and the note for a
TIFF of several full-resolution pages.

:func:`marsunits.data.io.read_image` and :func:`marsunits.data.mask_io.read_mask` read TIFFs through this
module; it imports neither.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from marsunits.data.decoded_pixels import TWELVE_BIT_MAX, _oriented, _to_gray_or_rgb, _unit_float
from marsunits.data.read_checks import ImageReadError, _check_megapixels

__all__ = ["tiff_pages_note"]


def _tiff_hwc(path: Path, shape: tuple[int, ...], separate: bool) -> tuple[int, int, int | None, bool]:
    """(height, width, samples, planar) of a TIFF page from its shape and its PlanarConfiguration tag
    (``separate``: samples stored plane by plane, so the page's shape is ``(S, H, W)``).

    The layout is read from the tag, not guessed from the shape: an RGB image 3 px wide stored
    contiguously, ``(H, 3, 3)``, and one stored planar, ``(3, H, 3)``, look alike to a guess, which read the
    planar one with its rows as colours.
    """
    if len(shape) == 2:
        return shape[0], shape[1], None, False
    if len(shape) == 3 and separate and shape[0] <= 4:
        return shape[1], shape[2], shape[0], True
    if len(shape) == 3 and not separate and shape[2] <= 4:
        return shape[0], shape[1], shape[2], False
    raise ImageReadError(
        f"{path}: unsupported TIFF layout {shape} (expected (H, W) or (H, W, C) with C in 1..4). "
        "Export a single 2-D greyscale or RGB(A) image."
    )


def _open_tiff_first_page(path: Path) -> tuple[int, int, int | None, bool]:
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise ImageReadError(f"{path}: the TIFF holds no image. Re-export the file.")
            page = tif.pages[0]
            separate = int(getattr(page, "planarconfig", 1)) == 2  # PLANARCONFIG.SEPARATE
            return _tiff_hwc(path, tuple(page.shape), separate)
    except ImageReadError:
        raise
    except PermissionError as err:
        raise ImageReadError(f"{path}: permission denied ({err}). Fix the file's permissions.") from err
    except Exception as err:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise ImageReadError(
            f"{path}: not a readable TIFF ({type(err).__name__}: {err}). The file may be corrupt or not a "
            "TIFF despite its extension; re-export it or fix the extension."
        ) from err


def _tiff_decode_error(path: Path, err: Exception, fix: str) -> ImageReadError:
    """The error for a TIFF whose pixels could not be decoded: a missing codec is not a corrupt file.

    tifffile decodes LZW, JPEG, ZSTD, WebP and most other compressions through the ``imagecodecs`` package
    (a dependency of marsunits); without it, it raises ``ValueError("<COMPRESSION.LZW: 5> requires the
    'imagecodecs' package")`` for a perfectly good file.
    """
    if "imagecodecs" in str(err):
        return ImageReadError(
            f"{path}: the TIFF's compression needs the imagecodecs package, which is not installed in this "
            f"environment ({err}). Install it (pip install imagecodecs; it comes with marsunits' "
            "dependencies), or save the TIFF uncompressed or with deflate (zlib) compression."
        )
    return ImageReadError(f"{path}: the TIFF is truncated or corrupt ({type(err).__name__}: {err}). {fix}")


def _tiff_orientation(path: Path) -> int:
    """The TIFF Orientation tag (274) of the first page, as :func:`_orientation_tag` reads EXIF's: 2-8,
    else 1. It is the same tag, with the same meaning, that EXIF borrowed from TIFF."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0] if tif.pages else None
            tag = page.tags.get(274) if isinstance(page, tifffile.TiffPage) else None
            value = int(tag.value) if tag is not None else 1
    except Exception:  # a broken tag must not make the image unreadable; the pixels are checked elsewhere
        return 1
    return value if value in range(2, 9) else 1


@dataclass(frozen=True)
class _TiffColour:
    """How a TIFF page's samples map to grey or RGB (its Photometric tag), applied by :meth:`apply`.

    tifffile returns the samples as stored: palette indices, inverted grey (MinisWhite), CMYK inks. Read
    as they are, they are wrong pictures that the network still labels without a word (a palette TIFF came
    out 65 % ``other``), so each is converted here, or refused with what to do.
    """

    photometric: int
    bits: int
    compressed_jpeg: bool
    colormap: np.ndarray | None

    @classmethod
    def of(cls, page: Any) -> _TiffColour:
        tag = getattr(page, "photometric", None)
        photometric = 1 if tag is None else int(tag)  # MinisWhite is 0: not `or 1`
        colormap = page.colormap if photometric == 3 else None
        compression = int(getattr(page, "compression", 1) or 1)
        return cls(photometric, int(getattr(page, "bitspersample", 8) or 8), compression in (6, 7), colormap)

    def apply(self, path: Path, arr: np.ndarray, n_extra: int) -> np.ndarray:
        """``arr`` ``(H, W, C)`` as stored -> grey or RGB samples (extra samples such as alpha kept last)."""
        kind = self.photometric
        if kind in (1, 2) or (kind == 6 and self.compressed_jpeg):  # grey, RGB; JPEG decodes YCbCr to RGB
            return arr
        if kind == 0:  # MinisWhite: 0 is white
            return self._inverted(arr, n_extra)
        if kind == 3 and self.colormap is not None and arr.shape[2] == 1:
            return _palette_to_grey_or_rgb(arr[:, :, 0], self.colormap)
        names = {3: "palette without a colour map", 4: "transparency mask", 5: "CMYK (separated)",
                 6: "YCbCr", 8: "CIE L*a*b*", 9: "ICC L*a*b*", 10: "ITU L*a*b*", 32803: "colour filter array "
                 "(raw Bayer mosaic)", 34892: "linear raw (DNG)"}  # fmt: skip
        name = names.get(kind, f"Photometric {kind}")
        raise ImageReadError(
            f"{path}: a {name} TIFF, which is not read as a picture here. Convert it to RGB or greyscale "
            "(demosaic raw frames first), e.g. with PIL: Image.open(f).convert('RGB').save(...)."
        )

    def _inverted(self, arr: np.ndarray, n_extra: int) -> np.ndarray:
        n = arr.shape[2] - n_extra  # the grey band(s); extra samples (alpha) are not inverted
        out = np.array(arr, copy=True)
        if out.dtype == np.bool_:
            out[:, :, :n] = ~out[:, :, :n]
        elif out.dtype.kind == "f":
            out[:, :, :n] = 1.0 - out[:, :, :n]
        elif out.dtype.kind == "u":
            top = min((1 << self.bits) - 1, int(np.iinfo(out.dtype).max))
            if top == 65535 and out.size and int(out[:, :, :n].max()) <= TWELVE_BIT_MAX:
                top = TWELVE_BIT_MAX  # 12-bit data in a 16-bit file (widen_12_bit's rule): 4095 is black
            out[:, :, :n] = top - np.minimum(out[:, :, :n], top)
        return out


def _tiff_full_scale(arr: np.ndarray, colour: _TiffColour) -> np.ndarray:
    """Integer samples of fewer bits than their dtype (BitsPerSample 2-7 or 9-15) at their own full scale:
    2-7 bits stretched to the uint8 range, 9-15 bits as float32 in [0, 1] (sample / (2**bits - 1)).

    Why: tifffile unpacks a 4-bit grey TIFF to uint8 0-15 and a 10-bit one to uint16 0-1023; divided by 255 or
    65535 (or 4095, :func:`widen_12_bit`) they read 17 or 4 times too dark, while Pillow and viewers show them
    at full scale. The tag says the depth, so it is used. Samples of 9-15 bits become floats, not uint16
    stretched to 65535: a dark exposure stretched so would still fit in 12 bits, and :func:`widen_12_bit`
    would brighten it 16 times more. Palette indices (already looked up by :meth:`_TiffColour.apply`) are
    left alone.
    """
    width = arr.dtype.itemsize * 8
    if colour.photometric == 3 or arr.dtype not in (np.uint8, np.uint16) or not 1 < colour.bits < width:
        return arr
    top = (1 << colour.bits) - 1
    if arr.dtype == np.uint16:
        return np.minimum(arr, top).astype(np.float32) / np.float32(top)
    return ((np.minimum(arr, top).astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)  # rounded


def _palette_to_grey_or_rgb(indices: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """Palette indices ``(H, W)`` and a TIFF ColorMap ``(3, N)`` (16-bit) -> uint8 ``(H, W, 3)``, or
    ``(H, W, 1)`` when every pixel is grey (as :func:`_pil_to_native` does for palette PNGs)."""
    lut = np.round(np.asarray(colormap, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8).T  # (N, 3)
    rgb = lut[np.minimum(indices, len(lut) - 1)]
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]):
        return rgb[:, :, :1]
    return rgb


def _read_tiff(path: Path, max_megapixels: float | None) -> np.ndarray:
    height, width, _, planar = _open_tiff_first_page(path)
    _check_megapixels(path, width, height, max_megapixels)
    orientation = _tiff_orientation(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            colour = _TiffColour.of(page)
            arr = page.asarray()
            # ExtraSamples 1 (associated) or 2 (unassociated) is alpha; 0 is some other band (e.g. near-IR).
            extra = tuple(int(v) for v in (getattr(page, "extrasamples", ()) or ()))
    except ImageReadError:
        raise
    except Exception as err:
        raise _tiff_decode_error(path, err, "Re-export or copy it again.") from err
    alpha = bool(extra) and extra[-1] in (1, 2)
    if planar:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = _tiff_full_scale(colour.apply(path, arr, n_extra=len(extra)), colour)
    arr = np.ascontiguousarray(_oriented(arr, orientation))  # as displayed, as a JPEG's EXIF tag is
    if arr.dtype in (np.uint8, np.uint16):
        out = arr
    elif arr.dtype.kind == "f":
        out = _unit_float(path, arr.astype(np.float32))
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * np.uint8(255)
    else:
        raise ImageReadError(
            f"{path}: unsupported TIFF sample type {arr.dtype} (expected uint8, uint16 or float in [0, 1]). "
            "Convert the image to 8- or 16-bit unsigned integers."
        )
    return _to_gray_or_rgb(path, out, alpha)


def tiff_pages_note(path: Path) -> str | None:
    """A warning for a TIFF that holds more than one full-resolution image (a stack of frames, bands stored
    as pages, a stereo pair): only its first page is read. None otherwise, and for the reduced-resolution
    pages of a pyramidal TIFF (overviews, NewSubfileType bit 0), which are the same picture made smaller.

    The count is kept per file, size and modification time (:func:`_full_page_count`): every page's header
    was parsed again on every read, and an uncached training source reads a file for every crop drawn from
    it (a 1000-page stack: 94 of the 101 ms of each read).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    full = _full_page_count(os.fspath(path), st.st_size, st.st_mtime_ns)
    if full is None or full < 2:
        return None
    return (
        f"{path}: the TIFF holds {full} full-resolution pages; only the first is read. If the others are "
        "frames or bands of the picture, save the image you want labelled as a TIFF of its own"
    )


@functools.lru_cache(maxsize=4096)
def _full_page_count(path: str, size: int, mtime_ns: int) -> int | None:
    """Full-resolution pages of the TIFF at ``path`` (:func:`tiff_pages_note`), or None where they cannot
    be counted; ``size`` and ``mtime_ns`` are only the cache key: a file written again is counted again."""
    try:
        with tifffile.TiffFile(path) as tif:
            return sum(1 for page in tif.pages if not int(getattr(page, "subfiletype", 0) or 0) & 1)
    except Exception:  # noqa: BLE001 - the pixels were read already; a page count is only a note
        return None
