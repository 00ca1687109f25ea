"""A real source's labelled images made into its datasets: split, read into image stores, cropped and tiled.

The steps :class:`~marsunits.data.datamodule.MarsDataModule` takes for each real source (``marsscapes``,
``ai4mars``, ``folder``), between the scan (:meth:`~marsunits.data.source_folders.SourceFolders.scan`) and
the data loaders, each a function of the config values it needs:

* :func:`split_records`: ``exclude_sols`` left out, the rest split into training and validation by sol block
  (one held-out split or a fold of ``n_folds``; a training-only source validates on nothing);
* :class:`SourceReading`: each source's class map and cache, and every pair of every source read into its
  training and validation :class:`~marsunits.data.store.ImageStore` (``None``: a training-only source's
  validation), with every unusable pair of the data said in one error;
* :func:`real_datasets`: the training crops (:class:`~marsunits.data.datasets.RandomCropDataset`) and
  validation tiles (:class:`~marsunits.data.datasets.TiledDataset`) of each source, refusing a source none of
  whose validation images has a labelled pixel;
* :func:`say_split`: the log line of each source's split, naming its validation images;
* :func:`one_class_refusal`: why training masks that label one class only cannot train a network;
* :func:`unreadable_images`: the images of a source read without a cache decoded once, to list every
  unreadable one.

The guards on what the split leaves on its training side are :mod:`marsunits.data.split_guards`'; this module
does not import the data module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from marsunits.constants import CLASS_NAMES
from marsunits.data.class_map import ClassMap
from marsunits.data.datasets import RandomCropDataset, TiledDataset
from marsunits.data.folder import UnpairedFilesError
from marsunits.data.io import ImageReadError, read_image_native
from marsunits.data.source_folders import SourceFolders
from marsunits.data.splits import in_sol_ranges, kfold_split_by_group, split_by_group
from marsunits.data.store import ImageStore, LabelledImage, UnusablePairsError
from marsunits.errors import DataError, counted, some_of

__all__ = [
    "SourceReading",
    "one_class_refusal",
    "real_datasets",
    "say_split",
    "split_records",
    "unreadable_images",
]

# The data module's logger: the lines of its set-up keep the name a log is filtered by.
log = logging.getLogger("marsunits.data.datamodule")

#: ``{source: (its training store, its validation store or None)}``.
Stores = dict[str, tuple[ImageStore, ImageStore | None]]
#: ``{source: (training records, validation records)}``.
Splits = Mapping[str, tuple[list[LabelledImage], list[LabelledImage]]]

#: How many validation images the set-up's line on the split names (:func:`say_split`).
_SPLIT_NAMES = 12


def split_records(
    records: list[LabelledImage],
    source: str,
    name: str | None,
    *,
    exclude_sols: Sequence[tuple[int, int]] | None,
    train_only: Collection[str],
    n_folds: int | None,
    fold: int,
    val_fraction: float,
    seed: int,
    sol_block: int,
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """``source``'s scanned ``records`` as ``(training, validation)``: ``exclude_sols`` left out, the rest
    split by sol block (``val_fraction`` and ``seed``, or fold ``fold`` of ``n_folds``); a ``train_only``
    source's are all training images.

    Raises:
        ValueError: ``exclude_sols`` leaves none of the source's images (naming the data config ``name``).
    """
    if exclude_sols:
        excluded = in_sol_ranges([r.group for r in records], exclude_sols)
        if excluded.all():
            none = "out the only image" if len(records) == 1 else f"none of the {len(records)} images"
            raise ValueError(
                f"configs/data/{name}.yaml: exclude_sols={[list(r) for r in exclude_sols]} "
                f"leaves {none} of '{source}'; narrow the ranges."
            )
        records = [r for r, out in zip(records, excluded, strict=True) if not out]
        log.info("%s: %s in exclude_sols left out", source, counted(int(excluded.sum()), "image"))
    groups = [r.group for r in records]
    places = [r.place for r in records] if any(r.place is not None for r in records) else None
    if source in train_only:
        train_idx, val_idx = np.arange(len(records)), np.arange(0)
    elif n_folds is None:
        train_idx, val_idx = split_by_group(groups, val_fraction, seed, sol_block, places)
    else:
        train_idx, val_idx = kfold_split_by_group(groups, n_folds, fold, sol_block, places)
    return [records[i] for i in train_idx], [records[i] for i in val_idx]


def say_split(splits: Splits, folders: SourceFolders, how: str) -> None:
    """Log how many images of each source of ``splits`` train and validate, naming the validation images
    below their source's folder (the first :data:`_SPLIT_NAMES`) and ``how`` they were chosen (the
    ``val_fraction`` or the fold); a train-only source (``folders.train_only``) trains on all of its."""
    for source, (train, val) in splits.items():
        if source in folders.train_only:
            log.info("%s: %s trained on (train only)", source, counted(len(train), "image"))
            continue
        names = [folders.image_key(source, rec).removeprefix("images/") for rec in val]
        log.info(
            "%s: %s trained on, %d validated on (%s): %s",
            source,
            counted(len(train), "image"),
            len(val),
            how,
            some_of(names, _SPLIT_NAMES),
        )


@dataclass(frozen=True)
class SourceReading:
    """How the pairs of a data config's real sources are read into image stores.

    Args:
        name: the data config's name, as the class maps' messages name it.
        sources: the config's sources.
        class_map: ``data.class_map``: one source's map, or ``{source: map}`` for several.
        cache: ``data.cache``: a bool, or ``{source: bool}`` (a source not named is cached).
        train_only: the sources read for training only (no validation store).
        subclass_map: native id -> training sub-class id, for the training masks (None: project ids).
        subclasses: the project class of each sub-class id (with ``subclass_map``).
    """

    name: str | None
    sources: Sequence[str]
    class_map: Any
    cache: Any
    train_only: Collection[str] = ()
    subclass_map: Mapping[int, int] | None = None
    subclasses: Sequence[int] | None = None

    def class_map_of(self, source: str) -> ClassMap:
        """``source``'s map of native ids to project ids."""
        if len(self.sources) == 1:
            return ClassMap(self.class_map, str(self.name))
        # One map per source: data.class_map.<source> is what a command line overrides.
        return ClassMap((self.class_map or {}).get(source), str(self.name), key=f"class_map.{source}")

    def cached(self, source: str) -> bool:
        """Whether ``source``'s decoded images are kept in memory."""
        if isinstance(self.cache, Mapping):
            return bool(self.cache.get(source, True))
        return bool(self.cache)

    def stores(self, splits: Mapping[str, tuple[list[LabelledImage], list[LabelledImage]]]) -> Stores:
        """The training and validation stores of every source of ``splits`` (``None``: a train-only source).

        Every source and part is read before a problem is raised, so one error lists all the unusable
        pairs of the data, not those of the first store that has one.

        Raises:
            UnusablePairsError: each pair that cannot be used and its problem.
        """
        stores: Stores = {}
        problems: list[UnusablePairsError] = []
        total = 0
        for source in self.sources:
            train_recs, val_recs = splits[source]
            class_map, cache = self.class_map_of(source), self.cached(source)
            train_map = class_map
            if self.subclass_map is not None and self.subclasses is not None:
                train_map = ClassMap(
                    self.subclass_map, str(self.name), num_targets=len(self.subclasses), key="subclass_map"
                )
            parts: list[tuple[list[LabelledImage], ClassMap]] = [(train_recs, train_map)]
            if source not in self.train_only:
                parts.append((val_recs, class_map))
            built: list[ImageStore | None] = [None, None]
            for k, (records, mapping) in enumerate(parts):
                total += len(records)
                try:
                    built[k] = ImageStore(records, mapping, cache=cache)
                except UnusablePairsError as err:
                    problems.append(err)
            if built[0] is not None:
                stores[source] = (built[0], built[1])
        if problems:
            raise UnusablePairsError.merged(problems, total)
        return stores

    def unpaired_and_unusable(self, unpaired: list[tuple[str, UnpairedFilesError]]) -> UnpairedFilesError:
        """The error for files without their pair, ``unpaired`` (source, error), that also lists the
        problems of the pairs those sources did find (a mask of another size, ids outside the class map):
        a forgotten mask hid them until the run after it was added, one run per mistake. Said as the
        unpaired error alone where those pairs are all usable."""
        problems: list[UnusablePairsError] = []
        total = 0
        for source, err in unpaired:
            total += len(err.paired)
            try:
                ImageStore(err.paired, self.class_map_of(source), cache=self.cached(source))
            except UnusablePairsError as bad:
                problems.append(bad)
        text = "\n".join(str(err) for _, err in unpaired)
        if problems:
            count = sum(len(bad.problems) for bad in problems)
            lead = f"{count} of the {total} pairs found cannot be used either"
            text += "\n" + str(UnusablePairsError.merged(problems, total, lead))
        return UnpairedFilesError(text, [])


def refuse_unlabelled_validation(source: str, val_recs: Sequence[LabelledImage]) -> None:
    """Stop when no validation image of ``source`` has a labelled pixel.

    Such a run trained, validated nothing (Lightning only noted a data loader of length zero), kept no
    best checkpoint and wrote a ``metrics.json`` without a score, with exit status 0.

    Raises:
        DataError: naming the validation images and what to change.
    """
    names = some_of([r.mask.name for r in val_recs], 5)
    hold = "holds" if len(val_recs) == 1 else "hold"
    what = f"its {counted(len(val_recs), 'validation mask')} ({names}) {hold} no labelled pixel (all 255)"
    if not val_recs:
        what = "it has no validation image"
    raise DataError(
        f"data source {source!r}: {what}, so nothing could be validated or scored; label those images, or "
        "give validation other images (data.val_fraction, data.seed, or more labelled images)"
    )


def real_datasets(
    splits: Mapping[str, tuple[list[LabelledImage], list[LabelledImage]]],
    stores: Stores,
    *,
    samples_per_source: int,
    crop_size: int,
    in_channels: int,
    transform: Any,
    min_labelled_fraction: float,
    focus_class: int | None,
    focus_fraction: float,
    fixed_seed: int | None,
    order_seed: int,
    context_px: int,
) -> tuple[list[Dataset], list[Dataset]]:
    """``(training sets, validation sets)``, one of each per source of ``stores`` in its order (no validation
    set for a train-only source): ``samples_per_source`` random training crops of ``crop_size`` (drawn as
    :class:`~marsunits.data.datasets.RandomCropDataset` says, ``fixed_seed`` for the same crops every epoch)
    and the validation images' tiles, in ``order_seed``'s order with ``context_px`` around each.

    Raises:
        DataError: no validation image of a source has a labelled pixel
            (:func:`refuse_unlabelled_validation`).
    """
    train_parts: list[Dataset] = []
    val_sets: list[Dataset] = []
    for source, (train_store, val_store) in stores.items():
        train_parts.append(
            RandomCropDataset(
                train_store,
                samples_per_source,
                crop_size,
                in_channels,
                transform=transform,
                min_labelled_fraction=min_labelled_fraction,
                focus_class=focus_class,
                focus_fraction=focus_fraction,
                fixed_seed=fixed_seed,
            )
        )
        if val_store is not None:
            val_set = TiledDataset(
                val_store, crop_size, in_channels, order_seed=order_seed, context_px=context_px
            )
            if len(val_set) == 0:
                refuse_unlabelled_validation(source, splits[source][1])
            val_sets.append(val_set)
    return train_parts, val_sets


def unreadable_images(records: Sequence[LabelledImage]) -> UnusablePairsError | None:
    """Decode the image of every one of ``records`` (those of sources read without a cache) and return the
    error listing those that cannot be read, or None, saying in the log how many it reads."""
    if len(records) == 1:
        log.info("reading the only image to see whether it is unreadable (data.cache=false)")
    elif records:
        log.info("reading the other %d images to list every unreadable one (data.cache=false)", len(records))
    problems, files = [], []
    for rec in records:
        try:
            read_image_native(rec.image)
        except ImageReadError as err:
            problems.append(str(err))
            files.append(str(rec.image) if str(err).startswith(f"{rec.image}: ") else None)
    return UnusablePairsError(problems, len(records), files) if problems else None


def one_class_refusal(
    reading: SourceReading,
    splits: Splits,
    training_ids: Mapping[str, frozenset[int]],
    training_unlabelled: bool,
) -> str | None:
    """Why the data cannot train a network, when the labelled pixels of every training mask (all sources
    together, after the class map: ``training_ids``, the ids each source's training masks hold) are of one
    class, or None (see :meth:`~marsunits.data.datamodule.MarsDataModule.one_class_training`). Masks of 0
    and 255 alone (``training_unlabelled``: some training mask holds a 255) read as project ids are told
    how to map white to a unit."""
    held = frozenset().union(*training_ids.values())
    if len(held) != 1:
        return None
    (only,) = held
    sub = reading.subclass_map is not None and reading.subclasses is not None
    name = f"sub-class {only}" if sub else f"{CLASS_NAMES[only]} ({only})"
    count = sum(len(splits[source][0]) for source in training_ids)
    folders = ", ".join(
        os.path.commonpath([r.mask.parent for r in splits[source][0]]) for source in training_ids
    )
    masks = counted(count, "training mask")
    only_black_and_white = (
        not sub
        and only == 0
        and training_unlabelled  # masks of 0 alone, fully labelled, hold no 255 to read as white
        and len(reading.sources) == 1
        and reading.class_map_of(reading.sources[0]).identity
    )
    if only_black_and_white:
        return (
            f"data={reading.name}: all {masks} in {folders} hold only 0 and 255: 0 is smooth_volcanic and "
            "255 no label, never trained on, so the network would learn to call everything "
            "smooth_volcanic. Masks saved in black and white, white marking a unit, need that unit's id: "
            "data.class_map='{0: 0, 255: 1}' reads white as rough_olivine and black as smooth_volcanic. "
            "Else label the other units too (0 smooth_volcanic, 1 rough_olivine, 2 other; 255 no label)."
        )
    mapped = (
        "" if all(reading.class_map_of(s).identity for s in reading.sources) else ", after data.class_map"
    )
    return (
        f"data={reading.name}: the {masks} in {folders} label one class only, {name}{mapped}, so the "
        f"network would learn to call everything {name.split(' (')[0]}. Label the other units in the "
        "masks too (0 smooth_volcanic, 1 rough_olivine, 2 other; 255 no label), or add images that show "
        "them."
    )
