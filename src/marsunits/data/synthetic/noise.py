"""Procedural fields evaluated at ground points (metres): band-limited octave noise, cells and rocks.

Everything here takes flat arrays of site-frame ground coordinates ``x, y`` (metres) and a per-point
ground footprint ``fp`` (metres per pixel along the viewing direction) and returns values at those points,
so texture lives on the ground and shrinks and foreshortens with range like in a rover image.

Why hand-written: the fields must be evaluated at arbitrary, non-gridded ground points with a per-point
anti-aliasing fade, vectorised over a whole image; noise libraries evaluate on grids or per point in
Python. The octave lookups use ``torch.nn.functional.grid_sample`` (C++), so there are no Python loops
over pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Texels per side of each tileable octave texture (a power of two).
PERIOD = 64
#: Side of the per-scene hash tables used by cells and rocks (a power of two).
TABLE = 64


def fade_weight(wavelength_m: float | np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Anti-aliasing weight: 0 where a wavelength spans < 2 pixel footprints, 1 above 4, linear in log2."""
    return np.clip(np.log2(np.asarray(wavelength_m, dtype=np.float32) / fp) - 1.0, 0.0, 1.0)


@dataclass
class OctaveNoise:
    """``K`` octaves of tileable value noise with ``C`` independent channels each.

    Octave ``k`` has wavelength ``base_m * 2**k`` (texel spacing half of it), a random rotation and offset,
    and is sampled C1-continuously (so finite-difference shading shows no lattice creases): by default
    bilinearly at smoothstep-eased texel fractions (``mode="smoothstep"``, 4 taps), or bicubically.

    Attributes:
        textures: (K, C, PERIOD + 3, PERIOD + 3) float32 tensor, wrap-padded by (1, 2) texels.
        wavelengths: (K,) wavelengths in metres.
        angles: (K,) rotation of each octave's lattice, radians.
        offsets: (K, 2) lattice offsets in texels.
    """

    textures: torch.Tensor
    wavelengths: np.ndarray
    angles: np.ndarray
    offsets: np.ndarray
    mode: str = "smoothstep"

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        n_octaves: int,
        channels: int,
        base_m: float,
        mode: str = "smoothstep",
    ) -> OctaveNoise:
        """Draw the lattices of a new field from ``rng``; ``mode`` is the interpolation: ``"smoothstep"``
        (C1, cheap; the default), ``"bicubic"`` (C1, 4x the taps) or ``"bilinear"`` (C0: creased shading)."""
        if mode not in ("smoothstep", "bicubic", "bilinear"):
            raise ValueError(f"mode must be 'smoothstep', 'bicubic' or 'bilinear', got {mode!r}")
        tex = rng.uniform(-1.0, 1.0, (n_octaves, channels, PERIOD, PERIOD)).astype(np.float32)
        tex = np.pad(tex, ((0, 0), (0, 0), (1, 2), (1, 2)), mode="wrap")
        return cls(
            textures=torch.from_numpy(tex),
            wavelengths=base_m * 2.0 ** np.arange(n_octaves),
            angles=rng.uniform(0.0, 2.0 * np.pi, n_octaves),
            offsets=rng.uniform(0.0, PERIOD, (n_octaves, 2)),
            mode=mode,
        )

    def sample(self, x: np.ndarray, y: np.ndarray, fp: np.ndarray | None) -> np.ndarray:
        """Noise at ground points, each octave faded by :func:`fade_weight`.

        Args:
            x: (N,) float32 ground x relative to a scene origin near the camera, metres (float32 keeps
                sub-texel precision where it matters: near points are fine, far ones are faded out).
            y: (N,) float32 ground y, same origin.
            fp: (N,) footprint in metres per pixel, or None for no fade.

        Returns:
            (K, C, N) float32, values roughly in [-1, 1] (std ~0.45 before the fade).
        """
        K = len(self.wavelengths)
        n = x.shape[0]
        out = np.empty((K, self.textures.shape[1], n), np.float32)
        if n == 0:
            return out
        x = x.astype(np.float32, copy=False)
        y = y.astype(np.float32, copy=False)
        if fp is None:
            self._lookup(np.arange(K), x, y, out, None)
            return out
        # An octave is only sampled where it survives the fade (wavelength > 2 footprints) when that is a
        # minority of the points (fine octaves, near field); the others share one batched lookup.
        full, partial = [], []
        for k in range(K):
            live = fp < self.wavelengths[k] / 2.0
            count = int(np.count_nonzero(live))
            if count > n // 2:
                full.append(k)
            elif count:
                partial.append((k, np.flatnonzero(live)))
        for k in range(K):
            if k not in full:  # full octaves are overwritten whole; the others start at 0
                out[k] = 0.0
        if full:
            self._lookup(np.array(full), x, y, out, None)
        for k, idx in partial:
            self._lookup(np.array([k]), x[idx], y[idx], out, idx)
        live = full + [k for k, _ in partial]  # dead octaves are 0 and need no fade
        if live:
            w = fade_weights(self.wavelengths[live], fp)
            for j, k in enumerate(live):
                out[k] *= w[j]
        return out

    def _lookup(
        self, ks: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray, idx: np.ndarray | None
    ) -> None:
        """Sample octaves ``ks`` at ``(x, y)`` into ``out[ks][..., idx]`` (all points if idx is None)."""
        n = x.shape[0]
        # Lattice coordinates of every octave in one affine map, in units of the texture period:
        # [x y 1] (N, 3) @ (K, 3, 2) -> (K, N, 2), then wrapped to [0, 1) and mapped to the padded texture.
        spacing = self.wavelengths[ks] * (PERIOD / 2.0)
        c, s = np.cos(self.angles[ks]) / spacing, np.sin(self.angles[ks]) / spacing
        A = np.empty((len(ks), 3, 2), np.float32)
        A[:, 0, 0], A[:, 1, 0], A[:, 2, 0] = c, s, self.offsets[ks, 0] / PERIOD
        A[:, 0, 1], A[:, 1, 1], A[:, 2, 1] = -s, c, self.offsets[ks, 1] / PERIOD
        xy1 = np.empty((n, 3), np.float32)
        xy1[:, 0], xy1[:, 1], xy1[:, 2] = x, y, 1.0
        g = np.matmul(xy1, A)  # (K, N, 2), contiguous: grid_sample is ~8x slower on a strided grid
        mode = self.mode
        # Texel index 1 + frac * P of the (P + 3)-texel padded texture, on [-1, 1] with align_corners=True.
        # One octave at a time: its (N, 2) slice stays in cache through the chain of in-place operations.
        i = np.empty((n, 2), np.float32)
        tmp = np.empty((n, 2), np.float32)
        for gk in g:
            np.floor(gk, out=i)
            gk -= i
            if mode == "smoothstep":
                # Texel coordinate i + f -> i + f^2 (3 - 2 f): bilinear weights of a smoothstep-eased
                # fraction make the field C1 across texel edges (no creases in finite-difference
                # shading) at a quarter of the bicubic taps.
                gk *= np.float32(PERIOD)
                np.floor(gk, out=i)
                gk -= i
                np.multiply(gk, np.float32(-2.0), out=tmp)
                tmp += np.float32(3.0)
                gk *= gk
                gk *= tmp
                gk += i
                gk *= np.float32(2.0 / (PERIOD + 2))
            else:
                gk *= np.float32(2.0 * PERIOD / (PERIOD + 2))
            gk += np.float32(2.0 / (PERIOD + 2) - 1.0)
        if mode == "smoothstep":
            mode = "bilinear"
        grid = torch.from_numpy(g)[:, :, None, :]
        tex = self.textures[torch.from_numpy(ks)]
        # Coordinates always fall inside the padded texture, so no border clamping is needed.
        vals = F.grid_sample(tex, grid, mode=mode, padding_mode="zeros", align_corners=True)[
            :, :, :, 0
        ].numpy()
        if idx is None:
            out[ks] = vals
        else:
            out[ks[0]][:, idx] = vals[0]


def fade_weights(wavelengths: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """(K, N) :func:`fade_weight` of K wavelengths at N footprints, computing ``log2(fp)`` once."""
    lfp = np.log2(fp.astype(np.float32, copy=False))
    lw = np.log2(np.asarray(wavelengths, dtype=np.float32))[:, None] - 1.0
    return np.clip(lw - lfp[None, :], 0.0, 1.0)


def _table(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random((n, TABLE * TABLE), dtype=np.float32)


@dataclass
class Cells:
    """Jittered-grid Voronoi cells (polygonal slabs / blocks) with per-cell random attributes.

    Attributes:
        cell_m: Grid spacing in metres (mean cell diameter).
        table: (5, TABLE*TABLE) float32: jitter x, jitter y, a per-cell uniform, and the cosine and sine
            of a per-cell random azimuth (precomputed so a lookup replaces per-pixel trigonometry).
    """

    cell_m: float
    table: np.ndarray

    def __post_init__(self) -> None:
        # Per cell, its 3x3 neighbourhood in one table: seed positions relative to the cell's own corner
        # (rows 0-8 x, 9-17 y) and the neighbours' cell ids, so a point needs one gather per row instead
        # of index arithmetic per neighbour.
        ij = np.arange(TABLE * TABLE, dtype=np.int32)
        i, j = ij // TABLE, ij % TABLE
        mask = TABLE - 1
        pos = np.empty((18, TABLE * TABLE), np.float32)
        ids = np.empty((9, TABLE * TABLE), np.int32)
        for k, (di, dj) in enumerate(_NEIGHBOURS):
            nb = ((i + di) & mask) * TABLE + ((j + dj) & mask)
            ids[k] = nb
            pos[k] = di + self.table[0, nb]
            pos[9 + k] = dj + self.table[1, nb]
        self.neighbour_pos = pos
        self.neighbour_ids = ids.ravel()

    @classmethod
    def random(cls, rng: np.random.Generator, cell_m: float) -> Cells:
        u = _table(rng, 4)
        az = 2.0 * np.pi * u[3]
        return cls(
            cell_m=cell_m, table=np.stack([u[0], u[1], u[2], np.cos(az), np.sin(az)]).astype(np.float32)
        )

    def sample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest-seed search over the 3x3 neighbouring grid cells (exact for jitter within a cell).

        The nine squared distances are reduced with two minima over the neighbour axis; the neighbour's
        number (0-8) rides in the 4 low mantissa bits of each distance (a relative change below 1e-5), so
        the first minimum also says which seed won, without an argmin.

        Args:
            x: (N,) float32 ground x, metres (scene origin).
            y: (N,) float32 ground y, metres.

        Returns:
            ``edge_m`` (N,) approximate distance to the nearest cell edge in metres (half of F2 - F1),
            and ``attr`` (3, N) of the cell each point lies in: a uniform, cos and sin of an azimuth.
        """
        gx, gy = x * np.float32(1.0 / self.cell_m), y * np.float32(1.0 / self.cell_m)
        fx, fy = np.floor(gx), np.floor(gy)
        cid = (fx.astype(np.int32) & (TABLE - 1)) * TABLE + (fy.astype(np.int32) & (TABLE - 1))
        gx -= fx
        gy -= fy
        pos = np.take(self.neighbour_pos, cid, axis=1)  # (18, N)
        d = np.subtract(gx, pos[:9], out=pos[:9])
        d *= d
        e = np.subtract(gy, pos[9:], out=pos[9:])
        e *= e
        d += e  # (9, N) squared distances >= 0: their int32 bit patterns sort like the floats
        bits = d.view(np.int32)
        bits &= np.int32(~15)
        bits |= np.arange(9, dtype=np.int32)[:, None]
        m1 = bits.min(axis=0)
        np.putmask(bits, bits == m1, np.int32(np.iinfo(np.int32).max))
        m2 = bits.min(axis=0)
        k = m1 & 15
        f1 = (m1 & np.int32(~15)).view(np.float32)
        f2 = (m2 & np.int32(~15)).view(np.float32)
        best = self.neighbour_ids[k * (TABLE * TABLE) + cid]
        edge = (np.sqrt(f2) - np.sqrt(f1)) * np.float32(0.5 * self.cell_m)
        return edge, self.table[2:, best]


#: The 3x3 neighbourhood searched by :class:`Cells`, as (di, dj) cell offsets.
_NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]


@dataclass
class Rocks:
    """Scattered rocks: at most one per grid cell, elliptic domes with cast shadows.

    A rock's centre lies in the middle 70 % of its cell and its radius is at most a quarter cell, so a
    rock never reaches past the nearer half of a neighbouring cell: searching the point's own cell and
    its nearer neighbour along each axis finds every rock footprint (the diagonal neighbour, which can
    only touch a cell corner, is skipped for speed). Long shadows (low sun) and the far-side flank
    stretch can be cut at that neighbourhood, an accepted approximation.

    Attributes:
        cell_m: Grid spacing, metres.
        radius: (TABLE*TABLE,) float32 rock radius per cell in cell units (1e-6 where no rock).
        table: (4, TABLE*TABLE) float32: centre x, centre y (cell units), aspect, shade.
    """

    cell_m: float
    radius: np.ndarray
    table: np.ndarray

    def __post_init__(self) -> None:
        # (4, TABLE*TABLE) rows: centre x, centre y, aspect, 1 / radius.
        self.columns = np.stack([self.table[0], self.table[1], self.table[2], 1.0 / self.radius]).astype(
            np.float32
        )
        self.present = self.radius > 1e-5

    @classmethod
    def random(
        cls, rng: np.random.Generator, cell_m: float, presence: float, r_range: tuple[float, float]
    ) -> Rocks:
        """Rocks in ``presence`` of the cells, radii log-uniform in ``r_range`` (metres, capped)."""
        r_hi = min(r_range[1], cell_m / 4.0)
        r_lo = min(r_range[0], r_hi)
        u = _table(rng, 6)
        r = np.exp(np.log(r_lo) + (np.log(r_hi) - np.log(r_lo)) * u[3]) / cell_m
        radius = np.where(u[2] < presence, r, 1e-6).astype(np.float32)
        table = np.stack([0.15 + 0.7 * u[0], 0.15 + 0.7 * u[1], 0.75 + 0.6 * u[4], u[5]]).astype(np.float32)
        return cls(cell_m, radius, table)

    @property
    def r_max_m(self) -> float:
        """Largest rock radius, metres."""
        return float(self.radius.max()) * self.cell_m

    def sample(
        self,
        x: np.ndarray,
        y: np.ndarray,
        sun_xy: np.ndarray,
        shadow_len: float,
        view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Rock coverage, surface slope and shadow at ground points.

        Rocks are drawn on the ground plane (no ray marching). To give them their vertical extent in the
        image, the half of a rock beyond its centre (seen from the camera) is stretched away from the
        camera by ``stretch`` and shows the mirrored near-side slopes: a ray that lands behind a rock's
        centre hits its camera-facing flank, which for a dome of height 0.6 r seen from height ``h`` at
        range ``D`` spans about ``0.6 D / h`` radii of ground.

        Args:
            x: (N,) float32 ground x, metres (scene origin).
            y: (N,) float32 ground y, metres.
            sun_xy: (2,) unit horizontal direction towards the sun.
            shadow_len: Shadow length in rock radii beyond the rock (height / tan(sun elevation)).
            view: Optional ``(vx, vy, stretch)`` (N,) each: unit horizontal direction from the camera
                to the point, and the far-side stretch factor (>= 1).

        Returns:
            Dict with ``on`` (N,) bool on a rock, ``gx``/``gy`` (N,) float32 surface slope dz/dx, dz/dy on
            rocks, ``radius`` (N,) radius of the nearest rock in metres, ``shade`` (N,) its uniform, and
            ``shadow`` (N,) bool in a rock's cast shadow (and not on a rock).
        """
        gx_, gy_ = x * np.float32(1.0 / self.cell_m), y * np.float32(1.0 / self.cell_m)
        fx, fy = np.floor(gx_), np.floor(gy_)
        ix, iy = fx.astype(np.int32), fy.astype(np.int32)
        fx, fy = gx_ - fx, gy_ - fy
        nx = np.where(fx < 0.5, np.int32(-1), np.int32(1))  # the nearer neighbour along each axis
        ny = np.where(fy < 0.5, np.int32(-1), np.int32(1))
        mask = TABLE - 1
        # The diagonal neighbour is skipped: a rock reaches a cell corner only in rare, tiny slivers.
        cand = []
        for ci, cj in ((0, 0), (nx, 0), (0, ny)):
            cand.append((ci, cj, ((ix + ci) & mask) * TABLE + ((iy + cj) & mask)))
        n = x.shape[0]
        # Only points within reach of a candidate rock can be on it or in its shadow. Reach, in radii:
        # on a rock after the far-side stretch, |d| < 1.35 (stretch + 1) (aspect <= 1.35); in its shadow,
        # |d| < hypot(1 + shadow_len, 0.9). A box test on the centre offsets (absent rocks have 1/r = 1e6)
        # costs a fraction of the full search, which then runs on the few points that pass.
        st_max = 1.0 if view is None or view[2].size == 0 else max(float(view[2].max()), 1.0)
        reach = np.float32(max(1.35 * (st_max + 1.0), math.hypot(1.0 + shadow_len, 0.9)) + 0.05)
        if float(reach) * float(self.radius.max()) >= 0.35:
            # Big rocks: their reach covers most of a cell, so only the presence test is worth doing.
            occupied = np.take(self.present, cand[0][2])
            occupied |= np.take(self.present, cand[1][2])
            occupied |= np.take(self.present, cand[2][2])
        else:
            occupied = np.zeros(n, bool)
            for ci, cj, idx in cand:
                dx = fx - ci
                dx -= np.take(self.columns[0], idx)
                dy = fy - cj
                dy -= np.take(self.columns[1], idx)
                np.maximum(np.abs(dx, out=dx), np.abs(dy, out=dy), out=dx)
                dx *= np.take(self.columns[3], idx)
                occupied |= dx < reach
        count = int(np.count_nonzero(occupied))
        if count > 0.7 * n:
            return self._search(fx, fy, cand, sun_xy, shadow_len, view)
        # Sparse rocks (cobbles, or few points within reach): search only the points within reach.
        out = {
            "on": np.zeros(n, bool),
            "gx": np.zeros(n, np.float32),
            "gy": np.zeros(n, np.float32),
            "radius": np.zeros(n, np.float32),
            "shade": np.zeros(n, np.float32),
            "shadow": np.zeros(n, bool),
        }
        if count == 0:
            return out
        sub = np.flatnonzero(occupied)

        def take(v: np.ndarray | int) -> np.ndarray | int:
            return v if isinstance(v, int) else v[sub]

        cand = [(take(ci), take(cj), idx[sub]) for ci, cj, idx in cand]
        v = None if view is None else (view[0][sub], view[1][sub], view[2][sub])
        res = self._search(fx[sub], fy[sub], cand, sun_xy, shadow_len, v)
        for k, arr in out.items():
            arr[sub] = res[k]
        return out

    def _search(
        self,
        fx: np.ndarray,
        fy: np.ndarray,
        cand: list,
        sun_xy: np.ndarray,
        shadow_len: float,
        view: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> dict[str, np.ndarray]:
        """Nearest rock and shadow over candidate cells ``(ci, cj, idx)`` (see :meth:`sample`)."""
        n = fx.shape[0]
        bq = np.full(n, np.inf, np.float32)
        bsq = np.full(n, np.inf, np.float32)
        best = np.zeros(n, np.int32)
        bdx = np.zeros(n, np.float32)
        bdy = np.zeros(n, np.float32)
        sx, sy = np.float32(-sun_xy[0]), np.float32(-sun_xy[1])  # shadows fall away from the sun
        t0 = np.float32(0.5 * shadow_len)
        inv_along = np.float32(1.0 / (1.0 + 0.5 * shadow_len))
        if view is not None:
            vx, vy = view[0], view[1]
            inv_st = 1.0 / np.maximum(view[2], 1.0)
        for ci, cj, idx in cand:
            # 1-D takes: numpy gathers single floats much faster than rows of a 2-D table.
            inv_r = np.take(self.columns[3], idx)
            a = np.take(self.columns[2], idx)
            dx = (fx - ci - np.take(self.columns[0], idx)) * inv_r
            dy = (fy - cj - np.take(self.columns[1], idx)) * inv_r
            t = dx * sx + dy * sy - t0
            p = dx * sy - dy * sx
            if view is not None:
                along = dx * vx + dy * vy
                shift = np.where(along > 0.0, -along * (1.0 + inv_st), 0.0)
                dx = dx + shift * vx
                dy = dy + shift * vy
            ex, ey = dx * a, dy / a
            q = ex * ex + ey * ey
            t *= inv_along
            p *= np.float32(1.0 / 0.9)
            bsq = np.minimum(bsq, t * t + p * p)
            closer = q < bq
            bq = np.where(closer, q, bq)
            best = np.where(closer, idx, best)
            bdx = np.where(closer, dx, bdx)
            bdy = np.where(closer, dy, bdy)
        on = bq < 1.0
        a = self.table[2, best]
        # Dome z = 0.6 r sqrt(1 - q): slopes in metres per metre, clipped at the steep rim.
        s = np.sqrt(np.clip(1.0 - bq, 0.04, 1.0))
        gx = np.where(on, -0.6 * bdx * a * a / s, 0.0).astype(np.float32)
        gy = np.where(on, -0.6 * bdy / (a * a * s), 0.0).astype(np.float32)
        return {
            "on": on,
            "gx": gx,
            "gy": gy,
            "radius": self.radius[best] * np.float32(self.cell_m),
            "shade": self.table[3, best],
            "shadow": (bsq < 1.0) & ~on,
        }


def noise_1d(rng: np.random.Generator, wavelengths: np.ndarray, amplitudes: np.ndarray):
    """A random 1-D function ``f(s) = sum_k a_k sin(2 pi s / l_k + phi_k)`` (vectorised callable)."""
    phases = rng.uniform(0.0, 2.0 * np.pi, len(wavelengths))
    k = 2.0 * np.pi / np.asarray(wavelengths, dtype=np.float64)
    a = np.asarray(amplitudes, dtype=np.float64)

    k32, ph32, a32 = k.astype(np.float32), phases.astype(np.float32), a.astype(np.float32)

    def f(s: np.ndarray) -> np.ndarray:
        # float64 in gives float64 out (the drawn contact); float32 in stays float32 (per-pixel labels).
        s = np.asarray(s)
        if s.dtype == np.float32:
            return np.einsum("...k,k->...", np.sin(s[..., None] * k32 + ph32), a32)
        return np.einsum("...k,k->...", np.sin(s.astype(np.float64)[..., None] * k + phases), a)

    return f
