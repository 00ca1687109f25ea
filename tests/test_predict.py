"""End-to-end tests of ``predict.py`` through the real ``configs/predict.yaml`` and ``run(cfg)``."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from scipy import ndimage

from marsunits.data.io import write_png_atomic
from marsunits.data.mask_io import read_mask
from marsunits.errors import ConfigError, DataError, report_user_errors
from marsunits.inference import run
from marsunits.inference.evaluation import confusion_matrix, scores
from marsunits.inference.writers import MANIFEST_FIELDS

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import (
        LAUNCH_VARIABLES,
        REPO_ROOT,
        SHARED_DATA,
        compose_config,
        one_step_trainer,
        tiny_task,
    )
except ImportError:
    from conftest import (  # type: ignore[no-redef]
        LAUNCH_VARIABLES,
        REPO_ROOT,
        SHARED_DATA,
        compose_config,
        one_step_trainer,
        tiny_task,
    )

TILE = 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny network of configs/model/tiny.yaml, saved by a Lightning Trainer."""
    from torch.utils.data import DataLoader

    task = tiny_task(TILE)
    samples = [
        {"image": torch.rand(3, TILE, TILE), "mask": torch.randint(0, 3, (TILE, TILE)), "path": f"{i}"}
        for i in range(2)
    ]
    trainer = one_step_trainer()
    trainer.fit(task, DataLoader(samples, batch_size=2))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def make_cfg(tmp_path: Path, ckpt: Path, inp: Path, out: Path, *extra: str):
    # tile=null: windows of the small test checkpoint's tile size, so that the test images are tiled.
    # threads=1 (``extra`` may set another): the tiny network on test images gains nothing from a second
    # intra-op thread, and on a busy 2-core machine OpenMP's threads made each forward pass 15-60x slower.
    return compose_config(
        "predict",
        tmp_path / "hydra",
        [
            f"ckpt_path={ckpt}",
            f"input_dir={inp}",
            f"output_dir={out}",
            "num_workers=0",
            "device=cpu",
            "tile=null",
            "threads=1",
            *extra,
        ],
    )


def save_rgb(path: Path, h: int, w: int, seed: int = 0, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, **kwargs)


def read_manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == MANIFEST_FIELDS
        return {r["path"]: r for r in reader}


def displayed_size(path: Path) -> tuple[int, int]:
    """(height, width) as a viewer shows the file (EXIF orientation applied)."""
    from PIL import ImageOps

    with Image.open(path) as im:
        w, h = ImageOps.exif_transpose(im).size
    return h, w


@pytest.fixture()
def image_tree(tmp_path: Path) -> Path:
    """Inputs of many kinds: equal names in different folders, tiny, wide, 16-bit grey, RGBA, EXIF-rotated."""
    inp = tmp_path / "in"
    save_rgb(inp / "a" / "scene.png", 70, 90, seed=1)
    save_rgb(inp / "b" / "scene.png", 48, 130, seed=2)  # same name, other folder
    save_rgb(inp / "tiny.PNG", 5, 7, seed=3)  # smaller than a tile, upper-case extension
    save_rgb(inp / "c" / "deep" / "wide.jpg", 50, 129, seed=4)  # larger than a tile: tiled
    grey16 = (np.random.default_rng(5).random((61, 67)) * 65535).astype(np.uint16)
    Image.fromarray(grey16).save(inp / "grey16.png")
    rgba = np.random.default_rng(6).integers(0, 256, (33, 41, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(inp / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed: stored 40 x 60, shown 60 x 40
    save_rgb(inp / "rotated.jpg", 40, 60, seed=7, exif=exif)
    save_rgb(inp / "odd & name's.png", 49, 51, seed=8)
    (inp / "notes.txt").write_text("not an image, not matched by patterns")
    return inp


def test_outputs_mirror_inputs_and_reports_are_complete(tmp_path: Path, ckpt: Path, image_tree: Path) -> None:
    out = tmp_path / "out"
    code = run(make_cfg(tmp_path, ckpt, image_tree, out, "save_probabilities=true"))
    assert code == 0
    inputs = sorted(
        p.relative_to(image_tree).as_posix()
        for p in image_tree.rglob("*")
        if p.suffix.lower() != ".txt"
        if p.is_file()
    )
    rows = read_manifest(out)
    assert sorted(rows) == inputs
    for rel in inputs:
        src = image_tree / rel
        stem_out = out / Path(rel).parent / Path(rel).stem
        h, w = displayed_size(src)
        mask = np.asarray(Image.open(f"{stem_out}.mask.png"))
        assert mask.shape == (h, w) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2}
        overlay = np.asarray(Image.open(f"{stem_out}.overlay.png"))
        assert overlay.shape == (h, w, 3)
        geo = json.loads(Path(f"{stem_out}.contact.geojson").read_text())
        assert geo["type"] == "FeatureCollection" and (geo["image_width"], geo["image_height"]) == (w, h)
        import tifffile

        prob = tifffile.imread(f"{stem_out}.prob.tif")
        assert prob.shape == (3, h, w) and prob.dtype == np.uint8
        # The stored argmax is the mask, up to ties created by rounding to uint8.
        assert (prob.argmax(0) == mask).mean() > 0.95
        row = rows[rel]
        assert row["status"] == "ok" and row["message"] == ""
        assert (int(row["width"]), int(row["height"])) == (w, h)
        fracs = [float(row[f"frac_{n}"]) for n in ("smooth_volcanic", "rough_olivine", "other")]
        np.testing.assert_allclose(fracs, np.bincount(mask.ravel(), minlength=3)[:3] / mask.size, atol=1e-5)
        ids = {f["properties"]["contact_id"] for f in geo["features"]}
        assert int(row["n_contacts"]) == len(ids) and ids == set(range(len(ids)))
        assert float(row["seconds"]) > 0
    # Equal file names in different folders did not collide.
    assert (out / "a" / "scene.mask.png").is_file() and (out / "b" / "scene.mask.png").is_file()
    assert not list(out.rglob("*.tmp")), "temporary files left behind"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {
        "ok": len(inputs),
        "error": 0,
        "skipped": 0,
        "total": len(inputs),
        "not_reached": 0,
    }
    assert summary["checkpoint"] == str(ckpt)
    assert summary["checkpoint_metadata"]["tile_size"] == TILE
    assert summary["megapixels_per_second"] > 0
    assert sum(summary["unit_fractions"].values()) == pytest.approx(1.0, abs=1e-6)

    page = (out / "index.html").read_text()
    assert "odd &amp; name&#x27;s.png" in page and "odd & name" not in page
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all("://" not in link and not link.startswith("/") for link in links)
    for link in links:
        assert (out / unquote(link)).is_file(), link


def test_resume_skips_finished_inputs_and_overwrite_redoes_them(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_tree = tmp_path / "in"
    save_rgb(image_tree / "a" / "scene.png", 50, 60, seed=1)
    save_rgb(image_tree / "b" / "scene.png", 40, 70, seed=2)
    save_rgb(image_tree / "tiny.png", 9, 11, seed=3)
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, image_tree, out)) == 0
    first = read_manifest(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mask.png")}
    # Simulate an interruption: one input lacks its mask (written last), so it is not complete.
    (out / "a" / "scene.mask.png").unlink()
    capsys.readouterr()

    assert run(make_cfg(tmp_path, ckpt, image_tree, out)) == 0
    second = read_manifest(out)
    assert sorted(second) == sorted(first)
    assert second["a/scene.png"]["status"] == "ok"
    skipped = [k for k, r in second.items() if r["status"] == "skipped"]
    assert len(skipped) == len(first) - 1
    for key in skipped:
        for col in ("width", "height", "frac_smooth_volcanic", "frac_other", "n_contacts", "seconds"):
            assert second[key][col] == first[key][col], (key, col)
    for p, t in mtimes.items():
        if p.name != "scene.mask.png" or p.parent.name != "a":
            assert p.stat().st_mtime_ns == t, f"{p} was rewritten although complete"
    text = capsys.readouterr().out
    assert f"{len(first) - 1} skipped" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == len(first) - 1 and summary["counts"]["ok"] == 1
    # The shares and contacts are of every mask, the skipped images' too, and the last line says so.
    assert summary["images_with_masks"] == len(first)
    assert summary["n_contacts"] == sum(int(r["n_contacts"]) for r in second.values())
    whose = f"of the predicted masks of {len(first)} images (1 predicted now, {len(first) - 1} predicted by"
    assert whose in " ".join(summary["text"].split())

    before = np.asarray(Image.open(out / "b" / "scene.mask.png"))
    stamp = (out / "b" / "scene.mask.png").stat().st_mtime_ns
    assert run(make_cfg(tmp_path, ckpt, image_tree, out, "overwrite=true")) == 0
    third = read_manifest(out)
    assert {r["status"] for r in third.values()} == {"ok"}
    assert (out / "b" / "scene.mask.png").stat().st_mtime_ns != stamp
    np.testing.assert_array_equal(np.asarray(Image.open(out / "b" / "scene.mask.png")), before)


def test_folding_batch_norm_is_recorded_where_it_changes_the_masks(tmp_path: Path, ckpt: Path) -> None:
    """In bf16, folding batch norm into the convolutions changes about 2 % of a window's classes (as many as
    bf16 against float32), and a folder begun folded was finished unfolded without a word; in float32 it is
    exact and not recorded."""
    from marsunits.inference.output_settings import SETTINGS_NAME

    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 50)
    bf16, fp32 = tmp_path / "bf16", tmp_path / "fp32"
    assert run(make_cfg(tmp_path, ckpt, inp, bf16, "precision=bf16")) == 0
    assert json.loads((bf16 / SETTINGS_NAME).read_text())["fold_batchnorm"] is True
    refusal = r"fold_batchnorm \(true then, false now.*fold_batchnorm=true predicts"
    with pytest.raises(ConfigError, match=refusal):
        run(make_cfg(tmp_path, ckpt, inp, bf16, "precision=bf16", "fold_batchnorm=false"))
    assert run(make_cfg(tmp_path, ckpt, inp, fp32, "precision=32")) == 0
    assert json.loads((fp32 / SETTINGS_NAME).read_text())["fold_batchnorm"] is None
    assert run(make_cfg(tmp_path, ckpt, inp, fp32, "precision=32", "fold_batchnorm=false")) == 0  # resumed
    # bf16 into the float32 folder: the precision says what differs; no advice to set fold_batchnorm=None
    with pytest.raises(ConfigError, match=r"precision \(\"32\" then, \"bf16\" now") as caught:
        run(make_cfg(tmp_path, ckpt, inp, fp32, "precision=bf16"))
    assert "fold_batchnorm" not in str(caught.value)


def test_a_folder_of_other_settings_is_refused_before_the_batch_norm_is_adapted(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run that was going to be refused first adapted the batch norm to every input (for a folder of
    panoramas, as long as predicting them) and exported or timed the runtimes."""
    from marsunits.inference import runner as runner_module

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 40, 50)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0

    def not_now(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("adapted before the folder's settings were compared")

    monkeypatch.setattr(runner_module._Session, "_adapt_batchnorm", not_now)
    with pytest.raises(ConfigError, match=r"overlap \(0.125 then, 0.25 now\)"):
        run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "overlap=0.25"))


def test_rerun_with_another_model_or_settings_is_refused_and_changed_inputs_are_redone(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Skipping finished images is right for a resumed run and wrong for a changed one: a re-run with
    another checkpoint used to keep every old mask and name the new checkpoint in summary.json."""
    from marsunits.inference.output_settings import SETTINGS_NAME

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_rgb(inp / f"img{i}.png", 40, 50, seed=i)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    record = json.loads((out / SETTINGS_NAME).read_text())
    assert (
        record["checkpoint"] == str(ckpt) and record["tile"] == TILE and len(record["weights_sha256"]) == 64
    )
    masks = {p: p.read_bytes() for p in out.glob("*.mask.png")}

    other = tmp_path / "other.ckpt"  # another model: one weight changed
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    name = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][name] = state["state_dict"][name] + 1.0
    torch.save(state, other)
    with pytest.raises(
        ConfigError, match=r"holds predictions made with other settings: the model .*overwrite=true"
    ):
        run(make_cfg(tmp_path, other, inp, out))
    with pytest.raises(ConfigError, match=r"min_unit_area_px \(200 then, 0 now\)"):
        run(make_cfg(tmp_path, ckpt, inp, out, "min_unit_area_px=0"))
    with pytest.raises(ConfigError, match=r"nodata_max \(0.03 then, null now\)"):  # as the user types it
        run(make_cfg(tmp_path, ckpt, inp, out, "nodata_max=null"))
    with pytest.raises(ConfigError, match=r"contact\.min_length_px \(10.0 then, 20 now\)") as caught:
        run(make_cfg(tmp_path, ckpt, inp, out, "contact.min_length_px=20"))
    assert "smoothing_sigma_px" not in str(caught.value)  # the sub-option that differs, not the whole group
    # The arithmetic: bf16 (precision=auto on an AMX CPU or a GPU) and float32 masks differ in a few pixels;
    # a folder begun on one machine and finished on another held both.
    assert record["runtime"] == "torch" and record["precision"] in ("32", "bf16")
    other_precision = "32" if record["precision"] == "bf16" else "bf16"
    with pytest.raises(
        ConfigError, match=rf"precision \(\"{record['precision']}\" then, \"{other_precision}\" now"
    ):
        run(make_cfg(tmp_path, ckpt, inp, out, f"precision={other_precision}"))
    with pytest.raises(
        ConfigError, match=r"runtime \(\"torch\" then, \"onnx\" now.*runtime=torch predicts as"
    ):
        run(make_cfg(tmp_path, ckpt, inp, out, "runtime=onnx"))
    assert {p: p.read_bytes() for p in out.glob("*.mask.png")} == masks  # nothing lost
    assert json.loads((out / SETTINGS_NAME).read_text()) == record

    moved = tmp_path / "moved" / "same.ckpt"  # the same model under another path is the same model
    moved.parent.mkdir()
    moved.write_bytes(ckpt.read_bytes())
    assert run(make_cfg(tmp_path, moved, inp, out)) == 0
    assert {r["status"] for r in read_manifest(out).values()} == {"skipped"}

    # An image replaced after its outputs were written is predicted again; so is one whose camera changed.
    later = (out / "img1.mask.png").stat().st_mtime + 10
    save_rgb(inp / "img1.png", 40, 50, seed=99)
    os.utime(inp / "img1.png", (later, later))
    camera = {"model": "pinhole", "image_width": 50, "image_height": 40, "hfov_deg": 60.0, "pitch_deg": 20.0}
    (inp / "img2.camera.json").write_text(json.dumps(camera))
    os.utime(inp / "img2.camera.json", (later, later))
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert [rows[f"img{i}.png"]["status"] for i in range(3)] == ["skipped", "ok", "ok"]

    # probability_dtype changes nothing without save_probabilities: not a difference. Turning probabilities on
    # (or off) changes no mask either: accepted, and the images without a prob.tif get one.
    assert run(make_cfg(tmp_path, ckpt, inp, out, "probability_dtype=float16")) == 0
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 0
    assert sorted(p.name for p in out.glob("*.prob.tif")) == [f"img{i}.prob.tif" for i in range(3)]
    assert any("3 inputs have outputs but no prob.tif" in r.getMessage() for r in caplog.records)  # why
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    with pytest.raises(ConfigError, match=r"probability_dtype \("):  # two dtypes in one folder: said
        run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true", "probability_dtype=float16"))
    with pytest.raises(ConfigError, match=r"nodata_max must be null or a number in \[0, 1\).*got 'abc'"):
        run(make_cfg(tmp_path, ckpt, inp, out, "nodata_max=abc"))

    # An overwrite with the other model, interrupted after one image, leaves old and new masks side by side:
    # the folder is marked, and only another overwrite may go on.
    from marsunits.inference import runner

    real = runner._Session.process
    calls = {"n": 0}

    def interrupted(self, f, item):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, f, item)

    def at_once(self, f, item):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    manifest = (out / "manifest.csv").read_bytes()
    runner._Session.process = at_once  # type: ignore[method-assign]
    try:  # stopped inside the first image: its reports stay, the folder is marked (it may be half replaced)
        with pytest.raises(KeyboardInterrupt):
            run(make_cfg(tmp_path, other, inp, out, "overwrite=true"))
    finally:
        runner._Session.process = real  # type: ignore[method-assign]
    assert (out / "manifest.csv").read_bytes() == manifest
    assert isinstance(json.loads((out / SETTINGS_NAME).read_text())["overwrite_pending"], str)
    stop = json.loads((out / "summary.json").read_text())["stopped_early"]
    assert "half replaced: run the same command again to go on (it predicts that image again)" in stop, stop
    with pytest.raises(ConfigError, match=r"an overwrite=true run into it stopped before finishing"):
        run(make_cfg(tmp_path, ckpt, inp, out))

    runner._Session.process = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            run(make_cfg(tmp_path, other, inp, out, "overwrite=true"))
    finally:
        runner._Session.process = real  # type: ignore[method-assign]
    stop = json.loads((out / "summary.json").read_text())["stopped_early"]
    assert "mixes old and new outputs: run the same command again to go on" in stop
    with pytest.raises(ConfigError, match=r"an overwrite=true run into it stopped before finishing"):
        run(make_cfg(tmp_path, ckpt, inp, out))  # the earlier model: refused
    assert run(make_cfg(tmp_path, other, inp, out, "overwrite=true")) == 0  # goes on
    record = json.loads((out / SETTINGS_NAME).read_text())
    assert record["checkpoint"] == str(other) and "overwrite_pending" not in record
    assert run(make_cfg(tmp_path, other, inp, out)) == 0  # and now that model's outputs resume


def test_an_interrupted_overwrite_goes_on_with_its_settings_skipping_the_images_it_finished(
    tmp_path: Path, ckpt: Path
) -> None:
    """An ``overwrite=true`` run stopped after its first image: the same command again (``overwrite=true``, or
    without it) goes on, skipping the image it finished and redoing the rest; it was refused without
    ``overwrite=true`` and predicted every image again with it (a folder of panoramas, hours). Other settings
    are still refused naming what differs, or with ``overwrite=true`` redo every image."""
    from marsunits.inference import runner
    from marsunits.inference.output_settings import PENDING_KEY, SETTINGS_NAME

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_rgb(inp / f"img{i}.png", 40, 50, seed=i)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    real = runner._Session.process
    done: list[str] = []

    def stopped_after_one(self, f, item):  # type: ignore[no-untyped-def]
        if done:
            raise KeyboardInterrupt
        done.append(f.rel.as_posix())
        return real(self, f, item)

    def again(*extra: str) -> dict[str, str]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runner._Session, "process", stopped_after_one)
            with pytest.raises(KeyboardInterrupt):
                run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true", *extra))
        assert json.loads((out / SETTINGS_NAME).read_text()).get(PENDING_KEY)
        return {p.name: p.read_bytes() for p in out.glob("*.contact.geojson")}

    for extra in ((), ("overwrite=true",)):  # the same command, with or without overwrite=true
        done.clear()
        again("min_unit_area_px=0")
        assert len(done) == 1
        assert run(make_cfg(tmp_path, ckpt, inp, out, "min_unit_area_px=0", *extra)) == 0
        rows = read_manifest(out)
        statuses = {path: row["status"] for path, row in rows.items()}
        assert statuses == {f"img{i}.png": "skipped" if f"img{i}.png" in done else "ok" for i in range(3)}
        assert rows[done[0]]["message"] == "finished by the stopped overwrite=true run this one goes on with"
        record = json.loads((out / SETTINGS_NAME).read_text())
        assert PENDING_KEY not in record and record["min_unit_area_px"] == 0
        summary = json.loads((out / "summary.json").read_text())  # what the user asked, and that it went on
        assert summary["overwrite"] is bool(extra) and summary["went_on_with_stopped_overwrite"] is True
    # A folder whose overwrite was stopped is refused to a run of other settings, naming what differs...
    done.clear()
    again()
    with pytest.raises(
        ConfigError,
        match=r"an overwrite=true run into it stopped before finishing, with other settings than this "
        r"run's: min_unit_area_px \(200 then, 0 now\)",
    ):
        run(make_cfg(tmp_path, ckpt, inp, out, "min_unit_area_px=0"))
    # ... and an overwrite of other settings predicts every image again, those the stopped one finished too.
    assert run(make_cfg(tmp_path, ckpt, inp, out, "min_unit_area_px=0", "overwrite=true")) == 0
    assert {row["status"] for row in read_manifest(out).values()} == {"ok"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overwrite"] is True and summary["went_on_with_stopped_overwrite"] is False


def test_an_overwrite_run_leaves_another_runs_folder_inside_its_own_alone(tmp_path: Path, ckpt: Path) -> None:
    """``predictions/`` for a mission beside ``predictions/sol_0100/`` for one sol: an overwrite=true run into
    the parent removed every mask, overlay and contact file of the run in the subfolder as its own leftovers.
    """
    from marsunits.inference.output_settings import SETTINGS_NAME
    from marsunits.inference.writers import OTHER_RUN_MARKERS
    from marsunits.run_folder_claim import PREDICT_CLAIM_NAME

    assert set(OTHER_RUN_MARKERS) == {SETTINGS_NAME, PREDICT_CLAIM_NAME}
    inp, sol, out = tmp_path / "in", tmp_path / "sol", tmp_path / "predictions"
    save_rgb(inp / "a.png", 40, 50, seed=1)
    save_rgb(sol / "b.png", 40, 50, seed=2)
    assert run(make_cfg(tmp_path, ckpt, sol, out / "sol_0100")) == 0
    nested = sorted(p.name for p in (out / "sol_0100").glob("b.*"))
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true")) == 0
    assert sorted(p.name for p in (out / "sol_0100").glob("b.*")) == nested
    assert {p.name for p in out.glob("a.*")} == {
        "a.mask.png",
        "a.overlay.png",
        "a.thumb.jpg",
        "a.contact.geojson",
    }


def test_a_note_on_how_an_input_was_read_is_said_once_from_a_loader_worker(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Files are decoded in loader workers, whose log lines were lost or repeated: the note on 8-bit values in
    a 16-bit file travels with the image and is said by the main process, once per image."""
    import tifffile

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    tifffile.imwrite(inp / "dark.tif", np.linspace(0, 200, 40 * 50).astype(np.uint16).reshape(40, 50))
    save_rgb(inp / "fine.png", 40, 50, seed=1)
    cfg = make_cfg(tmp_path, ckpt, inp, out)
    cfg.num_workers = 1
    with caplog.at_level("WARNING"):
        assert run(cfg) == 0
    said = [r.getMessage() for r in caplog.records if "fit in 8 bits" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(str(inp / "dark.tif"))


def test_finished_overwrite_leaves_only_its_own_outputs(tmp_path: Path, ckpt: Path) -> None:
    """An overwrite=true run with another model used to leave the old model's outputs of inputs it did not
    redo (removed since, or failing now) and the prob.tif files it did not save: two models in one folder."""
    from marsunits.inference.output_settings import SETTINGS_NAME

    inp, out = tmp_path / "in", tmp_path / "out"
    for rel in ("a.png", "gone.png", "sub/b.png", "sub/broken.png"):
        save_rgb(inp / rel, 40, 50, seed=len(rel))
    assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 0
    (out / "sub" / "notes.txt").write_text("the user's own file")
    assert len(list(out.rglob("*.prob.tif"))) == 4

    other = tmp_path / "other.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    name = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][name] = state["state_dict"][name] + 1.0
    torch.save(state, other)
    (inp / "gone.png").unlink()
    (inp / "sub" / "broken.png").write_bytes(b"not a PNG any more")
    assert run(make_cfg(tmp_path, other, inp, out, "overwrite=true", "allow_errors=true")) == 0

    rows = read_manifest(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "a.png": "ok",
        "sub/b.png": "ok",
        "sub/broken.png": "error",
    }
    per_image = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.name.endswith((".mask.png", ".overlay.png", ".thumb.jpg", ".contact.geojson", ".prob.tif"))
    )
    assert per_image == [
        f"{stem}{suffix}"
        for stem in ("a", "sub/b")
        for suffix in (".contact.geojson", ".mask.png", ".overlay.png", ".thumb.jpg")
    ]
    assert (out / "sub" / "notes.txt").read_text() == "the user's own file"  # not ours: untouched
    record = json.loads((out / SETTINGS_NAME).read_text())
    assert record["checkpoint"] == str(other) and record["probability_dtype"] is None
    assert "overwrite_pending" not in record
    # With no prob.tif left, saving probabilities of another dtype is no longer a mix of two dtypes.
    assert (
        run(
            make_cfg(
                tmp_path,
                other,
                inp,
                out,
                "save_probabilities=true",
                "probability_dtype=float16",
                "allow_errors=true",
            )
        )
        == 0
    )


def test_the_gallery_shows_small_thumbnails_linking_the_overlays_and_resume_needs_none(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """index.html showed every image's full-size overlay: hundreds of MB for a folder of panoramas. Each
    image gets ``<stem>.thumb.jpg`` (the overlay, longest side THUMBNAIL_PX), shown by its card, which links
    to the overlay; a folder predicted before thumbnails (one missing) resumes without predicting again, and
    its card shows the overlay. An input named like a thumbnail is an image like any other."""
    from marsunits.inference import writers

    monkeypatch.setattr(writers, "THUMBNAIL_PX", 48)  # images kept tiny: 48 px stands for 512
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "wide.png", 40, 100, seed=1)  # under PANORAMA_ASPECT (3:1): fitted into THUMBNAIL_PX
    save_rgb(inp / "sub" / "tall.png", 100, 60, seed=2)
    save_rgb(inp / "small.png", 30, 20, seed=3)  # smaller than a thumbnail: kept at its size
    save_rgb(inp / "wide.thumb.jpg", 40, 50, seed=4)  # an input, not wide.png's thumbnail
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert {r["status"] for r in read_manifest(out).values()} == {"ok"} and len(read_manifest(out)) == 4
    for stem, longest in (("wide", 48), ("sub/tall", 48), ("small", 30), ("wide.thumb", 48)):
        with Image.open(out / f"{stem}.overlay.png") as im:
            overlay = np.asarray(im.convert("RGB"))
        with Image.open(out / f"{stem}.thumb.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            thumb = np.asarray(im)
        (h, w), (th, tw) = overlay.shape[:2], thumb.shape[:2]
        assert max(th, tw) == longest
        assert abs(tw - w * th / h) <= 1 and abs(th - h * tw / w) <= 1  # the overlay's aspect, to a pixel
        shrunk = np.asarray(Image.fromarray(overlay).resize((tw, th), Image.Resampling.LANCZOS), dtype=float)
        # The overlay's picture (random pixels: JPEG keeps them only roughly), its colours kept on average.
        assert np.corrcoef(thumb.ravel(), shrunk.ravel())[0, 1] > 0.6
        assert np.abs(thumb.mean(axis=(0, 1)) - overlay.mean(axis=(0, 1))).max() < 2
    page = (out / "index.html").read_text()
    for stem in ("wide", "sub/tall", "small", "wide.thumb"):
        assert f'<a href="{stem}.overlay.png"><img src="{stem}.thumb.jpg"' in page

    # A folder predicted before thumbnails existed: resumed, nothing predicted again, the overlay shown.
    (out / "wide.thumb.jpg").unlink()
    (out / "sub" / "tall.thumb.jpg").unlink()
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.mask.png")}
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert {r["status"] for r in read_manifest(out).values()} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mask.png")} == written
    assert not (out / "wide.thumb.jpg").exists() and not (out / "sub" / "tall.thumb.jpg").exists()
    page = (out / "index.html").read_text()
    assert '<a href="wide.overlay.png"><img src="wide.overlay.png"' in page
    assert '<a href="sub/tall.overlay.png"><img src="sub/tall.overlay.png"' in page
    assert '<a href="small.overlay.png"><img src="small.thumb.jpg"' in page
    assert '<a href="wide.thumb.overlay.png"><img src="wide.thumb.thumb.jpg"' in page
    # No thumbnail is taken for the output of an input removed since (nor the missing ones for a change).
    assert not [r for r in caplog.records if " output file" in r.getMessage()], caplog.text

    # overwrite=true writes every thumbnail again and removes that of an input removed since.
    (inp / "small.png").unlink()
    assert run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true")) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.thumb.jpg")) == [
        "sub/tall.thumb.jpg",
        "wide.thumb.jpg",
        "wide.thumb.thumb.jpg",
    ]


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _sigterm() -> None:
    """A real SIGTERM to this process, as SLURM or Kubernetes send at a time limit (it used to end the run
    at once: no manifest, no summary, a temporary file left)."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # the handler raises at the next bytecode boundary; never slept through in full


@pytest.mark.parametrize(
    ("stop", "status", "how"),
    [(_ctrl_c, 130, "interrupted (Ctrl-C)"), (_sigterm, 143, "terminated (SIGTERM)")],
)
def test_interrupted_run_leaves_no_partial_file_and_resumes(
    tmp_path: Path,
    ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop: Callable[[], None],
    status: int,
    how: str,
) -> None:
    from marsunits.inference import writers

    inp = tmp_path / "in"
    for i in range(4):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    out = tmp_path / "out"
    real = writers.write_png_atomic
    calls = {"n": 0}

    def interrupted(path: Path, array: np.ndarray) -> Path:
        calls["n"] += 1
        if calls["n"] == 5:  # the third image's overlay (each image writes overlay, then mask)
            stop()
        return real(path, array)

    monkeypatch.setattr(writers, "write_png_atomic", interrupted)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:  # as predict.py runs it: one line, status 130/143, no traceback
        report_user_errors(lambda: run(make_cfg(tmp_path, ckpt, inp, out)), prog="predict.py")
    assert info.value.code == status
    printed = capsys.readouterr()
    assert printed.err.strip().endswith(f"predict.py: {how}; finished outputs are kept")
    # The console also says how far the run got and what to do next (it was only in summary.json), in lines
    # of at most 110 characters.
    shown = " ".join(printed.out.split())
    assert f"The run was {how} after 2 of the 4 images" in shown
    assert "run the same command" in shown
    assert signal.getsignal(signal.SIGTERM) is handler  # the run's handler is removed after it
    monkeypatch.setattr(writers, "write_png_atomic", real)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"].startswith(
        f"was {how} after 2 of the 4 images it had to predict; run the same command again"
    )
    # The status the run exits with, and why, for a script (exit_status was not recorded: a stop or a 1?).
    assert summary["exit_status"] == status and summary["exit_reasons"] == ["stopped"]
    # The folder holds 4 inputs, not the 2 with a manifest row: the summary says how many were not reached.
    assert summary["counts"] == {"ok": 2, "error": 0, "skipped": 0, "total": 2, "not_reached": 2}
    assert summary["text"].startswith(
        "Predicted 2 of 4 images (0 skipped as already done, 0 failed, 2 not reached)"
    )
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "temporary files left behind"
    assert sorted(read_manifest(out)) == ["img0.png", "img1.png"]  # reports list the work done so far
    assert not (out / "img2.overlay.png").exists() and not (out / "img2.mask.png").exists()
    assert (out / "img2.contact.geojson").exists()  # complete on its own, but the set is not

    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert [rows[f"img{i}.png"]["status"] for i in range(4)] == ["skipped", "skipped", "ok", "ok"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 0 and summary["exit_reasons"] == []


def test_a_run_ended_by_a_bug_records_failed_not_stopped(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug that ends a one-process run (an error no image's row takes, here a TypeError out of the
    writer) writes the reports of what was done before its traceback; summary.json said exit_reasons
    ["stopped"] with stopped_early null: no stop happened. It says "failed", with the bug's status, 1.
    The last paragraph read as a partial run's ("Predicted 1 of 3 images (... 2 not reached)") with no word
    of the failure, and was not printed: it says the run failed, on which image, and how to go on."""
    from marsunits.inference import writers

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    real = writers.write_png_atomic
    calls = {"n": 0}

    def buggy(path: Path, array: np.ndarray) -> Path:
        calls["n"] += 1
        if calls["n"] == 3:  # the second image's overlay
            raise TypeError("a bug")
        return real(path, array)

    monkeypatch.setattr(writers, "write_png_atomic", buggy)
    with pytest.raises(TypeError, match="a bug"):
        run(make_cfg(tmp_path, ckpt, inp, out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] is None
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"]
    assert summary["counts"]["ok"] == 1 and summary["counts"]["not_reached"] == 2
    failed = (
        "The run failed on an error in img1.png (the traceback follows; status 1): the 2 images not reached "
        "are predicted by running the same command again (finished images are skipped)."
    )
    assert summary["text"].endswith(failed), summary["text"]
    printed = capsys.readouterr().out
    assert failed in " ".join(printed.split())
    assert max(len(line) for line in printed.splitlines()) <= 110
    # The advice is true: the same command predicts the 2 images not reached and skips the finished one.
    monkeypatch.setattr(writers, "write_png_atomic", real)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert [rows[f"img{i}.png"]["status"] for i in range(3)] == ["skipped", "ok", "ok"]


@pytest.mark.parametrize(
    "when",
    [
        "as_the_bug_leaves_the_loop",
        "as_the_reports_are_written",
        "after_the_reports",
        "as_the_folder_is_released",
    ],
)
def test_a_ctrl_c_as_a_bug_ends_the_run_leaves_the_bug_deciding_and_says_both(
    tmp_path: Path,
    ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    when: str,
) -> None:
    """A Ctrl-C arriving while a bug ended a one-process run: as the bug left the image loop (the progress
    bar closing), the run ended 130, ``stopped``, the bug unsaid; as its reports were written, or after
    (summary.json already saying status 1), it exited 130 all the same. As a failure on any rank of a
    sharded run decides, the bug decides here: summary.json's status 1, ``failed``, the closing paragraph
    naming the image and then that the run was also interrupted (where the Ctrl-C came before the end of the
    reports), and the bug raised (its traceback, 1)."""
    from marsunits.inference import run_reports, runner, sharded_run

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    real_write = runner.write_prediction
    raised: list[str] = []

    def buggy(paths: Any, *args: Any, **kwargs: Any) -> Any:
        if paths.mask.name == "img1.mask.png":
            raised.append("bug")
            raise TypeError("a bug")
        return real_write(paths, *args, **kwargs)

    def ctrl_c_once(real: Callable[..., Any]) -> Callable[..., Any]:
        def then_ctrl_c(*args: Any, **kwargs: Any) -> Any:
            if raised == ["bug"]:  # the bug is on its way up: the Ctrl-C comes now, once
                raised.append("ctrl-c")
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        return then_ctrl_c

    monkeypatch.setattr(runner, "write_prediction", buggy)
    if when == "as_the_bug_leaves_the_loop":
        monkeypatch.setattr(runner.Progress, "stop", ctrl_c_once(runner.Progress.stop))
    elif when == "as_the_reports_are_written":
        monkeypatch.setattr(run_reports, "write_manifest", ctrl_c_once(run_reports.write_manifest))
    elif when == "after_the_reports":  # summary.json written, its paragraph being printed
        monkeypatch.setattr(sharded_run, "_print_wrapped", ctrl_c_once(sharded_run._print_wrapped))
    else:  # the reports and their paragraph done, the bug on its way out of predict.py
        monkeypatch.setattr(sharded_run, "_remove_empty", ctrl_c_once(sharded_run._remove_empty))
    with pytest.raises(TypeError, match="a bug"):  # not SystemExit(130): predict.py's status is the bug's
        report_user_errors(lambda: run(make_cfg(tmp_path, ckpt, inp, out)), prog="predict.py")
    assert raised == ["bug", "ctrl-c"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"], summary
    assert summary["stopped_early"] is None
    assert summary["counts"]["ok"] == 1 and summary["counts"]["not_reached"] == 2
    said = (
        "The run failed on an error in img1.png (the traceback follows; status 1): the 2 images not reached "
        "are predicted by running the same command again (finished images are skipped)."
    )
    if when != "as_the_folder_is_released":  # said where the Ctrl-C came before the paragraph was done
        said += " Also, the run was interrupted (Ctrl-C) as it failed."
    assert summary["text"].endswith(said), summary["text"]
    printed = " ".join(capsys.readouterr().out.split())
    assert printed.endswith(said), printed
    assert said in (out / "index.html").read_text()


def test_a_ctrl_c_as_a_full_disk_stops_the_run_leaves_the_full_disk_deciding(
    tmp_path: Path,
    ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Ctrl-C as a full disk stopped a one-process run (the progress bar closing) ended it 130, the full
    disk's line and stopped_early replaced by the stop's. The full disk decides, as a failure does over a stop
    in a sharded run: status 2, its line, and the closing paragraph says the Ctrl-C after it."""
    import errno

    from marsunits.inference import runner

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    real_write, real_stop = runner.write_prediction, runner.Progress.stop
    raised: list[str] = []

    def full(paths: Any, *args: Any, **kwargs: Any) -> Any:
        if paths.mask.name == "img1.mask.png":
            raised.append("full")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(paths, *args, **kwargs)

    def ctrl_c(self: Any) -> None:
        if raised == ["full"]:
            raised.append("ctrl-c")
            raise KeyboardInterrupt
        real_stop(self)

    monkeypatch.setattr(runner, "write_prediction", full)
    monkeypatch.setattr(runner.Progress, "stop", ctrl_c)
    with pytest.raises(SystemExit) as ended:
        report_user_errors(lambda: run(make_cfg(tmp_path, ckpt, inp, out)), prog="predict.py")
    assert ended.value.code == 2 and raised == ["full", "ctrl-c"]
    assert "predict.py: error: stopped: cannot write outputs to" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 2 and summary["exit_reasons"] == ["stopped"], summary
    assert summary["stopped_early"].startswith("stopped: cannot write outputs to"), summary
    assert summary["text"].endswith(
        f"The run {summary['stopped_early']}. Also, the run was interrupted (Ctrl-C) as it stopped."
    ), summary["text"]


@pytest.mark.parametrize("overwrite", [False, True], ids=["resumed", "overwrite"])
def test_a_full_disk_stop_says_what_running_the_same_command_again_does_to_finished_images(
    tmp_path: Path,
    ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    overwrite: bool,
) -> None:
    """The full-disk stop told an overwrite=true run, too, that "finished images are kept and skipped" by
    running the same command again; that command (overwrite=true) goes on with the stopped overwrite, skipping
    the images it finished. Each run's line says what its own re-run does, and the re-run does it."""
    import errno

    from marsunits.inference import runner

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    extra = ("overwrite=true",) if overwrite else ()
    if overwrite:  # a folder whose outputs the overwrite run replaces
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    real_write = runner.write_prediction
    full_once: list[str] = []

    def full(paths: Any, *args: Any, **kwargs: Any) -> Any:
        if paths.mask.name == "img1.mask.png" and not full_once:
            full_once.append("full")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(paths, *args, **kwargs)

    monkeypatch.setattr(runner, "write_prediction", full)
    with pytest.raises(SystemExit) as ended:
        report_user_errors(lambda: run(make_cfg(tmp_path, ckpt, inp, out, *extra)), prog="predict.py")
    assert ended.value.code == 2 and full_once == ["full"]
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("predict.py: error: stopped: cannot write outputs to"), line
    stopped_early = json.loads((out / "summary.json").read_text())["stopped_early"]
    assert stopped_early == line.removeprefix("predict.py: error: ")
    if overwrite:
        assert line.endswith(
            "then run the same command again: it goes on, skipping the images this run finished"
        ), line
        with pytest.raises(ConfigError, match="an overwrite=true run into it stopped before finishing"):
            run(make_cfg(tmp_path, ckpt, inp, out, "tta=true"))  # other settings: refused
    else:
        assert line.endswith("then run the same command again (finished images are kept and skipped)"), line
    assert run(make_cfg(tmp_path, ckpt, inp, out, *extra)) == 0  # the same command again
    statuses = {path: row["status"] for path, row in read_manifest(out).items()}
    assert statuses == {"img0.png": "skipped", "img1.png": "ok"}, statuses


def test_a_stop_before_the_first_image_is_read_is_said_as_any_stop(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C while the run set up its image loader and progress bar (before the loop) passed by the part
    of ``_Session.predict_all`` that says how far the run got: ``stopped_early`` stayed None, the console
    said nothing of the stop, and a stopped rank of a sharded run sent its fallback, "was stopped". Every
    stop out of predict_all is said, 0 of N images."""
    from marsunits.inference import runner

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)

    def stopped(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "make_loader", stopped)
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(tmp_path, ckpt, inp, out))
    said = "was interrupted (Ctrl-C) after 0 of the 2 images it had to predict; run the same command again"
    assert json.loads((out / "summary.json").read_text())["stopped_early"].startswith(said)
    assert f"The run {said}" in " ".join(capsys.readouterr().out.split())


def test_a_run_of_one_image_stopped_says_so_in_the_singular(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with one image to predict, stopped in it (Ctrl-C, a dead loader worker), said "after 0 of the 1
    images it had to predict"."""
    from marsunits.inference import runner
    from marsunits.inference.predictor import LoaderWorkerError

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "img0.png", 40, 48)
    real = runner.write_prediction

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "write_prediction", stopped)
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(tmp_path, ckpt, inp, out))
    said = json.loads((out / "summary.json").read_text())["stopped_early"]
    assert said.startswith("was interrupted (Ctrl-C) before finishing the only image it had to predict;")

    def worker_died(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")

    monkeypatch.setattr(runner, "write_prediction", worker_died)
    with pytest.raises(LoaderWorkerError, match=r"^The run stopped before finishing the only image it had"):
        run(make_cfg(tmp_path, ckpt, inp, out))
    monkeypatch.setattr(runner, "write_prediction", real)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0


def test_nodata_mask_is_the_dark_region_touching_the_border() -> None:
    from marsunits.inference.nodata import nodata_mask

    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 1.0, (60, 80, 3)).astype(np.float32)
    image[:, :5] = 0.0  # a mosaic's black border ...
    image[:, 5] = 6 / 255  # ... with its JPEG fringe
    image[10:15, 20:25] = 0.0  # a black shadow inside the image: terrain, not no-data
    image[-10:, -10:] = 0.0  # a dark corner smaller than MIN_REGION_PX: terrain too
    image[0, 30] = [0.0, 0.0, 0.5]  # dark in two channels only: data
    got = nodata_mask(image, 0.03)
    want = np.zeros((60, 80), bool)
    want[:, :7] = True  # the dark columns and the one-pixel ring beside them (FRINGE_PX)
    np.testing.assert_array_equal(got, want)
    assert not nodata_mask(image[:, 6:], 0.03).any()
    with pytest.raises(ValueError, match=r"nodata_max must be in \[0, 1\)"):
        nodata_mask(image, 1.5)


@pytest.mark.parametrize("edge", ["top", "bottom", "left", "right"])
def test_nodata_mask_flags_a_region_touching_any_edge_from_min_region_px_on(edge: str) -> None:
    """A 1-pixel-wide dark line along one edge (and no other edge, no corner) is no-data from exactly
    MIN_REGION_PX pixels on: every edge counts, only the outermost row or column makes a region touch it."""
    from marsunits.inference.nodata import MIN_REGION_PX, nodata_mask

    n = MIN_REGION_PX + 20
    for length, flagged in ((MIN_REGION_PX, True), (MIN_REGION_PX - 1, False)):
        image = np.full((n, n, 3), 0.6, np.float32)
        line = (slice(10, 10 + length), 0)  # along the left edge, away from the corners
        image[line] = 0.0
        turn = {"top": 1, "bottom": 3, "left": 0, "right": 2}[edge]  # rotate the left edge onto this one
        image = np.ascontiguousarray(np.rot90(image, k=-turn))
        got = nodata_mask(image, 0.03)
        dark = (image == 0).all(axis=2)
        # The line, and its one-pixel ring (FRINGE_PX): the pixels sharing a side with it.
        want = ndimage.binary_dilation(dark) if flagged else np.zeros_like(got)
        assert got.sum() == (2 * length + 2 if flagged else 0), (edge, length)
        np.testing.assert_array_equal(got, want)


def test_nodata_mask_threshold_is_inclusive_and_its_range_is_0_to_below_1() -> None:
    """'every channel is at most max_value': a border exactly at max_value is no-data; 0 (exactly black
    only) is allowed, 1 (everything) is not."""
    from marsunits.inference.nodata import nodata_mask

    image = np.full((40, 40, 3), 0.5, np.float32)
    image[:, :8] = 0.25  # exactly representable: no rounding between float32 and the float threshold
    want = np.zeros((40, 40), bool)
    want[:, :9] = True  # with the one-pixel ring beside the border (FRINGE_PX)
    np.testing.assert_array_equal(nodata_mask(image, 0.25), want)
    assert not nodata_mask(image, 0.0).any()
    image[:, :8] = 0.0
    np.testing.assert_array_equal(nodata_mask(image, 0.0), want)
    with pytest.raises(ValueError, match=r"nodata_max must be in \[0, 1\)"):
        nodata_mask(image, 1.0)
    image[:, -8:] = [0.0, 0.0, 0.5]  # a border band dark in two channels only: data
    np.testing.assert_array_equal(nodata_mask(image, 0.03), want)


def test_the_blended_fringe_of_a_mosaic_border_is_no_data_and_draws_no_contact_along_it() -> None:
    """The pixel next to a panorama's black border is a blend of black and terrain (JPEG, a resampled
    mosaic), brighter than nodata_max; the network read it (and often the row inside it) as rough terrain, so
    borders got a rough_olivine rim in the mask and a contact traced along it (seen on MarsScapes panoramas:
    5-7 % of their contact length, 29 % of a greyscale one shrunk to half size)."""
    from marsunits.boundary.extract import ContactConfig
    from marsunits.inference.unit_mapper import units_and_contacts

    h, w = 48, 400
    image = np.full((h, w, 3), 0.6, np.float32)
    image[-6:] = 0.0  # the mosaic's black border along the bottom ...
    image[-7] = 0.25  # ... and its blended fringe, far above nodata_max (64/255)
    image[: h - 7, 40:44] = 0.1  # a dark streak inside the image, beside the fringe: terrain, not no data
    probs = np.zeros((3, h, w), np.float32)
    probs[0] = 0.9  # smooth ground everywhere ...
    probs[2] = 0.1
    probs[:, -8:-6] = np.array([0.05, 0.9, 0.05], np.float32)[:, None, None]  # ... the network's rough rim
    mask, lines = units_and_contacts(
        probs, image, min_unit_area_px=200, nodata_max=0.03, contact=ContactConfig()
    )
    assert (mask[-7:] == 255).all()  # the border and its fringe
    assert (mask[: h - 8] == 0).all()  # the ground inside, the dark streak included
    assert lines == []  # no contact traced along the border (one of 399 px was)


def test_no_data_is_drawn_pure_black_in_the_overlay_its_blended_ring_too() -> None:
    """The overlay blended every pixel with its class colour, no data's black included: a panorama's border
    ring (no data since 2026-12-07, a blend of black and terrain in the image) was drawn a dark brown,
    (66, 54, 39), and the border's JPEG fringe not quite black, where the README says no data is black."""
    from marsunits.inference.nodata import nodata_mask
    from marsunits.inference.writers import overlay_image

    pixels = np.full((64, 96, 3), (150, 125, 95), np.uint8)  # terrain
    pixels[:, :20] = (3, 2, 1)  # the mosaic's black border, with a JPEG fringe
    pixels[:, 20] = (110, 90, 65)  # its blended ring
    image = pixels.astype(np.float32) / 255
    nodata = nodata_mask(image, 0.03)
    assert nodata[:, :21].all() and not nodata[:, 21:].any()
    mask = np.where(nodata, 255, 1).astype(np.uint8)
    out = overlay_image(image, mask, [])
    assert (out[nodata] == 0).all(), np.unique(out[nodata], axis=0)
    # The pixels with data are the image blended with their class colour, as before.
    palette = np.array([[10, 20, 30], [200, 100, 0], [90, 90, 90]])
    tinted = overlay_image(image, mask, [], alpha=0.5, palette=palette.tolist())
    want = (pixels[5, 40].astype(int) * 128 + palette[1] * 128) >> 8
    np.testing.assert_array_equal(tinted[~nodata], np.broadcast_to(want, tinted[~nodata].shape))
    assert (tinted[nodata] == 0).all()


def test_black_mosaic_border_is_ignored_in_mask_fractions_and_scores(tmp_path: Path, ckpt: Path) -> None:
    """The border of a stitched panorama used to be classified (mostly as rough terrain) and counted in the
    unit fractions."""
    inp, labels = tmp_path / "in", tmp_path / "labels"
    image = np.random.default_rng(1).integers(60, 256, (40, 64, 3), dtype=np.uint8)
    image[:, :8] = 0
    image[:4] = 0
    inp.mkdir()
    Image.fromarray(image).save(inp / "pano.png")
    write_png_atomic(labels / "pano.png", np.random.default_rng(2).integers(0, 3, (40, 64), dtype=np.uint8))
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")) == 0
    mask = read_mask(out / "pano.mask.png")
    border = ndimage.binary_dilation((image == 0).all(axis=2))  # with its one-pixel fringe (FRINGE_PX)
    assert (mask[border] == 255).all() and (mask[~border] < 3).all()
    overlay = np.asarray(Image.open(out / "pano.overlay.png"))  # no data black (README), its ring too
    assert (overlay[border] == 0).all() and (overlay[~border] > 0).any(axis=-1).all()
    row = read_manifest(out)["pano.png"]
    fractions = sum(float(row[f"frac_{n}"]) for n in ("smooth_volcanic", "rough_olivine", "other"))
    assert fractions == pytest.approx(1 - border.mean(), abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nodata_fraction"] == pytest.approx(border.mean(), abs=1e-5)
    assert sum(summary["unit_fractions"].values()) == pytest.approx(1.0)  # of the pixels with data
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_scored"] == 1 and metrics["overall"]["pixels"] == int((~border).sum())

    off = tmp_path / "off"
    assert run(make_cfg(tmp_path, ckpt, inp, off, "nodata_max=null")) == 0
    assert (read_mask(off / "pano.mask.png") < 3).all()


def test_greyscale_images_given_to_a_colour_model_are_counted_and_said(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Navcam frame sent to a Mastcam (colour) model used to be mapped without a word about the mismatch."""
    inp = tmp_path / "in"
    save_rgb(inp / "colour.png", 40, 48)
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 48), dtype=np.uint8)).save(
        inp / "grey.png"
    )
    capsys.readouterr()
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["greyscale_inputs_for_colour_model"] == 1
    assert "1 greyscale image went to a model that reads colour (trained on 'test' data)" in summary["text"]
    assert "experiment=marsscapes_ai4mars" in capsys.readouterr().out
    grey = np.asarray(Image.open(inp / "grey.png"))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(inp / "grey_as_rgb.png")  # Navcam as R = G = B
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out3")) == 0
    assert (
        json.loads((tmp_path / "out3" / "summary.json").read_text())["greyscale_inputs_for_colour_model"] == 2
    )
    assert {k: r["greyscale"] for k, r in read_manifest(tmp_path / "out3").items()} == {
        "colour.png": "0",
        "grey.png": "1",
        "grey_as_rgb.png": "1",
    }
    # A resumed run that skips them all still counts them in summary.json (it counted only the images it
    # predicted itself), also after a kill left no manifest: the contact files keep the flag. Its last line
    # does not say them again (every re-run repeated the note): the run that predicted them said it.
    (tmp_path / "out3" / "manifest.csv").unlink()
    capsys.readouterr()
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out3")) == 0
    resumed = json.loads((tmp_path / "out3" / "summary.json").read_text())
    assert resumed["counts"]["skipped"] == 3 and resumed["greyscale_inputs_for_colour_model"] == 2
    assert "greyscale image" not in resumed["text"]
    assert "greyscale image" not in " ".join(capsys.readouterr().out.split())  # the console's lines
    assert resumed["greyscale_inputs_for_colour_model_this_run"] == 0
    # One of them predicted again (its mask gone), the other skipped: the note counts the one.
    (tmp_path / "out3" / "grey.mask.png").unlink()
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out3")) == 0
    again = json.loads((tmp_path / "out3" / "summary.json").read_text())
    assert again["counts"]["ok"] == 1 and again["greyscale_inputs_for_colour_model"] == 2
    assert "1 greyscale image went to a model that reads colour" in again["text"], again["text"]
    (inp / "grey.png").unlink()
    (inp / "grey_as_rgb.png").unlink()
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out2")) == 0
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["greyscale_inputs_for_colour_model"] == 0 and "greyscale image" not in summary["text"]


def test_a_greyscale_image_whose_camera_file_failed_is_in_this_run_s_greyscale_note(
    tmp_path: Path, ckpt: Path
) -> None:
    """The note counted this run's images by status ``ok``: a grey image predicted this run whose camera file
    was refused was an ``error`` row with every pixel output, and was left out of the note (and of
    ``greyscale_inputs_for_colour_model_this_run``), which then said nothing. Skipped by the next run (the
    broken camera file said on every run), it is not counted again."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    grey = np.random.default_rng(5).integers(0, 256, (40, 48), dtype=np.uint8)
    Image.fromarray(grey).save(inp / "grey.png")
    (inp / "grey.camera.json").write_text("{not json")
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1  # the camera file's error row
    row = read_manifest(out)["grey.png"]
    assert row["status"] == "ok" and row["camera_error"] and row["greyscale"] == "1"
    assert (out / "grey.mask.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["greyscale_inputs_for_colour_model_this_run"] == 1
    assert "1 greyscale image went to a model that reads colour" in summary["text"], summary["text"]
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1  # skipped, its camera file said again
    again = json.loads((out / "summary.json").read_text())
    assert read_manifest(out)["grey.png"]["status"] == "skipped" and again["counts"]["ok"] == 0
    assert again["greyscale_inputs_for_colour_model"] == 1
    assert again["greyscale_inputs_for_colour_model_this_run"] == 0 and "greyscale image" not in again["text"]


def test_inputs_sharing_a_stem_are_error_rows_said_on_the_console(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """x.jpg beside x.png would write the same x.mask.png: both are refused, in the manifest and, like every
    failed input, in the run's log (they used to appear in manifest.csv only)."""
    inp = tmp_path / "in"
    save_rgb(inp / "x.png", 40, 48)
    save_rgb(inp / "x.jpg", 40, 48, seed=1)
    save_rgb(inp / "y.png", 40, 48, seed=2)
    with caplog.at_level("WARNING", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out")) == 1
    rows = read_manifest(tmp_path / "out")
    assert [rows[k]["status"] for k in ("x.jpg", "x.png", "y.png")] == ["error", "error", "ok"]
    warned = [r.getMessage() for r in caplog.records]
    for name in ("x.jpg", "x.png"):
        assert any(m.startswith(f"{name}: ") and "same folder and stem" in m for m in warned), warned


def test_bad_inputs_become_error_rows_and_the_run_goes_on(tmp_path: Path, ckpt: Path) -> None:
    inp = tmp_path / "in"
    save_rgb(inp / "good.png", 40, 50)
    save_rgb(inp / "full.png", 60, 60, seed=3)
    data = (inp / "full.png").read_bytes()
    (inp / "truncated.png").write_bytes(data[: len(data) // 2])
    (inp / "corrupt.png").write_bytes(data[:40] + bytes(range(256)) * 8)
    (inp / "text.jpg").write_text("this is not an image\n")
    (inp / "empty.png").write_bytes(b"")
    (inp / "loop.png").symlink_to(inp / "loop.png")  # unreadable even as root: ELOOP
    (inp / "cycle").symlink_to(inp, target_is_directory=True)  # a folder link loop must not hang the walk
    save_rgb(inp / "twin.jpg", 30, 30)
    save_rgb(inp / "twin.png", 30, 30)
    save_rgb(inp / "badcam.png", 30, 30)
    (inp / "badcam.camera.json").write_text("{ not json")
    out = tmp_path / "out"
    code = run(make_cfg(tmp_path, ckpt, inp, out, "num_workers=1"))
    assert code == 1
    rows = read_manifest(out)
    assert rows["good.png"]["status"] == "ok" and rows["full.png"]["status"] == "ok"
    expected = {
        "truncated.png": "truncated or corrupt",
        "corrupt.png": "",
        "text.jpg": "not an image",
        "empty.png": "empty",
        "loop.png": "link",
        "twin.jpg": "rename one",
        "twin.png": "rename one",
    }
    for name, phrase in expected.items():
        assert rows[name]["status"] == "error", name
        assert phrase in rows[name]["message"], (name, rows[name]["message"])
        assert rows[name]["message"], name
    assert not any(k.startswith("cycle/") for k in rows)
    # A broken camera file is refused, its image predicted all the same (without metres): not a failure.
    badcam = rows["badcam.png"]
    assert badcam["status"] == "ok" and "badcam.camera.json" in badcam["camera_error"], badcam
    assert not (out / "twin.mask.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["error"] == len(expected)
    assert list(summary["camera_files_refused"]) == ["badcam.png"]
    assert summary["exit_status"] == 1
    assert summary["exit_reasons"] == ["inputs_failed", "camera_files_refused"]
    assert "error: " in (out / "index.html").read_text()
    # allow_errors: same failures and refusal, exit status 0; the good inputs are skipped this time.
    assert run(make_cfg(tmp_path, ckpt, inp, out, "allow_errors=true")) == 0
    rows = read_manifest(out)
    assert rows["good.png"]["status"] == "skipped" and rows["empty.png"]["status"] == "error"
    assert rows["badcam.png"]["status"] == "skipped" and rows["badcam.png"]["camera_error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 0 and summary["exit_reasons"] == []  # allowed: not reasons to fail


def test_a_labelled_dataset_root_as_input_dir_is_warned_about(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """input_dir at the root of a labelled set (images/ beside masks/) predicted the label masks as photos."""
    root = tmp_path / "scenes"
    save_rgb(root / "images" / "a.png", 40, 40)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / "a.png")
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, root, tmp_path / "out")) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    fix = f"give input_dir={root / 'images'} labels_dir={root / 'masks'}"
    assert "holds images/ and masks/" in said and fix in said
    # On a long run that warning scrolled away: the run's last line (and summary.json) says it again.
    sentence = (
        "1 of the inputs is in masks/, a labelled dataset's masks predicted as photographs: to predict the "
        f"photographs and score them against the masks, {fix}"
    )
    printed = " ".join(capsys.readouterr().out.split())
    assert sentence in printed and printed.rstrip(".").endswith(fix), printed[-300:]
    assert sentence in json.loads((tmp_path / "out" / "summary.json").read_text())["text"]
    # A plain folder's last line does not say it.
    plain = tmp_path / "plain"
    save_rgb(plain / "a.png", 40, 40)
    assert run(make_cfg(tmp_path, ckpt, plain, tmp_path / "out2")) == 0
    assert "labelled dataset" not in " ".join(capsys.readouterr().out.split())
    assert "labelled dataset" not in json.loads((tmp_path / "out2" / "summary.json").read_text())["text"]


def test_a_labelled_dataset_root_whose_masks_the_patterns_leave_out_is_not_warned_about(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """input_dir at a labelled set's root with patterns that do not take its masks (JPEG photographs, PNG
    masks, patterns=[jpg]) predicts the photographs only: the start's warning said the masks were predicted
    as photographs all the same, where the last line rightly said nothing."""
    root = tmp_path / "scenes"
    save_rgb(root / "images" / "a.jpg", 40, 40)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / "a.png")
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, root, tmp_path / "out", "patterns=[jpg]")) == 0
    assert sorted(read_manifest(tmp_path / "out")) == ["images/a.jpg"]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "labelled dataset" not in said and "masks/" not in said, said
    # The masks taken by the patterns: the warning counts them, as the last line does.
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, root, tmp_path / "out2", "patterns=[jpg,png]")) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert (
        "input_dir " + str(root) + " holds images/ and masks/, a labelled dataset's layout: the 1 file in "
        in said
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of chmod 000")
def test_unreadable_file_is_an_error_row(tmp_path: Path, ckpt: Path) -> None:
    inp = tmp_path / "in"
    save_rgb(inp / "good.png", 40, 50)
    save_rgb(inp / "locked.png", 40, 50)
    (inp / "locked.png").chmod(0)
    try:
        assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out")) == 1
        rows = read_manifest(tmp_path / "out")
        assert rows["locked.png"]["status"] == "error" and "permission" in rows["locked.png"]["message"]
    finally:
        (inp / "locked.png").chmod(0o644)


def test_misspelt_input_label_and_checkpoint_paths_are_told_the_one_beside_them(
    tmp_path: Path, ckpt: Path
) -> None:
    """A typo in a path (``input_dir=panos`` for ``pano``, ``labels_dir=own/mask``, ``defualt.ckpt``) was
    told that the path does not exist, naming nothing that does."""
    inp, out = tmp_path / "pano", tmp_path / "out"
    save_rgb(inp / "x.png", 40, 40)
    (tmp_path / "own" / "masks").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        run(make_cfg(tmp_path, ckpt, tmp_path / "panos", out))
    assert str(info.value).endswith(f"did you mean input_dir={inp}?"), str(info.value)
    with pytest.raises(DataError) as info:
        run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={tmp_path / 'own' / 'mask'}"))
    assert f"fix labels_dir (did you mean labels_dir={tmp_path / 'own' / 'masks'}?) or drop it" in str(
        info.value
    )
    typo = ckpt.with_name(ckpt.stem[:-2] + ckpt.stem[-1] + ckpt.stem[-2] + ckpt.suffix)  # last two swapped
    assert typo != ckpt and not typo.exists()
    with pytest.raises(FileNotFoundError) as info:
        run(make_cfg(tmp_path, typo, inp, out))
    assert f"does not exist; did you mean ckpt_path={ckpt}? Else pass a .ckpt" in str(info.value), str(
        info.value
    )
    with pytest.raises(DataError) as info:
        run(make_cfg(tmp_path, ckpt, tmp_path / "zzzzzz", out))
    assert "did you mean" not in str(info.value)
    assert not out.exists()


def test_folder_level_problems_stop_before_writing(tmp_path: Path, ckpt: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DataError, match="does not exist"):
        run(make_cfg(tmp_path, ckpt, tmp_path / "missing", out))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images matching"):
        run(make_cfg(tmp_path, ckpt, empty, out))
    inp = tmp_path / "in"
    save_rgb(inp / "x.png", 40, 40)
    with pytest.raises(ConfigError, match="inside input_dir"):
        run(make_cfg(tmp_path, ckpt, inp, inp / "predictions"))
    with pytest.raises(ConfigError, match="inside input_dir"):
        run(make_cfg(tmp_path, ckpt, inp, inp))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(make_cfg(tmp_path, tmp_path / "nope.ckpt", inp, out))
    bad_ckpt = tmp_path / "bad.ckpt"
    bad_ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        run(make_cfg(tmp_path, bad_ckpt, inp, out))
    with pytest.raises(ConfigError, match="multiple of the network stride"):
        run(make_cfg(tmp_path, ckpt, inp, out, "tile=60"))
    with pytest.raises(ConfigError, match="unknown contact option"):
        run(make_cfg(tmp_path, ckpt, inp, out, "+contact.no_such_option=1"))
    # It said "'<' not supported between instances of 'str' and 'int'".
    with pytest.raises(
        ConfigError, match=r"contact\.min_length_px='x': expected a finite number, e\.g\. contact\."
    ):
        run(make_cfg(tmp_path, ckpt, inp, out, "contact.min_length_px=x"))
    with pytest.raises(ConfigError, match="min_unit_area_px must be a whole number"):
        run(make_cfg(tmp_path, ckpt, inp, out, "min_unit_area_px=-5"))
    # These ran with an empty map titled "range <= -1 m", or stopped on a bare int()/float() message.
    for value in ("-1", "0", "abc"):
        with pytest.raises(ConfigError, match=r"max_range_m must be a finite distance in metres > 0"):
            run(make_cfg(tmp_path, ckpt, inp, out, f"max_range_m={value}"))
    for value in ("abc", "0", "-64"):
        with pytest.raises(ConfigError, match=r"tile must be null .* or a whole number of pixels"):
            run(make_cfg(tmp_path, ckpt, inp, out, f"tile={value}"))
    # Refused only after manifest.csv, summary.json and index.html were written (stopped_early: null).
    with pytest.raises(ConfigError, match=r"num_workers must be >= 0"):
        run(make_cfg(tmp_path, ckpt, inp, out, "num_workers=-1"))
    assert not out.exists() and not (inp / "predictions").exists()


def _in_an_sbatch_script(monkeypatch: pytest.MonkeyPatch, ntasks: int) -> None:
    """The variables an ``sbatch`` script of ``--ntasks-per-node=<ntasks>`` sees in its own process: the
    job's counts and rank 0, but none of the ``SLURM_STEP_*`` that ``srun`` sets for the tasks it starts."""
    for name in (
        "SLURM_STEP_ID",
        "SLURM_STEPID",
        "SLURM_STEP_NUM_TASKS",
        "TORCHELASTIC_RUN_ID",
        "WORLD_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "predict",
        "SLURM_NTASKS": str(ntasks),
        "SLURM_NTASKS_PER_NODE": str(ntasks),
        "SLURM_NNODES": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "MASTER_ADDR": "127.0.0.1",  # Lightning's SLURMEnvironment writes these into os.environ
        "MASTER_PORT": "29500",
    }.items():
        monkeypatch.setenv(name, value)


def test_predict_in_an_sbatch_script_of_several_tasks_runs_as_one_process(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python predict.py`` (devices=1) in a script of ``--ntasks-per-node=2``, CPUs for the loaders: the
    script is one process, but it was taken for rank 0 of 2 and Lightning stopped it (devices=1 against
    --ntasks-per-node=2; with --ntasks=2, "--ntasks ... is not supported")."""
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    save_rgb(inp / "b.png", 40, 40, seed=2)
    _in_an_sbatch_script(monkeypatch, 2)
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert set(read_manifest(out)) == {"a.png", "b.png"} and (out / "a.mask.png").is_file()


def test_sharded_predict_in_an_sbatch_script_without_srun_is_refused(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python predict.py devices=2`` in a script of ``--ntasks-per-node=2`` (srun forgotten): Lightning took
    the script for rank 0 of 2 and waited for rank 1, which nothing starts, until the time limit. It is
    refused before anything is written, naming srun; with srun's step variables it is let through."""
    from marsunits.inference import distributed

    def launched(*_: object) -> None:
        raise AssertionError("ranks were launched")  # the hang, made an error here

    monkeypatch.setattr(distributed, "launch", launched)
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    _in_an_sbatch_script(monkeypatch, 2)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"SLURM_NTASKS=2.*srun python predict\.py \.\.\. devices=2"):
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2"))
    assert not out.exists()
    monkeypatch.setenv("SLURM_STEP_ID", "0")  # a task that srun started goes on to launch its rank
    with pytest.raises(AssertionError, match="ranks were launched"):
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2"))


def test_sharded_predict_on_several_nodes_without_a_launcher_is_refused(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``predict.py devices=2 num_nodes=2`` on a workstation (no srun, torchrun, MASTER_ADDR or NODE_RANK):
    Fabric spawned 2 ranks of a world of 4 at 127.0.0.1 and waited for the other machine's ("MEMBER: 1/4")
    until the process-group timeout. It is refused before anything is written, with the ways to start the
    other machine; the same command of a manual launch (NODE_RANK, another machine's MASTER_ADDR) goes on."""
    from marsunits.inference import distributed

    def launched(*_: object) -> None:
        raise AssertionError("ranks were launched")  # the hang, made an error here

    monkeypatch.setattr(distributed, "launch", launched)
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    out = tmp_path / "out"
    refused = r"num_nodes=2 asks for 2 machines.*MASTER_PORT=<free port> NODE_RANK=<0\.\.1>.*set num_nodes=1"
    with pytest.raises(ConfigError, match=refused):
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2", "num_nodes=2"))
    assert not out.exists()
    monkeypatch.setenv("MASTER_ADDR", "10.10.10.16")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("NODE_RANK", "1")
    with pytest.raises(AssertionError, match="ranks were launched"):
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2", "num_nodes=2"))


def test_one_device_on_each_of_several_machines_launched_by_hand_is_sharded(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``predict.py devices=1 num_nodes=2`` on two machines launched by hand (MASTER_ADDR, NODE_RANK: no
    launcher's world size) was not sharded: each machine predicted every image in one process. It now
    joins the world of 2 (Fabric's ranks; launching made an error here); num_nodes=0 is one line naming
    num_nodes."""
    from marsunits.inference import distributed

    def launched(*_: object) -> None:
        raise AssertionError("ranks were launched")

    monkeypatch.setattr(distributed, "launch", launched)
    for name in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_ID", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "10.10.10.16")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("NODE_RANK", "1")
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    out = tmp_path / "out"
    with pytest.raises(AssertionError, match="ranks were launched"):
        run(make_cfg(tmp_path, ckpt, inp, out, "num_nodes=2"))
    assert not (out / "a.mask.png").exists()
    with pytest.raises(ConfigError, match=r"num_nodes must be a positive integer.*got 0; give num_nodes=1"):
        run(make_cfg(tmp_path, ckpt, inp, out, "num_nodes=0"))
    assert not out.exists()


def _in_an_srun_step(
    monkeypatch: pytest.MonkeyPatch, ntasks: int, per_node: int | None, nodes: int, started: int
) -> None:
    """The variables of rank 0 of an ``srun`` step of ``started`` tasks in a job of ``ntasks`` tasks
    (``--ntasks-per-node=<per_node>``, ``--nodes=<nodes>``); ``started`` < ``ntasks`` is a step of
    ``srun --preserve-env``, which keeps the job's ``SLURM_NTASKS``. Ranks that would be launched raise."""
    from marsunits.inference import distributed

    def launched(*_: object) -> None:
        raise AssertionError("ranks were launched")  # the hang (or Lightning's traceback), made an error here

    monkeypatch.setattr(distributed, "launch", launched)
    _in_an_sbatch_script(monkeypatch, ntasks)
    monkeypatch.setenv("SLURM_NNODES", str(nodes))
    if per_node is None:
        monkeypatch.delenv("SLURM_NTASKS_PER_NODE")
    else:
        monkeypatch.setenv("SLURM_NTASKS_PER_NODE", str(per_node))
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", str(started))


def test_sharded_predict_in_a_preserve_env_step_of_fewer_tasks_is_refused(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``srun --preserve-env python predict.py devices=2`` in a job of ``--ntasks-per-node=2``: the step has
    one task, but Fabric took SLURM_NTASKS=2 for the world and waited for rank 1, which nothing starts. It is
    refused before anything is written, naming the fix; ``devices=1`` there is one process and predicts
    every image (it was taken for rank 0 of 2 too)."""
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    save_rgb(inp / "b.png", 40, 40, seed=2)
    _in_an_srun_step(monkeypatch, ntasks=2, per_node=2, nodes=1, started=1)
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2"))
    message = str(refused.value)
    assert "SLURM_STEP_NUM_TASKS=1" in message and "SLURM_NTASKS=2" in message, message
    assert "--preserve-env" in message and "srun python predict.py ... devices=2" in message, message
    assert "trainer" not in message, message  # predict.py's options, not train.py's
    assert not out.exists()
    assert run(make_cfg(tmp_path, ckpt, inp, out, "devices=1")) == 0
    assert set(read_manifest(out)) == {"a.png", "b.png"}
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")  # the step started both ranks: each joins the world
    with pytest.raises(AssertionError, match="ranks were launched"):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out2", "devices=2"))


@pytest.mark.parametrize(
    ("options", "ntasks", "per_node", "nodes", "named"),
    [
        # srun -n 2 --ntasks-per-node 2 with devices=1: Fabric raised ValueError (devices vs ntasks-per-node).
        (["devices=1"], 2, 2, 1, ["--ntasks-per-node=2", "set devices=2"]),
        # srun -n 4 without --ntasks-per-node: Fabric raised RuntimeError ("--ntasks ... not supported").
        (["devices=2"], 4, None, 1, ["without --ntasks-per-node", "--ntasks-per-node 2", "devices=2"]),
        # two nodes of 2 with num_nodes=1: Fabric raised ValueError (num_nodes vs --nodes).
        (["devices=2"], 4, 2, 2, ["--nodes=2", "set num_nodes=2"]),
    ],
)
def test_sharded_predict_in_an_srun_step_that_does_not_fit_is_refused_in_one_line(
    tmp_path: Path,
    ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    ntasks: int,
    per_node: int | None,
    nodes: int,
    named: list[str],
) -> None:
    """A step whose layout Fabric would stop with a traceback (naming ``devices=``, not predict.py's fix)
    is refused on every rank before anything is written, with predict.py's options in the fix."""
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    _in_an_srun_step(monkeypatch, ntasks, per_node, nodes, started=ntasks)
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(tmp_path, ckpt, inp, out, *options))
    message = str(refused.value)
    for part in named:
        assert part in message, (part, message)
    assert "trainer" not in message, message
    assert not out.exists()


def test_sharded_predict_of_fewer_tasks_than_devices_times_nodes_is_let_through(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``srun --nodes 2 --ntasks-per-node 4 -n 6 python predict.py devices=4 num_nodes=2``: Fabric's world is
    SLURM_NTASKS=6 and each rank SLURM_PROCID, and the shards are ``todo[rank::6]``, so every image is
    predicted once (training refuses this layout: its sampler splits into 8 shards). A step of 8 fits too."""
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    for ntasks in (6, 8):
        _in_an_srun_step(monkeypatch, ntasks, per_node=4, nodes=2, started=ntasks)
        with pytest.raises(AssertionError, match="ranks were launched"):
            run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out", "devices=4", "num_nodes=2"))


def test_ranks_spawned_in_an_sbatch_script_of_one_task_are_given_lightnings_ranks_not_slurms(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default check of the slow end-to-end test below, without spawning: in a script of ``--ntasks=1``
    the Fabric that spawns ``devices=2`` ranks takes their ranks and world size from its own
    ``LightningEnvironment`` (rank 0 of 2), not from ``SLURM_PROCID=0`` of ``SLURM_NTASKS=1``."""
    from lightning.fabric import Fabric
    from lightning.fabric.plugins.environments import LightningEnvironment

    seen: dict[str, Any] = {}

    class LaunchedError(Exception):
        pass

    def launch(fabric: Fabric, *_: object, **__: object) -> None:
        seen["environment"] = fabric.strategy.cluster_environment  # type: ignore[attr-defined]
        seen["world_size"] = fabric.world_size
        raise LaunchedError

    monkeypatch.setattr(Fabric, "launch", launch)
    inp = tmp_path / "in"
    save_rgb(inp / "0.png", 40, 40)
    _in_an_sbatch_script(monkeypatch, 1)
    for name in ("SLURM_NTASKS_PER_NODE", "MASTER_ADDR", "MASTER_PORT"):  # --ntasks=1 alone
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LaunchedError):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out", "devices=2", "threads=1"))
    assert type(seen["environment"]) is LightningEnvironment and seen["world_size"] == 2


@pytest.mark.slow  # two real processes, as tests/test_ddp.py; the check above runs by default
def test_spawned_ranks_in_an_sbatch_script_of_one_task_take_their_own_ranks(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python predict.py devices=2`` in a script of ``--ntasks=1`` (the GPUs of one task, as
    ``--gres=gpu:2`` gives them): predict spawns its ranks itself, but Fabric read their ranks from SLURM
    (``SLURM_PROCID=0`` of ``SLURM_NTASKS=1``) for each of them, so both predicted every image into the same
    files and the run ended in a traceback. Each rank now takes its own rank and shard."""
    inp = tmp_path / "in"
    for i in range(3):
        save_rgb(inp / f"{i}.png", 40, 40, seed=i)
    _in_an_sbatch_script(monkeypatch, 1)
    for name in ("SLURM_NTASKS_PER_NODE", "MASTER_ADDR", "MASTER_PORT"):  # --ntasks=1 alone; a free port
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out, "devices=2", "threads=1")) == 0
    rows = read_manifest(out)
    assert set(rows) == {"0.png", "1.png", "2.png"} and {r["status"] for r in rows.values()} == {"ok"}


def test_spawned_ranks_in_a_job_of_one_task_per_node_are_not_refused(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--ntasks-per-node=1 --gres=gpu:2`` and ``python predict.py devices=2``: one task, whose ranks
    predict spawns itself (with their own ranks, not SLURM's), so ``--ntasks-per-node=1`` is not the
    processes per node; it was refused, telling the user to set devices=1. Two nodes for num_nodes=1 (or
    num_nodes=2 in a job of one node) is still refused."""
    from marsunits.inference import distributed

    def launched(*_: object) -> None:
        raise AssertionError("ranks were launched")

    monkeypatch.setattr(distributed, "launch", launched)
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 40, 40, seed=1)
    _in_an_sbatch_script(monkeypatch, 1)
    out = tmp_path / "out"
    with pytest.raises(AssertionError, match="ranks were launched"):
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2"))
    with pytest.raises(ConfigError, match=r"srun --nodes 2 .* num_nodes=2"):
        run(make_cfg(tmp_path, ckpt, inp, out, "devices=2", "num_nodes=2"))


def test_predict_yaml_contact_options_are_the_extraction_defaults() -> None:
    """configs/predict.yaml lists every ContactConfig field (so ``contact.min_length_px=20`` overrides it
    without Hydra's ``+``) at the value the library uses when called without a config."""
    from dataclasses import asdict

    from marsunits.boundary.extract import ContactConfig

    listed = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "configs" / "predict.yaml").contact)
    assert listed == asdict(ContactConfig())


def test_predict_py_prints_one_sentence_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing checkpoint and input folder: one line, status 2, no traceback. Through predict.py's
    ``__main__`` up to ``main()`` in this process (a predict.py start costs seconds of torch imports; that
    predict.py runs these checks, one line and status 2 on a refusal, is
    ``test_cli_overrides.py::test_a_wrong_predict_value_is_refused_before_its_log_folder_is_made``'s, through
    predict.py itself)."""
    from marsunits import cli_overrides

    monkeypatch.setenv("MARSUNITS_TRACEBACK", "")
    args = [
        f"ckpt_path={tmp_path / 'm.ckpt'}",
        f"input_dir={tmp_path / 'missing'}",
        f"output_dir={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "predict.py"), *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:  # predict.py's __main__, as written there
        cli_overrides.note_another_copy_of_the_package(REPO_ROOT, prog="predict.py")
        cli_overrides.warn_sweeps_taken_as_one_value(sys.argv[1:], prog="predict.py")
        sys.argv[1:] = cli_overrides.quoted_path_overrides(
            cli_overrides.home_expanded_overrides(sys.argv[1:])
        )
        cli_overrides.exit_on_unknown_option(REPO_ROOT / "configs", "predict", prog="predict.py")
    err = capsys.readouterr().err
    assert ended.value.code == 2, err
    assert "does not exist" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("predict.py: error: ")]) == 1, err
    assert not (tmp_path / "hydra").exists()


def test_predict_help_lists_predicts_options_not_training_groups(tmp_path: Path) -> None:
    """Hydra's default help lists every config group of configs/ (model, trainer, experiment...), none of
    which predict.py reads; its own help shows the usage line and its options with their defaults."""
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "predict.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: python predict.py ckpt_path=" in proc.stdout
    assert "ckpt_path: ???" in proc.stdout and "min_unit_area_px: 200" in proc.stdout
    for training_only in ("experiment:", "trainer:", "model:", "Configuration groups"):
        assert training_only not in proc.stdout
    assert not (tmp_path / "logs").exists()  # help writes no run folder


def test_labels_dir_writes_metrics(tmp_path: Path, ckpt: Path) -> None:
    inp = tmp_path / "in"
    save_rgb(inp / "sub" / "a.png", 48, 56, seed=1)
    save_rgb(inp / "b.png", 40, 40, seed=2)
    save_rgb(inp / "c.png", 40, 40, seed=3)
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    # Labels equal to the predictions (with an ignored band) score perfectly.
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    lab = np.asarray(Image.open(out / "sub" / "a.mask.png")).copy()
    lab[:5] = 255
    Image.fromarray(lab).save(labels / "sub" / "a.png")
    # b's label is the prediction shifted to another class everywhere: IoU 0 for every class it touches.
    b = np.asarray(Image.open(out / "b.mask.png"))
    Image.fromarray(((b + 1) % 3).astype(np.uint8)).save(labels / "b.png")
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_scored"] == 2 and metrics["missing_labels"] == ["c.png"]
    a = metrics["per_image"]["sub/a.png"]
    assert a["pixel_accuracy"] == 1.0 and a["pixels"] == lab.size - 5 * 56
    assert metrics["per_image"]["b.png"]["pixel_accuracy"] == 0.0
    cm = np.array(metrics["overall"]["confusion_matrix"])
    assert cm.sum() == lab.size - 5 * 56 + b.size
    assert metrics["overall"]["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    # A labels_dir whose names match no input scored nothing and said only "Scored 0 image(s)"; it exited
    # 0, which a script scoring a model took for scores written. Status 1 now, the outputs all written and
    # the last sentence saying why and what to do.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    Image.fromarray(b).save(wrong / "frame_0001.png")
    for report in ("manifest.csv", "summary.json", "metrics.json", "index.html"):
        (out / report).unlink()
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={wrong}")) == 1
    for report in ("manifest.csv", "summary.json", "metrics.json", "index.html", "b.mask.png"):
        assert (out / report).is_file(), report
    text = json.loads((out / "summary.json").read_text())["text"]
    assert "No label mask matched an input" in text and "(for b.png: b.png)" in text
    assert text.endswith(
        "Exit status 1: labels_dir was given but none of the 3 images with a predicted mask could be scored "
        "(why: above, and metrics.json missing_labels and label_errors); the outputs are written. Fix the "
        "labels or labels_dir and run again, which scores without predicting again, or leave labels_dir out "
        "to only predict."
    ), text
    assert json.loads((out / "metrics.json").read_text())["images_scored"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["nothing_scored"]
    # One named with a word added (b_mask.png) was counted the same, without a word that it was there.
    Image.fromarray(b).save(wrong / "b_mask.png")
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={wrong}")) == 1
    text = json.loads((out / "summary.json").read_text())["text"]
    assert (
        "No label mask matched" not in text and "b_mask.png: its name is the image's, b, with '_mask'" in text
    )
    assert "rename it b.png" in text and text.endswith("or leave labels_dir out to only predict.")
    # Labels that were found but could not be scored (here: another size) are not "no label matched".
    unusable = tmp_path / "unusable"
    unusable.mkdir()
    Image.fromarray(b[:-3]).save(unusable / "b.png")
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={unusable}")) == 1
    text = json.loads((out / "summary.json").read_text())["text"]
    assert "No label mask matched" not in text and "1 label could not be scored" in text
    # allow_errors (inputs that failed) does not make a run that scored nothing a success.
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={unusable}", "allow_errors=true")) == 1
    # One image scored, the others without a label: status 0, and no such sentence.
    Image.fromarray(b).save(unusable / "b.png")
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={unusable}")) == 0
    text = json.loads((out / "summary.json").read_text())["text"]
    assert "Scored 1 image against labels" in text and "Exit status 1" not in text


def test_a_run_stopped_before_reaching_its_labelled_images_is_not_said_to_exit_1(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run given labels_dir, interrupted (Ctrl-C) before the images with a label were reached, scored
    none: its reports ended "Exit status 1: ... Fix the labels or labels_dir", yet it exits 130 and its
    labels are fine (the re-run the stop's line asks for scores them). A stopped run ends as its stop. It was
    also told "No label mask matched an input ... check labels_dir", of labels it had not yet looked for."""
    from marsunits.inference import writers

    inp, labels, out = tmp_path / "in", tmp_path / "labels", tmp_path / "out"
    for i in range(3):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    labels.mkdir()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(labels / "img2.png")  # the last image's only
    real = writers.write_png_atomic
    calls = {"n": 0}

    def interrupted(path: Path, array: np.ndarray) -> Path:
        calls["n"] += 1
        if calls["n"] == 3:  # the second image's overlay: one image done
            raise KeyboardInterrupt
        return real(path, array)

    monkeypatch.setattr(writers, "write_png_atomic", interrupted)
    with pytest.raises(SystemExit) as info:
        report_user_errors(
            lambda: run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")), prog="predict.py"
        )
    assert info.value.code == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 1 and summary["stopped_early"].startswith("was interrupted (Ctrl-C)")
    assert summary["exit_status"] == 130 and summary["exit_reasons"] == ["stopped"]
    assert "Exit status 1" not in summary["text"], summary["text"]
    shown = " ".join(capsys.readouterr().out.split())
    assert "Exit status 1" not in shown
    # Nor told to check labels_dir: img2's label is there, the run stopped before img2.
    for said in (" ".join(summary["text"].split()), shown):
        assert "No label mask matched" not in said and "check labels_dir" not in said, said
        assert (
            "No image scored yet: none of the images it reached has a label (for img0.png: img0.png), and "
            "the run stopped before the other 2 inputs, whose labels are looked for when it goes on." in said
        ), said
    monkeypatch.setattr(writers, "write_png_atomic", real)
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")) == 0  # goes on, and scores
    assert json.loads((out / "metrics.json").read_text())["images_scored"] == 1


def test_labels_class_map_naming_a_data_set_the_model_was_not_trained_on_scores_with_its_shipped_map(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AI4Mars labels scored with a model not trained on AI4Mars (the test model's data set is 'test'),
    ``labels_class_map=ai4mars``: refused before, spelling the map to give. It is read with the map shipped
    for AI4Mars, said once in the log, recorded in metrics.json, and scores as that map given as a mapping;
    so it is with an AI4Mars model that carries no map."""
    from marsunits.data.class_map import DATA_SET_LABEL_MAPS, data_set_label_map

    inp, labels, out = tmp_path / "in", tmp_path / "labels", tmp_path / "out"
    save_rgb(inp / "a.png", 40, 48, seed=1)
    labels.mkdir()
    ai4mars = np.random.default_rng(0).choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(40, 48))
    Image.fromarray(ai4mars).save(labels / "a.png")
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert (
            run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", "labels_class_map=ai4mars")) == 0
        )
    notes = [r.getMessage() for r in caplog.records if "map shipped for ai4mars labels" in r.getMessage()]
    # The test model has no map: it is not told that its "training map" was not used.
    assert len(notes) == 1 and "training map" not in notes[0], notes
    by_name = json.loads((out / "metrics.json").read_text())
    assert by_name["images_scored"] == 1
    assert {int(k): v for k, v in by_name["labels_class_map"].items()} == data_set_label_map("ai4mars")
    given = f"labels_class_map={DATA_SET_LABEL_MAPS['ai4mars']}"
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", given)) == 0
    as_mapping = json.loads((out / "metrics.json").read_text())
    assert as_mapping["overall"]["miou"] is not None
    assert by_name["overall"]["miou"] == as_mapping["overall"]["miou"]
    assert by_name["overall"]["confusion_matrix"] == as_mapping["overall"]["confusion_matrix"]
    # The same model saying it was trained on ai4mars but carrying no class map (an older or edited
    # checkpoint): refused, "trained on masks in project ids", spelling out the map to paste. The shipped
    # map, with a note saying the model has none.
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    for block in (state["hyper_parameters"], state["marsunits"]):
        block["dataset"], block["class_map"] = "ai4mars", None
    no_map = tmp_path / "ai4mars_without_a_map.ckpt"
    torch.save(state, no_map)
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert (
            run(
                make_cfg(
                    tmp_path, no_map, inp, tmp_path / "o2", f"labels_dir={labels}", "labels_class_map=ai4mars"
                )
            )
            == 0
        )
    notes = [r.getMessage() for r in caplog.records if "map shipped for ai4mars labels" in r.getMessage()]
    assert len(notes) == 1 and "carries no class_map of ai4mars" in notes[0], notes
    assert "give labels_class_map=null if the labels hold project ids" in notes[0], notes
    without = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert without["labels_class_map"] == by_name["labels_class_map"]
    assert without["overall"]["confusion_matrix"] == by_name["overall"]["confusion_matrix"]


def test_minimum_mapping_unit_leaves_no_small_patch_inside_the_other_unit(tmp_path: Path, ckpt: Path) -> None:
    from scipy import ndimage

    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 96, 128, seed=4)  # noise: the tiny model's map is full of specks
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    assert run(make_cfg(tmp_path, ckpt, inp, plain, "min_unit_area_px=0")) == 0
    assert run(make_cfg(tmp_path, ckpt, inp, merged, "min_unit_area_px=30")) == 0
    before = np.asarray(Image.open(plain / "a.mask.png"))
    after = np.asarray(Image.open(merged / "a.mask.png"))
    eight = np.ones((3, 3), bool)

    def small_touching(mask: np.ndarray) -> int:
        """Unit patches under the minimum mapping unit that touch the other unit (so draw a contact)."""
        count = 0
        for unit in (0, 1):
            patches, n = ndimage.label(mask == unit, structure=eight)
            for k in range(1, n + 1):
                patch = patches == k
                if patch.sum() >= 30:
                    continue
                # Shared boundary as 8-neighbour pixel pairs (the module's definition).
                padded = np.pad(mask, 1, constant_values=255)
                rows, cols = np.nonzero(patch)
                pairs = np.concatenate(
                    [padded[rows + 1 + dr, cols + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
                )
                count += int((pairs == 1 - unit).any())
        return count

    assert small_touching(before) > 0, "the test image should produce small patches"
    assert small_touching(after) == 0
    # Only unit pixels change, into the other unit or (specks bordering it most) 'other'; 'other' stays.
    changed = before != after
    assert changed.any() and set(np.unique(before[changed])) <= {0, 1}
    assert (after[before == 2] == 2).all()
    n_before = len(json.loads((plain / "a.contact.geojson").read_text())["features"])
    n_after = len(json.loads((merged / "a.contact.geojson").read_text())["features"])
    assert n_after <= n_before


def test_confusion_and_scores_on_known_masks() -> None:
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]], dtype=np.uint8)
    cm = confusion_matrix(pred, target)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    s = scores(cm)
    assert s["iou"] == {"smooth_volcanic": 1 / 3, "rough_olivine": 2 / 3, "other": 1 / 2}
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    # A class absent from both has no IoU and is left out of the mean.
    s2 = scores(confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)))
    assert s2["iou"]["rough_olivine"] is None and s2["miou"] == 1.0
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(pred, np.full_like(target, 7))
    with pytest.raises(ValueError, match="label is"):
        confusion_matrix(pred, target[:1])


def test_contacts_get_ground_coordinates_from_a_camera_sidecar(tmp_path: Path) -> None:
    from marsunits.boundary.camera import PinholeCamera
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.image_cameras import add_ground_coordinates

    image = tmp_path / "images" / "x.png"
    save_rgb(image, 60, 80)
    line = ContactLine(pixels=np.array([[5.0, 50.0], [75.0, 52.0]]), confidence=0.8)
    assert add_ground_coordinates(image, [line], 80, 60, 30.0)[0].ground_m is None  # no camera: unchanged
    camera = PinholeCamera(image_width=80, image_height=60, hfov_deg=60.0, pitch_deg=25.0, height_m=2.0)
    (tmp_path / "images" / "x.camera.json").write_text(json.dumps(camera.to_dict()))
    (grounded,) = add_ground_coordinates(image, [line], 80, 60, 30.0)
    assert grounded.ground_m is not None and grounded.ground_m.shape == (2, 2)
    assert (grounded.ground_m[:, 0] > 0).all()  # in front of the camera
    with pytest.raises(ValueError, match="80x60"):
        add_ground_coordinates(image, [line], 81, 60, 30.0)


def test_a_run_whose_console_is_no_terminal_logs_how_far_it_got(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its output redirected (nohup, sbatch, ``| tee``) the progress bar is off: a folder of panoramas
    said nothing until its last line, and its predict.log was empty, so a long run could not be told from a
    hung one. It logs the images done, the last one's status and the time left, at most once per
    ``PROGRESS_LOG_INTERVAL_S`` (the first and the last image always)."""
    from marsunits.inference import runner

    inp = tmp_path / "in"
    for i in range(3):
        save_rgb(inp / f"pano_{i}.png", 40, 130, seed=i)
    (inp / "broken.png").write_bytes(b"not a png")
    monkeypatch.setattr(runner, "PROGRESS_LOG_INTERVAL_S", 0.0, raising=False)
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out", "allow_errors=true")) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predicted ")]
    assert [s.split(" (")[0] for s in said] == [f"predicted {n} of 4 images" for n in (1, 2, 3, 4)], said
    assert said[0].startswith("predicted 1 of 4 images (broken.png: error"), said
    assert said[1].startswith("predicted 2 of 4 images (pano_0.png: ok, "), said
    assert re.search(r"; [\d.]+ images/s, about \d+ s left$", said[1]), said
    assert said[-1].endswith("; all done"), said
    # Throttled: a fast folder logs its first and its last image only.
    caplog.clear()
    monkeypatch.setattr(runner, "PROGRESS_LOG_INTERVAL_S", 1e9, raising=False)
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "out2", "allow_errors=true")) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predicted ")]
    assert [s.split(" (")[0] for s in said] == ["predicted 1 of 4 images", "predicted 4 of 4 images"], said


def test_a_sharded_run_without_a_terminal_says_its_progress_is_rank_0s_share() -> None:
    """Only rank 0 of a sharded run logs its progress, and counts its own share (``todo[rank::world_size]``):
    an 82-image folder on 2 ranks said "predicted 41 of 41 images ...; all done" while rank 1 was still at
    work. The line names the share and the ranks; a run of one process says what it said."""
    from marsunits.inference.runner import _progress_line

    row = {"path": "528_1.jpg", "status": "ok", "seconds": 15.6}
    assert _progress_line(3, 41, row, 0.5, world_size=2) == (
        "predicted 3 of rank 0's 41 images, of 2 ranks (528_1.jpg: ok, 15.6 s); 0.50 images/s, "
        "about 76 s left"
    )
    assert _progress_line(41, 41, row, 0.5, world_size=2).endswith("; rank 0's share done")
    assert _progress_line(3, 82, row, 0.5) == (
        "predicted 3 of 82 images (528_1.jpg: ok, 15.6 s); 0.50 images/s, about 3 min left"
    )
    assert _progress_line(1, 1, row, 0.5).startswith("predicted 1 of 1 image (")
    assert _progress_line(82, 82, row, 0.5).endswith("; all done")


@pytest.mark.slow
def test_wide_panorama_runs_with_bounded_memory(tmp_path: Path, ckpt: Path) -> None:
    """A 12,000 x 1,600 panorama (19.2 MP) predicts with peak memory set by the image size."""
    inp = tmp_path / "in"
    inp.mkdir()
    y, x = np.mgrid[0:1600, 0:12000].astype(np.uint8)
    Image.fromarray(np.stack([x, y, x ^ y], -1)).save(inp / "pano.jpg", quality=90)
    del x, y
    script = (
        "import resource, sys\n"
        "from marsunits.inference import PredictOptions, predict_folder\n"
        "import marsunits.task\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"r = predict_folder(PredictOptions(ckpt_path={str(ckpt)!r}, input_dir={str(inp)!r}, "
        f"output_dir={str(tmp_path / 'out')!r}, tile=512, num_workers=0, device='cpu'))\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('RSS_DELTA_MB', (peak - base) / 1024)\n"
        "sys.exit(r.exit_code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    delta_mb = float(re.search(r"RSS_DELTA_MB ([\d.]+)", proc.stdout).group(1))  # type: ignore[union-attr]
    # Measured 393 MiB over the imports on 2026-12-06 (decoded image, one accumulation buffer, float32
    # contact fields, overlay): ~21 B/px; ~1.9 GB before contact extraction worked in float32 on crops. That
    # is with this tiny test network: README's 1.90 GB peak (0.85 GB of it imports, so 1.05 GB over them) is
    # bench_predict.py's run with unet_lite0, re-measured the same day (1.90 GB, 0.84 GB imports).
    assert delta_mb < 1500, delta_mb
    mask = Image.open(tmp_path / "out" / "pano.mask.png")
    assert mask.size == (12000, 1600)


def test_overlay_tints_units_and_draws_contacts_by_confidence() -> None:
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.constants import CONTACT_COLOR, PALETTE
    from marsunits.inference.writers import LOW_CONFIDENCE_COLOR, overlay_image

    image = np.full((40, 60, 1), 0.5, np.float32)  # grey input: replicated to RGB
    mask = np.zeros((40, 60), np.uint8)
    mask[:, 30:] = 1
    sure = ContactLine(pixels=np.array([[30.0, 0.0], [30.0, 20.0]]), confidence=1.0)
    unsure = ContactLine(pixels=np.array([[30.0, 20.0], [30.0, 40.0]]), confidence=0.0)
    out = overlay_image(image, mask, [sure, unsure])
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    for cls, col in ((0, 5), (1, 55)):  # away from the line: 60 % grey + 40 % palette colour
        expected = 0.6 * 128 + 0.4 * np.array(PALETTE[cls])
        np.testing.assert_allclose(out[10, col], expected, atol=2)
    assert tuple(out[5, 29]) == tuple(out[5, 30]) == CONTACT_COLOR
    assert tuple(out[35, 29]) == tuple(out[35, 30]) == LOW_CONFIDENCE_COLOR


def test_the_unit_colours_stand_out_on_mars_coloured_images() -> None:
    """The overlay tints each unit in its palette colour: a unit drawn in the hue of the ground itself is
    invisible (rough_olivine was amber, 5 degrees of hue from the MarsScapes panoramas' median colour, and a
    panorama the model called 79 % rough looked untouched). Each unit's colour is at least 60 degrees of hue
    from the median colour of synthetic scenes and, where the data is here, of MarsScapes panoramas, and the
    two units' colours are as far from each other."""
    import colorsys

    from marsunits.constants import PALETTE, ROUGH_OLIVINE, SMOOTH_VOLCANIC
    from marsunits.data.synthetic.scene import generate_scene

    def hue(rgb: np.ndarray) -> float:
        return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[0] * 360

    def apart(a: float, b: float) -> float:
        return min(abs(a - b), 360 - abs(a - b))

    images = [np.asarray(generate_scene(seed, 0).image) for seed in (1, 2, 3)]
    panoramas = sorted((SHARED_DATA / "marsscapes" / "images").glob("*.jpg"))[:3]
    images += [np.asarray(Image.open(f).convert("RGB")) for f in panoramas]
    pixels = [image.reshape(-1, 3) for image in images]
    ground = [hue(np.median(p[p.sum(axis=1) > 30], axis=0)) for p in pixels]  # the mosaics' black left out
    for unit in (SMOOTH_VOLCANIC, ROUGH_OLIVINE):
        for seen in ground:
            assert apart(hue(PALETTE[unit]), seen) >= 60, (unit, PALETTE[unit], seen)
    assert apart(hue(PALETTE[SMOOTH_VOLCANIC]), hue(PALETTE[ROUGH_OLIVINE])) >= 60


def test_other_is_drawn_in_its_own_grey_over_a_sky_not_in_the_sky_s_colour() -> None:
    """``other`` was tinted like the units, 40 % of its grey over the image, so a synthetic scene's sky (and
    any Mars-coloured ``other``) kept its butterscotch hue: it looked like untinted ground, not the key's
    grey. ``other`` is now tinted over the image's grey: an ``other`` pixel carries its palette colour's hue
    (none, for the default grey), keeps the image's light and shade, and stays apart from the units' tints of
    the same pixel."""
    from marsunits.constants import OTHER, PALETTE
    from marsunits.data.synthetic.scene import generate_scene
    from marsunits.inference.writers import overlay_image

    scene = generate_scene(123, 0)  # a scene with sky and rover hardware
    pixels, mask = np.asarray(scene.image), np.asarray(scene.mask).astype(np.uint8)
    other = mask == OTHER
    sky = other.copy()
    sky[mask.shape[0] // 3 :] = False  # the upper third's other pixels: sky
    assert sky.sum() > 1000
    chroma = lambda rgb: rgb.astype(int).max(axis=-1) - rgb.astype(int).min(axis=-1)  # noqa: E731
    assert np.median(chroma(pixels[sky])) > 30  # the sky has a hue of its own
    image = pixels.astype(np.float32) / 255
    out = overlay_image(image, mask, [])
    assert chroma(out[other]).max() <= 2, np.median(chroma(out[other]))  # the key's grey, not the sky's hue
    # The image stays readable: the other pixels' light follows the image's (the sky's gradient, the deck).
    assert np.corrcoef(out[other][:, 1], pixels[other].astype(float) @ (0.299, 0.587, 0.114))[0, 1] > 0.99
    # A sky that a unit covered is told from it: each unit's tint of the same pixels differs by a margin.
    for unit in (0, 1):
        as_unit = overlay_image(image, np.full_like(mask, unit), [])
        gap = np.linalg.norm(out[sky].astype(float) - as_unit[sky], axis=-1)
        assert gap.min() >= 20, (unit, gap.min())
    # A palette's other colour of its own is drawn in that colour's hue, as the key shows it.
    palette = [list(PALETTE[0]), list(PALETTE[1]), [200, 40, 200]]
    magenta = overlay_image(image, mask, [], palette=palette)[other].astype(int)
    assert (np.abs(magenta[:, 0] - magenta[:, 2]) <= 2).all() and (magenta[:, 0] - magenta[:, 1] > 50).all()


def test_overlay_draws_the_contact_centred_on_it_whatever_its_direction() -> None:
    """Pillow truncated float coordinates and put a wide line's extra pixel on a side that depended on the
    drawing direction: a contact on the edge x = 40 was drawn on columns 38-39 one way, 39-40 the other."""
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.writers import confidence_color, overlay_image

    image, mask = np.zeros((64, 80, 3), np.float32), np.zeros((64, 80), np.uint8)
    red = np.array(confidence_color(1.0))

    def painted(*lines: ContactLine) -> np.ndarray:
        return np.all(overlay_image(image, mask, list(lines)) == red, axis=-1)

    down, up = np.array([[40.0, 0.0], [40.0, 64.0]]), np.array([[40.0, 64.0], [40.0, 0.0]])
    for pts in (down, up):  # width 2 about the edge between columns 39 and 40
        columns = np.flatnonzero(painted(ContactLine(pixels=pts, confidence=1.0)).any(axis=0))
        assert columns.tolist() == [39, 40]
    rows = np.flatnonzero(painted(ContactLine(pixels=down[:, ::-1].copy(), confidence=1.0)).any(axis=1))
    assert rows.tolist() == [39, 40]
    # Per-vertex colours draw the same band; a closed contact leaves its inside unpainted.
    assert np.array_equal(
        painted(ContactLine(pixels=down, confidence=1.0, vertex_confidence=[1.0, 1.0])),
        painted(ContactLine(pixels=up, confidence=1.0)),
    )
    t = np.linspace(0, 2 * np.pi, 65)
    ring = np.stack([40 + 20 * np.cos(t), 32 + 20 * np.sin(t)], axis=1)
    drawn = painted(ContactLine(pixels=ring, confidence=1.0))
    assert not drawn[32, 40] and drawn[32, 59] and drawn[32, 20] and not drawn[32, 62]
    yy, xx = np.mgrid[0:64, 0:80] + 0.5
    distance = np.abs(np.hypot(xx - 40, yy - 32) - 20)
    assert drawn[distance < 0.9].all() and not drawn[distance > 1.1].any()
    # Non-finite vertices are left out (shapely's buffer crashed the whole process on two in a row).
    holed = np.array([[40.0, 0.0], [np.nan, np.nan], [np.nan, np.nan], [40.0, 64.0]])
    assert np.array_equal(
        painted(ContactLine(pixels=holed, confidence=1.0, vertex_confidence=[1.0] * 4)),
        painted(ContactLine(pixels=down, confidence=1.0)),
    )
    assert not painted(ContactLine(pixels=holed[1:3], confidence=1.0)).any()
    unsure = ContactLine(pixels=down, confidence=0.0, vertex_confidence=[float("nan"), 0.0])  # drawn as 0
    assert not painted(unsure).any() and overlay_image(image, mask, [unsure]).any()


def test_patterns_are_case_insensitive_extensions() -> None:
    from marsunits.inference.inputs import normalise_patterns

    assert normalise_patterns(["*.PNG", "jpg", ".tif", "png"]) == (".png", ".jpg", ".tif")
    # One value on the command line (patterns=jpg) arrives as a string: one extension, not three letters.
    assert normalise_patterns("JPG") == (".jpg",)
    assert normalise_patterns("jpg, *.png") == (".jpg", ".png")
    # A number from the command line (patterns=123: a numbered instrument format) is one extension; it
    # stopped with "'int' object is not iterable".
    assert normalise_patterns(123) == (".123",)
    assert normalise_patterns([123, "png"]) == (".123", ".png")
    with pytest.raises(ConfigError, match="patterns must be file extensions"):
        normalise_patterns(True)  # type: ignore[arg-type]
    for bad in ([], ["a/b"], ["*.p?g"], "", " , "):
        with pytest.raises(ConfigError):
            normalise_patterns(bad)


def test_images_in_formats_that_are_not_read_are_named_not_left_out_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A photograph saved as .bmp or .webp in input_dir was left out of the run and of every report without
    a word, as training names such files. They are named in one warning, with the formats read; other files
    (camera files, notes) and the formats that patterns leaves out on purpose are not."""
    from marsunits.errors import DataError
    from marsunits.inference.inputs import discover

    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 20, 20)
    save_rgb(inp / "sol 12" / "b.bmp", 20, 20)
    (inp / "c.WEBP").write_bytes(b"RIFF")
    (inp / "a.camera.json").write_text("{}")
    (inp / "notes.txt").write_text("field notes")
    save_rgb(inp / "d.jpg", 20, 20)
    with caplog.at_level("WARNING", logger="marsunits.inference"):
        files, problems = discover(inp, ["png"])
    assert [f.rel.as_posix() for f in files] == ["a.png"] and not problems
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "2 files in formats that are not read" in said[0]
    assert "c.WEBP" in said[0] and "sol 12/b.bmp" in said[0] and "PNG, JPEG or TIFF" in said[0]
    assert "notes.txt" not in said[0] and "camera" not in said[0] and "d.jpg" not in said[0]

    (inp / "a.png").unlink()
    (inp / "d.jpg").unlink()
    with pytest.raises(DataError, match=r"no images matching \*\.png .*formats that are not read: .*b\.bmp"):
        discover(inp, ["png"])


def test_a_folder_whose_images_patterns_leaves_out_is_told_the_patterns_that_take_them(
    tmp_path: Path,
) -> None:
    """patterns=png on a folder of Navcam JPEGs was refused with "check input_dir and patterns" alone: the
    refusal now counts the images of read formats that the patterns leave out and gives the patterns."""
    from marsunits.inference.inputs import discover

    inp = tmp_path / "navcam"
    for name in ("a.jpg", "b.JPG", "sol 12/c.tif"):
        save_rgb(inp / name, 16, 16)
    (inp / "notes.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(DataError) as refused:
        discover(inp, ["png"])
    said = str(refused.value)
    assert said.startswith(f"no images matching *.png found under input_dir {inp} (searched recursively)")
    assert said.endswith(
        "; it holds 2 .jpg files, 1 .tif file, which patterns leaves out: give 'patterns=[png,jpg,tif]', or "
        "leave patterns out (the default reads jpg, jpeg, png, tif, tiff)"
    ), said
    assert "pdf" not in said


def test_a_single_pattern_on_the_command_line_selects_that_extension(tmp_path: Path, ckpt: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.jpg", 40, 50, seed=1)
    save_rgb(inp / "b.png", 40, 50, seed=2)
    run(make_cfg(tmp_path, ckpt, inp, out, "patterns=jpg"))
    assert set(read_manifest(out)) == {"a.jpg"}
    assert (out / "a.mask.png").is_file() and not (out / "b.mask.png").exists()


def test_contact_extraction_on_crops_equals_whole_image_marching_squares() -> None:
    """extract_contacts traces contours on crops around the contact zones; the result must be the contours of
    marching squares on the whole image (noisy map: many islands, an invalid block, touching the border)."""
    from scipy import ndimage
    from skimage.measure import find_contours

    from marsunits.boundary.extract import ContactConfig, extract_contacts

    rng = np.random.default_rng(3)
    h, w = 300, 1400
    z = ndimage.gaussian_filter(rng.standard_normal((3, h, w)).astype(np.float32), (0, 4, 4)) * 30
    probs = np.exp(z - z.max(0))
    probs /= probs.sum(0)
    probs[:, 100:140, 600:700] = np.nan
    cfg = ContactConfig(min_length_px=0.0, drop_border_px=0.0, simplify_tolerance_px=0.0)
    lines = extract_contacts(probs, cfg)

    ok = np.isfinite(probs[0])
    p0, p1 = (
        ndimage.gaussian_filter(np.where(ok, p, 0).astype(np.float32), 1.0, mode="nearest") for p in probs[:2]
    )
    region = ok & (p0 + p1 > cfg.dominance_threshold)
    reference = [
        c for c in find_contours(p0 - p1, 0.0, positive_orientation="high", mask=region) if len(c) > 1
    ]
    assert len(lines) > 50  # many separate contacts, spread over several crops
    key = lambda xy: (round(float(xy[:, 0].sum()), 3), round(float(xy[:, 1].sum()), 3), len(xy))  # noqa: E731
    got = sorted((ln.pixels for ln in lines), key=key)
    want = sorted((c[:, ::-1] + 0.5 for c in reference), key=key)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_decoding_workers_default_to_main_process_on_cpu_and_two_on_gpu(tmp_path: Path) -> None:
    from marsunits.inference.predictor import resolve_num_workers

    cfg = compose_config("predict", tmp_path, ["ckpt_path=x", "input_dir=i", "output_dir=o"])
    assert cfg.num_workers is None and cfg.tile == 512 and cfg.fold_batchnorm is True
    assert resolve_num_workers(None, torch.device("cpu")) == 0
    assert resolve_num_workers(None, torch.device("cuda", 0)) == 2
    assert resolve_num_workers(3, torch.device("cpu")) == 3


def test_a_camera_file_of_another_size_is_named_with_the_stored_size(tmp_path: Path) -> None:
    """The message named neither the camera file (a sidecar or ../cameras/<stem>.json) nor the stored size:
    for a JPEG turned by its EXIF orientation it quoted the displayed size against the file's own."""
    from marsunits.boundary.camera import PinholeCamera
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.image_cameras import add_ground_coordinates

    image = tmp_path / "images" / "x.jpg"
    image.parent.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80x60, displayed 60x80
    Image.new("RGB", (80, 60)).save(image, exif=exif)
    line = ContactLine(pixels=np.array([[5.0, 50.0], [55.0, 52.0]]), confidence=0.8)
    sidecar = tmp_path / "images" / "x.camera.json"
    displayed = PinholeCamera(image_width=60, image_height=80, hfov_deg=60.0, pitch_deg=25.0)
    sidecar.write_text(json.dumps(displayed.to_dict()))  # the slip: the displayed size
    with pytest.raises(ValueError) as err:
        add_ground_coordinates(image, [line], 60, 80, 30.0)
    said = str(err.value)
    assert said.startswith(f"{sidecar}: the camera is for a 60x80 image but x.jpg is 80x60 as stored")
    assert "EXIF orientation 6 turns it for display to 60x80" in said
    stored = PinholeCamera(image_width=80, image_height=60, hfov_deg=60.0, pitch_deg=25.0)
    sidecar.write_text(json.dumps(stored.to_dict()))
    (grounded,) = add_ground_coordinates(image, [line], 60, 80, 30.0)
    assert grounded.ground_m is not None


def test_a_cahv_camera_of_the_full_frame_on_a_resized_image_is_not_told_to_change_the_size(
    tmp_path: Path,
) -> None:
    """A 1024x1024 Navcam CAHVOR (the PDS label's) beside the 256x256 copy AI4Mars ships was told "fix
    image_width and image_height": H and V are in the full frame's pixels, so the file so edited maps the
    small image's contacts 4x off, in metres, without a word. A CAHV-family camera is now told that its
    vectors must change with the image, and a uniform resize is named; a pinhole camera keeps the advice
    (its field of view does not change with the image's size)."""
    from marsunits.boundary.camera import PinholeCamera
    from marsunits.boundary.camera.io import CameraFileError, load_camera
    from marsunits.inference.image_cameras import sized_image_camera

    image = tmp_path / "x.png"
    save_rgb(image, 256, 256)
    sidecar = tmp_path / "x.camera.json"
    f, centre = 1200.0, 511.5  # pixels of the 1024x1024 frame
    cahv = {
        "model": "cahv",
        "C": [0.0, 0.0, 1.9],
        "A": [0.7071, 0.0, -0.7071],
        "H": [centre * 0.7071, -f, -centre * 0.7071],
        "V": [centre * 0.7071 - f * 0.7071, 0.0, -centre * 0.7071 - f * 0.7071],
        "image_width": 1024,
        "image_height": 1024,
    }
    sidecar.write_text(json.dumps(cahv))
    with pytest.raises(CameraFileError) as err:
        sized_image_camera(image, 256, 256)
    said = str(err.value)
    assert said.startswith(f"{sidecar}: the camera is for a 1024x1024 image but x.png is 256x256 as stored")
    assert "fix image_width and image_height" not in said, said
    assert "scaled by 1/4" in said and "H and V" in said
    assert "from_label LABEL --image-size 256 256 --overwrite" in said, said  # the command that fits it
    with pytest.raises(CameraFileError) as err:  # a camera given (UnitMapper.map(..., camera=...)): the same
        sized_image_camera(image, 256, 256, camera=load_camera(sidecar), source="the camera dict given")
    assert "from_label LABEL --image-size 256 256`" in str(err.value), err.value
    pinhole = PinholeCamera(image_width=512, image_height=512, hfov_deg=45.0, pitch_deg=25.0)
    sidecar.write_text(json.dumps(pinhole.to_dict()))
    with pytest.raises(CameraFileError, match="fix image_width and image_height"):
        sized_image_camera(image, 256, 256)


def test_a_camera_that_sees_no_ground_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A camera looking up (pitch_deg=-30, the sign slip of an "up is positive" habit) gave contacts without
    metres and an empty footprint on the map, and nothing said why."""
    from marsunits.boundary.camera import PinholeCamera
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.image_cameras import add_ground_coordinates

    image = tmp_path / "x.png"
    save_rgb(image, 60, 80)
    line = ContactLine(pixels=np.array([[5.0, 50.0], [75.0, 52.0]]), confidence=0.8)
    sidecar = tmp_path / "x.camera.json"
    # A height in millimetres (1900) put the ground kilometres away, and the message spoke of the sign only.
    for pitch, height, warned in ((-30.0, 1.9, True), (25.0, 1.9, False), (25.0, 1900.0, True)):
        camera = PinholeCamera(
            image_width=80, image_height=60, hfov_deg=60.0, pitch_deg=pitch, height_m=height
        )
        sidecar.write_text(json.dumps(camera.to_dict()))
        caplog.clear()
        with caplog.at_level("WARNING", logger="marsunits.inference.image_cameras"):
            (out,) = add_ground_coordinates(image, [line], 80, 60, 30.0)
        said = [r.getMessage() for r in caplog.records if "sees no ground" in r.getMessage()]
        assert (out.ground_m is None) == warned
        assert len(said) == int(warned)
        if warned:
            assert said[0].startswith(f"x.png: its camera ({sidecar}) sees no ground within max_range_m=30")
            assert "sign of pitch_deg" in said[0] and "height_m in metres, angles in degrees" in said[0]
    # A strongly barrel-distorted lens folds back inside the image: its border pixels have no ray (an empty
    # footprint), but the middle of the image sees the ground; it was warned about as a camera looking up.
    folded = PinholeCamera(image_width=80, image_height=60, hfov_deg=120.0, pitch_deg=30.0, k1=-0.6)
    sidecar.write_text(json.dumps(folded.to_dict()))
    caplog.clear()
    with caplog.at_level("WARNING", logger="marsunits.inference.image_cameras"):
        add_ground_coordinates(image, [line], 80, 60, 30.0)
    assert not [r for r in caplog.records if "sees no ground" in r.getMessage()]


def test_a_field_of_view_that_reads_as_radians_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pinhole camera file written in radians (``"hfov_deg": 1.0472``, ``"pitch_deg": 0.4363``: 60 and 25
    degrees) still sees the ground, a few metres off, through a field of view of one degree: every contact got
    metres, squeezed into a spot a few centimetres wide, and nothing was said. No rover camera that maps the
    ground sees less than pi degrees across (a remote micro-imager's one degree aside), so it is warned about,
    naming the file and the degrees the numbers would be."""
    from marsunits.boundary.camera import PinholeCamera
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.image_cameras import add_ground_coordinates

    image = tmp_path / "x.png"
    save_rgb(image, 60, 80)
    line = ContactLine(pixels=np.array([[5.0, 50.0], [75.0, 52.0]]), confidence=0.8)
    sidecar = tmp_path / "x.camera.json"
    for hfov, pitch, warned in (
        (1.0472, 25.0, True),
        (1.0472, 0.4363, True),
        (60.0, 25.0, False),
        (3.5, 25, False),
    ):
        camera = PinholeCamera(image_width=80, image_height=60, hfov_deg=hfov, pitch_deg=pitch, height_m=1.9)
        sidecar.write_text(json.dumps(camera.to_dict()))
        caplog.clear()
        with caplog.at_level("WARNING", logger="marsunits.inference.image_cameras"):
            add_ground_coordinates(image, [line], 80, 60, 30.0)
        said = [r.getMessage() for r in caplog.records if "radians" in r.getMessage()]
        assert len(said) == int(warned), (hfov, pitch, said)
        if warned:
            assert said[0].startswith(f"x.png: its camera ({sidecar}) has hfov_deg {hfov:g}"), said[0]
            assert "60 degrees" in said[0]  # what 1.0472 radians is
            assert ("pitch_deg 0.4363 is 25 degrees" in said[0]) == (pitch < 1), said[0]


def test_the_settings_comparison_skips_only_keys_recorded_before_they_existed(tmp_path: Path) -> None:
    """output_settings' contract, on hand-made records: a record written before ``normalisation`` and the
    arithmetic keys existed resumes whatever they are now; once recorded, each is compared. ``fold_batchnorm``
    is said on its own when the precision is the same, and left to the precision's entry when it is not.
    ``ignore`` leaves keys out of both records, and values compare as JSON reads them back (a tuple is a
    list)."""
    from marsunits.inference.output_settings import ARITHMETIC_KEYS, check_settings, write_settings

    before = {"checkpoint": "a.ckpt", "weights_sha256": "w" * 64, "tile": 64, "contact": {"smooth_px": 2}}
    now = {
        **before,
        "checkpoint": "moved/a.ckpt",  # informative only
        "normalisation": {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)},
        "runtime": "torch",
        "precision": "bf16",
        "fold_batchnorm": True,
    }
    write_settings(tmp_path, before)
    check_settings(tmp_path, now, overwrite=False)  # recorded before the keys: judged as before
    write_settings(tmp_path, now)
    check_settings(tmp_path, now, overwrite=False)
    changes = {
        "normalisation": {"mean": [0.4, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "runtime": "onnx",
        "fold_batchnorm": False,
        "tile": 128,
    }
    for key, value in changes.items():
        with pytest.raises(ConfigError, match=rf"other settings: {key}[ .]") as caught:
            check_settings(tmp_path, {**now, key: value}, overwrite=False)
        assert str(caught.value).count(" then, ") == 1, caught.value
    with pytest.raises(ConfigError, match=r"precision \(\"bf16\" then, \"32\" now") as caught:
        check_settings(tmp_path, {**now, "precision": "32", "fold_batchnorm": None}, overwrite=False)
    assert "fold_batchnorm" not in str(caught.value)
    # A sub-option added to a group is a difference too, named as the user types it.
    with pytest.raises(ConfigError, match=r"contact\.min_length_px \(null then, 10 now\)"):
        check_settings(tmp_path, {**now, "contact": {"smooth_px": 2, "min_length_px": 10}}, overwrite=False)
    # adapt_bn inputs recorded before their content digest: the same only with the same count and stamps.
    legacy = {**now, "adapt_bn": True, "adapt_bn_inputs": {"files": 3, "sha256": "a" * 64}}
    write_settings(tmp_path, legacy)
    inputs_now = {"files": 3, "sha256": "b" * 64, "content_sha256": "c" * 64}
    with pytest.raises(ConfigError, match=r"batch-norm statistics are adapted to"):
        check_settings(tmp_path, {**legacy, "adapt_bn_inputs": inputs_now}, overwrite=False)
    same_stamps = {**inputs_now, "sha256": "a" * 64}
    check_settings(tmp_path, {**legacy, "adapt_bn_inputs": same_stamps}, overwrite=False)
    # The counts of files then and now, a count of one in the singular (it read "1 file(s) then").
    write_settings(tmp_path, {**legacy, "adapt_bn_inputs": {"files": 1, "sha256": "a" * 64}})
    with pytest.raises(ConfigError, match=r"adapt_bn=true: 1 file then, 2 files now, or some of them"):
        check_settings(
            tmp_path, {**legacy, "adapt_bn_inputs": {"files": 2, "sha256": "b" * 64}}, overwrite=False
        )
    write_settings(tmp_path, now)
    # The check before the network is built leaves the arithmetic out of both records.
    before_build = {k: v for k, v in now.items() if k not in ARITHMETIC_KEYS}
    check_settings(tmp_path, before_build, overwrite=False, ignore=ARITHMETIC_KEYS)


def test_a_run_without_probabilities_keeps_the_folders_probability_dtype(tmp_path: Path) -> None:
    """prob.tif files of an earlier run stay when a run saves none: their dtype stays recorded, so a later
    run saving another dtype is told; a finished overwrite (which removed them) records its own."""
    from marsunits.inference.output_settings import check_settings, read_settings, write_settings

    base = {"weights_sha256": "w" * 64, "tile": 64}
    write_settings(tmp_path, {**base, "probability_dtype": "float16"})
    write_settings(tmp_path, {**base, "probability_dtype": None})
    assert read_settings(tmp_path)["probability_dtype"] == "float16"
    with pytest.raises(ConfigError, match=r"probability_dtype \(\"float16\" then, \"uint8\" now\)"):
        check_settings(tmp_path, {**base, "probability_dtype": "uint8"}, overwrite=False)
    write_settings(tmp_path, {**base, "probability_dtype": None}, replaced_all=True)
    assert read_settings(tmp_path)["probability_dtype"] is None
    check_settings(tmp_path, {**base, "probability_dtype": "uint8"}, overwrite=False)


def test_an_image_is_the_same_only_with_its_recorded_size_time_or_content(tmp_path: Path) -> None:
    """image_status against the record a contact file keeps: the exact size and nanosecond time are "same";
    another time with the same bytes "retimed"; other bytes "replaced", even under the recorded time (to the
    nanosecond, or within the same second)."""
    from marsunits.inference.output_settings import image_file_identity, image_status
    from marsunits.inference.writers import image_record

    image = tmp_path / "a.png"
    image.write_bytes(b"A" * 100)
    identity = image_file_identity(image)
    assert identity is not None
    members = image_record(identity)
    t = identity["mtime_ns"]
    assert image_status(image, members) == "same"
    os.utime(image, ns=(t, t + 7_000))  # touched: the same bytes within the same second
    assert image_status(image, members) == "retimed"
    image.write_bytes(b"B" * 100)  # other bytes of the same size
    os.utime(image, ns=(t, t + 7_000))
    assert image_status(image, members) == "replaced"
    image.write_bytes(b"A" * 99)  # another size under the recorded time (cp -p of another file)
    os.utime(image, ns=(t, t))
    assert image_status(image, members) == "replaced"
    assert image_status(image, {}) == "unrecorded"


def test_the_overlay_base_is_the_image_at_its_nearest_byte_and_grey_is_replicated() -> None:
    """to_rgb_uint8 rounds each value x 255 to the nearest byte (not down), in every band of rows, and
    copies a grey channel to red, green and blue."""
    from marsunits.inference.writers import to_rgb_uint8

    rng = np.random.default_rng(1)
    rgb = rng.random((600, 5, 3), dtype=np.float32)
    rgb[0, 0] = [0.999, 0.5 / 255 + 1e-3, 1.0]  # 254.7 -> 255, 0.75 -> 1
    out = to_rgb_uint8(rgb)
    assert out.dtype == np.uint8 and out.shape == (600, 5, 3)
    assert np.abs(out.astype(np.float64) - rgb.astype(np.float64) * 255.0).max() <= 0.5 + 1e-3
    assert out[0, 0].tolist() == [255, 1, 255]
    grey = to_rgb_uint8(rgb[:, :, :1])
    assert np.array_equal(grey, np.repeat(out[:, :, :1], 3, axis=2))  # the red channel, three times


def test_each_contact_segment_is_coloured_by_the_mean_confidence_of_its_two_ends() -> None:
    """overlay_image with vertex_confidence: the segment between vertices of confidence 0 and 1 is drawn in
    the colour of 0.5, the one between 1 and 1 in the colour of 1."""
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.writers import confidence_color, overlay_image

    image, mask = np.zeros((64, 80, 3), np.float32), np.zeros((64, 80), np.uint8)
    line = ContactLine(
        pixels=np.array([[40.0, 0.0], [40.0, 32.0], [40.0, 64.0]]),
        confidence=0.0,
        vertex_confidence=[0.0, 1.0, 1.0],
    )
    out = overlay_image(image, mask, [line])
    assert tuple(out[10, 40]) == confidence_color(0.5) != confidence_color(0.0)
    assert tuple(out[50, 40]) == confidence_color(1.0)


def test_outputs_recorded_before_the_digests_are_judged_by_time_and_unknowns_redone(tmp_path: Path) -> None:
    """input_changed for contact files without ``image_file`` or ``camera_sha256`` (written before them):
    like make, an image or camera file newer than the outputs is predicted again, an older one is not; an
    image that cannot be examined any more is predicted again."""
    from marsunits.inference.output_settings import input_changed
    from marsunits.inference.writers import OutputPaths

    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"png")
    paths = OutputPaths(tmp_path / "out", PurePosixPath("a.png"))
    paths.mask.parent.mkdir()
    paths.contact.write_text("{}")
    paths.mask.write_bytes(b"mask")
    t = paths.mask.stat().st_mtime_ns
    for p in (paths.contact, paths.mask):
        os.utime(p, ns=(t, t))
    os.utime(image, ns=(t - 10**9, t - 10**9))
    assert not input_changed(image, paths, {})
    camera = image.with_name("a.camera.json")
    camera.write_text("{}")
    os.utime(camera, ns=(t - 10**9, t - 10**9))
    assert not input_changed(image, paths, {})
    os.utime(camera, ns=(t + 10**9, t + 10**9))  # a camera file newer than the outputs
    assert input_changed(image, paths, {})
    camera.unlink()
    os.utime(image, ns=(t + 10**9, t + 10**9))  # an image newer than its mask
    assert input_changed(image, paths, {})
    image.unlink()
    assert input_changed(image, paths, {})


def test_the_adapt_bn_inputs_record_does_not_depend_on_the_order_files_are_listed(tmp_path: Path) -> None:
    """adaptation_inputs identifies a set of files: listed in another order (another filesystem's listing)
    it is the same record, so the folder resumes; a file's bytes changed under the same size is another."""
    from marsunits.inference.inputs import InputFile
    from marsunits.inference.output_settings import adaptation_inputs

    files = []
    for name in ("b.png", "a.png", "sub/c.png"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
        files.append(InputFile(path=path, rel=PurePosixPath(name)))
    record = adaptation_inputs(files)
    assert record["files"] == 3
    assert adaptation_inputs(files[::-1]) == record == adaptation_inputs(sorted(files, key=str))
    files[0].path.write_bytes(b"B.png")  # same size, other bytes
    assert adaptation_inputs(files, record)["content_sha256"] != record["content_sha256"]


@pytest.mark.parametrize(
    ("world", "devices", "num_nodes", "per_machine"),
    [(6, 4, 2, 4), (8, 4, 2, 4), (2, 2, 1, 2), (3, 2, 2, 2)],
)
def test_a_rank_counts_the_processes_of_its_machine_from_devices(
    monkeypatch: pytest.MonkeyPatch, world: int, devices: int, num_nodes: int, per_machine: int
) -> None:
    """The cores are divided among ``devices`` processes per machine (Fabric holds SLURM's --ntasks-per-node
    and torchrun's WORLD_SIZE to it). ``-n 6`` on two nodes of 4, which prediction lets through, runs 4
    ranks on the first node: world // num_nodes counted 3, and each of the 4 took a third of the cores."""
    from types import SimpleNamespace

    from marsunits.inference import distributed, sharded_run
    from marsunits.inference.options import PredictOptions

    seen: list[sharded_run.Shard] = []
    given: list[PredictOptions] = []

    def predict_shard(opts: PredictOptions, shard: sharded_run.Shard, *_: object) -> None:
        seen.append(shard)
        given.append(opts)

    monkeypatch.setattr(sharded_run, "predict_shard", predict_shard)
    fabric = SimpleNamespace(global_rank=0, world_size=world, device=torch.device("cpu"))
    opts = PredictOptions(
        ckpt_path="m.ckpt", input_dir="in", output_dir="out", devices=devices, num_nodes=num_nodes
    )
    opts.config_words = True  # predict.py's: a rank's refusals stay in the config's words (tile=null)
    distributed._rank_main(fabric, opts)  # type: ignore[arg-type]  # noqa: SLF001 - the rank's own set-up
    assert [(s.world_size, s.local_world_size) for s in seen] == [(world, per_machine)]
    (rank_opts,) = given
    assert (rank_opts.device, rank_opts.devices, rank_opts.config_words) == ("cpu", 1, True)


def test_predict_folder_from_python_sets_the_thread_count_back(tmp_path: Path, ckpt: Path) -> None:
    """``predict_folder(PredictOptions(..., threads=1))`` in a notebook left PyTorch on one thread for the
    rest of the session (its training after it too)."""
    from marsunits.inference import PredictOptions, predict_folder

    save_rgb(tmp_path / "in" / "a.png", 40, 50, seed=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        opts = PredictOptions(
            ckpt_path=str(ckpt), input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"), threads=1
        )
        result = predict_folder(opts)
        assert result.exit_code == 0 and (tmp_path / "out" / "a.mask.png").exists()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_every_option_of_predict_yaml_is_named_in_the_readme() -> None:
    """docs/prediction.md points to configs/predict.yaml for the options; each of them is also
    named in the user docs, README.md or docs/ (``key`` or ``contact.key``), so an option is never only in the
    YAML file
    (``compile``, ``onnx_cache_dir``, ``onnx_tolerance`` and ``contact.smoothing_sigma_px`` were)."""
    config = OmegaConf.load(REPO_ROOT / "configs" / "predict.yaml")
    from conftest import user_docs_text

    readme = user_docs_text()
    keys = [str(k) for k in config if k not in ("defaults", "hydra", "task_name", "run_name")]
    names = [*(k for k in keys if k != "contact"), *(f"contact.{k}" for k in config.contact)]
    unnamed = [n for n in names if f"`{n}`" not in readme and f"`{n}=" not in readme]
    assert not unnamed, f"options of configs/predict.yaml the README never names: {unnamed}"


def test_the_letter_case_label_hint_knows_the_inputs_by_the_patterns_in_use(
    tmp_path: Path, ckpt: Path
) -> None:
    """With patterns=[bmp], inputs ``b.bmp`` and ``B.bmp`` and a label ``b.png`` (``b.bmp``'s): ``B.bmp`` has
    no label. The hint knew the inputs beside it by the default extensions only, so it told the user to rename
    ``b.png`` (taking it from ``b.bmp``) to ``B.png``."""
    inp, labels, out = tmp_path / "in", tmp_path / "labels", tmp_path / "out"
    save_rgb(inp / "b.bmp", 40, 40, seed=1)
    save_rgb(inp / "B.bmp", 40, 40, seed=2)
    if len(list(inp.iterdir())) != 2:
        pytest.skip("a file system that does not tell names apart by letter case")
    labels.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(labels / "b.png")
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}", "patterns=[bmp]")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["missing_labels"] == ["B.bmp"] and not metrics["label_errors"]
    assert list(metrics["per_image"]) == ["b.bmp"]
