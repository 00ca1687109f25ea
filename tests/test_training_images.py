"""A model's record of how many of its training images were greyscale and colour (training_images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from conftest import compose_config
from marsunits.data.fake import write_fake_folder
from marsunits.data.synthetic import SceneConfig, generate_scene
from marsunits.data.synthetic.scene import scene_is_grey
from marsunits.export import export_checkpoint
from marsunits.model_package import JSON_NAME, load_model
from marsunits.task import CheckpointError
from marsunits.training_images import (
    UNKNOWN,
    check_images_record,
    grey_and_colour,
    images_record,
    is_grey,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_grey_is_one_channel_or_three_equal_ones() -> None:
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 256, size=(8, 9, 1), dtype=np.uint8)
    assert is_grey(plane) and is_grey(plane[..., 0])
    assert is_grey(np.repeat(plane, 3, axis=2))
    colour = np.repeat(plane, 3, axis=2)
    colour[3, 4, 2] ^= 1  # one sample of one channel differs: colour
    assert not is_grey(colour)


def test_the_counts_in_all_add_the_parents_and_are_unknown_where_a_link_is() -> None:
    parent = images_record(3, 0)
    assert grey_and_colour(images_record(2, 5, parent)) == (5, 5)
    assert grey_and_colour(images_record(2, 5, images_record(1, 1, parent))) == (6, 6)
    assert grey_and_colour(images_record(2, 5, UNKNOWN)) is None  # a parent saved before the record
    assert grey_and_colour(None) is None and grey_and_colour(UNKNOWN) is None
    assert json.loads(json.dumps(images_record(2, 5, parent))) == images_record(2, 5, parent)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (None, None),
        (images_record(1, 2, images_record(0, 4)), None),
        (UNKNOWN, None),
        ({"grey": 1, "colour": 2, "parent": None, "later_key": "x"}, None),  # a later version's keys
        ([1, 2], "is not an object or null"),
        ({"grey": -1, "colour": 2}, "grey=-1 is not a whole number >= 0 or null"),
        ({"grey": 1, "colour": True}, "colour=True is not a whole number >= 0 or null"),
        (
            {"grey": 1, "colour": 2, "parent": {"grey": "3", "colour": 0}},
            "grey='3' is not a whole number >= 0 or null (its parent's, 1 level up)",
        ),
    ],
)
def test_an_edited_record_is_told_what_is_wrong(record: object, problem: str | None) -> None:
    assert check_images_record(record) == problem


def test_a_synthetic_scenes_greyness_is_known_without_rendering_it() -> None:
    """The record counts synthetic training scenes by the generator's draw, without rendering 1,792 of
    them: the draw is the one generate_scene makes."""
    config = SceneConfig(width=32, height=24, mode="mixed")
    drawn = [scene_is_grey(5, i, config) for i in range(8)]
    assert True in drawn and False in drawn  # half each, drawn per scene
    rendered = [is_grey(generate_scene(5, i, config).image) for i in range(8)]
    assert drawn == rendered
    assert scene_is_grey(5, 0, SceneConfig(mode="grey")) and not scene_is_grey(5, 0, SceneConfig())


@pytest.mark.parametrize("cache", ["true", "false"])
def test_the_data_module_counts_its_training_images_grey_and_colour(tmp_path: Path, cache: str) -> None:
    """A folder of a grey PNG (mode L), an RGB PNG with R = G = B (as Navcam frames are often shared) and
    colour ones: the first two count grey, whether the store decoded them (cache) or not."""
    root = write_fake_folder(tmp_path / "folder", n_images=6)
    first = np.asarray(Image.open(root / "images" / "img_0.png"))
    Image.fromarray(first[..., 0]).save(root / "images" / "img_0.png")
    Image.fromarray(np.repeat(first[..., 1:2], 3, axis=2)).save(root / "images" / "img_1.png")
    cfg = compose_config(
        "train",
        tmp_path / "run",
        [
            "data=folder",
            f"data.root={root}",
            f"data.cache={cache}",
            "data.crop_size=32",
            "data.samples_per_epoch=8",
            "data.batch_size=4",
            "logger=none",
        ],
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    trained = [r.image.stem for r in dm.splits["folder"][0]]
    grey = sum(stem in ("img_0", "img_1") for stem in trained)
    assert dm.training_image_colours() == (grey, len(trained) - grey)


def test_a_run_records_its_images_and_a_fine_tuning_keeps_its_parents(tmp_path: Path) -> None:
    """A synthetic run records its training scenes (colour by default; a folder's run, its images); a run
    fine-tuned from it keeps that record under ``parent``, so the counts in all add both. A checkpoint
    saved before the record loads (its images unknown), its resume records its images, and a fine-tuning
    of it has a parent of unknown images."""
    from marsunits.training import run
    from test_train import TINY

    short = [*TINY, "trainer.max_epochs=1", "test=false"]
    run(compose_config("train", tmp_path / "a", [*short, "data.scene.mode=grey"]))
    source = tmp_path / "a" / "checkpoints" / "last.ckpt"
    record = torch.load(source, map_location="cpu", weights_only=True)["marsunits"]["training_images"]
    assert record == images_record(8, 0)  # TINY: data.train_length=8

    run(compose_config("train", tmp_path / "b", [*short, f"init_ckpt_path={source}"]))
    tuned = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert tuned["marsunits"]["training_images"] == images_record(0, 8, record)
    assert grey_and_colour(load_model(tmp_path / "b" / "checkpoints" / "last.ckpt").training_images) == (8, 8)

    older = torch.load(source, map_location="cpu", weights_only=True)
    del older["marsunits"]["training_images"]  # as saved before 2026-12-07
    old = tmp_path / "old.ckpt"
    torch.save(older, old)
    assert load_model(old).training_images is None
    # Resumed, it counts its images again; it started from no model (steps_before 0), so they are all.
    resumed = [*TINY, "test=false", "data.scene.mode=grey", "trainer.max_epochs=2", f"ckpt_path={old}"]
    run(compose_config("train", tmp_path / "resumed", resumed))
    again = torch.load(
        tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert again["marsunits"]["training_images"] == images_record(8, 0)
    run(compose_config("train", tmp_path / "c", [*short, f"init_ckpt_path={old}"]))
    tuned = torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert tuned["marsunits"]["training_images"] == images_record(0, 8, UNKNOWN)
    assert grey_and_colour(tuned["marsunits"]["training_images"]) is None


def test_a_model_package_keeps_the_record_and_refuses_an_edit_it_cannot_read(tmp_path: Path) -> None:
    from marsunits.training import run
    from test_train import TINY

    run(compose_config("train", tmp_path / "run", [*TINY, "trainer.max_epochs=1", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["marsunits"]["training_images"] = images_record(3, 5, images_record(2, 0))
    torch.save(raw, ckpt)
    pkg = export_checkpoint(ckpt, tmp_path / "pkg")
    doc = json.loads((pkg / JSON_NAME).read_text())
    assert doc["metadata"]["training_images"] == raw["marsunits"]["training_images"]
    assert grey_and_colour(load_model(pkg).metadata["training_images"]) == (5, 5)
    doc["metadata"]["training_images"] = {"grey": "many", "colour": 5, "parent": None}
    (pkg / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"metadata training_images grey='many' is not a whole number"):
        load_model(pkg)
