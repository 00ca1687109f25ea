"""Deterministic train/validation splits grouped by sol (scikit-learn ``GroupShuffleSplit``, ``GroupKFold``).

Neighbouring sols show the same scenery (the rover moves a few hundred metres a sol at most), so a random
per-image split would put near-duplicates on both sides and overstate validation scores. Images are grouped
into blocks of ``sol_block`` consecutive sols (``sol // sol_block``) and whole blocks go to one side.
Images without a sol (``None``) are each their own group.

One held-out split (:func:`split_by_group`) is what a training run validates on. Because a single split of a
small data set is noisy (which sols land on the validation side matters more than most recipe changes),
:func:`kfold_split_by_group` gives the ``k`` splits of a sol-grouped cross-validation: every sol block is
validated on exactly once over the ``k`` folds, so the mean over folds scores the recipe on all the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

# The rules train.py also checks before Hydra (no numpy, scipy nor scikit-learn to import there).
from marsunits.data.value_checks import check_sol_ranges, val_fraction_refusal
from marsunits.errors import counted

__all__ = [
    "check_sol_ranges",
    "group_ids",
    "in_sol_ranges",
    "kfold_split_by_group",
    "merge_sols",
    "near_sols",
    "split_by_group",
]


def group_ids(
    sols: Sequence[int | None], sol_block: int = 1, places: Sequence[str | None] | None = None
) -> np.ndarray:
    """Integer group id per image: ``sol // sol_block``; images without a sol get a unique negative id.

    With ``places`` (where each image was taken: AI4Mars' site and drive; ``None`` = unknown), sol blocks
    that share a place are merged into one group (scipy's connected components, the group named by its
    lowest block): a rover parked for weeks shoots the same scenery across several blocks, and
    near-identical frames from sols 1439 and 1441 ended up on both sides of the split.

    Raises:
        ValueError: ``sol_block < 1``.
    """
    if sol_block < 1:
        raise ValueError(f"sol_block must be >= 1 (sols per split group), got {sol_block}.")
    ids = np.empty(len(sols), dtype=np.int64)
    for i, sol in enumerate(sols):
        ids[i] = sol // sol_block if sol is not None else -1 - i
    if places is None:
        return ids
    # Blocks and places as the nodes of a graph, an edge for each image that has both; connected blocks
    # are one group (scipy's connected components), named by their lowest block.
    blocks = np.unique(ids[ids >= 0])
    names = sorted({p for p, b in zip(places, ids.tolist(), strict=True) if p is not None and b >= 0})
    if not names:
        return ids
    place_node = {name: len(blocks) + k for k, name in enumerate(names)}
    pairs = [
        (int(np.searchsorted(blocks, b)), place_node[p])
        for b, p in zip(ids.tolist(), places, strict=True)
        if p is not None and b >= 0
    ]
    rows, cols = np.array(pairs).T
    size = len(blocks) + len(names)
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    lowest = {c: int(blocks[k]) for k, c in reversed(list(enumerate(component[: len(blocks)].tolist())))}
    return np.array(
        [lowest[component[int(np.searchsorted(blocks, b))]] if b >= 0 else b for b in ids.tolist()],
        dtype=np.int64,
    )


def in_sol_ranges(sols: Sequence[int | None], ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask: which ``sols`` fall in any inclusive ``(first, last)`` range (unknown sols never do)."""
    return np.array(
        [sol is not None and any(lo <= sol <= hi for lo, hi in ranges) for sol in sols], dtype=bool
    )


def near_sols(sols: Sequence[int | None], reference: Sequence[int], margin: int) -> np.ndarray:
    """Boolean mask: which ``sols`` lie within ``margin`` sols of a ``reference`` sol (``|a - b| <= margin``;
    unknown sols never do).

    Whole sol blocks go to one side of a split, but the blocks are fixed (``sol // sol_block``), so sols 369
    and 370 can land on opposite sides although they show nearly the same scenery: 4 of the 16 validation
    panoramas of MarsScapes' default split had a training panorama one or two sols away. Training images
    this close to a validation sol are left out (``data.sol_margin``).
    """
    ref = np.unique(np.asarray(list(reference), dtype=np.int64))
    near = np.zeros(len(sols), dtype=bool)
    if margin < 0 or ref.size == 0:
        return near
    for i, sol in enumerate(sols):
        if sol is None:
            continue
        k = int(np.searchsorted(ref, sol))  # nearest reference sols: ref[k - 1] < sol <= ref[k]
        neighbours = ref[max(k - 1, 0) : k + 1]
        near[i] = bool(np.abs(neighbours - sol).min() <= margin)
    return near


def merge_sols(*parts: Mapping[str, Sequence[int]] | None) -> dict[str, list[int]] | None:
    """``{source: sorted sols}`` holding every sol of ``parts`` (None where no part has any)."""
    merged: dict[str, set[int]] = {}
    for part in parts:
        for source, sols in (part or {}).items():
            merged.setdefault(str(source), set()).update(int(sol) for sol in sols)
    return {source: sorted(sols) for source, sols in merged.items() if sols} or None


def split_by_group(
    sols: Sequence[int | None],
    val_fraction: float,
    seed: int,
    sol_block: int = 1,
    places: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices into train and validation so that no sol block is on both sides.

    ``val_fraction`` is the fraction of *groups* sent to validation (``GroupShuffleSplit``'s ``test_size``),
    so the fraction of images varies with group sizes. The same inputs always give the same split.

    Args:
        sols: the sol of every image (``None``: unknown, the image is its own group).
        val_fraction: in ``(0, 1)``.
        seed: ``random_state`` of the splitter.
        sol_block: consecutive sols per group.
        places: where each image was taken; blocks sharing a place form one group (:func:`group_ids`).

    Returns:
        ``(train_idx, val_idx)``, sorted int64 arrays, disjoint, together covering ``range(len(sols))``.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1), or fewer than two groups.
    """
    refused = val_fraction_refusal(val_fraction)
    if refused is not None:
        raise ValueError(refused)
    groups = group_ids(sols, sol_block, places)
    n_groups = len(np.unique(groups))
    with_sols = any(sol is not None for sol in sols)
    if n_groups < 2:
        raise ValueError(
            f"Cannot split {counted(len(sols), 'image')} into train and validation: "
            f"{'it forms' if len(sols) == 1 else 'they form'} {counted(n_groups, 'split group')} (an image "
            "without a sol is a group of its own; images with sols are grouped "
            f"{counted(sol_block, 'sol')} at a time, data.sol_block). "
            + (
                "Add images (from more sols), or lower data.sol_block."
                if with_sols and sol_block > 1
                else "Add images (from more sols)."
                if with_sols
                else "Add labelled images: one is needed for training and one for validation."
            )
        )
    # GroupShuffleSplit's own count (ceil of the fraction); it said only that "the resulting train set will
    # be empty" for its n_samples, test_size and train_size, none of them a key of the config.
    n_val = int(np.ceil(val_fraction * n_groups))
    if n_val >= n_groups:
        what = "split groups" if with_sols else "images (each is its own split group: they have no sol)"
        highest = np.floor(100 * (n_groups - 1) / n_groups) / 100  # two decimals that still leave one
        raise ValueError(
            f"data.val_fraction={val_fraction} sends all {n_groups} {what} to validation (rounded up, "
            f"{val_fraction} x {n_groups} is {n_val}) and leaves none for training; lower data.val_fraction "
            f"to {highest:.2f} or less, or add images."
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


def kfold_split_by_group(
    sols: Sequence[int | None],
    n_folds: int,
    fold: int,
    sol_block: int = 1,
    places: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``fold`` of a sol-grouped ``n_folds``-fold cross-validation (``GroupKFold``).

    Sol blocks are dealt to folds so that folds hold similar numbers of images; the assignment depends only
    on the sols, so every run sees the same folds, and over ``fold = 0 .. n_folds - 1`` each image is on the
    validation side exactly once.

    Args:
        sols: the sol of every image (``None``: unknown, the image is its own group).
        n_folds: number of folds, ``>= 2`` and at most the number of sol groups.
        fold: which fold is the validation side, ``0 <= fold < n_folds``.
        sol_block: consecutive sols per group.
        places: where each image was taken; blocks sharing a place form one group (:func:`group_ids`).

    Returns:
        ``(train_idx, val_idx)``, sorted int64 arrays, disjoint, together covering ``range(len(sols))``.

    Raises:
        ValueError: ``n_folds < 2``, ``fold`` out of range, or fewer sol groups than folds.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2 for cross-validation, got {n_folds}. Set data.n_folds.")
    if not 0 <= fold < n_folds:
        raise ValueError(
            f"fold must be in 0..{n_folds - 1} for n_folds={n_folds}, got {fold}. Set data.fold."
        )
    groups = group_ids(sols, sol_block, places)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        with_sols = any(sol is not None for sol in sols)
        raise ValueError(
            f"Cannot make {n_folds} folds from {counted(n_groups, 'sol group')} (sol_block={sol_block}); "
            "lower "
            + (
                "data.n_folds or data.sol_block."
                if with_sols and sol_block > 1
                else "data.n_folds, or add images."
            )
        )
    splits = list(GroupKFold(n_splits=n_folds).split(np.zeros(len(groups)), groups=groups))
    train_idx, val_idx = splits[fold]
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)
