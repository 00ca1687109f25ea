"""Minimum mapping unit: small unit patches merge into the surrounding unit before mask and contacts."""

from __future__ import annotations

import numpy as np
import pytest

from marsunits.boundary.extract import extract_contacts
from marsunits.boundary.mapping_unit import merge_small_units
from marsunits.boundary.metrics import contact_cracks


def _probs(labels: np.ndarray, confidence: float = 0.8) -> np.ndarray:
    """Probabilities with ``confidence`` on the labelled class and the rest split evenly."""
    rest = (1.0 - confidence) / 2
    probs = np.full((3, *labels.shape), rest, dtype=np.float32)
    for k in range(3):
        probs[k][labels == k] = confidence
    return probs


def _scene() -> np.ndarray:
    """64x64: sky (2) on top, unit 0 on the left, unit 1 on the right, straight contact at x = 32."""
    labels = np.zeros((64, 64), np.uint8)
    labels[:, 32:] = 1
    labels[:12] = 2
    return labels


def test_a_speck_inside_the_other_unit_is_merged_and_leaves_no_contact() -> None:
    labels = _scene()
    labels[40:45, 10:15] = 1  # 25 px of rough inside smooth
    labels[20:24, 50:54] = 0  # 16 px of smooth inside rough
    probs = _probs(labels)
    before = extract_contacts(probs)
    assert len(before) == 3  # the straight contact and two closed loops
    original = probs.copy()

    assert merge_small_units(probs, 50) == 2
    assert (probs.argmax(0) == _scene()).all()
    # Confidence and 'other' are kept: inside a merged patch p0 and p1 are swapped.
    np.testing.assert_array_equal(probs.max(0), original.max(0))
    np.testing.assert_array_equal(probs[2], original[2])
    np.testing.assert_array_equal(probs[0, 40:45, 10:15], original[1, 40:45, 10:15])
    (line,) = extract_contacts(probs)
    assert np.allclose(line.pixels[:, 0], 32.0, atol=1e-6)


def test_patches_at_or_above_the_area_stay() -> None:
    labels = _scene()
    labels[40:45, 10:15] = 1  # 25 px
    probs = _probs(labels)
    original = probs.copy()
    assert merge_small_units(probs, 25) == 0
    np.testing.assert_array_equal(probs, original)
    assert merge_small_units(probs, 0) == 0 and merge_small_units(probs, 1) == 0
    np.testing.assert_array_equal(probs, original)


def test_a_unit_patch_in_the_sky_is_not_a_contact_question() -> None:
    labels = _scene()
    labels[3:6, 20:23] = 1  # rough speck surrounded by 'other'
    probs = _probs(labels)
    assert merge_small_units(probs, 50) == 0
    assert (probs.argmax(0) == labels).all()


def test_a_speck_at_the_edge_of_the_sky_goes_to_the_sky_and_draws_no_contact() -> None:
    """A speck below the minimum mapping unit that touches the other unit but borders 'other' more was left
    alone, and drew a short false contact against the unit beside it."""
    labels = _scene()
    labels[9:13, 5] = 1  # 4 px of rough poking up into the sky: 7 pairs with smooth, 19 with sky
    probs = _probs(labels)
    cracks = contact_cracks(probs.argmax(0))
    assert (cracks[:, 0] < 16).sum() == 3  # the false contact: the speck's three cracks with smooth
    original = probs.copy()

    assert merge_small_units(probs, 50) == 1
    expected = _scene()
    expected[9:13, 5] = 2
    assert (probs.argmax(0) == expected).all()
    # The speck's rough and 'other' probabilities swap; smooth keeps its own.
    np.testing.assert_array_equal(probs[2, 9:13, 5], original[1, 9:13, 5])
    np.testing.assert_array_equal(probs[1, 9:13, 5], original[2, 9:13, 5])
    np.testing.assert_array_equal(probs[0], original[0])
    assert np.allclose(contact_cracks(probs.argmax(0))[:, 0], 32.0)
    (line,) = extract_contacts(probs)
    assert np.allclose(line.pixels[:, 0], 32.0, atol=1e-6)


def test_a_whole_image_of_one_unit_with_specks_of_both() -> None:
    labels = np.ones((48, 80), np.uint8)
    labels[5:7, 5:7] = 0
    labels[0:3, 77:80] = 0  # a speck in the corner: its ring is cut by the border
    probs = _probs(labels)
    assert merge_small_units(probs, 10) == 2
    assert (probs.argmax(0) == 1).all()
    assert extract_contacts(probs) == []


def test_merging_commutes_with_a_horizontal_flip() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random((40, 56)) < 0.2).astype(np.uint8)  # many rough specks in smooth ground
    labels[:, 40:] = 1
    a, b = _probs(labels), _probs(labels[:, ::-1].copy())
    merge_small_units(a, 6)
    merge_small_units(b, 6)
    np.testing.assert_array_equal(a.argmax(0)[:, ::-1], b.argmax(0))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        merge_small_units(np.zeros((2, 4, 4), np.float32), 5)
    with pytest.raises(ValueError, match="min_area_px must be >= 0"):
        merge_small_units(np.zeros((3, 4, 4), np.float32), -1)
