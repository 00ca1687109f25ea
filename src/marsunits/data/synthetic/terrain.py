"""The two geologic units: per-scene looks drawn from overlapping distributions, and their appearance.

* Smooth volcanic (class 0, Máaz-like): low-relief plain of flat polygonal slabs split by thin fractures,
  fine-grained texture, a few small cobbles; darker on average.
* Rough olivine (class 1, Séítah-like): ridged relief, tilted thin layers, blocky outcrop of tilted facets,
  more and larger rocks with shadows; slightly lighter and greyer on average.

Tones overlap between the units (more with ``difficulty``), so texture, relief and shading are the reliable
cues. Appearance is returned as albedo (3, N) and surface slope (dz/dx, dz/dy) at ground points; the
renderer turns slopes into shading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marsunits.data.synthetic.noise import Cells, Rocks, fade_weight, fade_weights

#: Wavelength of the finest octave of the shared ground noise, metres; octave k has BASE_M * 2**k.
BASE_M = 0.02
N_OCTAVES = 9
_LAMBDA = BASE_M * 2.0 ** np.arange(N_OCTAVES)
#: Reddish dust tint shared by both units (RGB multipliers).
_DUST_TINT = np.array([1.0, 0.74, 0.55])


@dataclass
class UnitLook:
    """Per-scene parameters of one unit (see :func:`draw_look`)."""

    unit: int
    colour: np.ndarray  # (3,) mean albedo
    rock_colour: np.ndarray  # (3,)
    height_amp: np.ndarray  # (K,) metres per octave of smooth noise
    ridge_amp: np.ndarray  # (K,) metres per octave of ridged noise
    albedo_amp: np.ndarray  # (K,) relative albedo variation per octave
    cells: Cells
    cell_tilt: float  # max slope of a cell facet
    cell_albedo: float  # relative albedo spread between cells
    crack_w: float  # fracture half-width, metres
    crack_dark: float  # albedo loss inside a fracture
    rocks: Rocks
    layer_amp: float  # metres (0: no layers)
    layer_wl: float  # metres
    layer_dir: np.ndarray  # (2,) unit vector across strike


def _where_or_all(sel: np.ndarray) -> np.ndarray | slice | None:
    """Index of the selected points: None if none, every point (a slice) if most are, else their indices.

    Gathering and scattering a subset costs more than computing the few extra points it would skip.
    """
    count = int(np.count_nonzero(sel))
    if count == 0:
        return None
    if count > 0.8 * sel.shape[0]:
        return slice(None)
    return np.flatnonzero(sel)


def _weighted_sum(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``sum_k w[k] v[k]`` over the first axis without BLAS (a strided gemv there is ~10x slower)."""
    return np.einsum("k,kn->n", w, v)


def _tone(rng: np.random.Generator, mean: float, spread: float, grey: float) -> np.ndarray:
    """A dusty reddish RGB albedo with brightness ~N(mean, spread) and ``grey`` in [0, 1] desaturation."""
    b = float(np.clip(rng.normal(mean, spread), 0.12, 0.7))
    tint = _DUST_TINT * rng.uniform(0.94, 1.06, 3)
    c = b * tint / tint.mean()
    return (1.0 - grey) * c + grey * b


def draw_look(rng: np.random.Generator, unit: int, difficulty: float) -> UnitLook:
    """Draw the look of ``unit`` (0 smooth volcanic, 1 rough olivine) for one scene.

    ``difficulty`` in [0, 1] pulls the units' parameters towards each other and widens tone spread.
    """
    d = float(difficulty)
    sep = 1.0 - 0.55 * d  # how far the unit's parameters sit from the shared middle
    spread = 0.04 + 0.05 * d
    rough = 0.5 + sep * (0.5 if unit else -0.35)  # 0.15 (smooth) ... 1.0 (rough) at d=0
    rough *= rng.uniform(0.75, 1.25)
    if unit == 0:
        colour = _tone(rng, 0.30 + 0.02 * d, spread, rng.uniform(0.0, 0.25))
        rock_colour = _tone(rng, 0.27, 0.04, rng.uniform(0.1, 0.4))
        albedo_amp = np.array([0.14, 0.13, 0.11, 0.08, 0.06, 0.05, 0.05, 0.06, 0.06]) * rng.uniform(0.7, 1.3)
        cells = Cells.random(rng, rng.uniform(0.5, 1.4))
        cell_tilt = rng.uniform(0.02, 0.06) + 0.08 * d * rng.random()
        cell_albedo, crack_w = rng.uniform(0.03, 0.08), rng.uniform(0.003, 0.01)
        crack_dark = rng.uniform(0.1, 0.5) if rng.random() < 0.7 else 0.0
        rocks = Rocks.random(rng, rng.uniform(0.4, 0.6), rng.uniform(0.05, 0.2), (0.01, 0.05))
        layer_amp, layer_wl = 0.0, 0.3
    else:
        colour = _tone(rng, 0.36 - 0.02 * d, spread, rng.uniform(0.15, 0.5))
        rock_colour = _tone(rng, 0.38, 0.05, rng.uniform(0.3, 0.6))
        albedo_amp = np.array([0.05, 0.06, 0.08, 0.10, 0.11, 0.10, 0.08, 0.06, 0.05]) * rng.uniform(0.7, 1.3)
        cells = Cells.random(rng, rng.uniform(0.25, 0.7))
        cell_tilt = sep * rng.uniform(0.25, 0.6)
        cell_albedo, crack_w, crack_dark = (
            rng.uniform(0.06, 0.14),
            rng.uniform(0.008, 0.02),
            rng.uniform(0.05, 0.3),
        )
        rocks = Rocks.random(rng, rng.uniform(0.45, 0.8), sep * rng.uniform(0.35, 0.7) + 0.1, (0.03, 0.15))
        layer_wl = float(rng.uniform(0.15, 0.6))
        # Scarp slope = amp / (step * wl) stays below ~1 (step >= 0.08 of a layer).
        layer_amp = layer_wl * rng.uniform(0.03, 0.08) * sep if rng.random() < 0.5 else 0.0
    # Fractal relief: slope per octave ~ constant, so amplitude ~ wavelength.
    height_amp = 0.03 * rough * _LAMBDA * rng.uniform(0.7, 1.3, N_OCTAVES)
    ridge_amp = (0.045 * rough * _LAMBDA if unit else 0.0 * _LAMBDA) * rng.uniform(0.7, 1.3, N_OCTAVES)
    ang = rng.uniform(0.0, 2.0 * np.pi)
    return UnitLook(
        unit=unit,
        colour=colour,
        rock_colour=rock_colour,
        height_amp=height_amp.astype(np.float32),
        ridge_amp=ridge_amp.astype(np.float32),
        albedo_amp=albedo_amp.astype(np.float32),
        cells=cells,
        cell_tilt=float(cell_tilt),
        cell_albedo=float(cell_albedo),
        crack_w=float(crack_w),
        crack_dark=float(crack_dark),
        rocks=rocks,
        layer_amp=float(layer_amp),
        layer_wl=layer_wl,
        layer_dir=np.array([np.cos(ang), np.sin(ang)]),
    )


def height_field(
    look: UnitLook,
    noise: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fp: np.ndarray,
    shared: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Smooth part of the unit's relief at ground points, metres (finite-differenced by the renderer).

    Args:
        look: The unit's look.
        noise: (K, C>=1, N) faded octave noise; channel 0 drives relief.
        x: (N,) ground x, metres.
        y: (N,) ground y, metres.
        fp: (N,) footprint, metres per pixel.
        shared: Optional ``(fade_weights(_LAMBDA, fp), |noise[:, 0]|)``, both (K, N), computed once for
            the units of a scene (see :func:`relief_terms`).

    Returns:
        (N,) float32 height, metres.
    """
    n0 = noise[:, 0, :]
    h = _weighted_sum(look.height_amp, n0)
    if look.ridge_amp.any():
        # Ridged noise: creases where the noise crosses zero; the fade keeps faded octaves at 0.
        # Octaves are already faded (n0 = w n), so w (0.45 - |n|) = 0.45 w - |n0| keeps faded ones at 0.
        fade, abs_n0 = shared if shared is not None else relief_terms(noise, fp)
        h += 0.45 * _weighted_sum(look.ridge_amp, fade)
        h -= _weighted_sum(look.ridge_amp, abs_n0)
    if look.layer_amp > 0.0:
        # Tilted thin layers: an asymmetric saw (long dip slope, short scarp) across strike, warped by noise.
        t = (
            (
                x * np.float32(look.layer_dir[0] / look.layer_wl)
                + y * np.float32(look.layer_dir[1] / look.layer_wl)
            )
            + 0.8 * n0[7]
            + 0.4 * n0[5]
        )
        g = t - np.floor(t)
        step = np.clip(1.5 * fp / look.layer_wl, 0.08, 0.5).astype(np.float32)
        saw = np.where(g < 1.0 - step, g / (1.0 - step), (1.0 - g) / step)
        h += look.layer_amp * fade_weight(look.layer_wl, fp) * saw
    return h.astype(np.float32)


def relief_terms(noise: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unit-independent parts of :func:`height_field`: (K, N) fade weights and ``|noise[:, 0]|``."""
    return fade_weights(_LAMBDA, fp), np.abs(noise[:, 0, :])


def grain(look: UnitLook, noise: np.ndarray) -> np.ndarray:
    """(N,) relative albedo variation of the unit from (K, C>=2, N) faded octave noise (channel 1)."""
    return _weighted_sum(look.albedo_amp, noise[:, 1, :])


def surface(
    look: UnitLook,
    grain_noise: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fp: np.ndarray,
    sun_xy: np.ndarray,
    shadow_len: float,
    view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Albedo, extra slope (cells, rocks) and cast shadow of the unit at its own ground points.

    Args:
        look: The unit's look.
        grain_noise: (N,) the unit's albedo noise at the points (:func:`grain`).
        x: (N,) ground x, metres.
        y: (N,) ground y, metres.
        fp: (N,) footprint, metres per pixel.
        sun_xy: (2,) unit horizontal direction to the sun.
        shadow_len: Rock shadow length in radii.
        view: Optional (vx, vy, stretch) per point for rock flanks (see :meth:`Rocks.sample`).

    Returns:
        ``albedo`` (3, N), channel-first (per-channel scatters are contiguous); ``gx``, ``gy`` (N,) slope
        added to the relief (rock slopes replace it where ``rock`` > 0.5); ``rock`` (N,) rock coverage in
        [0, 1]; ``shadow`` (N,) cast-shadow strength.
    """
    n = x.shape[0]
    grain = 1.0 + grain_noise
    gx = np.zeros(n, np.float32)
    gy = np.zeros(n, np.float32)
    shade = grain.copy()
    # Cells and rocks are only evaluated where they are resolved (the far field skips the search).
    near = _where_or_all(fp < max(look.cells.cell_m / 2.0, 20.0 * look.crack_w))
    if near is not None:
        fpn = fp[near]
        edge, attr = look.cells.sample(x[near], y[near])
        cell_vis = fade_weight(look.cells.cell_m, fpn)
        tilt = look.cell_tilt * attr[0] * cell_vis
        gx[near] = tilt * attr[1]
        gy[near] = tilt * attr[2]
        wide = np.maximum(look.crack_w, fpn)
        crack = np.clip(1.0 - edge / wide, 0.0, 1.0) * (look.crack_w / wide)
        shade[near] *= (1.0 + look.cell_albedo * cell_vis * (2.0 * attr[0] - 1.0)) * (
            1.0 - look.crack_dark * crack
        )
    albedo = look.colour.astype(np.float32)[:, None] * shade[None, :]

    rock = np.zeros(n, np.float32)
    shadow = np.zeros(n, np.float32)
    near = _where_or_all(fp < 2.0 * look.rocks.r_max_m)
    if near is not None:
        fpn = fp[near]
        v = None if view is None else (view[0][near], view[1][near], view[2][near])
        rk = look.rocks.sample(x[near], y[near], sun_xy, shadow_len, v)
        # Rocks much smaller than a pixel average into the ground: fade them out instead of aliasing.
        vis = np.clip(rk["radius"] / fpn - 0.5, 0.0, 1.0)
        shadow[near] = rk["shadow"] * vis
        # Rocks cover a small part of the ground: blend only the points actually on one.
        cover = rk["on"] * vis
        hit = np.flatnonzero(cover > 0.0)
        at = hit if isinstance(near, slice) else near[hit]  # the same points, indexed among all n
        rock[at] = cover[hit]
        rock_alb = look.rock_colour.astype(np.float32)[:, None] * (
            (0.7 + 0.6 * rk["shade"][hit]) * (2.0 * grain[at] - 1.0)
        )
        albedo[:, at] += cover[hit] * (rock_alb - albedo[:, at])
        on = cover[hit] > 0.5
        gx[at[on]] = rk["gx"][hit[on]]
        gy[at[on]] = rk["gy"][hit[on]]
    return {"albedo": albedo, "gx": gx, "gy": gy, "rock": rock, "shadow": shadow}
