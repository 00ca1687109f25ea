"""Class maps, dataset scanning and its errors, crop sampling, tiling, transforms, sol splits, collation."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from marsunits.constants import IGNORE_INDEX
from marsunits.data.ai4mars import scan_ai4mars
from marsunits.data.class_map import ClassMap
from marsunits.data.datamodule import collate_samples
from marsunits.data.datasets import RandomCropDataset, SceneDataset, TiledDataset, make_sample, tile_starts
from marsunits.data.fake import write_fake_ai4mars, write_fake_folder, write_fake_marsscapes
from marsunits.data.folder import pair_by_stem, scan_folder
from marsunits.data.marsscapes import scan_marsscapes
from marsunits.data.splits import group_ids, kfold_split_by_group, merge_sols, near_sols, split_by_group
from marsunits.data.store import ImageStore, LabelledImage
from marsunits.data.transforms import build_train_transform

MARSSCAPES_MAP = {0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255}
AI4MARS_MAP = {0: 0, 2: 0, 1: 1, 3: 1, 255: 255}


# ------------------------------------------------------------------------------------------ class maps


def test_class_map_applies_marsscapes_proxy_mapping() -> None:
    native = np.arange(10, dtype=np.uint8).reshape(2, 5)
    native[0, 0] = 255
    out = ClassMap(MARSSCAPES_MAP, "marsscapes")(native)
    expected = np.array([[255, 1, 1, 0, 1], [255, 2, 2, 2, 2]], np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_class_map_string_keys_and_identity() -> None:
    cm = ClassMap({"0": 0, "1": 1}, "x")
    assert cm.as_dict() == {0: 0, 1: 1}
    ident = ClassMap(None, "folder")
    m = np.array([[0, 1, 2, 255]], np.uint8)
    np.testing.assert_array_equal(ident(m), m)
    assert ident.as_dict() is None
    with pytest.raises(
        ValueError,
        match=r"m\.png.*\[7\].*no class_map.*folder\.yaml, or on the command line as data\.class_map='",
    ):
        ident(np.array([[0, 7]], np.uint8), "m.png")


def test_class_map_uncovered_values_name_file_values_and_fix() -> None:
    cm = ClassMap(AI4MARS_MAP, "ai4mars")
    with pytest.raises(ValueError, match=r"lab\.png: mask values \[4, 9\].*configs/data/ai4mars\.yaml"):
        cm(np.array([[0, 4, 9, 1]], np.uint8), "lab.png")
    # A user's map for project-id masks plus one odd value: 255 must be listed too, and the message says so.
    own = ClassMap({0: 0, 1: 1, 2: 2, 5: 255}, "folder")
    with pytest.raises(
        ValueError, match=r"mask values \[255\] .*\(255: 255 keeps unlabelled pixels unlabelled\)"
    ):
        own(np.array([[0, 5, 255]], np.uint8), "m.png")
    with pytest.raises(ValueError) as other:  # no such hint when 255 is not missing
        cm(np.array([[4, 9]], np.uint8), "lab.png")
    assert "keeps unlabelled" not in str(other.value)
    # The command-line fix it names works: a whole map given for an existing one was refused by Hydra as
    # "unknown option 'data.class_map'" (merged into it, new keys refused); ++ adds an entry.
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    try:
        from .conftest import CONFIG_DIR
    except ImportError:
        from conftest import CONFIG_DIR  # type: ignore[no-redef]

    said = str(other.value)
    assert "++data.class_map.<native id>=<project id>, one entry each" in said
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["experiment=ai4mars", "++data.class_map.4=2", "++data.class_map.9=0"]
        )
    fixed = ClassMap(instantiate(cfg.data.class_map), "ai4mars")
    np.testing.assert_array_equal(fixed(np.array([[4, 9, 1]], np.uint8)), [[2, 0, 1]])


def test_masks_of_other_ids_without_a_class_map_get_a_whole_map_to_fill_in() -> None:
    """A folder whose masks hold 7 (no class_map): the error said ``data.class_map='{<native id>: <project
    id>, ...}'``, and the map a user then gave for 7 alone was refused in a second run, since a map replaces
    the identity (0, 1, 2 and 255 then unmapped). The message now gives the whole map, project ids included,
    with only the odd values to fill in; filled in, it composes and covers the masks."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    try:
        from .conftest import CONFIG_DIR
    except ImportError:
        from conftest import CONFIG_DIR  # type: ignore[no-redef]

    mask = np.array([[0, 1, 2, 7, 255, 9]], np.uint8)
    with pytest.raises(ValueError) as err:
        ClassMap(None, "folder")(mask, "m.png")
    said = str(err.value)
    # (Values 7 and 9 are MarsScapes ids too: its own map is offered beside this one, which fills in.)
    (example,) = [
        e for e in re.findall(r"data\.class_map='\{[^']*\}'", said) if "<native id>" not in e and "<" in e
    ]
    assert "7: <project id>" in example and "9: <project id>" in example, said
    filled = example.replace("7: <project id>", "7: 255").replace("9: <project id>", "9: 1")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=folder", "data.root=x", *shlex.split(filled)])  # as a shell
    fixed = ClassMap(instantiate(cfg.data.class_map), "folder")
    np.testing.assert_array_equal(fixed(mask), [[0, 1, 2, 255, 255, 1]])


def test_ai4mars_labels_in_a_folder_are_told_their_own_map_not_to_keep_0_1_2() -> None:
    """AI4Mars labels copied into a folder unconverted (0 soil, 1 bedrock, 2 sand, 3 big rock): the refusal of
    their 3 gave ``data.class_map='{0: 0, 1: 1, 2: 2, 255: 255, 3: <project id>}'`` to fill in, and a user
    who filled in 3 trained sand (2) as ``other`` (sky, rover) without a word. Values that are all one known
    data set's native ids now get that data set's whole map, as a command line that composes and maps sand to
    smooth; the fill-in map is offered only for masks already in project ids."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    try:
        from .conftest import CONFIG_DIR
    except ImportError:
        from conftest import CONFIG_DIR  # type: ignore[no-redef]

    mask = np.array([[0, 1, 2, 3, 255]], np.uint8)
    with pytest.raises(ValueError) as err:
        ClassMap(None, "folder")(mask, "masks/NLA_1.png")
    said = str(err.value)
    assert "AI4Mars" in said and "2 sand" in said, said
    maps = re.findall(r"data\.class_map='\{[^']*\}'", said)
    given = [m for m in maps if "<" not in m]
    assert given, said
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=folder", "data.root=x", *shlex.split(given[0])])
    fixed = ClassMap(instantiate(cfg.data.class_map), "folder")
    np.testing.assert_array_equal(fixed(mask), [[0, 1, 0, 1, 255]])
    # The fill-in map, which keeps 0, 1 and 2, is said to be for masks whose 0, 1 and 2 are project ids.
    (fill_in,) = [m for m in maps if "<project id>" in m and "<native id>" not in m]
    assert "already" in said[: said.index(fill_in)], said
    # Values no known data set has (12) get no data set's map.
    with pytest.raises(ValueError) as other:
        ClassMap(None, "folder")(np.array([[0, 12]], np.uint8), "m.png")
    assert "AI4Mars" not in str(other.value) and "MarsScapes" not in str(other.value)


def test_project_id_masks_with_a_few_stray_pixels_are_told_to_keep_their_ids_first() -> None:
    """Masks in project ids (0 smooth, 1 rough, 2 other, 255 ignore) with a 5 in a few pixels: the refusal
    offered MarsScapes' whole map first, which reads the user's 2 (other, sky) as 1 (rough), and the map
    that keeps 0, 1, 2 and 255 and maps the stray 5 second. Strays in few pixels now put that map first and
    MarsScapes' second, saying what it does to 2; strays covering much of the mask (AI4Mars' 3, which cannot
    tell) keep the data set's map first."""
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20], mask[20:30], mask[30:] = 1, 2, 255
    mask[25, 3:6] = 5  # 3 pixels of 1600
    with pytest.raises(ValueError) as err:
        ClassMap(None, "folder")(mask, "masks/own.png")
    said = str(err.value)
    keep = "data.class_map='{0: 0, 1: 1, 2: 2, 255: 255, 5: <project id>}'"
    theirs = "data.class_map='{0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255}'"
    assert keep in said and theirs in said, said
    assert said.index(keep) < said.index(theirs), said
    assert "under 1% of the mask" in said, said
    # The data set's map, second, says it reads the masks' 2 otherwise than as other.
    assert "2 as rough_olivine" in said[said.index(keep) :], said
    # AI4Mars labels, whose 3 (big rock) covers much of the mask: the values cannot tell, so the data set's
    # map stays first, as before.
    ai = np.zeros((40, 40), np.uint8)
    ai[10:20], ai[20:30], ai[30:] = 1, 2, 3
    with pytest.raises(ValueError) as err:
        ClassMap(None, "folder")(ai, "masks/NLA_1.png")
    said = str(err.value)
    first = "data.class_map='{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}'"
    fill_in = "data.class_map='{0: 0, 1: 1, 2: 2, 255: 255, 3: <project id>}'"
    assert said.index(first) < said.index(fill_in) and "under 1%" not in said, said


def test_a_mask_of_hundreds_of_values_is_said_to_be_no_class_mask_not_listed_whole() -> None:
    """A photograph saved under masks/ (every value 0-255): the message listed all 252 odd values and a
    map of them to fill in. It now says what the file probably is, with a few of the values."""
    photo = np.arange(256, dtype=np.uint8).reshape(16, 16)
    with pytest.raises(ValueError) as err:
        ClassMap(None, "folder")(photo, "masks/p.png")
    said = str(err.value)
    assert said.startswith("masks/p.png: 252 different mask values") and "image saved as a mask" in said
    assert len(said) < 700 and "3: <project id>" not in said


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({0: 5}, "not a project id"),
        ({300: 0}, "outside 0..255"),
        ({256: 0}, "outside 0..255"),
        # null or a list: int() raised a TypeError (a traceback); a class name gave "invalid literal for
        # int()"; a fraction was read as its whole part without a word.
        ({0: None}, r"the target of native id 0 is None, not a project id"),
        ({0: [1]}, r"the target of native id 0 is \[1\], not a project id"),
        (
            {0: "smooth_volcanic"},
            r"is 'smooth_volcanic', not a project id .*0 smooth_volcanic, 1 rough_olivine",
        ),
        ({"soil": 0}, r"a key is 'soil', not a native id 0\.\.255"),
        ({0: 1.9}, r"the target of native id 0 is 1\.9, not a project id"),
        ({0: True}, r"is True, not a project id"),
    ],
)
def test_class_map_rejects_bad_entries(mapping: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassMap(mapping, "x")
    from marsunits.errors import ConfigError
    from marsunits.inference.options import read_labels_class_map

    with pytest.raises(ConfigError, match=r"labels_class_map: .*Fix labels_class_map in the command"):
        read_labels_class_map(mapping, {})


def test_labels_class_map_of_a_model_trained_on_several_data_sets() -> None:
    """A marsscapes_ai4mars model stores {source: map}: labels_class_map=checkpoint read the source names
    as native ids and refused them, blaming the user's map. A source's name now picks its map, and
    checkpoint picks the one map there is (a self-trained student's pseudo-labels are in project ids)."""
    from marsunits.errors import ConfigError
    from marsunits.inference.options import read_labels_class_map
    from marsunits.task import _normalise_class_map

    ms, ai = {0: 0, 1: 1, 6: 2, 255: 255}, {0: 0, 1: 1, 2: 0, 3: 1, 255: 255}
    both = {"class_map": _normalise_class_map({"marsscapes": ms, "ai4mars": ai}), "dataset": "ms_ai"}
    labels = np.array([[0, 1, 2, 3, 6, 255]], np.uint8)
    read = read_labels_class_map("ai4mars", both)
    assert read is not None
    np.testing.assert_array_equal(read(labels[:, :4]), [[0, 1, 0, 1]])
    with pytest.raises(
        ValueError, match=r"values \[2, 3\] are not covered by the class_map of dataset 'ms_ai: marsscapes'"
    ):
        read_labels_class_map("marsscapes", both)(labels, "x.png")
    with pytest.raises(
        ConfigError,
        match=r"several data sets, each with its own class_map \(ai4mars, marsscapes\).*class_map=ai4mars",
    ):
        read_labels_class_map("checkpoint", both)
    with pytest.raises(
        ConfigError,
        match=r"labels_class_map=mars: not a data set this model was trained on; give checkpoint, one of ai",
    ):
        read_labels_class_map("mars", both)
    student = {"class_map": _normalise_class_map({"marsscapes": ms, "folder": None}), "dataset": "pseudo"}
    read = read_labels_class_map("checkpoint", student)
    assert read is not None
    np.testing.assert_array_equal(read(labels[:, [0, 1, 4, 5]]), [[0, 1, 2, 255]])
    with pytest.raises(
        ConfigError, match=r"labels_class_map=folder: this model's folder masks were in project ids"
    ):
        read_labels_class_map("folder", student)
    # A one-source model: its data set's name is its map, as checkpoint (it was refused as neither), and
    # another name that is no known data set says what the model was trained on.
    one = {"class_map": ms, "dataset": "marsscapes"}
    by_name = read_labels_class_map("marsscapes", one)
    assert by_name is not None
    np.testing.assert_array_equal(by_name(labels[:, [0, 1, 4, 5]]), [[0, 1, 2, 255]])
    with pytest.raises(
        ConfigError, match=r"labels_class_map=folder: this model was trained on one data set, 'marsscapes'"
    ):
        read_labels_class_map("folder", one)
    # A one-source model without a map: a name that is no known data set's is told there is none (it was
    # told to give checkpoint "for its map", or, given its data set's name, that checkpoint failed).
    plain = {"class_map": None, "dataset": "synthetic"}
    with pytest.raises(
        ConfigError, match=r"labels_class_map=synthetic, but this model was trained on masks in project ids"
    ):
        read_labels_class_map("synthetic", plain)
    # Metadata without a data set's name: 'None' is neither named as one nor taken as it.
    unnamed = {"class_map": ms}
    with pytest.raises(
        ConfigError, match=r"labels_class_map=None: this model names no data set; give checkpoint for"
    ):
        read_labels_class_map("None", unnamed)
    assert read_labels_class_map("checkpoint", unnamed) is not None


def _marsscapes_model_metadata(several: bool) -> dict[str, Any]:
    """The metadata of a model trained on MarsScapes (with a map), alone or with synthetic scenes (none)."""
    from marsunits.task import _normalise_class_map

    ms = {0: 0, 1: 1, 6: 2, 255: 255}
    if several:
        return {"class_map": _normalise_class_map({"marsscapes": ms, "synthetic": None}), "dataset": "ms_syn"}
    return {"class_map": ms, "dataset": "marsscapes"}


@pytest.mark.parametrize(
    "meta",
    [
        {"class_map": {0: 0, 1: 1, 6: 2, 255: 255}, "dataset": "marsscapes"},
        {"class_map": {"marsscapes": {0: 0, 1: 1, 6: 2, 255: 255}, "synthetic": None}, "dataset": "ms_syn"},
        {"class_map": None, "dataset": "synthetic"},
    ],
    ids=["marsscapes-model", "several-data-set-model", "model-without-a-map"],
)
def test_labels_class_map_naming_a_data_set_the_model_was_not_trained_on_reads_its_shipped_map(
    meta: dict[str, Any],
) -> None:
    """AI4Mars labels scored with a MarsScapes or a synthetic model, ``labels_class_map=ai4mars``: refused,
    spelling out AI4Mars' map to give instead. That map is the one the name means, so it is read: the same
    labels as with the map given as a mapping, and a note (logged once a run) says which map was used and
    that it is the shipped one, not the model's (where the model has a map: a synthetic model was told its
    "training map" was not used)."""
    import yaml

    from marsunits.data.class_map import DATA_SET_LABEL_MAPS
    from marsunits.inference.options import read_labels_class_map, shipped_map_note

    labels = np.array([[0, 1, 2, 3, 255]], np.uint8)  # AI4Mars: soil, bedrock, sand, big rock, null
    by_name = read_labels_class_map("ai4mars", meta)
    given = read_labels_class_map(yaml.safe_load(DATA_SET_LABEL_MAPS["ai4mars"]), meta)
    assert by_name is not None and given is not None
    np.testing.assert_array_equal(by_name(labels), [[0, 1, 0, 1, 255]])
    assert by_name.as_dict() == given.as_dict()  # what metrics.json records as labels_class_map
    note = shipped_map_note("ai4mars", meta)
    assert note is not None and note.startswith("labels_class_map=ai4mars: this model was trained on ")
    shipped = DATA_SET_LABEL_MAPS["ai4mars"]
    assert f"shipped for ai4mars labels (the class_map of configs/data/ai4mars.yaml: {shipped})" in note
    # The model's own map is said not to be used only where it has one (a synthetic model has none).
    assert ("not with the model's training map" in note) == bool(meta["class_map"]), note
    # A value of the model's own words keeps its map, and no note.
    assert shipped_map_note("checkpoint", meta) is None and shipped_map_note(None, meta) is None


def test_labels_of_another_data_set_than_the_map_named_are_told_its_name() -> None:
    """MarsScapes panoramas' labels scored with ``labels_class_map=ai4mars`` (the Navcam command of
    docs/prediction.md reused): each label was refused as "mask values [6, 7, 8] are not covered ... Add them
    to class_map in a labels_class_map of your own", which sent a geologist to write MarsScapes' map by hand.
    Values that are all another data set's native ids now name it and its map's name; a map of the model's own
    of that data set is not offered again, nor a data set whose ids do not hold the values."""
    from marsunits.inference.options import read_labels_class_map

    synthetic = {"class_map": None, "dataset": "synthetic"}
    marsscapes_labels = np.array([[0, 1, 2, 3, 4, 6, 7, 8, 255]], np.uint8)
    read = read_labels_class_map("ai4mars", synthetic)
    assert read is not None
    with pytest.raises(ValueError) as refused:
        read(marsscapes_labels, "387_1.png")
    message = str(refused.value)
    assert message.startswith("387_1.png: mask values [4, 6, 7, 8] are not covered by the class_map"), message
    assert message.endswith(
        " Their values are all native ids of another data set: if they are MarsScapes labels (0 soil, 1 "
        "bedrock, 2 gravel, 3 sand, 4 big rock, 5 steep slope, 6 sky, 7 distant terrain, 8 distant "
        "mountains, 9 rover, 255 no data), labels_class_map=marsscapes."
    ), message
    # Values of no data set's (a 12): no data set is named.
    with pytest.raises(ValueError) as refused:
        read(np.array([[0, 12]], np.uint8), "x.png")
    assert "another data set" not in str(refused.value), refused.value
    # The model's own MarsScapes map without distant terrain (7): labels_class_map=marsscapes reads that map.
    trained = {"class_map": {0: 0, 1: 1, 6: 2, 255: 255}, "dataset": "marsscapes"}
    own = read_labels_class_map("marsscapes", trained)
    assert own is not None
    with pytest.raises(ValueError) as refused:
        own(np.array([[0, 7]], np.uint8), "x.png")
    assert "another data set" not in str(refused.value), refused.value


def test_the_shipped_map_note_of_a_model_naming_no_data_set_reads_as_a_sentence() -> None:
    """A model whose metadata names no data set (an older checkpoint) was said to have "names no data set it
    was trained on, not on ai4mars"; with a map it is told that map is not used, without one it is not."""
    from marsunits.inference.options import shipped_map_note

    for meta, has_map in (({"class_map": {0: 0, 1: 1, 6: 2, 255: 255}}, True), ({}, False)):
        note = shipped_map_note("ai4mars", meta)
        assert note is not None and note.startswith(
            "labels_class_map=ai4mars: this model names no data set it was trained on, so the labels are "
            "read with the map shipped for ai4mars labels"
        ), note
        assert ("not with the model's training map" in note) == has_map, note


def test_labels_class_map_naming_the_model_s_own_data_set_keeps_its_training_map() -> None:
    """A model trained on MarsScapes with a map of the user's (``data.class_map=...``, here sky 6 as other and
    no gravel) reads ``labels_class_map=marsscapes`` with that map, as it was taught, not the shipped one;
    so does a several-source model for one of its sources. No shipped-map note is logged."""
    from marsunits.data.class_map import data_set_label_map
    from marsunits.inference.options import read_labels_class_map, shipped_map_note

    own = {0: 0, 1: 1, 6: 2, 255: 255}
    assert own != data_set_label_map("marsscapes")
    for meta in (
        {"class_map": own, "dataset": "marsscapes"},
        {"class_map": {"marsscapes": own, "synthetic": None}, "dataset": "ms_syn"},
    ):
        read = read_labels_class_map("marsscapes", meta)
        assert read is not None and read.as_dict() == own
        assert shipped_map_note("marsscapes", meta) is None
        with pytest.raises(ValueError, match=r"values \[2\] are not covered"):  # gravel: not in the own map
            read(np.array([[0, 2]], np.uint8), "x.png")


@pytest.mark.parametrize(
    "meta",
    [
        {"class_map": None, "dataset": "ai4mars"},
        {"class_map": {"marsscapes": {0: 0, 1: 1, 6: 2, 255: 255}, "ai4mars": None}, "dataset": "ms_ai"},
    ],
    ids=["ai4mars-model-without-a-map", "several-data-set-model-without-an-ai4mars-map"],
)
def test_labels_class_map_naming_the_model_s_data_set_it_carries_no_map_of_reads_its_shipped_map(
    meta: dict[str, Any],
) -> None:
    """An AI4Mars model whose metadata carries no class map (an older or hand-edited checkpoint, or one
    trained with the map set to null), ``labels_class_map=ai4mars``: refused, "trained on masks in project
    ids", spelling out the very map the name means to paste (a several-source model without a map of its
    ai4mars source: told to give null). The name reads the labels with the shipped map, as for a model not
    trained on AI4Mars, with a note saying why and that null reads project ids."""
    from marsunits.data.class_map import DATA_SET_LABEL_MAPS, data_set_label_map
    from marsunits.inference.options import read_labels_class_map, shipped_map_note

    read = read_labels_class_map("ai4mars", meta)
    assert read is not None and read.as_dict() == data_set_label_map("ai4mars")
    np.testing.assert_array_equal(read(np.array([[0, 1, 2, 3, 255]], np.uint8)), [[0, 1, 0, 1, 255]])
    note = shipped_map_note("ai4mars", meta)
    assert note is not None and note.startswith(
        "labels_class_map=ai4mars: this model was trained on ai4mars masks in project ids (it carries no "
        "class_map of ai4mars"
    ), note
    assert f"configs/data/ai4mars.yaml: {DATA_SET_LABEL_MAPS['ai4mars']})" in note, note
    assert "give labels_class_map=null if the labels hold project ids" in note, note
    assert "not on ai4mars" not in note and "model's training map" not in note, note  # it has none
    # The other data set of the several-source model keeps its training map, without a note.
    if meta["dataset"] == "ms_ai":
        own = read_labels_class_map("marsscapes", meta)
        assert own is not None and own.as_dict() == {0: 0, 1: 1, 6: 2, 255: 255}
        assert shipped_map_note("marsscapes", meta) is None


def test_labels_class_map_of_another_kind_or_name_is_told_the_data_set_names() -> None:
    """A value of another kind (a number) was told "null, checkpoint or a mapping" only, and a name that is
    no data set's was given AI4Mars' whole map as the example of a mapping to paste; both name the data
    sets whose name gives their map, and the name offered reads the labels with that model."""
    from marsunits.errors import ConfigError
    from marsunits.inference.options import read_labels_class_map

    meta = _marsscapes_model_metadata(False)
    with pytest.raises(ConfigError) as refused:
        read_labels_class_map(3, meta)
    assert "a data set's name (ai4mars, marsscapes)" in str(refused.value), refused.value
    with pytest.raises(ConfigError) as refused:
        read_labels_class_map("navcam", meta)
    said = str(refused.value)
    assert "e.g. labels_class_map=ai4mars for AI4Mars labels" in said, said
    assert "'{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}'" not in said, said
    (offered,) = re.findall(r"e\.g\. labels_class_map=(\w+) for AI4Mars", said)
    read = read_labels_class_map(offered, meta)
    assert read is not None
    np.testing.assert_array_equal(read(np.array([[2, 3]], np.uint8)), [[0, 1]])  # sand smooth, rock rough


@pytest.mark.parametrize("several", [False, True], ids=["one-data-set-model", "several-data-set-model"])
@pytest.mark.parametrize(("given", "meant"), [("chekpoint", "checkpoint"), ("marscapes", "marsscapes")])
def test_a_misspelt_labels_class_map_is_told_the_word_meant_not_a_data_set_config(
    given: str, meant: str, several: bool
) -> None:
    """``labels_class_map=chekpoint`` (or ``marscapes``, the model's own data set misspelt) was told to
    give "the class_map of configs/data/chekpoint.yaml", a file that does not exist, as if it named a data
    set the model was not trained on; the word closest to it is named instead."""
    from marsunits.errors import ConfigError
    from marsunits.inference.options import read_labels_class_map

    meta = _marsscapes_model_metadata(several)
    with pytest.raises(ConfigError) as refused:
        read_labels_class_map(given, meta)
    message = str(refused.value)
    assert f"configs/data/{given}.yaml" not in message
    assert f"did you mean labels_class_map={meant}?" in message
    assert message.startswith(f"labels_class_map={given}: ")


def test_class_map_refuses_masks_that_are_not_uint8() -> None:
    """A 16-bit mask must be refused, not looked up: its values above 255 are no native id of any map."""
    for cm in (ClassMap(AI4MARS_MAP, "ai4mars"), ClassMap(None, "folder")):
        with pytest.raises(ValueError, match=r"m16\.png: masks must be uint8 label ids, got uint16"):
            cm(np.array([[0, 1, 300]], np.uint16), "m16.png")


def test_subclass_map_takes_subclass_ids_and_names_its_key() -> None:
    sub = ClassMap({0: 0, 2: 7, 5: 255}, "marsscapes", num_targets=8, key="subclass_map")
    np.testing.assert_array_equal(sub(np.array([[0, 2, 5]], np.uint8)), [[0, 7, 255]])
    with pytest.raises(ValueError, match=r"subclass_map of dataset 'x': native id 0 maps to 8, .*0\.\.7"):
        ClassMap({0: 8}, "x", num_targets=8, key="subclass_map")
    with pytest.raises(ValueError, match=r"a\.png: mask values \[3\] are not covered by the subclass_map"):
        sub(np.array([[3]], np.uint8), "a.png")


# ------------------------------------------------------------------------------------------ scanning


def test_marsscapes_scan_and_store_map_native_ids(tmp_path: Path) -> None:
    root = write_fake_marsscapes(tmp_path / "ms", sols=(122, 345))
    records = scan_marsscapes(root)
    assert [r.image.name for r in records] == ["122_1.jpg", "345_1.jpg"]
    assert [r.group for r in records] == [122, 345]
    store = ImageStore(records, ClassMap(MARSSCAPES_MAP, "marsscapes"), cache=True)
    native = np.array(Image.open(root / "labels" / "122_1.png"))
    mask = store.mask(0)
    assert set(np.unique(native)) == {0, 1, 3, 4, 5, 6, 255}
    assert set(np.unique(mask)) == {0, 1, 2, 255}
    np.testing.assert_array_equal(mask[native == 6], 2)
    np.testing.assert_array_equal(mask[native == 5], IGNORE_INDEX)
    np.testing.assert_array_equal(mask[(native == 0) | (native == 3)], 0)
    np.testing.assert_array_equal(mask[(native == 1) | (native == 4)], 1)
    assert store.image(0).dtype == np.uint8  # 8-bit JPEG cached compactly
    assert store.labelled_counts[0] == np.count_nonzero(mask != IGNORE_INDEX)
    # uncached store gives the same arrays
    lazy = ImageStore(records, ClassMap(MARSSCAPES_MAP, "marsscapes"), cache=False)
    np.testing.assert_array_equal(lazy.mask(1), store.mask(1))
    np.testing.assert_array_equal(lazy.image(1), store.image(1))
    assert lazy.sizes == store.sizes


def test_marsscapes_uncovered_label_value(tmp_path: Path) -> None:
    root = write_fake_marsscapes(tmp_path / "ms", sols=(122,))
    records = scan_marsscapes(root)
    partial = {k: v for k, v in MARSSCAPES_MAP.items() if k != 5}
    with pytest.raises(ValueError, match=r"122_1\.png: mask values \[5\].*configs/data/marsscapes\.yaml"):
        ImageStore(records, ClassMap(partial, "marsscapes"), cache=True)


def test_marsscapes_sol_from_name_without_stats(tmp_path: Path) -> None:
    root = write_fake_marsscapes(tmp_path / "ms", sols=(122, 401))
    (root / "stats.csv").unlink()
    assert [r.group for r in scan_marsscapes(root)] == [122, 401]


def test_missing_root_names_path_and_config_key(tmp_path: Path) -> None:
    for scan in (scan_marsscapes, scan_ai4mars, scan_folder):
        with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*data\.root="):
            scan(tmp_path / "nowhere")
    # MARSUNITS_DATA (paths.data_root) places MarsScapes and AI4Mars, not data=folder, whose data.root is
    # mandatory: a missing folder dataset was told to set it all the same.
    for scan, hinted in ((scan_marsscapes, True), (scan_ai4mars, True), (scan_folder, False)):
        with pytest.raises(FileNotFoundError) as info:
            scan(tmp_path / "nowhere")
        assert ("MARSUNITS_DATA" in str(info.value)) is hinted, (scan, str(info.value))


def test_a_misspelt_folder_root_is_told_the_folder_beside_it(tmp_path: Path) -> None:
    """``data=folder data.root=onw`` for ``own/`` was told to give another folder, naming none of those
    beside it."""
    write_fake_folder(tmp_path / "site_a", stems=["a", "b"])
    with pytest.raises(FileNotFoundError) as info:
        scan_folder(tmp_path / "sitea")
    meant = f"(did you mean data.root={tmp_path / 'site_a'}?)"
    assert f"`data.root={tmp_path / 'sitea'}` on the command line {meant}" in str(info.value), str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        scan_folder(tmp_path / "elsewhere")
    assert "did you mean" not in str(info.value)


def test_masks_kept_under_another_folder_name_are_pointed_at(tmp_path: Path) -> None:
    """A folder dataset with its masks in labels/ (the MarsScapes layout) was told only that masks/ is
    missing; the message now lists the folders that are there."""
    root = write_fake_folder(tmp_path / "f", stems=["122_1", "123_1"])  # named by sol, as MarsScapes is
    (root / "masks").rename(root / "labels")
    with pytest.raises(
        FileNotFoundError, match=r"masks at .*holds \['images', 'labels'\]: .*rename it masks/"
    ):
        scan_folder(root)
    # ...and that data=marsscapes reads that layout as it is (the shared data cannot be renamed).
    ms = rf"data=marsscapes data.root={re.escape(str(root))} reads it"
    with pytest.raises(FileNotFoundError, match=ms):
        scan_folder(root)


def test_a_root_one_level_too_deep_is_told_its_parent(tmp_path: Path) -> None:
    """data.root=<data>/images was told that <data>/images/images does not exist, with no word that the
    root is one level too deep."""
    root = write_fake_folder(tmp_path / "f", n_images=2)
    for inner in ("images", "masks"):
        with pytest.raises(
            FileNotFoundError,
            match=rf"looks like the {inner}/ folder itself: .*data.root={re.escape(str(root))}\.",
        ):
            scan_folder(root / inner)
    # A dataset folder that is itself named images/ and holds images/ and labels/ (MarsScapes' layout) was
    # told to give its parent, which holds no masks/ either; it is told about data=marsscapes instead (its
    # images named by sol, as MarsScapes reads them without a stats.csv).
    named = write_fake_folder(tmp_path / "g" / "images", stems=["122_1", "123_1"])
    (named / "masks").rename(named / "labels")
    with pytest.raises(FileNotFoundError) as refused:
        scan_folder(named)
    assert "looks like the images/ folder itself" not in str(refused.value)
    assert f"data=marsscapes data.root={named} reads it" in str(refused.value)


def test_a_fake_folder_carries_the_classes_json_of_the_project_s_own_folders(tmp_path: Path) -> None:
    """write_fake_folder wrote images/ and masks/ only, where every folder of project-id masks the project
    writes (synthetic scenes, pseudo-labels) has the classes.json naming the project's classes beside
    masks/, as the real data sets have theirs: scored by predict.py, a fake folder's masks were read as
    labels of unknown origin ("read as project ids, their 2 as other"). It writes that file now."""
    from pathlib import PurePosixPath

    from marsunits.data.class_map import labels_classes_folder, project_classes_file
    from marsunits.data.mask_io import read_mask
    from marsunits.inference.evaluation import Evaluation

    root = write_fake_folder(tmp_path / "f", n_images=2)
    assert project_classes_file(labels_classes_folder(root / "masks")) == root / "classes.json"
    named = {c["id"]: c["name"] for c in json.loads((root / "classes.json").read_text())["classes"]}
    assert named == {0: "smooth_volcanic", 1: "rough_olivine", 2: "other", 255: "unlabelled"}
    masks = sorted((root / "masks").glob("*.png"))
    assert {int(v) for m in masks for v in np.unique(read_mask(m))} <= set(named)
    scored = Evaluation(root / "masks")
    scored.add(PurePosixPath(masks[0].name), read_mask(masks[0]))
    assert scored.to_dict()["labels_classes_file"] == str(root / "classes.json")
    assert len(scan_folder(root)) == 2  # the folder reads as before: the file is no image
    # Written into again (more stems), the folder keeps one file of the same text.
    text = (root / "classes.json").read_text()
    write_fake_folder(root, stems=["122_1"])
    assert (root / "classes.json").read_text() == text and len(scan_folder(root)) == 3


@pytest.mark.parametrize(("key", "name"), [("marsscapes", "MarsScapes"), ("ai4mars", "AI4Mars")])
def test_fake_marsscapes_and_ai4mars_carry_the_classes_json_of_the_real_folders(
    key: str, name: str, tmp_path: Path
) -> None:
    """The MarsScapes and AI4Mars folders ship a classes.json beside labels/ naming their native ids, which
    training and predict.py read (labels taken as project ids beside it are refused, naming the map); the
    fakes of those layouts wrote none, so that rule never ran on them. Each writes the real file's ids and
    names now (equal to the real one where the shared data is here)."""
    from conftest import SHARED_DATA
    from marsunits.data.class_map import classes_file_refusal, labels_classes_folder

    write = {"marsscapes": write_fake_marsscapes, "ai4mars": write_fake_ai4mars}[key]
    root = write(tmp_path / key)
    assert labels_classes_folder(root / "labels") == root
    named = {c["id"]: c["name"] for c in json.loads((root / "classes.json").read_text())["classes"]}
    held = {int(v) for f in (root / "labels").glob("*.png") for v in np.unique(np.asarray(Image.open(f)))}
    assert held <= set(named), held - set(named)
    refused = classes_file_refusal(root, f"the labels in {root}", "data.class_map")
    assert refused is not None and f"the native ids of {name}" in refused, refused
    real = SHARED_DATA / {"marsscapes": "marsscapes", "ai4mars": "ai4mars_msl256"}[key] / "classes.json"
    if real.is_file():
        ids = {c["id"] for c in json.loads(real.read_text())["classes"]}
        assert set(named) == ids, (sorted(named), sorted(ids))


def test_unpaired_files_are_listed(tmp_path: Path) -> None:
    root = write_fake_marsscapes(tmp_path / "ms", sols=(122, 123, 124))
    (root / "labels" / "123_1.png").unlink()
    with pytest.raises(ValueError, match=r"1 image in .* has no mask.*123_1"):
        scan_marsscapes(root)
    root2 = write_fake_folder(tmp_path / "f", n_images=2)
    (root2 / "images" / "img_0.png").unlink()
    with pytest.raises(ValueError, match=r"1 mask in .* has no image.*img_0"):
        scan_folder(root2)


@pytest.mark.parametrize(
    ("renamed", "added"), [("{}_mask", "_mask"), ("{}-gt", "-gt"), ("label_{}", "label_")]
)
def test_masks_named_with_a_word_added_to_their_images_stems_are_told_the_rename(
    tmp_path: Path, renamed: str, added: str
) -> None:
    """``data=folder`` with ``masks/img_0_mask.png`` for ``images/img_0.png`` (the way many labelling tools
    export): the error listed every image as without a mask and every mask as without an image, without a
    word that each mask was its image's, named with a word added."""
    root = write_fake_folder(tmp_path / "f", n_images=3)
    for mask in sorted((root / "masks").iterdir()):
        mask.rename(mask.with_name(renamed.format(mask.stem) + mask.suffix))
    with pytest.raises(ValueError) as refused:
        scan_folder(root)
    message = str(refused.value)
    assert f"3 masks are named as their images with '{added}' added" in message
    assert f"remove '{added}' from the mask names" in message


def test_masks_named_as_their_images_but_for_letter_case_are_told_so(tmp_path: Path) -> None:
    """Masks whose names differ from their images' in letter case only (``img_0.png`` for ``IMG_0.jpg``, as a
    tool that lowercases names exports them, or as labelled on macOS or Windows, whose disks ignore case) were
    listed as unpaired, each image without a mask and each mask without an image, without a word that the
    names differ in case alone: on Linux, where training runs, names are compared exactly."""
    root = write_fake_folder(tmp_path / "f", n_images=3)
    for image in sorted((root / "images").iterdir()):
        image.rename(image.with_name(image.stem.upper() + image.suffix))
    with pytest.raises(ValueError) as refused:
        scan_folder(root)
    message = str(refused.value)
    assert "3 masks are named as their images but for letter case (e.g. img_0 for the image IMG_0)" in message
    assert "letter case included, so rename the masks (or the images) to match" in message


def test_a_folder_of_one_unpaired_image_counts_it_in_the_singular(tmp_path: Path) -> None:
    """A folder of one image: its refusals read "1 image(s) in ... have no mask", "1 mask(s) are named as
    their images but for letter case" and "for the 1 image(s) in". A count of one now takes the singular,
    its verb too."""
    root = write_fake_folder(tmp_path / "f", n_images=1)
    (image,) = (root / "images").iterdir()
    image.rename(image.with_name(image.stem.upper() + image.suffix))
    with pytest.raises(ValueError) as refused:
        scan_folder(root)
    said = str(refused.value)
    assert f"1 image in {root / 'images'} has no mask in {root / 'masks'}: IMG_0" in said, said
    assert f"1 mask in {root / 'masks'} has no image in {root / 'images'}: img_0" in said, said
    assert "1 mask is named as its image but for letter case (e.g. img_0 for the image IMG_0)" in said, said
    (mask,) = (root / "masks").iterdir()
    mask.rename(mask.with_name("IMG_0_mask" + mask.suffix))
    with pytest.raises(ValueError) as refused:
        scan_folder(root)
    assert "1 mask is named as its image with '_mask' added" in str(refused.value), refused.value
    (root / "masks" / ("IMG_0_mask" + mask.suffix)).unlink()
    with pytest.raises(ValueError) as refused:
        scan_folder(root)
    said = str(refused.value)
    assert f"for the 1 image in {root / 'images'}: each image needs its mask" in said, said
    assert "Label it, or give the folder that holds it with data.root;" in said, said  # not "them"


def test_an_empty_masks_folder_is_said_empty_not_every_image_unpaired(tmp_path: Path) -> None:
    """A data=folder root whose masks/ is empty (images not labelled yet) listed every image as having no
    mask and said to "move the unpaired ones out of the dataset folders": all of them, leaving nothing. It
    is said to hold no mask, with what each image needs and where unlabelled images go (predict.py)."""
    root = write_fake_folder(tmp_path / "f", n_images=3)
    for mask in (root / "masks").iterdir():
        mask.unlink()
    with pytest.raises(ValueError) as refused:
        scan_folder(root)
    said = str(refused.value)
    assert f"no masks found in {root / 'masks'} or its subfolders, for the 3 images in" in said, said
    assert "move the unpaired ones out" not in said and f"predict.py input_dir={root / 'images'}" in said, (
        said
    )


def test_image_mask_size_mismatch_names_file(tmp_path: Path) -> None:
    root = write_fake_folder(tmp_path / "f", n_images=2)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img_1.png")
    for cache in (True, False):
        with pytest.raises(ValueError, match=r"img_1\.png: image is 72x40.*mask.*10x10"):
            ImageStore(scan_folder(root), ClassMap(None, "folder"), cache=cache)


def test_ai4mars_scan_needs_stats(tmp_path: Path) -> None:
    root = write_fake_ai4mars(tmp_path / "a", n_images=3)
    records = scan_ai4mars(root)
    assert [r.group for r in records] == [0, 7, 14]
    store = ImageStore(records, ClassMap(AI4MARS_MAP, "ai4mars"), cache=False)
    assert store.image(0).shape == (64, 64, 1)
    assert set(np.unique(store.mask(0))) == {0, 1, 255}
    (root / "stats.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"stats\.csv not found.*sol_approx"):
        scan_ai4mars(root)


def test_folder_pairs_by_stem_across_extensions_and_reads_cameras(tmp_path: Path) -> None:
    root = write_fake_folder(tmp_path / "f", n_images=2)
    img = Image.open(root / "images" / "img_0.png")
    (root / "images" / "img_0.png").unlink()
    img.save(root / "images" / "img_0.tif")
    (root / "cameras").mkdir()
    (root / "cameras" / "img_1.json").write_text(json.dumps({"fx": 100.0}))
    records = scan_folder(root)
    assert [r.image.name for r in records] == ["img_0.tif", "img_1.png"]
    assert records[0].camera is None and records[1].camera is not None
    store = ImageStore(records, ClassMap(None, "folder"), cache=True)
    assert store.camera(1) == {"fx": 100.0}


# ------------------------------------------------------------------------------------------ sampling


def _store_from_arrays(tmp_path: Path, pairs: list[tuple[np.ndarray, np.ndarray]]) -> ImageStore:
    records = []
    for k, (image, mask) in enumerate(pairs):
        ip, mp = tmp_path / f"i{k}.png", tmp_path / f"m{k}.png"
        Image.fromarray(image).save(ip)
        Image.fromarray(mask).save(mp)
        records.append(LabelledImage(ip, mp, None, "test"))
    return ImageStore(records, ClassMap(None, "test"), cache=True)


@pytest.mark.parametrize("min_fraction", [0.05, 0.0])
def test_ignore_only_crops_are_redrawn_and_empty_images_never_drawn(
    tmp_path: Path, min_fraction: float
) -> None:
    h, w, c = 64, 640, 32
    sparse = np.full((h, w), 255, np.uint8)
    sparse[10:30, 600:630] = 1  # a small labelled patch at the far right of a wide image
    empty = np.full((h, w), 255, np.uint8)
    image = np.zeros((h, w, 3), np.uint8)
    store = _store_from_arrays(tmp_path, [(image, empty), (image, sparse)])
    ds = RandomCropDataset(
        store, length=40, crop_size=c, in_channels=3, min_labelled_fraction=min_fraction, max_tries=3
    )
    np.testing.assert_allclose(ds.probabilities, [0.0, 1.0])
    torch.manual_seed(0)
    for k in range(len(ds)):
        sample = ds[k]
        assert sample["path"].endswith("i1.png")
        assert sample["image"].shape == (3, c, c) and sample["mask"].shape == (c, c)
        # With 3 tries on a 2 % labelled image most draws would be all-ignore; none may come out so.
        assert (sample["mask"] != IGNORE_INDEX).sum() > 0


def _position_coded_store(tmp_path: Path, h: int, w: int) -> ImageStore:
    """One fully labelled image whose red channel holds 5 x its column and green 5 x its row."""
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([5 * cols, 5 * rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    return _store_from_arrays(tmp_path, [(image, np.zeros((h, w), np.uint8))])


def _crop_corner(sample: dict) -> tuple[int, int]:
    """(row, column) of the crop's top-left pixel in the image of :func:`_position_coded_store`."""
    red, green = (round(float(sample["image"][k, 0, 0]) * 255 / 5) for k in (0, 1))
    return green, red


def test_random_crops_reach_every_position_in_the_image(tmp_path: Path) -> None:
    """Every window inside the image is a possible crop, those flush with the bottom and right edges too."""
    c = 32
    ds = RandomCropDataset(
        _position_coded_store(tmp_path, c + 4, c + 8), length=300, crop_size=c, in_channels=3
    )
    torch.manual_seed(0)
    corners = {_crop_corner(ds[k]) for k in range(len(ds))}
    assert corners == {(y, x) for y in range(5) for x in range(9)}
    with pytest.raises(IndexError):  # the end of the epoch, for `for sample in ds` too
        ds[len(ds)]


def test_fixed_crops_repeat_per_index_and_differ_between_indices(tmp_path: Path) -> None:
    """data.fixed_crops (debug=overfit): crop k is the same every epoch, but the crops are not one crop."""
    c = 32
    store = _position_coded_store(tmp_path, c + 4, c + 8)
    ds = RandomCropDataset(store, length=8, crop_size=c, in_channels=3, fixed_seed=7)
    first = [_crop_corner(ds[k]) for k in range(8)]
    torch.rand(100)  # an epoch in between moves torch's generator on
    assert [_crop_corner(ds[k]) for k in range(8)] == first
    assert len(set(first)) > 1


def test_images_drawn_in_proportion_to_labelled_pixels(tmp_path: Path) -> None:
    small = np.zeros((32, 32), np.uint8)
    wide = np.zeros((32, 96), np.uint8)
    store = _store_from_arrays(
        tmp_path, [(np.zeros((32, 32, 3), np.uint8), small), (np.zeros((32, 96, 3), np.uint8), wide)]
    )
    ds = RandomCropDataset(store, length=400, crop_size=32, in_channels=1)
    np.testing.assert_allclose(ds.probabilities, [0.25, 0.75])
    torch.manual_seed(1)
    wide_share = np.mean([ds[k]["path"].endswith("i1.png") for k in range(len(ds))])
    assert 0.65 < wide_share < 0.85


def test_focus_class_crops_contain_that_class(tmp_path: Path) -> None:
    """With focus_fraction=1 every crop holds a pixel of the focus class, even where it is a small patch
    of a wide image, and images are drawn by their focus-class pixel counts, not their labelled area."""
    h, w, c = 64, 640, 32
    patch = np.zeros((h, w), np.uint8)
    patch[40:44, 500:504] = 1  # 16 rough pixels in a smooth panorama
    plain = np.zeros((h, w), np.uint8)  # no rough at all, same labelled area
    image = np.zeros((h, w, 3), np.uint8)
    store = _store_from_arrays(tmp_path, [(image, plain), (image, patch)])
    ds = RandomCropDataset(store, length=60, crop_size=c, in_channels=3, focus_class=1, focus_fraction=1.0)
    np.testing.assert_allclose(ds.probabilities, [0.5, 0.5])
    np.testing.assert_allclose(ds.focus_probabilities, [0.0, 1.0])
    torch.manual_seed(0)
    corners = set()
    for k in range(len(ds)):
        sample = ds[k]
        assert sample["path"].endswith("i1.png")
        assert (sample["mask"] == 1).any()
        ys, xs = np.nonzero(sample["mask"].numpy() == 1)
        corners.add((int(ys.min()), int(xs.min())))
    # The patch lands at different places inside the crop, not always at its centre.
    assert len(corners) > 10


def test_focused_crops_are_uniform_among_the_windows_holding_the_pixel(tmp_path: Path) -> None:
    """A shift of 0..c-1 clipped to the image put a pixel 20 rows from the top at row 0 of 92 % of its
    crops; each window that holds the pixel and fits in the image must be as likely as any other."""
    h, w, c = 512, 32, 256
    mask = np.zeros((h, w), np.uint8)
    mask[20, :] = 1  # the focus class on one row, 20 px from the top
    store = _store_from_arrays(tmp_path, [(np.zeros((h, w, 3), np.uint8), mask)])
    ds = RandomCropDataset(store, length=1, crop_size=c, in_channels=3, focus_class=1, focus_fraction=1.0)
    rng = np.random.default_rng(0)
    tops = np.array([ds._focused_window(rng, mask)[0] for _ in range(4200)])
    assert tops.min() == 0 and tops.max() == 20  # the 21 windows holding row 20: tops 0..20
    counts = np.bincount(tops, minlength=21)
    assert counts.min() > 140 and counts.max() < 260, counts  # about 200 each (was 3,860 at 0)
    # A pixel deeper than a crop: the windows holding row 300 have tops 45 (300 - 255) to 256 (h - c).
    deep = np.zeros((h, w), np.uint8)
    deep[300, :] = 1
    tops = np.array([ds._focused_window(rng, deep)[0] for _ in range(3000)])
    assert tops.min() == 300 - c + 1 and tops.max() == h - c


def test_focus_fraction_is_a_share_and_zero_changes_nothing(tmp_path: Path) -> None:
    mask = np.zeros((32, 320), np.uint8)
    mask[:, 300:] = 1  # rough only in the last 20 of 320 columns
    image = np.arange(32 * 320 * 3, dtype=np.uint32).reshape(32, 320, 3).astype(np.uint8)
    store = _store_from_arrays(tmp_path, [(image, mask)])
    half = RandomCropDataset(
        store, length=400, crop_size=32, in_channels=3, focus_class=1, focus_fraction=0.5
    )
    torch.manual_seed(3)
    share = np.mean([(half[k]["mask"] == 1).any().item() for k in range(len(half))])
    # Focused crops always hold rough; unfocused ones (x0 uniform in 0..288) do when x0 >= 269, 20 of 289
    # positions: expected share 0.5 + 0.5 * 0.07 = 0.53; without focus it would be 0.07.
    assert 0.45 < share < 0.62
    base = RandomCropDataset(store, length=8, crop_size=32, in_channels=3)
    torch.manual_seed(5)
    a = [base[k]["image"] for k in range(8)]
    for focus_class, fraction in ((1, 0.0), (None, 0.5)):  # no share, or no class to focus on
        off = RandomCropDataset(
            store, length=8, crop_size=32, in_channels=3, focus_class=focus_class, focus_fraction=fraction
        )
        torch.manual_seed(5)
        b = [off[k]["image"] for k in range(8)]
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_focus_class_errors_name_the_fix(tmp_path: Path) -> None:
    store = _store_from_arrays(tmp_path, [(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))])
    with pytest.raises(ValueError, match=r"focus_class=1: no pixel.*data.focus_fraction=0"):
        RandomCropDataset(store, length=4, crop_size=32, in_channels=3, focus_class=1, focus_fraction=0.5)
    with pytest.raises(ValueError, match=r"focus_fraction must be in \[0, 1\]"):
        RandomCropDataset(store, length=4, crop_size=32, in_channels=3, focus_class=0, focus_fraction=1.5)


def test_crops_pad_small_images_with_ignore(tmp_path: Path) -> None:
    store = _store_from_arrays(tmp_path, [(np.full((20, 40, 3), 200, np.uint8), np.ones((20, 40), np.uint8))])
    sample = RandomCropDataset(store, length=1, crop_size=32, in_channels=3)[0]
    assert sample["image"].shape == (3, 32, 32)
    assert (sample["mask"][20:] == IGNORE_INDEX).all() and (sample["image"][:, 20:] == 0).all()
    assert (sample["mask"][:20] == 1).all()


def test_a_mask_value_outside_uint8_is_refused_not_wrapped() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    for bad in (300, -1):  # as uint8 these wrap to 44 and 255: a wrong class, or a label silently dropped
        mask = np.array([[0, 1], [2, bad]], np.int64)
        with pytest.raises(
            ValueError, match=rf"x\.png: mask values must be in 0\.\.255, found {min(bad, 0)}\.\."
        ):
            make_sample(image, mask, "x.png", 3)


def test_no_labelled_pixels_is_an_error(tmp_path: Path) -> None:
    store = _store_from_arrays(
        tmp_path, [(np.zeros((32, 32, 3), np.uint8), np.full((32, 32), 255, np.uint8))]
    )
    with pytest.raises(ValueError, match=r"No labelled pixels.*i0\.png"):
        RandomCropDataset(store, length=4, crop_size=32, in_channels=3)


def test_tile_starts_cover_once() -> None:
    for length in (1, 31, 32, 33, 64, 100, 130):
        covered = np.zeros(max(length, 32), int)
        starts = tile_starts(length, 32)
        for start, keep in starts:
            covered[start + keep : start + 32] += 1
        assert (covered[:length] == 1).all(), length
        # no tile that scores nothing: starts increase and each keeps part of itself
        assert [s for s, _ in starts] == sorted({s for s, _ in starts}), length
        assert all(0 <= keep < 32 for _, keep in starts), length


def test_tiled_dataset_scores_every_labelled_pixel_exactly_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mask_a = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(50, 90))
    mask_b = np.full((40, 40), 255, np.uint8)  # all-ignore: contributes no tile
    store = _store_from_arrays(
        tmp_path, [(np.zeros((50, 90, 3), np.uint8), mask_a), (np.zeros((40, 40, 3), np.uint8), mask_b)]
    )
    ds = TiledDataset(store, crop_size=32, in_channels=3, order_seed=3)
    assert {t[0] for t in ds.tiles} == {0}
    scored = sum(int((ds[k]["mask"] != IGNORE_INDEX).sum()) for k in range(len(ds)))
    assert scored == int((mask_a != IGNORE_INDEX).sum())
    # class histogram matches too (pixels are not only counted once but are the right ones)
    hist = sum(torch.bincount(ds[k]["mask"].flatten(), minlength=256)[:3] for k in range(len(ds)))
    assert hist.tolist() == [int((mask_a == v).sum()) for v in (0, 1, 2)]
    again = TiledDataset(store, crop_size=32, in_channels=3, order_seed=3)
    assert again.tiles == ds.tiles  # deterministic order


def test_a_tile_whose_unscored_part_alone_is_labelled_is_skipped(tmp_path: Path) -> None:
    """Tiles with no pixel to score are skipped: the last tile row overlaps the one before, and labels only
    in that overlap are scored by the earlier row, so the last row (rows 32-49 all ignore) gives no item."""
    mask = np.full((50, 40), 255, np.uint8)
    mask[18:32] = 1  # the rows both tile rows hold (tile_starts(50, 32): 0 and 18, scored from row 32)
    store = _store_from_arrays(tmp_path, [(np.zeros((50, 40, 3), np.uint8), mask)])
    ds = TiledDataset(store, crop_size=32, in_channels=3)
    assert all((ds[k]["mask"] != IGNORE_INDEX).any() for k in range(len(ds)))
    assert sum(int((ds[k]["mask"] != IGNORE_INDEX).sum()) for k in range(len(ds))) == 14 * 40


@pytest.mark.parametrize("shape", [(50, 90), (100, 130), (20, 70)])
def test_tiled_dataset_with_context_scores_each_pixel_once_at_its_place(tmp_path: Path, shape) -> None:
    """Windows of tile + context: same pixels scored as without context, each under its own image pixel."""
    h, w = shape
    rng = np.random.default_rng(1)
    mask = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(h, w))
    # The image encodes each pixel's coordinates, so a scored pixel can be traced back to where it came from.
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([yy, xx, (yy * 7 + xx * 3) % 251], axis=-1).astype(np.uint8)
    store = _store_from_arrays(tmp_path, [(image, mask)])
    plain = TiledDataset(store, crop_size=32, in_channels=3, order_seed=None)
    ds = TiledDataset(store, crop_size=32, in_channels=3, order_seed=None, context_px=16)
    assert ds.window_size == 64 and len(ds) == len(plain)
    seen = np.zeros((h, w), int)
    for k in range(len(ds)):
        sample = ds[k]
        assert sample["image"].shape == (3, 64, 64) and sample["mask"].shape == (64, 64)
        scored = (sample["mask"] != IGNORE_INDEX).numpy()
        pix = np.rint(sample["image"].numpy() * 255).astype(int)
        ys, xs = pix[0][scored], pix[1][scored]
        np.testing.assert_array_equal(pix[2][scored], (ys * 7 + xs * 3) % 251)
        np.testing.assert_array_equal(sample["mask"].numpy()[scored], mask[ys, xs])
        seen[ys, xs] += 1
    np.testing.assert_array_equal(seen, (mask != IGNORE_INDEX).astype(int))


@pytest.mark.parametrize("context_px", [0, 16])
def test_validation_windows_pad_small_images_as_predict_does(tmp_path: Path, context_px: int) -> None:
    """An image smaller than the validation window (a user's 128 x 96 px frames in 256 px windows, AI4Mars'
    256 px frames in MarsScapes' 384 px windows) is padded as predict.py pads a short side (reflected): padded
    with black, the network saw a dark border predict.py never shows it, and train=false scored such frames
    3 to 4 points of pixel accuracy lower than predict.py, with ``other`` predicted beside the border."""
    from marsunits.inference.tiling import pad_image

    h, w = 20, 27
    image = np.random.default_rng(2).integers(1, 256, size=(h, w, 3), dtype=np.uint8)
    mask = np.ones((h, w), np.uint8)
    store = _store_from_arrays(tmp_path, [(image, mask)])
    ds = TiledDataset(store, crop_size=32, in_channels=3, order_seed=None, context_px=context_px)
    sample = ds[0]
    win = ds.window_size
    expected = pad_image(torch.from_numpy(image.transpose(2, 0, 1) / 255.0).float(), win, win)
    torch.testing.assert_close(sample["image"], expected)
    assert (sample["mask"][:h, :w] == 1).all()
    assert int((sample["mask"] != IGNORE_INDEX).sum()) == h * w  # the padding is never scored


def test_tiled_dataset_rejects_negative_context(tmp_path: Path) -> None:
    store = _store_from_arrays(tmp_path, [(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))])
    with pytest.raises(ValueError, match="context_px"):
        TiledDataset(store, crop_size=32, in_channels=3, context_px=-16)


# ------------------------------------------------------------------------------------------ transforms


def _checkerboard(size: int = 64, block: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = np.mgrid[0:size, 0:size]
    parity = ((yy // block + xx // block) % 2).astype(np.int64)
    image = torch.from_numpy(parity.astype(np.float32))[None].repeat(3, 1, 1)
    return image, torch.from_numpy(parity)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_transform_keeps_mask_values_and_range(in_channels: int) -> None:
    torch.manual_seed(0)
    t = build_train_transform(48, in_channels, max_rotation_deg=20.0)
    image = torch.rand(in_channels, 64, 64)
    mask = torch.from_numpy(np.random.default_rng(0).choice([0, 2, 255], size=(64, 64)))
    for _ in range(20):
        out = t({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
        assert out["image"].shape == (in_channels, 48, 48) and out["mask"].shape == (48, 48)
        assert set(out["mask"].unique().tolist()) <= {0, 2, 255}
        assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0


def test_transform_keeps_image_and_mask_aligned() -> None:
    torch.manual_seed(0)
    image, parity = _checkerboard()
    exact = build_train_transform(
        64, 3, hflip_p=0.5, min_scale=1.0, max_rotation_deg=0.0, brightness=0.0, contrast=0.0, saturation=0.0
    )
    for _ in range(6):
        out = exact({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(parity)})
        assert torch.equal((out["image"][0] > 0.5).long(), out["mask"])
    geometric = build_train_transform(
        48, 3, min_scale=0.3, max_rotation_deg=10.0, brightness=0.0, contrast=0.0, saturation=0.0
    )
    for _ in range(10):
        out = geometric({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(parity)})
        valid = out["mask"] != IGNORE_INDEX
        agree = ((out["image"][0] > 0.5).long() == out["mask"])[valid].float().mean()
        # bilinear image vs nearest mask may differ only along block edges
        assert agree > 0.85, float(agree)


def test_rotation_fills_the_corners_it_brings_in_with_ignore() -> None:
    """Pixels a rotation brings in from outside the crop are image 0 and mask 255, never a class."""
    torch.manual_seed(0)
    t = build_train_transform(
        64, 3, hflip_p=0.0, min_scale=1.0, max_rotation_deg=20.0, brightness=0.0, contrast=0.0, saturation=0.0
    )
    image, mask = torch.ones(3, 64, 64), torch.zeros(64, 64, dtype=torch.int64)
    brought_in = 0
    for _ in range(10):
        out = t({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
        outside = out["image"][0] == 0.0  # bilinear: 0 only where no input pixel reaches
        assert (out["mask"][outside] == IGNORE_INDEX).all()
        assert (out["image"][:, out["mask"] == IGNORE_INDEX] < 1.0).all()  # and no image pixel is ignored
        brought_in += int(outside.sum())
    assert brought_in > 0


def test_horizontal_flips_happen_at_their_probability_and_never_at_zero() -> None:
    columns = torch.arange(64, dtype=torch.float32).expand(64, 64) / 63
    image, mask = columns[None].repeat(3, 1, 1), (torch.arange(64) // 32).expand(64, 64).clone()
    counts = {}
    for p in (0.0, 0.5):
        torch.manual_seed(1)
        t = build_train_transform(
            64,
            3,
            hflip_p=p,
            min_scale=1.0,
            max_rotation_deg=0.0,
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
        )
        flipped = 0
        for _ in range(40):
            out = t({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
            is_flipped = bool(out["image"][0, 0, 0] == 1.0)
            expected = image.flip(-1) if is_flipped else image
            assert torch.equal(out["image"], expected)
            assert torch.equal(out["mask"], mask.flip(-1) if is_flipped else mask)  # image and mask together
            flipped += is_flipped
        counts[p] = flipped
    assert counts[0.0] == 0 and 10 <= counts[0.5] <= 30


def test_without_zoom_a_larger_scene_gives_a_native_resolution_window() -> None:
    """min_scale=1 resized each 160x128 synthetic scene to 128x128 (its units squeezed to 0.8 of their width
    and resampled, never shifted) instead of cropping a 128 px window out of it."""
    torch.manual_seed(0)
    height, width, crop = 128, 160, 128
    columns = torch.arange(width, dtype=torch.float32).expand(height, width)
    image = (columns / (width - 1))[None].repeat(3, 1, 1)  # each pixel holds its column
    mask = (torch.arange(width) % 3).expand(height, width).clone()
    t = build_train_transform(
        crop,
        3,
        hflip_p=0.0,
        min_scale=1.0,
        max_rotation_deg=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
    )
    starts = set()
    for _ in range(30):
        out = t({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
        assert out["image"].shape == (3, crop, crop)
        cols = torch.round(out["image"][0] * (width - 1)).long()
        first = int(cols[0, 0])
        assert torch.equal(
            cols, torch.arange(first, first + crop).expand(crop, crop)
        )  # unscaled, unshifted rows
        assert torch.equal(out["mask"], cols % 3)  # the mask is the same window
        starts.add(first)
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= width - crop
    # A side smaller than the crop is padded: image 0, mask ignore.
    small = t({"image": tv_tensors.Image(image[:, :100, :]), "mask": tv_tensors.Mask(mask[:100])})
    assert small["mask"].shape == (crop, crop) and int((small["mask"] == IGNORE_INDEX).sum()) == 28 * crop


# ------------------------------------------------------------------------------------------ splits


def test_near_sols_is_within_margin_of_any_reference_sol() -> None:
    rng = np.random.default_rng(4)
    sols = [*rng.integers(0, 60, size=200).tolist(), None]
    reference = rng.integers(0, 60, size=7).tolist()
    for margin in (0, 1, 2, 5):
        expected = [s is not None and any(abs(s - r) <= margin for r in reference) for s in sols]
        assert near_sols(sols, reference, margin).tolist() == expected, margin
    assert not near_sols(sols, reference, -1).any() and not near_sols(sols, [], 3).any()


def test_merge_sols_is_the_union_per_source() -> None:
    merged = merge_sols({"ms": [5, 1], "ai": [7]}, None, {"ms": [3, 5], "x": []})
    assert merged == {"ms": [1, 3, 5], "ai": [7]}  # a source without sols is left out
    assert merge_sols(None, {"ms": []}) is None  # no part has any sol


def test_split_by_sol_has_no_overlap_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    sols = rng.integers(0, 400, size=300).tolist()
    for block in (1, 10):
        train, val = split_by_group(sols, 0.2, seed=5, sol_block=block)
        assert len(train) and len(val) and not set(train) & set(val)
        assert sorted([*train, *val]) == list(range(300))
        assert not {sols[i] // block for i in train} & {sols[i] // block for i in val}
        again = split_by_group(sols, 0.2, seed=5, sol_block=block)
        assert np.array_equal(again[0], train) and np.array_equal(again[1], val)


def test_a_rover_position_stays_on_one_side_of_the_split() -> None:
    """AI4Mars frames of one parked position (site/drive) on sols 1439 and 1441 (two blocks) were split
    apart: near-identical images in training and validation. Blocks sharing a place are one group now."""
    assert group_ids([5, 15, 25, 35], 10, ["a", "b", "a", None]).tolist() == [0, 1, 0, 3]
    assert group_ids([5, 15, 25, None], 10, ["a", "b", "b", "b"]).tolist() == [0, 1, 1, -4]
    rng = np.random.default_rng(3)
    sols = rng.integers(0, 600, size=400).tolist()
    places = [f"site{sol // 37}" for sol in sols]  # positions that straddle the 10-sol blocks
    for train, val in (
        split_by_group(sols, 0.2, seed=0, sol_block=10, places=places),
        *(kfold_split_by_group(sols, 4, k, sol_block=10, places=places) for k in range(4)),
    ):
        assert len(val) and not {places[i] for i in train} & {places[i] for i in val}
        assert not {sols[i] // 10 for i in train} & {sols[i] // 10 for i in val}
    plain_train, plain_val = split_by_group(sols, 0.2, seed=0, sol_block=10)
    assert {places[i] for i in plain_train} & {places[i] for i in plain_val}  # what happened without


def test_kfold_validates_every_image_exactly_once_without_sol_leakage() -> None:
    rng = np.random.default_rng(1)
    sols = [*rng.integers(0, 400, size=200).tolist(), None, None]
    seen = np.zeros(len(sols), int)
    for fold in range(5):
        train, val = kfold_split_by_group(sols, 5, fold, sol_block=10)
        assert sorted([*train, *val]) == list(range(len(sols)))
        blocks = lambda idx: {sols[i] // 10 for i in idx if sols[i] is not None}  # noqa: E731
        assert not blocks(train) & blocks(val)
        assert 0.1 * len(sols) < len(val) < 0.3 * len(sols)  # folds of similar size
        seen[val] += 1
        again = kfold_split_by_group(sols, 5, fold, sol_block=10)
        assert np.array_equal(again[1], val)
    assert (seen == 1).all()
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        kfold_split_by_group(sols, 5, 5)
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        kfold_split_by_group(sols, 1, 0)
    with pytest.raises(ValueError, match="Cannot make 3 folds from 2 sol group"):
        kfold_split_by_group([1, 1, 25], 3, 0, sol_block=10)


def test_split_errors_and_unknown_sols() -> None:
    with pytest.raises(
        ValueError, match=r"Cannot split 3 images into train and validation: they form 1 split group \("
    ):
        split_by_group([3, 3, 3], 0.2, seed=0)
    # One image: it read "Cannot split 1 image(s) ...: they form 1 split group(s) ... 1 sol(s) at a time".
    with pytest.raises(
        ValueError,
        match=r"Cannot split 1 image into train and validation: it forms 1 split group \(.* "
        r"grouped 1 sol at a time",
    ):
        split_by_group([3], 0.2, seed=0, sol_block=1)
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_group([1, 2], 1.0, seed=0)
    # Text compared with numbers (a TypeError naming no key); the ends: no validation, or no training.
    for wrong in ("most", 0, 1, True):
        with pytest.raises(ValueError, match=rf"val_fraction must be in \(0, 1\), got {wrong!r}: .*=0\.2\.$"):
            split_by_group(list(range(10)), wrong, seed=0)  # type: ignore[arg-type]
    # scikit-learn's "With n_samples=3, test_size=0.9 and train_size=None, the resulting train set will be
    # empty" named none of the config's keys; a folder of one image was told to lower data.sol_block (1).
    with pytest.raises(ValueError, match=r"data\.val_fraction=0\.9 sends all 3 images .*to 0\.66 or less"):
        split_by_group([None, None, None], 0.9, seed=0)
    assert len(split_by_group([None, None, None], 0.66, seed=0)[0]) == 1  # the value it advises works
    with pytest.raises(ValueError, match=r"Add labelled images") as info:
        split_by_group([None], 0.2, seed=0)
    assert "sol_block" not in str(info.value).split(").")[-1]
    with pytest.raises(ValueError, match=r"lower data\.n_folds, or add images\.$"):
        kfold_split_by_group([None, None, None], 5, 0)
    ids = group_ids([None, None, 12, 19], sol_block=10)
    assert ids[0] != ids[1] and ids[2] == ids[3] == 1


# ------------------------------------------------------------------------------------------ collation


def test_collate_keeps_paths_and_cameras_as_lists() -> None:
    base = [
        {
            "image": torch.rand(1, 8, 8),
            "mask": torch.zeros(8, 8, dtype=torch.int64),
            "path": "a.png",
            "camera": {"fx": 1.0},
        },
        {"image": torch.rand(1, 8, 8), "mask": torch.zeros(8, 8, dtype=torch.int64), "path": "b.png"},
    ]
    batch = collate_samples(base)
    assert batch["image"].shape == (2, 1, 8, 8) and batch["mask"].dtype == torch.int64
    assert batch["path"] == ["a.png", "b.png"]
    assert batch["camera"] == [{"fx": 1.0}, None]


def test_scene_dataset_converts_channels_and_drops_camera_when_augmenting() -> None:
    item = {
        "image": torch.rand(1, 64, 64),
        "mask": torch.zeros(64, 64, dtype=torch.int64),
        "path": "s.png",
        "camera": {"fx": 1.0},
    }
    plain = SceneDataset([item], in_channels=3)[0]
    assert plain["image"].shape == (3, 64, 64) and plain["camera"] == {"fx": 1.0}
    assert torch.equal(plain["image"][0], plain["image"][2])
    aug = SceneDataset([item], in_channels=3, transform=build_train_transform(32, 3))[0]
    assert aug["image"].shape == (3, 32, 32) and "camera" not in aug


def test_scene_cache_quantises_images_to_the_nearest_8_bit_level() -> None:
    """The cache stores round(255 x): 8-bit levels come back as they went in, other values are off by at
    most half a level."""
    levels = (torch.arange(256, dtype=torch.float32) / 255).reshape(1, 16, 16).repeat(3, 1, 1)
    smooth = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    for image in (levels, smooth):
        item = {"image": image, "mask": torch.zeros(16, 16, dtype=torch.int64), "path": "s.png"}
        cached = SceneDataset([item], in_channels=3, cache=True)
        for _ in range(2):  # rendered, then from the cache
            assert float((cached[0]["image"] - image).abs().max()) <= 0.5 / 255 + 1e-6


def test_folder_data_pairs_the_files_of_subfolders(tmp_path: Path) -> None:
    """Images in subfolders of a folder dataset were left out of training without a word, while predict.py
    reads (and mirrors) subfolders; they are now paired by their path below images/ and masks/."""
    for rel in ("top", "site B/a", "site2/a", "site2/deeper/nav 3", ".ipynb_checkpoints/top"):
        for folder, ext in (("images", "jpg"), ("masks", "png")):
            (tmp_path / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("L" if folder == "masks" else "RGB", (8, 8)).save(tmp_path / folder / f"{rel}.{ext}")
    records = scan_folder(tmp_path)
    got = [
        (r.image.relative_to(tmp_path).as_posix(), r.mask.relative_to(tmp_path).as_posix()) for r in records
    ]
    assert got == [
        ("images/site B/a.jpg", "masks/site B/a.png"),
        ("images/site2/a.jpg", "masks/site2/a.png"),  # the same stem in another subfolder is another image
        ("images/site2/deeper/nav 3.jpg", "masks/site2/deeper/nav 3.png"),
        ("images/top.jpg", "masks/top.png"),
    ]  # the hidden folder's copy is skipped, as predict.py skips it
    (tmp_path / "masks" / "site2" / "a.png").rename(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"1 image in .* has no mask .*: site2/a; 1 mask .*: a\."):
        scan_folder(tmp_path)
    # Layouts read flat (MarsScapes, AI4Mars) still say where images in subfolders are.
    for site in ("site1", "site2"):
        (tmp_path / "flat" / "images" / site).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "images" / site / "a.png")
    (tmp_path / "flat" / "masks").mkdir()
    with pytest.raises(
        ValueError, match=r"no images found in .*images\. .*subfolders \(site1, site2\).*not searched"
    ):
        pair_by_stem(tmp_path / "flat" / "images", tmp_path / "flat" / "masks", "marsscapes", lambda _: None)


def test_folder_data_follows_linked_subfolders_and_pairs_names_in_either_unicode_form(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A subfolder that is a symbolic link was left out of training without a word (``Path.rglob`` does not
    enter linked folders; predict.py does); a mask named in NFD form (macOS) beside an image named in NFC
    form was said to lack its image, and the image its mask, under the same printed name; images in a
    format that is not read (.bmp) were left out silently."""
    import os
    import unicodedata

    site = tmp_path / "elsewhere"
    for folder, ext in (("images", "jpg"), ("masks", "png")):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.new("L" if folder == "masks" else "RGB", (8, 8)).save(tmp_path / "data" / folder / f"top.{ext}")
        (site / folder).mkdir(parents=True)
        Image.new("L" if folder == "masks" else "RGB", (8, 8)).save(site / folder / f"c.{ext}")
        os.symlink(site / folder, tmp_path / "data" / folder / "siteB")
        os.symlink(tmp_path / "data" / folder, tmp_path / "data" / folder / "siteB" / "loop")  # a cycle
    name = "Séítah_1"
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "images" / f"{unicodedata.normalize('NFC', name)}.jpg")
    Image.new("L", (8, 8)).save(tmp_path / "data" / "masks" / f"{unicodedata.normalize('NFD', name)}.png")
    records = scan_folder(tmp_path / "data")
    got = sorted(
        unicodedata.normalize("NFC", r.image.relative_to(tmp_path / "data").as_posix()) for r in records
    )
    assert got == ["images/Séítah_1.jpg", "images/siteB/c.jpg", "images/top.jpg"]
    assert "left out" not in caplog.text
    # A pair in a format that is not read: said when it leaves an unpaired file, and when all else pairs.
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "images" / "d.bmp")
    Image.new("L", (8, 8)).save(tmp_path / "data" / "masks" / "d.png")
    with pytest.raises(
        ValueError,
        match=r"has no image .*: d\..* 1 file in .* is in a format that is not read \(d\.bmp\): convert it",
    ):
        scan_folder(tmp_path / "data")
    (tmp_path / "data" / "masks" / "d.png").unlink()
    with caplog.at_level("WARNING", logger="marsunits.data.folder"):
        assert len(scan_folder(tmp_path / "data")) == 3
    assert "format that is not read (d.bmp)" in caplog.text
    # A link to a folder of the tree itself (a "latest" shortcut) is not walked in its place, whatever the
    # order: the files keep their real folder's name (the link walked first had taken them).
    for folder, ext in (("images", "jpg"), ("masks", "png")):
        (tmp_path / "data" / folder / "sol_0137").mkdir()
        Image.new("L" if folder == "masks" else "RGB", (8, 8)).save(
            tmp_path / "data" / folder / f"sol_0137/e.{ext}"
        )
        os.symlink(tmp_path / "data" / folder / "sol_0137", tmp_path / "data" / folder / "a_latest")
    got = sorted(r.image.relative_to(tmp_path / "data").as_posix() for r in scan_folder(tmp_path / "data"))
    assert "images/sol_0137/e.jpg" in got and not [g for g in got if "a_latest" in g]
    # Names in NFD on disk (copied from macOS): the camera file named as the image is on disk is found.
    nfd = unicodedata.normalize("NFD", "Máaz_2")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "images" / f"{nfd}.jpg")
    Image.new("L", (8, 8)).save(tmp_path / "data" / "masks" / f"{nfd}.png")
    (tmp_path / "data" / "cameras").mkdir()
    (tmp_path / "data" / "cameras" / f"{nfd}.json").write_text("{}")
    (rec,) = [r for r in scan_folder(tmp_path / "data") if "2" in r.image.name]
    assert rec.camera == tmp_path / "data" / "cameras" / f"{nfd}.json"


def test_a_sol_table_saved_by_a_spreadsheet_is_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts the file with a byte-order mark, and the table was refused: "expected
    columns 'name' and 'sol', found ['\\ufeffname', 'sol']"."""
    root = write_fake_marsscapes(tmp_path / "ms", sols=(122, 123))
    table = root / "stats.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes().replace(b"\n", b"\r\n"))
    assert sorted(r.group for r in scan_marsscapes(root)) == [122, 123]
    # AI4Mars' table, with the site and drive columns that group frames by place: a KeyError traceback.
    ai = write_fake_ai4mars(tmp_path / "a", n_images=3)
    stats = ai / "stats.csv"
    rows = stats.read_text().splitlines()
    if "site" not in rows[0]:
        rows = [rows[0] + ",site,drive"] + [r + ",1,2" for r in rows[1:]]
    stats.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    assert len(scan_ai4mars(ai)) == 3


def test_a_1_bit_mask_is_read_and_a_turned_photo_is_named_in_the_size_error(tmp_path: Path) -> None:
    """A mask of 0 and 255 saved as 1-bit (PNG optimisers, PIL for a boolean array) was refused as "mode '1'
    with 1 channel(s)", a single channel; a mask drawn on the stored pixels of a photo with an EXIF rotation
    was said to differ in size while both files were that size on disk."""
    from marsunits.data.mask_io import read_mask

    ids = np.zeros((6, 8), np.uint8)
    ids[:, 4:] = 255
    Image.fromarray(ids > 0).save(tmp_path / "m.png")  # mode "1"
    assert Image.open(tmp_path / "m.png").mode == "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), ids)

    root = write_fake_folder(tmp_path / "f", n_images=2)
    photo = Image.open(root / "images" / "img_1.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # turned by 90 degrees when displayed
    photo.save(root / "images" / "img_1.jpg", exif=exif.tobytes())
    (root / "images" / "img_1.png").unlink()
    with pytest.raises(ValueError, match=r"img_1\.jpg: image is 40x72.*EXIF orientation tag \(6\) turns it"):
        ImageStore(scan_folder(root), ClassMap(None, "folder"), cache=False)


def test_notes_on_how_uncached_training_images_read_are_said_by_the_main_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A source read without a cache (AI4Mars' default) decodes its images in loader workers, which say
    nothing: a frame stack saved as one TIFF trained on its first page, and 8-bit values in a 16-bit file 16
    times too dark, without a word."""
    import tifffile

    from marsunits.data import io as image_io

    root = write_fake_folder(tmp_path / "f", n_images=2)
    first = np.asarray(Image.open(root / "images" / "img_0.png").convert("L"))
    (root / "images" / "img_0.png").unlink()
    with tifffile.TiffWriter(root / "images" / "img_0.tif") as tif:
        tif.write(first)
        tif.write(first)
    image_io._WARNED_READ_NOTES.discard(str(root / "images" / "img_0.tif"))
    # And 8-bit values saved in a 16-bit file, which read 16 times too dark: the header says 16 bits.
    dark = np.asarray(Image.open(root / "images" / "img_1.png").convert("L")).astype(np.uint16)
    (root / "images" / "img_1.png").unlink()
    tifffile.imwrite(root / "images" / "img_1.tif", dark)
    image_io._WARNED_READ_NOTES.discard(str(root / "images" / "img_1.tif"))
    with caplog.at_level("WARNING", logger="marsunits.data.io"):
        store = ImageStore(scan_folder(root), ClassMap(None, "folder"), cache=False)  # nothing read yet
        said = [r.getMessage() for r in caplog.records]
        store.image(0)  # read here (num_workers=0) after the set-up said it: not said again
    assert len(caplog.records) == 2
    assert said[1].startswith(f"{root / 'images' / 'img_1.tif'}: its 16-bit samples all fit in 8 bits")
    assert said[:1] == [
        f"{root / 'images' / 'img_0.tif'}: the TIFF holds 2 full-resolution pages; only the first is read. "
        "If the others are frames or bands of the picture, save the image you want labelled as a TIFF of its "
        "own"
    ]


def test_a_data_root_named_tilde_something_is_a_folder_of_the_working_folder(tmp_path, monkeypatch):
    """``~name`` that names no user is a folder of that name, as the shell leaves it: pathlib's
    ``expanduser`` raised RuntimeError ("Could not determine home directory") for it, a traceback."""
    from marsunits.data.folder import check_root

    monkeypatch.chdir(tmp_path)
    (tmp_path / "~rover_data_no_such_user").mkdir()
    assert check_root("~rover_data_no_such_user", "folder", "images/ + masks/") == Path(
        "~rover_data_no_such_user"
    )
    with pytest.raises(FileNotFoundError, match="~no_such_user_folder does not exist") as refused:
        check_root("~no_such_user_folder", "folder", "images/ + masks/")
    # A relative root: the folder it was looked for in is named ("rel does not exist" left it to guess).
    assert f"(that is {tmp_path / '~no_such_user_folder'}, from the current folder; " in str(refused.value)
    with pytest.raises(FileNotFoundError, match=f"that is {tmp_path / 'sols'}, from the current folder"):
        check_root("sols", "marsscapes", "images/ + masks/")
    with pytest.raises(FileNotFoundError) as refused:  # an absolute one is named once
        check_root(tmp_path / "sols", "marsscapes", "images/ + masks/")
    assert "from the current folder" not in str(refused.value)


def test_predict_and_training_paths_named_tilde_something_are_files_not_errors(tmp_path, monkeypatch):
    """The same for predict.py's folder options and train.py's ``ckpt_path``."""
    from marsunits.errors import ConfigError
    from marsunits.inference.inputs import resolve_option_path
    from marsunits.run_resume import resolve_ckpt_path

    monkeypatch.chdir(tmp_path)
    assert resolve_option_path("~in_no_such_user", "input_dir") == tmp_path / "~in_no_such_user"
    with pytest.raises((FileNotFoundError, ConfigError), match="~no_such_user.ckpt"):
        resolve_ckpt_path("~no_such_user.ckpt", tmp_path, tmp_path, "train")


@pytest.mark.parametrize("where", ["png_exif", "tiff_pixels"])
def test_a_sigterm_while_training_data_is_read_stops_the_run(tmp_path: Path, monkeypatch, where) -> None:
    """A SIGTERM arriving while training data is read, inside a block that catches ``Exception``, raises
    TerminatedError out of the read (``train.py``'s set-up, under ``sigterm_raises``). TerminatedError derived
    from Exception: the EXIF read of an image's size (a broken EXIF block reads as untagged) swallowed it and
    the stop was lost; a TIFF decoder's error became ImageReadError, and the stop was reported as an unusable
    image pair."""
    import os
    import signal
    import sys
    import time

    import tifffile
    from PIL import PngImagePlugin

    from marsunits.errors import TerminatedError, sigterm_raises

    image = tmp_path / ("i0.tif" if where == "tiff_pixels" else "i0.png")
    pixels = np.zeros((16, 16, 3), np.uint8)
    tifffile.imwrite(image, pixels) if where == "tiff_pixels" else Image.fromarray(pixels).save(image)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "m0.png")
    records = [LabelledImage(image, tmp_path / "m0.png", None, "test")]
    owner, name = (
        (tifffile.TiffPage, "asarray") if where == "tiff_pixels" else (PngImagePlugin.PngImageFile, "getexif")
    )
    real = getattr(owner, name)

    def read(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The image's read (the mask's PNG is read first, outside such a block).
        if where == "tiff_pixels" or sys._getframe(1).f_code.co_name == "_orientation_tag":
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside the read
            time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, read)
    with sigterm_raises(), pytest.raises(TerminatedError):
        ImageStore(records, ClassMap(None, "test"), cache=where == "tiff_pixels")


def test_a_folder_with_labels_not_masks_is_called_marsscapes_only_when_its_names_carry_sols(
    tmp_path: Path,
) -> None:
    """A geologist's own folder of AI4Mars frames, images/ beside labels/ (AI4Mars' name for them) and no
    stats.csv, given as data=folder, was told it "looks like a MarsScapes folder (images/<sol>_<n>.jpg,
    labels/<sol>_<n>.png and stats.csv ...)" with data=marsscapes to give, which then refused every image
    for its missing sol. Without its table a folder is MarsScapes' only if its images are named by sol, as
    MarsScapes reads a sol from a name; else the refusal says to rename the folder masks/, as it did."""
    from marsunits.errors import DataLayoutError

    root = write_fake_folder(tmp_path / "frames", stems=["NLB_450492521EDR_F0310634NCAM00357M1", "NLA_1"])
    (root / "masks").rename(root / "labels")
    with pytest.raises(DataLayoutError) as refused:
        scan_folder(root)
    said = str(refused.value)
    assert f"{root} holds ['images', 'labels']: if one of them has the masks, rename it masks/." in said, said
    assert "MarsScapes" not in said and "data=marsscapes" not in said, said
    sols = write_fake_folder(tmp_path / "panoramas", stems=["122_1", "130_2"])
    (sols / "masks").rename(sols / "labels")
    with pytest.raises(DataLayoutError) as refused:
        scan_folder(sols)
    said = str(refused.value)
    assert f"{sols} looks like a MarsScapes folder" in said and f"data=marsscapes data.root={sols}" in said


def test_a_root_of_another_layout_or_one_level_off_is_told_what_it_looks_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AI4Mars folder read as MarsScapes (or the reverse) was refused for its stats.csv's columns, with no
    word that it is the other dataset; ``data.root=<the folder holding the datasets>`` was told to rename one
    of them images/; a folder inside the dataset's was told about <it>/images. The layout is now checked
    first (folders and the sol table's header, no image read), saying what the folder looks like and the
    ``data.root`` to give, in the same words to a data module of several sources with its own key."""
    from marsunits.data.datamodule import MarsDataModule
    from marsunits.errors import DataLayoutError

    data = tmp_path / "data"
    ms = write_fake_marsscapes(data / "marsscapes", sols=(122,))
    ai = write_fake_ai4mars(data / "ai4mars_msl256", n_images=1)

    def refusal(scan: object, root: Path) -> str:
        with pytest.raises(DataLayoutError) as refused:
            scan(root)  # type: ignore[operator]
        return str(refused.value)

    said = refusal(scan_marsscapes, ai)
    assert f"{ai / 'stats.csv'} has no 'sol' column" in said, said
    assert f"{ai} looks like an AI4Mars folder" in said and f"data=ai4mars data.root={ai}" in said, said
    assert "experiment=ai4mars" in said, said
    said = refusal(scan_ai4mars, ms)
    assert f"{ms} looks like a MarsScapes folder" in said and f"data=marsscapes data.root={ms}" in said, said
    # One level too high: the subfolder with the layout is named, and no folder is to be renamed.
    for scan, inner in ((scan_marsscapes, ms), (scan_ai4mars, ai)):
        said = refusal(scan, data)
        assert f"give data.root={inner}" in said and "rename" not in said, said
    # One level too low: a folder inside the dataset's (its images/ or any other).
    (ms / "notes").mkdir()
    for inner in ("images", "notes"):
        said = refusal(scan_marsscapes, ms / inner)
        assert f"data.root={ms}" in said, said
    # data=folder at the folder holding the datasets (each in its own layout): each subfolder is named with
    # the data config and data.root that read it, not "rename one of them images/".
    said = refusal(scan_folder, data)
    assert "rename" not in said, said
    assert f"{data} holds ai4mars_msl256/, " in said, said
    assert f"marsscapes/, a MarsScapes folder: data=marsscapes data.root={ms} reads it" in said, said
    assert f"experiment=marsscapes data.root={ms}" in said, said
    assert f"ai4mars_msl256/, an AI4Mars folder: data=ai4mars data.root={ai} reads it" in said, said
    assert f"experiment=ai4mars data.root={ai}" in said, said
    with pytest.raises(DataLayoutError) as refused:
        scan_folder(data, key="data.source_dirs.mine")  # a source of several: its own key, no data= to give
    said = str(refused.value)
    assert "marsscapes/, a MarsScapes folder" in said and "give data.source_dirs.mine=" in said, said
    assert "data=marsscapes" not in said, said
    # ...and data=marsscapes at a folder holding only an AI4Mars folder: that one named, nothing to rename.
    other = tmp_path / "other"
    write_fake_ai4mars(other / "ai4mars_msl256", n_images=1)
    said = refusal(scan_marsscapes, other)
    assert "rename" not in said and f"data=ai4mars data.root={other / 'ai4mars_msl256'}" in said, said

    # ...given relative to the current folder (data.root=. from inside it): the same, with absolute paths.
    monkeypatch.chdir(ms / "images")
    for relative in (".", "./"):
        said = refusal(scan_marsscapes, Path(relative))
        assert f"at {ms / 'images' / 'images'}," in said and f"data.root={ms}." in said, said
    monkeypatch.chdir(tmp_path)
    # A data=folder root with images/ and no masks/: said with what it must hold, nothing else to guess.
    only = tmp_path / "only"
    (only / "images").mkdir(parents=True)
    said = refusal(scan_folder, only)
    assert f"expected a folder of masks at {only / 'masks'}" in said, said
    # ...images alone (/work/shared/data/marsscapes_unlabeled, given to train on): where they go instead.
    assert f"predict.py input_dir={only / 'images'}" in said, said
    said = refusal(scan_marsscapes, only)
    assert f"expected a folder of masks at {only / 'labels'}" in said, said
    assert f"predict.py input_dir={only / 'images'}" in said, said
    # Several sources: the source's own key, no other data config to switch to.
    dm = MarsDataModule(
        name="marsscapes_ai4mars",
        sources=["marsscapes", "ai4mars"],
        in_channels=1,
        crop_size=32,
        root=str(data),
        source_dirs={"marsscapes": "ai4mars_msl256", "ai4mars": "ai4mars_msl256"},
        class_map={"marsscapes": {0: 0}, "ai4mars": {0: 0}},
    )
    with pytest.raises(FileNotFoundError) as refused:
        dm.check_source_folders()
    said = str(refused.value)
    assert f"{ai} looks like an AI4Mars folder" in said and "data.source_dirs.marsscapes=" in said, said
    assert "data=ai4mars" not in said, said
    # ...and data.root one level too low or too high, which holds no marsscapes/: the folder that does.
    for off in (ms, tmp_path):
        dm.root, dm.source_dirs = str(off), {"marsscapes": "marsscapes", "ai4mars": "ai4mars_msl256"}
        with pytest.raises(FileNotFoundError) as refused:
            dm.check_source_folders()
        assert f"{data} holds marsscapes/ with the MarsScapes layout: give data.root={data}." in str(
            refused.value
        ), refused.value
    # The layouts that are right pass, reading no image.
    for scan, root in ((scan_marsscapes, ms), (scan_ai4mars, ai)):
        assert len(scan(root)) == 1


def test_the_data_set_maps_that_refusals_spell_out_are_the_configs() -> None:
    """``DATA_SET_LABEL_MAPS`` (what a refused ``labels_class_map=<data set>`` tells to give) equals the
    ``class_map`` of ``configs/data/<name>.yaml``, and parses as the command line's mapping."""
    import yaml

    from marsunits.inference.options import DATA_SET_LABEL_MAPS

    configs = Path(__file__).resolve().parents[1] / "configs" / "data"
    for name, text in DATA_SET_LABEL_MAPS.items():
        assert yaml.safe_load(text) == yaml.safe_load((configs / f"{name}.yaml").read_text())["class_map"]


def test_masks_with_the_same_problem_are_said_once_with_their_files_named(tmp_path: Path) -> None:
    """A folder of AI4Mars labels not converted: the refusal repeated the same class-map advice (some 700
    characters) for each of the first ten masks, one per line, and a different problem of an eleventh pair
    was hidden behind "... and N more". The advice is now said once, the other masks named after it, and the
    other problem listed."""
    from marsunits.data.store import LISTED_PROBLEMS, UnusablePairsError

    root = write_fake_folder(tmp_path / "f", n_images=LISTED_PROBLEMS + 3)
    masks = sorted((root / "masks").iterdir())
    for mask in masks[:-1]:
        width, height = Image.open(mask).size
        Image.fromarray((np.arange(width * height, dtype=np.uint8) % 4).reshape(height, width)).save(mask)
    Image.open(masks[-1]).convert("RGB").save(masks[-1])  # another problem, last in order
    records = scan_folder(root)
    with pytest.raises(UnusablePairsError) as refused:
        ImageStore(records, ClassMap(None, "folder"), cache=True)
    said = str(refused.value)
    assert said.startswith(f"{LISTED_PROBLEMS + 3} of {LISTED_PROBLEMS + 3} image/mask pairs cannot be used")
    assert said.count("are not project class ids") == 1, said
    assert "the same for 11 more" in said and masks[1].name in said
    assert f"{masks[-1]}: a mask must be a single-channel image" in said and "... and" not in said
