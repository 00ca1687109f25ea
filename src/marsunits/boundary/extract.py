"""Extract the contact between the two units (class 0 / class 1) from class probabilities.

The contact is the sub-pixel iso-line where both units are equally likely, i.e. the zero level of
``d = p0 - p1`` (the same zero set as the log-ratio ``log p0 / p1``), restricted to where the pair dominates
``other``: ``p0 + p1 > dominance_threshold``. A terrain/sky edge (unit 0 or 1 against class 2) is therefore
never a contact: along such an edge ``d`` keeps one sign wherever the pair dominates, and where it does not
the field is masked out, so the iso-line stops there. A tie (``d == 0`` exactly) counts as unit 0, as in the
label mask (whose argmax takes the first of equal classes): the line passes just on unit 1's side of a tie
pixel's centre, not through it.

Pipeline (each step from the field's libraries):

1. light Gaussian smoothing of ``p0`` and ``p1`` (``scipy.ndimage.gaussian_filter``), so a hard label edge
   becomes a smooth, symmetric transition whose zero level lies half-way between pixel centres;
2. iso-lines of ``d`` at level 0 with ``skimage.measure.find_contours`` (marching squares with linear
   interpolation), masked where the pair does not dominate or the pixel is invalid;
3. pieces that only trace the image border or an invalid region, and pieces shorter than
   ``min_length_px``, are dropped;
4. Douglas-Peucker simplification (``shapely`` ``simplify``).

Coordinates: ``find_contours`` returns ``(row, col)`` of pixel *centres*; lines are returned in the project's
pixel coordinates ``x = col + 0.5``, ``y = row + 0.5`` (origin at the corner of the top-left pixel, see
:mod:`marsunits.boundary.camera.pinhole`). Lines are oriented consistently: walking along a line in image
coordinates (``y`` down), unit 1 (``rough_olivine``) lies on the right-hand side as seen on screen.

Confidence (all values in [0, 1]):

* **sharpness** at a vertex: ``s = min(1, |grad n| / g_ref)``, where ``n = (p0 - p1) / (p0 + p1)`` is the
  normalised difference (independent of how much ``other`` takes) and ``|grad n|`` its gradient magnitude
  per pixel (central differences on the smoothed maps, bilinear interpolation at the vertex). The reference
  ``g_ref = min(2 / transition_width_px, g_step)``: ``2 / w`` is the gradient of a linear ramp of ``n``
  from -1 to 1 over ``w`` pixels, and ``g_step`` the gradient a perfectly sharp label step has at its
  contact after the configured smoothing (computed numerically: 1.0 without smoothing, about 0.64 for
  sigma = 1 px), so a hard label edge always scores 1. A linear transition ``w`` px wide is measured after
  the same smoothing, which flattens its middle too: with the defaults (sigma = 1 px, 4 px) one up to 3 px
  wide scores 1, one 4 px wide about 0.9 (0.88 to 0.94, by where it lies on the pixel grid), and a wider one
  about ``transition_width_px / w`` (a little less just above 4 px): 0.5 at 8 px, 0.25 at 16 px.
* **dominance** at a vertex: ``m = p0 + p1`` (smoothed, bilinear), the probability that the point is on one
  of the two units at all.
* **vertex confidence** ``c = s * m``.
* **line confidence**: the length-weighted mean of ``c`` over the dense (unsimplified) contour, each vertex
  weighted by half the length of its adjacent segments. ``vertex_confidence`` of a returned line holds
  ``c`` at its (simplified) vertices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from numbers import Real

import numpy as np
import shapely
from scipy import ndimage
from skimage.measure import find_contours

from marsunits.boundary.contact_io import ContactLine, length_weighted_mean
from marsunits.constants import IGNORE_INDEX

__all__ = ["ContactConfig", "bridge_ignore_gaps", "extract_contacts", "contacts_from_mask"]

#: How far above 1 a probability may be (float16 or float32 rounding of a softmax) before it is refused.
_PROBABILITY_SLACK = 1e-3

#: The value ``d = p0 - p1`` takes where it is exactly 0 (a tie, which the mask's argmax gives to unit 0), so
#: marching squares counts the pixel on unit 0's side and the line passes ``1e-9 / |d|`` px from its centre,
#: on unit 1's side: far below the 0.001 px to which contact files round, and above float64's resolution
#: of coordinates up to a million pixels.
_TIE_D = np.float32(1e-9)

#: Default width (px) of unlabelled gaps between the two units that label masks are bridged across.
DEFAULT_MAX_GAP_PX = 3.0


@dataclass(frozen=True)
class ContactConfig:
    """Settings of :func:`extract_contacts` (each is a plain config value).

    Attributes:
        smoothing_sigma_px: Standard deviation (pixels) of the Gaussian applied to ``p0`` and ``p1`` before
            extraction; 0 disables it. About 1 px turns a hard mask edge into a clean sub-pixel line.
        simplify_tolerance_px: Douglas-Peucker tolerance (pixels) of the returned polylines; 0 keeps every
            marching-squares vertex.
        min_length_px: Lines shorter than this (pixels, before simplification) are dropped.
        dominance_threshold: The contact exists only where ``p0 + p1`` exceeds this value (the pair of units
            dominates ``other``).
        transition_width_px: Width (pixels) of a linear transition between the units whose gradient,
            ``2 / width``, is the confidence's reference of full sharpness (see the module docstring); wider
            transitions score about ``transition_width_px / width``. The smoothing flattens a transition
            this wide a little: with the defaults it scores about 0.9, one 3 px wide scores 1.
        drop_border_px: A piece whose every vertex lies within this distance (pixels) of the image border or
            of an invalid pixel is dropped: it traces the edge of the data, not a contact.

    Raises:
        ValueError: A field that is not a finite number, or out of its range.
    """

    smoothing_sigma_px: float = 1.0
    simplify_tolerance_px: float = 0.5
    min_length_px: float = 10.0
    dominance_threshold: float = 0.5
    drop_border_px: float = 1.5
    transition_width_px: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # "5" failed as "'<' not supported between 'str' and 'int'"; NaN passed and failed in extraction
            # ("cannot convert float NaN to integer"), inf deep inside scipy's Gaussian filter.
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(
                    f"ContactConfig.{f.name} must be a finite number, got {type(value).__name__} {value!r}; "
                    f"e.g. ContactConfig({f.name}={f.default})"
                )
        for name in ("smoothing_sigma_px", "simplify_tolerance_px", "min_length_px", "drop_border_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"ContactConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.transition_width_px <= 0:
            raise ValueError(f"ContactConfig.transition_width_px must be > 0, got {self.transition_width_px}")
        if not 0.0 <= self.dominance_threshold < 2.0:
            raise ValueError(
                f"ContactConfig.dominance_threshold must be in [0, 2), got {self.dominance_threshold}"
            )


@lru_cache(maxsize=32)
def _step_gradient(sigma: float) -> float:
    """Gradient of ``d`` at the contact of a perfectly sharp label step after smoothing with ``sigma``."""
    n = int(8 * max(sigma, 1.0)) + 8
    d = np.concatenate([-np.ones(n), np.ones(n)])
    if sigma > 0:
        d = ndimage.gaussian_filter1d(d, sigma, mode="nearest")
    g = np.gradient(d)
    return float(0.5 * (g[n - 1] + g[n]))  # the contact lies half-way between samples n-1 and n


def _sample(field: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``field`` at ``(row, col)`` pixel-centre coordinates ``rc`` (K, 2)."""
    return ndimage.map_coordinates(field, rc.T, order=1, mode="nearest")


#: Least number of extra pixels around each contact zone's bounding box (>= 1 for the central-difference
#: gradient at sampled pixels); :func:`_crop_margin` widens it for a larger ``drop_border_px``.
_CROP_MARGIN = 12

#: Contact zones are grouped into crops by the zone's top-left corner on a grid of this many pixels, so
#: a noisy probability map with thousands of tiny zones costs a few dozen ``find_contours`` calls.
_GROUP_PX = 512


def _crop_margin(drop_border_px: float) -> int:
    """Extra pixels around a contact zone's bounding box for its crop: at least :data:`_CROP_MARGIN`, and
    at least ``drop_border_px + 2`` so that the crop's distances to invalid pixels decide "traces an invalid
    edge" as the whole image's would (the argument is in :func:`_crop_lines`). With a fixed 12 px, a piece
    14 to 20 px from no-data was kept under ``drop_border_px = 20``."""
    return max(_CROP_MARGIN, int(np.ceil(drop_border_px)) + 2)


def _contact_zones(
    d: np.ndarray, region: np.ndarray, min_pixels: int
) -> tuple[np.ndarray, list[tuple[slice, slice, np.ndarray]]]:
    """Where contours of ``d = 0`` inside ``region`` can lie, grouped into crops.

    A marching-squares cell yields a segment only when its four corners are all in ``region`` and their
    signs differ (``> 0`` against ``<= 0``); each such corner then has an opposite-signed 8-neighbour, so
    it lies in ``zone = region & dilate(d > 0) & dilate(d <= 0)``, and the four corners of one cell lie in
    the same 8-connected component of the zone. A contour is a chain of such cells, hence lies in one
    component; running ``find_contours`` on a crop around a set of components, masked to those
    components, finds exactly their contours (in the same row-major scan order as on the whole image).
    Components of fewer than ``min_pixels`` pixels are dropped: their contours are shorter than
    ``min_length_px`` (each cell adds at most ``2 * sqrt(2)`` px and a component of ``S`` pixels has at
    most ``S`` cells).

    Returns:
        The component labels (int32, same shape as ``d``) and, per crop, ``(rows, cols, ids)``: the crop's
        slices (bounding box of its components, no margin) and the component ids it is responsible for.
    """
    pos = region & (d > 0)
    neg = region & ~pos
    square = np.ones((3, 3), dtype=bool)
    zone = ndimage.binary_dilation(pos, square)
    zone &= ndimage.binary_dilation(neg, square)
    zone &= region
    del pos, neg
    labels, n = ndimage.label(zone, structure=square)
    del zone
    if n == 0:
        return labels, []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    groups: dict[tuple[int, int], list[int]] = {}
    boxes = ndimage.find_objects(labels)
    for k, box in enumerate(boxes, start=1):
        if box is None or sizes[k] < min_pixels:
            continue
        groups.setdefault((box[0].start // _GROUP_PX, box[1].start // _GROUP_PX), []).append(k)
    crops = []
    for ids in groups.values():
        r0 = min(boxes[k - 1][0].start for k in ids)
        r1 = max(boxes[k - 1][0].stop for k in ids)
        c0 = min(boxes[k - 1][1].start for k in ids)
        c1 = max(boxes[k - 1][1].stop for k in ids)
        crops.append((slice(r0, r1), slice(c0, c1), np.asarray(ids, dtype=labels.dtype)))
    return labels, crops


def extract_contacts(
    probs: np.ndarray,
    config: ContactConfig | None = None,
    valid: np.ndarray | None = None,
) -> list[ContactLine]:
    """Find the contact lines between unit 0 and unit 1 in a probability map.

    Args:
        probs: Class probabilities, float array of shape ``(3, H, W)`` (channels in the class order of
            :mod:`marsunits.constants`); need not sum exactly to 1. NaN marks an invalid pixel.
        config: Extraction settings; defaults to :class:`ContactConfig`.
        valid: Optional ``(H, W)`` bool array, False where the image has no data (ignore regions);
            no contact is drawn through invalid pixels.

    Returns:
        Contact lines in pixel coordinates (``x`` = column, ``y`` = row, origin at the top-left pixel's
        corner), each with ``confidence`` and ``vertex_confidence`` as defined in the module docstring,
        longest first. Closed contours (an island of one unit inside the other) have equal first and last
        vertices.

    Raises:
        ValueError: If ``probs`` or ``valid`` has the wrong shape, or ``probs`` holds values outside [0, 1]
            (logits, or probabilities scaled to 0-255): read as probabilities they gave no contact, or one
            in the wrong place, without a word.
        TypeError: ``config`` is not a :class:`ContactConfig` (a dict of its fields: ``ContactConfig(**it)``).

    Memory and time: the whole-image fields (smoothed ``p0 - p1`` and ``p0 + p1``) are float32 (float64 for
    float64 ``probs``, whose near-ties keep the side their argmax gives them), and contour
    tracing, gradients and distances to invalid pixels are computed only on crops around the places where both
    units meet (see :func:`_contact_zones`), so a 12,000 x 1,600 panorama needs about 20 bytes per pixel.
    """
    if config is not None and not isinstance(config, ContactConfig):
        # A dict failed deep inside as "'dict' object has no attribute 'smoothing_sigma_px'".
        hint = (
            "ContactConfig(**config)" if isinstance(config, Mapping) else "ContactConfig(min_length_px=20.0)"
        )
        raise TypeError(
            f"config must be a ContactConfig or None (the defaults), got {type(config).__name__} "
            f"{config!r:.80}; e.g. {hint}"
        )
    cfg = config or ContactConfig()
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(
            f"probs must have shape (3, H, W) (smooth_volcanic, rough_olivine, other), got {probs.shape}"
        )
    if probs.size:
        # NaN (an invalid pixel) is skipped by fmin/fmax; a map with no finite value has nothing to check.
        low, high = float(np.fmin.reduce(probs, axis=None)), float(np.fmax.reduce(probs, axis=None))
        if low < 0.0 or high > 1.0 + _PROBABILITY_SLACK:
            # Logits (the network's raw output) were read as probabilities: p0 + p1 never dominated and the
            # contact list came back empty; 0-255 probabilities made every pixel dominant.
            raise ValueError(
                f"probs must be class probabilities in [0, 1], got values from {low:g} to {high:g}: for the "
                "network's logits take torch.softmax(logits, dim=0) (or scipy.special.softmax(logits, "
                "axis=0)) first; divide probabilities stored as 0-255 by 255"
            )
    _, H, W = probs.shape
    ok = np.isfinite(probs[0]) & np.isfinite(probs[1])
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (H, W):
            raise ValueError(f"valid must have shape {(H, W)} like probs, got {valid.shape}")
        ok &= valid
    if H < 2 or W < 2:  # a strip one pixel thin has no iso-line (scikit-image refused it: an error row)
        return []
    all_ok = bool(ok.all())
    # float64 probabilities keep their resolution: in float32, p0 and p1 closer than its rounding became a
    # tie (unit 0) where the float64 argmax of the same probabilities gives unit 1.
    work = np.float64 if probs.dtype == np.float64 else np.float32

    def smoothed(channel: np.ndarray) -> np.ndarray:
        p = np.array(channel, dtype=work)  # a copy, zeroed where invalid
        if not all_ok:
            p[~ok] = 0.0
        if cfg.smoothing_sigma_px > 0:
            # mode="nearest" so the image border does not read as a drop in probability.
            p = ndimage.gaussian_filter(p, cfg.smoothing_sigma_px, mode="nearest", output=work)
        return p

    dom = smoothed(probs[0])
    p1 = smoothed(probs[1])
    d = dom - p1
    # An exact tie counts as unit 0, as in the mask (argmax takes the first of equal classes): marching
    # squares counts only d > 0 as above the level, so the line ran through a tie pixel's centre (on the
    # line, in neither unit) where the mask has unit 0.
    np.copyto(d, _TIE_D, where=d == 0)
    dom += p1  # in place: dom = p0 + p1
    del p1
    region = dom > cfg.dominance_threshold
    if not all_ok:
        region &= ok
    min_pixels = int(np.ceil(cfg.min_length_px / (2.0 * np.sqrt(2.0))))
    labels, crops = _contact_zones(d, region, max(1, min_pixels))
    if not crops:
        return []

    g_ref = min(2.0 / cfg.transition_width_px, _step_gradient(float(cfg.smoothing_sigma_px)))
    margin = _crop_margin(cfg.drop_border_px)
    lines: list[ContactLine] = []
    for rows, cols, ids in crops:
        r0, c0 = max(rows.start - margin, 0), max(cols.start - margin, 0)
        r1, c1 = min(rows.stop + margin, H), min(cols.stop + margin, W)
        box = (slice(r0, r1), slice(c0, c1))
        mask = region[box] & np.isin(labels[box], ids)
        # "high" orientation: the high side (unit 0) is kept on the left in (row, col) coordinates.
        contours = find_contours(d[box], 0.0, positive_orientation="high", mask=mask)
        if not contours:
            continue
        lines.extend(
            _crop_lines(contours, d[box], dom[box], None if all_ok else ok[box], (r0, c0), (H, W), g_ref, cfg)
        )
    lines.sort(key=lambda ln: -ln.length_px)
    return lines


def _crop_lines(
    contours: list[np.ndarray],
    d: np.ndarray,
    dom: np.ndarray,
    ok: np.ndarray | None,
    origin: tuple[int, int],
    shape: tuple[int, int],
    g_ref: float,
    cfg: ContactConfig,
) -> list[ContactLine]:
    """Filter, score and simplify the contours found in one crop (crop-local ``(row, col)`` coordinates).

    ``ok`` is the crop's validity (None when the whole image is valid). Its distance to the nearest invalid
    pixel is computed on the crop, whose margin ``m`` (:func:`_crop_margin`) is at least
    ``drop_border_px + 2``, so the decision "traces an invalid edge" (a bilinear sample ``<= drop_border_px``)
    is the whole image's. The crop's distance is never smaller than the whole image's, and equals it at a
    pixel of the zone's bounding box whose nearest invalid pixel is within ``m`` (that pixel is in the
    crop). A vertex's sample reads four such pixels within ``sqrt(2)`` of each other; the distance being
    1-Lipschitz, if one of them is farther than ``m`` (so possibly inexact), all are farther than
    ``m - 0.5 - sqrt(2) > drop_border_px`` in both computations, and the piece is kept by both.
    """
    H, W = shape
    offset = np.asarray(origin, dtype=float)
    # Sharpness is measured on the normalised difference (p0 - p1) / (p0 + p1) so that it is independent of
    # dominance (which is scored separately): the same edge with 'other' at 0.4 is as sharp, less dominant.
    grad_r, grad_c = np.gradient(d / np.maximum(dom, 1e-6))
    grad = np.hypot(grad_r, grad_c)
    del grad_r, grad_c
    # Distance (px) from each pixel centre to the nearest invalid pixel's edge; the image border is handled
    # analytically below.
    invalid_dist = None if ok is None or ok.all() else ndimage.distance_transform_edt(ok) - 0.5

    def vertex_confidence(rc: np.ndarray) -> np.ndarray:
        sharp = np.clip(_sample(grad, rc) / g_ref, 0.0, 1.0)
        return sharp * np.clip(_sample(dom, rc), 0.0, 1.0)

    lines = []
    for rc in contours:
        if len(rc) < 2:
            continue
        xy = (rc + offset)[:, ::-1] + 0.5
        length = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())
        if length < cfg.min_length_px:
            continue
        edge = np.minimum.reduce([xy[:, 0], W - xy[:, 0], xy[:, 1], H - xy[:, 1]])
        if invalid_dist is not None:
            edge = np.minimum(edge, _sample(invalid_dist, rc))
        if edge.max() <= cfg.drop_border_px:
            continue
        conf = vertex_confidence(rc)
        line_conf = length_weighted_mean(conf, rc)
        simple = np.asarray(shapely.LineString(xy).simplify(cfg.simplify_tolerance_px).coords)
        if len(simple) < 2:
            continue
        lines.append(
            ContactLine(
                pixels=simple,
                confidence=float(np.clip(line_conf, 0.0, 1.0)),
                vertex_confidence=vertex_confidence(simple[:, ::-1] - 0.5 - offset),
            )
        )
    return lines


def bridge_ignore_gaps(
    mask: np.ndarray, max_gap_px: float = DEFAULT_MAX_GAP_PX, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Fill narrow unlabelled gaps between unit 0 and unit 1 with the nearest label.

    Annotators (AI4Mars' crowd labels in particular) rarely draw two units touching: a strip of unlabelled
    pixels separates them, so a mask taken literally has almost no contact. An ignore pixel lying within
    ``max_gap_px`` of both a unit-0 and a unit-1 pixel (Euclidean distance between pixel centres) takes the
    label of its nearest labelled pixel, so the contact runs through the middle of the strip. Gaps up to
    about ``2 * max_gap_px - 1`` pixels wide are bridged; wider unlabelled regions stay ignore.

    Args:
        mask: ``(H, W)`` integer label array.
        max_gap_px: Bridging distance in pixels; 0 returns the mask unchanged.
        ignore_index: Label of unlabelled pixels.

    Returns:
        A new array (or ``mask`` itself, as a numpy array, when nothing is bridged) of the same shape and
        dtype.

    Raises:
        ValueError: ``mask`` is not 2-D (a batch of masks: one at a time).
    """
    # A torch tensor or a nested list failed deep inside ("'Tensor' object has no attribute 'copy'").
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) label array, got shape {mask.shape}")
    ign = mask == ignore_index
    if max_gap_px <= 0 or not ign.any() or not (mask == 0).any() or not (mask == 1).any():
        return mask
    near0 = ndimage.distance_transform_edt(mask != 0) <= max_gap_px
    near1 = ndimage.distance_transform_edt(mask != 1) <= max_gap_px
    gap = ign & near0 & near1
    if not gap.any():
        return mask
    _, (rows, cols) = ndimage.distance_transform_edt(ign, return_indices=True)
    out = mask.copy()
    out[gap] = mask[rows[gap], cols[gap]]
    return out


def contacts_from_mask(
    mask: np.ndarray, config: ContactConfig | None = None, max_gap_px: float = DEFAULT_MAX_GAP_PX
) -> list[ContactLine]:
    """Contact lines of a label mask (e.g. the true contact of a labelled image).

    Narrow unlabelled gaps between the units are bridged first (:func:`bridge_ignore_gaps`); the mask is then
    one-hot encoded and passed to :func:`extract_contacts`, with the remaining ``255`` (ignore) pixels
    invalid, so no contact is drawn through a wider unlabelled region.

    Args:
        mask: ``(H, W)`` integer array with values in {0, 1, 2, 255}.
        config: Extraction settings; defaults to :class:`ContactConfig`.
        max_gap_px: Bridging distance for unlabelled gaps between the units, pixels (0 disables).

    Returns:
        As :func:`extract_contacts`; confidences are 1 along clean label edges.

    Raises:
        ValueError: If ``mask`` is not 2-D or holds other values.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) label array, got shape {mask.shape}")
    bad = np.setdiff1d(np.unique(mask), [0, 1, 2, IGNORE_INDEX])
    if bad.size:
        raise ValueError(
            f"mask values must be class ids 0, 1, 2 or {IGNORE_INDEX} (ignore); found {bad.tolist()[:10]}. "
            "Map the dataset's native ids with its class_map first."
        )
    mask = bridge_ignore_gaps(mask, max_gap_px)
    onehot = np.stack([(mask == k) for k in range(3)]).astype(np.float64)
    return extract_contacts(onehot, config, valid=mask != IGNORE_INDEX)
