"""Pseudo-labels from predict.py's probabilities, and self-training data with a train-only source."""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from hydra.utils import instantiate

from marsunits.constants import IGNORE_INDEX
from marsunits.data.fake import write_fake_marsscapes
from marsunits.data.mask_io import read_mask
from marsunits.inference.pseudo_labels import main, pseudo_label_mask, write_pseudo_labels
from marsunits.inference.writers import write_probabilities

try:
    from .conftest import compose_config
except ImportError:  # tests/ collected without an __init__.py
    from conftest import compose_config  # type: ignore[no-redef]


def _probs(h: int, w: int) -> np.ndarray:
    """Left third: confident smooth; middle: uncertain; right third: confident rough."""
    p = np.full((3, h, w), 1 / 3, np.float32)
    p[:, :, : w // 3] = np.array([0.95, 0.03, 0.02], np.float32)[:, None, None]
    p[:, :, w // 3 : 2 * w // 3] = np.array([0.5, 0.4, 0.1], np.float32)[:, None, None]
    p[:, :, 2 * w // 3 :] = np.array([0.04, 0.93, 0.03], np.float32)[:, None, None]
    return p


def test_mask_keeps_confident_pixels_only_and_drops_no_data() -> None:
    p = _probs(8, 12)
    no_data = np.zeros((8, 12), bool)
    no_data[0] = True
    mask = pseudo_label_mask(p, 0.9, no_data)
    assert mask.dtype == np.uint8 and mask.shape == (8, 12)
    assert (mask[1:, :4] == 0).all() and (mask[1:, 8:] == 1).all()
    assert (mask[:, 4:8] == IGNORE_INDEX).all() and (mask[0] == IGNORE_INDEX).all()
    # uint8 probabilities (predict.py's default) give the same mask; a lower threshold keeps more.
    as_uint8 = np.rint(p * 255).astype(np.uint8)
    assert np.array_equal(pseudo_label_mask(as_uint8, 0.9, no_data), mask)
    assert (pseudo_label_mask(p, 0.5)[:, 4:8] == 0).all()
    with pytest.raises(ValueError, match="threshold"):
        pseudo_label_mask(p, 0.0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        pseudo_label_mask(p[:2], 0.9)


def _predicted_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Two 32 x 48 images with an 8-column black no-data border (256 px, a region nodata_mask flags) and a
    dark 2 x 2 shadow inside (not touching the border: terrain), and their probabilities (``_probs``)."""
    from PIL import Image

    images, pred = tmp_path / "unlabelled", tmp_path / "pred"
    (images / "sol600").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem in ("600_1", "601_1"):
        img = rng.integers(30, 255, (32, 48, 3), dtype=np.uint8)
        img[:, -8:] = rng.integers(0, 6, (32, 8, 3), dtype=np.uint8)  # black border with a JPEG fringe
        img[10:12, 2:4] = 0  # a shadow inside the image
        Image.fromarray(img).save(images / "sol600" / f"{stem}.png")
        write_probabilities(pred / "sol600" / f"{stem}.prob.tif", _probs(32, 48))
    return images, pred


def test_write_pseudo_labels_makes_a_folder_dataset(tmp_path: Path) -> None:
    images, pred = _predicted_folder(tmp_path)
    out = tmp_path / "pseudo"
    summary = write_pseudo_labels(pred, images, out, threshold=0.9)
    assert summary.images == 2
    for stem in ("600_1", "601_1"):
        assert (out / "images" / f"{stem}.png").resolve() == (images / "sol600" / f"{stem}.png").resolve()
        mask = read_mask(out / "masks" / f"{stem}.png")
        assert (mask[:, :16] == 0).all()  # the shadow at [10:12, 2:4] is terrain, as predict.py sees it
        assert (mask[:, 32:39] == 1).all() and (mask[:, 16:32] == 255).all()
        assert (mask[:, -9:] == 255).all()  # the black no-data border and the pixel beside it (FRINGE_PX)
    report = json.loads((out / "pseudo_labels.json").read_text())
    assert report["threshold"] == 0.9 and report["nodata_max"] == 0.03 and len(report["per_image"]) == 2
    assert report["teacher_trained_sols"] is None  # predictions without a summary.json: unknown
    assert report["teacher_trained_image_keys"] is None
    # The teacher's training sols and images, from predict.py's summary.json, for the student's check
    # (datamodule).
    keys = ["0123456789abcdef", "fedcba9876543210"]
    summary = {
        "checkpoint_metadata": {"trained_sols": {"marsscapes": [122, 123]}, "trained_image_keys": keys}
    }
    (pred / "summary.json").write_text(json.dumps(summary))
    write_pseudo_labels(pred, images, out, threshold=0.9)
    report = json.loads((out / "pseudo_labels.json").read_text())
    assert report["teacher_trained_sols"] == {"marsscapes": [122, 123]}
    assert report["teacher_trained_image_keys"] == keys
    assert 0.3 < report["kept_fraction"] < 0.6
    # The folder data config reads what was written.
    from marsunits.data.folder import scan_folder

    assert len(scan_folder(out, "pseudo")) == 2
    # Beside the masks, a classes.json naming the project's classes (in the form of AI4Mars' and
    # MarsScapes' files): predict.py scoring against them said they had been read as project ids, "their 2
    # as other", as it says of labels of unknown origin, where now metrics.json names the file.
    from marsunits.data.class_map import labels_classes_folder, project_classes_file
    from marsunits.inference.evaluation import Evaluation

    assert project_classes_file(labels_classes_folder(out / "masks")) == out / "classes.json"
    named = {c["id"]: c["name"] for c in json.loads((out / "classes.json").read_text())["classes"]}
    assert named == {0: "smooth_volcanic", 1: "rough_olivine", 2: "other", 255: "unlabelled"}
    scored = Evaluation(out / "masks")
    scored.add(PurePosixPath("600_1.png"), read_mask(out / "masks" / "600_1.png"))
    assert scored.to_dict()["labels_classes_file"] == str(out / "classes.json")


def test_no_data_follows_the_predictions_settings_and_the_flag_is_a_fraction(tmp_path: Path, capsys) -> None:
    """predict.py's nodata_max is a fraction of full scale; the flag used to be an 8-bit integer (3)."""
    images, pred = _predicted_folder(tmp_path)
    (pred / "prediction_settings.json").write_text(json.dumps({"nodata_max": None}))  # predicted with it off
    write_pseudo_labels(pred, images, tmp_path / "off")
    assert (read_mask(tmp_path / "off" / "masks" / "600_1.png")[:, -8:] == 1).all()  # the teacher's label

    def cli(out: str, nodata_max: str) -> None:
        main(
            ["--predictions", str(pred), "--images", str(images), "--out", str(tmp_path / out)]
            + ["--nodata-max", nodata_max]
        )

    cli("on", "0.03")
    assert (read_mask(tmp_path / "on" / "masks" / "600_1.png")[:, -8:] == 255).all()
    with pytest.raises(SystemExit) as err:
        cli("x", "3")
    assert err.value.code == 2 and "fraction of full scale in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pseudo_label_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    images, pred = _predicted_folder(tmp_path)
    empty = tmp_path / "empty_pred"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="save_probabilities=true"):
        write_pseudo_labels(empty, images, tmp_path / "out")
    (images / "sol600" / "601_1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"601_1\.prob\.tif.*--images"):
        write_pseudo_labels(pred, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written (600_1 comes first)
    with pytest.raises(ValueError, match="inside the images folder"):
        write_pseudo_labels(pred, images, images / "pseudo")
    # Masks from another teacher run in the destination would be trained on as well: refused, untouched.
    (pred / "sol600" / "601_1.prob.tif").unlink()
    old = tmp_path / "old"
    (old / "masks").mkdir(parents=True)
    (old / "masks" / "500_1.png").write_bytes(b"kept")
    with pytest.raises(ValueError, match=r"holds masks of 1 image not predicted in .*500_1.*empty folder"):
        write_pseudo_labels(pred, images, old)
    assert (old / "masks" / "500_1.png").read_bytes() == b"kept"
    assert not (old / "masks" / "600_1.png").exists()


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_an_image_predict_py_accepted_above_pillows_limit_is_pseudo_labelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """``predict.py max_megapixels=200`` predicts a 190-megapixel mosaic, but pseudo-labelling it read the
    image under Pillow's decompression-bomb limit (179 MP) and refused it. The image whose probabilities
    predict.py wrote is read whatever that limit, once its header shows the probabilities' size; an image of
    another size is refused from its header, before decoding. Pillow's limit is shrunk here so a 32 x 48
    image stands for the mosaic."""
    import tifffile
    from PIL import Image

    images, pred = tmp_path / "unlabelled", tmp_path / "pred"
    images.mkdir()
    img = np.random.default_rng(0).integers(30, 255, (32, 48, 3), dtype=np.uint8)
    if suffix == "png":
        Image.fromarray(img).save(images / "600_1.png")
    else:
        tifffile.imwrite(images / "600_1.tif", img, photometric="rgb")
    write_probabilities(pred / "600_1.prob.tif", _probs(32, 48))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # refused above 2 x 500 pixels, as 179 MP is
    summary = write_pseudo_labels(pred, images, tmp_path / "out", threshold=0.9)
    assert summary.images == 1
    mask = read_mask(tmp_path / "out" / "masks" / "600_1.png", max_megapixels=math.inf)
    assert (mask[:, :16] == 0).all() and (mask[:, 32:] == 1).all()
    # Probabilities of another size: the image is refused from its header, undecoded, naming both files.
    write_probabilities(pred / "600_1.prob.tif", _probs(16, 48))

    def decoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image of another size than its probabilities was decoded")

    monkeypatch.setattr("marsunits.inference.pseudo_labels.read_image", decoded)
    with pytest.raises(ValueError, match=rf"600_1\.prob\.tif.*\(16, 48\).*600_1\.{suffix}.*\(32, 48\)"):
        write_pseudo_labels(pred, images, tmp_path / "out", threshold=0.9)


def test_predictions_of_an_unfinished_overwrite_run_are_refused(tmp_path: Path) -> None:
    """An interrupted ``overwrite=true`` run leaves probability files of two models or settings side by side;
    they were read as one teacher's."""
    images, pred = _predicted_folder(tmp_path)
    settings = {"nodata_max": 0.03, "overwrite_pending": True}
    (pred / "prediction_settings.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"overwrite=true run of predict.py that did not finish.*again"):
        write_pseudo_labels(pred, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    del settings["overwrite_pending"]  # the run finished
    (pred / "prediction_settings.json").write_text(json.dumps(settings))
    assert write_pseudo_labels(pred, images, tmp_path / "out").images == 2


def test_cli_exits_2_with_the_message(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--predictions", str(tmp_path / "no"), "--images", str(tmp_path), "--out", str(tmp_path / "o")])
    assert err.value.code == 2
    said = capsys.readouterr().err  # as other commands: the program as it is run, then "error:"
    assert said.startswith("python -m marsunits.inference.pseudo_labels: error: predictions folder")


def _selftrain_config(tmp_path: Path, extra: list[str] | None = None):
    """experiment=marsscapes_selftrain on fake MarsScapes plus pseudo-labels written from fake predictions."""
    images, pred = _predicted_folder(tmp_path)
    pseudo = tmp_path / "pseudo"
    write_pseudo_labels(pred, images, pseudo)
    write_fake_marsscapes(tmp_path / "data" / "marsscapes", height=64, width=192)
    overrides = [
        "experiment=marsscapes_selftrain",
        "model=tiny",
        "logger=none",
        f"data.root={tmp_path / 'data'}",
        f"data.source_dirs.folder={pseudo}",
        "data.crop_size=32",
        "data.samples_per_epoch=8",
        "data.num_workers=0",
    ]
    return compose_config("train", tmp_path / "run", [*overrides, *(extra or [])])


def test_train_only_source_trains_and_is_not_validated(tmp_path: Path) -> None:
    cfg = _selftrain_config(tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    labelled_train, labelled_val = dm.splits["marsscapes"]
    pseudo_train, pseudo_val = dm.splits["folder"]
    assert len(pseudo_train) == 2 and pseudo_val == []
    assert labelled_train and labelled_val
    assert dm.val_names == ["marsscapes_pseudo"] and len(dm.val_sets) == 1
    assert len(dm.train_set) == 8  # split evenly between the two sources
    with pytest.raises(Exception, match="train_only must list real sources"):
        instantiate(cfg.data, train_only=["marsscapes", "folder"])
    with pytest.raises(Exception, match="train_only must list real sources"):
        instantiate(cfg.data, train_only=["ai4mars"])


def test_self_training_experiment_runs_and_records_both_class_maps(tmp_path: Path) -> None:
    from marsunits.task import SegmentationTask
    from marsunits.training import run

    cfg = _selftrain_config(
        tmp_path,
        [
            "data.batch_size=4",
            "data.val_batch_size=4",
            "trainer.max_epochs=1",
            "trainer.check_val_every_n_epoch=1",
            "trainer.enable_progress_bar=false",
        ],
    )
    metrics = run(cfg)
    # One validated source: plain val/* and test/* names, scored on the labelled MarsScapes sols only.
    assert 0.0 <= metrics["val/miou"] <= 1.0 and 0.0 <= metrics["test/miou"] <= 1.0
    assert not any(key.startswith(("val/folder", "val/marsscapes")) for key in metrics)
    task = SegmentationTask.load_from_checkpoint(metrics["best_ckpt"], map_location="cpu")
    assert task.hparams.class_map["folder"] is None  # pseudo-labels are project ids already
    assert task.hparams.class_map["marsscapes"][2] == 1  # gravel -> rough


@pytest.mark.parametrize("broken", [b'{"overwrite_pending": tr', b"[1, 2]", b"\xff\xfe"])
def test_a_settings_record_that_cannot_be_read_is_refused_not_taken_for_none(tmp_path: Path, broken) -> None:
    """Read as no record, a broken one hid the mark of an unfinished overwrite run (probabilities of two
    models) and replaced its recorded nodata_max by the default."""
    images, pred = _predicted_folder(tmp_path)
    assert write_pseudo_labels(pred, images, tmp_path / "fine").images == 2  # without a record: taken as is
    (pred / "prediction_settings.json").write_bytes(broken)
    with pytest.raises(ValueError, match=r"prediction_settings.json cannot be read .*overwrite=true"):
        write_pseudo_labels(pred, images, tmp_path / "pseudo")
    assert not (tmp_path / "pseudo").exists()  # refused before anything is written


def test_cli_names_a_latin1_output_folder_on_a_strict_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--out <a folder named in Latin-1 bytes>``: the labels were written, then the closing line naming the
    folder raised UnicodeEncodeError on a strict UTF-8 console (a terminal in en_US.UTF-8), a traceback and
    status 1. The line names it with the byte as ``\\xNN``; status 0."""
    import io
    import os
    import sys

    images, pred = _predicted_folder(tmp_path)
    out = tmp_path / os.fsdecode(b"ps\xe9")
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", console)
    assert main(["--predictions", str(pred), "--images", str(images), "--out", str(out)]) == 0
    console.flush()
    shown = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert f"written to {tmp_path}/ps\\xe9 (images/" in shown, shown
    assert (out / "pseudo_labels.json").is_file()


@pytest.mark.parametrize(
    ("stop", "status", "said"),
    [("ctrl-c", 130, "interrupted (Ctrl-C)"), ("sigterm", 143, "terminated (SIGTERM)"), ("full", 2, "full")],
)
def test_a_stopped_run_is_one_line_with_the_way_on(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
    status: int,
    said: str,
) -> None:
    """Ctrl-C and a full disk printed a traceback, and SIGTERM ended the command without a word."""
    import errno
    import os

    from marsunits.errors import TerminatedError
    from marsunits.inference import pseudo_labels

    out = tmp_path / "out"

    def stopped(*args: object) -> None:
        if stop == "sigterm":
            raise TerminatedError
        if stop == "full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "masks" / "a.png"))
        raise KeyboardInterrupt

    monkeypatch.setattr(pseudo_labels, "write_pseudo_labels", stopped)
    with pytest.raises(SystemExit) as ended:
        main(["--predictions", str(tmp_path), "--images", str(tmp_path), "--out", str(out)])
    assert ended.value.code == status
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert said in err and "run the same command again" in err
    if stop == "full":
        assert str(out / "masks" / "a.png") in err and "free space" in err


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm", "full", "missing"])
def test_marsunits_traceback_shows_the_traceback_as_every_command_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """``MARSUNITS_TRACEBACK=1`` shows the traceback (train.py, predict.py and the export raise it); the
    pseudo-label CLI printed its one line whatever the variable said."""
    import errno
    import os

    from marsunits.errors import TerminatedError
    from marsunits.inference import pseudo_labels

    raised: dict[str, BaseException] = {
        "ctrl-c": KeyboardInterrupt(),
        "sigterm": TerminatedError(),
        "full": OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "a.png")),
        "missing": FileNotFoundError(f"{tmp_path}/x: no such folder"),
    }

    def stopped(*args: object) -> None:
        raise raised[stop]

    monkeypatch.setattr(pseudo_labels, "write_pseudo_labels", stopped)
    monkeypatch.setenv("MARSUNITS_TRACEBACK", "1")
    with pytest.raises(type(raised[stop])):
        main(["--predictions", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "out")])


def test_an_image_copy_is_never_left_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a link could not be made, the image was copied in place: a disk that filled mid-copy left a
    truncated image under images/ for training to read, and a full or read-only disk refusing the link was
    answered with a copy onto that same disk."""
    import errno
    import os
    import shutil

    from marsunits.inference import pseudo_labels

    src = tmp_path / "a.png"
    src.write_bytes(b"\x89PNG" + bytes(range(256)) * 64)
    dst = tmp_path / "out" / "images" / "a.png"

    def full_link(target: str, link: object) -> None:  # os.symlink's error names the target first
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target, None, str(link))

    monkeypatch.setattr(pseudo_labels.os, "symlink", full_link)
    with pytest.raises(OSError) as refused:
        pseudo_labels._link_or_copy(src, dst)
    assert refused.value.errno == errno.ENOSPC and not dst.exists()  # no copy onto the full disk
    # The file that could not be written: the error named the input image (os.symlink's first name), and the
    # CLI's line said "cannot write <the input image>: the disk is full", pointing at the wrong disk.
    assert refused.value.filename == str(dst)

    def no_links(*args: object) -> None:  # a file system or OS that does not allow them
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    def half_then_full(fsrc, fdst, *args: object) -> None:  # type: ignore[no-untyped-def]
        fdst.write(fsrc.read(100))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pseudo_labels.os, "symlink", no_links)
    monkeypatch.setattr(shutil, "copyfileobj", half_then_full)
    with pytest.raises(OSError):
        pseudo_labels._link_or_copy(src, dst)
    assert not dst.exists() and list(dst.parent.iterdir()) == []  # nothing half written, no temporary
    monkeypatch.undo()
    monkeypatch.setattr(pseudo_labels.os, "symlink", no_links)
    pseudo_labels._link_or_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes() and not dst.is_symlink()
