"""Camera files from Mars 2020 raw-image metadata (``from_label`` given a ``.json``; ``raw_json``).

The records are written here with numbers of our own, in the layout of the public raw-image feed as
``MarsRaw/mars-raw-utils`` reads it (``src/m20/metadata.rs``): ``imageid``, ``site``, ``drive`` (text),
``attitude`` ``"(w,x,y,z)"``, ``camera`` {``instrument``, ``camera_model_type``,
``camera_model_component_list`` ``"(x,y,z);...;T;P"``}, ``extended`` {``mastAz``, ``mastEl``,
``scaleFactor``, ``subframeRect``, ``dimension``}, ``image_files`` {``full_res``}; a feed page is
``{"images": [...]}`` (``src/m20/remote.rs``). The model is the delivered image's, in the rover frame
(z down), and the attitude turns rover-frame vectors into the site's axes (module docstring of ``raw_json``).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from marsunits.boundary.camera import CahvoreCamera, PinholeCamera, cahv_from_pinhole, ned_to_flu
from marsunits.boundary.camera.from_label import main
from marsunits.boundary.camera.io import load_camera

URL = "https://mars.nasa.gov/mars2020-raw-images/pub/ods/surface/sol/00321/ids/edr/browse/ncam/"


def _attitude(heading_deg: float, pitch_deg: float) -> tuple[np.ndarray, str]:
    """A rover heading ``heading_deg`` (clockwise from north) and pitched ``pitch_deg`` (nose up): the matrix
    turning rover-frame vectors (x forward, y starboard, z down) into the site's axes (x north, y east, z
    down), and the record's ``attitude`` text, scalar first (scipy, not the code under test, composes it)."""
    rot = Rotation.from_euler("ZY", [heading_deg, pitch_deg], degrees=True)
    x, y, z, w = rot.as_quat()
    return rot.as_matrix(), f"({w:.6f},{x:.6f},{y:.6f},{z:.6f})"


def _g(v: Any) -> str:
    return "(" + ",".join(f"{x:.6g}" for x in v) + ")"


def _record(
    imageid: str,
    parts: list[Any],
    kind: str,
    size: tuple[int, int],
    attitude: str,
    *,
    rect: tuple[int, int, int, int] | None = None,
    scale: int = 1,
    instrument: str = "NAVCAM_LEFT",
    full_res: str | None = "",
) -> dict[str, Any]:
    """A raw-image record whose model is ``parts`` (vectors in the rover frame, z down; then T and P); its
    mastAz/mastEl are its axis's in the rover frame, as real records' are."""
    a = np.asarray(parts[1], dtype=float)
    a = a / np.linalg.norm(a)
    text = ";".join(_g(p) if isinstance(p, (list, tuple, np.ndarray)) else f"{p:.1f}" for p in parts)
    record: dict[str, Any] = {
        "imageid": imageid,
        "sol": 321,
        "site": 17,
        "drive": "642",
        "sample_type": "Full",
        "attitude": attitude,
        "camera": {
            "instrument": instrument,
            "filter_name": "UNK",
            "camera_model_type": kind,
            "camera_model_component_list": text,
            "camera_position": _g(parts[0]),
        },
        "extended": {
            "mastAz": f"{math.degrees(math.atan2(a[1], a[0])):.6g}",
            "mastEl": f"{-math.degrees(math.asin(a[2])):.6g}",
            "sclk": "694000000.5",
            "scaleFactor": str(scale),
            "subframeRect": _g(rect or (1, 1, size[0] * scale, size[1] * scale)),
            "dimension": f"({size[0]},{size[1]})",
            "xyz": "(12.3,-4.5,0.2)",
        },
        "image_files": {"full_res": f"{URL}{imageid}01.png" if full_res == "" else full_res},
    }
    if full_res is None:
        del record["image_files"]
    return record


def _rover_pinhole(width: int, height: int) -> dict[str, np.ndarray]:
    """CAHV vectors of a camera on the rover's mast, in the rover frame (x forward, y starboard, z down)."""
    pin = PinholeCamera(
        image_width=width, image_height=height, hfov_deg=60.0, pitch_deg=25.0, yaw_deg=15.0, height_m=1.9
    )
    cahv = cahv_from_pinhole(pin)  # forward, left, up
    return {k: ned_to_flu(getattr(cahv, k)) for k in "CAHV"}  # the same map turns FLU into z down


def _pds_project(vec: dict[str, np.ndarray], p: np.ndarray) -> np.ndarray:
    """A CAHV model's pixel of point ``p`` (PDS coordinates: the top-left pixel's centre is 0, 0)."""
    d = p - vec["C"]
    return np.array([d @ vec["H"], d @ vec["V"]]) / (d @ vec["A"])


def test_a_subframed_downsampled_images_model_is_written_as_the_record_gives_it(tmp_path):
    """The raw feed's model is already the delivered image's (checked on real records: a 4x-binned strip
    from sensor row 1441 has its principal point 1440 / 4 rows above the full frame's): written unchanged,
    the camera file sees a ground point at the sensor's pixel moved by the subframe's offset and divided by
    the scale; adjusting the model for subframeRect/scaleFactor again would move it by 64 and 48 pixels."""
    sensor = _rover_pinhole(512, 384)  # the full sensor's model
    rot, attitude = _attitude(heading_deg=140.0, pitch_deg=-7.0)
    # a point on the level ground (z = 0 in the rover's local level frame) ahead of the camera
    ahead = rot @ np.array([4.0, -1.5, 0.0])
    ground_ned = np.array([ahead[0], ahead[1], 0.0])
    p_rover = rot.T @ ground_ned
    x0, y0, s = 128, 96, 2  # subframeRect (129, 97, 256, 160), 1-based; binned 2 x 2 to 128 x 80
    kx, ky = x0 + (s - 1) / 2, y0 + (s - 1) / 2  # a delivered pixel's centre on the sensor: x0 + s i + 1/2
    delivered = dict(sensor)
    delivered["H"] = (sensor["H"] - kx * sensor["A"]) / s
    delivered["V"] = (sensor["V"] - ky * sensor["A"]) / s
    u_s, v_s = _pds_project(sensor, p_rover)
    want = np.array([(u_s - kx) / s, (v_s - ky) / s])
    np.testing.assert_allclose(_pds_project(delivered, p_rover), want, atol=1e-9)  # the adjustment
    assert 0 <= want[0] < 128 and 0 <= want[1] < 80, want  # the point is in the delivered image
    parts = [delivered[k] for k in "CAHV"]
    record = _record("NLF_0321_0694000000_123ECM_N0170642NCAM00100_01_295J", parts, "CAHV", (128, 80),
                     attitude, rect=(x0 + 1, y0 + 1, 256, 160), scale=s)  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(record))
    assert main([str(tmp_path / "meta.json")]) == 0
    path = tmp_path / "NLF_0321_0694000000_123ECM_N0170642NCAM00100_01_295J01.camera.json"
    d = json.loads(path.read_text())
    assert (d["image_width"], d["image_height"]) == (128, 80)
    assert d["frame"] == "pds" and d["site"] == "LOCAL_LEVEL_(17,642)" and d["ground_z_m"] == 0.0
    cam = load_camera(path)
    target = ned_to_flu(ground_ned)
    np.testing.assert_allclose(cam.world_to_pixel(target) - 0.5, want, atol=0.01)  # 6-digit vectors
    back = cam.pixel_to_ground(np.array([want[0] + 0.5]), np.array([want[1] + 0.5]))[0]
    np.testing.assert_allclose(back, target, atol=2e-3)


def test_a_cahvore_record_of_a_tilted_rover_is_levelled_with_its_entrance_pupil(tmp_path, capsys):
    """A CAHVORE model (T, P after the seven vectors) from a pitched and rolled rover: levelled by the
    record's attitude, the camera is the one built in the level frame, the same ground points; kept in the
    rover frame (--rover-frame), the ground is the tilted plane under the wheels and the ranges differ."""
    pin = PinholeCamera(image_width=160, image_height=120, hfov_deg=70.0, pitch_deg=30.0, yaw_deg=-20.0,
                        height_m=1.9)  # fmt: skip
    lvl = {k: getattr(cahv_from_pinhole(pin), k).astype(float) for k in "CAHV"}  # level frame, FLU
    o = lvl["A"] + np.array([0.01, -0.006, 0.004])
    lvl["O"] = o / np.linalg.norm(o)
    lvl["R"], lvl["E"] = np.array([1e-5, 0.04, -0.012]), np.array([-0.002, 0.009, -0.015])
    truth = CahvoreCamera(**lvl, T=3, P=0.4, image_width=160, image_height=120)
    rot = Rotation.from_euler("ZYX", [-60.0, 8.0, -5.0], degrees=True)
    x, y, z, w = rot.as_quat()
    m = rot.as_matrix()
    parts: list[Any] = [m.T @ ned_to_flu(lvl[k]) for k in "CAHVO"] + [lvl["R"], lvl["E"], 3.0, 0.4]
    record = _record("NRF_0321_0694000001_456ECM_N0170642NCAM00200_01_295J", parts, "CAHVORE", (160, 120),
                     f"({w:.7f},{x:.7f},{y:.7f},{z:.7f})", instrument="NAVCAM_RIGHT")  # fmt: skip
    (tmp_path / "one.json").write_text(json.dumps(record))
    assert main([str(tmp_path / "one.json")]) == 0
    path = tmp_path / "NRF_0321_0694000001_456ECM_N0170642NCAM00200_01_295J01.camera.json"
    d = json.loads(path.read_text())
    assert d["model"] == "cahvore" and d["T"] == 3 and d["P"] == 0.4 and d["E"] == pytest.approx(lvl["E"])
    cam = load_camera(path)
    assert isinstance(cam, CahvoreCamera)
    u, v = np.meshgrid(np.linspace(5, 155, 7), np.linspace(50, 118, 5))
    want = truth.pixel_to_ground(u, v)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(cam.pixel_to_ground(u, v), want, atol=5e-3)
    assert main([str(tmp_path / "one.json"), "--rover-frame", "--overwrite"]) == 0
    kept = load_camera(path)
    assert kept.site == "ROVER_NAV_(17,642)" and json.loads(path.read_text())["frame"] == "flu"
    off = kept.pixel_to_ground(np.array([80.0]), np.array([60.0]))[0] - kept.center
    on = want[2, 3] - truth.center
    assert abs(np.hypot(*off[:2]) - np.hypot(*on[:2])) > 0.1


def test_a_feed_page_of_two_images_writes_one_camera_file_each_named_as_downloaded(tmp_path, capsys):
    """A page of the feed (``images``): one camera file per record, named after the full_res image the
    record points to (``<imageid>01.png`` -> ``<imageid>01.camera.json``), or after its imageid."""
    vec = _rover_pinhole(128, 96)
    _, attitude = _attitude(heading_deg=30.0, pitch_deg=2.0)
    cahvor = [vec[k] for k in "CAHV"] + [vec["A"], [0.0, 0.02, -0.01]]
    page = {
        "images": [
            _record(
                "NLF_0321_0694000002_000ECM_N0170642NCAM00300_01_295J",
                [vec[k] for k in "CAHV"],
                "CAHV",
                (128, 96),
                attitude,
            ),
            _record(
                "ZR0_0321_0694000003_000ECM_N0170642ZCAM08000_1100LMJ",
                cahvor,
                "CAHVOR",
                (128, 96),
                attitude,
                instrument="MCZ_RIGHT",
                full_res=None,
            ),
        ],  # fmt: skip
        "per_page": "2",
        "total_results": 2,
        "page": 0,
        "mission": "mars2020",
        "total_images": 2,
    }
    (tmp_path / "page.json").write_text(json.dumps(page))
    out = tmp_path / "cams"
    assert main([str(tmp_path / "page.json"), "--out-dir", str(out)]) == 0
    assert capsys.readouterr().out.count("wrote ") == 2
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "NLF_0321_0694000002_000ECM_N0170642NCAM00300_01_295J01.camera.json",
        "ZR0_0321_0694000003_000ECM_N0170642ZCAM08000_1100LMJ.camera.json",
    ]
    models = [json.loads((out / n).read_text()) for n in names]
    assert [m["model"] for m in models] == ["cahv", "cahvor"]
    assert [m["raw_imageid"] for m in models] == [n.split(".")[0].removesuffix("01") for n in names]
    assert all(m["raw_json"] == "page.json" for m in models)


def _good(**changes: Any) -> dict[str, Any]:
    vec = _rover_pinhole(128, 96)
    _, attitude = _attitude(heading_deg=30.0, pitch_deg=2.0)
    r = _record("NLF_0321_0694000004_000ECM_N0170642NCAM00400_01_295J", [vec[k] for k in "CAHV"], "CAHV",
                (128, 96), attitude)  # fmt: skip
    for path, value in changes.items():
        *keys, last = path.split("__")
        target = r
        for k in keys:
            target = target[k]
        target[last] = value
    return r


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"sample_type": "Thumbnail"}, "is a thumbnail"),
        ({"camera__instrument": "FRONT_HAZCAM_LEFT_A"}, "FRONT_HAZCAM_LEFT_A's model"),
        ({"camera__camera_model_component_list": "UNK"}, "has no camera model"),
        ({"camera__camera_model_type": "CAHVORE"}, "CAHVORE model has 9 parts"),
        ({"camera__camera_model_type": "PSPH"}, "camera_model_type 'PSPH'"),
        ({"extended__mastAz": "-40"}, "not at the record's mastAz -40"),
        ({"extended__dimension": "UNK"}, "extended.dimension 'UNK'"),
        ({"drive": "UNK"}, "must be whole numbers"),
    ],
)
def test_a_record_that_cannot_be_converted_is_refused_and_the_others_written(tmp_path, capsys, changes, why):
    """Each unusable record is said in one line naming the file and the image; the page's other record is
    still written and the exit status is 1."""
    bad = _good(**changes)
    bad["imageid"] = "BAD_RECORD"
    (tmp_path / "page.json").write_text(json.dumps({"images": [bad, _good()]}))
    assert main([str(tmp_path / "page.json")]) == 1
    out, err = capsys.readouterr()
    assert out.count("wrote ") == 1 and "page.json: BAD_RECORD:" in err and why in err
    assert "1 of 2 raw-image records (from 1 .json file) refused" in err and "labels" not in err


@pytest.mark.parametrize(
    "instrument, folder", [("FRONT_HAZCAM_LEFT_A", "fcam"), ("REAR_HAZCAM_RIGHT", "rcam")]
)
def test_a_hazcam_record_is_refused_saying_which_label_to_give_instead(tmp_path, capsys, instrument, folder):
    """A Hazcam's record carries a model, but nothing in it shows the model's frame (a mast camera's axis is
    checked against the record's mastAz/mastEl; a Hazcam is fixed to the body, and no real Hazcam record was
    found to establish it). The refusal said only "use the image's PDS4 label from the PDS archive": it now
    names the label to give this command instead, the product's .xml in the Hazcam bundle's folder of the
    record's sol, and why the record is not read."""
    bad = _good(camera__instrument=instrument)
    (tmp_path / "haz.json").write_text(json.dumps(bad))
    assert main([str(tmp_path / "haz.json")]) == 1
    err = capsys.readouterr().err
    imageid = bad["imageid"]
    assert f"haz.json: {imageid}: the frame of a {instrument}'s model" in err
    assert "fixed to the rover's body" in err and "mastAz/mastEl" in err
    assert (
        f"give this command the product's PDS4 label instead, {imageid}*.xml from the PDS bundle "
        f"mars2020_hazcam_ops_raw, data/sol/00321/ids/edr/{folder}/ (it names its model's frame" in err
    )
    assert not list(tmp_path.glob("*.camera.json"))


def test_a_hazcam_record_without_an_imageid_is_not_told_to_look_for_a_made_up_name(tmp_path, capsys):
    """The Hazcam refusal names the label as ``<imageid>*.xml``; a record without an ``imageid`` was told
    to look for ``(no imageid)*.xml``, a name no product has. It is told to look for the product's label in
    the sol's folder, without a made-up name."""
    bad = _good(camera__instrument="FRONT_HAZCAM_LEFT_A")
    del bad["imageid"]
    (tmp_path / "haz.json").write_text(json.dumps(bad))
    assert main([str(tmp_path / "haz.json")]) == 1
    err = capsys.readouterr().err
    assert "haz.json: (no imageid): the frame of a FRONT_HAZCAM_LEFT_A's model" in err
    assert "(no imageid)*" not in err and "*.xml" not in err
    assert "the product's PDS4 label (.xml) from the PDS bundle mars2020_hazcam_ops_raw" in err
    assert "data/sol/00321/ids/edr/fcam/" in err


def test_the_count_of_refusals_says_labels_records_and_files_refused_whole_apart(tmp_path, capsys):
    """One record of one .json refused was "1 of 1 labels refused", and a page of two records "1 of 2 labels
    and raw-image records refused", though no label was given: the count says what was given."""
    bad = _good(sample_type="Thumbnail")
    (tmp_path / "one.json").write_text(json.dumps(bad))
    assert main([str(tmp_path / "one.json")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].endswith(": 1 of 1 raw-image record (from 1 .json file) refused")  # not "1 of 1 records"
    (tmp_path / "broken.json").write_text('{"images": [')
    (tmp_path / "page.json").write_text(json.dumps({"images": [bad, _good()]}))
    (tmp_path / "x.LBL").write_text("PDS_VERSION_ID = PDS3\nEND\n")
    args = [str(tmp_path / n) for n in ("x.LBL", "one.json", "page.json", "broken.json")]
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].endswith(
        ": 1 of 1 label refused; 2 of 3 raw-image records (from 2 .json files) refused; 1 of 3 .json files "
        "refused whole (no record read from them)"
    )
    assert main([str(tmp_path / "broken.json")]) == 1
    said = capsys.readouterr().err.splitlines()[-1]
    assert said.endswith(": 1 of 1 .json file refused whole (no record read from it)"), said


def test_a_camera_file_or_broken_json_is_refused_naming_it(tmp_path, capsys):
    (tmp_path / "x.camera.json").write_text(json.dumps({"model": "cahv", "C": [0, 0, 2]}))
    (tmp_path / "broken.json").write_text('{"images": [')
    assert main([str(tmp_path / "x.camera.json"), str(tmp_path / "broken.json")]) == 1
    err = capsys.readouterr().err
    assert "x.camera.json: is a camera file" in err and "broken.json: not valid JSON" in err


def test_without_an_attitude_the_model_stays_in_the_rover_frame_with_a_note(tmp_path, capsys):
    (tmp_path / "m.json").write_text(json.dumps(_good(attitude="UNK")))
    assert main([str(tmp_path / "m.json")]) == 0
    err = capsys.readouterr().err
    assert "not levelled" in err and "attitude 'UNK'" in err
    d = json.loads(next(tmp_path.glob("*.camera.json")).read_text())
    assert d["frame"] == "flu" and d["site"] == "ROVER_NAV_(17,642)" and d["ground_z_m"] == 0.0


def test_one_image_given_twice_or_already_converted_is_not_written_again(tmp_path, capsys):
    r = _good()
    (tmp_path / "a.json").write_text(json.dumps([r, copy.deepcopy(r)]))
    assert main([str(tmp_path / "a.json")]) == 1
    assert "would write" in capsys.readouterr().err
    assert main([str(tmp_path / "a.json")]) == 1  # the duplicate again; the file written is kept as it is
    captured = capsys.readouterr()
    assert "would write" in captured.err and "unchanged " in captured.out
    (tmp_path / "b.json").write_text(json.dumps(r))
    assert main([str(tmp_path / "b.json"), "--ground-z-m", "0.5"]) == 1
    assert "exists and differs; pass --overwrite" in capsys.readouterr().err


def test_ground_option_replaces_the_records_ground_and_says_so(tmp_path, capsys):
    (tmp_path / "g.json").write_text(json.dumps(_good()))
    assert main([str(tmp_path / "g.json"), "--ground-z-m", "-0.3"]) == 0
    assert "--ground-z-m -0.3 replaces the ground the record fixes, 0" in capsys.readouterr().err
    assert json.loads(next(Path(tmp_path).glob("*.camera.json")).read_text())["ground_z_m"] == -0.3


def test_run_as_a_command_a_refused_record_is_one_line_not_a_traceback(tmp_path):
    """``python -m ...from_label`` runs the module as ``__main__``, whose ``LabelError`` is not the one
    ``raw_json`` raises: a refused record ended the run in a traceback and the page's other records were not
    written. Run as the README says, it is one line and the others are written."""
    import os
    import subprocess
    import sys

    import marsunits

    bad = _good(sample_type="Thumbnail")
    bad["imageid"] = "BAD_RECORD"
    (tmp_path / "page.json").write_text(json.dumps({"images": [bad, _good()]}))
    src = str(Path(marsunits.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "marsunits.boundary.camera.from_label", str(tmp_path / "page.json")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in run.stderr and "page.json: BAD_RECORD: is a thumbnail" in run.stderr
    assert run.returncode == 1 and run.stdout.count("wrote ") == 1


def test_a_mars_raw_utils_metadata_summary_is_refused_saying_what_to_give(tmp_path, capsys):
    """mars-raw-utils saves beside each image its own flat summary (src/metadata.rs ``Metadata``: no
    ``camera`` nor ``attitude``); it was refused as "not a Mars 2020 record", which it is."""
    r = _good()
    flat = {"imageid": r["imageid"], "instrument": "NAVCAM_LEFT", "site": 17, "drive": 642, "mast_az": 1.0}
    flat["camera_model_component_list"] = r["camera"]["camera_model_component_list"]
    (tmp_path / "x-metadata.json").write_text(json.dumps(flat))
    assert main([str(tmp_path / "x-metadata.json")]) == 1
    err = capsys.readouterr().err
    assert "x-metadata.json: NLF_0321" in err and "flat metadata summary (as mars-raw-utils saves" in err
    assert "give the record itself" in err


def test_a_metadata_path_starting_with_a_tilde_is_in_the_home_folder(tmp_path, monkeypatch):
    from marsunits.boundary.camera.raw_json import raw_records

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    (home / "m.json").write_text(json.dumps(_good()))
    assert len(raw_records("~/m.json")) == 1
    assert main(["~/m.json", "--out-dir", "~/cams"]) == 0
    assert len(list((home / "cams").glob("*.camera.json"))) == 1 and not (work / "~").exists()


def test_a_ctrl_c_between_records_says_the_files_written_and_the_same_command_goes_on(
    tmp_path, monkeypatch, capsys
):
    """A Ctrl-C in the middle of a feed page printed a KeyboardInterrupt traceback; it is one line counting
    the camera files written from the page's records, status 130, and the same command writes the rest."""
    from marsunits.boundary.camera import raw_json

    page = []
    for n in range(3):
        imageid = f"NLF_0321_069400000{n}_000ECM_N0170642NCAM00400_01_295J"
        page.append(_good(imageid=imageid, image_files__full_res=f"{URL}{imageid}01.png"))
    (tmp_path / "page.json").write_text(json.dumps({"images": page}))
    convert = raw_json.raw_camera_file_dict

    def stopped_at_the_second(img, *args):
        if img.imageid == page[1]["imageid"]:
            raise KeyboardInterrupt
        return convert(img, *args)

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    monkeypatch.setattr(raw_json, "raw_camera_file_dict", stopped_at_the_second)
    assert main([str(tmp_path / "page.json")]) == 130
    out, err = capsys.readouterr()
    assert out.count("wrote ") == 1 and len(list(tmp_path.glob("*.camera.json"))) == 1
    assert err.count("\n") == 1 and "interrupted (Ctrl-C) after writing 1 camera file;" in err, err
    monkeypatch.setattr(raw_json, "raw_camera_file_dict", convert)
    assert main([str(tmp_path / "page.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("unchanged ") == 1 and out.count("wrote ") == 2


def test_a_records_model_for_its_large_jpeg_is_rescaled_by_the_image_size_option(tmp_path, capsys):
    """The service's `large` JPEG of a 160x120 CAHVORE frame is 40x30 (a non-integer factor for the
    strip too: 60x45 and 96x30 below): --image-size gives it the record's model rescaled, its entrance pupil
    and distortion as given; a ray through a copy's pixel (sx u, sy v) meets the ground where the frame's
    (u, v) did, and the file says from which size."""
    pin = PinholeCamera(image_width=160, image_height=120, hfov_deg=70.0, pitch_deg=30.0, height_m=1.9)
    vec = {k: getattr(cahv_from_pinhole(pin), k).astype(float) for k in "CAHV"}
    vec["O"], vec["R"], vec["E"] = vec["A"], np.array([1e-5, 0.04, -0.012]), np.array([-0.002, 0.009, -0.015])
    parts: list[Any] = [ned_to_flu(vec[k]) for k in "CAHVO"] + [vec["R"], vec["E"], 3.0, 0.4]
    record = _record("NRF_0321_0694000001_456ECM_N0170642NCAM00200_01_295J", parts, "CAHVORE", (160, 120),
                     "(1,0,0,0)", instrument="NAVCAM_RIGHT")  # fmt: skip
    (tmp_path / "one.json").write_text(json.dumps(record))
    path = tmp_path / "NRF_0321_0694000001_456ECM_N0170642NCAM00200_01_295J01.camera.json"
    assert main([str(tmp_path / "one.json")]) == 0
    full = load_camera(path)
    u, v = np.meshgrid(np.linspace(5, 155, 7), np.linspace(50, 118, 5))
    want = full.pixel_to_ground(u, v)
    assert np.isfinite(want).all()
    for size in ((40, 30), (60, 45), (96, 30)):
        assert main([str(tmp_path / "one.json"), "--image-size", *map(str, size), "--overwrite"]) == 0
        d = json.loads(path.read_text())
        assert (d["image_width"], d["image_height"]) == size and "160x120" in d["raw_resized"]
        assert d["model"] == "cahvore" and d["T"] == 3 and d["P"] == 0.4 and d["E"] == pytest.approx(vec["E"])
        copy_cam = load_camera(path)
        sx, sy = size[0] / 160, size[1] / 120
        np.testing.assert_allclose(copy_cam.pixel_to_ground(u * sx, v * sy), want, atol=1e-9, rtol=0)
    assert "aspect ratio" in capsys.readouterr().err  # 96x30 stretches the frame: said
