"""The plain-text paragraph that ends a ``predict.py`` run (its last log line and ``index.html``'s opening):
what was predicted, how fast, the units' shares and contacts, and, with labels, the scores together with
whatever makes them read high or low (trained-on images, classes missing from the labels)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from marsunits.constants import CLASS_NAMES
from marsunits.errors import counted
from marsunits.training_extent import train_longer
from marsunits.training_images import METADATA_KEY as IMAGES_KEY
from marsunits.training_images import grey_and_colour

__all__ = [
    "CONSOLE_WIDTH",
    "console_text",
    "contact_maps_sentence",
    "failed_sentence",
    "nothing_scored",
    "summary_paragraph",
    "synthetic_model_note",
]

#: The widest line of the paragraph as ``predict.py`` prints it (:func:`console_text`), the project's own
#: line length: on one line the paragraph ran to 900-1,000 characters, read only by scrolling sideways or
#: where the terminal wrapped it mid-word.
CONSOLE_WIDTH = 110


def console_text(paragraph: str) -> str:
    """``paragraph`` as the console shows it: in lines of at most :data:`CONSOLE_WIDTH` characters, broken
    between words. A word longer than that (a path, a checkpoint's name) stands whole on a line of its own,
    to be copied as it is. ``summary.json``'s ``text`` and ``index.html`` keep the one paragraph."""
    return textwrap.fill(paragraph, width=CONSOLE_WIDTH, break_long_words=False, break_on_hyphens=False)


#: The most contact maps the run's last line names one by one; beyond them it counts them.
MAPS_NAMED = 3


def contact_maps_sentence(pictures: list[str]) -> str:
    """The sentence naming the contact maps a run drew (their PNG files), or "" for none. Beyond
    :data:`MAPS_NAMED` it names the first ones and counts the rest: one map per site, 24 synthetic scenes of
    24 sites made the run's last line a list of 24 file names (a survey of 500 frames, of 500)."""
    if not pictures:
        return ""
    if len(pictures) <= MAPS_NAMED:
        return f" Contact map{'s' if len(pictures) > 1 else ''}: {', '.join(pictures)}."
    return (
        f" {len(pictures)} contact maps, one per site: {', '.join(pictures[:MAPS_NAMED])} and "
        f"{len(pictures) - MAPS_NAMED} more (index.html links each)."
    )


def _confusion(overall: Mapping[str, Any] | None) -> np.ndarray | None:
    """The run's overall confusion matrix (``metrics.json``: rows = label, columns = prediction), or None
    where the scores hold none (no image scored): what the sentences on the labels read."""
    cm = np.asarray((overall or {}).get("confusion_matrix") or [], dtype=np.int64)
    return cm if cm.ndim == 2 and cm.size else None


def _classes_outside_the_miou(overall: Mapping[str, Any]) -> str:
    """A sentence when the mIoU leaves classes out: those neither labelled nor predicted on labelled pixels
    (the only ones scored) have no IoU, so labels of one class predicted right read mIoU 1.000 (over that
    class alone), which looked like a model perfect on every unit."""
    iou = overall.get("iou") or {}
    missing = [name for name in CLASS_NAMES if name in iou and iou[name] is None]
    if not missing or overall.get("miou") is None:
        return ""
    counted = len(CLASS_NAMES) - len(missing)
    they = "they have" if len(missing) > 1 else "it has"
    return (
        f" That mIoU is over {counted} of the {len(CLASS_NAMES)} classes: no label holds "
        f"{' or '.join(missing)} and the model predicted none on labelled pixels, so {they} no IoU; score "
        "images that show every class to compare it with a full mIoU."
    )


def _classes_absent_from_labels(overall: Mapping[str, Any]) -> str:
    """A sentence for each class no label holds but the model predicted: its IoU is 0 and pulls the mIoU.

    AI4Mars labels have no ``other`` (sky and rover are unlabelled there), so a few stray ``other`` pixels
    gave mIoU 0.500 for a frame whose units were right to 0.9999. The figure stays as defined (every class
    predicted or labelled counts); the sentence gives the mIoU of the classes the labels hold beside it.
    """
    cm = _confusion(overall)
    if cm is None:
        return ""
    labelled, predicted = cm.sum(1), cm.sum(0)
    absent = [i for i in range(len(cm)) if labelled[i] == 0 and predicted[i] > 0]
    if not absent:
        return ""
    iou = overall["iou"]
    held = [
        iou[CLASS_NAMES[i]] for i in range(len(cm)) if labelled[i] > 0 and iou[CLASS_NAMES[i]] is not None
    ]
    names = ", ".join(f"{CLASS_NAMES[i]} ({int(predicted[i])} px predicted)" for i in absent)
    held_miou = f"{np.mean(held):.3f}" if held else "undefined"
    return (
        f" No label holds {names}, so its IoU is 0 and counts in the mIoU; over the classes the labels hold, "
        f"mIoU {held_miou}."
    )


def _grey_inputs(grey: int, dataset: str, trained: tuple[int, int] | None) -> str:
    """A sentence on the ``grey`` greyscale inputs a colour model read, each copied into its three channels,
    by what the model's training images were (``trained``: its record's ``(grey, colour)`` in all,
    :func:`~marsunits.training_images.grey_and_colour`): nothing when they were all grey too; that it maps
    grey frames worse when they were all colour; their shares when mixed. Without a record (a checkpoint
    saved before 2026-12-07), by its data set: AI4Mars is grey (nothing said), MarsScapes colour, and of
    any other (a folder, synthetic scenes) it is said as a condition."""
    suits = "one trained with greyscale images (experiment=marsscapes_ai4mars or ai4mars) suits them."
    lead = (
        f" {counted(grey, 'greyscale image')} went to a model that reads colour "
        f"(trained on {dataset!r} data), each copied into its three channels: "
    )
    if trained is not None and trained[0] + trained[1] > 0:
        grey_trained, colour_trained = trained
        if not colour_trained:  # grey frames copied the same way are what it learned from
            return ""
        if not grey_trained:
            return lead + "a model trained on colour only maps grey frames worse; " + suits
        total = grey_trained + colour_trained
        return lead + (
            f"{grey_trained / total:.0%} of its training images were grey ({grey_trained} of {total}), "
            f"{colour_trained / total:.0%} colour, so it maps grey frames worse the fewer grey ones it saw; "
            + suits
        )
    if "ai4mars" in dataset:  # AI4Mars models were trained on grey copied into 3 channels
        return ""
    # Only MarsScapes (Mastcam colour) is known to be colour throughout: a folder's or synthetic scenes'
    # images may have been grey, copied into three channels as these are (a data=folder model fine-tuned
    # on Navcam frames was told it was a colour-only model).
    if dataset.startswith("marsscapes"):
        return lead + "a model trained on colour only maps grey frames worse; " + suits
    return lead + (
        "if its training images were colour, it maps grey frames worse (not if they were grey too, copied "
        "the same way); " + suits
    )


#: The ``labels_class_map`` values a sentence on labels in a data set's own ids offers: a known data set's
#: name reads its labels with any model (:func:`~marsunits.inference.options.read_labels_class_map`).
_DATA_SET_MAPS = (
    "labels_class_map=ai4mars for AI4Mars labels, labels_class_map=marsscapes for MarsScapes', else a map "
    "of their ids"
)


def synthetic_model_note(model: str, dataset_field: str) -> str:
    """What ``model`` (named as the reader knows it), trained on synthetic scenes alone (``dataset_field``,
    where its data set is recorded, is ``synthetic``), maps of real rover images, and the real-data recipes.

    One wording for the two places that say it: the last line of a ``predict.py`` run on other images
    (:func:`_synthetic_model_on_other_images`) and the warning of ``UnitMapper.load``: a notebook's user of
    the default model was told nothing while its map of a Navcam frame's hazy sky was smooth_volcanic."""
    return (
        f"{model} was trained on synthetic scenes alone ({dataset_field} 'synthetic'): its maps of real "
        "rover images show how the tool works, not where the units are (the default model mapped the hazy "
        "sky of unlabelled MarsScapes panoramas as smooth_volcanic, and the rover deck in Navcam frames as "
        "rough_olivine). For real images, predict with a model trained on real labels: python train.py "
        "experiment=marsscapes, experiment=ai4mars, or data=folder with frames you labelled (docs/"
        "training.md)."
    )


def _synthetic_model_on_other_images(dataset: object, input_dir: object) -> str:
    """A sentence when the model was trained on synthetic scenes alone (its metadata's ``dataset`` is
    ``synthetic``: the default ``python train.py`` and ``experiment=synthetic_long``) and the inputs are not
    synthetic scenes (no ``scenes.json`` nor ``contacts/`` of the generator's layout in ``input_dir`` or
    the folder above it), else "".

    The README's first prediction command maps the unlabelled MarsScapes panoramas with the default model,
    and the run said nothing of what that model had seen: it mapped the panoramas' hazy sky as
    smooth_volcanic and Navcam frames' rover deck as rough_olivine, which a geologist new to the tool read as
    its map of those images."""
    if dataset != "synthetic" or not isinstance(input_dir, str):
        return ""
    folder = Path(input_dir)
    for root in (folder, folder.parent):
        if (root / "scenes.json").is_file() or (root / "contacts").is_dir():
            return ""
    return f" {synthetic_model_note('The model', 'checkpoint_metadata.dataset')}"


def _labels_of_smooth_volcanic_alone(metrics: Mapping[str, Any]) -> str:
    """A sentence when every scored label (in project ids: no ``labels_class_map``) holds smooth_volcanic
    alone beside 255: labels saved in black and white, white marking a unit, read so, and the run gave a low
    mIoU with nothing on why; labels whose 255 is unlabelled (AI4Mars' and MarsScapes' soil) read right.
    Said as a condition: labels of smooth ground alone read the same, and the
    confusion matrix does not say whether a label holds a 255 at all (one of 0 alone was told it held 255).
    """
    if metrics.get("labels_class_map") is not None:
        return ""
    cm = _confusion(metrics.get("overall"))
    if cm is None or len(cm) < 2:
        return ""
    labelled = cm.sum(1)
    if labelled[0] == 0 or labelled[1:].any():
        return ""
    # AI4Mars labels of soil alone (most of its frames, copied as docs/prediction.md says) are black and
    # white too, their 255 unlabelled: told the map above alone, a user scored every unlabelled pixel as
    # rough_olivine.
    return (
        " Every label's scored pixels are smooth_volcanic (0) alone (255 is never scored): if they are black "
        "and white, white marking a unit, labels_class_map='{0: 0, 255: 1}' reads white as rough_olivine "
        "(and black as smooth_volcanic); if their 255 is unlabelled, as in AI4Mars and MarsScapes labels, "
        "they were read right as they are."
    )


def _labels_read_as_project_ids(metrics: Mapping[str, Any]) -> str:
    """The sentence that says how labels holding a 2 were read when no ``labels_class_map`` was given: as
    the project's ``other``. AI4Mars labels copied without their ``classes.json`` (ids 0, 1, 2 and 255
    only, no big rock) were scored with their sand, 2, as ``other``, and the run's last line gave the mIoU
    without a word of how the labels were read. Not said of labels beside a ``classes.json`` naming the
    project's classes (``labels_classes_file``), known to hold project ids: the fix a refusal of such a file
    names other classes gives to users whose labels do, yet they were told it all the same. The values to
    give are named (:data:`_DATA_SET_MAPS`): the sentence said "need labels_class_map" alone, and the README
    spelt out each data set's whole map to paste."""
    if metrics.get("labels_class_map") is not None or not metrics["images_scored"]:
        return ""
    if metrics.get("labels_classes_file"):  # a classes.json beside them names the project's classes
        return ""
    cm = _confusion(metrics["overall"])
    if cm is None or len(cm) <= 2 or not cm[2].sum():
        return ""
    return (
        " The labels were read as project ids (no labels_class_map), their 2 as other: labels in a data "
        "set's own ids, whose 2 is another class (AI4Mars' sand, MarsScapes' gravel), need labels_class_map: "
        f"{_DATA_SET_MAPS} (docs/prediction.md, Scoring against labels)."
    )


def _example(message: str) -> str:
    """A recorded message quoted after "e.g." in a sentence this paragraph ends: without its own final
    full stop, which with the sentence's own made the run's last line end in two."""
    return message.rstrip().rstrip(".")


def _units_and_contacts(summary: Mapping[str, Any]) -> str:
    """The sentence on the units' shares and the contacts, naming the images they are of.

    ``summary.json``'s ``unit_fractions``, ``n_contacts`` and ``contact_length_px`` are over the predicted
    masks of every input of the run that has one: those it predicted and those it skipped as done by an
    earlier run (their masks read back), not the failed ones; the shares are of the pixels (a large image
    weighs more), those with data. The sentence said "Over all images with a mask", which a geologist read
    as the images with a label mask (``labels_dir``), and which did not say that skipped images count.
    """
    c = summary["counts"]
    now = int(c["ok"])
    # Before 2026-12-07 a summary had no count of its own: the ok and skipped images (every one with a mask
    # but an error row of a manifest from before that date that kept its outputs).
    images = int(summary.get("images_with_masks", now + int(c["skipped"])))
    earlier = images - now
    fr = summary["unit_fractions"]
    units = ", ".join(f"{100 * v:.1f} % {n}" for n, v in fr.items() if v is not None)
    contacts = (
        f"{counted(summary['n_contacts'], 'contact line')}, {summary['contact_length_px']:.0f} px in total"
    )
    if not images:
        return f"No image has a predicted mask, so no unit shares; {contacts}."
    if earlier:
        whose = (
            f"{counted(images, 'image')} ({now} predicted now, {earlier} predicted by an earlier run and "
            "skipped)"
        )
    else:
        whose = f"the {counted(images, 'image')} predicted"
    if not units:  # masks of no-data pixels only (nodata_max): predicted masks all the same
        return (
            f"The predicted masks of {whose} have no pixel with data (all no-data, nodata_max), so no unit "
            f"shares; they hold {contacts}."
        )
    nodata = summary.get("nodata_fraction") or 0.0
    if nodata >= 0.0005:
        units += f" (of the pixels with data; {100 * nodata:.1f} % of all pixels had none)"
    return f"Of the pixels of the predicted masks of {whose}: {units}; they hold {contacts}."


def failed_sentence(image: str | None, not_reached: int, overwrite: bool, rank: str | None = None) -> str:
    """The sentence that ends the paragraph of a run a bug ended (``exit_reasons`` ``failed``, status 1,
    ``stopped_early`` null), its traceback printed after it: the paragraph read as a partial run's
    ("Predicted 1 of 3 images (... 2 not reached)") with no word that the run failed. ``image`` is the
    input it was predicting (None: the bug was elsewhere); ``not_reached`` counts it too, as its outputs
    are not complete. ``rank``: the rank of a sharded run the bug ended it on (``"rank 1 of its 2
    ranks"``). Running again predicts the images not reached and skips the finished ones; with
    ``overwrite`` too: it goes on with the stopped overwrite, skipping the images it finished (their contact
    files name it) and predicting the others again."""
    where = (f" in {image}" if image is not None else "") + (f" on {rank}" if rank is not None else "")
    text = f"The run failed on an error{where} (the traceback follows; status 1)"
    if overwrite:
        return (
            f"{text}: run the same command again to go on (the images this run finished are skipped, the "
            "others predicted again)."
        )
    if not not_reached:
        return f"{text}."
    these = "the image not reached is" if not_reached == 1 else f"the {not_reached} images not reached are"
    return f"{text}: {these} predicted by running the same command again (finished images are skipped)."


def nothing_scored(summary: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> str | None:
    """The sentence that ends the paragraph of a run given ``labels_dir`` that scored not one of its images
    with a predicted mask (no label found, every label refused), which then exits with status 1; None for
    a run without ``labels_dir``, one that scored an image, or one without a mask to score (its failed
    inputs are its failure, under ``allow_errors``' rule). Such a run exited 0, which a script running
    ``predict.py`` to score a model read as scores written. None too for a stopped run (``stopped_early``:
    Ctrl-C, SIGTERM, a full disk), which exits as its stop (130, 143, 2), not 1, and may not have reached
    the images with a label: its last sentence says to run again, which scores them. The runner does not
    ask for a run a bug ended either (``exit_reasons`` ``failed``), for the same reason."""
    if metrics is None or metrics["images_scored"] or summary.get("stopped_early"):
        return None
    c = summary["counts"]
    images = int(summary.get("images_with_masks", int(c["ok"]) + int(c["skipped"])))
    if not images:
        return None
    return (
        f"Exit status 1: labels_dir was given but none of the {counted(images, 'image')} with a predicted "
        "mask could be scored (why: above, and metrics.json missing_labels and label_errors); the outputs "
        "are written. Fix the labels or labels_dir and run again, which scores without predicting again, or "
        "leave labels_dir out to only predict."
    )


def summary_paragraph(summary: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> str:
    """One paragraph of plain text describing a finished run."""
    c = summary["counts"]
    rate = summary["megapixels_per_second"]
    not_reached = int(c.get("not_reached") or 0)
    text = (
        f"Predicted {c['ok']} of {counted(c['total'] + not_reached, 'image')} "
        f"({c['skipped']} skipped as already done, "
        f"{c['error']} failed" + (f", {not_reached} not reached" if not_reached else "") + ") "
        f"in {summary['seconds']:.1f} s ({summary['megapixels']:.2f} megapixels"
        + (f", {rate:.3f} MP/s while predicting" if rate else "")
        + f") with {summary['checkpoint']} on {summary['device']} (tile {summary['tile']} px, "
        f"overlap {summary['overlap']:g}). {_units_and_contacts(summary)} "
        f"Outputs, manifest.csv, summary.json and index.html are in {summary['output_dir']}."
    )
    if metrics is not None:
        miou = metrics["overall"]["miou"]
        text += (
            f" Scored {counted(metrics['images_scored'], 'image')} against labels: mIoU "
            + (f"{miou:.3f}" if miou is not None else "undefined")
            + f" (metrics.json; {len(metrics['missing_labels'])} without a label)."
        )
        text += _classes_outside_the_miou(metrics["overall"])
        errors = metrics.get("label_errors") or {}
        native = any("outside 0..2" in e for e in errors.values())
        if not native:  # with labels refused for native ids, the sentence below says it of the scored ones
            text += _labels_read_as_project_ids(metrics)
        trained_on = metrics.get("images_from_trained_sols") or {}
        if trained_on:
            first, sol = next(iter(trained_on.items()))
            one = len(trained_on) == 1
            text += (
                f" {len(trained_on)} of the scored images {'is' if one else 'are'} named for "
                f"{'a sol' if one else 'sols'} the model trained on (e.g. {first}: {sol}; metrics.json "
                f"images_from_trained_sols), so {'that score reads' if one else 'those scores read'} high: "
                "score images of other sols to judge the model."
            )
        trained_images = metrics.get("images_trained_on") or []
        if trained_images:
            one = len(trained_images) == 1
            text += (
                f" {len(trained_images)} of the scored images {'is an image' if one else 'are images'} the "
                f"model trained on (the same {'file' if one else 'files'}, e.g. {trained_images[0]}; "
                f"metrics.json images_trained_on), so {'that score reads' if one else 'those scores read'} "
                "high: score images it has not seen to judge the model."
            )
        text += _classes_absent_from_labels(metrics["overall"])
        text += _labels_of_smooth_volcanic_alone(metrics)
        # Only when no label was found at all: labels found but unusable are said below, with the reason.
        if not metrics["images_scored"] and metrics["missing_labels"] and not metrics.get("label_errors"):
            example = metrics["missing_labels"][0]
            label = PurePosixPath(example).with_suffix(".png")
            if summary.get("stopped_early") and not_reached:
                # Its labels may be those of the images it never reached: "check labels_dir" sent the user
                # to fix labels that were fine, where running again (the stop's own advice) scores them.
                text += (
                    f" No image scored yet: none of the images it reached has a label (for {example}: "
                    f"{label}), and the run stopped before the other {counted(not_reached, 'input')}, whose "
                    "labels are looked for when it goes on."
                )
            else:
                text += (
                    f" No label mask matched an input: labels_dir must hold <rel folder>/<stem>.png for "
                    f"each image (for {example}: {label}); check labels_dir."
                )
        if errors:
            first = next(iter(errors.values()))
            text += (
                f" {counted(len(errors), 'label')} could not be scored (metrics.json label_errors), "
                f"e.g. {_example(first)}."
            )
            if native and metrics.get("labels_class_map") is None and metrics["images_scored"]:
                text += (
                    " Labels of one data set share their ids: if those hold native ids, the ones scored "
                    "probably do too (AI4Mars sand is 2, read as other), so give labels_class_map: "
                    f"{_DATA_SET_MAPS}."
                )
        contact_errors = metrics.get("contact_errors") or {}
        if contact_errors:
            first = next(iter(contact_errors.values()))
            text += (
                f" {counted(len(contact_errors), 'true contact file')} could not be used, so those images "
                f"have pixel scores but no line scores (metrics.json contact_errors), e.g. {_example(first)}."
            )
    # The images this run predicted: those skipped as done were said by the run that predicted them, and
    # each re-run said them again (summary.json's greyscale_inputs_for_colour_model still counts them). A
    # summary without this run's count (before 2026-12-07) has the folder's.
    grey = summary.get(
        "greyscale_inputs_for_colour_model_this_run", summary.get("greyscale_inputs_for_colour_model")
    )
    grey = grey or 0
    metadata = summary.get("checkpoint_metadata") or {}
    if grey:
        text += _grey_inputs(grey, str(metadata.get("dataset")), grey_and_colour(metadata.get(IMAGES_KEY)))
    refused = summary.get("camera_files_refused") or {}
    if refused:  # predicted (ok, skipped), so not among the failed: only their metres are missing
        first = next(iter(refused.values()))
        text += (
            f" {counted(len(refused), 'image has', 'images have')} contacts in pixels only, no metres: the "
            "camera file was refused "
            f"(summary.json camera_files_refused, manifest.csv camera_error), e.g. {_example(first)}; fix or "
            "remove the camera file and run again, which predicts only those images again."
        )
    text += _synthetic_model_on_other_images(metadata.get("dataset"), summary.get("input_dir"))
    barely = summary.get("checkpoint_barely_trained")
    if barely:  # the run's warning of it is far above, among the images' lines
        text += (
            f" The model is barely trained: {barely} (summary.json checkpoint_barely_trained), so its maps "
            f"are close to noise; {train_longer(metadata.get('dataset'))} and predict with that run's "
            "best.ckpt."
        )
    if c["error"]:
        text += f" {counted(c['error'], 'input')} failed: see the error rows in manifest.csv."
    if summary.get("stopped_early"):
        text += f" The run {summary['stopped_early']}."
    return text
