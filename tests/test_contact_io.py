"""Contact GeoJSON: the one format for true and predicted contacts round-trips and validates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import shape

from marsunits.boundary.contact_io import ContactLine, read_contacts, write_contacts


def test_roundtrip_keeps_coordinates_confidence_and_ground(tmp_path) -> None:
    lines = [
        ContactLine(
            np.array([[0.5, 10.0], [30.25, 12.5], [60.0, 20.0]]),
            confidence=0.8,
            vertex_confidence=np.array([0.7, 0.8, 0.9]),
            ground_m=np.array([[5.0, 1.0], [5.5, 0.0], [6.0, -1.0]]),
            site="s1",
        ),
        ContactLine(np.array([[1.0, 1.0], [4.0, 5.0]])),
    ]
    path = write_contacts(tmp_path / "a" / "x.contact.geojson", lines, 64, 48)
    assert not list(path.parent.glob(".*tmp*"))
    data = json.loads(path.read_text())
    for feat in data["features"]:
        assert shape(feat["geometry"]).geom_type == "LineString"
    assert data["features"][1]["properties"]["length_px"] == pytest.approx(5.0)
    back, size = read_contacts(path)
    assert size == (64, 48)
    np.testing.assert_allclose(back[0].pixels, lines[0].pixels, atol=1e-3)
    np.testing.assert_allclose(back[0].ground_m, lines[0].ground_m, atol=1e-4)
    assert back[0].confidence == pytest.approx(0.8) and back[0].site == "s1"
    assert back[0].length_m == pytest.approx(lines[0].length_m, abs=1e-3)


def test_bad_files_name_the_file(tmp_path) -> None:
    p = tmp_path / "bad.geojson"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.geojson"):
        read_contacts(p)
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [{"geometry": {"type": "Point"}}]}))
    with pytest.raises(ValueError, match="expected a LineString"):
        read_contacts(p)
    with pytest.raises(ValueError, match="K>=2"):
        write_contacts(tmp_path / "x.geojson", [ContactLine(np.zeros((1, 2)))], 4, 4)


def test_lines_as_stored_are_the_lines_read_back(tmp_path) -> None:
    """A run that predicts an image and a later one that skips it (reading the file) must report the same
    contact lengths and map: 164.309 against 164.31 px once differed in the manifest."""
    from marsunits.boundary.contact_io import as_stored

    rng = np.random.default_rng(0)
    lines = [
        ContactLine(
            pixels=rng.random((7, 2)) * 100,
            confidence=float(rng.random()),
            vertex_confidence=rng.random(7),
            ground_m=rng.random((7, 2)) * 10,
            site="s",
        ),
        ContactLine(pixels=rng.random((3, 2)) * 50, confidence=0.123456789),
    ]
    write_contacts(tmp_path / "c.geojson", lines, 100, 100)
    back, _ = read_contacts(tmp_path / "c.geojson")
    stored = as_stored(lines)
    for a, b in zip(stored, back, strict=True):
        assert a.length_px == b.length_px and a.length_m == b.length_m and a.confidence == b.confidence
        np.testing.assert_array_equal(a.pixels, b.pixels)
    assert stored[0].length_px != lines[0].length_px  # rounding happened: the test can tell
    # To the documented steps: pixels to 1e-3, ground to 0.1 mm, confidences to 1e-4 (half a step at most).
    for a, b in zip(stored, lines, strict=True):
        np.testing.assert_allclose(a.pixels, b.pixels, rtol=0, atol=0.5e-3 + 1e-9)
        assert abs(a.confidence - b.confidence) <= 0.5e-4 + 1e-12
    np.testing.assert_allclose(stored[0].ground_m, lines[0].ground_m, rtol=0, atol=0.5e-4 + 1e-12)
    np.testing.assert_allclose(
        stored[0].vertex_confidence, lines[0].vertex_confidence, rtol=0, atol=0.5e-4 + 1e-12
    )
    # Writing what is stored writes the same file again (rounding twice changes nothing).
    write_contacts(tmp_path / "again.geojson", stored, 100, 100)
    again, _ = read_contacts(tmp_path / "again.geojson")
    assert [ln.length_px for ln in again] == [ln.length_px for ln in back]


def _collection(*features, **members) -> dict:
    size = {"image_width": 64, "image_height": 48}
    return {"type": "FeatureCollection", **size, **members, "features": features}


def _line(coordinates, **properties) -> dict:
    geometry = {"type": "LineString", "coordinates": coordinates}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


MALFORMED = {
    "a list at the top level": ([_line([[1, 2], [3, 4]])], r"not a GeoJSON FeatureCollection.*got a list"),
    "features null": (_collection() | {"features": None}, r"'features' must be a list.*got None"),
    "no features": ({"type": "FeatureCollection"}, r"'features' must be a list"),
    "a feature that is a list": (_collection([1, 2]), r"feature 0 is a list, expected a GeoJSON Feature"),
    "geometry without coordinates": (
        _collection({"type": "Feature", "geometry": {"type": "LineString"}, "properties": {}}),
        r"feature 0: 'coordinates' must be a list of 2 or more positions",
    ),
    "one position": (_collection(_line([[1, 2]])), r"feature 0: 'coordinates' must be a list of 2 or more"),
    "a position of strings": (_collection(_line([["1", 2], [3, 4]])), r"feature 0: .*\[x, y\] or \[x, y, z"),
    "a 4-number position": (_collection(_line([[1, 2, 0, 5], [3, 4, 0, 5]])), r"\[x, y\] or \[x, y, z\]"),
    "a NaN vertex": (_collection(_line([[1, float("nan")], [3, 4]])), r"feature 0: .*finite"),
    "confidence null": (_collection(_line([[1, 2], [3, 4]], confidence=None)), r"'confidence' must be"),
    "confidence 2": (_collection(_line([[1, 2], [3, 4]], confidence=2)), r"'confidence' must be a number in"),
    "properties a list": (
        {**_collection(), "features": [{**_line([[1, 2], [3, 4]]), "properties": [1]}]},
        r"feature 0: 'properties' must be a JSON object or null",
    ),
    "vertex_confidence text": (
        _collection(_line([[1, 2], [3, 4]], vertex_confidence="high")),
        r"'vertex_confidence' must be",
    ),
    "vertex_confidence one short": (
        _collection(_line([[1, 2], [3, 4], [5, 6]], vertex_confidence=[0.5, 0.6])),
        r"feature 0: 'vertex_confidence' must be one number in \[0, 1\] per vertex \(3 here",
    ),
    "vertex_confidence above 1": (
        _collection(_line([[1, 2], [3, 4]], vertex_confidence=[0.5, 7])),
        r"'vertex_confidence' must be one number in \[0, 1\] per vertex",
    ),
    "ground_m of 3 numbers": (
        _collection(_line([[1, 2], [3, 4]], ground_m=[[1, 2, 3], [4, 5, 6]])),
        r"'ground_m' must be",
    ),
    "site a number": (_collection(_line([[1, 2], [3, 4]], site=3)), r"'site' must be"),
    "contact_id true": (
        _collection(_line([[1, 2], [3, 4]], contact_id=True)),
        r"contact_id True, expected an int",
    ),
    "image_width text": (_collection(image_width="abc"), r"'image_width' must be a whole number of pixels"),
    "image_height fractional": (_collection(image_height=47.5), r"'image_height' must be a whole number"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_contact_file_is_a_value_error_naming_the_file_and_the_fault(tmp_path, case) -> None:
    """The reader promised a ValueError naming the file; a geometry without coordinates, a list at the top
    level, ``"features": null`` or ``"confidence": null`` raised KeyError, AttributeError or TypeError
    instead, which the evaluation does not catch (the whole predict.py run stopped)."""
    data, said = MALFORMED[case]
    path = tmp_path / "t.contact.geojson"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 't.contact.geojson'}.*{said}"):
        read_contacts(path)


def test_3d_coordinates_are_read_with_z_dropped(tmp_path) -> None:
    """GeoJSON positions may carry a third number (height): legal, so read as (x, y)."""
    path = tmp_path / "t.contact.geojson"
    path.write_text(json.dumps(_collection(_line([[60, 0, 0.0], [60, 80, 1.5]]), image_height=80)))
    (line,), size = read_contacts(path)
    np.testing.assert_array_equal(line.pixels, [[60.0, 0.0], [60.0, 80.0]])
    assert size == (64, 80) and line.length_px == 80.0


def test_update_contact_members_replaces_a_member_and_keeps_the_lines(tmp_path) -> None:
    """The file then holds what ``write_contacts`` would have written with the new members."""
    from marsunits.boundary.contact_io import update_contact_members

    lines = [ContactLine(np.array([[1.0, 1.0], [4.0, 5.0]]), confidence=0.5, extra={"contact_id": 0})]
    path = write_contacts(tmp_path / "a.contact.geojson", lines, 64, 48, members={"image_greyscale": False})
    update_contact_members(path, {"image_greyscale": True, "note": "x"})
    want = write_contacts(
        tmp_path / "b.contact.geojson", lines, 64, 48, {"image_greyscale": True, "note": "x"}
    )
    assert json.loads(path.read_text()) == json.loads(want.read_text())


def test_an_empty_ground_list_is_no_ground_line_and_other_bad_grounds_are_refused(tmp_path) -> None:
    """GIS tools and hand edits write ``"ground_m": []`` for "no ground line": the reader refused the whole
    file (and with it the image's contact scores). It now reads as a missing key does (None, so nothing
    counts it as ground metres); one point is read as it stands (the contact map projects it again); a NaN
    or infinity, text or pairs of 3 are still refused naming the file and the property."""
    path = tmp_path / "t.contact.geojson"
    for ground in ([], None):
        path.write_text(json.dumps(_collection(_line([[1, 2], [3, 4]], ground_m=ground, site="s"))))
        (line,), _ = read_contacts(path)
        assert line.ground_m is None and line.length_m is None and line.length_px == pytest.approx(8**0.5)
    path.write_text(json.dumps(_collection(_line([[1, 2], [3, 4]], ground_m=[[5.0, 1.0]]))))
    (line,), _ = read_contacts(path)
    assert line.ground_m is not None and line.ground_m.shape == (1, 2) and line.length_m is None
    for bad in ("none", [[]], [[1.0, float("nan")], [2.0, 3.0]], [[1.0, 2.0], [float("inf"), 3.0]], [1.0]):
        path.write_text(json.dumps(_collection(_line([[1, 2], [3, 4]], ground_m=bad))))
        with pytest.raises(ValueError, match=rf"^{path}: feature 0: 'ground_m' must be a list of \[x, y\]"):
            read_contacts(path)


def test_paths_starting_with_a_tilde_are_in_the_home_folder(tmp_path, monkeypatch) -> None:
    """``~`` is the home folder, as elsewhere in the package (build_contact_map, UnitMapper): write_contacts
    made a folder named ``~`` in the working folder, and the readers said "No such file" for a file there."""
    from marsunits.boundary.contact_io import read_contact_collection, update_contact_members

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    line = ContactLine(np.array([[1.0, 1.0], [4.0, 5.0]]))
    assert write_contacts("~/c.contact.geojson", [line], 64, 48) == home / "c.contact.geojson"
    assert (home / "c.contact.geojson").is_file() and not (work / "~").exists()
    lines, size = read_contacts("~/c.contact.geojson")
    assert size == (64, 48) and len(lines) == 1
    assert update_contact_members("~/c.contact.geojson", {"note": "x"}) == home / "c.contact.geojson"
    assert read_contact_collection("~/c.contact.geojson")[1]["note"] == "x"
    assert not (work / "~").exists()


_AB = np.array([[1.0, 2.0], [4.0, 3.0]])


@pytest.mark.parametrize(
    ("line", "fault"),
    [
        (ContactLine(np.array([[1.0, 2.0], [np.nan, 3.0]])), "pixels"),
        (ContactLine(np.array([[1.0, 2.0], [np.inf, 3.0]])), "pixels"),
        (ContactLine(_AB, confidence=float("nan")), "confidence"),
        (ContactLine(_AB, confidence=1.5), "confidence"),
        (
            ContactLine(_AB, vertex_confidence=np.array([0.5, np.nan])),
            "vertex",
        ),
        (
            ContactLine(_AB, ground_m=np.array([[1.0, 2.0], [np.inf, 0.0]])),
            "ground",
        ),
    ],
)
def test_a_line_with_a_non_finite_value_is_refused_not_written_as_nan(tmp_path, line, fault) -> None:
    """RFC 7946 (JSON) has no NaN or Infinity: ``json.dumps`` wrote them as bare ``NaN`` / ``Infinity``, a
    file that strict JSON readers (GDAL, JavaScript) refuse and that :func:`read_contacts` itself refused.
    The writer now says which line and value are wrong, and leaves no file."""
    path = tmp_path / "x.contact.geojson"
    good = ContactLine(np.array([[0.0, 0.0], [5.0, 5.0]]))
    with pytest.raises(ValueError, match=rf"line 1\b.*{fault}"):
        write_contacts(path, [good, line], 8, 8)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_non_finite_extra_property_is_refused_naming_the_file(tmp_path) -> None:
    """``extra`` is written as it is: a NaN there would also have been written as a bare ``NaN``."""
    path = tmp_path / "y.contact.geojson"
    line = ContactLine(np.array([[0.0, 0.0], [5.0, 5.0]]), extra={"note": float("nan")})
    with pytest.raises(ValueError, match=r"y\.contact\.geojson.*NaN or infinite"):
        write_contacts(path, [line], 8, 8)
    assert not path.exists()


def test_write_contacts_names_bare_arrays_or_one_line_given_for_the_list(tmp_path) -> None:
    line = ContactLine(pixels=np.array([[0.5, 0.5], [10.0, 4.0]]), confidence=0.7)
    with pytest.raises(
        TypeError, match=r"lines\[0\] must be a ContactLine, got ndarray; .*ContactLine\(pixels"
    ):
        write_contacts(tmp_path / "a.geojson", [line.pixels], 16, 16)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"got one ContactLine; give \[it\]"):
        write_contacts(tmp_path / "a.geojson", line, 16, 16)  # type: ignore[arg-type]
    assert not (tmp_path / "a.geojson").exists()
    write_contacts(str(tmp_path / "a.geojson"), (x for x in [line]), 16, 16)  # a str path, a generator
    assert len(read_contacts(tmp_path / "a.geojson")[0]) == 1


def test_write_contacts_to_a_folder_names_the_folder_not_a_temporary_file(tmp_path) -> None:
    """It was "Is a directory: '.<name>.<pid>@<host>.<random>.tmp' -> '<name>'"."""
    line = ContactLine(pixels=np.array([[0.5, 0.5], [10.0, 4.0]]), confidence=0.7)
    with pytest.raises(
        IsADirectoryError, match=rf"{tmp_path} is a folder; give the contact file's path, e.g. "
    ):
        write_contacts(tmp_path, [line], 16, 16)
    assert list(tmp_path.iterdir()) == []
