"""Image/mask pairs on disk -> arrays in project ids, decoded once and optionally cached in memory.

Why a store: the MarsScapes panoramas are up to ~6000 px wide JPEGs; decoding one costs ~30 ms, far more
than cutting a 256 px crop from it. On the 2-core machines this project targets, decoding per crop would
dominate training, so small datasets are decoded once at set-up and kept in memory in their stored type
(8-bit images stay ``uint8``: all 60 MarsScapes panoramas take ~0.3 GB with masks, ~3 s to load).
Large collections of small files (AI4Mars:
6 000 x 256 px) are read per sample instead (``cache=False``); their masks are still read once at set-up
to count labelled pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.constants import IGNORE_INDEX
from marsunits.data.class_map import ClassMap
from marsunits.data.io import (
    ImageReadError,
    header_says_one_channel,
    image_size,
    read_image_native,
    scale_to_unit,
    warn_of_read_notes,
)
from marsunits.data.mask_io import read_mask, turned_mask_note
from marsunits.errors import DataError
from marsunits.training_images import is_grey

__all__ = ["ImageStore", "LabelledImage", "UnusablePairsError", "as_float"]


@dataclass(frozen=True)
class LabelledImage:
    """One image/mask pair on disk.

    Attributes:
        image: image file (any of ``io.IMAGE_EXTENSIONS``).
        mask: single-channel uint8 label file of the same size (native ids of ``source``).
        group: key for grouped splits (the sol for rover data; ``None`` = the image is its own group).
        source: dataset name (``configs/data/<source>.yaml`` holds its class map).
        camera: optional JSON file with the camera model (``PinholeCamera.to_dict()`` form).
        place: where the image was taken, when the dataset says (AI4Mars: ``"<site>/<drive>"``); images of
            one place stay on one side of the split (``splits.group_ids``).
    """

    image: Path
    mask: Path
    group: int | None
    source: str
    camera: Path | None = None
    place: str | None = None


class ImageStore:
    """Decoded, class-mapped image/mask pairs with per-image labelled-pixel counts.

    Args:
        records: the pairs, in a fixed order (index ``i`` everywhere below refers to ``records[i]``).
        class_map: maps native mask ids to project ids (``ClassMap(None, ...)`` for masks already in
            project ids).
        cache: decode every pair at construction and keep it in memory.

    Raises:
        ValueError: unreadable files (:class:`~marsunits.data.io.ImageReadError`), image and mask sizes that
            differ, or mask values the class map does not cover. Every pair is checked first and the one
            error lists each problem with its file (:data:`LISTED_PROBLEMS` of them, then a count), so a
            folder with several bad masks is fixed in one round instead of one run per file.
    """

    def __init__(self, records: Sequence[LabelledImage], class_map: ClassMap, cache: bool) -> None:
        self.records = list(records)
        self.class_map = class_map
        self.cache = cache
        self._images: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        sizes: list[tuple[int, int]] = []
        counts: list[int] = []
        ids: list[frozenset[int]] = []
        problems: list[str] = []
        files: list[str | None] = []  # the file each problem's message begins with, for grouping
        for rec in self.records:
            try:
                if cache:
                    img, mask = self._decode(rec)
                    self._images.append(img)
                    self._masks.append(mask)
                else:
                    mask = self._read_mapped_mask(rec)
                    width, height = image_size(rec.image)
                    _check_same_size(rec, (height, width), mask.shape)
                    warn_of_read_notes(rec.image)  # its pixels are read in loader workers, which say nothing
            except ValueError as err:  # ImageReadError too: every pair is checked, so one run lists them all
                problems.append(str(err))
                files.append(
                    next((str(f) for f in (rec.mask, rec.image) if str(err).startswith(f"{f}: ")), None)
                )
                continue
            sizes.append((mask.shape[0], mask.shape[1]))
            # One pass over the mask gives both its labelled pixels and the ids it holds.
            held = np.bincount(mask.ravel(), minlength=256)
            counts.append(int(mask.size - held[IGNORE_INDEX]))
            ids.append(frozenset(int(v) for v in np.flatnonzero(held) if v != IGNORE_INDEX))
        if problems:
            raise UnusablePairsError(problems, len(self.records), files)
        #: (height, width) of every image.
        self.sizes: list[tuple[int, int]] = sizes
        #: Number of labelled (non-ignore) pixels of every mask, after the class map.
        self.labelled_counts = np.asarray(counts, dtype=np.int64)
        #: The labelled ids (255 left out) every mask holds, after the class map.
        self.labelled_ids: list[frozenset[int]] = ids

    def __len__(self) -> int:
        return len(self.records)

    def _read_mapped_mask(self, rec: LabelledImage) -> np.ndarray:
        return self.class_map(read_mask(rec.mask), rec.mask)

    def _decode(self, rec: LabelledImage) -> tuple[np.ndarray, np.ndarray]:
        img = read_image_native(rec.image)
        mask = self._read_mapped_mask(rec)
        _check_same_size(rec, img.shape[:2], mask.shape)
        return img, mask

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, C)`` in its stored type: uint8 (8-bit files), uint16 (16-bit) or float32
        in [0, 1]. Use :func:`as_float` on (a crop of) it to get float32 [0, 1]."""
        return self._images[i] if self.cache else read_image_native(self.records[i].image)

    def greyscale(self, i: int) -> bool | None:
        """Whether image ``i`` is greyscale (:func:`~marsunits.training_images.is_grey`: one channel, or
        three equal ones); None when it cannot be read (set-up or training says why).

        Cached images are looked at in memory. An image read without a cache is told grey from its header
        when that declares one channel (AI4Mars' Navcam JPEGs), and decoded otherwise: three channels may
        still be equal.
        """
        if self.cache:
            return is_grey(self._images[i])
        path = self.records[i].image
        if header_says_one_channel(path):
            return True
        try:
            return is_grey(read_image_native(path))
        except ImageReadError:
            return None

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` in project ids, ``uint8 (H, W)``."""
        return self._masks[i] if self.cache else self._read_mapped_mask(self.records[i])

    def camera(self, i: int) -> dict[str, Any] | None:
        """The camera dict of image ``i`` if its record names a camera file, else ``None``."""
        path = self.records[i].camera
        if path is None:
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable camera JSON ({err}). Fix or remove the file.") from err


#: Problems an :class:`UnusablePairsError` quotes in full; the rest are counted.
LISTED_PROBLEMS = 10


#: Files named beside a problem that several files share, after the first; the rest are counted.
LISTED_SAME = 5


class UnusablePairsError(DataError):
    """Image/mask pairs that cannot be used, each problem a message naming its file (a
    :class:`~marsunits.errors.DataError`, so a ``ValueError`` still).

    The text is the problem itself when there is one, else a count and the first :data:`LISTED_PROBLEMS`
    distinct problems, one per line. Problems whose message is the same but for the file it begins with
    (``files``: that file, or None where the message names none first) are said once, with the other files
    named after it: a folder of AI4Mars labels not converted repeated the same class-map advice for each
    mask, and hid the other problems past the tenth. ``problems``, ``files`` and ``total`` (pairs checked)
    let errors of several stores be merged with :meth:`merged`. ``lead`` replaces the count that opens the
    list (``<n> of <total> image/mask pairs cannot be used``), and is said before a single problem too.
    """

    def __init__(
        self,
        problems: Sequence[str],
        total: int,
        files: Sequence[str | None] | None = None,
        lead: str | None = None,
    ) -> None:
        self.problems, self.total, self.lead = list(problems), int(total), lead
        self.files = list(files) if files is not None else [None] * len(self.problems)
        if len(self.problems) == 1 and lead is None:
            text = self.problems[0]
        elif len(self.problems) == 1:
            text = f"{lead}:\n  - {self.problems[0]}"
        else:
            groups: dict[str, list[str]] = {}  # the message after its file -> the files, in order
            lines: list[tuple[str, str]] = []  # (key, the first message) per distinct problem, in order
            for problem, file in zip(self.problems, self.files, strict=True):
                prefix = f"{file}: "
                key = problem[len(prefix) :] if file and problem.startswith(prefix) else problem
                if key not in groups or not file:
                    groups.setdefault(key, [])
                    lines.append((key, problem))
                if file:
                    groups[key].append(file)
            listed = []
            for key, first in lines[:LISTED_PROBLEMS]:
                others = groups[key][1:]
                same = ""
                if others:
                    named = ", ".join(others[:LISTED_SAME])
                    rest = f" and {len(others) - LISTED_SAME} more" if len(others) > LISTED_SAME else ""
                    same = f"\n    the same for {len(others)} more: {named}{rest}"
                listed.append(f"  - {first}{same}")
            more = len(lines) - LISTED_PROBLEMS
            tail = f"\n  ... and {more} more" if more > 0 else ""
            count = lead or f"{len(self.problems)} of {self.total} image/mask pairs cannot be used"
            text = f"{count}; fix each:\n" + "\n".join(listed) + tail
        super().__init__(text)

    def __reduce__(self) -> tuple[type[UnusablePairsError], tuple[Any, ...]]:
        # Pickled with the arguments of __init__ (the default passes the text alone), so the error crosses
        # a process boundary (a worker, another rank) as raised.
        return type(self), (self.problems, self.total, self.files, self.lead)

    @classmethod
    def merged(
        cls, errors: Sequence[UnusablePairsError], total: int, lead: str | None = None
    ) -> UnusablePairsError:
        """One error for the problems of several stores (``total``: pairs of all of them; ``lead`` as in
        the class)."""
        problems = [p for e in errors for p in e.problems]
        return cls(problems, total, [f for e in errors for f in e.files], lead)


def as_float(img: np.ndarray) -> np.ndarray:
    """Stored image (uint8, uint16 or float [0, 1]) ``(H, W, C)`` -> float32 [0, 1]."""
    return scale_to_unit(img)


def _check_same_size(rec: LabelledImage, image_hw: tuple[int, ...], mask_hw: tuple[int, ...]) -> None:
    """Raise if image and mask sizes differ. ``image_hw`` is the image as displayed (its EXIF orientation
    applied); a mask drawn on the stored pixels of a turned photo was said to differ in size while both
    files were that size on disk, so the message then names the tag (:func:`turned_mask_note`)."""
    if tuple(image_hw) != tuple(mask_hw):
        raise ValueError(
            f"{rec.image}: image is {image_hw[1]}x{image_hw[0]} (WxH) but its mask {rec.mask} is "
            f"{mask_hw[1]}x{mask_hw[0]}. Masks must have the image's exact size: re-export the mask (nearest "
            "neighbour if it was resized) or pair the right files."
            f"{turned_mask_note(rec.image, image_hw, mask_hw)}"
        )
