"""Camera files from PDS labels: write ``<stem>.camera.json`` from the CAHV(OR(E)) model a rover image's label
carries, so that a geologist does not copy vectors out of labels by hand.

Usage::

    python -m marsunits.boundary.camera.from_label LABEL [LABEL ...] [--out-dir DIR] [--ground-z-m Z]
        [--overwrite]

Each ``LABEL`` is read and ``<stem>.camera.json`` is written next to it (or in ``--out-dir``), in the
schema of :mod:`marsunits.boundary.camera.io`, so ``predict.py`` finds it beside the image ``<stem>.png``.
One line is printed per label written, one error line per label refused; the others are still written and
the exit status is 1 when any label was refused (2 for a usage error).

Labels read:

* **PDS3** (ODL text, parsed with ``pvl``): a detached ``.LBL`` or the label at the head of an ``.IMG``, as
  MER and MSL products carry them. The camera is the ``GEOMETRIC_CAMERA_MODEL`` (MER) or
  ``GEOMETRIC_CAMERA_MODEL_PARMS`` (MSL) group: ``MODEL_TYPE`` (``CAHV``, ``CAHVOR`` or ``CAHVORE``),
  ``MODEL_COMPONENT_1..7`` (in the order ``MODEL_COMPONENT_ID`` names, C A H V O R E when absent) and, for
  CAHVORE, its type ``T`` and parameter ``P`` (``MODEL_COMPONENT_8`` and ``_9``, which Mars 2020 labels leave
  out of ``MODEL_COMPONENT_ID``; where it names ``T`` and ``P``, their places are taken from it),
  ``REFERENCE_COORD_SYSTEM_NAME`` and ``REFERENCE_COORD_SYSTEM_INDEX`` (named by
  ``COORDINATE_SYSTEM_INDEX_NAME`` where given, else by the label's ``ROVER_MOTION_COUNTER_NAME`` where it
  names as many entries, as MER labels name them); the image size is the ``IMAGE`` object's ``LINES`` and
  ``LINE_SAMPLES``. The rover's place is the ``ORIGIN_OFFSET_VECTOR`` of the ``ROVER_COORD_SYSTEM_PARMS``
  (JPL MIPL's MSL archive labels: Navcam, Hazcam), ``ROVER_COORDINATE_SYSTEM_PARMS`` (MSSS's: Mastcam,
  MAHLI) or ``ROVER_COORDINATE_SYSTEM`` (MER, and the VICAR name) group.
* **PDS4** (XML, the Mars 2020 archive form): the ``geom:`` discipline dictionary's
  ``geom:Camera_Model_Parameters`` with ``geom:CAHV_Model``, ``geom:CAHVOR_Model`` or ``geom:CAHVORE_Model``
  (``geom:Vector_Center``, ``_Axis``, ``_Horizontal``, ``_Vertical``, ``_Optical``, ``geom:Radial_Terms``,
  ``geom:Entrance_Terms``, ``geom:cahvore_model_type``, ``geom:cahvore_model_parameter``) and its
  ``geom:Coordinate_Space_Reference``; the image size from the ``Axis_Array`` elements (``Line``,
  ``Sample``) of the product's ``Array_2D_Image`` / ``Array_3D_Image``; the rover's place from the
  ``geom:Coordinate_Space_Definition`` of its ``ROVER_NAV_FRAME``. Where a label holds several camera
  models that differ (one per ``geom:Geometry_Lander``), the one of the ``Telemetry`` geometry state is
  taken, and a label without one is refused.

CAHVORE models (the Hazcams', most Mars 2020 Navcams') are written as ``"model": "cahvore"`` with ``E``,
``T`` and ``P`` (:mod:`marsunits.boundary.camera.cahvore`).

The frame. The vectors are written in the frame the label gives them in, with its index as ``site`` (the
contact map draws the cameras of one ``site`` together):

* ``SITE_FRAME`` and ``LOCAL_LEVEL_FRAME`` (x north, y east, z down): ``"frame": "pds"``, ``site``
  ``SITE_<n>`` or ``LOCAL_LEVEL_(<site>,<drive>,<pose>)``;
* ``ROVER_NAV_FRAME`` (MSL, Mars 2020) and ``ROVER_FRAME`` (MER), x forward, y starboard, z down: turned
  to the project's x forward, y left, z up (``"frame": "flu"``, so the map's axes say forward and left,
  not north and west), ``site`` ``ROVER_NAV_(<site>,<drive>,<pose>)``. These frames tilt with the rover:
  their "ground" is the plane the wheels stand on.

Other frames (a mast head's, an arm's) have no vertical axis for a flat ground, and are refused.

The ground. ``ground_z_m`` (height of the ground plane, z up, metres) is taken from the label only where
documentation fixes it: the origin of MSL's and Mars 2020's ``ROVER_NAV_FRAME`` "is located on the
nominal (flat) surface of Mars, beneath the rover, centered on the turn-in-place axis" (J. Maki, *MSL
Coordinate Systems for Science Instruments*, JPL 2013), so in that frame the ground is at 0, and in a
``SITE_FRAME`` it is at the height of the origin of the rover's ``ROVER_NAV_FRAME`` in that same site (its
``ORIGIN_OFFSET_VECTOR``, z down: a rover 1.7 m above the site origin has ``z = -1.7``, so
``ground_z_m = 1.7``). No such statement was found for MER's ``ROVER_FRAME`` nor for ``LOCAL_LEVEL_FRAME``
origins: there, and where the label lacks the rover's place in the camera's site, ``--ground-z-m`` is
required and its absence is an error naming the label. ``--ground-z-m`` given is used for every label (it
overrides a label's own value, which is then said in a note line).

The written file also carries ``pds_label`` (the label's name), ``pds_frame`` (the frame as the label names
it) and ``pds_ground`` (where ``ground_z_m`` came from), which the camera reader ignores.

Subframed and downsampled products: the labels' models are taken as given, for the image as stored (the
archives' labels are adjusted so; an image cropped or resized after download needs its model adjusted too).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.atomic import atomic_write_text
from marsunits.boundary.camera.cahv import ned_to_flu
from marsunits.boundary.camera.io import SIDECAR_SUFFIX, CameraFileError, camera_from_dict
from marsunits.errors import readable

__all__ = ["LabelCamera", "LabelError", "camera_file_dict", "convert_label", "main", "read_label"]

PROG = "python -m marsunits.boundary.camera.from_label"
GEOM_NS = "http://pds.nasa.gov/pds4/geom/v1"
PDS_NS = "http://pds.nasa.gov/pds4/pds/v1"
_G = f"{{{GEOM_NS}}}"
_P = f"{{{PDS_NS}}}"

#: Frames whose axes are x north, y east, z down (written as ``"frame": "pds"``).
_NORTH_FRAMES = ("SITE_FRAME", "LOCAL_LEVEL_FRAME")
#: Rover-fixed frames, x forward, y starboard, z down (turned to FLU on writing).
_ROVER_FRAMES = ("ROVER_NAV_FRAME", "ROVER_FRAME")
#: The frame whose origin is documented to lie on the nominal surface beneath the rover (MSL, Mars 2020).
_GROUND_AT_ORIGIN = "ROVER_NAV_FRAME"
#: Index entries that name a rover-fixed frame (the rest of a motion counter counts mast or arm moves).
_POSE_INDEX = ("SITE", "DRIVE", "POSE")
_GROUND_ADVICE = (
    "give the ground's height in the camera model's frame (metres, z up) with --ground-z-m "
    "(README, Camera files)"
)


class LabelError(ValueError):
    """A label that cannot be turned into a camera file; the message names the label and what to do."""


@dataclass
class LabelCamera:
    """The camera model of one label, as the label gives it.

    Attributes:
        model: ``"cahv"``, ``"cahvor"`` or ``"cahvore"``.
        vectors: ``C``, ``A``, ``H``, ``V`` (and ``O``, ``R``; ``E``) in the label's frame (z down).
        scalars: A CAHVORE's ``T`` (its type, an int) and ``P`` (its parameter); empty for the others.
        image_width, image_height: The image's size in pixels.
        frame: The frame's name as the label gives it (``SITE_FRAME``, ``ROVER_NAV_FRAME``, ...).
        index: The frame's index entries, ``(name or None, value)``.
        ground_z_m: Height of the ground plane in that frame, z up, metres; None where the label does not
            determine it.
        ground_note: Where ``ground_z_m`` came from, or why the label does not determine it.
    """

    model: str
    vectors: dict[str, list[float]]
    image_width: int
    image_height: int
    frame: str
    index: list[tuple[str | None, int]] = field(default_factory=list)
    scalars: dict[str, float] = field(default_factory=dict)
    ground_z_m: float | None = None
    ground_note: str = ""

    @property
    def site_index(self) -> int | None:
        """The SITE entry of the frame's index (the first one where the entries are not named)."""
        return _site_of(self.index)

    @property
    def site(self) -> str:
        """The frame as the contact map groups cameras: ``SITE_3``, ``ROVER_NAV_(3,45,2)``."""
        stem = self.frame.upper().removesuffix("_FRAME")
        if self.frame.upper() == "SITE_FRAME":
            return f"SITE_{self.site_index}"
        named = [v for n, v in self.index if n is not None and n.upper() in _POSE_INDEX]
        values = named or [v for _, v in self.index]
        return f"{stem}_({','.join(str(v) for v in values)})"

    @property
    def frame_text(self) -> str:
        """The frame and its index as the label gives them, for ``pds_frame``."""
        entries = ", ".join(f"{n}={v}" if n else str(v) for n, v in self.index)
        return f"{self.frame} ({entries})" if entries else self.frame


def _site_of(index: list[tuple[str | None, int]]) -> int | None:
    named = [v for n, v in index if n is not None and n.upper() == "SITE"]
    if named:
        return named[0]
    return index[0][1] if index and all(n is None for n, _ in index) else None


# ----------------------------------------------------------------------------------------------- reading
def read_label(path: str | Path) -> LabelCamera:
    """Read the camera model of a PDS3 or PDS4 label (module docstring for what is read).

    Raises:
        LabelError: If the file cannot be read, is not a label, has no camera model or one that is not CAHV,
            CAHVOR or CAHVORE, or lacks the image size or the frame (the message names the file and the fix).
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # never opened: a FIFO would be read for ever
        raise LabelError(
            f"cannot read label {path}: a folder or special file, not a file; give the label file"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _read_pds4(path)
    if b"PDS_VERSION_ID" not in head and b"ODL_VERSION_ID" not in head:
        # pvl's lenient grammar reads any bytes (an image, a CSV) as an empty label: say what the file is not
        raise LabelError(
            f"cannot read label {path}: not a PDS3 (ODL) or PDS4 (XML) label (it starts with neither "
            "PDS_VERSION_ID nor an XML tag); give the product's .LBL, .IMG or .xml label"
        )
    return _read_pds3(path)


def _number(value: Any, what: str, source: Path, unit: str = "") -> float:
    """A finite float from a label value (a pvl ``Quantity`` with a unit included)."""
    units = getattr(value, "units", None)
    if units is not None:
        value = value.value
        if unit == "m" and str(units).strip().lower() not in ("m", "meter", "meters", "metre", "metres"):
            raise LabelError(f"{source}: {what} is in {units!r}, expected metres; convert the label's value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise LabelError(
            f"{source}: {what} is {value!r}, not a finite number; the label's camera model is incomplete: "
            "use another product of the image"
        )
    return float(value)


def _vector(value: Any, what: str, source: Path, unit: str = "") -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise LabelError(f"{source}: {what} must be 3 numbers, got {value!r}; the label is damaged")
    return [_number(v, what, source, unit) for v in value]


def _read_pds3(path: Path) -> LabelCamera:
    with warnings.catch_warnings():  # pvl 1.x warns of its own deprecated Units class on import
        warnings.filterwarnings("ignore", "The pvl.collections.Units", PendingDeprecationWarning)
        import pvl  # imported here: a PDS4-only user never pays for it

    try:
        label = pvl.load(str(path))
    except (pvl.exceptions.LexerError, pvl.exceptions.ParseError, ValueError, UnicodeError) as exc:
        said = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else str(exc)
        reason = " ".join(said.split())[:200]
        raise LabelError(
            f"cannot read label {path}: not a PDS3 (ODL) or PDS4 (XML) label ({reason}); give the product's "
            ".LBL, .IMG or .xml label"
        ) from exc
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    groups = _all(label, "GEOMETRIC_CAMERA_MODEL_PARMS", "GEOMETRIC_CAMERA_MODEL")
    if not groups:
        raise LabelError(
            f"{path}: no GEOMETRIC_CAMERA_MODEL_PARMS or GEOMETRIC_CAMERA_MODEL group, so no camera model; "
            "use a product whose label carries one (MER and MSL EDR/RDR labels do), or write the camera "
            "file by hand (README, Camera files)"
        )
    if len(groups) > 1 and any(dict(g) != dict(groups[0]) for g in groups[1:]):
        raise LabelError(
            f"{path}: {len(groups)} different camera model groups; which one belongs to the image cannot be "
            "told: write the camera file by hand from the one you trust (README, Camera files)"
        )
    group = groups[0]
    model_type = str(group.get("MODEL_TYPE", "")).strip().upper()
    model = _model_of(model_type, path)
    letters = ["C", "A", "H", "V", "O", "R", "E"][: _VECTOR_COUNT[model]]
    ids = group.get("MODEL_COMPONENT_ID")
    order = (
        [str(i).strip().upper() for i in ids]
        if isinstance(ids, (list, tuple))
        else ["C", "A", "H", "V", "O", "R", "E"]
    )
    vectors: dict[str, list[float]] = {}
    for letter in letters:
        if letter not in order:
            raise LabelError(f"{path}: MODEL_COMPONENT_ID {ids!r} names no {letter} for a {model_type} model")
        key = f"MODEL_COMPONENT_{order.index(letter) + 1}"
        if key not in group:
            raise LabelError(
                f"{path}: the {model_type} camera model has no {key} ({letter}); the label is damaged"
            )
        vectors[letter] = _vector(group[key], f"{key} ({letter})", path, "m" if letter == "C" else "")
    scalars: dict[str, float] = {}
    if model == "cahvore":  # T and P: MODEL_COMPONENT_8 and _9 unless MODEL_COMPONENT_ID places them
        for letter, place in (("T", 8), ("P", 9)):
            key = f"MODEL_COMPONENT_{order.index(letter) + 1 if letter in order else place}"
            if key not in group:
                raise LabelError(
                    f"{path}: the CAHVORE camera model has no {key} ({letter}, its "
                    f"{'type' if letter == 'T' else 'parameter'}); the label is damaged"
                )
            scalars[letter] = _number(group[key], f"{key} ({letter})", path)
    frame = str(group.get("REFERENCE_COORD_SYSTEM_NAME", "")).strip().upper()
    if not frame:
        raise LabelError(
            f"{path}: the camera model names no REFERENCE_COORD_SYSTEM_NAME, so the frame of its vectors is "
            "unknown; write the camera file by hand (README, Camera files)"
        )
    index = _pds3_index(_index_names(label, group), group.get("REFERENCE_COORD_SYSTEM_INDEX"))
    image = label.get("IMAGE")
    if not hasattr(image, "get") or image.get("LINES") is None or image.get("LINE_SAMPLES") is None:
        raise LabelError(
            f"{path}: no IMAGE object with LINES and LINE_SAMPLES, so the image size is unknown; give the "
            "label of the image product itself"
        )
    cam = LabelCamera(
        model=model,
        vectors=vectors,
        image_width=int(_number(image["LINE_SAMPLES"], "IMAGE LINE_SAMPLES", path)),
        image_height=int(_number(image["LINES"], "IMAGE LINES", path)),
        frame=frame,
        index=index,
        scalars=scalars,
    )
    rovers = _all(label, *_ROVER_GROUPS)
    rover_places = []
    for rover in rovers:
        names = rover.get("COORDINATE_SYSTEM_INDEX_NAME")
        own = _pds3_index(names, rover.get("COORDINATE_SYSTEM_INDEX"))
        ref = rover.get("REFERENCE_COORD_SYSTEM_INDEX")
        ref_site = (
            _pds3_index(None, ref)[0][1] if ref is not None and _pds3_index(None, ref) else _site_of(own)
        )
        offset = rover.get("ORIGIN_OFFSET_VECTOR")
        rover_places.append(
            (
                str(rover.get("COORDINATE_SYSTEM_NAME", "")).strip().upper(),
                str(rover.get("REFERENCE_COORD_SYSTEM_NAME", "")).strip().upper(),
                ref_site,
                None if offset is None else _vector(offset, "ORIGIN_OFFSET_VECTOR", path, "m"),
            )
        )
    _set_ground(cam, rover_places)
    return cam


def _all(label: Any, *keys: str) -> list[Any]:
    """Every group of the label named one of ``keys`` (pvl's ``getall`` raises KeyError for none)."""
    return [value for key in keys if key in label for value in label.getall(key)]


def _index_names(label: Any, group: Any) -> Any:
    """The names of the camera model's frame index: the group's ``COORDINATE_SYSTEM_INDEX_NAME`` or, where it
    gives none (MER's ``GEOMETRIC_CAMERA_MODEL``), the label's ``ROVER_MOTION_COUNTER_NAME`` when it names as
    many entries as the index has (a rover frame's index is the rover motion counter). Unnamed, every entry
    of the index made the site, the mast's and arm's counters too, so each frame of a mosaic, taken after a
    mast move, was a site of its own."""
    names = group.get("COORDINATE_SYSTEM_INDEX_NAME")
    if names is not None:
        return names
    counter = label.get("ROVER_MOTION_COUNTER_NAME")
    values = group.get("REFERENCE_COORD_SYSTEM_INDEX")
    if (
        isinstance(counter, (list, tuple))
        and isinstance(values, (list, tuple))
        and len(counter) == len(values)
    ):
        return counter
    return None


def _pds3_index(names: Any, values: Any) -> list[tuple[str | None, int]]:
    """A PDS3 index (one number or a list) with its names where the label gives them."""
    if values is None:
        return []
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    names = list(names) if isinstance(names, (list, tuple)) else []
    out: list[tuple[str | None, int]] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            continue
        out.append((str(names[i]).strip().upper() if i < len(names) else None, v))
    return out


#: The groups that give the rover's place: JPL MIPL's MSL archive name (its detached-label translation renames
#: VICAR's ROVER_COORDINATE_SYSTEM so), MSSS's, and the VICAR name that MER labels carry.
_ROVER_GROUPS = ("ROVER_COORD_SYSTEM_PARMS", "ROVER_COORDINATE_SYSTEM_PARMS", "ROVER_COORDINATE_SYSTEM")

#: How many 3-vectors each model has (C A H V, O R, E).
_VECTOR_COUNT = {"cahv": 4, "cahvor": 6, "cahvore": 7}


def _model_of(model_type: str, source: Path) -> str:
    if model_type not in ("CAHV", "CAHVOR", "CAHVORE"):
        raise LabelError(
            f"{source}: camera model type {model_type or 'missing'!r} is not supported (CAHV, CAHVOR and "
            "CAHVORE are); use a product with such a model, or write the camera file by hand "
            "(README, Camera files)"
        )
    return model_type.lower()


def _set_ground(
    cam: LabelCamera, rover_places: list[tuple[str, str, int | None, list[float] | None]]
) -> None:
    """Set ``cam.ground_z_m`` where documentation fixes it (module docstring), else say why not.

    ``rover_places``: ``(rover frame, its reference frame, that reference's site index, origin offset)``.
    """
    frame = cam.frame.upper()
    if frame == _GROUND_AT_ORIGIN:
        cam.ground_z_m = 0.0
        cam.ground_note = (
            f"{_GROUND_AT_ORIGIN} origin: on the nominal surface beneath the rover (MSL/Mars 2020 frames)"
        )
        return
    if frame != "SITE_FRAME":
        cam.ground_note = f"the label does not fix the ground of a {cam.frame}"
        return
    site = cam.site_index
    heights = {
        -offset[2]
        for rover, ref, ref_site, offset in rover_places
        if rover == _GROUND_AT_ORIGIN and ref == "SITE_FRAME" and ref_site == site and offset is not None
    }
    if len(heights) == 1:
        cam.ground_z_m = heights.pop()
        cam.ground_note = f"{_GROUND_AT_ORIGIN} origin (on the ground beneath the rover) in SITE_FRAME {site}"
    elif heights:
        cam.ground_note = f"the label gives the rover {len(heights)} different heights in SITE_FRAME {site}"
    else:
        cam.ground_note = f"the label gives no {_GROUND_AT_ORIGIN} origin in SITE_FRAME {site}"


def _read_pds4(path: Path) -> LabelCamera:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, UnicodeError) as exc:
        raise LabelError(
            f"cannot read label {path}: not well-formed XML ({exc}); give the product's PDS4 .xml label"
        ) from exc
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    if not root.tag.startswith(_P):
        raise LabelError(
            f"{path}: XML, but not a PDS4 label (root {root.tag!r}, expected the namespace {PDS_NS}); "
            "give the product's PDS4 .xml label"
        )
    definitions = {
        (ident.text or "").strip(): d
        for d in root.iter(f"{_G}Coordinate_Space_Definition")
        for ident in d.findall(f"{_P}local_identifier")
    }
    # Camera models, each with the geometry block (Geometry_Lander) that holds it and that block's state.
    found: list[tuple[str, ET.Element, ET.Element]] = []
    for lander in root.iter(f"{_G}Geometry_Lander"):
        state = (lander.findtext(f"{_G}geometry_state") or "").strip()
        found += [(state, cmp, lander) for cmp in lander.iter(f"{_G}Camera_Model_Parameters")]
    in_lander = {id(c) for _, c, _ in found}
    found += [
        ("", cmp, root) for cmp in root.iter(f"{_G}Camera_Model_Parameters") if id(cmp) not in in_lander
    ]
    if not found:
        raise LabelError(
            f"{path}: no geom:Camera_Model_Parameters, so no camera model; use a product whose label carries "
            "one (the Mars 2020 camera products do), or write the camera file by hand (README, Camera files)"
        )
    models = [(state, scope, _pds4_camera(cmp, definitions, path)) for state, cmp, scope in found]
    telemetry = [m for m in models if m[0].lower() == "telemetry"]
    if len(telemetry) == 1:  # the geometry the rover reported (another state is e.g. "Initial")
        models = telemetry
    elif len({repr(m[2]) for m in models}) > 1:
        states = sorted({m[0] or "(none)" for m in models})
        raise LabelError(
            f"{path}: {len(models)} different camera models (geometry states {states}) and not one "
            "of state Telemetry; which belongs to the image cannot be told: write the camera file by "
            "hand from the one you trust (README, Camera files)"
        )
    _, scope, (model, vectors, frame, index, scalars) = models[0]
    width, height = _pds4_image_size(root, path)
    cam = LabelCamera(
        model=model,
        vectors=vectors,
        image_width=width,
        image_height=height,
        frame=frame,
        index=index,
        scalars=scalars,
    )
    rover_places = []
    for d in scope.iter(f"{_G}Coordinate_Space_Definition"):
        own, _ = _pds4_frame(d.find(f"{_G}Coordinate_Space_Present"), definitions)
        ref, ref_index = _pds4_frame(d.find(f"{_G}Coordinate_Space_Reference"), definitions)
        offset_el = d.find(f"{_G}Vector_Origin_Offset")
        offset = (
            None
            if offset_el is None or len(offset_el) < 3
            else [_xml_number(c, "geom:Vector_Origin_Offset", path, True) for c in list(offset_el)[:3]]
        )
        rover_places.append((own.upper(), ref.upper(), _site_of(ref_index), offset))
    _set_ground(cam, rover_places)
    return cam


def _pds4_camera(
    cmp: ET.Element, definitions: dict[str, ET.Element], path: Path
) -> tuple[str, dict[str, list[float]], str, list[tuple[str | None, int]], dict[str, float]]:
    """``(model, vectors, frame, index, scalars)`` of one ``geom:Camera_Model_Parameters`` (``scalars``: a
    CAHVORE's ``T`` and ``P``)."""
    tags = (f"{_G}CAHV_Model", f"{_G}CAHVOR_Model", f"{_G}CAHVORE_Model")
    models = [c for c in cmp if c.tag in tags]
    declared = (cmp.findtext(f"{_G}model_type") or "").strip().upper()
    if any(c.tag == f"{_G}CAHVORE_Model" for c in models):
        declared = "CAHVORE"
    model = _model_of(
        declared or (models[0].tag.removeprefix(_G).removesuffix("_Model") if models else ""), path
    )
    element = next((c for c in models if c.tag == f"{_G}{model.upper()}_Model"), None)
    if element is None:
        raise LabelError(
            f"{path}: model_type {model.upper()} but no geom:{model.upper()}_Model; the label is damaged"
        )
    parts = {
        "C": "Vector_Center",
        "A": "Vector_Axis",
        "H": "Vector_Horizontal",
        "V": "Vector_Vertical",
        "O": "Vector_Optical",
        "R": "Radial_Terms",
        "E": "Entrance_Terms",
    }
    vectors: dict[str, list[float]] = {}
    for letter, name in list(parts.items())[: _VECTOR_COUNT[model]]:
        part = element.find(f"{_G}{name}")
        if part is None or len(part) < 3:
            raise LabelError(
                f"{path}: the {model.upper()} model has no complete geom:{name}; the label is damaged"
            )
        vectors[letter] = [
            _xml_number(child, f"geom:{name}", path, letter == "C") for child in list(part)[:3]
        ]
    scalars: dict[str, float] = {}
    if model == "cahvore":
        for letter, name in (("T", "cahvore_model_type"), ("P", "cahvore_model_parameter")):
            part = element.find(f"{_G}{name}")
            if part is None:
                raise LabelError(
                    f"{path}: the CAHVORE model has no geom:{name} ({letter}); the label is damaged"
                )
            scalars[letter] = _xml_number(part, "geom:CAHVORE_Model", path, False)
    frame, index = _pds4_frame(cmp.find(f"{_G}Coordinate_Space_Reference"), definitions)
    if not frame:
        raise LabelError(
            f"{path}: the camera model has no geom:Coordinate_Space_Reference naming its frame, so the "
            "frame of its vectors is unknown; write the camera file by hand (README, Camera files)"
        )
    return model, vectors, frame, index, scalars


_LENGTH_UNITS = {"m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001}


def _xml_number(element: ET.Element, what: str, source: Path, length: bool) -> float:
    text = (element.text or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LabelError(
            f"{source}: {what}/{element.tag.removeprefix(_G)} is {text!r}, not a finite number; the "
            "label's camera model is incomplete: use another product of the image"
        )
    unit = element.get("unit")
    if length and unit is not None:
        if unit not in _LENGTH_UNITS:
            raise LabelError(f"{source}: {what} is in {unit!r}, expected metres; convert the label's value")
        value *= _LENGTH_UNITS[unit]
    return value


def _pds4_frame(
    reference: ET.Element | None, definitions: dict[str, ET.Element], depth: int = 0
) -> tuple[str, list[tuple[str | None, int]]]:
    """The frame type and index a ``Coordinate_Space_Reference`` / ``_Present`` names, following a
    ``Local_Internal_Reference`` to the ``Coordinate_Space_Definition`` it points at; ``("", [])`` if none."""
    if reference is None or depth > 4:
        return "", []
    indexed = reference.find(f"{_G}Coordinate_Space_Indexed")
    if indexed is not None:
        frame = (indexed.findtext(f"{_G}coordinate_space_frame_type") or "").strip()
        index: list[tuple[str | None, int]] = []
        for entry in indexed.findall(f"{_G}Coordinate_Space_Index"):
            name = (entry.findtext(f"{_G}index_id") or "").strip().upper() or None
            try:
                index.append((name, int((entry.findtext(f"{_G}index_value_number") or "").strip())))
            except ValueError:
                continue
        return frame, index
    target = (
        reference.findtext(f"{_P}Local_Internal_Reference/{_P}local_identifier_reference") or ""
    ).strip()
    definition = definitions.get(target)
    if definition is None:
        return "", []
    return _pds4_frame(definition.find(f"{_G}Coordinate_Space_Present"), definitions, depth + 1)


def _pds4_image_size(root: ET.Element, source: Path) -> tuple[int, int]:
    sizes = set()
    for tag in ("Array_2D_Image", "Array_3D_Image"):
        for array in root.iter(f"{_P}{tag}"):
            axes = {
                (a.findtext(f"{_P}axis_name") or "").strip().lower(): (
                    a.findtext(f"{_P}elements") or ""
                ).strip()
                for a in array.findall(f"{_P}Axis_Array")
            }
            try:
                sizes.add((int(axes["sample"]), int(axes["line"])))
            except (KeyError, ValueError):
                continue
    if len(sizes) != 1:
        said = (
            "no Array_2D_Image or Array_3D_Image with Line and Sample axes"
            if not sizes
            else f"images {sorted(sizes)}"
        )
        raise LabelError(
            f"{source}: {said}, so the image size is unknown; give the label of the image product itself"
        )
    return sizes.pop()


# ----------------------------------------------------------------------------------------------- writing
def camera_file_dict(cam: LabelCamera, label: str | Path, ground_z_m: float | None = None) -> dict[str, Any]:
    """The camera JSON dict (schema of :mod:`marsunits.boundary.camera.io`) of a label's camera.

    Args:
        cam: From :func:`read_label`.
        label: The label's path (named in messages and in ``pds_label``).
        ground_z_m: The ground's height in the camera model's frame (z up, metres); overrides the label's.

    Raises:
        LabelError: If neither the label nor ``ground_z_m`` gives the ground, if the frame has no vertical
            axis or no index (a ``SITE_FRAME`` none naming its site), or if the camera reader refuses the
            result (camera below the ground, bad vectors).
    """
    label = Path(label)
    frame = cam.frame.upper()
    if frame not in _NORTH_FRAMES + _ROVER_FRAMES:
        raise LabelError(
            f"{label}: the camera model is in {cam.frame}, which has no vertical axis for a flat ground "
            f"(frames read: {', '.join(_NORTH_FRAMES + _ROVER_FRAMES)}); "
            "use a product whose model is in one of them"
        )
    if not cam.index or (frame == "SITE_FRAME" and cam.site_index is None):
        # A rover or local level frame moves with the rover: without its index every pose's cameras were
        # written with one site, "ROVER_NAV_()", and the contact map drew them in one frame.
        raise LabelError(
            f"{label}: the camera model's {cam.frame} has no index (REFERENCE_COORD_SYSTEM_INDEX, or "
            "geom:Coordinate_Space_Index), so its site or rover position cannot be named (the contact map "
            "would draw the cameras of every one as one); the label is damaged: use another product"
        )
    if ground_z_m is not None:
        ground, note = float(ground_z_m), "--ground-z-m"
    elif cam.ground_z_m is not None:
        ground, note = cam.ground_z_m, cam.ground_note
    else:
        raise LabelError(
            f"{label}: the ground height is not determined ({cam.ground_note}); {_GROUND_ADVICE}"
        )
    vectors: dict[str, list[float]] = dict(cam.vectors)
    if frame in _ROVER_FRAMES:  # forward, starboard, down -> forward, left, up: the map says forward/left
        # R and E are coefficients along O, no directions: no frame turns them
        vectors = {
            k: (v if k in ("R", "E") else ned_to_flu(np.array(v)).tolist()) for k, v in vectors.items()
        }
    d: dict[str, Any] = {
        "model": cam.model,
        "frame": "flu" if frame in _ROVER_FRAMES else "pds",
        **vectors,
        **{k: (int(v) if k == "T" and v == int(v) else v) for k, v in cam.scalars.items()},  # T: 3.0 -> 3
        "image_width": cam.image_width,
        "image_height": cam.image_height,
        "site": cam.site,
        "ground_z_m": ground,
        "pds_label": label.name,
        "pds_frame": cam.frame_text,
        "pds_ground": note,
    }
    try:
        camera_from_dict(d, source=str(label))
    except CameraFileError as exc:
        raise LabelError(f"{exc} (converted from the label; check the label or --ground-z-m)") from exc
    return d


def convert_label(
    label: str | Path,
    out_dir: str | Path | None = None,
    ground_z_m: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Read ``label`` and write ``<stem>.camera.json`` next to it (or in ``out_dir``).

    Returns:
        The path written.

    Raises:
        LabelError: As :func:`read_label` and :func:`camera_file_dict`, and if the file exists and
            ``overwrite`` is false.
        OSError: If the file cannot be written.
    """
    label = Path(label)
    dest = Path(out_dir if out_dir is not None else label.parent) / f"{label.stem}{SIDECAR_SUFFIX}"
    if dest.exists() and not overwrite:
        raise LabelError(f"{label}: {dest} exists; pass --overwrite to replace it")
    d = camera_file_dict(read_label(label), label, ground_z_m)
    atomic_write_text(dest, json.dumps(d, indent=2) + "\n")
    return dest


def _finite(text: str) -> float:
    """``--ground-z-m``'s value; a refusal says what to give (argparse's own was "invalid _finite value")."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of metres with a decimal point (e.g. 1.7), got {text!r}"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 all written, 1 some refused, 2 usage error)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write <stem>.camera.json from the CAHV, CAHVOR or CAHVORE camera model of PDS3/PDS4 "
        "labels.",
    )
    parser.add_argument("labels", nargs="+", metavar="LABEL", help="PDS3 .LBL/.IMG or PDS4 .xml labels")
    parser.add_argument("--out-dir", help="folder to write into (default: next to each label)")
    parser.add_argument(
        "--ground-z-m",
        type=_finite,
        help="height of the ground in the camera model's frame, metres, z up (required where the label does "
        "not fix it; overrides the label's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing camera files")
    args = parser.parse_args(argv)
    failed = 0
    written: dict[Path, Path] = {}
    for name in args.labels:
        label = Path(name)
        try:
            dest = Path(args.out_dir if args.out_dir else label.parent) / f"{label.stem}{SIDECAR_SUFFIX}"
            if dest in written:
                raise LabelError(
                    f"{label}: would write {dest} again, already written from {written[dest]}; give one "
                    "label per image"
                )
            if args.ground_z_m is not None:
                own = read_label(label)
                if own.ground_z_m is not None and own.ground_z_m != args.ground_z_m:
                    print(
                        readable(
                            f"{PROG}: note: {label}: --ground-z-m {args.ground_z_m:g} replaces the label's "
                            f"{own.ground_z_m:g} ({own.ground_note})"
                        ),
                        file=sys.stderr,
                    )
            dest = convert_label(label, args.out_dir, args.ground_z_m, args.overwrite)
        except (LabelError, OSError) as exc:
            failed += 1
            reason = exc if isinstance(exc, LabelError) else f"{label}: cannot write the camera file: {exc}"
            print(readable(f"{PROG}: error: {' '.join(str(reason).split())}"), file=sys.stderr)
            continue
        written[dest] = label
        print(readable(f"wrote {dest}"))
    if failed:
        print(readable(f"{PROG}: {failed} of {len(args.labels)} labels refused"), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
