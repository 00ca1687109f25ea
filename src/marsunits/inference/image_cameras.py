"""The camera of an input image, in the pixel frame of the image as read, and the ground coordinates it gives
the image's contacts (``predict.py``): camera files are found beside the image
(:func:`~marsunits.boundary.camera.find_camera`), turned by the image's EXIF orientation, checked against
the image's size, and warned about when they see no ground within ``max_range_m`` or give a pinhole's field
of view in radians."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.boundary.camera import find_camera
from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.camera.cahv import CahvCamera
from marsunits.boundary.camera.io import (
    SIDECAR_SUFFIX,
    CameraFileError,
    camera_candidates,
    find_camera_file,
    misplaced_camera_files,
)
from marsunits.boundary.camera.oriented import orient_camera
from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.boundary.contact_io import ContactLine
from marsunits.boundary.contact_map import view_footprint
from marsunits.boundary.projection import add_ground
from marsunits.data.io import exif_orientation

__all__ = [
    "add_ground_coordinates",
    "camera_error_message",
    "camera_size_refusal",
    "image_camera",
    "NO_MAP_DRAWN",
    "no_map_reason",
    "sized_image_camera",
    "warn_if_angles_read_as_radians",
    "warn_if_sees_no_ground",
    "warn_misplaced_camera_files",
]

log = logging.getLogger(__name__)

_FIND = object()


def sized_image_camera(
    image_path: Path,
    width: int,
    height: int,
    camera: Any = _FIND,
    max_megapixels: float | None = None,
    source: str | None = None,
) -> CameraModel | None:
    """:func:`image_camera` of an image of ``width`` x ``height`` pixels (as read), or None when it has none;
    ``camera``: the image's camera when the caller already looked it up.

    ``source``: where ``camera`` came from when the caller was given it rather than finding it beside the
    image (``UnitMapper.map(..., camera=...)``): a refusal names it instead of the camera file beside the
    image, and asks for the image's camera instead of a fixed file.

    Raises:
        ValueError: The camera file is broken or made for another image size (``CameraFileError``).
    """
    if camera is _FIND:
        camera = image_camera(image_path, max_megapixels)
    if camera is not None and (camera.image_width, camera.image_height) != (width, height):
        raise CameraFileError(_camera_size_mismatch(image_path, camera, width, height, source))
    return camera  # type: ignore[no-any-return]


def image_camera(image_path: Path, max_megapixels: float | None = None) -> CameraModel | None:
    """The camera of an image (``find_camera``) in the pixel frame of the image as read: a JPEG's EXIF
    orientation turns the stored raster the camera was calibrated on (``orient_camera``; the image's size
    is checked against ``max_megapixels`` as it is read, :func:`~marsunits.data.io.exif_orientation`).
    None when it has none; a camera file beside it under a name that is not read
    (:func:`~marsunits.boundary.camera.io.misplaced_camera_files`) is warned about, with the name to give.

    Raises:
        ValueError: The camera file is broken (``CameraFileError``).
    """
    camera = find_camera(image_path)
    if camera is None:
        warn_misplaced_camera_files(image_path)
        return None
    return orient_camera(camera, exif_orientation(image_path, max_megapixels))


def warn_misplaced_camera_files(image_path: Path) -> None:
    """Warn about each camera file of ``image_path`` under a name that is not read
    (:func:`~marsunits.boundary.camera.io.misplaced_camera_files`: such a file was left unread without a
    word), naming the name to give it. Said for an image predicted (:func:`image_camera`) and for one a
    resumed ``predict.py`` skips as finished, whose contact map still lacks it: the same command run again
    said nothing, and a user whose first run's warning had scrolled away never saw it again."""
    for found, expected in misplaced_camera_files(image_path):
        log.warning(
            "%s: %s looks like its camera file but is not read under that name, so the image gets no "
            "ground coordinates and no place on map=true's contact map; rename it to %s (cameras are "
            "read from <stem>.camera.json next to the image or ../cameras/<stem>.json)",
            Path(image_path).name,
            found,
            expected,
        )


#: How :func:`no_map_reason` begins (the closing paragraph gives what follows it).
NO_MAP_DRAWN = "map=true: no contact map drawn: "


def no_map_reason(input_dir: Path, rows: Sequence[Mapping[str, Any]]) -> str:
    """Why ``map=true`` drew no contact map, for a run whose images (manifest ``rows``, paths relative to
    ``input_dir``) gave it no camera: the images without a camera file, with where one is read from
    (:func:`~marsunits.boundary.camera.io.camera_candidates`, the paths of the first such image), and those
    whose camera file was refused (said above as their error rows), or whose image failed before its camera
    was read. A run whose camera files were simply missing was told "(missing, or refused: see the messages
    above)", with nothing above."""
    images = [(input_dir / str(row["path"]), row) for row in rows]
    with_file = [row for path, row in images if find_camera_file(path) is not None]
    missing = [path for path, row in images if find_camera_file(path) is None]
    refused = sum(row.get("width") not in (None, "") for row in with_file)  # image read, its camera refused
    failed = len(with_file) - refused  # the image itself failed: its camera file was never read
    rule = f"<stem>{SIDECAR_SUFFIX} beside it, or ../cameras/<stem>.json"
    n = len(images)
    said = []
    if refused and refused == n:
        said.append(
            "the image's camera file was refused"
            if n == 1
            else f"the camera files of all {n} images were refused"
        )
    elif refused:
        said.append(
            f"the camera file of {refused} of the {n} images {'was' if refused == 1 else 'were'} refused"
        )
    if refused:
        said[-1] += " (see the messages above)"
    if failed:
        said.append(
            f"{failed} image{'s' if failed > 1 else ''} with a camera file failed before the camera was "
            "read (see the messages above)"
        )
    if missing and said:
        said.append(f"the other {len(missing)} {'has' if len(missing) == 1 else 'have'} none ({rule})")
    elif missing:
        sidecar, layout = camera_candidates(missing[0])
        whose = "the image has no" if n == 1 else f"none of the {n} images has a"
        said.append(
            f"{whose} camera file ({rule}; for {missing[0].name}: {sidecar} or {layout}); put one there "
            "for each image to place its contacts on the ground"
        )
    return NO_MAP_DRAWN + ("; ".join(said) or "no image was predicted")


def _sees_ground(camera: CameraModel, max_range_m: float, samples: int = 17) -> bool:
    """Whether any pixel of a ``samples`` x ``samples`` grid over the image (corners and border included)
    reaches the ground within ``max_range_m``. The image border alone (``view_footprint``) said "no ground"
    for a lens whose distortion folds back inside the image, where the border pixels have no ray; it now
    follows the fold's edge, but only from an image centre that has a ray, so the grid still decides the
    rest (a CAHVOR lens whose distortion centre lies off the image)."""
    if len(view_footprint(camera, max_range_m=max_range_m)):
        return True
    u, v = np.meshgrid(
        np.linspace(0.0, camera.image_width, samples), np.linspace(0.0, camera.image_height, samples)
    )
    ground = camera.pixel_to_ground(u.ravel(), v.ravel(), max_range_m=max_range_m)
    return bool(np.isfinite(ground[:, :2]).all(axis=1).any())


def add_ground_coordinates(
    image_path: Path,
    lines: list[ContactLine],
    width: int,
    height: int,
    max_range_m: float,
    camera: Any = _FIND,
    source: str | None = None,
) -> list[ContactLine]:
    """Add ground coordinates to ``lines`` when the image has a camera file (see ``find_camera``).

    ``camera`` is the image's camera model when the caller already looked it up (None: it has none);
    by default it is looked up here. ``source``: where a camera the caller was given came from
    (:func:`sized_image_camera`), named in the messages instead of the camera file beside the image.

    Pieces of a line that do not reach the ground within ``max_range_m`` are kept without ground
    coordinates (``keep_unprojected``), so the per-image pixel contacts trace the same lines with or without a
    camera (with one, a line that leaves the ground range is split there into several features).

    Raises:
        ValueError: The camera file is broken (``CameraFileError``) or made for another image size.
    """
    camera = sized_image_camera(image_path, width, height, camera, source=source)
    if camera is None:
        return lines
    warn_if_sees_no_ground(image_path, camera, max_range_m, source)
    warn_if_angles_read_as_radians(image_path, camera, source)
    return add_ground(lines, camera, max_range_m=max_range_m, keep_unprojected=True)


def warn_if_sees_no_ground(
    image_path: Path | None, camera: CameraModel, max_range_m: float, source: str | None = None
) -> None:
    """Warn when ``camera`` sees no ground within ``max_range_m`` (its image's contacts get no metres),
    naming the image, the camera file (or ``source``) and the usual causes. Said for an image predicted
    (:func:`add_ground_coordinates`; it was silent: no metres, no reason given), for one a resumed
    ``predict.py`` skips as finished, which still has none: the same command run again said nothing, and for
    an image given to ``UnitMapper.map`` as an array (``image_path`` None, ``source`` naming the camera)."""
    if _sees_ground(camera, max_range_m):
        return
    log.warning(
        "%s: its camera (%s) sees no ground within max_range_m=%g, so no contact gets ground "
        "coordinates; check the sign of pitch_deg (positive looks down), the units (height_m in "
        "metres, angles in degrees: a height of 1900 or a field of view of 1.05 sees no ground this "
        "near), or the frame and ground_z_m of a CAHV(OR) camera",
        _image_name(image_path),
        _camera_source(image_path, source),
        max_range_m,
    )


def _image_name(image_path: Path | None) -> str:
    """The image a camera warning names: its file's name, or "the image given" for an array (no file)."""
    return "the image given" if image_path is None else image_path.name


def _camera_source(image_path: Path | None, source: str | None) -> object:
    """The camera a warning names: ``source`` (where a camera given came from), else the file beside the
    image."""
    return source if source is not None or image_path is None else find_camera_file(image_path)


#: The narrowest field of view (degrees) of a camera that maps the ground: any field of view under 180 degrees
#: given in radians is below it, while the rovers' narrowest mapping cameras see some 6 degrees across
#: (Mastcam-Z zoomed in, Mastcam-100) and only a remote micro-imager (ChemCam's, SuperCam's: about 1 degree)
#: less.
_RADIANS_HFOV_DEG = math.pi


def warn_if_angles_read_as_radians(
    image_path: Path | None, camera: CameraModel, source: str | None = None
) -> None:
    """Warn when ``camera`` is a pinhole whose ``hfov_deg`` is below pi, the field of view of a camera file
    written in radians (``1.0472`` for 60 degrees), naming the image, the camera file (or ``source``), the
    degrees it would be and those of its ``pitch_deg`` where that is a radian's size too. Such a camera still
    sees the ground, a few metres away through a one-degree view, so :func:`warn_if_sees_no_ground` was
    silent while every contact got metres squeezed into a spot centimetres wide. Said for an image predicted
    (:func:`add_ground_coordinates`), for one a resumed ``predict.py`` skips as finished, and for an image
    given to ``UnitMapper.map`` as an array (``image_path`` None, ``source`` naming the camera)."""
    pinhole = getattr(camera, "camera", camera)  # an OrientedCamera wraps the file's camera
    if not isinstance(pinhole, PinholeCamera) or pinhole.hfov_deg >= _RADIANS_HFOV_DEG:
        return
    pitch = pinhole.pitch_deg
    also = (
        f", and pitch_deg {pitch:g} is {math.degrees(pitch):.4g} degrees"
        if 0.0 < abs(pitch) <= math.pi / 2
        else ""
    )
    log.warning(
        "%s: its camera (%s) has hfov_deg %g, a field of view narrower than any camera's that maps the "
        "ground (a remote micro-imager's aside): angles are in degrees here, and %g radians is %.4g "
        "degrees%s; if the file gives radians, convert its angles to degrees",
        _image_name(image_path),
        _camera_source(image_path, source),
        pinhole.hfov_deg,
        pinhole.hfov_deg,
        math.degrees(pinhole.hfov_deg),
        also,
    )


def camera_error_message(exc: CameraFileError, earlier: bool = False) -> str:
    """The manifest message of an image whose camera file is broken: the camera's error, and that the
    pixel outputs (which need no camera) are there all the same, written by this run or an ``earlier`` one."""
    when = "by an earlier run" if earlier else "all the same"
    return (
        f"{exc}. The mask, overlay and contacts in pixels were written {when}, without ground coordinates: "
        "fix or remove the camera file and run again to add them (only this image is predicted again)"
    )


def _camera_size_mismatch(
    image_path: Path, camera: Any, width: int, height: int, source: str | None = None
) -> str:
    """:func:`camera_size_refusal` for an image file: it names the camera file (``source``, for a camera the
    caller was given; else the file beside the image) and the image by its file name."""
    where = source or find_camera_file(image_path) or f"the camera file of {image_path.name}"
    return camera_size_refusal(
        camera, width, height, camera_named=str(where), image_named=image_path.name, given=source is not None
    )


def camera_size_refusal(
    camera: Any,
    width: int,
    height: int,
    *,
    camera_named: str,
    image_named: str,
    as_stored: bool = True,
    given: bool = True,
) -> str:
    """The one message for ``camera`` made for another size than an image of ``width`` x ``height`` pixels
    as read, whichever way the image came (a file, a PIL image, an array or tensor): only how the camera
    (``camera_named``: its file, "the camera given") and the image (``image_named``: its file name, "the PIL
    image", "the array of shape (48, 64, 3)") are named differs.

    ``as_stored``: the image has a raster as stored (a file, a PIL image), which is what a camera describes;
    an EXIF orientation turns it, and the camera with it (an ``OrientedCamera``), only for display, so the
    sizes said are the stored ones. An array has no orientation: the sizes are those given.

    ``given``: the caller gave the camera (``UnitMapper.map(..., camera=...)``), so the ways out are this
    image's own camera, the image at the camera's size, or ``camera=None``; a camera file found beside the
    image is to be fixed or removed instead, and a CAHV-family one is not told to change its size alone
    (its H and V are in the pixels of the image it was made for).
    """
    inner = getattr(camera, "camera", camera) if as_stored else camera  # an OrientedCamera wraps the file's
    orientation = getattr(camera, "orientation", 1) if as_stored else 1
    turned = orientation >= 5  # the displayed size is the stored one transposed
    size_w, size_h = (height, width) if turned else (width, height)
    text = (
        f"{camera_named}: the camera is for a {inner.image_width}x{inner.image_height} image but "
        f"{image_named} is {size_w}x{size_h}" + (" as stored" if as_stored else "")
    )
    if orientation != 1:
        text += (
            f" (its EXIF orientation {orientation} turns it for display to {width}x{height}; camera "
            "files describe the stored raster, as the camera took it)"
        )
    resized = ""
    if isinstance(inner, CahvCamera):
        scale = _uniform_scale(inner.image_width, inner.image_height, size_w, size_h)
        resized = f" (it is that image scaled by {scale}, a resized copy)" if scale else ""
    if given:
        rescale = (
            " (a resized copy's from the product's PDS label or raw-image record: "
            f"`python -m marsunits.boundary.camera.from_label LABEL --image-size {size_w} {size_h}`)"
            if isinstance(inner, CahvCamera)
            else ""
        )
        return (
            text + f"{resized}; give the camera of this image{rescale}, map the image at the size the "
            "camera was made for (not a resized or cropped copy), or give camera=None for the contacts in "
            "pixels only"
        )
    if isinstance(inner, CahvCamera):
        # Its H and V hold the focal length and image centre in the pixels of the image it was made for:
        # "fix image_width and image_height" made a file that put a resized copy's contacts (AI4Mars' 256 px
        # Navcam frames beside the 1024 px frame's label) several times off, in metres, without a word.
        return (
            text + f"{resized}; a {type(inner).__name__[:-6].upper()} model's H and V are in the pixels of "
            "the image it was made for, so changing image_width and image_height alone does not fit it to "
            "this one: write it for this image from the product's PDS label or raw-image record with "
            "`python -m marsunits.boundary.camera.from_label LABEL --image-size "
            f"{size_w} {size_h} --overwrite` (docs/cameras.md), predict the image the camera is for, or "
            "remove the camera file"
        )
    return text + "; fix image_width and image_height, or remove the camera file"


def _uniform_scale(camera_w: int, camera_h: int, width: int, height: int) -> str | None:
    """``"1/4"`` or ``"2"`` when a ``width`` x ``height`` image is the camera's ``camera_w`` x ``camera_h``
    image resized by one whole factor (or its inverse) on both sides, else None."""
    down = camera_w // width if width and height and camera_w % width == 0 else 0
    if down > 1 and camera_h == down * height:
        return f"1/{down}"
    up = width // camera_w if camera_w and camera_h and width % camera_w == 0 else 0
    if up > 1 and height == up * camera_h:
        return str(up)
    return None
