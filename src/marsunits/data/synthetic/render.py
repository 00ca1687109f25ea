"""Light, sky, rover hardware and sensor: from ground albedo and slopes to a rover-like image.

Conventions: images are float32 (H, W, 3) linear-ish radiance in about [0, 1] until :func:`sensor`
quantises them; pixel (row r, column c) is the ray through pixel coordinates (c + 0.5, r + 0.5).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import ellipse, polygon


def ground_jacobian(gx_img: np.ndarray, gy_img: np.ndarray) -> tuple[np.ndarray, ...]:
    """Inverse of the pixel-to-ground Jacobian, for :func:`image_gradient`.

    Args:
        gx_img: (H, W) ground x of each pixel centre, metres (NaN off the ground); any origin.
        gy_img: (H, W) ground y, metres.

    Returns:
        ``(yv/det, -yu/det, -xv/det, xu/det)`` (H, W) float32 each, so that
        ``dh/dx = hu * j0 + hv * j1`` and ``dh/dy = hu * j2 + hv * j3``.
    """
    # np.gradient: central differences inside, one-sided at the borders; axis 0 is v (rows), 1 is u.
    xv, xu = (np.asarray(d) for d in np.gradient(gx_img.astype(np.float32)))
    yv, yu = (np.asarray(d) for d in np.gradient(gy_img.astype(np.float32)))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / (xu * yv - xv * yu)
    return yv * inv, -yu * inv, -xv * inv, xu * inv


def image_gradient(h: np.ndarray, jac: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Ground-frame slope (dh/dx, dh/dy) of a height image via the chain rule on image differences.

    Central differences of ``h`` and of the ground coordinates over the image grid give
    ``dh/du = dh/dx dx/du + dh/dy dy/du`` (same for v); the 2x2 system is solved per pixel with the
    inverse Jacobian from :func:`ground_jacobian`.

    Args:
        h: (H, W) height, metres (NaN off the ground).
        jac: Output of :func:`ground_jacobian` for the same image.

    Returns:
        Two (H, W) float32 slopes, 0 where undefined, clipped to [-3, 3].
    """
    hv, hu = np.gradient(h)
    with np.errstate(invalid="ignore"):
        sx = hu * jac[0] + hv * jac[1]
        sy = hu * jac[2] + hv * jac[3]
    out = []
    for a in (sx, sy):
        a = a.astype(np.float32, copy=False)
        np.clip(a, -3.0, 3.0, out=a)  # NaN stays NaN ...
        np.copyto(a, 0.0, where=a != a)  # ... and becomes 0 (off the ground, or a zero Jacobian)
        out.append(a)
    return out[0], out[1]


def lambert(
    gx: np.ndarray, gy: np.ndarray, sun: np.ndarray, ambient: float, shadow: np.ndarray
) -> np.ndarray:
    """Relative irradiance of surfaces with slope (gx, gy): 1 on flat unshadowed ground.

    ``ambient + (1 - ambient) * min(max(n . sun, 0) / sun_z, 2.2)``, the direct part scaled by
    ``1 - shadow``.

    Args:
        gx: (N,) or any shape, ground slope dh/dx (dimensionless; float32 keeps the work in float32).
        gy: Same shape, slope dh/dy.
        sun: (3,) unit vector towards the sun in the site frame (``x`` forward, ``y`` left, ``z`` up),
            ``sun[2] > 0`` (above the horizon).
        ambient: Share of the light that is diffuse, in [0, 1].
        shadow: Same shape as ``gx``, 0 (lit) to 1 (in shadow).

    Returns:
        float32 array of ``gx``'s shape.
    """
    # Python floats keep float32 slopes float32 (numpy scalars of float64 would promote them).
    s0, s1, s2, amb = float(sun[0]), float(sun[1]), float(sun[2]), float(ambient)
    nz = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
    cos = (s2 - gx * s0 - gy * s1) * nz
    # Capped: a facet facing a low sun would otherwise glow several times brighter than flat ground.
    direct = np.minimum(np.maximum(cos, 0.0) * (1.0 / s2), 2.2) * (1.0 - shadow)
    return (amb + (1.0 - amb) * direct).astype(np.float32, copy=False)


def sky(
    rng: np.random.Generator, elev: np.ndarray, azim: np.ndarray, sun_az: float
) -> tuple[np.ndarray, np.ndarray]:
    """Butterscotch sky with haze and a distant crater-rim silhouette.

    Args:
        rng: Random generator.
        elev: (N,) ray elevation above the horizon, radians (>= 0).
        azim: (N,) ray azimuth in the site frame, radians.
        sun_az: Sun azimuth, radians (the sky is brighter towards it).

    Returns:
        ``rgb`` (N, 3) float32 and the horizon haze colour (3,) used to fade distant ground.
    """
    horizon = np.array([0.80, 0.63, 0.48]) * rng.uniform(0.85, 1.1) * rng.uniform(0.95, 1.05, 3)
    zenith = np.array([0.55, 0.40, 0.33]) * rng.uniform(0.7, 1.05) * rng.uniform(0.95, 1.05, 3)
    t = (1.0 - np.exp(-elev / rng.uniform(0.15, 0.45)))[:, None]
    glow = 0.12 * np.exp(-(1.0 - np.cos(azim - sun_az)) * 2.0)[:, None]
    rgb = horizon + t * (zenith - horizon) + glow
    # Far rim: a low ridge line of elevation angle vs azimuth, hazy and a little darker than the horizon.
    k = np.arange(1, 7)
    amps = rng.uniform(0.0, 1.0, 6) / k**1.3
    phases = rng.uniform(0.0, 2.0 * np.pi, 6)
    ridge = np.radians(rng.uniform(0.2, 1.2)) * (
        1.0 + np.einsum("nk,k->n", np.sin(azim[:, None] * k * 3 + phases), amps)
    )
    hill = horizon * rng.uniform(0.72, 0.9)
    rgb = np.where((elev < ridge)[:, None], hill, rgb)
    return rgb.astype(np.float32), horizon


def rover_hardware(rng: np.random.Generator, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey deck edge with a dark wheel entering from a bottom corner.

    Returns:
        ``mask`` (H, W) bool where hardware is, and ``rgb`` (H, W, 3) float32 (valid where ``mask``).
    """
    left = rng.random() < 0.5
    w = rng.uniform(0.15, 0.35) * W
    h = rng.uniform(0.12, 0.3) * H
    cols = np.array([0.0, w, w * rng.uniform(0.6, 1.0), 0.0])
    rows = np.array([H - h * rng.uniform(0.3, 0.6), H - h, H, H + 1.0])
    rows[1] = H - h * rng.uniform(0.8, 1.0)
    rows[0] = H - h
    if not left:
        cols = W - cols
    mask = np.zeros((H, W), bool)
    rr, cc = polygon(rows, cols, shape=(H, W))
    mask[rr, cc] = True
    deck = np.zeros((H, W, 3), np.float32)
    grey = rng.uniform(0.45, 0.75)
    deck[...] = grey * np.array([1.0, 0.97, 0.92], np.float32)
    shade = np.linspace(0.85, 1.1, H, dtype=np.float32)[:, None, None]
    deck *= shade
    # Wheel: a dark ellipse partly outside the frame, with tread stripes.
    wr_r, wr_c = h * rng.uniform(0.5, 0.9), w * rng.uniform(0.3, 0.5)
    wc = w * rng.uniform(0.3, 0.8)
    wc = wc if left else W - wc
    rr, cc = ellipse(H + 0.2 * wr_r, wc, wr_r, wr_c, shape=(H, W))
    mask[rr, cc] = True
    tread = 0.16 + 0.06 * (np.sin(rr * 1.3) > 0)
    deck[rr, cc] = tread[:, None] * np.array([1.0, 0.9, 0.8], np.float32)
    return mask, deck


def _blur3(img: np.ndarray, b: float) -> np.ndarray:
    """Separable 3-tap blur ``[b, 1 - 2b, b]`` with edge replication (axis 0 then 1), float32."""
    w = np.array([b, 1.0 - 2.0 * b, b])
    out = ndimage.correlate1d(img, w, axis=0, mode="nearest", output=np.float32)
    return ndimage.correlate1d(out, w, axis=1, mode="nearest", output=np.float32)


def sensor(
    rng: np.random.Generator,
    img: np.ndarray,
    grey: bool,
    difficulty: float,
    jpeg_quality_range: tuple[int, int] | None,
) -> np.ndarray:
    """Vignetting, optics blur, noise, quantisation and optional JPEG of a float (H, W, 3) image.

    Returns:
        uint8 (H, W, 3) for colour or (H, W) for grey.
    """
    H, W = img.shape[:2]
    yy = (np.arange(H, dtype=np.float32) - H / 2 + 0.5) / (0.5 * np.hypot(H, W))
    xx = (np.arange(W, dtype=np.float32) - W / 2 + 0.5) / (0.5 * np.hypot(H, W))
    r2 = yy[:, None] ** 2 + xx[None, :] ** 2
    img = img * (1.0 - rng.uniform(0.05, 0.3) * r2)[..., None]
    if grey:
        # Navcam-like panchromatic response.
        img = np.einsum("hwc,c->hw", img, np.array([0.30, 0.59, 0.11], np.float32))[..., None]
    img = _blur3(img, rng.uniform(0.08, 0.22))
    sigma = rng.uniform(0.004, 0.012) * (0.5 + 1.5 * difficulty)
    # One noise field shared by the channels (demosaicked colour noise is strongly correlated anyway).
    noise = rng.standard_normal((H, W, 1), dtype=np.float32)
    img = img + noise * (sigma * np.sqrt(np.clip(img, 0.0, None) + 0.05))
    out = np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    out = out[..., 0] if grey else out
    if jpeg_quality_range is not None and rng.random() < 0.5:
        q = int(rng.integers(jpeg_quality_range[0], jpeg_quality_range[1] + 1))
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        with Image.open(buf) as im:
            out = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8).copy()
    return out
