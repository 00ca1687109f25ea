"""Camera files from the Mars 2020 raw-image metadata (JSON), the form the public raw-image service gives.

``python -m marsunits.boundary.camera.from_label`` reads these files as well as PDS labels: an argument
ending in ``.json`` is read here. One file holds one image's record, a JSON list of records, or a page of
the feed (``{"images": [...], ...}``, the ``raw_images`` feed behind
mars.nasa.gov/mars2020/multimedia/raw-images); one camera file is written per record.

What a record holds, and what is established about it (each point checked on public code or on real
records quoted in public code; the docs/cameras.md, says it briefly):

* **Not** the ``<image>-metadata.json`` that ``mars-raw-utils`` saves beside each image: that is its own flat
  summary (``src/metadata.rs``, ``Metadata``: ``instrument``, ``camera_model_component_list``, ``mast_az``
  at the top level, no ``camera``, ``extended`` nor ``attitude``), refused with a line saying so.
* **Field names** as ``MarsRaw/mars-raw-utils`` reads the feed (``src/m20/metadata.rs``: ``Image``,
  ``Camera``, ``Extended``; ``src/m20/remote.rs``: the page, ``M20ApiResults``, with its ``images`` list):
  ``imageid``, ``sol``, ``site`` (a number), ``drive`` (a string of digits), ``attitude`` (text
  ``"(w,x,y,z)"``), ``sample_type`` (``"Full"``, ``"Thumbnail"``), ``camera`` {``instrument``,
  ``camera_model_type`` (``CAHV``, ``CAHVOR``, ``CAHVORE``), ``camera_model_component_list``
  (``"(cx,cy,cz);(ax,ay,az);...;T;P"``), ``camera_position``, ``camera_vector``, ``filter_name``},
  ``extended`` {``mastAz``, ``mastEl``, ``sclk``, ``scaleFactor``, ``subframeRect``, ``dimension``
  (``"(width,height)"``), ``xyz``}, ``image_files`` {``full_res``, ``large``, ``medium``, ``small``}.
* **The image it describes**: the ``full_res`` PNG, which ``mars-raw-utils`` saves under the basename of
  its URL (``remote.rs``: ``path::basename(&image.image_files.full_res)``): the ``imageid`` with the
  product's version appended (``..._285J`` -> ``..._285J01.png``). The camera file is named after that
  file (``<stem>.camera.json``), so ``predict.py`` finds it beside the image; the ``imageid`` where the
  record has no ``full_res``. The ``large``/``medium``/``small`` JPEGs are resized: the model does not fit
  them as given; ``--image-size`` rescales it to one (:mod:`.from_label`).
* **Subframe and downsampling**: the model is already the delivered image's, so it is written as given,
  never adjusted again. Checked on two real Navcam-left records (quoted in the test fixtures of the public
  Python packages ``rocksnitch``, its "sol-100 sample", and ``marsmap``, its ``test_cahvore.py``): a full
  frame, ``scaleFactor`` 4, ``dimension (1280,960)``, has its principal point ``(A.H, A.V)`` at
  (648.6, 485.3); a strip, ``subframeRect (1,1441,5120,960)``, ``scaleFactor`` 4, ``dimension (1280,240)``,
  has it at (648.6, 125.3) = 485.3 - (1441 - 1) / 4, with ``|H|`` the same: the sensor's model (5120 x 3840,
  principal point near (2594, 1941)) moved by the subframe's offset and divided by the scale, as
  ``H' = (H - x0 A) / s``, ``V' = (V - y0 A) / s`` do. Adjusting it again would move every ray by the offset.
* **The frame**: the rover's ``ROVER_NAV_FRAME`` (x forward, y starboard, z down), of the record's ``site``
  and ``drive``. Checked on the same two records: the model's axis ``A`` is at the record's mast azimuth and
  elevation in the rover frame (``mastAz`` 255.64 / ``mastEl`` -31.11 against 256.5 / -31.6; 78.80 / 1.06
  against 79.5 / 0.6), and ``camera_position`` is ``C``. Each Navcam and Mastcam-Z record is checked so
  (within ``MAST_TOLERANCE_DEG``) where it gives ``mastAz``/``mastEl``; the frame of the other
  instruments' models (Hazcams, arm and helicopter cameras) was not established, and their records are
  refused (their PDS4 labels name it). A Hazcam is fixed to the body: its record has no pointing to check
  the model against as the mast cameras' is checked, and no real Hazcam record was found in public code to
  establish the frame on; its refusal names the label to give instead (the product's ``.xml`` in the PDS
  bundle ``mars2020_hazcam_ops_raw``, ``data/sol/<sol>/ids/edr/fcam`` or ``rcam``).
* **The rover's attitude**: ``attitude`` is the quaternion ``(s, v1, v2, v3)`` that turns rover-frame
  vectors into the site frame's axes (x north, y east, z down), the PDS ``ORIGIN_ROTATION_QUATERNION``
  convention the label path uses (:class:`~marsunits.boundary.camera.label_camera.RoverPose`): the scalar
  comes first (real records: ``(0.991281,0.00808985,-0.00342531,-0.131471)``, a rover tilted under a
  degree, which the vector-first reading would turn upside down), and ``marsmap``'s test checks that so
  read it gives that stop's rover yaw as NASA's MMGIS gives it (-15.1 degrees). The model is levelled
  with it: ``C' = R C``, ``A``, ``H``, ``V``, ``O`` turned by ``R``, ``R`` and ``E`` unchanged, into the
  rover's ``LOCAL_LEVEL`` frame (the site frame's axes, origin at the rover frame's): written as
  ``"frame": "pds"``, ``site`` ``LOCAL_LEVEL_(<site>,<drive>)``. With ``--rover-frame``, or without a
  usable ``attitude``, the model stays in the rover frame (``"frame": "flu"``, ``site``
  ``ROVER_NAV_(<site>,<drive>)``), as the label path keeps it.
* **Not used**: ``extended.xyz``, the rover's place in its site: its axes and the sign of its z were not
  established (no source found), so the models are not moved into the site frame and each drive has a
  contact map of its own; use the PDS labels to draw the drives of a site together.

The ground: the origin of ``ROVER_NAV_FRAME`` lies on the nominal surface beneath the rover (J. Maki, *MSL
Coordinate Systems for Science Instruments*, JPL 2013; the label path's ground), so the ground is at 0 in
the rover frame and, level, in the local level frame with that origin: ``ground_z_m`` is 0 unless
``--ground-z-m`` gives another height.

The written file also carries ``raw_json`` (the metadata file's name), ``raw_imageid``, ``raw_frame`` (the
frame, and whether it was levelled) and ``raw_ground``, which the camera reader ignores.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np

from marsunits.boundary.camera.io import CameraFileError, camera_from_dict
from marsunits.boundary.camera.label_camera import LabelError, RoverPose
from marsunits.boundary.camera.label_convert import rover_vectors_to_flu
from marsunits.boundary.camera.label_pose import _unit_quaternion
from marsunits.user_paths import expand_home

__all__ = ["RawImage", "raw_camera", "raw_camera_file_dict", "raw_records"]

#: Instruments whose raw-image models are established to be in the rover's ROVER_NAV_FRAME.
MAST_INSTRUMENTS = ("NAVCAM_LEFT", "NAVCAM_RIGHT", "MCZ_LEFT", "MCZ_RIGHT")
#: The Hazcams' instrument names in the raw feed and their folders in the PDS bundle mars2020_hazcam_ops_*.
_HAZCAM_FOLDERS = (("FRONT_HAZCAM_", "fcam"), ("REAR_HAZCAM_", "rcam"))
#: How far (degrees) a mast camera's axis may lie from the record's mastAz/mastEl (real records: under 1).
MAST_TOLERANCE_DEG = 5.0
_MODELS = {"CAHV": ("cahv", 4), "CAHVOR": ("cahvor", 6), "CAHVORE": ("cahvore", 9)}
_KEYS = "CAHVORE"
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class RawImage:
    """One record's camera, as the record gives it.

    Attributes:
        stem: The downloaded image's file stem (basename of ``image_files.full_res``, else ``imageid``).
        imageid: The record's ``imageid``.
        model: ``"cahv"``, ``"cahvor"`` or ``"cahvore"``.
        vectors: ``C``, ``A``, ``H``, ``V`` (``O``, ``R``; ``E``) in ``ROVER_NAV_FRAME`` (z down), for the
            delivered image (already adjusted for its subframe and downsampling).
        scalars: A CAHVORE's ``T`` and ``P``; empty for the others.
        image_width, image_height: From ``extended.dimension``.
        site, drive: The rover position the frame belongs to.
        pose: The record's attitude (rover frame to site axes, offset 0), or None.
        pose_note: Why ``pose`` is None.
    """

    stem: str
    imageid: str
    model: str
    vectors: dict[str, list[float]]
    scalars: dict[str, float]
    image_width: int
    image_height: int
    site: int
    drive: int
    pose: RoverPose | None
    pose_note: str = ""


def raw_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a raw-image metadata file: one record, a list of them, or a feed page (``images``);
    ``~`` in ``path`` is the home folder.

    Raises:
        LabelError: If the file cannot be read or parsed, or is not in one of these layouts (a camera file,
            for instance), naming the file and what it should be.
    """
    path = expand_home(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelError(f"{path}: no such file; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise LabelError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); save the raw-image metadata again"
        ) from exc
    if isinstance(data, dict) and "images" in data:
        data = data["images"]
    elif isinstance(data, dict) and "model" in data and "camera" not in data:
        raise LabelError(
            f"{path}: is a camera file (it has 'model'), not raw-image metadata; give the metadata JSON of "
            "the image (a record with 'imageid' and 'camera', or a feed page with 'images')"
        )
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise LabelError(
            f"{path}: not Mars 2020 raw-image metadata: expected one record (an object with 'imageid' and "
            "'camera'), a list of records, or a feed page ('images': [...]) with at least one record"
        )
    return data


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _tuple_numbers(text: str) -> list[float] | None:
    """``"(1,2,3)"`` / ``"(1280,960)"`` -> floats; None where it is not such a tuple of finite numbers."""
    m = re.fullmatch(r"\(([^()]*)\)", text.strip())
    if m is None:
        return None
    try:
        values = [float(x) for x in m.group(1).split(",")]
    except ValueError:
        return None
    return values if all(math.isfinite(x) for x in values) else None


def _angle_deg(a: float, b: float) -> float:
    """The difference of two angles in degrees, folded into [0, 180]."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def raw_camera(record: dict[str, Any], source: str | Path) -> RawImage:
    """The camera of one raw-image record (module docstring for what is read and why).

    Args:
        record: One element of :func:`raw_records`.
        source: The metadata file (named in messages).

    Raises:
        LabelError: Naming the file and the image, if the record has no usable model, image size, site
            or drive, is a thumbnail, is of an instrument whose model frame is not established, or a mast
            camera's axis is not at its mast pointing.
    """
    imageid = _text(record.get("imageid")) or "(no imageid)"
    where = f"{source}: {imageid}"
    if _text(record.get("sample_type")).lower() == "thumbnail":
        raise LabelError(f"{where}: is a thumbnail; its model is for the full image: use the 'Full' record")
    camera = record.get("camera")
    if not isinstance(camera, dict) and "camera_model_component_list" in record:
        # mars-raw-utils' ``<image>-metadata.json``: its own flat summary of the record, without the attitude
        raise LabelError(
            f"{where}: is a flat metadata summary (as mars-raw-utils saves beside each image, "
            "'-metadata.json'), not the raw-image service's record; give the record itself (its 'camera' and "
            "'attitude'): the feed page's JSON ('images': [...]) or one of its records"
        )
    if not isinstance(camera, dict):
        raise LabelError(f"{where}: has no 'camera' object, so no camera model; not a Mars 2020 record")
    instrument = _text(camera.get("instrument")).upper()
    if instrument not in MAST_INSTRUMENTS:
        raise LabelError(
            _unread_instrument(where, instrument, _text(record.get("imageid")), record.get("sol"))
        )
    text = camera.get("camera_model_component_list")
    if not isinstance(text, str) or not text.strip() or text.strip().upper() == "UNK":
        raise LabelError(f"{where}: has no camera model (camera_model_component_list is {text!r})")
    parts = [p.strip() for p in text.strip().split(";")]
    stated = _text(camera.get("camera_model_type")).upper()
    by_count = {n: name for name, (_, n) in _MODELS.items()}
    kind = stated or by_count.get(len(parts), "")
    if kind not in _MODELS:
        raise LabelError(
            f"{where}: camera_model_type {stated!r} is not one of {', '.join(_MODELS)}; not read"
            if stated
            else f"{where}: a camera model of {len(parts)} parts is none of CAHV (4), CAHVOR (6), CAHVORE (9)"
        )
    model, count = _MODELS[kind]
    if len(parts) != count:
        raise LabelError(
            f"{where}: a {kind} model has {count} parts separated by ';', camera_model_component_list has "
            f"{len(parts)}; the record is damaged: save it again"
        )
    n_vec = min(count, 7)
    vectors: dict[str, list[float]] = {}
    for key, part in zip(_KEYS[:n_vec], parts[:n_vec], strict=True):
        v = _tuple_numbers(part)
        if v is None or len(v) != 3:
            raise LabelError(f"{where}: {kind} component {key} {part!r} is not 3 numbers '(x,y,z)'")
        vectors[key] = v
    scalars: dict[str, float] = {}
    if model == "cahvore":
        try:
            t, p = float(parts[7]), float(parts[8])
        except ValueError:
            raise LabelError(f"{where}: CAHVORE type and parameter {parts[7:]!r} are not numbers") from None
        if t not in (1.0, 2.0, 3.0) or not math.isfinite(p):
            raise LabelError(
                f"{where}: CAHVORE type {parts[7]!r} is not 1, 2 or 3 (or its parameter is not finite)"
            )
        scalars = {"T": t, "P": p}
    extended = record.get("extended")
    ext: dict[str, Any] = extended if isinstance(extended, dict) else {}
    size = _tuple_numbers(_text(ext.get("dimension")))
    if size is None or len(size) != 2 or min(size) < 1 or any(x != int(x) for x in size):
        raise LabelError(
            f"{where}: extended.dimension {ext.get('dimension')!r} is not the image size '(width,height)', "
            "so the model cannot be placed on the image"
        )
    try:
        site, drive = int(_text(record.get("site"))), int(_text(record.get("drive")))
    except ValueError:
        raise LabelError(
            f"{where}: site {record.get('site')!r} and drive {record.get('drive')!r} must be whole numbers: "
            "they name the rover position whose frame the model is in"
        ) from None
    _check_mast_pointing(where, vectors["A"], ext)
    quat, why = _unit_quaternion(_tuple_numbers(_text(record.get("attitude"))) or [], "attitude")
    pose = RoverPose(site=site, offset=(0.0, 0.0, 0.0), quaternion=quat, source="attitude") if quat else None
    return RawImage(
        stem=_stem(record, imageid, where),
        imageid=imageid,
        model=model,
        vectors=vectors,
        scalars=scalars,
        image_width=int(size[0]),
        image_height=int(size[1]),
        site=site,
        drive=drive,
        pose=pose,
        pose_note=f"the record's attitude {record.get('attitude')!r}: {why}" if quat is None else "",
    )


def _unread_instrument(where: str, instrument: str, imageid: str, sol: Any) -> str:
    """Why a record of an instrument other than :data:`MAST_INSTRUMENTS` is not read, and what to give
    instead: for a Hazcam, the product's PDS4 label in the Hazcam bundle's folder of the record's sol, named
    ``<imageid>*.xml`` where the record has an ``imageid`` (``""`` where it has none)."""
    why = (
        f"{where}: the frame of a {instrument or 'unnamed instrument'}'s model in the raw-image metadata is "
        f"not established (it is for {', '.join(MAST_INSTRUMENTS)}, whose axis is checked against the "
        "record's mastAz/mastEl"
    )
    folder = next((f for prefix, f in _HAZCAM_FOLDERS if instrument.startswith(prefix)), None)
    if folder is None:
        return f"{why}); give this command the image's PDS4 label (.xml) from the PDS archive, which names it"
    try:
        sol_dir = f"{int(_text(sol)):05d}"
    except ValueError:
        sol_dir = "<sol>"
    label = (
        f"the product's PDS4 label instead, {imageid}*.xml" if imageid else "the product's PDS4 label (.xml)"
    )
    return (
        f"{why}; a Hazcam is fixed to the rover's body, so the record has nothing to check its model's frame "
        f"against); give this command {label} from the PDS bundle mars2020_hazcam_ops_raw, "
        f"data/sol/{sol_dir}/ids/edr/{folder}/ (it names its model's frame and the rover's place)"
    )


def _check_mast_pointing(where: str, axis: list[float], ext: dict[str, Any]) -> None:
    """Refuse a mast camera's model whose axis is not at the record's mastAz/mastEl in the rover frame (a
    model given in another frame); records without numeric mastAz/mastEl are not checked."""
    try:
        mast_az, mast_el = float(_text(ext.get("mastAz"))), float(_text(ext.get("mastEl")))
    except ValueError:
        return
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    az = math.degrees(math.atan2(a[1], a[0]))  # clockwise from forward, towards starboard
    el = -math.degrees(math.asin(max(-1.0, min(1.0, a[2]))))  # z down
    if _angle_deg(az, mast_az) > MAST_TOLERANCE_DEG or abs(el - mast_el) > MAST_TOLERANCE_DEG:
        raise LabelError(
            f"{where}: the model's axis (azimuth {az:.1f}, elevation {el:.1f} degrees in the rover frame) is "
            f"not at the record's mastAz {mast_az:g} / mastEl {mast_el:g}, so the model is not in the rover "
            "frame this converter reads; use the image's PDS4 label"
        )


def _stem(record: dict[str, Any], imageid: str, where: str) -> str:
    """The downloaded image's stem: the basename of ``image_files.full_res``, else the ``imageid``."""
    files = record.get("image_files")
    url = _text(files.get("full_res")) if isinstance(files, dict) else ""
    name = PurePosixPath(urlparse(url).path).name if url else ""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = stem or imageid
    if not _SAFE_STEM.fullmatch(stem):
        raise LabelError(f"{where}: cannot name a camera file after {stem!r} (the image's name)")
    return stem


def raw_camera_file_dict(
    img: RawImage, source: str | Path, ground_z_m: float | None = None, rover_frame: bool = False
) -> dict[str, Any]:
    """The camera JSON dict (schema of :mod:`marsunits.boundary.camera.io`) of one record's camera.

    Levelled by the record's attitude into the rover's local level frame (``"frame": "pds"``, ``site``
    ``LOCAL_LEVEL_(<site>,<drive>)``) unless ``rover_frame`` or the attitude is unusable; else in the rover
    frame turned to x forward, y left, z up (``"frame": "flu"``, ``site`` ``ROVER_NAV_(<site>,<drive>)``).
    The ground is at 0 in both (the rover frame's origin is on it) unless ``ground_z_m`` is given.

    Raises:
        LabelError: If the camera reader refuses the result (camera below the ground, bad vectors).
    """
    source = Path(source)
    pose = None if rover_frame else img.pose
    frame_text = f"ROVER_NAV_FRAME (SITE={img.site}, DRIVE={img.drive})"
    if pose is not None:
        vectors = pose.to_site(img.vectors)
        frame_text += " levelled by the record's attitude into its LOCAL_LEVEL frame"
        site = f"LOCAL_LEVEL_({img.site},{img.drive})"
    else:
        vectors = rover_vectors_to_flu(img.vectors)
        frame_text += ", kept (--rover-frame)" if rover_frame else f", not levelled ({img.pose_note})"
        site = f"ROVER_NAV_({img.site},{img.drive})"
    if ground_z_m is not None:
        ground, note = float(ground_z_m), "--ground-z-m"
    else:
        ground, note = 0.0, "ROVER_NAV_FRAME origin (on the ground beneath the rover)"
    d: dict[str, Any] = {
        "model": img.model,
        "frame": "pds" if pose is not None else "flu",
        **vectors,
        **{k: (int(v) if k == "T" else v) for k, v in img.scalars.items()},
        "image_width": img.image_width,
        "image_height": img.image_height,
        "site": site,
        "ground_z_m": ground,
        "raw_json": source.name,
        "raw_imageid": img.imageid,
        "raw_frame": frame_text,
        "raw_ground": note,
    }
    try:
        camera_from_dict(d, source=f"{source}: {img.imageid}")
    except CameraFileError as exc:
        raise LabelError(f"{exc} (converted from the raw-image metadata; check it or --ground-z-m)") from exc
    return d
