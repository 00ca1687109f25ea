"""The geologic contact on the ground: a lobate curve, the side test that labels pixels, and its image.

The curve is the graph of a multi-scale 1-D function over a straight base line on the ground:
``p(s) = origin + s * tangent + d(s) * normal``. A ground point belongs to the "positive" side when its
normal offset exceeds ``d`` at its own along-line coordinate. The mask is labelled with exactly this test
at each pixel centre's ground point, and the true contact is this curve projected with the same camera, so
the two agree to the pixel grid's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.boundary.contact_io import CONTACT_ID, ContactLine
from marsunits.data.synthetic.noise import noise_1d

#: Ground sampling step of the projected contact, metres (finer than a pixel at the nearest ranges).
STEP_M = 0.01
#: Step of the offset table used to label pixels (:meth:`ContactCurve.signed_offset`), metres.
TABLE_STEP_M = STEP_M
#: Minimum spacing of kept contact vertices, pixels.
VERTEX_SPACING_PX = 0.75


@dataclass
class ContactCurve:
    """A contact line on the ground plane (site frame, metres).

    Attributes:
        origin: (2,) a point of the base line, metres.
        tangent: (2,) unit direction of the base line.
        normal: (2,) unit normal (tangent rotated +90 degrees).
        offset: Callable ``d(s)`` giving the normal displacement at along-line coordinate ``s``.
        half_length_m: The curve is sampled on ``s`` in ``[-half_length_m, half_length_m]``.
    """

    origin: np.ndarray
    tangent: np.ndarray
    normal: np.ndarray
    offset: Callable[[np.ndarray], np.ndarray]
    half_length_m: float

    @classmethod
    def random(
        cls, rng: np.random.Generator, origin: np.ndarray, view_azimuth: float, max_range_m: float
    ) -> ContactCurve:
        """Draw a lobate contact through ``origin`` at a random angle to the line of sight.

        Args:
            rng: Random generator.
            origin: (2,) ground point the contact passes near (chosen inside the view), metres.
            view_azimuth: Azimuth of the line of sight to ``origin``, radians.
            max_range_m: Useful range; sets the sampled length.
        """
        # Mostly across the view (like a contact seen from a traverse), sometimes oblique or along it.
        theta = view_azimuth + np.pi / 2 + rng.normal(0.0, 0.6)
        tangent = np.array([np.cos(theta), np.sin(theta)])
        normal = np.array([-tangent[1], tangent[0]])
        scale = rng.uniform(0.3, 1.2)
        wl = np.array([24.0, 11.0, 5.0, 2.3, 1.1, 0.5, 0.23]) * rng.uniform(0.7, 1.4)
        amp = scale * 0.12 * wl**0.85 * rng.uniform(0.5, 1.5, len(wl))
        smooth = noise_1d(rng, wl, amp)
        lobe_wl = rng.uniform(1.5, 6.0)
        lobe_amp = scale * rng.uniform(0.1, 0.35) * lobe_wl * rng.choice([-1.0, 1.0])
        lobe_phase = rng.uniform(0.0, np.pi)

        def offset(s: np.ndarray) -> np.ndarray:
            # |sin| makes rounded lobes meeting in cusps, the signature of a lava-flow front.
            return smooth(s) + lobe_amp * (np.abs(np.sin(np.pi * s / lobe_wl + lobe_phase)) - 0.64)

        return cls(origin, tangent, normal, offset, half_length_m=2.2 * max_range_m + 5.0)

    def signed_offset(
        self,
        x: np.ndarray,
        y: np.ndarray,
        ref: tuple[float, float] = (0.0, 0.0),
        fine_within_m: float = math.inf,
    ) -> np.ndarray:
        """Normal offset of ground points from the curve, metres (> 0 on the positive side).

        Exact in the sign up to float32 rounding and a sub-millimetre table interpolation (see
        :meth:`_offset_lookup`); the magnitude is the offset along the base line's normal, not the
        Euclidean distance, which is good enough for widths of drifts along the contact.

        Args:
            x: (N,) ground x relative to ``ref``, metres (float32 relative to a point near the camera is
                precise to ~0.1 mm at 1 km, far below a pixel footprint).
            y: (N,) ground y relative to ``ref``.
            ref: Site-frame origin of ``x, y`` (the camera position).
            fine_within_m: Points farther than this from ``ref`` may use a coarser table (10 cm step):
                pass the useful range, beyond which pixels are metres wide and labelled ignore.

        Returns:
            (N,) float32 offsets.
        """
        ox = np.float32(self.origin[0] - ref[0])
        oy = np.float32(self.origin[1] - ref[1])
        tx, ty = np.float32(self.tangent[0]), np.float32(self.tangent[1])
        px = x.astype(np.float32, copy=False) - ox
        py = y.astype(np.float32, copy=False) - oy
        s = px * tx + py * ty
        o = py * tx - px * ty  # normal = tangent rotated +90 degrees
        # A point's distance to ref is at least its along-line distance to ref's own coordinate.
        s_ref = -float(ox * tx + oy * ty)
        o -= self._offset_lookup(s, s_ref - fine_within_m, s_ref + fine_within_m)
        return o

    def _offset_lookup(self, s: np.ndarray, fine_lo: float, fine_hi: float) -> np.ndarray:
        """``offset(s)`` for many points: linear interpolation in tables of the curve's offset.

        The offset is a sum of sines (finest wavelength >= 0.16 m); evaluating it per pixel costs one sine
        per term and pixel, a table a few operations. On ``[fine_lo, fine_hi]`` the table step is
        :data:`TABLE_STEP_M` (interpolation error below 1 mm, far below a pixel footprint and the same as
        the drawn contact's, sampled every :data:`STEP_M` and joined by straight segments); elsewhere
        10 cm. Points outside the sampled half-length are evaluated exactly.

        Interpolated by hand rather than with ``numpy.interp``, which binary-searches every point in float64:
        on 76,800 points (a 320x240 scene) it took 5.1 ms against 0.9 ms here (direct float32 indexing on the
        uniform table), for offsets that differ by under 0.5 mm.
        """
        out = np.empty(s.shape, np.float32)
        if s.size == 0:
            return out
        lo = max(float(s.min()), -self.half_length_m)
        hi = min(float(s.max()), self.half_length_m)
        todo = np.ones(s.shape, bool)
        for a, b, step in ((max(lo, fine_lo), min(hi, fine_hi), TABLE_STEP_M), (lo, hi, 0.1)):
            if b <= a or not todo.any():
                continue
            n = int(math.ceil((b - a) / step)) + 2
            table = self.offset(a + step * np.arange(n, dtype=np.float64)).astype(np.float32)
            slope = np.diff(table)
            t = (s - np.float32(a)) * np.float32(1.0 / step)
            sel = todo & (t >= 0.0) & (t <= n - 2)
            if sel.all():
                idx: slice | np.ndarray = slice(None)
            else:
                idx = np.flatnonzero(sel)
                t = t[idx]
            i = t.astype(np.int32)  # t >= 0: truncation is floor
            t -= i
            t *= slope[i]
            t += table[i]
            out[idx] = t
            todo[idx] = False
        if todo.any():
            out[todo] = self.offset(s[todo])
        return out

    def ground_polyline(
        self, camera: PinholeCamera | None = None, max_range_m: float = math.inf
    ) -> np.ndarray:
        """(M, 2) densely sampled curve, metres, spacing :data:`STEP_M` along the base line.

        With ``camera``, only the samples whose base-line coordinate lies within ``max_range_m`` of the
        camera's are returned: a curve point's distance to the camera is at least that along-line gap, so
        no point within range is lost (the samples stay on the same global grid).
        """
        s = np.arange(-self.half_length_m, self.half_length_m + STEP_M, STEP_M)
        if camera is not None and math.isfinite(max_range_m):
            sc = (camera.x_m - self.origin[0]) * self.tangent[0] + (
                camera.y_m - self.origin[1]
            ) * self.tangent[1]
            s = s[(s >= sc - max_range_m - STEP_M) & (s <= sc + max_range_m + STEP_M)]
        d = self.offset(s)
        return self.origin + s[:, None] * self.tangent + d[:, None] * self.normal

    def image_lines(
        self,
        camera: PinholeCamera,
        max_range_m: float,
        hidden: np.ndarray | None = None,
        contact_id: int = 0,
    ) -> list[ContactLine]:
        """The visible contact as sub-pixel polylines in pixel coordinates, with their ground points.

        A vertex is kept when it projects inside the image, lies within ``max_range_m`` of the camera and
        is not under an occluder (``hidden[row, col]`` True, e.g. rover hardware). Runs of kept vertices
        become separate lines; vertices are thinned to about :data:`VERTEX_SPACING_PX` apart.

        Every line is a piece of this one curve, so all carry ``extra["contact_id"] = contact_id``, as the
        pieces of a predicted contact split at the range limit share its id
        (:mod:`marsunits.boundary.contact_io`): read back, the pieces count as one contact
        (:func:`~marsunits.boundary.contact_io.count_contacts`), as on the ground. Without it, a true file
        counted each piece as a contact. Unlike predicted ids, which number contacts as extracted from a mask
        (where hardware in view cuts one into two), the pieces here are known to be one curve wherever they
        are cut: at the range limit, the image's edges or hardware.

        Args:
            camera: The scene camera.
            max_range_m: Horizontal range limit, metres.
            hidden: Optional (H, W) bool occlusion mask.
            contact_id: The curve's id among the scene's contacts (a scene draws one curve: 0).

        Returns:
            Contact lines (``pixels`` (K, 2) as ``(u, v)``, ``ground_m`` (K, 2), ``site`` the camera's,
            ``extra`` holding ``contact_id``), possibly empty.
        """
        g = self.ground_polyline(camera, max_range_m)
        rng_m = np.hypot(g[:, 0] - camera.x_m, g[:, 1] - camera.y_m)
        near = rng_m <= max_range_m
        g = g[near]
        if len(g) < 2:
            return []
        uv = camera.world_to_pixel(np.column_stack([g, np.zeros(len(g))]))
        W, H = camera.image_width, camera.image_height
        ok = np.isfinite(uv).all(axis=1)
        ok &= (uv[:, 0] >= 0) & (uv[:, 0] <= W) & (uv[:, 1] >= 0) & (uv[:, 1] <= H)
        if camera.k1 != 0.0 or camera.k2 != 0.0:
            # With barrel distortion, points far outside the field of view can fold back into the image;
            # keep only vertices whose pixel casts back onto the same ground point. (Without distortion
            # the projection of a point in front of the camera is exactly invertible.)
            back = np.full_like(uv, np.nan)
            back[ok] = camera.pixel_to_ground(uv[ok, 0], uv[ok, 1])[:, :2]
            with np.errstate(invalid="ignore"):
                ok &= np.hypot(back[:, 0] - g[:, 0], back[:, 1] - g[:, 1]) <= 1e-3 * (1.0 + rng_m[near])
        if hidden is not None:
            col = np.clip(np.nan_to_num(uv[:, 0]).astype(np.int64), 0, W - 1)
            row = np.clip(np.nan_to_num(uv[:, 1]).astype(np.int64), 0, H - 1)
            ok &= ~hidden[row, col]
        # Runs of consecutive kept samples (a gap in the range filter also splits, via the index jump).
        idx = np.flatnonzero(near)[ok]
        uv, g = uv[ok], g[ok]
        if len(uv) < 2:
            return []
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        lines = []
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(uv)], strict=True):
            if b - a < 2:
                continue
            keep = _thin(uv[a:b])
            if len(keep) < 2:
                continue
            # site: the frame of ground_m, named as predict.py names it from the same camera file (the true
            # file lacked it, so true and predicted contacts of a scene did not say they share a frame).
            lines.append(
                ContactLine(
                    pixels=uv[a:b][keep],
                    confidence=1.0,
                    ground_m=g[a:b][keep],
                    site=camera.site,
                    extra={CONTACT_ID: contact_id},
                )
            )
        return lines


def _thin(uv: np.ndarray) -> np.ndarray:
    """Indices of vertices about :data:`VERTEX_SPACING_PX` apart along the polyline (first and last kept)."""
    seg = np.linalg.norm(np.diff(uv, axis=0), axis=1)
    cum = np.r_[0.0, np.cumsum(seg)]
    bins = np.floor(cum / VERTEX_SPACING_PX)
    keep = np.r_[True, bins[1:] != bins[:-1]]
    keep[-1] = True
    return np.flatnonzero(keep)
