"""Camera files from PDS labels (``python -m marsunits.boundary.camera.from_label``).

The fixtures are written here, with numbers of our own (a pinhole camera turned into CAHV(OR) vectors), in
the layout of real public labels:

* PDS3 detached, MSL style: the Mastcam RDR label ``1664MR0086340000802438C00_DRCL.LBL`` (in USGS ``ale``'s
  test data): ``GROUP = GEOMETRIC_CAMERA_MODEL_PARMS`` with ``MODEL_COMPONENT_ID = ("C","A","H","V")``,
  tuples broken across lines (``( 6.8e-01, 5.2e-01,\\n-1.9e+00 )``), ``REFERENCE_COORD_SYSTEM_NAME =
  ROVER_NAV_FRAME``, ``COORDINATE_SYSTEM_INDEX_NAME`` / ``REFERENCE_COORD_SYSTEM_INDEX`` lists, a
  ``ROVER_COORDINATE_SYSTEM_PARMS`` group referenced to ``SITE_FRAME``, and ``OBJECT = IMAGE`` with
  ``LINES`` / ``LINE_SAMPLES`` at the end;
* PDS3 attached, MSL Navcam EDR style (``NLB_...EDR_F...M1.IMG``): ``RECORD_BYTES``, ``LABEL_RECORDS``,
  ``^IMAGE_HEADER`` / ``^IMAGE`` pointers, the label then binary pixels in one file;
* PDS3, MER style: ``GROUP = GEOMETRIC_CAMERA_MODEL`` (no ``_PARMS``) and ``ROVER_COORDINATE_SYSTEM``;
* PDS4, Mars 2020 style (the IMG dictionary's example label, ``pds-data-dictionaries/ldd-img``):
  ``geom:Geometry`` / ``geom:Geometry_Lander`` (``geom:geometry_state`` Telemetry) /
  ``geom:Camera_Model_Parameters`` with ``geom:model_type``, ``geom:CAHVOR_Model`` (``geom:Vector_Center``
  with ``unit="m"`` positions, ``geom:Vector_Axis`` ``x_unit``.., ``geom:Vector_Horizontal`` ``x_pixel``..,
  ``geom:Radial_Terms`` ``c0..c2``), ``geom:Coordinate_Space_Reference`` / ``geom:Coordinate_Space_Indexed``,
  and ``geom:Coordinate_Space_Definition`` elements whose reference is a ``Local_Internal_Reference``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from marsunits.boundary.camera import (
    CahvCamera,
    CahvorCamera,
    CahvoreCamera,
    PinholeCamera,
    cahv_from_pinhole,
    ned_to_flu,
)
from marsunits.boundary.camera.from_label import LabelError, convert_label, main, read_label
from marsunits.boundary.camera.io import find_camera, load_camera

GROUND = 1.722  # the rover stands 1.722 m above its site frame's origin (ORIGIN_OFFSET_VECTOR z = -1.722)


def _label_vectors(height_m: float, distort: bool) -> dict[str, list[float]]:
    """CAHV(OR) vectors in a z-down PDS frame, rounded as a label prints them (7 significant digits)."""
    pin = PinholeCamera(
        image_width=128, image_height=96, hfov_deg=50.0, pitch_deg=28.0, yaw_deg=-35.0, height_m=height_m,
        x_m=2.5, y_m=-1.25,
    )  # fmt: skip
    cahv = cahv_from_pinhole(pin)
    vec = {k: ned_to_flu(getattr(cahv, k)) for k in "CAHV"}
    if distort:
        O = cahv.A + np.array([0.004, -0.006, 0.003])
        vec["O"] = ned_to_flu(O / np.linalg.norm(O))
        vec["R"] = np.array([0.0012, -0.061, 0.018])
    return {k: [float(f"{x:.6e}") for x in v] for k, v in vec.items()}


def _odl(v: list[float]) -> str:
    """An ODL tuple broken across lines, as MSL labels print them."""
    return f"( {v[0]:.6e}, {v[1]:.6e},\n{v[2]:.6e} )"


def _pds3(
    vec: dict[str, list[float]],
    frame: str = "ROVER_NAV_FRAME",
    group: str = "GEOMETRIC_CAMERA_MODEL_PARMS",
    model_type: str | None = None,
    rover_group: str = "ROVER_COORDINATE_SYSTEM_PARMS",
    rover_frame: str = "ROVER_NAV_FRAME",
    head: str = "",
    drive: int = 660,
    offset: tuple[float, float, float] = (-31.535181, -26.566465, -GROUND),
    quaternion: tuple[float, ...] = (0.1210291, 0.0842448, 0.0035116, -0.9890614),
) -> str:
    letters = [k for k in vec if k not in ("T", "P")]
    ids = ",".join(f'"{k}"' for k in letters)
    comps = "\n".join(
        f" MODEL_COMPONENT_{i + 1}                   = {_odl(vec[k])}" for i, k in enumerate(letters)
    )
    # a CAHVORE's T and P follow as MODEL_COMPONENT_8 and _9, left out of MODEL_COMPONENT_ID (Mars 2020)
    comps += "".join(
        f"\n MODEL_COMPONENT_{8 + i}                   = {vec[k]}" for i, k in enumerate("TP") if k in vec
    )
    index = "(62 )" if frame == "SITE_FRAME" else f"(62, {drive}, 8, \n 0, 0, 0, \n 306, 108, \n 0, 0 )"
    names = (
        '("SITE" )'
        if frame == "SITE_FRAME"
        else '("SITE", "DRIVE", "POSE",\n "ARM", "CHIMRA", "DRILL",\n "RSM", "HGA",\n "DRT", "IC")'
    )
    return f"""PDS_VERSION_ID                    = PDS3
{head}
/* Identification Data Elements */
INSTRUMENT_HOST_ID                  = MSL
INSTRUMENT_ID                       = NAV_LEFT_B
SOURCE_PRODUCT_ID                   =
"NavLRecoveredProduct_0562880080-46707-1"

/* Camera Model Data Elements */

GROUP                              = {group}
 ^MODEL_DESC                         = "GEOMETRIC_CM.TXT"
 FILTER_NAME                         = MASTCAM_R0_CLEAR
 MODEL_TYPE                          = {model_type or ("CAHVOR" if "O" in vec else "CAHV")}
 MODEL_COMPONENT_ID                  = ({ids})
 MODEL_COMPONENT_UNIT                = ("METER", "N/A", "PIXEL", "PIXEL", "N/A", "N/A")
{comps}
 REFERENCE_COORD_SYSTEM_NAME         = {frame}
 COORDINATE_SYSTEM_INDEX_NAME        = {names}
 REFERENCE_COORD_SYSTEM_INDEX        = {index}
END_GROUP                          = {group}

/* Coordinate System State: Rover */

GROUP                              = {rover_group}
 COORDINATE_SYSTEM_NAME              = {rover_frame}
 COORDINATE_SYSTEM_INDEX_NAME        = ("SITE", "DRIVE", "POSE",
                                        "ARM", "CHIMRA", "DRILL",
                                        "RSM", "HGA",
                                        "DRT", "IC")
 COORDINATE_SYSTEM_INDEX             = (62, {drive}, 8, 0, 0, 0, 306, 108, 0, 0 )
 ORIGIN_OFFSET_VECTOR                = ({offset[0]:.6f}, {offset[1]:.6f}, {offset[2]})
 ORIGIN_ROTATION_QUATERNION          = ({", ".join(f"{x:.7f}" for x in quaternion)})
 POSITIVE_AZIMUTH_DIRECTION          = CLOCKWISE
 REFERENCE_COORD_SYSTEM_NAME         = SITE_FRAME
END_GROUP                          = {rover_group}

GROUP                              = DERIVED_IMAGE_PARMS
 MSL:MINIMUM_FOCUS_DISTANCE          = 2.2 <m>
 SAMPLE_BIT_MASK                     = 2#11111111#
END_GROUP                          = DERIVED_IMAGE_PARMS

OBJECT                            = IMAGE
  INTERCHANGE_FORMAT              = BINARY
  LINES                           = 96
  LINE_SAMPLES                    = 128
  SAMPLE_TYPE                     = UNSIGNED_INTEGER
  SAMPLE_BITS                     = 8
  BANDS                           = 1
END_OBJECT                        = IMAGE

END
"""


def _attached_img(path: Path, label: str, encoding: str = "ascii") -> None:
    """The label at the head of an .IMG, padded to whole records, then the binary pixels."""
    record = 128
    records = -(-(len(label) + 200) // record)
    head = f"RECORD_TYPE = FIXED_LENGTH\nRECORD_BYTES = {record}\nLABEL_RECORDS = {records}\n"
    head += f'^IMAGE_HEADER = ("{path.name}", {records})\n^IMAGE = ("{path.name}", {records + 1})\n'
    text = label.replace("PDS_VERSION_ID                    = PDS3\n", f"PDS_VERSION_ID = PDS3\n{head}", 1)
    body = text.encode(encoding).ljust(records * record, b" ")
    pixels = np.random.default_rng(0).integers(0, 256, 128 * 96, dtype=np.uint8).tobytes()
    path.write_bytes(body + pixels)


def _pds4(
    vec: dict[str, list[float]],
    model_type: str = "CAHVOR",
    initial: dict | None = None,
    camera_frame: str = "SITE_FRAME",
    quaternion: tuple[float, ...] | None = None,
) -> str:
    """A Mars 2020 style PDS4 label, camera model in SITE_FRAME 30 (or in ROVER_NAV_FRAME (30, 1344)), rover
    (ROVER_NAV_FRAME) referenced to ``SITE_FRAME_30`` by a local identifier, with ``quaternion`` as its
    ``geom:Quaternion_Plus_Direction`` where given."""
    drive = (
        """<geom:Coordinate_Space_Index>
                  <geom:index_id>DRIVE</geom:index_id>
                  <geom:index_value_number>1344</geom:index_value_number>
                </geom:Coordinate_Space_Index>"""
        if camera_frame == "ROVER_NAV_FRAME"
        else ""
    )
    turn = (
        ""
        if quaternion is None
        else "<geom:Quaternion_Plus_Direction>"
        + "".join(
            f"<geom:{n}>{x!r}</geom:{n}>"
            for n, x in zip(("qcos", "qsin1", "qsin2", "qsin3"), quaternion, strict=True)
        )
        + "<geom:rotation_direction>Forward</geom:rotation_direction></geom:Quaternion_Plus_Direction>"
    )

    def xyz(name: str, v: list[float], kind: str, unit: str = "") -> str:
        u = f' unit="{unit}"' if unit else ""
        return (
            f"<geom:{name}><geom:x_{kind}{u}>{v[0]!r}</geom:x_{kind}>"
            f"<geom:y_{kind}{u}>{v[1]!r}</geom:y_{kind}><geom:z_{kind}{u}>{v[2]!r}</geom:z_{kind}></geom:{name}>"
        )

    def model(v: dict[str, list[float]]) -> str:
        inner = xyz("Vector_Center", v["C"], "position", "m") + xyz("Vector_Axis", v["A"], "unit")
        inner += xyz("Vector_Horizontal", v["H"], "pixel") + xyz("Vector_Vertical", v["V"], "pixel")
        if model_type != "CAHV":
            inner += xyz("Vector_Optical", v["O"], "unit")
            inner += (
                "<geom:Radial_Terms>"
                + "".join(f"<geom:c{i}>{x!r}</geom:c{i}>" for i, x in enumerate(v["R"]))
                + "</geom:Radial_Terms>"
            )
        if model_type == "CAHVORE":  # element order as in a Mars 2020 Navcam label
            e = v.get("E", [-8.0e-09, 1.0e-08, -2.9e-08])
            inner += "<geom:Entrance_Terms>" + "".join(
                f"<geom:c{i}>{x!r}</geom:c{i}>" for i, x in enumerate(e)
            )
            inner += "</geom:Entrance_Terms>"
            if "T" in v:
                inner += f"<geom:cahvore_model_type>{v['T']}</geom:cahvore_model_type>"
            inner += f"<geom:cahvore_model_parameter>{v.get('P', 0.0)}</geom:cahvore_model_parameter>"
        return f"<geom:{model_type}_Model>{inner}</geom:{model_type}_Model>"

    def params(v: dict[str, list[float]]) -> str:
        return f"""<geom:Camera_Model_Parameters>
            <geom:model_type>{model_type}</geom:model_type>
            <geom:calibration_source_id>1</geom:calibration_source_id>
            {model(v)}
            <geom:Coordinate_Space_Reference>
              <geom:Coordinate_Space_Indexed>
                <geom:coordinate_space_frame_type>{camera_frame}</geom:coordinate_space_frame_type>
                <geom:Coordinate_Space_Index>
                  <geom:index_id>SITE</geom:index_id>
                  <geom:index_value_number>30</geom:index_value_number>
                </geom:Coordinate_Space_Index>
                {drive}
              </geom:Coordinate_Space_Indexed>
            </geom:Coordinate_Space_Reference>
          </geom:Camera_Model_Parameters>"""

    other = (
        ""
        if initial is None
        else f"""<geom:Geometry_Lander>
          <geom:geometry_state>Initial</geom:geometry_state>
          {params(initial)}
        </geom:Geometry_Lander>"""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-model href="https://pds.nasa.gov/pds4/pds/v1/PDS4_PDS_1G00.sch" schematypens="http://purl.oclc.org/dsdl/schematron"?>
<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1"
    xmlns:geom="http://pds.nasa.gov/pds4/geom/v1"
    xmlns:img="http://pds.nasa.gov/pds4/img/v1"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Identification_Area>
    <logical_identifier>urn:nasa:pds:mars2020_navcam_ops_calibrated:data:nlf_test</logical_identifier>
  </Identification_Area>
  <Observation_Area>
    <Discipline_Area>
      <geom:Geometry>
        {other}
        <geom:Geometry_Lander>
          <geom:geometry_state>Telemetry</geom:geometry_state>
          <local_identifier>geom_telemetry_state</local_identifier>
          {params(vec)}
          <geom:Coordinate_Space_Definition>
            <local_identifier>ROVER_NAV_FRAME_30_1344_4_0_0_0_2_0_0_0</local_identifier>
            <geom:Coordinate_Space_Present>
              <geom:Coordinate_Space_Indexed>
                <geom:coordinate_space_frame_type>ROVER_NAV_FRAME</geom:coordinate_space_frame_type>
                <geom:Coordinate_Space_Index>
                  <geom:index_id>SITE</geom:index_id>
                  <geom:index_value_number>30</geom:index_value_number>
                </geom:Coordinate_Space_Index>
                <geom:Coordinate_Space_Index>
                  <geom:index_id>DRIVE</geom:index_id>
                  <geom:index_value_number>1344</geom:index_value_number>
                </geom:Coordinate_Space_Index>
              </geom:Coordinate_Space_Indexed>
            </geom:Coordinate_Space_Present>
            <geom:Vector_Origin_Offset>
              <geom:x_position unit="m">94.6281</geom:x_position>
              <geom:y_position unit="m">-118.938</geom:y_position>
              <geom:z_position unit="m">{-GROUND}</geom:z_position>
            </geom:Vector_Origin_Offset>
            {turn}
            <geom:Coordinate_Space_Reference>
              <Local_Internal_Reference>
                <local_identifier_reference>SITE_FRAME_30</local_identifier_reference>
                <local_reference_type>to_reference_coordinate_space</local_reference_type>
              </Local_Internal_Reference>
            </geom:Coordinate_Space_Reference>
          </geom:Coordinate_Space_Definition>
          <geom:Coordinate_Space_Definition>
            <local_identifier>SITE_FRAME_30</local_identifier>
            <geom:Coordinate_Space_Present>
              <geom:Coordinate_Space_Indexed>
                <geom:coordinate_space_frame_type>SITE_FRAME</geom:coordinate_space_frame_type>
                <geom:Coordinate_Space_Index>
                  <geom:index_id>SITE</geom:index_id>
                  <geom:index_value_number>30</geom:index_value_number>
                </geom:Coordinate_Space_Index>
              </geom:Coordinate_Space_Indexed>
            </geom:Coordinate_Space_Present>
            <geom:Vector_Origin_Offset>
              <geom:x_position unit="m">36.576</geom:x_position>
              <geom:y_position unit="m">-10.604</geom:y_position>
              <geom:z_position unit="m">-1.15378</geom:z_position>
            </geom:Vector_Origin_Offset>
          </geom:Coordinate_Space_Definition>
        </geom:Geometry_Lander>
      </geom:Geometry>
    </Discipline_Area>
  </Observation_Area>
  <File_Area_Observational>
    <File><file_name>nlf_test.IMG</file_name></File>
    <Array_3D_Image>
      <local_identifier>image_array</local_identifier>
      <offset unit="byte">0</offset>
      <axes>3</axes>
      <axis_index_order>Last Index Fastest</axis_index_order>
      <Element_Array><data_type>UnsignedByte</data_type></Element_Array>
      <Axis_Array><axis_name>Band</axis_name><elements>1</elements><sequence_number>1</sequence_number></Axis_Array>
      <Axis_Array><axis_name>Line</axis_name><elements>96</elements><sequence_number>2</sequence_number></Axis_Array>
      <Axis_Array><axis_name>Sample</axis_name><elements>128</elements><sequence_number>3</sequence_number></Axis_Array>
    </Array_3D_Image>
  </File_Area_Observational>
</Product_Observational>
"""


def _same_projection(written, reference, ground: float) -> None:
    """``written`` (read back from the camera file) projects exactly like ``reference``."""
    u, v = np.meshgrid(np.linspace(0.5, 127.5, 9), np.linspace(0.5, 95.5, 7))
    np.testing.assert_array_equal(written.pixel_to_ground(u, v), reference.pixel_to_ground(u, v))
    assert np.isfinite(written.pixel_to_ground(u, v)).any()  # the camera sees ground
    pts = np.stack(np.meshgrid(np.linspace(-3, 8, 5), np.linspace(-6, 4, 5), [ground]), axis=-1).reshape(
        -1, 3
    )
    np.testing.assert_array_equal(written.world_to_pixel(pts), reference.world_to_pixel(pts))
    assert written.ground_z_m == reference.ground_z_m == ground


def test_pds3_detached_cahv_rover_nav_frame(tmp_path):
    """Kept in the rover frame on request (--rover-frame): the model as the label gives it, turned to FLU."""
    vec = _label_vectors(height_m=1.9, distort=False)
    (tmp_path / "1664MR0086340000802438C00_DRCL.LBL").write_text(_pds3(vec))
    out = convert_label(tmp_path / "1664MR0086340000802438C00_DRCL.LBL", rover_frame=True)
    assert out == tmp_path / "1664MR0086340000802438C00_DRCL.camera.json"
    d = json.loads(out.read_text())
    # ROVER_NAV_FRAME is forward/starboard/down: written as FLU, so the contact map says forward/left
    assert d["frame"] == "flu" and d["model"] == "cahv" and d["pds_frame"].endswith("kept (--rover-frame)")
    assert d["site"] == "ROVER_NAV_(62,660,8)"  # site, drive, pose: the mast's counters do not move the rover
    assert d["ground_z_m"] == 0.0 and "ROVER_NAV_FRAME" in d["pds_ground"]
    # predict.py finds it beside the image exported from the product
    written = find_camera(tmp_path / "1664MR0086340000802438C00_DRCL.png")
    assert isinstance(written, CahvCamera) and written.site == "ROVER_NAV_(62,660,8)"
    flu = {k: ned_to_flu(np.array(v)) for k, v in vec.items()}
    _same_projection(written, CahvCamera(**flu, image_width=128, image_height=96), 0.0)


def test_pds3_attached_cahvor_site_frame_ground_from_rover_position(tmp_path):
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    img = tmp_path / "NLB_517261274EDR_F0541610CCAM15900M1.IMG"
    _attached_img(img, _pds3(vec, frame="SITE_FRAME"))
    out = convert_label(img, out_dir=tmp_path / "cams")
    assert out == tmp_path / "cams" / "NLB_517261274EDR_F0541610CCAM15900M1.camera.json"
    d = json.loads(out.read_text())
    assert d["frame"] == "pds" and d["model"] == "cahvor" and d["site"] == "SITE_62"
    assert d["C"] == vec["C"] and d["R"] == vec["R"]  # as the label gives them, z down
    written = load_camera(out)
    flu = {k: ned_to_flu(np.array(v)) for k, v in vec.items() if k != "R"}
    reference = CahvorCamera(**flu, R=vec["R"], image_width=128, image_height=96, ground_z_m=GROUND)
    _same_projection(written, reference, GROUND)
    assert isinstance(written, CahvorCamera) and written.source_frame == "ned"


def test_site_frame_ground_from_an_opgs_archive_labels_rover_group(tmp_path):
    """JPL MIPL's MSL archive labels (Navcam and Hazcam EDRs and RDRs) name the rover's place
    ``ROVER_COORD_SYSTEM_PARMS`` (their detached-label translation renames VICAR's ROVER_COORDINATE_SYSTEM so,
    and SITE_COORDINATE_SYSTEM to SITE_COORD_SYSTEM_PARMS). Only the MSSS name (..._COORDINATE_SYSTEM_PARMS)
    and MER's were read: a SITE_FRAME model in such a label was refused for want of the ground height that
    the label gives."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    label = tmp_path / "NRB_575142982EDR_F0682626NCAM00207M1.LBL"
    label.write_text(_pds3(vec, frame="SITE_FRAME", rover_group="ROVER_COORD_SYSTEM_PARMS"))
    assert read_label(label).ground_z_m == GROUND
    d = json.loads(convert_label(label).read_text())
    assert d["ground_z_m"] == GROUND and d["site"] == "SITE_62" and "SITE_FRAME 62" in d["pds_ground"]
    # the height is still the ROVER_NAV_FRAME origin's in the camera's own site, not another frame's
    other = _pds3(
        vec, frame="SITE_FRAME", rover_group="ROVER_COORD_SYSTEM_PARMS", rover_frame="RSM_HEAD_FRAME"
    )
    label.write_text(other)
    with pytest.raises(LabelError, match="no ROVER_NAV_FRAME origin in SITE_FRAME 62"):
        convert_label(label, overwrite=True)


def test_pds4_cahvor_site_frame_telemetry_state(tmp_path):
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    other = _label_vectors(
        height_m=GROUND + 1.5, distort=True
    )  # the "Initial" state's model: not the image's
    label = tmp_path / "NLF_0030_0677856789_123FDR_N0301344NCAM00200_01_095J01.xml"
    label.write_text(_pds4(vec, initial=other))
    d = json.loads(convert_label(label).read_text())
    assert d["site"] == "SITE_30" and d["frame"] == "pds" and d["ground_z_m"] == GROUND
    assert d["C"] == vec["C"]
    flu = {k: ned_to_flu(np.array(v)) for k, v in vec.items() if k != "R"}
    reference = CahvorCamera(**flu, R=vec["R"], image_width=128, image_height=96, ground_z_m=GROUND)
    _same_projection(load_camera(label.with_name(label.stem + ".camera.json")), reference, GROUND)


def test_pds4_cahv_model(tmp_path):
    vec = _label_vectors(height_m=GROUND + 1.9, distort=False)
    label = tmp_path / "zcam.xml"
    label.write_text(_pds4(vec, model_type="CAHV"))
    cam = read_label(label)
    assert cam.model == "cahv" and cam.vectors == vec and (cam.image_width, cam.image_height) == (128, 96)


@pytest.mark.parametrize("form", ["pds3", "pds4"])
def test_cahvore_label_is_converted_with_its_entrance_pupil(tmp_path, form):
    """A CAHVORE label (Hazcams, most Mars 2020 Navcams) was refused; it is written as a cahvore camera file
    with ``E``, ``T`` and ``P`` (``E`` as the label gives it: coefficients along ``O``, no frame turns them),
    read back as the same lens."""
    vec: dict = _label_vectors(height_m=GROUND + 1.9, distort=True)
    vec.update(E=[0.000942, 0.00228, 0.001613], T=3.0 if form == "pds3" else 3, P=0.37)
    label = tmp_path / ("hazcam.LBL" if form == "pds3" else "hazcam.xml")
    label.write_text(_pds3(vec, model_type="CAHVORE") if form == "pds3" else _pds4(vec, model_type="CAHVORE"))
    cam = read_label(label)
    assert cam.model == "cahvore" and cam.vectors["E"] == vec["E"] and cam.scalars == {"T": 3.0, "P": 0.37}
    written = json.loads(convert_label(label).read_text())
    assert written["model"] == "cahvore" and written["E"] == vec["E"]
    assert written["T"] == 3 and isinstance(written["T"], int) and written["P"] == 0.37
    camera = load_camera(tmp_path / "hazcam.camera.json")
    assert isinstance(camera, CahvoreCamera) and camera.T == 3 and camera.E.tolist() == vec["E"]
    u, v = np.meshgrid(np.linspace(0, 128, 9), np.linspace(48, 96, 5))
    ground = camera.pixel_to_ground(u.ravel(), v.ravel())
    seen = np.isfinite(ground).all(axis=1)
    assert seen.any()
    back = camera.world_to_pixel(ground[seen])
    assert np.hypot(back[:, 0] - u.ravel()[seen], back[:, 1] - v.ravel()[seen]).max() < 1e-6


@pytest.mark.parametrize("form", ["pds3", "pds4"])
def test_cahvore_label_without_its_type_is_refused_naming_it(tmp_path, form):
    vec: dict = _label_vectors(height_m=GROUND + 1.9, distort=True)
    vec.update(E=[0.000942, 0.00228, 0.001613], P=0.37)  # no T
    label = tmp_path / ("hazcam.LBL" if form == "pds3" else "hazcam.xml")
    if form == "pds3":
        vec["T"] = 3.0
        text = _pds3(vec, model_type="CAHVORE").replace(" MODEL_COMPONENT_8                   = 3.0\n", "")
        label.write_text(text)
        said = r"hazcam\.LBL: the CAHVORE camera model has no MODEL_COMPONENT_8 \(T, its type\)"
    else:
        label.write_text(_pds4(vec, model_type="CAHVORE"))
        said = r"hazcam\.xml: the CAHVORE model has no geom:cahvore_model_type \(T\)"
    with pytest.raises(LabelError, match=said):
        convert_label(label)
    assert not (tmp_path / "hazcam.camera.json").exists()


def _mer_label(vec: dict[str, list[float]], frame: str = "ROVER_FRAME", host: str = "MER2") -> str:
    """A MER-style PDS3 label (``GEOMETRIC_CAMERA_MODEL``, ``ROVER_COORDINATE_SYSTEM`` of the ROVER_FRAME)
    whose INSTRUMENT_HOST_ID is ``host``."""
    text = _pds3(
        vec, frame=frame, group="GEOMETRIC_CAMERA_MODEL", rover_group="ROVER_COORDINATE_SYSTEM",
        rover_frame="ROVER_FRAME",
    )  # fmt: skip
    return text.replace(
        "INSTRUMENT_HOST_ID                  = MSL", f"INSTRUMENT_HOST_ID                  = {host}"
    )


def test_mer_rover_frame_ground_is_0_294_m_below_its_origin(tmp_path, capsys):
    """MER's ROVER_FRAME origin is 0.294 m above the nominal ground (JPL's VICAR PIG library, PigMER.h, the
    default surface it gives MER: "taken from MER engineering drawings and confirmed ... during nominal
    OPS"). A MER label's model needed --ground-z-m; its ground is now that plane: 0.294 m below the origin
    in the rover frame, and, levelled into the site, 0.294 m below the rover origin's place there."""
    from marsunits.boundary.camera.from_label import MER_ROVER_FRAME_HEIGHT_M

    assert MER_ROVER_FRAME_HEIGHT_M == 0.294
    vec = _label_vectors(height_m=1.5, distort=True)
    label = tmp_path / "2N290711859EFFB1F3P1978L0M1.LBL"
    label.write_text(_mer_label(vec))
    assert read_label(label).ground_z_m == -0.294 and "PigMER.h" in read_label(label).ground_note
    assert main([str(label)]) == 0, capsys.readouterr().err
    d = json.loads(label.with_suffix(".camera.json").read_text())
    assert d["frame"] == "pds" and d["site"] == "SITE_62"
    assert d["ground_z_m"] == pytest.approx(GROUND - 0.294, abs=1e-12) and "SITE_FRAME 62" in d["pds_ground"]
    assert "0.294 m above the nominal ground" in d["pds_ground"]
    assert main([str(label), "--rover-frame", "--overwrite"]) == 0  # as the rover saw it: the wheels' plane
    d = json.loads(label.with_suffix(".camera.json").read_text())
    assert d["frame"] == "flu" and d["ground_z_m"] == -0.294
    flu = {k: ned_to_flu(np.array(v)) for k, v in vec.items() if k != "R"}
    reference = CahvorCamera(**flu, R=vec["R"], image_width=128, image_height=96, ground_z_m=-0.294)
    _same_projection(load_camera(label.with_suffix(".camera.json")), reference, -0.294)
    # a SITE_FRAME model of a MER label: the ground below the ROVER_FRAME origin the label places in the site
    site = tmp_path / "2N290711859EFFB1F3P1978L0M2.LBL"
    site.write_text(_mer_label(_label_vectors(height_m=GROUND + 1.9, distort=True), frame="SITE_FRAME"))
    assert read_label(site).ground_z_m == pytest.approx(GROUND - 0.294, abs=1e-12)


@pytest.mark.parametrize("host", ["MSL", "MER2\nMISSION_NAME = MSL"])
def test_a_rover_frame_label_not_of_mer_alone_needs_ground_height(tmp_path, capsys, host):
    """The ROVER_FRAME origin's height is MER's: a ROVER_FRAME label that names another mission (or MER beside
    another) has no documented ground, so --ground-z-m is required, and said."""
    vec = _label_vectors(height_m=1.5, distort=True)
    label = tmp_path / "2N290711859EFFB1F3P1978L0M1.LBL"
    label.write_text(_mer_label(vec, host=host))
    assert main([str(label)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2  # the refusal in one line, then the count
    assert str(label) in err[0] and "--ground-z-m" in err[0] and "ground height is not determined" in err[0]
    assert "not MER alone" in read_label(label).ground_note
    # levelled into the site the label places the rover in: the ground is asked there, the rover's place said
    assert f"origin is at z = {GROUND:g} m (z up) in SITE_FRAME 62" in err[0]
    assert not (tmp_path / "2N290711859EFFB1F3P1978L0M1.camera.json").exists()
    assert main([str(label), "--ground-z-m", "0.3"]) == 0
    d = json.loads((tmp_path / "2N290711859EFFB1F3P1978L0M1.camera.json").read_text())
    assert d["ground_z_m"] == 0.3 and d["pds_ground"] == "--ground-z-m" and d["frame"] == "pds"
    assert d["site"] == "SITE_62"
    assert load_camera(tmp_path / "2N290711859EFFB1F3P1978L0M1.camera.json").ground_z_m == 0.3


@pytest.mark.parametrize(
    "frame, extra", [("ROVER_FRAME", []), ("ROVER_FRAME", ["--rover-frame"]), ("SITE_FRAME", [])]
)
def test_a_rover_frame_label_refused_gives_the_ground_a_mer_image_has(tmp_path, capsys, frame, extra):
    """A label with MER's ROVER_FRAME whose mission is not MER alone (here it names none) is refused; its
    refusal said the ROVER_FRAME origin is "0.294 m above the ground for MER" (in the rover frame) or only
    where the origin is (levelled, or a SITE_FRAME model), leaving the sign and the sum to the user (z up:
    +0.294 was the likely misreading, a ground above the cameras' origin). It now gives the value a MER image
    has, in the frame written, and that value, given as it says, writes what a MER label gets."""
    vec = _label_vectors(height_m=GROUND + 1.9 if frame == "SITE_FRAME" else 1.5, distort=True)
    unnamed, mer = tmp_path / "unnamed.LBL", tmp_path / "mer.LBL"
    unnamed.write_text(_mer_label(vec, frame=frame, host="TESTBED"))
    mer.write_text(_mer_label(vec, frame=frame))
    assert read_label(unnamed).missions == () and read_label(mer).missions == ("MER",)
    assert main([str(unnamed), *extra]) == 1
    err = capsys.readouterr().err
    said = re.search(r"if this is a MER image: --ground-z-m (\S+?)\)", err)
    assert said, err
    assert main([str(mer), *extra]) == 0
    assert main([str(unnamed), *extra, "--ground-z-m", said.group(1)]) == 0
    ours = json.loads(unnamed.with_suffix(".camera.json").read_text())
    theirs = json.loads(mer.with_suffix(".camera.json").read_text())
    assert ours["ground_z_m"] == pytest.approx(theirs["ground_z_m"], abs=1e-9)
    assert ours["ground_z_m"] < (-0.2 if extra else GROUND - 0.2)  # below the rover origin, z up
    same = {k for k in theirs if k not in ("ground_z_m", "pds_label", "pds_ground")}
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}


def _unnamed_index_label(vec: dict[str, list[float]], frame: str, index: str, counter_names: str) -> str:
    """A label whose camera group gives its frame's index without COORDINATE_SYSTEM_INDEX_NAME, as MER's
    ``GEOMETRIC_CAMERA_MODEL`` does (``REFERENCE_COORD_SYSTEM_INDEX = (125,100,0,5,0)``): the index's entries
    are named once for the whole label, by ``ROVER_MOTION_COUNTER_NAME``."""
    text = _pds3(vec, frame=frame, group="GEOMETRIC_CAMERA_MODEL", rover_group="ROVER_COORDINATE_SYSTEM")
    group = text.index("GROUP                              = GEOMETRIC_CAMERA_MODEL")
    start = text.index(" COORDINATE_SYSTEM_INDEX_NAME", group)
    text = text[:start] + text[text.index(")\n", start) + 2 :]  # the group's own names, gone
    start = text.index(" REFERENCE_COORD_SYSTEM_INDEX", group)
    text = (
        text[:start]
        + f" REFERENCE_COORD_SYSTEM_INDEX        = {index}\n"
        + text[text.index(")\n", start) + 2 :]
    )
    head = f"ROVER_MOTION_COUNTER_NAME = {counter_names}\nROVER_MOTION_COUNTER = {index}"
    return text.replace("/* Identification Data Elements */", head, 1)


@pytest.mark.parametrize(
    "frame, names, indices, site",
    [
        # MER: site, drive, arm (IDD), mast (PMA), antenna; two Navcam frames of one mosaic, the mast moved
        ("ROVER_FRAME", '("SITE","DRIVE","IDD","PMA","HGA")', ["(125,100,0,5,0)", "(125,100,0,6,0)"],
         "ROVER_(125,100)"),
        # MSL: site, drive, pose, then the arm's, mast's (RSM) ... counters
        ("ROVER_NAV_FRAME", '("SITE","DRIVE","POSE","ARM","CHIMRA",\n "DRILL","RSM","HGA","DRT","IC")',
         ["(62,660,8,196,0,0,290,108,12,0)", "(62,660,8,197,0,0,291,108,12,0)"], "ROVER_NAV_(62,660,8)"),
    ],
    ids=["MER", "MSL"],
)  # fmt: skip
def test_an_index_named_only_by_the_rover_motion_counter_names_the_site_by_the_rovers_position(
    tmp_path, frame, names, indices, site
):
    """The site of a rover frame is its site, drive and pose: the mast's and arm's counters do not move the
    rover. Where the camera group did not name its index entries, every entry made the site, so the frames of
    one mosaic, each taken after a mast move, were drawn as many sites, one contact map each."""
    vec = _label_vectors(height_m=1.5, distort=True)
    written = []
    for i, index in enumerate(indices):
        label = tmp_path / f"frame{i}.LBL"
        label.write_text(_unnamed_index_label(vec, frame, index, names))
        written.append(json.loads(convert_label(label, ground_z_m=0.0, rover_frame=True).read_text()))
    assert [d["site"] for d in written] == [site, site]
    assert written[0]["pds_frame"].startswith(f"{frame} (SITE=")  # the names are said where they came from
    # a counter list that does not match the index is not used to name it: every entry stays in the site
    label = tmp_path / "odd.LBL"
    label.write_text(_unnamed_index_label(vec, frame, indices[0], '("SITE","DRIVE")'))
    assert read_label(label).site == f"{frame.removesuffix('_FRAME')}_{indices[0].replace(' ', '')}"


@pytest.mark.parametrize("frame", ["ROVER_NAV_FRAME", "SITE_FRAME"])
def test_a_frame_without_its_index_is_refused(tmp_path, frame):
    """Without its index, a ROVER_NAV_FRAME camera was written with site "ROVER_NAV_()", the site of every
    such camera, so the contact map drew cameras of different rover positions in one frame."""
    text = _pds3(_label_vectors(height_m=GROUND + 1.9, distort=False), frame=frame)
    start = text.index(" REFERENCE_COORD_SYSTEM_INDEX")
    text = text[:start] + text[text.index(")", start) + 2 :]
    (tmp_path / "a.LBL").write_text(text)
    assert read_label(tmp_path / "a.LBL").index == []
    with pytest.raises(LabelError, match=rf"a\.LBL: the camera model's {frame} has no index.*use another"):
        convert_label(tmp_path / "a.LBL", ground_z_m=GROUND)
    assert not (tmp_path / "a.camera.json").exists()


def test_site_frame_without_the_rovers_place_needs_ground_height(tmp_path):
    vec = _label_vectors(height_m=GROUND + 1.9, distort=False)
    text = _pds3(vec, frame="SITE_FRAME").replace("ORIGIN_OFFSET_VECTOR", "X_ORIGIN_OFFSET_VECTOR")
    (tmp_path / "a.LBL").write_text(text)
    with pytest.raises(LabelError, match=r"a\.LBL.*no ROVER_NAV_FRAME origin in SITE_FRAME 62.*--ground-z-m"):
        convert_label(tmp_path / "a.LBL")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("no_group", r"bad\.LBL: no GEOMETRIC_CAMERA_MODEL_PARMS or GEOMETRIC_CAMERA_MODEL group.*write the"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe",
            r"cannot read label .*bad\.LBL: .*give the product",
        ),
        ("missing", r"cannot read label .*bad\.LBL: No such file"),
        ("folder", r"cannot read label .*bad\.LBL: a folder or special file"),
        ("<?xml version='1.0'?><Product_Observational", r"cannot read label .*bad\.LBL: not well-formed XML"),
        ("no_image", r"bad\.LBL: no IMAGE object .*image size is unknown"),
        ("damaged", r"cannot read label .*bad\.LBL: not a PDS3 \(ODL\) .*Expecting a Block-Name"),
        # an interrupted download: it was "not a PDS3 (ODL) or PDS4 (XML) label (it starts with neither..."
        ("", r"cannot read label .*bad\.LBL: the file is empty .*download the label again"),
        (" \r\n\n", r"cannot read label .*bad\.LBL: the file is empty"),
        ("\0" * 4096, r"cannot read label .*bad\.LBL: the file is empty \(NUL bytes only: an interrupted"),
    ],
)
def test_bad_labels_give_one_clear_error(tmp_path, content, match):
    label = tmp_path / "bad.LBL"
    good = _pds3(_label_vectors(height_m=1.9, distort=False))
    if content == "no_group":
        label.write_text(good.replace("GEOMETRIC_CAMERA_MODEL_PARMS", "CAMERA_NOTES"))
    elif content == "folder":
        label.mkdir()
    elif content == "damaged":
        label.write_text(good.replace("END_OBJECT                        = IMAGE", "END_OBJECT = IMAGES"))
    elif content == "no_image":
        label.write_text(good.replace("= IMAGE\n", "= IMAGE_HEADER\n"))
    elif isinstance(content, bytes):
        label.write_bytes(content)
    elif content != "missing":
        label.write_text(content)
    with pytest.raises(LabelError, match=match):
        convert_label(label)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
@pytest.mark.parametrize("form", ["detached", "attached"])
def test_an_accent_in_a_label_comment_is_read(tmp_path, form, encoding):
    """pvl read an attached label (or a Latin-1 one) byte by byte up to the first byte that is not UTF-8 on
    its own: an accent in a comment cut the label there, and it was refused as "not a PDS3 label"."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    text = _pds3(vec, frame="SITE_FRAME").replace(
        "/* Camera Model Data Elements */", "/* Caméra: modèle géométrique, 25 °C */"
    )
    if form == "detached":
        label = tmp_path / "acc.LBL"
        label.write_bytes(text.encode(encoding))
    else:
        label = tmp_path / "acc.IMG"
        _attached_img(label, text, encoding)
    cam = read_label(label)
    assert cam.model == "cahvor" and cam.vectors["C"] == vec["C"] and cam.ground_z_m == GROUND


def test_an_attached_labels_image_data_is_not_read(tmp_path):
    """pvl read the whole .IMG into memory (image data of zeros is valid text); only the label is read."""
    import tracemalloc

    label = tmp_path / "big.IMG"
    _attached_img(label, _pds3(_label_vectors(height_m=GROUND + 1.9, distort=True), frame="SITE_FRAME"))
    with label.open("r+b") as fh:  # 64 MiB of dark pixels, sparse on disk
        fh.truncate(label.stat().st_size + (64 << 20))
    tracemalloc.start()
    try:
        cam = read_label(label)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cam.model == "cahvor" and (cam.image_width, cam.image_height) == (128, 96)
    assert peak < 8 << 20


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda t: t.replace("SOURCE_PRODUCT_ID", 'NOTE = "one\nEND\ntwo"\nSOURCE_PRODUCT_ID'), id="quoted"
        ),
        pytest.param(lambda t: t.replace("/* Camera Model", "/* Camera\nEND\n Model"), id="comment"),
        pytest.param(lambda t: t.replace("\nEND\n", "\nend\n"), id="lower-case"),
        pytest.param(lambda t: t.replace("\n", "\r"), id="CR-only"),
        pytest.param(lambda t: t.rstrip("\n"), id="padding-after-END"),
    ],
)
@pytest.mark.parametrize("form", ["detached", "attached"])
def test_the_label_is_read_up_to_the_end_statement_pvl_reads(tmp_path, form, change):
    """The label's END is found as ODL reads it: an END line inside a quoted string or a comment cut the label
    there (refused as "not a PDS3 label"), and an attached label ending in a lower-case ``end``, CR-only line
    ends or ``END`` then padding was refused as having no END in its first MiB; pvl read all of them."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    text = change(_pds3(vec, frame="SITE_FRAME"))
    if form == "detached":
        label = tmp_path / "x.LBL"
        label.write_bytes(text.encode())
    else:
        label = tmp_path / "x.IMG"
        _attached_img(label, text)
        with label.open("r+b") as fh:  # 2 MiB of dark pixels, as a MER 1024 x 1024 16-bit image
            fh.truncate(label.stat().st_size + (2 << 20))
    cam = read_label(label)
    assert cam.vectors["C"] == vec["C"] and cam.vectors["R"] == vec["R"]
    assert (cam.image_width, cam.image_height) == (128, 96)


def test_a_label_without_an_end_statement_in_its_first_mib_is_refused(tmp_path):
    label = tmp_path / "cut.IMG"
    text = _pds3(_label_vectors(height_m=GROUND + 1.9, distort=True), frame="SITE_FRAME")
    label.write_bytes(text.replace("\nEND\n", "\n").encode() + b"x" * (2 << 20))
    with pytest.raises(LabelError, match=r"cut\.IMG: no END statement in its first 1 MiB.*complete"):
        read_label(label)


def _lower_keywords(text: str) -> str:
    """A PDS3 label with its keywords, its group and object names, its bare words and END in lower case."""
    return re.sub(
        r"^( *)([A-Za-z_^:0-9]+)( *= *)([A-Z_0-9]+$)?",
        lambda m: m[1] + m[2].lower() + m[3] + (m[4] or "").lower(),
        text,
        flags=re.MULTILINE,
    ).replace("\nEND\n", "\nend\n")


@pytest.mark.parametrize("form", ["detached", "attached"])
def test_lower_case_pds3_keywords_are_read_as_odl_reads_them(tmp_path, form):
    """ODL keywords, group and object names are case-insensitive: a label written in lower case (by hand,
    or by a tool) was refused as "not a PDS3 (ODL) or PDS4 (XML) label (it starts with neither
    PDS_VERSION_ID nor an XML tag)", though it starts with pds_version_id."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    text = _pds3(vec, frame="SITE_FRAME")
    label = tmp_path / ("low.LBL" if form == "detached" else "low.IMG")
    if form == "attached":  # the record keywords _attached_img adds in lower case too
        _attached_img(label, text)
        data = label.read_bytes()
        end = data.index(b"\nEND\n") + 5
        label.write_bytes(_lower_keywords(data[:end].decode()).encode() + data[end:])
    else:
        label.write_text(_lower_keywords(text))
    head = label.read_bytes()[:4096]
    assert head.startswith(b"pds_version_id") and b"= geometric_camera_model_parms" in head
    assert b"MODEL_TYPE" not in head and b"END\n" not in head
    (tmp_path / "up.LBL").write_text(text)
    assert read_label(label) == read_label(tmp_path / "up.LBL")
    d = json.loads(convert_label(label).read_text())
    assert d["ground_z_m"] == GROUND and d["site"] == "SITE_62" and d["C"] == vec["C"]


def test_a_shell_pattern_that_matched_nothing_is_said_so(tmp_path, capsys):
    """The shell passes ``*.LBL`` that matched nothing as it is: "No such file or directory; check the path"
    did not say that the pattern matched nothing, nor where to look."""
    (tmp_path / "a.lbl").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    assert main([str(tmp_path / "*.LBL")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / '*.LBL'}: no file matches this pattern" in err and ".LBL or .lbl" in err


def test_an_out_dir_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    """Each label was refused on its own with "[Errno 17] File exists: 'out'", naming neither the option nor
    what to give; it is one usage error (exit status 2) before any label is read."""
    (tmp_path / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    (tmp_path / "out").write_text("notes")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert f"--out-dir {tmp_path / 'out'} is a file, not a folder; give a folder" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "notes" and not (tmp_path / "a.camera.json").exists()
    # a link to a file: the link was called "a file", which the user sees listed as a link
    (tmp_path / "link").symlink_to(tmp_path / "out")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "link")])
    assert f"is a file (a symbolic link to the file {tmp_path / 'out'}), not" in capsys.readouterr().err
    # a folder that does not exist yet is made
    assert main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "new" / "cams")]) == 0
    assert (tmp_path / "new" / "cams" / "a.camera.json").is_file()


def test_an_out_dir_that_is_a_dangling_link_is_said_to_be_one(tmp_path, capsys):
    """A symbolic link to a folder that is not there (a disk not mounted) was called "a file, not a folder";
    it is said to be a link, to where, and what to do, before any label is read."""
    (tmp_path / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    (tmp_path / "cams").symlink_to(tmp_path / "disk" / "cams")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "cams")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--out-dir {tmp_path / 'cams'} is a symbolic link to {tmp_path / 'disk' / 'cams'}, which" in err
    assert "does not exist" in err and "is a file" not in err
    assert (tmp_path / "cams").is_symlink() and not (tmp_path / "a.camera.json").exists()
    # once the folder it points to is there, the link is a folder like any other
    (tmp_path / "disk" / "cams").mkdir(parents=True)
    assert main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "cams")]) == 0
    assert (tmp_path / "disk" / "cams" / "a.camera.json").is_file()


def test_an_out_dir_link_through_a_link_or_in_a_loop_names_what_is_missing(tmp_path, capsys):
    """A link to a link to a missing folder was said to point to the middle link "which does not exist"
    (it does), and a link that leads back to itself to be a link to a missing folder to make (it cannot
    be: the link holds the name)."""
    (tmp_path / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    (tmp_path / "mid").symlink_to(tmp_path / "disk" / "cams")
    (tmp_path / "cams").symlink_to("mid")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "cams")])
    err = capsys.readouterr().err
    assert f"--out-dir {tmp_path / 'cams'} is a symbolic link to {tmp_path / 'disk' / 'cams'}" in err
    assert "which does not exist" in err
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.LBL"), "--out-dir", str(tmp_path / "loop")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--out-dir {tmp_path / 'loop'} is a symbolic link that leads back to itself" in err
    assert "make that folder" not in err and "remove or replace the link" in err


def test_existing_camera_file_kept_without_overwrite(tmp_path, capsys):
    label = tmp_path / "x.LBL"
    label.write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    dest = tmp_path / "x.camera.json"
    dest.write_text('{"model": "pinhole", "hand": "made"}')
    assert main([str(label)]) == 1
    assert "--overwrite" in capsys.readouterr().err and json.loads(dest.read_text())["hand"] == "made"
    assert main([str(label), "--overwrite"]) == 0
    assert json.loads(dest.read_text())["model"] == "cahv"


def test_a_rerun_over_labels_already_converted_leaves_their_files_and_succeeds(tmp_path, capsys):
    """Converting a folder again, after adding labels to it, converts the new ones and leaves the others
    (their files hold exactly what would be written): each used to be refused as existing, exit 1. A file
    that differs (another --ground-z-m, a hand edit) is still kept and refused without --overwrite."""
    vec = _label_vectors(height_m=1.9, distort=False)
    (tmp_path / "a.LBL").write_text(_pds3(vec))
    assert main([str(tmp_path / "a.LBL")]) == 0
    first = (tmp_path / "a.camera.json").stat().st_mtime_ns
    capsys.readouterr()
    (tmp_path / "b.LBL").write_text(_pds3(vec))
    assert main([str(tmp_path / "a.LBL"), str(tmp_path / "b.LBL")]) == 0
    out = capsys.readouterr().out
    assert f"unchanged {tmp_path / 'a.camera.json'}" in out and f"wrote {tmp_path / 'b.camera.json'}" in out
    assert (tmp_path / "a.camera.json").stat().st_mtime_ns == first
    assert main([str(tmp_path / "a.LBL"), "--ground-z-m", "-1.5"]) == 1
    assert "exists and differs; pass --overwrite" in capsys.readouterr().err


class _ReachedTheTestsHandlerError(Exception):
    """SIGTERM came to the handler the test had set: the command had none of its own."""


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_stop_while_converting_is_one_line_and_the_same_command_goes_on(
    tmp_path, monkeypatch, capsys, request, signame
):
    """A Ctrl-C in the middle of a folder of labels printed a KeyboardInterrupt traceback (a SIGTERM ended the
    command without a word): it is one line saying how many camera files were written and to run the same
    command again, status 130 (143). That command then leaves the files written as they are and converts the
    rest, as a conversion never stopped writes them."""
    import os
    import signal

    from marsunits.boundary.camera import from_label

    vec = _label_vectors(height_m=1.9, distort=False)
    labels = []
    for name in "abcd":
        (tmp_path / f"{name}.LBL").write_text(_pds3(vec))
        labels.append(str(tmp_path / f"{name}.LBL"))
    out = tmp_path / "cams"
    assert main([labels[0], "--out-dir", str(out)]) == 0  # a: from an earlier run
    capsys.readouterr()
    convert = from_label._convert

    def stopped_at_c(label, *args):
        if Path(label).name == "c.LBL":
            os.kill(os.getpid(), getattr(signal, signame))
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the handler runs by the time this returns
        return convert(label, *args)

    def guard(signum, frame):  # so that no SIGTERM here ends the test's own process
        raise _ReachedTheTestsHandlerError

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    monkeypatch.setattr(from_label, "_convert", stopped_at_c)
    # Ctrl-C raises as at a terminal: a test run as a background job inherits SIGINT ignored
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, interrupt))
    before = signal.signal(signal.SIGTERM, guard)
    try:
        status = main([*labels, "--out-dir", str(out)])
        assert signal.getsignal(signal.SIGTERM) is guard  # the command's handler is taken down at its end
    finally:
        signal.signal(signal.SIGTERM, before)
    how = "interrupted (Ctrl-C)" if signame == "SIGINT" else "terminated (SIGTERM)"
    assert status == (130 if signame == "SIGINT" else 143)
    said, err = capsys.readouterr()
    assert f"unchanged {out / 'a.camera.json'}" in said and f"wrote {out / 'b.camera.json'}" in said
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"python -m marsunits.boundary.camera.from_label: {how} after writing 1 camera ")
    assert "(1 more already there, unchanged)" in err and "run the same command again" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.camera.json", "b.camera.json"]  # no temporary left
    kept = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in out.iterdir()}

    monkeypatch.setattr(from_label, "_convert", convert)
    assert main([*labels, "--out-dir", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.count("unchanged ") == 2 and said.count("wrote ") == 2
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == {n: t for n, (t, _) in kept.items()}
    clean = tmp_path / "clean"
    assert main([*labels, "--out-dir", str(clean)]) == 0
    assert {p.name: p.read_text() for p in out.iterdir()} == {p.name: p.read_text() for p in clean.iterdir()}
    # --overwrite after a stop writes the same files again
    monkeypatch.setattr(from_label, "_convert", stopped_at_c)
    signal.signal(signal.SIGTERM, guard)
    try:
        status = main([*labels, "--out-dir", str(clean), "--overwrite"])
    finally:
        signal.signal(signal.SIGTERM, before)
    assert status in (130, 143) and "after writing 2 camera files;" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in out.iterdir()} == {p.name: p.read_text() for p in clean.iterdir()}


def test_batch_with_one_bad_label_writes_the_others(tmp_path, capsys):
    vec = _label_vectors(height_m=1.9, distort=False)
    (tmp_path / "a.LBL").write_text(_pds3(vec))
    (tmp_path / "b.LBL").write_text("PDS_VERSION_ID = PDS3\nEND\n")
    (tmp_path / "c.LBL").write_text(_pds3(vec))
    assert main([str(tmp_path / n) for n in ("a.LBL", "b.LBL", "c.LBL")]) == 1
    assert (tmp_path / "a.camera.json").is_file() and (tmp_path / "c.camera.json").is_file()
    assert not (tmp_path / "b.camera.json").exists()
    out, err = capsys.readouterr()
    assert out.count("wrote ") == 2 and "b.LBL" in err and "1 of 3 labels refused" in err


def test_label_and_image_of_one_product_do_not_write_twice(tmp_path, capsys):
    vec = _label_vectors(height_m=1.9, distort=False)
    (tmp_path / "p.LBL").write_text(_pds3(vec))
    _attached_img(tmp_path / "p.IMG", _pds3(vec))
    assert main([str(tmp_path / "p.LBL"), str(tmp_path / "p.IMG")]) == 1
    assert "already written from" in capsys.readouterr().err


def test_ground_option_replacing_the_labels_value_is_said(tmp_path, capsys):
    (tmp_path / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    assert main([str(tmp_path / "a.LBL"), "--ground-z-m", "-0.1"]) == 0
    # the label's ground in the frame written: the rover's ground in the site it is levelled into
    assert f"replaces the label's {GROUND:g} (ROVER_NAV_FRAME origin" in capsys.readouterr().err
    assert json.loads((tmp_path / "a.camera.json").read_text())["ground_z_m"] == -0.1
    assert main([str(tmp_path / "a.LBL"), "--ground-z-m", "-0.1", "--rover-frame", "--overwrite"]) == 0
    assert "replaces the label's 0 " in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1,7", "nan", "1.7m"])
def test_a_ground_height_that_is_not_a_number_is_refused_saying_what_to_give(tmp_path, capsys, value):
    """A decimal comma was refused as "invalid _finite value: '1,7'", the name of a private function."""
    (tmp_path / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.LBL"), "--ground-z-m", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"--ground-z-m: must be a finite number of metres with a decimal point (e.g. 1.7), got '{value}'"
        in err
    )
    assert "_finite" not in err and not (tmp_path / "a.camera.json").exists()


def test_camera_below_the_ground_refused_naming_the_label(tmp_path):
    """The refusal said 'in the z-down "frame": "ned"' of a camera file written with "frame": "pds", and
    advised a camera file's fix ('drop "frame"'), which a label has none of: the frame is quoted as the
    file converted from the label says it, and the advice is the label's."""
    (tmp_path / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    with pytest.raises(
        LabelError, match=r"a\.LBL.*not above the ground plane.*converted from the label"
    ) as no:
        convert_label(tmp_path / "a.LBL", ground_z_m=5.0)
    said = str(no.value)
    assert 'z-down "frame": "pds")' in said and '"ned"' not in said, said
    assert 'drop "frame"' not in said and 'add "frame"' not in said and "camera file" not in said, said


def test_pds4_differing_models_without_telemetry_state_refused(tmp_path):
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    text = _pds4(vec, initial=_label_vectors(height_m=GROUND + 1.5, distort=True))
    (tmp_path / "n.xml").write_text(text.replace(">Telemetry<", ">Localized<"))
    with pytest.raises(LabelError, match=r"n\.xml: 2 different camera models .*'Initial', 'Localized'"):
        convert_label(tmp_path / "n.xml")


def test_pds4_geometry_without_a_state_is_the_telemetry_state(tmp_path):
    """The PDS4 geom dictionary's ``geometry_state``: "If not present, the semantics of 'Telemetry' should be
    assumed". A label whose reported geometry block carries no state beside an ``Initial`` one (the geometry
    before onboard updates, e.g. visual odometry) that differs was refused as two models of which none is
    Telemetry's; the block without a state is the Telemetry one, and its model and rover place are taken."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    text = _pds4(vec, initial=_label_vectors(height_m=GROUND + 1.5, distort=True))
    stateless = text.replace("<geom:geometry_state>Telemetry</geom:geometry_state>", "")
    assert ">Telemetry<" not in stateless and ">Initial<" in stateless
    (tmp_path / "n.xml").write_text(stateless)
    d = json.loads(convert_label(tmp_path / "n.xml").read_text())
    assert d["C"] == vec["C"] and d["site"] == "SITE_30" and d["ground_z_m"] == GROUND
    # two blocks of the reported geometry (one named Telemetry, one without a state) that differ are refused
    both = text.replace(">Initial<", ">Telemetry<").replace(
        "<geom:geometry_state>Telemetry</geom:geometry_state>\n          <local_identifier>",
        "<local_identifier>",
    )
    (tmp_path / "t.xml").write_text(both)
    with pytest.raises(LabelError, match=r"t\.xml: 2 different camera models of the Telemetry state"):
        convert_label(tmp_path / "t.xml")


def test_two_telemetry_models_refused_name_their_blocks(tmp_path):
    """The geom dictionary allows several Geometry_Lander blocks of one state, "in which case the
    local_identifier should be used to differentiate the instances". Two differing Telemetry models were
    refused with "write the camera file by hand from the one you trust" but without saying which blocks they
    are; the refusal now names each block's local_identifier, so the one trusted can be found."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    text = _pds4(vec, initial=_label_vectors(height_m=GROUND + 1.5, distort=True))
    text = text.replace(
        "<geom:geometry_state>Initial</geom:geometry_state>",
        "<geom:geometry_state>Telemetry</geom:geometry_state>\n<local_identifier>geom_vo_update</local_identifier>",
    )
    assert text.count(">Telemetry<") == 2
    (tmp_path / "t.xml").write_text(text)
    with pytest.raises(LabelError) as err:
        convert_label(tmp_path / "t.xml")
    assert "2 different camera models of the Telemetry state" in str(err.value)
    assert "geom_vo_update" in str(err.value) and "geom_telemetry_state" in str(err.value)
    assert not list(tmp_path.glob("*.camera.json"))


# ------------------------------------------------------------------ rover-frame models levelled into SITE
SITE_OFFSET = (
    4.25,
    -3.5,
    -GROUND,
)  # the rover's place in SITE_FRAME 62 (30 for PDS4): x north, y east, z down


def _turn(axis: int, deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A right-handed turn by ``deg`` about axis 0, 1 or 2: its matrix and quaternion ``(s, v1, v2, v3)``."""
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    if axis == 1:  # about y the turn takes z to x: the signs are the other way round
        m[i, j], m[j, i] = s, -s
    q = np.zeros(4)
    q[0], q[1 + axis] = np.cos(t / 2), np.sin(t / 2)
    return m, q


def _hamilton(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The quaternion product ``a b`` (the turn ``b`` then ``a``)."""
    s1, v1, s2, v2 = a[0], a[1:], b[0], b[1:]
    return np.concatenate([[s1 * s2 - v1 @ v2], s1 * v2 + s2 * v1 + np.cross(v1, v2)])


def _tilted_rover(heading_deg: float, pitch_deg: float) -> tuple[dict, dict, tuple[float, ...]]:
    """A camera built in the site frame, and the same camera in the frame of a rover that stands at
    ``SITE_OFFSET`` heading ``heading_deg`` (clockwise from north) and pitched ``pitch_deg`` (nose up).

    Returns ``(site-frame CAHV in FLU, ground at GROUND; rover-frame CAHV as a label prints it (z down);
    the rover's quaternion)``. The quaternion is composed here from two axis turns, the convention the label's
    (rover to site) so set by construction, not by the code under test."""
    pin = PinholeCamera(
        image_width=128, image_height=96, hfov_deg=50.0, pitch_deg=30.0, yaw_deg=-35.0, height_m=1.9,
        x_m=5.0, y_m=4.0,
    )  # fmt: skip
    site_flu = {k: getattr(cahv_from_pinhole(pin), k).astype(float) for k in "CAHV"}
    site_flu["C"] = site_flu["C"] + np.array([0.0, 0.0, GROUND])  # the ground is level at the rover's height
    yaw_m, yaw_q = _turn(2, heading_deg)  # about z (down): north to east, clockwise seen from above
    pitch_m, pitch_q = _turn(1, pitch_deg)  # about y (starboard): nose up
    rot, quat = yaw_m @ pitch_m, _hamilton(yaw_q, pitch_q)
    site_ned = {k: ned_to_flu(v) for k, v in site_flu.items()}
    rover = {k: rot.T @ (v - np.array(SITE_OFFSET) if k == "C" else v) for k, v in site_ned.items()}
    label = {k: [float(f"{x:.6e}") for x in v] for k, v in rover.items()}  # as _odl prints them
    return site_flu, label, tuple(float(x) for x in quat)


def _levelled_label(tmp_path: Path, form: str, vec: dict, quat: tuple[float, ...] | None, name: str) -> Path:
    if form == "pds3":
        label = tmp_path / f"{name}.LBL"
        text = _pds3(vec, offset=SITE_OFFSET, quaternion=quat or (1.0, 0.0, 0.0, 0.0))
        if quat is None:
            text = text.replace(" ORIGIN_ROTATION_QUATERNION", " X_ORIGIN_ROTATION_QUATERNION")
    else:
        label = tmp_path / f"{name}.xml"
        text = _pds4(vec, model_type="CAHV", camera_frame="ROVER_NAV_FRAME", quaternion=quat)
        text = text.replace(">94.6281<", f">{SITE_OFFSET[0]!r}<").replace(
            ">-118.938<", f">{SITE_OFFSET[1]!r}<"
        )
    label.write_text(text)
    return label


@pytest.mark.parametrize("form", ["pds3", "pds4"])
def test_a_tilted_rovers_camera_is_levelled_into_the_site_frame(tmp_path, form):
    """A model in ROVER_NAV_FRAME was kept there, so the ground was the plane under the wheels: a rover
    pitched 10 degrees tilted the ground by 10 degrees, and the ranges of the whole image were wrong (13 % at
    the image centre on a real MSL Mastcam label). Turned by the label's quaternion into the SITE frame, the
    camera is the one built directly there: the same height above the ground, the same ground points."""
    site_flu, vec, quat = _tilted_rover(heading_deg=35.0, pitch_deg=10.0)
    label = _levelled_label(tmp_path, form, vec, quat, "tilted")
    d = json.loads(convert_label(label).read_text())
    site = 62 if form == "pds3" else 30
    assert d["frame"] == "pds" and d["site"] == f"SITE_{site}" and d["ground_z_m"] == GROUND
    assert f"levelled into SITE_FRAME {site}" in d["pds_frame"] and f"SITE_FRAME {site}" in d["pds_ground"]
    written = load_camera(label.with_name("tilted.camera.json"))
    truth = CahvCamera(**site_flu, image_width=128, image_height=96, ground_z_m=GROUND)
    assert written.center[2] - written.ground_z_m == pytest.approx(1.9, abs=1e-5)
    u, v = np.meshgrid(np.linspace(8, 120, 8), np.linspace(40, 95, 6))
    got, want = written.pixel_to_ground(u, v), truth.pixel_to_ground(u, v)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, atol=2e-4)  # the label's 7 digits
    centre = written.pixel_to_ground(np.array([64.0]), np.array([48.0]))[0]
    assert np.hypot(*(centre - truth.center)[:2]) == pytest.approx(
        np.hypot(*(truth.pixel_to_ground(np.array([64.0]), np.array([48.0]))[0] - truth.center)[:2]), abs=1e-4
    )
    # kept in the rover frame on request, the ground tilts with the rover: the centre's range is far off
    kept = load_camera(convert_label(label, overwrite=True, rover_frame=True))
    off = kept.pixel_to_ground(np.array([64.0]), np.array([48.0]))[0]
    assert abs(np.hypot(*(off - kept.center)[:2]) - np.hypot(*(centre - written.center)[:2])) > 0.1


@pytest.mark.parametrize("form", ["pds3", "pds4"])
def test_an_untilted_rovers_camera_is_the_rover_frame_one_shifted_by_the_rovers_place(tmp_path, form):
    """With the identity quaternion, levelling only moves the camera to the rover's place in the site: each
    ground point is the rover-frame file's shifted by the offset (x north = forward, y west = left)."""
    _, vec, _ = _tilted_rover(heading_deg=0.0, pitch_deg=0.0)
    label = _levelled_label(tmp_path, form, vec, (1.0, 0.0, 0.0, 0.0), "level")
    levelled = load_camera(convert_label(label))
    rover = load_camera(convert_label(label, out_dir=tmp_path / "rover", rover_frame=True))
    assert levelled.ground_z_m == GROUND and rover.ground_z_m == 0.0
    u, v = np.meshgrid(np.linspace(8, 120, 8), np.linspace(40, 95, 6))
    a, b = levelled.pixel_to_ground(u, v), rover.pixel_to_ground(u, v)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a[..., :2], b[..., :2] + [SITE_OFFSET[0], -SITE_OFFSET[1]], atol=1e-9)
    np.testing.assert_allclose(a[..., 2], GROUND)


def test_two_drives_at_one_site_are_drawn_on_one_contact_map(tmp_path):
    """Each drive's ROVER_NAV_FRAME was a site of its own, one contact map per drive; levelled into their
    common SITE frame, the images of both drives are drawn together, each camera at its own place."""
    from marsunits.boundary.contact_map import build_contact_map

    cams = []
    for drive, heading, (dx, dy) in ((660, 20.0, (0.0, 0.0)), (702, 110.0, (6.5, -2.0))):
        _, vec, quat = _tilted_rover(heading_deg=heading, pitch_deg=-6.0)
        text = _pds3(vec, drive=drive, offset=(dx, dy, -GROUND), quaternion=quat)
        (tmp_path / f"d{drive}.LBL").write_text(text)
        cams.append(load_camera(convert_label(tmp_path / f"d{drive}.LBL")))
    assert [c.site for c in cams] == ["SITE_62", "SITE_62"]
    assert np.hypot(*(cams[1].center - cams[0].center)[:2]) == pytest.approx(np.hypot(6.5, 2.0), abs=1e-5)
    written = build_contact_map([("a.png", [], cams[0]), ("b.png", [], cams[1])], tmp_path / "map")
    assert sorted(p.name for p in written) == ["contact_map.geojson", "contact_map.png"]
    data = json.loads((tmp_path / "map" / "contact_map.geojson").read_text())
    assert data["site"] == "SITE_62" and [c["image"] for c in data["cameras"]] == ["a.png", "b.png"]


@pytest.mark.parametrize(
    "form, damage, why",
    [
        ("pds3", "no quaternion", "has no ORIGIN_ROTATION_QUATERNION"),
        ("pds3", "not a unit quaternion", "not a unit quaternion (norm 2)"),
        ("pds3", "referenced to another frame", "places this ROVER_NAV_FRAME in LOCAL_LEVEL_FRAME"),
        ("pds3", "another drive's place", "gives no place of this ROVER_NAV_FRAME in a SITE_FRAME"),
        ("pds4", "no quaternion", "has no geom:Quaternion_Plus_Direction"),
    ],
)
def test_a_rover_frame_model_the_label_does_not_place_is_kept_in_the_rover_frame(
    tmp_path, capsys, form, damage, why
):
    """Without the rover's attitude in a SITE frame (or with one that is not its own), the model stays in
    the rover frame as before, and the file and a note line say why it was not levelled."""
    _, vec, quat = _tilted_rover(heading_deg=35.0, pitch_deg=10.0)
    given = {"no quaternion": None, "not a unit quaternion": (2.0, 0.0, 0.0, 0.0)}.get(damage, quat)
    label = _levelled_label(tmp_path, form, vec, given, "kept")
    text = label.read_text()
    if damage == "referenced to another frame":
        text = text.replace(
            " REFERENCE_COORD_SYSTEM_NAME         = SITE_FRAME",
            " REFERENCE_COORD_SYSTEM_NAME = LOCAL_LEVEL_FRAME",
        )
    elif damage == "another drive's place":
        text = text.replace(
            " COORDINATE_SYSTEM_INDEX             = (62, 660,", " COORDINATE_SYSTEM_INDEX = (62, 659,"
        )
    label.write_text(text)
    assert main([str(label)]) == 0
    d = json.loads(label.with_name("kept.camera.json").read_text())
    site = "ROVER_NAV_(62,660,8)" if form == "pds3" else "ROVER_NAV_(30,1344)"
    assert d["frame"] == "flu" and d["site"] == site and d["ground_z_m"] == 0.0
    assert "not levelled" in d["pds_frame"] and why in d["pds_frame"]
    err = capsys.readouterr().err
    assert f"note: {label}: " in err and why in err and "its ground tilts with the rover" in err
    flu = {k: ned_to_flu(np.array(v)) for k, v in vec.items()}
    _same_projection(
        load_camera(label.with_name("kept.camera.json")),
        CahvCamera(**flu, image_width=128, image_height=96),
        0.0,
    )


@pytest.mark.parametrize(
    ("index", "levelled"), [("(62,660,8,196,0,0,290,108,12,0)", True), ("(62,661,8)", False)]
)
def test_an_unnamed_camera_index_is_levelled_where_it_leads_with_the_rovers_position(
    tmp_path, index, levelled
):
    """A MER-style camera group gives its index unnamed (and here no ROVER_MOTION_COUNTER_NAME of as many
    entries names it): its leading entries, site and drive first, are compared with the rover group's named
    SITE, DRIVE, POSE; another drive's index is not placed by this rover group."""
    _, vec, quat = _tilted_rover(heading_deg=35.0, pitch_deg=10.0)
    text = _unnamed_index_label(vec, "ROVER_NAV_FRAME", index, '("SITE","DRIVE")')
    start = text.index(" ORIGIN_ROTATION_QUATERNION")
    text = (
        text[:start]
        + f" ORIGIN_ROTATION_QUATERNION = ({', '.join(f'{x:.7f}' for x in quat)})\n"
        + text[text.index("\n", start) + 1 :]
    )
    (tmp_path / "u.LBL").write_text(text.replace("(-31.535181, -26.566465,", "(4.250000, -3.500000,"))
    cam = read_label(tmp_path / "u.LBL")
    assert cam.index[0] == (None, 62)  # unnamed
    d = _written_dict(tmp_path / "u.LBL")
    assert (d["site"] == "SITE_62") is levelled and (d["frame"] == "pds") is levelled
    if not levelled:
        assert "gives no place of this ROVER_NAV_FRAME" in d["pds_frame"]


def _written_dict(label: Path) -> dict:
    return json.loads(convert_label(label, overwrite=True).read_text())


# ------------------------------------------------------------------ LOCAL_LEVEL_FRAME ground, by mission
_M2020_AREA = """<Investigation_Area>
      <name>Mars 2020 Perseverance Rover Mission</name>
      <type>Mission</type>
      <Internal_Reference>
        <lid_reference>urn:nasa:pds:context:investigation:mission.mars2020</lid_reference>
        <reference_type>data_to_investigation</reference_type>
      </Internal_Reference>
    </Investigation_Area>
    <Observing_System>
      <Observing_System_Component>
        <name>Mars 2020 Perseverance Rover</name>
        <type>Host</type>
        <Internal_Reference>
          <lid_reference>urn:nasa:pds:context:instrument_host:spacecraft.mars2020</lid_reference>
          <reference_type>is_instrument_host</reference_type>
        </Internal_Reference>
      </Observing_System_Component>
    </Observing_System>
    """


def _local_level_label(tmp_path: Path, form: str, host: str | None) -> Path:
    """A camera model in LOCAL_LEVEL_FRAME (62, 660, 8) (PDS4: (30, 1344)), the mission named by ``host``
    (PDS3: INSTRUMENT_HOST_ID; PDS4: an Investigation_Area and Observing_System of Mars 2020 where
    ``host`` is ``"M2020"``), none where None."""
    vec = _label_vectors(height_m=1.9, distort=False)
    if form == "pds3":
        label = tmp_path / "ll.LBL"
        text = _pds3(vec, frame="LOCAL_LEVEL_FRAME")
        text = text.replace(
            "INSTRUMENT_HOST_ID                  = MSL\n",
            "" if host is None else f"INSTRUMENT_HOST_ID                  = {host}\n",
        )
    else:
        label = tmp_path / "ll.xml"
        reference = (
            "<geom:coordinate_space_frame_type>{}</geom:coordinate_space_frame_type>\n"
            "                <geom:Coordinate_Space_Index>\n"
            "                  <geom:index_id>SITE</geom:index_id>\n"
            "                  <geom:index_value_number>30</geom:index_value_number>\n"
            "                </geom:Coordinate_Space_Index>\n"
            "                <geom:Coordinate_Space_Index>\n"
            "                  <geom:index_id>DRIVE</geom:index_id>\n"
            "                  <geom:index_value_number>1344</geom:index_value_number>\n"
            "                </geom:Coordinate_Space_Index>\n"
            "              </geom:Coordinate_Space_Indexed>\n"
            "            </geom:Coordinate_Space_Reference>"
        )
        text = _pds4(vec, model_type="CAHV", camera_frame="ROVER_NAV_FRAME").replace(
            reference.format("ROVER_NAV_FRAME"), reference.format("LOCAL_LEVEL_FRAME"), 1
        )
        assert "LOCAL_LEVEL_FRAME" in text
        if host == "M2020":
            text = text.replace("<Observation_Area>\n", "<Observation_Area>\n    " + _M2020_AREA, 1)
    label.write_text(text)
    return label


@pytest.mark.parametrize(
    ("form", "host"),
    [("pds3", "MSL"), ("pds3", '"MARS SCIENCE LABORATORY"'), ("pds3", "M20"), ("pds4", "M2020")],
)
def test_an_msl_or_mars2020_local_level_frame_has_its_ground_at_the_origin(tmp_path, capsys, form, host):
    """The local level frame of MSL and Mars 2020 has its origin at the ROVER_NAV_FRAME's, on the nominal
    surface beneath the rover (J. Maki et al. 2013): the ground is at 0 as in ROVER_NAV_FRAME. Such a label
    was refused without --ground-z-m."""
    label = _local_level_label(tmp_path, form, host)
    assert main([str(label)]) == 0, capsys.readouterr().err
    d = json.loads(label.with_name("ll.camera.json").read_text())
    assert d["frame"] == "pds" and d["ground_z_m"] == 0.0
    assert d["site"] == ("LOCAL_LEVEL_(62,660,8)" if form == "pds3" else "LOCAL_LEVEL_(30,1344)")
    assert "LOCAL_LEVEL_FRAME origin" in d["pds_ground"] and "ROVER_NAV_FRAME" in d["pds_ground"]
    mission = "Mars 2020" if host in ("M20", "M2020") else "MSL"
    assert mission in d["pds_ground"]
    assert load_camera(label.with_name("ll.camera.json")).ground_z_m == 0.0


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("MER2", "MER, whose LOCAL_LEVEL_FRAME origin is not established here"),
        ('"MARS EXPLORATION ROVER 1"', "MER, whose LOCAL_LEVEL_FRAME origin is not established here"),
        (None, "the label names no mission"),
        ("PHX", "the label names no mission"),
    ],
)
def test_a_local_level_frame_of_mer_or_of_no_known_mission_needs_the_ground_height(
    tmp_path, capsys, host, why
):
    label = _local_level_label(tmp_path, "pds3", host)
    assert main([str(label)]) == 1
    err = capsys.readouterr().err
    assert f"{label}: the ground height is not determined" in err and why in err and "--ground-z-m" in err
    assert not label.with_name("ll.camera.json").exists()
    assert main([str(label), "--ground-z-m", "0.25"]) == 0
    assert json.loads(label.with_name("ll.camera.json").read_text())["ground_z_m"] == 0.25


def test_a_local_level_frame_of_a_label_naming_two_missions_says_so(tmp_path, capsys):
    """A label naming MSL and MER was told it "names no mission of these"; it names two, whose local level
    frames differ. One naming MSL and Mars 2020, whose local level frames are one, has its ground at 0."""
    label = _local_level_label(tmp_path, "pds3", 'MSL\nMISSION_NAME = "MARS EXPLORATION ROVER"')
    assert main([str(label)]) == 1
    err = capsys.readouterr().err
    assert "names several missions (MSL, MER)" in err and "names no mission" not in err, err
    label = _local_level_label(tmp_path, "pds3", 'MSL\nMISSION_NAME = "MARS 2020"')
    assert main([str(label)]) == 0, capsys.readouterr().err
    d = json.loads(label.with_name("ll.camera.json").read_text())
    assert d["ground_z_m"] == 0.0 and "(Mars 2020, MSL frames)" in d["pds_ground"]


def test_label_paths_starting_with_a_tilde_are_in_the_home_folder(tmp_path, monkeypatch, capsys):
    """``~`` is the home folder (a quoted "~/x" reaches the program as it is, and Python callers pass it):
    read_label and convert_label said "No such file", and --out-dir "~/cams" made a folder named ``~``."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    (home / "a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    assert read_label("~/a.LBL").frame == "ROVER_NAV_FRAME"
    assert convert_label("~/a.LBL", out_dir="~/out") == home / "out" / "a.camera.json"
    assert main(["~/a.LBL", "--out-dir", "~/cams"]) == 0, capsys.readouterr().err
    assert (home / "cams" / "a.camera.json").is_file()
    assert f"wrote {home / 'cams' / 'a.camera.json'}" in capsys.readouterr().out
    assert main(["~/a.LBL"]) == 0 and (home / "a.camera.json").is_file()
    assert not (work / "~").exists()


def test_a_label_named_tilde_something_is_read_from_the_working_folder(tmp_path, monkeypatch, capsys):
    """A file named ``~a.LBL`` (``~`` then no user's name) is a file like any other, as the shell leaves it:
    pathlib's expanduser raised RuntimeError ("Could not determine home directory") for it, a traceback that
    ended the whole batch."""
    monkeypatch.chdir(tmp_path)
    Path("~a.LBL").write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    assert read_label("~a.LBL").frame == "ROVER_NAV_FRAME"
    assert main(["~a.LBL", "--out-dir", "~no_such_user_zz/cams"]) == 0, capsys.readouterr().err
    assert (tmp_path / "~no_such_user_zz" / "cams" / "~a.camera.json").is_file()
    assert convert_label("~a.LBL") == Path("~a.camera.json")


def test_help_says_ground_z_m_is_in_the_frame_written_not_the_models(capsys):
    """``--ground-z-m`` is the ground's height in the frame the camera file is written in (the SITE frame for
    a levelled rover-frame model; docs/cameras.md), so ``--help`` must not say the camera model's frame:
    for a ROVER_NAV_FRAME label that is the rover frame, whose ground height (0) differs from the site's."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "camera model's frame" not in text
    assert "frame the camera file is written in" in text and "SITE frame for a levelled" in text


# ------------------------------------------------------------------ --image-size: a resized copy's camera
def _resized_points(camera) -> np.ndarray:
    """Points ``camera`` sees across its whole 128x96 image (beyond its borders too), 2 to 9 m away."""
    u, v = np.meshgrid(np.linspace(-3.0, 131.0, 7), np.linspace(-2.0, 98.0, 6))
    rays = camera.pixel_to_ray(u.ravel(), v.ravel())
    return (camera.center[None, None] + np.array([2.0, 9.0])[:, None, None] * rays[None]).reshape(-1, 3)


@pytest.mark.parametrize("distort", [False, True], ids=["cahv", "cahvor"])
@pytest.mark.parametrize(
    "size", [(32, 24), (41, 30), (200, 96), (512, 384)], ids=["quarter", "non_integer", "unequal", "4x"]
)
def test_a_model_resized_projects_each_point_to_the_resized_pixel_of_the_original(tmp_path, distort, size):
    """--image-size W H scales the model's pixels: a point lands at (sx u, sy v) in the resized image, u and
    v its pixel (corner origin: the top-left pixel's centre is 0.5, 0.5) in the archived one, for CAHV and
    CAHVOR, down 4x, by 41/128 x 30/96, unequally (200/128 across, 1 down) and up 4x."""
    from marsunits.boundary.camera.from_label import resized_camera_dict

    vec = _label_vectors(height_m=1.9, distort=distort)
    label = tmp_path / "a.LBL"
    label.write_text(_pds3(vec))
    original = json.loads(convert_label(label, rover_frame=True).read_text())
    resized = resized_camera_dict(original, *size, source=str(label))
    assert (resized["image_width"], resized["image_height"]) == size
    for k in ("C", "A", "O", "R"):  # the distortion is in ray space: only H and V are in pixels
        assert resized.get(k) == original.get(k)
    before, after = load_camera_dict(original), load_camera_dict(resized)
    assert type(after) is type(before) is (CahvorCamera if distort else CahvCamera)
    pts = _resized_points(before)
    uv = before.world_to_pixel(pts)
    assert np.isfinite(uv).all()
    sx, sy = size[0] / 128, size[1] / 96
    np.testing.assert_allclose(after.world_to_pixel(pts), uv * [sx, sy], atol=1e-6, rtol=0)
    # the pixel's ray is the same ray: the ground under the resized pixel is the original pixel's
    u, v = np.meshgrid(np.linspace(0.5, 127.5, 5), np.linspace(60.5, 95.5, 4))
    np.testing.assert_allclose(
        after.pixel_to_ground(u * sx, v * sy), before.pixel_to_ground(u, v), atol=1e-9, rtol=0, equal_nan=True
    )


def load_camera_dict(d: dict):
    from marsunits.boundary.camera.io import camera_from_dict

    return camera_from_dict(d)


def test_the_image_size_option_writes_a_camera_that_predict_accepts_for_the_resized_copy(tmp_path, capsys):
    """A 32x24 copy of a 128x96 product (AI4Mars' frames, the raw-image service's `large` JPEG): the camera
    file of its label was refused by predict.py for the copy's size; written with --image-size 32 24 it is
    that size and predict.py takes it for the copy, and its metres are those of the archived image."""
    from PIL import Image

    from marsunits.inference.image_cameras import sized_image_camera

    vec = _label_vectors(height_m=1.9, distort=True)
    label = tmp_path / "NLB_1.LBL"
    label.write_text(_pds3(vec))
    Image.new("RGB", (32, 24)).save(tmp_path / "NLB_1.png")
    assert main([str(label), "--rover-frame"]) == 0
    with pytest.raises(ValueError, match=r"--image-size 32 24"):  # the refusal names the way out
        sized_image_camera(tmp_path / "NLB_1.png", 32, 24)
    full = load_camera(tmp_path / "NLB_1.camera.json")
    assert main([str(label), "--rover-frame", "--image-size", "32", "24", "--overwrite"]) == 0
    d = json.loads((tmp_path / "NLB_1.camera.json").read_text())
    assert (d["image_width"], d["image_height"]) == (32, 24)
    assert "128x96" in d["pds_resized"] and "32x24" in d["pds_resized"]
    copy = sized_image_camera(tmp_path / "NLB_1.png", 32, 24)
    assert copy is not None
    u, v = np.meshgrid(np.linspace(0.5, 31.5, 5), np.linspace(15.5, 23.5, 3))
    np.testing.assert_allclose(copy.pixel_to_ground(u, v), full.pixel_to_ground(u * 4, v * 4), atol=1e-9)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("value", [["0", "24"], ["32.5", "24"], ["x", "24"]])
def test_an_image_size_that_is_not_whole_pixels_is_a_usage_error(tmp_path, capsys, value):
    label = tmp_path / "a.LBL"
    label.write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    with pytest.raises(SystemExit) as stop:
        main([str(label), "--image-size", *value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--image-size" in err and "whole number of pixels" in err, err
    assert not (tmp_path / "a.camera.json").exists()


def test_an_image_size_for_a_label_without_the_archived_size_is_refused_naming_it(tmp_path, capsys):
    label = tmp_path / "a.LBL"
    label.write_text(
        re.sub(r"OBJECT += IMAGE.*END_OBJECT += IMAGE", "", _pds3(_label_vectors(1.9, False)), flags=re.S)
    )
    assert main([str(label), "--rover-frame", "--image-size", "32", "24"]) == 1
    err = capsys.readouterr().err
    assert f"{label}: no IMAGE object with LINES and LINE_SAMPLES" in err, err
    assert not (tmp_path / "a.camera.json").exists()


def test_an_image_size_that_changes_the_aspect_ratio_is_noted(tmp_path, capsys):
    """WIDTH and HEIGHT given the other way round fit no copy of the image: said in a note line."""
    label = tmp_path / "a.LBL"
    label.write_text(_pds3(_label_vectors(height_m=1.9, distort=False)))
    assert main([str(label), "--rover-frame", "--image-size", "24", "32"]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "aspect ratio" in err and "128x96" in err, err
    assert main([str(label), "--rover-frame", "--image-size", "32", "24", "--overwrite"]) == 0
    assert "aspect ratio" not in capsys.readouterr().err


def test_a_pds4_labels_model_is_rescaled_from_its_axis_sizes(tmp_path):
    """A Mars 2020 label's size is its Sample and Line axes (128 x 96): --image-size 48 36 rescales from it,
    the model levelled into its site as without the option."""
    vec = _label_vectors(height_m=GROUND + 1.9, distort=True)
    label = tmp_path / "NLF_0030_0677856789_123FDR_N0301344NCAM00200_01_095J01.xml"
    label.write_text(_pds4(vec))
    full = load_camera(convert_label(label))
    out = convert_label(label, image_size=(48, 36), overwrite=True)
    d = json.loads(out.read_text())
    assert (d["image_width"], d["image_height"]) == (48, 36) and d["site"] == "SITE_30"
    assert "from the 128x96 image" in d["pds_resized"]
    copy_cam = load_camera(out)
    u, v = np.meshgrid(np.linspace(0.5, 127.5, 5), np.linspace(60.5, 95.5, 4))
    s = 48 / 128
    np.testing.assert_allclose(copy_cam.pixel_to_ground(u * s, v * s), full.pixel_to_ground(u, v), atol=1e-9)
    assert np.isfinite(full.pixel_to_ground(u, v)).all()
