"""JPL's CAHVORE camera model: CAHVOR plus a moving entrance pupil, the form of wide-angle and fish-eye lenses
(Mars 2020's Navcams and Hazcams, MSL's and MER's Hazcams).

Gennery, "Generalized camera calibration including fish-eye lenses", IJCV 68(3), 2006. To CAHVOR's ``C A H V
O R`` (:mod:`marsunits.boundary.camera.cahv`) it adds the entrance-pupil terms ``E = (e0, e1, e2)`` (metres;
PDS ``MODEL_COMPONENT_7``), the model type ``T`` (1 perspective, 2 fish-eye, 3 general; ``MODEL_COMPONENT_8``)
and, for type 3, the parameter ``P`` (``MODEL_COMPONENT_9``), the linearity ``L``: type 1 is ``L = 1``, type
2 ``L = 0`` (their ``P`` is not read, as in JPL's ``cmod_cahvore``).

A ray entering the lens at the angle ``theta`` off the optical axis ``O`` is imaged as CAHVOR images a point
at the tangent ``chi`` of its angle off ``O``, where::

    chi = tan(L theta) / L  (L > 0),   theta  (L = 0),   sin(L theta) / L  (L < 0)

and the ray starts not at ``C`` but at the entrance pupil, moved along ``O`` by::

    s(theta) = (theta / sin(theta) - 1) (e0 + e1 theta^2 + e2 theta^4)

Pixel to ray: the CAHV ray ``r'`` of the pixel gives the distorted tangent ``chi' = |lambda'| / zeta'``
(``zeta' = r' . O``, ``lambda' = r' - zeta' O``); ``chi`` solves ``(1 + r0) chi + r1 chi^3 + r2 chi^5 = chi'``
(the CAHVOR lens, on its rising branch before the fold), ``theta`` follows from ``chi``, and the ray is
``C + s(theta) O + t (cos(theta) O + sin(theta) lambda' / |lambda'|)``, ``t >= 0``.

Point to pixel: with ``p = P - C``, ``zeta = p . O``, ``lambda = p - zeta O``, the ray through ``P`` has the
``theta`` that solves ``zeta sin(theta) - |lambda| cos(theta) - (theta - sin(theta)) (e0 + e1 theta^2 + e2
theta^4) = 0`` (the pupil's shift put into ``(zeta - s) sin(theta) = |lambda| cos(theta)``), found by
Newton's method from ``atan2(|lambda|, zeta)``, the root when ``E = 0``; then ``p' = (|lambda| / chi) O +
(1 + mu) lambda`` with ``mu = r0 + r1 chi^2 + r2 chi^4`` is projected with CAHV. With ``E = 0`` and ``T = 1``
every step is CAHVOR's: ``chi = tan(theta) = |lambda| / zeta`` and ``p' = p + mu lambda``.

This is the formulation of JPL's camera-model library (T. Litwin, ``cmod_cahvore.c``) and of its open ports
(NASA-AMMOS VICAR's ``PigCoreCAHVORE``, ``MarsRaw/sciimg``'s ``cahvore.rs``), written here from the
equations, vectorised with numpy, with this project's conventions (pixel origin at the top-left pixel's
corner, the FLU site frame, ``ground_z_m``; see :mod:`marsunits.boundary.camera.cahv`). The one Python
package that wraps JPL's C code (``cycahvore`` 0.0.1a0, 2023) is an alpha that installs top-level ``tests``
and ``VICAR`` packages and is built for one numpy ABI only (numpy < 2), so it is not a dependency; its values
were used to check these (``tests/test_cahvore.py``).

Where the references give a pixel without a ray a ray all the same (past the lens's fold, or ``L theta``
beyond ``pi / 2``), this model gives NaN, and so does :meth:`CahvoreCamera.world_to_pixel` for points no
pixel's ray reaches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from marsunits.boundary.camera.cahv import CahvorCamera, _undistort_scale, _vec3

__all__ = ["CAHVORE_TYPES", "CahvoreCamera"]

#: ``T`` (PDS ``MODEL_COMPONENT_8``) and what it names; the linearity is 1 for type 1, 0 for type 2, ``P``
#: for type 3.
CAHVORE_TYPES = {1: "perspective", 2: "fish-eye", 3: "general"}
_NEWTON_ITERATIONS = 60
#: Newton steps in theta (radians) below which the point-to-pixel iteration counts as converged.
_THETA_TOL = 1e-15
#: Largest residual of the pupil equation, relative to the point's distance from C, accepted as a root.
_RESIDUAL_TOL = 1e-10
#: Below this angle off O (radians), theta / sin(theta) - 1 is taken from its series (no cancellation).
_SMALL_THETA = 1e-3


def _pupil_factor(theta: np.ndarray) -> np.ndarray:
    """``theta / sin(theta) - 1``, accurate down to ``theta = 0`` (its series there)."""
    t2 = theta * theta
    series = t2 / 6.0 + 7.0 * t2 * t2 / 360.0
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = theta / np.sin(theta) - 1.0
    return np.where(np.abs(theta) < _SMALL_THETA, series, direct)


class CahvoreCamera(CahvorCamera):
    """A CAHVORE camera: CAHVOR whose rays start at an entrance pupil that moves along ``O`` with their angle.

    Args:
        C, A, H, V, O, R: As :class:`~marsunits.boundary.camera.cahv.CahvorCamera`.
        E: Entrance-pupil terms ``(e0, e1, e2)``, metres (PDS ``MODEL_COMPONENT_7``).
        T: Model type, 1 (perspective), 2 (fish-eye) or 3 (general) (``MODEL_COMPONENT_8``).
        P: The linearity of a type 3 lens (``MODEL_COMPONENT_9``); not read for types 1 and 2, whose
            linearity is 1 and 0 (as in JPL's code), but kept for :meth:`to_dict`.
        image_width, image_height, site, ground_z_m, source_frame: As :class:`CahvorCamera`.

    Raises:
        ValueError: If ``T`` is not 1, 2 or 3, or ``E`` / ``P`` are not finite numbers.
    """

    model = "cahvore"

    def __init__(
        self,
        C: Any,
        A: Any,
        H: Any,
        V: Any,
        O: Any,
        R: Any,
        E: Any,
        T: int,
        P: float,
        image_width: int,
        image_height: int,
        site: str | None = None,
        ground_z_m: float = 0.0,
        source_frame: str = "flu",
    ) -> None:
        super().__init__(
            C,
            A,
            H,
            V,
            O,
            R,
            image_width,
            image_height,
            site=site,
            ground_z_m=ground_z_m,
            source_frame=source_frame,
        )
        self.E = _vec3("E", E)
        if isinstance(T, bool) or T not in CAHVORE_TYPES:
            raise ValueError(
                f"CAHVORE type T must be 1 (perspective), 2 (fish-eye) or 3 (general), got {T!r} "
                "(MODEL_COMPONENT_8 of a PDS label)"
            )
        self.T = int(T)
        if isinstance(P, bool) or not isinstance(P, (int, float)) or not math.isfinite(P):
            raise ValueError(
                f"CAHVORE parameter P must be a finite number, got {P!r} (MODEL_COMPONENT_9 of a PDS label)"
            )
        self.P = float(P)

    @property
    def linearity(self) -> float:
        """``L``: 1 for type 1 (perspective), 0 for type 2 (fish-eye), ``P`` for type 3."""
        return {1: 1.0, 2: 0.0}.get(self.T, self.P)

    def max_theta(self) -> float:
        """The largest angle off ``O`` (radians, exclusive) a ray can have: ``pi / (2 |L|)`` where ``chi``
        runs to infinity (``L > 0``) or turns back (``L < 0``), and never more than ``pi``."""
        lin = abs(self.linearity)
        return math.pi if lin <= 0.5 else math.pi / (2.0 * lin)

    def _chi_of_theta(self, theta: np.ndarray) -> np.ndarray:
        lin = self.linearity
        if lin > 0.0:
            return np.tan(lin * theta) / lin
        if lin < 0.0:
            return np.sin(lin * theta) / lin
        return np.asarray(theta, dtype=np.float64)

    def _theta_of_chi(self, chi: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`_chi_of_theta` on ``[0, max_theta)``; NaN where ``chi`` has no angle."""
        lin = self.linearity
        if lin > 0.0:
            theta = np.arctan(lin * chi) / lin
        elif lin < 0.0:
            with np.errstate(invalid="ignore"):
                theta = np.arcsin(np.where(np.abs(lin * chi) < 1.0, lin * chi, np.nan)) / lin
        else:
            theta = np.asarray(chi, dtype=np.float64)
        return np.where((theta >= 0.0) & (theta < self.max_theta()), theta, np.nan)

    def pupil_shift(self, theta: np.ndarray) -> np.ndarray:
        """How far along ``O`` (metres) the ray at the angle ``theta`` off ``O`` starts from ``C``."""
        theta = np.asarray(theta, dtype=np.float64)
        t2 = theta * theta
        return _pupil_factor(theta) * (self.E[0] + (self.E[1] + self.E[2] * t2) * t2)

    # ------------------------------------------------------------------ pixels to rays
    def _rays(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(origins, directions)`` of the pixels' rays (module docstring); NaN for pixels without one."""
        r = self._linear_ray(u, v)
        zeta = r @ self.O
        lam = r - zeta[..., None] * self.O
        lam_mag = np.linalg.norm(lam, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            chip = np.where(zeta > 0.0, lam_mag / zeta, np.nan)
            chi = chip * _undistort_scale(self.R, chip * chip)
        theta = self._theta_of_chi(chi)
        origin = self.C + self.pupil_shift(theta)[..., None] * self.O
        with np.errstate(divide="ignore", invalid="ignore"):
            across = np.where(lam_mag > 0.0, np.sin(theta) / lam_mag, 0.0)
        d = np.cos(theta)[..., None] * self.O + across[..., None] * lam
        none = ~np.isfinite(theta)
        d[none] = np.nan
        origin[none] = np.nan
        return origin, d

    def pixel_to_ray(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit ray directions in the site frame for pixel coordinates (corner origin); NaN for pixels with
        no ray (beyond the lens's fold, or an angle past :meth:`max_theta`). The rays start at
        :meth:`ray_origin`, not at ``C``."""
        return self._rays(u, v)[1]

    def ray_origin(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Where each pixel's ray starts, ``u.shape + (3,)``: ``C + s(theta) O``, the entrance pupil for the
        ray's angle ``theta`` off ``O``; NaN for pixels with no ray."""
        return self._rays(u, v)[0]

    # ------------------------------------------------------------------ points to pixels
    def _theta_of_point(self, zeta: np.ndarray, lam_mag: np.ndarray) -> np.ndarray:
        """The angle off ``O`` of the ray through the point with axial and radial offsets ``zeta``,
        ``lam_mag`` from ``C``: the root of the pupil equation (module docstring) that Newton's method
        reaches from the ``E = 0`` angle, where the equation rises through it; NaN where it does not
        converge there."""
        e0, e1, e2 = (float(x) for x in self.E)
        theta = np.arctan2(lam_mag, zeta)

        def terms(th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            c, s = np.cos(th), np.sin(th)
            t2 = th * th
            pupil = e0 + (e1 + e2 * t2) * t2
            slope = (2.0 * e1 + 4.0 * e2 * t2) * th
            g = zeta * s - lam_mag * c - (th - s) * pupil
            dg = zeta * c + lam_mag * s - (1.0 - c) * pupil - (th - s) * slope
            return g, dg

        if np.any(self.E != 0.0):
            for _ in range(_NEWTON_ITERATIONS):
                g, dg = terms(theta)
                with np.errstate(divide="ignore", invalid="ignore"):
                    step = np.where(dg > 0.0, g / dg, np.nan)
                theta = theta - step
                if not np.any(np.abs(step) > _THETA_TOL):
                    break
        g, dg = terms(theta)
        scale = np.hypot(zeta, lam_mag)
        root = np.isfinite(theta) & (np.abs(g) <= _RESIDUAL_TOL * scale) & (dg > 0.0)
        return np.where(root, theta, np.nan)

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Project site-frame points ``(..., 3)`` to pixel coordinates ``(..., 2)`` (module docstring).

        NaN for points the camera does not see: at ``C`` itself, at an angle off ``O`` past
        :meth:`max_theta`, beyond the lens's fold (:meth:`fold_radius`, in ``chi``), and where the pupil
        equation has no root that Newton's method reaches (a point so close to the lens that the moving pupil
        passes it); :meth:`pixel_to_ray` gives no pixel a ray there.
        """
        p = np.asarray(points, dtype=np.float64) - self.C
        zeta = p @ self.O
        lam = p - zeta[..., None] * self.O
        lam_mag = np.linalg.norm(lam, axis=-1)
        theta = self._theta_of_point(zeta, lam_mag)
        theta = np.where((theta >= 0.0) & (theta < self.max_theta()), theta, np.nan)
        chi = self._chi_of_theta(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            on_axis = lam_mag <= 0.0
            zetap = np.where(on_axis, zeta, lam_mag / chi)
            mu = self.R[0] + (self.R[1] + self.R[2] * chi * chi) * chi * chi
            pp = zetap[..., None] * self.O + (1.0 + mu)[..., None] * lam
            out = self._linear_project(pp)
        seen = np.isfinite(theta) & (chi <= self.fold_radius()) & (np.hypot(zeta, lam_mag) > 0.0)
        if 1.0 + self.R[0] <= 0.0:  # the lens images nothing in order: pixel_to_ray gives no ray at all
            seen = np.zeros_like(seen)
        out[~seen] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the camera's source frame (as :meth:`CahvorCamera.to_dict`), with ``E``, ``T``
        and ``P`` (``E`` and ``R`` are lengths and coefficients along ``O``: no frame turns them)."""
        d = super().to_dict()
        d["E"] = self.E.tolist()
        d["T"] = self.T
        d["P"] = self.P
        return d
