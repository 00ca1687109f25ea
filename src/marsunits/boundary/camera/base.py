"""The interface every camera model of :mod:`marsunits.boundary.camera` offers.

Conventions (see :mod:`marsunits.boundary.camera.pinhole` for details): pixel coordinates ``(u, v)`` are
column and row with the origin at the *corner* of the top-left pixel; the site frame is metres, ``x``
forward, ``y`` left, ``z`` up, and the ground is a horizontal plane (``z = 0`` unless a model says
otherwise).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class CameraModel(Protocol):
    """A calibrated camera that maps pixels to rays and to the ground plane, and back.

    Models may also offer ``site`` (``str | None``: name of the site frame, images sharing it can be merged
    into one ground map) and ``center`` (``(3,)`` camera centre in the site frame, metres). Callers read
    them with ``getattr(camera, "site", None)`` / ``getattr(camera, "center", None)``. A model whose rays do
    not all start at ``center`` (CAHVORE's moving entrance pupil) offers ``ray_origin(u, v)`` (``u.shape +
    (3,)``, where each pixel's ray starts, as ``pixel_to_ground`` casts it); callers that cast rays
    themselves (the contact map's view footprint) use it, and ``center`` where a model lacks it.
    """

    @property
    def image_width(self) -> int:
        """Image width in pixels."""
        ...

    @property
    def image_height(self) -> int:
        """Image height in pixels."""
        ...

    def pixel_to_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit ray directions ``u.shape + (3,)`` in the site frame for pixel coordinates ``u``, ``v``."""
        ...

    def pixel_to_ground(self, u: np.ndarray, v: np.ndarray, max_range_m: float = math.inf) -> np.ndarray:
        """Ground points ``u.shape + (3,)`` (metres); NaN above the horizon or beyond ``max_range_m``
        (horizontal distance from the camera centre)."""
        ...

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` of site-frame points ``(..., 3)``; NaN for points the camera does
        not see through its lens: behind it, or beyond the radius where a distorting lens folds back (no
        pixel's ray reaches them, though the distortion formula would put them inside the image)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``model`` key, readable by ``camera.io.camera_from_dict``."""
        ...
