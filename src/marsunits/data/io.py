"""Image file IO: one place that turns image files on disk into arrays with a fixed contract.

Contracts:

* :func:`read_image` returns ``float32`` ``(H, W, C)`` with values in ``[0, 1]`` and ``C`` in ``{1, 3}``.
  Row 0 is the top of the image *as displayed* (EXIF orientation applied), column 0 its left edge.
* Every failure a user can hit raises :class:`ImageReadError` (a ``ValueError``) whose message names the
  file, says what was wrong and what to do about it.

PIL decodes JPEG/PNG (and reads their headers lazily); TIFF goes through ``tifffile``
(:mod:`marsunits.data.tiff_io`) because PIL does not handle float or multi-sample 16-bit TIFFs. Label masks
are read by :func:`marsunits.data.mask_io.read_mask` (``uint8`` ids exactly as stored), which opens files
through this module (this module does not import it). The error and the size limit shared with those readers
are :mod:`marsunits.data.read_checks`; the array conventions, :mod:`marsunits.data.decoded_pixels`.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from marsunits.atomic import atomic_write
from marsunits.data.decoded_pixels import (
    TWELVE_BIT_MAX,
    _oriented,
    _to_gray_or_rgb,
    _transparent_to_black,
    _unit_float,
)
from marsunits.data.read_checks import _PIL_LIMIT_LOCK, ImageReadError, _bomb_message, _check_megapixels
from marsunits.data.tiff_io import _open_tiff_first_page, _read_tiff, _tiff_orientation, tiff_pages_note
from marsunits.errors import counted

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
    "to_channels",
    "warn_of_read_notes",
    "write_png_atomic",
]

#: File extensions (lower case) that are treated as images everywhere in the project.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
TIFF_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")

#: ITU-R BT.601 luma weights (R, G, B): the weights PIL's ``convert("L")`` uses too.
_LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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


# ---------------------------------------------------------------------------------------------------------
# PIL formats
# ---------------------------------------------------------------------------------------------------------


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


#: Files :func:`read_image_native` has warned about in this process (an uncached training source reads a
#: file for every crop drawn from it).
_WARNED_READ_NOTES: set[str] = set()


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
