"""Camera files from PDS labels: write ``<stem>.camera.json`` from the CAHV(OR(E)) model a rover image's label
carries, so that a geologist does not copy vectors out of labels by hand.

Usage::

    python -m marsunits.boundary.camera.from_label LABEL [LABEL ...] [--out-dir DIR] [--ground-z-m Z]
        [--rover-frame] [--overwrite]

(a ``LABEL`` may also be Mars 2020 raw-image metadata, ``.json``: see the end of this docstring)

Each ``LABEL`` is read and ``<stem>.camera.json`` is written next to it (or in ``--out-dir``, a folder, made
if missing), in the schema of :mod:`marsunits.boundary.camera.io`, so ``predict.py`` finds it beside the
image ``<stem>.png``.
One line is printed per label written, one error line per label refused; the others are still written and
the exit status is 1 when any label was refused (2 for a usage error).

Labels read:

* **PDS3** (ODL text, parsed with ``pvl``; keywords and group names in any case, as ODL reads them): a
  detached ``.LBL`` or the label at the head of an ``.IMG``, as MER and MSL products carry them. The camera is
  the ``GEOMETRIC_CAMERA_MODEL`` (MER) or ``GEOMETRIC_CAMERA_MODEL_PARMS`` (MSL) group: ``MODEL_TYPE``
  (``CAHV``, ``CAHVOR`` or ``CAHVORE``), ``MODEL_COMPONENT_1..7`` (in the order ``MODEL_COMPONENT_ID`` names,
  C A H V O R E when absent) and, for CAHVORE, its type ``T`` and parameter ``P`` (``MODEL_COMPONENT_8`` and
  ``_9``, which Mars 2020 labels leave out of ``MODEL_COMPONENT_ID``; where it names ``T`` and ``P``, their
  places are taken from it), ``REFERENCE_COORD_SYSTEM_NAME`` and ``REFERENCE_COORD_SYSTEM_INDEX`` (named by
  ``COORDINATE_SYSTEM_INDEX_NAME`` where given, else by the label's ``ROVER_MOTION_COUNTER_NAME`` where it
  names as many entries, as MER labels name them); the image size is the ``IMAGE`` object's ``LINES`` and
  ``LINE_SAMPLES``. The rover's place is the ``ORIGIN_OFFSET_VECTOR`` and ``ORIGIN_ROTATION_QUATERNION`` of
  the ``ROVER_COORD_SYSTEM_PARMS`` (JPL MIPL's MSL archive labels: Navcam, Hazcam),
  ``ROVER_COORDINATE_SYSTEM_PARMS`` (MSSS's: Mastcam, MAHLI) or ``ROVER_COORDINATE_SYSTEM`` (MER, and the
  VICAR name) group, in the frame its ``REFERENCE_COORD_SYSTEM_NAME`` names.
* **PDS4** (XML, the Mars 2020 archive form): the ``geom:`` discipline dictionary's
  ``geom:Camera_Model_Parameters`` with ``geom:CAHV_Model``, ``geom:CAHVOR_Model`` or ``geom:CAHVORE_Model``
  (``geom:Vector_Center``, ``_Axis``, ``_Horizontal``, ``_Vertical``, ``_Optical``, ``geom:Radial_Terms``,
  ``geom:Entrance_Terms``, ``geom:cahvore_model_type``, ``geom:cahvore_model_parameter``) and its
  ``geom:Coordinate_Space_Reference``; the image size from the ``Axis_Array`` elements (``Line``,
  ``Sample``) of the product's ``Array_2D_Image`` / ``Array_3D_Image``; the rover's place from the
  ``geom:Coordinate_Space_Definition`` of its ``ROVER_NAV_FRAME`` (``geom:Vector_Origin_Offset``,
  ``geom:Quaternion_Plus_Direction`` of ``rotation_direction`` ``Forward``). Where a label holds several
  camera models that differ (one per ``geom:Geometry_Lander``), the one of the ``Telemetry`` geometry state
  (the geometry the rover reported) is taken, with the rover's place from the same block; a block without
  ``geom:geometry_state`` is a Telemetry one (the geom dictionary: "If not present, the semantics of
  "Telemetry" should be assumed"). A label whose differing models include none of that state (only
  ``Initial``, the geometry before onboard updates, an ``Adjusted`` one of a derived product, ...), or more
  than one of it, is refused: the dictionary does not rank the other states (it only says a derived product
  may carry an ``Adjusted`` block and drop the Telemetry one), so none is preferred to the Telemetry one; and
  it allows several blocks of one state, told apart by their ``local_identifier``, which the refusal names.

CAHVORE models (the Hazcams', most Mars 2020 Navcams') are written as ``"model": "cahvore"`` with ``E``,
``T`` and ``P`` (:mod:`marsunits.boundary.camera.cahvore`).

The frame. The vectors are written in the frame the label gives them in, with its index as ``site`` (the
contact map draws the cameras of one ``site`` together):

* ``SITE_FRAME`` and ``LOCAL_LEVEL_FRAME`` (x north, y east, z down): ``"frame": "pds"``, ``site``
  ``SITE_<n>`` or ``LOCAL_LEVEL_(<site>,<drive>,<pose>)``;
* ``ROVER_NAV_FRAME`` (MSL, Mars 2020) and ``ROVER_FRAME`` (MER), x forward, y starboard, z down, tilt
  with the rover: their "ground" is the plane the wheels stand on. Where the label places that rover frame
  (the same site, drive and pose) in a ``SITE_FRAME`` by an origin offset ``t`` and a quaternion ``q =
  (s, v1, v2, v3)`` (PDS: it turns rover-frame vectors into the site frame), the model is levelled into
  that site: ``C' = R C + t``; ``A``, ``H``, ``V``, ``O`` turned by ``R``; ``R`` and ``E`` unchanged
  (``"frame": "pds"``, ``site`` ``SITE_<n>``, so every drive at a site is drawn on one map). The
  convention is checked on real labels: an MSL Mastcam's axis so turned gives the label's own
  ``FIXED_INSTRUMENT_AZIMUTH`` / ``_ELEVATION`` (199.15 / -56.27 degrees), and a Mars 2020 Navcam's
  rover-frame ``geom:Derived_Geometry`` gives its site-frame one. Without that place (no quaternion, none
  referenced to a SITE frame, another rover position's), or with ``--rover-frame``, the model stays in the
  rover frame, turned to the project's x forward, y left, z up (``"frame": "flu"``, so the map's axes say
  forward and left), ``site`` ``ROVER_NAV_(<site>,<drive>,<pose>)``; ``pds_frame`` says why, and a note
  line where it was not asked for.

Other frames (a mast head's, an arm's) have no vertical axis for a flat ground, and are refused.

The ground. ``ground_z_m`` (height of the ground plane, z up, metres) is taken from the label only where
documentation fixes it: the origin of MSL's and Mars 2020's ``ROVER_NAV_FRAME`` "is located on the
nominal (flat) surface of Mars, beneath the rover, centered on the turn-in-place axis" (J. Maki, *MSL
Coordinate Systems for Science Instruments*, JPL 2013), so in that frame the ground is at 0, and in a
``SITE_FRAME`` (a model given there, or levelled into it) it is level at the height of the origin of the
rover's ``ROVER_NAV_FRAME`` in that same site (its ``ORIGIN_OFFSET_VECTOR``, z down: a rover 1.7 m above
the site origin has ``z = -1.7``, so ``ground_z_m = 1.7``). The same document puts the origin of MSL's
``LOCAL_LEVEL_FRAME`` at the ``ROVER_NAV_FRAME``'s (Mars 2020 keeps MSL's frames), so a model in an MSL or
Mars 2020 local level frame has its ground at 0 too; the mission is the one the label names (PDS3
``MISSION_NAME``, ``INSTRUMENT_HOST_ID`` / ``_NAME``, ``SPACECRAFT_NAME`` / ``_ID``; PDS4
``Investigation_Area`` and ``Observing_System_Component`` names and references). MER's ``ROVER_FRAME``
origin is taken to be 0.294 m above the nominal ground (:data:`MER_ROVER_FRAME_HEIGHT_M`): JPL's Planetary
Image Geometry library (PIG, in VICAR, ``PigMER.h``) puts MER's default ground, a level plane, 0.294 m below
the origin of its fixed site frame, a value "taken from MER engineering drawings" and confirmed on a lab
image and "again during nominal OPS", and a site frame's origin is the ``ROVER_FRAME`` origin where the site
was declared. So in a label that names MER (and no other mission) a ``ROVER_FRAME`` model has its ground at
-0.294 m (z up; +0.294 in the label's z-down frame), and in a ``SITE_FRAME`` 0.294 m below the rover
origin's place in that site (the rover's own place at the image, not the site origin's, as for MSL). No such
statement was found for MER's ``LOCAL_LEVEL_FRAME`` origin: there, in a local level frame of a label that
names no mission (or another, or MER beside MSL or Mars 2020), in a ``ROVER_FRAME`` of a label that does not
name MER alone, and where the label lacks the rover's place in the camera's site, ``--ground-z-m`` is
required and its absence is an error naming the label (for such a levelled model it says the rover
origin's height in the site; for a ``ROVER_FRAME``, the ``--ground-z-m`` to give if the image is MER's).
``--ground-z-m`` is the
height in the frame the file is written in (the SITE frame for a levelled model) and is used for every
label (it overrides a label's own value, which is then said in a note line).

The written file also carries ``pds_label`` (the label's name), ``pds_frame`` (the frame as the label names
it, and whether and into which site it was levelled) and ``pds_ground`` (where ``ground_z_m`` came from),
which the camera reader ignores.

Subframed and downsampled products: the labels' models are taken as given, for the image as stored (the
archives' labels are adjusted so; an image cropped or resized after download needs its model adjusted too).

Mars 2020 raw-image metadata: an argument ending in ``.json`` is read by
:mod:`marsunits.boundary.camera.raw_json` (one record, a list, or a page of the raw-image feed), one camera
file per record, named after the image the record's ``full_res`` link downloads; its docstring says what is
read and on what evidence.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from marsunits.atomic import atomic_write_text
from marsunits.boundary.camera.cahv import ned_to_flu
from marsunits.boundary.camera.io import SIDECAR_SUFFIX, CameraFileError, camera_from_dict
from marsunits.errors import readable
from marsunits.user_paths import expand_home

__all__ = [
    "LabelCamera",
    "LabelError",
    "RoverPose",
    "camera_file_dict",
    "convert_label",
    "main",
    "read_label",
    "written_ground",
]

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
#: Height (metres) of MER's ROVER_FRAME origin above the nominal ground beneath the rover, read from JPL's
#: Planetary Image Geometry library (PIG, in VICAR: NASA-AMMOS/VICAR ``vos/mars/inc/PigMER.h``). PIG's default
#: ground is a level plane (``getDefaultSurfaceNormal`` (0, 0, -1), z down) through the point
#: ``getDefaultSurfaceGround`` gives, in PIG's FIXED site frame (``PigMission::getDefaultSurfaceCS``, which
#: PigMER does not override): (0, 0, 0.294) for MER, "taken from MER engineering drawings and confirmed using
#: correlation of an image looking at the ground of the lab. Confirmed again during nominal OPS"; (0, 0, 0)
#: for MSL, "since RNAV has been redefined to have its origin at the nominal ground" (``PigMSL.h``; Mars
#: 2020's ``PigM20.h``: "has been defined"). A site frame's origin is the rover frame's origin where the
#: site was declared (a MER label at drive 0 gives its ROVER_FRAME the ORIGIN_OFFSET_VECTOR (0, 0, 0)), so
#: that plane lies 0.294 m below the ROVER_FRAME origin: the figure is PIG's, reading it as the rover frame's
#: height is this module's (as MSL's documents put the ROVER_NAV_FRAME origin on the ground). It agrees with
#: MER's Hazcams, whose models put them 0.235 m above the ROVER_FRAME origin, 0.53 m above the ground.
MER_ROVER_FRAME_HEIGHT_M = 0.294
#: The missions whose LOCAL_LEVEL_FRAME origin is the ROVER_NAV_FRAME origin, on the nominal surface beneath
#: the rover (J. Maki et al., *MSL Coordinate Systems for Science Instruments*, JPL 2013; Mars 2020 keeps
#: MSL's frames). MER uses the frame's name too, but its origin is not established here.
_LOCAL_LEVEL_ON_GROUND = ("MSL", "Mars 2020")
#: How a label names its mission or rover (upper case, each run of other characters a blank), as PDS3's
#: MISSION_NAME, INSTRUMENT_HOST_ID / _NAME, SPACECRAFT_NAME / _ID and PDS4's Investigation_Area and
#: Observing_System_Component names and LIDs (``mission.mars2020``, ``spacecraft.msl``) give it.
_MISSIONS = (
    ("Mars 2020", re.compile(r"\bMARS ?2020\b|\bPERSEVERANCE\b|\bM20\b|\bM2020\b")),
    ("MSL", re.compile(r"\bMARS SCIENCE LABORATORY\b|\bCURIOSITY\b|\bMSL\b")),
    ("MER", re.compile(r"\bMARS EXPLORATION ROVER\b|\bMER ?[12AB]?\b|\bSPIRIT\b|\bOPPORTUNITY\b")),
)
#: The PDS3 keywords read for the mission (the label's top level).
_PDS3_MISSION_KEYS = (
    "MISSION_NAME",
    "INSTRUMENT_HOST_ID",
    "INSTRUMENT_HOST_NAME",
    "SPACECRAFT_NAME",
    "SPACECRAFT_ID",
)
#: Index entries that name a rover-fixed frame (the rest of a motion counter counts mast or arm moves).
_POSE_INDEX = ("SITE", "DRIVE", "POSE")
#: The PDS4 geometry state of the geometry the rover reported (geom dictionary, ``geometry_state``).
_TELEMETRY = "Telemetry"
_GROUND_ADVICE = (
    "give the ground's height in the frame the camera file is written in (metres, z up; the SITE frame for "
    "a levelled rover-frame model) with --ground-z-m (README, Camera files)"
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
        pose: For a model in a rover frame (``ROVER_NAV_FRAME``, ``ROVER_FRAME``): the rover's pose in the
            SITE frame where the label gives it for the model's own rover position, else None.
        pose_note: Why ``pose`` is None for a rover-frame model (said in ``pds_frame``).
        missions: ``"Mars 2020"``, ``"MSL"``, ``"MER"``: those the label names as its mission or rover
            (:func:`_missions_of`), in this order; empty where it names none of them.
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
    pose: RoverPose | None = None
    pose_note: str = ""
    missions: tuple[str, ...] = ()

    @property
    def mission(self) -> str | None:
        """The one mission the label names (:attr:`missions`); None where it names none or several."""
        return self.missions[0] if len(self.missions) == 1 else None

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


@dataclass(frozen=True)
class RoverPose:
    """Where a rover frame lies in a SITE frame, as the label gives it (both frames z down).

    Attributes:
        site: The SITE frame's index.
        offset: The rover frame's origin in the SITE frame, metres (``ORIGIN_OFFSET_VECTOR``,
            ``geom:Vector_Origin_Offset``).
        quaternion: ``(s, v1, v2, v3)``, normalised: the PDS convention, rotating a rover-frame vector into
            the SITE frame (``ORIGIN_ROTATION_QUATERNION``, ``geom:Quaternion_Plus_Direction`` ``Forward``;
            checked on an MSL Mastcam label, whose axis so turned gives its own ``FIXED_INSTRUMENT_AZIMUTH``
            and ``_ELEVATION``, and on a Mars 2020 Navcam label's ``geom:Derived_Geometry``).
        source: The label's group or element that gave it (said in ``pds_frame``).
    """

    site: int
    offset: tuple[float, float, float]
    quaternion: tuple[float, float, float, float]
    source: str

    def rotation(self) -> np.ndarray:
        """The 3x3 matrix ``R`` of the quaternion: ``R @ v`` is the rover-frame vector ``v`` in the site
        frame (scipy's ``Rotation``, which takes the scalar last)."""
        s, x, y, z = self.quaternion
        return np.asarray(Rotation.from_quat([x, y, z, s]).as_matrix())

    def to_site(self, vectors: dict[str, list[float]]) -> dict[str, list[float]]:
        """Camera model vectors from the rover frame into the SITE frame: ``C' = R C + t``; ``A``, ``H``,
        ``V``, ``O`` turned by ``R``; ``R`` and ``E`` (coefficients along ``O``, no directions) unchanged."""
        rot = self.rotation()
        out: dict[str, list[float]] = {}
        for key, value in vectors.items():
            v = np.asarray(value, dtype=np.float64)
            if key == "C":
                out[key] = (rot @ v + np.asarray(self.offset)).tolist()
            elif key in ("R", "E"):
                out[key] = list(value)
            else:
                out[key] = (rot @ v).tolist()
        return out


@dataclass
class _Place:
    """A frame's place as a label gives it: its frame, own index, reference frame and that frame's site, the
    origin offset and the rotation quaternion (or why it is unusable)."""

    frame: str
    index: list[tuple[str | None, int]]
    ref: str
    ref_site: int | None
    offset: list[float] | None
    quaternion: tuple[float, float, float, float] | None
    quaternion_note: str
    source: str


def _unit_quaternion(values: list[Any], what: str) -> tuple[tuple[float, float, float, float] | None, str]:
    """``(s, v1, v2, v3)`` normalised from four label values, or ``(None, why not)``."""
    try:
        q = [float(getattr(v, "value", v)) for v in values]
    except (TypeError, ValueError):
        return None, f"its {what} is not 4 numbers"
    if len(q) != 4 or not all(math.isfinite(x) for x in q):
        return None, f"its {what} is not 4 finite numbers"
    norm = math.sqrt(sum(x * x for x in q))
    if abs(norm - 1.0) > 1e-3:  # labels print 7 digits: a unit quaternion is 1 to 1e-6
        return None, f"its {what} is not a unit quaternion (norm {norm:.6g})"
    return (q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm), ""


def _pose_key(index: list[tuple[str | None, int]]) -> tuple[tuple[str | None, int], ...]:
    """The entries of an index that place the rover (SITE, DRIVE, POSE), or all of them where unnamed."""
    named = [(n, v) for n, v in index if n is not None and n.upper() in _POSE_INDEX]
    return tuple(named) if named else tuple(index)


def _same_position(a: list[tuple[str | None, int]], b: list[tuple[str | None, int]]) -> bool:
    """Whether two frame indices name the same rover position: their SITE, DRIVE and POSE entries where both
    name them; else (a MER label may leave one unnamed, its entries in the rover motion counter's order:
    site, drive, ...) the leading values the two have in common."""
    ka, kb = _pose_key(a), _pose_key(b)
    if all(n is not None for n, _ in ka + kb):
        return ka == kb
    va, vb = [v for _, v in ka], [v for _, v in kb]
    n = min(len(va), len(vb))
    return n > 0 and va[:n] == vb[:n]


def _site_of(index: list[tuple[str | None, int]]) -> int | None:
    named = [v for n, v in index if n is not None and n.upper() == "SITE"]
    if named:
        return named[0]
    return index[0][1] if index and all(n is None for n, _ in index) else None


# ----------------------------------------------------------------------------------------------- reading
def read_label(path: str | Path) -> LabelCamera:
    """Read the camera model of a PDS3 or PDS4 label (module docstring for what is read; ``~`` in ``path``
    is the home folder).

    Raises:
        LabelError: If the file cannot be read, is not a label, has no camera model or one that is not CAHV,
            CAHVOR or CAHVORE, or lacks the image size or the frame (the message names the file and the fix).
    """
    path = expand_home(path)
    if path.exists() and not path.is_file():  # never opened: a FIFO would be read for ever
        raise LabelError(
            f"cannot read label {path}: a folder or special file, not a file; give the label file"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except FileNotFoundError as exc:
        if any(c in path.name for c in "*?["):  # a shell passes a pattern that matched nothing as it is
            raise LabelError(
                f"cannot read label {path}: no file matches this pattern; check the folder and the case of "
                "the extension (.LBL or .lbl, .IMG or .img, .xml)"
            ) from exc
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    if not head.strip(b" \t\r\n\f\v\0") and (len(head) < 512 or b"\0" in head):
        # Blanks, or NUL bytes (a download that preallocated the file and was cut before writing any)
        what = "0 bytes" if not head else "NUL bytes only" if not head.strip(b"\0") else "blanks only"
        raise LabelError(
            f"cannot read label {path}: the file is empty ({what}: an interrupted download?); download the "
            "label again"
        )
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _read_pds4(path)
    if b"PDS_VERSION_ID" not in head.upper() and b"ODL_VERSION_ID" not in head.upper():  # ODL: any case
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
        text = _pds3_text(path)
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    try:
        label = pvl.loads(text)
    except (pvl.exceptions.LexerError, pvl.exceptions.ParseError, ValueError, UnicodeError) as exc:
        said = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else str(exc)
        reason = " ".join(said.split())[:200]
        raise LabelError(
            f"cannot read label {path}: not a PDS3 (ODL) or PDS4 (XML) label ({reason}); give the product's "
            ".LBL, .IMG or .xml label"
        ) from exc
    label = _upper_keys(label)
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
        missions=_missions_of(
            [
                v
                for key in _PDS3_MISSION_KEYS
                if key in label
                for value in label.getall(key)
                for v in (value if isinstance(value, (list, tuple)) else [value])
            ]
        ),
    )
    rover_places = []
    for key in _ROVER_GROUPS:
        for rover in _all(label, key):
            names = rover.get("COORDINATE_SYSTEM_INDEX_NAME")
            own = _pds3_index(names, rover.get("COORDINATE_SYSTEM_INDEX"))
            ref = rover.get("REFERENCE_COORD_SYSTEM_INDEX")
            ref_site = (
                _pds3_index(None, ref)[0][1] if ref is not None and _pds3_index(None, ref) else _site_of(own)
            )
            offset = rover.get("ORIGIN_OFFSET_VECTOR")
            turn = rover.get("ORIGIN_ROTATION_QUATERNION")
            quaternion, why = (
                (None, f"its {key} has no ORIGIN_ROTATION_QUATERNION")
                if turn is None
                else _unit_quaternion(
                    list(turn) if isinstance(turn, (list, tuple)) else [turn],
                    f"{key} ORIGIN_ROTATION_QUATERNION",
                )
            )
            rover_places.append(
                _Place(
                    frame=str(rover.get("COORDINATE_SYSTEM_NAME", "")).strip().upper(),
                    index=own,
                    ref=str(rover.get("REFERENCE_COORD_SYSTEM_NAME", "")).strip().upper(),
                    ref_site=ref_site,
                    offset=None if offset is None else _vector(offset, "ORIGIN_OFFSET_VECTOR", path, "m"),
                    quaternion=quaternion,
                    quaternion_note=why,
                    source=key,
                )
            )
    _set_ground(cam, rover_places)
    _set_pose(cam, rover_places)
    return cam


#: The most label text read from a file; real PDS3 labels are tens of kB.
_PDS3_LABEL_LIMIT = 1 << 20
#: The tokens that find a PDS3 label's END statement: a quoted string (which may span lines) or a comment,
#: skipped whole so that an END line inside one is not taken for the label's end; the END statement itself,
#: as ODL reads it (any case, first on its line after blanks, a line ending in LF, CR LF or CR, followed by
#: anything but a name character, so not END_GROUP / END_OBJECT: a blank, a line end, padding, binary data
#: or the end of the file); and an opening quote or comment that is not closed in the text read so far.
_PDS3_TOKENS = re.compile(
    rb'"[^"]*"|/\*.*?\*/|(?P<end>(?<![^\r\n])[ \t]*[Ee][Nn][Dd](?![A-Za-z0-9_]))|(?P<open>"|/\*)', re.DOTALL
)


def _pds3_end(data: bytes, complete: bool) -> int | None:
    """Where the END statement of the PDS3 label at the head of ``data`` ends, or None where ``data`` holds
    none yet: the END that pvl's parser stops at, never one inside a quoted string or a comment.

    Args:
        data: The file's first bytes.
        complete: Whether ``data`` is the whole file; if not, an END at its very end (it may go on as
            ``END_GROUP``) or an open string or comment waits for more.
    """
    for m in _PDS3_TOKENS.finditer(data):
        if m.group("open") is not None:  # a string or comment not closed yet: the END may lie beyond it
            return None
        if m.group("end") is not None:
            return m.end() if complete or m.end() < len(data) else None
    return None


def _pds3_text(path: Path) -> str:
    """The PDS3 label of ``path``, up to and including its END statement: never the binary image data that
    follows an attached label in an ``.IMG`` (the file is read in chunks up to the END, never whole). The END
    is found as ODL reads it (:data:`_PDS3_TOKENS`): in any case, after LF, CR LF or CR line ends, followed by
    a line end, blanks or padding, and never inside a quoted string or a comment.
    Decoded as UTF-8 or, where it is not UTF-8 (a Latin-1 degree sign or accent in a comment), as Latin-1.

    pvl's own ``load`` read the whole file, and where it was not text, byte by byte up to the first byte that
    is not UTF-8 on its own: an accent in a comment, in an attached label or in a Latin-1 one, cut the label
    there and it was refused as "not a PDS3 label".

    Raises:
        LabelError: If no END statement comes within the first MiB (read as a truncated label).
        OSError: If the file cannot be read.
    """
    data = b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 16)
            data += chunk
            end = _pds3_end(data, complete=not chunk)
            if end is not None:
                data = data[:end]
                break
            if not chunk:  # no END (a label whose last line is cut, say): pvl says what is wrong
                break
            if len(data) > _PDS3_LABEL_LIMIT:
                raise LabelError(
                    f"cannot read label {path}: no END statement in its first {_PDS3_LABEL_LIMIT >> 20} MiB, "
                    "so the label is truncated or damaged; give the product's complete .LBL or .IMG"
                )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _upper_keys(block: Any) -> Any:
    """A parsed PDS3 label with its keywords and group and object names in upper case, at every depth: ODL
    reads them in any case (``model_type`` is ``MODEL_TYPE``), pvl keeps them as written. Values are kept as
    they are (those compared, frame and model names, are compared in upper case)."""
    from pvl.collections import MutableMappingSequence

    return type(block)(
        [
            (key.upper(), _upper_keys(value) if isinstance(value, MutableMappingSequence) else value)
            for key, value in block.items()
        ]
    )


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


def _missions_of(names: Sequence[str]) -> tuple[str, ...]:
    """The missions (``"Mars 2020"``, ``"MSL"``, ``"MER"``, in this order) that the label's mission and rover
    names (:data:`_PDS3_MISSION_KEYS`, PDS4's Investigation_Area / Observing_System_Component) name."""
    words = [re.sub(r"[^A-Z0-9]+", " ", str(name).upper()) for name in names]
    return tuple(mission for mission, pattern in _MISSIONS if any(pattern.search(w) for w in words))


def _origin_height(frame: str, missions: Sequence[str]) -> float | None:
    """Height (metres) of a rover frame's origin above the nominal ground beneath the rover where it is
    documented: 0 for ``ROVER_NAV_FRAME`` (MSL, Mars 2020), :data:`MER_ROVER_FRAME_HEIGHT_M` for the
    ``ROVER_FRAME`` of a label that names MER (and no other mission); None elsewhere."""
    frame = frame.upper()
    if frame == _GROUND_AT_ORIGIN:
        return 0.0
    if frame == "ROVER_FRAME" and tuple(missions) == ("MER",):
        return MER_ROVER_FRAME_HEIGHT_M
    return None


def _origin_note(frame: str, height: float) -> str:
    """Where the ground below a rover frame's origin comes from (:func:`_origin_height`)."""
    if height == 0.0:
        return f"{frame} origin: on the nominal surface beneath the rover (MSL/Mars 2020 frames)"
    return f"MER {frame} origin: {height:g} m above the nominal ground (JPL's PIG library in VICAR, PigMER.h)"


def _mer_ground_advice(origin_z: float) -> str:
    """What to give for a ROVER_FRAME origin at ``origin_z`` (z up, in the frame written) of a label that
    does not name MER alone: the ground a MER image has there, as ``--ground-z-m`` takes it."""
    ground = round(origin_z - MER_ROVER_FRAME_HEIGHT_M, 6)
    return (
        f"MER's ROVER_FRAME origin is {MER_ROVER_FRAME_HEIGHT_M:g} m above the ground (if this is a MER "
        f"image: --ground-z-m {ground!r})"
    )


def _set_ground(cam: LabelCamera, rover_places: list[_Place]) -> None:
    """Set ``cam.ground_z_m`` (in the model's frame as the label gives it) where documentation fixes it
    (module docstring), else say why not."""
    frame = cam.frame.upper()
    height = _origin_height(frame, cam.missions)
    if height is not None:
        cam.ground_z_m = 0.0 - height  # z up: below the origin (0.0 - 0.0 is 0.0, not -0.0)
        cam.ground_note = _origin_note(frame, height)
        return
    if frame == "ROVER_FRAME":
        named = ", ".join(cam.missions) or "no mission"
        cam.ground_note = (
            f"the label does not fix the ground of a ROVER_FRAME: it names {named}, not MER alone (PDS3 "
            f"{', '.join(_PDS3_MISSION_KEYS)}); {_mer_ground_advice(0.0)}"
        )
        return
    if frame == "LOCAL_LEVEL_FRAME":
        if cam.missions and all(m in _LOCAL_LEVEL_ON_GROUND for m in cam.missions):  # MSL's frames, all
            cam.ground_z_m = 0.0
            cam.ground_note = (
                f"LOCAL_LEVEL_FRAME origin: the {_GROUND_AT_ORIGIN} origin, on the nominal surface beneath "
                f"the rover ({', '.join(cam.missions)} frames)"
            )
        elif len(cam.missions) > 1:  # it was told that it "names no mission of these"
            cam.ground_note = (
                f"the label names several missions ({', '.join(cam.missions)}), whose LOCAL_LEVEL_FRAME "
                "origins differ, so the ground of its LOCAL_LEVEL_FRAME is not fixed"
            )
        elif cam.mission is not None:
            cam.ground_note = (
                f"the label does not fix the ground of a LOCAL_LEVEL_FRAME of {cam.mission}, whose "
                "LOCAL_LEVEL_FRAME origin is not established here"
            )
        else:
            cam.ground_note = (
                "the label does not fix the ground of a LOCAL_LEVEL_FRAME: its origin is on the ground "
                "beneath the rover for MSL and Mars 2020, and the label names no mission of these (PDS3 "
                f"{', '.join(_PDS3_MISSION_KEYS)}; PDS4 Investigation_Area, Observing_System)"
            )
        return
    if frame != "SITE_FRAME":
        cam.ground_note = f"the label does not fix the ground of a {cam.frame}"
        return
    site = cam.site_index
    grounds = {
        (-p.offset[2] - h, p.frame, h)
        for p in rover_places
        if (h := _origin_height(p.frame, cam.missions)) is not None
        and p.ref == "SITE_FRAME"
        and p.ref_site == site
        and p.offset is not None
    }
    if len({g for g, _, _ in grounds}) == 1:
        cam.ground_z_m, rover, height = grounds.pop()
        cam.ground_note = f"{_origin_note(rover, height)}, in SITE_FRAME {site}"
        if height == 0.0:  # as it was worded before MER's ROVER_FRAME was read
            cam.ground_note = f"{rover} origin (on the ground beneath the rover) in SITE_FRAME {site}"
    elif grounds:
        n = len({g for g, _, _ in grounds})
        cam.ground_note = f"the label gives the rover {n} different heights in SITE_FRAME {site}"
    else:
        rovers = "ROVER_FRAME" if cam.missions == ("MER",) else _GROUND_AT_ORIGIN
        cam.ground_note = f"the label gives no {rovers} origin in SITE_FRAME {site}"
        # a ROVER_FRAME placed in the site, of a label not naming MER alone: where MER's ground would be
        placed = {
            -p.offset[2]
            for p in rover_places
            if p.frame == "ROVER_FRAME"
            and p.ref == "SITE_FRAME"
            and p.ref_site == site
            and p.offset is not None
        }
        if len(placed) == 1 and rovers != "ROVER_FRAME":
            origin_z = placed.pop()
            named = ", ".join(cam.missions) or "no mission"
            cam.ground_note = (
                f"the label places a ROVER_FRAME origin at z = {origin_z:g} m (z up) in SITE_FRAME {site}, "
                f"but names {named}, not MER alone; {_mer_ground_advice(origin_z)}"
            )


def _set_pose(cam: LabelCamera, rover_places: list[_Place]) -> None:
    """Set ``cam.pose`` for a rover-frame model where the label places that rover frame (the same site, drive
    and pose) in a SITE frame with an origin offset and a usable quaternion; else ``cam.pose_note``."""
    frame = cam.frame.upper()
    if frame not in _ROVER_FRAMES:
        return
    mine = [
        p for p in rover_places if p.frame == frame and (not p.index or _same_position(p.index, cam.index))
    ]
    placed = [p for p in mine if p.ref == "SITE_FRAME" and p.ref_site is not None]
    if not placed:
        cam.pose_note = (
            f"the label gives no place of this {cam.frame} in a SITE_FRAME"
            if not mine
            else f"the label places this {cam.frame} in {mine[0].ref or 'no named frame'}, not a SITE_FRAME "
            "with its index"
        )
        return
    usable = [p for p in placed if p.offset is not None and p.quaternion is not None]
    if not usable:
        p = placed[0]
        cam.pose_note = p.quaternion_note or f"its {p.source} has no origin offset"
        return
    poses = {
        RoverPose(
            site=int(p.ref_site),  # type: ignore[arg-type]  # placed: ref_site is not None
            offset=(p.offset[0], p.offset[1], p.offset[2]),  # type: ignore[index]  # usable
            quaternion=p.quaternion,  # type: ignore[arg-type]  # usable
            source=p.source,
        )
        for p in usable
    }
    if len({(q.site, q.offset, q.quaternion) for q in poses}) > 1:
        cam.pose_note = f"the label gives this {cam.frame} {len(poses)} different places in the SITE frame"
        return
    cam.pose = poses.pop()


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
        # geom dictionary, geometry_state: "If not present, the semantics of "Telemetry" should be assumed"
        state = (lander.findtext(f"{_G}geometry_state") or "").strip() or _TELEMETRY
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
    telemetry = [m for m in models if m[0].lower() == _TELEMETRY.lower()]
    if telemetry:  # the geometry the rover reported (another state is e.g. "Initial", before onboard updates)
        if len({repr(m[2]) for m in telemetry}) > 1:
            # the dictionary: several blocks of one state are told apart by their local_identifier
            blocks = ", ".join(
                (scope.findtext(f"{_P}local_identifier") or "").strip() or "(no local_identifier)"
                for _, scope, _ in telemetry
            )
            raise LabelError(
                f"{path}: {len(telemetry)} different camera models of the Telemetry state (geometry blocks "
                f"named Telemetry or without a geom:geometry_state; their local_identifier: {blocks}); which "
                "belongs to the image cannot be told: write the camera file by hand from the one you trust "
                "(README, Camera files)"
            )
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
        missions=_missions_of(
            [
                (el.text or "")
                for tag in ("Investigation_Area", "Observing_System_Component")
                for area in root.iter(f"{_P}{tag}")
                for el in [*area.findall(f"{_P}name"), *area.iter(f"{_P}lid_reference")]
            ]
        ),
    )
    rover_places = []
    for d in scope.iter(f"{_G}Coordinate_Space_Definition"):
        own, own_index = _pds4_frame(d.find(f"{_G}Coordinate_Space_Present"), definitions)
        ref, ref_index = _pds4_frame(d.find(f"{_G}Coordinate_Space_Reference"), definitions)
        offset_el = d.find(f"{_G}Vector_Origin_Offset")
        offset = (
            None
            if offset_el is None or len(offset_el) < 3
            else [_xml_number(c, "geom:Vector_Origin_Offset", path, True) for c in list(offset_el)[:3]]
        )
        quaternion, why = _pds4_quaternion(d.find(f"{_G}Quaternion_Plus_Direction"))
        rover_places.append(
            _Place(
                frame=own.upper(),
                index=own_index,
                ref=ref.upper(),
                ref_site=_site_of(ref_index),
                offset=offset,
                quaternion=quaternion,
                quaternion_note=why,
                source="geom:Coordinate_Space_Definition",
            )
        )
    _set_ground(cam, rover_places)
    _set_pose(cam, rover_places)
    return cam


def _pds4_quaternion(
    element: ET.Element | None,
) -> tuple[tuple[float, float, float, float] | None, str]:
    """A ``geom:Quaternion_Plus_Direction`` as ``(s, v1, v2, v3)``, or ``(None, why not)``. Only the
    ``Forward`` direction (the one Mars 2020 labels give, checked against their ``geom:Derived_Geometry``) is
    read: the other would be the inverse turn, and is not guessed at."""
    what = "geom:Quaternion_Plus_Direction"
    if element is None:
        return None, f"its geom:Coordinate_Space_Definition has no {what}"
    direction = (element.findtext(f"{_G}rotation_direction") or "Forward").strip()
    if direction.lower() != "forward":
        return None, f"its {what} has rotation_direction {direction!r} (only 'Forward' is read)"
    values = [(element.findtext(f"{_G}{n}") or "").strip() for n in ("qcos", "qsin1", "qsin2", "qsin3")]
    return _unit_quaternion(values, what)


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
def written_ground(cam: LabelCamera, level: bool) -> tuple[float | None, str]:
    """The ground's height the label gives in the frame the camera file is written in, and where it came from
    (or why it is not determined): in the SITE frame where ``level`` and the model is levelled, else in the
    model's own frame (:attr:`LabelCamera.ground_z_m`)."""
    if not (level and cam.pose is not None and cam.frame.upper() in _ROVER_FRAMES):
        return cam.ground_z_m, cam.ground_note
    site, origin_z = cam.pose.site, -cam.pose.offset[2]
    height = _origin_height(cam.frame, cam.missions)
    if height == 0.0:
        return origin_z, f"{_GROUND_AT_ORIGIN} origin (on the ground beneath the rover) in SITE_FRAME {site}"
    if height is not None:
        return origin_z - height, f"{_origin_note(cam.frame.upper(), height)}, in SITE_FRAME {site}"
    mer = f"; {_mer_ground_advice(origin_z)}" if cam.frame.upper() == "ROVER_FRAME" else ""
    return None, (
        f"the label does not fix the ground of a {cam.frame}, whose origin is at z = {origin_z:g} m "
        f"(z up) in SITE_FRAME {site}, the frame the model is levelled into{mer}"
    )


def rover_vectors_to_flu(vectors: dict[str, list[float]]) -> dict[str, list[float]]:
    """Camera model vectors from a rover frame (forward, starboard, down) to x forward, y left, z up; ``R``
    and ``E`` are coefficients along ``O``, no directions, so no frame turns them."""
    return {k: (v if k in ("R", "E") else ned_to_flu(np.array(v)).tolist()) for k, v in vectors.items()}


def camera_file_dict(
    cam: LabelCamera, label: str | Path, ground_z_m: float | None = None, rover_frame: bool = False
) -> dict[str, Any]:
    """The camera JSON dict (schema of :mod:`marsunits.boundary.camera.io`) of a label's camera.

    A model in a rover frame (``ROVER_NAV_FRAME``, ``ROVER_FRAME``) whose label places the rover in a SITE
    frame (:attr:`LabelCamera.pose`) is levelled into that SITE frame (``"frame": "pds"``, ``site``
    ``SITE_<n>``) unless ``rover_frame``; without that place, or with ``rover_frame``, it is written in the
    rover frame, turned to x forward, y left, z up (``"frame": "flu"``), whose ground tilts with the rover.

    Args:
        cam: From :func:`read_label`.
        label: The label's path (named in messages and in ``pds_label``).
        ground_z_m: The ground's height in the frame written (z up, metres); overrides the label's.
        rover_frame: Keep a rover-frame model in the rover frame.

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
    pose = cam.pose if frame in _ROVER_FRAMES and not rover_frame else None
    own_ground, own_note = written_ground(cam, pose is not None)
    if ground_z_m is not None:
        ground, note = float(ground_z_m), "--ground-z-m"
    elif own_ground is not None:
        ground, note = own_ground, own_note
    else:
        raise LabelError(f"{label}: the ground height is not determined ({own_note}); {_GROUND_ADVICE}")
    vectors: dict[str, list[float]] = dict(cam.vectors)
    frame_text = cam.frame_text
    if pose is not None:  # rover frame (z down) -> the site frame (z down) it stands in: level ground
        vectors = pose.to_site(vectors)
        frame_text += f" levelled into SITE_FRAME {pose.site} (the rover's place in {pose.source})"
    elif frame in _ROVER_FRAMES:  # forward, starboard, down -> forward, left, up: the map says forward/left
        vectors = rover_vectors_to_flu(vectors)
        frame_text += (
            ", kept (--rover-frame)"
            if rover_frame
            else f", not levelled ({cam.pose_note}): its ground tilts with the rover"
        )
    d: dict[str, Any] = {
        "model": cam.model,
        "frame": "flu" if frame in _ROVER_FRAMES and pose is None else "pds",
        **vectors,
        **{k: (int(v) if k == "T" and v == int(v) else v) for k, v in cam.scalars.items()},  # T: 3.0 -> 3
        "image_width": cam.image_width,
        "image_height": cam.image_height,
        "site": f"SITE_{pose.site}" if pose is not None else cam.site,
        "ground_z_m": ground,
        "pds_label": label.name,
        "pds_frame": frame_text,
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
    rover_frame: bool = False,
) -> Path:
    """Read ``label`` and write ``<stem>.camera.json`` next to it (or in ``out_dir``; ``~`` in either is the
    home folder); ``ground_z_m`` and ``rover_frame`` as in :func:`camera_file_dict`.

    Returns:
        The path written.

    Raises:
        LabelError: As :func:`read_label` and :func:`camera_file_dict`, and if the file exists with other
            content and ``overwrite`` is false (one holding exactly this camera file is left as it is).
        OSError: If the file cannot be written.
    """
    return _convert(label, out_dir, ground_z_m, overwrite, rover_frame)[0]


def _convert(
    label: str | Path,
    out_dir: str | Path | None,
    ground_z_m: float | None,
    overwrite: bool,
    rover_frame: bool,
) -> tuple[Path, dict[str, Any], bool]:
    """The camera file written (or left as it was: the flag is False), its content, and whether written."""
    label = expand_home(label)
    dest = expand_home(out_dir if out_dir is not None else label.parent) / f"{label.stem}{SIDECAR_SUFFIX}"
    d = camera_file_dict(read_label(label), label, ground_z_m, rover_frame)
    return dest, d, write_camera_file(dest, d, overwrite, str(label))


def write_camera_file(dest: Path, d: dict[str, Any], overwrite: bool, source: str) -> bool:
    """Write the camera file ``d`` to ``dest`` (atomically); returns False where ``dest`` already holds
    exactly that text (nothing written: a re-run over a folder of labels, some new, converts the new ones
    and leaves the others as they are, instead of refusing each of them).

    Raises:
        LabelError: ``dest`` exists with other content (a hand-made camera, another ``--ground-z-m``) and
            ``overwrite`` is false; the message names ``source`` and says to pass ``--overwrite``.
    """
    text = json.dumps(d, indent=2) + "\n"
    if dest.exists() and not overwrite:
        try:
            same = dest.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            same = False
        if same:
            return False
        raise LabelError(f"{source}: {dest} exists and differs; pass --overwrite to replace it")
    atomic_write_text(dest, text)
    return True


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
        "labels or of Mars 2020 raw-image metadata (JSON).",
    )
    parser.add_argument(
        "labels",
        nargs="+",
        metavar="LABEL",
        help="PDS3 .LBL/.IMG or PDS4 .xml labels, or Mars 2020 raw-image metadata .json (one record, a list, "
        "or a feed page: one camera file per image)",
    )
    parser.add_argument("--out-dir", help="folder to write into (default: next to each label)")
    parser.add_argument(
        "--ground-z-m",
        type=_finite,
        help="height of the ground in the frame the camera file is written in (the SITE frame for a levelled "
        "rover-frame model), metres, z up (required where the label does not fix it; overrides the label's)",
    )
    parser.add_argument(
        "--rover-frame",
        action="store_true",
        help="keep a ROVER_NAV_FRAME/ROVER_FRAME model in the rover's own frame (x forward, y left, z up) "
        "instead of levelling it into the SITE frame the label places the rover in: for a map drawn as the "
        "rover saw it (forward/left, one map per rover position), or where the label's rover attitude is "
        "not trusted; its ground is then the plane under the wheels, tilted with the rover",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing camera files")
    args = parser.parse_args(argv)
    if args.out_dir:  # "~/cams" quoted, or from a script: the home folder, not a folder named "~"
        args.out_dir = str(expand_home(args.out_dir))
    if args.out_dir and os.path.lexists(args.out_dir) and not Path(args.out_dir).is_dir():
        out = Path(args.out_dir)
        if out.is_symlink() and not out.exists():  # it was called "a file, not a folder"
            target = os.readlink(out)
            try:
                os.stat(out)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # "make that folder" cannot be done: the link holds the name
                    parser.error(
                        f"--out-dir {out} is a symbolic link that leads back to itself (to {target}, and "
                        "round again); remove or replace the link, or give another --out-dir"
                    )
            where = target if os.path.isabs(target) else f"{target} ({out.parent / target})"
            if os.path.islink(out.parent / target):  # a link to a link: name the folder that is missing
                where = f"{os.path.realpath(out)} (through {target})"
            parser.error(
                f"--out-dir {out} is a symbolic link to {where}, which does not exist (a disk not mounted, "
                "a folder moved?); make that folder or mount its disk, or give another --out-dir"
            )
        # each label was refused with "[Errno 17] File exists", naming neither --out-dir nor what to do
        linked = f" (a symbolic link to the file {os.path.realpath(out)})" if out.is_symlink() else ""
        parser.error(
            f"--out-dir {args.out_dir} is a file{linked}, not a folder; give a folder (one that does not "
            "exist is made)"
        )
    failed = total = 0  # labels
    records = records_failed = json_files = json_unread = 0  # raw-image metadata
    written: dict[Path, str] = {}
    for name in args.labels:
        label = expand_home(name)
        if label.suffix.lower() == ".json":  # Mars 2020 raw-image metadata: one camera file per record
            json_files += 1
            counts = _main_raw_json(label, args, written)
            if counts is None:
                json_unread += 1
            else:
                records, records_failed = records + sum(counts), records_failed + counts[1]
            continue
        total += 1
        try:
            dest = Path(args.out_dir if args.out_dir else label.parent) / f"{label.stem}{SIDECAR_SUFFIX}"
            if dest in written:
                raise LabelError(
                    f"{label}: would write {dest} again, already written from {written[dest]}; give one "
                    "label per image"
                )
            if args.ground_z_m is not None:
                own, own_note = written_ground(read_label(label), not args.rover_frame)
                if own is not None and own != args.ground_z_m:
                    print(
                        readable(
                            f"{PROG}: note: {label}: --ground-z-m {args.ground_z_m:g} replaces the label's "
                            f"{own:g} ({own_note})"
                        ),
                        file=sys.stderr,
                    )
            dest, d, changed = _convert(
                label, args.out_dir, args.ground_z_m, args.overwrite, args.rover_frame
            )
            if d["frame"] == "flu" and not args.rover_frame:  # a rover-frame model the label does not place
                print(readable(f"{PROG}: note: {label}: {d['pds_frame']}"), file=sys.stderr)
        except (LabelError, OSError) as exc:
            failed += 1
            reason = exc if isinstance(exc, LabelError) else f"{label}: cannot write the camera file: {exc}"
            print(readable(f"{PROG}: error: {' '.join(str(reason).split())}"), file=sys.stderr)
            continue
        written[dest] = str(label)
        print(readable(f"wrote {dest}" if changed else f"unchanged {dest} (already this camera file)"))
    if failed or records_failed or json_unread:  # each count says what was given: labels, records, files
        read = json_files - json_unread
        said = [f"{failed} of {total} labels refused"] if total else []
        if records or read:
            said.append(
                f"{records_failed} of {records} raw-image records (from {read} .json "
                f"file{'' if read == 1 else 's'}) refused"
            )
        if json_unread:
            said.append(f"{json_unread} of {json_files} .json files refused whole (no record read from them)")
        print(readable(f"{PROG}: {'; '.join(said)}"), file=sys.stderr)
    return 1 if failed or records_failed or json_unread else 0


def _main_raw_json(path: Path, args: argparse.Namespace, written: dict[Path, str]) -> tuple[int, int] | None:
    """Write one camera file per record of a raw-image metadata file (:mod:`.raw_json`), saying each
    written file and each refused record on its own line; returns ``(written, refused)`` records, or None
    where the file's records cannot be read (said in a line)."""
    from marsunits.boundary.camera.raw_json import raw_camera, raw_camera_file_dict, raw_records

    def refuse(reason: object) -> None:
        print(readable(f"{PROG}: error: {' '.join(str(reason).split())}"), file=sys.stderr)

    try:
        records = raw_records(path)
    except LabelError as exc:
        refuse(exc)
        return None
    done = refused = 0
    for record in records:
        try:
            img = raw_camera(record, path)
            dest = Path(args.out_dir if args.out_dir else path.parent) / f"{img.stem}{SIDECAR_SUFFIX}"
            if dest in written:
                raise LabelError(
                    f"{path}: {img.imageid}: would write {dest} again, already written from "
                    f"{written[dest]}; give each image's record once"
                )
            d = raw_camera_file_dict(img, path, args.ground_z_m, args.rover_frame)
            changed = write_camera_file(dest, d, args.overwrite, f"{path}: {img.imageid}")
        except LabelError as exc:
            refused += 1
            refuse(exc)
            continue
        except OSError as exc:
            refused += 1
            refuse(f"{path}: {img.imageid}: cannot write the camera file: {exc}")
            continue
        if args.ground_z_m is not None and args.ground_z_m != 0.0:
            print(
                readable(
                    f"{PROG}: note: {path}: {img.imageid}: --ground-z-m {args.ground_z_m:g} replaces the "
                    f"ground the record fixes, 0 ({d['raw_ground']})"
                ),
                file=sys.stderr,
            )
        if d["frame"] == "flu" and not args.rover_frame:
            print(readable(f"{PROG}: note: {path}: {img.imageid}: {d['raw_frame']}"), file=sys.stderr)
        written[dest] = f"{path} ({img.imageid})"
        done += 1
        print(readable(f"wrote {dest}" if changed else f"unchanged {dest} (already this camera file)"))
    return done, refused


if __name__ == "__main__":
    # run as the imported module, not as __main__: raw_json raises that module's LabelError, which this
    # copy's ``except LabelError`` would not catch (a refused record ended the run in a traceback)
    from marsunits.boundary.camera.from_label import main as _main

    sys.exit(_main())
