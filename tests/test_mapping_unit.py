"""Minimum mapping unit: small unit patches merge into the surrounding unit before mask and contacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

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


def test_a_single_pixel_speck_is_merged_from_a_minimum_area_of_two() -> None:
    labels = _scene()
    labels[40, 10] = 1
    probs = _probs(labels)
    assert merge_small_units(probs, 2) == 1
    assert (probs.argmax(0) == _scene()).all()


@pytest.mark.parametrize("channel", [None, 0, 1, 2])
def test_no_data_pixels_belong_to_no_patch(channel) -> None:
    """A 4 px speck of smooth inside rough beside 60 px of no-data (NaN in every channel, or in one): the
    no-data is not part of the speck (which is merged) nor of any unit, and stays as it was."""
    labels = _scene()
    labels[40:42, 50:52] = 0
    probs = _probs(labels)
    rows = slice(42, 48), slice(46, 56)  # 60 px just below the speck, inside the rough unit
    probs[(slice(None) if channel is None else channel, *rows)] = np.nan
    original = probs.copy()
    assert merge_small_units(probs, 10) == 1
    np.testing.assert_array_equal(probs[:, 40:42, 50:52], original[[1, 0, 2], 40:42, 50:52])
    np.testing.assert_array_equal(probs[:, 42:48], original[:, 42:48])  # NaN kept where it was


def test_patches_are_eight_connected() -> None:
    """A diagonal stripe of 20 smooth pixels touching only at corners is one 20 px patch: it stays under a
    minimum of 20 (a 4-connected labelling sees 20 one-pixel specks and merges them all)."""
    labels = _scene()
    idx = np.arange(20)
    labels[30 + idx, 36 + idx] = 0
    probs = _probs(labels)
    assert merge_small_units(probs, 20) == 0
    assert (probs.argmax(0) == labels).all()
    assert merge_small_units(probs, 21) == 1
    assert (probs.argmax(0) == _scene()).all()


def _assert_the_rough_speck_goes_to_other(labels: np.ndarray) -> None:
    """With a minimum area of 5 px, the one rough speck of ``labels`` becomes ``other``, nothing else."""
    probs = _probs(labels)
    assert merge_small_units(probs, 5) == 1
    expected = labels.copy()
    expected[labels == 1] = 2
    assert (probs.argmax(0) == expected).all()


@pytest.mark.parametrize("mirror", [False, True])
def test_a_tie_between_the_other_unit_and_other_goes_to_other(mirror) -> None:
    """A 2 px rough speck on the top image row, smooth beside it and diagonally below its two ends, sky
    right below it: 4 pixel pairs with smooth, 4 with sky (pixels beyond the image border count for
    neither). The other unit must share *more* of the boundary to take the speck, so it goes to the sky."""
    labels = np.full((8, 24), 2, np.uint8)
    labels[0:2] = 0
    labels[0, 10:12] = 1  # the speck
    labels[1, 10:12] = 2  # sky below it
    _assert_the_rough_speck_goes_to_other(labels[:, ::-1].copy() if mirror else labels)


def test_merging_follows_the_updated_map() -> None:
    """A 3x3 ring of rough around one smooth pixel, inside smooth ground: the smooth pixel merges into the
    ring first, and the whole 9 px rough patch of the updated map then merges into the ground, leaving no
    speck (the ring alone, merged as it was before the first merge, left a 1 px rough speck)."""
    labels = np.zeros((32, 32), np.uint8)
    labels[10:13, 10:13] = 1
    labels[11, 11] = 0
    probs = _probs(labels)
    assert merge_small_units(probs, 10) == 2
    assert (probs.argmax(0) == 0).all()
    assert extract_contacts(probs) == []


def test_only_unit_patches_are_merged_when_little_else_is_in_the_image() -> None:
    """An image of rough with a 2 px smooth speck inside a ring of sky: the speck does not touch rough and
    the sky is not a unit, so nothing merges, even though everything but rough is below the minimum area."""
    labels = np.ones((32, 32), np.uint8)
    labels[10:14, 10:14] = 2
    labels[11, 11:13] = 0
    probs = _probs(labels)
    original = probs.copy()
    assert merge_small_units(probs, 20) == 0
    np.testing.assert_array_equal(probs, original)


def test_smooth_specks_are_merged_before_rough_ones() -> None:
    """Two touching 2 px specks in the sky, smooth and rough: each shares more of its boundary with the sky.
    Smooth is merged first (into the sky); the rough speck then touches no unit, and stays (module doc)."""
    labels = np.full((20, 20), 2, np.uint8)
    labels[:, 15:] = 0  # smooth ground, away from the specks: the unit patches being compared are small
    labels[15:, :] = 1
    labels[5, 5:7] = 0
    labels[6, 5:7] = 1
    probs = _probs(labels)
    assert merge_small_units(probs, 5) == 1
    assert (probs.argmax(0)[5, 5:7] == 2).all() and (probs.argmax(0)[6, 5:7] == 1).all()


@pytest.mark.parametrize("mirror", [False, True])
def test_a_speck_between_a_unit_and_the_sky_is_merged_whichever_side_the_unit_is(mirror) -> None:
    """A 2 px rough speck on the edge between smooth (left) and sky (right): 3 pairs with smooth, 11 with
    sky, so it goes to the sky, and so does its mirror image (every 8-neighbour is counted, left ones too)."""
    labels = np.full((20, 24), 2, np.uint8)
    labels[:, :10] = 0
    labels[5, 10:12] = 1
    _assert_the_rough_speck_goes_to_other(labels[:, ::-1].copy() if mirror else labels)


def _merge_one_patch_at_a_time(probs: np.ndarray, min_area_px: int) -> tuple[np.ndarray, int]:
    """The module's rule written the slow, plain way: each small patch's 8-neighbours counted in a loop."""
    probs = probs.copy()
    h, w = probs.shape[1:]
    labels = probs.argmax(0).astype(int)
    labels[~np.isfinite(probs).all(0)] = 255
    merged = 0
    for unit in (0, 1):
        patches, n = ndimage.label(labels == unit, structure=np.ones((3, 3)))
        decisions = []
        for k in range(1, n + 1):
            pixels = np.argwhere(patches == k)
            if len(pixels) >= min_area_px:
                continue
            shared_unit = shared_other = 0
            for r, c in pixels:
                for rr in range(max(r - 1, 0), min(r + 2, h)):
                    for cc in range(max(c - 1, 0), min(c + 2, w)):
                        shared_unit += labels[rr, cc] == 1 - unit
                        shared_other += labels[rr, cc] == 2
            if shared_unit > shared_other:
                decisions.append((pixels, 1 - unit))
            elif shared_unit > 0:
                decisions.append((pixels, 2))
        for pixels, target in decisions:  # decided on the map before this unit's merges
            r, c = pixels.T
            kept = probs[unit, r, c].copy()
            probs[unit, r, c] = probs[target, r, c]
            probs[target, r, c] = kept
            labels[r, c] = target
            merged += 1
    return probs, merged


@pytest.mark.parametrize("seed", range(6))
def test_merging_matches_a_patch_by_patch_reference_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = {0: (1, 40), 1: (40, 1)}.get(seed, rng.integers(5, 40, 2))  # strips one pixel thin too
    probs = rng.random((3, h, w)).astype(np.float32)
    probs[2] *= rng.uniform(0.3, 1.5)
    if seed % 2:
        probs[:, rng.random((h, w)) < 0.1] = np.nan  # no-data pixels
    min_area = int(rng.integers(2, 12))
    want, n_want = _merge_one_patch_at_a_time(probs, min_area)
    assert merge_small_units(probs, min_area) == n_want
    np.testing.assert_array_equal(probs, want)
