"""Write prediction outputs: per-image files, the manifest, JSON reports; every file atomically.

Per input ``IN/<rel>/<stem>.<ext>`` (DESIGN.md) the files under ``OUT/<rel>/`` are
``<stem>.mask.png``, ``<stem>.overlay.png``, ``<stem>.thumb.jpg`` (the overlay shrunk for the gallery),
``<stem>.contact.geojson`` and optionally ``<stem>.prob.tif``.

Completion rule: an input is *done* when **all** its expected files exist (:meth:`OutputPaths.expected`:
the thumbnail is not one of them, so a folder predicted before thumbnails existed resumes without predicting
anything again; its images simply have none). Each file is written to a temporary name in its folder and
moved into place with ``os.replace``, so a file either exists complete or not at all; the set is written in
the order probabilities -> contact -> overlay -> thumbnail -> **mask last**, so an interrupted input lacks
at least its mask and is redone on the next run (its earlier files are simply overwritten). The mask alone
is therefore also a completion marker, and an input predicted again loses its old mask before any other
file is replaced: otherwise an interrupted re-prediction left the old image's mask beside the new image's
contact file, and the next run took the set for complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import shapely
import tifffile
from PIL import Image
from skimage.draw import polygon as fill_polygon

from marsunits.atomic import atomic_write, atomic_write_text
from marsunits.boundary.contact_io import ContactLine, write_contacts
from marsunits.constants import CONTACT_COLOR, IGNORE_COLOR, NUM_CLASSES, OTHER, PALETTE
from marsunits.data.io import write_png_atomic
from marsunits.errors import readable
from marsunits.user_paths import model_file_name

#: Columns of ``manifest.csv``, in order.
MANIFEST_FIELDS: tuple[str, ...] = (
    "path",
    "status",
    "message",
    "width",
    "height",
    "greyscale",
    "frac_smooth_volcanic",
    "frac_rough_olivine",
    "frac_other",
    "contact_length_px",
    "n_contacts",
    "seconds",
    "camera_error",
)

#: Overlay opacity of the unit colours.
OVERLAY_ALPHA = 0.4

#: Weights (summing to 256) of R, G, B in the grey that ``other`` is tinted over (ITU-R BT.601 luma): a grey
#: pixel is its own grey, so over a grey image ``other`` is tinted as the units are.
OTHER_GREY_WEIGHTS: tuple[int, int, int] = (77, 150, 29)

#: Contact colour at confidence 0 (white); at confidence 1 it is ``constants.CONTACT_COLOR`` (red).
LOW_CONFIDENCE_COLOR: tuple[int, int, int] = (255, 255, 255)

#: Longest side, in pixels, of ``<stem>.thumb.jpg``, the overlay as the gallery (``index.html``) shows it: a
#: card is 22em wide, so 512 px is sharp on a high-density screen (a panorama's is larger:
#: :data:`PANORAMA_ASPECT`). MarsScapes panoramas (2015-4629 px wide) give thumbnails of 40-49 kB against
#: overlays of 0.5-3.6 MB (4 of them, 2026-12-07). A constant, not a
#: ``predict.py`` option: the thumbnail is no result (nothing in ``prediction_settings.json`` depends on it)
#: and no part of an input's completion rule, so a changed size would not redo a folder's thumbnails anyway.
THUMBNAIL_PX = 512
#: An image at least this many times longer than it is wide (a panorama) is shown larger: its thumbnail keeps
#: a shorter side of ``THUMBNAIL_PX / PANORAMA_ASPECT`` pixels (171) up to ``PANORAMA_ASPECT * THUMBNAIL_PX``
#: (1536) along its length, and its gallery card takes a whole row. Fitted into ``THUMBNAIL_PX`` alone, a
#: 4629 x 512 MarsScapes panorama became a 512 x 57 strip, shown 39 px high in its 22em card (2026-12-07).
PANORAMA_ASPECT = 3
#: JPEG quality of the thumbnails (Pillow's scale, 1-95; its default is 75): the overlay's unit tints and
#: thin contact lines show fewer block artefacts at 85.
THUMBNAIL_QUALITY = 85

#: The per-image outputs, by kind; every file named ``<stem><suffix>`` is an output (cleanups, name checks).
SUFFIXES = {
    "mask": ".mask.png",
    "overlay": ".overlay.png",
    "thumb": ".thumb.jpg",
    "contact": ".contact.geojson",
    "prob": ".prob.tif",
}


def output_name_problem(output_dir: Path, rel: PurePosixPath) -> str | None:
    """Why the outputs of input ``rel`` cannot be named in ``output_dir`` (``<stem>.contact.geojson``, the
    longest, over the filesystem's name limit, 255 bytes), or None. Said before predicting, naming the fix:
    a stem of 240 characters was predicted, then failed with "[Errno 36] File name too long"."""
    longest = max(SUFFIXES.values(), key=len)
    name = os.fsencode(rel.stem + longest)
    try:
        limit = os.pathconf(output_dir if output_dir.is_dir() else output_dir.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(name) <= limit:
        return None
    return (
        f"its outputs' names (e.g. {rel.stem[:20]}...{longest}, {len(name)} bytes) are longer than the "
        f"filesystem allows ({limit} bytes): rename the input to a stem of at most {limit - len(longest)} "
        "bytes"
    )


def output_folder_clash(
    output_dir: Path,
    rel: PurePosixPath,
    save_probabilities: bool,
    input_folders: AbstractSet[str],
    thumbnail: bool = True,
) -> str | None:
    """Why an output file of input ``rel`` cannot take its name, or None: a folder of ``input_dir`` that holds
    images has that name (``x.png`` beside ``x.mask.png/``: the folder is mirrored into ``output_dir``, where
    ``x``'s mask goes), or a folder is already in ``output_dir`` under it. Said before predicting, so that
    the image is refused whatever the order of the names (the first one written took the name and the
    other failed, with a raw "Is a directory" or "Not a directory" and some outputs written).

    Args:
        output_dir: The run's output folder.
        rel: The input's path relative to ``input_dir``.
        save_probabilities: Whether ``<stem>.prob.tif`` is written too.
        input_folders: The folders of ``input_dir`` that hold inputs (POSIX paths relative to it).
        thumbnail: Whether the thumbnail's name counts: False for an input whose outputs are complete and
            are not written again (the thumbnail is no part of the completion rule, and a folder predicted
            before thumbnails were written may hold a folder under that name).
    """
    paths = OutputPaths(output_dir, rel)
    for kind in paths.kinds_written(save_probabilities):
        if kind == "thumb" and not thumbnail:
            continue
        name = paths.rel_output(kind).as_posix()
        if name in input_folders:
            return (
                f"its output {name} would be written where the outputs of the images in input_dir/{name}/ "
                "go (that folder is mirrored into output_dir): rename that folder or this file"
            )
        if paths.path(kind).is_dir():
            return (
                f"its output {paths.path(kind)} is a folder, which output_dir holds under that name: remove "
                "or rename that folder"
            )
    return None


@dataclass(frozen=True)
class OutputPaths:
    """Where the outputs of one input go.

    Attributes:
        root: The run's ``output_dir``.
        rel: The input's path relative to ``input_dir`` (POSIX form, with its extension).
    """

    root: Path
    rel: PurePosixPath

    def rel_output(self, kind: str) -> PurePosixPath:
        """Output path relative to ``root`` for ``kind``, a key of :data:`SUFFIXES`."""
        return self.rel.with_name(self.rel.stem + SUFFIXES[kind])

    def path(self, kind: str) -> Path:
        """Absolute output path for ``kind``."""
        return self.root / self.rel_output(kind)

    @property
    def mask(self) -> Path:
        return self.path("mask")

    @property
    def overlay(self) -> Path:
        return self.path("overlay")

    @property
    def thumb(self) -> Path:
        return self.path("thumb")

    @property
    def contact(self) -> Path:
        return self.path("contact")

    @property
    def prob(self) -> Path:
        return self.path("prob")

    def expected(self, save_probabilities: bool) -> list[Path]:
        """The files that must all exist for this input to count as done: not the thumbnail (module
        docstring), which folders predicted before it existed lack."""
        return [self.path(k) for k in self.kinds_written(save_probabilities) if k != "thumb"]

    @staticmethod
    def kinds_written(save_probabilities: bool) -> tuple[str, ...]:
        """The kinds :func:`write_prediction` writes, in its order (the mask last)."""
        kinds = ("contact", "overlay", "thumb", "mask")
        return ("prob", *kinds) if save_probabilities else kinds

    def written(self, save_probabilities: bool) -> list[Path]:
        """Every file :func:`write_prediction` writes for this input: :meth:`expected` and the thumbnail.
        What a cleanup must keep of an input that has its outputs (a thumbnail is never stale beside them)."""
        return [self.path(k) for k in self.kinds_written(save_probabilities)]

    def complete(self, save_probabilities: bool) -> bool:
        """True when every expected file exists (see the module's completion rule)."""
        return all(p.is_file() for p in self.expected(save_probabilities))


#: Files that make a folder another ``predict.py`` run's ``output_dir``: its settings record and its claim
#: (``output_settings.SETTINGS_NAME``, ``run_folder_claim.PREDICT_CLAIM_NAME``; a test checks they agree).
OTHER_RUN_MARKERS = ("prediction_settings.json", ".predict.claim")
#: The contact-file member that marks outputs written from Python (``UnitMap.save``), whose model and settings
#: no ``prediction_settings.json`` records: ``predict.py`` does not take them for its own finished outputs.
SAVED_BY_KEY = "saved_by"
#: The member of a contact file and a contact map naming the model that made it (:func:`model_record`): a
#: file shared alone, without the folder's ``prediction_settings.json``, still says which model it is of.
MODEL_KEY = "model"
#: The contact-file member naming the ``overwrite=true`` run that wrote the outputs
#: (``output_settings.overwrite_run_id``): a run going on with it after a stop skips them as its own.
OVERWRITE_RUN_KEY = "overwrite_run"


def model_record(
    model_file: str | os.PathLike[str] | None,
    network: str,
    *,
    adapted_from: str | None = None,
    adapted_on_images: int | None = None,
) -> dict[str, Any]:
    """The :data:`MODEL_KEY` member of the files made by the model loaded from ``model_file`` (a checkpoint
    or a model package; None: a model given in memory) whose network's digest is ``network``
    (:func:`marsunits.model_package.network_sha256`, as ``prediction_settings.json`` records it):
    ``checkpoint``, the file's name (a package's folder name: :func:`~marsunits.user_paths.model_file_name`),
    and ``network_sha256``, the same for a package and its checkpoint, which decides whether two files are
    of one model.

    With ``adapt_bn`` the network that draws the outputs is not the file's: ``network`` is then the adapted
    network's digest, ``adapted_from`` the file's network's (``checkpoint_network_sha256``, which
    ``prediction_settings.json`` records as its ``network_sha256``), and ``adapted_on_images`` the number of
    images its batch-norm statistics came from."""
    name = None if model_file is None else model_file_name(model_file)
    record: dict[str, Any] = {"checkpoint": name, "network_sha256": network}
    if adapted_from is not None:
        record.update(checkpoint_network_sha256=adapted_from, adapted_on_images=adapted_on_images)
    return record


def remove_outputs_except(root: Path, keep: Iterable[Path], dry_run: bool = False) -> list[Path]:
    """Delete the per-image outputs under ``root`` (files named ``*<suffix>`` for a suffix of ``SUFFIXES``)
    that are not in ``keep``; returns the removed paths, sorted (``dry_run``: those it would remove, none
    removed).

    Called when an ``overwrite=true`` run has finished: the outputs it did not write are those of an earlier
    model or setting (an input removed since, or failing now, or ``prob.tif`` files of a run that saved
    probabilities), and left there they would sit beside the new ones. Only files with these suffixes are
    touched (reports, maps and anything else of the user's are not); symbolic links to folders are not
    followed and the ONNX cache (``.cache``) is skipped. So is a subfolder that is another prediction run's
    ``output_dir`` (it holds :data:`OTHER_RUN_MARKERS`: ``predictions/`` for a mission beside
    ``predictions/sol_0100/`` for one sol): its outputs are that run's, and an ``overwrite=true`` run into
    the parent folder deleted them all. And so are the files of an image whose contact file says
    ``UnitMap.save`` wrote them (:data:`SAVED_BY_KEY`): a notebook's, never an input's outputs (an input of
    that name has them in ``keep``, rewritten by ``predict.py``), which an ``overwrite=true`` run deleted as
    those of an input removed since.
    """
    kept = {os.path.normpath(p) for p in keep}
    suffixes = tuple(SUFFIXES.values())
    removed: list[Path] = []
    saved_from_python: dict[Path, bool] = {}  # contact file -> whether UnitMap.save wrote it
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".cache"]
        elif any(marker in filenames for marker in OTHER_RUN_MARKERS):
            dirnames[:] = []  # another run's folder, and everything under it
            continue
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(suffixes) and os.path.normpath(path) not in kept:
                suffix = next(end for end in suffixes if name.endswith(end))
                contact = Path(dirpath) / (name[: -len(suffix)] + SUFFIXES["contact"])
                if contact not in saved_from_python:
                    saved_from_python[contact] = _saved_from_python(contact)
                if saved_from_python[contact]:
                    continue
                if dry_run:
                    removed.append(path)
                    continue
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path)
    return sorted(removed)


def _saved_from_python(contact: Path) -> bool:
    """Whether ``contact`` is a contact file that ``UnitMap.save`` wrote (its :data:`SAVED_BY_KEY` member);
    False where there is none, or it cannot be read as one (then it is an output like any other)."""
    try:
        if not contact.is_file():  # not there, or a FIFO (never opened: it would be read for ever)
            return False
        with contact.open(encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and bool(data.get(SAVED_BY_KEY))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_text(path, text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON (NaN is not allowed: use None) atomically, as valid UTF-8
    (:func:`printable_json`: a byte of a file name that is not UTF-8 is written ``\\xNN``).

    Python holds such a name (a Latin-1 ``input_dir``) with lone surrogates, which ``json.dumps`` wrote as
    ``"\\udce9"``: JSON whose text is not valid Unicode, refused by strict readers. The escapes are not
    undone on reading; a file read back as names (``prediction_settings.json``) escapes them itself before
    it is written.
    """
    return write_text_atomic(path, json.dumps(printable_json(obj), indent=2, allow_nan=False) + "\n")


def printable_json(obj: Any) -> Any:
    """``obj`` (JSON-ready: dicts, lists, tuples, scalars; not modified) with no byte of a file name that is
    not UTF-8 left: every string value through :func:`printable`, and every object key through
    :func:`name_cell`, as ``manifest.csv`` writes its names (a backslash doubled too). Keys are image names
    (``metrics.json``'s ``per_image``), and so two images, the Latin-1 ``caf<0xe9>.png`` and a
    ``caf\\xe9.png`` beside it, keep two entries under the names the manifest gives them."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, Mapping):
        return {name_cell(k) if isinstance(k, str) else k: printable_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [printable_json(v) for v in obj]
    return obj


def write_probabilities(
    path: str | os.PathLike[str], probs: np.ndarray, dtype: str = "uint8", mask: np.ndarray | None = None
) -> Path:
    """Write class probabilities ``(3, H, W)`` as a zlib-compressed TIFF (axes ``CYX``), atomically.

    Args:
        path: Destination ``.prob.tif``.
        probs: Float array ``(C, H, W)`` in [0, 1].
        dtype: ``"uint8"`` (probability x 255, rounded) or ``"float16"``.
        mask: The class ids written beside them (``(H, W)``, 255 = no data), or None. Where rounding made
            two classes equal, the mask's class is raised by one step of ``dtype``, so the file's argmax
            (lowest class on a tie, as numpy's) is the mask wherever it has data: 1-36 pixels an image
            disagreed, and a mask re-derived from ``prob.tif`` differed from the one written.
    """
    if dtype == "uint8":
        data = np.rint(np.clip(probs, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif dtype == "float16":
        data = probs.astype(np.float16)
    else:
        raise ValueError(f"probability_dtype must be 'uint8' or 'float16', got {dtype!r}")
    if mask is not None:
        _break_ties_towards(data, mask)

    def write(fh: BinaryIO) -> None:
        tifffile.imwrite(fh, data, photometric="minisblack", compression="zlib", metadata={"axes": "CYX"})

    return atomic_write(path, write)


def _break_ties_towards(data: np.ndarray, mask: np.ndarray) -> None:
    """Raise, in place, ``data[mask]`` by one step of its dtype where the argmax of ``data`` (C, H, W) is
    not ``mask`` (ids ``>= C`` are left alone); a band of rows at a time (argmax allocates int64)."""
    for r0 in range(0, mask.shape[0], 512):
        band, ids = data[:, r0 : r0 + 512], mask[r0 : r0 + 512]
        rows, cols = np.nonzero((band.argmax(axis=0) != ids) & (ids < data.shape[0]))
        if len(rows) == 0:
            continue
        top = band.max(axis=0)[rows, cols]
        if data.dtype == np.uint8:
            raised = np.minimum(top.astype(np.int16) + 1, 255).astype(np.uint8)
        else:
            raised = np.nextafter(top, np.array(np.inf, dtype=data.dtype))
        band[ids[rows, cols], rows, cols] = raised


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Float ``(H, W, C)`` in [0, 1] with C in {1, 3} -> uint8 ``(H, W, 3)`` (grey is replicated)."""
    rgb = np.empty((*image.shape[:2], 3), dtype=np.uint8)
    # Row bands keep the float temporaries small for panoramas.
    for r0 in range(0, image.shape[0], 512):
        band = np.rint(np.clip(image[r0 : r0 + 512], 0.0, 1.0) * 255.0).astype(np.uint8)
        rgb[r0 : r0 + 512] = band if band.shape[2] == 3 else np.repeat(band, 3, axis=2)
    return rgb


def confidence_color(confidence: float) -> tuple[int, int, int]:
    """Contact colour for ``confidence`` in [0, 1]: white (unsure) to red (sure), linear in RGB."""
    c = float(np.clip(confidence, 0.0, 1.0))
    return tuple(
        int(round(lo + (hi - lo) * c)) for lo, hi in zip(LOW_CONFIDENCE_COLOR, CONTACT_COLOR, strict=True)
    )  # type: ignore[return-value]


def overlay_image(
    image: np.ndarray,
    mask: np.ndarray,
    lines: Sequence[ContactLine],
    alpha: float = OVERLAY_ALPHA,
    palette: Sequence[Sequence[int]] = PALETTE,
) -> np.ndarray:
    """The image with each unit tinted in its palette colour and the contact lines drawn on top.

    The units are tinted over the image's own colours (the rock's colour stays part of the picture); ``other``
    is tinted over the image's grey (:data:`OTHER_GREY_WEIGHTS`), so that it shows its palette colour's hue
    and the image's light and shade, not the colour of what it covers: tinted over its colours, a Mars sky
    kept its butterscotch and read as untinted ground instead of the key's grey.

    Args:
        image: Float ``(H, W, C)`` in [0, 1], C in {1, 3}.
        mask: uint8 ``(H, W)`` class ids (255 = no data, drawn pure black, :data:`IGNORE_COLOR`, whatever
            the image holds there).
        lines: Contacts in pixel coordinates (origin at the top-left pixel's corner). Each segment is
            coloured by the mean ``vertex_confidence`` of its ends when present, else by the line's
            ``confidence`` (see :func:`confidence_color`).
        alpha: Opacity of the unit colours.
        palette: RGB colour (0-255) of each class, by class id: the model's (``metadata["palette"]``, which
            a model package's ``model.json`` lets its user change); the project's default otherwise.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    lut = np.zeros((256, 3), dtype=np.uint16)
    lut[:] = IGNORE_COLOR
    lut[:NUM_CLASSES] = palette
    a = int(round(alpha * 256))
    out = to_rgb_uint8(image)
    for r0 in range(0, out.shape[0], 512):
        band = mask[r0 : r0 + 512]
        base = out[r0 : r0 + 512].astype(np.uint16)
        other = band == OTHER
        if other.any():
            wr, wg, wb = OTHER_GREY_WEIGHTS  # uint16 holds 255 * 256: no overflow
            grey = (base[..., 0] * wr + base[..., 1] * wg + base[..., 2] * wb) >> 8
            np.copyto(base, grey[..., None], where=other[..., None])
        blended = ((base * (256 - a) + lut[band] * a) >> 8).astype(np.uint8)
        # No data is drawn in IGNORE_COLOR itself, not blended with the image: the mosaic border's ring (the
        # blend of black and terrain beside it, no data too) came out a dark brown, (66, 54, 39) on a
        # MarsScapes panorama, read as dark ground where the README says black.
        blended[band >= NUM_CLASSES] = IGNORE_COLOR
        out[r0 : r0 + 512] = blended
    if lines:
        h, w = mask.shape
        half_width = max(2, round(min(h, w) / 250)) / 2
        for line in lines:
            pts = np.asarray(line.pixels, dtype=float).reshape(-1, 2)
            finite = np.isfinite(pts).all(axis=1)  # shapely's buffer crashes the process on NaN vertices
            if finite.sum() < 2:
                continue
            if line.vertex_confidence is not None and len(line.vertex_confidence) == len(pts):
                vc = np.nan_to_num(np.asarray(line.vertex_confidence, dtype=float)[finite], nan=0.0)
                pts = pts[finite]
                segments = shapely.linestrings(np.stack([pts[:-1], pts[1:]], axis=1))
                colours = [confidence_color(c) for c in (vc[:-1] + vc[1:]) / 2]
            else:
                segments = np.array([shapely.linestrings(pts[finite])])
                colours = [confidence_color(line.confidence)]
            for band, colour in zip(shapely.buffer(segments, half_width, quad_segs=2), colours, strict=True):
                _paint(out, band, colour)
    return out


def _paint(out: np.ndarray, band: shapely.Geometry, colour: tuple[int, int, int]) -> None:
    """Paint (in place) every pixel of ``out`` whose centre lies inside ``band`` (a polygon in pixel
    coordinates, origin at the top-left pixel's corner): a contact buffered to the drawn line's width.

    Why not ``ImageDraw.line``: Pillow truncates float coordinates, and which side a wide line's extra
    pixel goes to depends on the direction it is drawn in, so a contact on a pixel edge was drawn up to a
    pixel off, one way or the other. Here the band is the line buffered by shapely and filled where pixel
    centres fall inside it (scikit-image), so it is centred on the contact whatever its direction; a closed
    contact keeps its inside unpainted (the band's hole).
    """
    for polygon in getattr(band, "geoms", [band]):
        if polygon.is_empty:
            continue
        ring = np.asarray(polygon.exterior.coords) - 0.5  # pixel (row r, column c) has its centre at c + .5
        rows, cols = fill_polygon(ring[:, 1], ring[:, 0], shape=out.shape[:2])
        if len(polygon.interiors):
            inside = shapely.intersects_xy(polygon, cols + 0.5, rows + 0.5)
            rows, cols = rows[inside], cols[inside]
        out[rows, cols] = colour


def unit_fractions(mask: np.ndarray) -> tuple[float, float, float]:
    """Fraction of the image's pixels in each class 0, 1, 2 (ignore pixels count in the denominator).

    Args:
        mask: ``(H, W)`` uint8 class ids, 255 where the image has no data.
    """
    counts = np.bincount(mask.ravel(), minlength=256)[:NUM_CLASSES]
    total = max(mask.size, 1)
    return tuple(float(c) / total for c in counts)  # type: ignore[return-value]


def image_record(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The contact file's members for an input's ``output_settings.image_file_identity``: ``image_file``
    (``bytes`` and ``mtime_ns``: the form earlier versions compare whole) and ``image_sha256`` when there is
    a digest."""
    members: dict[str, Any] = {"image_file": {"bytes": identity["bytes"], "mtime_ns": identity["mtime_ns"]}}
    if "sha256" in identity:
        members["image_sha256"] = identity["sha256"]
    return members


def write_prediction(
    paths: OutputPaths,
    image: np.ndarray,
    probs: np.ndarray,
    mask: np.ndarray,
    lines: Sequence[ContactLine],
    *,
    save_probabilities: bool,
    probability_dtype: str = "uint8",
    greyscale: bool | None = None,
    camera_sha256: str | None | bool = False,
    image_file: Mapping[str, Any] | None = None,
    saved_by: str | None = None,
    model: Mapping[str, Any] | None = None,
    palette: Sequence[Sequence[int]] = PALETTE,
    overwrite_run: str | None = None,
) -> None:
    """Write all outputs of one input, mask last (see the module's completion rule).

    Args:
        paths: Destination paths.
        image: The input image, float ``(H, W, C)`` in [0, 1] (as the network saw it, before channel
            conversion), used for the overlay.
        probs: Float32 ``(3, H, W)`` class probabilities.
        mask: uint8 ``(H, W)`` predicted ids.
        lines: Contact lines in pixel coordinates.
        save_probabilities: Also write ``<stem>.prob.tif``.
        probability_dtype: ``uint8`` or ``float16`` for the TIFF.
        greyscale: Whether the input is greyscale, kept in the contact file (``image_greyscale``) so a
            later run that skips this input still counts it, even when no manifest was written (a kill).
        camera_sha256: Digest of the camera file the ground coordinates came from (None: the image has no
            camera), kept in the contact file (``camera_sha256``) so a later run notices a replaced camera
            file (``output_settings.camera_changed``); False leaves it out.
        image_file: Size, modification time and SHA-256 of the input file as it was read
            (``output_settings.image_file_identity``), kept in the contact file (``image_file`` and
            ``image_sha256``) so a later run notices a replaced image, and not one whose time alone changed
            (``output_settings.image_status``).
        saved_by: What wrote the files when not ``predict.py`` (``"UnitMap.save"``), kept in the contact
            file (:data:`SAVED_BY_KEY`): a ``predict.py`` run into the folder refuses to skip them as its own.
        model: The model that made the outputs (:func:`model_record`), kept in the contact file
            (:data:`MODEL_KEY`); None leaves it out.
        palette: The class colours of the overlay: the model's (see :func:`overlay_image`).
        overwrite_run: The ``overwrite=true`` run writing them, kept in the contact file
            (:data:`OVERWRITE_RUN_KEY`); None leaves it out.
    """
    h, w = mask.shape
    paths.mask.unlink(missing_ok=True)  # the completion marker goes first (module docstring)
    if save_probabilities:
        write_probabilities(paths.prob, probs, probability_dtype, mask=mask)
    else:  # an earlier run's probabilities are of what this input was then (pseudo-labels read them)
        paths.prob.unlink(missing_ok=True)
    members: dict[str, Any] = {} if greyscale is None else {"image_greyscale": bool(greyscale)}
    if camera_sha256 is not False:
        members["camera_sha256"] = camera_sha256
    if image_file is not None:
        members.update(image_record(image_file))
    if saved_by is not None:
        members[SAVED_BY_KEY] = saved_by
    if model is not None:
        members[MODEL_KEY] = dict(model)
    if overwrite_run is not None:
        members[OVERWRITE_RUN_KEY] = overwrite_run
    write_contacts(paths.contact, lines, image_width=w, image_height=h, members=members or None)
    overlay = overlay_image(image, mask, lines, palette=palette)
    write_png_atomic(paths.overlay, overlay)
    write_thumbnail(paths.thumb, overlay)
    del overlay  # a panorama's is tens of MB
    write_png_atomic(paths.mask, mask)


def is_panorama(width: float, height: float) -> bool:
    """Whether an image of ``width`` x ``height`` is elongated enough (:data:`PANORAMA_ASPECT`) to be shown
    as a panorama: a larger thumbnail, a gallery card of a whole row."""
    return max(width, height) >= PANORAMA_ASPECT * max(1.0, min(width, height))


def thumbnail_side(width: int, height: int, side: int = THUMBNAIL_PX) -> int:
    """The longest side of the thumbnail of a ``width`` x ``height`` image (aspect kept, never enlarged):
    ``side``, or for a panorama (:func:`is_panorama`) the length that keeps its shorter side at
    ``side / PANORAMA_ASPECT`` pixels, at most ``PANORAMA_ASPECT * side``."""
    long, short = max(width, height), max(1, min(width, height))
    scale = min(1.0, side / long)
    if is_panorama(width, height):
        scale = min(1.0, PANORAMA_ASPECT * side / long, side / PANORAMA_ASPECT / short)
    return max(1, round(long * scale))


def write_thumbnail(path: str | os.PathLike[str], rgb: np.ndarray, longest_side: int | None = None) -> Path:
    """Write ``rgb`` (uint8 ``(H, W, 3)``: the overlay as it was just written) as a JPEG whose longest side is
    ``longest_side`` pixels (None: :data:`THUMBNAIL_PX`; aspect ratio kept; a smaller image keeps its size;
    a panorama's is larger, :func:`thumbnail_side`), atomically.

    Made from the array in memory, so the overlay is not read back; Pillow's ``Image.thumbnail`` first
    reduces by whole factors (box filter), then resamples with Lanczos, so a 12,000-pixel panorama shrinks
    quickly and without aliasing.
    """
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    side = THUMBNAIL_PX if longest_side is None else longest_side
    longest = thumbnail_side(picture.width, picture.height, side)
    picture.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return atomic_write(path, lambda fh: picture.save(fh, format="JPEG", quality=THUMBNAIL_QUALITY))


def read_manifest(path: str | os.PathLike[str], old_names: bool = False) -> dict[str, dict[str, str]]:
    """Rows of an earlier ``manifest.csv`` keyed by ``path`` (as Python holds the file name: the escapes of
    :func:`name_cell` undone); empty when the file is absent or unreadable.

    ``old_names=True`` (looking up an earlier run's rows): each row whose cell holds a backslash is also
    keyed by the cell as written, where no row has that name exactly. A manifest written before the escapes
    held every name as it is, and nothing in the file tells it from a current one: its ``a\\xe9.png`` (a
    valid name with a backslash) read as the Latin-1 ``a<0xe9>.png``, so that image's row was lost (its
    ``seconds`` left empty on resume). A current manifest's rows are still found under their own names
    first: the second key only serves a name no row has.
    """
    try:
        # surrogateescape: a manifest written before the escapes held such names as their raw bytes
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            rows = [row for row in csv.DictReader(fh) if isinstance(row.get("path"), str)]
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    named = {name_from_cell(row["path"]): row for row in rows}
    if old_names:
        for row in rows:
            named.setdefault(row["path"], row)  # no-op for a cell without a backslash: its own name
    return named


#: A byte of a file name that is not UTF-8, as Python holds it (``os.fsdecode``: surrogateescape).
_UNDECODABLE = re.compile("[\udc80-\udcff]")

#: An escape of :func:`name_cell`: a doubled backslash, or ``\xNN`` for a byte 0x80-0xff.
_NAME_ESCAPE = re.compile(r"\\(\\|x([89a-f][0-9a-f]))")


def printable(text: str) -> str:
    """``text`` with each byte of a file name that is not UTF-8 shown as ``\\xNN`` (``caf\\xe9.png``), so that
    the text is valid UTF-8: for what is read by people (``manifest.csv``'s messages, ``index.html``); the
    project's one spelling of such names (:func:`marsunits.errors.readable`, which logs and messages use).

    Python holds such a name (Linux bytes ``b'caf\\xe9.png'``) with a surrogate per byte; written as the raw
    bytes, ``manifest.csv`` and ``index.html`` were not valid UTF-8, and pandas or a spreadsheet refused them.
    """
    return readable(text)


def name_cell(name: str) -> str:
    """``name`` (an input's path) as ``manifest.csv``'s ``path`` column holds it, valid UTF-8 and read back
    exactly by :func:`name_from_cell`: a byte that is not UTF-8 as ``\\xNN`` (:func:`printable`) and, so that
    the escapes cannot be confused with the name's own text, a backslash doubled. Any other name (no
    backslash, valid UTF-8: nearly all) is written as it is."""
    if "\\" not in name and _UNDECODABLE.search(name) is None:
        return name
    return printable(name.replace("\\", "\\\\"))


def name_from_cell(cell: str) -> str:
    """The name :func:`name_cell` wrote as ``cell`` (a cell without a backslash is the name itself)."""
    if "\\" not in cell:
        return cell
    return _NAME_ESCAPE.sub(lambda m: "\\" if m.group(2) is None else chr(0xDC00 + int(m.group(2), 16)), cell)


#: In a JSON record only: which of its keys hold paths written by :func:`name_cell`
#: (:func:`escaped_path_values`).
ESCAPED_PATHS_KEY = "escaped_paths"


def escaped_path_values(record: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """``record`` as a JSON file holds it: valid UTF-8, read back exactly by :func:`unescaped_path_values`.

    A key of ``keys`` (a path, or a list of paths) whose value holds a name that is not UTF-8 (a Latin-1
    folder: Python holds its bytes as lone surrogates, which JSON can only write as ``"\\udce9"``, refused or
    mangled by strict readers) has every path of it written by :func:`name_cell` (``\\xNN``, a backslash
    doubled), and the key is listed under :data:`ESCAPED_PATHS_KEY`. Other keys, and every record of UTF-8
    paths, are written as they are, so a path's own ``\\xe9`` text is never taken for an escape.
    """
    out = dict(record)
    escaped = []
    for key in keys:
        value = record.get(key)
        paths = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
        if any(isinstance(p, str) and printable(p) != p for p in paths):
            cells = [name_cell(p) if isinstance(p, str) else p for p in paths]
            out[key] = cells[0] if isinstance(value, str) else cells
            escaped.append(key)
    if escaped:
        out[ESCAPED_PATHS_KEY] = escaped
    return out


def unescaped_path_values(record: dict[str, Any]) -> dict[str, Any]:
    """A record as read from its JSON file, with the paths :func:`escaped_path_values` escaped as they were
    (the marker key removed). A record without the marker (UTF-8 paths, or written before it existed) is
    returned as it is."""
    escaped = record.pop(ESCAPED_PATHS_KEY, None)
    for key in escaped if isinstance(escaped, list) else []:
        value = record.get(key)
        if isinstance(value, str):
            record[key] = name_from_cell(value)
        elif isinstance(value, list):
            record[key] = [name_from_cell(p) if isinstance(p, str) else p for p in value]
    return record


def outputs_one_elsewhere(paths: Iterable[str]) -> list[list[str]]:
    """Groups (sorted, two or more) of input paths (``manifest.csv``'s ``path``, relative to ``input_dir``)
    whose outputs (``<rel>/<stem>.mask.png``, ...) differ only in letter case or Unicode form: ``Scene.png``
    and ``scene.jpg``, ``A/x.png`` and ``a/x.png``, ``café`` composed and decomposed. Distinct files here,
    they are one file on a case-insensitive disk (macOS, Windows): the output folder copied or unzipped there
    keeps one image's outputs for both. Letters are folded one for one, as those disks compare them (simple
    case folding): ``Straße`` and ``Strasse`` are two names there, which ``str.casefold`` (``ß`` -> ``ss``)
    joined."""
    groups: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        rel = PurePosixPath(path)
        name = unicodedata.normalize("NFD", rel.with_name(rel.stem).as_posix())
        groups[unicodedata.normalize("NFC", "".join(map(_fold_letter, name)))].append(path)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def _fold_letter(letter: str) -> str:
    """``letter`` case-folded when that gives one letter (Python has only full case folding, ``ß`` -> ``ss``),
    else lower-cased when that does, else as it is: close to Unicode's simple case folding."""
    for folded in (letter.casefold(), letter.lower()):
        if len(folded) == 1:
            return folded
    return letter


def has_outputs(row: Mapping[str, Any]) -> bool:
    """Whether a manifest row's image has its outputs (mask, overlay, contacts): every row but an ``error``
    one without a mask (an image whose camera file was refused is ``ok`` or ``skipped``, its refusal in
    ``camera_error``; a manifest before 2026-12-07 holds it as an ``error`` row with its pixel outputs)."""
    return row["status"] != "error" or row.get("width") not in (None, "")


def write_manifest(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``manifest.csv`` (columns :data:`MANIFEST_FIELDS`; None becomes an empty cell) atomically, as
    valid UTF-8: the ``path`` as :func:`name_cell` escapes it, the other texts through :func:`printable`. Rows
    end in ``\\n``; a row with a ``\\r`` in a cell (a file name may hold one) has its text cells quoted."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    # csv quotes a cell holding a character of its line terminator ("\n") but not a lone "\r", which a file
    # name may hold: unquoted, every csv reader (a resumed run's too) split that row in two. Such a row is
    # written with each text cell quoted.
    quoted = csv.DictWriter(
        buf,
        fieldnames=MANIFEST_FIELDS,
        extrasaction="ignore",
        lineterminator="\n",
        quoting=csv.QUOTE_NONNUMERIC,
    )
    writer.writeheader()
    for row in rows:
        cells = {k: _cell(row.get(k)) for k in MANIFEST_FIELDS}
        cells["path"] = name_cell(str(cells["path"]))
        cells = {k: printable(v) if isinstance(v, str) else v for k, v in cells.items()}
        (quoted if any(isinstance(v, str) and "\r" in v for v in cells.values()) else writer).writerow(cells)
    return write_text_atomic(path, buf.getvalue())


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
