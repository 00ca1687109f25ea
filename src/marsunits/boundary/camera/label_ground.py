"""The ground's height a label fixes: the missions a label names, where a rover frame's origin lies above the
nominal ground (MSL's and Mars 2020's ``ROVER_NAV_FRAME`` on it, MER's ``ROVER_FRAME``
:data:`MER_ROVER_FRAME_HEIGHT_M` above it), and from these the ground in the model's own frame
(:func:`_set_ground`, :attr:`LabelCamera.ground_z_m`) and in the frame the camera file is written in
(:func:`written_ground`), or why the label does not fix it.

The documents these rest on: :mod:`marsunits.boundary.camera.from_label` (The ground).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from marsunits.boundary.camera.label_camera import _ROVER_FRAMES, LabelCamera
from marsunits.boundary.camera.label_pose import _Place

__all__ = ["MER_ROVER_FRAME_HEIGHT_M", "written_ground"]


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
    (:mod:`marsunits.boundary.camera.from_label`, The ground), else say why not."""
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
