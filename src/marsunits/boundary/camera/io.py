"""Camera JSON files: read any supported model, and find the camera file that belongs to an image.

Schema (one JSON object per file; other keys are ignored, except one that looks like a misspelt key of the
model, e.g. ``heigth_m`` or ``roll`` for ``roll_deg``, or a key of another model, e.g. ``ground_z_m`` or
``z_m`` in a pinhole file, OpenCV's ``k3``, ``p1``, ``p2`` in a pinhole file or CAHVORE's ``E``, ``T``, ``P``,
``linearity`` in a CAHV(OR) one, or ``linearity`` for a CAHVORE's ``P``: that is an error, because the camera
would otherwise be read with the default silently, another lens than the file's):

* ``"model": "pinhole"`` -- :meth:`PinholeCamera.to_dict` form (what the synthetic generator writes to
  ``cameras/<name>.json``). Required: ``image_width``, ``image_height``, ``hfov_deg``, ``pitch_deg``;
  optional: ``roll_deg``, ``yaw_deg``, ``height_m``, ``x_m``, ``y_m``, ``k1``, ``k2``, ``site``, ``K``
  and OpenCV's ``fx``, ``fy``, ``cx``, ``cy`` (K's entries; checked against the others when present).
* ``"model": "cahv"`` -- required: ``C``, ``A``, ``H``, ``V`` (three numbers each, as in a PDS label's
  ``MODEL_COMPONENT_1..4``), ``image_width``, ``image_height``; optional: ``site`` (name of the site frame),
  ``frame`` (``"flu"``: x forward, y left, z up, the default; or ``"ned"`` / ``"pds"``: x north, y east,
  z down as in PDS SITE frames, converted on reading), ``ground_z_m`` (height of the ground plane in the
  FLU site frame, z up, default 0; also with ``"ned"``: a ground 0.5 m below the origin is ``-0.5``).
* ``"model": "cahvor"`` -- as ``cahv`` plus ``O`` (three numbers) and ``R`` (three numbers, ``r0, r1, r2``;
  ``r0 > -1``, near 0 for a real lens: with ``1 + r0 <= 0`` no pixel has a ray, and the file is refused).

* ``"model": "cahvore"`` -- as ``cahvor`` plus ``E`` (three numbers, the entrance-pupil terms, metres; PDS
  ``MODEL_COMPONENT_7``), ``T`` (the model type: 1 perspective, 2 fish-eye, 3 general; ``MODEL_COMPONENT_8``)
  and ``P`` (the linearity of a type 3 lens, ``MODEL_COMPONENT_9``; a number, not read for types 1 and 2).
  :class:`~marsunits.boundary.camera.cahvore.CahvoreCamera`; the Navcams and Hazcams of Mars 2020 and the
  Hazcams of MSL and MER are calibrated so.

CAHV(OR) image coordinates follow the PDS convention (origin at the centre of the top-left pixel); the
models convert to the project's corner-origin pixels themselves.
"""

from __future__ import annotations

import difflib
import errno
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.camera.cahv import (
    CahvCamera,
    CahvorCamera,
    CameraBelowGroundError,
    _unit,
    _vec3,
    below_ground_refusal,
    ned_to_flu,
)
from marsunits.boundary.camera.cahvore import CahvoreCamera
from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.errors import MarsUnitsError
from marsunits.user_paths import expand_home

__all__ = [
    "SIDECAR_SUFFIX",
    "CameraFileError",
    "camera_candidates",
    "find_camera_file",
    "camera_from_dict",
    "find_camera",
    "load_camera",
    "misplaced_camera_files",
]

#: A camera file next to an image ``<stem>.<ext>`` is named ``<stem>`` + this suffix.
SIDECAR_SUFFIX = ".camera.json"

_REQUIRED = {
    "pinhole": ("image_width", "image_height", "hfov_deg", "pitch_deg"),
    "cahv": ("C", "A", "H", "V", "image_width", "image_height"),
    "cahvor": ("C", "A", "H", "V", "O", "R", "image_width", "image_height"),
    "cahvore": ("C", "A", "H", "V", "O", "R", "E", "T", "P", "image_width", "image_height"),
}
_FRAMES = {"flu": "flu", "ned": "ned", "pds": "ned"}
#: Every key a model reads (required or optional), for spotting misspelt keys.
_KNOWN = {
    "pinhole": (
        "model", "K", "image_width", "image_height", "hfov_deg", "pitch_deg", "roll_deg", "yaw_deg",
        "height_m", "x_m", "y_m", "k1", "k2", "site", "fx", "fy", "cx", "cy",
    ),
    "cahv": ("model", "C", "A", "H", "V", "image_width", "image_height", "site", "frame", "ground_z_m"),
}  # fmt: skip
_KNOWN["cahvor"] = (*_KNOWN["cahv"], "O", "R")
_KNOWN["cahvore"] = (*_KNOWN["cahvor"], "E", "T", "P")
#: Keys that mean something to a reader of camera files but not to this model, and what to do instead: a
#: pinhole camera stands ``height_m`` over flat ground at z = 0, so ``ground_z_m``, ``frame`` or a CAHV
#: vector in a pinhole file (or ``hfov_deg`` in a CAHV one) would be ignored and the metres silently wrong;
#: so would OpenCV's extra lens terms in a pinhole file, or CAHVORE's in a CAHV(OR) one (another lens).
_FOREIGN = {
    "pinhole": {
        "z_m": "use height_m (the camera's height over the ground)",
        "ground_z_m": "use height_m (the camera's height over the ground; a pinhole's ground is z = 0)",
        "frame": "use nothing: a pinhole camera is in the FLU site frame (x forward, y left, z up)",
        **{k: "use model 'cahv' or 'cahvor' with all their vectors" for k in ("C", "A", "H", "V", "O", "R")},
        "k3": (
            "this model's distortion is radial with k1 and k2 only (x_d = x (1 + k1 r^2 + k2 r^4); no model "
            "here has an r^6 term): delete k3 if it is 0, else refit the lens with k1 and k2 alone"
        ),
        **{
            k: "this code has no tangential distortion (OpenCV's p1, p2): delete p1 and p2 if they are 0, "
            "else refit the lens with the radial k1 and k2 alone"
            for k in ("p1", "p2")
        },
        "focal_px": (
            "give hfov_deg = 2 atan(image_width / (2 fx)) in degrees instead, fx being the focal length "
            "in pixels (square pixels: fx = fy); a calibration whose fx and fy differ is written as model "
            "'cahv' (docs/cameras.md)"
        ),
    },
    "cahv": {
        k: "use model 'pinhole' with its keys, or the CAHV vectors alone"
        for k in ("hfov_deg", "pitch_deg", "roll_deg", "yaw_deg", "height_m", "x_m", "y_m", "z_m", "k1", "k2")
    },
}
# CAHVORE's entrance-pupil terms E, its type T and parameter P (PDS MODEL_COMPONENT_7..9), or linearity:
# read as absent, the file would be another lens.
_FOREIGN["cahv"].update(
    {
        k: "use model 'cahvore' with all its keys (E, T and P are its entrance pupil, type and linearity; "
        "dropped, the camera would be another lens)"
        for k in ("E", "T", "P", "linearity")
    }
)
_FOREIGN["cahvor"] = dict(_FOREIGN["cahv"])
_FOREIGN["cahvore"] = {k: v for k, v in _FOREIGN["cahv"].items() if k not in ("E", "T", "P")}
_FOREIGN["cahvore"]["linearity"] = "give it as P (the type 3 lens's linearity, MODEL_COMPONENT_9)"
# O and R are CAHVOR's lens distortion: a CAHV file dropped R without a word and failed on O with
# "CahvCamera.__init__() got an unexpected keyword argument 'O'".
_FOREIGN["cahv"].update({k: "use model 'cahvor' (O and R are its lens distortion)" for k in ("O", "R")})
#: Other names of a pinhole's angles, and the key meant: read as absent (yaw 0), they turned every ground
#: contact. Refused only where the key meant is not given (beside it, they are kept as metadata).
_ALIASES = {
    "azimuth_deg": ("yaw_deg", "degrees, positive turns left, counter-clockwise seen from above"),
    "heading_deg": ("yaw_deg", "degrees, positive turns left, counter-clockwise seen from above"),
    "elevation_deg": ("pitch_deg", "degrees, positive looks DOWN: an elevation of -20 is a pitch of 20"),
    "tilt_deg": ("pitch_deg", "degrees, positive looks down"),
    "fov_deg": ("hfov_deg", "the horizontal field of view, degrees"),
}
#: The optional keys of a measurement left at their default when absent, by the unit their name ends in, and
#: that default: an unknown key with that unit (a geologist's ``"easting_m"``, ``"camera_height_m"``,
#: ``"bearing_deg"``, ``"ground_height_m"``) while such a key is absent most likely holds its value, and was
#: ignored without a word (the camera at the site's origin, 2 m high, facing x). Only the heading among the
#: angles: a roll is rarely given, and another angle beside the heading (a rover's) is metadata.
_DEFAULTED = {
    "pinhole": {
        "_m": {"height_m": "2 m", "x_m": "0", "y_m": "0"},
        "_deg": {
            "yaw_deg": "0 (positive turns left, counter-clockwise seen from above: not a compass bearing)"
        },
    },
    "cahv": {"_m": {"ground_z_m": "0"}},
}
_DEFAULTED["cahvor"] = _DEFAULTED["cahvore"] = _DEFAULTED["cahv"]
#: The largest float: a JSON integer beyond it cannot be a camera value (``float()`` overflows).
_FLOAT_MAX = sys.float_info.max
#: How alike (difflib ratio) an unknown key must be to a known one to count as its misspelling.
_TYPO_RATIO = 0.8


class CameraFileError(MarsUnitsError, ValueError):
    """A camera file or dict that cannot be read; the message names the source and what is expected.

    A :class:`~marsunits.errors.MarsUnitsError`, as every error of input is, so that ``except
    MarsUnitsError`` around ``UnitMapper.map`` catches a refused camera too (it was a ``ValueError`` alone
    until 2026-12-07); still a ``ValueError`` for code that catches that. ``predict.py`` catches it by name
    wherever it reads a camera: the image keeps its pixel outputs and its row says the refusal
    (``camera_error``), not a failed image.
    """


def camera_from_dict(d: dict[str, Any], source: str = "camera dict") -> CameraModel:
    """Build a camera model from its JSON dict (schema in the module docstring).

    Args:
        d: The parsed JSON object.
        source: Where it came from (a file name), used in error messages.

    Raises:
        CameraFileError: If the model is unknown, keys are missing or values are invalid.
    """
    if not isinstance(d, dict):
        raise CameraFileError(f"{source}: expected a JSON object with a 'model' key, got {type(d).__name__}")
    _refuse_numbers_beyond_float(d, source)
    model = d.get("model")
    if isinstance(model, str) and model.lower() in _REQUIRED:
        model = model.lower()  # "CAHVOR", as PDS labels write MODEL_TYPE
        d = {**d, "model": model}
    if model not in _REQUIRED:
        raise CameraFileError(_unknown_model(model, source))
    _check_misspelt_keys(d, model, source)
    missing = [k for k in _REQUIRED[model] if k not in d]
    if missing:
        raise CameraFileError(
            f"{source}: a {model!r} camera needs keys {list(_REQUIRED[model])}; missing {missing} "
            f"(found {sorted(d)}){_hfov_from_focal(d) if 'hfov_deg' in missing else ''}"
        )
    try:
        if model == "pinhole":
            return PinholeCamera.from_dict(d)
        frame = _FRAMES.get(str(d.get("frame", "flu")).lower())
        if frame is None:
            raise ValueError(f"'frame' must be one of {sorted(_FRAMES)}, got {d.get('frame')!r}")
        for key in ("C", "A", "H", "V", "O", "R", "E"):
            if key in d and (
                not isinstance(d[key], (list, tuple))
                or any(isinstance(v, (bool, str)) or not isinstance(v, (int, float)) for v in d[key])
            ):
                raise ValueError(f"{key!r} must be a list of JSON numbers, got {d[key]!r}")
            if key in d and len(d[key]) != 3:  # checked before the frame turns it (numpy's message was all)
                raise ValueError(f"CAHV vector {key} must be 3 finite numbers, got {d[key]!r}")
        vec = {k: d[k] for k in ("C", "A", "H", "V", "O") if k in d}
        if frame == "ned":
            # Checked before the frame turns them, so a refusal quotes the file's numbers ("A must be a unit
            # vector, got [1, 1, 0]"), not numpy's repr of the turned ones ("got array([ 1., -1., -0.])").
            for key, value in vec.items():
                (_unit if key in ("A", "O") else _vec3)(key, value)
            vec = {k: ned_to_flu(v) for k, v in vec.items()}
        for key in ("image_width", "image_height", "ground_z_m"):
            value = d.get(key, 0.0)
            # A JSON number, as the pinhole model asks: "160" or 160.7 would otherwise be turned into 160.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key!r} must be a finite JSON number, got {value!r}")
            if key != "ground_z_m" and value != int(value):
                raise ValueError(f"{key!r} must be a whole number of pixels, got {value!r}")
        site = d.get("site")
        if site is not None and not isinstance(site, str):  # a number or list broke the map at the run's end
            raise ValueError(f"'site' must be a name (a JSON string) or null, got {site!r}")
        common: dict[str, Any] = {
            "image_width": int(d["image_width"]),
            "image_height": int(d["image_height"]),
            "site": site,
            # z up in the site frame whatever "frame" says (documented so from the start; files rely on it).
            "ground_z_m": float(d.get("ground_z_m", 0.0)),
            "source_frame": frame,
        }
        if model == "cahv":
            return CahvCamera(**vec, **common)
        if model == "cahvor":
            cam = CahvorCamera(**vec, R=d["R"], **common)
        else:
            cam = CahvoreCamera(**vec, R=d["R"], E=d["E"], T=_cahvore_type(d["T"]), P=_number("P", d["P"]),
                                **common)  # fmt: skip
        _check_cahvor_r0(cam, d["R"])
        return cam
    except CameraBelowGroundError as exc:  # its frame quoted as the file spells it: "pds" is read as "ned"
        spelled = str(d["frame"]) if exc.source_frame == "ned" else exc.source_frame
        said = below_ground_refusal(exc.centre_z_m, exc.ground_z_m, spelled)
        raise CameraFileError(f"{source}: invalid {model!r} camera: {said}") from exc
    except (TypeError, ValueError) as exc:
        raise CameraFileError(f"{source}: invalid {model!r} camera: {exc}") from exc


def _cahvore_type(value: Any) -> int:
    """CAHVORE's ``T`` as an int: 1, 2 or 3, also written ``3.0`` (as PDS3 labels write it); else refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (1, 2, 3):
        raise ValueError(
            f"'T' must be the CAHVORE model type 1 (perspective), 2 (fish-eye) or 3 (general), got {value!r} "
            "(MODEL_COMPONENT_8 of a PDS label)"
        )
    return int(value)


def _number(key: str, value: Any) -> float:
    """A finite JSON number (not a bool or a string), or a ValueError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a finite JSON number, got {value!r}")
    return float(value)


def _check_cahvor_r0(cam: CahvorCamera, given: Any) -> None:
    """Refuse a CAHVOR lens with ``1 + r0 <= 0`` (``R = (r0, r1, r2)``): it scales every point's offset
    from the optical axis by ``1 + r0`` and less, imaging nothing in order, so no pixel has a ray and no
    point a pixel. Read as it stood, such a file (a typo, or a bad conversion) gave an image without ground
    coordinates and without a word on why.

    Raises:
        ValueError: Naming ``R`` as given, its ``r0`` and what is expected (the reader adds the file).
    """
    r0 = float(cam.R[0])
    if 1.0 + r0 <= 0.0:
        raise ValueError(
            f"'R' {given!r} has r0 = {r0:g}, so 1 + r0 = {1.0 + r0:g} <= 0: a lens that images nothing in "
            "order (no pixel would have a ray, no ground point a pixel). r0 must be > -1; real CAHVOR R "
            "vectors have r0 near 0 (MODEL_COMPONENT_6 of a PDS label, e.g. [0.0, 0.01, 0.0]): fix R in "
            "the file (a typo, or a bad conversion?)"
        )


def _refuse_numbers_beyond_float(d: dict[str, Any], source: str) -> None:
    """Refuse a whole JSON number too large for a float (``1e400`` reads as ``inf`` and is refused as not
    finite, but ``1`` followed by 400 zeros is a Python int): every check of a camera value turns it into a
    float, and the ``OverflowError`` that raised is no ``ValueError``, so it escaped the per-image error
    handling and ended the whole ``predict.py`` run with a traceback.

    Raises:
        CameraFileError: Naming the key and how many digits its number has.
    """

    def too_large(value: Any) -> int | None:
        if isinstance(value, (list, tuple)):
            return next((n for n in map(too_large, value) if n is not None), None)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX:
            return abs(value)
        return None

    for key, value in d.items():
        number = too_large(value)
        if number is not None:
            digits = len(str(number)) if number.bit_length() < 10_000 else "thousands of"
            raise CameraFileError(
                f"{source}: {key!r} holds a whole number of {digits} digits, beyond any float; "
                "a camera value is metres, degrees or pixels: fix the number in the file"
            )


def _hfov_from_focal(d: dict[str, Any]) -> str:
    """The ``hfov_deg`` a pinhole file without one should give, from its ``fx`` (or ``fy``, or ``K``'s
    focal length) and ``image_width``, for the refusal of the file (a calibration gives focal lengths in
    pixels, the model an angle); ``""`` when the file has no usable focal length."""
    k = d.get("K")
    from_k = k[0][0] if isinstance(k, list) and k and isinstance(k[0], list) and k[0] else None
    focal, width = d.get("fx", d.get("fy", from_k)), d.get("image_width")
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in (focal, width)
    ):
        return ""
    hfov = math.degrees(2 * math.atan(float(width) / (2 * float(focal))))  # type: ignore[arg-type]
    return f'; from its focal length {focal:g} pixels and image_width {width:g}, add "hfov_deg": {hfov:.6g}'


def _unknown_model(model: Any, source: str) -> str:
    """The refusal of a camera whose ``model`` is absent or not one this code reads, with what to do."""
    said = f"{source}: 'model' must be one of {sorted(_REQUIRED)}, got {model!r}. "
    if model is None:
        return said + 'Add e.g. "model": "cahvor" to the file.'
    return said + "Write the camera as one of these models (docs/cameras.md)."


def _check_misspelt_keys(d: dict[str, Any], model: str, source: str) -> None:
    """Refuse a key that is not one of the model's but looks like one that is absent.

    ``"heigth_m": 1.9`` or ``"roll": 3`` would otherwise be ignored and the camera built with the default
    height or roll, putting every ground contact in the wrong place without a word; so would a key of
    another model (``_FOREIGN``: ``ground_z_m`` in a pinhole file, OpenCV's ``k3`` or ``p1``, CAHVORE's
    ``E``), and a key with a unit whose model key is absent (``"easting_m"`` without ``x_m``:
    :func:`_check_unread_measurement`). Unrelated extra keys (``"instrument"``, ``"sclk"``) stay allowed.

    Raises:
        CameraFileError: Naming the key and the one it probably means.
    """
    known = _KNOWN[model]
    for key in d:
        if key in known:
            continue
        degrees = f"{key[: -len('_rad')]}_deg" if key.endswith("_rad") else None
        if degrees in known and degrees not in d:  # "yaw_rad": 1.57 was ignored (yaw 0) without a word
            raise CameraFileError(
                f"{source}: key {key!r} is not read: angles are in degrees here; give {degrees!r} instead "
                f"({key} = {d[key]!r} is {_degrees(d[key])} degrees)"
            )
        meant = _ALIASES.get(key) if model == "pinhole" else None
        if meant is not None and meant[0] not in d:
            raise CameraFileError(
                f"{source}: key {key!r} is not read by a 'pinhole' camera, so the ground coordinates would "
                f"silently ignore it; use {meant[0]} ({meant[1]})"
            )
        if key in _FOREIGN[model]:
            raise CameraFileError(
                f"{source}: key {key!r} is not read by a {model!r} camera, so the ground coordinates would "
                f"silently ignore it; {_FOREIGN[model][key]} (the keys of this model: {list(known)})"
            )
        # Unit suffix left off ("pitch"), a case slip ("Pitch_deg"), or a typo ("heigth_m").
        guess = [k for k in known if k.lower().startswith(key.lower() + "_") or k.lower() == key.lower()]
        guess = guess or difflib.get_close_matches(key, list(known), n=1, cutoff=_TYPO_RATIO)
        if not guess:
            _check_unread_measurement(d, key, model, source)
            continue
        if guess[0] in d:  # both spellings: which value was meant cannot be told
            raise CameraFileError(
                f"{source}: keys {key!r} and {guess[0]!r} both given in a {model!r} camera; {key!r} is not a "
                f"key of this model and only {guess[0]!r} would be read: remove one of them"
            )
        raise CameraFileError(
            f"{source}: unknown key {key!r} in a {model!r} camera; did you mean {guess[0]!r}? "
            f"Rename it (the keys of this model: {list(known)})"
        )


def _check_unread_measurement(d: dict[str, Any], key: str, model: str, source: str) -> None:
    """Refuse ``key``, which the model does not read, where its unit (``_m``, ``_deg``) is that of an optional
    key absent from ``d`` (``_DEFAULTED``): it most likely holds that key's value, which would take its
    default. Beside those keys, it is metadata (a rover's heading beside the camera's).

    Raises:
        CameraFileError: Naming ``key`` and the absent keys with their defaults.
    """
    for unit, defaults in _DEFAULTED[model].items():
        absent = [k for k in defaults if k not in d]
        if key.endswith(unit) and absent:
            taken = ", ".join(f"{k} {defaults[k]}" for k in absent)
            which = "that key" if len(absent) == 1 else "the key it is"
            raise CameraFileError(
                f"{source}: key {key!r} is not read by a {model!r} camera, while {', '.join(absent)} "
                f"{'is' if len(absent) == 1 else 'are'} not given and would be taken as {taken}: if "
                f"{key!r} holds {'it' if len(absent) == 1 else 'one of them'}, give it under {which}, else "
                f"give {', '.join(absent)} beside it (the keys of this model: {list(_KNOWN[model])})"
            )


def _degrees(radians: Any) -> str:
    """``radians`` in degrees for a message, or ``"?"`` when it is not a number."""
    if isinstance(radians, bool) or not isinstance(radians, int | float):
        return "?"
    return f"{math.degrees(radians):.6g}"


def load_camera(path: str | os.PathLike[str]) -> CameraModel:
    """Read a camera JSON file (schema in the module docstring; ``~`` is the home folder).

    Raises:
        CameraFileError: If the file is missing, not JSON, or not a valid camera (the message names it).
    """
    path = expand_home(path)
    not_a_file = _not_a_file(path)
    if not_a_file:  # never opened: a FIFO would be read for ever
        raise CameraFileError(f"cannot read camera file {path}: {not_a_file}; fix or remove it")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not an error
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CameraFileError(f"cannot read camera file {path}: {reason} (expected UTF-8 JSON)") from exc
    try:
        data = json.loads(text)
    except (
        ValueError,
        RecursionError,
    ) as exc:  # also a number of over 4300 digits, or nesting past the stack
        raise CameraFileError(f"camera file {path} is not valid JSON: {exc}") from exc
    return camera_from_dict(data, source=str(path))


def camera_candidates(image_path: str | os.PathLike[str]) -> list[Path]:
    """Where :func:`find_camera` looks for the camera of ``image_path`` (``~`` is the home folder), in order.

    1. the sidecar ``<dir>/<stem>.camera.json`` next to the image;
    2. ``<dir>/../cameras/<stem>.json`` (the dataset layout ``images/`` + ``cameras/`` of DESIGN.md).
    """
    p = expand_home(image_path)
    return [p.with_name(p.stem + SIDECAR_SUFFIX), p.parent.parent / "cameras" / f"{p.stem}.json"]


def find_camera_file(image_path: str | os.PathLike[str]) -> Path | None:
    """The camera file an image is read with: the first of :func:`camera_candidates` that exists, or None.
    Nothing is parsed. A candidate whose name the filesystem cannot hold (an image stem over about 240
    bytes: ``<stem>.camera.json`` passes 255) cannot exist: it counts as absent (looking for it failed the
    whole image with "File name too long")."""
    return next((c for c in camera_candidates(image_path) if _exists(c)), None)


#: Largest file :func:`misplaced_camera_files` opens to tell a camera file from other JSON (a camera file is
#: under a kilobyte or two; a labelling tool's JSON beside an image may be megabytes).
_MISPLACED_MAX_BYTES = 1 << 20


def misplaced_camera_files(image_path: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Camera files of ``image_path`` under a name :func:`find_camera` does not read, each with the name it
    reads (``(found, expected)``): ``<stem>.json`` or ``<name>.camera.json`` (the image's extension kept) next
    to the image, for the sidecar ``<stem>.camera.json``; ``../cameras/<stem>.camera.json`` and
    ``cameras/<stem>.json`` or ``cameras/<stem>.camera.json`` below the image's folder, for
    ``../cameras/<stem>.json``. Such a file was left unread without a word: the image had no metres and no
    place on the contact map. Only JSON objects whose ``model`` is a camera model this module reads count,
    so a labelling tool's ``<stem>.json`` beside an image is not one. Empty when :func:`find_camera_file`
    finds a camera (that one is read) or nothing is misplaced; files that cannot be read are passed over.
    """
    p = expand_home(image_path)
    if find_camera_file(p) is not None:
        return []
    sidecar, layout = camera_candidates(p)
    guesses = [
        (p.with_suffix(".json"), sidecar),
        (p.with_name(p.name + SIDECAR_SUFFIX), sidecar),
        (layout.with_name(p.stem + SIDECAR_SUFFIX), layout),
        (p.parent / "cameras" / f"{p.stem}.json", layout),
        (p.parent / "cameras" / f"{p.stem}{SIDECAR_SUFFIX}", layout),
    ]
    found: list[tuple[Path, Path]] = []
    for guess, expected in guesses:
        if guess == p or guess in (f for f, _ in found):
            continue
        try:
            if not guess.is_file() or guess.stat().st_size > _MISPLACED_MAX_BYTES:
                continue
            data = json.loads(guess.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            continue
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, str) and model.strip().lower() in _REQUIRED:
            found.append((guess, expected))
    return found


def _exists(path: Path) -> bool:
    """Whether ``path`` is there in any form: a file, but also a symbolic link that cannot be followed (a
    calibration on a disk not mounted), a folder or a special file, which :func:`load_camera` refuses
    naming the fault (they counted as no camera file, and the image was predicted without ground
    coordinates and without a word)."""
    try:
        return path.is_file() or os.path.lexists(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return False
        raise


def _not_a_file(path: Path) -> str:
    """Why ``path`` is not a regular file that can be read ("" when it is one)."""
    if path.is_file():
        return ""
    if path.is_symlink():
        return (
            f"a symbolic link to {os.readlink(path)} that cannot be followed (missing target or a link loop)"
        )
    if path.is_dir():
        return "a folder, not a file"
    if os.path.lexists(path):
        return "a special file (a pipe, socket or device), not a file"
    return "no such file"


def find_camera(image_path: str | os.PathLike[str]) -> CameraModel | None:
    """The camera of an image (:func:`find_camera_file`, read), or None when it has no camera file.

    Raises:
        CameraFileError: If a camera file exists but cannot be read (a broken file is never ignored).
    """
    path = find_camera_file(image_path)
    return None if path is None else load_camera(path)
