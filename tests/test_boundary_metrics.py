"""Boundary precision / recall / F1 and mean distance, from masks and from lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from marsunits.boundary.extract import bridge_ignore_gaps, contacts_from_mask
from marsunits.boundary.metrics import (
    boundary_scores,
    clip_lines,
    contact_cracks,
    crack_scores,
    line_scores,
    scored_cracks,
)


def _split(col: int, h: int = 40, w: int = 60) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, col:] = 1
    return m


def test_cracks_lie_between_pixels_and_ignore_sky_edges():
    m = _split(20, 10, 30)
    m[:3] = 2  # sky: its edge with either unit is not a contact
    pts = contact_cracks(m)
    assert len(pts) == 7
    np.testing.assert_allclose(pts[:, 0], 20.0)
    np.testing.assert_allclose(np.sort(pts[:, 1]), np.arange(3, 10) + 0.5)


def test_identical_masks_score_perfectly():
    m = _split(25)
    s = boundary_scores(m, m)
    assert s == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "mean_distance_px": 0.0}


@pytest.mark.parametrize("use_lines", [False, True], ids=["masks", "lines"])
def test_contact_shifted_by_two_pixels(use_lines):
    true, pred = _split(25), _split(27)
    if use_lines:
        loose = line_scores(contacts_from_mask(pred), contacts_from_mask(true), tolerance_px=3.0)
        tight = line_scores(contacts_from_mask(pred), contacts_from_mask(true), tolerance_px=1.0)
    else:
        loose = boundary_scores(pred, true, tolerance_px=3.0)
        tight = boundary_scores(pred, true, tolerance_px=1.0)
    assert loose["f1"] == pytest.approx(1.0)
    assert tight["f1"] == pytest.approx(0.0)
    assert loose["mean_distance_px"] == pytest.approx(2.0, abs=1e-6)


def test_partial_match_precision_and_recall():
    # truth: a straight contact; prediction: the same plus an equally long false contact elsewhere
    true = np.zeros((40, 40), np.uint8)
    true[:, 20:] = 1
    pred = true.copy()
    pred[:20, 5] = 1  # a thin false strip adds 2 x 20 wrong cracks plus its end
    s = boundary_scores(pred, true)
    assert s["recall"] == pytest.approx(1.0)
    assert s["precision"] == pytest.approx(40 / (40 + 41))
    assert s["f1"] == pytest.approx(2 * s["precision"] / (s["precision"] + 1))


def test_no_contact_in_both():
    s = boundary_scores(np.zeros((20, 20), np.uint8), np.full((20, 20), 2, np.uint8))
    assert s == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "mean_distance_px": 0.0}
    assert line_scores([], [])["f1"] == 1.0


def test_one_sided():
    empty, split = np.zeros((20, 20), np.uint8), _split(10, 20, 20)
    missed = boundary_scores(empty, split)
    assert (missed["precision"], missed["recall"], missed["f1"]) == (1.0, 0.0, 0.0)
    assert math.isnan(missed["mean_distance_px"])
    invented = boundary_scores(split, empty)
    assert (invented["precision"], invented["recall"], invented["f1"]) == (0.0, 1.0, 0.0)
    assert math.isnan(invented["mean_distance_px"])
    lines = line_scores([np.array([[0.0, 0.0], [5.0, 0.0]])], [])
    assert lines["f1"] == 0.0 and math.isnan(lines["mean_distance_px"])


def test_ignore_pixels_are_excluded():
    true = _split(25)
    true[:20, 20:30] = 255  # unlabelled around the upper half of the contact
    pred = _split(25)
    pred[:20, 25:30] = 0  # the prediction misses the contact only where the truth is unlabelled
    s = boundary_scores(pred, true, tolerance_px=0.5, max_gap_px=0)
    assert s["f1"] == pytest.approx(1.0)


def test_narrow_unlabelled_gap_between_units_is_bridged():
    # annotators leave a strip of ignore between the units: the true contact runs through its middle
    true = _split(26)
    true[:, 23:26] = 255  # columns 23, 24, 25 unlabelled
    pred = _split(25)  # contact at x = 25, inside the strip
    s = boundary_scores(pred, true, tolerance_px=1.0)
    assert s["f1"] == pytest.approx(1.0)
    assert s["mean_distance_px"] <= 0.5
    assert len(contact_cracks(true)) == 0  # taken literally, the truth has no contact at all
    wide = _split(26)
    wide[:, 14:26] = 255  # 12 px: an unlabelled region, not a gap
    assert len(contact_cracks(bridge_ignore_gaps(wide))) == 0
    assert boundary_scores(_split(10), wide)["f1"] == 0.0


def test_line_scores_exact_distance():
    a = [np.array([[0.0, 0.0], [100.0, 0.0]])]
    b = [np.array([[0.0, 1.5], [100.0, 1.5]])]
    s = line_scores(a, b, tolerance_px=2.0)
    assert s["f1"] == 1.0
    assert s["mean_distance_px"] == pytest.approx(1.5)
    assert line_scores(a, b, tolerance_px=1.0)["f1"] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="same"):
        boundary_scores(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="K>=2"):
        line_scores([np.zeros((1, 2))], [])


def test_scored_cracks_drop_the_prediction_inside_unlabelled_regions_and_bridge_gaps():
    true = _split(26)
    true[:, 23:26] = 255  # a 3 px strip of ignore between the units: bridged, the truth keeps its contact
    true[:10, 10:50] = 255  # a wide unlabelled block across the top: no contact scored there
    pred = _split(40)  # the predicted contact: 14 px off, in the block and below it
    pred_cracks, true_cracks = scored_cracks(pred, true)
    assert len(true_cracks) == 30 and np.all(true_cracks[:, 1] > 10)  # rows 10..39 only
    assert len(pred_cracks) == 30 and np.all(pred_cracks[:, 1] > 10)
    assert crack_scores(pred_cracks, true_cracks, tolerance_px=3.0) == boundary_scores(pred, true)
    with pytest.raises(ValueError, match="same"):
        scored_cracks(pred, true[:, :-1])


def test_no_data_is_left_out_after_the_gaps_are_bridged():
    """No-data (``valid`` False) is not ignore in the label: marked 255 before the bridging, it let the
    true contact run about 3 px on into the no-data, where no prediction can have one."""
    true = _split(30)
    pred = _split(30)
    pred[:10] = 255  # predict.py's no-data
    valid = pred != 255
    pred_cracks, true_cracks = scored_cracks(pred, true, valid=valid)
    assert len(pred_cracks) == len(true_cracks) == 30 and np.all(true_cracks[:, 1] > 10)
    assert boundary_scores(pred, true, valid=valid)["mean_distance_px"] == 0.0
    gap = _split(30)
    gap[:, 29:31] = 255  # the annotator's own gap is still bridged beside the no-data
    assert len(scored_cracks(pred, gap, valid=valid)[1]) == 30
    with pytest.raises(ValueError, match="valid must have"):
        scored_cracks(pred, true, valid=valid[:, :-1])


def test_the_predictions_no_data_is_left_out_as_predict_py_leaves_it_out():
    """A notebook scores ``UnitMap.mask`` (255 at no-data) against a label: the true contact through the
    no-data counted as missed (recall 0.75 here), so the score was lower than the same image's in
    predict.py's metrics.json, whose evaluation reads 255 in the prediction as no data."""
    true = _split(30)
    pred = _split(30)
    pred[:10] = 255
    assert boundary_scores(pred, true) == boundary_scores(pred, true, valid=pred != 255)
    assert boundary_scores(pred, true) == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "mean_distance_px": 0.0,
    }
    pred[:, :] = 255  # nothing but no data: nothing to score on either side
    assert boundary_scores(pred, true)["f1"] == 1.0


def test_clip_lines_cuts_exactly_where_a_contact_can_be_traced():
    """A contact is traced between pixel centres whose four pixels have data: the cut falls on the first
    such cell edge (y = 30.5 below 30 no-data rows), where predict.py's own line stops."""
    valid = np.ones((80, 120), bool)
    valid[:30] = False
    (piece,) = clip_lines([np.array([[60.0, 0.5], [60.0, 79.5]])], valid)
    np.testing.assert_allclose(piece[[0, -1]], [[60.0, 30.5], [60.0, 79.5]])
    # A line through a no-data hole becomes two pieces, keeping its direction; one inside it, none.
    valid = np.ones((40, 60), bool)
    valid[10:20, 20:40] = False
    pieces = clip_lines([np.array([[5.0, 15.0], [55.0, 15.0]])], valid)
    np.testing.assert_allclose([p[[0, -1], 0] for p in pieces], [[5.0, 19.5], [40.5, 55.0]])
    assert clip_lines([np.array([[25.0, 12.0], [35.0, 18.0]])], valid) == []
    # Pixels outside the image are not no-data: a line to the border is kept whole.
    assert len(clip_lines([np.array([[0.0, 30.0], [60.0, 30.0]])], valid)) == 1
    diagonal = np.array([[0.0, 0.0], [60.0, 40.0]])
    kept = clip_lines([diagonal], valid)
    assert sum(np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in kept) < np.hypot(60, 40)
    for p in kept:  # still on the line y = 2x/3
        np.testing.assert_allclose(p[:, 1], p[:, 0] * 40 / 60)


def test_clip_lines_keeps_what_runs_outside_the_image_beside_a_no_data_border():
    """Outside the image is not no-data: a line more than half a pixel outside was judged by the border cell
    it was clamped onto, so beside a no-data border row it was cut, or dropped whole."""
    valid = np.ones((8, 8), bool)
    valid[0] = False  # a no-data top row
    above = np.array([[-2.0, -3.0], [10.0, -3.0]])  # runs above the image, along the no-data row
    (piece,) = clip_lines([above], valid)
    np.testing.assert_array_equal(piece, above)
    # Down into the image: kept above it, cut through the cells of row 0, kept from y = 1.5 on.
    pieces = clip_lines([np.array([[4.0, -3.0], [4.0, 4.0]])], valid)
    np.testing.assert_allclose([p[[0, -1], 1] for p in pieces], [[-3.0, -0.5], [1.5, 4.0]])
    rng = np.random.default_rng(7)  # lines that leave the image on every side, checked point by point
    valid = rng.random((12, 16)) > 0.3
    valid[:, 0] = valid[-1] = False
    lines = [rng.uniform([-5, -5], [21, 17], size=(4, 2)) for _ in range(8)]
    _assert_kept_exactly_where_traceable(lines, clip_lines(lines, valid), valid, samples=3000)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cracks_commute_with_flips_and_transposition(seed):
    """The contact cracks (and the ignore rule: a crack touching an ignored pixel on either side is
    dropped) do not depend on which way the image is turned."""
    rng = np.random.default_rng(seed)
    h, w = 17, 23
    mask = rng.integers(0, 3, (h, w)).astype(np.uint8)
    ignore = rng.random((h, w)) < 0.2

    def cracks(m, ign):
        return {tuple(p) for p in contact_cracks(m, ign).tolist()}

    base = cracks(mask, ignore)
    assert len(base) > 20
    assert cracks(mask[:, ::-1], ignore[:, ::-1]) == {(w - x, y) for x, y in base}
    assert cracks(mask[::-1], ignore[::-1]) == {(x, h - y) for x, y in base}
    assert cracks(mask.T, ignore.T) == {(y, x) for x, y in base}


@pytest.mark.parametrize("use_lines", [False, True], ids=["masks", "lines"])
def test_a_contact_exactly_the_tolerance_away_is_matched(use_lines):
    """A boundary point is correct when the other boundary lies *within* the tolerance: a contact moved by
    exactly 3 px (crack midpoints and line samples are then exactly 3 px apart) scores F1 1 at 3 px."""
    true, pred = _split(25), _split(28)
    if use_lines:
        s = line_scores(contacts_from_mask(pred), contacts_from_mask(true), tolerance_px=3.0)
    else:
        s = boundary_scores(pred, true, tolerance_px=3.0)
    assert s["precision"] == s["recall"] == s["f1"] == 1.0
    assert s["mean_distance_px"] == pytest.approx(3.0)


def test_line_scores_of_a_partly_found_contact_by_hand():
    """Truth x = 10 for y in [0, 20], sampled every 0.5 px (41 samples); the prediction finds it for
    y in [0, 5] and [5, 10] (two lines) and nothing below. Every predicted sample lies on the truth; the true
    samples at y = 10.5 .. 20 are 0.5 .. 10 px from the prediction. The mean distance is the mean of the
    two directions' means."""
    true = [np.array([[10.0, 0.0], [10.0, 20.0]])]
    pred = [np.array([[10.0, 0.0], [10.0, 5.0]]), np.array([[10.0, 5.0], [10.0, 10.0]])]
    s = line_scores(pred, true, tolerance_px=3.0)
    missed = 0.5 * np.arange(1, 21)  # distances of the 20 true samples below y = 10
    assert s["precision"] == 1.0
    assert s["recall"] == pytest.approx((21 + np.sum(missed <= 3.0)) / 41)
    assert s["mean_distance_px"] == pytest.approx(0.5 * (0.0 + missed.sum() / 41))
    # The same from the other side: precision and recall swap, the distance does not change.
    r = line_scores(true, pred, tolerance_px=3.0)
    assert (r["precision"], r["recall"]) == pytest.approx((s["recall"], s["precision"]))
    assert r["mean_distance_px"] == pytest.approx(s["mean_distance_px"])


def _traceable(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Whether the four pixels around each point (the cell between their centres) all have data; pixels
    outside the image count as having data."""
    h, w = valid.shape
    ok = np.ones(len(x), bool)
    for r in (np.floor(y - 0.5), np.floor(y + 0.5)):
        for c in (np.floor(x - 0.5), np.floor(x + 0.5)):
            r_i, c_i = r.astype(int), c.astype(int)
            inside = (r_i >= 0) & (r_i < h) & (c_i >= 0) & (c_i < w)
            ok &= ~inside | valid[np.clip(r_i, 0, h - 1), np.clip(c_i, 0, w - 1)]
    return ok


def _assert_kept_exactly_where_traceable(
    lines: list[np.ndarray], pieces: list[np.ndarray], valid: np.ndarray, samples: int
) -> None:
    """Dense samples of each of ``lines`` lie on the kept ``pieces`` exactly where :func:`_traceable` says a
    contact can be traced (samples on a cell edge, where either answer is right, left out)."""
    kept = shapely.MultiLineString([shapely.LineString(p) for p in pieces])
    for line in lines:
        geom = shapely.LineString(line)
        pts = shapely.get_coordinates(
            shapely.line_interpolate_point(geom, np.linspace(0, geom.length, samples))
        )
        x, y = pts[:, 0], pts[:, 1]
        near_edge = (np.abs(x - 0.5 - np.round(x - 0.5)) < 1e-6) | (
            np.abs(y - 0.5 - np.round(y - 0.5)) < 1e-6
        )
        on_kept = shapely.distance(shapely.points(pts), kept) < 1e-9
        np.testing.assert_array_equal(on_kept[~near_edge], _traceable(x, y, valid)[~near_edge])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_clip_lines_keeps_exactly_the_traceable_parts_of_random_lines(seed):
    """Checked point by point: dense samples of random polylines in the image (each with a repeated vertex)
    over random no-data are covered by the kept pieces exactly where their cell has data at all four pixels,
    and every piece has a length."""
    rng = np.random.default_rng(seed)
    h, w = 20, 30
    valid = rng.random((h, w)) > 0.15
    lines = []
    for _ in range(6):
        pts = rng.uniform([0, 0], [w, h], size=(rng.integers(2, 6), 2))
        lines.append(np.insert(pts, 1, pts[1], axis=0))  # a repeated vertex: a segment of no length
    pieces = clip_lines(lines, valid)
    assert all(np.linalg.norm(np.diff(p, axis=0), axis=1).sum() > 0 for p in pieces)
    _assert_kept_exactly_where_traceable(lines, pieces, valid, samples=4000)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_line_with_a_non_finite_point_is_a_value_error_saying_so(bad):
    """A hand-built line with a NaN vertex failed deep inside with "cannot convert float NaN to integer"
    (line_scores) or an OverflowError, and clip_lines returned it with its NaN as a kept piece."""
    line = np.array([[1.0, 1.0], [5.0, bad]])
    true = np.array([[1.0, 1.0], [5.0, 1.0]])
    with pytest.raises(ValueError, match="finite"):
        line_scores([line], [true])
    with pytest.raises(ValueError, match="finite"):
        clip_lines([line], np.arange(8)[None, :].repeat(8, 0) < 4)


@pytest.mark.parametrize("tolerance_px", [-1.0, math.nan, math.inf])
def test_a_tolerance_that_is_not_a_distance_is_refused(tolerance_px):
    """A negative or NaN tolerance silently scored a perfect prediction 0 (no sample is within it)."""
    m = _split(20)
    with pytest.raises(ValueError, match="tolerance_px"):
        boundary_scores(m, m, tolerance_px=tolerance_px)
    with pytest.raises(ValueError, match="tolerance_px"):
        line_scores([np.array([[1.0, 1.0], [5.0, 1.0]])], [np.array([[1.0, 1.0], [5.0, 1.0]])], tolerance_px)


def test_line_scores_names_one_line_given_for_the_list_and_a_bad_step() -> None:
    """A single (K, 2) array was read as K one-point lines ("needs (K>=2, 2) ... got shape (2,)"), a single
    ContactLine as "not iterable", step_px NaN failed converting NaN to an int, "0.5" comparing a str."""
    (line,) = contacts_from_mask(_split(30))
    assert line_scores([line], [line.pixels])["f1"] == 1.0  # lines and arrays mixed, as documented
    assert line_scores(iter([line]), (x for x in [line]))["f1"] == 1.0
    for one in (line, line.pixels):
        with pytest.raises(TypeError, match=r"pred_lines must be a list of .*got one .*give \[it\]"):
            line_scores(one, [line])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"true_lines\[0\] must be a ContactLine or a \(K, 2\) array.*str"):
        line_scores([line], ["abc"])  # type: ignore[list-item]
    for bad in (float("nan"), "0.5", math.inf, 0):
        with pytest.raises(ValueError, match=r"step_px must be a finite number of pixels > 0"):
            line_scores([line], [line], step_px=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tolerance_px must be a finite distance .*got '3'"):
        boundary_scores(_split(30), _split(31), tolerance_px="3")  # type: ignore[arg-type]
