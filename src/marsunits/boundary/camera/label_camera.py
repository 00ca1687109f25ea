"""The camera model a rover image's label gives, whatever the label's form: :class:`LabelCamera` (the model,
its frame and index, the image size, the ground and the rover's place), :class:`RoverPose` (where a rover
frame lies in a SITE frame), :class:`LabelError` (a label refused), and the frame names, index entries and
model types that the readers of every form share (PDS3: :mod:`.label_pds3`, PDS4: :mod:`.label_pds4`, Mars
2020 raw-image metadata: :mod:`.raw_json`).

What is read, and how it is written: :mod:`marsunits.boundary.camera.from_label`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from marsunits.errors import MarsUnitsError

__all__ = ["LabelCamera", "LabelError", "RoverPose"]


#: Frames whose axes are x north, y east, z down (written as ``"frame": "pds"``).
_NORTH_FRAMES = ("SITE_FRAME", "LOCAL_LEVEL_FRAME")
#: Rover-fixed frames, x forward, y starboard, z down (turned to FLU on writing).
_ROVER_FRAMES = ("ROVER_NAV_FRAME", "ROVER_FRAME")
#: Index entries that name a rover-fixed frame (the rest of a motion counter counts mast or arm moves).
_POSE_INDEX = ("SITE", "DRIVE", "POSE")


class LabelError(MarsUnitsError, ValueError):
    """A label that cannot be turned into a camera file; the message names the label and what to do.

    A :class:`~marsunits.errors.MarsUnitsError`, as the camera file's own refusal
    (:class:`~marsunits.boundary.camera.io.CameraFileError`) is, and still a ``ValueError``."""


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
            (:func:`.label_ground._missions_of`), in this order; empty where it names none of them.
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


def _site_of(index: list[tuple[str | None, int]]) -> int | None:
    named = [v for n, v in index if n is not None and n.upper() == "SITE"]
    if named:
        return named[0]
    return index[0][1] if index and all(n is None for n, _ in index) else None


#: How many 3-vectors each model has (C A H V, O R, E).
_VECTOR_COUNT = {"cahv": 4, "cahvor": 6, "cahvore": 7}


def _model_of(model_type: str, source: Path) -> str:
    if model_type not in ("CAHV", "CAHVOR", "CAHVORE"):
        raise LabelError(
            f"{source}: camera model type {model_type or 'missing'!r} is not supported (CAHV, CAHVOR and "
            "CAHVORE are); use a product with such a model, or write the camera file by hand "
            "(docs/cameras.md)"
        )
    return model_type.lower()
