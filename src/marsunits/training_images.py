"""Whether a model's training images were greyscale or colour: their counts, kept in its metadata.

``predict.py`` says when greyscale images go to a model that reads colour, copied into its three channels. A
model that has seen only colour maps them worse; one trained on grey frames copied the same way (Navcam
frames in a ``data=folder``) does not. Checkpoints did not record which, so the run's last line hedged for
every model but MarsScapes' and AI4Mars' ("if its training images were colour ..."), and a user whose
folder model had been trained on grey Navcam frames alone was told it might map them worse.
:class:`~marsunits.task.SegmentationTask` now records the counts (``metadata["training_images"]``,
:func:`images_record`), and the summary says what they show (:func:`grey_and_colour`).

**Greyscale** is one channel, or three equal ones (R = G = B, as Navcam frames are often distributed):
:func:`is_grey`, the test ``predict.py`` applies to each input, so that a training image and an input are
called grey alike. Any other three-channel image is colour. Each training image counts once (not each
crop drawn from it); synthetic training scenes count by the generator's ``scene.mode`` (``grey``, ``color``,
or ``mixed``, drawn per scene).

A fine-tuned model (``init_ckpt_path``) keeps the record of the model it started from under ``parent``,
whose images shaped its weights too: the counts in all are the chain's sums (:func:`grey_and_colour`),
unknown where any link's are (a parent saved before the record).

Plain Python and numpy, no torch: the record is read from a checkpoint's dict or a package's JSON alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "METADATA_KEY",
    "UNKNOWN",
    "check_images_record",
    "grey_and_colour",
    "images_record",
    "is_grey",
]

#: The key of the record in a model's metadata (absent from checkpoints and packages before 2026-12-07).
METADATA_KEY = "training_images"

#: How deep a chain of fine-tunings :func:`check_images_record` follows before calling it malformed (a
#: package's JSON is a user's to edit; a record nested without end is not one train.py writes).
_MAX_PARENTS = 64


def is_grey(image: np.ndarray) -> bool:
    """Whether an ``(H, W, C)`` image is greyscale: one channel, or three equal ones (Navcam frames are often
    distributed as RGB with R = G = B). ``predict.py`` records it in each contact file and manifest row;
    training counts its images with it (:func:`images_record`)."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def images_record(
    grey: int | None, colour: int | None, parent: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``training_images`` entry of a model's metadata (plain JSON types).

    Args:
        grey: training images of this run that are greyscale (:func:`is_grey`); None when unknown.
        colour: those that are colour; None when unknown.
        parent: the record of the model the run's network started from (``init_ckpt_path``), or
            :data:`UNKNOWN` when that model recorded none; None when it started from ImageNet or random
            weights.
    """
    return {
        "grey": None if grey is None else int(grey),
        "colour": None if colour is None else int(colour),
        "parent": None if parent is None else dict(parent),
    }


#: The record of a model whose training images are unknown (a checkpoint saved before the record), kept as
#: the ``parent`` of a model fine-tuned from it.
UNKNOWN: dict[str, Any] = images_record(None, None)


def grey_and_colour(record: Any) -> tuple[int, int] | None:
    """``(grey, colour)`` training images behind the model's weights: its run's and those of every model it
    was fine-tuned from. None when unknown: no record, or a link of the chain that has none."""
    totals = [0, 0]
    for _ in range(_MAX_PARENTS + 1):
        if not isinstance(record, Mapping):
            return None
        for k, key in enumerate(("grey", "colour")):
            value = record.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return None
            totals[k] += value
        record = record.get("parent")
        if record is None:
            return totals[0], totals[1]
    return None


def check_images_record(record: Any) -> str | None:
    """Why ``record`` (a package's ``metadata["training_images"]``, plain JSON a user may edit) is not in the
    form :func:`images_record` writes, or None when it is (or is null). Keys other than those it writes are
    not looked at (a package of a later version may hold more)."""
    for depth in range(_MAX_PARENTS + 1):
        if record is None:
            return None
        where = "" if depth == 0 else f" (its parent's, {depth} level{'s' if depth > 1 else ''} up)"
        if not isinstance(record, Mapping):
            return f"is not an object or null{where}"
        for key in ("grey", "colour"):
            value = record.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                return f"{key}={value!r} is not a whole number >= 0 or null{where}"
        record = record.get("parent")
    return f"nests more than {_MAX_PARENTS} parents"
