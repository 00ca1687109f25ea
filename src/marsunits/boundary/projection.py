"""Project contact lines from the image onto the ground plane of a camera's site frame."""

from __future__ import annotations

import math

import numpy as np
import shapely

from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.contact_io import ContactLine

__all__ = ["add_ground", "densify"]


def densify(line: ContactLine, max_step_px: float) -> ContactLine:
    """Insert vertices so no segment is longer than ``max_step_px`` (shapely ``segmentize``).

    Per-vertex confidence is interpolated linearly along the line. Useful before projecting with a distorting
    camera (a straight pixel segment is then a curve on the ground) or near the range limit (a piece is cut
    at its last vertex within range).
    """
    geom = shapely.segmentize(shapely.LineString(line.pixels), max_step_px)
    pix = np.asarray(geom.coords)
    vc = line.vertex_confidence
    if vc is not None:
        old = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line.pixels, axis=0), axis=1))]
        new = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pix, axis=0), axis=1))]
        vc = np.interp(new, old, np.asarray(vc, dtype=float))
    return ContactLine(pixels=pix, confidence=line.confidence, vertex_confidence=vc, extra=dict(line.extra))


def _runs(ok: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of consecutive True values."""
    edges = np.diff(np.r_[0, ok.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _length_weighted(values: np.ndarray, pts: np.ndarray) -> float:
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    w = np.zeros(len(pts))
    w[:-1] += 0.5 * seg
    w[1:] += 0.5 * seg
    return float(np.sum(w * values) / w.sum()) if w.sum() > 0 else float(np.mean(values))


def add_ground(
    lines: list[ContactLine],
    camera: CameraModel,
    max_range_m: float = 30.0,
    densify_px: float | None = None,
    keep_unprojected: bool = False,
) -> list[ContactLine]:
    """Project each line's pixel vertices onto the camera's ground plane.

    Lines are split where vertices do not reach the ground within ``max_range_m`` (at or above the horizon,
    or too far); each remaining run of at least two vertices becomes a line whose ``pixels`` and
    ``ground_m`` correspond vertex by vertex. A piece's ``confidence`` is the length-weighted mean (in pixels)
    of its ``vertex_confidence`` when the input has one, else the input line's confidence.

    Args:
        lines: Contact lines in pixel coordinates (corner origin).
        camera: Any :class:`~marsunits.boundary.camera.base.CameraModel`.
        max_range_m: Horizontal distance from the camera centre beyond which ground points are dropped
            (flat-ground ranges far away are too uncertain to map).
        densify_px: If set, lines are first densified to segments of at most this many pixels, so ground
            geometry follows lens distortion and pieces are cut close to the range limit.
        keep_unprojected: If True, pieces that miss the ground are kept too, with ``ground_m = None`` and
            extended by one vertex into their projected neighbours, so the pieces together cover the whole
            pixel line (a per-image pixel-space output keeps far contacts); by default they are dropped.

    Returns:
        New lines (inputs are not modified) with ``ground_m`` (``(K, 2)`` site-frame ``x, y`` in metres) and
        ``site`` (the camera's ``site`` attribute, if any) set.
    """
    site = getattr(camera, "site", None)
    out: list[ContactLine] = []
    for line in lines:
        if densify_px is not None:
            line = densify(line, densify_px)
        pix = np.asarray(line.pixels, dtype=float)
        ground = camera.pixel_to_ground(pix[:, 0], pix[:, 1], max_range_m=max_range_m)
        ok = np.all(np.isfinite(ground), axis=1)
        pieces = [(s, e, True) for s, e in _runs(ok)]
        if keep_unprojected:
            # Unprojected pieces reach one vertex into their projected neighbours, so the pieces together
            # still cover the whole pixel line (no segment is lost where the line is split).
            pieces += [(max(0, s - 1), min(len(ok), e + 1), False) for s, e in _runs(~ok)]
            pieces.sort()
        for start, stop, projected in pieces:
            if stop - start < 2:
                continue
            vc = None if line.vertex_confidence is None else np.asarray(line.vertex_confidence)[start:stop]
            conf = line.confidence if vc is None else _length_weighted(vc, pix[start:stop])
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
