"""Project contact lines from the image onto the ground plane of a camera's site frame."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
import shapely

from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.contact_io import ContactLine, length_weighted_mean, line_list

__all__ = ["add_ground", "densify", "true_runs"]


def densify(line: ContactLine, max_step_px: float) -> ContactLine:
    """Insert vertices so no segment is longer than ``max_step_px`` (shapely ``segmentize``).

    Per-vertex confidence is interpolated linearly along the line. Useful before projecting with a distorting
    camera (a straight pixel segment is then a curve on the ground).
    """
    geom = shapely.segmentize(shapely.LineString(line.pixels), max_step_px)
    pix = np.asarray(geom.coords)
    vc = line.vertex_confidence
    if vc is not None:
        old = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line.pixels, axis=0), axis=1))]
        new = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pix, axis=0), axis=1))]
        vc = np.interp(new, old, np.asarray(vc, dtype=float))
    return ContactLine(pixels=pix, confidence=line.confidence, vertex_confidence=vc, extra=dict(line.extra))


def true_runs(ok: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of consecutive True values of a 1-D bool array (also used to cut
    contact lines to the pixels with data, :func:`marsunits.boundary.metrics.clip_lines`)."""
    edges = np.diff(np.r_[0, ok.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


#: Bisection steps that place a line's cut at the edge of the ground range: 2**-30 of a segment.
_CUT_STEPS = 30

#: A cut closer than this (pixels) to the vertex that reaches the ground is that vertex: not inserted. Ten
#: times the 1e-3 px to which contact files round coordinates (``as_stored``), so a piece read back from a
#: file, starting at a cut rounded to one side or the other of the range edge, gets no sliver of ground.
_CUT_MIN_PX = 0.01


#: Spacing, in pixels, of the probes along a segment whose two ends both miss the ground within range
#: (:func:`_probe_between_misses`), and the most probes one segment gets.
_PROBE_PX = 1.0
_PROBE_MAX = 4096


def _probe_between_misses(
    pix: np.ndarray,
    ground: np.ndarray,
    vc: np.ndarray,
    line_of: np.ndarray,
    camera: CameraModel,
    max_range_m: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pix, ground, vc, line_of)`` with a vertex inserted in every stretch within range of a segment whose
    two ends both miss the ground within range (the middle probe of each run of probes, every ``_PROBE_PX``
    along the segment, that reaches it; its confidence interpolated), so the cuts of
    :func:`_project_with_cuts` find where the segment enters and leaves the range.

    The range is a disc about the camera: a straight contact running across the view, nearest the camera in
    the middle, has its ends beyond the range and its middle within it. Seen only at its two vertices, as a
    simplified straight contact is, it was dropped whole from the ground line and the contact map (33 m of a
    contact 25 m ahead of a 90-degree camera, with max_range_m=30).
    """
    ok = np.all(np.isfinite(ground), axis=1)
    seg = np.flatnonzero(~ok[:-1] & ~ok[1:] & (line_of[:-1] == line_of[1:]))
    if not len(seg):
        return pix, ground, vc, line_of
    length = np.linalg.norm(pix[seg + 1] - pix[seg], axis=1)
    n = np.clip(np.ceil(length / _PROBE_PX), 1, _PROBE_MAX).astype(int)
    owner = np.repeat(np.arange(len(seg)), n)  # the segment (index into seg) of each probe
    frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 1) / (n[owner] + 1)
    a, b = pix[seg[owner]], pix[seg[owner] + 1]
    at = a + frac[:, None] * (b - a)
    hit = np.all(np.isfinite(camera.pixel_to_ground(at[:, 0], at[:, 1], max_range_m=max_range_m)), axis=1)
    # Runs of consecutive probes of one segment that reach the ground: one vertex each, at the run's middle.
    starts = np.flatnonzero(hit & ~np.r_[False, hit[:-1] & (owner[1:] == owner[:-1])])
    if not len(starts):
        return pix, ground, vc, line_of
    stops = np.flatnonzero(hit & ~np.r_[hit[1:] & (owner[1:] == owner[:-1]), False])
    chosen = (starts + stops) // 2
    at, frac, where = at[chosen], frac[chosen], seg[owner[chosen]]
    probe_vc = vc[where] + frac * (vc[where + 1] - vc[where])
    probe_ground = camera.pixel_to_ground(at[:, 0], at[:, 1], max_range_m=max_range_m)
    return (
        np.insert(pix, where + 1, at, axis=0),
        np.insert(ground, where + 1, probe_ground, axis=0),
        np.insert(vc, where + 1, probe_vc),
        np.insert(line_of, where + 1, line_of[where]),
    )


def _project_with_cuts(
    pixels: list[np.ndarray], confidences: list[np.ndarray | None], camera: CameraModel, max_range_m: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Each line's ``(pixels, ground, vertex confidence)`` with, in every segment between a vertex that
    reaches the ground within range and one that does not, the point where the segment leaves the range (or
    passes the horizon) inserted: found by bisection on the pixel segment, it reaches the ground and carries
    the interpolated vertex confidence. All lines are projected together (one camera call per bisection
    step for the whole image, not one per line).

    Without the cuts a piece ended at its last vertex within range: a simplified straight contact has two
    vertices, so one far vertex took the whole line's ground coordinates (and the contact map lost it). The
    set of pixels that reach the ground within range is convex for a pinhole camera (a disc on the plane
    seen through a projective map, below the horizon), so a segment between a vertex that reaches it and one
    that does not crosses its edge once; a segment whose two ends both miss can still pass through it, and
    gets a vertex inside it first (:func:`_probe_between_misses`). A cut at the reaching vertex itself (a
    piece that starts at an earlier cut, projected again) is not inserted.
    """
    if not pixels:
        return []
    sizes = np.array([len(p) for p in pixels])
    line_of = np.repeat(np.arange(len(pixels)), sizes)
    pix = np.concatenate(pixels).astype(float)
    vc = np.concatenate(
        [np.full(len(p), np.nan) if c is None else c for p, c in zip(pixels, confidences, strict=True)]
    )
    ground = camera.pixel_to_ground(pix[:, 0], pix[:, 1], max_range_m=max_range_m)
    pix, ground, vc, line_of = _probe_between_misses(pix, ground, vc, line_of, camera, max_range_m)
    sizes = np.bincount(line_of, minlength=len(sizes))
    ok = np.all(np.isfinite(ground), axis=1)
    edges = np.flatnonzero((ok[:-1] != ok[1:]) & (line_of[:-1] == line_of[1:]))
    if len(edges):
        inside = np.where(ok[edges], edges, edges + 1)  # the end that reaches the ground
        outside = np.where(ok[edges], edges + 1, edges)
        lo, hi = np.zeros(len(edges)), np.ones(len(edges))  # fraction of the way from inside to outside
        a, b = pix[inside], pix[outside]
        for _ in range(_CUT_STEPS):
            mid = 0.5 * (lo + hi)
            at = a + mid[:, None] * (b - a)
            reach = camera.pixel_to_ground(at[:, 0], at[:, 1], max_range_m=max_range_m)
            hit = np.all(np.isfinite(reach), axis=1)
            lo, hi = np.where(hit, mid, lo), np.where(hit, hi, mid)
        kept = lo * np.linalg.norm(b - a, axis=1) > _CUT_MIN_PX
        cut = (a + lo[:, None] * (b - a))[kept]
        at_index = edges[kept] + 1  # between vertices edges and edges + 1
        pix = np.insert(pix, at_index, cut, axis=0)
        cut_ground = camera.pixel_to_ground(cut[:, 0], cut[:, 1], max_range_m=max_range_m)
        ground = np.insert(ground, at_index, cut_ground, axis=0)
        vc = np.insert(vc, at_index, (vc[inside] + lo * (vc[outside] - vc[inside]))[kept])
        sizes = sizes + np.bincount(line_of[edges[kept]], minlength=len(sizes))
    bounds = np.cumsum(sizes)[:-1]
    return [
        (p, g, None if c is None else v)
        for p, g, v, c in zip(
            np.split(pix, bounds), np.split(ground, bounds), np.split(vc, bounds), confidences, strict=True
        )
    ]


def add_ground(
    lines: list[ContactLine],
    camera: CameraModel,
    max_range_m: float = 30.0,
    densify_px: float | None = None,
    keep_unprojected: bool = False,
) -> list[ContactLine]:
    """Project each line's pixel vertices onto the camera's ground plane.

    Lines are split where they stop reaching the ground within ``max_range_m`` (at or above the horizon,
    or too far): a vertex is inserted where a segment crosses that edge (:func:`_project_with_cuts`), and
    each remaining run of at least two vertices becomes a line whose ``pixels`` and ``ground_m`` correspond
    vertex by vertex. A line that is not split keeps its ``confidence``; a piece of a split one gets the
    length-weighted mean (in pixels) of its ``vertex_confidence`` when the input has one, else the input
    line's confidence.

    Args:
        lines: Contact lines in pixel coordinates (corner origin).
        camera: Any :class:`~marsunits.boundary.camera.base.CameraModel`.
        max_range_m: Horizontal distance from the camera centre beyond which ground points are dropped
            (flat-ground ranges far away are too uncertain to map).
        densify_px: If set, lines are first densified to segments of at most this many pixels, so ground
            geometry follows lens distortion (a straight pixel segment is then a curve on the ground).
        keep_unprojected: If True, pieces that miss the ground are kept too, with ``ground_m = None`` and
            extended by one vertex into their projected neighbours, so the pieces together cover the whole
            pixel line (a per-image pixel-space output keeps far contacts); by default they are dropped.

    Returns:
        New lines (inputs are not modified) with ``ground_m`` (``(K, 2)`` site-frame ``x, y`` in metres) and
        ``site`` (the camera's ``site`` attribute, if any) set.

    Raises:
        TypeError: ``lines`` not a list of :class:`ContactLine` (one line, or bare arrays), or ``camera`` not
            a camera model (a camera file's dict: ``camera_from_dict``).
        ValueError: ``max_range_m`` not a number > 0 (``math.inf``: no limit), ``densify_px`` not a finite
            number > 0.
    """
    lines = line_list(lines, "lines")
    if not isinstance(camera, CameraModel):
        # A camera file's dict, or None, failed deep inside as "has no attribute 'pixel_to_ground'".
        fix = (
            "camera_from_dict(it) or load_camera(path) makes one of a camera file's content"
            if isinstance(camera, Mapping)
            else "load_camera(path) reads a camera file"
        )
        raise TypeError(
            f"camera must be a camera model of marsunits.boundary.camera, got {type(camera).__name__}; {fix}"
        )
    for name, value in (("max_range_m", max_range_m), ("densify_px", densify_px)):
        if value is None and name == "densify_px":
            continue
        # "30" failed in numpy's comparison, densify_px=0 in GEOS ("Tolerance must be positive"), NaN dropped
        # every ground point.
        if isinstance(value, bool) or not isinstance(value, Real) or not value > 0 or math.isnan(value):
            raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if math.isinf(densify_px or 0.0):
        raise ValueError(f"densify_px must be finite (or None: no densifying), got {densify_px!r}")
    site = getattr(camera, "site", None)
    out: list[ContactLine] = []
    if densify_px is not None:
        lines = [densify(line, densify_px) for line in lines]
    projected_lines = _project_with_cuts(
        [np.asarray(line.pixels, dtype=float) for line in lines],
        [None if ln.vertex_confidence is None else np.asarray(ln.vertex_confidence, float) for ln in lines],
        camera,
        max_range_m,
    )
    for line, (pix, ground, vertex_conf) in zip(lines, projected_lines, strict=True):
        ok = np.all(np.isfinite(ground), axis=1)
        pieces = [(s, e, True) for s, e in true_runs(ok)]
        if keep_unprojected:
            # Unprojected pieces reach one vertex into their projected neighbours, so the pieces together
            # still cover the whole pixel line (no segment is lost where the line is split).
            pieces += [(max(0, s - 1), min(len(ok), e + 1), False) for s, e in true_runs(~ok)]
            pieces.sort()
        for start, stop, projected in pieces:
            if stop - start < 2:
                continue
            vc = None if vertex_conf is None else vertex_conf[start:stop]
            # A line not split keeps its confidence (extraction's mean over the traced contour, before
            # simplification): recomputed from its few simplified vertices it differed, by 0.01-0.02, between
            # the same contact with and without a camera file.
            whole = start == 0 and stop == len(pix) == len(line.pixels)
            conf = line.confidence if vc is None or whole else length_weighted_mean(vc, pix[start:stop])
            out.append(
                ContactLine(
                    pixels=pix[start:stop].copy(),
                    confidence=float(conf) if math.isfinite(conf) else line.confidence,
                    vertex_confidence=None if vc is None else vc.copy(),
                    ground_m=ground[start:stop, :2].copy() if projected else None,
                    site=site if projected else None,
                    extra=dict(line.extra),
                )
            )
    return out
