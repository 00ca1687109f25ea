"""Score predicted masks against label masks: confusion matrix, per-class IoU, mIoU, pixel accuracy.

Counting is a ``numpy.bincount`` over ``target * 3 + pred`` (the same sum torchmetrics'
``MulticlassConfusionMatrix`` forms), done in numpy because masks arrive from disk as uint8 arrays and a
panorama-sized int64 tensor copy would only cost memory. Pixels whose label is 255 (ignore) are not scored.

Contact scores (:mod:`marsunits.boundary.metrics`): per image, ``boundary_f1`` and ``contact_distance_px``
from the predicted mask against the label mask (the cracks and scores of
:func:`~marsunits.boundary.metrics.boundary_scores`, 3 px tolerance) and, when a true contact file exists
(:func:`find_true_contact`), ``line_boundary_f1`` and ``line_contact_distance_px`` from the predicted
contact lines against the true ones
(:func:`~marsunits.boundary.metrics.line_scores`). The overall values are means over the images that have a
contact in the prediction or in the truth (an image where both agree there is none scores a perfect 1 and
would only dilute the mean); distances are averaged over the images where both sides have a contact
(undefined otherwise).

No-data pixels (255 in the prediction: ``predict.py``'s ``nodata_max``) are left out of every score: of the
confusion matrix, of both mask contacts (after the label's own unlabelled gaps are bridged, so the bridging
does not run the true contact on into the no-data) and of both contact line sets (cut to where a contact can
be traced, :func:`~marsunits.boundary.metrics.clip_lines`).

File names are matched in one Unicode normal form (NFC), as ``train.py`` pairs images and masks
(:mod:`marsunits.data.folder`): macOS writes names decomposed (NFD), so ``café.png`` copied from a Mac had no
label ``café.png`` saved elsewhere and was left out as "without a label".

Conventions: confusion rows are true classes, columns predicted classes, ids 0..2
(:data:`marsunits.constants.CLASS_NAMES`). A class that is absent from both the labels and the predictions
has no IoU (``None``); mIoU is the mean over the classes that have one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from marsunits.boundary.contact_io import ContactLine, read_contacts
from marsunits.boundary.metrics import (
    BOUNDARY_TOLERANCE_PX,
    clip_lines,
    crack_scores,
    line_scores,
    scored_cracks,
)
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from marsunits.data.class_map import (
    ClassMap,
    classes_file_refusal,
    labels_classes_folder,
    native_data_set_hint,
    project_classes_file,
    unreadable_classes_file,
)
from marsunits.data.folder import OTHER_RASTER_EXTENSIONS, word_added_splits, word_added_to_stem
from marsunits.data.io import IMAGE_EXTENSIONS, ImageReadError
from marsunits.data.mask_io import read_mask, turned_mask_note
from marsunits.errors import ConfigError
from marsunits.file_digest import image_content_key

log = logging.getLogger(__name__)

#: How ``metrics.json`` explains the overall contact scores.
CONTACT_NOTES = (
    "boundary_f1 / contact_distance_px compare the predicted mask's 0/1 contact with the label mask's "
    f"({BOUNDARY_TOLERANCE_PX:g} px tolerance); line_boundary_f1 / line_contact_distance_px compare the "
    "predicted contact lines with the true contact file (<labels_dir>/../contacts/<stem>.contact.geojson or "
    "<labels_dir>/<rel folder>/<stem>.contact.geojson) when one exists. Overall values are means over the "
    "images with a contact in the prediction or the truth (n_contact_images / n_line_images); distances are "
    "averaged over the images where both have a contact, and are null when none does."
)

#: Label file extensions tried, in order, for ``labels_dir/<rel folder>/<stem><ext>``. JPEG last: it cannot
#: hold a mask, and :func:`marsunits.data.mask_io.read_mask` refuses it with the reason, recorded in
#: ``label_errors`` (a JPEG label was counted as "without a label", the user's label silently left out).
LABEL_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg")

#: LABEL_EXTENSIONS as a label error names them ("<stem>.png, .tif, .tiff, .jpg or .jpeg").
_LOOKED_FOR = "<stem>" + ", ".join(LABEL_EXTENSIONS[:-1]) + f" or {LABEL_EXTENSIONS[-1]}"


def confusion_matrix(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
    offer_checkpoint: bool = True,
) -> np.ndarray:
    """Confusion counts ``(num_classes, num_classes)`` int64; rows = target, columns = prediction.

    Args:
        pred: Integer ``(H, W)`` predicted ids in ``[0, num_classes)``.
        target: Integer ``(H, W)`` label ids in ``[0, num_classes)`` or ``ignore_index``.
        offer_checkpoint: Whether a label's refusal offers ``labels_class_map=checkpoint`` (the model's
            training map): not for a model that ``checkpoint`` would be refused for (trained on masks in
            project ids, as the synthetic default), whose labels were told to give it all the same.

    Raises:
        ValueError: Shapes differ, or ids outside the valid range (the message lists them).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction is {pred.shape[::-1]} (W, H) but the label is {target.shape[::-1]}")
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    for name, ids in (("label", t), ("prediction", p)):
        bad = np.unique(ids[(ids < 0) | (ids >= num_classes)])
        if bad.size:
            # Labels of a data set copied unconverted (MarsScapes' 0..9): its name, which gives its whole
            # map with any model; a model trained without a map (synthetic, data=folder) refuses
            # labels_class_map=checkpoint.
            hint = (
                native_data_set_hint(np.unique(ids), "labels_class_map", by_name=True)
                if name == "label"
                else ""
            )
            checkpoint = (
                "labels_class_map=checkpoint (the model's training map) or " if offer_checkpoint else ""
            )
            raise ValueError(
                f"{name} holds ids {bad.tolist()} outside 0..{num_classes - 1} and {ignore_index} (ignore); "
                f"convert the mask to project ids first, or give predict.py {checkpoint}"
                "labels_class_map='{native id: project id, ...}'" + (f".{hint.rstrip('.')}" if hint else "")
            )
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(cm: np.ndarray) -> dict[str, Any]:
    """IoU per class (by name), mIoU, pixel accuracy and the matrix itself, from confusion counts.

    Computed here because the counts are summed over a run's images (and shards): scikit-learn's and
    torchmetrics' public IoU functions take the pixel arrays, not a confusion matrix.

    Args:
        cm: ``(C, C)`` pixel counts, rows true class, columns predicted class (:func:`confusion_matrix`),
            ``C == len(CLASS_NAMES)``.

    Returns:
        ``{"iou": {name: float | None}, "miou": float | None, "pixel_accuracy": float | None,
        "pixels": int, "confusion_matrix": [[int]]}``; None where the quantity is undefined (no pixels).
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = {name: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, name in enumerate(CLASS_NAMES)}
    defined = [v for v in iou.values() if v is not None]
    total = int(cm.sum())
    return {
        "iou": iou,
        "miou": float(np.mean(defined)) if defined else None,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "pixels": total,
        "confusion_matrix": cm.tolist(),
    }


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _label_suffix(name: str) -> str | None:
    """The first of LABEL_EXTENSIONS that ``name`` ends with in any letter case, or None."""
    return next((s for s in LABEL_EXTENSIONS if name.lower().endswith(s)), None)


def _forms_clash(found: Sequence[Path]) -> ValueError:
    names = ", ".join(f"{p.name!r} ({ascii(p.name)})" for p in found)
    return ValueError(
        f"{found[0].parent}: {names} are one name written in two Unicode forms (composed, NFC, and "
        "decomposed, NFD, as macOS writes names), so which one is meant cannot be told; remove or rename "
        "one of them."
    )


@dataclass
class _Listing:
    """One listing of a folder: its modification time then, its names by their NFC, case-folded form, and,
    made when first asked for, its label names by the stem they hold with a word added
    (:meth:`FolderIndex.labels_with_a_word_added`)."""

    stamp: int | None
    by_key: dict[str, list[str]]
    by_stem_with_a_word: dict[str, list[str]] | None = None


class FolderIndex:
    """The names in each folder asked about, by their NFC, case-folded form, listed once per folder and
    again only when the folder's modification time changes (a label added while a run scores).

    Looking up a label by listing its folder each time made a folder of non-ASCII names quadratic (3 ms a
    lookup at 3,000 files); a ``stat`` of the folder per lookup costs microseconds. So did looking for a
    label named with a word added by testing every name of the folder for each input without a label
    (2 ms an input at 16,000 names, half a minute a run): the names are indexed by that stem once a listing.
    """

    def __init__(self) -> None:
        self._names: dict[Path, _Listing] = {}

    def names(self, folder: Path, name: str) -> list[str]:
        """The names in ``folder`` equal to ``name`` in NFC whatever their letter case ([] if none, or no
        such folder)."""
        return self._index(folder).get(_nfc(name).casefold(), [])

    def has_image_of_stem(
        self, folder: Path, stem: str, extensions: Sequence[str] = IMAGE_EXTENSIONS
    ) -> bool:
        """Whether ``folder`` holds an image whose stem is ``stem`` exactly (NFC), letter case included, and
        whose extension is one of ``extensions`` (lower case with the dot, as the run's ``patterns``
        normalised; any letter case in the name)."""
        wanted = _nfc(stem)
        return any(
            _nfc(name)[: len(wanted)] == wanted and _nfc(name)[len(wanted) :].lower() in extensions
            for suffix in extensions
            for name in self.names(folder, f"{stem}{suffix}")
        )

    def labels_with_a_word_added(self, folder: Path, stem: str) -> list[str]:
        """The names in ``folder`` that end in one of LABEL_EXTENSIONS (any letter case) and whose stem before
        it, in NFC, is ``stem`` (NFC) with a word added before or after it
        (:func:`~marsunits.data.folder.word_added_to_stem`), sorted; [] if none, or no such folder. Every
        name of the folder is read so once a listing, however many stems are asked about."""
        listing = self._listing(folder)
        if listing.by_stem_with_a_word is None:
            by_stem: dict[str, set[str]] = {}
            for names in listing.by_key.values():
                for name in names:
                    suffix = _label_suffix(name)
                    if suffix is not None:
                        for base, _ in word_added_splits(_nfc(name[: len(name) - len(suffix)])):
                            by_stem.setdefault(base, set()).add(name)
            listing.by_stem_with_a_word = {base: sorted(names) for base, names in by_stem.items()}
        return listing.by_stem_with_a_word.get(_nfc(stem), [])

    def _index(self, folder: Path) -> dict[str, list[str]]:
        """``folder``'s names by their NFC, case-folded form, listed again when its mtime changes."""
        return self._listing(folder).by_key

    def _listing(self, folder: Path) -> _Listing:
        """``folder``'s listing, made again when its mtime changes."""
        try:
            stamp: int | None = os.stat(folder).st_mtime_ns
        except OSError:
            stamp = None
        cached = self._names.get(folder)
        if cached is None or cached.stamp != stamp:
            index: dict[str, list[str]] = {}
            with contextlib.suppress(OSError):  # no folder (or an unreadable one): no names
                for entry in os.listdir(folder):
                    index.setdefault(_nfc(entry).casefold(), []).append(entry)
            cached = self._names[folder] = _Listing(stamp, index)
        return cached


def _find_folder(root: Path, rel: PurePosixPath, index: FolderIndex) -> Path | None:
    """``root/rel``, each folder name matched in NFC (:func:`_find_file`); None if one is missing.

    Raises:
        ValueError: A folder on the way matches two folders whose names differ only in Unicode form.
    """
    folder = root
    for part in rel.parts:
        exact = folder / part
        if part.isascii() and exact.is_dir():  # an ASCII name has one form: no other to look for
            folder = exact
            continue
        found = sorted(
            folder / n for n in index.names(folder, part) if _nfc(n) == _nfc(part) and (folder / n).is_dir()
        )
        if len(found) > 1:
            raise _forms_clash(found)
        if not found:
            return None
        folder = found[0]
    return folder


def _find_file(
    root: Path,
    rel: PurePosixPath,
    suffixes: Sequence[str],
    any_case_suffix: bool,
    index: FolderIndex | None = None,
) -> Path | None:
    """``root/<rel folder>/<rel stem><suffix>`` for the first of ``suffixes`` found, or None.

    Names are compared in NFC, folders too; with ``any_case_suffix`` the suffix's letter case does not
    count (the stem's does), a suffix in the case given winning over another case. ``index``: the folder
    listings of the run (a fresh one by default).

    Raises:
        ValueError: The name found is also there in another Unicode form (two files on Linux): which one
            holds the user's data cannot be told, and picking one silently could score the wrong file.
    """
    stem = rel.stem
    if stem.isascii() and all(part.isascii() for part in rel.parent.parts):
        for suffix in suffixes:  # the common case, without listing the folder
            candidate = root / rel.parent / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
        if not any_case_suffix:
            return None
    index = index or FolderIndex()
    folder = _find_folder(root, rel.parent, index)
    if folder is None:
        return None
    wanted_stem = _nfc(stem)
    found: dict[str, tuple[int, bool]] = {}
    for rank, given in enumerate(suffixes):
        for name in index.names(folder, f"{stem}{given}"):
            text = _nfc(name)
            suffix = text[len(wanted_stem) :]
            if not text.startswith(wanted_stem) or not (suffix == given or any_case_suffix):
                continue  # the stem in another letter case, or the suffix where its case counts
            if name not in found and (folder / name).is_file():
                found[name] = (rank, suffix != given)
    if not found:
        return None
    ordered = sorted(found, key=lambda name: (found[name], name))
    best = ordered[0]
    same = [folder / n for n in ordered if _nfc(n) == _nfc(best)]
    if len(same) > 1:
        raise _forms_clash(same)
    return folder / best


def find_label(labels_dir: Path, rel: PurePosixPath, index: FolderIndex | None = None) -> Path | None:
    """Label of input ``rel``: ``labels_dir/<rel folder>/<stem>`` + the first LABEL_EXTENSIONS found, in any
    letter case (``.PNG`` from a camera or Windows tool, as train.py's folder data accepts).

    Names (folders too) are compared in Unicode NFC, as train.py pairs images and masks: an input saved on a
    Mac (decomposed, NFD) finds its label saved elsewhere (composed, NFC), and the other way round.
    ``index``: the folder listings a run keeps for all its lookups (:class:`FolderIndex`).

    Raises:
        ValueError: The label's name (or a folder's on the way) is there twice, in two Unicode forms.
    """
    found = _find_file(labels_dir, rel, LABEL_EXTENSIONS, any_case_suffix=True, index=index)
    if found is not None:
        return found
    # A label there under its exact name that is no file (a link to a disk not mounted, a folder, a pipe)
    # counted as no label, and the run said that no label matched while the user could see it: returned,
    # so that reading it names the file and its fault (read_mask never opens such a path).
    return next(
        (
            candidate
            for suffix in LABEL_EXTENSIONS
            if os.path.lexists(candidate := labels_dir / rel.parent / f"{rel.stem}{suffix}")
        ),
        None,
    )


def _labels_folder(labels_dir: Path, rel: PurePosixPath, index: FolderIndex) -> Path | None:
    """The folder of ``labels_dir`` that mirrors input ``rel``'s (names matched in NFC), or None: none, or
    one there in two Unicode forms (:func:`find_label` names those; the hints below are not given)."""
    try:
        return _find_folder(labels_dir, rel.parent, index)
    except ValueError:
        return None


def label_in_another_case(
    labels_dir: Path,
    rel: PurePosixPath,
    index: FolderIndex | None = None,
    image_path: Path | None = None,
    image_extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> Path | None:
    """A label file of input ``rel`` whose stem differs from the input's only in letter case (``B.png`` for
    ``b.png``), or None: :func:`find_label` matches the stem exactly, as train.py's folder data pairs images
    and masks, so such a label was reported as missing, with no hint that it was there.

    ``image_path``: the input file, or None. A label whose stem is exactly that of another input beside it
    (``b.png`` when ``b.jpg`` and ``B.jpg`` are both inputs) is that input's label, not one misnamed.
    ``image_extensions``: the extensions of the run's inputs (its ``patterns``, normalised by
    :func:`~marsunits.inference.inputs.normalise_patterns`), which tell an input from another file beside it:
    with the default ones, ``b.bmp``'s label was offered to ``B.bmp`` under patterns=[bmp], and a ``b.jpg``
    that a patterns=[png] run does not read hid the hint."""
    index = index or FolderIndex()
    folder = _labels_folder(labels_dir, rel, index)
    if folder is None:
        return None
    for suffix in LABEL_EXTENSIONS:
        for name in sorted(index.names(folder, f"{rel.stem}{suffix}")):
            stem = name[: len(name) - len(suffix)]
            if image_path is not None and index.has_image_of_stem(image_path.parent, stem, image_extensions):
                continue  # the exact label of another input, whose name differs from this one's in case
            if (folder / name).is_file():
                return folder / name
    return None


def label_with_a_word_added(
    labels_dir: Path,
    rel: PurePosixPath,
    index: FolderIndex | None = None,
    image_path: Path | None = None,
    image_extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> tuple[Path, str] | None:
    """A label file of input ``rel`` named with a word added before or after the input's stem
    (``425_1_label.png``, ``425_1-gt.png``, AI4Mars' ``<name>_merged.png``, ``mask_425_1.png``), and the
    added part (``"_label"``), or None. :func:`find_label` matches the stem exactly, as train.py pairs
    images and masks, so a folder of such labels scored nothing, and the run said only what the names must
    be, not that the labels were there under others.

    A name that is exactly another input's stem beside the image (``425_1_left.png`` when
    ``425_1_left.jpg`` is an input) is that input's label; ``image_path`` and ``image_extensions`` tell the
    inputs, as for :func:`label_in_another_case`. Names are compared in Unicode NFC and letter case as they
    are. ``<stem>.<ext>.png`` (an image's whole name) with another image extension than the input's,
    ``b.png.png`` beside ``b.jpg``, is the label of an image ``b.png`` where one lies beside the input (an
    input of the run or not), or where that cannot be told (no ``image_path``); else it is offered to the
    input (it was counted missing, without a word that it was there). The first such name in sorted order is
    returned."""
    index = index or FolderIndex()
    folder = _labels_folder(labels_dir, rel, index)
    if folder is None:
        return None
    plain = _nfc(rel.stem)
    # The folder's names by the stem they hold with a word added, made once a listing: testing each name
    # for each input without a label took half a minute a run at 16,000 names.
    for name in index.labels_with_a_word_added(folder, plain):
        suffix = _label_suffix(name)
        if suffix is None:
            continue
        label_stem = name[: len(name) - len(suffix)]
        found = word_added_to_stem(_nfc(label_stem), {plain})
        if found is None:
            continue
        added = found[1]
        if _another_image_s_whole_name(added, rel) and (
            image_path is None or index.has_image_of_stem(image_path.parent, rel.stem, (added.lower(),))
        ):
            continue  # b.png.png beside b.jpg and b.png: the label of the image b.png, not b.jpg's
        beside = image_path is not None and index.has_image_of_stem(
            image_path.parent, label_stem, image_extensions
        )
        if beside:
            continue  # the exact label of another input
        if (folder / name).is_file():
            return folder / name, added
    return None


def _another_image_s_whole_name(added: str, rel: PurePosixPath) -> bool:
    """Whether ``added``, the word a label's name adds to input ``rel``'s stem, is another image extension
    than ``rel``'s: ``b.png.png`` for ``b.jpg`` names an image ``b.png`` by its whole file name."""
    return added.lower() in IMAGE_EXTENSIONS and added.lower() != rel.suffix.lower()


def find_true_contact(labels_dir: Path, rel: PurePosixPath, index: FolderIndex | None = None) -> Path | None:
    """True contact file of input ``rel``, or None.

    Looked for in the synthetic layout ``labels_dir/../contacts/<rel folder>/<stem>.contact.geojson``, then
    next to the labels, ``labels_dir/<rel folder>/<stem>.contact.geojson``; names are compared in Unicode NFC
    (:func:`find_label`).

    Raises:
        ValueError: The file's name (or a folder's on the way) is there twice, in two Unicode forms.
    """
    for root in (labels_dir.parent / "contacts", labels_dir):
        found = _find_file(root, rel, (".contact.geojson",), any_case_suffix=False, index=index)
        if found is not None:
            return found
    return None


#: A file name that starts with a sol: ``<sol>_<anything>`` (MarsScapes' ``137_1.jpg``).
_SOL_NAME = re.compile(r"^(\d+)_")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


@dataclass
class Evaluation:
    """Accumulates per-image and overall scores for a prediction run with ``labels_dir``.

    Attributes:
        labels_dir: Folder of label masks mirroring the input folder, in project ids, or in a dataset's
            native ids when ``class_map`` is given.
        class_map: Native id -> project id for the label masks (predict.py's ``labels_class_map``); None:
            the labels hold project ids already, which a ``classes.json`` in ``labels_dir`` (else in the
            folder holding it) naming other classes contradicts.
        trained_sols: The checkpoint's ``trained_sols`` (``{source: [sol, ...]}``), or None: images named
            ``<sol>_<n>`` (MarsScapes' naming) from those sols are listed in ``images_from_trained_sols``.
        trained_image_keys: The checkpoint's ``trained_image_keys`` (content keys of its training image
            files), or None: scored images whose content is one of them are listed in
            ``images_trained_on``, whatever their names.
        max_megapixels: Larger labels are refused, checked from the header (predict.py's option; ``inf``:
            no limit, not even the image library's decompression-bomb limit); None: that library's limit.
        image_extensions: The extensions of the run's inputs (predict.py's ``patterns`` normalised, lower case
            with the dot): a label in another letter case that is exactly the name of another input beside
            the image is that input's, not offered to the image to rename (:func:`label_in_another_case`).
        classes_file_checked: Whether the caller has checked the labels' ``classes.json`` already, in its own
            option's words (predict's run: refused before anything is made, or warned of once): then it is
            not read again. False (default): with ``class_map`` None, one naming other classes is refused
            and one that cannot be read is warned of
            (:func:`~marsunits.data.class_map.unreadable_classes_file`), once, in this class's words.
        model_class_map: Whether ``labels_class_map=checkpoint`` would give the model's training map
            (predict's run: from its metadata); False: a label holding ids outside the project's is not told
            to give it, as a model trained on masks in project ids refuses it.

    Raises:
        ConfigError: ``class_map`` is None and the labels' ``classes.json`` names other classes than the
            project's (:func:`~marsunits.data.class_map.classes_file_refusal`): naming it and the map to give.
    """

    labels_dir: Path
    class_map: ClassMap | None = None
    trained_sols: Mapping[str, Sequence[int]] | None = None
    trained_image_keys: Collection[str] | None = None
    max_megapixels: float | None = None
    image_extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    classes_file_checked: bool = False
    model_class_map: bool = True
    _folders: FolderIndex = field(default_factory=FolderIndex, init=False, repr=False)  # listed once a run
    #: The labels' ``classes.json`` naming the project's classes, read without a map (metrics.json's
    #: ``labels_classes_file``): the labels are known to hold project ids.
    _project_classes_file: str | None = field(default=None, init=False, repr=False)
    #: Scored images whose content the model trained on (``trained_image_keys``), by input path.
    trained_on: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.class_map is None and not self.classes_file_checked:
            # Labels read as project ids beside (or among them) a classes.json naming other classes, as
            # predict.py refuses them: built in Python, AI4Mars labels holding no 3 were scored with their
            # sand (2) as other without a word.
            # One that cannot be read stops nothing, but the labels are then scored as project ids unchecked:
            # said, as predict.py says it.
            labels_dir = Path(self.labels_dir)
            folder, labels = labels_classes_folder(labels_dir), f"labels_dir={os.fspath(labels_dir)!r}"
            refused = classes_file_refusal(folder, labels, "class_map", python="ClassMap({}, None)")
            if refused is not None:
                raise ConfigError(refused)
            unread = unreadable_classes_file(folder, labels, "class_map")
            if unread is not None:
                log.warning("%s", unread)
        if self.class_map is None:  # a classes.json saying the labels hold project ids, 2 being other
            named = project_classes_file(labels_classes_folder(Path(self.labels_dir)))
            self._project_classes_file = None if named is None else os.fspath(named)
        if self.trained_image_keys is not None:  # a checkpoint's list: looked up once per scored image
            self.trained_image_keys = frozenset(self.trained_image_keys)

    total: np.ndarray = field(default_factory=lambda: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64))
    per_image: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: Scored images whose true contact file could not be used (their line scores are left out), by input.
    contact_errors: dict[str, str] = field(default_factory=dict)

    def add(
        self,
        rel: PurePosixPath,
        pred: np.ndarray,
        pred_lines: Sequence[ContactLine] = (),
        image_sha256: str | None = None,
        image_path: Path | None = None,
    ) -> None:
        """Score ``pred`` (uint8 ``(H, W)``) and its contact lines against the label, if one exists.

        Args:
            rel: The input's path relative to ``input_dir``.
            pred: Predicted class ids; 255 where the image has no data (left out of every score).
            pred_lines: Predicted contact lines (pixel coordinates), scored against the true contact file
                when there is one.
            image_sha256: The input file's SHA-256 (hex), or None when not known: checked against
                ``trained_image_keys``.
            image_path: The input file, or None: named when the label's size differs from it (with its
                EXIF orientation when that explains the difference).

        Problems with the label (unreadable, wrong size, two files of one name) are recorded in
        ``label_errors``, one sentence or more naming the label file once, and leave the image unscored;
        problems with its true contact file (unreadable, made for another image size, two files of one name)
        are recorded in ``contact_errors`` and leave out only its line scores.
        """
        key = rel.as_posix()
        try:
            label_path = find_label(self.labels_dir, rel, self._folders)
        except ValueError as exc:  # its name twice, in two Unicode forms: the message names both
            self.errors[key] = str(exc)
            return
        if label_path is None:
            other_case = label_in_another_case(
                self.labels_dir, rel, self._folders, image_path, self.image_extensions
            )
            if other_case is not None:
                self.errors[key] = (
                    f"{other_case}: its name differs from the image's, {rel.name}, only in letter case, and "
                    f"labels are matched by their exact name (as train.py pairs images and masks); rename it "
                    f"{PurePosixPath(rel.name).stem}{other_case.suffix}"
                )
                return
            renamed = label_with_a_word_added(
                self.labels_dir, rel, self._folders, image_path, self.image_extensions
            )
            if renamed is not None:
                self.errors[key] = self._renamed_label_message(renamed[0], renamed[1], rel)
                return
            flat = self._flat_label(rel, image_path)
            if flat is not None:
                mirrored = self.labels_dir / rel.parent / flat.name
                self.errors[key] = (
                    f"{flat}: a label of this image's name lies at the top of labels_dir, but labels mirror "
                    f"the input's folders, so this image's is {mirrored}; move "
                    f"each label into the folder of its image there (or predict the images of each subfolder "
                    f"with input_dir=<that subfolder>, whose labels then lie at the top of labels_dir)"
                )
                return
            unread = self._label_in_another_format(rel)
            if unread is not None:
                self.errors[key] = (
                    f"{unread}: a label in a format that is not read ({unread.suffix}: labels are looked for "
                    f"as {_LOOKED_FOR}, and a JPEG one is refused, its lossy compression changing the ids); "
                    f"save it as {PurePosixPath(rel.name).stem}.png, from the labelling tool's original ids"
                )
                return
            self.missing.append(key)
            return
        try:
            label = read_mask(label_path, self.max_megapixels)  # its errors name the file, as the class map's
            if self.class_map is not None:
                label = self.class_map(label, label_path)
            if label.shape != pred.shape:
                raise ValueError(self._size_message(label_path, label.shape, pred.shape, image_path))
            nodata = pred == IGNORE_INDEX
            valid = ~nodata if nodata.any() else None
            scored = label if valid is None else np.where(nodata, IGNORE_INDEX, label).astype(np.uint8)
            try:
                cm = confusion_matrix(pred, scored, offer_checkpoint=self.model_class_map)
            except ValueError as exc:
                raise ValueError(f"{label_path}: {exc}") from exc
            entry: dict[str, Any] = {"label": os.fspath(label_path), **scores(cm)}
            entry.update(self._mask_contact_scores(pred, label, valid))
        except (ImageReadError, ValueError) as exc:
            self.errors[key] = str(exc)
            return
        # A broken true contact file took the image's pixel scores with it, under the label's name.
        try:
            entry.update(self._line_scores(rel, pred, pred_lines, valid))
        except ValueError as exc:
            self.contact_errors[key] = str(exc)
        self.total += cm
        self.per_image[key] = entry
        if image_sha256 and image_content_key(image_sha256) in (self.trained_image_keys or ()):
            self.trained_on.add(key)

    def _label_in_another_format(self, rel: PurePosixPath) -> Path | None:
        """A file in the folder of ``rel``'s label named as its label but in a raster format that is not read
        (``<stem>.bmp``, ``.gif``, ...: :data:`~marsunits.data.folder.OTHER_RASTER_EXTENSIONS`), or None.
        Such a label was counted as missing without a word, though the user's label lay beside the others."""
        folder = _labels_folder(self.labels_dir, rel, self._folders)
        if folder is None:
            return None
        stem = PurePosixPath(rel.name).stem
        for suffix in OTHER_RASTER_EXTENSIONS:
            for name in self._folders.names(folder, f"{stem}{suffix}"):
                if _nfc(name)[: len(_nfc(stem))] == _nfc(stem) and (folder / name).is_file():
                    return folder / name
        return None

    def _flat_label(self, rel: PurePosixPath, image_path: Path | None) -> Path | None:
        """The label of ``rel``'s name at the top of ``labels_dir`` when ``rel`` lies in a subfolder (inputs
        sorted into folders, labels in one flat folder as AI4Mars ships them), or None; None too when an input
        of that stem lies at the top of the input folder (``image_path``'s, known from ``rel``): it is that
        input's label."""
        if rel.parent == PurePosixPath("."):
            return None
        if image_path is not None and len(image_path.parts) > len(rel.parts):
            top = Path(*image_path.parts[: len(image_path.parts) - len(rel.parts)])
            if self._folders.has_image_of_stem(top, rel.stem, self.image_extensions):
                return None
        try:
            return find_label(self.labels_dir, PurePosixPath(rel.name), self._folders)
        except ValueError:  # two Unicode forms of the name there: not this image's hint to give
            return None

    @staticmethod
    def _renamed_label_message(path: Path, added: str, rel: PurePosixPath) -> str:
        """Why the label ``path``, named ``rel``'s stem with ``added``, was not scored, and what to do."""
        stem = PurePosixPath(rel.name).stem
        if _another_image_s_whole_name(added, rel):
            return (
                f"{path}: named as the label of an image {stem}{added} (its whole file name with "
                f"{path.suffix} added), but no image {stem}{added} lies beside {rel.name}, whose label "
                f"{stem}{path.suffix} is missing; labels are matched by the image's stem (as train.py pairs "
                f"images and masks): if it is {rel.name}'s label, rename it {stem}{path.suffix}"
            )
        if added == ".mask" and path.with_name(f"{stem}.overlay.png").exists():
            return (
                f"{path}: a mask predict.py wrote (an overlay is beside it), not a label: labels_dir must be "
                f"the folder of the true label masks, one {stem}.png per image"
            )
        return (
            f"{path}: its name is the image's, {stem}, with '{added}' added, and labels are matched by their "
            f"exact name (as train.py pairs images and masks); if it is this image's label, rename it "
            f"{stem}{path.suffix} (for a folder of labels named so, remove '{added}' from each name)"
        )

    @staticmethod
    def _size_message(
        label_path: Path, label_hw: tuple[int, ...], pred_hw: tuple[int, ...], image_path: Path | None
    ) -> str:
        """Why a label of another size than its prediction cannot be scored, and what to do."""
        image = "the prediction" if image_path is None else f"its image {image_path} as read"
        turned = "" if image_path is None else turned_mask_note(image_path, pred_hw, label_hw)
        return (
            f"{label_path}: the label is {label_hw[1]}x{label_hw[0]} (WxH) but {image} is "
            f"{pred_hw[1]}x{pred_hw[0]}. A label must have its image's exact size: re-export it (nearest "
            f"neighbour if it was resized) or give the labels of these images as labels_dir.{turned}"
        )

    @staticmethod
    def _mask_contact_scores(pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None) -> dict[str, Any]:
        """Boundary F1 and contact distance of the predicted mask's contact against the label's.

        ``label`` is the label as drawn (its unlabelled gaps are bridged); ``valid`` (False at no-data, or
        None) is left out of both contacts after the bridging.
        """
        pred_cracks, true_cracks = scored_cracks(pred, label, valid=valid)
        b = crack_scores(pred_cracks, true_cracks, tolerance_px=BOUNDARY_TOLERANCE_PX)
        return {
            "boundary_f1": b["f1"],
            "contact_distance_px": _finite_or_none(b["mean_distance_px"]),
            "has_contact": bool(len(pred_cracks) or len(true_cracks)),
        }

    def _line_scores(
        self,
        rel: PurePosixPath,
        pred: np.ndarray,
        pred_lines: Sequence[ContactLine],
        valid: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The predicted lines scored against the true contact file beside the label ({} without one).

        With ``valid`` (False at no-data), both line sets are first cut to where a contact can be traced
        (:func:`~marsunits.boundary.metrics.clip_lines`): the true file knows nothing of the image's no-data.

        Raises:
            ValueError: The file cannot be read or is malformed (:func:`read_contacts` says so with a
                ValueError naming the file), or records another image size than the prediction's;
                :meth:`add` records it in ``contact_errors``.
        """
        contact_path = find_true_contact(self.labels_dir, rel, self._folders)
        if contact_path is None:
            return {}
        true_lines, size = read_contacts(contact_path)
        height, width = pred.shape
        if size is not None and size != (width, height):
            raise ValueError(
                f"{contact_path}: the contact file is for a {size[0]}x{size[1]} image but the prediction is "
                f"{width}x{height}, so its lines cannot be scored; give the true contacts of this image"
            )
        pred_kept: Sequence[ContactLine | np.ndarray] = pred_lines
        true_kept: Sequence[ContactLine | np.ndarray] = true_lines
        if valid is not None:
            pred_kept, true_kept = clip_lines(pred_lines, valid), clip_lines(true_lines, valid)
        ls = line_scores(pred_kept, true_kept, tolerance_px=BOUNDARY_TOLERANCE_PX)
        return {
            "true_contact": os.fspath(contact_path),
            "line_boundary_f1": ls["f1"],
            "line_contact_distance_px": _finite_or_none(ls["mean_distance_px"]),
            "has_line_contact": bool(len(pred_kept) or len(true_kept)),
        }

    def merge(self, other: Evaluation) -> None:
        """Add the scores of ``other`` (another shard of the same run, disjoint images) to this one."""
        self.total += other.total
        self.per_image.update(other.per_image)
        self.missing.extend(other.missing)
        self.errors.update(other.errors)
        self.contact_errors.update(other.contact_errors)
        self.trained_on.update(other.trained_on)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        images = self.per_image.values()
        with_contact = [e for e in images if e.get("has_contact")]
        with_lines = [e for e in images if e.get("has_line_contact")]
        overall = {
            **scores(self.total),
            "boundary_f1": _mean([e["boundary_f1"] for e in with_contact]),
            "contact_distance_px": _mean([e["contact_distance_px"] for e in with_contact]),
            "n_contact_images": len(with_contact),
            "line_boundary_f1": _mean([e["line_boundary_f1"] for e in with_lines]),
            "line_contact_distance_px": _mean([e["line_contact_distance_px"] for e in with_lines]),
            "n_line_images": len(with_lines),
        }
        return {
            "labels_dir": os.fspath(self.labels_dir),
            "labels_class_map": None if self.class_map is None else self.class_map.as_dict(),
            "labels_classes_file": self._project_classes_file,
            "class_names": list(CLASS_NAMES),
            "ignore_index": IGNORE_INDEX,
            "images_scored": len(self.per_image),
            "notes": CONTACT_NOTES,
            "overall": overall,
            "per_image": self.per_image,
            "missing_labels": sorted(self.missing),
            "label_errors": self.errors,
            "contact_errors": self.contact_errors,
            "images_from_trained_sols": self.from_trained_sols(),
            "images_trained_on": sorted(self.trained_on),
        }

    def from_trained_sols(self) -> dict[str, str]:
        """``{image: "sol <n> (<source>)"}`` of the scored images whose names start with ``<sol>_`` (as
        MarsScapes panoramas and their pseudo-labels are named) where the model trained on that sol of
        MarsScapes (or of a folder source, whose sols come from such names: pseudo-labelled panoramas): their
        scores read high. A model scored on panoramas it trained on was not flagged, and MarsScapes' own
        labels folder holds both kinds. AI4Mars' sols do not count: it does not name its frames by sol, and
        an AI4Mars model's thousand-odd sols flagged any ``12_left.png``."""
        seen = {
            int(sol): source
            for source, sols in (self.trained_sols or {}).items()
            if source in ("marsscapes", "folder")  # folder: sols read from <sol>_ names (pseudo-labels)
            for sol in (sols or ())
            if isinstance(sol, int | str) and str(sol).lstrip("-").isdigit()
        }
        found = {}
        for rel in self.per_image:
            match = _SOL_NAME.match(PurePosixPath(rel).name)
            if match and int(match[1]) in seen:
                found[rel] = f"sol {int(match[1])} ({seen[int(match[1])]})"
        return found
