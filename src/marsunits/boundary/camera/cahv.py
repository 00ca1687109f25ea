"""JPL's CAHV and CAHVOR camera models, the form rover cameras are calibrated in and published in PDS labels.

CAHV (Yakimovsky and Cunningham, "A system for extracting three-dimensional measurements from a stereo pair
of TV cameras", CGIP 7, 1978) describes a linear camera by four 3-vectors: ``C`` the camera centre, ``A``
the unit pointing axis, and ``H``, ``V`` which fold focal length, principal point and pixel axes together.
A point ``P`` projects to::

    x = (P - C) . H / (P - C) . A,    y = (P - C) . V / (P - C) . A

and the ray of an image point ``(x, y)`` is ``(V - y A) x (H - x A)``, normalised and signed to point along
``A`` (the sign follows ``(V x H) . A``, as in JPL's ``cmod_cahv_2d_to_3d``).

CAHVOR (Gennery, "Least-squares camera calibration including lens distortion and automatic editing of
calibration points", in *Calibration and Orientation of Cameras in Computer Vision*, Springer 2001; and
"Generalized camera calibration including fish-eye lenses", IJCV 68(3), 2006) adds radial distortion about
the unit optical axis ``O`` with coefficients ``R = (r0, r1, r2)``: with ``p = P - C``::

    omega = p . O,   lambda = p - omega O,   tau = |lambda|^2 / omega^2,
    mu = r0 + r1 tau + r2 tau^2,   p' = p + mu lambda

and ``p'`` is projected with CAHV. The inverse (pixel to ray) takes the CAHV ray ``r'`` of the pixel and
solves ``k1 u + k3 u^3 + k5 u^5 = 1`` (``k1 = 1 + r0``, ``k3 = r1 tau'``, ``k5 = r2 tau'^2``, ``tau'`` from
``r'``) for ``u`` by Newton's method; the undistorted ray is ``r' - (1 - u) lambda'``. This is the
formulation of JPL's camera-model library (T. Litwin, ``cmod_cahvor.c``) as published in NASA-AMMOS's
open-source ports (e.g. ``NASA-AMMOS/CameraModelUtilsJS``); written here from the equations, vectorised with
numpy, because no maintained Python package for it is a dependency of this project.

Conventions and how they map onto this project's:

* **Pixel origin.** CAHV image coordinates (PDS/VICAR convention) put ``(0, 0)`` at the *centre* of the
  top-left pixel, ``x`` along a row (sample), ``y`` down a column (line). This project's pixel coordinates
  put the origin at that pixel's *corner*, so ``u = x + 0.5``, ``v = y + 0.5``; every method here takes and
  returns project coordinates.
* **Frame.** The models hold their vectors in the project's site frame (``x`` forward, ``y`` left, ``z``
  up; "FLU"). PDS labels usually give them in a SITE (or ROVER_NAV) frame with ``x`` north, ``y`` east,
  ``z`` *down* ("NED"). :func:`ned_to_flu` converts (a 180 degree rotation about ``x``: ``(x, -y, -z)``,
  so north stays ``x`` and ``y`` becomes west); the camera JSON accepts ``"frame": "ned"`` (alias
  ``"pds"``) and converts on reading (:mod:`marsunits.boundary.camera.io`).
* **Ground.** The ground is the horizontal plane ``z = ground_z_m`` of the site frame (0 by default;
  a PDS site frame's origin is not always on the ground, so set it when it is not).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.errors import MarsUnitsError

__all__ = [
    "CahvCamera",
    "CameraBelowGroundError",
    "CahvorCamera",
    "cahv_from_pinhole",
    "cahvor_from_pinhole",
    "ned_to_flu",
]

_NEWTON_ITERATIONS = 20
_NEWTON_TOL = 1e-12
#: Largest residual of the distortion polynomial at which the iteration counts as having found the root.
_ROOT_TOL = 1e-9
_FLIP_NED = np.array([1.0, -1.0, -1.0])


def below_ground_refusal(centre_z_m: float, ground_z_m: float, frame: str, camera_file: bool = True) -> str:
    """Why a camera whose centre (``centre_z_m``, z up) is not above its ground plane (``ground_z_m``, z up
    in every frame) is refused, its vectors given in ``frame`` as spelled where they came from (``"flu"``,
    or the z-down ``"ned"`` or ``"pds"``), with a camera file's fix where ``camera_file`` (a file converted
    from a PDS label is told the label's by its converter)."""
    if frame.lower() in ("ned", "pds"):  # it told such a file to add the "frame": "ned" it has
        said = (
            f"the camera centre C (z = {centre_z_m:g} m, z up; z = {-centre_z_m:g} m as given, in the "
            f'z-down "frame": "{frame}") is not above the ground plane (ground_z_m = {ground_z_m:g} m, z up '
            "in every frame), so no pixel can see the ground"
        )
        fix = '; fix C or ground_z_m (or, in a camera file whose vectors are z up, drop "frame")'
    else:
        said = (
            f"the camera centre C (z = {centre_z_m:g} m, z up) is not above the ground plane "
            f"(ground_z_m = {ground_z_m:g} m), so no pixel can see the ground"
        )
        fix = '; vectors from a PDS label are z down: add "frame": "ned" to the camera file, or fix C or '
        fix += "ground_z_m"
    return said + fix if camera_file else said


class CameraBelowGroundError(MarsUnitsError, ValueError):
    """A CAHV-family camera's centre is not above its ground plane, so no pixel can see the ground: the
    numbers kept (``centre_z_m``, ``ground_z_m``, ``source_frame``) so that a camera file's reader can quote
    the frame as the file spells it, and a label's converter leave out a camera file's fix
    (:func:`below_ground_refusal`). A :class:`~marsunits.errors.MarsUnitsError` (a camera the user gave),
    and still a ``ValueError``."""

    def __init__(self, centre_z_m: float, ground_z_m: float, source_frame: str) -> None:
        self.centre_z_m, self.ground_z_m, self.source_frame = centre_z_m, ground_z_m, source_frame
        super().__init__(below_ground_refusal(centre_z_m, ground_z_m, source_frame))

    def __reduce__(self) -> tuple[type[CameraBelowGroundError], tuple[float, float, str]]:
        # Pickled with the arguments of __init__ (the default passes the message alone, which it does not
        # take), so the error crosses a process boundary (a worker, another rank) as raised.
        return type(self), (self.centre_z_m, self.ground_z_m, self.source_frame)


def ned_to_flu(vec: np.ndarray) -> np.ndarray:
    """Convert vectors/points ``(..., 3)`` from a PDS x-north, y-east, z-down frame to x, y-left(west), z-up.

    The map is its own inverse. Since it is a rotation, CAHV(OR) vectors converted with it describe the same
    camera (dot products are preserved).
    """
    return np.asarray(vec, dtype=np.float64) * _FLIP_NED


def _vec3(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"CAHV vector {name} must be 3 finite numbers, got {value!r}")
    return arr


def _whole_pixels(name: str, value: Any) -> int:
    """An image size given in Python as the int it is: ``int()`` took 128.7 as 128 and "128" as 128."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a whole number of pixels, got {value!r}")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number of pixels, got {value!r}")
    return int(float(value))


def _unit(name: str, value: Any) -> np.ndarray:
    arr = _vec3(name, value)
    n = float(np.linalg.norm(arr))
    if abs(n - 1.0) > 1e-3:
        raise ValueError(f"CAHV vector {name} must be a unit vector, got {value!r} (norm {n:.6f})")
    return arr / n


class CahvCamera:
    """A linear CAHV camera over a flat ground plane.

    Args:
        C: Camera centre, site frame (FLU), metres.
        A: Unit pointing axis.
        H: Horizontal vector (pixels).
        V: Vertical vector (pixels).
        image_width: Image width in pixels.
        image_height: Image height in pixels.
        site: Name of the site frame.
        ground_z_m: Height of the ground plane in the site frame, metres.
        source_frame: The frame the camera file gave the vectors in: ``"flu"`` (the default) or ``"ned"``
            (a PDS SITE frame, turned to FLU on reading, so ``x`` is north and ``y`` west). The vectors
            given here are FLU either way; this only names the contact map's axes.
    """

    model = "cahv"

    def __init__(
        self,
        C: Any,
        A: Any,
        H: Any,
        V: Any,
        image_width: int,
        image_height: int,
        site: str | None = None,
        ground_z_m: float = 0.0,
        source_frame: str = "flu",
    ) -> None:
        if source_frame not in ("flu", "ned"):
            raise ValueError(f"source_frame must be 'flu' or 'ned', got {source_frame!r}")
        self.source_frame = source_frame
        self.C = _vec3("C", C)
        self.A = _unit("A", A)
        self.H = _vec3("H", H)
        self.V = _vec3("V", V)
        self.image_width = _whole_pixels("image_width", image_width)
        self.image_height = _whole_pixels("image_height", image_height)
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError(f"camera image size must be positive, got {image_width}x{image_height}")
        self.site = site
        self.ground_z_m = float(ground_z_m)
        if not math.isfinite(self.ground_z_m) or self.C[2] <= self.ground_z_m:
            raise CameraBelowGroundError(float(self.C[2]), self.ground_z_m, source_frame)
        if np.linalg.norm(np.cross(self.H, self.V)) < 1e-9:
            raise ValueError("CAHV vectors H and V are parallel: not a camera")
        # JPL's sign convention: rays point along A for the usual handedness of (V x H) . A.
        self._sign = 1.0 if float(np.dot(np.cross(self.V, self.H), self.A)) >= 0 else -1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the site frame, metres, shape (3,)."""
        return self.C.copy()

    # ------------------------------------------------------------------ linear part
    def _linear_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit CAHV ray (no distortion) of project pixel coordinates; shape ``u.shape + (3,)``."""
        x = np.asarray(u, dtype=np.float64)[..., None] - 0.5
        y = np.asarray(v, dtype=np.float64)[..., None] - 0.5
        f = self.V - y * self.A
        g = self.H - x * self.A
        r = self._sign * np.cross(f, g)
        return r / np.linalg.norm(r, axis=-1, keepdims=True)

    def _linear_project(self, p: np.ndarray) -> np.ndarray:
        """Project camera-relative vectors ``p = P - C`` (..., 3) to project pixels (..., 2)."""
        alpha = p @ self.A
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = alpha > 1e-12
            x = np.where(ok, (p @ self.H) / alpha, np.nan)
            y = np.where(ok, (p @ self.V) / alpha, np.nan)
        return np.stack([x + 0.5, y + 0.5], axis=-1)

    # ------------------------------------------------------------------ CameraModel
    def pixel_to_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit ray directions in the site frame for pixel coordinates (corner origin).

        Args:
            u: Columns, any shape.
            v: Rows, same shape.

        Returns:
            Array ``u.shape + (3,)``.
        """
        return self._linear_ray(u, v)

    def _rays(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(origins, directions)`` of the pixels' rays, each ``u.shape + (3,)``: every ray starts at ``C``
        here; a model whose rays start elsewhere (CAHVORE's moving entrance pupil) overrides this, and
        :meth:`pixel_to_ground` intersects each ray from its own origin."""
        d = self.pixel_to_ray(u, v)
        return np.broadcast_to(self.C, d.shape), d

    def ray_origin(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Where each pixel's ray starts, ``u.shape + (3,)``, as :meth:`pixel_to_ground` casts it: ``C`` here
        (CAHVORE's moving entrance pupil overrides it)."""
        return np.array(self._rays(u, v)[0], dtype=np.float64)

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Project site-frame points ``(..., 3)`` to pixel coordinates ``(..., 2)``; NaN behind the camera."""
        return self._linear_project(np.asarray(points, dtype=np.float64) - self.C)

    def pixel_to_ground(self, u: np.ndarray, v: np.ndarray, max_range_m: float = math.inf) -> np.ndarray:
        """Intersect pixel rays with the ground plane ``z = ground_z_m``.

        Args:
            u: Columns, any shape.
            v: Rows, same shape.
            max_range_m: Points farther than this horizontal distance from the camera centre are NaN.

        Returns:
            Site-frame points ``u.shape + (3,)``, NaN where the ray does not reach the ground in front of the
            camera (at or above the horizon) or reaches it beyond ``max_range_m``.
        """
        origin, d = self._rays(u, v)
        dz = d[..., 2]
        dh = self.ground_z_m - origin[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.abs(dz) > 1e-12, dh / dz, np.nan)
        t = np.where(t > 0, t, np.nan)
        p = origin + t[..., None] * d
        rng = np.hypot(p[..., 0] - self.C[0], p[..., 1] - self.C[1])
        p[~(rng <= max_range_m)] = np.nan
        return p

    # ------------------------------------------------------------------ (de)serialisation
    def _in_source_frame(self, vec: np.ndarray) -> list[float]:
        """``vec`` (FLU) as the camera file gave it: turned back to NED for a ``"ned"`` camera."""
        return (ned_to_flu(vec) if self.source_frame == "ned" else vec).tolist()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the frame the camera was given in: ``"frame"`` is :attr:`source_frame` and the
        vectors are in it (NED for ``"ned"``; ``ground_z_m`` is z up in every frame, as on reading), so
        :func:`~marsunits.boundary.camera.io.camera_from_dict` reads back the same camera *and* frame (written
        as FLU, a NED camera came back as ``"flu"`` and its contact map's axes said forward/left, not
        north/west)."""
        return {
            "model": self.model,
            "frame": self.source_frame,
            "C": self._in_source_frame(self.C),
            "A": self._in_source_frame(self.A),
            "H": self._in_source_frame(self.H),
            "V": self._in_source_frame(self.V),
            "image_width": self.image_width,
            "image_height": self.image_height,
            "site": self.site,
            "ground_z_m": self.ground_z_m,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CahvCamera:
        """Build from :meth:`to_dict` output or a hand-written camera JSON (see ``camera.io``)."""
        from marsunits.boundary.camera.io import camera_from_dict

        cam = camera_from_dict(d)
        if not isinstance(cam, cls):
            raise ValueError(f"expected a camera with model {cls.model!r}, got {d.get('model')!r}")
        return cam


def _first_peak(k1: float, k3: np.ndarray, k5: np.ndarray) -> np.ndarray:
    """Where ``f(x) = k1 x + k3 x^3 + k5 x^5`` first stops rising from ``x = 0``: the lens fold, in the
    units of ``x``. ``inf`` where ``f`` rises for ever, 0 where it does not rise from 0 at all (``k1 <= 0``).

    A root of ``f(x) = 1`` beyond it lies on a branch where the lens maps inward or, when ``k5 > 0``, on the
    third branch where ``f`` rises again: neither is the pixel's ray (the pinhole model gives none there).
    """
    k3 = np.asarray(k3, dtype=np.float64)
    k5 = np.asarray(k5, dtype=np.float64)
    # The smallest positive y = x^2 with f'(x) = 5 k5 y^2 + 3 k3 y + k1 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = 9.0 * k3 * k3 - 20.0 * k5 * k1
        root = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        quadratic = np.stack([(-3.0 * k3 - root) / (10.0 * k5), (-3.0 * k3 + root) / (10.0 * k5)])
        linear = np.where(k3 < 0.0, -k1 / (3.0 * k3), np.nan)
    ys = np.where(k5 != 0.0, quadratic, np.stack([linear, linear]))
    ys = np.where(ys > 0.0, ys, np.inf)
    return np.sqrt(np.min(ys, axis=0)) if k1 > 0.0 else np.zeros(np.broadcast(k3, k5).shape)


def _root_before_fold(k1: float, k3: np.ndarray, k5: np.ndarray) -> np.ndarray:
    """The root of ``f(x) = k1 x + k3 x^3 + k5 x^5 - 1`` on the rising part of ``f`` from 0 (before its
    first peak, where the lens folds back), by bisection; NaN where ``f`` peaks below 0 (no ray).

    Hand-written: Newton's method, which JPL's CAHVOR code uses, stalls when it starts past the peak (a
    pixel with a ray then came out as having none); a bracket ``[0, peak]`` with ``f(0) = -1`` always holds
    the root when there is one.
    """
    k3 = np.asarray(k3, dtype=np.float64)
    k5 = np.asarray(k5, dtype=np.float64)

    def f(x: np.ndarray) -> np.ndarray:
        x2 = x * x
        return ((k5 * x2 + k3) * x2 + k1) * x - 1.0

    peak = _first_peak(k1, k3, k5)
    upper = np.where(np.isfinite(peak), peak, 1.0)
    for _ in range(64):  # no peak: f rises for ever; widen until it is above 0
        grow = ~np.isfinite(peak) & (f(upper) < 0.0)
        if not grow.any():
            break
        upper = np.where(grow, 2.0 * upper, upper)
    lower = np.zeros_like(upper)
    found = (f(upper) >= 0.0) & (k1 > 0.0)
    for _ in range(80):
        middle = 0.5 * (lower + upper)
        below = f(middle) < 0.0
        lower = np.where(below, middle, lower)
        upper = np.where(below, upper, middle)
    return np.where(found, 0.5 * (lower + upper), np.nan)


def _undistort_scale(R: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """The root ``x`` of ``k1 x + k3 x^3 + k5 x^5 = 1`` (``k1 = 1 + r0``, ``k3 = r1 tau``, ``k5 = r2 tau^2``)
    on the lens's rising branch: the factor that takes a distorted offset from ``O`` (``sqrt(tau)``, the
    tangent of its angle) back to the undistorted one. NaN where there is none (beyond the lens's fold).

    Newton's method from JPL's first approximation, then bisection (:func:`_root_before_fold`) where it
    stopped short of a root or on one past the fold.
    """
    k1 = 1.0 + float(R[0])
    k3 = R[1] * tau
    k5 = R[2] * tau * tau
    x = 1.0 - (R[0] + k3 + k5)  # first approximation, as in JPL's implementation
    for _ in range(_NEWTON_ITERATIONS):
        x2 = x * x
        poly = ((k5 * x2 + k3) * x2 + k1) * x - 1.0
        deriv = (5.0 * k5 * x2 + 3.0 * k3) * x2 + k1
        step = np.where(deriv > 1e-15, poly / np.where(deriv > 1e-15, deriv, 1.0), 0.0)
        x = x - step
        if np.all(np.abs(step) < _NEWTON_TOL):
            break
    # A pixel beyond the radius where a barrel-distorted lens folds back has no ray: there the iteration
    # stops short of a root, or on one past the fold (where the lens maps inward, or, with r2 > 0, on
    # the branch where it rises again). Such a root was used as it stood, a finite ray 600 px off on a
    # 1024 px camera, and its made-up metres went to contact files; the pinhole model gives none there.
    x2 = x * x
    poly = ((k5 * x2 + k3) * x2 + k1) * x - 1.0
    deriv = (5.0 * k5 * x2 + 3.0 * k3) * x2 + k1
    before_fold = (x >= 0.0) & (x <= _first_peak(k1, k3, k5))
    missed = ~(np.isfinite(x) & (np.abs(poly) <= _ROOT_TOL) & (deriv > 0.0) & before_fold)
    if np.any(missed):  # Newton started past the fold's peak, or there is no root: bisect where one is
        k3b, k5b = np.broadcast_to(k3, x.shape)[missed], np.broadcast_to(k5, x.shape)[missed]
        x = np.array(x, dtype=np.float64, copy=True)
        x[missed] = _root_before_fold(k1, k3b, k5b)
    return np.asarray(x, dtype=np.float64)


class CahvorCamera(CahvCamera):
    """A CAHVOR camera: CAHV plus radial distortion about the optical axis ``O`` with terms ``R``.

    Args:
        C, A, H, V: As :class:`CahvCamera`.
        O: Unit optical axis.
        R: Radial distortion terms ``(r0, r1, r2)``.
        image_width, image_height, site, ground_z_m, source_frame: As :class:`CahvCamera`.
    """

    model = "cahvor"

    def __init__(
        self,
        C: Any,
        A: Any,
        H: Any,
        V: Any,
        O: Any,
        R: Any,
        image_width: int,
        image_height: int,
        site: str | None = None,
        ground_z_m: float = 0.0,
        source_frame: str = "flu",
    ) -> None:
        super().__init__(
            C, A, H, V, image_width, image_height, site=site, ground_z_m=ground_z_m, source_frame=source_frame
        )
        self.O = _unit("O", O)
        self.R = _vec3("R", R)

    def distort(self, p: np.ndarray) -> np.ndarray:
        """Apply the CAHVOR radial distortion to camera-relative vectors ``p = P - C`` (..., 3)."""
        omega = p @ self.O
        lam = p - omega[..., None] * self.O
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.sum(lam * lam, axis=-1) / (omega * omega)
        mu = self.R[0] + self.R[1] * tau + self.R[2] * tau * tau
        return p + mu[..., None] * lam

    def pixel_to_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit (undistorted) ray directions in the site frame; see the module docstring for the method."""
        r = self._linear_ray(u, v)
        omega = r @ self.O
        lam = r - omega[..., None] * self.O
        tau = np.sum(lam * lam, axis=-1) / (omega * omega)
        x = _undistort_scale(self.R, tau)
        no_ray = ~np.isfinite(x)
        d = r - (1.0 - x)[..., None] * lam
        rays = d / np.linalg.norm(d, axis=-1, keepdims=True)
        rays[no_ray] = np.nan
        return rays

    def fold_radius(self) -> float:
        """Where the lens folds back: the largest ``sqrt(tau)`` (``|lambda| / omega``, the tangent of a
        point's angle off ``O``; no unit) on the lens's monotonic domain, ``inf`` when there is no fold.

        The distortion scales ``lambda`` by ``1 + mu``, so a point at ``s = sqrt(tau)`` is imaged at
        ``s' = (1 + r0) s + r1 s^3 + r2 s^5``; the fold is the first ``s`` where ``ds'/ds = 0``, the smallest
        positive root of ``5 r2 t^2 + 3 r1 t + (1 + r0) = 0`` for ``t = s^2`` (closed form, as
        :meth:`PinholeCamera.fold_radius <marsunits.boundary.camera.pinhole.PinholeCamera.fold_radius>`, which
        it equals for :func:`cahvor_from_pinhole`). 0 when ``1 + r0 <= 0``: no ray is imaged in order.
        """
        return float(_first_peak(1.0 + float(self.R[0]), np.array(self.R[1]), np.array(self.R[2])))

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Project site-frame points ``(..., 3)`` to pixel coordinates ``(..., 2)``.

        NaN for points the camera does not see: behind it, and beyond the lens's fold
        (:meth:`fold_radius`, points whose ``sqrt(tau)`` exceeds it), which a barrel-distorted lens put back
        inside the image, as the pinhole model did; :meth:`pixel_to_ray` gives no pixel a ray there.
        """
        p = np.asarray(points, dtype=np.float64) - self.C
        omega = p @ self.O
        lam = p - omega[..., None] * self.O
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.sqrt(np.sum(lam * lam, axis=-1)) / omega
            out = self._linear_project(self.distort(p))
        unseen = ~(omega > 1e-12) | ~(s <= self.fold_radius())
        if 1.0 + self.R[0] <= 0.0:  # the lens images nothing in order: pixel_to_ray gives no ray at all
            unseen = np.ones_like(unseen)
        out[unseen] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the camera's source frame (as :meth:`CahvCamera.to_dict`)."""
        d = super().to_dict()
        d["O"] = self._in_source_frame(self.O)
        d["R"] = self.R.tolist()
        return d


def _pinhole_cahv_vectors(cam: PinholeCamera) -> dict[str, Any]:
    R = cam.R
    f = cam.focal_px
    A = R[2]
    # principal point in CAHV coordinates (origin at the centre of the top-left pixel)
    hc, vc = cam.image_width / 2.0 - 0.5, cam.image_height / 2.0 - 0.5
    return {
        "C": cam.center,
        "A": A,
        "H": f * R[0] + hc * A,
        "V": f * R[1] + vc * A,
        "image_width": cam.image_width,
        "image_height": cam.image_height,
        "site": cam.site,
    }


def cahv_from_pinhole(cam: PinholeCamera) -> CahvCamera:
    """The CAHV camera that projects exactly like a distortion-free :class:`PinholeCamera`.

    ``A`` is the optical axis, ``H = f right + hc A``, ``V = f down + vc A`` with ``f`` the focal length in
    pixels and ``(hc, vc)`` the principal point in CAHV coordinates (image centre minus half a pixel).

    Raises:
        ValueError: If the pinhole has radial distortion (use :func:`cahvor_from_pinhole`).
    """
    if cam.k1 != 0.0 or cam.k2 != 0.0:
        raise ValueError(
            f"pinhole camera has radial distortion (k1={cam.k1}, k2={cam.k2}); CAHV is linear. "
            "Use cahvor_from_pinhole for an exact equivalent."
        )
    return CahvCamera(**_pinhole_cahv_vectors(cam))


def cahvor_from_pinhole(cam: PinholeCamera) -> CahvorCamera:
    """The CAHVOR camera that projects exactly like a :class:`PinholeCamera`, distortion included.

    With ``O = A``, ``lambda / omega`` are the pinhole's normalised coordinates and ``tau = r^2``, so the
    CAHVOR distortion ``1 + mu = 1 + r0 + r1 r^2 + r2 r^4`` equals the pinhole's ``1 + k1 r^2 + k2 r^4`` for
    ``R = (0, k1, k2)``.
    """
    vec = _pinhole_cahv_vectors(cam)
    return CahvorCamera(O=vec["A"], R=[0.0, cam.k1, cam.k2], **vec)
