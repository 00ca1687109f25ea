"""PDS3 (ODL) labels, as MER and MSL products carry them (a detached ``.LBL`` or the label at the head of an
``.IMG``): the label's text up to its END statement (never the image data after it), parsed with ``pvl``
(imported only when a PDS3 label is read), and from it the camera model group, the image size, the frame
and its index, the missions named and the rover's place (:func:`_read_pds3`).

What is read: :mod:`marsunits.boundary.camera.from_label` (Labels read, PDS3).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

from marsunits.boundary.camera.label_camera import _VECTOR_COUNT, LabelCamera, LabelError, _model_of, _site_of
from marsunits.boundary.camera.label_ground import _PDS3_MISSION_KEYS, _missions_of, _set_ground
from marsunits.boundary.camera.label_pose import _Place, _set_pose, _unit_quaternion


def _number(value: Any, what: str, source: Path, unit: str = "") -> float:
    """A finite float from a label value (a pvl ``Quantity`` with a unit included)."""
    units = getattr(value, "units", None)
    if units is not None:
        value = value.value
        if unit == "m" and str(units).strip().lower() not in ("m", "meter", "meters", "metre", "metres"):
            raise LabelError(f"{source}: {what} is in {units!r}, expected metres; convert the label's value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise LabelError(
            f"{source}: {what} is {value!r}, not a finite number; the label's camera model is incomplete: "
            "use another product of the image"
        )
    return float(value)


def _vector(value: Any, what: str, source: Path, unit: str = "") -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise LabelError(f"{source}: {what} must be 3 numbers, got {value!r}; the label is damaged")
    return [_number(v, what, source, unit) for v in value]


def _read_pds3(path: Path) -> LabelCamera:
    with warnings.catch_warnings():  # pvl 1.x warns of its own deprecated Units class on import
        warnings.filterwarnings("ignore", "The pvl.collections.Units", PendingDeprecationWarning)
        import pvl  # imported here: a PDS4-only user never pays for it

    try:
        text = _pds3_text(path)
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    try:
        label = pvl.loads(text)
    except (pvl.exceptions.LexerError, pvl.exceptions.ParseError, ValueError, UnicodeError) as exc:
        said = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else str(exc)
        reason = " ".join(said.split())[:200]
        raise LabelError(
            f"cannot read label {path}: not a PDS3 (ODL) or PDS4 (XML) label ({reason}); give the product's "
            ".LBL, .IMG or .xml label"
        ) from exc
    label = _upper_keys(label)
    groups = _all(label, "GEOMETRIC_CAMERA_MODEL_PARMS", "GEOMETRIC_CAMERA_MODEL")
    if not groups:
        raise LabelError(
            f"{path}: no GEOMETRIC_CAMERA_MODEL_PARMS or GEOMETRIC_CAMERA_MODEL group, so no camera model; "
            "use a product whose label carries one (MER and MSL EDR/RDR labels do), or write the camera "
            "file by hand (docs/cameras.md)"
        )
    if len(groups) > 1 and any(dict(g) != dict(groups[0]) for g in groups[1:]):
        raise LabelError(
            f"{path}: {len(groups)} different camera model groups; which one belongs to the image cannot be "
            "told: write the camera file by hand from the one you trust (docs/cameras.md)"
        )
    group = groups[0]
    model_type = str(group.get("MODEL_TYPE", "")).strip().upper()
    model = _model_of(model_type, path)
    letters = ["C", "A", "H", "V", "O", "R", "E"][: _VECTOR_COUNT[model]]
    ids = group.get("MODEL_COMPONENT_ID")
    order = (
        [str(i).strip().upper() for i in ids]
        if isinstance(ids, (list, tuple))
        else ["C", "A", "H", "V", "O", "R", "E"]
    )
    vectors: dict[str, list[float]] = {}
    for letter in letters:
        if letter not in order:
            raise LabelError(f"{path}: MODEL_COMPONENT_ID {ids!r} names no {letter} for a {model_type} model")
        key = f"MODEL_COMPONENT_{order.index(letter) + 1}"
        if key not in group:
            raise LabelError(
                f"{path}: the {model_type} camera model has no {key} ({letter}); the label is damaged"
            )
        vectors[letter] = _vector(group[key], f"{key} ({letter})", path, "m" if letter == "C" else "")
    scalars: dict[str, float] = {}
    if model == "cahvore":  # T and P: MODEL_COMPONENT_8 and _9 unless MODEL_COMPONENT_ID places them
        for letter, place in (("T", 8), ("P", 9)):
            key = f"MODEL_COMPONENT_{order.index(letter) + 1 if letter in order else place}"
            if key not in group:
                raise LabelError(
                    f"{path}: the CAHVORE camera model has no {key} ({letter}, its "
                    f"{'type' if letter == 'T' else 'parameter'}); the label is damaged"
                )
            scalars[letter] = _number(group[key], f"{key} ({letter})", path)
    frame = str(group.get("REFERENCE_COORD_SYSTEM_NAME", "")).strip().upper()
    if not frame:
        raise LabelError(
            f"{path}: the camera model names no REFERENCE_COORD_SYSTEM_NAME, so the frame of its vectors is "
            "unknown; write the camera file by hand (docs/cameras.md)"
        )
    index = _pds3_index(_index_names(label, group), group.get("REFERENCE_COORD_SYSTEM_INDEX"))
    image = label.get("IMAGE")
    if not hasattr(image, "get") or image.get("LINES") is None or image.get("LINE_SAMPLES") is None:
        raise LabelError(
            f"{path}: no IMAGE object with LINES and LINE_SAMPLES, so the image size is unknown; give the "
            "label of the image product itself"
        )
    cam = LabelCamera(
        model=model,
        vectors=vectors,
        image_width=int(_number(image["LINE_SAMPLES"], "IMAGE LINE_SAMPLES", path)),
        image_height=int(_number(image["LINES"], "IMAGE LINES", path)),
        frame=frame,
        index=index,
        scalars=scalars,
        missions=_missions_of(
            [
                v
                for key in _PDS3_MISSION_KEYS
                if key in label
                for value in label.getall(key)
                for v in (value if isinstance(value, (list, tuple)) else [value])
            ]
        ),
    )
    rover_places = []
    for key in _ROVER_GROUPS:
        for rover in _all(label, key):
            names = rover.get("COORDINATE_SYSTEM_INDEX_NAME")
            own = _pds3_index(names, rover.get("COORDINATE_SYSTEM_INDEX"))
            ref = rover.get("REFERENCE_COORD_SYSTEM_INDEX")
            ref_site = (
                _pds3_index(None, ref)[0][1] if ref is not None and _pds3_index(None, ref) else _site_of(own)
            )
            offset = rover.get("ORIGIN_OFFSET_VECTOR")
            turn = rover.get("ORIGIN_ROTATION_QUATERNION")
            quaternion, why = (
                (None, f"its {key} has no ORIGIN_ROTATION_QUATERNION")
                if turn is None
                else _unit_quaternion(
                    list(turn) if isinstance(turn, (list, tuple)) else [turn],
                    f"{key} ORIGIN_ROTATION_QUATERNION",
                )
            )
            rover_places.append(
                _Place(
                    frame=str(rover.get("COORDINATE_SYSTEM_NAME", "")).strip().upper(),
                    index=own,
                    ref=str(rover.get("REFERENCE_COORD_SYSTEM_NAME", "")).strip().upper(),
                    ref_site=ref_site,
                    offset=None if offset is None else _vector(offset, "ORIGIN_OFFSET_VECTOR", path, "m"),
                    quaternion=quaternion,
                    quaternion_note=why,
                    source=key,
                )
            )
    _set_ground(cam, rover_places)
    _set_pose(cam, rover_places)
    return cam


#: The most label text read from a file; real PDS3 labels are tens of kB.
_PDS3_LABEL_LIMIT = 1 << 20
#: The tokens that find a PDS3 label's END statement: a quoted string (which may span lines) or a comment,
#: skipped whole so that an END line inside one is not taken for the label's end; the END statement itself,
#: as ODL reads it (any case, first on its line after blanks, a line ending in LF, CR LF or CR, followed by
#: anything but a name character, so not END_GROUP / END_OBJECT: a blank, a line end, padding, binary data
#: or the end of the file); and an opening quote or comment that is not closed in the text read so far.
_PDS3_TOKENS = re.compile(
    rb'"[^"]*"|/\*.*?\*/|(?P<end>(?<![^\r\n])[ \t]*[Ee][Nn][Dd](?![A-Za-z0-9_]))|(?P<open>"|/\*)', re.DOTALL
)


def _pds3_end(data: bytes, complete: bool) -> int | None:
    """Where the END statement of the PDS3 label at the head of ``data`` ends, or None where ``data`` holds
    none yet: the END that pvl's parser stops at, never one inside a quoted string or a comment.

    Args:
        data: The file's first bytes.
        complete: Whether ``data`` is the whole file; if not, an END at its very end (it may go on as
            ``END_GROUP``) or an open string or comment waits for more.
    """
    for m in _PDS3_TOKENS.finditer(data):
        if m.group("open") is not None:  # a string or comment not closed yet: the END may lie beyond it
            return None
        if m.group("end") is not None:
            return m.end() if complete or m.end() < len(data) else None
    return None


def _pds3_text(path: Path) -> str:
    """The PDS3 label of ``path``, up to and including its END statement: never the binary image data that
    follows an attached label in an ``.IMG`` (the file is read in chunks up to the END, never whole). The END
    is found as ODL reads it (:data:`_PDS3_TOKENS`): in any case, after LF, CR LF or CR line ends, followed by
    a line end, blanks or padding, and never inside a quoted string or a comment.
    Decoded as UTF-8 or, where it is not UTF-8 (a Latin-1 degree sign or accent in a comment), as Latin-1.

    pvl's own ``load`` read the whole file, and where it was not text, byte by byte up to the first byte that
    is not UTF-8 on its own: an accent in a comment, in an attached label or in a Latin-1 one, cut the label
    there and it was refused as "not a PDS3 label".

    Raises:
        LabelError: If no END statement comes within the first MiB (read as a truncated label).
        OSError: If the file cannot be read.
    """
    data = b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 16)
            data += chunk
            end = _pds3_end(data, complete=not chunk)
            if end is not None:
                data = data[:end]
                break
            if not chunk:  # no END (a label whose last line is cut, say): pvl says what is wrong
                break
            if len(data) > _PDS3_LABEL_LIMIT:
                raise LabelError(
                    f"cannot read label {path}: no END statement in its first {_PDS3_LABEL_LIMIT >> 20} MiB, "
                    "so the label is truncated or damaged; give the product's complete .LBL or .IMG"
                )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _upper_keys(block: Any) -> Any:
    """A parsed PDS3 label with its keywords and group and object names in upper case, at every depth: ODL
    reads them in any case (``model_type`` is ``MODEL_TYPE``), pvl keeps them as written. Values are kept as
    they are (those compared, frame and model names, are compared in upper case)."""
    from pvl.collections import MutableMappingSequence

    return type(block)(
        [
            (key.upper(), _upper_keys(value) if isinstance(value, MutableMappingSequence) else value)
            for key, value in block.items()
        ]
    )


def _all(label: Any, *keys: str) -> list[Any]:
    """Every group of the label named one of ``keys`` (pvl's ``getall`` raises KeyError for none)."""
    return [value for key in keys if key in label for value in label.getall(key)]


def _index_names(label: Any, group: Any) -> Any:
    """The names of the camera model's frame index: the group's ``COORDINATE_SYSTEM_INDEX_NAME`` or, where it
    gives none (MER's ``GEOMETRIC_CAMERA_MODEL``), the label's ``ROVER_MOTION_COUNTER_NAME`` when it names as
    many entries as the index has (a rover frame's index is the rover motion counter). Unnamed, every entry
    of the index made the site, the mast's and arm's counters too, so each frame of a mosaic, taken after a
    mast move, was a site of its own."""
    names = group.get("COORDINATE_SYSTEM_INDEX_NAME")
    if names is not None:
        return names
    counter = label.get("ROVER_MOTION_COUNTER_NAME")
    values = group.get("REFERENCE_COORD_SYSTEM_INDEX")
    if (
        isinstance(counter, (list, tuple))
        and isinstance(values, (list, tuple))
        and len(counter) == len(values)
    ):
        return counter
    return None


def _pds3_index(names: Any, values: Any) -> list[tuple[str | None, int]]:
    """A PDS3 index (one number or a list) with its names where the label gives them."""
    if values is None:
        return []
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    names = list(names) if isinstance(names, (list, tuple)) else []
    out: list[tuple[str | None, int]] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            continue
        out.append((str(names[i]).strip().upper() if i < len(names) else None, v))
    return out


#: The groups that give the rover's place: JPL MIPL's MSL archive name (its detached-label translation renames
#: VICAR's ROVER_COORDINATE_SYSTEM so), MSSS's, and the VICAR name that MER labels carry.
_ROVER_GROUPS = ("ROVER_COORD_SYSTEM_PARMS", "ROVER_COORDINATE_SYSTEM_PARMS", "ROVER_COORDINATE_SYSTEM")
