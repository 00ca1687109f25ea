"""``predict.py``'s scoring against labels (:mod:`marsunits.inference.evaluation`): no-data left out of every
score, label and true contact files found whatever the Unicode form of their names, label errors that name
the file once with the fix."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
from PIL import Image

from marsunits.boundary.contact_io import ContactLine, write_contacts
from marsunits.boundary.extract import contacts_from_mask
from marsunits.constants import IGNORE_INDEX
from marsunits.data.io import write_png_atomic
from marsunits.inference.evaluation import Evaluation, find_label, find_true_contact
from marsunits.inference.run_summary_text import nothing_scored, summary_paragraph

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import run_summary
except ImportError:
    from conftest import run_summary  # type: ignore[no-redef]

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


def _halves(h: int, w: int, col: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[:, col:] = 1
    return mask


# ------------------------------------------------------------------------------------------ no-data
def test_a_perfect_prediction_of_an_image_with_a_no_data_band_scores_perfectly(tmp_path: Path) -> None:
    """A 120x80 image whose top 30 rows have no data, its label and true contact file drawn over the full
    height: the true lines used to be scored through the no-data (line F1 0.795, 2.88 px), and the no-data,
    marked 255 in the label before the annotator-gap bridging, let the true mask contact run about 3 px into
    it (0.029 px)."""
    h, w = 80, 120
    label = _halves(h, w, 60)
    labels = tmp_path / "data" / "masks"
    write_png_atomic(labels / "x.png", label)
    write_contacts(tmp_path / "data" / "contacts" / "x.contact.geojson", contacts_from_mask(label), w, h)
    pred = label.copy()
    pred[:30] = IGNORE_INDEX  # predict.py's no-data
    # As predict.py traces it: never through the no-data (no gap bridging in a prediction).
    pred_lines = contacts_from_mask(pred, max_gap_px=0)
    assert min(ln.pixels[:, 1].min() for ln in pred_lines) == pytest.approx(30.5)

    ev = Evaluation(labels)
    ev.add(PurePosixPath("x.png"), pred, pred_lines)
    e = ev.per_image["x.png"]
    assert e["miou"] == 1.0 and e["pixels"] == (h - 30) * w
    assert e["boundary_f1"] == 1.0 and e["contact_distance_px"] == 0.0
    assert e["line_boundary_f1"] == 1.0 and e["line_contact_distance_px"] == pytest.approx(0.0, abs=1e-9)


def test_annotator_gaps_are_still_bridged_next_to_no_data(tmp_path: Path) -> None:
    """The label's own unlabelled strip between the units is bridged as before: a perfect prediction of the
    bridged contact scores 1 / 0 px, the no-data rows left out."""
    h, w = 40, 60
    label = _halves(h, w, 30)
    label[:, 29:31] = IGNORE_INDEX  # a 2 px annotator gap
    write_png_atomic(tmp_path / "x.png", label)
    pred = _halves(h, w, 30)
    pred[:10] = IGNORE_INDEX
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("x.png"), pred)
    e = ev.per_image["x.png"]
    assert e["has_contact"] and e["boundary_f1"] == 1.0 and e["contact_distance_px"] == 0.0


def test_true_lines_entirely_in_no_data_leave_no_contact_to_score(tmp_path: Path) -> None:
    """A true contact only where the image has no data is no contact: the image does not count among the
    line images (a perfect 1 there would only dilute the mean)."""
    h, w = 40, 60
    write_png_atomic(tmp_path / "masks" / "x.png", np.full((h, w), 2, np.uint8))
    line = ContactLine(pixels=np.array([[30.0, 0.5], [30.0, 9.5]]))
    write_contacts(tmp_path / "masks" / "x.contact.geojson", [line], w, h)
    pred = np.full((h, w), 2, np.uint8)
    pred[:12] = IGNORE_INDEX
    ev = Evaluation(tmp_path / "masks")
    ev.add(PurePosixPath("x.png"), pred)
    e = ev.per_image["x.png"]
    assert e["line_boundary_f1"] == 1.0 and not e["has_line_contact"]
    assert ev.to_dict()["overall"]["n_line_images"] == 0


# ----------------------------------------------------------------------------------- Unicode names
def test_labels_are_found_whatever_the_unicode_form_of_their_names(tmp_path: Path) -> None:
    """An input saved on a Mac (decomposed, NFD) and its label saved elsewhere (composed, NFC) used to
    count as "without a label"; folders and true contact files too."""
    labels = tmp_path / "data" / "masks"
    mask = _halves(20, 30, 15)
    write_png_atomic(labels / f"{NFC}.png", mask)
    write_png_atomic(labels / f"sol {NFD}" / "b.png", mask)
    contacts = tmp_path / "data" / "contacts"
    write_contacts(contacts / f"{NFC}.contact.geojson", contacts_from_mask(mask), 30, 20)
    assert find_label(labels, PurePosixPath(f"{NFD}.png")) == labels / f"{NFC}.png"
    assert find_label(labels, PurePosixPath(f"sol {NFC}/b.png")) == labels / f"sol {NFD}" / "b.png"
    assert find_true_contact(labels, PurePosixPath(f"{NFD}.png")) == (
        tmp_path / "data" / "contacts" / f"{NFC}.contact.geojson"
    )
    ev = Evaluation(labels)
    ev.add(PurePosixPath(f"{NFD}.png"), mask, contacts_from_mask(mask))
    assert not ev.missing and ev.per_image[f"{NFD}.png"]["line_boundary_f1"] == 1.0


def test_a_label_name_there_in_two_unicode_forms_is_said_not_picked(tmp_path: Path) -> None:
    """Linux keeps ``café.png`` composed and decomposed as two files: which one is the label cannot be told,
    so the image is not scored with either and label_errors names both."""
    write_png_atomic(tmp_path / f"{NFC}.png", _halves(20, 30, 15))
    write_png_atomic(tmp_path / f"{NFD}.png", _halves(20, 30, 5))
    with pytest.raises(ValueError, match="two Unicode forms.*remove or rename one"):
        find_label(tmp_path, PurePosixPath(f"{NFC}.png"))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath(f"{NFC}.png"), _halves(20, 30, 15))
    assert not ev.per_image and not ev.missing
    said = ev.errors[f"{NFC}.png"]
    assert ascii(f"{NFC}.png") in said and ascii(f"{NFD}.png") in said and str(tmp_path) in said
    # A true contact file in two forms loses only the line scores, with the same message.
    write_png_atomic(tmp_path / "m" / "x.png", _halves(20, 30, 15))
    for name in (NFC, NFD):
        write_contacts(tmp_path / "m" / f"{name}.contact.geojson", [], 30, 20)
    write_png_atomic(tmp_path / "m" / f"{NFC}.png", _halves(20, 30, 15))
    ev = Evaluation(tmp_path / "m")
    ev.add(PurePosixPath(f"{NFC}.png"), _halves(20, 30, 15))
    assert f"{NFC}.png" in ev.per_image and "two Unicode forms" in ev.contact_errors[f"{NFC}.png"]


# ----------------------------------------------------------------------------------- label errors
def test_a_run_lists_each_label_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each lookup of a non-ASCII name listed its whole folder: 3 ms a label at 3,000 files (quadratic)."""
    import marsunits.inference.evaluation as evaluation

    folder = tmp_path / "labels" / "Séítah"
    folder.mkdir(parents=True)
    for i in range(20):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / f"{i:02d}.png")
    listed: list[str] = []
    listdir = evaluation.os.listdir

    def counting(path):  # type: ignore[no-untyped-def]
        listed.append(str(path))
        return listdir(path)

    monkeypatch.setattr(evaluation.os, "listdir", counting)
    index = evaluation.FolderIndex()
    nfd = unicodedata.normalize("NFD", "Séítah")
    for i in range(20):
        assert find_label(tmp_path / "labels", PurePosixPath(f"{nfd}/{i:02d}.jpg"), index) == (
            folder / f"{i:02d}.png"
        )
    assert sorted(listed) == sorted({str(tmp_path / "labels"), str(folder)})  # each folder once
    # A label added while the run scores is found (the folder's time changed): listed again, once.
    assert find_label(tmp_path / "labels", PurePosixPath(f"{nfd}/new.jpg"), index) is None
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "new.png")
    os.utime(folder, ns=(0, 1))  # a time surely other than the listing's
    assert find_label(tmp_path / "labels", PurePosixPath(f"{nfd}/new.jpg"), index) == folder / "new.png"
    assert listed.count(str(folder)) == 2


def test_a_label_of_another_size_names_the_file_once_and_the_fix(tmp_path: Path) -> None:
    write_png_atomic(tmp_path / "size.png", np.zeros((41, 60), np.uint8))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("size.png"), np.zeros((40, 60), np.uint8), image_path=tmp_path / "in" / "size.png")
    said = ev.errors["size.png"]
    assert said.startswith(f"{tmp_path / 'size.png'}: the label is 60x41 (WxH)")
    assert said.count(str(tmp_path / "size.png")) == 1 and "is 60x40" in said and "re-export it" in said
    assert "EXIF" not in said


def test_a_label_drawn_on_a_turned_photos_stored_pixels_is_explained(tmp_path: Path) -> None:
    """A JPEG stored 60x40 with EXIF orientation 6 is predicted as displayed, 40x60; its label drawn on the
    stored pixels is 60x40: the message names the tag, as training's does."""
    photo = tmp_path / "in" / "turned.jpg"
    photo.parent.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 40), (120, 90, 60)).save(photo, exif=exif.tobytes())
    write_png_atomic(tmp_path / "masks" / "turned.png", np.zeros((40, 60), np.uint8))
    ev = Evaluation(tmp_path / "masks")
    ev.add(PurePosixPath("turned.jpg"), np.zeros((60, 40), np.uint8), image_path=photo)
    said = ev.errors["turned.jpg"]
    assert "EXIF orientation tag (6) turns it by 90 degrees" in said and str(photo) in said


def test_label_errors_name_the_file_once_and_the_run_text_ends_cleanly(tmp_path: Path) -> None:
    """An RGB label was recorded as ".../rgbmask.png: .../rgbmask.png: a mask must be ..." and the run's last
    line quoted it with a second full stop."""
    Image.new("RGB", (30, 20), (10, 20, 30)).save(tmp_path / "rgbmask.png")
    write_png_atomic(tmp_path / "ids.png", np.full((20, 30), 9, np.uint8))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("rgbmask.png"), np.zeros((20, 30), np.uint8))
    ev.add(PurePosixPath("ids.png"), np.zeros((20, 30), np.uint8))
    for name, message in ev.errors.items():
        assert message.count(str(tmp_path / name)) == 1, message
    assert "outside 0..2" in ev.errors["ids.png"]
    text = summary_paragraph(run_summary(), ev.to_dict())
    assert "2 labels could not be scored" in text and ".." not in text.replace("0..2", "")
    assert text.count(str(tmp_path / "rgbmask.png")) == 1


def test_predicted_lines_are_cut_to_the_data_like_the_true_ones(tmp_path: Path) -> None:
    """Predicted lines given over the full height (the true contact file itself, as a perfect prediction)
    are cut to where a contact can be traced, as the truth is: F1 1 and no distance, whatever the no-data."""
    h, w = 80, 120
    label = _halves(h, w, 60)
    labels = tmp_path / "data" / "masks"
    write_png_atomic(labels / "x.png", label)
    true_lines = contacts_from_mask(label)
    write_contacts(tmp_path / "data" / "contacts" / "x.contact.geojson", true_lines, w, h)
    pred = label.copy()
    pred[:30] = IGNORE_INDEX
    ev = Evaluation(labels)
    ev.add(PurePosixPath("x.png"), pred, true_lines)
    e = ev.per_image["x.png"]
    assert e["line_boundary_f1"] == 1.0 and e["line_contact_distance_px"] == pytest.approx(0.0, abs=1e-9)


def test_shards_merged_score_as_one_run(tmp_path: Path) -> None:
    """``merge`` of the shards of a run (disjoint images) gives the metrics of the run scored in one piece:
    pixel counts, per-image and overall scores, missing labels and label errors."""
    h, w = 30, 40
    for name, col in (("a", 20), ("b", 25), ("c", 10)):
        write_png_atomic(tmp_path / f"{name}.png", _halves(h, w, col))
    write_png_atomic(tmp_path / "small.png", _halves(h, w - 1, 20))  # another size: a label error
    preds = {"a": _halves(h, w, 20), "b": _halves(h, w, 22), "c": np.full((h, w), 2, np.uint8)}
    preds |= {"small": _halves(h, w, 20), "none": _halves(h, w, 20)}  # 'none' has no label

    def run(names):
        ev = Evaluation(tmp_path)
        for name in names:
            ev.add(PurePosixPath(f"{name}.png"), preds[name])
        return ev

    whole = run(["a", "b", "c", "small", "none"])
    merged = run(["a", "small"])
    merged.merge(run(["b", "c", "none"]))
    assert merged.to_dict() == whole.to_dict()
    assert whole.to_dict()["overall"]["pixels"] == 3 * h * w and whole.missing == ["none.png"]


def test_overall_contact_scores_count_images_as_documented(tmp_path: Path) -> None:
    """Overall F1 is the mean over images with a contact in the prediction or the truth; the distance the
    mean over those where both have one (an image whose contact was missed has no distance, not 0)."""
    h, w = 30, 40
    sky = np.full((h, w), 2, np.uint8)
    write_png_atomic(tmp_path / "shifted.png", _halves(h, w, 20))  # found 2 px off: F1 1, 2 px
    write_png_atomic(tmp_path / "missed.png", _halves(h, w, 20))  # not found: F1 0, no distance
    write_png_atomic(tmp_path / "none.png", sky)  # no contact on either side: left out
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("shifted.png"), _halves(h, w, 22))
    ev.add(PurePosixPath("missed.png"), sky)
    ev.add(PurePosixPath("none.png"), sky)
    assert ev.per_image["missed.png"]["contact_distance_px"] is None
    overall = ev.to_dict()["overall"]
    assert overall["n_contact_images"] == 2
    assert overall["boundary_f1"] == pytest.approx(0.5)
    assert overall["contact_distance_px"] == pytest.approx(2.0)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".TIFF", ".Png"])
def test_a_label_is_found_under_each_mask_extension_in_any_case(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"x{suffix}").write_bytes(b"")
    assert find_label(tmp_path, PurePosixPath("sub/x.jpg")) == tmp_path / "sub" / f"x{suffix}"


@pytest.mark.parametrize("label_name", ["B.png", "b.PNG.png", "sub/B.tif"])
def test_a_label_whose_name_differs_only_in_letter_case_is_named_with_the_rename(
    tmp_path: Path, label_name: str
) -> None:
    """Labels are matched by their exact stem, as train.py pairs images and masks; ``B.png`` for ``b.png``
    was counted as "without a label", with no hint that it was there. A different stem stays missing."""
    rel = PurePosixPath(label_name).parent / "b.jpg"
    path = tmp_path / label_name
    path.parent.mkdir(exist_ok=True)
    write_png_atomic(path, _halves(20, 30, 15))
    ev = Evaluation(tmp_path)
    ev.add(rel, _halves(20, 30, 15))
    if label_name == "b.PNG.png":  # stem 'b.PNG': another name, not another case
        assert ev.missing == [rel.as_posix()] and not ev.errors
        return
    message = ev.errors[rel.as_posix()]
    assert message.startswith(f"{path}: ") and "only in letter case" in message
    assert f"rename it b{path.suffix}" in message and not ev.missing


def test_the_exact_label_of_another_image_is_not_offered_to_its_namesake_in_another_case(
    tmp_path: Path,
) -> None:
    """Two inputs whose names differ only in letter case (``b.jpg`` and ``B.jpg``, two files on Linux), and a
    label for ``b.jpg`` alone: ``B.jpg`` has no label. It was told to rename ``b.png`` (``b.jpg``'s own label,
    which the rename would take from it) to ``B.png``."""
    inputs, labels = tmp_path / "in", tmp_path / "labels"
    inputs.mkdir()
    labels.mkdir()
    for name in ("b.jpg", "B.jpg"):
        (inputs / name).write_bytes(b"an image")
    if not (inputs / "b.jpg").exists() or len(list(inputs.iterdir())) != 2:
        pytest.skip("a file system that does not tell names apart by letter case")
    write_png_atomic(labels / "b.png", _halves(20, 30, 15))
    ev = Evaluation(labels)
    ev.add(PurePosixPath("B.jpg"), _halves(20, 30, 15), image_path=inputs / "B.jpg")
    ev.add(PurePosixPath("b.jpg"), _halves(20, 30, 15), image_path=inputs / "b.jpg")
    assert ev.missing == ["B.jpg"] and not ev.errors
    assert list(ev.per_image) == ["b.jpg"]


def test_the_label_of_the_first_mask_extension_wins_whatever_the_form_of_the_name(tmp_path: Path) -> None:
    """Extensions are tried in the order of LABEL_EXTENSIONS (JPEG, which cannot hold a mask, last), for a
    name that has to be looked up by listing its folder (non-ASCII) as for one that does not."""
    for stem in ("x", NFC):
        (tmp_path / f"{stem}.jpg").write_bytes(b"")
        (tmp_path / f"{stem}.png").write_bytes(b"")
        assert find_label(tmp_path, PurePosixPath(f"{stem}.jpeg")) == tmp_path / f"{stem}.png"


def test_scored_images_the_model_trained_on_are_listed_whatever_their_names(tmp_path: Path) -> None:
    from marsunits.file_digest import image_content_key

    h, w = 20, 30
    for name in ("seen.png", "new.png"):
        write_png_atomic(tmp_path / name, _halves(h, w, 15))
    seen, new = "ab" * 32, "cd" * 32  # the inputs' SHA-256, hex
    ev = Evaluation(tmp_path, trained_image_keys=[image_content_key(seen)])
    ev.add(PurePosixPath("seen.png"), _halves(h, w, 15), image_sha256=seen)
    ev.add(PurePosixPath("new.png"), _halves(h, w, 15), image_sha256=new)
    assert ev.to_dict()["images_trained_on"] == ["seen.png"]


@pytest.mark.parametrize(
    ("images", "extensions", "hint"),
    [
        (("b.bmp", "B.bmp"), (".bmp",), False),  # b.png is b.bmp's own label: B.bmp has none
        (("b.jpg", "B.png"), (".png",), True),  # b.jpg is no input of a patterns=[png] run
    ],
    ids=["other-input-of-a-run-extension", "beside-but-no-input"],
)
def test_the_letter_case_hint_knows_the_inputs_by_the_runs_extensions(
    tmp_path: Path, images: tuple[str, str], extensions: tuple[str, ...], hint: bool
) -> None:
    """Whether a label in another letter case is another input's own label was told from the default image
    extensions, not the run's ``patterns``: with patterns=[bmp], ``b.png`` (``b.bmp``'s label) was offered
    to ``B.bmp`` as its own, to rename; with patterns=[png], a ``b.jpg`` beside ``B.png`` (not an input)
    hid the hint."""
    inputs, labels = tmp_path / "in", tmp_path / "labels"
    inputs.mkdir()
    labels.mkdir()
    for name in images:
        (inputs / name).write_bytes(b"an image")
    if len(list(inputs.iterdir())) != 2:
        pytest.skip("a file system that does not tell names apart by letter case")
    write_png_atomic(labels / "b.png", _halves(20, 30, 15))
    ev = Evaluation(labels, image_extensions=extensions)
    ev.add(PurePosixPath(images[1]), _halves(20, 30, 15), image_path=inputs / images[1])
    if hint:
        assert "only in letter case" in ev.errors[images[1]] and not ev.missing
    else:
        assert ev.missing == [images[1]] and not ev.errors


@pytest.mark.parametrize(
    ("label_name", "added"),
    [
        ("425_1_label.png", "_label"),
        ("425_1-gt.png", "-gt"),
        ("NLA_1_merged.png", "_merged"),  # AI4Mars' own test labels: <image>_merged.png
        ("sub/mask_425_1.tif", "mask_"),
    ],
)
def test_a_label_named_with_a_word_added_to_the_images_stem_is_named_with_the_rename(
    tmp_path: Path, label_name: str, added: str
) -> None:
    """``labels_dir`` of masks named ``<stem>_label.png`` (or ``_mask``, ``-gt``, AI4Mars' ``_merged``): no
    image was scored, and the run said only that labels_dir must hold ``<stem>.png``, without a word that
    the label was there under another name. The label is now a label error naming the file and the rename."""
    stem = "NLA_1" if label_name.startswith("NLA") else "425_1"
    rel = PurePosixPath(label_name).parent / f"{stem}.jpg"
    path = tmp_path / label_name
    path.parent.mkdir(exist_ok=True)
    write_png_atomic(path, _halves(20, 30, 15))
    ev = Evaluation(tmp_path)
    ev.add(rel, _halves(20, 30, 15))
    message = ev.errors[rel.as_posix()]
    assert message.startswith(f"{path}: ") and f"'{added}'" in message
    assert f"rename it {stem}{path.suffix}" in message and not ev.missing


def test_labels_with_a_word_added_are_looked_for_without_reading_the_folder_for_each_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each input without its label had every name of the labels folder normalised and tested for a word
    added: 2 ms an input at 16,000 names, half a minute for an AI4Mars folder of ``<name>_merged.png``. The
    names are now read once a listing, however many inputs miss their labels, with the same messages."""
    import collections

    import marsunits.inference.evaluation as evaluation

    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(30):
        (labels / f"NLA_{i}_merged.png").touch()
    folder_names = {p.name for p in labels.iterdir()} | {p.stem for p in labels.iterdir()}
    nfc = evaluation._nfc

    def normalisations_of_folder_names(n_missing: int) -> int:
        calls: collections.Counter[str] = collections.Counter()

        def counting(name: str) -> str:
            calls[name] += 1
            return nfc(name)

        monkeypatch.setattr(evaluation, "_nfc", counting)
        ev = Evaluation(labels)
        for i in range(30):
            ev.add(PurePosixPath(f"NLA_{i}.jpg"), np.zeros((2, 2), np.uint8))
            assert ev.errors[f"NLA_{i}.jpg"].startswith(f"{labels / f'NLA_{i}_merged.png'}: ")
            assert (
                "'_merged'" in ev.errors[f"NLA_{i}.jpg"]
                and f"rename it NLA_{i}.png" in ev.errors[f"NLA_{i}.jpg"]
            )
        for i in range(n_missing):
            ev.add(PurePosixPath(f"other_{i}.jpg"), np.zeros((2, 2), np.uint8))
        assert len(ev.missing) == n_missing and len(ev.errors) == 30
        monkeypatch.setattr(evaluation, "_nfc", nfc)
        return max(calls[name] for name in folder_names)

    assert normalisations_of_folder_names(40) == normalisations_of_folder_names(5)
    # A label added while the run scores (the folder's time changed) is found with its word.
    ev = Evaluation(labels)
    ev.add(PurePosixPath("late.jpg"), np.zeros((2, 2), np.uint8))
    assert ev.missing == ["late.jpg"]
    (labels / "late-gt.png").touch()
    os.utime(labels, ns=(0, 1))
    ev.add(PurePosixPath("late.jpg"), np.zeros((2, 2), np.uint8))
    assert "'-gt'" in ev.errors["late.jpg"] and "rename it late.png" in ev.errors["late.jpg"]


@pytest.mark.parametrize("other", ["425_10.png", "425_1_2.png", "425_1_left.png"])
def test_names_that_are_no_word_added_or_another_inputs_label_are_not_offered(
    tmp_path: Path, other: str
) -> None:
    """``425_10.png`` and ``425_1_2.png`` are other images' labels (a digit, not a word, follows the
    stem); ``425_1_left.png`` is the exact label of the input ``425_1_left.jpg`` beside ``425_1.jpg``."""
    inputs, labels = tmp_path / "in", tmp_path / "labels"
    inputs.mkdir()
    labels.mkdir()
    for name in ("425_1.jpg", "425_1_left.jpg"):
        (inputs / name).write_bytes(b"an image")
    write_png_atomic(labels / other, _halves(20, 30, 15))
    ev = Evaluation(labels)
    ev.add(PurePosixPath("425_1.jpg"), _halves(20, 30, 15), image_path=inputs / "425_1.jpg")
    assert ev.missing == ["425_1.jpg"] and not ev.errors


def test_a_labels_dir_of_predict_outputs_is_said_to_hold_predictions_not_labels(tmp_path: Path) -> None:
    """labels_dir given a predict.py output folder (``<stem>.mask.png`` beside ``<stem>.overlay.png``) is
    told so, not to rename the predicted mask into a label."""
    write_png_atomic(tmp_path / "425_1.mask.png", _halves(20, 30, 15))
    write_png_atomic(tmp_path / "425_1.overlay.png", np.zeros((20, 30, 3), np.uint8))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("425_1.jpg"), _halves(20, 30, 15))
    message = ev.errors["425_1.jpg"]
    assert "predict.py" in message and "rename" not in message


def test_a_label_named_after_the_images_whole_file_name_is_named_with_the_rename(tmp_path: Path) -> None:
    """``425_1.jpg.png``, the image's file name with ``.png`` added (what many export scripts write)."""
    write_png_atomic(tmp_path / "425_1.jpg.png", _halves(20, 30, 15))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("425_1.jpg"), _halves(20, 30, 15))
    assert "rename it 425_1.png" in ev.errors["425_1.jpg"]


def test_a_label_named_after_another_image_extension_is_named_when_no_such_image_is_beside(
    tmp_path: Path,
) -> None:
    """``b.png.png`` beside the input ``b.jpg`` (images converted to PNG to be labelled, the labels named
    after the PNGs' whole names): it was counted missing without a word, as the label of an image ``b.png``.
    With no image ``b.png`` beside ``b.jpg``, it is named with the rename to make; it is not scored, as
    labels are matched by the image's stem (``b.jpg.png`` is not scored either). With an image ``b.png``
    there (an input of the run or not) it is that image's, and ``b.jpg`` has no label."""
    inputs, labels = tmp_path / "in", tmp_path / "labels"
    inputs.mkdir()
    (inputs / "b.jpg").write_bytes(b"an image")
    write_png_atomic(labels / "b.png.png", _halves(20, 30, 15))
    ev = Evaluation(labels)
    ev.add(PurePosixPath("b.jpg"), _halves(20, 30, 15), image_path=inputs / "b.jpg")
    message = ev.errors["b.jpg"]
    assert message.startswith(f"{labels / 'b.png.png'}: named as the label of an image b.png"), message
    assert "no image b.png lies beside b.jpg" in message and message.endswith("rename it b.png")
    assert not ev.missing and not ev.per_image
    (inputs / "b.png").write_bytes(b"another image")
    beside = Evaluation(labels, image_extensions=(".jpg",))  # b.png is no input of this run: still an image
    beside.add(PurePosixPath("b.jpg"), _halves(20, 30, 15), image_path=inputs / "b.jpg")
    assert beside.missing == ["b.jpg"] and not beside.errors


def test_a_label_at_the_top_of_labels_dir_for_an_input_in_a_subfolder_is_named_with_the_move(
    tmp_path: Path,
) -> None:
    """Inputs sorted into folders (``sol0100/NLA_1.jpg``), labels in one flat folder as AI4Mars ships them
    (``labels/NLA_1.png``): labels mirror the input's folders, so nothing was scored and the run said only
    that labels must be ``sol0100/NLA_1.png``, without a word that the label was there, at the top."""
    write_png_atomic(tmp_path / "NLA_1.png", _halves(20, 30, 15))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("sol0100/NLA_1.jpg"), _halves(20, 30, 15))
    message = ev.errors["sol0100/NLA_1.jpg"]
    assert message.startswith(f"{tmp_path / 'NLA_1.png'}: ") and not ev.missing
    assert f"{tmp_path / 'sol0100' / 'NLA_1.png'}" in message


def test_a_top_level_label_of_a_top_level_input_is_not_offered_to_its_namesake_in_a_subfolder(
    tmp_path: Path,
) -> None:
    inputs, labels = tmp_path / "in", tmp_path / "labels"
    (inputs / "sub").mkdir(parents=True)
    labels.mkdir()
    for name in ("x.jpg", "sub/x.jpg"):
        (inputs / name).write_bytes(b"an image")
    write_png_atomic(labels / "x.png", _halves(20, 30, 15))
    ev = Evaluation(labels)
    ev.add(PurePosixPath("sub/x.jpg"), _halves(20, 30, 15), image_path=inputs / "sub" / "x.jpg")
    assert ev.missing == ["sub/x.jpg"] and not ev.errors


def test_a_label_in_a_data_set_s_native_ids_is_told_that_data_set_s_map(tmp_path: Path) -> None:
    """MarsScapes labels scored without labels_class_map were told to give labels_class_map=checkpoint, which
    a model trained without a map (synthetic scenes, data=folder) refuses, or a map of their own to write;
    the ids are all MarsScapes' native ids, so its map is named: by the data set's name, which gives it with
    any model (its whole map spelt out, to paste, until the name did), while train.py's refusal of such masks,
    whose data.class_map takes no name, spells the map out."""
    from marsunits.data.class_map import DATA_SET_LABEL_MAPS, native_data_set_hint
    from marsunits.inference.options import read_labels_class_map

    label = np.array([[0, 3, 6, 8], [1, 2, 4, 255]], np.uint8)
    write_png_atomic(tmp_path / "sol.png", label)
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("sol.jpg"), np.zeros((2, 4), np.uint8))
    said = ev.errors["sol.jpg"]
    assert "if they are MarsScapes labels (" in said and "AI4Mars" not in said, said
    (offered,) = re.findall(r"\), labels_class_map=(\w+)", said)
    assert offered == "marsscapes" and DATA_SET_LABEL_MAPS["marsscapes"] not in said, said
    # The value offered scores the label, with a model trained on project ids as with none.
    for meta in ({}, {"class_map": None, "dataset": "synthetic"}):
        scored = Evaluation(tmp_path, class_map=read_labels_class_map(offered, meta))
        scored.add(PurePosixPath("sol.jpg"), np.zeros((2, 4), np.uint8))
        assert not scored.errors and scored.per_image["sol.jpg"]["pixel_accuracy"] == pytest.approx(2 / 7)
    training = native_data_set_hint(np.unique(label), "data.class_map")
    assert f"data.class_map='{DATA_SET_LABEL_MAPS['marsscapes']}'" in training, training
    assert "data.class_map=marsscapes" not in training, training


def test_the_run_text_says_labels_holding_2_were_read_as_project_ids_without_a_map(tmp_path: Path) -> None:
    """AI4Mars labels copied without their classes.json (0 soil, 1 bedrock, 2 sand, 255: no big rock, so
    no id outside 0..2) were scored with their sand as ``other``, and the run's last line gave the mIoU
    without a word of how the labels were read. Labels holding a 2 scored without a map are now said to
    have been read as project ids, naming labels_class_map; with a map, or with no 2, nothing is added."""
    from marsunits.data.class_map import ClassMap
    from marsunits.inference.options import read_labels_class_map

    label = np.array([[0, 0, 2, 2], [1, 1, 255, 255]], np.uint8)  # AI4Mars: soil, sand, bedrock, null
    write_png_atomic(tmp_path / "frame.png", label)
    write_png_atomic(tmp_path / "rock.png", np.array([[0, 1], [1, 255]], np.uint8))
    predicted = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.uint8)

    def text(class_map: ClassMap | None = None, names: tuple[str, ...] = ("frame.jpg",)) -> str:
        ev = Evaluation(tmp_path, class_map=class_map)
        for name in names:
            ev.add(PurePosixPath(name), predicted if name == "frame.jpg" else predicted[:, :2])
        return " ".join(summary_paragraph(run_summary(), ev.to_dict()).split())

    said = text()
    assert "The labels were read as project ids (no labels_class_map), their 2 as other" in said
    assert "AI4Mars' sand" in said and "need labels_class_map" in said
    # The value it offers for AI4Mars labels (the data set's name; no value was named) reads sand as smooth.
    (offered,) = re.findall(r"labels_class_map=(\w+) for AI4Mars labels", said)
    ai4mars = read_labels_class_map(offered, {"class_map": None, "dataset": "synthetic"})
    assert ai4mars is not None and ai4mars(label).tolist() == [[0, 0, 0, 0], [1, 1, 255, 255]]
    assert "labels_class_map=marsscapes for MarsScapes'" in said, said
    assert "read as project ids" not in text(ai4mars)
    assert "read as project ids" not in text(names=("rock.jpg",))  # no 2: read the same either way


def test_a_run_given_labels_that_scored_no_image_is_told_why_it_fails(tmp_path: Path) -> None:
    """A run given ``labels_dir`` that scored not one of its images exited 0: a script running predict.py to
    score a model read it as scores written. :func:`nothing_scored` gives the sentence that ends such a
    run's paragraph and makes its status 1; a run that scored one image, has no labels_dir, or has no mask
    to score (its inputs failed: allow_errors' rule) gets none."""
    write_png_atomic(tmp_path / "a.png", np.zeros((2, 4), np.uint8))
    nothing = Evaluation(tmp_path)
    nothing.add(PurePosixPath("b.jpg"), np.zeros((2, 4), np.uint8))
    said = nothing_scored(run_summary(images_with_masks=2), nothing.to_dict())
    assert said is not None and said.startswith(
        "Exit status 1: labels_dir was given but none of the 2 images"
    )
    assert "Fix the labels or labels_dir and run again" in said
    one = Evaluation(tmp_path)
    one.add(PurePosixPath("a.jpg"), np.zeros((2, 4), np.uint8))
    one.add(PurePosixPath("b.jpg"), np.zeros((2, 4), np.uint8))
    assert nothing_scored(run_summary(images_with_masks=2), one.to_dict()) is None
    assert nothing_scored(run_summary(images_with_masks=2), None) is None
    failed = run_summary(images_with_masks=0, counts={"ok": 0, "total": 2, "skipped": 0, "error": 2})
    assert nothing_scored(failed, nothing.to_dict()) is None


def test_labels_of_smooth_ground_alone_are_not_said_to_hold_255(tmp_path: Path) -> None:
    """Labels whose scored pixels are all smooth_volcanic are told the map that reads a black-and-white
    export's white as a unit; labels of 0 alone, every pixel labelled, were told they held smooth_volcanic
    "alone beside 255", a 255 they do not hold (the scores keep no count of a label's 255)."""
    write_png_atomic(tmp_path / "flat.png", np.zeros((2, 4), np.uint8))
    ev = Evaluation(tmp_path)
    ev.add(PurePosixPath("flat.jpg"), np.zeros((2, 4), np.uint8))
    said = " ".join(summary_paragraph(run_summary(), ev.to_dict()).split())
    assert "Every label's scored pixels are smooth_volcanic (0) alone" in said, said
    assert "beside 255" not in said, said


def test_labels_beside_a_classes_json_of_the_project_s_classes_are_not_said_to_be_read_as_project_ids(
    tmp_path: Path,
) -> None:
    """A refusal of labels beside a classes.json naming other classes tells a user whose labels do hold
    project ids to name the project's classes in that file; so named, the labels are known to hold project
    ids, yet the run's last line still said they were read so, "their 2 as other", and that labels in a data
    set's own ids need labels_class_map. A file naming another class, or naming no 2, says nothing of them."""
    label = np.array([[0, 0, 2, 2], [1, 1, 255, 255]], np.uint8)
    write_png_atomic(tmp_path / "labels" / "frame.png", label)
    predicted = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.uint8)

    def metrics(classes: list[dict[str, object]] | None) -> dict[str, Any]:
        (tmp_path / "classes.json").unlink(missing_ok=True)
        if classes is not None:
            (tmp_path / "classes.json").write_text(json.dumps({"classes": classes}))
        ev = Evaluation(tmp_path / "labels", classes_file_checked=True)
        ev.add(PurePosixPath("frame.jpg"), predicted)
        return ev.to_dict()

    def said(found: dict[str, Any]) -> str:
        return " ".join(summary_paragraph(run_summary(), found).split())

    project = [{"id": i, "name": n} for i, n in enumerate(("Smooth volcanic", "rough-olivine", "other"))]
    named = metrics([*project, {"id": 255, "name": "unlabelled"}])
    assert named["labels_classes_file"] == str(tmp_path / "classes.json")
    assert "read as project ids" not in said(named)
    for classes in (None, project[:2], [*project[:2], {"id": 2, "name": "sand"}]):
        found = metrics(classes)
        assert found["labels_classes_file"] is None
        assert "The labels were read as project ids (no labels_class_map), their 2 as other" in said(found)


def test_a_label_in_native_ids_is_told_labels_class_map_checkpoint_only_where_the_model_has_a_map(
    tmp_path: Path,
) -> None:
    """MarsScapes labels scored with the synthetic default model were told to give labels_class_map=checkpoint
    (the model's training map), which that model, trained on masks in project ids, refuses; so would a model
    trained on several data sets with a map each (the data set is named there). The fix is offered only for
    a model whose map ``checkpoint`` gives (``offers_checkpoint_map``, which predict's run passes)."""
    from marsunits.inference.options import offers_checkpoint_map
    from marsunits.task import _normalise_class_map

    ms, ai = {0: 0, 1: 1, 6: 2, 255: 255}, {0: 0, 1: 1, 2: 0, 3: 1, 255: 255}
    assert offers_checkpoint_map({"class_map": ms, "dataset": "marsscapes"})
    assert not offers_checkpoint_map({"class_map": None, "dataset": "synthetic"})
    both = {"class_map": _normalise_class_map({"marsscapes": ms, "ai4mars": ai}), "dataset": "ms_ai"}
    assert not offers_checkpoint_map(both)
    write_png_atomic(tmp_path / "sol.png", np.array([[0, 3, 6, 8], [1, 2, 4, 255]], np.uint8))
    for has_map in (True, False):
        ev = Evaluation(tmp_path, model_class_map=has_map)
        ev.add(PurePosixPath("sol.jpg"), np.zeros((2, 4), np.uint8))
        said = ev.errors["sol.jpg"]
        assert ("labels_class_map=checkpoint" in said) is has_map, said
        assert "labels_class_map='{native id: project id, ...}'" in said and "MarsScapes labels" in said


def test_a_label_saved_in_a_format_that_is_not_read_is_a_label_error_not_a_missing_label(
    tmp_path: Path,
) -> None:
    """A label saved as BMP or GIF (``frame.bmp`` beside the other PNG labels) was counted as missing
    without a word, the user's label lying there; it is now a label error naming the file and the format
    to save it in. A name of another stem in such a format is no label of the image."""
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "frame.bmp")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "frame2.gif")
    write_png_atomic(tmp_path / "fine.png", np.zeros((4, 6), np.uint8))
    ev = Evaluation(tmp_path)
    for name in ("frame.jpg", "fine.jpg", "frame3.jpg"):
        ev.add(PurePosixPath(name), np.zeros((4, 6), np.uint8))
    assert list(ev.per_image) == ["fine.jpg"] and ev.missing == ["frame3.jpg"]
    said = ev.errors["frame.jpg"]
    assert said.startswith(
        f"{tmp_path / 'frame.bmp'}: a label in a format that is not read (.bmp: labels are looked for as "
        "<stem>.png, .tif, .tiff, .jpg or .jpeg, and a JPEG one is refused, its lossy compression changing "
        "the ids); save it as frame.png"
    ), said
    assert "frame2.gif" not in " ".join(ev.errors.values())


# ------------------------------------------------------------------------------------------ classes.json
def test_labels_whose_classes_json_names_other_classes_are_refused_from_python(tmp_path: Path) -> None:
    """predict.py refuses labels without labels_class_map beside a classes.json naming other classes; from
    Python, Evaluation(labels_dir) scored AI4Mars labels holding no 3 as project ids, sand (2) as other,
    and predict_folder(PredictOptions(...)) was told the command line's words (null, a quoted map). Each
    refuses them in its own parameter's Python words, and the map given as told scores them."""
    import json

    from marsunits.data.class_map import ClassMap
    from marsunits.errors import ConfigError
    from marsunits.inference import PredictOptions, predict_folder
    from marsunits.inference.options import read_labels_class_map

    labels = tmp_path / "ai4mars" / "labels"
    write_png_atomic(labels / "x.png", np.array([[0, 2], [1, 2]], np.uint8))
    classes = labels / "classes.json"  # among the labels, as a folder of masks is sent with its own
    names = {0: "soil", 1: "bedrock", 2: "sand", 255: "null"}
    classes.write_text(json.dumps({"classes": [{"id": i, "name": n} for i, n in names.items()]}))
    with pytest.raises(ConfigError) as refused:
        Evaluation(labels)
    said = str(refused.value)
    assert said.startswith(
        f"{classes}: the labels in labels_dir={str(labels)!r} hold the native ids of AI4Mars"
    )
    assert "but class_map is None" in said and "is null" not in said, said
    fix = "ClassMap({0: 0, 2: 0, 1: 1, 3: 1, 255: 255}, None)"
    assert f"give class_map={fix};" in said, said
    ev = Evaluation(labels, eval(fix, {"ClassMap": ClassMap}))  # the code as told
    ev.add(PurePosixPath("x.png"), np.array([[0, 0], [1, 0]], np.uint8))
    assert ev.per_image["x.png"]["pixel_accuracy"] == 1.0  # sand scored as smooth
    images = tmp_path / "images"
    images.mkdir()
    opts = PredictOptions(
        ckpt_path=str(tmp_path / "model.ckpt"),
        input_dir=str(images),
        output_dir=str(tmp_path / "out"),
        labels_dir=str(labels),
    )
    with pytest.raises(ConfigError) as refused:
        predict_folder(opts)
    said = str(refused.value)
    assert "but labels_class_map is None" in said and "is null" not in said, said
    # The data set's name, in Python's words, with the map it reads: not the map to paste.
    assert (
        "give labels_class_map='ai4mars' (the map shipped for them, {0: 0, 2: 0, 1: 1, 3: 1, 255: 255}; "
        "with a model trained on AI4Mars, the model's own)" in said
    ), said
    assert not (tmp_path / "out").exists()
    (offered,) = re.findall(r"give labels_class_map=('\w+')", said)
    named = read_labels_class_map(eval(offered), {})  # the code as told
    assert named is not None and named.as_dict() == {0: 0, 1: 1, 2: 0, 3: 1, 255: 255}


def test_an_unreadable_classes_json_is_warned_of_once_from_python(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """predict.py and predict_folder warn of a classes.json among (or beside) the labels that cannot be read,
    as the labels are then scored as project ids unchecked; Evaluation(labels_dir) built in Python said
    nothing. It warns once, naming the file and its own parameter (class_map); not with a class map, nor for a
    readable file or none."""
    labels = tmp_path / "labels"
    write_png_atomic(labels / "x.png", np.array([[0, 2], [1, 2]], np.uint8))
    Evaluation(labels)  # no classes.json
    inside = labels / "classes.json"
    inside.write_text("{not json")
    with caplog.at_level("WARNING"):
        Evaluation(labels)
    said = [r.getMessage() for r in caplog.records if "classes.json" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(f"{inside} is ignored: it cannot be read as JSON"), said
    assert f"the labels in labels_dir={str(labels)!r} hold" in said[0], said
    assert "give class_map if the labels are in a data set's own ids" in said[0], said
    caplog.clear()
    from marsunits.data.class_map import ClassMap

    with caplog.at_level("WARNING"):
        Evaluation(labels, ClassMap({0: 0, 1: 1, 2: 2, 255: 255}, None))  # the map says which ids they hold
        inside.write_text('{"classes": [{"id": 0, "name": "smooth_volcanic"}]}')
        Evaluation(labels)
    assert not [r for r in caplog.records if "classes.json" in r.getMessage()], caplog.records
