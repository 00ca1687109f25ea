"""PinholeCamera: frames, projections and serialisation (the geometry every other module relies on)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marsunits.boundary.camera import PinholeCamera


def _cameras() -> list[PinholeCamera]:
    return [
        PinholeCamera(320, 240, hfov_deg=60, pitch_deg=20),
        PinholeCamera(
            257, 131, hfov_deg=25, pitch_deg=10, roll_deg=3, yaw_deg=40, height_m=1.8, x_m=5, y_m=-2
        ),
        PinholeCamera(640, 480, hfov_deg=90, pitch_deg=45, roll_deg=-2.5, k1=-0.08, k2=0.01, height_m=2.2),
    ]


@pytest.mark.parametrize("cam", _cameras())
def test_ground_roundtrip_within_a_hundredth_pixel(cam: PinholeCamera) -> None:
    rng = np.random.default_rng(0)
    u = rng.uniform(0, cam.image_width, 500)
    v = rng.uniform(cam.image_height * 0.6, cam.image_height, 500)
    ground = cam.pixel_to_ground(u, v)
    ok = np.isfinite(ground[:, 0])
    assert ok.mean() > 0.9
    np.testing.assert_allclose(ground[ok, 2], 0.0, atol=1e-9)
    back = cam.world_to_pixel(ground[ok])
    np.testing.assert_allclose(back, np.stack([u[ok], v[ok]], axis=1), atol=1e-2)


def test_horizon_row_matches_pitch_without_roll() -> None:
    cam = PinholeCamera(320, 240, hfov_deg=60, pitch_deg=20)
    expected = 120 - cam.focal_px * math.tan(math.radians(20))
    assert cam.horizon_v(160.0)[0] == pytest.approx(expected, abs=1e-6)
    # Just below the horizon the ray hits the ground; just above it does not.
    below = cam.pixel_to_ground(np.array([160.0]), np.array([expected + 0.5]))
    above = cam.pixel_to_ground(np.array([160.0]), np.array([expected - 0.5]))
    assert np.isfinite(below).all() and np.isnan(above).all()


def test_horizon_above_the_image_is_a_negative_row() -> None:
    cam = PinholeCamera(320, 240, hfov_deg=60, pitch_deg=60)
    expected = 120 - cam.focal_px * math.tan(math.radians(60))  # about -360: the image sees only ground
    assert cam.horizon_v(np.array([0.0, 160.0, 320.0])) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("roll", [5.0, -12.0])
def test_a_positive_roll_tilts_the_horizon_counter_clockwise(roll: float) -> None:
    """``roll_deg`` > 0 turns the camera clockwise seen from behind, so the horizon in the image turns
    counter-clockwise by the same angle about the image centre: its right end rises (rows grow downwards)."""
    cam = PinholeCamera(320, 240, hfov_deg=60, pitch_deg=10, roll_deg=roll)
    left, middle, right = cam.horizon_v(np.array([0.0, 160.0, 320.0]))
    assert (right - left) / 320.0 == pytest.approx(-math.tan(math.radians(roll)), abs=1e-9)
    level = 120 - cam.focal_px * math.tan(math.radians(10)) / math.cos(math.radians(roll))
    assert middle == pytest.approx(level, abs=1e-6)


def test_optical_axis_hits_ground_at_height_over_tan_pitch() -> None:
    cam = PinholeCamera(320, 240, hfov_deg=60, pitch_deg=30, height_m=2.0, yaw_deg=90, x_m=1.0)
    p = cam.pixel_to_ground(np.array([160.0]), np.array([120.0]))[0]
    dist = 2.0 / math.tan(math.radians(30))
    # yaw 90 deg looks along +y (left of the rover heading).
    np.testing.assert_allclose(p, [1.0, dist, 0.0], atol=1e-9)


def test_max_range_masks_far_ground() -> None:
    cam = PinholeCamera(100, 100, hfov_deg=60, pitch_deg=10)
    far = cam.pixel_to_ground(np.array([50.0]), np.array([50.0]), max_range_m=5.0)
    assert np.isnan(far).all()  # optical axis hits at 2/tan(10 deg) = 11.3 m


def test_dict_roundtrip_and_validation() -> None:
    cam = _cameras()[1]
    d = cam.to_dict()
    assert d["model"] == "pinhole" and np.asarray(d["K"]).shape == (3, 3)
    assert PinholeCamera.from_dict(d) == cam
    with pytest.raises(ValueError, match="missing required keys"):
        PinholeCamera.from_dict({"image_width": 10})
    bad = dict(d, K=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="is not the intrinsic matrix"):
        PinholeCamera.from_dict(bad)
    with pytest.raises(ValueError, match="positive"):
        PinholeCamera(0, 10, hfov_deg=60, pitch_deg=10)
    with pytest.raises(ValueError, match=r"height_m must be > 0"):  # on the ground: it sees no ground plane
        PinholeCamera(10, 10, hfov_deg=60, pitch_deg=10, height_m=0.0)


@pytest.mark.parametrize(
    ("k1", "k2"),
    [(-0.3, 0.05), (-0.3, 0.046), (-0.12, 0.0), (-0.08, 0.01), (0.04, 0.0), (0.1, -0.02), (0.39, -0.12)],
)
def test_undistort_inverts_distort_where_the_lens_has_an_inverse(k1: float, k2: float) -> None:
    """The fixed-point inverse did not converge for strong barrel distortion: bottom corners of a 90° lens
    with k1=-0.3, k2=0.05 reprojected 118 px from the pixel they came from. Newton's root is exact on the
    lens's monotonic branch and NaN where a pixel has no ray (the field folded back), never a wrong ray.
    Opposite signs (k1 > 0, k2 < 0, common in calibrations) made an unbracketed Newton step overshoot below 0
    and cycle: points well inside the fold came back NaN."""
    cam = PinholeCamera(640, 480, hfov_deg=90, pitch_deg=30, k1=k1, k2=k2)
    u, v = np.meshgrid(np.linspace(0, 640, 65), np.linspace(0, 480, 49))
    xd, yd = (u - 320) / cam.focal_px, (v - 240) / cam.focal_px
    xn, yn = cam.undistort(xd, yd)
    found = np.isfinite(xn)
    back_x, back_y = cam.distort(xn[found], yn[found])
    np.testing.assert_allclose(back_x, xd[found], atol=1e-9)
    np.testing.assert_allclose(back_y, yd[found], atol=1e-9)
    assert (np.hypot(xn[found], yn[found]) <= cam.fold_radius() + 1e-12).all()
    # NaN exactly where the distorted radius is beyond the largest the lens makes (on its monotonic branch).
    r = np.linspace(0.0, min(cam.fold_radius(), 10.0), 20001)
    largest = (r * (1 + k1 * r**2 + k2 * r**4)).max()
    rd = np.hypot(xd, yd)
    clear = np.abs(rd - largest) > 1e-6
    np.testing.assert_array_equal(found[clear], (rd <= largest)[clear])
    if k1 == -0.3:  # the reported camera: every pixel has a ray, and the bottom corner's comes back to it
        assert found.all()
        ground = cam.pixel_to_ground(np.array([0.5, 639.5]), np.array([479.5, 479.5]))
        pixels = cam.world_to_pixel(ground)
        np.testing.assert_allclose(pixels, [[0.5, 479.5], [639.5, 479.5]], atol=1e-6)


def test_undistort_converges_where_newton_steps_bounce() -> None:
    """Newton steps that bounce between the ends of the bracket never shrank it: a point at r = 3.4, well
    inside the fold (5.69), came back NaN after every iteration."""
    cam = PinholeCamera(100, 100, hfov_deg=90, pitch_deg=10, k1=0.06785, k2=-0.001451)
    r = np.array([0.5, 2.0, 3.40075, 5.0])
    rd, _ = cam.distort(r, np.zeros_like(r))
    back, _ = cam.undistort(rd, np.zeros_like(rd))
    np.testing.assert_allclose(back, r, rtol=1e-9)
    assert cam.fold_radius() > 5.0


def _ground_grid(cam: PinholeCamera, half_m: float, n: int) -> np.ndarray:
    g = np.linspace(-half_m, half_m, n)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    return np.c_[x + cam.x_m, y + cam.y_m, np.zeros_like(x)]


@pytest.mark.parametrize(
    ("k1", "k2"), [(-0.2, 0.0), (-0.25, 0.02), (0.1, -0.02)], ids=["barrel", "rising-again", "k1>0,k2<0"]
)
def test_a_ground_point_beyond_the_lens_fold_projects_to_no_pixel(k1: float, k2: float) -> None:
    """Past the fold the distorted radius shrinks again: with ``k1 = -0.2`` (fold 52 degrees off the axis)
    the ground point (3, 8) m, 66 degrees off the optical axis of this 60 degree camera, came out 14 px from
    the image centre. Every point that
    ``world_to_pixel`` places in the image now lies on that pixel's ray, and the points beyond the fold (whose
    distortion formula lands in the image) have no pixel; inside the fold the round trip stays exact."""
    cam = PinholeCamera(128, 96, hfov_deg=60, pitch_deg=20, k1=k1, k2=k2)
    fold = cam.fold_radius()
    pts = _ground_grid(cam, 30.0, 121)
    c = (pts - cam.center) @ cam.R.T
    front = c[:, 2] > 1e-9
    xn, yn = c[front, 0] / c[front, 2], c[front, 1] / c[front, 2]
    beyond = np.hypot(xn, yn) > fold
    xd, yd = cam.distort(xn, yn)
    u, v = xd * cam.focal_px + 64, yd * cam.focal_px + 48
    folded_in = beyond & (u >= 0) & (u <= 128) & (v >= 0) & (v <= 96)
    assert folded_in.sum() > 20  # the fold lies on the ground within range and folds points into the image

    px = cam.world_to_pixel(pts[front])
    assert np.isnan(px[beyond]).all()
    assert np.isfinite(px[~beyond]).all()  # the whole monotonic domain in front of the camera projects
    # Every pixel given is the pixel that sees the point: its ray points at it.
    rays = cam.pixel_to_ray(px[~beyond, 0], px[~beyond, 1])
    to_point = pts[front][~beyond] - cam.center
    to_point /= np.linalg.norm(to_point, axis=1, keepdims=True)
    np.testing.assert_allclose(rays, to_point, atol=1e-9)
    inside = (px[:, 0] >= 0) & (px[:, 0] <= 128) & (px[:, 1] >= 0) & (px[:, 1] <= 96)
    back = cam.pixel_to_ground(px[inside, 0], px[inside, 1])
    np.testing.assert_allclose(back, pts[front][inside], atol=1e-6)
    # A point exactly on the fold is seen, at the largest distorted radius the lens makes.
    on_fold = cam.world_to_pixel(cam.center + np.array([fold, 0.0, 1.0]) @ cam.R)
    rd = fold * (1 + k1 * fold**2 + k2 * fold**4)
    np.testing.assert_allclose(on_fold, [64 + rd * cam.focal_px, 48], atol=1e-9)


def test_the_fold_radius_is_where_the_distorted_radius_stops_growing() -> None:
    """Closed form ``sqrt(-1 / (3 k1))`` without ``k2``; with both terms the first zero of the derivative."""
    assert PinholeCamera(64, 64, 60, 10, k1=-0.2).fold_radius() == pytest.approx(math.sqrt(1 / 0.6))
    for k1, k2 in [(-0.25, 0.02), (0.1, -0.02), (-0.08, 0.01)]:
        cam = PinholeCamera(64, 64, 60, 10, k1=k1, k2=k2)
        r = np.linspace(0.0, 6.0, 600001)
        rd = r * (1 + k1 * r**2 + k2 * r**4)
        rising = np.diff(rd) > 0
        first_fall = r[np.argmin(rising)] if not rising.all() else math.inf
        assert cam.fold_radius() == pytest.approx(first_fall, abs=2e-5)


def _horizon_by_scan(cam: PinholeCamera, u: float, v: np.ndarray) -> list[float]:
    """The rows between consecutive samples ``v`` of column ``u`` where the ray's ``z`` changes sign, among
    the pixels that have a ray (midpoints; brute force, for :meth:`PinholeCamera.horizon_v` to match)."""
    dz = cam.pixel_to_ray(np.full_like(v, u), v)[:, 2]
    ok = np.isfinite(dz)
    vs, up = v[ok], dz[ok] >= 0.0
    flips = np.flatnonzero(up[1:] != up[:-1])
    return [0.5 * (vs[i] + vs[i + 1]) for i in flips]


@pytest.mark.parametrize(
    "cam",
    [
        PinholeCamera(128, 96, hfov_deg=100, pitch_deg=10, k1=-0.2),  # the fold lies inside the image
        PinholeCamera(128, 96, hfov_deg=100, pitch_deg=25, roll_deg=8, k1=-0.2),
        PinholeCamera(128, 96, hfov_deg=110, pitch_deg=-5, k1=-0.25, k2=0.02),  # rises again past the fold
        PinholeCamera(128, 96, hfov_deg=100, pitch_deg=60, k1=-0.2),  # the horizon lies beyond the fold
        PinholeCamera(128, 96, hfov_deg=90, pitch_deg=20, roll_deg=-6, k1=-0.08, k2=0.01),  # no fold
    ],
    ids=["fold-in-image", "fold-rolled", "fold-rising-again", "horizon-beyond-fold", "no-fold"],
)
def test_the_horizon_row_is_where_a_scan_of_the_column_finds_it_or_nan_beyond_the_fold(cam) -> None:
    """The bisection took a pixel beyond the lens's fold (no ray) for one below the horizon: a column
    crossing the fold answered -960 for a horizon at row 38.6. Each column's horizon is now the one a dense
    scan of its pixels with a ray finds, and NaN where the scan finds none (the column misses the pixels
    with a ray, or they all lie on one side of the horizon)."""
    step = 0.01
    v = np.arange(-3.0 * cam.image_height, 4.0 * cam.image_height, step)
    columns = np.linspace(0.0, cam.image_width, 9)
    got = cam.horizon_v(columns)
    found = 0
    for u, row in zip(columns, got, strict=True):
        scan = _horizon_by_scan(cam, float(u), v)
        assert len(scan) <= 1, (u, scan)
        if scan:
            assert row == pytest.approx(scan[0], abs=step), u
            found += 1
        else:
            assert np.isnan(row), (u, row)
    if cam.pitch_deg == 60:
        assert found == 0 and np.isfinite(cam.pixel_to_ray(np.array([64.0]), np.array([48.0]))).all()
    else:
        assert found >= 5  # most columns see the horizon; the test is not all NaN


def test_the_horizon_of_a_steep_camera_is_not_cut_at_ten_image_heights() -> None:
    """Bisection between fixed rows -10 and 11 image heights gave -2400 for a camera pitched 85 degrees
    down, whose horizon is 3048 rows above the image centre."""
    cam = PinholeCamera(320, 240, hfov_deg=60, pitch_deg=85)
    expected = 120 - cam.focal_px * math.tan(math.radians(85))
    assert expected < -10 * 240
    assert cam.horizon_v(np.array([0.0, 160.0, 320.0])) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("pitch_deg", float("nan"), "finite number"),
        ("height_m", float("nan"), "finite number"),
        ("yaw_deg", math.inf, "finite number"),
        ("image_width", "128", "finite number"),
        ("image_width", 128.5, "whole number of pixels"),
        ("site", 3, "a name"),
    ],
)
def test_a_camera_built_in_python_refuses_what_its_file_would(field: str, value: object, said: str) -> None:
    """Built in a notebook, a NaN pitch or height made every ground point NaN (no contact on the ground,
    without a word), "128" failed comparing a str with an int and 128.5 px was taken; from_dict refused
    them all."""
    args = {"image_width": 128, "image_height": 96, "hfov_deg": 60.0, "pitch_deg": 30.0, field: value}
    with pytest.raises(ValueError, match=rf"{field}.*{said}"):
        PinholeCamera(**args)  # type: ignore[arg-type]
    cam = PinholeCamera(np.int64(128), 96.0, np.float32(60.0), 30)  # type: ignore[arg-type]
    assert (cam.image_width, cam.image_height) == (128, 96) and type(cam.image_height) is int
