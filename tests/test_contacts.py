"""Contact extraction on analytic scenes: location, topology, orientation and confidence."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from marsunits.boundary.extract import ContactConfig, bridge_ignore_gaps, contacts_from_mask, extract_contacts


def _centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), corner origin."""
    yy, xx = np.mgrid[0:h, 0:w]
    return xx + 0.5, yy + 0.5


def _probs_from_signed(s: np.ndarray, width: float, other: np.ndarray | None = None) -> np.ndarray:
    """Soft two-unit scene: p0 = sigmoid(s / width) (unit 0 where s > 0), optional 'other' share."""
    p0 = 1.0 / (1.0 + np.exp(-s / width))
    o = np.zeros_like(s) if other is None else other
    return np.stack([p0 * (1 - o), (1 - p0) * (1 - o), o])


def _max_distance(lines, geom) -> float:
    pts = shapely.points(np.concatenate([ln.pixels for ln in lines]))
    return float(shapely.distance(pts, geom).max())


@pytest.mark.parametrize(
    ("normal", "offset"),
    [((1.0, 0.0), 30.3), ((0.0, 1.0), 17.0), ((0.6, 0.8), 40.25)],
    ids=["vertical", "horizontal", "oblique"],
)
@pytest.mark.parametrize("hard", [True, False], ids=["mask", "soft"])
def test_half_plane_found_at_the_right_place(normal, offset, hard):
    h, w = 48, 64
    x, y = _centres(h, w)
    s = offset - (normal[0] * x + normal[1] * y)  # > 0: unit 0
    if hard:
        lines = contacts_from_mask((s <= 0).astype(np.uint8))
    else:
        lines = extract_contacts(_probs_from_signed(s, 1.5))
    assert len(lines) == 1
    # the true line clipped to the image
    a, b = normal
    if b == 0:
        true = shapely.LineString([(offset / a, 0), (offset / a, h)])
    else:
        true = shapely.LineString([(-10, (offset + 10 * a) / b), (w + 10, (offset - (w + 10) * a) / b)])
    assert _max_distance(lines, true) <= 0.5
    assert lines[0].length_px > 0.8 * true.intersection(shapely.box(0, 0, w, h)).length
    assert 0.0 <= lines[0].confidence <= 1.0
    assert lines[0].vertex_confidence.shape == (len(lines[0].pixels),)


def test_circle_gives_closed_contour_of_right_radius():
    x, y = _centres(80, 90)
    r = np.hypot(x - 47.3, y - 38.6)
    lines = contacts_from_mask((r < 21.0).astype(np.uint8))
    assert len(lines) == 1
    pix = lines[0].pixels
    np.testing.assert_allclose(pix[0], pix[-1])  # closed
    rad = np.hypot(pix[:, 0] - 47.3, pix[:, 1] - 38.6)
    assert abs(rad.mean() - 21.0) < 0.3
    assert np.abs(rad - 21.0).max() < 0.75


def test_orientation_keeps_unit_one_on_the_right():
    # unit 0 left (x < 30), unit 1 right: walking along the line, unit 1 is on the screen-right side.
    m = np.zeros((40, 60), np.uint8)
    m[:, 30:] = 1
    (line,) = contacts_from_mask(m)
    p = line.pixels
    direction = p[-1] - p[0]
    right_on_screen = np.array([-direction[1], direction[0]])  # y points down
    probe = (p[0] + p[-1]) / 2 + 3 * right_on_screen / np.linalg.norm(right_on_screen)
    assert m[int(probe[1]), int(probe[0])] == 1


@pytest.mark.parametrize("klass", [0, 1])
def test_single_unit_has_no_contact(klass):
    assert contacts_from_mask(np.full((32, 32), klass, np.uint8)) == []


@pytest.mark.parametrize("unit", [0, 1])
def test_terrain_sky_edge_is_not_a_contact(unit):
    m = np.full((40, 50), unit, np.uint8)
    m[:15] = 2  # sky on top
    assert contacts_from_mask(m) == []
    # soft version: a blurred terrain/sky edge with the other unit slightly likely near it
    x, y = _centres(40, 50)
    sky = 1.0 / (1.0 + np.exp(-(15 - y) / 2.0))
    p_unit = (1 - sky) * 0.8
    probs = np.zeros((3, 40, 50))
    probs[unit], probs[1 - unit], probs[2] = p_unit, (1 - sky) * 0.2, sky
    assert extract_contacts(probs) == []


def test_contact_stops_where_other_dominates():
    m = np.zeros((60, 60), np.uint8)
    m[:, 30:] = 1
    m[:20] = 2
    (line,) = contacts_from_mask(m)
    assert line.pixels[:, 1].min() >= 20.0
    assert line.pixels[:, 1].max() == pytest.approx(59.5)


def test_flipped_image_gives_flipped_line():
    x, y = _centres(50, 70)
    s = 12 * np.sin(x / 11.0) + 25 - y
    probs = _probs_from_signed(s, 1.0)
    a = extract_contacts(probs)
    b = extract_contacts(probs[:, :, ::-1])
    assert len(a) == len(b) == 1
    flipped = b[0].pixels.copy()
    flipped[:, 0] = 70 - flipped[:, 0]
    la, lb = shapely.LineString(a[0].pixels), shapely.LineString(flipped)
    assert la.hausdorff_distance(lb) < 0.35  # simplification may pick different vertices
    assert a[0].confidence == pytest.approx(b[0].confidence, abs=0.02)


def test_sharp_transition_more_confident_than_blurred():
    x, y = _centres(40, 60)
    s = 30.2 - x
    sharp = extract_contacts(_probs_from_signed(s, 0.3))
    blurred = extract_contacts(_probs_from_signed(s, 4.0))
    assert sharp[0].confidence > blurred[0].confidence + 0.3
    assert sharp[0].confidence > 0.9
    # a linear transition 8 px wide is half as sharp as the default transition_width_px = 4 allows
    ramp = np.clip(0.5 + (30.2 - x) / 8.0, 0.0, 1.0)
    (line,) = extract_contacts(np.stack([ramp, 1 - ramp, np.zeros_like(ramp)]))
    assert line.confidence == pytest.approx(0.5, abs=0.02)
    (line,) = extract_contacts(
        np.stack([ramp, 1 - ramp, np.zeros_like(ramp)]), ContactConfig(transition_width_px=8.0)
    )
    assert line.confidence == pytest.approx(1.0, abs=0.02)
    # a hard label edge is fully confident
    assert contacts_from_mask((x > 30).astype(np.uint8))[0].confidence == pytest.approx(1.0)
    # dominance: the same sharp contact with 'other' at 0.4 everywhere is less confident
    weak = extract_contacts(_probs_from_signed(s, 0.3, other=np.full_like(s, 0.4)))
    assert weak[0].confidence == pytest.approx(0.6 * sharp[0].confidence, rel=0.05)


def test_invalid_region_splits_contact_and_border_pieces_dropped():
    m = np.zeros((60, 40), np.uint8)
    m[:, 20:] = 1
    m[25:35] = 255
    lines = contacts_from_mask(m, max_gap_px=0)
    assert len(lines) == 2
    for ln in lines:
        ys = ln.pixels[:, 1]
        assert ys.max() <= 25.0 or ys.min() >= 35.0
    # a contact hugging an invalid strip along the image border is dropped
    m = np.ones((40, 40), np.uint8)
    m[:, :1] = 0
    assert contacts_from_mask(m) == []


def test_narrow_unlabelled_gap_is_bridged_wide_one_is_not():
    m = np.zeros((40, 60), np.uint8)
    m[:, 33:] = 1
    m[:, 30:33] = 255  # a 3 px strip between the units, as annotators leave it
    (line,) = contacts_from_mask(m)
    np.testing.assert_allclose(line.pixels[:, 0], 31.5, atol=0.6)
    assert contacts_from_mask(m, max_gap_px=0) == []
    m[:, 20:33] = 255  # 13 px: unlabelled terrain, not a gap
    assert contacts_from_mask(m) == []


def test_min_length_drops_short_pieces():
    x, y = _centres(40, 40)
    m = (np.hypot(x - 20, y - 20) < 3.0).astype(np.uint8)  # perimeter about 18 px
    assert contacts_from_mask(m, ContactConfig(min_length_px=25.0)) == []
    assert len(contacts_from_mask(m, ContactConfig(min_length_px=10.0))) == 1


def _sinuous(x):
    return 45 + 14 * np.sin(x / 13.0) + 5 * np.sin(x / 4.7)


@pytest.mark.parametrize("shape", ["sinuous", "ellipse", "polygon"])
def test_true_mask_extraction_within_target(shape):
    """Target: extraction alone on true masks, mean distance to the true contact <= 0.75 px."""
    h, w = 96, 128
    x, y = _centres(h, w)
    if shape == "sinuous":
        mask = (y > _sinuous(x)).astype(np.uint8)
        xs = np.linspace(0, w, 2000)
        true = shapely.LineString(np.c_[xs, _sinuous(xs)])
    elif shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 2000)
        ring = np.c_[60 + 35 * np.cos(t), 48 + 20 * np.sin(t)]
        mask = shapely.contains_xy(shapely.Polygon(ring), x, y).astype(np.uint8)
        true = shapely.LineString(ring)
    else:
        poly = shapely.Polygon([(10.3, 12.7), (100.1, 20.2), (90.4, 80.9), (30.6, 70.2)])
        mask = shapely.contains_xy(poly, x, y).astype(np.uint8)
        true = poly.exterior
    mask[:8] = 2  # a strip of sky: its edge is not a contact
    true = true.difference(shapely.box(0, 0, w, 8.5))
    lines = contacts_from_mask(mask)
    assert lines
    samples = np.concatenate(
        [
            shapely.get_coordinates(
                shapely.line_interpolate_point(
                    shapely.LineString(ln.pixels), np.linspace(0, ln.length_px, 200)
                )
            )
            for ln in lines
        ]
    )
    d = shapely.distance(shapely.points(samples), true)
    assert d.mean() <= 0.75
    assert d.max() <= 1.5
    assert all(ln.confidence > 0.8 for ln in lines)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        extract_contacts(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="valid must have shape"):
        extract_contacts(np.zeros((3, 4, 4)), valid=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"found \[7\]"):
        contacts_from_mask(np.full((4, 4), 7, np.uint8))
    with pytest.raises(ValueError, match="min_length_px"):
        ContactConfig(min_length_px=-1)


def test_logits_or_0_255_probabilities_are_refused_not_read_as_no_contact():
    """A notebook user passes the network's logits (or probabilities stored as 0-255): read as
    probabilities, logits gave an empty contact list and 0-255 values a contact, both without a word."""
    x, _ = _centres(40, 40)
    probs = _probs_from_signed(20.0 - x, 1.0)
    assert len(extract_contacts(probs)) == 1  # the same map as probabilities has its contact
    for wrong, found in ((np.log(probs + 1e-6), "-13.8"), (probs * 255, "to 255")):
        with pytest.raises(
            ValueError, match=rf"probabilities in \[0, 1\], got values from .*{found}.*softmax"
        ):
            extract_contacts(wrong)
    # NaN marks invalid pixels and a softmax rounded to float16 may pass 1 a little: both still accepted.
    probs[:, :, :3] = np.nan
    assert len(extract_contacts(probs.astype(np.float16) * np.float16(1.0005))) == 1


def test_a_dict_config_or_a_non_number_field_is_refused_naming_it():
    probs = np.stack([np.ones((8, 8)), np.zeros((8, 8)), np.zeros((8, 8))])
    with pytest.raises(TypeError, match=r"ContactConfig or None.*dict.*ContactConfig\(\*\*config\)"):
        extract_contacts(probs, {"min_length_px": 5.0})  # type: ignore[arg-type]
    for value in ("5", float("nan"), float("inf"), None):
        with pytest.raises(ValueError, match=r"ContactConfig.min_length_px must be a finite number"):
            ContactConfig(min_length_px=value)  # type: ignore[arg-type]
    assert ContactConfig(min_length_px=np.float32(5)).min_length_px == 5  # a numpy number is a number


def test_bridge_ignore_gaps_takes_any_array_like_and_refuses_a_batch():
    import torch

    m = np.zeros((20, 20), np.uint8)
    m[:, 10:] = 1
    m[:, 9:11] = 255
    want = bridge_ignore_gaps(m)
    assert not (want == 255).any()
    for given in (torch.from_numpy(m), m.tolist()):
        np.testing.assert_array_equal(bridge_ignore_gaps(given), want)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"2-D \(H, W\) label array, got shape \(1, 20, 20\)"):
        bridge_ignore_gaps(m[None])


def test_nan_probabilities_are_invalid_pixels():
    x, y = _centres(60, 40)
    probs = _probs_from_signed(20.3 - x, 0.5)
    probs[:, 25:35] = np.nan  # e.g. tiles that were not predicted
    lines = extract_contacts(probs)
    assert len(lines) == 2
    assert all(np.isfinite(ln.pixels).all() and np.isfinite(ln.vertex_confidence).all() for ln in lines)


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (1, 1)])
def test_a_strip_one_pixel_thin_has_no_contact(shape):
    """A 1 x 3000 image holding both units was an error row ("Input array must be at least 2x2", from
    scikit-image), its mask lost with it."""
    rng = np.random.default_rng(0)
    probs = rng.random((3, *shape)).astype(np.float32)  # the two units in turn along the strip
    probs[2] *= 0.1
    probs /= probs.sum(axis=0)
    assert extract_contacts(probs) == []


@pytest.mark.parametrize("drop_border_px", [1.5, 20.0, 30.5])
def test_a_piece_within_drop_border_px_of_no_data_is_dropped_however_far_that_is(drop_border_px):
    """The distance to no-data was computed on a crop 12 px beyond the contact: with ``drop_border_px=20`` a
    contact 14 to 20 px from no-data was kept. A piece is dropped exactly when it lies within the distance."""
    probs = np.zeros((3, 100, 100))
    probs[0, :, :50], probs[1, :, 50:] = 1.0, 1.0  # the contact is the line x = 50
    cfg = ContactConfig(drop_border_px=drop_border_px)
    for start in (52, 62, 64, 66, 70, 72, 80, 81, 82):  # no-data from column `start`: that far from it
        q = probs.copy()
        q[:, :, start:] = np.nan
        lines = extract_contacts(q, cfg)
        assert len(lines) == (start - 50 > drop_border_px), (start, lines)


@pytest.mark.parametrize("centre", [40.0, 40.25, 40.5], ids=["pixel-edge", "quarter", "pixel-centre"])
def test_sharpness_of_linear_transitions_is_as_documented(centre):
    """The docstring said a transition completing within ``transition_width_px`` (4 px) scores 1; the 1 px
    smoothing flattens such a ramp, and it scores 0.88 to 0.94. What ContactConfig and the README now say:
    a hard edge and a ramp up to 3 px score 1, 4 px about 0.9, wider ones about 4 / width."""
    x, _ = _centres(40, 80)

    def confidence(width: float) -> float:
        n = np.clip((x - centre) / (width / 2.0), -1.0, 1.0)  # (p0 - p1) falls from 1 to -1 over `width` px
        (line,) = extract_contacts(np.stack([(1 - n) / 2, (1 + n) / 2, np.zeros_like(n)]))
        return line.confidence

    for width in (1e-3, 1.0, 2.0, 3.0):
        assert confidence(width) == pytest.approx(1.0)
    assert 0.85 < confidence(4.0) < 0.95
    for width in (8.0, 16.0):
        assert confidence(width) == pytest.approx(4.0 / width, abs=0.02)


def test_lines_come_longest_first():
    """extract_contacts documents its lines longest first (predict.py numbers contacts in that order)."""
    x, y = _centres(80, 120)
    m = (x > 100).astype(np.uint8)  # a straight contact 80 px long
    m[np.hypot(x - 25, y - 25) < 6] = 1  # an island about 38 px round
    m[np.hypot(x - 55, y - 50) < 14] = 1  # one about 88 px round
    lengths = [ln.length_px for ln in contacts_from_mask(m)]
    assert len(lengths) == 3
    assert lengths == sorted(lengths, reverse=True)


@pytest.mark.parametrize("unit", [0, 1])
def test_a_terrain_sky_edge_is_not_a_contact_at_any_dominance_threshold(unit):
    """With ``dominance_threshold = 0`` every pixel where either unit has any probability is in the pair's
    region, and none where neither has: the sky beside a unit (d = 0 there) must still draw no contact."""
    m = np.full((40, 50), unit, np.uint8)
    m[:15] = 2
    for sigma in (0.0, 1.0):
        assert contacts_from_mask(m, ContactConfig(dominance_threshold=0.0, smoothing_sigma_px=sigma)) == []


def test_a_no_data_row_one_pixel_thin_splits_the_contact():
    """No contact is drawn through an invalid pixel, however thin the invalid strip: smoothing spreads the
    neighbours' probability over a one-pixel row (p0 + p1 about 0.6 there), so only the validity keeps the
    iso-line from running across it."""
    m = np.zeros((40, 60), np.uint8)
    m[:, 30:] = 1
    m[20] = 255
    probs = np.stack([(m == k) for k in range(3)]).astype(float)
    for lines in (contacts_from_mask(m, max_gap_px=0), extract_contacts(probs, valid=m != 255)):
        assert len(lines) == 2
        for ln in lines:
            ys = ln.pixels[:, 1]
            assert ys.max() <= 20.0 or ys.min() >= 21.0  # cells between pixel centres on one side


@pytest.mark.parametrize("channel", [0, 1])
def test_nan_in_one_unit_channel_is_an_invalid_pixel_too(channel):
    x, _ = _centres(60, 40)
    probs = _probs_from_signed(20.3 - x, 0.5)
    everywhere, one = probs.copy(), probs.copy()
    everywhere[:, 25:35] = np.nan
    one[channel, 25:35] = np.nan
    want, got = extract_contacts(everywhere), extract_contacts(one)
    assert len(got) == len(want) == 2
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b.pixels, a.pixels)
        assert b.confidence == pytest.approx(a.confidence)


def test_vertex_confidence_is_the_dominance_at_each_vertex():
    """A hard edge (sharpness 1) whose units' share ``p0 + p1`` falls linearly down the image: without
    smoothing, each returned vertex's confidence is that share at the vertex itself (bilinear sampling of a
    linear field is exact), and the line's confidence its mean along the (uniformly traced) line."""
    h, w = 40, 60
    x, y = _centres(h, w)
    share = 1.0 - 0.4 * y / h  # 1 at the top edge, 0.6 at the bottom edge
    probs = np.stack([share * (x < 30), share * (x >= 30), 1.0 - share])
    (line,) = extract_contacts(probs, ContactConfig(smoothing_sigma_px=0.0))
    np.testing.assert_allclose(line.pixels[:, 0], 30.0)
    # The vertices from the first to the last pixel centre's row: the share there, to float32 rounding.
    want = np.interp(line.pixels[:, 1], y[:, 0], share[:, 0])
    np.testing.assert_allclose(line.vertex_confidence, want, atol=1e-5)
    top, bottom = line.pixels[:, 1].min(), line.pixels[:, 1].max()
    assert line.confidence == pytest.approx(1.0 - 0.4 * (top + bottom) / 2 / h, abs=1e-5)


def test_dominance_threshold_must_be_below_two():
    """p0 + p1 never exceeds 2, so a threshold of 2 would silently find no contact anywhere."""
    with pytest.raises(ValueError, match=r"dominance_threshold must be in \[0, 2\)"):
        ContactConfig(dominance_threshold=2.0)


def test_line_confidence_is_weighted_by_length_not_by_vertex_count():
    """Marching squares puts a vertex at every grid line the contact crosses: twice as many per pixel of
    height on a 45-degree stretch as on a vertical one. With the units' share falling down the image, the
    line's confidence is the mean of that share along the line's length (computed here by sampling the
    line densely), not the mean over vertices, which weighed the diagonal lower half double."""
    h, w = 40, 60
    x, y = _centres(h, w)
    share = 1.0 - 0.4 * y / h
    right = x >= np.where(y < 20, 30.0, 30.0 + (y - 20))  # vertical, then 45 degrees
    probs = np.stack([share * ~right, share * right, 1.0 - share])
    (line,) = extract_contacts(probs, ContactConfig(smoothing_sigma_px=0.0))
    geom = shapely.LineString(line.pixels)
    along = shapely.line_interpolate_point(geom, np.linspace(0.0, geom.length, 20001))
    want = np.mean(1.0 - 0.4 * shapely.get_coordinates(along)[:, 1] / h)
    assert line.confidence == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_an_exact_tie_row_lies_on_unit_zeros_side_as_in_the_mask(sigma):
    # p0 == p1 exactly on row 10: the mask's argmax makes it unit 0 (the first of equal classes), so the
    # contact must pass between row 10 and row 11, not through row 10's centres (y = 10.5) as before.
    from marsunits.inference.unit_mapper import argmax_uint8

    p = np.zeros((3, 24, 24), np.float32)
    p[0, :10] = 1.0
    p[1, 11:] = 1.0
    p[:2, 10] = 0.5
    assert (argmax_uint8(p)[10] == 0).all()
    (line,) = extract_contacts(p, ContactConfig(smoothing_sigma_px=sigma, simplify_tolerance_px=0.0))
    y = line.pixels[:, 1]
    assert (y > 10.5).all() and (y < 11.5).all()


def test_a_float64_near_tie_keeps_the_side_its_argmax_gives():
    # Row 10 is unit 1 by 2e-12 in float64 (the mask's argmax of these probabilities), a tie in float32: the
    # contact passes between rows 9 and 10, not between rows 10 and 11 as the float32 tie (unit 0) made it.
    p = np.zeros((3, 24, 24), np.float64)
    p[0, :10] = 1.0
    p[1, 11:] = 1.0
    p[0, 10], p[1, 10] = 0.5 - 1e-12, 0.5 + 1e-12
    assert (np.argmax(p, axis=0)[10] == 1).all()
    (line,) = extract_contacts(p, ContactConfig(smoothing_sigma_px=0.0, simplify_tolerance_px=0.0))
    y = line.pixels[:, 1]
    assert (y > 9.5).all() and (y < 10.5).all()


def test_a_tie_column_joining_two_unit_zero_blocks_gives_one_island_like_the_mask():
    # Two unit-0 blocks in unit 1, joined by a column of exact ties: the mask holds one unit-0 island, so the
    # contact is one closed line around it that holds every unit-0 pixel centre and no unit-1 centre. With
    # ties read as unit 1 the line ran through the tie pixels' centres (on the line: in neither unit).
    from marsunits.inference.unit_mapper import argmax_uint8

    p = np.zeros((3, 30, 30), np.float32)
    p[1] = 1.0
    p[:, 8:22, 6:22] = 0.0
    p[0, 8:22, 6:22] = 1.0
    p[:2, 8:22, 13] = 0.5
    mask = argmax_uint8(p)
    lines = extract_contacts(p, ContactConfig(smoothing_sigma_px=0.0, simplify_tolerance_px=0.0))
    assert len(lines) == 1
    pix = lines[0].pixels
    np.testing.assert_allclose(pix[0], pix[-1])
    x, y = _centres(30, 30)
    inside = shapely.contains_xy(shapely.Polygon(pix), x, y)
    np.testing.assert_array_equal(inside, mask == 0)
