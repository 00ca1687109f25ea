"""Where a label places the rover: a frame's place as a label group or element gives it (:class:`_Place`: its
reference frame, origin offset and rotation quaternion, or why that quaternion is unusable), whether two
frame indices name the same rover position, and from these the rover's place in a SITE frame for a model in
a rover frame (:func:`_set_pose`, :attr:`LabelCamera.pose`), for the PDS3 and PDS4 readers alike.

How a placed model is levelled into its site: :mod:`marsunits.boundary.camera.from_label` (The frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from marsunits.boundary.camera.label_camera import _POSE_INDEX, _ROVER_FRAMES, LabelCamera, RoverPose


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
