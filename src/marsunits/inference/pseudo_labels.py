"""Pseudo-labels: turn ``predict.py``'s class probabilities on unlabelled images into a training folder.

Self-training (a teacher model labels unlabelled images, a student trains on the labelled data plus the
teacher's confident pixels) is the field's standard way to use the many unlabelled frames a rover returns
from sols nobody annotated. This module writes the teacher's labels in the ``folder`` data layout::

    OUT/images/<stem>.<ext>   the unlabelled image (a symbolic link; a copy where links are not allowed)
    OUT/masks/<stem>.png      uint8 project ids 0, 1, 2 where the teacher is confident, 255 elsewhere
    OUT/pseudo_labels.json    threshold, teacher predictions and trained sols, per-image kept fraction, shares
    OUT/classes.json          the project's classes by id, so the masks are read as project ids knowingly
                              (predict.py's labels_dir, data=folder: data.class_map.project_classes_file)

A pixel keeps the teacher's class only where its highest probability is at least ``threshold``; the
image's no-data pixels (the black border of a mosaicked panorama) are 255 too, since no class describes
them. They are found by ``predict.py``'s rule and threshold (:func:`marsunits.inference.nodata.nodata_mask`,
``nodata_max`` as a fraction of full scale: the predictions' own ``prediction_settings.json`` value unless
``--nodata-max`` is given), so the pseudo-labels leave out what the teacher's masks left out. Train on it
with a data config that lists the folder as a ``train_only`` source
(``configs/data/marsscapes_pseudo.yaml``): its labels are the teacher's, so validating on them would only
score agreement with the teacher.

Usage::

    python predict.py ckpt_path=<teacher.ckpt> input_dir=<unlabelled images> output_dir=<pred> \\
        save_probabilities=true
    python -m marsunits.inference.pseudo_labels --predictions <pred> --images <unlabelled images> \\
        --out data/pseudo/<name> [--threshold 0.9]
"""

from __future__ import annotations

if __name__ == "__main__":
    # python -m marsunits.inference.pseudo_labels: this module's imports (numpy, SciPy, Pillow: a second) run
    # under the stop guard, as train.py's and predict.py's do: a Ctrl-C there printed a traceback, a SIGTERM
    # ended the command without a word. The module is imported as itself, not run as __main__ (from_label's
    # reason: the errors it raises are that module's classes). main() handles stops itself.
    import sys

    from marsunits.errors import quiet_interrupt_at_start

    with quiet_interrupt_at_start("python -m marsunits.inference.pseudo_labels"):
        from marsunits.inference.pseudo_labels import main as _main

    sys.exit(_main())

import argparse
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from marsunits.atomic import atomic_write
from marsunits.constants import IGNORE_INDEX, NUM_CLASSES
from marsunits.data.class_map import write_project_classes_file
from marsunits.data.io import IMAGE_EXTENSIONS, image_size, read_image, write_png_atomic
from marsunits.errors import (
    STORAGE_ERRNOS,
    TerminatedError,
    counted,
    readable,
    sigterm_raises,
    stop_said,
    storage_problem,
)
from marsunits.inference.inputs import discover
from marsunits.inference.nodata import nodata_mask
from marsunits.inference.output_settings import PENDING_KEY, SETTINGS_NAME, read_record
from marsunits.inference.writers import SUFFIXES, write_json_atomic

__all__ = ["PseudoLabelSummary", "pseudo_label_mask", "write_pseudo_labels", "main"]

PROB_SUFFIX = SUFFIXES["prob"]

#: The ``format`` line of the ``classes.json`` written beside the pseudo-labels.
MASKS_FORMAT = (
    "masks/<stem>.png: single-channel uint8 project ids where the teacher model is confident, 255 elsewhere "
    "(marsunits.inference.pseudo_labels)"
)

#: predict.py's default nodata_max (configs/predict.yaml), for predictions without a settings file.
DEFAULT_NODATA_MAX = 0.03


@dataclass(frozen=True)
class PseudoLabelSummary:
    """What :func:`write_pseudo_labels` wrote: image count and the fraction of pixels that kept a label."""

    images: int
    kept_fraction: float
    out_dir: Path


def pseudo_label_mask(probs: np.ndarray, threshold: float, no_data: np.ndarray | None = None) -> np.ndarray:
    """Teacher probabilities ``(C, H, W)`` -> uint8 ``(H, W)`` mask: argmax where max >= threshold, else 255.

    Args:
        probs: class probabilities, float in [0, 1] or uint8 (probability x 255, ``predict.py``'s default).
        threshold: minimum highest probability for a pixel to keep its label, in (0, 1].
        no_data: optional bool ``(H, W)``; True pixels are set to 255 whatever the probabilities.
    """
    if probs.ndim != 3 or probs.shape[0] != NUM_CLASSES:
        raise ValueError(f"probabilities must be ({NUM_CLASSES}, H, W), got shape {probs.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    p = probs.astype(np.float32) / 255.0 if probs.dtype == np.uint8 else probs.astype(np.float32)
    mask = np.argmax(p, axis=0).astype(np.uint8)
    mask[p.max(axis=0) < threshold - 1e-6] = IGNORE_INDEX
    if no_data is not None:
        mask[no_data] = IGNORE_INDEX
    return mask


def _predictions_settings(pred: Path) -> dict:
    """``pred/prediction_settings.json`` as ``predict.py`` wrote it, or {} when there is none.

    Raises:
        ValueError: The file is there but cannot be read as a JSON object: taken as none, the mark of an
            unfinished ``overwrite=true`` run in it went unseen and its recorded ``nodata_max`` was
            replaced by the default.
    """
    path = pred / SETTINGS_NAME
    if not os.path.lexists(path):
        return {}
    settings, fault = read_record(path)
    if settings is None:
        raise ValueError(
            f"{path} cannot be read ({fault or 'a symbolic link that cannot be followed'}): it says how "
            "the predictions were made (nodata_max, an unfinished overwrite=true run). Run that predict.py "
            "command again with overwrite=true to write it anew, or remove the file if you know those "
            "predictions are complete (--nodata-max then gives the nodata_max they were made with)"
        )
    return settings


def _predictions_nodata_max(settings: dict) -> float | None:
    """``nodata_max`` as ``predict.py`` recorded it (``None`` if it was off), else 0.03."""
    value = settings.get("nodata_max", DEFAULT_NODATA_MAX)
    return None if value is None else float(value)


def _teacher_trained(pred: Path) -> tuple[dict[str, list[int]] | None, list[str] | None]:
    """The ``trained_sols`` and ``trained_image_keys`` of the checkpoint ``predict.py`` used, from
    ``pred/summary.json`` (each None when unknown: a checkpoint or a prediction run from before they were
    recorded, or no summary)."""
    try:
        metadata = json.loads((pred / "summary.json").read_text())["checkpoint_metadata"]
        sols, keys = metadata.get("trained_sols"), metadata.get("trained_image_keys")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    keys_ok = isinstance(keys, list) and all(isinstance(k, str) for k in keys)
    return (sols if isinstance(sols, dict) else None), (keys if keys_ok else None)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:  # a full or read-only disk takes no copy either
            # Named by the link: os.symlink's error names the target first, the input image, and the line
            # then said that image could not be written, pointing at the wrong disk.
            raise OSError(exc.errno, exc.strerror, str(dst)) from exc
        # Links not allowed (e.g. Windows without the privilege): a copy, written under a temporary name
        # and renamed, since a disk that filled mid-copy left a truncated image for training to read.
        with open(src, "rb") as fh:
            atomic_write(dst, lambda out: shutil.copyfileobj(fh, out))
        shutil.copystat(src, dst)


def write_pseudo_labels(
    predictions_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    threshold: float = 0.9,
    nodata_max: float | None = None,
) -> PseudoLabelSummary:
    """Write a ``folder``-layout training set from ``predict.py``'s ``<stem>.prob.tif`` files.

    Args:
        predictions_dir: ``predict.py``'s output folder, run with ``save_probabilities=true``.
        images_dir: the images that were predicted (``predict.py``'s ``input_dir``).
        out_dir: destination; ``images/``, ``masks/`` and ``classes.json`` are created (existing pairs are
            replaced).
        threshold: minimum teacher probability for a pixel to keep its label.
        nodata_max: ``predict.py``'s ``nodata_max``: no-data pixels (255) are those every channel of which is
            at most this fraction of full scale, in border-touching regions (``nodata.nodata_mask``).
            ``None``: the value ``predictions_dir/prediction_settings.json`` records (``null`` there: no
            no-data pixels), else 0.03, ``predict.py``'s default.

    Raises:
        FileNotFoundError: a folder is missing, no probability file exists, or an image is missing (this
            and every ValueError below except a size mismatch are raised before anything is written).
        ValueError: two images share a stem, a probability file does not match its image's size,
            ``out_dir`` is inside ``images_dir``, ``out_dir`` holds masks of images not in this set
            (a student would train on them too; checked before anything is written), or the predictions
            are those of an ``overwrite=true`` run that did not finish (``overwrite_pending``).
    """
    pred, images, out = Path(predictions_dir), Path(images_dir), Path(out_dir)
    for folder, what in ((pred, "predictions folder"), (images, "images folder")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} {folder} does not exist.")
    settings = _predictions_settings(pred)
    if settings.get(PENDING_KEY):  # its probabilities mix two models or settings: a teacher of neither
        raise ValueError(
            f"{pred} holds the outputs of an overwrite=true run of predict.py that did not finish "
            f"({SETTINGS_NAME} records {PENDING_KEY}): some probability files are still the earlier run's. "
            "Run that predict.py command again until it finishes, then this one."
        )
    if nodata_max is None:
        nodata_max = _predictions_nodata_max(settings)
    elif not 0.0 <= nodata_max < 1.0:
        raise ValueError(
            f"--nodata-max {nodata_max}: give a fraction of full scale in [0, 1), as predict.py's nodata_max "
            "(0.03: 8-bit values up to 7)"
        )
    if out.resolve().is_relative_to(images.resolve()):
        raise ValueError(f"--out {out} is inside the images folder {images}: choose a folder outside it.")
    prob_files = sorted(pred.rglob(f"*{PROB_SUFFIX}"))
    if not prob_files:
        raise FileNotFoundError(
            f"{pred} holds no *{PROB_SUFFIX} files: run predict.py with save_probabilities=true first."
        )
    # The images as predict.py found them (same rules), keyed like its outputs: <rel folder>/<stem>.
    inputs, _ = discover(images, IMAGE_EXTENSIONS)
    by_stem = {f.rel.with_suffix("").as_posix(): f.path for f in inputs}
    # Every check runs before anything is written: <rel folder>/<stem> of each probability file -> image.
    pairs: list[tuple[Path, Path]] = []
    stems_seen: dict[str, Path] = {}
    for prob_path in prob_files:
        rel = prob_path.relative_to(pred).as_posix()[: -len(PROB_SUFFIX)]
        image_path = by_stem.get(rel)
        if image_path is None:
            raise FileNotFoundError(
                f"{prob_path}: no image {rel}.<ext> under {images}; pass the folder predict.py read "
                "(its input_dir) as --images."
            )
        stem = Path(rel).name
        if stem in stems_seen:
            raise ValueError(
                f"{image_path} and {stems_seen[stem]} share the stem '{stem}'; the folder layout is flat, "
                "rename one of them."
            )
        stems_seen[stem] = image_path
        pairs.append((prob_path, image_path))
    stale = sorted(m.stem for m in (out / "masks").glob("*.png") if m.stem not in stems_seen)
    if stale:
        raise ValueError(
            f"{out / 'masks'} already holds masks of {counted(len(stale), 'image')} not predicted in {pred} "
            f"(e.g. {', '.join(stale[:3])}); a student would train on them too. Write to an empty folder, or "
            "delete that one first."
        )
    # Without it, predict.py scoring against these masks said they had been read as project ids, their 2
    # as other, as it says of labels of unknown origin.
    write_project_classes_file(out, MASKS_FORMAT)
    report: list[dict[str, object]] = []
    kept = total = 0
    for prob_path, image_path in pairs:
        stem = image_path.stem
        probs = tifffile.imread(prob_path)
        # The image predict.py wrote these probabilities for is read whatever Pillow's decompression-bomb
        # limit (179 MP): a mosaic that predict.py max_megapixels=200 accepted was refused here. Its size is
        # checked from the header first, so an image of another size is refused before it is decoded.
        width, height = image_size(image_path, max_megapixels=math.inf)
        if probs.shape[1:] != (height, width):
            raise ValueError(
                f"{prob_path}: probabilities are {probs.shape[1:]} but {image_path} is {(height, width)}; "
                "re-run predict.py on these images."
            )
        image = read_image(image_path, max_megapixels=math.inf)
        no_data = None if nodata_max is None else nodata_mask(image, nodata_max)
        mask = pseudo_label_mask(probs, threshold, no_data=no_data)
        _link_or_copy(image_path, out / "images" / f"{stem}{image_path.suffix}")
        write_png_atomic(out / "masks" / f"{stem}.png", mask)
        labelled = mask != IGNORE_INDEX
        n_labelled = int(labelled.sum())
        kept += n_labelled
        total += mask.size
        shares = np.bincount(mask[labelled], minlength=NUM_CLASSES)[:NUM_CLASSES] / max(n_labelled, 1)
        report.append(
            {
                "image": str(image_path),
                "kept_fraction": float(labelled.mean()),
                "class_shares": [round(float(s), 4) for s in shares],
            }
        )
    summary = PseudoLabelSummary(len(report), kept / max(total, 1), out)
    teacher_sols, teacher_keys = _teacher_trained(pred)
    write_json_atomic(
        out / "pseudo_labels.json",
        {
            "predictions_dir": str(pred),
            "images_dir": str(images),
            # The sols and images (content keys) the teacher trained on: a student validating on them
            # is refused (datamodule).
            "teacher_trained_sols": teacher_sols,
            "teacher_trained_image_keys": teacher_keys,
            "threshold": threshold,
            "nodata_max": nodata_max,
            "images": summary.images,
            "kept_fraction": summary.kept_fraction,
            "per_image": report,
        },
    )
    return summary


#: How the command is run (argparse would show the module's file name).
PROG = "python -m marsunits.inference.pseudo_labels"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, help="predict.py output (save_probabilities=true)")
    parser.add_argument("--images", required=True, help="the images predict.py read (its input_dir)")
    parser.add_argument("--out", required=True, help="destination folder (images/, masks/)")
    parser.add_argument("--threshold", type=float, default=0.9, help="minimum teacher probability (0.9)")
    parser.add_argument(
        "--nodata-max",
        type=float,
        default=None,
        help="no-data pixels: every channel <= this fraction of full scale, as predict.py's nodata_max "
        "(default: the value the predictions were made with, else 0.03)",
    )
    args = parser.parse_args(argv)
    again = "run the same command again to write them all"
    try:
        with sigterm_raises():
            summary = write_pseudo_labels(
                args.predictions, args.images, args.out, args.threshold, args.nodata_max
            )
    except (FileNotFoundError, ValueError) as exc:
        if os.environ.get("MARSUNITS_TRACEBACK"):  # the traceback, as every command shows it then
            raise
        parser.exit(2, readable(f"{PROG}: error: {exc}\n"))
    except (KeyboardInterrupt, TerminatedError) as exc:
        if os.environ.get("MARSUNITS_TRACEBACK"):
            raise
        # One line, as predict.py and train.py say it (a traceback; SIGTERM ended the command silently).
        how, status = stop_said(exc)
        parser.exit(
            status, readable(f"{PROG}: {how}; the labels of {args.out} are not all written: {again}\n")
        )
    except OSError as exc:
        full = storage_problem(exc, f"free space or choose another --out, then {again}", args.out)
        if full is None or os.environ.get("MARSUNITS_TRACEBACK"):
            raise
        parser.exit(2, readable(f"{PROG}: error: {full}\n"))
    # A folder named in Latin-1 bytes as \xNN: a strict UTF-8 console refused it once the labels were written.
    print(
        readable(
            f"{summary.images} images, {100 * summary.kept_fraction:.1f} % of pixels labelled, written to "
            f"{summary.out_dir} (images/, masks/, classes.json, pseudo_labels.json)"
        )
    )
    return 0
