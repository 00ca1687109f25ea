"""Boundary scores for the contact between unit 0 and unit 1: precision, recall, F1 and mean distance.

The F1 here is the boundary F1 (BF) score of Csurka, Larlus and Perronnin, "What is a good evaluation
measure for semantic segmentation?", BMVC 2013: a predicted boundary point is correct if a true boundary
point lies within ``tolerance_px``; precision is the fraction of predicted boundary that is correct, recall
the fraction of true boundary that is found, F1 their harmonic mean. Only the *contact* counts (an edge
between class 0 and class 1); terrain/sky edges are not scored.

Two ways in, same definitions:

* :func:`boundary_scores` works on label masks. The boundary is the set of *cracks* between 4-neighbouring
  pixels of which one is class 0 and the other class 1, each represented by the crack's midpoint in pixel
  coordinates (origin at the top-left pixel's corner). Cracks have unit length, so counting them weighs
  the boundary by its (staircase) length, and a contact moved by ``k`` pixels is exactly ``k`` away.
  Narrow unlabelled gaps between the units in the *true* mask are bridged first
  (:func:`~marsunits.boundary.extract.bridge_ignore_gaps`: annotators leave a strip of ignore between units,
  so taken literally the truth would have no contact); cracks touching a pixel that is still ignore (255)
  in the true mask, or that has no data (``valid``), are dropped from both boundaries.
* :func:`line_scores` works on polylines (e.g. :class:`~marsunits.boundary.contact_io.ContactLine`):
  each line is sampled every ``step_px`` along its length and distances are exact distances to the other
  set's polylines (shapely). :func:`clip_lines` first cuts lines to the pixels with data.

Empty cases (following the DAVIS benchmark's boundary measure):

* both boundaries empty: precision = recall = F1 = 1 and ``mean_distance_px`` = 0 -- the prediction agrees
  with the truth that there is no contact, and a 0 keeps per-image averages meaningful;
* only the prediction empty: precision = 1 (nothing predicted wrongly), recall = 0, F1 = 0;
* only the truth empty: precision = 0, recall = 1, F1 = 0;
* ``mean_distance_px`` is NaN when exactly one side is empty: there is nothing to measure a distance to.
  Average it with ``numpy.nanmean`` and read it together with F1, which does count those images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import shapely
from scipy.spatial import cKDTree

from marsunits.boundary.contact_io import ContactLine, line_list
from marsunits.boundary.extract import DEFAULT_MAX_GAP_PX, bridge_ignore_gaps
from marsunits.boundary.projection import true_runs
from marsunits.constants import IGNORE_INDEX

__all__ = [
    "BOUNDARY_TOLERANCE_PX",
    "contact_cracks",
    "scored_cracks",
    "crack_scores",
    "boundary_scores",
    "line_scores",
    "clip_lines",
    "scores_from_distances",
]

#: The project's matching tolerance for contact scores, pixels: the logged ``val/boundary_f1``, predict.py's
#: ``metrics.json`` and the contact benchmark all use it.
BOUNDARY_TOLERANCE_PX = 3.0


def contact_cracks(mask: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Midpoints of the cracks between 4-neighbouring class-0 and class-1 pixels.

    Args:
        mask: ``(H, W)`` integer label array.
        ignore: Optional ``(H, W)`` bool array; cracks touching a True pixel are dropped.

    Returns:
        ``(N, 2)`` float array of ``(x, y)`` pixel coordinates (corner origin); N may be 0.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) label array, got shape {m.shape}")
    ign = np.zeros(m.shape, bool) if ignore is None else np.asarray(ignore, bool)
    a, b = m[:, :-1], m[:, 1:]  # left / right neighbours
    horiz = (((a == 0) & (b == 1)) | ((a == 1) & (b == 0))) & ~ign[:, :-1] & ~ign[:, 1:]
    r, c = np.nonzero(horiz)
    pts_h = np.c_[c + 1.0, r + 0.5]
    a, b = m[:-1, :], m[1:, :]  # top / bottom neighbours
    vert = (((a == 0) & (b == 1)) | ((a == 1) & (b == 0))) & ~ign[:-1, :] & ~ign[1:, :]
    r, c = np.nonzero(vert)
    pts_v = np.c_[c + 0.5, r + 1.0]
    return np.concatenate([pts_h, pts_v]).reshape(-1, 2)


def scores_from_distances(
    d_pred_to_true: np.ndarray, d_true_to_pred: np.ndarray, tolerance_px: float
) -> dict[str, float]:
    """Precision, recall, F1 and mean symmetric distance from per-sample nearest distances.

    Args:
        d_pred_to_true: Distance (px) from each predicted boundary sample to the true boundary.
        d_true_to_pred: Distance (px) from each true boundary sample to the predicted boundary.
        tolerance_px: A sample within this distance counts as matched.

    Returns:
        ``{"precision", "recall", "f1", "mean_distance_px"}`` with the empty-case rules of the module.

    Raises:
        ValueError: If ``tolerance_px`` is not a finite distance >= 0 (a negative or NaN one matched nothing
            and scored a perfect prediction 0; an infinite one matches everything).
    """
    if (
        isinstance(tolerance_px, bool)
        or not isinstance(tolerance_px, Real)
        or not 0.0 <= tolerance_px < math.inf
    ):
        raise ValueError(
            f"tolerance_px must be a finite distance in pixels >= 0 (the project's is "
            f"{BOUNDARY_TOLERANCE_PX:g}), got {tolerance_px!r}"
        )
    n_pred, n_true = len(d_pred_to_true), len(d_true_to_pred)
    if n_pred == 0 and n_true == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "mean_distance_px": 0.0}
    if n_pred == 0:
        return {"precision": 1.0, "recall": 0.0, "f1": 0.0, "mean_distance_px": math.nan}
    if n_true == 0:
        return {"precision": 0.0, "recall": 1.0, "f1": 0.0, "mean_distance_px": math.nan}
    precision = float(np.mean(d_pred_to_true <= tolerance_px))
    recall = float(np.mean(d_true_to_pred <= tolerance_px))
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    mean_distance = 0.5 * (float(np.mean(d_pred_to_true)) + float(np.mean(d_true_to_pred)))
    return {"precision": precision, "recall": recall, "f1": f1, "mean_distance_px": mean_distance}


def scored_cracks(
    pred_mask: np.ndarray,
    true_mask: np.ndarray,
    ignore_index: int = IGNORE_INDEX,
    max_gap_px: float = DEFAULT_MAX_GAP_PX,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted and true contact cracks that :func:`boundary_scores` compares.

    Narrow unlabelled gaps between the units in ``true_mask`` are bridged up to ``max_gap_px`` (0 takes the
    mask literally); cracks touching a pixel that is still ``ignore_index``, or that is not ``valid``, are
    dropped from both sides.

    Args:
        pred_mask: ``(H, W)`` predicted class ids (0, 1, 2), and ``ignore_index`` where the image has no
            data (``predict.py``'s masks, ``UnitMap.mask``): left out as ``valid`` False is, as
            ``predict.py``'s evaluation leaves it out.
        true_mask: ``(H, W)`` true class ids (0, 1, 2, and ``ignore_index`` for unlabelled pixels).
        ignore_index: Label of unlabelled pixels in ``true_mask`` and of no-data pixels in ``pred_mask``.
        max_gap_px: Largest unlabelled gap between the units that is bridged, pixels.
        valid: Optional ``(H, W)`` bool array, False where the image has no data (``predict.py``'s
            ``nodata_max``). Kept apart from ``true_mask``'s ignore on purpose: only the annotator's gaps are
            bridged, so the true contact does not run on into the no-data (marking no-data 255 in the label
            before bridging extended it about ``max_gap_px`` there, and a perfect prediction scored a
            distance).

    Returns:
        ``(pred, true)``: ``(N, 2)`` and ``(M, 2)`` float arrays of crack midpoints ``(x, y)``, pixels
        (corner origin).

    Raises:
        ValueError: If the masks (or ``valid``) differ in shape or are not 2-D.
    """
    pred_mask, true_mask = np.asarray(pred_mask), np.asarray(true_mask)
    if pred_mask.shape != true_mask.shape:
        raise ValueError(
            f"pred_mask and true_mask must have the same (H, W) shape, got {pred_mask.shape} "
            f"and {true_mask.shape}"
        )
    true_mask = bridge_ignore_gaps(true_mask, max_gap_px, ignore_index)
    ignore = true_mask == ignore_index
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != true_mask.shape:
            raise ValueError(f"valid must have the masks' (H, W) shape {true_mask.shape}, got {valid.shape}")
        ignore |= ~valid
    # The prediction's 255 (UnitMap.mask, predict.py's masks) is no data, as predict.py's evaluation reads
    # it: the truth's contact through it was counted as missed, so boundary_scores(result.mask, label) in a
    # notebook scored lower than the same image's metrics.json.
    ignore |= pred_mask == ignore_index
    return contact_cracks(pred_mask, ignore), contact_cracks(true_mask, ignore)


def crack_scores(
    pred: np.ndarray, true: np.ndarray, tolerance_px: float = BOUNDARY_TOLERANCE_PX
) -> dict[str, float]:
    """Precision, recall, F1 and mean symmetric distance between two sets of crack midpoints.

    Args:
        pred: ``(N, 2)`` predicted crack midpoints, pixels (e.g. from :func:`scored_cracks`).
        true: ``(M, 2)`` true crack midpoints, pixels.
        tolerance_px: Matching tolerance in pixels (Euclidean distance between midpoints).

    Returns:
        ``{"precision", "recall", "f1", "mean_distance_px"}`` (see the module docstring for empty sets).
    """
    if len(pred) and len(true):
        d_pt = cKDTree(true).query(pred)[0]
        d_tp = cKDTree(pred).query(true)[0]
    else:
        d_pt, d_tp = np.zeros(len(pred)), np.zeros(len(true))
    return scores_from_distances(d_pt, d_tp, tolerance_px)


def boundary_scores(
    pred_mask: np.ndarray,
    true_mask: np.ndarray,
    tolerance_px: float = BOUNDARY_TOLERANCE_PX,
    ignore_index: int = IGNORE_INDEX,
    max_gap_px: float = DEFAULT_MAX_GAP_PX,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Contact precision, recall, F1 (BF score) and mean symmetric distance from two label masks.

    :func:`scored_cracks` then :func:`crack_scores`.

    Args:
        pred_mask: ``(H, W)`` predicted class ids (0, 1, 2), and ``ignore_index`` where the image has no
            data (``predict.py``'s masks, ``UnitMap.mask``): left out of both sides as ``valid`` False is.
        true_mask: ``(H, W)`` true class ids (0, 1, 2, and ``ignore_index`` for unlabelled pixels).
        tolerance_px: Matching tolerance in pixels (Euclidean distance between crack midpoints).
        ignore_index: Label of unlabelled pixels in ``true_mask`` and of no-data pixels in ``pred_mask``.
        max_gap_px: Unlabelled gaps between the units in ``true_mask`` are bridged up to this distance
            (pixels; 0 takes the mask literally).
        valid: Optional ``(H, W)`` bool array, False where the image has no data: left out of both sides
            (:func:`scored_cracks`).

    Returns:
        ``{"precision", "recall", "f1", "mean_distance_px"}`` (floats; see the module docstring for empty
        boundaries).

    Raises:
        ValueError: If the masks (or ``valid``) differ in shape or are not 2-D, or ``tolerance_px`` is not a
            finite distance >= 0.
    """
    pred, true = scored_cracks(pred_mask, true_mask, ignore_index, max_gap_px, valid)
    return crack_scores(pred, true, tolerance_px)


def _pixels(line: ContactLine | np.ndarray) -> np.ndarray:
    pix = np.asarray(line.pixels if isinstance(line, ContactLine) else line, dtype=float)
    if pix.ndim != 2 or pix.shape[1] != 2 or len(pix) < 2:
        raise ValueError(f"a contact line needs (K>=2, 2) pixel coordinates, got shape {pix.shape}")
    if not np.isfinite(pix).all():  # a NaN vertex failed later as "cannot convert float NaN to integer"
        raise ValueError(
            "a contact line's pixel coordinates must be finite numbers, got "
            f"{np.array2string(pix, threshold=8)}"
        )
    return pix


def _as_geometries(lines: Sequence[ContactLine | np.ndarray]) -> list[shapely.LineString]:
    return [shapely.LineString(_pixels(ln)) for ln in lines]


def clip_lines(lines: Sequence[ContactLine | np.ndarray], valid: np.ndarray) -> list[np.ndarray]:
    """The parts of ``lines`` that lie where a contact can be traced in an image with no-data pixels.

    A contact is traced between pixel centres (marching squares, :mod:`marsunits.boundary.extract`), and
    only through the cells whose four corner pixels all have data: that is where ``predict.py`` can draw
    one. A true contact line is cut to the same cells, so a perfect prediction of an image with a no-data
    border scores F1 1 and distance 0 instead of missing the truth's run through the no-data. Pixels outside
    the image count as having data: the image border is not no-data. Cut by hand rather than with shapely,
    which would first need the cells with data as a polygon (the outline of a raster, with every hole):
    walking each segment's cell edges costs only the few cells the lines cross.

    Args:
        lines: :class:`ContactLine` or ``(K, 2)`` arrays of ``(x, y)`` pixels (corner origin).
        valid: ``(H, W)`` bool array, False where the image has no data.

    Returns:
        ``(K, 2)`` float arrays, the kept pieces in the lines' order and direction: a line crossing no-data
        becomes several pieces, a line entirely in it none. Cuts are exact (at the cell edges, ``x`` or
        ``y`` = ``k + 0.5``).

    Raises:
        ValueError: ``valid`` is not 2-D, or a line has fewer than two points or a NaN or infinite
            coordinate.
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim != 2:
        raise ValueError(f"valid must be a 2-D (H, W) bool array, got shape {valid.shape}")
    pixels = [_pixels(ln) for ln in lines]
    if valid.all():
        return pixels
    # cells[i, j]: the cell between the centres of pixel rows i-1, i and columns j-1, j has data at all four.
    padded = np.pad(valid, 1, constant_values=True)
    cells = padded[:-1, :-1] & padded[1:, :-1] & padded[:-1, 1:] & padded[1:, 1:]
    pieces: list[np.ndarray] = []
    for pix in pixels:
        pieces.extend(_clip_line(pix, cells))
    return pieces


def _clip_line(pix: np.ndarray, cells: np.ndarray) -> list[np.ndarray]:
    """One polyline cut at every cell edge it crosses; the runs of sub-segments in cells with data."""
    points, keep = [], []
    for a, b in zip(pix[:-1], pix[1:], strict=True):
        ts = [np.array([0.0, 1.0])]
        for k in (0, 1):  # the cell edges x = c + 0.5 and y = r + 0.5 between a and b
            lo, hi = min(a[k], b[k]), max(a[k], b[k])
            if hi > lo:
                edges = np.arange(np.ceil(lo - 0.5), np.floor(hi - 0.5) + 1) + 0.5
                ts.append((edges - a[k]) / (b[k] - a[k]))
        t = np.unique(np.clip(np.concatenate(ts), 0.0, 1.0))
        seg = a + t[:, None] * (b - a)
        mid = 0.5 * (seg[:-1] + seg[1:])  # inside one cell each: the cell decides the sub-segment
        rows = np.floor(mid[:, 1] + 0.5).astype(np.int64)
        cols = np.floor(mid[:, 0] + 0.5).astype(np.int64)
        # Beyond the padded grid (more than half a pixel outside the image) there is data, as the docstring
        # says: clamped onto the border cells, such a sub-segment took a no-data border pixel's cell and was
        # cut.
        outside = (rows < 0) | (rows >= cells.shape[0]) | (cols < 0) | (cols >= cells.shape[1])
        inside = cells[np.clip(rows, 0, cells.shape[0] - 1), np.clip(cols, 0, cells.shape[1] - 1)]
        points.append(seg[:-1])
        keep.append(outside | inside)
    points.append(pix[-1:])
    pts, ok = np.concatenate(points), np.concatenate(keep)
    if ok.all():
        return [pix]
    pieces = [pts[start : stop + 1] for start, stop in true_runs(ok)]  # sub-segments start..stop-1
    return [p for p in pieces if np.linalg.norm(np.diff(p, axis=0), axis=1).sum() > 0]


def _samples(geoms: list[shapely.LineString], step_px: float) -> np.ndarray:
    """Points every ``step_px`` along each line (both ends included), so samples weigh by length."""
    parts = []
    for g in geoms:
        n = max(2, math.ceil(g.length / step_px) + 1)
        parts.append(shapely.line_interpolate_point(g, np.linspace(0.0, g.length, n)))
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def line_scores(
    pred_lines: Sequence[ContactLine | np.ndarray],
    true_lines: Sequence[ContactLine | np.ndarray],
    tolerance_px: float = BOUNDARY_TOLERANCE_PX,
    step_px: float = 0.5,
) -> dict[str, float]:
    """Contact precision, recall, F1 and mean symmetric distance between two sets of polylines.

    Args:
        pred_lines: Predicted contacts: :class:`ContactLine` or ``(K, 2)`` arrays of ``(x, y)`` pixels.
        true_lines: True contacts, same forms.
        tolerance_px: Matching tolerance in pixels.
        step_px: Sampling step along the lines, pixels (smaller is more exact and slower).

    Returns:
        ``{"precision", "recall", "f1", "mean_distance_px"}`` (see the module docstring for empty sets).

    Raises:
        ValueError: If a line has fewer than two points or a NaN or infinite coordinate, ``step_px`` is not
            a finite number > 0, or ``tolerance_px`` is not a finite distance >= 0.
        TypeError: A single line given for a list of lines, or an item that is neither a line nor an array.
    """
    if isinstance(step_px, bool) or not isinstance(step_px, Real) or not 0 < step_px < math.inf:
        # NaN failed as "cannot convert float NaN to integer", "0.5" as a str/int comparison.
        raise ValueError(f"step_px must be a finite number of pixels > 0, e.g. 0.5, got {step_px!r}")
    pred = _as_geometries(line_list(pred_lines, "pred_lines", arrays=True))
    true = _as_geometries(line_list(true_lines, "true_lines", arrays=True))
    if pred and true:
        d_pt = shapely.distance(_samples(pred, step_px), shapely.MultiLineString(true))
        d_tp = shapely.distance(_samples(true, step_px), shapely.MultiLineString(pred))
    else:
        d_pt = np.zeros(len(_samples(pred, step_px)))
        d_tp = np.zeros(len(_samples(true, step_px)))
    return scores_from_distances(np.asarray(d_pt, float), np.asarray(d_tp, float), tolerance_px)
