"""CAHVORE cameras (moving entrance pupil): agreement with CAHVOR and with JPL's code, round trips, the
pupil's shift, the lens's domain, and a cahvore camera file through predict.py's ground mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .test_unit_mapper import ckpt, scenes  # noqa: F401  (fixtures)
except ImportError:
    from test_unit_mapper import ckpt, scenes  # type: ignore[no-redef]  # noqa: F401

from marsunits.boundary.camera import (
    CahvorCamera,
    CahvoreCamera,
    PinholeCamera,
    cahvor_from_pinhole,
    camera_from_dict,
    ned_to_flu,
)
from marsunits.boundary.camera.oriented import OrientedCamera

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A MER front Hazcam's CAHVORE model (rover frame, x forward, y right, z down; 1024 x 1024), as NASA's Vision
#: Workbench tests it (``src/vw/Camera/tests/TestCAHVOREModel.cxx``), with ``A`` and ``O`` made exactly unit
#: (this code normalises them; JPL's uses them as given, 1e-6 off unit here). Type 3, linearity 0.37.
MER_HAZCAM = {
    "C": [0.606185, -0.043367, -0.234891],
    "A": [0.7120130091490112, 0.037316000479491955, 0.7011740090097355],
    "H": [353.341, 474.873, 350.82],
    "V": [44.0102, 16.904, 683.916],
    "O": [0.7129531497037792, 0.038186008018184246, 0.7001711470198524],
    "R": [3e-06, -0.013032, -0.00754],
    "E": [0.000942, 0.00228, 0.001613],
    "T": 3,
    "P": 0.37,
}


def _hazcam(**change) -> CahvoreCamera:
    """The MER Hazcam in its z-down frame, ground 0.3 m below the frame's origin (C is 0.53 m above it)."""
    d = {**MER_HAZCAM, "model": "cahvore", "frame": "ned", "image_width": 1024, "image_height": 1024}
    d.update(ground_z_m=-0.3, **change)
    cam = camera_from_dict(d)
    assert isinstance(cam, CahvoreCamera)
    return cam


def _grid(cam, n: int = 17) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.linspace(0.0, cam.image_width, n), np.linspace(0.0, cam.image_height, n))
    return u.ravel(), v.ravel()


# ---------------------------------------------------------------------------------------------- vs CAHVOR
def test_perspective_cahvore_without_pupil_terms_projects_as_cahvor_does():
    """``E = 0``, ``T = 1``: every step is CAHVOR's (module docstring), both directions, ground included."""
    pin = PinholeCamera(128, 96, 70.0, 25.0, yaw_deg=20.0, height_m=1.8, k1=-0.12, k2=0.02, x_m=1.0)
    base = cahvor_from_pinhole(pin)
    tilted = base.O + np.array([0.01, -0.02, 0.015])  # an optical axis off A, as real lenses have
    vec = {k: getattr(base, k) for k in "CAHV"}
    cahvor = CahvorCamera(**vec, O=tilted / np.linalg.norm(tilted), R=[0.002, -0.12, 0.02], image_width=128,
                          image_height=96)  # fmt: skip
    cahvore = CahvoreCamera(**vec, O=cahvor.O, R=cahvor.R, E=[0.0, 0.0, 0.0], T=1, P=0.0, image_width=128,
                            image_height=96)  # fmt: skip
    u, v = _grid(cahvor)
    np.testing.assert_allclose(cahvore.pixel_to_ray(u, v), cahvor.pixel_to_ray(u, v), atol=1e-12)
    np.testing.assert_array_equal(cahvore.ray_origin(u, v), np.broadcast_to(cahvor.C, (len(u), 3)))
    ground = cahvor.pixel_to_ground(u, v)
    np.testing.assert_allclose(cahvore.pixel_to_ground(u, v), ground, atol=1e-9)
    seen = np.isfinite(ground).all(axis=1)
    assert seen.sum() > 100
    points = np.concatenate([ground[seen], ground[seen] + [0.0, 0.0, 1.2]])  # on and above the ground
    np.testing.assert_allclose(cahvore.world_to_pixel(points), cahvor.world_to_pixel(points), atol=1e-9)


# ---------------------------------------------------------------------------------------------- JPL's code
def test_rays_and_pixels_agree_with_jpls_cmod_cahvore():
    """Values of JPL's ``cmod_cahvore_2d_to_3d`` / ``_3d_to_2d`` (the C library of VICAR, run through the
    ``cycahvore`` 0.0.1a0 wheel) for the MER Hazcam, type 3: CAHV image coordinates (centre of the top-left
    pixel at 0), vectors in the model's z-down frame."""
    cam = _hazcam()
    jpl_rays = [  # (sample, line) -> (ray origin, unit direction)
        ((20.0, 1000.0), ([0.611674592818197, -0.0430729755813417, -0.229499825977155],
                          [-0.432407674570532, -0.711886654532294, 0.553390453541913])),
        ((511.5, 700.0), ([0.606213394152048, -0.0433654791997648, -0.234863114905424],
                          [0.372651378562505, 0.0243468630751446, 0.927651971546368])),
        ((1000.0, 40.0), ([0.610499857988095, -0.0431358947698749, -0.230653499866916],
                          [0.545206863731789, 0.719596864452753, -0.430034682798391])),
    ]  # fmt: skip
    for (x, y), (origin, direction) in jpl_rays:
        u, v = np.array([x + 0.5]), np.array([y + 0.5])
        np.testing.assert_allclose(ned_to_flu(cam.ray_origin(u, v)[0]), origin, atol=1e-12)
        np.testing.assert_allclose(ned_to_flu(cam.pixel_to_ray(u, v)[0]), direction, atol=1e-12)
    jpl_pixels = [
        ([1.5, 0.3, 1.2], [591.466769607242, 617.398415674872]),
        ([0.9, -0.8, 0.6], [161.192186330294, 688.835038988952]),
        ([3.0, 1.5, 1.0], [741.037276996837, 385.118765040989]),
    ]
    for point, (x, y) in jpl_pixels:
        np.testing.assert_allclose(cam.world_to_pixel(ned_to_flu(point)), [x + 0.5, y + 0.5], atol=1e-9)


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(("T", "P"), [(1, 0.0), (2, 0.0), (3, 0.37), (3, -0.3)])
def test_pixel_to_ground_to_pixel_round_trips(T, P):
    """Each ground point goes back to its pixel within 1e-6 px, the pupil's shift included: the iterative
    inverse finds the ray that starts at the entrance pupil of its own angle."""
    cam = _hazcam(T=T, P=P)
    u, v = _grid(cam, 33)
    ground = cam.pixel_to_ground(u, v)
    seen = np.isfinite(ground).all(axis=1)
    assert seen.sum() > 300  # the lower part of the image sees the ground
    np.testing.assert_allclose(ground[seen, 2], -0.3, atol=1e-12)
    back = cam.world_to_pixel(ground[seen])
    err = np.hypot(back[:, 0] - u[seen], back[:, 1] - v[seen])
    assert err.max() < 1e-6
    rays = cam.pixel_to_ray(u, v)
    far = cam.ray_origin(u, v) + 40.0 * rays  # and points off the ground, far out along every ray
    back = cam.world_to_pixel(far)
    assert np.hypot(back[:, 0] - u, back[:, 1] - v).max() < 1e-6


def test_the_rays_start_where_the_entrance_pupil_has_moved():
    """A pixel near the image edge (about 60 degrees off the axis) starts its ray millimetres along O from C,
    by ``s = (theta / sin(theta) - 1)(e0 + e1 theta^2 + e2 theta^4)``; its ground point is that shift carried
    along the same ray to the ground, away from the E = 0 camera's."""
    cam, flat = _hazcam(), _hazcam(E=[0.0, 0.0, 0.0])
    u, v = np.array([20.5, 512.0, 512.5]), np.array([1000.5, 1000.0, 512.5])
    d = cam.pixel_to_ray(u, v)
    np.testing.assert_array_equal(d, flat.pixel_to_ray(u, v))  # E moves the start, not the direction
    theta = np.arccos(np.clip(d @ cam.O, -1.0, 1.0))
    e0, e1, e2 = MER_HAZCAM["E"]
    s = (theta / np.sin(theta) - 1.0) * (e0 + e1 * theta**2 + e2 * theta**4)
    assert s[0] > 0.007 and theta[0] > math.radians(55)  # the edge pixel: 7 mm
    np.testing.assert_allclose(cam.ray_origin(u, v), cam.C + s[:, None] * cam.O, atol=1e-15)
    shift = s[:, None] * cam.O
    expected = flat.pixel_to_ground(u, v) + shift - (shift[:, 2] / d[:, 2])[:, None] * d
    np.testing.assert_allclose(cam.pixel_to_ground(u, v), expected, atol=1e-12)
    moved = np.linalg.norm(cam.pixel_to_ground(u, v) - flat.pixel_to_ground(u, v), axis=1)
    assert moved[0] > 0.005 and moved[0] > 10 * moved[2]  # the edge moves, the centre hardly


def test_the_view_footprint_casts_each_far_ray_from_where_it_starts():
    """The contact map's footprint draws a border ray that misses the ground (above the horizon) far out in
    its azimuth: from ``C``, as if every ray started there, though a CAHVORE ray starts at its entrance
    pupil, millimetres along ``O``. Each such point now lies on the horizontal trace of its own ray, from
    the ray's origin, as the projection casts it (to a micrometre; from ``C`` it was a millimetre off)."""
    from marsunits.boundary import contact_map

    cam = _hazcam()
    t = np.linspace(0.0, 1.0, 24, endpoint=False)
    w, h = cam.image_width, cam.image_height
    u = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    v = np.concatenate([np.full_like(t, h), (1 - t) * h, np.zeros_like(t), t * h])
    max_range_m = 30.0
    pts = contact_map._border_outline(cam, u, v, cam.center, max_range_m)
    assert pts is not None
    far = np.isnan(cam.pixel_to_ground(u, v, max_range_m=contact_map._FAR_RANGES * max_range_m)[:, 0])
    far &= np.isfinite(pts).all(axis=1)
    assert far.sum() >= 10 and (~far).sum() >= 10  # the top of the image sees sky, the rest the ground
    origin = cam.ray_origin(u[far], v[far])[:, :2]
    assert np.hypot(*(origin - cam.center[:2]).T).min() > 5e-4  # the pupils lie off C, by millimetres
    trace = cam.pixel_to_ray(u[far], v[far])[:, :2]
    trace /= np.linalg.norm(trace, axis=1, keepdims=True)
    off = cam.center[:2] + max_range_m * pts[far] - origin  # from the ray's origin to the drawn point
    across = off[:, 0] * trace[:, 1] - off[:, 1] * trace[:, 0]
    np.testing.assert_allclose(across, 0.0, atol=1e-6)
    assert (off * trace).sum(axis=1).min() > 0.99 * contact_map._FAR_RANGES * max_range_m  # out along it
    fp = contact_map.view_footprint(cam, max_range_m=max_range_m)
    assert shapely.Polygon(fp).is_valid and shapely.Polygon(fp).area > 1.0
    # an EXIF-turned image's camera casts from the same pupils (displayed pixel -> stored pixel)
    turned = OrientedCamera(cam, 6)
    shown = turned._a_inv @ (np.stack([u[far], v[far]]) - turned._b[:, None])
    np.testing.assert_array_equal(turned.ray_origin(*shown), cam.ray_origin(u[far], v[far]))
    turned_fp = shapely.Polygon(contact_map.view_footprint(turned, max_range_m))
    assert turned_fp.symmetric_difference(shapely.Polygon(fp)).area < 1e-6


# ---------------------------------------------------------------------------------------------- domain
def test_a_fisheye_sees_past_90_degrees_and_a_perspective_lens_does_not():
    """Type 2 images a point 100 degrees off O (fish-eye), round trip included; type 1 (perspective, chi =
    tan(theta)) cannot, and says NaN rather than a made-up pixel. Points at C and behind a perspective lens
    are NaN too."""
    fish, persp = _hazcam(T=2), _hazcam(T=1)
    o = fish.O
    side = np.cross(o, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    point = fish.C + 2.0 * (math.cos(math.radians(100)) * o + math.sin(math.radians(100)) * side)
    px = fish.world_to_pixel(point)
    assert np.isfinite(px).all()
    back = fish.ray_origin(px[0:1], px[1:2])[0] + fish.pixel_to_ray(px[0:1], px[1:2])[0] * 2.0
    direction = (back - fish.ray_origin(px[0:1], px[1:2])[0]) / 2.0
    to_point = point - fish.ray_origin(px[0:1], px[1:2])[0]
    assert np.linalg.norm(np.cross(direction, to_point / np.linalg.norm(to_point))) < 1e-9
    assert np.isnan(persp.world_to_pixel(point)).all()
    assert np.isnan(persp.world_to_pixel(np.stack([persp.C, persp.C - persp.O]))).all()
    assert persp.max_theta() == pytest.approx(math.pi / 2) and fish.max_theta() == pytest.approx(math.pi)


def test_a_pixel_whose_angle_has_no_ray_gets_none():
    """With a negative linearity ``chi = sin(L theta) / L`` is at most ``1 / |L|``: a pixel imaged farther
    out has no ray (NaN), and no ground point; JPL's code feeds asin a value past 1 there."""
    cam = _hazcam(T=3, P=-1.0)
    u, v = _grid(cam, 33)
    rays = cam.pixel_to_ray(u, v)
    none = ~np.isfinite(rays).all(axis=1)
    assert none.any() and not none.all()
    assert np.isnan(cam.pixel_to_ground(u[none], v[none])).all()
    assert np.isnan(cam.ray_origin(u[none], v[none])).all()


def test_predict_py_puts_contacts_on_the_ground_with_a_cahvore_camera_file(tmp_path, ckpt, scenes) -> None:
    """End to end: the synthetic scenes' pinhole cameras written as the CAHVORE camera files of the same
    lens (E = 0, T = 1: CAHVOR's projection) give predict.py's contact files the same metres, and
    ``map=true`` draws the contacts; with entrance-pupil terms the metres move (by the pupil's shift, a
    millimetre or so at these cameras' angles off the axis; the physics is checked by the tests above)."""
    import json
    import shutil

    from marsunits.boundary.camera.io import load_camera
    from marsunits.boundary.contact_io import read_contacts
    from marsunits.inference import run

    try:
        from .test_unit_mapper import make_cfg
    except ImportError:
        from test_unit_mapper import make_cfg  # type: ignore[no-redef]

    folders = {}
    for lens, e_terms in (("pinhole", None), ("cahvore", [0.0, 0.0, 0.0]), ("pupil", [0.02, 0.0, 0.0])):
        data = tmp_path / lens
        shutil.copytree(scenes / "images", data / "images")
        (data / "cameras").mkdir()
        for path in sorted((scenes / "cameras").glob("*.json")):
            camera = json.loads(path.read_text())
            if e_terms is not None:
                pinhole = load_camera(path)
                assert isinstance(pinhole, PinholeCamera)
                camera = {**cahvor_from_pinhole(pinhole).to_dict(), "model": "cahvore", "E": e_terms}
                camera.update(T=1, P=1.0, site="traverse")
            (data / "cameras" / path.name).write_text(json.dumps(camera))
        out = tmp_path / f"out_{lens}"
        assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true", "max_range_m=60")) == 0
        folders[lens] = out
    grounded, shifts = 0, []
    for contact_file in sorted(folders["pinhole"].glob("*.contact.geojson")):
        lines = {lens: read_contacts(folders[lens] / contact_file.name)[0] for lens in folders}
        assert len(lines["cahvore"]) == len(lines["pinhole"]) == len(lines["pupil"])
        for a, b, c in zip(lines["pinhole"], lines["cahvore"], lines["pupil"], strict=True):
            assert (a.ground_m is None) == (b.ground_m is None)
            if a.ground_m is not None and b.ground_m is not None:
                np.testing.assert_allclose(b.ground_m, a.ground_m, atol=2e-4)  # as stored: 0.1 mm
                grounded += 1
                if c.ground_m is not None and len(c.ground_m) == len(a.ground_m):
                    shifts.append(np.abs(np.asarray(c.ground_m) - np.asarray(a.ground_m)).max())
    assert grounded > 0 and shifts
    assert 1e-4 < max(shifts) < 0.05, shifts  # read from the file: the rays start at the moved pupil
    cahvore_map = json.loads((folders["cahvore"] / "contact_map.geojson").read_text())
    assert cahvore_map["features"] and len(cahvore_map["cameras"]) == 2
