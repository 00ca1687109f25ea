"""Merge the ground contacts of many images into one map per site frame (GeoJSON in metres + a PNG).

Images whose cameras share a ``site`` name share a frame, so their contacts are drawn together. The map is
in the site frame of :mod:`marsunits.boundary.camera.pinhole` (metres, ``x`` forward, ``y`` left, ``z`` up;
for cameras read from PDS ``"frame": "ned"`` files, ``x`` is north and ``y`` west). The PNG is a top-down
view with ``x`` pointing up and ``y`` to the left, so it reads like a map seen from above.

A site name does not make one frame of cameras in a PDS frame and cameras in a frame of their own (a
pinhole's ``x_m``, ``y_m`` and ``yaw_deg``, a CAHV file's ``"frame": "flu"``): such a site is drawn as two
maps, with a warning (:func:`build_contact_map`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from marsunits.atomic import atomic_write, atomic_write_text
from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.contact_io import CONTACT_ID, ContactLine, count_contacts, line_list
from marsunits.boundary.projection import add_ground
from marsunits.errors import readable
from marsunits.user_paths import expand_home

__all__ = ["build_contact_map", "camera_stations", "remove_stale_maps", "view_footprint", "MapItem"]

log = logging.getLogger(__name__)

#: ``(image name, contact lines in pixels or already on the ground, camera or None)``.
MapItem = tuple[str, Sequence[ContactLine], CameraModel | None]

_LABEL_LIMIT = 20  # beyond this many station labels, names would clutter the plot
_STATION_M = 0.25  # cameras closer than this share one marker and label (one rover position)
_NAMES_PER_STATION = 3  # image names written at one station before "+N more"
#: Stations closer than this part of the map's extent share one label (three lines of 7-point text are about
#: 4 % of the plot's height): two rover positions 0.5 m apart on a 60 m map had their labels drawn over each
#: other. Labels that still overlap as drawn are merged (:func:`_draw_station_labels`).
_LABEL_SHARE = 0.04


#: Border rays that miss the ground, or reach it farther than this many ``max_range_m``, are drawn at this
#: distance in their azimuth before the footprint is cut to the range disc (far enough that the cut, not the
#: chord between two such points, bounds the footprint; near enough that shapely's arithmetic stays exact).
_FAR_RANGES = 100.0


def view_footprint(camera: CameraModel, max_range_m: float = 30.0, samples_per_edge: int = 24) -> np.ndarray:
    """Ground polygon seen by ``camera`` out to ``max_range_m``.

    The image border is walked (bottom, right, top, left), each border pixel that has no ray (beyond the
    radius where a distorting lens folds back) moved in to the edge of the pixels that have one
    (:func:`_inside_the_fold`), so the walk follows the outline of what the camera sees; each pixel
    contributes its ground point (at any range), or, when its ray misses the ground (at or above the horizon)
    or reaches it very far, a point far out along the ray's horizontal trace from where the ray starts (the
    model's ``ray_origin``: a CAHVORE ray starts at its entrance pupil, millimetres from ``C``, as the
    projection casts it). That outline is then cut to the disc of radius ``max_range_m`` about the camera. So
    a camera whose border rays all reach the ground beyond the range, as one looking straight down from high
    up does, gets the disc part its image sees (cut at each border pixel beyond the range, the outline was
    empty), and the range limit is an arc, not a chord. When no border pixel reaches the ground at all
    (looking at the sky) the footprint is empty.

    Args:
        camera: Any :class:`~marsunits.boundary.camera.base.CameraModel`.
        max_range_m: Horizontal distance from the camera centre where the footprint ends, metres.
        samples_per_edge: Border pixels sampled on each of the four image edges.

    Returns:
        ``(K, 2)`` site-frame ``(x, y)`` vertices of a valid polygon, metres (empty if degenerate). An outline
        that is not simple (a distorting lens folding the border) keeps its largest part.
    """
    w, h = camera.image_width, camera.image_height
    t = np.linspace(0.0, 1.0, samples_per_edge, endpoint=False)
    u = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    v = np.concatenate([np.full_like(t, h), (1 - t) * h, np.zeros_like(t), t * h])
    u, v = _inside_the_fold(camera, u, v)
    center = np.asarray(getattr(camera, "center", np.zeros(3)), dtype=float)
    pts = _border_outline(camera, u, v, center, max_range_m)
    if pts is None:
        return np.empty((0, 2))  # no border pixel sees the ground: looking at the sky, no footprint
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 3:
        return np.empty((0, 2))
    disc = shapely.Point(0.0, 0.0).buffer(1.0, quad_segs=32)
    poly = shapely.make_valid(shapely.Polygon(pts)).intersection(disc)
    parts = [g for g in getattr(poly, "geoms", [poly]) if g.geom_type == "Polygon" and not g.is_empty]
    if not parts:
        return np.empty((0, 2))
    return center[:2] + max_range_m * np.asarray(max(parts, key=lambda g: g.area).exterior.coords)


def _border_outline(
    camera: CameraModel, u: np.ndarray, v: np.ndarray, center: np.ndarray, max_range_m: float
) -> np.ndarray | None:
    """The uncut outline of the border walk ``(u, v)``: ``(n, 2)`` points ``(x, y)`` about ``center``, in
    units of ``max_range_m`` (NaN for a pixel without a ray or azimuth); None when no border pixel sees the
    ground.

    Each pixel gives its ground point, or, where its ray misses the ground or reaches it beyond
    ``_FAR_RANGES`` ranges, a point that far out along the ray's horizontal trace, from where the ray starts
    (the camera model's ``ray_origin``: a CAHVORE ray starts at its entrance pupil, millimetres from ``C``,
    as the projection casts it; ``center`` for models whose rays all start there).
    """
    far_m = _FAR_RANGES * max_range_m
    ground = camera.pixel_to_ground(u, v, max_range_m=far_m)
    reach = np.isfinite(ground[:, :2]).all(axis=1)
    if not reach.any() and not np.isfinite(camera.pixel_to_ground(u, v)[:, :2]).all(axis=1).any():
        return None
    rays = camera.pixel_to_ray(u, v)
    horiz = rays[:, :2]
    norm = np.linalg.norm(horiz, axis=1, keepdims=True)
    # A ray with no horizontal part points straight down (it reaches the ground) or straight up: no azimuth.
    horiz = np.where(norm > 1e-9, horiz / np.maximum(norm, 1e-12), np.nan)
    # The outline is cut in units of the range about the camera (the cut is the same at any scale): in metres,
    # GEOS failed on a range of 1e200 m ("side location conflict"), which predict.py accepts as "no limit".
    ray_origin = getattr(camera, "ray_origin", None)
    start = center[:2] if ray_origin is None else np.asarray(ray_origin(u, v), dtype=float)[:, :2]
    with np.errstate(over="ignore", invalid="ignore"):
        far = (start - center[:2]) / max_range_m + _FAR_RANGES * horiz
        return np.where(reach[:, None], (ground[:, :2] - center[:2]) / max_range_m, far)


#: Bisection steps that move a border pixel without a ray onto the edge of the pixels with one: 2^-40 of the
#: image diagonal, far below a pixel.
_FOLD_STEPS = 40


def _last_with_ray(
    camera: CameraModel, u0: np.ndarray, v0: np.ndarray, u1: np.ndarray, v1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The last point with a ray on each segment from ``(u0, v0)`` (which has one) to ``(u1, v1)`` (which
    has none), by bisection: the segments must cross the edge of the pixels with a ray once."""
    lo = np.zeros(np.shape(u0))  # fraction of the way along the segment
    hi = np.ones_like(lo)
    du, dv = u1 - u0, v1 - v0
    for _ in range(_FOLD_STEPS):
        mid = 0.5 * (lo + hi)
        ok = np.isfinite(camera.pixel_to_ray(u0 + mid * du, v0 + mid * dv)).all(axis=-1)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return u0 + lo * du, v0 + lo * dv


def _inside_the_fold(camera: CameraModel, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closed border walk ``(u, v)`` bent in to the edge of the pixels that have a ray.

    A lens whose distortion folds back inside the image (strong barrel distortion: the pinhole's and
    CAHVOR's ``fold_radius``) gives the pixels beyond the fold no ray. Dropped from the border walk, the
    footprint was the polygon of the border pixels left: a chord across the ground the fold's edge bounds,
    or nothing at all when the whole border lay beyond it (a camera seeing 98 m^2 of ground within 10 m drew
    no footprint). The pixels with a ray are the image of a cone about the lens's axis, a convex region
    holding the principal point, so each pixel without a ray is moved towards the image centre to the last
    point with one (bisection), and where the border crosses that edge between two samples, the crossing is
    added between them (else the chord from the last border sample to the first on the edge cut the corner
    off: 6 cm at 5 m). Pixels that have rays stay as they are; where the image centre has no ray either (a
    lens whose distortion centre is far off the image), the walk is returned unchanged.
    """
    has_ray = np.isfinite(camera.pixel_to_ray(u, v)).all(axis=-1)
    if has_ray.all():
        return u, v
    cu, cv = np.array(camera.image_width / 2.0), np.array(camera.image_height / 2.0)
    if not np.isfinite(camera.pixel_to_ray(cu[None], cv[None])).all():
        return u, v
    nxt = np.roll(np.arange(len(u)), -1)
    cross = np.flatnonzero(has_ray != has_ray[nxt])  # the edge lies between sample i and sample i + 1
    a = np.where(has_ray[cross], cross, nxt[cross])  # the end with a ray
    b = np.where(has_ray[cross], nxt[cross], cross)
    cross_u, cross_v = _last_with_ray(camera, u[a], v[a], u[b], v[b])
    moved_u, moved_v = np.array(u, dtype=float), np.array(v, dtype=float)
    none = ~has_ray
    moved_u[none], moved_v[none] = _last_with_ray(
        camera, np.full(int(none.sum()), cu), np.full(int(none.sum()), cv), u[none], v[none]
    )
    order = np.argsort(np.r_[np.arange(len(u)), cross + 0.5], kind="stable")
    return np.r_[moved_u, cross_u][order], np.r_[moved_v, cross_v][order]


#: Longest site part of a map's file name: the name's first characters, and 9 of a hash beyond them (a site
#: of 243 characters made a name past the filesystem's 255 bytes: a traceback before the run's reports).
_SITE_CHARS = 80


def _safe(name: str) -> str:
    """A site name as a file-name part: letters, digits, ``_`` and ``-`` (no dot, see ``_MAP_FILE``), each run
    of other characters and ``_`` one ``_`` (``ROVER_NAV_(62,660,8)``: ``ROVER_NAV_62_660_8``, not
    ``ROVER_NAV__62_660_8``), at most ``_SITE_CHARS`` long (a longer one is cut and told apart by a hash of
    the whole name)."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_") or "site"
    if len(safe) <= _SITE_CHARS:
        return safe
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe[: _SITE_CHARS - 9]}_{digest}"


#: The names :func:`build_contact_map` writes; a per-image output (``<stem>.mask.png``) always has a dot more.
_MAP_FILE = re.compile(r"^contact_map(_[A-Za-z0-9_-]+)?\.(geojson|png)$")


def _is_map(path: Path) -> bool:
    """Whether ``path`` (named like a map) holds a map :func:`build_contact_map` wrote: a GeoJSON
    FeatureCollection with the map's ``cameras``, or a PNG that Matplotlib wrote (its ``Software`` text)."""
    if path.suffix == ".geojson":
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):  # not JSON, nor UTF-8 (UnicodeDecodeError is a ValueError)
            return False
        return isinstance(data, dict) and data.get("type") == "FeatureCollection" and "cameras" in data
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and str(image.info.get("Software", "")).startswith("Matplotlib")
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def remove_stale_maps(out_dir: str | os.PathLike[str], keep: Sequence[Path] = ()) -> list[Path]:
    """Delete the contact-map files in ``out_dir`` (top level; ``~`` is the home folder) other than ``keep``;
    return those deleted.

    A run that writes fewer or other sites than an earlier one (or none: ``map=false``) would otherwise leave
    maps beside its outputs that show images or sites it no longer has. Only files that are maps
    (:func:`_is_map`) are deleted: a user's own file that merely has a map's name (an annotated copy
    ``contact_map_annotated.png``, notes) is kept.
    """
    out = expand_home(out_dir)
    if not out.is_dir():
        return []
    kept = {p.name for p in keep}
    stale = [p for p in sorted(out.iterdir()) if _MAP_FILE.match(p.name) and p.name not in kept]
    stale = [p for p in stale if p.is_file() and _is_map(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def map_title(site: str | None, entries: Sequence[Mapping[str, Any]], max_range_m: float) -> str:
    """The contact map's title: its contacts counted as ``predict.py`` counts them (the pieces of one
    contact split at the range limit count once; the pieces are named when there are more of them)."""
    n_contacts = sum(count_contacts(e["lines"]) for e in entries)
    n_pieces = sum(len(e["lines"]) for e in entries)
    pieces = f" in {n_pieces} pieces" if n_pieces != n_contacts else ""  # more pieces than contacts: >= 2
    contacts = f"{n_contacts} contact{'' if n_contacts == 1 else 's'}"
    images = f"{len(entries)} image{'' if len(entries) == 1 else 's'}"
    where = f"contact map, site {site or '(unnamed)'}"
    return f"{where}: {contacts}{pieces} from {images} (range <= {max_range_m:g} m)"


def map_frame(entries: Sequence[Mapping[str, Any]]) -> str:
    """The contact map GeoJSON's ``frame``: its cameras' site frame, as :func:`axis_labels` names the PNG's
    axes. Cameras read from PDS ``"frame": "ned"`` files put north on ``x`` and west on ``y``; the others
    (entries without ``source_frame`` included) are FLU, ``x`` forward (a pinhole's yaw 0) and ``y`` left.
    Every map said "x forward (north for PDS NED cameras), y left", of PDS cameras whose ``y`` is west too.
    A map's cameras are all of one kind (:func:`build_contact_map` draws a site name shared by both as two
    maps); entries of both kinds get the FLU frame, as :func:`axis_labels` names them."""
    if entries and all(e.get("source_frame") == "ned" for e in entries):
        return "site frame: x north, y west, z up (a PDS frame, z turned up)"
    return "site frame: x forward (a pinhole camera's yaw 0), y left, z up"


def _metres(values: Any) -> Any:
    """``values`` (metres) rounded to 0.1 mm as nested lists for JSON, a negative zero written ``0.0``: a
    camera at the site's origin read ``"center_m": [-0.0, 0.0, 2.0]``, from a rounding of -1e-9."""
    return (np.round(np.asarray(values, float), 4) + 0.0).tolist()


def _geojson(
    site: str | None, entries: list[dict[str, Any]], model: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    features = []
    cameras = []
    for e in entries:
        for line in e["lines"]:
            features.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "LineString",
                        "coordinates": _metres(line.ground_m),
                    },
                    "properties": {
                        "image": e["name"],
                        "confidence": round(float(line.confidence), 4),
                        "site": site,
                        "length_m": round(float(line.length_m or 0.0), 4),
                        "length_px": round(float(line.length_px), 3),
                        # The per-image file's id: the pieces of one contact split at the range share it.
                        **({CONTACT_ID: line.extra[CONTACT_ID]} if CONTACT_ID in line.extra else {}),
                    },
                }
            )
        cameras.append(
            {
                "image": e["name"],
                "center_m": None if e["center"] is None else _metres(e["center"]),
                "footprint_m": _metres(e["footprint"]),
            }
        )
    return {
        "type": "FeatureCollection",
        "site": site,
        "units": "m",
        "frame": map_frame(entries),
        "cameras": cameras,
        **({} if model is None else {"model": dict(model)}),
        "features": features,
    }


def camera_stations(
    entries: Sequence[Mapping[str, Any]], within_m: float = _STATION_M
) -> list[tuple[tuple[float, float], list[str]]]:
    """Camera positions ``(x, y)`` in metres (site frame) with the names of the images taken from each.

    Images whose cameras are within ``within_m`` (default ``_STATION_M``) of each other (the frames of one
    mosaic, shot from one rover position) share one station, so the map draws one marker and one label there
    instead of a pile of overlapping names (the map also gives one label to stations closer than
    ``_LABEL_SHARE`` of its extent, each keeping its marker). Stations are in the order their first image
    comes; entries without a camera centre are left out. Grouped by hand (each camera joins the first station
    within ``within_m``) rather than with ``scipy.cluster.hierarchy``: single linkage chains, so cameras 0.2 m
    apart along a traverse would merge into one station however far it runs (0, 0.2 and 0.4 m: one cluster
    there, two stations here).
    """
    stations: list[tuple[tuple[float, float], list[str]]] = []
    for e in entries:
        if e.get("center") is None:
            continue
        x, y = float(e["center"][0]), float(e["center"][1])
        for (sx, sy), names in stations:
            if math.hypot(x - sx, y - sy) <= within_m:
                names.append(str(e["name"]))
                break
        else:
            stations.append(((x, y), [str(e["name"])]))
    return stations


def _map_extent_m(entries: Sequence[Mapping[str, Any]]) -> float:
    """The larger side of the box around what the map draws (footprints, contacts, cameras), metres."""
    parts = [np.asarray(e["footprint"], float).reshape(-1, 2) for e in entries]
    parts += [np.asarray(line.ground_m, float)[:, :2] for e in entries for line in e["lines"]]
    parts += [np.asarray(e["center"], float)[None, :2] for e in entries if e.get("center") is not None]
    pts = np.concatenate(parts) if parts else np.empty((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    return float((pts.max(axis=0) - pts.min(axis=0)).max()) if len(pts) else 0.0


def _shared_labels(
    stations: Sequence[tuple[tuple[float, float], list[str]]], within_m: float
) -> list[tuple[tuple[float, float], list[str]]]:
    """One label per group of stations too close for their labels not to overlap at the map's scale (within
    ``within_m`` of the group's first station, grouped as :func:`camera_stations` groups cameras), drawn at
    that first station. Its names take each station's first image before any station's second, and so on: a
    station of one image beside a mosaic was named nowhere when the mosaic's frames filled the label."""
    groups = camera_stations(
        [{"name": str(i), "center": centre} for i, (centre, _) in enumerate(stations)], within_m
    )
    return [(centre, _interleaved([stations[int(i)][1] for i in members])) for centre, members in groups]


def _interleaved(groups: Sequence[Sequence[str]]) -> list[str]:
    """The names of ``groups`` (one list a station), each group's first before any group's second, and so
    on: a label cut after a few names then names every station it stands for."""
    return [name for names in itertools.zip_longest(*groups) for name in names if name is not None]


def _station_label(names: list[str]) -> str:
    """The names of a station's images, at most ``_NAMES_PER_STATION`` lines, then how many more."""
    shown = names[:_NAMES_PER_STATION]
    more = len(names) - len(shown)
    return "\n".join(shown + ([f"+{more} more"] if more else []))


def axis_labels(entries: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The contact map's (horizontal, vertical) axis labels: the site frame's ``y`` across, ``x`` up.

    Cameras read from PDS ``"frame": "ned"`` files put north on ``x`` and west on ``y``: when every camera of
    the map came from one, the axes say so; otherwise they say the FLU directions (``x`` forward, ``y``
    left). Entries without ``source_frame`` count as FLU.
    """
    if entries and all(e.get("source_frame") == "ned" for e in entries):
        return "y (m, + west)", "x (m, + north)"
    return "y (m, + left)", "x (m, + forward)"


#: How the map draws a camera's view footprint and a camera position (the legend draws them the same).
_FOOTPRINT: dict[str, Any] = {"facecolor": "0.85", "edgecolor": "0.5", "alpha": 0.35, "lw": 0.8}
_CAMERA_MARKER: dict[str, Any] = {"marker": "^", "color": "k", "ms": 7}


def _contact_outline() -> list[Any]:
    """The contacts' path effects: a dark outline keeps bright (confident) colours visible over the light
    footprints."""
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=3.5, foreground="0.15"), patheffects.Normal()]


def _draw_legend(
    fig: Any, cmap: str, contacts: bool, cameras: bool, footprints: bool, max_range_m: float
) -> None:
    """A legend below the map naming each kind of thing drawn on it, and only those drawn: the contacts
    (their colour is the confidence of the colour bar), the camera positions and their views' footprints.
    Only the contacts had a key (the colour bar); a grey footprint could be read as a unit. Below the axes,
    outside them (``"outside"``: the constrained layout makes room), it hides neither contacts nor labels."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    if contacts:  # drawn in a confident contact's colour
        line = Line2D(
            [], [], color=colormaps[cmap](0.75), lw=2.0, label="contact on the ground (colour: confidence)"
        )
        line.set_path_effects(_contact_outline())
        handles.append(line)
    if cameras:
        handles.append(Line2D([], [], ls="none", label="camera position", **_CAMERA_MARKER))
    if footprints:
        handles.append(Patch(label=f"ground in the camera's view (to {max_range_m:g} m)", **_FOOTPRINT))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)


def _plot(path: Path, site: str | None, entries: list[dict[str, Any]], max_range_m: float) -> None:
    # The object-oriented Agg API: no pyplot global state, no backend switch for the caller's process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    norm = Normalize(0.0, 1.0)
    cmap = "viridis"
    segments, colours = [], []
    for e in entries:
        fp = e["footprint"]
        if len(fp):
            ax.fill(fp[:, 1], fp[:, 0], **_FOOTPRINT)
        for line in e["lines"]:
            g = np.asarray(line.ground_m, float)
            seg = np.stack([g[:-1, ::-1], g[1:, ::-1]], axis=1)  # plot (y, x)
            if line.vertex_confidence is not None and len(line.vertex_confidence) == len(g):
                vc = np.asarray(line.vertex_confidence, float)
                c = 0.5 * (vc[:-1] + vc[1:])
            else:
                c = np.full(len(seg), float(line.confidence))
            segments.append(seg)
            colours.append(c)
    if segments:
        lc = LineCollection(list(np.concatenate(segments)), cmap=cmap, norm=norm, linewidths=2.0)
        lc.set_array(np.concatenate(colours))
        lc.set_path_effects(_contact_outline())
        ax.add_collection(lc)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="contact confidence", shrink=0.8)
    stations = camera_stations(entries)
    for (cx, cy), _ in stations:
        ax.plot([cy], [cx], **_CAMERA_MARKER)
    _draw_legend(
        fig, cmap, bool(segments), bool(stations), any(len(e["footprint"]) for e in entries), max_range_m
    )
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.invert_xaxis()  # +y (left) is drawn on the left
    xlabel, ylabel = axis_labels(entries)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(map_title(site, entries, max_range_m), fontsize=9)
    ax.grid(True, lw=0.3, alpha=0.5)
    _lay_out_the_map(fig, ax)
    labels = _shared_labels(stations, max(_STATION_M, _LABEL_SHARE * _map_extent_m(entries)))
    if len(labels) <= _LABEL_LIMIT:
        _draw_station_labels(fig, ax, labels)
    _save_png(path, fig)


def _lay_out_the_map(fig: Any, ax: Any) -> None:
    """Lay the figure out twice (the constrained layout alone, no artist drawn), before its station labels.

    With ``adjustable="datalim"`` the map's limits follow its box's shape, its ticks follow its limits, and
    the layout follows its tick labels: a single pass from the figure's first box left a layout made for
    other tick labels than it drew (a y-axis label off the figure's left edge); the second settles it, so the
    final draw lays the figure out the same. The station labels take no part in the layout
    (:func:`_draw_station_labels` keeps them inside the map), so they are measured on this layout and need
    no pass of their own.
    """
    engine = fig.get_layout_engine()
    engine.execute(fig)
    engine.execute(fig)
    ax.apply_aspect()


def _save_png(path: Path, fig: Any) -> None:
    """Render ``fig`` once and write it to ``path`` as ``savefig(format="png")`` writes it.

    ``savefig`` lays the figure out in a pass that draws every artist without rendering and then renders it in
    a second: the map's labels were just measured on a laid-out figure, and that pass was one of the map's
    four (with the colour bar's and the ticks' text, the bulk of a map's time). Here the canvas is laid out
    and rendered in one ``draw`` (the same layout passes, so the same pixels), and its pixels written by
    ``matplotlib.image.imsave`` with the metadata ``savefig`` gives (``Software``: :func:`_is_map` reads it),
    at Pillow's fastest zlib level (:data:`_PNG_COMPRESS_LEVEL`). The figure's own size, dpi and colours are
    drawn; Matplotlib's ``savefig.*`` settings (rcParams) are not read.
    """
    from matplotlib.image import imsave

    fig.canvas.draw()
    pixels = fig.canvas.buffer_rgba()
    atomic_write(
        path,
        lambda fh: imsave(
            fh,
            pixels,
            format="png",
            origin="upper",
            dpi=fig.dpi,
            pil_kwargs={"compress_level": _PNG_COMPRESS_LEVEL},
        ),
    )


#: Pillow's zlib level for the map's PNG: 1, its fastest. Its default, 6, took 29 and 45 ms to write a map of
#: one and of 50 stations (1: 22 and 25 ms) for files 6-14 % smaller (68 and 220 kB, against 78 and 234).
_PNG_COMPRESS_LEVEL = 1


def _draw_station_labels(fig: Any, ax: Any, labels: list[tuple[tuple[float, float], list[str]]]) -> None:
    """Draw each label beside its station, inside the map; a label whose box, as drawn, overlaps one already
    drawn is merged into that one (its names joined as :func:`_shared_labels` joins them), until none overlap.

    Sharing by distance alone (:data:`_LABEL_SHARE`) left the four-line labels of a traverse's stations, and
    the labels of stations side by side (a label is wider than tall), drawn over each other: measured on the
    laid-out figure instead (:func:`_lay_out_the_map`), as Matplotlib will draw them. A label goes below-right
    of its station, or to its left or above it where it would cross the map's edge (:func:`_fit_in_the_map`):
    a label that hung past the map's right edge was given room by the layout, which squeezed the map and left
    a wide gap before the colour bar. So the labels take no part in the layout, and a merge needs no new one.
    Each label's box is measured when it is placed, and again only when a merge changes its text.
    """
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    kept: list[tuple[Any, list[list[str]]]] = []  # (annotation, each merged label's names)
    boxes: list[tuple[float, float, float, float]] = []  # each kept label's box as placed

    def measure(annotation: Any) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = _fit_in_the_map(annotation, renderer, inside).extents
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def merge_overlapping() -> bool:
        """Merge the first pair of kept labels (in ``itertools.combinations`` order) that overlap as placed
        (``Bbox.overlaps``: edges that touch overlap); whether there was one."""
        if len(boxes) < 2:
            return False
        b = np.asarray(boxes)
        x0, y0, x1, y1 = (b[:, k] for k in range(4))
        hit = (
            (x0[:, None] <= x1[None, :])
            & (x0[None, :] <= x1[:, None])
            & (y0[:, None] <= y1[None, :])
            & (y0[None, :] <= y1[:, None])
        )
        pairs = np.argwhere(np.triu(hit, k=1))  # row-major: the combinations' order
        if not len(pairs):
            return False
        i, j = (int(k) for k in pairs[0])
        (first, groups), (second, more) = kept[i], kept[j]
        second.remove()
        first.set_text(_station_label(_interleaved(groups + more)))
        kept[i] = (first, groups + more)
        del kept[j], boxes[j]
        boxes[i] = measure(first)
        return True

    for (cx, cy), names in labels:
        ann = _annotate_station(ax, cx, cy, names)
        kept.append((ann, [names]))
        boxes.append(measure(ann))
        while merge_overlapping():  # a merged label may grow onto another
            pass


#: A station label's offset from its marker, points: below-right, behind the camera, where its own contacts
#: are not.
_LABEL_OFFSET = (6.0, -4.0)


def _fit_in_the_map(annotation: Any, renderer: Any, inside: Any) -> Any:
    """Place a station label below-right of its marker, or left of it where it would cross the map's right
    edge, above it where it would cross the bottom; a label too wide for either side ends at the right edge.
    Returns its box as placed (display pixels). Clipped to the map, it never draws over the colour bar."""
    dx, dy = _LABEL_OFFSET
    annotation.set_horizontalalignment("left")
    annotation.set_verticalalignment("top")
    annotation.set_position((dx, dy))
    box = annotation.get_window_extent(renderer)
    if box.x1 > inside.x1:
        annotation.set_horizontalalignment("right")
        annotation.set_position((-dx, dy))
        left = annotation.get_window_extent(renderer)
        if left.x0 < inside.x0:  # fits neither side: ends at the right edge
            annotation.set_horizontalalignment("left")
            points = 72.0 / annotation.figure.dpi
            annotation.set_position((dx - (box.x1 - inside.x1) * points, dy))
    if box.y0 < inside.y0:
        annotation.set_verticalalignment("bottom")
        annotation.set_position((annotation.xyann[0], -dy))
    return annotation.get_window_extent(renderer)


def _annotate_station(ax: Any, cx: float, cy: float, names: list[str]) -> Any:
    """The label of the station at ``(cx, cy)`` (site frame), drawn below-right of its marker."""
    annotation = ax.annotate(
        _station_label(names),
        (cy, cx),
        xytext=_LABEL_OFFSET,  # below-right; moved to fit in the map by _fit_in_the_map
        textcoords="offset points",
        va="top",
        multialignment="left",  # its names aligned on the left on either side of the station
        fontsize=7,
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.7},
        clip_on=True,  # clipped to the map: a label wider than the map stays off the colour bar
    )
    annotation.set_in_layout(False)  # kept inside the map: it needs no room of the layout
    return annotation


def _check_map_paths(out: Path, names: Sequence[str]) -> None:
    """Refuse, before any map is written, a map name that something other than a file holds in ``out``.

    Raises:
        IsADirectoryError: Naming the path and what to do (a folder named ``contact_map.png`` made the
            rename of the written map fail with the temporary file's name and no advice).
    """
    for name in names:
        path = out / name
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise IsADirectoryError(
                f"cannot write the contact map {path}: {kind} of that name is in the output folder; move or "
                f"rename it (the map files are {', '.join(names)}), or predict with map=false"
            )


def build_contact_map(
    items: Iterable[MapItem],
    out_dir: str | os.PathLike[str],
    max_range_m: float = 30.0,
    *,
    camera_files: Mapping[str, str | os.PathLike[str] | None] | None = None,
    model: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``contact_map.geojson`` and ``contact_map.png`` for the ground contacts of ``items``.

    Args:
        items: ``(image name, lines, camera)`` per image, in any iterable (a generator too; read once).
            Lines without ``ground_m`` are projected with :func:`~marsunits.boundary.projection.add_ground`,
            and so are lines whose ``ground_m`` has fewer than two points (no ground line: e.g. an edited
            contact file); lines that have one are used as they are. Items whose camera is None are skipped
            (they cannot be placed on the ground).
        out_dir: Output folder (created; ``~`` is the home folder, not a folder named ``~``).
        max_range_m: Range limit for projection and for the drawn view footprints, metres.
        camera_files: Image name -> the camera file its camera was read from, named in the warning about a
            site split in two (below); images not in it are named alone.
        model: The model the contacts are of (``predict.py``: the checkpoint's name and ``network_sha256``,
            :func:`marsunits.inference.writers.model_record`), written as the GeoJSON's ``model`` member so
            that a map shared alone still names it; None leaves it out.

    Returns:
        The written paths. With one site: ``contact_map.geojson`` and ``contact_map.png``. With several
        sites, one pair per site: ``contact_map_<site>.geojson`` / ``.png`` (cameras without a site are
        grouped as ``unnamed``; sites whose file-safe names coincide get ``_2``, ``_3``, ... in name
        order; also those that differ in letter case only, which macOS and Windows do not tell apart in file
        names). Empty if no item has a camera.

    A site name shared by cameras in a PDS frame (``source_frame`` ``"ned"``: x north, y west, as
    ``camera.from_label`` writes a ``SITE_FRAME``) and cameras in a frame of their own (a pinhole's ``x_m``,
    ``y_m`` and ``yaw_deg``, x forward and y left; a CAHV file's ``"frame": "flu"``) is two frames, whose
    axes and origins agree only by chance: merged, a pinhole given ``"site": "SITE_62"`` put its contacts
    turned and shifted among the PDS ones without a word. Each part is its own map,
    ``contact_map_<site>_pds_frame.*`` and ``contact_map_<site>_own_frame.*`` (both titled with the site),
    and a warning (logged) names both parts' images and camera files, why, and the fix (another ``site`` in
    the files not in the PDS frame). Two maps rather than a refusal: each part's contacts are right in its
    own frame, and a name clash is no reason to draw neither.

    The GeoJSON is a FeatureCollection with one ``LineString`` feature per ground contact (coordinates
    ``[x, y]`` in metres in the site frame; properties ``image``, ``confidence``, ``site``, ``length_m``,
    ``length_px``, and ``contact_id`` where the line has one: the pieces of a contact split at the range
    limit share it, as in the per-image file) and the foreign members ``site``, ``units`` ("m"), ``frame``
    and ``cameras`` (per image: ``center_m`` and the view ``footprint_m`` polygon), and ``model`` where given.

    Raises:
        IsADirectoryError: A map's path in ``out_dir`` is a folder (or another non-file); raised before any
            map file is written, naming the path.
        TypeError: An item is not an ``(image name, lines, camera)`` triple, its lines are not a list of
            :class:`ContactLine` or its camera not a camera model or None (the message names it).
    """
    # Read once: a generator of triples (a notebook's comprehension) was used up by the check below and
    # gave an empty map, no file written and no word said.
    if isinstance(items, Mapping):  # its keys were read as items: "items[0] is a str"
        raise TypeError(
            "items must be (image name, contact lines, camera) per image, got a mapping; for "
            "{name: UnitMap}: [(name, r.contacts, r.camera) for name, r in it.items()]"
        )
    items = list(items)
    for i, item in enumerate(items):  # not Python's "cannot unpack non-iterable UnitMap object"
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            found = f"a {type(item).__name__}" + (
                f" of {len(item)}" if isinstance(item, (tuple, list)) else ""
            )
            parts = list(item) if isinstance(item, (tuple, list)) else [item]
            hint = (
                "; for a UnitMapper result r: (name, r.contacts, r.camera)"
                if any(hasattr(part, "contacts") for part in parts)
                else ""
            )
            raise TypeError(
                f"items[{i}] is {found}: give (image name, contact lines, camera) per image{hint}"
            )
        # Before any work: one line for the list failed as "'ContactLine' object is not iterable", and a
        # camera file's dict deep in the projection, after the images before it were projected.
        items[i] = (item[0], line_list(item[1], f"items[{i}]'s lines"), item[2])
        if item[2] is not None and not isinstance(item[2], CameraModel):
            raise TypeError(
                f"items[{i}]'s camera is a {type(item[2]).__name__}: give a camera model of "
                "marsunits.boundary.camera (load_camera(path), camera_from_dict(a dict)) or None"
            )
    # Keyed by site name and whether the camera is in a PDS frame (x north, y west): one name, two frames.
    groups: dict[tuple[str | None, bool], list[dict[str, Any]]] = {}
    for name, lines, camera in items:
        if camera is None:
            continue
        # A ground_m of fewer than two points (one point in a hand- or GIS-edited contact file: read as it
        # stands) is no ground line: projected again from its pixels, as a line without one. It was in
        # neither list and left the map without a word.
        ready = [ln for ln in lines if ln.ground_m is not None and len(ln.ground_m) >= 2]
        todo = [ln for ln in lines if ln.ground_m is None or len(ln.ground_m) < 2]
        ground = ready + add_ground(todo, camera, max_range_m=max_range_m)
        center = getattr(camera, "center", None)
        site = getattr(camera, "site", None)
        source_frame = getattr(camera, "source_frame", "flu")
        groups.setdefault((None if site is None else readable(str(site)), source_frame == "ned"), []).append(
            {
                "name": readable(str(name)),  # caf\xe9.png: matplotlib and strict JSON refuse caf\udce9
                "file": None if camera_files is None else camera_files.get(name),
                "lines": ground,
                "center": None if center is None else np.asarray(center, float),
                "footprint": view_footprint(camera, max_range_m),
                "source_frame": source_frame,
            }
        )
    out = expand_home(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stems: set[str] = set()
    split = {site for site, pds in groups if (site, not pds) in groups}  # one name, two frames
    # Sites in name order (unnamed last), a split one's PDS part first: the same folder gives the same file
    # names in every run.
    named: list[tuple[str, str | None, list[dict[str, Any]]]] = []
    for (site, pds), entries in sorted(
        groups.items(), key=lambda kv: (kv[0][0] is None, str(kv[0][0]), not kv[0][1])
    ):
        stem = "contact_map" if len(groups) == 1 else f"contact_map_{_safe(site or 'unnamed')}"
        if site in split:
            stem += _PDS_PART if pds else _OWN_PART
        base, k = stem, 1
        # "B/x" and "B x" both become B_x: number the second, never overwrite. Letter case aside too: macOS
        # and Windows file systems hold contact_map_SITE_A.png and contact_map_site_a.png as one file.
        while stem.casefold() in stems:
            k += 1
            stem = f"{base}_{k}"
        stems.add(stem.casefold())
        named.append((stem, site, entries))
    _check_map_paths(out, [f"{stem}.{ext}" for stem, _, _ in named for ext in ("geojson", "png")])
    for site in sorted(split, key=lambda s: (s is None, str(s))):
        _say_split_site(site, [(stem, entries) for stem, s, entries in named if s == site])
    for stem, site, entries in named:
        gj = out / f"{stem}.geojson"
        data = _geojson(site, entries, model)
        atomic_write_text(gj, json.dumps(data))
        png = out / f"{stem}.png"
        titled = site if site not in split else f"{site or '(unnamed)'}, {_part_name(entries)}"
        _plot(png, titled, entries, max_range_m)
        written += [gj, png]
    return written


#: The file-name endings of the two maps of a site name shared by cameras in a PDS frame and cameras in a
#: frame of their own (:func:`build_contact_map`).
_PDS_PART, _OWN_PART = "_pds_frame", "_own_frame"
#: The images (or camera files) a warning names in each part of a split site before "and N more".
_NAMED_IN_WARNING = 3


def _part_name(entries: Sequence[Mapping[str, Any]]) -> str:
    """What the map of one part of a split site holds, for its title: its cameras' frame in a few words."""
    if entries and entries[0].get("source_frame") == "ned":
        return "cameras in a PDS frame"
    return "cameras in a frame of their own"


def _camera_names(entries: Sequence[Mapping[str, Any]]) -> str:
    """The images of ``entries`` with their camera files where known, the first few, then how many more."""
    shown = [
        e["name"] if e.get("file") is None else f"{e['name']} ({readable(os.fspath(e['file']))})"
        for e in entries[:_NAMED_IN_WARNING]
    ]
    more = len(entries) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _say_split_site(site: str | None, parts: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> None:
    """Warn that ``site`` is drawn as two maps (``parts``: ``(stem, entries)``, the PDS part first), naming
    each part's images and camera files, why, and the fix."""
    (pds_stem, pds), (own_stem, own) = parts
    name = "no site (cameras without 'site')" if site is None else f"site {site!r}"
    log.warning(
        "%s is shared by cameras in a PDS frame (x north, y west): %s, and by cameras in a frame of their "
        "own (x forward, y left: a pinhole's x_m, y_m and yaw_deg, or a CAHV file's 'frame': 'flu'): %s. One "
        "name does not make one frame (their axes and origins agree only by chance), so they are drawn as "
        "two maps, %s.png and %s.png, not one; if they are different places, give the camera files not in "
        "the PDS frame another 'site'",
        name,
        _camera_names(pds),
        _camera_names(own),
        pds_stem,
        own_stem,
    )
