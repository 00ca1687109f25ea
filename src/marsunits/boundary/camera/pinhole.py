"""Pinhole camera over a flat ground plane: the model the synthetic generator renders with.

Frames and conventions (shared by every camera model in this package):

* **Pixel coordinates** ``(u, v)``: ``u`` = column, ``v`` = row, in pixels, origin at the *corner* of the
  top-left pixel; the centre of pixel ``(row r, column c)`` is ``(c + 0.5, r + 0.5)``.
* **Site frame** (metres, right-handed): ``x`` forward along the rover heading at ``yaw_deg = 0``,
  ``y`` to the left, ``z`` up. The ground is the plane ``z = 0``; the camera centre is at
  ``(x_m, y_m, height_m)``.
* **Camera frame** (OpenCV): ``x`` right, ``y`` down, ``z`` along the optical axis.
* **Angles**: ``pitch_deg`` > 0 looks *below* the horizon; ``yaw_deg`` turns left (counter-clockwise seen
  from above); ``roll_deg`` > 0 rotates the camera clockwise about its optical axis as seen from behind it,
  so the horizon in the image tilts counter-clockwise.
* **Distortion**: radial, on normalised image coordinates ``x_d = x (1 + k1 r^2 + k2 r^4)``.

Why hand-written: the model is ten lines of linear algebra that must agree exactly with the renderer and
with the CAHV form; a general photogrammetry library (OpenCV) would add a heavy dependency for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from numbers import Real
from typing import Any

import numpy as np

_UNDISTORT_ITERATIONS = 100
#: Doublings of the bracket about a horizon without a fold (2^60 image sizes: a pitch within about 1e-16
#: rad of 90 degrees, whose horizon is at infinity for floats) and bisection steps to 1e-9 px within it.
_HORIZON_WIDENINGS = 60
_HORIZON_STEPS = 200


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera with optional radial distortion, looking at flat ground.

    Attributes:
        image_width: Image width in pixels.
        image_height: Image height in pixels.
        hfov_deg: Horizontal field of view in degrees (edge to edge, before distortion).
        pitch_deg: Angle of the optical axis below the horizon, degrees.
        roll_deg: Rotation about the optical axis, degrees.
        yaw_deg: Heading in the site frame, degrees (0 = +x).
        height_m: Height of the camera centre above the ground plane, metres.
        x_m: Camera position in the site frame, metres.
        y_m: Camera position in the site frame, metres.
        k1: Radial distortion coefficient (r^2 term).
        k2: Radial distortion coefficient (r^4 term).
        site: Name of the site frame; images sharing it can be merged into one ground map.

    Raises:
        ValueError: A number that is not finite (or a string), an image size that is not a whole positive
            number of pixels, a field of view outside (0, 180) degrees, or a height not above the ground.
    """

    image_width: int
    image_height: int
    hfov_deg: float
    pitch_deg: float
    roll_deg: float = 0.0
    yaw_deg: float = 0.0
    height_m: float = 2.0
    x_m: float = 0.0
    y_m: float = 0.0
    k1: float = 0.0
    k2: float = 0.0
    site: str | None = None

    def __post_init__(self) -> None:
        # Checked here, not only in from_dict: built in Python, a NaN pitch or height made every ground point
        # NaN (no contact on the ground, without a word), "128" failed comparing a str, 128.5 was taken.
        for f in dataclass_fields(self):
            value = getattr(self, f.name)
            if f.name == "site":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"site must be a name (a str) or None, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"PinholeCamera.{f.name} must be a finite number, got {value!r}")
            if f.name in ("image_width", "image_height"):
                if not float(value).is_integer():
                    raise ValueError(
                        f"PinholeCamera.{f.name} must be a whole number of pixels, got {value!r}"
                    )
                object.__setattr__(self, f.name, int(float(value)))  # 128.0 (or np.int64) as the int it is
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError(
                f"camera image size must be positive, got {self.image_width}x{self.image_height}"
            )
        if not 0.0 < self.hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {self.hfov_deg}")
        if self.height_m <= 0:
            raise ValueError(f"height_m must be > 0 (camera above the ground), got {self.height_m}")

    # ------------------------------------------------------------------ intrinsics / extrinsics
    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels)."""
        return (self.image_width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    @property
    def K(self) -> np.ndarray:
        """Intrinsic matrix (3, 3); principal point at the image centre."""
        f = self.focal_px
        return np.array(
            [[f, 0.0, self.image_width / 2.0], [0.0, f, self.image_height / 2.0], [0.0, 0.0, 1.0]]
        )

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the site frame, metres, shape (3,)."""
        return np.array([self.x_m, self.y_m, self.height_m])

    @property
    def R(self) -> np.ndarray:
        """Rotation (3, 3) from site-frame vectors to camera-frame vectors (rows: right, down, forward)."""
        th, ps, ph = (math.radians(a) for a in (self.pitch_deg, self.yaw_deg, self.roll_deg))
        forward = np.array([math.cos(th) * math.cos(ps), math.cos(th) * math.sin(ps), -math.sin(th)])
        right = np.array([math.sin(ps), -math.cos(ps), 0.0])
        down = np.cross(forward, right)
        right_r = math.cos(ph) * right + math.sin(ph) * down
        down_r = -math.sin(ph) * right + math.cos(ph) * down
        return np.stack([right_r, down_r, forward])

    # ------------------------------------------------------------------ distortion
    def distort(self, xn: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply radial distortion to normalised coordinates (any shape)."""
        if self.k1 == 0.0 and self.k2 == 0.0:
            return xn, yn
        r2 = xn * xn + yn * yn
        s = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
        return xn * s, yn * s

    def undistort(self, xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Invert :meth:`distort`: normalised coordinates whose distorted image is ``(xd, yd)``.

        The distortion is radial, ``rd = g(r) = r (1 + k1 r^2 + k2 r^4)``, so the inverse is a scalar root
        per point on the lens's monotonic branch ``0 <= r <= r_fold`` (:meth:`fold_radius`, where
        ``g'(r) = 0``): beyond it a strongly barrel-distorted lens folds the field back, and a ``rd`` larger
        than ``g(r_fold)`` has no ray (NaN). The root is found by Newton's method kept inside a bracket
        that bisection shrinks whenever a Newton step would leave it, so it converges wherever a root
        exists. Hand-written: no library solves this per-pixel polynomial vectorised. (A plain fixed-point
        iteration returned rays 100 px off for strong barrel distortion; an unbracketed Newton step
        overshot below 0 for ``k1 > 0, k2 < 0`` and cycled.)
        """
        if self.k1 == 0.0 and self.k2 == 0.0:
            return xd, yd
        xd, yd = np.asarray(xd, dtype=np.float64), np.asarray(yd, dtype=np.float64)
        rd = np.hypot(xd, yd).ravel()  # flat: the iteration below works on the points not converged yet
        k1, k2 = self.k1, self.k2

        def g(r: np.ndarray) -> np.ndarray:
            r2 = r * r
            return r * (1.0 + k1 * r2 + k2 * r2 * r2)

        fold = self.fold_radius()
        if math.isfinite(fold):
            hi = np.full_like(rd, fold)
        else:  # monotonic everywhere: grow the bracket until it holds the root
            hi = np.maximum(rd, 1.0)
            for _ in range(60):
                short = g(hi) < rd
                if not short.any():
                    break
                hi = np.where(short, hi * 2.0, hi)
        lo = np.zeros_like(rd)
        reachable = g(hi) >= rd - 1e-12
        r = np.clip(rd, lo, hi)
        tol = 1e-12 * np.maximum(rd, 1.0)
        width = hi - lo  # the bracket's width two steps back (Numerical Recipes' rtsafe safeguard)
        active = np.flatnonzero(reachable)
        for _ in range(_UNDISTORT_ITERATIONS):  # only the points not converged yet: most take a few steps
            if active.size == 0:
                break
            ra, rda, la, ha = r[active], rd[active], lo[active], hi[active]
            f = g(ra) - rda
            done = np.abs(f) <= tol[active]
            la = np.where(f < 0, ra, la)
            ha = np.where(f > 0, ra, ha)
            r2 = ra * ra
            df = 1.0 + 3.0 * k1 * r2 + 5.0 * k2 * r2 * r2
            with np.errstate(divide="ignore", invalid="ignore"):
                step = ra - f / df
            # Newton where it stays in the bracket and shrinks it fast enough, else bisect: a Newton step
            # that bounces between the ends of the bracket never converges.
            newton = np.isfinite(step) & (step > la) & (step < ha) & (np.abs(step - ra) < 0.5 * width[active])
            nxt = np.where(newton, step, 0.5 * (la + ha))
            width[active] = np.abs(nxt - ra)
            r[active] = np.where(done, ra, nxt)
            lo[active], hi[active] = la, ha
            active = active[~done]
        residual = np.abs(g(r) - rd)
        ok = reachable & (residual <= 1e-9 * np.maximum(rd, 1.0))
        scale = np.where(rd > 0, r / np.where(rd > 0, rd, 1.0), 1.0)  # r = rd = 0 at the centre
        scale = np.where(ok, scale, np.nan).reshape(xd.shape)
        return xd * scale, yd * scale

    def fold_radius(self) -> float:
        """The first normalised radius where the distorted radius stops growing (``inf`` when it never
        does): ``1 + 3 k1 t + 5 k2 t^2 = 0`` for ``t = r^2``, smallest positive root.

        ``r`` is the undistorted normalised radius (``|(x, y)| / z`` in the camera frame, the tangent of
        the angle off the optical axis; no unit). ``[0, fold_radius]`` is the lens's monotonic domain: the
        rays the camera sees, the points :meth:`world_to_pixel` projects and :meth:`undistort` returns.
        Closed form: ``k2 = 0`` gives ``sqrt(-1 / (3 k1))`` for ``k1 < 0``."""
        a, b = 5.0 * self.k2, 3.0 * self.k1
        if a == 0.0:
            return math.inf if b >= 0.0 else math.sqrt(-1.0 / b)
        disc = b * b - 4.0 * a
        if disc < 0.0:
            return math.inf
        roots = [t for t in ((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)) if t > 0]
        return math.sqrt(min(roots)) if roots else math.inf

    # ------------------------------------------------------------------ projections
    def pixel_to_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit ray directions in the site frame for pixel coordinates.

        Args:
            u: Columns (pixel coordinates, corner origin), any shape.
            v: Rows, same shape as ``u``.

        Returns:
            Array of shape ``u.shape + (3,)``.
        """
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        f = self.focal_px
        xd = (u - self.image_width / 2.0) / f
        yd = (v - self.image_height / 2.0) / f
        xn, yn = self.undistort(xd, yd)
        d_cam = np.stack([xn, yn, np.ones_like(xn)], axis=-1)
        d_world = d_cam @ self.R  # R^T applied to row vectors
        return d_world / np.linalg.norm(d_world, axis=-1, keepdims=True)

    def pixel_to_ground(self, u: np.ndarray, v: np.ndarray, max_range_m: float = math.inf) -> np.ndarray:
        """Intersect pixel rays with the ground plane ``z = 0``.

        Args:
            u: Columns, any shape.
            v: Rows, same shape.
            max_range_m: Points farther than this horizontal distance from the camera are NaN.

        Returns:
            Site-frame points, shape ``u.shape + (3,)``, NaN where the ray does not hit the ground
            (at or above the horizon) or hits it beyond ``max_range_m``.
        """
        d = self.pixel_to_ray(u, v)
        dz = d[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(dz < -1e-12, -self.height_m / dz, np.nan)
        p = self.center + t[..., None] * d
        rng = np.hypot(p[..., 0] - self.x_m, p[..., 1] - self.y_m)
        p[~(rng <= max_range_m)] = np.nan
        return p

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Project site-frame points to pixel coordinates.

        Args:
            points: Array (..., 3), metres.

        Returns:
            Array (..., 2) of ``(u, v)``; NaN for points the camera does not see: behind it, and beyond
            the lens's fold (:meth:`fold_radius`), i.e. points whose normalised radius ``r = |(x, y)| / z``
            in the camera frame (the tangent of their angle off the optical axis, no unit) exceeds it. Past
            the fold the distorted radius ``r (1 + k1 r^2 + k2 r^4)`` shrinks again, so a strongly
            barrel-distorted lens (``k1 = -0.2``: fold at ``r = 1.29``, 52 degrees off axis) put ground
            points far outside its field back inside the image, near its centre; no pixel's ray
            (:meth:`pixel_to_ray`) reaches them.
        """
        p = np.asarray(points, dtype=np.float64)
        c = (p - self.center) @ self.R.T
        z = c[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = np.where(z > 1e-12, c[..., 0] / z, np.nan)
            yn = np.where(z > 1e-12, c[..., 1] / z, np.nan)
        fold = self.fold_radius()
        if math.isfinite(fold):
            beyond = ~(np.hypot(xn, yn) <= fold)
            xn, yn = np.where(beyond, np.nan, xn), np.where(beyond, np.nan, yn)
        xd, yd = self.distort(xn, yn)
        f = self.focal_px
        return np.stack([xd * f + self.image_width / 2.0, yd * f + self.image_height / 2.0], axis=-1)

    def horizon_v(self, u: np.ndarray | float) -> np.ndarray:
        """Row coordinate of the horizon (the pixel whose ray is parallel to the ground) at column(s) ``u``.

        The row may lie outside the image (negative above it: a camera looking down sees only ground), but
        always among the pixels that have a ray (:meth:`pixel_to_ray`). NaN where the column has none such:
        where it misses the disc of pixels with a ray of a lens that folds back (:meth:`fold_radius`), or
        where its rays are all below the horizon, or all above it, because the horizon lies beyond the fold
        (``k1 = -0.2`` folds 52 degrees off the axis: a camera pitched 60 degrees down sees no horizon).
        Without a fold every column has a horizon row; looking straight down or up (a pitch of +-90 degrees)
        it is at infinity, some 1e18 pixels off in floating point.

        Solved by bisection on the sign of the ray's ``z`` per column, between the ends of the column's
        pixels with a ray (the fold's disc; without a fold, a bracket widened until its ends lie on either
        side of the horizon), to 1e-9 px (or 1e-9 of the row, where that is larger). (The
        bisection ran between fixed rows -10 and 11 image heights and took a pixel without a ray for one
        below the horizon: a column crossing the fold answered -960 for a horizon at row 38.6, and a camera
        pitched 85 degrees down -10 heights for a horizon 12.7 heights up.)
        """
        u = np.atleast_1d(np.asarray(u, dtype=np.float64))
        cy = self.image_height / 2.0
        fold = self.fold_radius()
        if math.isfinite(fold):
            # The pixels with a ray: the disc about the principal point out to the fold's distorted radius,
            # shrunk by a hair so that its ends still have one after rounding.
            radius = self.focal_px * fold * (1.0 + self.k1 * fold**2 + self.k2 * fold**4)
            with np.errstate(invalid="ignore"):
                half = np.sqrt(radius**2 - (u - self.image_width / 2.0) ** 2) * (1.0 - 1e-9)
        else:
            half = np.full_like(u, float(max(self.image_width, self.image_height)))
            for _ in range(_HORIZON_WIDENINGS):  # until the ends lie on either side of the horizon
                same = self._looks_up(u, cy - half) == self._looks_up(u, cy + half)
                if not same.any():
                    break
                half = np.where(same, 2.0 * half, half)
        lo, hi = cy - half, cy + half  # NaN where the column misses the fold's disc
        up_lo, up_hi = self._looks_up(u, lo), self._looks_up(u, hi)
        found = np.isfinite(up_lo) & np.isfinite(up_hi) & (up_lo != up_hi)
        for _ in range(_HORIZON_STEPS):  # lo keeps the side of the top end (the sky, for |roll| < 90)
            if not np.any(found & (hi - lo > 1e-9 * np.maximum(1.0, np.abs(lo)))):
                break
            mid = 0.5 * (lo + hi)
            same = self._looks_up(u, mid) == up_lo
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        return np.where(found, 0.5 * (lo + hi), np.nan)

    def _looks_up(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """1.0 where the ray of pixel ``(u, v)`` points at or above the horizon, 0.0 below it, NaN where the
        pixel has no ray (beyond the lens's fold)."""
        dz = self.pixel_to_ray(u, v)[..., 2]
        return np.where(np.isfinite(dz), (dz >= 0.0).astype(np.float64), np.nan)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every field plus ``model`` and the intrinsic matrix ``K``."""
        d: dict[str, Any] = {"model": "pinhole", **asdict(self)}
        d["K"] = self.K.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PinholeCamera:
        """Build from :meth:`to_dict` output; ``model`` and ``K`` are checked, not required, and so are
        OpenCV's ``fx``, ``fy``, ``cx``, ``cy`` (``K``'s entries under their own names)."""
        model = d.get("model", "pinhole")
        if model != "pinhole":
            raise ValueError(f"expected a camera with model 'pinhole', got {model!r}")
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        missing = [k for k in ("image_width", "image_height", "hfov_deg", "pitch_deg") if k not in d]
        if missing:
            raise ValueError(f"pinhole camera is missing required keys {missing}; got keys {sorted(d)}")
        for key, value in fields.items():
            if key == "site":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"'site' must be a name (a JSON string) or null, got {value!r}")
                continue
            # A JSON number, not a string or a boolean: "twenty" would otherwise fail only at projection time.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key!r} must be a finite JSON number, got {value!r}")
            if key in ("image_width", "image_height"):
                if value != int(value):
                    raise ValueError(f"{key!r} must be a whole number of pixels, got {value!r}")
                fields[key] = int(value)
            else:
                fields[key] = float(value)
        cam = cls(**fields)
        if "K" in d:
            _check_K(d["K"], cam)
        _check_opencv_intrinsics({k: d[k] for k in ("fx", "fy", "cx", "cy") if k in d}, cam)
        return cam


def _check_K(given: Any, cam: PinholeCamera) -> None:
    """Refuse a ``K`` (kept in a camera file for reference) that is not ``cam``'s intrinsic matrix.

    Focal lengths must agree to 0.1 % (a K written with a few decimals, or an hfov rounded to 0.01 degree,
    was refused at 1e-6) and the principal point to half a pixel, so that OpenCV's convention (pixel
    centres at whole numbers: ``cx = (W - 1) / 2``) is the same camera as this model's (corners at whole
    numbers: ``W / 2``).

    Raises:
        ValueError: Another camera, with the K this model's numbers give and how to write a calibration
            whose principal point is off centre (a ``cahv`` model).
    """
    try:
        k = np.asarray(given, dtype=float)
    except (TypeError, ValueError):
        k = np.zeros(0)
    want = cam.K
    fits = (
        k.shape == (3, 3)
        and bool(np.isfinite(k).all())
        and np.allclose(k[[0, 1], [0, 1]], want[[0, 1], [0, 1]], rtol=1e-3, atol=0.0)
        and bool(np.all(np.abs(k[[0, 1], [2, 2]] - want[[0, 1], [2, 2]]) <= 0.5 + 1e-6))
        and np.allclose(k[[0, 1, 2, 2], [1, 0, 0, 1]], 0.0, atol=1e-9)
        and np.isclose(k[2, 2], 1.0)
    )
    if not fits:
        f, cx, cy = want[0, 0], want[0, 2], want[1, 2]
        raise ValueError(
            f"camera 'K' {given!r} is not the intrinsic matrix of this pinhole model: image_width, "
            f"image_height and hfov_deg give [[{f:.6g}, 0, {cx:g}], [0, {f:.6g}, {cy:g}], [0, 0, 1]] (square "
            "pixels, principal point at the image centre, to half a pixel). Fix one of them, or drop 'K' (it "
            "is only checked); a calibration whose principal point is off centre, or whose fx and fy differ, "
            "is written as a cahv model (docs/cameras.md)"
        )


def _check_opencv_intrinsics(given: dict[str, Any], cam: PinholeCamera) -> None:
    """Refuse OpenCV's ``fx``, ``fy``, ``cx``, ``cy`` (kept in a camera file for reference) that are not
    ``cam``'s, with the tolerances of :func:`_check_K`: they are its entries, and a file giving them under
    these names was refused even where the ``K`` of the same numbers was accepted.

    Raises:
        ValueError: Naming the key, the value this model's numbers give, and what to write instead.
    """
    want = cam.K
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key!r} must be a finite JSON number, got {value!r}")
        if key in ("fx", "fy"):
            f = float(want[0, 0])
            if abs(value - f) <= 1e-3 * f:
                continue
            hfov = math.degrees(2 * math.atan(cam.image_width / (2 * value))) if value > 0 else None
            fits = f"for {key} = {value:g}, hfov_deg = {hfov:.6g}" if hfov else "a focal length is positive"
            raise ValueError(
                f"{key!r} {value!r} is not the focal length of this pinhole model: image_width "
                f"{cam.image_width} and hfov_deg {cam.hfov_deg:g} give {f:.6g} pixels (to 0.1 %, square "
                f"pixels); {fits}. Fix one of them, or drop {key!r} (it is only checked); a calibration "
                "whose fx and fy differ is written as a cahv model (docs/cameras.md)"
            )
        centre = float(want[0, 2] if key == "cx" else want[1, 2])
        if abs(value - centre) > 0.5 + 1e-6:
            raise ValueError(
                f"{key!r} {value!r} is not the principal point of this pinhole model, the image centre "
                f"{centre:g} (to half a pixel, so OpenCV's (size - 1) / 2 is accepted). Drop {key!r} (it is "
                "only checked), or write a calibration whose principal point is off centre as a cahv model "
                "(docs/cameras.md)"
            )
