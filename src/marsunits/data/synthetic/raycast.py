"""Ray casting of every pixel centre of a :class:`PinholeCamera` onto the ground plane, in one pass.

Why not ``PinholeCamera.pixel_to_ground`` on a meshgrid: that general method builds (H, W, 3) float64
stacks, multiplies each ray by the rotation and normalises it, which costs several milliseconds per
320x240 scene. For the regular pixel grid of an undistorted camera the normalised image coordinates are
separable (``xn`` depends on the column only, ``yn`` on the row only), so each site-frame ray component is
``xn * R[0] + yn * R[1] + R[2]``: one broadcast add per component. The ground intersection does not need a
unit ray (the ray parameter absorbs the scale). With radial distortion the coordinates are undistorted
on the full grid first (``PinholeCamera.undistort``), as the camera itself does. The result agrees with
``pixel_to_ground`` to float64 rounding; ``tests/test_synthetic.py`` checks that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marsunits.boundary.camera.pinhole import PinholeCamera


@dataclass
class PixelRays:
    """Site-frame rays through the pixel centres ``(c + 0.5, r + 0.5)`` and their ground points.

    Attributes:
        dx: (H, W) float64 ray x component (not normalised).
        dy: (H, W) float64 ray y component.
        dz: (H, W) float64 ray z component (< 0 looks down).
        ground: (H, W) bool, the ray hits the ground (``dz`` below -1e-12 of the ray length).
        rel_x: (H, W) float64 ground x relative to the camera (``x - camera.x_m``), metres; NaN off ground.
        rel_y: (H, W) float64 ground y relative to the camera, metres; NaN off ground.
    """

    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray
    ground: np.ndarray
    rel_x: np.ndarray
    rel_y: np.ndarray

    def elevation_azimuth(self, flat_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Elevation above the horizon (radians, clipped at 0) and azimuth of the rays at flat indices."""
        dx, dy, dz = (a.ravel()[flat_idx] for a in (self.dx, self.dy, self.dz))
        norm = np.sqrt(dx * dx + dy * dy + dz * dz)
        return np.arcsin(np.clip(dz / norm, 0.0, 1.0)), np.arctan2(dy, dx)


def cast_pixel_grid(cam: PinholeCamera) -> PixelRays:
    """Cast the ray of every pixel centre of ``cam`` and intersect it with the ground ``z = 0``.

    Args:
        cam: The camera (image size, pose, optional radial distortion).

    Returns:
        :class:`PixelRays` for the (image_height, image_width) grid.
    """
    H, W = cam.image_height, cam.image_width
    f = cam.focal_px
    xd = (np.arange(W, dtype=np.float64) + 0.5 - W / 2.0) / f
    yd = (np.arange(H, dtype=np.float64) + 0.5 - H / 2.0) / f
    if cam.k1 == 0.0 and cam.k2 == 0.0:
        xn, yn = xd[None, :], yd[:, None]
    else:
        xn, yn = cam.undistort(*np.meshgrid(xd, yd))
    R = cam.R  # rows: right, down, forward in site coordinates; ray = xn * right + yn * down + forward
    dx = xn * R[0, 0] + yn * R[1, 0] + R[2, 0]
    dy = xn * R[0, 1] + yn * R[1, 1] + R[2, 1]
    dz = xn * R[0, 2] + yn * R[1, 2] + R[2, 2]
    dx, dy, dz = (np.broadcast_to(a, (H, W)) for a in (dx, dy, dz))
    # Same horizon test as pixel_to_ground (on the unit ray): dz / |d| < -1e-12, with
    # |d|^2 = xn^2 + yn^2 + 1 (the camera axes are orthonormal).
    ground = dz < -1e-12 * np.sqrt(xn * xn + yn * yn + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ground, -cam.height_m / dz, np.nan)
    return PixelRays(dx=dx, dy=dy, dz=dz, ground=ground, rel_x=t * dx, rel_y=t * dy)
