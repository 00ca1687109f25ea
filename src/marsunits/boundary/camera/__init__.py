"""Camera models that map pixels to the ground plane (see ``pinhole`` for the frames used everywhere)."""

from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.camera.cahv import (
    CahvCamera,
    CahvorCamera,
    cahv_from_pinhole,
    cahvor_from_pinhole,
    ned_to_flu,
)
from marsunits.boundary.camera.cahvore import CahvoreCamera
from marsunits.boundary.camera.io import CameraFileError, camera_from_dict, find_camera, load_camera
from marsunits.boundary.camera.pinhole import PinholeCamera

__all__ = [
    "CahvCamera",
    "CahvorCamera",
    "CahvoreCamera",
    "CameraFileError",
    "CameraModel",
    "PinholeCamera",
    "cahv_from_pinhole",
    "cahvor_from_pinhole",
    "camera_from_dict",
    "find_camera",
    "load_camera",
    "ned_to_flu",
]
