"""Label-mask reading: :func:`read_mask` returns ``uint8`` ``(H, W)`` holding label ids exactly as stored
(no scaling), or refuses the file with an :class:`~marsunits.data.io.ImageReadError` naming it, what was
wrong and what to do (a JPEG, ids beyond 0-255 or not whole, an ambiguous grey palette, a colour-coded mask);
and the note explaining a mask drawn on a turned photo's stored pixels (:func:`turned_mask_note`).

Masks are opened and turned as :mod:`marsunits.data.io` reads images (TIFFs through
:mod:`marsunits.data.tiff_io`), so that image and mask stay aligned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, PALETTE, PALETTE_UNTIL_2026_12_06
from marsunits.data.decoded_pixels import _oriented
from marsunits.data.io import (
    _WARNED_READ_NOTES,
    TIFF_EXTENSIONS,
    _check_file,
    _decode_pil,
    _in_loader_worker,
    _open_pil,
    exif_orientation,
)
from marsunits.data.read_checks import ImageReadError, _check_megapixels
from marsunits.data.tiff_io import _open_tiff_first_page, _tiff_decode_error, _tiff_orientation
from marsunits.errors import counted, some_of

log = logging.getLogger(__name__)

__all__ = ["read_mask", "turned_mask_note"]


#: The key of :data:`_WARNED_READ_NOTES` for the one warning about 1-bit masks (:func:`read_mask`).
_ONE_BIT_MASK = "<1-bit mask>"


#: The key of :data:`_WARNED_READ_NOTES` for the one warning about palette masks showing the project's class
#: colours at other classes' indices (:func:`_palette_ids`).
_PROJECT_COLOURS_ELSEWHERE = "<palette mask of project colours out of order>"


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
