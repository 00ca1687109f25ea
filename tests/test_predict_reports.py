"""What ``predict.py`` reports besides masks: contact scores in metrics.json, the ground contact map and
the W&B run of a prediction."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from marsunits.boundary.contact_io import ContactLine, write_contacts
from marsunits.data.io import write_png_atomic
from marsunits.inference import run
from marsunits.inference.evaluation import Evaluation

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import compose_config, run_summary
    from .test_predict import ckpt, make_cfg, read_manifest, save_rgb  # noqa: F401  (ckpt is a fixture)
except ImportError:
    from conftest import compose_config, run_summary  # type: ignore[no-redef]
    from test_predict import ckpt, make_cfg, read_manifest, save_rgb  # type: ignore[no-redef]  # noqa: F401


def _halves(h: int, w: int, col: int) -> np.ndarray:
    """Class 0 left of column ``col``, class 1 from it on: a vertical contact at x = col."""
    mask = np.zeros((h, w), np.uint8)
    mask[:, col:] = 1
    return mask


def _vertical(x: float, h: int) -> ContactLine:
    return ContactLine(pixels=np.array([[x, 0.0], [x, float(h)]]))


# ------------------------------------------------------------------------------- 2. contact scores
def test_contact_scores_on_known_masks_and_lines(tmp_path: Path) -> None:
    h, w = 40, 60
    labels = tmp_path / "data" / "masks"
    write_png_atomic(labels / "shift2.png", _halves(h, w, 30))
    write_png_atomic(labels / "shift5.png", _halves(h, w, 30))
    write_png_atomic(labels / "flat.png", np.full((h, w), 2, np.uint8))
    write_contacts(tmp_path / "data" / "contacts" / "shift2.contact.geojson", [_vertical(30, h)], w, h)

    ev = Evaluation(labels)
    ev.add(PurePosixPath("shift2.png"), _halves(h, w, 32), [_vertical(32, h)])  # 2 px off: within 3 px
    ev.add(PurePosixPath("shift5.png"), _halves(h, w, 35))  # 5 px off: no crack matches, no contact file
    ev.add(PurePosixPath("flat.png"), np.full((h, w), 2, np.uint8))  # no contact on either side
    m = json.loads(json.dumps(ev.to_dict(), allow_nan=False))  # what metrics.json holds

    a, b, c = (m["per_image"][k] for k in ("shift2.png", "shift5.png", "flat.png"))
    assert a["boundary_f1"] == pytest.approx(1.0) and a["contact_distance_px"] == pytest.approx(2.0)
    assert a["line_boundary_f1"] == pytest.approx(1.0)
    assert a["line_contact_distance_px"] == pytest.approx(2.0, abs=1e-6)
    assert b["boundary_f1"] == pytest.approx(0.0) and b["contact_distance_px"] == pytest.approx(5.0)
    assert "line_boundary_f1" not in b  # no true contact file
    assert c["boundary_f1"] == 1.0 and not c["has_contact"]
    o = m["overall"]
    # The image without any contact is left out of the means (it would add a perfect 1).
    assert o["n_contact_images"] == 2 and o["boundary_f1"] == pytest.approx(0.5)
    assert o["contact_distance_px"] == pytest.approx(3.5)
    assert o["n_line_images"] == 1 and o["line_boundary_f1"] == pytest.approx(1.0)
    assert "contact in the prediction or the truth" in m["notes"]


def test_a_true_contact_file_that_cannot_be_used_loses_only_the_line_scores(tmp_path: Path) -> None:
    """A true contact file made for another image size was scored as if it fitted (line F1 0 for lines
    exactly on the contact), and an unreadable one took the image's pixel scores with it, blamed on the
    label."""
    from marsunits.inference.run_summary_text import summary_paragraph

    h, w = 40, 60
    labels = tmp_path / "data" / "masks"
    contacts = tmp_path / "data" / "contacts"
    for stem in ("sized", "broken", "fine"):
        write_png_atomic(labels / f"{stem}.png", _halves(h, w, 30))
    write_contacts(contacts / "sized.contact.geojson", [_vertical(30, 2 * h)], 2 * w, 2 * h)
    (contacts / "broken.contact.geojson").write_text("{not json")
    write_contacts(contacts / "fine.contact.geojson", [_vertical(30, h)], w, h)
    ev = Evaluation(labels)
    for stem in ("sized", "broken", "fine"):
        ev.add(PurePosixPath(f"{stem}.png"), _halves(h, w, 30), [_vertical(30, h)])
    m = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert m["images_scored"] == 3 and not m["label_errors"]
    assert sum(map(sum, m["overall"]["confusion_matrix"])) == 3 * h * w  # every image's pixels count
    assert all(e["boundary_f1"] == pytest.approx(1.0) for e in m["per_image"].values())
    assert set(m["contact_errors"]) == {"sized.png", "broken.png"}
    assert m["contact_errors"]["sized.png"] == (
        f"{contacts / 'sized.contact.geojson'}: the contact file is for a 120x80 image but the prediction "
        "is 60x40, so its lines cannot be scored; give the true contacts of this image"
    )
    assert m["contact_errors"]["broken.png"].startswith(f"cannot read contact file {contacts}")
    assert "line_boundary_f1" not in m["per_image"]["sized.png"]
    assert m["overall"]["n_line_images"] == 1 and m["overall"]["line_boundary_f1"] == pytest.approx(1.0)
    summary = {
        "counts": {"ok": 3, "total": 3, "skipped": 0, "error": 0},
        "unit_fractions": {"smooth_volcanic": 0.5, "rough_olivine": 0.5, "other": 0.0},
        "megapixels_per_second": 0.0,
        "seconds": 1.0,
        "megapixels": 0.0072,
        "checkpoint": "m.ckpt",
        "device": "cpu",
        "tile": 512,
        "overlap": 0.125,
        "n_contacts": 3,
        "contact_length_px": 120.0,
        "output_dir": "out",
    }
    assert "2 true contact files could not be used, so those images have pixel scores but no line scores" in (
        summary_paragraph(summary, m)
    )


def test_the_last_line_names_a_few_contact_maps_and_counts_the_rest() -> None:
    """One map per site: 24 synthetic scenes (24 sites) predicted with map=true ended the run's last line
    with the 24 file names, one after another; a survey of hundreds of frames would list hundreds."""
    from marsunits.inference.run_summary_text import MAPS_NAMED, contact_maps_sentence

    assert contact_maps_sentence([]) == ""
    assert contact_maps_sentence(["contact_map.png"]) == " Contact map: contact_map.png."
    few = [f"contact_map_s{i}.png" for i in range(MAPS_NAMED)]
    assert contact_maps_sentence(few) == f" Contact maps: {', '.join(few)}."
    many = [f"contact_map_synthetic_0_{i}.png" for i in range(24)]
    said = contact_maps_sentence(many)
    assert said == (
        f" 24 contact maps, one per site: {', '.join(many[:MAPS_NAMED])} and {24 - MAPS_NAMED} more "
        "(index.html links each)."
    )
    assert many[MAPS_NAMED] not in said


def test_a_run_a_bug_ended_says_it_failed_and_what_running_again_does() -> None:
    """The sentence ending the paragraph of a run a bug ended (status 1, its traceback after it): the image
    it was predicting where known, and what the same command does next, which is not the same with
    overwrite=true (it goes on with the stopped overwrite, skipping the images it finished) or once no image
    is left unreached."""
    from marsunits.inference.run_summary_text import failed_sentence

    head = "The run failed on an error in a/b.png (the traceback follows; status 1)"
    assert failed_sentence("a/b.png", 1, overwrite=False) == (
        f"{head}: the image not reached is predicted by running the same command again (finished images "
        "are skipped)."
    )
    assert failed_sentence("a/b.png", 3, overwrite=True) == (
        f"{head}: run the same command again to go on (the images this run finished are skipped, the others "
        "predicted again)."
    )
    assert failed_sentence(None, 0, overwrite=False) == (
        "The run failed on an error (the traceback follows; status 1)."
    )
    # A sharded run's bug: the rank it hit, after the image.
    assert failed_sentence("a/b.png", 0, overwrite=False, rank="rank 1 of its 2 ranks") == (
        "The run failed on an error in a/b.png on rank 1 of its 2 ranks (the traceback follows; status 1)."
    )


def test_a_model_trained_on_synthetic_scenes_alone_is_said_so_unless_the_inputs_are_such_scenes(
    tmp_path: Path,
) -> None:
    """The README's first prediction maps real panoramas with the default model, trained on synthetic
    scenes alone, and the run said nothing of it: its map (hazy sky as smooth_volcanic, the rover deck as
    rough_olivine) read as the model's map of those images. Not said of scenes the generator wrote
    (``scenes.json``, or the ``contacts/`` of its layout, beside their ``images/``), nor of other models."""
    from marsunits.inference.run_summary_text import summary_paragraph

    def said(dataset: object, folder: Path) -> bool:
        summary = run_summary(checkpoint_metadata={"dataset": dataset}, input_dir=str(folder))
        text = " ".join(summary_paragraph(summary).split())
        return (
            "The model was trained on synthetic scenes alone (checkpoint_metadata.dataset 'synthetic')"
            in (text)
            and text.endswith("or data=folder with frames you labelled (docs/training.md).")
        )

    real = tmp_path / "panoramas"
    real.mkdir()
    assert said("synthetic", real)
    for dataset in ("marsscapes", "folder", "test", None):
        assert not said(dataset, real)
    written = tmp_path / "scenes"  # python -m marsunits.data.synthetic --out scenes
    (written / "images").mkdir(parents=True)
    (written / "scenes.json").write_text("{}")
    layout = tmp_path / "layout"  # the folder layout synthetic scenes are written in, scenes.json aside
    (layout / "images").mkdir(parents=True)
    (layout / "contacts").mkdir()
    for folder in (written / "images", written, layout / "images"):
        assert not said("synthetic", folder), folder


def test_labels_beside_a_classes_json_of_native_ids_need_their_map_and_an_unreadable_one_is_said(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AI4Mars labels holding no 3 (only 0 soil, 1 bedrock, 2 sand) were scored as project ids, sand as
    ``other``, although the ``classes.json`` beside their folder named AI4Mars' classes: the run is refused
    before anything is predicted, naming that file and the value giving the map, ``labels_class_map=ai4mars``
    (the map spelt out to paste until the name gave it with any model); with it, or with the map, it scores.
    A ``classes.json`` that cannot be read stops nothing: the run scores the labels as project ids and
    warns, naming it and the data sets' names to give."""
    from marsunits.errors import ConfigError

    inp, labels = tmp_path / "in", tmp_path / "ai4mars" / "labels"
    save_rgb(inp / "a.png", 40, 48, seed=1)
    write_png_atomic(
        labels / "a.png", np.random.default_rng(0).choice(np.array([0, 1, 2], np.uint8), (40, 48))
    )
    classes = labels.parent / "classes.json"
    names = {0: "soil", 1: "bedrock", 2: "sand", 3: "big_rock", 255: "null"}
    classes.write_text(json.dumps({"classes": [{"id": i, "name": n} for i, n in names.items()]}))
    out = tmp_path / "out"
    with pytest.raises(
        ConfigError, match=r"classes\.json: the labels in labels_dir=.*native ids of AI4Mars"
    ) as refused:
        run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}"))
    assert not out.exists()  # refused before anything was made
    (offered,) = re.findall(r"If they are AI4Mars labels, give (labels_class_map=\w+) ", str(refused.value))
    assert offered == "labels_class_map=ai4mars", refused.value
    named = tmp_path / "named"
    assert run(make_cfg(tmp_path, ckpt, inp, named, f"labels_dir={labels}", offered)) == 0
    mapping = "{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}"
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", f"labels_class_map={mapping}")) == 0
    by_map, by_name = (json.loads((o / "metrics.json").read_text()) for o in (out, named))
    assert by_map["images_scored"] == by_name["images_scored"] == 1
    assert (
        by_name["overall"] == by_map["overall"] and by_name["labels_class_map"] == by_map["labels_class_map"]
    )
    classes.write_text("{not json")
    with caplog.at_level("WARNING"):  # any logger: the run's Evaluation does not say it again
        assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", "overwrite=true")) == 0
    said = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and str(classes) in r.getMessage()
    ]
    assert len(said) == 1 and said[0].startswith(f"{classes} is ignored: it cannot be read as JSON"), said
    assert (
        "give labels_class_map if the labels are in a data set's own ids (labels_class_map=ai4mars or "
        "labels_class_map=marsscapes for AI4Mars or MarsScapes labels)." in said[0]
    ), said
    assert json.loads((out / "metrics.json").read_text())["images_scored"] == 1
    # One among the labels is theirs, read first: unreadable, it is the one warned of (AI4Mars' beside).
    classes.write_text(json.dumps({"classes": [{"id": i, "name": n} for i, n in names.items()]}))
    inside = labels / "classes.json"
    inside.write_text("{not json")
    caplog.clear()
    with caplog.at_level("WARNING"):  # any logger: the run's Evaluation does not say it again
        assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", "overwrite=true")) == 0
    said = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "is ignored" in r.getMessage()
    ]
    assert len(said) == 1 and said[0].startswith(f"{inside} is ignored: it cannot be read as JSON"), said


def test_an_unreadable_classes_json_offers_the_data_set_names_in_python_s_words_from_python(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """predict_folder(PredictOptions(...)) warned of an unreadable classes.json beside its labels in the
    command line's words, labels_class_map=ai4mars (a NameError as Python), while its refusal of a readable
    one of AI4Mars' classes gives labels_class_map='ai4mars'. The warning gives the names as Python does,
    and the name offered scores the labels."""
    from marsunits.inference import PredictOptions, predict_folder

    inp, labels = tmp_path / "in", tmp_path / "labels"
    save_rgb(inp / "a.png", 40, 48, seed=1)
    write_png_atomic(labels / "a.png", np.zeros((40, 48), np.uint8))
    (labels / "classes.json").write_text("{not json")
    opts = PredictOptions(
        ckpt_path=str(ckpt),
        input_dir=str(inp),
        output_dir=str(tmp_path / "out"),
        labels_dir=str(labels),
        device="cpu",
        num_workers=0,
        threads=1,
    )
    with caplog.at_level("WARNING"):
        assert predict_folder(opts).exit_code == 0
    (said,) = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    (offered, _) = re.findall(r"labels_class_map=('\w+')", said)
    assert offered == "'ai4mars'" and "labels_class_map=ai4mars " not in said, said
    named = predict_folder(opts.with_values(labels_class_map=eval(offered)))  # the code as told
    assert named.metrics is not None and named.metrics["images_scored"] == 1


def test_labels_dir_run_writes_contact_scores(tmp_path: Path, ckpt: Path) -> None:
    inp, labels = tmp_path / "in", tmp_path / "masks"
    save_rgb(inp / "a.png", 40, 48, seed=1)
    write_png_atomic(labels / "a.png", _halves(40, 48, 20))
    write_contacts(labels / "a.contact.geojson", [_vertical(20, 40)], 48, 40)  # next to the label
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["per_image"]["a.png"]
    assert 0.0 <= entry["boundary_f1"] <= 1.0 and 0.0 <= entry["line_boundary_f1"] <= 1.0
    assert entry["true_contact"].endswith("a.contact.geojson")
    assert metrics["overall"]["n_contact_images"] == 1 and "notes" in metrics
    # A re-run that skips the image scores it the same way (from the written mask and contacts).
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")) == 0
    again = json.loads((out / "metrics.json").read_text())["per_image"]["a.png"]
    assert again["boundary_f1"] == entry["boundary_f1"]
    assert again["line_boundary_f1"] == entry["line_boundary_f1"]


def test_black_and_white_labels_are_told_the_class_map_that_reads_their_white(
    tmp_path: Path, ckpt: Path
) -> None:
    """A geologist's labels saved in black and white (0 and 255 only, white marking rough ground) were
    scored as smooth_volcanic and unscored pixels: the run's last line gave a low mIoU and said no label
    held rough_olivine, nothing on why. Labels that hold smooth_volcanic alone beside 255 are now told the
    labels_class_map that reads white as a unit; given it, they score both units and are not told again."""
    inp, labels = tmp_path / "in", tmp_path / "labels"
    for i in range(2):
        save_rgb(inp / f"f{i}.png", 40, 48, seed=i)
        white = np.zeros((40, 48), np.uint8)
        white[:, 24:] = 255
        write_png_atomic(labels / f"f{i}.png", white)
    hint = "labels_class_map='{0: 0, 255: 1}' reads white as rough_olivine"
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "a", f"labels_dir={labels}")) == 0
    said = json.loads((tmp_path / "a" / "summary.json").read_text())["text"]
    assert "Every label's scored pixels are smooth_volcanic (0) alone (255 is never scored)" in said, said
    assert hint in said, said
    # AI4Mars labels of soil alone are black and white too, their 255 unlabelled: the map above would score
    # every unlabelled pixel as rough_olivine. The sentence says that such labels were read right already.
    ai4mars = (
        "if their 255 is unlabelled, as in AI4Mars and MarsScapes labels, they were read right as they are"
    )
    assert ai4mars in said, said
    mapping = "{0: 0, 255: 1}"
    out = tmp_path / "b"
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", f"labels_class_map={mapping}")) == 0
    confusion = json.loads((out / "metrics.json").read_text())["overall"]["confusion_matrix"]
    assert sum(confusion[0]) == sum(confusion[1]) == 2 * 40 * 24
    assert hint not in json.loads((out / "summary.json").read_text())["text"]


def test_a_data_set_named_as_it_spells_itself_reads_its_shipped_map(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``labels_class_map=MarsScapes`` or ``AI4Mars``, the data sets' names as they and the docs spell them,
    was refused inside the run as "this model was trained on masks in project ids", which told a synthetic
    model's user to give the very name given. Any letter case of a data set's name (or of ``checkpoint``)
    reads as that word: the labels are scored with the shipped map, and the run says it in lower case."""
    inp, labels = tmp_path / "in", tmp_path / "labels"
    save_rgb(inp / "f0.png", 40, 48, seed=0)
    rng = np.random.default_rng(0)  # MarsScapes ids: soil, bedrock, gravel, sand, big rock, sky, no data
    write_png_atomic(labels / "f0.png", rng.choice(np.array([0, 1, 2, 3, 4, 6, 255], np.uint8), (40, 48)))
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert (
            run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", "labels_class_map=MarsScapes"))
            == 0
        )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_scored"] == 1
    shipped = {"0": 0, "3": 0, "1": 1, "2": 1, "4": 1, "6": 2, "7": 2, "8": 2, "9": 2, "5": 255, "255": 255}
    assert metrics["labels_class_map"] == shipped
    assert "labels_class_map=marsscapes: this model was trained on" in caplog.text


def test_labels_in_native_ids_are_scored_through_labels_class_map(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AI4Mars labels (0 soil, 1 bedrock, 2 sand, 3 big rock) used to be scored as project ids without a
    word (sand counted as ``other``); MarsScapes labels (ids up to 9) scored nothing and said why only
    inside metrics.json."""
    from marsunits.errors import ConfigError

    inp, native, project = tmp_path / "in", tmp_path / "native", tmp_path / "project"
    rng = np.random.default_rng(0)
    ai4mars = {0: 0, 2: 0, 1: 1, 3: 1, 255: 255}
    for i in range(2):
        save_rgb(inp / f"f{i}.png", 40, 48, seed=i)
        label = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(40, 48))
        write_png_atomic(native / f"f{i}.png", label)
        write_png_atomic(project / f"f{i}.png", np.vectorize(ai4mars.get)(label).astype(np.uint8))
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "a", f"labels_dir={project}")) == 0
    expected = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mapping = "{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}"
    out = tmp_path / "b"
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={native}", f"labels_class_map={mapping}")) == 0
    got = json.loads((out / "metrics.json").read_text())
    assert got["overall"] == expected["overall"] and got["images_scored"] == 2
    assert got["labels_class_map"] == {"0": 0, "1": 1, "2": 0, "3": 1, "255": 255}
    # 255 (unlabelled) need not be listed: it stays 255.
    short = "{0: 0, 2: 0, 1: 1, 3: 1}"
    assert (
        run(
            make_cfg(
                tmp_path, ckpt, inp, tmp_path / "b2", f"labels_dir={native}", f"labels_class_map={short}"
            )
        )
        == 0
    )
    assert json.loads((tmp_path / "b2" / "metrics.json").read_text())["overall"] == expected["overall"]

    # Ids the map does not cover: each label is an error, and the console says why and what to do.
    write_png_atomic(native / "f1.png", np.full((40, 48), 9, np.uint8))
    capsys.readouterr()
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={native}", f"labels_class_map={mapping}")) == 0
    text = " ".join(capsys.readouterr().out.split())  # the last paragraph, in lines of at most 110 characters
    assert "1 label could not be scored" in text and "f1.png: mask values [9]" in text
    assert "not covered by the labels_class_map. Add them to labels_class_map in the command" in text
    assert "(native id -> 0 smooth_volcanic" in text
    capsys.readouterr()
    # No map: neither label can be scored, so the run exits 1 (the outputs written), naming ids and fix.
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "c", f"labels_dir={native}")) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "2 labels could not be scored" in text and "outside 0..2" in text and "labels_class_map=" in text
    # A model trained on project ids refuses labels_class_map=checkpoint (below): the labels are not told it.
    assert "labels_class_map=checkpoint" not in text, text
    # Their data set's name is (its whole map was spelt out, to paste): run with it at the end.
    (offered,) = re.findall(r"if they are AI4Mars labels \([^)]*\), (labels_class_map=\w+)", text)
    assert offered == "labels_class_map=ai4mars" and "{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}" not in text, text
    # A native label whose ids all happen to lie in 0..2 is scored, but the run warns that it is suspect.
    write_png_atomic(native / "f0.png", rng.choice(np.array([0, 1, 2], np.uint8), size=(40, 48)))
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "c", f"labels_dir={native}", "overwrite=true")) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Scored 1 image against" in text and "the ones scored probably do too" in text
    assert f"so give labels_class_map: {offered} for AI4Mars labels" in text, text
    # A later run without labels leaves no metrics.json of the earlier masks behind.
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "c", "overwrite=true")) == 0
    assert not (tmp_path / "c" / "metrics.json").exists()

    with pytest.raises(
        ConfigError, match="labels_class_map=checkpoint, but this model was trained on masks in"
    ):
        run(
            make_cfg(
                tmp_path, ckpt, inp, tmp_path / "d", f"labels_dir={native}", "labels_class_map=checkpoint"
            )
        )
    with pytest.raises(ConfigError, match="native id 3 maps to 7"):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "d", f"labels_dir={native}", "labels_class_map={3: 7}"))
    with pytest.raises(
        ConfigError, match=r"labels_class_map=checkpoint maps .* no labels_dir.*add labels_dir="
    ):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "e", "labels_class_map=checkpoint"))
    assert not (tmp_path / "e").exists()  # refused before anything was written
    # A known data set's name for a model without a map: that data set's shipped map (it was refused,
    # spelling the map out to give), scoring as the map given as a mapping does.
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={native}", f"labels_class_map={mapping}")) == 0
    given = json.loads((out / "metrics.json").read_text())
    d = tmp_path / "d"
    assert run(make_cfg(tmp_path, ckpt, inp, d, f"labels_dir={native}", offered)) == 0
    named = json.loads((d / "metrics.json").read_text())
    assert named["labels_class_map"] == given["labels_class_map"] and named["overall"] == given["overall"]
    # Another name of no known data set is still told the model has no map.
    with pytest.raises(ConfigError, match=r"labels_class_map=test, but this model was trained on masks in"):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "d", f"labels_dir={native}", "labels_class_map=test"))


# ------------------------------------------------------------------------------------ 3. contact map
def test_a_run_without_labels_dir_says_it_removed_the_scores_and_how_to_score_again(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run into a scored folder without labels_dir (to add save_probabilities, say) removed the earlier
    run's metrics.json without a word. It is still removed (it would describe masks this run may have
    replaced), and a warning names it with the labels_dir and labels_class_map that score the masks again."""
    inp, native, out = tmp_path / "in", tmp_path / "native labels", tmp_path / "out"
    save_rgb(inp / "f0.png", 40, 48, seed=0)
    write_png_atomic(native / "f0.png", np.array([[0, 1, 2, 3]] * 40, np.uint8).repeat(12, axis=1))
    mapping = "{0: 0, 2: 1, 1: 1, 3: 1, 255: 255}"  # no shipped map (that is given by name: below)
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={native}", f"labels_class_map={mapping}")) == 0
    assert (out / "metrics.json").is_file()
    assert "<td>label</td><td>mIoU " in (out / "index.html").read_text()  # the card's own score
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 0
    assert not (out / "metrics.json").exists()
    assert "<td>label</td>" not in (out / "index.html").read_text()
    said = [r.getMessage() for r in caplog.records if "metrics.json" in r.getMessage()]
    assert len(said) == 1, said
    assert f"removed {out / 'metrics.json'}, the scores of an earlier run against labels" in said[0]
    # The folder's name holds a space: quoted, as a command to be typed must have it.
    quoted = f"labels_dir='{native}' labels_class_map='{{0: 0, 1: 1, 2: 1, 3: 1, 255: 255}}'"
    assert quoted in said[0], said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):  # nothing removed, nothing said
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert not [r for r in caplog.records if "metrics.json" in r.getMessage()]


@pytest.mark.parametrize("given", ["labels_class_map=ai4mars", "labels_class_map={0: 0, 2: 0, 1: 1, 3: 1}"])
def test_the_removed_scores_warning_gives_a_shipped_map_by_its_name(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    """A recorded labels_class_map that is a shipped data set's map (AI4Mars', given by name or spelt out)
    was repeated as a mapping, a dozen characters to paste, where the name gives it. The name reads the same
    map with this model (which carries no map of AI4Mars): it is given back."""
    inp, native, out = tmp_path / "in", tmp_path / "labels", tmp_path / "out"
    save_rgb(inp / "f0.png", 40, 48, seed=0)
    write_png_atomic(native / "f0.png", np.array([[0, 1, 2, 3]] * 40, np.uint8).repeat(12, axis=1))
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={native}", given)) == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    said = [r.getMessage() for r in caplog.records if "metrics.json" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].endswith(
        f"run this command with labels_dir={native} labels_class_map=ai4mars (images already done are not "
        "predicted again)"
    ), said[0]


def test_the_removed_scores_warning_spells_out_a_shipped_map_the_model_reads_otherwise(
    tmp_path: Path,
) -> None:
    """A model trained on AI4Mars with a map of its own reads labels_class_map=ai4mars as that map: the
    shipped map recorded by an earlier run is spelt out, not named; with no model known, it is named."""
    from marsunits.inference.removed_scores import removed_scores_warning

    metrics = tmp_path / "metrics.json"
    shipped = {"0": 0, "1": 1, "2": 0, "3": 1, "255": 255}
    metrics.write_text(json.dumps({"labels_dir": "labels", "labels_class_map": shipped}))
    own = {"dataset": "ai4mars", "class_map": {0: 0, 1: 1, 2: 1, 3: 1, 255: 255}}
    assert "labels_class_map='{0: 0, 1: 1, 2: 0, 3: 1, 255: 255}'" in removed_scores_warning(metrics, own)
    assert "labels_class_map=ai4mars " in removed_scores_warning(metrics)
    # A model trained on AI4Mars with the shipped map reads the name as it: named.
    assert "labels_class_map=ai4mars " in removed_scores_warning(
        metrics, {"dataset": "ai4mars", "class_map": {int(k): v for k, v in shipped.items()}}
    )


def test_map_merges_ground_contacts_of_synthetic_scenes(tmp_path: Path, ckpt: Path) -> None:
    import shutil

    from marsunits.boundary.camera import find_camera
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    # Small scenes (the network's time dominates); p_contact=1 so every scene has a true contact.
    names = generate_dataset(data, 3, seed=0, config=SceneConfig(width=128, height=96, p_contact=1.0))
    cameras = sorted((data / "cameras").glob("*.json"))
    assert len(cameras) == 3
    # Each synthetic scene is a world of its own, with a site of its own: one map each (24 unrelated
    # scenes were merged into one map). Put them in one site frame here, as a traverse's images are.
    apart = tmp_path / "apart"
    assert run(make_cfg(tmp_path, ckpt, data / "images", apart, "map=true", "max_range_m=60")) == 0
    assert len(list(apart.glob("contact_map_synthetic_0_*.geojson"))) == 3
    for camera_file in cameras:
        camera = json.loads(camera_file.read_text())
        camera_file.write_text(json.dumps({**camera, "site": "traverse"}))
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true", "max_range_m=60")) == 0
    assert (out / "contact_map.png").stat().st_size > 0
    gj = json.loads((out / "contact_map.geojson").read_text())
    assert sorted(c["image"] for c in gj["cameras"]) == sorted(f"{n}.png" for n in names)
    # The page and the run's last line lead to the map (neither mentioned it).
    page = (out / "index.html").read_text()
    for name in ("contact_map.png", "contact_map.geojson", "manifest.csv", "summary.json"):
        assert f'href="{name}"' in page, name
    assert "Contact map: contact_map.png." in json.loads((out / "summary.json").read_text())["text"]

    # The tiny untrained network may find no contact: put the true contacts in place of the predicted
    # ones; the re-run skips the images and maps the contacts it reads back from their files.
    for n in names:
        shutil.copyfile(data / "contacts" / f"{n}.contact.geojson", out / f"{n}.contact.geojson")
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true", "max_range_m=60")) == 0
    gj = json.loads((out / "contact_map.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and gj["units"] == "m"
    assert gj["features"], "the true contacts of synthetic scenes reach the ground"
    centers = {c["image"]: np.asarray(c["center_m"]) for c in gj["cameras"]}
    for feat in gj["features"]:
        assert feat["geometry"]["type"] == "LineString"
        xy = np.asarray(feat["geometry"]["coordinates"], float)
        assert xy.ndim == 2 and xy.shape[1] == 2 and len(xy) >= 2 and np.isfinite(xy).all()
        # Metres: within the range limit of the camera that saw it (pixel coordinates would be far larger).
        camera = find_camera(data / "images" / feat["properties"]["image"])
        assert camera is not None
        distance = np.linalg.norm(xy - centers[feat["properties"]["image"]][:2], axis=1)
        assert distance.max() <= 60 + 1e-6
        assert feat["properties"]["length_m"] > 0


def test_a_written_synthetic_set_trains_as_a_folder_and_its_masks_score_as_project_ids_without_a_word(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The synthetic scene writer put no classes.json beside its masks, so predict.py scoring against them
    (labels_dir=<set>/masks) ended with "The labels were read as project ids (no labels_class_map), their 2
    as other", a doubt cast on the project's own exact labels. The writer's classes.json names the project's
    classes: the run says nothing of it and metrics.json records the file; data=folder still trains on it."""
    from marsunits.data.mask_io import read_mask
    from marsunits.data.synthetic.cli import main as synthetic
    from marsunits.training import run as train

    scenes = tmp_path / "scenes"
    assert synthetic(["--out", str(scenes), "--n", "5", "--size", "64x48", "--seed", "0"]) == 0
    wrote = capsys.readouterr().out
    masks = sorted((scenes / "masks").glob("*.png"))
    assert any((read_mask(m) == 2).any() for m in masks)  # labels holding a 2: the sentence's case
    trained = [
        "debug=fdr",
        "model=tiny",
        "logger=none",
        "data=folder",
        f"data.root={scenes}",
        "data.batch_size=2",
        "data.crop_size=32",
        "data.num_workers=0",
        "trainer.enable_progress_bar=false",
    ]
    assert train(compose_config("train", tmp_path / "run", trained))["train/loss"] >= 0
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, scenes / "images", out, f"labels_dir={scenes / 'masks'}")) == 0
    said = json.loads((out / "summary.json").read_text())["text"]
    assert "read as project ids" not in said and "mIoU" in said, said
    assert json.loads((out / "metrics.json").read_text())["labels_classes_file"] == str(
        scenes / "classes.json"
    )
    assert "classes.json" in wrote, wrote  # the generator's last line lists it


def test_an_overwrite_run_failing_before_its_first_image_keeps_the_reports_and_maps(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error before an overwrite=true run had replaced an image (``max_range_m=inf`` did it,
    in the settings record) wrote an empty manifest, a summary of 0 images and removed the contact maps."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset
    from marsunits.inference import runner

    data = tmp_path / "syn"
    generate_dataset(data, 2, seed=0, config=SceneConfig(width=128, height=96, p_contact=1.0))
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true", "max_range_m=60")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.suffix != ".json"}
    assert any(name.startswith("contact_map") for name in before) and "manifest.csv" in before
    real = runner.write_settings

    def failing(output_dir: Path, settings: dict, pending: bool = False, **kwargs: bool) -> Path:
        if pending:
            raise RuntimeError("a failure nobody planned")
        return real(output_dir, settings, pending=pending, **kwargs)

    monkeypatch.setattr(runner, "write_settings", failing)
    overwrite = make_cfg(tmp_path, ckpt, data / "images", out, "map=true", "max_range_m=60", "overwrite=true")
    with pytest.raises(RuntimeError, match="nobody planned"):
        run(overwrite)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.suffix != ".json"}
    assert after == before


def test_a_folder_named_like_the_map_is_said_and_the_other_reports_are_written(
    tmp_path: Path, ckpt: Path
) -> None:
    """A folder named contact_map.png in output_dir failed the rename of the map at the end of the run with
    the temporary file's name: summary.json and index.html were never written."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    (name,) = generate_dataset(data, 1, seed=0, config=SceneConfig(width=64, height=48, p_contact=1.0))
    out = tmp_path / "out"
    (out / "contact_map.png").mkdir(parents=True)
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true")) == 1
    assert (out / f"{name}.mask.png").is_file() and (out / f"{name}.contact.geojson").is_file()
    assert (out / "index.html").is_file() and (out / "manifest.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert f"cannot write the contact map {out / 'contact_map.png'}: a folder" in summary["text"]
    assert "move or rename it" in summary["text"]
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["contact_map_not_written"]
    assert summary["no_contact_map_reason"].startswith(
        f"cannot write the contact map {out / 'contact_map.png'}"
    )
    assert (out / "contact_map.png").is_dir() and not (out / "contact_map.geojson").exists()


def test_a_run_without_map_true_warns_naming_the_maps_it_removes(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run of an output folder without map=true removed the maps an earlier map=true run drew there
    (README: "map=false removes them all"; a map would no longer match the folder) with only an info line.
    It is a warning naming each file removed and map=true, which draws them again; a map=true run that
    draws the maps again warns of nothing."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    generate_dataset(data, 1, seed=0, config=SceneConfig(width=64, height=48, p_contact=1.0))
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true")) == 0
    maps = sorted(p.name for p in out.glob("contact_map*"))
    assert maps
    assert json.loads((out / "summary.json").read_text())["no_contact_map_reason"] is None  # drawn
    with caplog.at_level("WARNING", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert not list(out.glob("contact_map*"))  # removed as before: they would not match the folder
    why = json.loads((out / "summary.json").read_text())["no_contact_map_reason"]
    assert why.startswith("map=false: ") and "map=true" in why, why  # not asked for, and how to ask
    said = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "contact map" in r.getMessage()
    ]
    assert len(said) == 1 and all(name in said[0] for name in maps) and "map=true" in said[0], said
    caplog.clear()
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "map=true")) == 0
    assert sorted(p.name for p in out.glob("contact_map*")) == maps
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "contact map" in r.getMessage()]


def test_a_site_shared_by_a_pds_and_a_pinhole_camera_file_is_two_maps_naming_both_files(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pinhole camera file given the name of a PDS site (``SITE_62``) was merged into that site's map
    without a word, its own frame (x forward, y left) drawn as the site's (x north, y west). predict.py draws
    the two frames as two maps and its warning names both camera files."""
    from marsunits.boundary.camera import cahv_from_pinhole, ned_to_flu
    from marsunits.boundary.camera.pinhole import PinholeCamera

    inp, out = tmp_path / "in", tmp_path / "out"
    pin = PinholeCamera(image_width=64, image_height=48, hfov_deg=60.0, pitch_deg=20.0, site="SITE_62")
    pds = cahv_from_pinhole(PinholeCamera(image_width=64, image_height=48, hfov_deg=60.0, pitch_deg=25.0))
    d = pds.to_dict()
    for k in ("C", "A", "H", "V"):
        d[k] = ned_to_flu(np.array(d[k])).tolist()  # as a PDS label gives them (x north, y east, z down)
    for name, camera in (("NLB_0001", {**d, "frame": "pds", "site": "SITE_62"}), ("mine", pin.to_dict())):
        save_rgb(inp / f"{name}.png", 48, 64)
        (inp / f"{name}.camera.json").write_text(json.dumps(camera))
    with caplog.at_level("WARNING", logger="marsunits.boundary.contact_map"):
        assert run(make_cfg(tmp_path, ckpt, inp, out, "map=true")) == 0
    assert sorted(p.name for p in out.glob("contact_map*.png")) == [
        "contact_map_SITE_62_own_frame.png",
        "contact_map_SITE_62_pds_frame.png",
    ]
    (said,) = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "SITE_62" in r.getMessage()
    ]
    assert str(inp / "NLB_0001.camera.json") in said and str(inp / "mine.camera.json") in said, said


def test_map_without_cameras_says_how_to_provide_one(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no camera file at all, map=true said "(missing, or refused: see the messages above)" with
    nothing above: it says that none of the images has one and where one is read from (for the first
    image, the paths themselves); "refused" is said only of a camera file that was refused."""
    inp = tmp_path / "in"
    for i in range(3):
        save_rgb(inp / f"a{i}.png", 30, 30, seed=i)
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out, "map=true")) == 0
    said = " ".join(capsys.readouterr().out.split())  # the closing paragraph, unwrapped
    why = (
        "none of the 3 images has a camera file (<stem>.camera.json beside "
        f"it, or ../cameras/<stem>.json; for a0.png: {inp / 'a0.camera.json'} or "
        f"{tmp_path / 'cameras' / 'a0.json'})"
    )
    # Said once, in the closing paragraph (it was printed apart, above a paragraph that said nothing of the
    # map asked for, and so index.html and summary.json's text did not say it).
    assert said.count(why) == 1 and f"No contact map (map=true): {why}" in said, said
    assert "refused" not in said and "see the messages above" not in said, said
    assert not (out / "contact_map.geojson").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert f"No contact map (map=true): {why}" in summary["text"], summary["text"]
    assert summary["no_contact_map_reason"].startswith(f"map=true: no contact map drawn: {why}")
    # One camera file refused (broken): that one is said as refused, the others as missing.
    (inp / "a1.camera.json").write_text("{not json")
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out2", "map=true")) == 1
    said = " ".join(capsys.readouterr().out.split())
    why = (
        "the camera file of 1 of the 3 images was refused (see the "
        "messages above); the other 2 have none (<stem>.camera.json beside it, or ../cameras/<stem>.json"
    )
    assert f"No contact map (map=true): {why}" in said, said
    recorded = json.loads((tmp_path / "out2" / "summary.json").read_text())["no_contact_map_reason"]
    assert recorded.startswith(f"map=true: no contact map drawn: {why}"), recorded


# ------------------------------------------------------------------------------------------ 4. W&B
def test_logger_wandb_writes_an_offline_run(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 30, 30)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "logger=wandb")) == 0
    assert (out / "manifest.csv").is_file()
    runs = list(tmp_path.rglob("offline-run-*"))
    assert runs, "no offline W&B run directory was written"
    assert list(runs[0].glob("*.wandb"))


def test_the_wandb_summary_gets_the_number_of_training_images_not_their_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summary.json carries the model's trained_image_keys (16 hex digits an image, tens of thousands for a
    large set): the W&B run summary got them all."""
    import marsunits.tracking
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import RunResult, log_to_tracker

    sent: list[dict] = []
    monkeypatch.setattr(
        marsunits.tracking, "log_prediction_run", lambda out, rows, summary, cfg: sent.append(summary)
    )
    keys = [f"{i:016x}" for i in range(3)]
    summary = {"counts": {"ok": 1}, "checkpoint_metadata": {"arch": "unet", "trained_image_keys": keys}}
    opts = PredictOptions(ckpt_path="m.ckpt", input_dir="in", output_dir=str(tmp_path), logger={"wandb": {}})
    log_to_tracker(opts, None, RunResult([], summary, None, 0))
    assert sent[0]["checkpoint_metadata"] == {"arch": "unet", "trained_images": 3}
    assert summary["checkpoint_metadata"]["trained_image_keys"] == keys  # summary.json's own is kept


def test_unknown_logger_is_refused_before_predicting(tmp_path: Path, ckpt: Path) -> None:
    from marsunits.errors import ConfigError

    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 30, 30)
    with pytest.raises(ConfigError, match="W&B only"):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out", "logger=tensorboard"))
    assert not (tmp_path / "out").exists()


def test_labels_with_upper_case_extensions_are_found(tmp_path: Path) -> None:
    """train.py's folder data accepts ``masks/a.PNG``; predict.py's labels_dir used to score 0 of them."""

    from marsunits.inference.evaluation import find_label

    (tmp_path / "sub").mkdir()
    for name in ("a.PNG", "sub/b.Tif", "c.png", "c.TIFF", "d.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert find_label(tmp_path, PurePosixPath("a.jpg")) == tmp_path / "a.PNG"
    assert find_label(tmp_path, PurePosixPath("sub/b.JPG")) == tmp_path / "sub" / "b.Tif"
    assert find_label(tmp_path, PurePosixPath("c.jpg")) == tmp_path / "c.png"  # .png first, as before
    # A JPEG label is found (last), so read_mask refuses it in label_errors with the reason: it used to be
    # counted "without a label", the user's label silently left out.
    assert find_label(tmp_path, PurePosixPath("d.png")) == tmp_path / "d.jpg"
    from marsunits.inference.evaluation import Evaluation

    evaluation = Evaluation(tmp_path)
    evaluation.add(PurePosixPath("d.png"), np.zeros((4, 4), np.uint8), [])
    assert not evaluation.missing and "a JPEG cannot hold a mask" in evaluation.errors["d.png"]
    assert find_label(tmp_path, PurePosixPath("nothere/e.png")) is None


def test_an_output_dir_that_cannot_be_written_stops_with_one_sentence(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only output_dir used to end in "[Errno 13] Permission denied: '.../.prediction_settings.json.
    25883._1ic9gj7.tmp'"; a folder that turns read-only mid-run was blamed on free space in its parent."""
    import errno
    import os

    from marsunits.inference import output_writable
    from marsunits.inference.output_writable import OutputWriteError, output_stop_message

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 30, 30)
    real_access = os.access
    monkeypatch.setattr(
        output_writable.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode)
    )
    with pytest.raises(OutputWriteError, match=rf"output_dir {out} cannot be written \({tmp_path}: "):
        run(make_cfg(tmp_path, ckpt, inp, out))
    assert not out.exists()
    monkeypatch.undo()
    # An output_dir under a file: it said "permission denied or read-only", which was not the cause.
    (tmp_path / "notes.txt").write_text("")
    under = tmp_path / "notes.txt" / "out"
    with pytest.raises(OutputWriteError, match=rf"{tmp_path / 'notes.txt'} is a file, not a folder"):
        run(make_cfg(tmp_path, ckpt, inp, under))

    denied = OSError(errno.EACCES, "Permission denied", str(out / "sub" / ".a.mask.png.25883.x.tmp"))
    said = output_stop_message(out, denied)
    assert f"to {out / 'sub'} because permission to write there was denied" in said
    assert "make that folder writable" in said and "free space" not in said
    full = OSError(errno.ENOSPC, "No space left on device", str(out / "a.mask.png"))
    assert "free space" in output_stop_message(out, full)


def test_an_image_whose_camera_file_was_removed_is_predicted_again(tmp_path: Path, ckpt: Path) -> None:
    """Its contact file kept ground coordinates from a camera that is gone; skipping it kept them."""
    import shutil

    from marsunits.boundary.contact_io import read_contacts
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    (name,) = generate_dataset(data, 1, seed=3, config=SceneConfig(width=96, height=64, p_contact=1.0))
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    shutil.copyfile(data / "contacts" / f"{name}.contact.geojson", out / f"{name}.contact.geojson")
    assert any(ln.ground_m is not None for ln in read_contacts(out / f"{name}.contact.geojson")[0])
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert read_manifest(out)[f"{name}.png"]["status"] == "skipped"
    (data / "cameras" / f"{name}.json").unlink()
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert read_manifest(out)[f"{name}.png"]["status"] == "ok"
    assert all(ln.ground_m is None for ln in read_contacts(out / f"{name}.contact.geojson")[0])


def test_a_class_no_label_holds_is_named_beside_the_miou() -> None:
    """AI4Mars labels hold no ``other``: 13 stray ``other`` pixels made mIoU 0.500 for units right to 0.9999,
    and the run's last line did not say why."""
    from marsunits.inference.evaluation import scores
    from marsunits.inference.run_summary_text import _classes_absent_from_labels

    cm = np.array([[9000, 0, 13], [0, 5000, 0], [0, 0, 0]])  # rows: label, columns: prediction
    overall = scores(cm)
    assert overall["miou"] == pytest.approx((9000 / 9013 + 1.0 + 0.0) / 3)
    said = _classes_absent_from_labels(overall)
    assert "No label holds other (13 px predicted), so its IoU is 0" in said
    assert f"over the classes the labels hold, mIoU {(9000 / 9013 + 1.0) / 2:.3f}." in said
    assert _classes_absent_from_labels(scores(np.array([[5, 1, 0], [0, 5, 0], [0, 0, 5]]))) == ""
    assert (
        _classes_absent_from_labels(scores(np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]]))) == ""
    )  # nor predicted


def test_an_miou_over_fewer_classes_than_three_is_said() -> None:
    """Labels of one class, predicted right, read mIoU 1.000 in the run's last line with nothing to say that
    the other two classes were not scored at all."""
    from marsunits.inference.evaluation import scores
    from marsunits.inference.run_summary_text import _classes_outside_the_miou

    one = scores(np.array([[500, 0, 0], [0, 0, 0], [0, 0, 0]]))
    assert one["miou"] == 1.0
    said = _classes_outside_the_miou(one)
    assert (
        "over 1 of the 3 classes: no label holds rough_olivine or other and the model predicted none on "
        "labelled pixels" in said
    )
    two = scores(np.array([[500, 3, 0], [2, 400, 0], [0, 0, 0]]))
    assert "over 2 of the 3 classes: no label holds other" in _classes_outside_the_miou(two)
    assert _classes_outside_the_miou(scores(np.array([[5, 1, 0], [0, 5, 0], [0, 0, 0]]))) != ""
    assert _classes_outside_the_miou(scores(np.array([[5, 0, 1], [0, 5, 0], [0, 0, 0]]))) == ""  # 0, not none
    assert _classes_outside_the_miou(scores(np.zeros((3, 3), np.int64))) == ""  # no mIoU at all


def test_contact_files_and_maps_name_the_model_that_made_them(tmp_path: Path, ckpt: Path) -> None:
    """A contact file or contact map shared alone (with a GIS colleague) did not say which model made it:
    only prediction_settings.json, left in the folder, did. Each names the checkpoint's file and the
    network's digest as that record has it; the re-run's resume (image and camera digests) reads the files
    as before, and the package's readers, the true-contact reader of labels_dir too, take them as they are."""
    from marsunits.boundary.contact_io import read_contacts
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    names = generate_dataset(data, 2, seed=0, config=SceneConfig(width=96, height=64, p_contact=1.0))
    for camera_file in (data / "cameras").glob("*.json"):  # one site: one contact_map.geojson
        camera_file.write_text(json.dumps({**json.loads(camera_file.read_text()), "site": "traverse"}))
    out = tmp_path / "out"
    options = ("map=true", "max_range_m=60")
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, *options)) == 0
    settings = json.loads((out / "prediction_settings.json").read_text())
    model = {"checkpoint": ckpt.name, "network_sha256": settings["network_sha256"]}
    assert len(model["network_sha256"]) == 64

    def named_models() -> list[object]:
        files = [out / f"{n}.contact.geojson" for n in names] + [out / "contact_map.geojson"]
        return [json.loads(f.read_text()).get("model") for f in files]

    assert named_models() == [model] * 3
    # The resume reads the contact files as before: every image skipped, the map drawn from what it read.
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, *options)) == 0
    assert {r["status"] for r in read_manifest(out).values()} == {"skipped"}
    assert named_models() == [model] * 3
    # A predicted contact file taken as the true contact of its image (labels_dir): read and scored.
    for n in names:
        lines, size = read_contacts(out / f"{n}.contact.geojson")
        assert size == (96, 64)
        (data / "contacts" / f"{n}.contact.geojson").write_bytes((out / f"{n}.contact.geojson").read_bytes())
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, *options, f"labels_dir={data / 'masks'}")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["contact_errors"] == {}
    assert all("true_contact" in metrics["per_image"][f"{n}.png"] for n in names)


def test_a_folder_resumed_with_the_package_of_its_checkpoint_names_each_file_and_one_network(
    tmp_path: Path, ckpt: Path
) -> None:
    """A folder begun with a checkpoint and resumed with the package exported from it is one model's
    (network_sha256, with adapt_bn the adapted network's too): each contact file names the file its run
    loaded, the finished ones are not rewritten, and prediction_settings.json names the last run's."""
    from marsunits.export import export_checkpoint

    package = export_checkpoint(ckpt, tmp_path / "olivine_v2")
    inp = tmp_path / "in"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 48, 48, seed=i)
    for n, extra in enumerate([(), ("adapt_bn=true",)]):
        out = tmp_path / f"out{n}"
        assert run(make_cfg(tmp_path, ckpt, inp, out, *extra)) == 0
        first = (out / "img0.contact.geojson").read_bytes()
        for stale in out.glob("img1.*"):
            stale.unlink()
        assert run(make_cfg(tmp_path, package, inp, out, *extra)) == 0
        assert (out / "img0.contact.geojson").read_bytes() == first
        models = [json.loads((out / f"img{i}.contact.geojson").read_text())["model"] for i in range(2)]
        assert [m.pop("checkpoint") for m in models] == [ckpt.name, "olivine_v2"]
        assert models[0] == models[1] and len(models[0]) == (3 if extra else 1)
        assert json.loads((out / "prediction_settings.json").read_text())["checkpoint"] == str(package)


def test_a_model_package_is_named_by_its_folder(tmp_path: Path) -> None:
    """A package's files have the same names in every package (model.json, model.safetensors): the contact
    files name the package's folder, however ckpt_path gave it; a checkpoint, its file name."""
    from marsunits.inference.writers import model_record

    package = tmp_path / "olivine_v2"
    package.mkdir()
    (package / "model.json").write_text("{}")
    (package / "model.safetensors").write_bytes(b"")
    for given in (package, package / "model.json", package / "model.safetensors", f"{package}/"):
        assert model_record(given, "d" * 64) == {"checkpoint": "olivine_v2", "network_sha256": "d" * 64}
    assert model_record(tmp_path / "runs" / "best.ckpt", "e" * 64)["checkpoint"] == "best.ckpt"
    assert model_record(None, "e" * 64) == {"checkpoint": None, "network_sha256": "e" * 64}


def test_a_camera_file_replaced_by_an_older_one_is_predicted_again(tmp_path: Path, ckpt: Path) -> None:
    """A camera file replaced with its old modification time kept (tar, rsync -a, cp -p) was not noticed:
    the image was skipped and its contacts kept the old camera's metres while the map drew the new camera."""
    import hashlib

    from marsunits.boundary.contact_io import read_contact_collection
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    (name,) = generate_dataset(data, 1, seed=3, config=SceneConfig(width=96, height=64, p_contact=1.0))
    out, camera_file = tmp_path / "out", data / "cameras" / f"{name}.json"
    contact_file = out / f"{name}.contact.geojson"

    def recorded() -> str | None:
        return read_contact_collection(contact_file)[1]["camera_sha256"]

    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert recorded() == hashlib.sha256(camera_file.read_bytes()).hexdigest()
    old_time = camera_file.stat().st_mtime - 3600
    camera = json.loads(camera_file.read_text())
    camera["x_m"] = camera.get("x_m", 0.0) + 10.0
    camera_file.write_text(json.dumps(camera))
    os.utime(camera_file, (old_time, old_time))  # older than the outputs, as a restored copy is
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert read_manifest(out)[f"{name}.png"]["status"] == "ok"  # predicted again, with the new camera
    assert recorded() == hashlib.sha256(camera_file.read_bytes()).hexdigest()
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0  # unchanged since: skipped again
    assert read_manifest(out)[f"{name}.png"]["status"] == "skipped"
    camera_file.unlink()  # no camera now: the contacts (pixels only, or with metres) are made again
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert read_manifest(out)[f"{name}.png"]["status"] == "ok" and recorded() is None


def test_an_image_replaced_by_an_older_file_is_predicted_again(tmp_path: Path, ckpt: Path) -> None:
    """An input replaced by another image with an older modification time (cp -p, tar, rsync -a) was
    skipped as done: a 4629 px panorama kept the mask of the 1967 px image it replaced."""
    from PIL import Image

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "x.png", 40, 60, seed=1)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    old_time = (out / "x.mask.png").stat().st_mtime - 3600
    save_rgb(inp / "x.png", 40, 90, seed=2)  # another image under the same name
    os.utime(inp / "x.png", (old_time, old_time))  # older than the outputs, as a restored copy is
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert read_manifest(out)["x.png"]["status"] == "ok"  # predicted again
    assert Image.open(out / "x.mask.png").size == (90, 40)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0  # unchanged since: skipped
    assert read_manifest(out)["x.png"]["status"] == "skipped"


def test_an_image_replaced_by_an_unreadable_file_loses_the_old_images_outputs(
    tmp_path: Path, ckpt: Path
) -> None:
    """An image replaced by a file that cannot be read kept the mask, overlay and contacts of the image it
    replaced beside its error row, where they read as its outputs; an unchanged image is never touched."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "x.png", 40, 60, seed=1)
    save_rgb(inp / "y.png", 40, 60, seed=2)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 0
    (inp / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # a failed copy under the same name
    assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 1
    rows = read_manifest(out)
    assert rows["x.png"]["status"] == "error" and rows["y.png"]["status"] == "skipped"
    assert "outputs of the image it replaced were removed" in rows["x.png"]["message"]
    assert not list(out.glob("x.*")), sorted(p.name for p in out.glob("x.*"))
    assert {p.name for p in out.glob("y.*")} == {
        "y.mask.png",
        "y.overlay.png",
        "y.thumb.jpg",
        "y.contact.geojson",
        "y.prob.tif",
    }
    assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 1  # said again, same row
    assert read_manifest(out)["x.png"]["status"] == "error"


def test_inputs_are_compared_by_content_not_only_by_time(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restore that rounded times to the second (or a ``touch``) made every input look replaced, and the
    whole folder was predicted again; a replacement of the same size with another time must still be
    redone, and counted in the "changed" line like any other."""
    from marsunits.boundary.contact_io import read_contact_collection

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "x.tif", 40, 60, seed=1)  # uncompressed TIFF: another image of that size, the same bytes
    save_rgb(inp / "y.tif", 40, 60, seed=3)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0

    def recorded() -> tuple[dict, str]:
        members = read_contact_collection(out / "x.contact.geojson")[1]
        return members["image_file"], members["image_sha256"]

    assert recorded()[1] == hashlib.sha256((inp / "x.tif").read_bytes()).hexdigest()
    assert set(recorded()[0]) == {"bytes", "mtime_ns"}  # as earlier versions compare it, whole
    mask_time = (out / "x.mask.png").stat().st_mtime_ns

    rounded = (inp / "x.tif").stat().st_mtime_ns // 10**9 * 10**9 - 10**9  # another exact time, same file
    os.utime(inp / "x.tif", ns=(rounded, rounded))
    later = mask_time + 10 * 10**9  # newer than the outputs, content unchanged (touch)
    os.utime(inp / "y.tif", ns=(later, later))
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert {r["status"] for r in read_manifest(out).values()} == {"skipped"}
    assert (out / "x.mask.png").stat().st_mtime_ns == mask_time
    assert not any("changed" in r.getMessage() for r in caplog.records)
    # The new time is recorded, so later runs do not hash the image again (every run hashed a restored
    # folder whole).
    assert recorded()[0]["mtime_ns"] == (inp / "x.tif").stat().st_mtime_ns

    size = (inp / "x.tif").stat().st_size
    save_rgb(inp / "x.tif", 40, 60, seed=2)  # replaced: same size, another time, other pixels
    assert (inp / "x.tif").stat().st_size == size
    os.utime(inp / "x.tif", ns=(rounded, rounded + 1))
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert (rows["x.tif"]["status"], rows["y.tif"]["status"]) == ("ok", "skipped")
    assert any("1 input changed" in r.getMessage() for r in caplog.records)
    assert recorded()[1] == hashlib.sha256((inp / "x.tif").read_bytes()).hexdigest()


def test_a_fifo_named_like_an_image_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """Hashing the input before reading it read a FIFO (or /dev/zero behind a link) for ever."""
    import signal

    from marsunits.inference.output_settings import image_file_identity
    from marsunits.inference.predictor import ImageFileDataset

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert image_file_identity(fifo) is None
    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    signal.alarm(20)  # a regression raises KeyboardInterrupt here instead of hanging the suite
    try:
        item = ImageFileDataset([fifo])[0]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert item.image is None and "a named pipe (FIFO), not an image file" in str(item.error)


def test_an_interrupted_re_prediction_does_not_leave_the_old_mask_as_done(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Predicting a replaced input again rewrote its contact file (recording the new image) before its
    mask; stopped in between, the old image's mask stayed, and the next run skipped the input as done."""
    from PIL import Image

    from marsunits.inference import writers

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "x.png", 40, 60, seed=1)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    old_time = (out / "x.mask.png").stat().st_mtime - 3600
    save_rgb(inp / "x.png", 40, 90, seed=2)  # another image, older than the outputs (cp -p)
    os.utime(inp / "x.png", (old_time, old_time))
    real = writers.write_png_atomic

    def stop_before_the_mask(path, array):  # type: ignore[no-untyped-def]
        if str(path).endswith(".mask.png"):
            raise KeyboardInterrupt
        return real(path, array)

    monkeypatch.setattr(writers, "write_png_atomic", stop_before_the_mask)
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(tmp_path, ckpt, inp, out))
    monkeypatch.setattr(writers, "write_png_atomic", real)
    assert not (out / "x.mask.png").exists()  # the new contact file is there, the set is not complete
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert read_manifest(out)["x.png"]["status"] == "ok"
    assert Image.open(out / "x.mask.png").size == (90, 40)


def test_an_input_predicted_again_without_probabilities_loses_its_old_ones(
    tmp_path: Path, ckpt: Path
) -> None:
    """A replaced image predicted again without save_probabilities kept the old image's prob.tif beside the
    new mask, and pseudo-labels were then made from the old image's probabilities."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 40, 60, seed=1)
    save_rgb(inp / "b.png", 40, 60, seed=2)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 0
    later = (out / "a.mask.png").stat().st_mtime + 10
    save_rgb(inp / "a.png", 40, 60, seed=3)
    os.utime(inp / "a.png", (later, later))
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert read_manifest(out)["a.png"]["status"] == "ok"
    assert not (out / "a.prob.tif").exists() and (out / "b.prob.tif").exists()  # b's are still b's


def test_a_broken_camera_file_keeps_the_pixel_outputs_and_is_said_until_fixed(
    tmp_path: Path, ckpt: Path
) -> None:
    """A broken camera file made the whole image an error row: the mask and the contacts, which need no
    camera, were lost, and predicted again (and lost again) on every run. Then, with them kept, the image
    was still an ``error`` row: the run's last line said "Predicted 0 of 1 images (... 1 failed)" and
    ``counts.ok`` was 0, read as nothing produced. It is now counted as predicted (``ok``; ``skipped`` by
    the runs after it), its row's ``camera_error`` and the summary's ``camera_files_refused`` name the
    refusal, and the last line says that its contacts have no metres, naming the camera file and the fix;
    the run still ends with status 1 until the file is fixed."""
    from marsunits.boundary.contact_io import read_contact_collection, read_contacts
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    (name,) = generate_dataset(data, 1, seed=3, config=SceneConfig(width=96, height=64, p_contact=1.0))
    camera_file, good = data / "cameras" / f"{name}.json", (data / "cameras" / f"{name}.json").read_text()
    out, rel = tmp_path / "out", f"{name}.png"
    camera_file.write_text(good.replace('"pitch_deg"', '"pitch_dge"'))  # a misspelt key
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 1  # the refusal: the run says so
    row = read_manifest(out)[rel]
    assert row["status"] == "ok" and row["width"] == "96" and row["n_contacts"] != ""
    assert str(camera_file) in row["message"] and "pitch_dge" in row["message"]
    assert "were written all the same, without ground coordinates" in row["message"]
    assert str(camera_file) in row["camera_error"] and "pitch_dge" in row["camera_error"]
    assert "written all the same" not in row["camera_error"]  # the refusal alone, the message has the rest
    mask = out / f"{name}.mask.png"
    assert mask.is_file() and (out / f"{name}.overlay.png").is_file()
    assert all(ln.ground_m is None for ln in read_contacts(out / f"{name}.contact.geojson")[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 1, "error": 0, "skipped": 0, "total": 1, "not_reached": 0}
    assert summary["camera_files_refused"] == {rel: row["camera_error"]}
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["camera_files_refused"]
    text = " ".join(summary["text"].split())
    assert "Predicted 1 of 1 image (0 skipped as already done, 0 failed)" in text, text
    assert "1 image has contacts in pixels only, no metres: the camera file was refused" in text, text
    assert str(camera_file) in text and "fix or remove the camera file and run again" in text, text
    assert sum(summary["unit_fractions"].values()) == pytest.approx(1.0)  # its mask counts in the shares
    page = (out / "index.html").read_text()
    assert f'<a href="{name}.overlay.png"><img src="{name}.thumb.jpg"' in page
    assert "camera file refused: " in page and "pitch_dge" in page

    written = mask.stat().st_mtime_ns
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 1  # not fixed: said again, not redone
    row = read_manifest(out)[rel]
    assert row["status"] == "skipped" and "written by an earlier run" in row["message"]
    assert str(camera_file) in row["camera_error"]
    assert mask.stat().st_mtime_ns == written
    again = json.loads((out / "summary.json").read_text())
    assert again["counts"] == {"ok": 0, "error": 0, "skipped": 1, "total": 1, "not_reached": 0}
    assert again["camera_files_refused"] == {rel: row["camera_error"]}
    assert "no metres: the camera file was refused" in " ".join(again["text"].split())

    assert run(make_cfg(tmp_path, ckpt, data / "images", out, "overwrite=true")) == 1
    assert mask.is_file()  # overwrite=true keeps the outputs it wrote for the image

    camera_file.write_text(good)  # fixed: predicted again, with metres
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    row = read_manifest(out)[rel]
    assert row["status"] == "ok" and row["camera_error"] == "", row
    fixed = json.loads((out / "summary.json").read_text())
    assert fixed["camera_files_refused"] == {} and "no metres" not in fixed["text"]
    camera_sha256 = read_contact_collection(out / f"{name}.contact.geojson")[1]["camera_sha256"]
    assert camera_sha256 == hashlib.sha256(good.encode()).hexdigest()  # its metres (if any) from this camera
    assert run(make_cfg(tmp_path, ckpt, data / "images", out)) == 0
    assert read_manifest(out)[rel]["status"] == "skipped"


def test_images_whose_camera_file_alone_failed_are_counted_predicted_and_counted_alike_on_a_rerun(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An image whose camera file is broken has its mask, overlay and contacts in pixels written. The run's
    last line said "Predicted 1 of 3 images (0 skipped as already done, 2 failed)", as if it had no mask,
    and a re-run said "skipping 2 inputs whose outputs are complete" and then "1 skipped as already done, 2
    failed", two counts that did not add up. It is counted predicted (then skipped), its refusal apart."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 40, 60, seed=1)
    save_rgb(inp / "b.png", 40, 60, seed=2)
    (inp / "b.camera.json").write_text(
        json.dumps({"model": "pinhole", "image_width": 60, "image_height": 40, "hfov_deg": 60})  # no pitch
    )
    (inp / "c.png").write_bytes(b"")  # no mask at all
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 2 and summary["counts"]["error"] == 1
    assert list(summary["camera_files_refused"]) == ["b.png"]
    assert "Predicted 2 of 3 images (0 skipped as already done, 1 failed)" in summary["text"]

    with caplog.at_level("INFO", logger="marsunits.inference"):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping ")]
    assert len(said) == 1 and said[0].startswith("skipping 2 inputs whose outputs are complete"), said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 2 and summary["counts"]["error"] == 1  # the same 2 as said
    assert list(summary["camera_files_refused"]) == ["b.png"]
    assert "2 skipped as already done, 1 failed" in summary["text"]


@pytest.mark.parametrize(
    ("mistake", "said_of"),
    [({"height_m": 1970}, "sees no ground"), ({"hfov_deg": 1.0472}, "radians")],
    ids=["height in millimetres", "field of view in radians"],
)
def test_a_camera_file_that_cannot_place_contacts_is_said_again_when_its_image_is_skipped(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture, mistake: dict[str, float], said_of: str
) -> None:
    """A camera that sees no ground (a pitch of the wrong sign, a height in millimetres) was said only by
    the run that predicted its image: the same command run again said nothing, while the image stayed
    without metres, as a camera file under a name that is not read is said on every run. A camera file
    written in radians (hfov_deg 1.0472) leaves its image's metres in a spot centimetres wide on every run:
    the run that skips the image as finished says so again, as the first one did. A good camera beside them
    is said of neither run."""
    inp, out = tmp_path / "in", tmp_path / "out"
    camera = {"model": "pinhole", "image_width": 60, "image_height": 40, "hfov_deg": 60, "pitch_deg": 20}
    save_rgb(inp / "a.png", 40, 60, seed=1)
    (inp / "a.camera.json").write_text(json.dumps(camera))  # sees the ground: said of neither run
    save_rgb(inp / "b.png", 40, 60, seed=2)
    (inp / "b.camera.json").write_text(json.dumps({**camera, **mistake}))
    for _ in range(2):  # the run that predicts b, then one that skips it
        caplog.clear()
        with caplog.at_level("WARNING", logger="marsunits.inference"):
            assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
        said = [r.getMessage() for r in caplog.records if said_of in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("b.png: its camera") and "b.camera.json" in said[0]
    assert read_manifest(out)["b.png"]["status"] == "skipped"


def test_the_gallery_shows_the_no_data_share_beside_the_class_shares() -> None:
    """A panorama's class shares are of all its pixels; without the no-data share (its black mosaic border,
    ``nodata_max``) the gallery's numbers summed to about 85 %, and nothing said where the rest went."""
    from marsunits.inference.gallery import render_gallery

    def row(name: str, fractions: tuple[float, float, float]) -> dict[str, object]:
        names = ("smooth_volcanic", "rough_olivine", "other")
        shares = {f"frac_{n}": f for n, f in zip(names, fractions, strict=True)}
        return {"path": name, "status": "ok", "width": 8, "height": 8, "n_contacts": 0, **shares}

    page = render_gallery(
        [row("border.png", (0.4, 0.35, 0.1)), row("full.png", (0.5, 0.3, 0.2))], "t", "summary"
    )
    border, full = page.split("<figure")[1:]
    assert "<td>no data</td><td>15.0%</td>" in border
    assert "no data" not in full  # every pixel has a class


def test_a_scored_run_s_gallery_cards_show_each_image_s_score_or_why_it_has_none() -> None:
    """With labels_dir, index.html gave the overall mIoU only: which images scored badly was to be dug out of
    metrics.json. Each card now says its image's mIoU and pixel accuracy, or that it has no label or one
    that could not be scored; without labels_dir, cards say nothing of labels."""
    from marsunits.inference.gallery import render_gallery

    def row(name: str) -> dict[str, object]:
        return {"path": name, "status": "ok", "width": 8, "height": 8, "n_contacts": 0}

    names = ["sub/good.png", "bad.png", "renamed.png", "none.png"]
    metrics = {
        "per_image": {"sub/good.png": {"miou": 0.8125, "pixel_accuracy": 0.9}, "bad.png": {"miou": 0.25}},
        "label_errors": {"renamed.png": "renamed_label.png: its name is the image's, with '_label' added"},
        "missing_labels": ["none.png"],
    }
    page = render_gallery([row(n) for n in names], "t", "summary", metrics=metrics)
    good, bad, renamed, none = page.split("<figure")[1:]
    assert "<td>label</td><td>mIoU 0.812, pixel accuracy 90.0%</td>" in good
    assert "<td>label</td><td>mIoU 0.250, pixel accuracy -</td>" in bad
    assert "<td>label</td><td>not scored (metrics.json label_errors says why)</td>" in renamed
    assert "<td>label</td><td>no label</td>" in none
    assert "<td>label</td>" not in render_gallery([row(n) for n in names], "t", "summary")


def test_a_gallery_card_shows_its_thumbnail_linking_the_overlay_or_the_overlay_without_one() -> None:
    """The cards showed the full-size overlays (a page of panoramas loaded hundreds of MB): a card shows
    ``<stem>.thumb.jpg`` where it exists and links to the overlay; without one (an image predicted by an older
    version, skipped on resume) it shows the overlay. Names are percent-encoded as the other links are."""
    from marsunits.inference.gallery import render_gallery

    def row(name: str) -> dict[str, object]:
        return {"path": name, "status": "ok", "width": 8, "height": 8, "n_contacts": 0}

    names = ["a b/x.png", os.fsdecode(b"caf\xe9.png"), "old.png"]
    page = render_gallery([row(n) for n in names], "t", "summary", thumbnails={names[0], names[1]})
    spaced, latin1, old = page.split("<figure")[1:]
    assert '<a href="a%20b/x.overlay.png"><img src="a%20b/x.thumb.jpg"' in spaced
    assert '<a href="caf%E9.overlay.png"><img src="caf%E9.thumb.jpg"' in latin1
    assert '<a href="old.overlay.png"><img src="old.overlay.png"' in old and "thumb" not in old


def test_scored_images_from_sols_the_model_trained_on_are_named(tmp_path: Path) -> None:
    """A model scored on panoramas of sols it trained on reads high, and nothing said so: MarsScapes' labels
    folder holds training and validation panoramas side by side."""
    from marsunits.inference.run_summary_text import summary_paragraph

    labels = tmp_path / "labels"
    stems = ("137_1", "425_1", "scene", "12_left")  # AI4Mars does not name its frames by sol
    for stem in stems:
        write_png_atomic(labels / f"{stem}.png", _halves(20, 30, 15))
    ev = Evaluation(labels, trained_sols={"marsscapes": [137, 370], "ai4mars": [12, 13], "folder": [425]})
    for stem in stems:
        ev.add(PurePosixPath(f"{stem}.png"), _halves(20, 30, 15))
    metrics = json.loads(json.dumps(ev.to_dict()))
    # A folder source's sols come from <sol>_ names (a self-training student's pseudo-labelled panoramas).
    assert metrics["images_from_trained_sols"] == {
        "137_1.png": "sol 137 (marsscapes)",
        "425_1.png": "sol 425 (folder)",
    }
    summary = {
        "counts": {"ok": 4, "skipped": 0, "error": 0, "total": 4},
        "unit_fractions": {"smooth_volcanic": 0.5, "rough_olivine": 0.5, "other": 0.0},
        "megapixels_per_second": None,
        "seconds": 1.0,
        "megapixels": 0.0,
        "checkpoint": "m.ckpt",
        "device": "cpu",
        "tile": 512,
        "overlap": 0.125,
        "n_contacts": 3,
        "contact_length_px": 60.0,
        "output_dir": "out",
    }
    said = summary_paragraph(summary, metrics)
    assert "2 of the scored images are named for sols the model trained on (e.g. 137_1.png: sol 137" in said
    assert "trained on" not in summary_paragraph(summary, {**metrics, "images_from_trained_sols": {}})
    # One image is one: "1 of the scored images are named for sols" read wrong.
    one = {**metrics, "images_from_trained_sols": {"137_1.png": "sol 137 (marsscapes)"}}
    assert "1 of the scored images is named for a sol the model trained on (e.g. 137_1.png: sol 137 " in (
        summary_paragraph(summary, one)
    )
    said = summary_paragraph(summary, {**metrics, "images_trained_on": ["scene.png"]})
    assert "1 of the scored images is an image the model trained on (the same file, e.g. scene.png;" in said
    assert "so that score reads high" in said


def test_an_input_named_in_latin_1_gets_its_reports(tmp_path: Path, ckpt: Path) -> None:
    """A file name that is not valid UTF-8 (Latin-1 café.png from an old archive) was predicted, then writing
    manifest.csv failed ("surrogates not allowed"), and so on every run: the folder could never finish.
    Then its raw bytes were written: manifest.csv and index.html were no longer valid UTF-8 (pandas and
    spreadsheets refused them). Such a name is now written with ``\\xNN`` escapes (a backslash of a name
    doubled, so that ``a\\xe9.png``, a valid name, stays another file) and read back by the next run."""
    import csv
    import re
    from urllib.parse import unquote_to_bytes

    from marsunits.inference.writers import read_manifest as read_rows

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    name = os.fsdecode(b"caf\xe9.png")
    try:
        (inp / name).write_bytes(b"")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    save_rgb(inp / name, 32, 40)
    save_rgb(inp / "a\\xe9.png", 32, 40, seed=1)  # a valid UTF-8 name that looks like the escape
    (inp / os.fsdecode(b"bad\xe9.png")).write_bytes(b"not an image")
    assert run(make_cfg(tmp_path, ckpt, inp, out, "allow_errors=true")) == 0
    assert (out / os.fsdecode(b"caf\xe9.mask.png")).is_file()

    def manifest() -> dict[str, dict[str, str]]:
        with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:  # strict: valid UTF-8
            return {r["path"]: r for r in csv.DictReader(fh)}

    first = manifest()
    assert set(first) == {"caf\\xe9.png", "a\\\\xe9.png", "bad\\xe9.png"}, set(first)
    assert first["caf\\xe9.png"]["status"] == "ok" and first["a\\\\xe9.png"]["status"] == "ok"
    assert "bad\\xe9.png" in first["bad\\xe9.png"]["message"]  # the message names the file, printable
    assert set(read_rows(out / "manifest.csv")) == {name, "a\\xe9.png", os.fsdecode(b"bad\xe9.png")}
    page = (out / "index.html").read_bytes()
    assert "caf\\xe9.png" in page.decode("utf-8")  # strict: valid UTF-8
    links = [unquote_to_bytes(link) for link in re.findall(rb'src="([^"]+)"', page)]
    assert len(links) == 2 and all((out / os.fsdecode(link)).is_file() for link in links)
    summary = (out / "summary.json").read_bytes()
    assert json.loads(summary.decode("utf-8"))["counts"]["ok"] == 2
    assert run(make_cfg(tmp_path, ckpt, inp, out, "allow_errors=true")) == 0  # and again: skipped as done
    again = manifest()
    for cell in ("caf\\xe9.png", "a\\\\xe9.png"):  # the earlier row was found: its time is kept
        assert again[cell]["status"] == "skipped" and again[cell]["seconds"] == first[cell]["seconds"], cell


def test_the_last_line_names_a_latin_1_checkpoint_on_a_strict_console(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's last line names its checkpoint: one in a folder named in Latin-1 bytes (a training run under
    such a ``paths.log_dir``) raised UnicodeEncodeError on a strict UTF-8 console (a terminal in
    en_US.UTF-8) after every output was written, and predict.py ended with status 2. The line is printed,
    the byte as ``\\xNN`` as summary.json writes it."""
    import io
    import shutil

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    save_rgb(inp / "a.png", 32, 40)
    model = tmp_path / os.fsdecode(b"r\xe9") / "best.ckpt"
    model.parent.mkdir()
    shutil.copy(ckpt, model)
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", console)
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"ckpt_path='{model}'")) == 0  # quoted, as predict.py does
    console.flush()
    shown = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert "Predicted 1 of 1 image" in shown and f"{tmp_path}/r\\xe9/best.ckpt" in shown, shown


def test_the_run_s_last_paragraph_is_printed_in_lines_of_at_most_110_characters(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """predict.py's last line, the run's summary paragraph, was 900-1,000 characters on one line. The console
    now shows it in lines of at most 110 characters, broken between words (a longer word, a path, whole on a
    line of its own); summary.json's text (and index.html) keep the one paragraph."""
    inp, out = tmp_path / "in", tmp_path / "out" / ("deep_" * 30)  # a 150-character folder name
    save_rgb(inp / "a.png", 32, 40)
    capsys.readouterr()
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    lines = capsys.readouterr().out.splitlines()
    text = json.loads((out / "summary.json").read_text())["text"]
    assert "\n" not in text and len(text) > 300
    assert " ".join(lines) == text, lines
    assert all(len(line) <= 110 or " " not in line for line in lines), lines
    assert str(out) in lines[-1] or any(line.startswith(str(out)) for line in lines)  # a whole path
    from marsunits.inference.run_summary_text import console_text

    assert console_text("a " * 20 + "b" * 130) == ("a " * 20).strip() + "\n" + "b" * 130


def test_the_line_of_a_run_stopped_before_its_reports_is_wrapped_as_the_last_paragraph_is(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overwrite=true run stopped inside its first image rewrites none of the reports that list the
    outputs (those there stay) and ends with "The run was interrupted ...", its summary.json's text: that
    line, 160-odd characters with its advice, was printed on one line where the summary paragraph is wrapped
    at 110 characters (``run_summary_text.console_text``). Its summary.json is its own: the earlier run's
    stayed, with that run's exit status (0) for this one's 130."""
    from marsunits.inference import runner

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 32, 40)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    manifest, page = (out / "manifest.csv").read_bytes(), (out / "index.html").read_bytes()

    def at_once(self, f, item):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(runner._Session, "process", at_once)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true"))
    lines = capsys.readouterr().out.splitlines()
    assert (out / "manifest.csv").read_bytes() == manifest and (out / "index.html").read_bytes() == page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 130 and summary["exit_reasons"] == ["stopped"]
    assert " ".join(lines) == summary["text"]
    assert lines and lines[0].startswith("The run was interrupted") and lines[-1].endswith("."), lines
    assert len(" ".join(lines)) > 110, lines
    assert all(len(line) <= 110 or " " not in line for line in lines), lines


def test_an_input_whose_output_names_would_be_too_long_is_said_before_predicting(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 240-character stem was predicted, then every output failed with "[Errno 36] File name too long"
    (``<stem>.contact.geojson`` passes 255 bytes); a 250-character one failed just looking for its camera
    file. Now: an error row naming the limit and the fix, and the other inputs predicted. Such an input is
    not counted as skipped (a new folder's run said "skipping 1 inputs whose outputs are complete")."""
    from marsunits.boundary.camera.io import find_camera_file

    inp, out = tmp_path / "in", tmp_path / "out"
    long_stem, fine_stem = "a" * 240, "b" * 200
    save_rgb(inp / f"{long_stem}.png", 32, 40)
    save_rgb(inp / f"{fine_stem}.png", 32, 40, seed=1)
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1
    assert not [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    rows = read_manifest(out)
    assert rows[f"{fine_stem}.png"]["status"] == "ok"
    row = rows[f"{long_stem}.png"]
    assert row["status"] == "error" and "longer than the filesystem allows (255 bytes)" in row["message"]
    assert "rename the input to a stem of at most 239 bytes" in row["message"]
    assert find_camera_file(inp / ("c" * 250 + ".png")) is None  # its sidecar's name cannot exist


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("no coordinates", {"type": "FeatureCollection", "features": [{"geometry": {"type": "LineString"}}]}),
        ("a list", [1, 2]),
        ("features null", {"type": "FeatureCollection", "features": None}),
        ("confidence null", {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[30, 0], [30, 40]]},
             "properties": {"confidence": None}}]}),
    ],
)  # fmt: skip
def test_a_malformed_true_contact_file_is_a_contact_error_and_scoring_goes_on(
    tmp_path: Path, case: str, content: object
) -> None:
    """A true contact file without coordinates (KeyError), or a list (AttributeError), stopped the whole
    predict.py run with labels_dir; it is recorded under ``contact_errors`` like an unreadable one."""
    h, w = 40, 60
    labels = tmp_path / "data" / "masks"
    contacts = tmp_path / "data" / "contacts"
    for stem in ("bad", "fine"):
        write_png_atomic(labels / f"{stem}.png", _halves(h, w, 30))
    contacts.mkdir(parents=True)
    (contacts / "bad.contact.geojson").write_text(json.dumps(content))
    write_contacts(contacts / "fine.contact.geojson", [_vertical(30, h)], w, h)
    ev = Evaluation(labels)
    for stem in ("bad", "fine"):
        ev.add(PurePosixPath(f"{stem}.png"), _halves(h, w, 30), [_vertical(30, h)])
    m = ev.to_dict()
    assert m["images_scored"] == 2 and not m["label_errors"]
    assert list(m["contact_errors"]) == ["bad.png"]
    assert m["contact_errors"]["bad.png"].startswith(str(contacts / "bad.contact.geojson"))
    assert m["overall"]["n_line_images"] == 1


@pytest.mark.parametrize("dtype", ["uint8", "float16"])
def test_the_argmax_of_prob_tif_is_the_mask_where_rounding_made_a_tie(tmp_path: Path, dtype: str) -> None:
    """The mask is the argmax of the float probabilities; rounding them for prob.tif made ties, which
    numpy's argmax gives to the lowest class, so a mask re-derived from the file differed in a few pixels."""
    import tifffile

    from marsunits.inference.writers import write_probabilities

    probs = np.zeros((3, 2, 3), np.float32)
    probs[:, 0, 0] = [0.4980, 0.4990, 0.0030]  # both 127 in uint8; mask: 1
    probs[:, 0, 1] = [0.500010, 0.500020, 0.0]  # both 0.5 in float16; mask: 1
    probs[:, 0, 2] = [0.2, 0.3, 0.5]  # no tie
    probs[:, 1, :] = [[0.9], [0.05], [0.05]]
    mask = probs.argmax(axis=0).astype(np.uint8)
    mask[1, 2] = 255  # no data: left alone
    write_probabilities(tmp_path / "p.tif", probs, dtype, mask=mask)
    back = tifffile.imread(tmp_path / "p.tif")
    derived = back.argmax(axis=0)
    assert (derived[mask != 255] == mask[mask != 255]).all()
    scale = 255.0 if dtype == "uint8" else 1.0
    assert np.abs(back.astype(np.float64) / scale - probs).max() <= (1.5 / 255 if dtype == "uint8" else 1e-3)


def test_an_input_is_done_only_when_every_one_of_its_outputs_exists(tmp_path: Path) -> None:
    """The completion rule (writers' docstring): mask, overlay and contact file, and prob.tif when
    probabilities are saved; any one of them missing makes the input be predicted again."""
    from marsunits.inference.writers import OutputPaths

    paths = OutputPaths(tmp_path, PurePosixPath("sol1/a.b.png"))
    kinds = ("prob", "contact", "overlay", "mask")
    assert paths.mask == tmp_path / "sol1" / "a.b.mask.png"
    assert set(paths.expected(True)) == {paths.path(k) for k in kinds}
    assert set(paths.expected(False)) == {paths.path(k) for k in kinds if k != "prob"}
    assert not paths.complete(False)
    paths.mask.parent.mkdir()
    for kind in kinds:
        paths.path(kind).write_bytes(b"x")
    assert paths.complete(True) and paths.complete(False)
    for kind in kinds:
        paths.path(kind).unlink()
        assert not paths.complete(True), kind
        assert paths.complete(False) == (kind == "prob"), kind
        paths.path(kind).write_bytes(b"x")


@pytest.mark.parametrize("dtype", ["uint8", "float16"])
def test_prob_tif_holds_each_probability_at_its_nearest_step(tmp_path: Path, dtype: str) -> None:
    """uint8: probability x 255 rounded to the nearest integer (not truncated: 0.999 is 255, not 254);
    float16: the nearest float16. Checked without a mask, so no tie is broken."""
    import tifffile

    from marsunits.inference.writers import write_probabilities

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(20, 30)).transpose(2, 0, 1).astype(np.float32)
    probs[:, 0, 0] = [0.999, 0.001, 0.0]  # 254.7 x: 255
    write_probabilities(tmp_path / "p.tif", probs, dtype)
    back = tifffile.imread(tmp_path / "p.tif")
    assert back.dtype == np.dtype(dtype) and back.shape == probs.shape
    if dtype == "uint8":
        assert np.abs(back.astype(np.float64) - probs * 255.0).max() <= 0.5 + 1e-3
        assert back[0, 0, 0] == 255
    else:
        assert np.array_equal(back, probs.astype(np.float16))


def test_ties_are_broken_in_every_band_of_a_tall_image(tmp_path: Path) -> None:
    """prob.tif's ties are broken a band of 512 rows at a time: rows past the first band (and the last,
    partial one) get the same treatment as the first."""
    import tifffile

    from marsunits.inference.writers import write_probabilities

    h = 1100
    probs = np.zeros((3, h, 2), np.float32)
    probs[:, :, 0] = [[0.9], [0.05], [0.05]]
    probs[:, :, 1] = [[0.4980], [0.4990], [0.0030]]  # both 127 in uint8; the mask says 1
    mask = probs.argmax(axis=0).astype(np.uint8)
    assert (mask[:, 1] == 1).all()
    write_probabilities(tmp_path / "p.tif", probs, "uint8", mask=mask)
    back = tifffile.imread(tmp_path / "p.tif")
    assert back.shape == (3, h, 2)
    assert np.array_equal(back.argmax(axis=0), mask)


def test_a_panoramas_thumbnail_and_card_are_large_enough_to_see_its_units(tmp_path: Path) -> None:
    """Fitted into 512 x 512 px, a 4629 x 512 MarsScapes panorama's thumbnail was a 512 x 57 strip, shown
    39 px high in a 22em gallery card: its units and contacts could not be seen. A panorama's thumbnail keeps
    a shorter side of THUMBNAIL_PX / PANORAMA_ASPECT px and its card takes a whole row; other images are as
    they were."""
    from PIL import Image

    from marsunits.inference.gallery import render_gallery
    from marsunits.inference.writers import PANORAMA_ASPECT, THUMBNAIL_PX, write_thumbnail

    sizes = {}
    for name, (h, w) in {
        "pano": (512, 4629),
        "tall": (3000, 400),
        "frame": (1024, 1024),
        "wide": (480, 1400),
    }.items():
        path = write_thumbnail(tmp_path / f"{name}.thumb.jpg", np.full((h, w, 3), 120, np.uint8))
        with Image.open(path) as im:
            sizes[name] = im.size
    assert min(sizes["pano"]) >= THUMBNAIL_PX // PANORAMA_ASPECT and max(sizes["pano"]) <= 3 * THUMBNAIL_PX
    assert min(sizes["tall"]) >= THUMBNAIL_PX // PANORAMA_ASPECT and sizes["tall"][1] > sizes["tall"][0]
    assert sizes["frame"] == (THUMBNAIL_PX, THUMBNAIL_PX)
    assert max(sizes["wide"]) == THUMBNAIL_PX  # under PANORAMA_ASPECT: fitted into THUMBNAIL_PX as before
    row = {"status": "ok", "frac_smooth_volcanic": 0.5, "frac_rough_olivine": 0.3, "frac_other": 0.2}
    rows = [
        {**row, "path": f"{name}.jpg", "width": w, "height": h}
        for name, (h, w) in {"pano": (512, 4629), "frame": (1024, 1024)}.items()
    ]
    page = render_gallery(rows, "t", "s", thumbnails=frozenset({"pano.jpg", "frame.jpg"}))
    assert '<figure class="ok panorama"><a href="pano.overlay.png">' in page
    assert '<figure class="ok"><a href="frame.overlay.png">' in page
    assert "figure.panorama{" in page


def test_a_thumbnail_of_a_thin_panorama_keeps_a_pixel_on_each_side(tmp_path: Path) -> None:
    """A strip one pixel high (or wide) shrinks to a panorama's longest thumbnail side along its length and
    keeps one pixel across it: a side rounded to 0 pixels is no image, and JPEG refuses it."""
    from PIL import Image

    from marsunits.inference.writers import PANORAMA_ASPECT, THUMBNAIL_PX, write_thumbnail

    longest = PANORAMA_ASPECT * THUMBNAIL_PX
    for (h, w), size in {
        (1, 4000): (longest, 1),
        (4000, 1): (1, longest),
        (2, 12_000): (longest, 1),
        (1, 1): (1, 1),
    }.items():
        path = write_thumbnail(tmp_path / f"{h}x{w}.thumb.jpg", np.full((h, w, 3), 200, np.uint8))
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", size), (h, w)


def test_write_prediction_removes_the_old_mask_first_and_writes_the_new_one_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The completion rule (writers' docstring): an input predicted again loses its old mask before any
    other file is replaced, the files are written probabilities -> contact -> overlay -> mask, and a run
    without probabilities removes the input's earlier prob.tif. The contact file keeps the image's record."""
    import json as json_module

    from marsunits.inference import writers
    from marsunits.inference.writers import OutputPaths, write_prediction

    paths = OutputPaths(tmp_path, PurePosixPath("a.png"))
    for old in (paths.mask, paths.prob):
        old.write_bytes(b"an earlier run's")
    order: list[str] = []

    def spy(name: str, real):  # type: ignore[no-untyped-def]
        def call(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            order.append(Path(path).name)
            assert not paths.mask.exists(), f"the old mask was still there when {Path(path).name} was written"
            return real(path, *args, **kwargs)

        monkeypatch.setattr(writers, name, call)

    for name in ("write_probabilities", "write_contacts", "write_png_atomic", "write_thumbnail"):
        spy(name, getattr(writers, name))
    probs = np.full((3, 6, 8), 1 / 3, np.float32)
    mask = np.zeros((6, 8), np.uint8)
    image = np.zeros((6, 8, 3), np.float32)
    identity = {"bytes": 10, "mtime_ns": 123, "sha256": "d" * 64}
    write_prediction(paths, image, probs, mask, [], save_probabilities=True, image_file=identity)
    assert order == ["a.prob.tif", "a.contact.geojson", "a.overlay.png", "a.thumb.jpg", "a.mask.png"]
    members = json_module.loads(paths.contact.read_text())
    assert members["image_file"] == {"bytes": 10, "mtime_ns": 123} and members["image_sha256"] == "d" * 64
    order.clear()
    write_prediction(paths, image, probs, mask, [], save_probabilities=False)
    assert order == ["a.contact.geojson", "a.overlay.png", "a.thumb.jpg", "a.mask.png"]
    assert not paths.prob.exists()


def test_an_output_name_of_exactly_the_filesystems_limit_is_accepted(tmp_path: Path) -> None:
    """output_name_problem: a contact file name of the filesystem's limit (255 bytes on most) is valid;
    one byte more is refused, naming the longest stem that fits."""
    from marsunits.inference.writers import SUFFIXES, output_name_problem

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = max(SUFFIXES.values(), key=len)
    fits = "é" * ((limit - len(longest)) // 2) + "a" * ((limit - len(longest)) % 2)  # 2 bytes a character
    assert len(os.fsencode(fits + longest)) == limit
    assert output_name_problem(tmp_path, PurePosixPath(f"sub/{fits}.png")) is None
    problem = output_name_problem(tmp_path, PurePosixPath(f"sub/{fits}a.png"))
    assert problem is not None and f"at most {limit - len(longest)} bytes" in problem


def test_json_reports_refuse_nan_and_leave_no_file(tmp_path: Path) -> None:
    """write_json_atomic: NaN is not JSON (other readers refuse the whole file): an error, nothing written."""
    from marsunits.inference.writers import write_json_atomic

    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "r.json", {"miou": float("nan")})
    assert list(tmp_path.iterdir()) == []
    assert json.loads(write_json_atomic(tmp_path / "r.json", {"miou": None}).read_text()) == {"miou": None}


def test_a_contact_whose_vertex_confidences_do_not_match_its_vertices_is_drawn_by_its_confidence() -> None:
    """overlay_image colours segments by vertex_confidence only when there is one per vertex; otherwise the
    whole line takes the colour of its confidence."""
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.writers import confidence_color, overlay_image

    image, mask = np.zeros((64, 80, 3), np.float32), np.zeros((64, 80), np.uint8)
    pts = np.array([[40.0, 0.0], [40.0, 32.0], [40.0, 64.0]])
    line = ContactLine(pixels=pts, confidence=1.0, vertex_confidence=[0.0, 0.0])
    out = overlay_image(image, mask, [line])
    assert tuple(out[10, 40]) == tuple(out[50, 40]) == confidence_color(1.0)


def test_camera_files_that_broke_the_whole_run_are_error_rows_of_their_image(
    tmp_path: Path, ckpt: Path
) -> None:
    """A whole number too large for a float (an ``OverflowError``) or of over 4300 digits (Python's own
    ``ValueError``, not a JSON error) in a camera file ended the whole run with a traceback, or lost the
    image's mask; a sidecar that is a link to a calibration disk not mounted was taken for no camera, and
    the image was predicted without ground coordinates and without a word; so was an image whose CAHVOR
    lens has ``1 + r0 <= 0``, whose pixels have no ray (a typo or a bad conversion of its ``R``)."""
    from marsunits.boundary.camera import PinholeCamera, cahvor_from_pinhole

    inp, out = tmp_path / "in", tmp_path / "out"
    base = {"model": "pinhole", "image_width": 48, "image_height": 40, "hfov_deg": 60, "pitch_deg": 20}
    for seed, name in enumerate(("huge", "digits", "dangling", "lens", "plain")):
        save_rgb(inp / f"{name}.png", 40, 48, seed=seed)
    (inp / "huge.camera.json").write_text(
        json.dumps(base).replace('"hfov_deg": 60', '"hfov_deg": 1' + "0" * 400)
    )
    (inp / "digits.camera.json").write_text(
        json.dumps(base).replace('"pitch_deg": 20', '"pitch_deg": ' + "9" * 5000)
    )
    (inp / "dangling.camera.json").symlink_to(tmp_path / "not_mounted" / "dangling.json")
    lens = cahvor_from_pinhole(PinholeCamera(48, 40, hfov_deg=60, pitch_deg=20)).to_dict()
    (inp / "lens.camera.json").write_text(json.dumps({**lens, "R": [-1.2, 0.0, 0.0]}))
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1  # the run went on to the end
    rows = read_manifest(out)
    assert rows["plain.png"]["status"] == "ok"
    for name, said in (
        ("huge", "'hfov_deg'"),
        ("digits", "not valid JSON"),
        ("dangling", "symbolic link"),
        ("lens", "has r0 = -1.2, so 1 + r0 = -0.2 <= 0"),
    ):
        row = rows[f"{name}.png"]
        assert row["status"] == "ok" and said in row["message"], row  # predicted: its camera refused
        assert f"{name}.camera.json" in row["message"] and "written all the same" in row["message"]
        assert f"{name}.camera.json" in row["camera_error"] and said in row["camera_error"], row
        assert (out / f"{name}.mask.png").is_file()  # the pixel outputs need no camera


@pytest.mark.parametrize("broken", [b'{"tile": 6', b"[]", b"\xff\xfe garbage"])
def test_a_settings_record_that_cannot_be_read_is_refused_not_taken_for_none(
    tmp_path: Path, ckpt: Path, broken: bytes
) -> None:
    """A broken ``prediction_settings.json`` (a hand edit, an interrupted copy) counted as no record: a run
    of other settings skipped the folder's masks as its own, then wrote its record over it, naming settings
    that had not made them."""
    from marsunits.errors import ConfigError
    from marsunits.inference.output_settings import SETTINGS_NAME

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 40, 48)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "min_unit_area_px=0")) == 0
    record = out / SETTINGS_NAME
    record.write_bytes(broken)
    with pytest.raises(ConfigError, match=rf"{SETTINGS_NAME} cannot be read .*overwrite=true"):
        run(make_cfg(tmp_path, ckpt, inp, out))  # another min_unit_area_px than the masks were made with
    assert record.read_bytes() == broken  # nothing written over it
    assert run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true")) == 0  # the way out it names
    assert json.loads(record.read_text())["min_unit_area_px"] == 200


def test_an_overwrite_run_removes_no_output_of_another_input_folder(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two input folders predicted into one output_dir (sol 100, then sol 101): a finished overwrite=true
    run of the second deleted every output of the first as outputs of "inputs removed since"."""
    out = tmp_path / "out"
    save_rgb(tmp_path / "sol100" / "a.png", 40, 48, seed=1)
    save_rgb(tmp_path / "sol101" / "b.png", 40, 48, seed=2)
    save_rgb(tmp_path / "sol101" / "gone.png", 40, 48, seed=3)
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol100", out)) == 0
    first = {p.name: p.read_bytes() for p in out.glob("a.*")}
    assert len(first) == 4  # mask, overlay, thumbnail, contacts
    caplog.clear()
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out)) == 0
    assert f"holds outputs predicted from another input_dir, {tmp_path / 'sol100'}" in caplog.text
    # An input removed since: which folder its outputs came from cannot be told, so they are left too.
    (tmp_path / "sol101" / "gone.png").unlink()
    assert (
        run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out, "overwrite=true", "save_probabilities=true"))
        == 0
    )
    assert {p.name: p.read_bytes() for p in out.glob("a.*")} == first  # the other folder's are kept
    assert (out / "b.prob.tif").is_file() and len(list(out.glob("gone.*"))) == 4
    assert "left 8 output files" in caplog.text and str(tmp_path / "sol100") in caplog.text
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out, "overwrite=true")) == 0
    assert not (out / "b.prob.tif").exists()  # this run's own images' outputs it did not write still go
    assert {p.name: p.read_bytes() for p in out.glob("a.*")} == first


def test_a_label_that_is_no_readable_file_is_a_label_error_naming_it(tmp_path: Path) -> None:
    """A label that is a link to a disk not mounted, a folder or a pipe counted as no label: the run said
    that no label matched, while the user could see the file there. A pipe must not be opened (read for
    ever)."""
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "sub" / "a.png").symlink_to(tmp_path / "not_mounted" / "a.png")
    (labels / "b.png").mkdir()
    os.mkfifo(labels / "c.png")
    ev = Evaluation(labels)
    pred = np.zeros((8, 8), np.uint8)
    for rel in ("sub/a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        ev.add(PurePosixPath(rel), pred, [])
    assert ev.missing == ["d.jpg"]  # no file of that name at all: still missing
    assert (
        "sub/a.png: a symbolic link to" in ev.errors["sub/a.jpg"] and "not_mounted" in ev.errors["sub/a.jpg"]
    )
    assert "b.png: a folder, not an image file; put the image file there" in ev.errors["b.jpg"]
    assert "c.png: a named pipe (FIFO), not an image file" in ev.errors["c.jpg"]


def test_another_runs_output_dir_under_input_dir_is_not_predicted_as_photographs(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Predict ``data/sol100`` into ``data/preds_sol100``, then all of ``data``: the first run's masks and
    overlays were predicted as photographs, garbage rows among the real ones."""
    data = tmp_path / "data"
    save_rgb(data / "sol100" / "a.png", 40, 48, seed=1)
    save_rgb(data / "sol101" / "b.png", 40, 48, seed=2)
    assert run(make_cfg(tmp_path, ckpt, data / "sol100", data / "preds_sol100")) == 0
    caplog.clear()
    assert run(make_cfg(tmp_path, ckpt, data, tmp_path / "all")) == 0
    assert set(read_manifest(tmp_path / "all")) == {"sol100/a.png", "sol101/b.png"}
    assert "input_dir/preds_sol100 is another predict.py run's output_dir" in caplog.text
    from marsunits.inference.inputs import (
        _OTHER_RUN_MARKERS,
    )  # how such a folder is told: as writers tells it
    from marsunits.inference.writers import OTHER_RUN_MARKERS

    assert _OTHER_RUN_MARKERS == OTHER_RUN_MARKERS


def test_a_moved_input_folder_is_no_other_input_folder(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder predicted, then renamed (or moved, or mounted elsewhere) and predicted again into the same
    output_dir: its old path stayed in the record as another input folder for good, so every later
    overwrite=true run left the outputs of inputs removed since, and each run warned of another input_dir."""
    out = tmp_path / "out"
    save_rgb(tmp_path / "sol100" / "a.png", 40, 48, seed=1)
    save_rgb(tmp_path / "sol100" / "gone.png", 40, 48, seed=3)
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol100", out)) == 0
    (tmp_path / "sol100").rename(tmp_path / "sol100_checked")
    (tmp_path / "sol100_checked" / "gone.png").unlink()
    caplog.clear()
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol100_checked", out, "overwrite=true")) == 0
    assert "another input_dir" not in caplog.text and "left" not in caplog.text
    assert list(out.glob("gone.*")) == []  # an input removed since: its outputs go, as documented
    assert (out / "a.mask.png").is_file()
    record = json.loads((out / "prediction_settings.json").read_text())
    assert record["input_dir"] == str(tmp_path / "sol100_checked") and record["other_input_dirs"] == []


def test_outputs_an_overwrite_kept_of_another_folder_are_not_skipped_as_its_settings(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two input folders in one output_dir; an overwrite=true run of one with new settings keeps the other's
    outputs, made with the old settings, under a record naming the new ones. A run of the other folder with
    the new settings then skipped them as finished: masks of min_unit_area_px=100 reported as of 200."""
    from marsunits.errors import ConfigError

    out = tmp_path / "out"
    save_rgb(tmp_path / "sol100" / "a.png", 40, 48, seed=1)
    save_rgb(tmp_path / "sol101" / "b.png", 40, 48, seed=2)
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol100", out, "min_unit_area_px=100")) == 0
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out, "min_unit_area_px=100")) == 0
    b_mask = (out / "b.mask.png").read_bytes()
    assert (
        run(make_cfg(tmp_path, ckpt, tmp_path / "sol100", out, "min_unit_area_px=200", "overwrite=true")) == 0
    )
    assert (out / "b.mask.png").read_bytes() == b_mask  # kept, as the other folder's outputs are
    assert "made with other settings than this run's" in caplog.text
    with pytest.raises(ConfigError, match=r"sol101's images made with other settings.*overwrite=true"):
        run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out, "min_unit_area_px=200"))
    # The way out it names: sol101 predicted again; sol100's outputs, of these settings, are not outdated.
    assert (
        run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out, "min_unit_area_px=200", "overwrite=true")) == 0
    )
    assert read_manifest(out)["b.png"]["status"] == "ok"
    record = json.loads((out / "prediction_settings.json").read_text())
    assert record["outdated_input_dirs"] == []
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol100", out, "min_unit_area_px=200")) == 0
    # An overwrite with the same settings leaves the other folder's outputs valid: nothing to refuse.
    assert (
        run(make_cfg(tmp_path, ckpt, tmp_path / "sol100", out, "min_unit_area_px=200", "overwrite=true")) == 0
    )
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "sol101", out, "min_unit_area_px=200")) == 0
    assert read_manifest(out)["b.png"]["status"] == "skipped"


def test_manifest_names_are_valid_utf_8_and_read_back_exactly() -> None:
    """``name_cell`` / ``name_from_cell``: every name, however it mixes backslashes, ``\\x`` text and bytes
    that are not UTF-8, is written as valid UTF-8 and read back as the same name; plain names unchanged."""
    from marsunits.inference.writers import name_cell, name_from_cell

    names = [
        "plain/scene.png",
        "Séítah/é.png",
        os.fsdecode(b"caf\xe9.png"),
        os.fsdecode(b"\xff\xfe/x\xe9\\xe9.png"),
        "a\\xe9.png",
        "a\\\\xe9.png",
        "back\\slash\\",
        os.fsdecode(b"tail\\\xe9"),
        "\\x41\\x",
    ]
    for name in names:
        cell = name_cell(name)
        cell.encode("utf-8")  # strict: no surrogate left
        assert name_from_cell(cell) == name, (name, cell)
    assert name_cell("plain/scene.png") == "plain/scene.png" and name_cell("Séítah/é.png") == "Séítah/é.png"
    assert len({name_cell(n) for n in names}) == len(names)


def _strings(value: object) -> list[str]:
    """Every string of a parsed JSON value, object keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_json_reports_of_folders_named_in_latin_1_are_valid_utf_8_and_resume(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An input, label and output folder under a Latin-1 name (``dépôt`` from an old archive): summary.json,
    metrics.json and prediction_settings.json held the names' bytes as lone surrogates (``"\\udce9"``), which
    strict JSON readers refuse. They now show such a byte as ``\\xNN``, as manifest.csv and index.html do, and
    prediction_settings.json still reads back as the same folders, so the folder resumes (and another input
    folder's run into it still knows the first one)."""
    from marsunits.inference.output_settings import SETTINGS_NAME, read_settings

    root = tmp_path / os.fsdecode(b"d\xe9p\xf4t")
    try:
        root.mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    inp, other, labels, out = root / "in", root / "in2", root / "masks", root / "out"
    name = os.fsdecode(b"caf\xe9.png")
    save_rgb(inp / name, 40, 48, seed=1)
    save_rgb(other / "b.png", 40, 48, seed=2)
    write_png_atomic(labels / name, _halves(40, 48, 20))
    write_contacts(labels / os.fsdecode(b"caf\xe9.contact.geojson"), [_vertical(20, 40)], 48, 40)
    save_rgb(inp / "caf\\xe9.png", 40, 48, seed=3)  # a valid name that prints like the Latin-1 one
    write_png_atomic(labels / "caf\\xe9.png", _halves(40, 48, 24))

    def predict(folder: Path, *extra: str) -> int:  # quoted: Hydra's grammar takes other characters so only
        return run(make_cfg(tmp_path, ckpt, f"'{folder}'", f"'{out}'", *extra))  # type: ignore[arg-type]

    assert predict(inp, f"labels_dir='{labels}'") == 0

    def read(file: str) -> dict:
        data = json.loads((out / file).read_bytes().decode("utf-8"))  # strict: valid UTF-8
        for text in _strings(data):
            text.encode("utf-8")  # strict: no lone surrogate escaped as \udcNN
        return data

    shown = "d\\xe9p\\xf4t"
    summary, metrics = read("summary.json"), read("metrics.json")
    assert summary["input_dir"] == f"{tmp_path}/{shown}/in" and summary["output_dir"].endswith(f"{shown}/out")
    assert shown in summary["text"]
    assert sorted(metrics["per_image"]) == ["caf\\\\xe9.png", "caf\\xe9.png"]  # as manifest.csv names them
    assert metrics["per_image"]["caf\\xe9.png"]["true_contact"].endswith(
        f"{shown}/masks/caf\\xe9.contact.geojson"
    )
    read(SETTINGS_NAME)
    assert read_settings(out)["input_dir"] == str(inp)  # the folder itself, read back exactly

    caplog.clear()
    with caplog.at_level("WARNING"):
        assert predict(inp, f"labels_dir='{labels}'") == 0  # resumed: the same folder
    assert read_manifest(out)["caf\\xe9.png"]["status"] == "skipped"
    assert "another input_dir" not in caplog.text
    assert predict(other) == 0
    read(SETTINGS_NAME)
    record = read_settings(out)
    assert record["input_dir"] == str(other) and record["other_input_dirs"] == [str(inp)]


def test_a_settings_record_of_paths_not_utf_8_is_valid_utf_8_and_reads_back_exactly(tmp_path: Path) -> None:
    """``prediction_settings.json``'s paths are compared on resume: a Latin-1 one is written escaped (valid
    UTF-8, no ``"\\udce9"``) and read back as the same path; a record of UTF-8 paths is written as before
    (no ``escaped_paths``, a path's own ``\\xe9`` text left alone), and one written before the escapes (lone
    surrogates in JSON) still reads back as the same folders."""
    from marsunits.inference.output_settings import SETTINGS_NAME, read_settings, write_settings

    latin = os.fsdecode(b"/data/d\xe9p\xf4t\\xe9/in")
    record = {
        "checkpoint": "/m/a\\xe9.ckpt",
        "input_dir": latin,
        "other_input_dirs": ["/data/a\\\\b", os.fsdecode(b"/data/\xff")],
        "outdated_input_dirs": [],
        "tile": 64,
    }
    write_settings(tmp_path, record)
    text = (tmp_path / SETTINGS_NAME).read_bytes().decode("utf-8")
    for value in json.loads(text).values():
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # strict: no lone surrogate
    assert json.loads(text)["escaped_paths"] == ["input_dir", "other_input_dirs"]
    assert json.loads(text)["checkpoint"] == "/m/a\\xe9.ckpt"  # a UTF-8 path as it is
    assert read_settings(tmp_path) == record

    plain = {**record, "input_dir": "/data/a\\xe9", "other_input_dirs": ["/data/b"]}
    write_settings(tmp_path, plain)
    assert json.loads((tmp_path / SETTINGS_NAME).read_text()) == plain and read_settings(tmp_path) == plain

    (tmp_path / SETTINGS_NAME).write_text(json.dumps(record))  # as written before the escapes
    assert read_settings(tmp_path) == record


def test_a_manifest_written_before_the_name_escapes_keeps_its_rows_on_resume(
    tmp_path: Path, ckpt: Path
) -> None:
    """A manifest.csv of a run from before the ``\\xNN`` escapes holds each name as it is: ``a\\xe9.png``, a
    valid name with a backslash, was read as the Latin-1 ``a<0xe9>.png`` and its row lost (the skipped
    image's ``seconds`` left empty). Its rows are now found under the names as written, where no row has
    that name exactly, while a current manifest's escapes are still read exactly."""
    import csv

    inp, out = tmp_path / "in", tmp_path / "out"
    literal, double = "a\\xe9.png", "b\\\\c.png"  # names holding the text \\xe9 and two backslashes
    save_rgb(inp / literal, 32, 40, seed=1)
    save_rgb(inp / double, 32, 40, seed=2)
    save_rgb(inp / "plain.png", 32, 40, seed=3)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["path"] for r in rows} == {"a\\\\xe9.png", "b\\\\\\\\c.png", "plain.png"}  # escaped now
    # As a run before the escapes wrote it: every name as it is, and times this test can recognise.
    times = {literal: "12.5", double: "7.25", "plain.png": "3.5"}
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r, name in zip(sorted(rows, key=lambda r: r["path"]), sorted(times), strict=True):
            writer.writerow({**r, "path": name, "seconds": times[name]})
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    again = read_manifest(out)
    assert {row["status"] for row in again.values()} == {"skipped"}
    assert {r: again[r]["seconds"] for r in again} == {
        "a\\\\xe9.png": "12.5",
        "b\\\\\\\\c.png": "7.25",
        "plain.png": "3.5",
    }


def test_a_manifest_row_of_a_name_with_a_carriage_return_reads_back_as_one_row(tmp_path: Path) -> None:
    """A file name may hold ``\\r`` (or ``\\n``): ``csv`` with ``lineterminator="\\n"`` quoted a ``\\n`` but
    not a ``\\r``, so csv readers (and a resumed run) split that row in two and lost its numbers."""
    import csv

    from marsunits.inference.writers import MANIFEST_FIELDS, read_manifest, write_manifest

    names = ["cr\rx.png", "lf\nx.png", "crlf\r\nx.png", "plain.png"]
    rows = [
        {
            "path": n,
            "status": "ok",
            "message": "said\rtwice" if i == 0 else "",
            "width": 48,
            "height": 40,
            "seconds": 0.5 + i,
        }
        for i, n in enumerate(names)
    ]
    path = write_manifest(tmp_path / "manifest.csv", rows)
    with open(path, newline="", encoding="utf-8") as fh:
        read = list(csv.DictReader(fh))
    assert [r["path"] for r in read] == names
    assert all(tuple(r) == MANIFEST_FIELDS for r in read)
    assert read[0]["message"] == "said\rtwice" and [r["seconds"] for r in read] == [
        "0.5",
        "1.5",
        "2.5",
        "3.5",
    ]
    assert {n: r["width"] for n, r in read_manifest(path).items()} == dict.fromkeys(names, "48")
    # other rows as before (camera_error, the last column, empty)
    assert path.read_text("utf-8").endswith("plain.png,ok,,48,40,,,,,,,3.5,\n")


def test_outputs_that_one_name_on_a_case_insensitive_disk_are_named_at_the_end(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``Scene.png`` beside ``scene.jpg`` (or ``A/x.png`` beside ``a/x.png``, or ``café`` in both Unicode
    forms) have distinct outputs here, but the output folder zipped and unpacked on macOS or Windows keeps one
    ``scene.mask.png``: the other image's outputs are lost and the gallery shows one overlay for both. The run
    names each such group and says what to do; other names are not named."""
    inp, out = tmp_path / "in", tmp_path / "out"
    names = ["Scene.png", "scene.jpg", "A/x.png", "a/x.png", "caf\u00e9.png", "cafe\u0301.png", "other.png"]
    for i, name in enumerate(names):
        save_rgb(inp / name, 16, 16, seed=i)
    with caplog.at_level("WARNING", logger="marsunits.inference.runner"):
        run(make_cfg(tmp_path, ckpt, inp, out))
    said = [r.getMessage() for r in caplog.records if "letter case" in r.getMessage()]
    assert len(said) == 1, said
    for group in (("Scene.png", "scene.jpg"), ("A/x.png", "a/x.png"), ("caf\u00e9.png", "cafe\u0301.png")):
        assert all(name in said[0] for name in group), (group, said[0])
    assert "other.png" not in said[0] and "rename" in said[0]
    assert len(read_manifest(out)) == len(names)  # each is predicted, as before


def test_a_re_run_names_the_outputs_of_inputs_removed_since(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run (no overwrite) after an input was removed lists only the inputs there now: the removed one's
    mask, overlay and contacts stayed in the folder, in no report, and went with it when it was shared. The
    run says how many such files there are and how to remove them; they are kept (nothing is deleted)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "keep.png", 16, 16, seed=1)
    save_rgb(inp / "sub" / "gone.png", 16, 16, seed=2)
    run(make_cfg(tmp_path, ckpt, inp, out))
    (inp / "sub" / "gone.png").unlink()
    with caplog.at_level("WARNING", logger="marsunits.inference.runner"):
        run(make_cfg(tmp_path, ckpt, inp, out))
    said = [r.getMessage() for r in caplog.records if "no longer" in r.getMessage()]
    assert (
        len(said) == 1
        and "4 output files in" in said[0]
        and "are of inputs no longer" in said[0]
        and "overwrite=true" in said[0]
    ), said
    assert "sub/gone.mask.png" in said[0] and "sub/gone.thumb.jpg" in said[0]
    assert list(read_manifest(out)) == ["keep.png"] and (out / "sub" / "gone.mask.png").exists()
    caplog.clear()
    with caplog.at_level("WARNING", logger="marsunits.inference.runner"):
        run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true"))
    assert not [r for r in caplog.records if "no longer" in r.getMessage()]
    assert not (out / "sub" / "gone.mask.png").exists() and not (out / "sub" / "gone.thumb.jpg").exists()


def test_one_output_of_an_input_removed_since_is_counted_in_the_singular(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One output file left of an input removed since: the re-run's warning read "1 output file(s) in ...
    are of inputs no longer in", and overwrite=true's line "removed 1 output file(s)". A count of one now
    takes the singular, its verb too."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "keep.png", 16, 16, seed=1)
    save_rgb(inp / "gone.png", 16, 16, seed=2)
    run(make_cfg(tmp_path, ckpt, inp, out))
    (inp / "gone.png").unlink()
    for path in out.glob("gone.*"):
        if path.name != "gone.mask.png":
            path.unlink()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        run(make_cfg(tmp_path, ckpt, inp, out))
    said = [r.getMessage() for r in caplog.records if "no longer" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"1 output file in {out} is of an input no longer in"), said
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true"))
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("overwrite=true: removed")]
    assert removed == [
        "overwrite=true: removed 1 output file of earlier runs that this run did not write (inputs no longer "
        "there or failing now, probabilities not saved this time)"
    ], caplog.text


def test_outputs_of_images_patterns_leave_out_are_not_called_removed(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run with ``patterns=[jpg]`` after a run of every extension: the ``.png`` images are still in
    input_dir, so their outputs are not those of inputs "no longer in" it (the warning said so); they are
    said apart, at info level, naming patterns. An input removed since is still warned of."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "kept.png", 16, 16, seed=1)
    save_rgb(inp / "b.jpg", 16, 16, seed=2)
    save_rgb(inp / "gone.png", 16, 16, seed=3)
    run(make_cfg(tmp_path, ckpt, inp, out))
    (inp / "gone.png").unlink()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        run(make_cfg(tmp_path, ckpt, inp, out, "patterns=[jpg]"))
    removed = [r.getMessage() for r in caplog.records if "no longer" in r.getMessage()]
    assert len(removed) == 1 and "4 output files" in removed[0] and "gone.mask.png" in removed[0], removed
    assert "kept." not in removed[0]
    left_out = [r for r in caplog.records if "leaves out" in r.getMessage()]
    assert len(left_out) == 1 and left_out[0].levelname == "INFO", left_out
    assert "4 output files" in left_out[0].getMessage() and "patterns=[jpg]" in left_out[0].getMessage()
    assert (out / "kept.mask.png").exists()


def test_names_that_only_full_case_folding_joins_are_not_called_one_file() -> None:
    """macOS and Windows compare names letter by letter (simple case folding: one letter for one): on them
    ``Straße.png`` and ``Strasse.png``, or ``ﬁle.png`` and ``file.png``, are two files, which
    ``str.casefold`` (``ß`` -> ``ss``) called one. Case and Unicode form alone still make one name."""
    from marsunits.inference.writers import outputs_one_elsewhere

    assert outputs_one_elsewhere(["Stra\u00dfe.png", "Strasse.png", "\ufb01le.png", "file.png"]) == []
    assert outputs_one_elsewhere(["STRA\u00dfE.png", "stra\u00dfe.jpg", "\u03a3.png", "\u03c2.png"]) == [
        ["STRA\u00dfE.png", "stra\u00dfe.jpg"],
        ["\u03a3.png", "\u03c2.png"],
    ]
    assert outputs_one_elsewhere(["A/x.png", "a/X.png", "caf\u00e9.png", "CAFE\u0301.png", "b.png"]) == [
        ["A/x.png", "a/X.png"],
        ["CAFE\u0301.png", "caf\u00e9.png"],
    ]


def test_a_camera_file_under_a_name_not_read_is_named_with_the_name_to_give(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera saved as ``images/<stem>.json`` (the sidecar's ``.camera`` left out) or as
    ``cameras/<stem>.camera.json`` (the two layouts mixed) was not read: the image was predicted without
    metres and left off ``map=true``'s contact map without a word. It is now named, with the name it is read
    under; a JSON beside an image that is no camera file (a labelling tool's) is not."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    a, b, c = generate_dataset(data, 3, seed=3, config=SceneConfig(width=96, height=64, p_contact=1.0))
    (data / "cameras" / f"{a}.json").rename(data / "images" / f"{a}.json")
    (data / "cameras" / f"{b}.json").rename(data / "cameras" / f"{b}.camera.json")
    (data / "cameras" / f"{c}.json").unlink()
    (data / "images" / f"{c}.json").write_text(json.dumps({"shapes": [], "imagePath": f"{c}.png"}))
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, data / "images", tmp_path / "out", "map=true")) == 0
    said = [r.getMessage() for r in caplog.records if "not read" in r.getMessage()]
    assert len(said) == 2, said
    by_image = {m.split(":")[0]: m for m in said}
    assert str(data / "images" / f"{a}.json") in by_image[f"{a}.png"]
    assert str(data / "images" / f"{a}.camera.json") in by_image[f"{a}.png"]
    assert str(data / "cameras" / f"{b}.camera.json") in by_image[f"{b}.png"]
    assert str(data / "cameras" / f"{b}.json") in by_image[f"{b}.png"]


def test_greyscale_inputs_to_a_model_of_unknown_colour_are_not_said_to_meet_a_colour_only_model() -> None:
    """A data=folder model fine-tuned on AI4Mars Navcam frames (grey, copied into three channels, as every
    3-channel model reads them) was told, predicting grey frames, that "a model trained on colour only maps
    grey frames worse": nothing records that its training images were colour, and here they were not. Only
    a MarsScapes model (Mastcam colour) is said to be one; for others it is a condition."""
    from marsunits.inference.run_summary_text import summary_paragraph

    summary = run_summary(greyscale_inputs_for_colour_model=2)
    folder = summary_paragraph({**summary, "checkpoint_metadata": {"dataset": "folder"}})
    assert "2 greyscale images went to a model that reads colour (trained on 'folder' data)" in folder
    assert "a model trained on colour only maps grey frames worse" not in folder
    assert "if its training images were colour" in folder, folder
    mastcam = summary_paragraph({**summary, "checkpoint_metadata": {"dataset": "marsscapes"}})
    assert "a model trained on colour only maps grey frames worse" in mastcam
    assert "greyscale image" not in summary_paragraph(
        {**summary, "checkpoint_metadata": {"dataset": "ai4mars"}}
    )


@pytest.mark.parametrize(
    ("record", "expected", "absent"),
    [
        # Trained on grey frames alone (a folder of Navcam frames): nothing to warn of.
        ({"grey": 40, "colour": 0, "parent": None}, None, "greyscale image"),
        # On colour alone: said plainly, not as a condition.
        (
            {"grey": 0, "colour": 40, "parent": None},
            "a model trained on colour only maps grey frames worse",
            "if its training images were colour",
        ),
        # Mixed: the shares, its parent's images counted with its own.
        (
            {"grey": 5, "colour": 10, "parent": {"grey": 5, "colour": 0, "parent": None}},
            "50% of its training images were grey (10 of 20), 50% colour",
            "if its training images were colour",
        ),
        # A parent that recorded nothing (saved before the record): unknown, today's condition.
        (
            {"grey": 40, "colour": 0, "parent": {"grey": None, "colour": None, "parent": None}},
            "if its training images were colour, it maps grey frames worse (not if they were grey too",
            "trained on colour only",
        ),
    ],
)
def test_greyscale_inputs_are_told_what_the_models_record_of_its_training_images_shows(
    record: dict[str, object], expected: str | None, absent: str
) -> None:
    """A data=folder model trained on grey Navcam frames alone was told "if its training images were
    colour, it maps grey frames worse (not if they were grey too)": checkpoints did not say which. They
    record it now (metadata training_images), and the sentence says what it shows, exactly."""
    from marsunits.inference.run_summary_text import summary_paragraph

    summary = run_summary(greyscale_inputs_for_colour_model=2)
    text = summary_paragraph(
        {**summary, "checkpoint_metadata": {"dataset": "folder", "training_images": record}}
    )
    if expected is None:
        assert "greyscale image" not in text, text
    else:
        assert "2 greyscale images went to a model that reads colour (trained on 'folder' data)" in text
        assert expected in text, text
    assert absent not in text, text


def test_a_camera_file_under_a_name_not_read_is_named_again_when_its_image_is_skipped(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same command run again skips the images it finished, and said nothing of their misplaced camera
    files: a user whose first run's warnings had scrolled away never saw them again, while the contact map
    still lacked those images. A skipped image's misplaced camera file is named as on its first run."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    a, b = generate_dataset(data, 2, seed=3, config=SceneConfig(width=96, height=64, p_contact=1.0))
    (data / "cameras" / f"{a}.json").rename(data / "images" / f"{a}.json")
    cfg = make_cfg(tmp_path, ckpt, data / "images", tmp_path / "out", "map=true")
    assert run(cfg) == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert run(cfg) == 0
    assert {r["status"] for r in read_manifest(tmp_path / "out").values()} == {"skipped"}
    said = [r.getMessage() for r in caplog.records if "not read" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{a}.png: "), said
    assert str(data / "images" / f"{a}.json") in said[0] and f"rename it to {data / 'images' / a}" in said[0]


def test_counts_of_one_take_the_singular_in_the_runs_last_line() -> None:
    """A run of one image that failed ended "Predicted 0 of 1 images (0 skipped as already done, 1 failed)
    ... 1 contact lines ... 1 inputs failed: see the error rows"."""
    from marsunits.errors import counted
    from marsunits.inference.run_summary_text import summary_paragraph

    assert (counted(0, "image"), counted(1, "image"), counted(2, "image")) == (
        "0 images",
        "1 image",
        "2 images",
    )
    assert counted(1, "batch norm layer") == "1 batch norm layer"
    one = summary_paragraph(
        run_summary(
            counts={"ok": 0, "total": 1, "skipped": 0, "error": 1}, n_contacts=1, contact_length_px=5.0
        )
    )
    assert one.startswith("Predicted 0 of 1 image (") and "1 contact line, 5 px" in one
    assert "1 input failed: see the error rows" in one
    two = summary_paragraph(run_summary(counts={"ok": 0, "total": 2, "skipped": 0, "error": 2}, n_contacts=2))
    assert two.startswith("Predicted 0 of 2 images (") and "2 contact lines," in two
    assert "2 inputs failed: see the error rows" in two


def test_the_last_line_says_which_images_the_unit_shares_and_contacts_are_of() -> None:
    """It said "Over all images with a mask: ...", read as the images with a label mask; the shares are of
    the predicted masks of the images predicted now and of those skipped as done earlier, by pixel."""
    from marsunits.inference.run_summary_text import summary_paragraph

    fractions = {"smooth_volcanic": 0.6, "rough_olivine": 0.3, "other": 0.1}
    now = summary_paragraph(run_summary(unit_fractions=fractions, images_with_masks=2, n_contacts=3))
    assert "with a mask" not in now
    assert (
        "Of the pixels of the predicted masks of the 2 images predicted: 60.0 % smooth_volcanic, "
        "30.0 % rough_olivine, 10.0 % other; they hold 3 contact lines, 0 px in total." in now
    )
    resumed = summary_paragraph(
        run_summary(
            counts={"ok": 1, "total": 4, "skipped": 2, "error": 1},
            unit_fractions=fractions,
            images_with_masks=3,
        )
    )
    assert (
        "Of the pixels of the predicted masks of 3 images (1 predicted now, 2 predicted by an earlier "
        in (resumed)
    )
    # A summary before images_with_masks: the ok and skipped images.
    old = run_summary(counts={"ok": 1, "total": 3, "skipped": 2, "error": 0})
    assert "masks of 3 images (1 predicted now, 2 predicted by" in summary_paragraph(old)
    failed = summary_paragraph(
        run_summary(
            counts={"ok": 0, "total": 1, "skipped": 0, "error": 1}, unit_fractions={}, images_with_masks=0
        )
    )
    assert "No image has a predicted mask, so no unit shares; 0 contact lines, 0 px in total." in failed
    # Images whose masks are no-data pixels only (a black frame, nodata_max) have masks, but no shares.
    dark = summary_paragraph(
        run_summary(unit_fractions=dict.fromkeys(fractions), images_with_masks=2, nodata_fraction=1.0)
    )
    assert "No image has a predicted mask" not in dark
    assert (
        "The predicted masks of the 2 images predicted have no pixel with data (all no-data, nodata_max), "
        "so no unit shares; they hold 0 contact lines, 0 px in total." in dark
    )


def test_the_changed_inputs_line_names_them_and_what_changed(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run said "1 input(s) changed after their outputs were written: predicting them again", naming
    neither the input nor whether its image or its camera file had changed."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    names = generate_dataset(data, 3, seed=3, config=SceneConfig(width=64, height=48, p_contact=1.0))
    out, images = tmp_path / "out", data / "images"
    assert run(make_cfg(tmp_path, ckpt, images, out)) == 0
    save_rgb(images / f"{names[0]}.png", 48, 64, seed=9)  # another image under the same name
    camera_file = data / "cameras" / f"{names[1]}.json"
    camera = json.loads(camera_file.read_text())
    camera["x_m"] = camera.get("x_m", 0.0) + 10.0
    camera_file.write_text(json.dumps(camera))
    with caplog.at_level("INFO", logger="marsunits.inference"):
        assert run(make_cfg(tmp_path, ckpt, images, out)) == 0
    said = [r.getMessage() for r in caplog.records if "changed after" in r.getMessage()]
    assert said == [
        f"2 inputs changed after their outputs were written, predicting them again: {names[0]}.png (image "
        f"file replaced), {names[1]}.png (camera file replaced)"
    ]
    assert any(r.getMessage().startswith("skipping 1 input whose outputs") for r in caplog.records)

    from marsunits.inference.output_settings import changed_inputs_text

    many = [(f"i{i}.png", "image file replaced") for i in range(7)]
    assert changed_inputs_text(many[:1]) == (
        "1 input changed after its outputs were written, predicting it again: i0.png (image file replaced)"
    )
    assert changed_inputs_text(many).endswith("i4.png (image file replaced), +2 more")


def test_images_patterns_leave_out_are_said_to_be_off_the_contact_map_with_the_patterns_for_all(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``patterns=[jpg] map=true`` into a folder predicted with every format redrew contact_map.* from the
    JPEGs alone: the PNGs' ground contacts dropped off the map while an info line said only that their
    outputs were in none of the reports. The map is one of the run's reports (the same images as
    manifest.csv): the line, a warning with map=true, says they are off the map too and the patterns that
    map every image; that run skips them as done and maps them again."""
    from PIL import Image

    from marsunits.data.synthetic import SceneConfig, generate_dataset

    data = tmp_path / "syn"
    names = generate_dataset(data, 2, seed=0, config=SceneConfig(width=64, height=48, p_contact=1.0))
    for camera_file in (data / "cameras").glob("*.json"):  # one site: one map of both
        camera_file.write_text(json.dumps({**json.loads(camera_file.read_text()), "site": "traverse"}))
    images = data / "images"
    Image.open(images / f"{names[0]}.png").convert("RGB").save(images / f"{names[0]}.jpg", quality=95)
    (images / f"{names[0]}.png").unlink()
    out = tmp_path / "out"

    def mapped() -> list[str]:
        return sorted(c["image"] for c in json.loads((out / "contact_map.geojson").read_text())["cameras"])

    assert run(make_cfg(tmp_path, ckpt, images, out, "map=true")) == 0
    assert mapped() == [f"{names[0]}.jpg", f"{names[1]}.png"]
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, images, out, "map=true", "patterns=[jpg]")) == 0
    assert mapped() == [f"{names[0]}.jpg"]
    (said,) = [r for r in caplog.records if "leaves out" in r.getMessage()]
    assert said.levelname == "WARNING", said
    assert "off the contact map" in said.getMessage() and "patterns=[jpg,png]" in said.getMessage(), said
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, images, out, "map=true", "patterns=[jpg,png]")) == 0
    assert mapped() == [f"{names[0]}.jpg", f"{names[1]}.png"]
    assert not [r for r in caplog.records if "leaves out" in r.getMessage()]
    assert {r["status"] for r in read_manifest(out).values()} == {"skipped"}
    # Without map=true nothing is drawn (the maps are removed, and said): the line stays at info level.
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, images, out, "patterns=[jpg]")) == 0
    (said,) = [r for r in caplog.records if "leaves out" in r.getMessage()]
    assert said.levelname == "INFO" and "contact map" not in said.getMessage()


def test_the_contact_map_log_line_counts_the_maps_and_names_their_folder_and_the_first_few(tmp_path, caplog):
    """A run of 200 sites (one a drive) logged its 400 map file names on one line: the line says how many
    files (maps: a GeoJSON and a PNG each) were written and where, and names the first few."""
    from marsunits.boundary.camera.pinhole import PinholeCamera
    from marsunits.inference.run_contact_maps import write_contact_maps

    items = []
    for i in range(6):
        cam = PinholeCamera(image_width=160, image_height=120, hfov_deg=60.0, pitch_deg=20.0, site=f"S{i}")
        u = np.linspace(0.5, 159.5, 5)
        items.append((f"img{i}.png", [ContactLine(pixels=np.c_[u, np.full_like(u, 90.0)])], cam))
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        maps, no_map, problem = write_contact_maps(
            out, tmp_path, [], items, asked=True, max_range_m=30.0, model={"name": "m"}
        )
    assert len(maps) == 12 and no_map is None and problem is None
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("contact map written")]
    assert line.startswith(f"contact map written: 12 files (6 maps) in {out}: "), line
    named = [m.name for m in maps if m.name in line]
    assert named == [m.name for m in maps[:4]], line
    assert line.endswith(" and 8 more"), line
