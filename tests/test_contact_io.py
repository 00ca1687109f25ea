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
    # Writing what is stored writes the same file again (rounding twice changes nothing).
    write_contacts(tmp_path / "again.geojson", stored, 100, 100)
    again, _ = read_contacts(tmp_path / "again.geojson")
    assert [ln.length_px for ln in again] == [ln.length_px for ln in back]
