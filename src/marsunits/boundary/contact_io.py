"""Read and write contact lines as GeoJSON: one format for true contacts and predicted ones.

Format (DESIGN.md): a ``FeatureCollection`` of ``LineString`` features whose geometry is in **pixel
coordinates** (``x`` = column, ``y`` = row, origin at the corner of the top-left pixel). Properties:

* ``length_px`` (float): length of the line in pixels;
* ``confidence`` (float in [0, 1]): 1.0 for ground truth;
* ``vertex_confidence`` (optional list of floats in [0, 1]): one per vertex;
* ``ground_m`` (optional list of ``[x, y]``): the same line on the ground, metres in the camera's site
  frame (see :mod:`marsunits.boundary.camera.pinhole`), possibly with fewer vertices where rays miss; a
  reader takes ``[]`` (or null) as no ground line, and a list of one point as it stands (the contact map
  projects such a line again from its pixels);
* ``length_m`` and ``site`` (optional): ground length and the site frame's name;
* ``contact_id`` (optional int): which extracted contact the feature belongs to. ``predict.py`` numbers its
  contacts before projecting them; a contact that leaves the camera's ground range is split there into
  several features that share its id, so the number of contacts does not depend on whether a camera is known
  (:func:`count_contacts`).

The collection itself carries ``image_width`` and ``image_height`` so a reader can check it against its
image. Files are written to a temporary name and renamed, so a reader never sees half a file. A reader
takes 3-D positions ``[x, y, z]`` (legal GeoJSON, e.g. from a GIS) as ``[x, y]``, and refuses any other
malformed file with a ValueError naming it.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.atomic import atomic_write_text
from marsunits.user_paths import expand_home


@dataclass
class ContactLine:
    """One contact line.

    Attributes:
        pixels: (K, 2) float array of ``(x, y)`` pixel coordinates (``x`` = column, ``y`` = row, origin at the
            corner of the top-left pixel, so the first pixel's centre is ``(0.5, 0.5)``), K >= 2.
        confidence: Line confidence in [0, 1].
        vertex_confidence: Optional (K,) per-vertex confidence in [0, 1].
        ground_m: Optional (M, 2) array of site-frame ``(x, y)`` in metres (M == K for lines from
            :func:`~marsunits.boundary.projection.add_ground`).
        site: Optional site-frame name.
        extra: Further GeoJSON properties, written and read as they are (``contact_id``, see the module).
    """

    pixels: np.ndarray
    confidence: float = 1.0
    vertex_confidence: np.ndarray | None = None
    ground_m: np.ndarray | None = None
    site: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def length_px(self) -> float:
        """Polyline length in pixels."""
        return float(np.linalg.norm(np.diff(self.pixels, axis=0), axis=1).sum())

    @property
    def length_m(self) -> float | None:
        """Ground polyline length in metres, or None without ground coordinates."""
        if self.ground_m is None or len(self.ground_m) < 2:
            return None
        return float(np.linalg.norm(np.diff(self.ground_m, axis=0), axis=1).sum())


def length_weighted_mean(values: np.ndarray, points: np.ndarray) -> float:
    """Mean of per-vertex ``values`` ``(K,)`` along the polyline ``points`` ``(K, 2)``, each vertex weighted
    by half the length of its adjacent segments (a line's confidence from its vertices'); the plain mean
    when the line has no length."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    weights = np.zeros(len(points))
    weights[:-1] += 0.5 * seg
    weights[1:] += 0.5 * seg
    if weights.sum() > 0:
        return float(np.average(values, weights=weights))
    return float(np.mean(values))


CONTACT_ID = "contact_id"


def number_contacts(lines: Sequence[ContactLine]) -> list[ContactLine]:
    """``lines`` with ``extra["contact_id"]`` set to their index (inputs are not modified).

    Called on freshly extracted contacts, before anything splits them (ground projection), so pieces of one
    contact keep its number.
    """
    return [replace(line, extra={**line.extra, CONTACT_ID: i}) for i, line in enumerate(lines)]


def line_list(lines: Any, name: str, *, arrays: bool = False) -> list[Any]:
    """``lines`` as a list, checked to be a collection of :class:`ContactLine` (or, with ``arrays``, also
    ``(K, 2)`` arrays of ``(x, y)`` pixels), so a caller's mistake is named instead of failing deep inside.

    Raises:
        TypeError: A single line given for the list (``[line]`` was meant), or an item of another kind.
    """
    kinds = "ContactLine objects" + (" or (K, 2) arrays of (x, y) pixels" if arrays else "")
    kind = "a ContactLine" + (" or a (K, 2) array of (x, y) pixels" if arrays else "")
    if isinstance(lines, ContactLine) or (isinstance(lines, np.ndarray) and lines.ndim == 2):
        # A ContactLine failed as "not iterable"; a (K, 2) array was read as K lines of one point each.
        raise TypeError(f"{name} must be a list of {kinds}, got one {type(lines).__name__}; give [it]")
    if isinstance(lines, (str, bytes, Mapping)) or not isinstance(lines, Iterable):
        raise TypeError(f"{name} must be a list of {kinds}, got {type(lines).__name__} {lines!r:.60}")
    items = list(lines)
    for i, item in enumerate(items):
        if not isinstance(item, ContactLine) and not (arrays and _array_like(item)):
            fix = "; wrap each array: ContactLine(pixels=array)" if _array_like(item) else ""
            raise TypeError(f"{name}[{i}] must be {kind}, got {type(item).__name__}{fix}")
    return items


def _array_like(item: Any) -> bool:
    """Whether ``item`` is an array (numpy, torch) or a nested list, not a string or a mapping."""
    return hasattr(item, "__array__") or isinstance(item, (list, tuple))


def count_contacts(lines: Sequence[ContactLine]) -> int:
    """How many contacts ``lines`` hold: features sharing a ``contact_id`` count once, lines without one
    count one each."""
    ids = [line.extra.get(CONTACT_ID) for line in lines]
    return len({i for i in ids if i is not None}) + sum(i is None for i in ids)


def contacts_to_geojson(
    lines: Sequence[ContactLine],
    image_width: int,
    image_height: int,
    members: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the GeoJSON dict for ``lines`` of an image of the given size (pixels); ``members`` are extra
    top-level members of the collection (``predict.py``: ``image_greyscale``).

    Raises:
        ValueError: A line that :func:`read_contacts` would refuse, naming it by its index: fewer than two
            positions, a coordinate, confidence or ground point that is NaN or infinite (JSON has no such
            numbers), a confidence outside [0, 1], or not one vertex confidence per vertex.
        TypeError: ``lines`` is not a collection of :class:`ContactLine` (one line, or bare arrays).
    """
    features = []
    for i, line in enumerate(line_list(lines, "lines")):
        pix = np.asarray(line.pixels, dtype=float)
        if pix.ndim != 2 or pix.shape[1] != 2 or len(pix) < 2:
            raise ValueError(f"a contact line needs (K>=2, 2) pixel coordinates, got shape {pix.shape}")
        _check_finite(line, pix, i)
        props: dict[str, Any] = {
            "length_px": round(line.length_px, 3),
            "confidence": round(float(line.confidence), 4),
        }
        if line.vertex_confidence is not None:
            props["vertex_confidence"] = [round(float(c), 4) for c in line.vertex_confidence]
        if line.ground_m is not None and len(line.ground_m) >= 2:
            props["ground_m"] = np.round(np.asarray(line.ground_m, dtype=float), 4).tolist()
            props["length_m"] = round(float(line.length_m or 0.0), 4)
            if line.site is not None:
                props["site"] = line.site
        props.update(line.extra)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": np.round(pix, 3).tolist()},
                "properties": props,
            }
        )
    return {
        "type": "FeatureCollection",
        "image_width": int(image_width),
        "image_height": int(image_height),
        **dict(members or {}),
        "features": features,
    }


def _check_finite(line: ContactLine, pix: np.ndarray, i: int) -> None:
    """Refuse line ``i`` if a value would be written as JSON's non-standard ``NaN`` / ``Infinity`` (a file
    strict readers and :func:`read_contacts` refuse) or its confidences are not what the reader accepts."""
    where = f"contact line {i}"
    if not np.isfinite(pix).all():
        raise ValueError(
            f"{where}: pixels must be finite numbers (no NaN or infinity), got {reprlib.repr(pix)}"
        )
    if not _is_number(float(line.confidence)) or not 0.0 <= line.confidence <= 1.0:
        raise ValueError(f"{where}: confidence must be a number in [0, 1], got {line.confidence!r}")
    if line.vertex_confidence is not None:
        vc = np.asarray(line.vertex_confidence, dtype=float)
        if vc.shape != (len(pix),) or not np.all((vc >= 0) & (vc <= 1)):
            raise ValueError(
                f"{where}: vertex_confidence must be one number in [0, 1] per vertex ({len(pix)}), got "
                f"{reprlib.repr(vc)}"
            )
    if line.ground_m is not None and not np.isfinite(np.asarray(line.ground_m, dtype=float)).all():
        raise ValueError(
            f"{where}: ground_m must be finite metres (no NaN or infinity; leave it None where a vertex has "
            f"no ground), got {reprlib.repr(line.ground_m)}"
        )


def write_contacts(
    path: str | os.PathLike[str],
    lines: Sequence[ContactLine],
    image_width: int,
    image_height: int,
    members: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``lines`` to ``path`` atomically (temporary file, then rename; ``~`` is the home folder).
    Returns the path.

    Raises:
        TypeError, ValueError: As :func:`contacts_to_geojson`.
        IsADirectoryError: ``path`` is a folder.
    """
    data = contacts_to_geojson(lines, image_width, image_height, members)
    target = expand_home(path)
    if target.is_dir():  # "Is a directory: '.<name>.<pid>...tmp' -> '<name>'", naming a temporary file
        raise IsADirectoryError(
            f"{target} is a folder; give the contact file's path, e.g. {target / 'image.contact.geojson'}"
        )
    return atomic_write_text(target, _dumps(data, path))


def update_contact_members(path: str | os.PathLike[str], members: Mapping[str, Any]) -> Path:
    """Set top-level ``members`` of an existing contact file (atomically), the lines left as they are:
    the file then holds what :func:`write_contacts` would have written with those members (``~`` is the
    home folder)."""
    path = expand_home(path)
    data = json.loads(path.read_text())
    data.update(members)
    return atomic_write_text(path, _dumps(data, path))


def _dumps(data: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """``data`` as strict JSON (RFC 8259 has no NaN or Infinity; ``json.dumps`` would write them bare)."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"cannot write contact file {path}: a value is NaN or infinite ({exc})") from exc


def read_contacts(path: str | os.PathLike[str]) -> tuple[list[ContactLine], tuple[int, int] | None]:
    """Read a contact GeoJSON file (``~`` is the home folder).

    Returns:
        The lines, and ``(image_width, image_height)`` if the file records it.

    Raises:
        ValueError: If the file cannot be read or is not a valid contact file (see
            :func:`read_contact_collection`); the message names the file and what is wrong.
    """
    lines, members = read_contact_collection(path)
    size = None
    if "image_width" in members and "image_height" in members:
        size = (int(members["image_width"]), int(members["image_height"]))
    return lines, size


def read_contact_collection(path: str | os.PathLike[str]) -> tuple[list[ContactLine], dict[str, Any]]:
    """Read a contact GeoJSON file: its lines and the collection's other top-level members
    (``image_width``, ``image_height``, and what the writer added, e.g. ``image_greyscale``); ``~`` is the
    home folder.

    Raises:
        ValueError: If the file cannot be read (not UTF-8 JSON), is not a FeatureCollection whose
            ``features`` are LineString Features of two or more finite ``[x, y]`` (or ``[x, y, z]``)
            positions, has a property of the wrong type (``confidence`` not a number in [0, 1],
            ``vertex_confidence`` not one such number per vertex, ``ground_m`` not finite ``[x, y]``
            pairs (``[]`` or null is no ground line), ...), or
            records an ``image_width`` / ``image_height`` that is not a whole number of pixels. The message
            names the file, the feature and what is wrong: a malformed file is never a KeyError or
            TypeError (the evaluation records a ValueError against the image and goes on).
    """
    path = expand_home(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read contact file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        found = f"type {data.get('type')!r}" if isinstance(data, dict) else f"a {_kind(data)}"
        raise ValueError(
            f'{path} is not a GeoJSON FeatureCollection (a JSON object with "type": "FeatureCollection" '
            f'and a "features" list), got {found}'
        )
    lines = _lines_from_features(data, path)
    members = {k: v for k, v in data.items() if k not in ("type", "features")}
    for key in ("image_width", "image_height"):
        if key in members and not _is_pixel_count(members[key]):
            raise ValueError(f"{path}: {key!r} must be a whole number of pixels > 0, got {members[key]!r}")
    return lines, members


def as_stored(lines: Sequence[ContactLine]) -> list[ContactLine]:
    """``lines`` as :func:`read_contacts` will read them back from :func:`write_contacts`'s file: pixel
    coordinates to 1e-3 px, ground to 0.1 mm, confidences to 1e-4 (``extra`` kept).

    A run that predicts an image and a later run that skips it (reading its file) then report the same
    lengths, scores and contact map to the last digit.
    """
    data = contacts_to_geojson(lines, 0, 0)
    stored = _lines_from_features(data, Path("<memory>"))
    for line, original in zip(stored, lines, strict=True):
        line.extra.update(original.extra)
    return stored


def _lines_from_features(data: dict[str, Any], path: Path) -> list[ContactLine]:
    """The lines of a parsed FeatureCollection ``data`` read from ``path``.

    Raises:
        ValueError: Naming ``path``, the feature and what is wrong, if ``features`` is not a list of
            LineString Features with valid coordinates and properties.
    """
    features = data.get("features")
    if not isinstance(features, list):
        found = "it is missing" if "features" not in data else f"got {reprlib.repr(features)}"
        raise ValueError(f"{path}: 'features' must be a list of GeoJSON Feature objects; {found}")
    return [_line_from_feature(feat, f"{path}: feature {i}", path, i) for i, feat in enumerate(features)]


def _line_from_feature(feat: Any, where: str, path: Path, i: int) -> ContactLine:
    """One Feature as a line; ``where`` (file and feature number) starts every error message."""
    if not isinstance(feat, dict):
        raise ValueError(f"{where} is a {_kind(feat)}, expected a GeoJSON Feature object")
    geom = feat.get("geometry") or {}
    if not isinstance(geom, dict) or geom.get("type") != "LineString":
        found = geom.get("type") if isinstance(geom, dict) else _kind(geom)
        raise ValueError(f"{where} is a {found!r}, expected a LineString")
    props = feat.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise ValueError(f"{where}: 'properties' must be a JSON object or null, got a {_kind(props)}")
    confidence = props.get("confidence", 1.0)
    if not _is_number(confidence) or not 0.0 <= confidence <= 1.0:
        raise ValueError(
            f"{where}: 'confidence' must be a number in [0, 1] (1 for a true contact; it may be left out), "
            f"got {confidence!r}"
        )
    site = props.get("site")
    if site is not None and not isinstance(site, str):
        raise ValueError(f"{where}: 'site' must be a name (a JSON string) or null, got {site!r}")
    pixels = _positions(geom.get("coordinates"), where)
    vertex_confidence = _number_array(props, "vertex_confidence", 1, "one number per vertex", where)
    # One per vertex, each in [0, 1]: a list one short was read as it stood, and projecting the image's lines
    # together (the contact map) shifted every later line's confidences onto the wrong vertices.
    if vertex_confidence is not None and (
        len(vertex_confidence) != len(pixels)
        or not np.all((vertex_confidence >= 0) & (vertex_confidence <= 1))
    ):
        raise ValueError(
            f"{where}: 'vertex_confidence' must be one number in [0, 1] per vertex ({len(pixels)} here; it "
            f"may be left out), got {reprlib.repr(props['vertex_confidence'])}"
        )
    return ContactLine(
        pixels=pixels,
        confidence=float(confidence),
        vertex_confidence=vertex_confidence,
        ground_m=_number_array(props, "ground_m", 2, "a list of [x, y] in metres", where, empty_is_none=True),
        site=site,
        extra=_kept_properties(props, path, i),
    )


def _positions(coordinates: Any, where: str) -> np.ndarray:
    """``(K, 2)`` float pixel coordinates of a LineString's ``coordinates``: K >= 2 positions ``[x, y]``, or
    ``[x, y, z]`` (GeoJSON's optional third number, a height: dropped), all finite JSON numbers.

    Raises:
        ValueError: Starting with ``where``, saying what the coordinates must be and what they were.
    """
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        raise ValueError(
            f"{where}: 'coordinates' must be a list of 2 or more positions [x, y] (pixels), got "
            f"{reprlib.repr(coordinates)}"
        )
    try:
        arr = np.asarray(coordinates)
    except ValueError:  # positions of different lengths
        arr = np.zeros((0,))
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{where}: each position of 'coordinates' must be [x, y] or [x, y, z] (JSON numbers, pixels; z "
            f"is dropped), got {reprlib.repr(coordinates)}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: 'coordinates' must be finite numbers, got {reprlib.repr(coordinates)}")
    return arr[:, :2].astype(float)


def _number_array(
    props: dict[str, Any], key: str, ndim: int, what: str, where: str, empty_is_none: bool = False
) -> np.ndarray | None:
    """Optional property ``key`` as a float array of ``ndim`` dimensions (2: pairs) of finite numbers, or
    None when absent or null, and with ``empty_is_none`` also when an empty list (``[]``: what GIS tools
    and hand edits write for "none").

    Raises:
        ValueError: Starting with ``where``, when the property is not ``what`` (a string, pairs of another
            length, a NaN or infinity, ...).
    """
    value = props.get(key)
    if value is None or (empty_is_none and isinstance(value, list) and not value):
        return None
    try:
        arr = np.asarray(value)
    except ValueError:  # rows of different lengths
        arr = np.zeros((0,))
    if (
        arr.ndim != ndim
        or (ndim == 2 and arr.shape[1] != 2)
        or arr.dtype.kind not in "iuf"
        or not np.isfinite(arr).all()
    ):
        raise ValueError(f"{where}: {key!r} must be {what} (JSON numbers), got {reprlib.repr(value)}")
    return arr.astype(float)


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (a boolean is not)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _is_pixel_count(value: Any) -> bool:
    """Whether ``value`` is a whole number of pixels > 0 (``64`` or ``64.0``, not ``"64"`` or ``63.5``)."""
    return _is_number(value) and value == int(value) and value > 0


def _kind(value: Any) -> str:
    """What a parsed JSON value is, for a message: "list", "JSON object", "string", ..."""
    names = {dict: "JSON object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _kept_properties(props: dict[str, Any], path: Path, i: int) -> dict[str, Any]:
    """The properties read back into ``extra`` (so writing the lines again keeps them): ``contact_id``."""
    if CONTACT_ID not in props:
        return {}
    value = props[CONTACT_ID]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: feature {i} has {CONTACT_ID} {value!r}, expected an integer")
    return {CONTACT_ID: value}
