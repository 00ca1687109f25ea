"""CAHV / CAHVOR cameras, camera files, ground projection of contacts and the contact map."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from marsunits.boundary import contact_map
from marsunits.boundary.camera import (
    CahvCamera,
    CahvorCamera,
    CameraFileError,
    CameraModel,
    PinholeCamera,
    cahv_from_pinhole,
    cahvor_from_pinhole,
    camera_from_dict,
    find_camera,
    load_camera,
    ned_to_flu,
)
from marsunits.boundary.camera.cahvore import CahvoreCamera
from marsunits.boundary.camera.io import find_camera_file
from marsunits.boundary.camera.oriented import OrientedCamera
from marsunits.boundary.contact_io import (
    ContactLine,
    as_stored,
    count_contacts,
    number_contacts,
    read_contacts,
    write_contacts,
)
from marsunits.boundary.contact_map import axis_labels, build_contact_map, camera_stations, view_footprint
from marsunits.boundary.projection import add_ground

POSES = [
    {"pitch_deg": 20.0},
    {"pitch_deg": 35.0, "roll_deg": 4.0, "yaw_deg": 120.0, "height_m": 1.9, "x_m": 3.0, "y_m": -2.0},
    {"pitch_deg": 8.0, "roll_deg": -7.0, "yaw_deg": -40.0, "height_m": 1.2},
]


def _pinhole(**kw) -> PinholeCamera:
    return PinholeCamera(image_width=320, image_height=240, hfov_deg=60.0, **kw)


def _pixels(cam, n=200, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, cam.image_width, n), rng.uniform(0, cam.image_height, n)


def _cahvor(**kw) -> CahvorCamera:
    """A CAHVOR with its optical axis O tilted away from A and realistic radial terms."""
    base = cahv_from_pinhole(_pinhole(pitch_deg=25.0, roll_deg=2.0, yaw_deg=15.0, **kw))
    O = base.A + np.array([0.01, -0.02, 0.015])
    O /= np.linalg.norm(O)
    return CahvorCamera(
        base.C, base.A, base.H, base.V, O, [0.001, -0.08, 0.02], base.image_width, base.image_height, "s1"
    )


@pytest.mark.parametrize("pose", POSES)
def test_cahv_equivalent_to_pinhole(pose):
    pin = _pinhole(**pose)
    cahv = cahv_from_pinhole(pin)
    u, v = _pixels(pin)
    np.testing.assert_allclose(cahv.pixel_to_ray(u, v), pin.pixel_to_ray(u, v), atol=1e-9)
    g_pin, g_cahv = pin.pixel_to_ground(u, v, 50.0), cahv.pixel_to_ground(u, v, 50.0)
    np.testing.assert_array_equal(np.isnan(g_pin), np.isnan(g_cahv))
    np.testing.assert_allclose(g_cahv, g_pin, atol=1e-6, equal_nan=True)
    pts = g_pin[np.isfinite(g_pin).all(axis=1)]
    assert len(pts) > 20
    np.testing.assert_allclose(cahv.world_to_pixel(pts), pin.world_to_pixel(pts), atol=1e-6)


def test_cahvor_equivalent_to_distorted_pinhole():
    pin = _pinhole(pitch_deg=22.0, roll_deg=3.0, k1=-0.12, k2=0.03)
    cam = cahvor_from_pinhole(pin)
    u, v = _pixels(pin)
    pts = pin.pixel_to_ground(u, v, 40.0)
    pts = pts[np.isfinite(pts).all(axis=1)]
    np.testing.assert_allclose(cam.world_to_pixel(pts), pin.world_to_pixel(pts), atol=1e-6)
    with pytest.raises(ValueError, match="cahvor_from_pinhole"):
        cahv_from_pinhole(pin)


def test_cahv_pixel_origin_is_the_pixel_centre_in_pds():
    # A point on the axis A projects to CAHV (hc, vc) = (H.A, V.A), i.e. project pixel (hc + 0.5, vc + 0.5).
    A = np.array([1.0, 0.0, 0.0])
    cam = CahvCamera([0, 0, 1], A, [99.5, -200.0, 0.0], [79.5, 0.0, -200.0], 200, 160)
    np.testing.assert_allclose(cam.world_to_pixel(np.array([5.0, 0.0, 1.0])), [100.0, 80.0])
    np.testing.assert_allclose(cam.pixel_to_ray(np.array(100.0), np.array(80.0)), A, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: cahv_from_pinhole(_pinhole(**POSES[1])), _cahvor])
def test_ground_round_trip(make):
    cam = make()
    u, v = _pixels(cam, 300)
    ground = cam.pixel_to_ground(u, v, 30.0)
    ok = np.isfinite(ground).all(axis=1)
    assert ok.sum() > 50
    np.testing.assert_allclose(ground[ok, 2], cam.ground_z_m, atol=1e-9)
    back = cam.world_to_pixel(ground[ok])
    np.testing.assert_allclose(back, np.c_[u, v][ok], atol=1e-6)
    # world -> pixel -> ground (metres) on points known to be in view
    uv = cam.world_to_pixel(ground[ok])
    again = cam.pixel_to_ground(uv[:, 0], uv[:, 1])
    np.testing.assert_allclose(again, ground[ok], atol=1e-6)


def test_cahvor_pixel_ray_pixel_round_trip():
    cam = _cahvor()
    u, v = _pixels(cam, 500, seed=3)
    rays = cam.pixel_to_ray(u, v)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0)
    for depth in (1.0, 17.0):
        np.testing.assert_allclose(cam.world_to_pixel(cam.C + depth * rays), np.c_[u, v], atol=1e-6)
    # the distortion is not negligible: the linear CAHV ray differs
    lin = CahvCamera.pixel_to_ray(cam, u, v)
    assert np.degrees(np.arccos(np.clip((lin * rays).sum(1), -1, 1))).max() > 0.5


def test_ground_is_nan_above_horizon_and_beyond_range():
    cam = cahv_from_pinhole(_pinhole(pitch_deg=10.0))
    u, v = np.array([160.0, 160.0, 160.0]), np.array([1.0, 239.0, 130.0])
    g = cam.pixel_to_ground(u, v, max_range_m=8.0)
    assert np.isnan(g[0]).all()  # above the horizon
    assert np.isfinite(g[1]).all() and math.hypot(*g[1, :2]) <= 8.0
    assert np.isnan(g[2]).all()  # about 9.4 m away: beyond range
    far = cam.pixel_to_ground(u, v)
    assert np.isnan(far[0]).all() and 8.0 < far[2, 0] < 11.0
    assert np.isnan(cam.world_to_pixel(np.array([-5.0, 0.0, 0.0]))).all()  # behind


def test_protocol_and_dict_round_trip(tmp_path):
    cams = [_pinhole(**POSES[1], site="s7"), cahv_from_pinhole(_pinhole(**POSES[2])), _cahvor()]
    u, v = _pixels(cams[0], 50)
    for i, cam in enumerate(cams):
        assert isinstance(cam, CameraModel)
        path = tmp_path / f"cam{i}.json"
        path.write_text(json.dumps(cam.to_dict()))
        loaded = load_camera(path)
        assert type(loaded) is type(cam)
        assert getattr(loaded, "site", None) == getattr(cam, "site", None)
        np.testing.assert_allclose(loaded.pixel_to_ray(u, v), cam.pixel_to_ray(u, v), atol=1e-12)
    assert type(CahvorCamera.from_dict(cams[2].to_dict())) is CahvorCamera


def test_pds_ned_frame_is_converted(tmp_path):
    flu = _cahvor()
    d = flu.to_dict()
    for k in ("C", "A", "H", "V", "O"):
        d[k] = ned_to_flu(np.array(d[k])).tolist()  # the same vectors as a PDS label would give them
    d["frame"] = "pds"
    (tmp_path / "ned.json").write_text(json.dumps(d))
    cam = load_camera(tmp_path / "ned.json")
    u, v = _pixels(flu, 50)
    np.testing.assert_allclose(cam.pixel_to_ground(u, v), flu.pixel_to_ground(u, v), atol=1e-9)
    assert cam.center[2] > 0  # above the ground in z-up


def test_a_map_of_pds_ned_cameras_names_north_and_west_on_its_axes(tmp_path, monkeypatch):
    """x is north and y west for cameras read from NED files: the map said "forward" and "left" there."""
    flu = _cahvor()
    d = flu.to_dict()
    for k in ("C", "A", "H", "V", "O"):
        d[k] = ned_to_flu(np.array(d[k])).tolist()
    d["frame"] = "ned"
    (tmp_path / "ned.json").write_text(json.dumps(d))
    ned = load_camera(tmp_path / "ned.json")
    assert ned.source_frame == "ned" and OrientedCamera(ned, 6).source_frame == "ned"
    assert camera_from_dict(flu.to_dict()).source_frame == "flu"
    drawn: list[tuple[str, str]] = []
    monkeypatch.setattr(contact_map, "axis_labels", lambda e: drawn.append(axis_labels(e)) or drawn[-1])
    build_contact_map([("a", [], ned), ("b", [], OrientedCamera(ned, 6))], tmp_path / "map")
    assert drawn == [("y (m, + west)", "x (m, + north)")]
    assert axis_labels([{"source_frame": "ned"}] * 2) == ("y (m, + west)", "x (m, + north)")
    # A map that mixes the two, or has cameras that do not say, keeps the FLU names.
    assert axis_labels([{"source_frame": "ned"}, {"source_frame": "flu"}]) == (
        "y (m, + left)",
        "x (m, + forward)",
    )
    assert axis_labels([{}]) == ("y (m, + left)", "x (m, + forward)")


def test_the_contact_map_geojson_states_the_frame_of_its_own_cameras(tmp_path):
    """The GeoJSON, what a GIS user reads, said "x forward (north for PDS NED cameras), y left" of every map:
    of a map of PDS (NED) cameras, whose y is west, it said "left", and of a map of pinhole cameras it spoke
    of north. It now states its cameras' frame as the PNG's axes do (a site of both kinds of camera is two
    maps: test_a_site_name_shared_by_a_pds_camera_and_a_pinhole_gives_two_maps_and_a_warning)."""
    flu = _cahvor()
    d = flu.to_dict()
    for k in ("C", "A", "H", "V", "O"):
        d[k] = ned_to_flu(np.array(d[k])).tolist()
    ned = camera_from_dict({**d, "frame": "ned"})
    for cameras, said in (
        ([ned, OrientedCamera(ned, 6)], "site frame: x north, y west, z up"),
        ([flu], "site frame: x forward (a pinhole camera's yaw 0), y left, z up"),
    ):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        (path,) = [
            p
            for p in build_contact_map([(f"i{i}", [], c) for i, c in enumerate(cameras)], out)
            if p.suffix == ".geojson"
        ]
        frame = json.loads(path.read_text())["frame"]
        assert said in frame, frame
        if said.startswith("site frame: x forward"):
            assert "north" not in frame and "west" not in frame, frame


def test_a_site_name_shared_by_a_pds_camera_and_a_pinhole_gives_two_maps_and_a_warning(tmp_path, caplog):
    """A pinhole camera file whose ``site`` is the name of a PDS site (``SITE_62``) was drawn on that site's
    map without a word, though its ``x_m``, ``y_m`` and ``yaw_deg`` are in the user's own frame (x forward,
    y left) and the PDS cameras' in the site frame (x north, y west): its contacts landed turned and shifted
    among theirs. The two frames are drawn as two maps, and a warning names both camera files and why."""
    flu = _cahvor()
    d = flu.to_dict()
    for k in ("C", "A", "H", "V", "O"):
        d[k] = ned_to_flu(np.array(d[k])).tolist()
    pds_file = tmp_path / "in" / "NLB_0001.camera.json"
    pin_file = tmp_path / "in" / "mine.camera.json"
    pds_file.parent.mkdir()
    pds_file.write_text(json.dumps({**d, "frame": "pds", "site": "SITE_62", "pds_label": "NLB_0001.LBL"}))
    pin_file.write_text(json.dumps({**_pinhole(pitch_deg=20.0, site="SITE_62").to_dict()}))
    pds, pin = load_camera(pds_file), load_camera(pin_file)
    items = [("NLB_0001.png", [_row_line(pds, 200.0)], pds), ("mine.png", [_row_line(pin, 180.0)], pin)]
    with caplog.at_level("WARNING", logger="marsunits.boundary.contact_map"):
        paths = build_contact_map(items, tmp_path / "map")
    maps = {p.name: json.loads(p.read_text()) for p in paths if p.suffix == ".geojson"}
    assert sorted(maps) == ["contact_map_SITE_62_own_frame.geojson", "contact_map_SITE_62_pds_frame.geojson"]
    pds_map, own_map = (
        maps["contact_map_SITE_62_pds_frame.geojson"],
        maps["contact_map_SITE_62_own_frame.geojson"],
    )
    assert [c["image"] for c in pds_map["cameras"]] == ["NLB_0001.png"]
    assert {f["properties"]["image"] for f in pds_map["features"]} == {"NLB_0001.png"}
    assert [c["image"] for c in own_map["cameras"]] == ["mine.png"]
    assert "x north, y west" in pds_map["frame"] and "x forward" in own_map["frame"]
    assert pds_map["site"] == own_map["site"] == "SITE_62"  # the name the files gave, in both
    (said,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "SITE_62" in said and "NLB_0001.png" in said and "mine.png" in said, said
    assert "contact_map_SITE_62_pds_frame" in said and "contact_map_SITE_62_own_frame" in said, said
    assert "'site'" in said, said  # the fix: another site name in the file not in the PDS frame
    # Given where each camera was read from, the warning names the camera files.
    caplog.clear()
    with caplog.at_level("WARNING", logger="marsunits.boundary.contact_map"):
        build_contact_map(
            items, tmp_path / "map2", camera_files={"NLB_0001.png": pds_file, "mine.png": pin_file}
        )
    (said,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(pds_file) in said and str(pin_file) in said, said
    # Cameras of one frame under one site name stay one map, without a word.
    caplog.clear()
    with caplog.at_level("WARNING", logger="marsunits.boundary.contact_map"):
        paths = build_contact_map([items[0], ("b.png", [], OrientedCamera(pds, 6))], tmp_path / "map3")
    assert [p.name for p in paths] == ["contact_map.geojson", "contact_map.png"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_contact_map_geojson_writes_no_negative_zero(tmp_path):
    """A camera a hair west of the site's origin (x_m -1e-9, as a pose read from a file can be) was written
    ``"center_m": [-0.0, ...]`` in the contact map's GeoJSON, a sign a GIS user reads as a place: every
    coordinate is written rounded to 0.1 mm, with no negative zero."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0, x_m=-1e-9, y_m=-1e-9)
    (path,) = [p for p in build_contact_map([("a.png", [], pin)], tmp_path) if p.suffix == ".geojson"]
    text = path.read_text()
    assert "-0.0," not in text and "-0.0]" not in text, text[:400]
    (camera,) = json.loads(text)["cameras"]
    assert camera["center_m"][:2] == [0.0, 0.0] and camera["center_m"][2] == 2.0, camera


@pytest.mark.parametrize("oriented", [False, True])
def test_a_pds_ned_camera_written_with_to_dict_reads_back_in_its_frame(tmp_path, oriented):
    """to_dict wrote every CAHV(OR) as "frame": "flu", so a NED camera read back said FLU and its map's axes
    forward/left instead of north/west; the dict now holds the file's frame and vectors."""
    flu = _cahvor()
    d = flu.to_dict()
    for k in ("C", "A", "H", "V", "O"):
        d[k] = ned_to_flu(np.array(d[k])).tolist()
    d["frame"] = "ned"
    ned = camera_from_dict(d)
    cam = OrientedCamera(ned, 6) if oriented else ned
    again = camera_from_dict(json.loads(json.dumps(cam.to_dict())))
    assert again.source_frame == "ned" and cam.to_dict()["frame"] == "ned"
    for k in ("C", "A", "H", "V", "O"):  # as the PDS file gave them
        np.testing.assert_allclose(cam.to_dict()[k], d[k], atol=1e-12)
    u, v = _pixels(flu, 50)
    np.testing.assert_allclose(again.pixel_to_ground(u, v), ned.pixel_to_ground(u, v), atol=1e-9)
    assert camera_from_dict(flu.to_dict()).source_frame == "flu"
    assert axis_labels([{"source_frame": again.source_frame}]) == ("y (m, + west)", "x (m, + north)")


def test_load_camera_errors_name_file_and_keys(tmp_path):
    with pytest.raises(CameraFileError, match="nope.json"):
        load_camera(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CameraFileError, match="bad.json.*not valid JSON"):
        load_camera(bad)
    # A byte-order mark (Notepad's UTF-8) made the image an error row; other encodings name the file.
    good = _pinhole(pitch_deg=20.0)
    bad.write_bytes(b"\xef\xbb\xbf" + json.dumps(good.to_dict()).encode())
    assert load_camera(bad).to_dict() == good.to_dict()
    bad.write_bytes(json.dumps(good.to_dict()).encode("utf-16"))
    with pytest.raises(CameraFileError, match=r"cannot read camera file .*bad\.json.*expected UTF-8 JSON"):
        load_camera(bad)
    bad.write_text(json.dumps({"model": "fisheye"}))
    with pytest.raises(
        CameraFileError, match=r"'model' must be one of \['cahv', 'cahvor', 'cahvore', 'pinhole'\]"
    ):
        load_camera(bad)
    bad.write_text(json.dumps({"model": "cahvor", "C": [0, 0, 1], "A": [1, 0, 0]}))
    with pytest.raises(CameraFileError, match=r"bad.json.*missing \['H', 'V', 'O', 'R', 'image_width'"):
        load_camera(bad)
    d = cahv_from_pinhole(_pinhole(pitch_deg=10.0)).to_dict()
    d["A"] = [2.0, 0.0, 0.0]
    bad.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match="unit vector"):
        load_camera(bad)
    d["A"], d["frame"] = [1.0, 0.0, 0.0], "enu"
    bad.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match="'frame' must be one of"):
        load_camera(bad)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pitch_deg", "twenty", r"'pitch_deg' must be a finite JSON number, got 'twenty'"),
        ("height_m", True, r"'height_m' must be a finite JSON number"),
        ("image_width", 320.5, r"'image_width' must be a whole number of pixels"),
        ("site", 7, r"'site' must be a name"),
    ],
)
def test_pinhole_values_of_the_wrong_type_are_refused_on_reading(tmp_path, key, value, message):
    """A string where a number belongs used to load and then fail deep inside the ground projection."""
    d = _pinhole(pitch_deg=20.0).to_dict()
    d.pop("K")
    d[key] = value
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match=f"c.camera.json.*{message}"):
        load_camera(path)


def test_a_pinhole_K_is_checked_to_a_tolerance_and_its_refusal_gives_the_expected_matrix(tmp_path):
    """An OpenCV-style K (pixel centres at whole numbers, focal length with two decimals) for the very camera
    was refused with "disagrees ...; fix one of them", which named neither the matrix expected nor that an
    off-centre principal point is a cahv model."""
    d = _pinhole(pitch_deg=10.0).to_dict()
    w, h, f = d["image_width"], d["image_height"], d["K"][0][0]
    path = tmp_path / "c.camera.json"
    opencv = [[round(f, 2), 0, (w - 1) / 2], [0, round(f, 2), (h - 1) / 2], [0, 0, 1]]
    path.write_text(json.dumps({**d, "K": opencv}))
    assert load_camera(path).K[0, 0] == pytest.approx(f)
    off_centre = [[f, 0, w / 2 + 12], [0, f, h / 2], [0, 0, 1]]
    path.write_text(json.dumps({**d, "K": off_centre}))
    with pytest.raises(CameraFileError) as refused:
        load_camera(path)
    said = str(refused.value)
    assert f"[[{f:.6g}, 0, {w / 2:g}], [0, {f:.6g}, {h / 2:g}], [0, 0, 1]]" in said and "cahv model" in said
    for bad in (
        [[f * 1.01, 0, w / 2], [0, f, h / 2], [0, 0, 1]],
        [[f, 0, w / 2 + 1], [0, f, h / 2], [0, 0, 1]],  # off centre by more than half a pixel
        [[f, 0, w / 2], [0, f, h / 2 - 1], [0, 0, 1]],
        [[f, 0], [0, f]],
        "K",
    ):
        path.write_text(json.dumps({**d, "K": bad}))
        with pytest.raises(CameraFileError, match="is not the intrinsic matrix of this pinhole model"):
            load_camera(path)


@pytest.mark.parametrize(
    ("typo", "meant"), [("heigth_m", "height_m"), ("roll", "roll_deg"), ("Ground_Z_m", "ground_z_m")]
)
def test_misspelt_camera_keys_are_refused_and_unrelated_extra_keys_kept(tmp_path, typo, meant):
    """A misspelt optional key would leave its default (2 m height, no roll) in place without a word."""
    cam = _pinhole(pitch_deg=20.0) if meant != "ground_z_m" else cahv_from_pinhole(_pinhole(pitch_deg=20.0))
    d = cam.to_dict()
    d.pop(meant, None)
    d[typo] = 1.5
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match=f"c.camera.json: unknown key '{typo}'.*did you mean '{meant}'"):
        load_camera(path)
    # Beside the real key, the misspelt one was ignored without a word ("pitch": 50 next to "pitch_deg").
    d[meant] = 1.0
    path.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match=f"keys '{typo}' and '{meant}' both given.*remove one"):
        load_camera(path)
    d.pop(meant)
    d.pop(typo)
    d.update(instrument="NAVCAM_LEFT", sclk=712345678.0, name="sol 100")
    path.write_text(json.dumps(d))
    assert load_camera(path).to_dict() == cam.to_dict()


def test_a_measurement_under_a_name_not_read_is_refused_where_its_key_would_take_the_default(tmp_path):
    """A geologist's ``"easting_m"``/``"northing_m"`` or ``"camera_height_m"``, ``"bearing_deg"`` in a pinhole
    file, or ``"ground_height_m"`` in a CAHV one, looked like no key of the model, so they were ignored and
    the camera stood at the site's origin, 2 m high, facing x, over ground at z = 0: every contact in the
    wrong place without a word. A key with a unit (``_m``, ``_deg``) that is not read, where a key of that
    unit is left at its default, is refused naming those keys; beside them all it is metadata, and keys
    without a unit (``instrument``, ``sclk``) stay allowed."""
    pinhole = {"model": "pinhole", "image_width": 64, "image_height": 48, "hfov_deg": 60, "pitch_deg": 20}
    path = tmp_path / "c.camera.json"
    for extra, said in (
        ({"easting_m": 12.5, "northing_m": 3.0}, r"'easting_m' is not read by a 'pinhole' camera.*x_m, y_m"),
        ({"camera_height_m": 1.1}, r"'camera_height_m' is not read .*height_m .*2 m"),
        ({"bearing_deg": 120.0}, r"'bearing_deg' is not read .*yaw_deg"),
    ):
        path.write_text(json.dumps({**pinhole, **extra}))
        with pytest.raises(CameraFileError, match=said):
            load_camera(path)
    full = {**pinhole, "height_m": 1.1, "x_m": 12.5, "y_m": 3.0, "yaw_deg": 30.0, "roll_deg": 0.0}
    path.write_text(
        json.dumps({**full, "easting_m": 1.0, "bearing_deg": 2.0, "instrument": "MCZ", "sclk": 1.0})
    )
    assert load_camera(path).to_dict() == load_camera_dict(full)
    cahv = cahv_from_pinhole(_pinhole(pitch_deg=20.0)).to_dict()
    cahv.pop("ground_z_m")
    path.write_text(json.dumps({**cahv, "ground_height_m": -0.3}))
    with pytest.raises(
        CameraFileError, match=r"'ground_height_m' is not read by a 'cahv' camera.*ground_z_m"
    ):
        load_camera(path)
    path.write_text(json.dumps({**cahv, "ground_z_m": -0.3, "ground_height_m": -0.3, "mast_az_deg": 10}))
    load_camera(path)


def load_camera_dict(d):
    """The ``to_dict`` of the camera a file of ``d`` holds."""
    from marsunits.boundary.camera.io import camera_from_dict

    return camera_from_dict(d).to_dict()


def test_find_camera_sidecar_and_dataset_layout(tmp_path):
    cam = _pinhole(pitch_deg=15.0)
    (tmp_path / "images").mkdir()
    img = tmp_path / "images" / "scene_001.png"
    assert find_camera(img) is None
    (tmp_path / "cameras").mkdir()
    (tmp_path / "cameras" / "scene_001.json").write_text(json.dumps(cam.to_dict()))
    assert find_camera(img) == cam
    side = cahv_from_pinhole(cam)
    (tmp_path / "images" / "scene_001.camera.json").write_text(json.dumps(side.to_dict()))
    assert isinstance(find_camera(img), CahvCamera)  # the sidecar wins
    (tmp_path / "images" / "scene_001.camera.json").write_text("[]")
    with pytest.raises(CameraFileError, match="scene_001.camera.json"):
        find_camera(img)


def test_camera_paths_starting_with_a_tilde_are_in_the_home_folder(tmp_path, monkeypatch):
    """``~`` is the home folder, as for ``UnitMapper.map(camera="~/...")`` and build_contact_map: load_camera
    and find_camera said "no such file" for a camera file there, and remove_stale_maps removed nothing."""
    from marsunits.boundary.camera.io import camera_candidates
    from marsunits.boundary.contact_map import remove_stale_maps

    home, work = tmp_path / "home", tmp_path / "work"
    (home / "images").mkdir(parents=True)
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    cam = _pinhole(pitch_deg=15.0)
    (home / "cam.json").write_text(json.dumps(cam.to_dict()))
    assert load_camera("~/cam.json") == cam
    (home / "images" / "a.camera.json").write_text(json.dumps(cam.to_dict()))
    assert camera_candidates("~/images/a.png")[0] == home / "images" / "a.camera.json"
    assert find_camera_file("~/images/a.png") == home / "images" / "a.camera.json"
    assert find_camera("~/images/a.png") == cam
    _earlier_map(home / "contact_map_old.png")
    assert remove_stale_maps("~") == [home / "contact_map_old.png"]
    assert not (home / "contact_map_old.png").exists()


def test_files_named_tilde_something_in_the_working_folder_are_files_like_any_other(tmp_path, monkeypatch):
    """An image ``~scan.png`` found in the working folder (``Path(".").glob`` gives ``~scan.png``) and its
    contacts: pathlib's expanduser raised RuntimeError ("Could not determine home directory") for them."""
    monkeypatch.chdir(tmp_path)
    cam = _pinhole(pitch_deg=15.0)
    (tmp_path / "~scan.camera.json").write_text(json.dumps(cam.to_dict()))
    assert find_camera_file("~scan.png") == Path("~scan.camera.json")
    assert find_camera("~scan.png") == cam and load_camera("~scan.camera.json") == cam
    line = ContactLine(np.array([[1.0, 1.0], [4.0, 5.0]]))
    assert write_contacts("~scan.contact.geojson", [line], 64, 48) == Path("~scan.contact.geojson")
    assert len(read_contacts("~scan.contact.geojson")[0]) == 1
    assert contact_map.remove_stale_maps("~no_such_user_zz") == []


def _row_line(cam, v, vc=None) -> ContactLine:
    u = np.linspace(0.5, cam.image_width - 0.5, 9)
    return ContactLine(pixels=np.c_[u, np.full_like(u, v)], confidence=0.9, vertex_confidence=vc)


def test_add_ground_on_a_horizontal_line():
    pin = _pinhole(pitch_deg=20.0, height_m=2.0)
    v = 180.0
    expected_x = 2.0 / math.tan(math.radians(20.0) + math.atan((v - 120.0) / pin.focal_px))
    (line,) = add_ground([_row_line(pin, v)], pin, max_range_m=30.0)
    np.testing.assert_allclose(line.ground_m[:, 0], expected_x, atol=1e-9)
    assert line.site is None and len(line.ground_m) == len(line.pixels) == 9
    assert np.all(np.diff(line.ground_m[:, 1]) < 0)  # left to right in the image is +y to -y
    # above the horizon: dropped, or kept without ground coordinates on request
    assert add_ground([_row_line(pin, 20.0)], pin) == []
    (kept,) = add_ground([_row_line(pin, 20.0)], pin, keep_unprojected=True)
    assert kept.ground_m is None


def test_add_ground_splits_at_the_range_limit():
    pin = _pinhole(pitch_deg=20.0, height_m=2.0, site="s1")
    v = 180.0
    x = 2.0 / math.tan(math.radians(20.0) + math.atan((v - 120.0) / pin.focal_px))
    vc = np.linspace(0.2, 1.0, 9)
    lines = add_ground([_row_line(pin, v, vc)], pin, max_range_m=x * 1.05)
    assert len(lines) == 1  # the ends are beyond range
    ln = lines[0]
    assert ln.site == "s1" and len(ln.pixels) == len(ln.ground_m)
    reach = np.hypot(*(ln.ground_m - np.array([pin.x_m, pin.y_m])).T)
    assert reach.max() <= x * 1.05
    # cut where the line leaves the range, not at its last vertex within it
    assert reach[0] == pytest.approx(x * 1.05, rel=1e-6) and reach[-1] == pytest.approx(x * 1.05, rel=1e-6)
    assert len(ln.vertex_confidence) == len(ln.pixels)
    assert 0.2 < ln.confidence < 1.0
    # keep_unprojected: the far ends come back without ground coordinates, the pixel line stays whole
    pieces = add_ground([_row_line(pin, v, vc)], pin, max_range_m=x * 1.05, keep_unprojected=True)
    assert [p.ground_m is None for p in pieces] == [True, False, True]
    assert sum(p.length_px for p in pieces) == pytest.approx(_row_line(pin, v).length_px)
    assert pieces[0].pixels[-1] == pytest.approx(pieces[1].pixels[0])  # the pieces meet at the cuts
    dense = add_ground([_row_line(pin, v, vc)], pin, max_range_m=x * 1.05, densify_px=2.0)
    assert dense[0].length_m == pytest.approx(ln.length_m, rel=1e-6)  # a straight line needs no densifying


def test_a_contact_within_range_keeps_its_confidence():
    """The line's confidence is extraction's mean over the traced contour, not the mean of its simplified
    vertices: recomputed from those, a contact read 0.7229 with a camera file and 0.7372 without."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0)
    vc = np.linspace(0.2, 1.0, 9)
    line = ContactLine(_row_line(pin, 180.0).pixels, confidence=0.3, vertex_confidence=vc)
    (projected,) = add_ground([line], pin, max_range_m=1000.0)
    assert projected.ground_m is not None and projected.confidence == 0.3
    (far,) = add_ground([ContactLine(_row_line(pin, 20.0).pixels, 0.3, vc)], pin, keep_unprojected=True)
    assert far.ground_m is None and far.confidence == 0.3  # above the horizon: whole, kept too
    (dense,) = add_ground([line], pin, max_range_m=1000.0, densify_px=2.0)
    assert dense.confidence == 0.3


def test_a_two_vertex_contact_leaving_the_range_keeps_its_near_part_on_the_ground():
    """A simplified straight contact has two vertices: one beyond the range (or above the horizon) took
    the whole line's ground coordinates, and the contact map came out empty."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0)
    col = pin.image_width / 2
    line = ContactLine(np.array([[col, pin.image_height - 0.5], [col, 1.0]]), confidence=0.8)  # to the sky
    assert not np.isfinite(pin.pixel_to_ground(np.array([col]), np.array([1.0]), max_range_m=15.0)).all()
    (piece,) = add_ground([line], pin, max_range_m=15.0)
    assert len(piece.pixels) == 2 and piece.confidence == 0.8
    far = piece.ground_m[-1] - np.array([pin.x_m, pin.y_m])
    assert np.hypot(*far) == pytest.approx(15.0, rel=1e-6)  # reaches out to the range limit


def test_a_straight_contact_whose_ends_are_beyond_the_range_keeps_its_middle_on_the_ground(tmp_path):
    """The range is a disc about the camera: a straight contact 25 m ahead across a 90-degree view has its
    two vertices 32 m away and 33 m of it within max_range_m=30. Only its vertices were looked at, so all of
    it was dropped from the ground line and the contact map."""
    pin = PinholeCamera(1024, 768, 90.0, 5.0, height_m=2.0, site="s")
    ends = pin.world_to_pixel(np.array([[25.0, 20.0, 0.0], [25.0, -20.0, 0.0]]))
    lines = number_contacts([ContactLine(ends, confidence=0.9)])
    pieces = add_ground(lines, pin, max_range_m=30.0, keep_unprojected=True)
    assert [p.ground_m is not None for p in pieces] == [False, True, False]
    assert sum(p.length_px for p in pieces) == pytest.approx(lines[0].length_px)  # the pixel line stays whole
    near = pieces[1].ground_m
    np.testing.assert_allclose(near[:, 0], 25.0, atol=1e-6)
    half = math.sqrt(30.0**2 - 25.0**2)
    assert near[0, 1] == pytest.approx(half, rel=1e-6) and near[-1, 1] == pytest.approx(-half, rel=1e-6)
    (geojson, *_) = build_contact_map([("a.png", as_stored(pieces), pin)], tmp_path, max_range_m=30.0)
    (feature,) = json.loads(geojson.read_text())["features"]
    assert feature["properties"]["length_m"] == pytest.approx(2 * half, abs=0.01)
    # Lines of which no part is within range stay off the ground: above the horizon, and all beyond it.
    assert add_ground(lines, pin, max_range_m=24.0) == []
    sky = ContactLine(pin.world_to_pixel(np.array([[1e6, 2e5, 2.5], [1e6, -2e5, 2.5]])), confidence=0.9)
    assert add_ground([sky], pin, max_range_m=1e9) == []


def test_the_contact_map_of_a_contact_leaving_the_range_has_one_feature(tmp_path):
    """The map projects again the pieces stored without ground coordinates; the far piece starts at the
    cut, on the range edge (rounded in the file to one side or the other), and gave the map a second,
    zero-length feature for the contact."""
    pin = PinholeCamera(320, 240, 60.0, 20.0, height_m=2.0, site="s")
    lines = number_contacts([ContactLine(np.array([[160.0, 239.0], [170.0, 20.0]]), confidence=0.8)])
    stored = as_stored(add_ground(lines, pin, max_range_m=15.0, keep_unprojected=True))
    assert [p.ground_m is not None for p in stored] == [True, False]
    (geojson, *_) = build_contact_map([("a.png", stored, pin)], tmp_path, max_range_m=15.0)
    (feature,) = json.loads(geojson.read_text())["features"]
    assert feature["properties"]["length_m"] == pytest.approx(12.87, abs=0.01)


def test_the_contact_map_of_items_given_by_a_generator_is_the_map_of_the_list(tmp_path):
    """A notebook's ``build_contact_map((n, r.contacts, r.camera) for ...)``: the check of the items used the
    generator up, so the map had no items: no file written, no word said."""
    pin = PinholeCamera(320, 240, 60.0, 20.0, height_m=2.0, site="s")
    lines = number_contacts([ContactLine(np.array([[100.0, 200.0], [220.0, 190.0]]), confidence=0.8)])
    listed = build_contact_map([("a.png", lines, pin)], tmp_path / "list")
    generated = build_contact_map((item for item in [("a.png", lines, pin)]), tmp_path / "gen")
    names = ["contact_map.geojson", "contact_map.png"]
    assert [p.name for p in generated] == [p.name for p in listed] == names
    assert json.loads(generated[0].read_text()) == json.loads(listed[0].read_text())
    assert len(json.loads(generated[0].read_text())["features"]) == 1


def test_the_contact_map_names_one_line_a_camera_dict_or_a_mapping_before_writing_anything(tmp_path):
    """One line for an image's lines failed as "'ContactLine' object is not iterable"; a camera file's dict
    for the camera failed deep in the projection ("no attribute 'pixel_to_ground'") after the images before
    it were projected; a ``{name: result}`` dict was read by its keys ("items[0] is a str")."""
    pin = PinholeCamera(320, 240, 60.0, 20.0, height_m=2.0, site="s")
    (line,) = number_contacts([ContactLine(np.array([[100.0, 200.0], [220.0, 190.0]]), confidence=0.8)])
    good = ("a.png", [line], pin)
    with pytest.raises(TypeError, match=r"items\[1\]'s lines must be a list of ContactLine.*give \[it\]"):
        build_contact_map([good, ("b.png", line, pin)], tmp_path)
    with pytest.raises(TypeError, match=r"items\[1\]'s camera is a dict: .*camera_from_dict"):
        build_contact_map([good, ("b.png", [line], pin.to_dict())], tmp_path)
    with pytest.raises(TypeError, match=r"got a mapping; .*for name, r in it.items\(\)"):
        build_contact_map({"a.png": ([line], pin)}, tmp_path)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())
    assert [p.name for p in build_contact_map([good], tmp_path)] == ["contact_map.geojson", "contact_map.png"]


def test_a_line_whose_stored_ground_has_one_point_is_projected_again_for_the_map(tmp_path):
    """A contact file edited by hand or in a GIS can leave ``ground_m`` one point long: it is read as it
    stands, and the map took such a line neither as a ground line nor as one to project, so it was lost."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0, site="s")
    lines = add_ground([_row_line(pin, 200.0)], pin, max_range_m=30.0)
    path = write_contacts(tmp_path / "a.contact.geojson", lines, pin.image_width, pin.image_height)
    data = json.loads(path.read_text())
    data["features"][0]["properties"]["ground_m"] = data["features"][0]["properties"]["ground_m"][:1]
    path.write_text(json.dumps(data))
    (back,), _ = read_contacts(path)
    assert back.ground_m is not None and back.ground_m.shape == (1, 2)
    (geojson, *_) = build_contact_map([("a.png", [back], pin)], tmp_path / "map", max_range_m=30.0)
    (feature,) = json.loads(geojson.read_text())["features"]
    expected = add_ground([back], pin, max_range_m=30.0)[0].ground_m
    np.testing.assert_allclose(feature["geometry"]["coordinates"], expected, atol=1e-4)
    assert feature["properties"]["length_m"] == pytest.approx(lines[0].length_m, abs=1e-3)


def test_a_contact_split_at_the_range_limit_still_counts_once(tmp_path):
    """The manifest's n_contacts counted features, so one contact leaving the ground range counted 3 with a
    camera and 1 without; the pieces now share the contact's id, in memory and in the file."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0)
    v = 180.0
    x = 2.0 / math.tan(math.radians(20.0) + math.atan((v - 120.0) / pin.focal_px))
    numbered = number_contacts([_row_line(pin, v), _row_line(pin, 200.0)])
    pieces = add_ground(numbered, pin, max_range_m=x * 1.05, keep_unprojected=True)
    assert len(pieces) == 4 and count_contacts(pieces) == count_contacts(numbered) == 2
    path = write_contacts(tmp_path / "c.contact.geojson", pieces, pin.image_width, pin.image_height)
    back, _ = read_contacts(path)
    assert [ln.extra["contact_id"] for ln in back] == [0, 0, 0, 1] and count_contacts(back) == 2
    assert count_contacts([ContactLine(np.zeros((2, 2))), ContactLine(np.ones((2, 2)))]) == 2  # no ids
    data = json.loads(path.read_text())
    data["features"][0]["properties"]["contact_id"] = "zero"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"c\.contact\.geojson: feature 0 has contact_id 'zero'"):
        read_contacts(path)


def test_contact_map_writes_geojson_and_png(tmp_path):
    a = _pinhole(pitch_deg=20.0, site="s1")
    b = cahv_from_pinhole(_pinhole(pitch_deg=25.0, yaw_deg=30.0, x_m=4.0, site="s1"))
    items = [
        ("a.png", [_row_line(a, 180.0), _row_line(a, 200.0)], a),
        ("b.png", add_ground([_row_line(b, 170.0)], b), b),  # already on the ground
        ("nocam.png", [_row_line(a, 180.0)], None),
    ]
    paths = build_contact_map(items, tmp_path / "map")
    assert [p.name for p in paths] == ["contact_map.geojson", "contact_map.png"]
    data = json.loads(paths[0].read_text())
    assert data["type"] == "FeatureCollection" and data["site"] == "s1"
    assert len(data["features"]) == 3
    assert sorted(f["properties"]["image"] for f in data["features"]) == ["a.png", "a.png", "b.png"]
    for f in data["features"]:
        geom = shape(f["geometry"])
        assert geom.geom_type == "LineString" and geom.is_valid and geom.length > 1.0
        assert 0.0 <= f["properties"]["confidence"] <= 1.0
    assert [c["image"] for c in data["cameras"]] == ["a.png", "b.png"]
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].stat().st_size > 5000


def test_frames_shot_from_one_rover_position_share_one_map_label() -> None:
    """A mosaic's frames share a camera position: their names used to be written over each other."""
    from marsunits.boundary.contact_map import _station_label

    mosaic = [{"name": f"frame{i}.png", "center": np.array([0.0, 0.01 * i, 1.9])} for i in range(5)]
    other = {"name": "far.png", "center": np.array([4.0, 0.0, 1.9])}
    stations = camera_stations([*mosaic[:2], {"name": "nocam.png", "center": None}, other, *mosaic[2:]])
    assert [names for _, names in stations] == [[m["name"] for m in mosaic], ["far.png"]]
    assert stations[1][0] == (4.0, 0.0)
    label = _station_label(stations[0][1])
    assert label.splitlines() == ["frame0.png", "frame1.png", "frame2.png", "+2 more"]
    assert _station_label(["far.png"]) == "far.png"


@pytest.fixture
def annotations(monkeypatch):
    """Every annotation the contact map draws (matplotlib ``Annotation`` objects, in drawing order)."""
    from matplotlib.axes import Axes

    drawn = []
    annotate = Axes.annotate

    def record(self, text, xy, *args, **kwargs):
        drawn.append(annotate(self, text, xy, *args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(Axes, "annotate", record)
    return drawn


def test_cameras_half_a_metre_apart_share_one_label_on_the_map(tmp_path, annotations):
    """Two rover positions 0.5 m apart are two stations (markers), but at the map's scale (tens of metres)
    their labels were drawn over each other: stations closer than a small part of the map's extent share
    one label, which names the images of all of them; a station far off keeps its own."""
    cams = {
        "a.png": _pinhole(pitch_deg=20.0, site="s"),
        "b.png": _pinhole(pitch_deg=20.0, y_m=0.5, site="s"),
        "c.png": _pinhole(pitch_deg=20.0, x_m=12.0, site="s"),
    }
    build_contact_map([(n, [_row_line(c, 180.0)], c) for n, c in cams.items()], tmp_path)
    data = json.loads((tmp_path / "contact_map.geojson").read_text())
    assert len(camera_stations([{"name": c["image"], "center": c["center_m"]} for c in data["cameras"]])) == 3
    assert sorted(a.get_text() for a in annotations) == ["a.png\nb.png", "c.png"]
    assert {a.get_text(): a.xy for a in annotations}["c.png"] == (0.0, 12.0)  # (y, x): at its own station


def test_a_shared_label_names_each_station_it_stands_for(tmp_path, annotations):
    """A mosaic of five frames and, 0.5 m off, one frame of another rover position share one label; it named
    the mosaic's first three frames and "+3 more", so the second station's image was named nowhere."""
    cams = {f"m{i}.png": _pinhole(pitch_deg=20.0, site="s") for i in range(5)}
    cams["near.png"] = _pinhole(pitch_deg=20.0, y_m=0.5, site="s")
    cams["far.png"] = _pinhole(pitch_deg=20.0, x_m=12.0, site="s")
    build_contact_map([(n, [_row_line(c, 180.0)], c) for n, c in cams.items()], tmp_path)
    assert sorted(a.get_text() for a in annotations) == ["far.png", "m0.png\nnear.png\nm1.png\n+3 more"]


@pytest.mark.parametrize(("spacing_m", "columns"), [(0.3, 1), (0.5, 1), (1.0, 1), (0.5, 5), (1.0, 5)])
def test_station_labels_of_a_traverse_do_not_overlap(tmp_path, annotations, spacing_m, columns):
    """Fifty images along a traverse, one every ``spacing_m`` (or on a grid of ``columns``): labels were
    shared among stations within 4 % of the map's extent, but a label of four lines (three names and "+N
    more") is about 7 % of the plot's height, and wider than tall, so neighbouring labels were drawn over each
    other and their names could not be read. Labels that would overlap as drawn are merged."""
    drawn = annotations
    cams = {
        f"img{i:02d}.png": _pinhole(
            pitch_deg=20.0,
            yaw_deg=i * 7.2,
            x_m=i // columns * spacing_m,
            y_m=i % columns * spacing_m,
            site="s",
        )
        for i in range(50)
    }
    build_contact_map([(n, [_row_line(c, 180.0)], c) for n, c in cams.items()], tmp_path)
    figure = drawn[0].figure
    shown = [a for a in drawn if a in figure.axes[0].texts]  # a label merged into another is removed
    assert shown
    renderer = figure.canvas.get_renderer()
    boxes = [a.get_window_extent(renderer) for a in shown]
    pairs = itertools.combinations(zip(shown, boxes, strict=True), 2)
    overlaps = [(a.get_text(), b.get_text()) for (a, p), (b, q) in pairs if p.overlaps(q)]
    assert overlaps == []


@pytest.mark.parametrize("yaw_deg", [0.0, 90.0, 180.0, -90.0])
def test_station_labels_stay_inside_the_figure(tmp_path, annotations, yaw_deg):
    """A camera at the map's edge (looking left, its footprint to the left of it) has its label below-right of
    it, beyond the axes: the layout made room for it until labels were measured on a laid-out figure and
    left out of the layout, and then it ran off the figure's right edge, its names cut."""
    drawn = annotations
    cams = {
        f"a_rather_long_image_name_{i}.png": _pinhole(pitch_deg=20.0, yaw_deg=yaw_deg, site="s")
        for i in range(4)
    }
    build_contact_map([(n, [_row_line(c, 180.0)], c) for n, c in cams.items()], tmp_path)
    figure = drawn[0].figure
    shown = [a for a in drawn if a in figure.axes[0].texts]
    assert shown
    renderer = figure.canvas.get_renderer()
    for a in shown:
        box = a.get_window_extent(renderer)
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, (a.get_text(), box, figure.bbox)
        assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1, (a.get_text(), box, figure.bbox)


def _map_figures(monkeypatch) -> list:
    """Every figure the contact map saves (matplotlib ``Figure`` objects, in saving order)."""
    from marsunits.boundary import contact_map

    saved = []
    save_png = contact_map._save_png

    def record(path, fig):
        saved.append(fig)
        return save_png(path, fig)

    monkeypatch.setattr(contact_map, "_save_png", record)
    return saved


def _legend_texts(figure) -> list[str]:
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes)]
    return [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]


def test_the_contact_map_legend_names_each_kind_of_thing_it_draws(tmp_path, monkeypatch):
    """The PNG drew camera markers and grey view footprints that nothing named (the contacts had their
    colour bar): a reader could not tell a footprint from a unit. Its legend names each kind of thing drawn,
    and only those drawn: a map of a camera that sees no ground and has no contact shows the camera alone."""
    saved = _map_figures(monkeypatch)
    a = _pinhole(pitch_deg=20.0, site="s")
    build_contact_map([("a.png", [_row_line(a, 180.0)], a)], tmp_path / "full", max_range_m=25.0)
    sky = _pinhole(pitch_deg=-30.0, site="s")  # looks up: no footprint, no contact
    assert not len(view_footprint(sky, 25.0))
    build_contact_map([("sky.png", [], sky)], tmp_path / "bare", max_range_m=25.0)
    full, bare = saved
    assert _legend_texts(full) == [
        "contact on the ground (colour: confidence)",
        "camera position",
        "ground in the camera's view (to 25 m)",
    ]
    assert _legend_texts(bare) == ["camera position"]
    # The legend stays on the figure, clear of the map it explains.
    renderer = full.canvas.get_renderer()
    (legend,) = full.legends
    box, axes = legend.get_window_extent(renderer), full.axes[0].get_window_extent(renderer)
    assert full.bbox.x0 <= box.x0 and box.x1 <= full.bbox.x1 and full.bbox.y0 <= box.y0, (box, full.bbox)
    assert not box.overlaps(axes), (box, axes)


def _layout_cases() -> dict[str, list]:
    """Contact-map inputs, ``(image name, lines, camera)`` per image, of the layouts the clean-layout test
    checks: a camera at the map's centre, and cameras whose labels fell past the map's right edge."""
    # One Mars 2020 style site of the contact-map benchmark: its one label fell 130 px past the right edge.
    nav = PinholeCamera(
        image_width=160, image_height=120, hfov_deg=60.0, pitch_deg=20.0, yaw_deg=65.0, site="ROVER_NAV_0005"
    )
    edge = [_pinhole(pitch_deg=20.0, yaw_deg=90.0, site="s") for _ in range(4)]
    pair = [  # two stations with long names beside each other at the right of the map
        _pinhole(pitch_deg=20.0, yaw_deg=41.1, x_m=-1.06, y_m=1.3, site="s"),
        _pinhole(pitch_deg=20.0, yaw_deg=-5.6, x_m=3.0, y_m=1.66, site="s"),
    ]
    return {
        "plain": [("a.png", [_row_line(c, 180.0)], c) for c in [_pinhole(pitch_deg=20.0, site="s")]],
        "ROVER_NAV_0005": [("sol0005/NLF_0005.png", [_row_line(nav, 90.0)], nav)],
        "long names at the edge": [
            (f"a_rather_long_image_name_{i}.png", [_row_line(c, 180.0)], c) for i, c in enumerate(edge)
        ],
        "two long names": [(f"{'n' * 31}{i}.png", [_row_line(c, 180.0)], c) for i, c in enumerate(pair)],
    }


@pytest.mark.parametrize("case", list(_layout_cases()))
def test_the_contact_map_is_laid_out_cleanly(tmp_path, monkeypatch, case):
    """A station label that fell past the map's right edge was given room by the layout: the map was
    squeezed (640 px wide, not 760), with a wide gap before the colour bar where the label hung; the layout,
    passed again and again as the map's limits and ticks moved, could leave the y-axis label or the title
    off the figure. As rendered, the axis labels, title and colour bar's label do not overlap and are on the
    figure, the station labels are inside the map, and the colour bar stands beside the map."""
    saved = _map_figures(monkeypatch)
    build_contact_map(_layout_cases()[case], tmp_path)
    (figure,) = saved
    renderer = figure.canvas.get_renderer()
    ax, colour_bar = figure.axes
    texts = {
        "title": ax.title,
        "x-axis label": ax.xaxis.label,
        "y-axis label": ax.yaxis.label,
        "colour bar's label": colour_bar.yaxis.label,
    }
    boxes = {name: text.get_window_extent(renderer) for name, text in texts.items()}
    overlaps = [(a, b) for a, b in itertools.combinations(boxes, 2) if boxes[a].overlaps(boxes[b])]
    assert overlaps == []
    labels = [a.get_window_extent(renderer) for a in ax.texts]
    assert labels
    page, axes_box = figure.bbox, ax.get_window_extent(renderer)
    for name, box in [*boxes.items(), *(("station label", b) for b in labels)]:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, name
    for box in labels:
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1, (box, axes_box)
        assert axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1, (box, axes_box)
    gap = colour_bar.get_window_extent(renderer).x0 - axes_box.x1
    assert 0 < gap <= 0.5 * figure.dpi, gap  # half an inch at most: the map is not squeezed


def test_contact_map_one_file_pair_per_site(tmp_path):
    a = _pinhole(pitch_deg=20.0, site="site 1")
    b = _pinhole(pitch_deg=20.0, site="s2")
    items = [("a.png", [_row_line(a, 180.0)], a), ("b.png", [_row_line(b, 190.0)], b)]
    names = sorted(p.name for p in build_contact_map(items, tmp_path))
    assert names == [
        "contact_map_s2.geojson",
        "contact_map_s2.png",
        "contact_map_site_1.geojson",
        "contact_map_site_1.png",
    ]
    assert build_contact_map([("x.png", [], None)], tmp_path / "empty") == []


def test_map_file_names_of_pds_sites_have_no_double_underscore(tmp_path):
    """The sites the label converter writes, ``ROVER_NAV_(62,660,8)``, gave the map
    ``contact_map_ROVER_NAV__62_660_8`` (the ``_`` before the bracket, then the bracket's own). An earlier
    run's maps of such names are still recognised as maps, and removed when this run does not write them."""
    from marsunits.boundary.contact_map import remove_stale_maps

    sites = ("ROVER_NAV_(62,660,8)", "LOCAL_LEVEL_(30,1344)", "a__b", "SITE_62")
    cams = [_pinhole(pitch_deg=20.0, site=site) for site in sites]
    _earlier_map(tmp_path / "contact_map_ROVER_NAV__62_660_8.png")  # written before this fix
    paths = build_contact_map([(f"{i}.png", [_row_line(c, 180.0)], c) for i, c in enumerate(cams)], tmp_path)
    assert sorted(p.stem for p in paths if p.suffix == ".png") == [
        "contact_map_LOCAL_LEVEL_30_1344",
        "contact_map_ROVER_NAV_62_660_8",
        "contact_map_SITE_62",
        "contact_map_a_b",
    ]
    assert all("__" not in p.name for p in paths)
    assert remove_stale_maps(tmp_path, paths) == [tmp_path / "contact_map_ROVER_NAV__62_660_8.png"]


def _earlier_map(path) -> None:
    """A contact-map file as an earlier run wrote it: the GeoJSON collection, or a PNG Matplotlib drew."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if path.suffix == ".geojson":
        path.write_text(json.dumps({"type": "FeatureCollection", "site": "old", "units": "m", "cameras": []}))
    else:
        fig = Figure(figsize=(1, 1), dpi=20)
        FigureCanvasAgg(fig)
        fig.savefig(path, format="png")


def test_a_users_file_that_merely_has_a_map_name_is_not_removed(tmp_path):
    """Every ``contact_map_*.png`` and ``.geojson`` in the output folder was deleted as a stale map: a user's
    annotated copy (``contact_map_annotated.png``) or notes saved beside the maps were lost on the next run.
    Only files that are maps (the map's GeoJSON collection, a PNG Matplotlib wrote) are removed."""
    from PIL import Image

    from marsunits.boundary.contact_map import remove_stale_maps

    for name in ("contact_map_old.png", "contact_map_old.geojson", "contact_map_ROVER_NAV__62_660_8.png"):
        _earlier_map(tmp_path / name)
    Image.new("RGB", (8, 8)).save(tmp_path / "contact_map_annotated.png")
    (tmp_path / "contact_map_notes.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": []})
    )
    (tmp_path / "contact_map_bad.geojson").write_bytes(b"\xff not json")
    (tmp_path / "contact_map_x.png").write_bytes(b"x")
    assert sorted(p.name for p in remove_stale_maps(tmp_path)) == [
        "contact_map_ROVER_NAV__62_660_8.png",
        "contact_map_old.geojson",
        "contact_map_old.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "contact_map_annotated.png",
        "contact_map_bad.geojson",
        "contact_map_notes.geojson",
        "contact_map_x.png",
    ]


def test_sites_whose_file_names_coincide_get_numbered_files_and_stale_maps_go(tmp_path):
    """ "B/x" and "B x" both read B_x as a file name: each site keeps its own map, none is overwritten; maps
    of an earlier run that this one did not write are removed, per-image outputs never."""
    from marsunits.boundary.contact_map import remove_stale_maps

    cams = {site: _pinhole(pitch_deg=20.0, site=site) for site in ("B/x", "B x", "unnamed", None)}
    items = [(f"{i}.png", [_row_line(c, 180.0)], c) for i, c in enumerate(cams.values())]
    paths = build_contact_map(items, tmp_path)
    geojsons = [p for p in paths if p.suffix == ".geojson"]
    assert len(geojsons) == 4 and len(set(paths)) == 8
    sites = sorted(str(json.loads(p.read_text())["site"]) for p in geojsons)
    assert sites == ["B x", "B/x", "None", "unnamed"]
    _earlier_map(tmp_path / "contact_map_old.png")  # an earlier run's site
    (tmp_path / "contact_map_x.contact.geojson").write_text("{}")  # outputs of an image named contact_map_x
    (tmp_path / "contact_map_x.mask.png").write_bytes(b"x")
    assert [p.name for p in remove_stale_maps(tmp_path, paths)] == ["contact_map_old.png"]
    assert sorted(p.name for p in remove_stale_maps(tmp_path)) == sorted(p.name for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "contact_map_x.contact.geojson",
        "contact_map_x.mask.png",
    ]
    # A site name of 243 characters made a file name past 255 bytes: the map (and the run's reports after
    # it) ended in "File name too long". Long names are cut, and two that share their start stay apart.
    long_a, long_b = "s" * 242 + "a", "s" * 242 + "b"
    cams = [_pinhole(pitch_deg=20.0, site=site) for site in (long_a, long_b)]
    paths = build_contact_map([(f"{i}.png", [_row_line(c, 180.0)], c) for i, c in enumerate(cams)], tmp_path)
    assert len({p.name for p in paths}) == 4 and all(len(p.name.encode()) < 120 for p in paths)
    sites = {json.loads(p.read_text())["site"] for p in paths if p.suffix == ".geojson"}
    assert sites == {long_a, long_b}
    assert sorted(remove_stale_maps(tmp_path)) == sorted(paths)  # still recognised as map files
    # Sites told apart by letter case only: on macOS and Windows file systems their maps were one file (the
    # second site's map overwrote the first's without a word).
    cams = [_pinhole(pitch_deg=20.0, site=site) for site in ("SITE_A", "site_a")]
    paths = build_contact_map([(f"{i}.png", [_row_line(c, 180.0)], c) for i, c in enumerate(cams)], tmp_path)
    assert len({p.name.casefold() for p in paths}) == 4
    assert sorted(p.name for p in paths if p.suffix == ".png") == [
        "contact_map_SITE_A.png",
        "contact_map_site_a_2.png",
    ]


def test_a_camera_at_or_below_its_ground_is_refused_and_ground_height_is_z_up_in_every_frame(tmp_path):
    d = cahv_from_pinhole(_pinhole(pitch_deg=20.0, height_m=1.5)).to_dict()
    path = tmp_path / "cam.json"
    for ground in (1.5, 3.0):
        path.write_text(json.dumps({**d, "ground_z_m": ground}))
        with pytest.raises(CameraFileError, match=r"cam.json.*not above the ground plane.*frame.*ned"):
            load_camera(path)
    # z-up vectors in a file that says "frame": "ned": the refusal told it to add the "frame" it has.
    path.write_text(json.dumps({**d, "frame": "ned"}))
    with pytest.raises(CameraFileError, match=r"not above the ground plane") as refused:
        load_camera(path)
    said = str(refused.value)
    assert 'add "frame": "ned"' not in said and "z = 1.5 m as given" in said and 'drop "frame"' in said
    # Quoted as the file spells it: "pds" is read as "ned", and the refusal said "ned" of a "pds" file.
    path.write_text(json.dumps({**d, "frame": "pds"}))
    with pytest.raises(
        CameraFileError, match=r'in the z-down "frame": "pds"\) is not above the ground plane'
    ):
        load_camera(path)
    # The same camera with PDS vectors (z down); ground_z_m stays z up, as documented from the start.
    ned = {**d, "frame": "ned", "ground_z_m": -0.5}
    for k in ("C", "A", "H", "V"):
        ned[k] = ned_to_flu(np.array(d[k])).tolist()
    path.write_text(json.dumps(ned))
    cam = load_camera(path)
    assert cam.ground_z_m == -0.5 and cam.center[2] == pytest.approx(1.5)
    u, v = _pixels(cam, 50)
    ground = cam.pixel_to_ground(u, v)
    ok = np.isfinite(ground).all(axis=1)
    assert ok.any() and np.allclose(ground[ok, 2], -0.5)


def test_a_camera_that_sees_no_ground_has_no_footprint():
    assert view_footprint(_pinhole(pitch_deg=-60.0), max_range_m=30.0).shape == (0, 2)


def _seen_area(cam, max_range_m: float) -> tuple[float, np.ndarray]:
    """The area of the range disc the camera sees, and the seen points of a grid over it (world_to_pixel)."""
    g = np.linspace(-max_range_m, max_range_m, 401)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    disc = np.hypot(x, y) <= max_range_m
    pts = np.c_[x + cam.center[0], y + cam.center[1], np.zeros_like(x)][disc]
    px = cam.world_to_pixel(pts)
    w, h = cam.image_width, cam.image_height
    seen = np.isfinite(px).all(axis=1) & (px[:, 0] >= 0) & (px[:, 0] <= w) & (px[:, 1] >= 0) & (px[:, 1] <= h)
    return float(seen.mean() * math.pi * max_range_m**2), pts[seen]


@pytest.mark.parametrize(
    "pose",
    [
        {"pitch_deg": 90.0, "height_m": 20.0},  # straight down from high up: every border ray beyond 5 m
        {"pitch_deg": 90.0, "height_m": 20.0, "roll_deg": 30.0},
        {"pitch_deg": 70.0, "height_m": 20.0},
        {"pitch_deg": 10.0, "roll_deg": 80.0, "height_m": 2.0, "x_m": 2.0},  # strong roll: horizon in view
        {"pitch_deg": 50.0, "height_m": 20.0, "yaw_deg": 200.0},
    ],
)
def test_the_footprint_is_the_part_of_the_range_disc_the_camera_sees(pose):
    """The footprint was cut at each border pixel beyond the range: a camera looking straight down whose
    whole border lies beyond max_range_m got none, though the middle of its image sees the disc."""
    cam = _pinhole(**pose)
    fp = shapely.Polygon(view_footprint(cam, max_range_m=5.0))
    area, seen = _seen_area(cam, 5.0)
    assert fp.is_valid and fp.area == pytest.approx(area, rel=0.01)
    assert shapely.contains_xy(fp.buffer(0.05), seen[:, 0], seen[:, 1]).all()


def test_view_footprint_covers_the_visible_ground():
    cam = _pinhole(pitch_deg=15.0, yaw_deg=45.0, x_m=1.0)
    fp = shapely.Polygon(view_footprint(cam, max_range_m=20.0))
    assert fp.is_valid and fp.area > 10.0
    u, v = _pixels(cam, 300, seed=5)
    g = cam.pixel_to_ground(u, v, 20.0)
    g = g[np.isfinite(g).all(axis=1)]
    inside = shapely.contains_xy(fp.buffer(1e-6), g[:, 0], g[:, 1])
    assert inside.mean() > 0.99
    assert fp.bounds[2] <= 1.0 + 20.0 + 1e-6  # nothing beyond the range circle


def _id_image(width: int, height: int, orientation: int):
    """A raster whose pixel values are their stored index, tagged with an EXIF orientation."""
    from PIL import Image

    im = Image.fromarray(np.arange(width * height, dtype=np.int32).reshape(height, width), mode="I")
    im.getexif()[0x0112] = orientation
    return im


@pytest.mark.parametrize("orientation", range(1, 9))
def test_oriented_camera_maps_displayed_pixels_to_the_stored_raster_as_pillow_turns_it(
    orientation: int,
) -> None:
    """Every displayed pixel centre goes to the stored pixel centre that PIL's exif_transpose put there,
    so rays (and ground points) are the calibrated camera's for the same scene point."""
    from PIL import ImageOps

    from marsunits.boundary.camera.oriented import OrientedCamera

    width, height = 7, 5
    shown = np.asarray(ImageOps.exif_transpose(_id_image(width, height, orientation)))
    stored_row, stored_col = np.divmod(shown, width)
    cam = PinholeCamera(
        image_width=width, image_height=height, hfov_deg=60.0, pitch_deg=60.0
    )  # all on ground
    oriented = OrientedCamera(cam, orientation)
    assert (oriented.image_height, oriented.image_width) == shown.shape
    rows, cols = np.indices(shown.shape)
    got = oriented.pixel_to_ground(cols + 0.5, rows + 0.5)
    want = cam.pixel_to_ground(stored_col + 0.5, stored_row + 0.5)
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(
        oriented.pixel_to_ray(cols + 0.5, rows + 0.5),
        cam.pixel_to_ray(stored_col + 0.5, stored_row + 0.5),
        atol=1e-12,
    )
    back = oriented.world_to_pixel(got)
    np.testing.assert_allclose(back[..., 0], cols + 0.5, atol=1e-6)
    np.testing.assert_allclose(back[..., 1], rows + 0.5, atol=1e-6)


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_jpeg_turned_by_its_exif_tag_gets_the_ground_contact_of_the_untagged_file(
    tmp_path, orientation: int
) -> None:
    """predict.py reads a tagged JPEG as displayed; its contact (in displayed pixels) must land on the same
    ground as the same contact of the untagged file, with the camera calibrated on the stored raster."""
    from PIL import Image, ImageOps

    from marsunits.inference.image_cameras import add_ground_coordinates

    width, height = 40, 30
    camera = {"model": "pinhole", "image_width": width, "image_height": height, "hfov_deg": 60.0,
              "pitch_deg": 40.0, "height_m": 1.5}  # fmt: skip
    stored = [(3, 20), (15, 22), (30, 25), (38, 27)]  # (column, row) pixel centres of a contact
    shown = np.asarray(ImageOps.exif_transpose(_id_image(width, height, orientation)))
    displayed = []
    for c, r in stored:
        rr, cc = np.argwhere(shown == r * width + c)[0]
        displayed.append((cc + 0.5, rr + 0.5))
    grounds = []
    for tag, pixels in ((1, [(c + 0.5, r + 0.5) for c, r in stored]), (orientation, displayed)):
        folder = tmp_path / f"o{tag}"
        folder.mkdir()
        exif = Image.Exif()
        exif[0x0112] = tag
        Image.new("RGB", (width, height), (120, 90, 60)).save(folder / "img.jpg", exif=exif.tobytes())
        (folder / "img.camera.json").write_text(json.dumps(camera))
        size = (height, width) if tag in (5, 6, 7, 8) else (width, height)
        line = ContactLine(pixels=np.asarray(pixels), confidence=0.9)
        (out,) = add_ground_coordinates(folder / "img.jpg", [line], size[0], size[1], max_range_m=30.0)
        grounds.append(out.ground_m)
    np.testing.assert_allclose(grounds[1], grounds[0], atol=1e-9)


def test_cahv_files_are_read_as_strictly_as_pinhole_ones(tmp_path):
    """A PDS label writes MODEL_TYPE in capitals: accepted. Strings where numbers belong were turned into
    numbers for CAHV (and 160.7 px into 160) but refused for pinhole: now refused for both, naming the key."""
    d = cahv_from_pinhole(_pinhole(pitch_deg=20.0)).to_dict()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**d, "model": "CAHV"}))
    assert isinstance(load_camera(path), CahvCamera)
    for key, value in (
        ("image_width", "320"),
        ("image_height", 240.5),
        ("ground_z_m", "0"),
        ("C", ["0", 0, 1]),
    ):
        path.write_text(json.dumps({**d, key: value}))
        with pytest.raises(CameraFileError, match=rf"c\.json.*'{key}' must be"):
            load_camera(path)


@pytest.mark.parametrize(
    ("model", "key", "value", "use"),
    [
        ("pinhole", "ground_z_m", -0.5, "height_m"),
        ("pinhole", "z_m", 1.0, "height_m"),
        ("pinhole", "frame", "ned", "FLU site frame"),
        ("pinhole", "C", [0.0, 0.0, 2.0], "model 'cahv'"),
        ("cahv", "height_m", 1.9, "model 'pinhole'"),
        ("cahvor", "pitch_deg", 20.0, "model 'pinhole'"),
        # CAHVOR's distortion in a CAHV file: R was dropped silently, O failed with a TypeError's words.
        ("cahv", "R", [0.0, 0.01, 0.0], "model 'cahvor'"),
        ("cahv", "O", [1.0, 0.0, 0.0], "model 'cahvor'"),
    ],
)
def test_a_key_of_another_camera_model_is_refused(tmp_path, model, key, value, use):
    """``ground_z_m``, ``frame`` or ``z_m`` in a pinhole file (keys a CAHV file or an x/y/z habit suggests)
    were accepted and ignored: the ground coordinates came out at the wrong scale without a word."""
    cam = _pinhole(pitch_deg=20.0)
    base = {"pinhole": cam, "cahv": cahv_from_pinhole(cam), "cahvor": cahvor_from_pinhole(cam)}[model]
    d = base.to_dict()
    d[key] = value
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps(d))
    said = rf"c\.camera\.json: key '{key}' is not read by a '{model}'.*{use}"
    with pytest.raises(CameraFileError, match=said):
        load_camera(path)


#: Keys of camera models this code does not have (OpenCV's pinhole, JPL's CAHVORE) and what the refusal says.
FOREIGN_MODEL_KEYS = [
    ("pinhole", "k3", 0.1, r"k1 and k2 only.*refit"),
    ("pinhole", "p1", 0.01, r"no tangential distortion.*refit"),
    ("pinhole", "p2", 0.01, r"no tangential distortion.*refit"),
    ("pinhole", "focal_px", 100.0, r"hfov_deg = 2 atan\(image_width / \(2 fx\)\).*model 'cahv'"),
    ("cahvor", "E", [0.1, 0.2, 0.3], r"use model 'cahvore' with all its keys.*another lens"),
    ("cahvor", "T", 2, r"use model 'cahvore'"),
    ("cahvor", "P", 1.0, r"use model 'cahvore'"),
    ("cahvor", "linearity", 1.0, r"use model 'cahvore'"),
    ("cahv", "E", [0.1, 0.2, 0.3], r"use model 'cahvore'"),
    ("cahvore", "linearity", 1.0, r"give it as P"),
]


def test_opencv_fx_fy_cx_cy_are_checked_as_the_same_numbers_in_K_are(tmp_path):
    """OpenCV's ``fx``, ``fy``, ``cx``, ``cy`` were refused in a pinhole file even where the ``K`` of the very
    same numbers was accepted (and ``cx`` at the image centre was refused as "not read"); a file without
    ``hfov_deg`` was told the formula, not the value to write."""
    d = _pinhole(pitch_deg=10.0).to_dict()
    w, h, f = d["image_width"], d["image_height"], d.pop("K")[0][0]
    path = tmp_path / "c.camera.json"
    opencv = {"fx": round(f, 2), "fy": round(f, 2), "cx": (w - 1) / 2, "cy": (h - 1) / 2}
    path.write_text(json.dumps({**d, "K": [[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]}))
    from_k = load_camera(path)
    path.write_text(json.dumps({**d, **opencv}))
    assert load_camera(path) == from_k
    for key, bad, said in [
        ("fx", f * 1.01, rf"'fx' {f * 1.01!r} is not the focal length.*for fx = {f * 1.01:g}, hfov_deg = "),
        ("fy", f * 0.99, r"'fy' .* is not the focal length.*cahv model"),
        ("cx", w / 2 + 12, rf"'cx' {w / 2 + 12!r} is not the principal point.*image centre {w / 2:g}.*cahv"),
        ("cy", h / 2 - 1, rf"'cy' {h / 2 - 1!r} is not the principal point.*image centre {h / 2:g}"),
        ("cx", "60", r"'cx' must be a finite JSON number"),
    ]:
        path.write_text(json.dumps({**d, **opencv, key: bad}))
        with pytest.raises(CameraFileError, match=rf"c\.camera\.json: invalid 'pinhole' camera: {said}"):
            load_camera(path)
    hfov = d.pop("hfov_deg")
    path.write_text(json.dumps({**d, **opencv}))
    with pytest.raises(CameraFileError, match=r"missing \['hfov_deg'\].*add \"hfov_deg\": ") as refused:
        load_camera(path)
    written = float(str(refused.value).rsplit(":", 1)[1])
    assert written == pytest.approx(hfov, abs=1e-3)  # the value to write, not a formula


@pytest.mark.parametrize(
    ("model", "key", "value", "said"), FOREIGN_MODEL_KEYS, ids=[f"{m}-{k}" for m, k, *_ in FOREIGN_MODEL_KEYS]
)
def test_keys_of_camera_models_this_code_lacks_are_refused(tmp_path, model, key, value, said):
    """OpenCV's ``k3``, ``p1``, ``p2`` in a pinhole file, and CAHVORE's ``E``,
    ``T``, ``P`` or ``linearity`` in a CAHV(OR) one, were read as absent: the camera was another lens and the
    metres wrong without a word (while a ``K`` with an off-centre principal point was refused)."""
    cam = PinholeCamera(120, 80, 60.0, 20.0, site="S")
    cahvore = {
        **cahvor_from_pinhole(cam).to_dict(),
        "model": "cahvore",
        "E": [0.0, 0.0, 0.0],
        "T": 1,
        "P": 1.0,
    }
    d = {
        "pinhole": cam.to_dict(),
        "cahv": cahv_from_pinhole(cam).to_dict(),
        "cahvor": cahvor_from_pinhole(cam).to_dict(),
        "cahvore": cahvore,
    }[model]
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps({**d, key: value}))
    with pytest.raises(
        CameraFileError, match=rf"c\.camera\.json: key '{key}' is not read by a '{model}'.*{said}"
    ):
        load_camera(path)


@pytest.mark.parametrize("model", ["cahvore", "CAHVORE"])
def test_a_cahvore_camera_file_is_read_with_its_e_terms(tmp_path, model):
    """A ``"model": "cahvore"`` file was refused (the rovers' Hazcams and most Mars 2020 Navcams are
    calibrated so, and got no ground coordinates); it is read with ``E``, ``T`` and ``P``, and written back
    the same."""
    d = cahvor_from_pinhole(PinholeCamera(120, 80, 60.0, 20.0)).to_dict()
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps({**d, "model": model, "E": [0.001, 0.01, 0.002], "T": 3.0, "P": 0.37}))
    cam = load_camera(path)
    assert isinstance(cam, CahvoreCamera) and cam.T == 3 and cam.P == 0.37
    assert cam.E.tolist() == [0.001, 0.01, 0.002]
    again = camera_from_dict(cam.to_dict())
    assert again.to_dict() == cam.to_dict() and again.to_dict()["model"] == "cahvore"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"E": None}, r"missing \['E'\]"),
        ({"T": None}, r"missing \['T'\]"),
        ({"P": None}, r"missing \['P'\]"),
        ({"T": 4}, r"'T' must be the CAHVORE model type 1 \(perspective\), 2 \(fish-eye\) or 3.*got 4"),
        ({"T": 2.5}, r"'T' must be the CAHVORE model type.*got 2\.5"),
        ({"T": True}, r"'T' must be the CAHVORE model type.*got True"),
        ({"P": "0.37"}, r"'P' must be a finite JSON number, got '0\.37'"),
        ({"E": [0.0, 0.01]}, r"CAHV vector E must be 3 finite numbers"),
        ({"E": [0.0, "x", 0.0]}, r"'E' must be a list of JSON numbers"),
    ],
)
def test_wrong_or_missing_cahvore_keys_are_refused_naming_them(tmp_path, change, said):
    d = {**cahvor_from_pinhole(PinholeCamera(120, 80, 60.0, 20.0)).to_dict(), "model": "cahvore"}
    d.update({"E": [0.0, 0.01, 0.0], "T": 3, "P": 0.5})
    d.update({k: v for k, v in change.items() if v is not None})
    d = {k: v for k, v in d.items() if not (k in change and change[k] is None)}
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match=rf"c\.camera\.json: .*{said}"):
        load_camera(path)


@pytest.mark.parametrize("site", [7, ["a"], {"name": "x"}, True])
def test_a_cahv_site_that_is_not_a_name_is_refused(tmp_path, site):
    """A CAHV(OR) camera with ``"site": 7`` was accepted and crashed the contact map at the end of the run
    (``expected string or bytes-like object``), losing summary.json and the maps."""
    for cam in (cahv_from_pinhole(_pinhole(pitch_deg=20.0)), cahvor_from_pinhole(_pinhole(pitch_deg=20.0))):
        d = cam.to_dict()
        d["site"] = site
        path = tmp_path / "c.camera.json"
        path.write_text(json.dumps(d))
        with pytest.raises(CameraFileError, match=r"c\.camera\.json: invalid .*'site' must be a name"):
            load_camera(path)


def test_the_map_counts_contacts_as_the_manifest_does_and_keeps_their_ids(tmp_path):
    """The map's title counted the pieces of contacts split at the range limit (22 "contacts" where the
    manifest said 19), and its features lost the ``contact_id`` that ties the pieces together."""
    from dataclasses import replace

    from marsunits.boundary.contact_map import map_title

    piece = ContactLine(np.array([[0.0, 0.0], [5.0, 0.0]]), ground_m=np.array([[1.0, 0.0], [2.0, 0.0]]))
    split = [replace(piece, extra={"contact_id": 0}), replace(piece, extra={"contact_id": 0})]
    entries = [{"lines": split}, {"lines": [replace(piece, extra={"contact_id": 0}), piece]}]
    assert (
        map_title("s1", entries, 30.0)
        == "contact map, site s1: 3 contacts in 4 pieces from 2 images (range <= 30 m)"
    )
    # One of each in the singular ("1 contacts from 1 images"), none in the plural.
    assert map_title(None, [{"lines": [piece]}], 20.0).endswith(": 1 contact from 1 image (range <= 20 m)")
    assert map_title(None, [{"lines": []}], 20.0).endswith(": 0 contacts from 1 image (range <= 20 m)")
    a = _pinhole(pitch_deg=20.0, site="s1")
    numbered = number_contacts([_row_line(a, 180.0), _row_line(a, 200.0)])
    (geojson, _) = build_contact_map([("a.png", numbered, a)], tmp_path / "map")
    ids = [f["properties"]["contact_id"] for f in json.loads(geojson.read_text())["features"]]
    assert ids == [0, 1]


@pytest.mark.parametrize(
    ("pin", "beyond"),
    [
        (PinholeCamera(1024, 1024, 90.0, 30.0, k1=-0.1), (2.0, 1022.0)),
        (PinholeCamera(200, 100, 150.0, 45.0, k1=-0.25, k2=0.02), (2.5, 32.5)),
    ],
    ids=["barrel", "rising-again"],
)
def test_a_cahvor_pixel_beyond_the_lens_fold_has_no_ray_as_with_the_pinhole(
    pin: PinholeCamera, beyond: tuple[float, float]
) -> None:
    """Beyond the radius where a barrel-distorted lens folds back a pixel has no ray (the pinhole model gives
    NaN there). CAHVOR kept the unconverged Newton iterate, a ray that projected back 600 px away, and its
    made-up metres went to the contact files and the map ("barrel", ground (-0.19, 1.83) m); where ``k2 > 0``
    the polynomial rises again past its fold and Newton converged there ("rising-again": an undistorted
    radius of 3.56 with the fold at 1.32, a ground point 28 m away). Both models agree, pixel by pixel."""
    from marsunits.boundary.camera.cahv import cahvor_from_pinhole

    cv = cahvor_from_pinhole(pin)
    u, v = np.meshgrid(
        np.linspace(0.5, pin.image_width - 0.5, 64), np.linspace(0.5, pin.image_height - 0.5, 64)
    )
    u, v = u.ravel(), v.ravel()
    pin_rays, cv_rays = pin.pixel_to_ray(u, v), cv.pixel_to_ray(u, v)
    none = np.isnan(pin_rays).any(axis=-1)
    assert 0 < none.sum() < len(u)  # some corners are beyond the fold
    np.testing.assert_array_equal(np.isnan(cv_rays).any(axis=-1), none)
    np.testing.assert_allclose(cv_rays[~none], pin_rays[~none], atol=1e-9)
    assert np.isnan(cv.pixel_to_ground(np.array([beyond[0]]), np.array([beyond[1]]), 30.0)).all()


def test_a_cahvor_pixel_whose_newton_start_is_past_the_peak_keeps_its_ray():
    """Newton's method stalls when it starts past the distortion polynomial's peak: such pixels, which do
    have a ray, were then given none; every ray given maps back to its pixel."""
    from marsunits.boundary.camera.cahv import CahvorCamera, cahvor_from_pinhole

    base = cahvor_from_pinhole(PinholeCamera(1024, 1024, 90.0, 30.0))
    cv = CahvorCamera(base.C, base.A, base.H, base.V, base.O, [0.171, 0.178, -0.193], 1024, 1024)
    u, v = np.meshgrid(np.linspace(0.5, 1023.5, 64), np.linspace(0.5, 1023.5, 64))
    u, v = u.ravel(), v.ravel()
    rays = cv.pixel_to_ray(u, v)
    ok = ~np.isnan(rays).any(axis=-1)
    assert 0 < (~ok).sum() < len(u) // 10  # the far corners are beyond the fold
    back = cv.world_to_pixel(cv.C + 5.0 * rays[ok])
    np.testing.assert_allclose(back, np.stack([u[ok], v[ok]], axis=-1), atol=1e-6)
    (ray,) = cv.pixel_to_ray(np.array([156.6]), np.array([0.5]))  # Newton's start lies past the peak here
    np.testing.assert_allclose(cv.world_to_pixel(cv.C + 5.0 * ray), [156.6, 0.5], atol=1e-6)


def test_angles_in_radians_and_short_vectors_in_a_pds_frame_are_named(tmp_path):
    """``"yaw_rad": 1.5708`` was ignored (yaw 0, the ground contacts turned 90 degrees) without a word, and a
    two-number vector in a PDS (NED) frame file got numpy's "operands could not be broadcast" message; a PDS
    frame vector refused for its norm or a NaN was quoted turned to z up, in numpy's repr, not as written."""
    cam = _pinhole(pitch_deg=20.0)
    path = tmp_path / "c.camera.json"
    # Other names of the angles, or radians, in place of the key read (they were read as absent: yaw 0).
    for key, meant, said in (
        ("yaw_rad", "yaw_deg", r"'yaw_rad' is not read: angles are in degrees.*90 degrees"),
        ("roll_rad", "roll_deg", r"'roll_rad' is not read: angles are in degrees.*90 degrees"),
        ("pitch_rad", "pitch_deg", r"'pitch_rad' is not read: angles are in degrees"),
        ("azimuth_deg", "yaw_deg", r"'azimuth_deg' is not read by a 'pinhole' camera.*use yaw_deg"),
        ("heading_deg", "yaw_deg", r"'heading_deg' is not read .*use yaw_deg"),
        ("elevation_deg", "pitch_deg", r"'elevation_deg' is not read .*use pitch_deg .*positive looks DOWN"),
    ):
        d = {k: v for k, v in cam.to_dict().items() if k != meant}
        path.write_text(json.dumps({**d, key: 1.5707963}))
        with pytest.raises(CameraFileError, match=said):
            load_camera(path)
        # Beside the key read, such a value is metadata (a rover heading, say): the file stays valid.
        path.write_text(json.dumps({**cam.to_dict(), meant: 0.0, key: 1.5707963}))
        load_camera(path)
    d = cahv_from_pinhole(cam).to_dict()
    for frame in ("flu", "pds", "ned"):
        path.write_text(json.dumps({**d, "frame": frame, "C": [0.0, 0.0]}))
        with pytest.raises(
            CameraFileError, match=r"CAHV vector C must be 3 finite numbers, got \[0\.0, 0\.0\]"
        ):
            load_camera(path)
        # The refusal quotes the file's numbers, not those turned from the PDS frame (numpy's repr of them).
        cv = _cahvor().to_dict()
        for key, value, said in (
            ("A", [1, 1, 0], r"CAHV vector A must be a unit vector, got \[1, 1, 0\] \(norm 1\.414214\)"),
            ("O", [0, 2, 0], r"CAHV vector O must be a unit vector, got \[0, 2, 0\]"),
            (
                "H",
                [1.0, float("nan"), 2.0],
                r"CAHV vector H must be 3 finite numbers, got \[1\.0, nan, 2\.0\]",
            ),
        ):
            path.write_text(json.dumps({**cv, "frame": frame, key: value}))
            with pytest.raises(CameraFileError, match=said):
                load_camera(path)


def test_densify_interpolates_vertex_confidence_along_the_length():
    """Vertices inserted by ``densify_px`` get the confidence interpolated linearly along the line, by length:
    on a line of a 1 px and a 10 px segment, not by vertex number."""
    from marsunits.boundary.projection import densify

    line = ContactLine(
        np.array([[0.0, 5.0], [1.0, 5.0], [11.0, 5.0]]), 0.5, vertex_confidence=np.array([0, 1, 0.0])
    )
    dense = densify(line, 1.0)
    assert len(dense.pixels) == 12
    np.testing.assert_allclose(dense.vertex_confidence, np.interp(dense.pixels[:, 0], [0, 1, 11], [0, 1, 0]))


def test_the_pieces_of_a_contact_keep_its_confidence_along_the_pixel_line():
    """A straight contact across a 90-degree view, its ends beyond the range, with a confidence rising from
    0.2 at one end to 1 at the other: every vertex of every piece, the inserted range cuts and the probe in
    the middle included, has the confidence of its place on the pixel line, and the piece on the ground the
    mean along its length (for a linear confidence, the confidence at its middle)."""
    pin = PinholeCamera(1024, 768, 90.0, 5.0, height_m=2.0, site="s")
    ends = pin.world_to_pixel(np.array([[25.0, 20.0, 0.0], [25.0, -20.0, 0.0]]))
    line = ContactLine(ends, confidence=0.6, vertex_confidence=np.array([0.2, 1.0]))
    pieces = add_ground([line], pin, max_range_m=30.0, keep_unprojected=True)
    assert [p.ground_m is not None for p in pieces] == [False, True, False]

    def along(p: np.ndarray) -> np.ndarray:
        return 0.2 + 0.8 * np.linalg.norm(p - ends[0], axis=-1) / np.linalg.norm(ends[1] - ends[0])

    for piece in pieces:
        np.testing.assert_allclose(piece.vertex_confidence, along(piece.pixels), atol=1e-9)
    near = pieces[1]
    assert near.confidence == pytest.approx(along((near.pixels[0] + near.pixels[-1]) / 2), abs=1e-9)


def test_a_line_within_range_comes_out_unchanged_whatever_the_other_lines():
    """Lines are projected together: a line beside one that reaches the range edge within 0.01 px of its
    vertex (no cut inserted) and one above the horizon (cut nowhere: the lines do not join) keeps exactly its
    vertices and its confidence. A segment that crosses the edge 0.5 px from its vertex keeps that half
    pixel, cut on the edge."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0)
    rng_m = 15.0
    # The row of the image centre column whose ground point is rng_m ahead (flat ground, no roll or yaw).
    v_edge = 120.0 + pin.focal_px * math.tan(math.atan(2.0 / rng_m) - math.radians(20.0))
    at_edge = ContactLine(np.array([[160.0, v_edge + 0.005], [160.0, v_edge - 20.0]]), confidence=0.5)
    inside = ContactLine(np.array([[100.0, 230.0], [160.0, 220.0], [220.0, 231.0]]), confidence=0.7)
    sky = _row_line(pin, 10.0)
    for order in ([at_edge, inside, sky], [sky, inside, at_edge], [inside, sky]):
        (out,) = add_ground(order, pin, max_range_m=rng_m)
        np.testing.assert_array_equal(out.pixels, inside.pixels)
        assert out.confidence == 0.7
    half = ContactLine(np.array([[160.0, v_edge + 0.5], [160.0, v_edge - 20.0]]), confidence=0.5)
    (piece,) = add_ground([half], pin, max_range_m=rng_m)
    np.testing.assert_allclose(piece.pixels, [[160.0, v_edge + 0.5], [160.0, v_edge]], atol=1e-6)
    assert np.hypot(*piece.ground_m[-1]) == pytest.approx(rng_m, rel=1e-6)


@pytest.mark.parametrize("model", ["pinhole", "cahv", "cahvor"])
def test_the_range_limit_is_measured_from_the_camera_not_the_site_origin(model):
    """A camera 100 m from the site origin: a ground point is kept exactly when it lies within
    ``max_range_m`` of the camera, horizontally."""
    pin = _pinhole(pitch_deg=25.0, yaw_deg=30.0, x_m=100.0, y_m=-60.0)
    cam = {"pinhole": pin, "cahv": cahv_from_pinhole(pin), "cahvor": cahvor_from_pinhole(pin)}[model]
    u, v = _pixels(cam)
    everywhere = cam.pixel_to_ground(u, v)
    reach = np.hypot(everywhere[:, 0] - 100.0, everywhere[:, 1] + 60.0)
    near = cam.pixel_to_ground(u, v, max_range_m=8.0)
    np.testing.assert_array_equal(np.isfinite(near[:, 0]), reach <= 8.0)
    assert 0 < (reach <= 8.0).sum() < np.isfinite(reach).sum()


@pytest.mark.parametrize("model", ["pinhole", "cahv", "cahvor"])
def test_a_point_behind_the_camera_has_no_pixel(model):
    pin = _pinhole(pitch_deg=10.0, yaw_deg=30.0)
    cam = {"pinhole": pin, "cahv": cahv_from_pinhole(pin), "cahvor": cahvor_from_pinhole(pin)}[model]
    forward = pin.R[2]
    ahead, behind = pin.center + 5.0 * forward, pin.center - 5.0 * forward
    assert np.isfinite(cam.world_to_pixel(ahead)).all()
    assert np.isnan(cam.world_to_pixel(behind)).all()


def test_ned_to_flu_is_a_proper_rotation_about_north():
    """NED (x north, y east, z down) to FLU (x north, y west, z up): a proper rotation (cross products are
    kept, so a camera's handedness is), its own inverse; north stays x, east becomes -y and down -z."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 10, 3))
    np.testing.assert_allclose(np.cross(ned_to_flu(a), ned_to_flu(b)), ned_to_flu(np.cross(a, b)), atol=1e-12)
    np.testing.assert_allclose(ned_to_flu(ned_to_flu(a)), a)
    np.testing.assert_allclose(
        ned_to_flu([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), np.diag([1, -1, -1])
    )


def test_the_first_peak_of_the_cahvor_polynomial_is_where_it_first_stops_rising():
    """``f(x) = x - x^3 + 0.2 x^5`` rises to ``x = sqrt((3 - sqrt 5) / 2)``, falls, and rises again past
    ``sqrt((3 + sqrt 5) / 2)``: the lens folds at the first of the two."""
    from marsunits.boundary.camera.cahv import _first_peak

    peak = _first_peak(1.0, np.array([-1.0]), np.array([0.2]))
    np.testing.assert_allclose(peak, math.sqrt((3 - math.sqrt(5)) / 2))
    np.testing.assert_allclose(_first_peak(1.0, np.array([-1.0]), np.array([0.0])), math.sqrt(1 / 3))
    assert np.isinf(_first_peak(1.0, np.array([1.0]), np.array([0.2]))).all()


def test_the_map_features_are_the_lines_ground_coordinates_and_the_footprint_is_about_the_camera(tmp_path):
    """Each feature of the site map holds its line's ``ground_m`` as ``[x, y]`` (metres); a camera 60 m from
    the site origin has its view footprint within ``max_range_m`` of itself."""
    cam = _pinhole(pitch_deg=20.0, yaw_deg=30.0, x_m=50.0, y_m=-30.0, site="s")
    (line,) = add_ground([_row_line(cam, 180.0)], cam, max_range_m=20.0)
    gj, _ = build_contact_map([("a.png", [line], cam)], tmp_path, max_range_m=20.0)
    data = json.loads(gj.read_text())
    (feature,) = data["features"]
    np.testing.assert_allclose(feature["geometry"]["coordinates"], line.ground_m, atol=1e-4)
    (camera,) = data["cameras"]
    footprint = np.array(camera["footprint_m"])
    assert len(footprint) > 3
    assert (np.hypot(footprint[:, 0] - 50.0, footprint[:, 1] + 30.0) <= 20.0 + 1e-3).all()
    assert shapely.Polygon(footprint).buffer(1e-3).contains(shapely.LineString(line.ground_m))


@pytest.mark.parametrize("blocked", ["contact_map.geojson", "contact_map_s2.png"])
def test_a_folder_holding_a_map_name_is_refused_before_any_map_is_written(tmp_path, blocked):
    cams = [
        _pinhole(pitch_deg=20.0, site=site)
        for site in (["s1", "s2"] if blocked.startswith("contact_map_") else ["s"])
    ]
    (tmp_path / blocked).mkdir()
    items = [(f"{i}.png", [_row_line(c, 200.0)], c) for i, c in enumerate(cams)]
    with pytest.raises(
        IsADirectoryError, match=rf"contact map {re.escape(str(tmp_path / blocked))}: a folder"
    ):
        build_contact_map(items, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [blocked]  # nothing written beside it


def test_map_file_names_do_not_depend_on_the_order_of_the_images(tmp_path):
    """Sites whose file names coincide are numbered in site-name order, so a folder listed in another order
    gives each site the same file."""
    cams = [_pinhole(pitch_deg=20.0, site=site) for site in ("B/x", "B x", "b_X")]
    items = [(f"{c.site}.png", [_row_line(c, 180.0)], c) for c in cams]

    def files(order):
        paths = build_contact_map(order, tmp_path / str(len(list(tmp_path.iterdir()))))
        return {p.name: json.loads(p.read_text())["site"] for p in paths if p.suffix == ".geojson"}

    assert files(items) == files(items[::-1]) == files(items[1:] + items[:1])


@pytest.mark.parametrize("orientation", range(2, 9))
def test_orient_camera_wraps_every_orientation_but_the_first(orientation):
    """``orient_camera`` leaves only orientation 1 (and no camera) as it is: a mirrored photo (2) sees the
    ray of the stored pixel mirrored about the middle column."""
    from marsunits.boundary.camera.oriented import orient_camera

    cam = _pinhole(pitch_deg=20.0)
    assert orient_camera(cam, 1) is cam and orient_camera(None, orientation) is None
    oriented = orient_camera(cam, orientation)
    np.testing.assert_allclose(
        oriented.pixel_to_ray(*_pixels(oriented)),
        OrientedCamera(cam, orientation).pixel_to_ray(*_pixels(oriented)),
    )
    if orientation == 2:
        u, v = _pixels(cam)
        np.testing.assert_allclose(oriented.pixel_to_ray(u, v), cam.pixel_to_ray(cam.image_width - u, v))


def test_a_cahv_camera_whose_h_and_v_are_parallel_is_refused():
    d = cahv_from_pinhole(_pinhole(pitch_deg=20.0))
    with pytest.raises(ValueError, match="H and V are parallel"):
        CahvCamera(d.C, d.A, d.H, 2.0 * d.H, d.image_width, d.image_height)


def test_a_camera_file_that_is_no_readable_file_is_named_not_taken_for_none(tmp_path):
    """A sidecar that is a link to nowhere, a folder or a pipe counted as no camera file: the image lost its
    ground coordinates without a word. A pipe must be refused without being opened (it is read for ever)."""
    image = tmp_path / "a.png"
    sidecar = tmp_path / "a.camera.json"
    assert find_camera_file(image) is None  # no camera file at all: still none
    sidecar.symlink_to(tmp_path / "elsewhere.json")
    assert find_camera_file(image) == sidecar
    with pytest.raises(CameraFileError, match="a.camera.json: a symbolic link to .*elsewhere.json"):
        find_camera(image)
    sidecar.unlink()
    sidecar.mkdir()
    with pytest.raises(CameraFileError, match="a.camera.json: a folder"):
        find_camera(image)
    sidecar.rmdir()
    os.mkfifo(sidecar)
    with pytest.raises(CameraFileError, match="a.camera.json: a special file"):
        find_camera(image)


@pytest.mark.parametrize("where", ["hfov_deg", "K"])
def test_a_whole_number_beyond_any_float_is_refused_naming_its_key(tmp_path, where):
    """``float()`` of such a number raises ``OverflowError``, which is no ``ValueError``: it escaped as a
    traceback that ended the whole prediction run."""
    d = _pinhole(pitch_deg=20.0).to_dict()
    huge = 10**400
    if where == "K":
        d["K"][0][0] = huge
    else:
        d.pop("K")
        d[where] = huge
    path = tmp_path / "c.camera.json"
    path.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match=f"c.camera.json: '{where}' holds a whole number of 401 digits"):
        load_camera(path)


def _tilted_cahvor(pin: PinholeCamera, tilt_deg: float):
    """The CAHVOR of ``pin`` with its distortion axis ``O`` turned ``tilt_deg`` off ``A`` (to the right)."""
    from marsunits.boundary.camera.cahv import CahvorCamera, cahvor_from_pinhole

    cv = cahvor_from_pinhole(pin)
    t = math.radians(tilt_deg)
    o = math.cos(t) * pin.R[2] + math.sin(t) * pin.R[0]
    return CahvorCamera(cv.C, cv.A, cv.H, cv.V, o, cv.R, pin.image_width, pin.image_height)


@pytest.mark.parametrize("tilt_deg", [0.0, 4.0])
@pytest.mark.parametrize(("k1", "k2"), [(-0.2, 0.0), (-0.25, 0.02)], ids=["barrel", "rising-again"])
def test_a_ground_point_beyond_the_cahvor_fold_projects_to_no_pixel(k1: float, k2: float, tilt_deg: float):
    """CAHVOR's distortion (``1 + mu`` scaling ``lambda``) folds as the pinhole's does: a ground point past
    the fold about ``O`` was put back inside the image. Such points have no pixel now, every pixel given has
    a ray pointing at its point, and the fold is the pinhole's for the CAHVOR made from it."""
    from marsunits.boundary.camera.cahv import cahvor_from_pinhole

    pin = PinholeCamera(128, 96, hfov_deg=60, pitch_deg=20, k1=k1, k2=k2)
    cv = _tilted_cahvor(pin, tilt_deg)
    assert cv.fold_radius() == pytest.approx(pin.fold_radius(), rel=1e-12)
    g = np.linspace(-30.0, 30.0, 121)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    pts = np.c_[x, y, np.zeros_like(x)]
    p = pts - cv.C
    omega = p @ cv.O
    front = omega > 1e-9
    s = np.linalg.norm(p - omega[:, None] * cv.O, axis=1) / np.where(front, omega, 1.0)
    beyond = front & (s > cv.fold_radius())
    formula = cv._linear_project(cv.distort(p))  # the distortion formula, fold or not
    in_image = np.isfinite(formula).all(axis=1) & (formula >= 0).all(axis=1)
    in_image &= (formula[:, 0] <= 128) & (formula[:, 1] <= 96)
    assert (beyond & in_image).sum() > 20  # the fold lies on the ground in range and folds points inside

    px = cv.world_to_pixel(pts)
    assert np.isnan(px[beyond | ~front]).all()
    seen = front & ~beyond
    assert np.isfinite(px[seen]).all()
    rays = cv.pixel_to_ray(px[seen, 0], px[seen, 1])
    np.testing.assert_allclose(rays, p[seen] / np.linalg.norm(p[seen], axis=1, keepdims=True), atol=1e-9)
    if tilt_deg == 0.0:  # the same camera as the pinhole: the same pixels, and the same points without one
        same = cahvor_from_pinhole(pin).world_to_pixel(pts)
        np.testing.assert_allclose(same, pin.world_to_pixel(pts), atol=1e-6)


def test_a_cahvor_lens_that_images_nothing_in_order_projects_no_point():
    """``1 + r0 <= 0`` inverts the image about ``O`` at once: ``pixel_to_ray`` gives no pixel a ray, and so
    ``world_to_pixel`` gives no point a pixel, the axis included."""
    cv = _tilted_cahvor(PinholeCamera(64, 48, hfov_deg=60, pitch_deg=20), 0.0)
    from marsunits.boundary.camera.cahv import CahvorCamera

    bad = CahvorCamera(cv.C, cv.A, cv.H, cv.V, cv.O, [-1.2, 0.0, 0.0], 64, 48)
    assert bad.fold_radius() == 0.0
    assert np.isnan(bad.pixel_to_ray(np.array([32.0]), np.array([24.0]))).all()
    assert np.isnan(bad.world_to_pixel(np.array([cv.C + 5.0 * cv.O, cv.C + 5.0 * cv.O + [0, 0.1, 0]]))).all()


@pytest.mark.parametrize("r0", [-1.0, -1.2, -30.0])
@pytest.mark.parametrize("frame", ["flu", "ned"])
def test_a_cahvor_file_whose_lens_images_nothing_in_order_is_refused(tmp_path, r0, frame):
    """A CAHVOR file with ``1 + r0 <= 0`` (a typo, or a bad conversion) was read: a camera whose pixels have
    no ray, so its image came out without ground coordinates and without a word on why. It is refused,
    naming the file, ``R`` and its ``r0``, and what is expected; an ``r0`` above -1 is read."""
    d = _cahvor().to_dict()
    if frame == "ned":
        from marsunits.boundary.camera.cahv import ned_to_flu

        d = {**d, **{k: ned_to_flu(d[k]).tolist() for k in "CAHVO"}, "frame": "ned"}
    path = tmp_path / "cv.camera.json"
    path.write_text(json.dumps({**d, "R": [r0, 0.01, 0.0]}))
    said = (
        rf"cv\.camera\.json: invalid 'cahvor' camera: 'R' \[{r0}, 0\.01, 0\.0\] has r0 = {r0:g}, so "
        rf"1 \+ r0 = {1 + r0:g} <= 0.*r0 must be > -1; real CAHVOR R vectors have r0 near 0"
    )
    with pytest.raises(CameraFileError, match=said):
        load_camera(path)
    path.write_text(json.dumps({**d, "R": [-0.5, 0.01, 0.0]}))  # compressed, but a lens: it has rays
    cam = load_camera(path)
    assert np.isfinite(cam.pixel_to_ray(np.array([32.0]), np.array([24.0]))).all()


@pytest.mark.parametrize(
    "pose",
    [
        {"hfov_deg": 100.0, "pitch_deg": 40.0},  # the whole image border lies beyond the fold
        {"hfov_deg": 80.0, "pitch_deg": 40.0, "yaw_deg": 30.0},  # the fold cuts the image corners
        {"hfov_deg": 90.0, "pitch_deg": 15.0, "roll_deg": 10.0, "x_m": 3.0},
    ],
)
@pytest.mark.parametrize("model", ["pinhole", "cahvor"])
def test_the_footprint_of_a_lens_that_folds_inside_the_image_is_all_it_sees(pose, model):
    """Border pixels beyond the fold have no ray: dropped from the border walk, the footprint was cut by
    chords across the ground the fold's edge bounds (13 m^2 of 22), or was empty (a camera seeing 29 m^2
    within 5 m drew none). Its area is now the area of the range disc the camera sees (ground points within
    the fold whose pixel is in the image), and it holds the ground point of every pixel of a dense grid."""
    from marsunits.boundary.camera.cahv import cahvor_from_pinhole

    pin = PinholeCamera(128, 96, k1=-0.2, height_m=2.0, **pose)
    cam = pin if model == "pinhole" else cahvor_from_pinhole(pin)
    u, v = np.meshgrid(np.linspace(0, 128, 129), np.linspace(0, 96, 97))
    assert np.isnan(cam.pixel_to_ray(u, v)).any()  # the fold lies inside the image
    for max_range_m in (5.0, 10.0, 30.0):
        fp = shapely.Polygon(view_footprint(cam, max_range_m=max_range_m))
        area, seen = _seen_area(cam, max_range_m)
        assert fp.is_valid and fp.area == pytest.approx(area, rel=0.005)
        assert shapely.contains_xy(fp.buffer(0.01), seen[:, 0], seen[:, 1]).all()
        g = cam.pixel_to_ground(u.ravel(), v.ravel(), max_range_m)
        g = g[np.isfinite(g).all(axis=1)]
        assert len(g) > 100 and shapely.contains_xy(fp.buffer(0.01), g[:, 0], g[:, 1]).all()


def test_the_footprints_of_mildly_distorted_synthetic_cameras_are_as_before():
    """The synthetic generator keeps its lenses' folds outside the image, so the border pixels all have
    rays and bending the walk in to the fold (``_inside_the_fold``) changes none of the 8 footprints, to the
    last bit; and each is still the part of the range disc its camera sees."""
    from marsunits.data.synthetic.config import SceneConfig
    from marsunits.data.synthetic.scene import draw_camera, scene_rng

    cfg = SceneConfig(width=128, height=96, distortion=True, hfov_deg_range=(60.0, 90.0))
    cameras = [draw_camera(scene_rng(3, i), cfg) for i in range(8)]
    assert sum(c.k1 < 0 for c in cameras) >= 2  # barrel-distorted lenses among them
    for cam in cameras:
        fp = view_footprint(cam, max_range_m=30.0)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(contact_map, "_inside_the_fold", lambda camera, u, v: (u, v))
            walked = view_footprint(cam, max_range_m=30.0)
        np.testing.assert_array_equal(fp, walked)
        area, _ = _seen_area(cam, 30.0)
        assert shapely.Polygon(fp).area == pytest.approx(area, rel=0.01)


def test_the_contact_map_of_an_image_named_in_latin_1_is_valid_utf_8(tmp_path):
    """An image whose name is not UTF-8 (Linux bytes ``caf\\xe9.png`` from an old archive; Python holds the
    byte as a lone surrogate) was written into ``contact_map.geojson`` as ``"\\udce9"``: JSON that strict
    readers refuse. The name is written as ``manifest.csv`` writes it, ``caf\\xe9.png``."""
    pin = _pinhole(pitch_deg=20.0, height_m=2.0, site="s")
    name = os.fsdecode(b"caf\xe9.png")
    lines = add_ground([_row_line(pin, 200.0)], pin, max_range_m=30.0)
    paths = build_contact_map([(name, lines, pin)], tmp_path / "map", max_range_m=30.0)
    geojson = next(p for p in paths if p.suffix == ".geojson")
    data = json.loads(geojson.read_bytes().decode("utf-8"))  # strict: no lone surrogate escapes
    (feature,) = data["features"]
    assert feature["properties"]["image"] == "caf\\xe9.png"
    assert [c["image"] for c in data["cameras"]] == ["caf\\xe9.png"]
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # every string encodes strictly
    assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)


def test_readme_camera_file_table_is_one_table_with_a_row_per_model():
    """docs/cameras.md: one Markdown table lists every model a camera file may name, with its required
    keys. A blank line inside it (before the ``cahvore`` row) ended the table there, so that row rendered as
    a paragraph of pipes and the table seemed to stop at ``cahvor``."""
    from conftest import REPO_ROOT
    from marsunits.boundary.camera.io import _REQUIRED

    lines = (REPO_ROOT / "docs" / "cameras.md").read_text(encoding="utf-8").splitlines()
    head = lines.index("| `model` | required keys | optional keys |")
    assert lines[head + 1].startswith("|---")
    end = head + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    rows = {re.match(r"\| `(\w+)` \|", line).group(1): line for line in lines[head + 2 : end]}  # type: ignore[union-attr]
    assert sorted(rows) == sorted(_REQUIRED)
    for model, line in rows.items():  # each required key is named in its row's required column
        required = line.split(" | ")[1]
        if not required.startswith("as "):  # "as `cahvor` plus ..." names only what it adds
            assert all(f"`{key}`" in required for key in _REQUIRED[model]), model


def test_readme_camera_file_table_says_which_way_the_pinhole_angles_turn():
    """docs/cameras.md: the pinhole row named ``pitch_deg``, ``yaw_deg`` and ``roll_deg`` without their
    signs, so a camera file written with an elevation (negative looks down) looked up and gave its image no
    metres. The README says each sign, and the camera model turns that way."""
    from conftest import REPO_ROOT

    lines = (REPO_ROOT / "docs" / "cameras.md").read_text(encoding="utf-8").splitlines()
    row = next(line for line in lines if line.startswith("| `pinhole` |"))
    assert "`pitch_deg` (degrees below the horizon: positive looks down;" in row
    assert "`yaw_deg` (degrees, positive turns left: counter-clockwise seen from above," in row
    assert "`roll_deg` (degrees, positive turns the camera clockwise about its axis seen from behind" in row
    centre = (np.array([160.0]), np.array([120.0]))
    assert _pinhole(pitch_deg=20.0).pixel_to_ground(*centre)[0, 0] > 0  # ahead: it looks down
    assert not np.isfinite(_pinhole(pitch_deg=-20.0).pixel_to_ground(*centre)).all()  # up: no ground
    assert _pinhole(pitch_deg=20.0, yaw_deg=30.0).pixel_to_ground(*centre)[0, 1] > 0  # y is left
    left, right = _pinhole(pitch_deg=5.0, roll_deg=10.0).horizon_v(np.array([0.0, 320.0]))
    assert right < left  # the horizon tilts counter-clockwise in the image (rows count down)


@pytest.mark.parametrize("max_range_m", [1e200, 1e300])
def test_a_huge_range_gives_a_footprint_and_a_map_not_a_geos_error(tmp_path, max_range_m):
    """predict.py takes any finite max_range_m ("no limit": 1e300): the footprint was cut in metres, and GEOS
    failed on a disc of radius 1e200 ("TopologyException: side location conflict"), so the contact map of a
    run with a camera was never written. The footprint is cut in units of the range (the cut is the same at
    any scale): a valid polygon, no farther than the range, whose near edge is the one any range gives."""
    cam = _pinhole(pitch_deg=20.0, x_m=3.0, site="s")
    fp = view_footprint(cam, max_range_m=max_range_m)
    poly = shapely.Polygon((fp - cam.center[:2]) / max_range_m)  # its area in m^2 would overflow
    assert poly.is_valid and poly.area > 0
    assert np.hypot(*(fp - cam.center[:2]).T).max() <= max_range_m * (1 + 1e-9)
    near = np.hypot(*(view_footprint(cam, max_range_m=50.0) - cam.center[:2]).T).min()
    assert np.hypot(*(fp - cam.center[:2]).T).min() == pytest.approx(near, rel=1e-6)
    line = ContactLine(np.array([[100.0, 200.0], [220.0, 190.0]]), confidence=0.9)
    written = build_contact_map([("a.png", [line], cam)], tmp_path, max_range_m=max_range_m)
    data = json.loads(written[0].read_text())
    assert len(data["features"]) == 1 and len(data["cameras"][0]["footprint_m"]) > 3


def test_add_ground_names_what_a_notebook_user_passes_wrongly() -> None:
    """One line for the list, bare pixel arrays, a camera file's dict or None for the camera, a range typed as
    a string, densify_px=0: each failed deep inside (not iterable, no attribute 'pixels' or 'pixel_to_ground',
    numpy's or GEOS's own words); now refused naming the argument and what to give."""
    cam = _pinhole(pitch_deg=30.0)
    line = ContactLine(pixels=np.array([[10.0, 200.0], [300.0, 200.0]]), confidence=0.9)
    (grounded,) = add_ground([line], cam)
    assert grounded.ground_m is not None and grounded.ground_m.shape == (2, 2)
    assert len(add_ground(iter([line]), cam)) == 1  # any iterable of lines
    with pytest.raises(
        TypeError, match=r"lines must be a list of ContactLine.*got one ContactLine; give \[it\]"
    ):
        add_ground(line, cam)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"lines\[0\] must be a ContactLine.*ContactLine\(pixels=array\)"):
        add_ground([line.pixels], cam)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"camera must be a camera model.*dict; camera_from_dict"):
        add_ground([line], cam.to_dict())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"camera must be a camera model.*NoneType"):
        add_ground([line], None)  # type: ignore[arg-type]
    for bad in ("30", float("nan"), 0.0):
        with pytest.raises(ValueError, match=r"max_range_m must be a number > 0"):
            add_ground([line], cam, max_range_m=bad)  # type: ignore[arg-type]
    for bad in (0, -1.0, math.inf):
        with pytest.raises(ValueError, match=r"densify_px must be"):
            add_ground([line], cam, densify_px=bad)
    assert len(add_ground([line], cam, max_range_m=math.inf, densify_px=5.0)) == 1


@pytest.mark.parametrize("size", [199.5, "200", float("nan"), True])
def test_a_cahv_camera_built_in_python_refuses_an_image_size_that_is_not_whole_pixels(size: object) -> None:
    """``int()`` took 199.5 px as 199 and "200" as 200 without a word (its file would be refused)."""
    A = [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"image_width must be a whole number of pixels"):
        CahvCamera([0, 0, 1], A, [99.5, -200.0, 0.0], [79.5, 0.0, -200.0], size, 160)  # type: ignore[arg-type]
    cam = CahvCamera([0, 0, 1], A, [99.5, -200.0, 0.0], [79.5, 0.0, -200.0], np.int64(200), 160.0)  # type: ignore[arg-type]
    assert (cam.image_width, cam.image_height) == (200, 160)
