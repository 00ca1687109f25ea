"""Image and mask file IO: one place that turns files on disk into arrays with a fixed contract.

Contracts:

* :func:`read_image` returns ``float32`` ``(H, W, C)`` with values in ``[0, 1]`` and ``C`` in ``{1, 3}``.
  Row 0 is the top of the image *as displayed* (EXIF orientation applied), column 0 its left edge.
* :func:`read_mask` returns ``uint8`` ``(H, W)`` holding label ids exactly as stored (no scaling).
* Every failure a user can hit raises :class:`ImageReadError` (a ``ValueError``) whose message names the
  file, says what was wrong and what to do about it.

PIL decodes JPEG/PNG (and reads their headers lazily); TIFF goes through ``tifffile`` because PIL does not
handle float or multi-sample 16-bit TIFFs.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from marsunits.atomic import atomic_write
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, PALETTE, PALETTE_UNTIL_2026_12_06
from marsunits.errors import DataError, counted, some_of

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "ImageReadError",
    "exif_orientation",
    "header_says_one_channel",
    "image_size",
    "is_image_file",
    "list_images",
    "pil_image_native",
    "scale_to_unit",
    "widen_12_bit",
    "read_image",
    "read_image_native",
    "read_image_noted",
    "read_mask",
    "tiff_pages_note",
    "to_channels",
    "turned_mask_note",
    "warn_of_read_notes",
    "write_png_atomic",
]

#: File extensions (lower case) that are treated as images everywhere in the project.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
TIFF_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")

#: ITU-R BT.601 luma weights (R, G, B): the weights PIL's ``convert("L")`` uses too.
_LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageReadError(DataError):
    """An image or mask file could not be read; the message names the file, the problem and the fix.

    A :class:`~marsunits.errors.DataError` (so a ``ValueError`` still, for code that catches that): ``except
    MarsUnitsError`` around a script's call catches it with the project's other errors of input."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive) and is not a hidden file."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted by path (deterministic order across platforms).

    Args:
        folder: directory to scan.
        recursive: scan sub-folders too.

    Raises:
        ImageReadError: ``folder`` does not exist or is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageReadError(
            f"{root}: expected a folder of images ({', '.join(IMAGE_EXTENSIONS)}), but "
            f"{'it is a file' if root.exists() else 'it does not exist'}. Check the path."
        )
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in root.glob(pattern) if p.is_file() and is_image_file(p))


def _check_file(path: Path) -> None:
    """Fail early with a precise message for the common non-decoding problems."""
    if not path.exists():
        if path.is_symlink():
            raise ImageReadError(
                f"{path}: a symbolic link to {os.readlink(path)} that cannot be followed (missing target or "
                "a link loop); fix or remove the link"
            )
        raise ImageReadError(
            f"{path}: file not found. Check the path (relative paths start at the working directory)."
        )
    if not path.is_file():
        raise ImageReadError(_not_a_regular_file(path))
    if not os.access(path, os.R_OK):
        raise ImageReadError(
            f"{path}: permission denied (the file is not readable by this user). Fix its permissions, "
            f"e.g. `chmod a+r {path}`."
        )
    if path.stat().st_size == 0:
        raise ImageReadError(
            f"{path}: the file is empty (0 bytes), probably an interrupted copy or download. "
            "Copy it again or remove it."
        )


def _not_a_regular_file(path: Path) -> str:
    """What ``path`` (there, but no regular file) is instead, and what to do about it."""
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        return f"{path}: a folder, not an image file; put the image file there instead, or give another path"
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )
    return f"{path}: {kind}, not an image file; replace it with the image file or remove it"


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


# ---------------------------------------------------------------------------------------------------------
# TIFF (tifffile)
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# PIL formats
# ---------------------------------------------------------------------------------------------------------


#: Held while Pillow opens a file: :func:`_open_pil` may lift Pillow's global pixel limit for that one call.
_PIL_LIMIT_LOCK = threading.Lock()


def _open_pil(path: Path, max_megapixels: float | None = None) -> Image.Image:
    """Open ``path`` with Pillow (header only), refusing an image above ``max_megapixels`` from its header
    (:func:`_check_megapixels`). With a ``max_megapixels`` (``inf``: no limit), that limit replaces
    Pillow's own decompression-bomb limit (about 179 megapixels, ``2 * PIL.Image.MAX_IMAGE_PIXELS``), lifted
    for this call: it refused a 192-megapixel mosaic whatever ``max_megapixels`` allowed, and its advice was
    to change Pillow's settings in code. Without one, Pillow's limit applies.

    Pillow reads its limit from a module global when a file is opened, so the limit is lifted under a lock
    that every opening here takes (opening parses the header only: the lock is held briefly).
    """
    im = _open_pil_unchecked(path, lift_pillow_limit=max_megapixels is not None)
    try:
        _check_megapixels(path, im.width, im.height, max_megapixels)
    except ImageReadError:
        im.close()
        raise
    return im


def _open_pil_unchecked(path: Path, lift_pillow_limit: bool) -> Image.Image:
    """:func:`_open_pil` without the caller's size check."""
    try:
        with warnings.catch_warnings(), _PIL_LIMIT_LOCK:
            # Only the hard limit (DecompressionBombError) matters; callers use max_megapixels for theirs.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if not lift_pillow_limit:
                return Image.open(path)
            default, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = default
    except Image.DecompressionBombError as err:
        raise ImageReadError(_bomb_message(path, err)) from err
    except UnidentifiedImageError as err:
        known = _not_an_image_but(path)
        if known:
            raise ImageReadError(f"{path}: {known}") from err
        raise ImageReadError(
            f"{path}: not an image PIL can identify (wrong extension, or not an image file at all). "
            f"Expected one of {', '.join(IMAGE_EXTENSIONS)}; remove the file or convert it."
        ) from err
    except PermissionError as err:
        raise ImageReadError(f"{path}: permission denied ({err}). Fix the file's permissions.") from err
    except OSError as err:
        raise ImageReadError(f"{path}: could not open the file ({err}).") from err


def _not_an_image_but(path: Path) -> str:
    """What a file that is no image is, with what to do, when its first bytes tell ("" otherwise): a Git
    LFS pointer (a clone without ``git lfs pull``), an HTML page saved under an image's name (a failed
    download: a login or error page) and a HEIC or AVIF photo (a phone's) were all told "remove the file or
    convert it", which for the first two loses the image the user meant to have."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return ""
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return (
            "a Git LFS pointer file, not the image itself: the repository was cloned without its large "
            "files. Fetch them with `git lfs pull` in the clone (git-lfs installed), then run again."
        )
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return (
            "an HTML page saved under an image's name, not an image: the download probably got an "
            "error or login page. Download the image again (check the link, or log in first)."
        )
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis"):
        return (
            "a HEIC/HEIF or AVIF image (as phones save photos), which is not read here: convert it to JPEG, "
            "PNG or TIFF first."
        )
    return ""


def _decode_pil(path: Path, im: Image.Image) -> Image.Image:
    """Decode pixels and apply EXIF orientation; truncated/corrupt data raises ImageReadError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            # exif_transpose returns a rotated copy (or the same image when no orientation is set).
            return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as err:
        raise ImageReadError(_bomb_message(path, err)) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise _corrupt(path, err) from err


def _corrupt(path: Path, err: Exception) -> ImageReadError:
    """The error for an image whose data could not be decoded (Pillow's or imagecodecs' reason quoted)."""
    return ImageReadError(
        f"{path}: the image data is truncated or corrupt ({err}). Copy or export the file again; "
        "partially written files are not read."
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


def _pil_to_native(path: Path, im: Image.Image) -> np.ndarray:
    """Decoded PIL image -> (H, W, 1 or 3) array: uint8, uint16 (16-bit), or float32 in [0, 1] (mode F).

    Alpha is dropped after fully transparent pixels are made black (:func:`_transparent_to_black`).
    """
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))[:, :, None]
    if mode == "LA":
        grey = np.asarray(im.getchannel("L"))[:, :, None]
        return _transparent_to_black(grey, np.asarray(im.getchannel("A")))
    if mode in ("P", "PA"):
        # Palette images: grey palettes stay 1 channel so a grey PNG saved with a palette is still grey.
        rgba = np.asarray(im.convert("RGBA"))  # a palette's transparency becomes alpha
        rgb = _transparent_to_black(rgba[:, :, :3], rgba[:, :, 3])
        if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]):
            return rgb[:, :, :1]
        return rgb
    if mode in ("RGBA", "La", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"))
        return _transparent_to_black(rgba[:, :, :3], rgba[:, :, 3])
    if mode in ("RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(
                f"{path}: 32-bit integer pixels outside 0..65535 (mode {mode}) are not supported. "
                "Save the image as 8- or 16-bit."
            )
        return arr.astype(np.uint16)[:, :, None]
    if mode == "F":
        return _unit_float(path, np.asarray(im, dtype=np.float32))[:, :, None]
    raise ImageReadError(
        f"{path}: unsupported image mode {mode!r} (expected greyscale, grey+alpha, RGB or RGBA, 8 or 16 "
        "bit). Convert the image to 8-bit RGB or greyscale."
    )


def pil_image_native(im: Image.Image, name: str = "the PIL image") -> np.ndarray:
    """An image already opened with PIL (``Image.open(path)``, ``Image.fromarray(...)``) as
    :func:`read_image_native` reads its file: EXIF orientation applied, alpha dropped (fully transparent
    pixels black), 12-bit data in 16 bits widened (:func:`widen_12_bit`); ``(H, W, 1 or 3)`` uint8, uint16
    or float32 in [0, 1]. (PIL itself reduces a 16-bit colour PNG to 8 bits: pass the path for all 16.)

    Raises:
        ImageReadError: Truncated or corrupt data, a mode that is not an image's, or an image closed before
            it was given (``Image.close()``, or the end of its ``with Image.open(...)`` block), naming
            ``name``.
    """
    where = Path(name)
    closed = ImageReadError(
        f"{name} was closed (Image.close(), or the end of its `with Image.open(...)` block) before its "
        "pixels were read: map it inside the `with` block, or give the file's path"
    )
    # Closed before decoding: Pillow's load() fails with a bare AssertionError (its file is gone).
    if getattr(im, "tile", None) and getattr(im, "fp", True) is None:
        raise closed
    try:
        decoded = _decode_pil(where, im)
    except ImageReadError as err:
        # Closed after decoding: Pillow raises ValueError("Operation on closed image"), not a corrupt file.
        if isinstance(err.__cause__, ValueError) and "closed image" in str(err.__cause__):
            raise closed from err.__cause__
        raise
    return np.ascontiguousarray(widen_12_bit(_pil_to_native(where, decoded)))


def scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """uint8 / 255, uint16 / 65535, float unchanged -> C-contiguous float32 (the range [0, 1])."""
    if arr.dtype == np.uint8:
        return np.multiply(arr, np.float32(1.0 / 255.0), dtype=np.float32)
    if arr.dtype == np.uint16:
        return np.multiply(arr, np.float32(1.0 / 65535.0), dtype=np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


#: Largest value of 12-bit data: rover cameras (Navcam, Hazcam, Mastcam) digitise 12 bits, and their
#: products often store them in 16-bit files without using the top 4 bits.
TWELVE_BIT_MAX = 4095


def widen_12_bit(arr: np.ndarray) -> np.ndarray:
    """A ``uint16`` array whose values all fit in 12 bits, stretched to the 16-bit range (4095 -> 65535).

    Why: dividing such data by 65535 leaves the whole image 16 times too dark (a mid-grey of 2048 reads
    as 0.03), which the network has never seen. A 16-bit image that uses the full range, or any value above
    4095, is returned unchanged. The decision is made once per file, never per crop, so the tiles of one
    image are always scaled alike. (A genuinely 16-bit image darker than 1/16 of full scale everywhere is
    brightened too; such an exposure is unusable as it is.)
    """
    if arr.dtype != np.uint16 or not arr.size or int(arr.max()) > TWELVE_BIT_MAX:
        return arr
    return ((arr.astype(np.uint32) * 65535 + TWELVE_BIT_MAX // 2) // TWELVE_BIT_MAX).astype(
        np.uint16
    )  # rounded


def read_image_native(path: str | os.PathLike[str], max_megapixels: float | None = None) -> np.ndarray:
    """Like :func:`read_image` but without scaling: ``(H, W, C)`` as stored.

    Returns ``uint8`` for 8-bit files, ``uint16`` for 16-bit files (12-bit data in them stretched to 16 bits,
    :func:`widen_12_bit`) and float32 in [0, 1] for float TIFFs and TIFFs tagged 9-15 bits per sample
    (boolean TIFFs become uint8 0/255; 2-7-bit ones uint8 stretched to 0-255). Useful
    to cache 8-bit images in a quarter of the memory; pass the result through :func:`scale_to_unit` to get
    :func:`read_image`'s output.

    Raises:
        ImageReadError: as :func:`read_image`.
    """
    p = Path(path)
    arr, note = _read_native(p, max_megapixels)
    if note is not None and os.fspath(p) not in _WARNED_READ_NOTES and not _in_loader_worker():
        _WARNED_READ_NOTES.add(os.fspath(p))
        log.warning("%s", note)
    return np.ascontiguousarray(widen_12_bit(arr))


def read_image_noted(
    path: str | os.PathLike[str], max_megapixels: float | None = None
) -> tuple[np.ndarray, str | None]:
    """:func:`read_image` and a note on how the file was read (:func:`bit_depth_note`,
    :func:`tiff_pages_note`; None when there is nothing to say), for a caller that reports it itself
    (``predict.py``, whose files are read in loader workers, where :func:`read_image_native` says nothing).
    """
    arr, note = _read_native(Path(path), max_megapixels)
    return scale_to_unit(np.ascontiguousarray(widen_12_bit(arr))), note


def _read_native(p: Path, max_megapixels: float | None) -> tuple[np.ndarray, str | None]:
    """The file's samples as stored (:func:`read_image_native` before :func:`widen_12_bit`) and the notes
    on how it was read, joined (None when there are none)."""
    _check_file(p)
    if p.suffix.lower() in TIFF_EXTENSIONS:
        return _read_tiff_noted(p, max_megapixels)
    im = _open_pil(p, max_megapixels)
    if im.format == "TIFF":  # a TIFF named .png or .jpg: Pillow kept the high byte of 16-bit samples
        im.close()
        return _read_tiff_noted(p, max_megapixels)
    with im:
        if _is_16_bit_colour_png(im):
            arr = _read_16_bit_colour_png(p, _orientation_tag(im))
        else:
            arr = _pil_to_native(p, _decode_pil(p, im))
    return arr, bit_depth_note(p, arr)


def _read_tiff_noted(p: Path, max_megapixels: float | None) -> tuple[np.ndarray, str | None]:
    arr = _read_tiff(p, max_megapixels)
    notes = [n for n in (tiff_pages_note(p), bit_depth_note(p, arr)) if n is not None]
    return arr, ("; ".join(notes) if notes else None)


def warn_of_read_notes(path: str | os.PathLike[str]) -> None:
    """Say once per process what :func:`read_image_native` would say of a file (:func:`tiff_pages_note`,
    :func:`bit_depth_note`), reading its pixels only where the header shows 16-bit samples. For a training
    source read without a cache, whose images are decoded in loader workers (where
    :func:`read_image_native` says nothing), its set-up calls this from the main process."""
    p = Path(path)
    if os.fspath(p) in _WARNED_READ_NOTES:
        return
    if _header_says_16_bit(p):
        read_image_native(p)  # says both notes, from this process
        return
    note = tiff_pages_note(p) if p.suffix.lower() in TIFF_EXTENSIONS else None
    if note is not None:
        _WARNED_READ_NOTES.add(os.fspath(p))
        log.warning("%s", note)


#: Pillow modes of one-channel images (grey, grey with alpha, 1-bit, 16/32-bit integer, float).
_ONE_CHANNEL_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def header_says_one_channel(path: str | os.PathLike[str]) -> bool:
    """Whether the file's header declares a grey image (one channel, with or without alpha), so that it is
    known grey without decoding; False for any other (colour, palette, TIFF) or unreadable file."""
    p = Path(path)
    if p.suffix.lower() in TIFF_EXTENSIONS:
        return False
    try:
        with Image.open(p) as im:
            return im.format != "TIFF" and im.mode in _ONE_CHANNEL_MODES
    except Exception:  # unreadable here: the caller decodes it, which says why
        return False


def _header_says_16_bit(path: Path) -> bool:
    """Whether the file's header declares 16-bit integer samples (a TIFF's first page, a PNG's mode or raw
    mode); False where it cannot be read (set-up says why elsewhere)."""
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            with tifffile.TiffFile(path) as tif:
                return bool(tif.pages) and np.dtype(tif.pages[0].dtype) == np.uint16
        with Image.open(path) as im:
            return im.mode.startswith("I;16") or im.mode == "I" or _is_16_bit_colour_png(im)
    except Exception:  # noqa: BLE001 - an unreadable header: read_image says why where it is read
        return False


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


#: Files :func:`read_image_native` has warned about in this process (an uncached training source reads a
#: file for every crop drawn from it).
_WARNED_READ_NOTES: set[str] = set()

#: The key of :data:`_WARNED_READ_NOTES` for the one warning about 1-bit masks (:func:`read_mask`).
_ONE_BIT_MASK = "<1-bit mask>"

#: The key of :data:`_WARNED_READ_NOTES` for the one warning about palette masks showing the project's class
#: colours at other classes' indices (:func:`_palette_ids`).
_PROJECT_COLOURS_ELSEWHERE = "<palette mask of project colours out of order>"


def _in_loader_worker() -> bool:
    """Whether this is a DataLoader worker process: each has its own memory of what was said, and training
    starts new ones every epoch, so a warning there was repeated for every worker and epoch."""
    import torch.utils.data

    return torch.utils.data.get_worker_info() is not None


def bit_depth_note(path: Path, arr: np.ndarray) -> str | None:
    """A warning for a 16-bit image whose samples all fit in 8 bits (at most 255): 8-bit values saved in a
    16-bit file, which read 16 times too dark (as 12-bit data, /4095); None otherwise. Only that case: the
    darkest 12- or 16-bit exposures reach 1023 or 16383, so 10- and 14-bit data cannot be told from them.
    The scaling is not changed."""
    if arr.dtype != np.uint16 or not arr.size:
        return None
    top = int(arr.max())
    if top > 255:
        return None
    return (
        f"{path}: its 16-bit samples all fit in 8 bits (at most {top}); it is read as 12-bit data (/4095). "
        "If it holds 8-bit values saved in a 16-bit file, it reads 16 times too dark: save it as 8-bit"
    )


def _is_16_bit_colour_png(im: Image.Image) -> bool:
    """Whether ``im`` is a PNG of 16-bit RGB or RGBA samples, which Pillow decodes to 8 bits (its raw mode
    ``RGB;16B`` / ``RGBA;16B``)."""
    tiles = getattr(im, "tile", None) or []  # (codec, extents, offset, args): Pillow < 11 has no t.args
    return im.format == "PNG" and any(
        str(t[3]).endswith(";16B") and im.mode in ("RGB", "RGBA") for t in tiles
    )


def _read_16_bit_colour_png(path: Path, orientation: int) -> np.ndarray:
    """A 16-bit RGB(A) PNG as uint16 ``(H, W, 3)``, decoded with imagecodecs (libpng), turned by its EXIF
    orientation, alpha applied as for other images.

    Why: Pillow keeps only the high byte of each sample, so 12-bit rover data stored in 16 bits came out
    16 times too dark (values of at most 4095/65535 before :func:`widen_12_bit` could see them) and was
    predicted without a word; grey 16-bit PNGs and 16-bit TIFFs were already read whole.
    """
    try:
        arr = np.asarray(imagecodecs.png_decode(path.read_bytes()))
    except Exception as err:  # imagecodecs raises its own PngError
        raise _corrupt(path, err) from err
    arr = _oriented(arr if arr.ndim == 3 else arr[:, :, None], orientation)
    return _to_gray_or_rgb(path, np.ascontiguousarray(arr), alpha=arr.shape[2] in (2, 4))


def read_image(path: str | os.PathLike[str], max_megapixels: float | None = None) -> np.ndarray:
    """Read an image file as ``float32`` ``(H, W, C)`` in ``[0, 1]`` with ``C`` in ``{1, 3}``.

    8-bit data is divided by 255, 16-bit by 65535 (12-bit data stored in 16-bit files, every value at most
    4095, by 4095: :func:`widen_12_bit`), float TIFFs are clipped to ``[0, 1]`` (NaN -> 0, +inf -> 1; a
    float image whose values exceed 2 is on another scale and refused, :func:`_unit_float`).
    (16-bit colour PNGs, which PIL reduces to 8 bits, are decoded with imagecodecs instead.)
    Greyscale stays 1 channel, grey+alpha drops alpha (1 channel), RGBA drops alpha (3 channels), after
    fully transparent pixels are made black (:func:`_transparent_to_black`; a TIFF's fourth band only when
    its ExtraSamples tag says alpha). The EXIF
    orientation tag is applied, so the array is the image as a viewer shows it. Truncated files raise
    (PIL's ``LOAD_TRUNCATED_IMAGES`` is deliberately left off: a half-decoded image is silent garbage).

    Args:
        path: ``.jpg``/``.jpeg``/``.png``/``.tif``/``.tiff`` file (other formats PIL reads work as well).
        max_megapixels: refuse images larger than this (checked from the header before decoding); it
            replaces PIL's own decompression-bomb limit (about 179 megapixels), so ``inf`` sets no limit.
            ``None`` keeps only PIL's limit.

    Returns:
        ``np.ndarray`` float32, shape ``(H, W, C)``, C-contiguous.

    Raises:
        ImageReadError: missing, empty, unreadable, corrupt, truncated, too large or unsupported file.
    """
    return scale_to_unit(read_image_native(path, max_megapixels))


def image_size(path: str | os.PathLike[str], max_megapixels: float | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image, after EXIF orientation, read from the header only (no decoding).

    ``max_megapixels`` as in :func:`read_image` (``inf``: no limit, not even Pillow's; None: Pillow's).

    Raises:
        ImageReadError: as :func:`read_image` for files that cannot be opened or are too large.
    """
    p = Path(path)
    _check_file(p)
    if p.suffix.lower() in TIFF_EXTENSIONS:
        height, width, _, _ = _open_tiff_first_page(p)
        _check_megapixels(p, width, height, max_megapixels)  # as for the files Pillow opens below
        orientation = _tiff_orientation(p)
    else:
        with _open_pil(p, max_megapixels) as im:
            width, height = im.size
            orientation = _orientation_tag(im)
    # Orientations 5-8 swap rows and columns (transpose / 90-degree rotations).
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _orientation_tag(im: Image.Image) -> int:
    """The EXIF Orientation that ``ImageOps.exif_transpose`` applies: 2-8, else 1 (none, 1, out of range)."""
    try:
        orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation tag
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
    return orientation if orientation in range(2, 9) else 1


def exif_orientation(path: str | os.PathLike[str], max_megapixels: float | None = None) -> int:
    """Orientation tag (1-8) that :func:`read_image` applied to this file (EXIF's, or a TIFF's own tag 274,
    which EXIF borrowed); 1 for untagged files.

    Pixel coordinates of the image as read (rows, columns as displayed) relate to the stored raster, on which
    a camera is calibrated, through this tag (:mod:`marsunits.boundary.camera.oriented`). ``max_megapixels``
    as in :func:`read_image`: Pillow decodes a PNG whose EXIF block follows its pixels to find the tag.

    Raises:
        ImageReadError: as :func:`read_image` for files that cannot be opened.
    """
    p = Path(path)
    _check_file(p)
    if p.suffix.lower() in TIFF_EXTENSIONS:
        height, width, _, _ = _open_tiff_first_page(p)
        _check_megapixels(p, width, height, max_megapixels)  # as for the files Pillow opens below
        return _tiff_orientation(p)
    with _open_pil(p, max_megapixels) as im:  # a PNG's EXIF may lie after its pixels: decoded to find it
        return _orientation_tag(im)


def turned_mask_note(image: str | os.PathLike[str], image_hw: Sequence[int], mask_hw: Sequence[int]) -> str:
    """The sentence explaining a mask of the wrong size when it was drawn on a turned photo's stored pixels.

    Args:
        image: The image file.
        image_hw: ``(H, W)`` of the image as read (its EXIF orientation applied, as :func:`read_image` does).
        mask_hw: ``(H, W)`` of its mask as read.

    Returns:
        When the mask's size is the image's turned by 90 degrees and the image's orientation tag (5-8, see
        :func:`exif_orientation`) is what turns it when read: one sentence, with a leading space, naming the
        tag and the fix; otherwise (also when the tag cannot be read) ``""``. Both files had the same size on
        disk, so "the sizes differ" alone read as a contradiction.
    """
    if tuple(image_hw[:2]) != tuple(mask_hw[:2])[::-1] or tuple(image_hw[:2]) == tuple(mask_hw[:2]):
        return ""
    try:
        tag = exif_orientation(image)
    except (ValueError, OSError):  # ImageReadError too: the note is a hint, never a second error
        return ""
    if tag not in (5, 6, 7, 8):
        return ""
    return (
        f" The image's EXIF orientation tag ({tag}) turns it by 90 degrees when read, and the mask has the "
        "stored (unturned) size: draw the mask on the image as displayed, or save the image without the tag."
    )


#: Mask formats that change values: lossy compression moves class ids along every unit boundary.
_LOSSY_MASK_EXTENSIONS = (".jpg", ".jpeg")


def _ids_fit_8_bit(p: Path, arr: np.ndarray) -> np.ndarray:
    """A 16- or 32-bit single-channel mask whose values are all 0-255, as uint8; otherwise a clear error."""
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        worst = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())  # the value out of range
        raise ImageReadError(
            f"{p}: mask values reach {worst} (a {arr.dtype} image), but class ids are 0-255. "
            "Save the ids as an 8-bit greyscale PNG."
        )
    return arr.astype(np.uint8)


def _whole_float_ids(p: Path, arr: np.ndarray) -> np.ndarray:
    """A floating-point single-channel mask (GIS tools write label rasters as Float32 by default: QGIS'
    Rasterize) whose values are all whole ids 0-255, as uint8, as a 16-bit file's ids are read; otherwise a
    clear error naming the first value that is no id (a fraction from an interpolating resample, NaN as
    no-data, a value beyond 255). It was refused as not a single-channel image, which it was."""
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 255) | (arr != np.round(arr))
    if not bad.any():
        return arr.astype(np.uint8)
    stored = arr[bad].flat[0]
    # As stored, in its own precision: printed to 6 digits, a float32 0.99999994 read "1", a whole id.
    shown, value = str(stored), float(stored)
    if not np.isfinite(value):
        why = "no-data (NaN or infinity): give unlabelled pixels the ignore id 255"
    elif 0 < value < 255 and value != round(value):
        why = "a fraction: the mask was resampled with interpolation; resample ids with nearest neighbour"
    else:
        why = "beyond the class ids 0-255"
    raise ImageReadError(
        f"{p}: mask value {shown} (a {arr.dtype} image) is {why}. Class ids are whole numbers 0-255: save "
        "them as an 8-bit greyscale PNG (or a Byte / UInt8 TIFF)."
    )


def _palette_ids(p: Path, decoded: Image.Image) -> np.ndarray:
    """Ids of a palette (``P``) mask: its indices, as in colour-coded masks (Pascal VOC's convention).

    A palette whose used entries are all grey *and* show other values than their indices is refused: the
    labeller saw the grey values (index 0 shown as grey 1 may mean rough terrain), while a tool that saves
    classes 0/1 as black/white means the indices, and nothing in the file tells the two apart.

    Raises:
        ImageReadError: Such a grey palette, naming both readings and the fix.
    """
    indices = np.array(decoded, dtype=np.uint8)
    palette = decoded.getpalette() or []
    used = [int(i) for i in np.unique(indices)]
    entries = [palette[3 * i : 3 * i + 3] for i in used]
    grey = all(len(e) == 3 and e[0] == e[1] == e[2] for e in entries)
    if grey and any(e[0] != i for e, i in zip(entries, used, strict=True)):
        shown = {i: e[0] for e, i in zip(entries, used, strict=True)}
        raise ImageReadError(
            f"{p}: a palette mask whose grey palette shows other values than its indices ({shown}, index: "
            "grey shown), so its class ids are ambiguous. Save the mask as plain 8-bit greyscale (PIL mode "
            "L) holding the ids, e.g. Image.fromarray(ids).save(...)."
        )
    if _PROJECT_COLOURS_ELSEWHERE not in _WARNED_READ_NOTES and not _in_loader_worker():
        misplaced = _project_colours_elsewhere(used, [tuple(e) for e in entries])
        if misplaced:
            _WARNED_READ_NOTES.add(_PROJECT_COLOURS_ELSEWHERE)
            log.warning(
                "%s: a palette mask whose palette shows the project's class colours at other classes' "
                "indices (%s), read as its indices, the class ids: a colour mask saved with a palette (an "
                "editor's indexed colour) numbers its colours in the order found, and trains on the wrong "
                "classes. "
                "If the colours are the classes, save each colour's class id as 8-bit greyscale (PIL mode "
                "L), e.g. Image.fromarray(ids).save(...); if the indices are, give the palette other "
                "colours. Said of the first such mask only.",
                p,
                "; ".join(misplaced),
            )
    return indices


def _project_colours_elsewhere(used: Sequence[int], colours: Sequence[tuple[int, ...]]) -> list[str]:
    """Which of a palette mask's ``used`` indices (of palette ``colours``) show another class's colour in the
    project's palette (:data:`~marsunits.constants.PALETTE`, or the default until 2026-12-06, whose
    rough_olivine was amber): ``"index 0 shows rough_olivine's colour (40, 200, 80)"``; empty when none.

    The rule is kept cheap and narrow, to leave legitimate palette masks unsaid: a mask drawn in the
    project's colours and quantised shows those colours exactly, at indices in the order found. An index
    showing its own class's colour is in order; other colours (a data set's, Pascal VOC's) say nothing. The
    grey of ``other``, (150, 150, 150), is a common palette colour, so it counts alone only beside another
    index showing a project colour. A mask quantised in the project's order, a custom palette of a model
    (its checkpoint's ``palette``) or an ignore of another colour than black are not seen.
    """
    palettes = (PALETTE, PALETTE_UNTIL_2026_12_06)
    grey = PALETTE[2]
    shown, misplaced = 0, []
    for index, rgb in zip(used, colours, strict=True):
        classes = {k for palette in palettes for k, colour in enumerate(palette) if colour == rgb}
        shown += bool(classes)
        if classes and index not in classes:
            misplaced.append((index, min(classes), rgb))
    if not misplaced or (shown < 2 and all(rgb == grey for _, _, rgb in misplaced)):
        return []
    return [f"index {i} shows {CLASS_NAMES[k]}'s colour {rgb}" for i, k, rgb in misplaced]


def read_mask(path: str | os.PathLike[str], max_megapixels: float | None = None) -> np.ndarray:
    """Read a label mask as ``uint8`` ``(H, W)`` ids, stored values unchanged.

    Accepts single-channel PNG/TIFF: 8-bit greyscale (``L``), 16-bit whose values fit in 0-255, or
    palette (``P``: the palette indices are the ids; a grey palette showing other values is refused, see
    :func:`_palette_ids`). EXIF orientation is applied as in :func:`read_image` so image and mask
    stay aligned. ``max_megapixels`` as in :func:`read_image` (``predict.py`` passes its option for labels
    and its own masks, so a mosaic it accepts has its mask and label read too).

    Raises:
        ImageReadError: the file is missing/corrupt, a JPEG (lossy: ids change along boundaries), or not a
            single channel of ids 0-255 (e.g. a colour-coded RGB mask, which must be converted to ids first).
    """
    p = Path(path)
    _check_file(p)
    if p.suffix.lower() in _LOSSY_MASK_EXTENSIONS:
        raise ImageReadError(
            f"{p}: a JPEG cannot hold a mask: its lossy compression changes the class ids along every "
            "boundary. Save the mask as PNG (or TIFF) from the labelling tool's original ids."
        )
    if p.suffix.lower() in TIFF_EXTENSIONS:
        height, width, samples, _ = _open_tiff_first_page(p)
        _check_megapixels(p, width, height, max_megapixels)
        try:
            arr = tifffile.imread(p, key=0)
        except Exception as err:
            raise _tiff_decode_error(p, err, "Export it again.") from err
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.reshape(height, width)
        if arr.ndim == 2 and arr.dtype in (np.uint16, np.int16, np.int32, np.uint32):
            arr = _ids_fit_8_bit(p, arr)
        if arr.ndim == 2 and arr.dtype.kind == "f":
            arr = _whole_float_ids(p, arr)
        if arr.ndim != 2 or arr.dtype != np.uint8:
            raise ImageReadError(
                f"{p}: a mask must be a single-channel image of class ids; found shape {arr.shape}, "
                f"dtype {arr.dtype}. Save the ids as an 8-bit greyscale PNG."
            )
        # Turned by its Orientation tag as read_image turns a TIFF image, so image and mask stay aligned.
        return np.ascontiguousarray(_oriented(arr[:, :, None], _tiff_orientation(p))[:, :, 0])
    im = _open_pil(p, max_megapixels)
    with im:
        decoded = _decode_pil(p, im)
        if decoded.mode == "P":
            return _palette_ids(p, decoded)
        if decoded.mode.startswith("I"):  # 16-bit (I;16) or 32-bit (I) greyscale
            return _ids_fit_8_bit(p, np.asarray(decoded))
        if decoded.mode == "1":
            # 1-bit greyscale: what PNG optimisers (and PIL, for a boolean array) make of a mask holding only
            # 0 and 255; its white is 255. It was refused as "mode '1' with 1 channel(s)", a single channel.
            # Also what PIL makes of a boolean class-0/1 mask (Image.fromarray(mask == 1)), whose white
            # meant class 1: read as 255 it silently became "ignore", so it is said, once a process.
            ids = np.array(decoded.convert("L"), dtype=np.uint8)
            if (
                (ids == IGNORE_INDEX).any()
                and _ONE_BIT_MASK not in _WARNED_READ_NOTES
                and not _in_loader_worker()
            ):
                _WARNED_READ_NOTES.add(_ONE_BIT_MASK)
                log.warning(
                    "%s: a 1-bit (black and white) mask: its white is read as 255, unlabelled (ignored), as "
                    "every 1-bit mask is. If white means class 1 (rough_olivine), save the masks as 8-bit "
                    "greyscale of class ids, e.g. Image.fromarray(mask.astype(np.uint8)).save(...)",
                    p,
                )
            return ids
        if decoded.mode != "L":
            bands = len(decoded.getbands())
            raise ImageReadError(
                f"{p}: a mask must be a single-channel image of class ids (PIL mode L or P); found "
                f"mode {decoded.mode!r} with {counted(bands, 'channel')}{_what_colour_mask_holds(decoded)}"
            )
        return np.array(decoded, dtype=np.uint8)


#: The most colours a mask refused as colour-coded is told, each with its share of the pixels.
_COLOURS_SAID = 8


def _what_colour_mask_holds(decoded: Image.Image) -> str:
    """The end of the refusal of a mask in colour (RGB or RGBA, alpha aside): ids saved in three equal
    channels (an image editor's export of grey) said as the ids; a few colours (a labelling tool's colour
    code) said as those colours, with their shares; else the generic advice. It was the generic advice for
    all ("if this is a colour-coded mask, convert the colours"), naming no colour, and sent a mask of ids
    saved in colour to convert colours it does not have."""
    generic = (
        ". If this is a colour-coded mask, convert the colours to ids first; save ids as an 8-bit "
        "greyscale PNG."
    )
    if decoded.mode not in ("RGB", "RGBA"):
        return generic
    rgb = np.asarray(decoded.convert("RGB"), dtype=np.uint8)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
        ids = np.unique(rgb[..., 0])
        shown = some_of([str(int(v)) for v in ids], _COLOURS_SAID)
        # An RGBA mask is said to have 4 channels just before: its colour ones are the 3 equal.
        equal = "3 channels" if decoded.mode == "RGB" else "3 colour channels (R, G, B; alpha aside)"
        return (
            f", but its {equal} are equal: ids [{shown}] saved in colour. Save one channel as an 8-bit "
            "greyscale PNG (mode L), e.g. Image.fromarray(np.asarray(Image.open(path))[..., 0]).save(path)."
        )
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, counts = np.unique(packed, return_counts=True)
    if len(colours) > _COLOURS_SAID:
        return f" and {len(colours)} colours{generic}"
    order = np.argsort(-counts, kind="stable")
    listed = ", ".join(
        f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) {round(100 * n / packed.size)} %"
        for c, n in zip(colours[order].tolist(), counts[order].tolist(), strict=True)
    )
    return (
        f", a colour-coded mask of {len(colours)} colours: {listed}. Convert each colour to its class id "
        "(0, 1, 2; 255 for unlabelled) and save the ids as an 8-bit greyscale PNG."
    )


def to_channels(img: np.ndarray, n: int) -> np.ndarray:
    """Convert ``(H, W, C)`` to ``(H, W, n)`` channels.

    1 -> 3 replicates the grey channel; 3 -> 1 is ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B); equal
    counts return the input unchanged (same object). The dtype is preserved for float input.

    Raises:
        ValueError: ``img`` is not 3-D, or the conversion is not one of the above.
    """
    if img.ndim != 3:
        raise ValueError(f"to_channels expects an (H, W, C) array, got shape {tuple(img.shape)}.")
    c = img.shape[2]
    if c == n:
        return img
    if c == 1 and n == 3:
        return np.repeat(img, 3, axis=2)
    if c == 3 and n == 1:
        luma = img.astype(np.float32, copy=False) @ _LUMA_601
        return luma[:, :, None].astype(img.dtype if img.dtype.kind == "f" else np.float32, copy=False)
    raise ValueError(
        f"cannot convert an image with {counted(c, 'channel')} to {n}: only 1<->3 and identity are "
        "supported. Set in_channels to 1 (greyscale) or 3 (colour)."
    )


def write_png_atomic(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a ``uint8`` ``(H, W)`` or ``(H, W, 3)`` array as PNG so the file is complete or absent.

    The PNG is written to a temporary file in the destination folder and moved into place with
    ``os.replace`` (atomic on POSIX and Windows within one filesystem), so an interrupted run never leaves a
    half-written file under the final name. Parent folders are created.

    Returns:
        The destination path.

    Raises:
        ValueError: wrong dtype or shape.
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png_atomic expects uint8, got {arr.dtype}; convert (e.g. np.clip + astype).")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"write_png_atomic expects (H, W) or (H, W, 3), got shape {arr.shape}.")
    image = Image.fromarray(np.ascontiguousarray(arr))
    return atomic_write(path, lambda fh: image.save(fh, format="PNG"))
