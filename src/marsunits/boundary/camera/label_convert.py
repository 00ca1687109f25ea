"""From a label file to a camera file: :func:`read_label` (a PDS3 or PDS4 label, told apart by the file's
head), :func:`camera_file_dict` (the model levelled into its site or turned to the rover's x forward, y
left, z up, with its ground, in the schema of :mod:`marsunits.boundary.camera.io`),
:func:`resized_camera_dict` (that model for a resized copy of the image), :func:`convert_label` and
:func:`write_camera_file` (written atomically, an identical file left as it is).

The command that runs these over many labels, and what is read and written:
:mod:`marsunits.boundary.camera.from_label`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.atomic import atomic_write_text
from marsunits.boundary.camera.cahv import CameraBelowGroundError, below_ground_refusal, ned_to_flu
from marsunits.boundary.camera.io import SIDECAR_SUFFIX, CameraFileError, camera_from_dict
from marsunits.boundary.camera.label_camera import _NORTH_FRAMES, _ROVER_FRAMES, LabelCamera, LabelError
from marsunits.boundary.camera.label_ground import written_ground
from marsunits.boundary.camera.label_pds3 import _read_pds3
from marsunits.boundary.camera.label_pds4 import _read_pds4
from marsunits.user_paths import expand_home

__all__ = [
    "camera_file_dict",
    "convert_label",
    "read_label",
    "resized_camera_dict",
    "rover_vectors_to_flu",
    "write_camera_file",
]


_GROUND_ADVICE = (
    "give the ground's height in the frame the camera file is written in (metres, z up; the SITE frame for "
    "a levelled rover-frame model) with --ground-z-m (docs/cameras.md)"
)


def read_label(path: str | Path) -> LabelCamera:
    """Read the camera model of a PDS3 or PDS4 label (what is read: :mod:`.from_label`; ``~`` in ``path``
    is the home folder).

    Raises:
        LabelError: If the file cannot be read, is not a label, has no camera model or one that is not CAHV,
            CAHVOR or CAHVORE, or lacks the image size or the frame (the message names the file and the fix).
    """
    path = expand_home(path)
    if path.exists() and not path.is_file():  # never opened: a FIFO would be read for ever
        raise LabelError(
            f"cannot read label {path}: a folder or special file, not a file; give the label file"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except FileNotFoundError as exc:
        if any(c in path.name for c in "*?["):  # a shell passes a pattern that matched nothing as it is
            raise LabelError(
                f"cannot read label {path}: no file matches this pattern; check the folder and the case of "
                "the extension (.LBL or .lbl, .IMG or .img, .xml)"
            ) from exc
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    if not head.strip(b" \t\r\n\f\v\0") and (len(head) < 512 or b"\0" in head):
        # Blanks, or NUL bytes (a download that preallocated the file and was cut before writing any)
        what = "0 bytes" if not head else "NUL bytes only" if not head.strip(b"\0") else "blanks only"
        raise LabelError(
            f"cannot read label {path}: the file is empty ({what}: an interrupted download?); download the "
            "label again"
        )
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _read_pds4(path)
    if b"PDS_VERSION_ID" not in head.upper() and b"ODL_VERSION_ID" not in head.upper():  # ODL: any case
        # pvl's lenient grammar reads any bytes (an image, a CSV) as an empty label: say what the file is not
        raise LabelError(
            f"cannot read label {path}: not a PDS3 (ODL) or PDS4 (XML) label (it starts with neither "
            "PDS_VERSION_ID nor an XML tag); give the product's .LBL, .IMG or .xml label"
        )
    return _read_pds3(path)


def rover_vectors_to_flu(vectors: dict[str, list[float]]) -> dict[str, list[float]]:
    """Camera model vectors from a rover frame (forward, starboard, down) to x forward, y left, z up; ``R``
    and ``E`` are coefficients along ``O``, no directions, so no frame turns them."""
    return {k: (v if k in ("R", "E") else ned_to_flu(np.array(v)).tolist()) for k, v in vectors.items()}


def camera_file_dict(
    cam: LabelCamera, label: str | Path, ground_z_m: float | None = None, rover_frame: bool = False
) -> dict[str, Any]:
    """The camera JSON dict (schema of :mod:`marsunits.boundary.camera.io`) of a label's camera.

    A model in a rover frame (``ROVER_NAV_FRAME``, ``ROVER_FRAME``) whose label places the rover in a SITE
    frame (:attr:`LabelCamera.pose`) is levelled into that SITE frame (``"frame": "pds"``, ``site``
    ``SITE_<n>``) unless ``rover_frame``; without that place, or with ``rover_frame``, it is written in the
    rover frame, turned to x forward, y left, z up (``"frame": "flu"``), whose ground tilts with the rover.

    Args:
        cam: From :func:`read_label`.
        label: The label's path (named in messages and in ``pds_label``).
        ground_z_m: The ground's height in the frame written (z up, metres); overrides the label's.
        rover_frame: Keep a rover-frame model in the rover frame.

    Raises:
        LabelError: If neither the label nor ``ground_z_m`` gives the ground, if the frame has no vertical
            axis or no index (a ``SITE_FRAME`` none naming its site), or if the camera reader refuses the
            result (camera below the ground, bad vectors).
    """
    label = Path(label)
    frame = cam.frame.upper()
    if frame not in _NORTH_FRAMES + _ROVER_FRAMES:
        raise LabelError(
            f"{label}: the camera model is in {cam.frame}, which has no vertical axis for a flat ground "
            f"(frames read: {', '.join(_NORTH_FRAMES + _ROVER_FRAMES)}); "
            "use a product whose model is in one of them"
        )
    if not cam.index or (frame == "SITE_FRAME" and cam.site_index is None):
        # A rover or local level frame moves with the rover: without its index every pose's cameras were
        # written with one site, "ROVER_NAV_()", and the contact map drew them in one frame.
        raise LabelError(
            f"{label}: the camera model's {cam.frame} has no index (REFERENCE_COORD_SYSTEM_INDEX, or "
            "geom:Coordinate_Space_Index), so its site or rover position cannot be named (the contact map "
            "would draw the cameras of every one as one); the label is damaged: use another product"
        )
    pose = cam.pose if frame in _ROVER_FRAMES and not rover_frame else None
    own_ground, own_note = written_ground(cam, pose is not None)
    if ground_z_m is not None:
        ground, note = float(ground_z_m), "--ground-z-m"
    elif own_ground is not None:
        ground, note = own_ground, own_note
    else:
        raise LabelError(f"{label}: the ground height is not determined ({own_note}); {_GROUND_ADVICE}")
    vectors: dict[str, list[float]] = dict(cam.vectors)
    frame_text = cam.frame_text
    if pose is not None:  # rover frame (z down) -> the site frame (z down) it stands in: level ground
        vectors = pose.to_site(vectors)
        frame_text += f" levelled into SITE_FRAME {pose.site} (the rover's place in {pose.source})"
    elif frame in _ROVER_FRAMES:  # forward, starboard, down -> forward, left, up: the map says forward/left
        vectors = rover_vectors_to_flu(vectors)
        frame_text += (
            ", kept (--rover-frame)"
            if rover_frame
            else f", not levelled ({cam.pose_note}): its ground tilts with the rover"
        )
    d: dict[str, Any] = {
        "model": cam.model,
        "frame": "flu" if frame in _ROVER_FRAMES and pose is None else "pds",
        **vectors,
        **{k: (int(v) if k == "T" and v == int(v) else v) for k, v in cam.scalars.items()},  # T: 3.0 -> 3
        "image_width": cam.image_width,
        "image_height": cam.image_height,
        "site": f"SITE_{pose.site}" if pose is not None else cam.site,
        "ground_z_m": ground,
        "pds_label": label.name,
        "pds_frame": frame_text,
        "pds_ground": note,
    }
    try:
        camera_from_dict(d, source=str(label))
    except CameraFileError as exc:
        said = str(exc)
        below = exc.__cause__
        if isinstance(below, CameraBelowGroundError):  # the file's frame, as written; no camera file's fix
            refusal = below_ground_refusal(below.centre_z_m, below.ground_z_m, d["frame"], camera_file=False)
            said = f"{label}: invalid {cam.model!r} camera: {refusal}"
        raise LabelError(f"{said} (converted from the label; check the label or --ground-z-m)") from exc
    return d


def resized_camera_dict(d: dict[str, Any], width: int, height: int, source: str) -> dict[str, Any]:
    """The CAHV, CAHVOR or CAHVORE camera dict ``d`` (made for its ``image_width`` x ``image_height`` image,
    the one archived) rescaled to a ``width`` x ``height`` copy of that image (resized as a whole, not
    cropped); a new dict, with ``<prefix>_resized`` saying from which size (``pds_`` or ``raw_``, as ``d``'s
    other notes).

    The derivation. CAHV image coordinates ``(x, y)`` put ``(0, 0)`` at the *centre* of the top-left pixel
    (:mod:`.cahv`), so the image's outer edges are at ``x = -1/2`` and ``x = W - 1/2``; a resize maps those
    edges onto the copy's, ``-1/2`` and ``W' - 1/2``: in the corner-origin coordinates ``u = x + 1/2`` it is
    ``u' = sx u`` with ``sx = W'/W`` (and ``v' = sy v``, ``sy = H'/H``, the heights). So
    ``x' = sx (x + 1/2) - 1/2 = sx x + (sx - 1)/2``. With ``p = P - C``, ``x = p.H / p.A``, hence
    ``x' = p.(sx H + (sx - 1)/2 A) / p.A``::

        H' = sx H + (sx - 1)/2 A,    V' = sy V + (sy - 1)/2 A

    (``A`` the unit axis, as the camera reader normalises it). ``C``, ``A``, ``O``, ``R``, ``E``, ``T``,
    ``P`` are unchanged: CAHVOR(E)'s distortion and entrance pupil act on the ray before ``H`` and ``V`` make
    it a pixel, so they are the same lens whatever the image's size. A point that projected to ``(u, v)`` in
    the archived image projects to ``(sx u, sy v)`` in the copy, and the ray of that pixel is the same ray.

    Raises:
        LabelError: ``d`` has no image size (which the readers refuse first), the size is not whole positive
            pixels, or the camera reader refuses the result; the message names ``source``.
    """
    old_w, old_h = d.get("image_width"), d.get("image_height")
    if not (isinstance(old_w, int) and isinstance(old_h, int) and old_w > 0 and old_h > 0):
        raise LabelError(
            f"{source}: the size of the image the model was made for is not known, so it cannot be rescaled "
            f"to {width}x{height}; give the label of the image product itself"
        )
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (width, height)):
        raise LabelError(f"{source}: the image size must be whole pixels above 0, got {width}x{height}")
    a = np.asarray(d["A"], dtype=np.float64)
    a = a / np.linalg.norm(a)
    sx, sy = width / old_w, height / old_h
    out = dict(d)
    out["H"] = (sx * np.asarray(d["H"], dtype=np.float64) + 0.5 * (sx - 1.0) * a).tolist()
    out["V"] = (sy * np.asarray(d["V"], dtype=np.float64) + 0.5 * (sy - 1.0) * a).tolist()
    out["image_width"], out["image_height"] = width, height
    prefix = "raw" if "raw_json" in d else "pds"
    out[f"{prefix}_resized"] = (
        f"from the {old_w}x{old_h} image the model was made for to {width}x{height} (--image-size): H and V "
        f"scaled by {sx:.6g} and {sy:.6g}, C, A and the lens terms as given"
    )
    try:
        camera_from_dict(out, source=source)
    except CameraFileError as exc:
        raise LabelError(f"{exc} (the model rescaled to {width}x{height} by --image-size)") from exc
    return out


def aspect_ratio_note(old_w: int, old_h: int, width: int, height: int) -> str | None:
    """What to say where a ``width`` x ``height`` copy of an ``old_w`` x ``old_h`` image is stretched (its
    two scale factors differing by more than 1 %: WIDTH and HEIGHT given the other way round, most likely);
    None where the copy keeps the image's shape."""
    sx, sy = width / old_w, height / old_h
    if abs(sx / sy - 1.0) <= 0.01:
        return None
    return (
        f"--image-size {width} {height} changes the aspect ratio of the {old_w}x{old_h} image the model was "
        f"made for (scaled by {sx:.4g} across, {sy:.4g} down); it fits a copy stretched so, not one resized "
        "whole: check that WIDTH comes before HEIGHT"
    )


def convert_label(
    label: str | Path,
    out_dir: str | Path | None = None,
    ground_z_m: float | None = None,
    overwrite: bool = False,
    rover_frame: bool = False,
    image_size: tuple[int, int] | None = None,
) -> Path:
    """Read ``label`` and write ``<stem>.camera.json`` next to it (or in ``out_dir``; ``~`` in either is the
    home folder); ``ground_z_m`` and ``rover_frame`` as in :func:`camera_file_dict`; ``image_size``
    ``(width, height)``: the model rescaled to a copy of the image of that size (:func:`resized_camera_dict`).

    Returns:
        The path written.

    Raises:
        LabelError: As :func:`read_label` and :func:`camera_file_dict`, and if the file exists with other
            content and ``overwrite`` is false (one holding exactly this camera file is left as it is).
        OSError: If the file cannot be written.
    """
    return _convert(label, out_dir, ground_z_m, overwrite, rover_frame, image_size)[0]


def _convert(
    label: str | Path,
    out_dir: str | Path | None,
    ground_z_m: float | None,
    overwrite: bool,
    rover_frame: bool,
    image_size: tuple[int, int] | None = None,
) -> tuple[Path, dict[str, Any], bool]:
    """The camera file written (or left as it was: the flag is False), its content, and whether written."""
    label = expand_home(label)
    dest = expand_home(out_dir if out_dir is not None else label.parent) / f"{label.stem}{SIDECAR_SUFFIX}"
    d = camera_file_dict(read_label(label), label, ground_z_m, rover_frame)
    if image_size is not None:
        d = resized_camera_dict(d, *image_size, source=str(label))
    return dest, d, write_camera_file(dest, d, overwrite, str(label))


def write_camera_file(dest: Path, d: dict[str, Any], overwrite: bool, source: str) -> bool:
    """Write the camera file ``d`` to ``dest`` (atomically); returns False where ``dest`` already holds
    exactly that text (nothing written: a re-run over a folder of labels, some new, converts the new ones
    and leaves the others as they are, instead of refusing each of them).

    Raises:
        LabelError: ``dest`` exists with other content (a hand-made camera, another ``--ground-z-m``) and
            ``overwrite`` is false; the message names ``source`` and says to pass ``--overwrite``.
    """
    text = json.dumps(d, indent=2) + "\n"
    if dest.exists() and not overwrite:
        try:
            same = dest.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            same = False
        if same:
            return False
        raise LabelError(f"{source}: {dest} exists and differs; pass --overwrite to replace it")
    atomic_write_text(dest, text)
    return True
