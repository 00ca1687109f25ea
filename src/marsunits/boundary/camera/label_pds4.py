"""PDS4 (XML) labels, the Mars 2020 archive form: the ``geom:`` discipline dictionary's camera model (that of
the Telemetry geometry state where a label holds several that differ), its frame and index, the image size
of the product's image array, the missions named and the rover's place (:func:`_read_pds4`).

What is read: :mod:`marsunits.boundary.camera.from_label` (Labels read, PDS4).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from marsunits.boundary.camera.label_camera import _VECTOR_COUNT, LabelCamera, LabelError, _model_of, _site_of
from marsunits.boundary.camera.label_ground import _missions_of, _set_ground
from marsunits.boundary.camera.label_pose import _Place, _set_pose, _unit_quaternion

__all__ = ["GEOM_NS", "PDS_NS"]


GEOM_NS = "http://pds.nasa.gov/pds4/geom/v1"
PDS_NS = "http://pds.nasa.gov/pds4/pds/v1"
_G = f"{{{GEOM_NS}}}"
_P = f"{{{PDS_NS}}}"
#: The PDS4 geometry state of the geometry the rover reported (geom dictionary, ``geometry_state``).
_TELEMETRY = "Telemetry"


def _read_pds4(path: Path) -> LabelCamera:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, UnicodeError) as exc:
        raise LabelError(
            f"cannot read label {path}: not well-formed XML ({exc}); give the product's PDS4 .xml label"
        ) from exc
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}; check the path") from exc
    if not root.tag.startswith(_P):
        raise LabelError(
            f"{path}: XML, but not a PDS4 label (root {root.tag!r}, expected the namespace {PDS_NS}); "
            "give the product's PDS4 .xml label"
        )
    definitions = {
        (ident.text or "").strip(): d
        for d in root.iter(f"{_G}Coordinate_Space_Definition")
        for ident in d.findall(f"{_P}local_identifier")
    }
    # Camera models, each with the geometry block (Geometry_Lander) that holds it and that block's state.
    found: list[tuple[str, ET.Element, ET.Element]] = []
    for lander in root.iter(f"{_G}Geometry_Lander"):
        # geom dictionary, geometry_state: "If not present, the semantics of "Telemetry" should be assumed"
        state = (lander.findtext(f"{_G}geometry_state") or "").strip() or _TELEMETRY
        found += [(state, cmp, lander) for cmp in lander.iter(f"{_G}Camera_Model_Parameters")]
    in_lander = {id(c) for _, c, _ in found}
    found += [
        ("", cmp, root) for cmp in root.iter(f"{_G}Camera_Model_Parameters") if id(cmp) not in in_lander
    ]
    if not found:
        raise LabelError(
            f"{path}: no geom:Camera_Model_Parameters, so no camera model; use a product whose label carries "
            "one (the Mars 2020 camera products do), or write the camera file by hand (docs/cameras.md)"
        )
    models = [(state, scope, _pds4_camera(cmp, definitions, path)) for state, cmp, scope in found]
    telemetry = [m for m in models if m[0].lower() == _TELEMETRY.lower()]
    if telemetry:  # the geometry the rover reported (another state is e.g. "Initial", before onboard updates)
        if len({repr(m[2]) for m in telemetry}) > 1:
            # the dictionary: several blocks of one state are told apart by their local_identifier
            blocks = ", ".join(
                (scope.findtext(f"{_P}local_identifier") or "").strip() or "(no local_identifier)"
                for _, scope, _ in telemetry
            )
            raise LabelError(
                f"{path}: {len(telemetry)} different camera models of the Telemetry state (geometry blocks "
                f"named Telemetry or without a geom:geometry_state; their local_identifier: {blocks}); which "
                "belongs to the image cannot be told: write the camera file by hand from the one you trust "
                "(docs/cameras.md)"
            )
        models = telemetry
    elif len({repr(m[2]) for m in models}) > 1:
        states = sorted({m[0] or "(none)" for m in models})
        raise LabelError(
            f"{path}: {len(models)} different camera models (geometry states {states}) and not one "
            "of state Telemetry; which belongs to the image cannot be told: write the camera file by "
            "hand from the one you trust (docs/cameras.md)"
        )
    _, scope, (model, vectors, frame, index, scalars) = models[0]
    width, height = _pds4_image_size(root, path)
    cam = LabelCamera(
        model=model,
        vectors=vectors,
        image_width=width,
        image_height=height,
        frame=frame,
        index=index,
        scalars=scalars,
        missions=_missions_of(
            [
                (el.text or "")
                for tag in ("Investigation_Area", "Observing_System_Component")
                for area in root.iter(f"{_P}{tag}")
                for el in [*area.findall(f"{_P}name"), *area.iter(f"{_P}lid_reference")]
            ]
        ),
    )
    rover_places = []
    for d in scope.iter(f"{_G}Coordinate_Space_Definition"):
        own, own_index = _pds4_frame(d.find(f"{_G}Coordinate_Space_Present"), definitions)
        ref, ref_index = _pds4_frame(d.find(f"{_G}Coordinate_Space_Reference"), definitions)
        offset_el = d.find(f"{_G}Vector_Origin_Offset")
        offset = (
            None
            if offset_el is None or len(offset_el) < 3
            else [_xml_number(c, "geom:Vector_Origin_Offset", path, True) for c in list(offset_el)[:3]]
        )
        quaternion, why = _pds4_quaternion(d.find(f"{_G}Quaternion_Plus_Direction"))
        rover_places.append(
            _Place(
                frame=own.upper(),
                index=own_index,
                ref=ref.upper(),
                ref_site=_site_of(ref_index),
                offset=offset,
                quaternion=quaternion,
                quaternion_note=why,
                source="geom:Coordinate_Space_Definition",
            )
        )
    _set_ground(cam, rover_places)
    _set_pose(cam, rover_places)
    return cam


def _pds4_quaternion(
    element: ET.Element | None,
) -> tuple[tuple[float, float, float, float] | None, str]:
    """A ``geom:Quaternion_Plus_Direction`` as ``(s, v1, v2, v3)``, or ``(None, why not)``. Only the
    ``Forward`` direction (the one Mars 2020 labels give, checked against their ``geom:Derived_Geometry``) is
    read: the other would be the inverse turn, and is not guessed at."""
    what = "geom:Quaternion_Plus_Direction"
    if element is None:
        return None, f"its geom:Coordinate_Space_Definition has no {what}"
    direction = (element.findtext(f"{_G}rotation_direction") or "Forward").strip()
    if direction.lower() != "forward":
        return None, f"its {what} has rotation_direction {direction!r} (only 'Forward' is read)"
    values = [(element.findtext(f"{_G}{n}") or "").strip() for n in ("qcos", "qsin1", "qsin2", "qsin3")]
    return _unit_quaternion(values, what)


def _pds4_camera(
    cmp: ET.Element, definitions: dict[str, ET.Element], path: Path
) -> tuple[str, dict[str, list[float]], str, list[tuple[str | None, int]], dict[str, float]]:
    """``(model, vectors, frame, index, scalars)`` of one ``geom:Camera_Model_Parameters`` (``scalars``: a
    CAHVORE's ``T`` and ``P``)."""
    tags = (f"{_G}CAHV_Model", f"{_G}CAHVOR_Model", f"{_G}CAHVORE_Model")
    models = [c for c in cmp if c.tag in tags]
    declared = (cmp.findtext(f"{_G}model_type") or "").strip().upper()
    if any(c.tag == f"{_G}CAHVORE_Model" for c in models):
        declared = "CAHVORE"
    model = _model_of(
        declared or (models[0].tag.removeprefix(_G).removesuffix("_Model") if models else ""), path
    )
    element = next((c for c in models if c.tag == f"{_G}{model.upper()}_Model"), None)
    if element is None:
        raise LabelError(
            f"{path}: model_type {model.upper()} but no geom:{model.upper()}_Model; the label is damaged"
        )
    parts = {
        "C": "Vector_Center",
        "A": "Vector_Axis",
        "H": "Vector_Horizontal",
        "V": "Vector_Vertical",
        "O": "Vector_Optical",
        "R": "Radial_Terms",
        "E": "Entrance_Terms",
    }
    vectors: dict[str, list[float]] = {}
    for letter, name in list(parts.items())[: _VECTOR_COUNT[model]]:
        part = element.find(f"{_G}{name}")
        if part is None or len(part) < 3:
            raise LabelError(
                f"{path}: the {model.upper()} model has no complete geom:{name}; the label is damaged"
            )
        vectors[letter] = [
            _xml_number(child, f"geom:{name}", path, letter == "C") for child in list(part)[:3]
        ]
    scalars: dict[str, float] = {}
    if model == "cahvore":
        for letter, name in (("T", "cahvore_model_type"), ("P", "cahvore_model_parameter")):
            part = element.find(f"{_G}{name}")
            if part is None:
                raise LabelError(
                    f"{path}: the CAHVORE model has no geom:{name} ({letter}); the label is damaged"
                )
            scalars[letter] = _xml_number(part, "geom:CAHVORE_Model", path, False)
    frame, index = _pds4_frame(cmp.find(f"{_G}Coordinate_Space_Reference"), definitions)
    if not frame:
        raise LabelError(
            f"{path}: the camera model has no geom:Coordinate_Space_Reference naming its frame, so the "
            "frame of its vectors is unknown; write the camera file by hand (docs/cameras.md)"
        )
    return model, vectors, frame, index, scalars


_LENGTH_UNITS = {"m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001}


def _xml_number(element: ET.Element, what: str, source: Path, length: bool) -> float:
    text = (element.text or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LabelError(
            f"{source}: {what}/{element.tag.removeprefix(_G)} is {text!r}, not a finite number; the "
            "label's camera model is incomplete: use another product of the image"
        )
    unit = element.get("unit")
    if length and unit is not None:
        if unit not in _LENGTH_UNITS:
            raise LabelError(f"{source}: {what} is in {unit!r}, expected metres; convert the label's value")
        value *= _LENGTH_UNITS[unit]
    return value


def _pds4_frame(
    reference: ET.Element | None, definitions: dict[str, ET.Element], depth: int = 0
) -> tuple[str, list[tuple[str | None, int]]]:
    """The frame type and index a ``Coordinate_Space_Reference`` / ``_Present`` names, following a
    ``Local_Internal_Reference`` to the ``Coordinate_Space_Definition`` it points at; ``("", [])`` if none."""
    if reference is None or depth > 4:
        return "", []
    indexed = reference.find(f"{_G}Coordinate_Space_Indexed")
    if indexed is not None:
        frame = (indexed.findtext(f"{_G}coordinate_space_frame_type") or "").strip()
        index: list[tuple[str | None, int]] = []
        for entry in indexed.findall(f"{_G}Coordinate_Space_Index"):
            name = (entry.findtext(f"{_G}index_id") or "").strip().upper() or None
            try:
                index.append((name, int((entry.findtext(f"{_G}index_value_number") or "").strip())))
            except ValueError:
                continue
        return frame, index
    target = (
        reference.findtext(f"{_P}Local_Internal_Reference/{_P}local_identifier_reference") or ""
    ).strip()
    definition = definitions.get(target)
    if definition is None:
        return "", []
    return _pds4_frame(definition.find(f"{_G}Coordinate_Space_Present"), definitions, depth + 1)


def _pds4_image_size(root: ET.Element, source: Path) -> tuple[int, int]:
    sizes = set()
    for tag in ("Array_2D_Image", "Array_3D_Image"):
        for array in root.iter(f"{_P}{tag}"):
            axes = {
                (a.findtext(f"{_P}axis_name") or "").strip().lower(): (
                    a.findtext(f"{_P}elements") or ""
                ).strip()
                for a in array.findall(f"{_P}Axis_Array")
            }
            try:
                sizes.add((int(axes["sample"]), int(axes["line"])))
            except (KeyError, ValueError):
                continue
    if len(sizes) != 1:
        said = (
            "no Array_2D_Image or Array_3D_Image with Line and Sample axes"
            if not sizes
            else f"images {sorted(sizes)}"
        )
        raise LabelError(
            f"{source}: {said}, so the image size is unknown; give the label of the image product itself"
        )
    return sizes.pop()
