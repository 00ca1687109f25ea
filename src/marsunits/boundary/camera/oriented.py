"""A camera model seen through an image's EXIF orientation: pixels of the image as displayed.

A camera is calibrated on the sensor's raster, the pixels as stored in the file. A JPEG whose EXIF
Orientation tag says "rotate 90°" or "mirror" is read by :func:`marsunits.data.io.read_image` as a viewer
shows it, so its masks and contact lines are in *displayed* pixels. :class:`OrientedCamera` maps those back
to stored pixels before the wrapped model casts rays, and ground points forward again, so ground geometry is
the same whichever way the file is tagged.

Written by hand because neither Pillow (which only transposes rasters) nor the camera models know of the
tag: it is one of eight fixed affine maps of continuous pixel coordinates (origin at the top-left pixel's
corner), each an exact inverse of what ``PIL.ImageOps.exif_transpose`` does to the raster.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from marsunits.boundary.camera.base import CameraModel

__all__ = ["OrientedCamera", "orient_camera"]


def _stored_from_displayed(orientation: int, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``stored = A @ displayed + b`` for an image stored ``width`` x ``height`` pixels.

    Orientations follow EXIF 2.3 (1 = as stored; 2 mirror; 3 rotate 180°; 4 flip; 5 transpose; 6 stored
    rotated 90° anticlockwise, so displayed after a clockwise turn; 7 transverse; 8 the reverse of 6).
    """
    w, h = float(width), float(height)
    maps = {
        1: ((1, 0, 0, 1), (0, 0)),
        2: ((-1, 0, 0, 1), (w, 0)),
        3: ((-1, 0, 0, -1), (w, h)),
        4: ((1, 0, 0, -1), (0, h)),
        5: ((0, 1, 1, 0), (0, 0)),
        6: ((0, 1, -1, 0), (0, h)),
        7: ((0, -1, -1, 0), (w, h)),
        8: ((0, -1, 1, 0), (w, 0)),
    }
    a, b = maps[orientation]
    return np.asarray(a, dtype=float).reshape(2, 2), np.asarray(b, dtype=float)


class OrientedCamera:
    """``camera`` (calibrated on the stored raster) in the pixel frame of the image as displayed.

    Implements :class:`~marsunits.boundary.camera.base.CameraModel`; ``site`` and ``center`` are the wrapped
    model's. ``image_width`` / ``image_height`` are the displayed size (swapped for orientations 5-8).

    Args:
        camera: The calibrated model.
        orientation: EXIF Orientation tag value, 1-8.
    """

    def __init__(self, camera: CameraModel, orientation: int) -> None:
        if orientation not in range(1, 9):
            raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
        self.camera = camera
        self.orientation = orientation
        self._a, self._b = _stored_from_displayed(orientation, camera.image_width, camera.image_height)
        self._a_inv = np.linalg.inv(self._a)
        self.site = getattr(camera, "site", None)
        self.center = getattr(camera, "center", None)
        self.source_frame = getattr(camera, "source_frame", "flu")

    @property
    def image_width(self) -> int:
        """Displayed width in pixels."""
        return self.camera.image_height if self.orientation >= 5 else self.camera.image_width

    @property
    def image_height(self) -> int:
        """Displayed height in pixels."""
        return self.camera.image_width if self.orientation >= 5 else self.camera.image_height

    def _stored(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
        a, b = self._a, self._b
        return a[0, 0] * u + a[0, 1] * v + b[0], a[1, 0] * u + a[1, 1] * v + b[1]

    def pixel_to_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit rays ``u.shape + (3,)`` for displayed pixel coordinates."""
        return self.camera.pixel_to_ray(*self._stored(u, v))

    def ray_origin(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Where the rays of displayed pixels start, ``u.shape + (3,)``: the wrapped model's ``ray_origin``
        (a CAHVORE's entrance pupil), or its ``center`` for a model whose rays all start there."""
        stored = self._stored(u, v)
        origin = getattr(self.camera, "ray_origin", None)
        if origin is not None:
            return np.asarray(origin(*stored), dtype=np.float64)
        center = np.zeros(3) if self.center is None else np.asarray(self.center, dtype=np.float64)
        return np.broadcast_to(center, np.shape(stored[0]) + (3,)).copy()

    def pixel_to_ground(self, u: np.ndarray, v: np.ndarray, max_range_m: float = math.inf) -> np.ndarray:
        """Ground points ``u.shape + (3,)`` (metres) for displayed pixel coordinates; NaN where none."""
        return self.camera.pixel_to_ground(*self._stored(u, v), max_range_m=max_range_m)

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Displayed pixel coordinates ``(..., 2)`` of site-frame points ``(..., 3)``; NaN where the wrapped
        model gives none (behind the camera, beyond its lens's fold)."""
        stored = np.asarray(self.camera.world_to_pixel(points), dtype=float)
        return (stored - self._b) @ self._a_inv.T

    def to_dict(self) -> dict[str, Any]:
        """The wrapped model's dict (the camera file describes the stored raster, whatever the tag)."""
        return self.camera.to_dict()


def orient_camera(camera: CameraModel | None, orientation: int) -> CameraModel | None:
    """``camera`` in the displayed pixel frame of an image with this EXIF orientation (None stays None)."""
    if camera is None or orientation == 1:
        return camera
    return OrientedCamera(camera, orientation)
