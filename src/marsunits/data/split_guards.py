"""Guards on a real-data split: what leaves the training side, and what stops a run, so that validation
scores are not optimistic.

A split is ``{source: (training records, validation records)}`` (:class:`~marsunits.data.store.LabelledImage`
lists, as :class:`~marsunits.data.datamodule.MarsDataModule` holds it after scanning). Two kinds of guard:

* **leaving out** training images that would leak into validation: those of sol blocks another source
  validates on (:func:`hold_out_validated_sols`), and those within ``sol_margin`` sols of a validation sol
  (:func:`leave_out_sols_near_validation`);
* **refusing** a run whose network comes from a model that saw this run's validation data: by sol
  (:func:`refuse_validation_sols_seen_before`), by image content
  (:func:`refuse_validation_images_seen_before`), or, for a resumed run, by the images without a sol its
  first part trained on (:func:`refuse_validation_images_trained_before`).

A "teacher" is ``(what, data)``: ``what`` names the model in messages (e.g. ``init_ckpt_path=... (the model
this run starts from)``), ``data`` is what it trained on: ``{source: sols}`` or a collection of image content
keys (:func:`~marsunits.file_digest.image_content_key`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from marsunits.data.splits import near_sols
from marsunits.data.store import LabelledImage
from marsunits.errors import DataError, counted, some_of
from marsunits.file_digest import file_sha256, image_content_key

__all__ = [
    "PseudoLabelTeacher",
    "Splits",
    "hold_out_validated_sols",
    "leave_out_sols_near_validation",
    "pseudo_label_teacher",
    "refuse_validation_images_seen_before",
    "refuse_validation_images_trained_before",
    "refuse_validation_sols_seen_before",
    "validation_sols",
]

log = logging.getLogger(__name__)

Splits = dict[str, tuple[list[LabelledImage], list[LabelledImage]]]

#: ``(what, {source: sols} or None, image keys or None)`` of the teacher of a pseudo-label folder.
PseudoLabelTeacher = tuple[str, Mapping[str, Sequence[int]] | None, Collection[str] | None]


def validation_sols(splits: Splits) -> dict[str, list[int]]:
    """``{source: sols}`` of the validation side of each split (images without a sol left out)."""
    return {source: [r.group for r in val if r.group is not None] for source, (_, val) in splits.items()}


def hold_out_validated_sols(splits: Splits, sol_block: int, where: str) -> None:
    """Drop from every source's training side, in place, the images of sol blocks any source validates on.

    Args:
        splits: the split, modified in place.
        sol_block: consecutive sols grouped together by the split.
        where: the data config, for messages (``configs/data/<name>.yaml``).

    Raises:
        ValueError: If a source would keep no training image.
    """
    held = {r.group // sol_block for _, val in splits.values() for r in val if r.group is not None}
    for source, (train, val) in splits.items():
        # A rover position (AI4Mars' site/drive) spanning a held block and another: all its frames go,
        # or frames of the scene another source validates on would train from the other block.
        held_places = {
            r.place
            for r in train
            if r.place is not None and r.group is not None and r.group // sol_block in held
        }
        kept = [
            r
            for r in train
            if (r.group is None or r.group // sol_block not in held) and r.place not in held_places
        ]
        if not kept:
            raise ValueError(
                f"{where}: every training image of '{source}' is from a sol block another source "
                "validates on; set data.shared_sol_holdout=false if the sources' sols are not from one "
                "rover, or change data.val_fraction / data.seed."
            )
        if len(kept) < len(train):
            log.info(
                "%s: %s from sol blocks validated in another source left out (shared_sol_holdout)",
                source,
                counted(len(train) - len(kept), "training image"),
            )
        splits[source] = (kept, val)


def leave_out_sols_near_validation(splits: Splits, sol_margin: int, joined: bool, where: str) -> None:
    """Drop from each source's training side, in place, the images within ``sol_margin`` sols of a
    validation sol: of that source, or of every source when ``joined`` (one rover, one clock).

    Raises:
        ValueError: If a source would keep no training image.
    """
    validated = validation_sols(splits)
    everywhere = [sol for sols in validated.values() for sol in sols]
    for source, (train, val) in splits.items():
        reference = everywhere if joined else validated[source]
        near = near_sols([r.group for r in train], reference, sol_margin)
        if not near.any():
            continue
        kept = [r for r, out in zip(train, near, strict=True) if not out]
        if not kept:
            raise ValueError(
                f"{where}: every training image of '{source}' is within sol_margin={sol_margin} sols of a "
                "validation sol; lower data.sol_margin (0 = off) or change data.val_fraction / data.seed."
            )
        log.info(
            "%s: %s within %s of a validation sol left out (sol_margin)",
            source,
            counted(int(near.sum()), "training image"),
            counted(sol_margin, "sol"),
        )
        splits[source] = (kept, val)


def refuse_validation_sols_seen_before(
    splits: Splits,
    teachers: Sequence[tuple[str, Mapping[str, Sequence[int]] | None]],
    sol_block: int,
    sol_margin: int,
    joined: bool,
) -> None:
    """Raise if a teacher trained on sols this split validates on: in their sol blocks or within
    ``sol_margin`` of them. With ``joined`` (one rover) any source's sols count against every source's,
    else only against their own source's.

    Raises:
        DataError: naming the model, the sols and the ways out.
    """
    validated = validation_sols(splits)
    for what, seen in teachers:
        for source, sols in (seen or {}).items():
            against = [v for s, vals in validated.items() if joined or s == source for v in vals]
            if not against:
                continue
            blocks = {v // sol_block for v in against}
            near = near_sols(list(sols), against, sol_margin)
            hits = sorted(
                {
                    int(sol)
                    for sol, close in zip(sols, near, strict=True)
                    if close or sol // sol_block in blocks
                }
            )
            if hits:
                raise DataError(
                    f"{what} was trained on {counted(len(hits), 'sol')} of '{source}' that this run "
                    f"validates on (in a validation sol block of {sol_block} sols, or within "
                    f"sol_margin={sol_margin} sols): {hits[:8]}{' ...' if len(hits) > 8 else ''}. Its "
                    "validation scores would be optimistic. Use a model trained on this run's split (the "
                    "same data.seed, val_fraction, sol_block, n_folds and fold), or one that left these sols "
                    "out (data.exclude_sols); add data.allow_seen_val_sols=true to go on anyway."
                )


def refuse_validation_images_trained_before(
    splits: Splits,
    resumed: tuple[str, Mapping[str, Sequence[str]]],
    image_key: Callable[[str, LabelledImage], str],
    source_root: Callable[[str], Path],
) -> None:
    """Raise if the run a command resumes trained on images without a sol that this split validates on
    (adding or removing images re-draws the split of images without a sol).

    Args:
        splits: this run's split.
        resumed: ``(what, {source: image keys})`` of the resumed run (its datamodule's ``trained_images``).
        image_key: ``(source, record)`` -> the record's key, as the resumed run recorded it.
        source_root: ``source`` -> its folder, for the message.

    Raises:
        DataError: naming the images and the ways out.
    """
    what, trained = resumed
    for source, (_, val) in splits.items():
        before = set(trained.get(source) or ())
        hits = sorted(k for k in (image_key(source, r) for r in val if r.group is None) if k in before)
        if hits:
            raise DataError(
                f"{what} was trained on {counted(len(hits), 'image')} of '{source}' that this run validates "
                f"on ({some_of(hits, 5)}): images were added to or removed from {source_root(source)} since "
                "that run began, which re-draws the split of images without a sol, and its validation scores "
                "would be optimistic. Put the folder back as it was to resume, or start a new run from "
                "scratch (a new run_name, without ckpt_path: one started from its weights, init_ckpt_path=, "
                "is refused for the same reason, as they trained on those images); add "
                "data.allow_seen_val_sols=true to go on anyway."
            )


def refuse_validation_images_seen_before(
    splits: Splits, teachers: Sequence[tuple[str, Collection[str]]], own_keys: Callable[[], Collection[str]]
) -> None:
    """Raise if a teacher trained on one of this split's validation images, by content.

    Args:
        splits: this run's split.
        teachers: ``(what, image content keys)`` of each model.
        own_keys: the content keys of this split's training images (called only when a teacher has keys). A
            teacher whose keys include all of them was trained on this very split: a file with a copy on
            both sides of the split (a folder holding duplicates) is the split's overlap, not the model's,
            and is not charged to it. Any other model is charged with every validation image it trained on.

    Raises:
        DataError: naming the model, the images and the ways out.
    """
    if not any(keys for _, keys in teachers):
        return
    validated: dict[str, Path] = {}
    for _, val in splits.values():
        for rec in val:
            with contextlib.suppress(OSError):
                validated.setdefault(image_content_key(file_sha256(rec.image)), rec.image)
    own = set(own_keys())
    for what, keys in teachers:
        seen = set(keys)
        exempt = own if own and own <= seen else set()
        hits = sorted(os.fspath(validated[k]) for k in (seen & validated.keys()) - exempt)
        if hits:
            raise DataError(
                f"{what} was trained on {len(hits)} of the images this run validates on (the same files, by "
                f"content: {some_of(hits, 3)}), so its validation scores would be optimistic. Validate on "
                "images it has not seen (its run's split: the same data folder, data.seed and "
                "data.val_fraction), or start from another model; add data.allow_seen_val_sols=true to go on "
                "anyway."
            )


def pseudo_label_teacher(folder: Path) -> PseudoLabelTeacher | None:
    """``(what, sols, image keys)`` of the teacher of the pseudo-labels in ``folder``: the
    ``teacher_trained_sols`` and ``teacher_trained_image_keys`` its ``pseudo_labels.json`` records (each
    None when not recorded). None: no such file (a user's own labels), an unreadable one, or neither
    recorded."""
    record = folder / "pseudo_labels.json"
    try:
        content = json.loads(record.read_text())
        sols, keys = content.get("teacher_trained_sols"), content.get("teacher_trained_image_keys")
    except (OSError, ValueError, AttributeError):
        return None
    sols = sols if isinstance(sols, dict) and sols else None
    keys = frozenset(keys) if isinstance(keys, list) and keys else None
    if sols is None and keys is None:
        return None
    return f"the teacher of the pseudo-labels in {record.parent} ({record.name})", sols, keys
