"""One synthetic rover scene: camera, ground, units, contact, sky, hardware and sensor, with exact labels.

Every pixel below the horizon is ray-cast to the ground plane at its centre ``(c + 0.5, r + 0.5)`` with the
scene's :class:`PinholeCamera` (:func:`~marsunits.data.synthetic.raycast.cast_pixel_grid`, the same
geometry as ``PinholeCamera.pixel_to_ground`` in one pass); all ground appearance is computed at those
ground points in metres, band-limited by each pixel's footprint, so texture shrinks and foreshortens with
range. Labels come from the same geometry: the unit is the side of the ground contact curve at the pixel's
ground point, so the projected true contact lies on the 0/1 boundary of the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.boundary.contact_io import ContactLine
from marsunits.constants import IGNORE_INDEX, OTHER
from marsunits.data.synthetic.config import SceneConfig
from marsunits.data.synthetic.contact import ContactCurve
from marsunits.data.synthetic.noise import OctaveNoise, fade_weight
from marsunits.data.synthetic.raycast import cast_pixel_grid
from marsunits.data.synthetic.render import (
    ground_jacobian,
    image_gradient,
    lambert,
    rover_hardware,
    sensor,
    sky,
)
from marsunits.data.synthetic.terrain import (
    BASE_M,
    N_OCTAVES,
    draw_look,
    grain,
    height_field,
    relief_terms,
    surface,
)


@dataclass
class Scene:
    """A rendered scene and its ground truth.

    Attributes:
        name: File stem, ``synth_s<seed>_<index:06d>``.
        image: uint8 (H, W, 3) colour or (H, W) grey.
        mask: uint8 (H, W) class ids in {0, 1, 2, 255}.
        camera: The camera that rendered it.
        contacts: True 0/1 contact as pixel polylines (``(u, v)``, corner origin) with ``ground_m``
            in the camera's site frame; empty when the scene shows one unit or the contact is out of view.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    camera: PinholeCamera
    contacts: list[ContactLine]


def scene_name(seed: int, index: int) -> str:
    """File stem of scene ``index`` of ``seed``."""
    return f"synth_s{seed}_{index:06d}"


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The scene's own generator: scene ``index`` of ``seed`` never depends on other scenes."""
    for name, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def draw_camera(rng: np.random.Generator, cfg: SceneConfig, site: str = "synthetic") -> PinholeCamera:
    """A mast camera pose and optics drawn from ``cfg`` (site frame: random position and heading), in the
    site frame named ``site``."""
    hfov = rng.uniform(*cfg.hfov_deg_range)
    k1 = 0.0
    if cfg.distortion and rng.random() < 0.5:
        # Wider lenses show more barrel distortion. The distorted radius r (1 + k1 r^2) peaks at
        # 2 / (3 sqrt(-3 k1)); the image corner must stay well inside that peak, or its pixels have no ray
        # (PinholeCamera.undistort): k1 >= -4 / (27 r_corner^2), kept at 80 % of it. Clamping, not
        # re-drawing, leaves the random numbers of every other camera and scene as they were.
        k1 = float(rng.uniform(-0.12, 0.04) * (hfov / 90.0) ** 2)
        r_corner = math.hypot(1.0, cfg.height / cfg.width) * math.tan(math.radians(hfov) / 2.0)
        k1 = max(k1, -0.8 * 4.0 / (27.0 * r_corner**2))
    return PinholeCamera(
        image_width=cfg.width,
        image_height=cfg.height,
        hfov_deg=float(hfov),
        pitch_deg=float(rng.uniform(*cfg.pitch_deg_range)),
        roll_deg=float(rng.uniform(-cfg.roll_deg_max, cfg.roll_deg_max)),
        yaw_deg=float(rng.uniform(-180.0, 180.0)),
        height_m=float(rng.uniform(*cfg.height_m_range)),
        x_m=float(rng.uniform(-20.0, 20.0)),
        y_m=float(rng.uniform(-20.0, 20.0)),
        k1=k1,
        site=site,
    )


def _draw_grey(rng: np.random.Generator, cfg: SceneConfig) -> bool:
    """Whether the scene is grey: the first draw of its generator (:func:`scene_is_grey` repeats it)."""
    return cfg.mode == "grey" or (cfg.mode == "mixed" and bool(rng.random() < 0.5))


def scene_is_grey(seed: int, index: int = 0, config: SceneConfig | None = None) -> bool:
    """Whether :func:`generate_scene` renders scene ``index`` of ``seed`` grey (one channel), without
    rendering it: what a model's record of its training images counts (``training_images``)."""
    cfg = config if config is not None else SceneConfig()
    if cfg.mode != "mixed":
        return cfg.mode == "grey"
    return _draw_grey(scene_rng(seed, index), cfg)


def generate_scene(seed: int, index: int = 0, config: SceneConfig | None = None) -> Scene:
    """Render scene ``index`` of ``seed`` (deterministic for the pair and the config).

    Args:
        seed: Non-negative integer seed of the series.
        index: Non-negative index of the scene in the series.
        config: Generator settings; defaults to :class:`SceneConfig()`.

    Returns:
        The :class:`Scene` with image, mask, camera and true contact.
    """
    cfg = config if config is not None else SceneConfig()
    rng = scene_rng(seed, index)
    H, W, d = cfg.height, cfg.width, float(cfg.difficulty)
    grey = _draw_grey(rng, cfg)
    # Every scene is a world of its own (its own terrain and contact): its own site, so that predict.py's
    # map=true does not merge unrelated scenes into one map (it drew 24 of them over each other).
    cam = draw_camera(rng, cfg, site=f"synthetic_{seed}_{index}")

    # ---- ray casting: ground point, range and footprint of every pixel centre
    rays = cast_pixel_grid(cam)
    flat_ok = rays.ground.ravel()
    gi = np.flatnonzero(flat_ok)
    x_rel, y_rel = rays.rel_x.ravel()[gi], rays.rel_y.ravel()[gi]
    x, y = x_rel + cam.x_m, y_rel + cam.y_m  # float64 site frame: labels and the contact
    # Textures use float32 coordinates relative to the camera (precise where it matters: near the rover).
    xr, yr = x_rel.astype(np.float32), y_rel.astype(np.float32)
    rg = np.maximum(np.hypot(xr, yr), np.float32(1e-4))  # > 0 even straight below the camera
    # Along-view ground footprint of one pixel: slant^2 / (f h) (grazing incidence stretches it).
    fp = (rg * rg + np.float32(cam.height_m**2)) * np.float32(1.0 / (cam.focal_px * cam.height_m))
    # Line of sight on the ground and how much of a rock's camera-facing flank shows beyond its centre.
    vx, vy = xr / rg, yr / rg
    stretch = rg * np.float32(0.6 / cam.height_m)

    # ---- light
    sun_el = math.radians(rng.uniform(12.0, 65.0))
    sun_az = rng.uniform(0.0, 2.0 * math.pi)
    sun = np.array(
        [math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az), math.sin(sun_el)]
    )
    shadow_len = float(np.clip(0.6 / math.tan(sun_el), 0.3, 3.0))
    ambient = rng.uniform(0.25, 0.45)

    # ---- shared ground noise (relief channel 0, albedo channel 1)
    gnoise = OctaveNoise.random(rng, N_OCTAVES, 2, BASE_M).sample(xr, yr, fp)
    looks = [draw_look(rng, 0, d), draw_look(rng, 1, d)]

    # ---- units split by the contact
    curve: ContactCurve | None = None
    unit = np.full(len(gi), int(rng.integers(2)), np.int64)
    offset = None
    if rng.random() < cfg.p_contact:
        cand = np.flatnonzero((rg > 1.0) & (rg < 0.7 * cfg.max_range_m))
        if len(cand):
            k = cand[rng.integers(len(cand))]
            az = math.atan2(y[k] - cam.y_m, x[k] - cam.x_m)
            curve = ContactCurve.random(rng, np.array([x[k], y[k]]), az, cfg.max_range_m)
            offset = curve.signed_offset(xr, yr, (cam.x_m, cam.y_m), fine_within_m=cfg.max_range_m + 1.0)
            pos_unit = int(rng.integers(2))
            unit = np.where(offset > 0.0, pos_unit, 1 - pos_unit)

    # ---- relief: each unit's height field everywhere, differentiated on the image grid
    sx = np.zeros(len(gi), np.float32)
    sy = np.zeros(len(gi), np.float32)
    h_img = np.full(H * W, np.nan, np.float32)
    jac = ground_jacobian(rays.rel_x, rays.rel_y)
    shared = None  # unit-independent relief terms, computed once when a unit needs them
    for u in (0, 1):
        sel = unit == u
        if not sel.any():
            continue
        if shared is None and looks[u].ridge_amp.any():
            shared = relief_terms(gnoise, fp)
        h_img[gi] = height_field(looks[u], gnoise, xr, yr, fp, shared)
        hx, hy = image_gradient(h_img.reshape(H, W), jac)
        sx[sel], sy[sel] = hx.ravel()[gi[sel]], hy.ravel()[gi[sel]]

    # ---- per-unit surface: albedo, facets, rocks, cast shadows
    albedo = np.empty((3, len(gi)), np.float32)  # channel-first: contiguous per-channel scatters
    shadow = np.zeros(len(gi), np.float32)
    for u in (0, 1):
        sel = np.flatnonzero(unit == u)
        if not len(sel):
            continue
        sun_xy = sun[:2] / np.hypot(*sun[:2])
        view = (vx[sel], vy[sel], stretch[sel])
        g = grain(looks[u], gnoise)[sel]
        s = surface(looks[u], g, xr[sel], yr[sel], fp[sel], sun_xy, shadow_len, view)
        albedo[:, sel] = s["albedo"]
        on_rock = s["rock"] > 0.5
        sx[sel] = np.where(on_rock, s["gx"], sx[sel] + s["gx"])
        sy[sel] = np.where(on_rock, s["gy"], sy[sel] + s["gy"])
        shadow[sel] = s["shadow"]

    # ---- a dust mantle shared across the contact blurs tone differences in patches
    dust = 0.5 * (looks[0].colour + looks[1].colour) * rng.uniform(1.0, 1.25) * np.array([1.04, 0.98, 0.95])
    dust = dust.astype(np.float32)  # float64 constants would promote the (N, 3) arithmetic
    dust_frac = np.clip(rng.uniform(0.05, 0.25) + 0.15 * d + 0.3 * gnoise[5:, 1].sum(0), 0.0, 0.6)
    albedo += dust_frac * (dust[:, None] - albedo)

    # ---- dark sand drifts partly burying the contact (labels: 255 where the unit is hidden)
    sand = np.zeros(len(gi), np.float32)
    if offset is not None and rng.random() < cfg.p_sand * (0.5 + d):
        width = rng.uniform(0.4, 2.5)
        band = 1.0 - np.abs(offset) / width
        # Drifts collect in the lows of the metre-scale relief (coarse octaves of the relief noise).
        sand = np.clip((band - 1.0 - 1.2 * gnoise[5:, 0].sum(0)) / 0.1, 0.0, 1.0).astype(np.float32)
        sand_col = (np.array([0.25, 0.2, 0.17]) * rng.uniform(0.7, 1.1)).astype(np.float32)
        rip_wl = rng.uniform(0.12, 0.35)
        rip_dir = rng.uniform(0.0, 2.0 * math.pi)
        kx, ky = (np.float32(2.0 * math.pi * f / rip_wl) for f in (math.cos(rip_dir), math.sin(rip_dir)))
        ph = kx * xr + ky * yr + 3.0 * gnoise[6, 0]
        rip = 0.15 * fade_weight(rip_wl, fp) * np.cos(ph)
        albedo += sand * (sand_col[:, None] * (1.0 + 0.15 * gnoise[3:7, 1].sum(0)) - albedo)
        sx = sx + sand * (rip * math.cos(rip_dir) - sx)
        sy = sy + sand * (rip * math.sin(rip_dir) - sy)
        shadow *= 1.0 - sand

    # ---- shading and atmospheric haze
    radiance = albedo * lambert(sx, sy, sun, ambient, shadow)
    img = np.empty((3, H * W), np.float32)
    sky_idx = np.flatnonzero(~flat_ok)
    if len(sky_idx):
        elev, azim = rays.elevation_azimuth(sky_idx)
        sky_rgb, haze = sky(rng, elev, azim, sun_az)
        img[:, sky_idx] = sky_rgb.T
    else:
        _, haze = sky(rng, np.zeros(1), np.zeros(1), sun_az)
    trans = np.exp(-rg / rng.uniform(60.0, 250.0)).astype(np.float32)
    ground_rgb = radiance * trans + (haze * 0.85).astype(np.float32)[:, None] * (1.0 - trans)
    img[:, gi] = ground_rgb
    # Auto-exposure on the useful ground: absolute brightness is not a unit cue.
    useful = rg <= cfg.max_range_m
    n_useful = int(np.count_nonzero(useful))
    # A matrix-vector product instead of a boolean gather of (N, 3) rows.
    ref = (
        float((ground_rgb @ useful.astype(np.float32)).sum()) / (3 * n_useful)
        if n_useful
        else float(img.mean())
    )
    img *= float(np.clip(rng.uniform(0.36, 0.5) / max(ref, 1e-3), 0.6, 1.6))
    img_hwc = img.reshape(3, H, W).transpose(1, 2, 0)  # (H, W, 3) view for the hardware and the sensor

    # ---- labels
    flat_mask = np.full(H * W, OTHER, np.uint8)
    flat_mask[gi] = unit.astype(np.uint8)
    flat_mask[gi[~useful | (sand > 0.5)]] = IGNORE_INDEX
    mask = flat_mask.reshape(H, W)
    hidden = None
    if rng.random() < cfg.p_rover:
        hidden, rgb = rover_hardware(rng, H, W)
        img_hwc[hidden] = rgb[hidden] * rng.uniform(0.9, 1.2)
        mask[hidden] = OTHER

    contacts = curve.image_lines(cam, cfg.max_range_m, hidden) if curve is not None else []
    image = sensor(rng, img_hwc, grey, d, cfg.jpeg_quality_range)
    return Scene(scene_name(seed, index), image, mask, cam, contacts)
