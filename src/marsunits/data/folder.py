"""A generic labelled folder: ``ROOT/images/<stem>.<ext>`` paired with ``ROOT/masks/<stem>.png``, in
subfolders too (``images/site B/137_1.jpg`` with ``masks/site B/137_1.png``), as ``predict.py`` reads them.

This is also the layout the synthetic scene writer produces (plus ``cameras/<stem>.json``, which is
attached to the samples when present). Masks hold project ids unless the config gives a ``class_map``.
Files are paired by stem (file name without extension); any of ``io.IMAGE_EXTENSIONS`` works for both.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path

from marsunits.data.io import IMAGE_EXTENSIONS, is_image_file
from marsunits.data.layout import FOLDER, FOLDER_LAYOUT, check_layout
from marsunits.data.store import LabelledImage
from marsunits.errors import DataError, counted, some_of
from marsunits.user_paths import expand_home, meant_path

__all__ = ["FOLDER_LAYOUT", "UnpairedFilesError", "check_root", "folder_root", "pair_by_stem", "scan_folder"]

_SHOW = 5  # how many offending names an error lists

log = logging.getLogger(__name__)

#: Raster formats a dataset folder may hold that are not read (IMAGE_EXTENSIONS are): said, not skipped
#: silently (two of six pairs saved as .bmp trained on the other four without a word).
OTHER_RASTER_EXTENSIONS = (".bmp", ".webp", ".gif", ".jp2", ".j2k", ".heic", ".heif", ".avif", ".ppm", ".pgm")


class UnpairedFilesError(DataError):
    """Images without a mask or masks without an image (the message names them and the fix); a
    :class:`~marsunits.errors.DataError`, so a ``ValueError`` still.

    ``paired`` holds the records of the files that do pair (their split group left ``None``), so that the
    caller can read them too and name their problems in the same error (:meth:`MarsDataModule.check_split
    <marsunits.data.datamodule.MarsDataModule.check_split>`): a forgotten mask hid a mask of another size
    until the run after it was added.
    """

    def __init__(self, message: str, paired: list[LabelledImage]) -> None:
        super().__init__(message)
        self.paired = paired

    def __reduce__(self) -> tuple[type[UnpairedFilesError], tuple[str, list[LabelledImage]]]:
        # Pickled with the arguments of __init__ (the default passes the message alone), so the error
        # crosses a process boundary (a worker, another rank) as raised.
        return type(self), (str(self), self.paired)


def check_root(root: str | Path, dataset: str, expected: str, under_data_root: bool = True) -> Path:
    """Return ``root`` as a Path if it is a directory, else raise naming it and the config key to set: with
    ``under_data_root`` a ``data.root=/path/to/<dataset>`` to give, without it (``data=folder``, whose folder
    has no usual name) the value given, ``root``, to correct.

    Args:
        root: dataset root folder.
        dataset: dataset name (for the message).
        expected: one line describing the expected layout (for the message).
        under_data_root: whether the dataset's config places it under ``paths.data_root`` (MarsScapes,
            AI4Mars), so that ``MARSUNITS_DATA`` moves it; ``data=folder``'s root is given alone.
    """
    path = expand_home(root)
    if not path.is_dir():
        # A relative root is read from the current folder, which the message names: "rel does not exist"
        # left the user to guess which folder it was looked for in.
        located = "" if path.is_absolute() else f"that is {Path.cwd() / path}, from the current folder; "
        env = (
            ", or set MARSUNITS_DATA to the folder holding the datasets (paths.data_root)"
            if under_data_root
            else ""
        )
        meant = meant_path(path, folder=True)
        if not under_data_root:  # data=folder: no usual name to suggest; the user's own value to correct
            given = shlex.join([f"data.root={root}"])
            hint = f" (did you mean {shlex.join([f'data.root={meant}'])}?)" if meant else ""
            raise FileNotFoundError(
                f"Dataset '{dataset}': root folder {path} does not exist ({located}expected {expected}). "
                f"Give the folder that holds them in place of `{given}` on the command line{hint}, or make "
                f"{path} so."
            )
        raise FileNotFoundError(
            f"Dataset '{dataset}': root folder {path} does not exist ({located}expected {expected}). "
            f"Set it with `data.root=/path/to/{dataset}` on the command line{env}."
        )
    return path


def _stems(
    folder: Path, what: str, dataset: str, recursive: bool = False
) -> tuple[dict[str, Path], list[Path]]:
    """``{key: file}`` of the image files in ``folder``: the key is the stem, or with ``recursive`` the
    path below ``folder`` without its extension (``site B/137_1``); hidden files and folders are skipped,
    as ``predict.py`` skips them. Second, the files in raster formats that are not read
    (:data:`OTHER_RASTER_EXTENSIONS`), found on the same walk."""
    if not folder.is_dir():
        # The scanners check their root's layout first (check_layout), which says what it looks like instead.
        raise FileNotFoundError(
            f"Dataset '{dataset}': expected a folder of {what} at {folder}, but it does not exist. "
            "Check data.root and the dataset layout (data/README.md)."
        )
    found: dict[str, Path] = {}
    unread: list[Path] = []
    for p in _files(folder, recursive):
        rel = p.relative_to(folder)
        if not is_image_file(p):
            if p.suffix.lower() in OTHER_RASTER_EXTENSIONS:
                unread.append(p)
            continue
        # NFC: macOS writes names decomposed (NFD), so an image and its mask named alike on another system
        # had different keys, and each was said to lack the other under the same printed name.
        key = unicodedata.normalize("NFC", rel.with_suffix("").as_posix())
        if key in found:
            raise ValueError(
                f"Dataset '{dataset}': two {what} files share the stem '{key}' "
                f"({found[key].relative_to(folder)}, {rel}); pairing is by stem. Remove or rename one."
            )
        found[key] = p
    return found, unread


def _files(folder: Path, recursive: bool) -> list[Path]:
    """The files in ``folder`` (and with ``recursive`` its subfolders, following symbolic links to folders
    outside it, once each, as ``predict.py`` does: ``Path.rglob`` left linked subfolders out of training
    without a word), sorted; hidden files and folders are left out. A link to a folder of the tree itself
    (``latest -> sol_0137``) is not followed: its files are keyed by their real folder, whatever the order
    of the walk."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    in_tree = {os.path.realpath(d) for d, _, _ in os.walk(folder)}  # the real folders, links not followed
    files: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back to a folder already walked
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and not (
                os.path.islink(os.path.join(dirpath, d))
                and os.path.realpath(os.path.join(dirpath, d)) in in_tree
            )
        )
        files.extend(Path(dirpath) / n for n in filenames if not n.startswith("."))
    return sorted(p for p in files if p.is_file())


def _other_formats_note(folder: Path, other: list[Path]) -> str:
    """A sentence naming ``other``, the files of ``folder`` in formats that are not read, or ''."""
    if not other:
        return ""
    names = ", ".join(p.relative_to(folder).as_posix() for p in other[:_SHOW])
    are, them = ("is", "it") if len(other) == 1 else ("are", "them")
    return (
        f" {counted(len(other), 'file')} in {folder} {are} in a format that is not read ({names}"
        f"{' ...' if len(other) > _SHOW else ''}): convert {them} to one of {', '.join(IMAGE_EXTENSIONS)}."
    )


#: A word added to a file's stem in its mask's or label's name: ``<stem>_mask``, ``<stem>-gt``,
#: ``label_<stem>``, ``<stem>.mask``: letters only after (or before) one separator, so that ``img_10`` and
#: ``img_1_2``, other images' stems, are not read as ``img_1`` with a word added.
_ADDED_AFTER = re.compile(r"(?P<base>.+?)(?P<added>[_\-. ][^\W\d_]+)")
_ADDED_BEFORE = re.compile(r"(?P<added>[^\W\d_]+[_\-. ])(?P<base>.+)")


def word_added_splits(name: str) -> list[tuple[str, str]]:
    """The ways ``name`` (a file name stem) reads as a stem with a word added, ``(stem, added)``: the word
    after it first, then the word before it (``"mask_img_0_gt"`` -> ``[("mask_img_0", "_gt"),
    ("img_0_gt", "mask_")]``); [] if neither. An index of a folder's names by these stems finds the names
    of one stem without testing every name (:func:`word_added_to_stem` tests one name)."""
    matches = (pattern.fullmatch(name) for pattern in (_ADDED_AFTER, _ADDED_BEFORE))
    return [(m.group("base"), m.group("added")) for m in matches if m is not None]


def word_added_to_stem(name: str, stems: Collection[str]) -> tuple[str, str] | None:
    """``(stem, added)`` when ``name`` (a file name stem) is one of ``stems`` with a word added before or
    after it (``"img_0_mask"`` -> ``("img_0", "_mask")``), else None; the word after it first, as
    :func:`word_added_splits` orders them. Compared as given (callers pass NFC)."""
    return next(((base, added) for base, added in word_added_splits(name) if base in stems), None)


def _renamed_masks_hint(no_mask: Collection[str], no_image: Collection[str]) -> str:
    """A sentence for the unpaired-files error when masks are named as their unpaired images with one word
    added (``img_0_mask.png`` for ``img_0.png``): the word most of them share and the rename; "" if none.
    Keys may hold folders (``site B/img_0``): the word is looked for in the last part of the name."""
    by_name: dict[str, set[str]] = {}
    for key in no_mask:
        folder, _, name = key.rpartition("/")
        by_name.setdefault(folder, set()).add(name)
    added: Counter[str] = Counter()
    example: dict[str, tuple[str, str]] = {}
    for key in no_image:
        folder, _, name = key.rpartition("/")
        found = word_added_to_stem(name, by_name.get(folder, set()))
        if found is not None:
            added[found[1]] += 1
            example.setdefault(found[1], (key, found[0]))
    if not added:
        return ""
    word, count = added.most_common(1)[0]
    mask, image = example[word]
    return (
        f" {counted(count, 'mask')} {'is named as its image' if count == 1 else 'are named as their images'} "
        f"with '{word}' added (e.g. {mask} for the image {image}):"
        f" remove '{word}' from the mask names, so that each mask is named as its image."
    )


def _case_only_hint(no_mask: Collection[str], no_image: Collection[str]) -> str:
    """A sentence for the unpaired-files error when masks are named as their unpaired images but for letter
    case (``img_0.png`` for ``IMG_0.jpg``: a tool that lowercases names, or labelling on a disk that ignores
    case); "" if none. Keys are compared whole, folders included, case-folded."""
    images = {key.casefold(): key for key in no_mask}
    pairs = [(key, images[key.casefold()]) for key in sorted(no_image) if key.casefold() in images]
    if not pairs:
        return ""
    mask, image = pairs[0]
    return (
        f" {counted(len(pairs), 'mask')} "
        f"{'is named as its image' if len(pairs) == 1 else 'are named as their images'} but for letter case "
        f"(e.g. {mask} for the image "
        f"{image}): names are compared exactly, letter case included, so rename the masks (or the images) to "
        "match."
    )


def pair_by_stem(
    images_dir: Path,
    masks_dir: Path,
    dataset: str,
    group_of: Callable[[str], int | None],
    cameras_dir: Path | None = None,
    recursive: bool = False,
) -> list[LabelledImage]:
    """Pair ``images_dir/<stem>.*`` with ``masks_dir/<stem>.*``, sorted by stem.

    Args:
        images_dir: folder of images.
        masks_dir: folder of uint8 label files.
        dataset: dataset name (messages, ``LabelledImage.source``).
        group_of: file name stem -> split group (e.g. the sol), or ``None`` if the image is its own group.
        cameras_dir: optional folder of ``<stem>.json`` camera files.
        recursive: also pair the files of subfolders, by their path below the folders
            (``images/site B/137_1.jpg`` with ``masks/site B/137_1.png``; cameras likewise).

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: no images, or no mask at all. UnpairedFilesError (a ValueError): an image without a
            mask or a mask without an image (lists a few names; ``paired``: the records of the others).
    """
    images, unread_images = _stems(images_dir, "images", dataset, recursive)
    masks, unread_masks = _stems(masks_dir, "masks", dataset, recursive)
    image_note = _other_formats_note(images_dir, unread_images)
    mask_note = _other_formats_note(masks_dir, unread_masks)
    if not images and not recursive:
        deeper = (p for p in images_dir.rglob("*") if p.is_file() and is_image_file(p))
        nested = sorted({p.parent.relative_to(images_dir) for p in deeper})
        hint = (
            f" Images lie in its subfolders ({', '.join(str(n) for n in nested[:3])}"
            f"{', ...' if len(nested) > 3 else ''}), which are not searched: pairing is by file name stem, "
            "so put every image directly in images/ (and every mask in masks/), or train on one subfolder "
            "layout at a time."
            if nested
            else ""
        )
        raise ValueError(
            f"Dataset '{dataset}': no images found in {images_dir}. Check data.root.{hint}{image_note}"
        )
    if not images:
        raise ValueError(
            f"Dataset '{dataset}': no images found in {images_dir} or its subfolders. Check data.root."
            + image_note
        )
    if not masks:  # every image unpaired: "move the unpaired ones out" would leave nothing
        them = "it" if len(images) == 1 else "them"
        raise ValueError(
            f"Dataset '{dataset}': no masks found in {masks_dir}{' or its subfolders' if recursive else ''}, "
            f"for the {counted(len(images), 'image')} in {images_dir}: each image needs its mask, named as "
            f"the image ({masks_dir.name}/<stem>.png). Label {them}, or give the folder that holds {them} "
            "with data.root; "
            f"images without labels are predicted (predict.py input_dir={images_dir}), not trained on."
            + mask_note
        )
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    problems = []
    if no_mask:
        problems.append(
            f"{counted(len(no_mask), 'image')} in {images_dir} {'has' if len(no_mask) == 1 else 'have'} no "
            f"mask in {masks_dir}: " + some_of(no_mask, _SHOW)
        )
    if no_image:
        problems.append(
            f"{counted(len(no_image), 'mask')} in {masks_dir} {'has' if len(no_image) == 1 else 'have'} no "
            f"image in {images_dir}: " + some_of(no_image, _SHOW)
        )

    def record(key: str, grouped: bool = True) -> LabelledImage:
        # The image's own name (keys are NFC only to pair images with masks): a camera file or a stats.csv
        # row named as the image is on disk is found, in either Unicode form.
        stem = images[key].relative_to(images_dir).with_suffix("").as_posix()
        camera = None
        if cameras_dir is not None:
            for name in dict.fromkeys((stem, key)):
                if (cameras_dir / f"{name}.json").is_file():
                    camera = cameras_dir / f"{name}.json"
                    break
        group = group_of(Path(stem).name) if grouped else None
        return LabelledImage(images[key], masks[key], group, dataset, camera)

    if problems:
        raise UnpairedFilesError(
            f"Dataset '{dataset}': " + "; ".join(problems) + ". Images and masks are paired by file name "
            "stem: add the missing files or move the unpaired ones out of the dataset folders."
            + _renamed_masks_hint(no_mask, no_image)
            + _case_only_hint(no_mask, no_image)
            + image_note
            + mask_note,
            # To be read for their problems only: no group asked for (a name missing from a sol table is
            # said once the unpaired files are fixed, as before).
            [record(key, grouped=False) for key in sorted(set(images) & set(masks))],
        )
    for note in (image_note, mask_note):
        if note:  # all paired: the run goes on without them, and says so
            log.warning("Dataset '%s': left out.%s", dataset, note)
    return [record(key) for key in sorted(images)]


def folder_root(root: str | Path, dataset: str = "folder", key: str = "data.root") -> Path:
    """``root`` as a Path if it is a folder with images/ and masks/, else :func:`check_root`'s
    FileNotFoundError naming it, what it must hold (:data:`FOLDER_LAYOUT`) and the value given to correct,
    or :func:`~marsunits.data.layout.check_layout`'s DataLayoutError (``key`` sets the folder); no file
    inside it is read."""
    path = check_root(root, dataset, FOLDER_LAYOUT, under_data_root=False)
    check_layout(path, FOLDER, dataset, key)
    return path


def scan_folder(
    root: str | Path, dataset: str = "folder", sols_from_names: bool = False, key: str = "data.root"
) -> list[LabelledImage]:
    """Records of a folder dataset (``images/``, ``masks/``, optional ``cameras/``).

    Every image is its own split group, unless ``sols_from_names``: then its group is the sol that starts
    its name, ``<sol>_<anything>`` (MarsScapes' naming, which the pseudo-labels of its unlabelled panoramas
    keep), so sol-grouped splits, ``exclude_sols`` and ``shared_sol_holdout`` apply to the folder too.

    ``key`` is the config key that sets ``root`` (``data.source_dirs.folder`` with several sources), as
    the layout's refusal names it.

    Raises:
        FileNotFoundError: no such folder; DataLayoutError: no images/ or masks/ in it.
        ValueError: with ``sols_from_names``, a name that does not start with ``<sol>_`` (names it).
    """
    path = folder_root(root, dataset, key)

    def sol_of(stem: str) -> int | None:
        if not sols_from_names:
            return None
        prefix = stem.split("_", 1)[0]
        if not prefix.isdigit() or "_" not in stem:
            raise ValueError(
                f"Dataset '{dataset}': {path / 'images'}/{stem}.*: the name does not start with '<sol>_', "
                "so its sol is unknown and it could share scenery with a validation sol. Name it "
                "<sol>_<n>, or set data.folder_sols_from_names=false if the folder holds no sol of the "
                "other sources."
            )
        return int(prefix)

    return pair_by_stem(
        path / FOLDER.images, path / FOLDER.masks, dataset, sol_of, path / "cameras", recursive=True
    )
