"""Map the units and their contact in one image from Python (a notebook, a script), without Hydra or files.

``predict.py`` works on folders and writes files; a geologist exploring one frame in a notebook wants the
mask, the probabilities and the contact lines as arrays and objects::

    from marsunits.inference import UnitMapper

    mapper = UnitMapper.load("model_package/")          # or a train.py .ckpt
    result = mapper.map("sol0123/NLB_0123.png")       # or an (H, W[, C]) array, PIL image, (C, H, W) tensor
    result.mask                  # uint8 (H, W): 0 smooth_volcanic, 1 rough_olivine, 2 other, 255 no data
    result.contacts              # ContactLine list: pixels (x = column, y = row, origin at the top-left
                                 # pixel's corner), confidence, ground_m where the image has a camera
    result.overlay()             # uint8 (H, W, 3): units tinted, contact coloured by confidence

The steps and their defaults are ``predict.py``'s (``configs/predict.yaml``; the defaults here are read from
:class:`~marsunits.inference.options.PredictOptions`, so they cannot drift apart): Gaussian-blended windows,
the no-data border, the minimum mapping unit, contact extraction, and ground coordinates from the image's
camera file beside it (or a camera given). :class:`UnitSteps` (the steps after the network with their
settings, over :func:`units_and_contacts`) is the one implementation both use, so an image gives the same mask
and contact lines here as in ``predict.py``'s files with ``runtime=torch`` (tested);
:meth:`UnitMapper.units_from_probabilities` runs it with a mapper's settings on probabilities of one's own.
What is folder-level stays in ``predict.py``: resuming, reports, sharding over processes, ONNX Runtime,
``adapt_bn`` (statistics of a whole folder) and ``map=true`` (use :func:`marsunits.boundary.build_contact_map`
with several results' ``contacts`` and ``camera``).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import PIL.Image
import torch

from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.camera.io import CameraFileError, camera_from_dict, load_camera
from marsunits.boundary.camera.oriented import OrientedCamera, orient_camera
from marsunits.boundary.contact_io import ContactLine, as_stored, number_contacts, write_contacts
from marsunits.boundary.extract import ContactConfig, extract_contacts
from marsunits.boundary.mapping_unit import merge_small_units
from marsunits.boundary.projection import add_ground
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, PALETTE
from marsunits.data.decoded_pixels import FLOAT_FULL_SCALE_MAX
from marsunits.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    _orientation_tag,
    exif_orientation,
    pil_image_native,
    read_image,
    scale_to_unit,
    to_channels,
    widen_12_bit,
)
from marsunits.errors import ConfigError
from marsunits.inference.image_cameras import (
    add_ground_coordinates,
    camera_size_refusal,
    image_camera,
    sized_image_camera,
    warn_if_angles_read_as_radians,
    warn_if_sees_no_ground,
)
from marsunits.inference.nodata import nodata_mask
from marsunits.inference.options import PredictOptions, check_option_types, read_contact_config
from marsunits.inference.options import plain_scalar as _plain_scalar
from marsunits.inference.predictor import Predictor, select_device
from marsunits.inference.run_summary_text import synthetic_model_note
from marsunits.inference.runtime import TorchForward, resolve_precision
from marsunits.inference.tiling import make_grid, model_tile_note
from marsunits.inference.writers import (
    MODEL_KEY,
    SUFFIXES,
    OutputPaths,
    model_record,
    output_folder_clash,
    output_name_problem,
    overlay_image,
    unit_fractions,
    write_prediction,
)
from marsunits.training_extent import barely_trained, barely_trained_warning
from marsunits.training_images import is_grey
from marsunits.user_paths import expand_home, meant_path

log = logging.getLogger(__name__)

__all__ = ["UnitMap", "UnitMapper", "UnitSteps", "is_grey", "units_and_contacts"]

#: ``camera=`` default of :meth:`UnitMapper.map`: a file's own camera file (``<stem>.camera.json`` beside
#: it, or ``../cameras/<stem>.json``), as ``predict.py`` finds it; none for an array.
BESIDE = "beside"


def units_and_contacts(
    probs: np.ndarray,
    image: np.ndarray,
    *,
    min_unit_area_px: int,
    nodata_max: float | None,
    contact: ContactConfig,
) -> tuple[np.ndarray, list[ContactLine]]:
    """The mask and numbered contact lines of one image's probabilities, as ``predict.py`` makes them.

    Args:
        probs: Float32 ``(3, H, W)`` softmax probabilities of ``image``; modified in place: the minimum
            mapping unit's merges, and zeros at no-data pixels (what ``prob.tif`` holds).
        image: Float ``(H, W, C)`` in [0, 1], the image the probabilities are of (for the no-data border).
        min_unit_area_px: The minimum mapping unit
            (:func:`~marsunits.boundary.mapping_unit.merge_small_units`); 0 turns it off.
        nodata_max: No-data threshold (:func:`~marsunits.inference.nodata.nodata_mask`); None turns it off.
        contact: Contact extraction settings.

    Returns:
        The uint8 ``(H, W)`` mask (class ids, 255 at no-data pixels) and the contact lines in pixel
        coordinates (x = column, y = row, origin at the top-left pixel's corner), each with its
        ``contact_id``, before any ground projection.

    Raises:
        ValueError: If a probability outside the no-data pixels is NaN or infinite (a model with broken
            weights): argmax made such pixels unit 0, a mask of smooth_volcanic everywhere and no contact.
    """
    nodata = None if nodata_max is None else nodata_mask(image, float(nodata_max))
    nodata = nodata if nodata is not None and nodata.any() else None
    if not math.isfinite(float(probs.max())):  # one pass, no copy: softmax output is never -inf
        bad = ~np.isfinite(probs).all(axis=0)
        if nodata is not None:
            bad &= ~nodata
        if bad.any():
            raise ValueError(
                f"the model's class probabilities are NaN or infinite at {int(bad.sum())} of {bad.size} "
                "pixels: its weights (or its ONNX/exported copy) are broken, e.g. saved after training "
                "diverged; no mask or contact is made from them. Predict with a checkpoint whose validation "
                "scores are finite (its metrics.json)"
            )
    if nodata is not None:
        probs[:, nodata] = np.nan  # no patch (minimum mapping unit) and no contact through them
    if min_unit_area_px:
        merge_small_units(probs, int(min_unit_area_px))
    lines = number_contacts(extract_contacts(probs, contact))
    if nodata is not None:
        probs[:, nodata] = 0.0  # written as zero probabilities
    mask = argmax_uint8(probs)
    if nodata is not None:
        mask[nodata] = IGNORE_INDEX
    return mask, lines


@dataclass(frozen=True)
class UnitSteps:
    """The steps after the network with their settings: the no-data border, the minimum mapping unit and
    contact extraction (:func:`units_and_contacts`), held once for ``predict.py``'s runner (which holds no
    :class:`UnitMapper`: ONNX Runtime, ``adapt_bn``, sharding) and for :class:`UnitMapper`, both made by
    :meth:`from_options`, so that an option of these steps reaches both or neither.

    Attributes:
        min_unit_area_px: The minimum mapping unit in pixels; 0 turns it off.
        nodata_max: The no-data threshold; None turns it off.
        contact: Contact extraction settings.
    """

    min_unit_area_px: int
    nodata_max: float | None
    contact: ContactConfig

    @classmethod
    def from_options(cls, opts: PredictOptions, contact: ContactConfig) -> UnitSteps:
        """The steps of ``opts`` (values checked already), with ``contact`` read from ``opts.contact``
        (:func:`~marsunits.inference.options.read_contact_config`) or given as one."""
        nodata = None if opts.nodata_max is None else float(opts.nodata_max)
        return cls(int(opts.min_unit_area_px), nodata, contact)

    def __call__(self, probs: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, list[ContactLine]]:
        """The mask and numbered contact lines of ``probs`` (modified in place), as
        :func:`units_and_contacts` makes them with these settings."""
        return units_and_contacts(
            probs,
            image,
            min_unit_area_px=self.min_unit_area_px,
            nodata_max=self.nodata_max,
            contact=self.contact,
        )

    def record(self) -> dict[str, Any]:
        """The settings under ``predict.py``'s option names, as ``prediction_settings.json`` records them."""
        return {
            "min_unit_area_px": self.min_unit_area_px,
            "nodata_max": self.nodata_max,
            "contact": asdict(self.contact),
        }


def argmax_uint8(probs: np.ndarray) -> np.ndarray:
    """Class ids ``(H, W)`` uint8 from probabilities ``(C, H, W)``, in row bands (no int64 (H, W) copy)."""
    out = np.empty((probs.shape[1], probs.shape[2]), dtype=np.uint8)
    for r0 in range(0, out.shape[0], 512):
        out[r0 : r0 + 512] = probs[:, r0 : r0 + 512].argmax(0)
    return out


@dataclass
class UnitMap:
    """The units and contact of one image (:meth:`UnitMapper.map`).

    Attributes:
        image: Float32 ``(H, W, C)`` in [0, 1], the image as predicted (C as read: 1 or 3).
        probabilities: Float32 ``(3, H, W)``, each pixel's class probabilities after the minimum mapping
            unit's merges (``predict.py``'s ``prob.tif``); zeros at no-data pixels.
        mask: uint8 ``(H, W)``: 0 ``smooth_volcanic``, 1 ``rough_olivine``, 2 ``other``, 255 no data.
        contacts: The contact lines (``predict.py``'s ``<stem>.contact.geojson``): pixel coordinates with
            x = column and y = row from the top-left pixel's corner, ``confidence`` in [0, 1], and
            ``ground_m`` (metres in the camera's site frame) where the camera sees the ground within
            ``max_range_m``; a contact crossing that range is split into pieces sharing its ``contact_id``.
        camera: The camera the ground coordinates came from, or None.
        palette: RGB colour (0-255) of each class, by id, that :meth:`overlay` and :meth:`save` draw the
            units in: the model's (its ``model.json`` palette for a package).
        model: The model that made it, ``{"checkpoint": <file name>, "network_sha256": <digest>}`` as
            ``predict.py``'s contact files and ``prediction_settings.json`` name a model (``checkpoint`` None
            for a mapper given a model in memory); kept in the contact file :meth:`save` and
            :meth:`write_contacts` write (``model``), so that one shared alone says which model it is of.
            None (a UnitMap made by hand) leaves it out.
    """

    image: np.ndarray
    probabilities: np.ndarray
    mask: np.ndarray
    contacts: list[ContactLine] = field(default_factory=list)
    camera: CameraModel | None = None
    palette: list[list[int]] = field(default_factory=lambda: [list(rgb) for rgb in PALETTE])
    model: dict[str, Any] | None = None

    @property
    def unit_fractions(self) -> dict[str, float]:
        """Fraction of the image's pixels in each class (no-data pixels count in the denominator, as in
        ``manifest.csv``'s ``frac_*`` columns)."""
        return dict(zip(CLASS_NAMES, unit_fractions(self.mask), strict=True))

    def overlay(self) -> np.ndarray:
        """uint8 ``(H, W, 3)``: the image with each unit tinted and the contact coloured by confidence
        (``predict.py``'s ``<stem>.overlay.png``)."""
        return overlay_image(self.image, self.mask, self.contacts, palette=self.palette)

    def write_contacts(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`contacts` as a contact GeoJSON file (the format of ``<stem>.contact.geojson``,
        README "Outputs", naming :attr:`model`); ``~`` is the home folder, as in :meth:`UnitMapper.map`.
        Returns the path."""
        height, width = self.mask.shape
        members = None if self.model is None else {MODEL_KEY: dict(self.model)}
        return write_contacts(expand_home(path), self.contacts, width, height, members)

    def save(
        self,
        folder: str | os.PathLike[str],
        stem: str,
        *,
        save_probabilities: bool = False,
        probability_dtype: str = PredictOptions.probability_dtype,
    ) -> list[Path]:
        """Write the files ``predict.py`` writes for an image ``<stem>``: ``<stem>.mask.png``,
        ``<stem>.overlay.png``, ``<stem>.thumb.jpg`` (the overlay, its longest side
        :data:`~marsunits.inference.writers.THUMBNAIL_PX` pixels, a panorama's larger:
        :func:`~marsunits.inference.writers.thumbnail_side`), ``<stem>.contact.geojson`` and, with
        ``save_probabilities``, ``<stem>.prob.tif`` (``probability_dtype`` ``uint8`` or ``float16``), each
        under a temporary name then renamed, in ``folder`` (created; ``~`` is the home folder). Returns the
        paths written.

        ``stem`` may be the image's file name: a name ending in a suffix of an image ``predict.py`` reads
        (``.png``, ``.jpg``, ``.jpeg``, ``.tif``, ``.tiff``, any letter case) gives the outputs predict.py
        writes for that input, so ``"frame.png"`` (``Path(image).name``) writes ``frame.mask.png``, as
        ``"frame"`` does (it wrote ``frame.png.mask.png``). Any other dot is part of the stem (``"sol1.v2"``),
        but for a stem that ends as an output's name (``.mask.png``), which is refused, and one that is the
        ``Path.stem`` of an output in ``folder`` (``"frame.mask"`` where ``frame.mask.png`` is), also refused;
        elsewhere ``"frame.mask"`` is the stem of an image so named (``frame.mask.png``, which ``predict.py``
        reads), and writes ``frame.mask.mask.png`` as ``predict.py`` does.

        The contact file names the model (:attr:`model`), as ``predict.py``'s do. It also records
        ``"saved_by": "UnitMap.save"``: no ``prediction_settings.json`` names
        the model and settings these files were made with, so a ``predict.py`` run into ``folder`` refuses
        to take them for its own finished outputs (without ``overwrite=true``) instead of skipping the image.

        Raises:
            TypeError: ``stem`` is not a str (a ``Path``: give its ``.stem`` or ``.name``).
            ConfigError: ``stem`` is not a plain file name, is an output's name (``frame.mask.png``: give
                ``frame``) or the ``Path.stem`` of an output in ``folder`` (``frame.mask`` beside
                ``frame.mask.png``: it wrote ``frame.mask.mask.png`` there), or makes names longer than the
                filesystem allows
                (as ``predict.py`` refuses such an input), ``save_probabilities`` not a bool (``"no"``),
                another ``probability_dtype``, ``folder`` (or a folder above it) a file, or a folder there
                under an output's name; nothing is written then.
        """
        if not isinstance(stem, str):  # a Path or a number: "argument of type 'PosixPath' is not iterable"
            raise TypeError(
                f"stem must be a str, the file name the outputs start with (e.g. Path(image).stem), got "
                f"{type(stem).__name__} {stem!r}"
            )
        plain = f"stem must be a plain file name (no folder), e.g. 'frame_0001', got {stem!r}"
        if not stem or stem in (".", "..") or "/" in stem or os.sep in stem or "\0" in stem:
            raise ConfigError(plain)
        # An output's name (frame.mask.png), or its Path.stem (frame.mask: an output's kind, no extension), as
        # taken from a listing of outputs, where that output is in the folder: frame.mask wrote
        # frame.mask.mask.png beside frame.mask.png. Elsewhere frame.mask is the stem of an image so named
        # (frame.mask.png, which predict.py reads and names frame.mask.mask.png): its name is refused above.
        root = expand_home(folder)
        ends = [(end, "name") for end in SUFFIXES.values()]
        ends += [
            (end.rsplit(".", 1)[0], "stem")
            for end in SUFFIXES.values()
            if (root / f"{stem}.{end.rsplit('.', 1)[1]}").is_file()
        ]
        output = next(
            ((e, what) for e, what in ends if stem.lower().endswith(e) and len(stem) > len(e)), None
        )
        if output is not None:
            end, what = output
            names = ", <stem>".join(SUFFIXES.values())
            listed = f" ({root / stem}.*, in that folder)" if what == "stem" else ""
            raise ConfigError(
                f"stem {stem!r} is the {what} of an output{listed}; give the stem {stem[: -len(end)]!r} (the "
                f"image's file name without its suffix): the outputs are <stem>{names}"
            )
        # The image's file name, as predict.py names an input's outputs (".png" alone: no stem is left).
        _, dot, suffix = stem.rpartition(".")
        if dot and f".{suffix.lower()}" in IMAGE_EXTENSIONS:
            stem = stem[: -len(suffix) - 1]
            if stem in ("", ".", ".."):
                raise ConfigError(plain)
        # save_probabilities="no" is true to bool(): it wrote prob.tif files that were declined.
        check_option_types({"save_probabilities": _plain_scalar(save_probabilities)}, python=True)
        if probability_dtype not in ("uint8", "float16"):
            raise ConfigError(f"probability_dtype must be uint8 or float16, got {probability_dtype!r}")
        paths = OutputPaths(expand_home(folder), PurePosixPath(f"{stem}.png"))
        # The folder, or the nearest of its parents that exists, a file: "[Errno 17] File exists" (or 20, "Not
        # a directory", from mkdir).
        existing = next((p for p in (paths.root, *paths.root.parents) if p.exists()), paths.root)
        if existing.exists() and not existing.is_dir():
            where = " " if existing == paths.root else f": {existing} "
            raise ConfigError(
                f"folder {paths.root}{where}is a file, not a folder; give a folder for the outputs"
            )
        # As predict.py says it before predicting; it was "[Errno 36] File name too long" naming a temporary.
        # The name limit is the nearest existing folder's (the folder is made below, once nothing is refused).
        too_long = output_name_problem(existing if existing.is_dir() else paths.root, paths.rel)
        if too_long is not None:
            raise ConfigError(f"stem {stem[:20]!r}...: {too_long.replace('rename the input to', 'give')}")
        # A folder under an output's name: "Is a directory" after the other outputs were written.
        taken = output_folder_clash(paths.root, paths.rel, bool(save_probabilities), frozenset())
        if taken is not None:
            raise ConfigError(f"stem {stem!r}: {taken}")
        paths.mask.parent.mkdir(parents=True, exist_ok=True)
        write_prediction(
            paths,
            self.image,
            self.probabilities,
            self.mask,
            self.contacts,
            save_probabilities=bool(save_probabilities),
            probability_dtype=probability_dtype,
            greyscale=is_grey(self.image),
            saved_by="UnitMap.save",
            model=self.model,
            palette=self.palette,
        )
        return [p for p in paths.written(bool(save_probabilities)) if p.exists()]


class UnitMapper:
    """A loaded model that maps units and contacts in one image at a time (module docstring).

    Args:
        model: A :class:`~marsunits.task.SegmentationTask` (``load_model``'s result); use :meth:`load`. It is
            left as it is (its device, training mode and memory format): the mapper predicts with a copy.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on CUDA and CPUs with AMX, else float32), ``32`` or ``bf16``.
        tile, overlap, batch_size, tta, min_unit_area_px, nodata_max, max_range_m, channels_last,
            fold_batchnorm, max_megapixels: As ``predict.py``'s options of those names
            (``configs/predict.yaml``).
        contact: ``predict.py``'s ``contact`` options (a mapping of the keys to change, or a
            :class:`~marsunits.boundary.extract.ContactConfig`).

    Raises:
        ConfigError: A value out of its range, named as ``predict.py`` names it, in Python's words (``None``,
            ``True``, ``False``: not the config's ``null``, ``true``, ``false``).
        TypeError: ``model`` is a path (use :meth:`load`) or not a SegmentationTask (e.g. its network).
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str = PredictOptions.device,
        precision: str = PredictOptions.precision,
        tile: int | None = PredictOptions.tile,
        overlap: float = PredictOptions.overlap,
        batch_size: int = PredictOptions.batch_size,
        tta: bool = PredictOptions.tta,
        min_unit_area_px: int = PredictOptions.min_unit_area_px,
        nodata_max: float | None = PredictOptions.nodata_max,
        max_range_m: float = PredictOptions.max_range_m,
        contact: Mapping[str, Any] | ContactConfig | None = None,
        channels_last: bool = PredictOptions.channels_last,
        fold_batchnorm: bool = PredictOptions.fold_batchnorm,
        max_megapixels: float | None = PredictOptions.max_megapixels,
    ) -> None:
        # "'str' object has no attribute 'metadata'" after the option checks: a path is load's to read.
        if isinstance(model, (str, os.PathLike)):
            raise TypeError(
                f"UnitMapper takes a loaded model; for the file or package {str(model)!r} use "
                f"UnitMapper.load({str(model)!r})"
            )
        if not isinstance(getattr(model, "metadata", None), Mapping):
            raise TypeError(
                f"UnitMapper takes a marsunits SegmentationTask (its metadata names classes, tile and "
                f"normalisation), got {type(model).__name__}: use UnitMapper.load(<.ckpt or model "
                "package>), or give the task itself rather than its network (task, not task.model)"
            )
        # A number computed with numpy (np.int64(256), np.float32(0.05)) is the number it holds: it was
        # refused as "not a whole number", or kept in config as a value json cannot write.
        (tile, overlap, batch_size, min_unit_area_px, nodata_max, max_range_m, max_megapixels) = map(
            _plain_scalar,
            (tile, overlap, batch_size, min_unit_area_px, nodata_max, max_range_m, max_megapixels),
        )
        tta, channels_last, fold_batchnorm = map(_plain_scalar, (tta, channels_last, fold_batchnorm))
        # predict.py's own checks, so a value is refused here in the same words as on its command line: the
        # kind first (tta="no" was read as true by bool(), overlap="0.5" failed in the tiling with a
        # TypeError), then the range.
        given: dict[str, Any] = {
            "tile": tile,
            "overlap": overlap,
            "batch_size": batch_size,
            "tta": tta,
            "min_unit_area_px": min_unit_area_px,
            "nodata_max": nodata_max,
            "max_range_m": max_range_m,
            "channels_last": channels_last,
            "fold_batchnorm": fold_batchnorm,
            "max_megapixels": max_megapixels,
        }
        check_option_types(given, python=True)  # "give tta=True", in Python's words
        options = PredictOptions(ckpt_path="", input_dir="", output_dir="", **given)
        options.check_values(python=True)
        if isinstance(contact, Mapping):
            contact = {name: _plain_scalar(value) for name, value in contact.items()}
        if contact is not None and not isinstance(contact, (ContactConfig, Mapping)):
            raise ConfigError(
                f"contact must be a mapping of predict.py's contact options, e.g. "
                f"{{'min_length_px': 20.0}}, or a ContactConfig; got {type(contact).__name__} {contact!r}"
            )
        contact = contact if isinstance(contact, ContactConfig) else read_contact_config(contact or {})
        #: The steps after the network with this mapper's settings, made as predict.py makes its own.
        self.units = UnitSteps.from_options(options, contact)
        if not isinstance(device, (str, torch.device)):
            raise ConfigError(f"device={device!r}: give 'auto', 'cpu', 'cuda' or 'cuda:N'")
        self.device = select_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.metadata: dict[str, Any] = dict(model.metadata)
        stride = int(self.metadata.get("size_divisor", 32))
        self.tile = int(tile if tile is not None else self.metadata["tile_size"])
        try:
            make_grid(1, 1, self.tile, overlap, stride)
        except ValueError as exc:
            taken = "" if tile is not None else model_tile_note("tile=None", self.tile, stride)
            raise ConfigError(f"bad tile/overlap for this model: {exc}{taken}") from exc
        self.in_channels = int(self.metadata["in_channels"])
        self.max_range_m = float(max_range_m)
        #: Largest image file read (header checked before decoding); None: no limit at all.
        self.max_megapixels = math.inf if max_megapixels is None else float(max_megapixels)
        from marsunits.model_package import network_sha256  # Lightning: imported already, with the model

        #: The model the mapper's results name (:attr:`UnitMap.model`): by its tensors, hashed before
        #: TorchForward moves or folds them; :meth:`load` adds the file's name.
        self.model_record = model_record(None, network_sha256(model))
        if not fold_batchnorm:
            # TorchForward moves the model to the device, to eval mode and to channels_last in place (folding
            # batch norm works on a copy): a notebook's model in training was left on the GPU, in eval mode.
            model = copy.deepcopy(model)
        forward = TorchForward(
            model,
            self.device,
            channels_last=channels_last,
            precision=self.precision,
            fold_bn=fold_batchnorm,
        )
        self.predictor = Predictor(
            forward,
            in_channels=self.in_channels,
            tile=self.tile,
            overlap=overlap,
            batch_size=batch_size,
            device=self.device,
            num_classes=int(self.metadata["num_classes"]),
            stride=stride,
            mirror_average=bool(tta),
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, trust_checkpoint: bool = False, **options: Any
    ) -> UnitMapper:
        """Load a model package folder (``python -m marsunits.export``; safe) or a ``.ckpt`` written by
        ``train.py``, and make a mapper of it.

        Args:
            path: The package folder (or its ``model.json``) or the checkpoint file.
            trust_checkpoint: Also load a ``.ckpt`` whose pickle needs arbitrary Python objects (it can run
                code: only for files you trust), as ``predict.py trust_checkpoint=true``.
            **options: The keyword arguments of :class:`UnitMapper`.

        A model evidently too little trained to use (a ``debug=fdr`` checkpoint, a few optimiser steps:
        :func:`marsunits.training_extent.barely_trained`) is loaded with the warning ``predict.py`` logs. A
        model trained on synthetic scenes alone (the default ``python train.py``) is loaded with a warning
        that its maps of real rover images show how the tool works, not where the units are, naming the
        recipes of models trained on real labels
        (:func:`marsunits.inference.run_summary_text.synthetic_model_note`).

        Raises:
            FileNotFoundError: No such file or folder.
            marsunits.task.CheckpointError: Not a usable marsunits model (the message says why and what
                to do).
            ConfigError: An option out of its range, or trust_checkpoint not a bool; an option it does not
                take, naming the option meant or, for a ``predict.py`` option (``threads``), where it is.
        """
        from marsunits.model_package import load_model  # imports Lightning: only when a model is loaded

        # trust_checkpoint="no" is true to bool(): it unpickled an untrusted checkpoint's code.
        check_option_types({"trust_checkpoint": trust_checkpoint}, python=True)
        # Before the model is loaded (seconds), and naming the option meant: Python's own "unexpected keyword
        # argument 'tiles'" came after the load and listed nothing.
        valid = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "model")]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            hints = [_unknown_option_hint(name, options[name], valid) for name in unknown]
            raise ConfigError(
                f"unknown UnitMapper option(s): {', '.join(hints)}; valid options are "
                f"{', '.join(['trust_checkpoint', *valid])}"
            )
        if not isinstance(path, (str, os.PathLike)):  # not pathlib's "expected str, bytes or os.PathLike"
            raise TypeError(
                f"UnitMapper.load takes the path of a model package folder or a .ckpt file, got "
                f"{type(path).__name__} {path!r}"
            )
        # load_model expands `~` and says what a missing path is (a package file renamed on its way: which
        # file to rename back).
        model = load_model(path, map_location="cpu", trust_checkpoint=trust_checkpoint)
        mapper = cls(model, **options)
        mapper.model_record = model_record(path, mapper.model_record["network_sha256"])
        barely = barely_trained(model.training_record)
        if barely is not None:  # as predict.py warns: a debug=fdr checkpoint mapped noise without a word
            log.warning("%s", barely_trained_warning(os.fspath(path), barely, model.metadata.get("dataset")))
        if model.metadata.get("dataset") == "synthetic":  # as predict.py's last line says of other images
            log.warning("%s", synthetic_model_note(os.fspath(path), "its metadata's dataset"))
        return mapper

    @property
    def config(self) -> dict[str, Any]:
        """The settings this mapper predicts with, under ``predict.py``'s option names."""
        return {
            "device": str(self.device),
            "precision": self.precision,
            "tile": self.tile,
            "overlap": self.predictor.overlap,
            "batch_size": self.predictor.batch_size,
            "tta": self.predictor.mirror_average,
            "min_unit_area_px": self.min_unit_area_px,
            "nodata_max": self.nodata_max,
            "max_range_m": self.max_range_m,
            "max_megapixels": None if math.isinf(self.max_megapixels) else self.max_megapixels,
            "contact": asdict(self.contact),
        }

    def units_from_probabilities(
        self, probs: np.ndarray, image: np.ndarray
    ) -> tuple[np.ndarray, list[ContactLine]]:
        """The mask and contact lines of one image's class probabilities, made with this mapper's settings
        (:attr:`config`: the no-data border, the minimum mapping unit, contact extraction), as :meth:`map`
        and ``predict.py`` make them: the steps after the network, for probabilities of one's own (a
        ``prob.tif`` read back as float, another model's) or to compare settings without predicting again.

        Args:
            probs: Float ``(num_classes, H, W)`` softmax probabilities of ``image``, class ids in the order
                of ``marsunits.constants.CLASS_NAMES`` (float32, as ``mapper.predictor.predict`` returns
                them). Modified in place, as :attr:`UnitMap.probabilities` is: the minimum mapping unit's
                merges, and zeros at no-data pixels; pass a copy to keep them.
            image: Float ``(H, W, C)`` in [0, 1], C 1 or 3, the image the probabilities are of
                (:attr:`UnitMap.image`): only its no-data border is read from it.

        Returns:
            The uint8 ``(H, W)`` mask (0 ``smooth_volcanic``, 1 ``rough_olivine``, 2 ``other``, 255 no data)
            and the contact lines, each with its ``contact_id``, in pixel coordinates (x = column, y = row,
            origin at the top-left pixel's corner, so the first pixel's centre is (0.5, 0.5)), at full
            precision and without ground coordinates: :meth:`map` adds those from the camera, then rounds
            as the contact file stores them (:func:`~marsunits.boundary.contact_io.as_stored`).

        Raises:
            ValueError: ``probs`` or ``image`` not a float array of these shapes (naming both), or a
                probability outside the no-data pixels NaN or infinite (a model with broken weights).
        """
        num_classes = int(self.metadata["num_classes"])
        if not (
            isinstance(probs, np.ndarray)
            and isinstance(image, np.ndarray)
            and np.issubdtype(probs.dtype, np.floating)
            and np.issubdtype(image.dtype, np.floating)
            and probs.ndim == 3
            and probs.shape[0] == num_classes
            and image.ndim == 3
            and image.shape[:2] == probs.shape[1:]
        ):
            raise ValueError(
                f"units_from_probabilities takes float numpy arrays: probs ({num_classes}, H, W) and the "
                f"image (H, W, C) in [0, 1] of the same H and W; got probs {_array_named(probs)} and image "
                f"{_array_named(image)} (a tensor: .numpy(); a 2-D image: image[:, :, None]; 8-bit: "
                "image / 255)"
            )
        return self.units(probs, image)

    @property
    def min_unit_area_px(self) -> int:
        """The minimum mapping unit in pixels (:attr:`units`); 0: off."""
        return self.units.min_unit_area_px

    @min_unit_area_px.setter
    def min_unit_area_px(self, value: int) -> None:
        self.units = replace(self.units, min_unit_area_px=value)

    @property
    def nodata_max(self) -> float | None:
        """The no-data threshold (:attr:`units`); None: off."""
        return self.units.nodata_max

    @nodata_max.setter
    def nodata_max(self, value: float | None) -> None:
        self.units = replace(self.units, nodata_max=value)

    @property
    def contact(self) -> ContactConfig:
        """The contact extraction settings (:attr:`units`)."""
        return self.units.contact

    @contact.setter
    def contact(self, value: ContactConfig) -> None:
        self.units = replace(self.units, contact=value)

    def map(
        self,
        image: str | os.PathLike[str] | np.ndarray | PIL.Image.Image | torch.Tensor,
        camera: CameraModel | str | os.PathLike[str] | Mapping[str, Any] | None = BESIDE,
    ) -> UnitMap:
        """Map the units and their contact in one image.

        Args:
            image: An image file (read as ``predict.py`` reads it: EXIF orientation applied, 16-bit and
                12-bit data scaled, alpha dropped); a PIL image (``Image.open(path)``), read as its file
                is; a numpy array ``(H, W)`` or ``(H, W, C)`` with C 1 or 3: uint8 (0-255), uint16
                (0-65535; 12-bit data, every value at most 4095, 0-4095 as in a file:
                :func:`~marsunits.data.io.widen_12_bit`), float in [0, 1] (NaN read as black, so a NaN
                border is no data, +inf as full scale, as ``predict.py`` reads a float TIFF) or bool (black
                and white), a masked array's masked pixels read as black as NaN is; or a torch tensor
                ``(C, H, W)`` or ``(H, W)`` (any device) with those dtypes and ranges.
            camera: Where the ground coordinates come from: ``"beside"`` (default) the camera file of an
                image file as ``predict.py`` finds it (``<stem>.camera.json`` next to it, or
                ``../cameras/<stem>.json``), none for an array; a camera JSON file, or its content as a
                dict; a :class:`~marsunits.boundary.camera.base.CameraModel`; or None for pixels only. A
                camera given for an image file or a PIL image is, as camera files are, of the raster as
                stored: turned by the EXIF orientation the image is turned by, as the one beside a file is
                (an ``OrientedCamera``, e.g. an earlier result's ``camera``, is already turned and used as
                it is). The camera is read and checked before the network runs, so a camera refused
                (below) is refused at once, not after minutes of predicting a panorama.

        Raises:
            marsunits.data.io.ImageReadError: The file cannot be read as an image.
            ValueError: An array or tensor of another shape or dtype, or finite values outside [0, 1], or
                no finite value at all; a camera that is broken, not there, or made for another image size
                (``CameraFileError``, naming the camera and the image as given).
            TypeError: ``image`` or ``camera`` is none of these.
        """
        path = None
        pil_orientation = 1  # the EXIF orientation a PIL image was turned by, as its file is
        if isinstance(image, (str, os.PathLike)):
            path = expand_home(image)
            meant = None if path.exists() or path.is_symlink() else meant_path(path)
            if meant is not None:  # a typo in a notebook: predict.py names the folder or checkpoint meant too
                raise ImageReadError(
                    f"{path}: file not found; did you mean {meant}? Check the path (relative paths start at "
                    "the working directory)."
                )
            pixels = read_image(path, max_megapixels=self.max_megapixels)
        elif isinstance(image, PIL.Image.Image):
            pil_orientation = _orientation_tag(image)
            pixels = scale_to_unit(pil_image_native(image))
        elif isinstance(image, torch.Tensor):
            pixels = _array_image(_tensor_image(image))
        elif isinstance(image, np.ndarray):
            pixels = _array_image(image)
        else:
            raise TypeError(
                f"cannot map a {type(image).__name__}: give an image file's path, a numpy array (H, W) or "
                "(H, W, C), a PIL image or a torch tensor (C, H, W)"
                + ("; for a list, np.asarray(it) first" if isinstance(image, (list, tuple)) else "")
            )
        # The camera is read and checked before the network runs: a broken camera file beside a panorama
        # was refused only after minutes of predicting, and the result was lost all the same.
        height, width = pixels.shape[:2]
        found: CameraModel | None
        source = None  # where a camera given came from, for the messages
        if isinstance(camera, str) and camera == BESIDE:
            try:
                found = None if path is None else image_camera(path, self.max_megapixels)
            except CameraFileError as exc:  # predict.py writes this image's pixel outputs all the same
                raise CameraFileError(
                    f"{str(exc).rstrip('.')}; fix the camera file, or give camera=None to map the image in "
                    "pixels only (no ground coordinates)"
                ) from exc
        elif camera is None or isinstance(camera, CameraModel):
            found, source = camera, "the camera given"
        elif isinstance(camera, Mapping):  # a camera file's content, e.g. json.load(f)
            found, source = camera_from_dict(dict(camera), "the camera dict given"), "the camera dict given"
        elif isinstance(camera, (str, os.PathLike)):
            camera_path = expand_home(camera)
            if not camera_path.exists() and not camera_path.is_symlink():  # a typo, not a file to remove
                raise CameraFileError(
                    f"camera={str(camera)!r}: no such file; check the path (a relative one starts at the "
                    "working directory), or give camera=None for the contacts in pixels only"
                )
            found, source = load_camera(camera_path), str(camera)
        else:
            raise TypeError(
                f"camera={camera!r:.60}: give a camera file's path, a camera model "
                "(marsunits.boundary.camera), a camera file's content as a dict, None, or 'beside'"
            )
        if found is not None and source is not None and not isinstance(found, OrientedCamera):
            # A camera describes the raster as stored, as the camera took it: turned with the file (or the
            # PIL image of it) as read, as the one beside it is (a 180-degree tag otherwise put every
            # contact elsewhere).
            if path is not None:
                found = orient_camera(found, exif_orientation(path, self.max_megapixels))
            else:
                found = orient_camera(found, pil_orientation)
        if found is not None:  # of another size: refused now too (sized_image_camera names the image)
            if path is not None:
                found = sized_image_camera(path, width, height, found, source=source)
            elif (found.image_width, found.image_height) != (width, height):
                assert source is not None and not isinstance(image, (str, os.PathLike))  # in memory
                raise CameraFileError(_given_camera_size_refusal(image, found, width, height, source))
        x = torch.from_numpy(to_channels(pixels, self.in_channels)).permute(2, 0, 1)
        probs = self.predictor.predict(x)
        mask, lines = self.units_from_probabilities(probs, pixels)
        assert mask.shape == (height, width)
        if found is not None:
            if path is not None:  # predict.py's own checks and warnings, naming the image
                lines = add_ground_coordinates(
                    path, lines, width, height, self.max_range_m, camera=found, source=source
                )
            else:  # an array: warned about as predict.py warns about a file's camera (it was silent)
                warn_if_sees_no_ground(None, found, self.max_range_m, source)
                warn_if_angles_read_as_radians(None, found, source)
                lines = add_ground(lines, found, max_range_m=self.max_range_m, keep_unprojected=True)
        # As predict.py writes them (coordinates to 1e-3 px, ground to 0.1 mm, confidences to 1e-4).
        palette = [[int(c) for c in rgb] for rgb in self.metadata["palette"]]
        return UnitMap(pixels, probs, mask, as_stored(lines), found, palette, dict(self.model_record))


def _array_named(value: object) -> str:
    """``value``'s type, shape and dtype, as a refusal of an array names what it was given."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    return f"{type(value).__name__} of shape {shape} and dtype {dtype}"


def _given_camera_size_refusal(
    image: PIL.Image.Image | np.ndarray | torch.Tensor,
    camera: CameraModel,
    width: int,
    height: int,
    source: str,
) -> str:
    """The refusal of ``camera`` (given as ``source`` says) made for another size than ``image``, a PIL image,
    array or tensor of ``width`` x ``height`` pixels as read: an image file's
    (:func:`~marsunits.inference.image_cameras.camera_size_refusal`), the input named as it was given (the
    PIL image, compared as stored as a file is, ``camera`` then the ``OrientedCamera`` of its EXIF turn; the
    array or tensor with its shape)."""
    if isinstance(image, PIL.Image.Image):
        named, as_stored = "the PIL image", True
    else:
        kind = "tensor" if isinstance(image, torch.Tensor) else "array"
        named, as_stored = f"the {kind} of shape {tuple(image.shape)}", False
    return camera_size_refusal(
        camera, width, height, camera_named=source, image_named=named, as_stored=as_stored
    )


def _unknown_option_hint(name: str, value: Any, valid: list[str]) -> str:
    """What to say of an option :meth:`UnitMapper.load` does not take: where a ``predict.py`` option of that
    name is in Python (the README's "From Python" names ``threads=``), else the valid option meant."""
    if name == "threads":
        return f"threads is predict.py's; in Python call torch.set_num_threads({value!r}) before mapping"
    if name in ("save_probabilities", "probability_dtype"):
        return f"{name} is an argument of UnitMap.save: result.save(folder, stem, {name}=...)"
    if name == "ckpt_path":
        return "ckpt_path is load's first argument: UnitMapper.load(<.ckpt or model package>)"
    if name in ("input_dir", "output_dir"):
        return f"{name} is predict.py's: map one image at a time (mapper.map(path)) and save it (result.save)"
    if name in {f.name for f in fields(PredictOptions)}:
        return f"{name} is predict.py's alone (work on a folder stays there)"
    close = difflib.get_close_matches(name, valid, 1)
    return f"{name} (did you mean {close[0]}?)" if close else name


#: The torch dtypes :meth:`UnitMapper.map` takes (those of the numpy arrays it takes).
_TENSOR_DTYPES = (
    torch.uint8,
    torch.uint16,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.bool,
)


def _tensor_image(tensor: torch.Tensor) -> np.ndarray:
    """A torch image tensor ``(C, H, W)`` (C 1 or 3, torch's order) or ``(H, W)`` as a numpy ``(H, W, C)``
    array of the same dtype and values (bfloat16 as float32), on the CPU, for :func:`_array_image`.

    Raises:
        ValueError: Another shape (a batch, channels last), naming it and what to give.
    """
    shape = tuple(tensor.shape)
    if tensor.ndim == 3 and shape[0] not in (1, 3):
        hint = "; for channels last (H, W, C), tensor.permute(2, 0, 1)" if shape[2] in (1, 3) else ""
        hint += (
            "; drop the alpha channel first (tensor[:3]), or give the file or Image.open(it), whose fully "
            "transparent pixels are read as black, no data, as predict.py reads them"
            if shape[0] == 4
            else ""
        )
        raise ValueError(f"expected an image tensor of shape (C, H, W) with C = 1 or 3, got {shape}{hint}")
    if tensor.ndim not in (2, 3) or 0 in shape:  # an empty one was named in (H, W, C) order, permuted
        hint = "; map one image at a time (tensor[0])" if tensor.ndim == 4 else ""
        raise ValueError(f"expected an image tensor of shape (C, H, W) or (H, W), got {shape}{hint}")
    if tensor.dtype not in _TENSOR_DTYPES:  # told to use numpy's image.astype, which a tensor does not have
        raise ValueError(
            f"expected a uint8, uint16, float or bool image tensor, got dtype {tensor.dtype}; convert it, "
            "e.g. tensor.float() / its full-scale value"
        )
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return (tensor if tensor.ndim == 2 else tensor.permute(1, 2, 0)).numpy()


def _array_image(array: np.ndarray) -> np.ndarray:
    """A numpy image as float32 ``(H, W, C)`` in [0, 1] (see :meth:`UnitMapper.map`).

    Raises:
        ValueError: Naming the shape, dtype or value range found and what is expected.
    """
    if isinstance(array, np.ma.MaskedArray):
        # Masked pixels (rasterio's masked=True, np.ma) read as black, as NaN is, so a masked border is no
        # data: their hidden values (a -9999 fill, anything) were mapped as image.
        array = array.filled(0)
    # An ndarray subclass as a plain array: np.matrix stays 2-D under [:, :, None] and failed in to_channels.
    array = np.asarray(array)
    shape = array.shape  # as given, for the message
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3) or array.shape[0] < 1 or array.shape[1] < 1:
        hint = ""
        if array.ndim == 3 and array.shape[2] == 4:
            hint = (
                "; drop the alpha channel first (image[..., :3]), or give the file or Image.open(it), whose "
                "fully transparent pixels are read as black, no data, as predict.py reads them"
            )
        elif array.ndim == 3 and array.shape[0] in (1, 3) and min(array.shape[1:]) > 0:
            hint = "; for channels first (C, H, W), image.transpose(1, 2, 0)"
        elif array.ndim == 4:
            hint = "; map one image at a time (image[0])"
        raise ValueError(
            f"expected an image array of shape (H, W) or (H, W, C) with C = 1 or 3, got {shape}{hint}"
        )
    if array.dtype == np.bool_:  # black and white (PIL mode "1"): False is 0, True full scale
        array = array.astype(np.uint8) * np.uint8(255)
    if array.dtype not in (np.uint8, np.uint16) and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"expected a uint8, uint16 or float image array, got dtype {array.dtype}; convert it, e.g. "
            "image.astype(np.float32) / its full-scale value"
        )
    # 12-bit data (every value <= 4095) stretched to 16 bits, as predict.py reads such a file: a Navcam PNG
    # read with imageio was otherwise mapped 16 times too dark, unlike the same file given by its path.
    pixels = scale_to_unit(widen_12_bit(array))
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(pixels)
        if not finite.any():
            raise ValueError(
                f"a float image array holds no finite value (all NaN or infinite), shape {shape}: nothing "
                "to map; check how it was computed"
            )
        if not finite.all():
            # As predict.py reads a float TIFF's non-finite pixels (data.io): NaN black, so that a NaN border
            # is no data, +inf full scale, -inf black. The same file read with tifffile was refused.
            pixels = np.nan_to_num(pixels, nan=0.0, posinf=1.0, neginf=0.0)
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > 1.0:
            # Saturated pixels a little above 1 (up to 2) are clipped when predict.py reads a float file: the
            # same file read with tifffile was told to divide by 255, which makes it black.
            fix = (
                "clip it first (np.clip(image, 0, 1), as predict.py reads a float file's saturated pixels), "
                "or give the file's path"
                if low >= 0.0 and high <= FLOAT_FULL_SCALE_MAX
                else "divide it by its full-scale value (255 for 8-bit data) first"
            )
            raise ValueError(
                f"a float image array must hold values in [0, 1], got {low:g} to {high:g}; {fix}"
            )
    # A copy, never the caller's own float32 array: UnitMap.image would change with later edits of it.
    return pixels.copy() if np.shares_memory(pixels, array) else np.ascontiguousarray(pixels)
