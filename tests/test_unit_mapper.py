"""``UnitMapper``: one image mapped from Python gives what ``predict.py`` writes for it, with its defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from marsunits.boundary.camera.io import CameraFileError, load_camera
from marsunits.boundary.contact_io import read_contacts
from marsunits.data.mask_io import read_mask
from marsunits.errors import ConfigError, MarsUnitsError
from marsunits.inference import PredictOptions, UnitMap, UnitMapper, run
from marsunits.inference.options import read_contact_config

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import compose_config, one_step_trainer, tiny_task
    from .test_predict import TILE, make_cfg
except ImportError:
    from conftest import compose_config, one_step_trainer, tiny_task  # type: ignore[no-redef]
    from test_predict import TILE, make_cfg  # type: ignore[no-redef]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic scenes with their cameras (``images/``, ``cameras/``), tiled by the 64 px windows."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, 2, seed=3, config=SceneConfig(width=128, height=96, p_contact=1.0))
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, scenes: Path) -> Path:
    """A checkpoint of the tiny network (configs/model/tiny.yaml) whose maps have contacts on the scenes.

    An untrained network calls nearly every pixel one class, so its contact lists are empty and comparing
    them compares nothing. Here the output layer is scaled up and its biases centred on the scenes' mean
    logits (``other`` one lower): the two units then alternate in patches with contacts between them.
    """
    import torch
    from torch.utils.data import DataLoader

    from marsunits.data.io import read_image

    task = tiny_task(TILE)
    samples = [{"image": torch.rand(3, TILE, TILE), "mask": torch.randint(0, 3, (TILE, TILE)), "path": "0"}]
    trainer = one_step_trainer()
    trainer.fit(task, DataLoader(samples, batch_size=1))
    images = torch.stack(
        [torch.from_numpy(read_image(p)).permute(2, 0, 1) for p in sorted((scenes / "images").glob("*.png"))]
    )
    head = task.model.segmentation_head[0]
    task.eval()
    with torch.no_grad():
        head.weight *= 20
        head.bias *= 20
        head.bias -= task(images).mean((0, 2, 3))
        head.bias[2] -= 1.0
    path = tmp_path_factory.mktemp("ckpt") / "contacts.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_an_image_mapped_in_python_gives_predict_py_outputs(tmp_path: Path, ckpt: Path, scenes: Path) -> None:
    out = tmp_path / "out"
    # threads=1: the mapper runs on this module's one torch thread, and the results are equal to the last
    # digit on the same number of threads (README); predict.py no longer leaves its own count set after it.
    extra = (
        "precision=32",
        "save_probabilities=true",
        "probability_dtype=float16",
        "max_range_m=60",
        "threads=1",
    )
    assert run(make_cfg(tmp_path, ckpt, scenes / "images", out, *extra)) == 0
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None, max_range_m=60)
    settings = json.loads((out / "prediction_settings.json").read_text())
    model = {"checkpoint": ckpt.name, "network_sha256": settings["network_sha256"]}
    contacts = grounded = 0
    for image in sorted((scenes / "images").glob("*.png")):
        result = mapper.map(image)
        stem = image.stem
        assert result.camera is not None  # found as predict.py finds it: ../cameras/<stem>.json
        np.testing.assert_array_equal(result.mask, read_mask(out / f"{stem}.mask.png"))
        lines, size = read_contacts(out / f"{stem}.contact.geojson")
        assert size == (result.mask.shape[1], result.mask.shape[0])
        assert len(result.contacts) == len(lines)
        for mine, written in zip(result.contacts, lines, strict=True):
            np.testing.assert_array_equal(mine.pixels, written.pixels)
            assert mine.confidence == written.confidence
            assert mine.extra.get("contact_id") == written.extra.get("contact_id")
            if written.ground_m is None:
                assert mine.ground_m is None
            else:
                np.testing.assert_array_equal(mine.ground_m, written.ground_m)
                grounded += 1
        contacts += len(lines)
        overlay = np.asarray(Image.open(out / f"{stem}.overlay.png").convert("RGB"))
        np.testing.assert_array_equal(result.overlay(), overlay)
        import tifffile

        probs = tifffile.imread(out / f"{stem}.prob.tif").astype(np.float32)
        np.testing.assert_allclose(result.probabilities, probs, atol=1e-3)  # float16 in the file
        # save() writes predict.py's files: the same mask, overlay, contacts and probabilities.
        saved = result.save(tmp_path / "mine", stem, save_probabilities=True, probability_dtype="float16")
        assert sorted(p.name for p in saved) == sorted(
            f"{stem}{suffix}"
            for suffix in (".mask.png", ".overlay.png", ".thumb.jpg", ".contact.geojson", ".prob.tif")
        )
        for suffix in (".mask.png", ".overlay.png", ".thumb.jpg", ".prob.tif"):
            assert (tmp_path / "mine" / f"{stem}{suffix}").read_bytes() == (
                out / f"{stem}{suffix}"
            ).read_bytes()
        mine = json.loads((tmp_path / "mine" / f"{stem}.contact.geojson").read_text())
        theirs = json.loads((out / f"{stem}.contact.geojson").read_text())
        assert mine["features"] == theirs["features"]
        assert mine["image_greyscale"] == theirs["image_greyscale"] is False
        # The model, named as predict.py's files and its prediction_settings.json name it.
        assert mine["model"] == theirs["model"] == model
        fractions = result.unit_fractions
        assert sum(fractions.values()) == pytest.approx(1.0)
        assert fractions["other"] == pytest.approx(float((result.mask == 2).mean()))
    # The tiny random network's probabilities cross p0 = p1 in many places: the comparison covers lines,
    # and ground coordinates (the synthetic cameras see the ground), not just empty lists.
    assert contacts > 0 and grounded > 0


def test_a_contact_file_written_from_python_names_the_mapper_s_model(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """UnitMap.write_contacts names the model as save does; a mapper given a model in memory knows no file
    (checkpoint None) but the same network by its digest; a UnitMap made by hand names none."""
    from marsunits.model_package import load_model

    image = sorted((scenes / "images").glob("*.png"))[0]
    loaded = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None).map(image)
    assert loaded.model is not None and loaded.model["checkpoint"] == ckpt.name
    written = loaded.write_contacts(tmp_path / "shared.geojson")
    assert json.loads(written.read_text())["model"] == loaded.model
    assert read_contacts(written)[1] == (loaded.mask.shape[1], loaded.mask.shape[0])  # read as before
    in_memory = UnitMapper(load_model(ckpt), device="cpu", precision="32", tile=None).map(image)
    assert in_memory.model == {"checkpoint": None, "network_sha256": loaded.model["network_sha256"]}
    by_hand = UnitMap(loaded.image, loaded.probabilities, loaded.mask, loaded.contacts)
    assert "model" not in json.loads(by_hand.write_contacts(tmp_path / "by_hand.geojson").read_text())


def test_an_array_maps_as_its_file_does_and_cameras_are_given_three_ways(ckpt: Path, scenes: Path) -> None:
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None, max_range_m=60)
    image = sorted((scenes / "images").glob("*.png"))[0]
    camera_file = scenes / "cameras" / f"{image.stem}.json"
    from_file = mapper.map(image)
    array = np.asarray(Image.open(image).convert("RGB"))
    assert array.dtype == np.uint8
    from_array = mapper.map(array)  # no file, so no camera beside it: pixels only
    np.testing.assert_array_equal(from_array.mask, from_file.mask)
    assert from_array.camera is None and all(line.ground_m is None for line in from_array.contacts)
    pixels_only = mapper.map(image, camera=None)  # pixels only, even for a file with a camera beside it
    assert all(line.ground_m is None for line in pixels_only.contacts)
    assert [line.pixels.tolist() for line in from_array.contacts] == [
        line.pixels.tolist() for line in pixels_only.contacts
    ]
    grounds = [None if line.ground_m is None else line.ground_m.tolist() for line in from_file.contacts]
    assert any(g is not None for g in grounds)
    for camera in (camera_file, str(camera_file), load_camera(camera_file)):
        with_camera = mapper.map(array, camera=camera)
        assert [
            None if ln.ground_m is None else ln.ground_m.tolist() for ln in with_camera.contacts
        ] == grounds
    # Float in [0, 1] and 16-bit data give the same mask as the 8-bit array they scale.
    np.testing.assert_array_equal(mapper.map(array.astype(np.float32) / 255).mask, from_file.mask)
    np.testing.assert_array_equal(mapper.map(array.astype(np.uint16) * 257).mask, from_file.mask)
    # Several results make a contact map, as predict.py map=true does with its files.
    from marsunits.boundary import build_contact_map

    maps = build_contact_map([(image.name, from_file.contacts, from_file.camera)], scenes / "map", 60)
    assert sorted(p.suffix for p in maps) == [".geojson", ".png"]
    assert json.loads(maps[0].with_suffix(".geojson").read_text())["features"]
    written = from_file.write_contacts(scenes / "mine.contact.geojson")
    lines, size = read_contacts(written)
    assert size == (array.shape[1], array.shape[0]) and len(lines) == len(from_file.contacts)


def test_units_from_probabilities_gives_the_mask_and_contacts_of_map(ckpt: Path, scenes: Path) -> None:
    """The steps after the network, with the mapper's settings, on probabilities of one's own: the same mask,
    probabilities (merged, zero at no data) and contact lines as map() makes of the same image. The scene
    gets a black border so that the no-data pixels are compared too."""
    from marsunits.boundary.contact_io import as_stored
    from marsunits.data.io import to_channels

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    array = np.asarray(Image.open(sorted((scenes / "images").glob("*.png"))[0]).convert("RGB")).copy()
    array[:, :12] = 0  # a mosaic's black border: no data
    result = mapper.map(array)
    assert (result.mask == 255).any() and result.contacts  # no data and contacts: both are compared
    probs = mapper.predictor.predict(
        torch.from_numpy(to_channels(result.image, mapper.in_channels)).permute(2, 0, 1)
    )
    mask, lines = mapper.units_from_probabilities(probs, result.image)
    assert mask.dtype == np.uint8 and mask.shape == result.mask.shape
    np.testing.assert_array_equal(mask, result.mask)
    np.testing.assert_array_equal(probs, result.probabilities)  # modified in place, as map's are
    assert all(line.ground_m is None for line in lines)
    stored = as_stored(lines)  # map rounds the lines as the contact file stores them
    assert [(ln.pixels.tolist(), ln.confidence, ln.extra) for ln in stored] == [
        (ln.pixels.tolist(), ln.confidence, ln.extra) for ln in result.contacts
    ]


def test_predict_py_and_the_mapper_make_one_mask_and_contact_file_of_the_same_probabilities(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict.py's runner holds no UnitMapper (ONNX Runtime, adapt_bn, sharding) and called the steps after
    the network with its own three settings: both now go through one UnitSteps. Given the same probabilities
    and the same settings, every one of them off its default (a contact option too, whatever its name), the
    runner's mask and contact file equal the mapper's."""
    from marsunits.boundary.extract import ContactConfig
    from marsunits.inference.predictor import Predictor
    from marsunits.inference.unit_mapper import UnitSteps

    h, w = 64, 96
    pixels = np.full((h, w, 3), 128, np.uint8)
    pixels[:, :8] = 10  # a black border: no data at nodata_max=0.05 (10/255 = 0.04), data at 0.03
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    Image.fromarray(pixels).save(inp / "frame.png")
    probs = np.zeros((3, h, w), np.float32)
    ramp = np.clip((np.arange(w, dtype=np.float32) - 44) / 8, 0, 1)  # smooth_volcanic to rough_olivine
    probs[0], probs[1] = 0.9 * (1 - ramp), 0.9 * ramp
    probs[2] = 0.1
    probs[:, 10:20, 20:30] = np.array([0.05, 0.9, 0.05], np.float32)[:, None, None]  # 100 px: kept at 50 only
    probs[:, 40:44, 70:74] = np.array([0.9, 0.05, 0.05], np.float32)[:, None, None]  # 16 px: merged
    monkeypatch.setattr(Predictor, "predict", lambda self, x: probs.copy())
    # Every contact option 10 % off its default: one the runner or the mapper forgot would tell.
    contact = {f.name: round(f.default * 1.1, 6) for f in dataclasses.fields(ContactConfig)}
    settings = {"min_unit_area_px": 50, "nodata_max": 0.05}
    extra = [f"{k}={v}" for k, v in settings.items()] + [f"contact.{k}={v}" for k, v in contact.items()]
    assert run(make_cfg(tmp_path, ckpt, inp, out, *extra)) == 0
    recorded = json.loads((out / "prediction_settings.json").read_text())
    mapper = UnitMapper.load(ckpt, device="cpu", tile=None, contact=contact, **settings)
    assert mapper.units == UnitSteps(50, 0.05, ContactConfig(**contact))
    assert {k: recorded[k] for k in mapper.units.record()} == mapper.units.record()
    result = mapper.map(inp / "frame.png", camera=None)
    assert (result.mask == 255).any() and result.contacts  # no data and a contact: both compared
    assert (result.mask[10:20, 20:30] == 1).all() and (result.mask[40:44, 70:74] == 1).all()
    np.testing.assert_array_equal(read_mask(out / "frame.mask.png"), result.mask)
    written = json.loads(result.write_contacts(tmp_path / "mapper.contact.geojson").read_text())
    assert json.loads((out / "frame.contact.geojson").read_text())["features"] == written["features"]


def test_units_from_probabilities_refuses_arrays_of_other_shapes_naming_them() -> None:
    mapper = UnitMapper(tiny_task(TILE), device="cpu")
    image = np.full((32, 48, 3), 0.5, np.float32)
    probs = np.full((3, 32, 48), 1 / 3, np.float32)
    for bad_probs, bad_image, named in [
        (
            probs[:, :, :40],
            image,
            r"probs ndarray of shape \(3, 32, 40\).*image ndarray of shape \(32, 48, 3\)",
        ),
        (probs[:2], image, r"probs ndarray of shape \(2, 32, 48\)"),
        (probs, image[:, :, 0], r"image ndarray of shape \(32, 48\).*image\[:, :, None\]"),
        (probs, (image * 255).astype(np.uint8), r"dtype uint8.*image / 255"),
        (torch.from_numpy(probs), image, r"probs Tensor of shape.*\.numpy\(\)"),
    ]:
        with pytest.raises(ValueError, match=named):
            mapper.units_from_probabilities(bad_probs, bad_image)
    mask, lines = mapper.units_from_probabilities(probs, image)  # the shapes it takes
    assert mask.shape == (32, 48) and lines == []


def test_a_camera_given_with_an_array_that_cannot_place_contacts_is_said_as_with_a_file(
    ckpt: Path, scenes: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera looking up (pitch_deg=-40) or written in radians, given with an image file, is warned about as
    predict.py warns (no metres, or metres in a spot centimetres wide); given with the same image as an
    array or a PIL image, as a notebook reads it, it gave the same contacts without a word."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]
    camera = json.loads((scenes / "cameras" / f"{image.stem}.json").read_text())
    camera.pop("K", None)  # its focal length would not match the field of view changed below
    for bad, said in (({"pitch_deg": -40.0}, "sees no ground"), ({"hfov_deg": 1.0472}, "radians")):
        for given in (image, np.asarray(Image.open(image).convert("RGB")), Image.open(image)):
            caplog.clear()
            with caplog.at_level("WARNING", logger="marsunits.inference"):
                mapper.map(given, camera={**camera, **bad})
            warned = [r.getMessage() for r in caplog.records if said in r.getMessage()]
            assert len(warned) == 1, (bad, type(given).__name__, [r.getMessage() for r in caplog.records])
            assert "the camera dict given" in warned[0]


def test_bad_arrays_cameras_and_options_say_what_to_do(ckpt: Path, scenes: Path) -> None:
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    rgba = np.zeros((64, 64, 4), np.uint8)
    with pytest.raises(ValueError, match=r"\(64, 64, 4\); drop the alpha channel first"):
        mapper.map(rgba)
    with pytest.raises(ValueError, match=r"dtype int32"):
        mapper.map(np.zeros((64, 64), np.int32))
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got 0 to 255; divide it"):
        mapper.map(np.full((64, 64, 3), 255.0, np.float32) * np.eye(64, dtype=np.float32)[:, :, None])
    with pytest.raises(ValueError, match=r"no finite value"):
        mapper.map(np.full((64, 64), np.nan, np.float32))
    camera = load_camera(sorted((scenes / "cameras").glob("*.json"))[0])  # for a 128 x 96 image
    with pytest.raises(ValueError, match=r"for a 128x96 image but the array of shape \(64, 64, 3\) is 64x64"):
        mapper.map(np.zeros((64, 64, 3), np.uint8), camera=camera)
    # Options are refused in predict.py's own words.
    with pytest.raises(ConfigError, match=r"min_unit_area_px must be a whole number of pixels >= 0"):
        UnitMapper.load(ckpt, min_unit_area_px=-1)
    with pytest.raises(ConfigError, match=r"unknown contact option\(s\) \['min_lenght_px'\]"):
        UnitMapper.load(ckpt, contact={"min_lenght_px": 5})
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt does not exist; give a \.ckpt"):
        UnitMapper.load(ckpt.parent / "nowhere.ckpt")


def test_a_mistyped_image_path_is_told_the_file_meant(ckpt: Path, scenes: Path) -> None:
    """``mapper.map("images/scene_0000.pgn")`` in a notebook: "file not found. Check the path" alone, where
    predict.py tells a mistyped folder or checkpoint the name beside it. The file meant is named; a name
    with nothing close beside it is told as before."""
    from marsunits.data.io import ImageReadError

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]
    typo = image.with_name(image.stem + ".pgn")
    with pytest.raises(ImageReadError) as refused:
        mapper.map(typo)
    assert str(refused.value) == (
        f"{typo}: file not found; did you mean {image}? Check the path (relative paths start at the working "
        "directory)."
    ), refused.value
    with pytest.raises(ImageReadError) as refused:
        mapper.map(image.with_name("zzzz.png"))
    assert "did you mean" not in str(refused.value) and "file not found" in str(refused.value)


def test_the_mapper_s_defaults_are_predict_py_s(tmp_path: Path, ckpt: Path) -> None:
    """The defaults come from ``PredictOptions``; that class must agree with ``configs/predict.yaml``."""
    cfg = compose_config("predict", tmp_path / "hydra")
    for f in dataclasses.fields(PredictOptions):
        if f.name in ("ckpt_path", "input_dir", "output_dir", "logger"):
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        value = cfg[f.name]
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if isinstance(default, tuple):
            default = list(default)
        if f.name == "contact":  # the config spells the ContactConfig defaults out
            assert read_contact_config(value) == read_contact_config(default), f.name
        else:
            assert value == default, f.name
    config = UnitMapper.load(ckpt, device="cpu").config
    for key in ("overlap", "batch_size", "tta", "min_unit_area_px", "nodata_max", "max_range_m"):
        assert config[key] == cfg[key], key
    assert config["tile"] == cfg.tile and config["max_megapixels"] == cfg.max_megapixels
    assert config["contact"] == dataclasses.asdict(read_contact_config(OmegaConf.to_container(cfg.contact)))
    assert json.loads(json.dumps(config)) == config  # plain values, for a notebook's record
    assert not math.isinf(config["max_megapixels"])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("tta", "no", r"tta='no': give tta=True or tta=False"),  # bool("no") is True: TTA ran, unasked
        # In Python's words: True and False ("give tta=true" is predict.py's, where Python reads no true).
        ("tta", "yes", r"tta='yes': give tta=True or tta=False \(yes/no/on/off are read as text\)"),
        ("channels_last", "false", r"channels_last='false': give channels_last=True or"),
        ("overlap", "0.5", r"overlap='0.5': give a number, e.g. overlap=0.125"),  # was a TypeError
        ("batch_size", "4", r"batch_size='4': give a whole number, e.g. batch_size=4"),
        ("max_megapixels", 0, r"max_megapixels=0: give a limit > 0, or max_megapixels=None for none"),
    ],
)
def test_options_of_the_wrong_kind_are_refused_as_predict_py_refuses_them(
    ckpt: Path, option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        UnitMapper.load(ckpt, device="cpu", **{option: value})


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_megapixels", "abc", r"max_megapixels='abc': give a number or None, e.g. max_megapixels=100.0"),
        ("max_megapixels", -1, r"max_megapixels=-1: give a limit > 0, or max_megapixels=None for none"),
        ("tile", -1, r"tile must be None \(the checkpoint's tile size\) or a whole number"),
        ("nodata_max", 2, r"nodata_max must be None or a number in \[0, 1\)"),
    ],
)
def test_a_number_option_that_may_be_none_is_told_none_in_python_s_words(
    option: str, value: object, message: str
) -> None:
    """A number refusal said predict.py's ``max_megapixels=null``: in Python, ``null`` is no name, the value
    that means "none" (no limit, the checkpoint's tile size, no no-data rule) is ``None``."""
    with pytest.raises(ConfigError, match=message) as refused:
        UnitMapper(tiny_task(TILE), device="cpu", **{option: value})
    assert "null" not in str(refused.value)


def test_a_pil_image_a_tensor_and_a_bool_array_map_as_the_file_and_its_array_do(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """What a notebook has at hand is taken where its meaning is plain: a PIL image (read as its file is,
    EXIF orientation included), a torch tensor in torch's (C, H, W) order, a bool (black and white) array."""
    import torch

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]
    from_file = mapper.map(image, camera=None)
    with Image.open(image) as im:
        np.testing.assert_array_equal(mapper.map(im).mask, from_file.mask)
        array = np.array(im.convert("RGB"))
    # A JPEG turned by its EXIF tag: the PIL image maps as the file does (as displayed), not as stored.
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).rotate(90, expand=True).save(turned, exif=exif, quality=95)
    with Image.open(turned) as im:
        np.testing.assert_array_equal(mapper.map(im).mask, mapper.map(turned).mask)
    tensor = torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W) uint8
    np.testing.assert_array_equal(mapper.map(tensor).mask, from_file.mask)
    np.testing.assert_array_equal(mapper.map(tensor.float() / 255).mask, from_file.mask)
    grey = array[:, :, 0] > 128
    np.testing.assert_array_equal(mapper.map(grey).mask, mapper.map(grey.astype(np.uint8) * 255).mask)
    # Shapes and types that are not an image are refused naming them and the fix.
    with pytest.raises(ValueError, match=r"\(\d+, \d+, 3\); for channels last \(H, W, C\), tensor\.permute"):
        mapper.map(tensor.permute(1, 2, 0))
    with pytest.raises(ValueError, match=r"got \(1, 3, \d+, \d+\); map one image at a time"):
        mapper.map(tensor[None])
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got \d+ to \d+; divide it"):
        mapper.map(tensor.float())  # never a guessed scale
    with pytest.raises(ValueError, match=r"got \(3, \d+, \d+\); for channels first \(C, H, W\)"):
        mapper.map(array.transpose(2, 0, 1))
    with pytest.raises(ValueError, match=r"got \(0, 5\)"):  # the shape as given, not with a channel added
        mapper.map(np.zeros((0, 5), np.uint8))
    with pytest.raises(TypeError, match=r"cannot map a list: .*np\.asarray\(it\) first"):
        mapper.map(array.tolist())  # type: ignore[arg-type]


def test_a_camera_given_for_a_turned_file_is_turned_as_the_one_beside_it(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """A camera file describes the raster as stored; given with ``camera=``, it was used on the image as
    displayed, so a JPEG tagged "rotate 180" put its contacts elsewhere on the ground than the same camera
    file beside it did (and than predict.py does)."""
    import shutil

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None, max_range_m=60)
    image = sorted((scenes / "images").glob("*.png"))[0]
    camera_file = scenes / "cameras" / f"{image.stem}.json"
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 3  # displayed turned by 180 degrees; the stored raster is the one the camera took
    with Image.open(image) as im:
        im.convert("RGB").save(turned, exif=exif, quality=95)
    shutil.copy(camera_file, tmp_path / "turned.camera.json")

    def grounds(result: UnitMap) -> list[object]:
        return [None if ln.ground_m is None else ln.ground_m.tolist() for ln in result.contacts]

    beside = mapper.map(turned)
    assert any(g is not None for g in grounds(beside))
    for camera in (camera_file, load_camera(camera_file), beside.camera):
        assert grounds(mapper.map(turned, camera=camera)) == grounds(beside), camera
        # The file opened with PIL is read as the file is, turned; its camera was not, so every contact
        # was put on the ground where the 180-degree turned pixels of another place would be.
        with Image.open(turned) as im:
            assert grounds(mapper.map(im, camera=camera)) == grounds(beside), camera


def test_a_camera_given_for_another_size_is_named_not_the_one_beside(ckpt: Path, scenes: Path) -> None:
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]  # 128 x 96, its camera in ../cameras/
    other = json.loads((scenes / "cameras" / f"{image.stem}.json").read_text())
    other.update(image_width=256, image_height=192)
    other.pop("K", None)
    given = scenes / "other_size.json"
    given.write_text(json.dumps(other))
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(given))}: the camera is for a 256x192 image but .*give the camera",
    ):
        mapper.map(image, camera=given)
    with pytest.raises(
        ValueError, match=r"^the camera given: the camera is for a 256x192 image .*camera=None"
    ):
        mapper.map(image, camera=load_camera(given))


def test_a_camera_of_another_size_given_with_a_file_is_told_the_fix_an_array_or_pil_image_is(
    ckpt: Path, scenes: Path
) -> None:
    """A camera of another size given with an image file was told "give the camera of this image (or
    camera=None)", the same camera with the same image as a PIL image or an array the three ways out
    (``image_cameras.py`` and ``unit_mapper.py`` each had their rule). One rule says both now: the messages
    differ only in how the image is named, for a pinhole and a CAHV camera (whose resized copy is named in
    either, and which is not told to change its size: it was given, not found beside the image)."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]  # 128 x 96
    pinhole = {"model": "pinhole", "image_width": 256, "image_height": 192, "hfov_deg": 60, "pitch_deg": 20}
    f = 300.0  # a CAHV of the 256 x 192 frame: the image is that frame scaled by 1/2
    cahv = {
        "model": "cahv",
        "C": [0.0, 0.0, 1.9],
        "A": [0.7071, 0.0, -0.7071],
        "H": [127.5 * 0.7071, -f, -127.5 * 0.7071],
        "V": [95.5 * 0.7071 - f * 0.7071, 0.0, -95.5 * 0.7071 - f * 0.7071],
        "image_width": 256,
        "image_height": 192,
    }
    with Image.open(image) as im:
        pil = im.convert("RGB")
    array = np.asarray(pil)
    for camera in (pinhole, cahv):
        said = {}
        for key, given in (("file", image), ("pil", pil), ("array", array)):
            with pytest.raises(CameraFileError) as info:
                mapper.map(given, camera=camera)
            said[key] = str(info.value)
        assert said["file"].startswith("the camera dict given: the camera is for a 256x192 image but "), said
        assert said["file"].replace(image.name, "the PIL image") == said["pil"], said
        named_array = f"the array of shape {array.shape} is 128x96"
        assert said["file"].replace(f"{image.name} is 128x96 as stored", named_array) == said["array"], said
        assert "camera=None for the contacts in pixels only" in said["file"], said
        assert "at the size the camera was made for" in said["file"], said
        assert "fix image_width and image_height" not in said["file"], said
        assert ("scaled by 1/2" in said["file"]) == (camera is cahv), said


def test_a_camera_for_another_size_given_with_an_array_or_a_pil_image_names_the_input_as_given(
    ckpt: Path, tmp_path: Path
) -> None:
    """An array, tensor or PIL image mapped with a camera made for another image size was refused with a
    plain ``ValueError`` that said "the array" of a PIL image too, named neither the camera given nor a way
    out but "the camera of this image". It is refused as an image file's camera of another size is
    (``CameraFileError``), naming the camera as given, its size, the input as given and its size, and the
    ways out: the image's own camera, the image at the camera's size, or ``camera=None``."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    other_size = {"model": "pinhole", "image_width": 32, "image_height": 32, "hfov_deg": 60, "pitch_deg": 20}
    camera_file = tmp_path / "other_size.json"
    camera_file.write_text(json.dumps(other_size))
    pil = Image.fromarray(np.zeros((48, 64, 3), np.uint8))  # 64 wide, 48 high
    given_images = (
        (pil, "the PIL image is 64x48"),
        (np.zeros((48, 64, 3), np.uint8), "the array of shape (48, 64, 3) is 64x48"),
        (np.zeros((48, 64), np.float32), "the array of shape (48, 64) is 64x48"),
        (torch.zeros(3, 48, 64), "the tensor of shape (3, 48, 64) is 64x48"),
    )
    given_cameras = (
        (camera_file, str(camera_file)),
        (other_size, "the camera dict given"),
        (load_camera(camera_file), "the camera given"),
    )
    for image, named in given_images:
        for camera, source in given_cameras:
            with pytest.raises(CameraFileError) as info:
                mapper.map(image, camera=camera)
            said = str(info.value)
            assert said.startswith(f"{source}: the camera is for a 32x32 image but {named}"), said
            assert "camera of this image" in said, said  # the image's own camera
            assert "at the size the camera was made for" in said and "resized or cropped" in said, said
            assert "camera=None for the contacts in pixels only" in said, said
    # A PIL image tagged "rotate 90" is compared as stored, as a file is: its camera describes the raster
    # the camera took, so one for the displayed size is the mistake, and the message says which size is which.
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    pil.save(turned, exif=exif)
    displayed = {**other_size, "image_width": 48, "image_height": 64}
    with Image.open(turned) as im, pytest.raises(CameraFileError) as info:
        mapper.map(im, camera=displayed)
    said = str(info.value)
    assert said.startswith(
        "the camera dict given: the camera is for a 48x64 image but the PIL image is 64x48 as stored "
        "(its EXIF orientation 6 turns it for display to 48x64"
    ), said
    stored = {**other_size, "image_width": 64, "image_height": 48}
    with Image.open(turned) as im:  # the camera of the raster as stored is taken
        assert mapper.map(im, camera=stored).mask.shape == (64, 48)


def test_home_folder_paths_are_the_home_folder_for_outputs_and_cameras_too(
    tmp_path: Path, ckpt: Path, scenes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``map("~/...")`` reads from the home folder; writing a result's contacts or a contact map to
    ``"~/..."`` made a folder named ``~`` in the working directory instead, silently."""
    import shutil

    from marsunits.boundary import build_contact_map

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    image = sorted((scenes / "images").glob("*.png"))[0]
    shutil.copy(scenes / "cameras" / f"{image.stem}.json", home / "cam.json")
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None, max_range_m=60)
    result = mapper.map(image, camera="~/cam.json")
    assert result.camera is not None
    assert result.write_contacts("~/frame.contact.geojson") == home / "frame.contact.geojson"
    assert read_contacts(home / "frame.contact.geojson")[0]
    written = build_contact_map([(image.name, result.contacts, result.camera)], "~/map", 60)
    assert written and all(p.parent == home / "map" and p.is_file() for p in written)
    assert not (work / "~").exists()


def test_trust_checkpoint_given_as_a_word_is_refused_before_anything_is_unpickled(ckpt: Path) -> None:
    """``bool("no")`` is true: ``trust_checkpoint="no"`` would load a checkpoint's arbitrary objects."""
    from unittest import mock

    with (
        mock.patch("marsunits.model_package.load_model") as load_model,
        pytest.raises(ConfigError, match=r"trust_checkpoint='no': give trust_checkpoint=True or"),
    ):
        UnitMapper.load(ckpt, trust_checkpoint="no")  # type: ignore[arg-type]
    load_model.assert_not_called()


def test_a_model_trained_on_synthetic_scenes_alone_is_said_so_at_load_and_one_of_real_data_is_not(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default model, trained on synthetic scenes alone, mapped a real Navcam frame's hazy sky as
    smooth_volcanic in a notebook without a word (``predict.py``'s last line says it). Loaded, it is warned
    of once, in the words of that line, naming the real-data recipes; a model of real data is not."""

    def loaded(dataset: str) -> list[str]:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        for block in (state["hyper_parameters"], state["marsunits"]):
            block["dataset"] = dataset
        path = tmp_path / f"{dataset}.ckpt"
        torch.save(state, path)
        caplog.clear()
        with caplog.at_level("WARNING", logger="marsunits.inference.unit_mapper"):
            assert UnitMapper.load(path).metadata["dataset"] == dataset
        return [" ".join(r.getMessage().split()) for r in caplog.records if "synthetic" in r.getMessage()]

    said = loaded("synthetic")
    assert len(said) == 1, said
    assert said[0].startswith(
        f"{tmp_path / 'synthetic.ckpt'} was trained on synthetic scenes alone (its metadata's dataset "
        "'synthetic'): its maps of real rover images show how the tool works, not where the units are"
    ), said
    assert said[0].endswith(
        "python train.py experiment=marsscapes, experiment=ai4mars, or data=folder with frames you "
        "labelled (docs/training.md)."
    ), said
    for dataset in ("marsscapes", "ai4mars", "folder"):
        assert not loaded(dataset), dataset


def test_12_bit_data_read_into_an_array_maps_as_its_file_does(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """A Navcam frame's 12 bits in a 16-bit PNG: predict.py scales the file by 4095; the same pixels read
    with imageio (uint16, values <= 4095) were divided by 65535, a 16 times darker image and another map."""
    import imageio.v3 as iio
    import torch

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]
    with Image.open(image) as im:
        grey = np.asarray(im.convert("L")).astype(np.uint16) * 16  # 12-bit: every value <= 4080
    path = tmp_path / "navcam12.png"
    Image.fromarray(grey).save(path)
    read = iio.imread(path)
    assert read.dtype == np.uint16 and read.max() <= 4095
    from_file = mapper.map(path)
    np.testing.assert_allclose(mapper.map(read).image, from_file.image, atol=1e-6)
    np.testing.assert_array_equal(mapper.map(read).mask, from_file.mask)
    np.testing.assert_array_equal(
        mapper.map(torch.from_numpy(read.astype(np.int32)).to(torch.uint16)).mask, from_file.mask
    )
    # Data that uses more than 12 bits keeps the 16-bit scale.
    full = grey * 16 + 15  # the 8-bit values * 256 + 15: more than 12 bits
    np.testing.assert_allclose(mapper.map(full).image[:, :, 0], full / 65535, atol=1e-6)


def test_a_float_tiff_with_a_nan_border_read_into_an_array_maps_as_its_file_does(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """A float mosaic whose border is NaN (a map-projected or radiance product): predict.py reads the file's
    NaN pixels as black, a no-data border; the same pixels read with tifffile were refused ("non-finite
    values; divide it by its full-scale value", which cannot help)."""
    import tifffile

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]
    with Image.open(image) as im:
        pixels = np.asarray(im.convert("RGB")).astype(np.float32) / 255
    pixels[:, :12] = np.nan  # a 96 x 12 band on the left edge: no data
    pixels[40, 60, 0] = np.inf  # one saturated sample
    path = tmp_path / "mosaic.tif"
    tifffile.imwrite(path, pixels, photometric="rgb")
    from_file = mapper.map(path)
    assert (from_file.mask[:, :12] == 255).all()
    from_array = mapper.map(tifffile.imread(path))
    np.testing.assert_array_equal(from_array.image, from_file.image)
    np.testing.assert_array_equal(from_array.mask, from_file.mask)
    assert [line.pixels.tolist() for line in from_array.contacts] == [
        line.pixels.tolist() for line in from_file.contacts
    ]
    with pytest.raises(ValueError, match=r"no finite value \(all NaN or infinite\)"):
        mapper.map(np.full((64, 64), np.nan, np.float32))
    # Saturated pixels a little above 1 beside the NaN border: predict.py clips them; the array is refused,
    # and its advice must not be to divide by 255 (which makes the image black), but to clip or give the file.
    pixels[50, 70] = 1.04
    tifffile.imwrite(path, pixels, photometric="rgb")
    assert mapper.map(path).mask.shape == (96, 128)
    with pytest.raises(ValueError, match=r"got 0 to 1\.04") as caught:
        mapper.map(tifffile.imread(path))
    assert "255" not in str(caught.value)
    assert "np.clip(image, 0, 1)" in str(caught.value) and "give the file's path" in str(caught.value)


def test_a_masked_array_maps_its_masked_pixels_as_no_data_and_a_matrix_as_an_array(
    ckpt: Path, scenes: Path
) -> None:
    """A masked array (rasterio's ``read(masked=True)``) was mapped from the values hidden under its mask (a
    -9999 no-data value refused as outside [0, 1], values in range mapped as image); np.matrix failed in
    to_channels ("expects an (H, W, C) array, got shape (96, 128)")."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    with Image.open(sorted((scenes / "images").glob("*.png"))[0]) as im:
        grey = np.asarray(im.convert("L"))
    black = grey.copy()
    black[:, :12] = 0  # what the mask below means: a no-data band on the left edge
    want = mapper.map(black)
    assert (want.mask[:, :12] == 255).all()
    hidden = grey.copy()
    hidden[:, :12] = 200  # bright values under the mask
    masked = np.ma.masked_array(hidden, mask=np.zeros_like(hidden, bool))
    masked[:, :12] = np.ma.masked
    got = mapper.map(masked)
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.image, want.image)
    fill = np.ma.masked_array(grey / 255.0, mask=masked.mask, fill_value=-9999.0)
    np.testing.assert_array_equal(mapper.map(fill).mask, want.mask)
    np.testing.assert_array_equal(mapper.map(np.asmatrix(black)).mask, want.mask)


def test_numbers_computed_with_numpy_are_taken_as_the_numbers_they_hold(ckpt: Path) -> None:
    """``tile=np.int64(256)`` was refused as "not a whole number"; ``nodata_max=np.float32(0.05)`` as not a
    number; ``overlap=np.float64(0.25)`` was kept as a numpy value in ``config``."""
    mapper = UnitMapper.load(
        ckpt,
        device="cpu",
        tile=np.int64(256),
        overlap=np.float64(0.25),
        nodata_max=np.float32(0.0625),
        min_unit_area_px=np.int32(50),
        tta=np.bool_(True),
        contact={"min_length_px": np.float32(4.0)},
    )
    config = mapper.config
    assert (config["tile"], config["overlap"], config["nodata_max"]) == (256, 0.25, 0.0625)
    assert config["min_unit_area_px"] == 50 and config["tta"] is True
    assert config["contact"]["min_length_px"] == 4.0
    plain = (bool, int, float, str, type(None))
    assert all(type(v) in plain for k, v in config.items() if k != "contact")
    assert all(type(v) in plain for v in config["contact"].values())
    with pytest.raises(ConfigError, match=r"device=None: give 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        UnitMapper.load(ckpt, device=None)


def test_a_camera_file_s_content_is_a_camera_and_other_values_are_named(ckpt: Path, scenes: Path) -> None:
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None, max_range_m=60)
    image = sorted((scenes / "images").glob("*.png"))[0]
    camera_file = scenes / "cameras" / f"{image.stem}.json"
    content = json.loads(camera_file.read_text())
    from_file = mapper.map(image, camera=camera_file)
    from_dict = mapper.map(image, camera=content)
    assert [None if ln.ground_m is None else ln.ground_m.tolist() for ln in from_dict.contacts] == [
        None if ln.ground_m is None else ln.ground_m.tolist() for ln in from_file.contacts
    ]
    with pytest.raises(ValueError, match=r"^the camera dict given: .*hfov_deg"):
        mapper.map(image, camera={k: v for k, v in content.items() if k != "hfov_deg"})
    with pytest.raises(TypeError, match=r"camera=5: give a camera file's path, a camera model"):
        mapper.map(image, camera=5)  # type: ignore[arg-type]


def test_a_contact_map_of_results_given_whole_says_how_to_give_them(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    from marsunits.boundary import build_contact_map

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = sorted((scenes / "images").glob("*.png"))[0]
    result = mapper.map(image)
    for items, found in (([result], "a UnitMap"), ([(image.name, result)], "a tuple of 2")):
        with pytest.raises(TypeError, match=rf"items\[0\] is {found}: .*\(name, r\.contacts, r\.camera\)"):
            build_contact_map(items, tmp_path / "map")  # type: ignore[arg-type]
    assert not (tmp_path / "map").exists()
    assert build_contact_map([(image.name, result.contacts, result.camera)], tmp_path / "map")


def test_a_result_keeps_its_own_copy_of_a_float_array(ckpt: Path) -> None:
    """A C-contiguous float32 array in [0, 1] was kept as the result's image itself: editing the array in
    the notebook afterwards changed the result's overlay."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    array = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    result = mapper.map(array)
    assert not np.shares_memory(result.image, array)
    before = result.overlay()
    array[:] = 0.0
    np.testing.assert_array_equal(result.overlay(), before)


def test_a_model_path_or_contact_options_of_the_wrong_kind_are_named(ckpt: Path) -> None:
    """``load(None)`` ended in pathlib's "expected str, bytes or os.PathLike object", and ``contact=[1]`` said
    "unknown contact option(s) [1]"."""
    with pytest.raises(
        TypeError, match=r"takes the path of a model package folder or a \.ckpt file, got NoneType"
    ):
        UnitMapper.load(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"contact must be a mapping of predict.py's contact options"):
        UnitMapper.load(ckpt, contact=[1])  # type: ignore[arg-type]


def test_a_misspelt_option_is_named_with_the_option_meant_before_the_model_loads(tmp_path: Path) -> None:
    """``load(path, tiles=256)`` ended in Python's "unexpected keyword argument 'tiles'" after the model had
    loaded, naming no valid option; it is now said first (the model file here does not even exist)."""
    with pytest.raises(
        ConfigError, match=r"unknown UnitMapper option\(s\): tiles \(did you mean tile\?\); valid"
    ):
        UnitMapper.load(tmp_path / "model.ckpt", tiles=256)


def test_a_predict_py_option_that_is_not_the_mappers_says_where_it_goes(tmp_path: Path) -> None:
    """The README's "From Python" says the results equal predict.py's on the same number of torch threads
    (predict.py's ``threads=``); ``load(path, threads=2)`` was "unknown UnitMapper option(s): threads",
    saying neither what sets them in Python nor, for ``save_probabilities`` or ``adapt_bn``, where such an
    option is (``UnitMap.save``, or predict.py alone). Said before the model loads (no file needed)."""
    cases = {
        "threads": r"threads is predict.py's; in Python call torch.set_num_threads\(2\) before mapping",
        "save_probabilities": r"save_probabilities is an argument of UnitMap.save",
        "probability_dtype": r"probability_dtype is an argument of UnitMap.save",
        "adapt_bn": r"adapt_bn is predict.py's alone \(work on a folder stays there\)",
        "runtime": r"runtime is predict.py's alone",
    }
    for name, message in cases.items():
        with pytest.raises(ConfigError, match=r"unknown UnitMapper option\(s\): " + message):
            UnitMapper.load(tmp_path / "model.ckpt", **{name: 2})


def test_a_camera_file_given_that_does_not_exist_says_to_check_the_path(ckpt: Path, tmp_path: Path) -> None:
    """``map(image, camera="cams/frame.json")`` with a mistyped path said "no such file; fix or remove it",
    the words for a broken camera file beside an image: there is nothing to remove. It names the option and
    the path, and says to check the path or give ``camera=None``."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    missing = tmp_path / "cams" / "frame.json"
    with pytest.raises(ValueError, match=r"camera=.*frame\.json.*: no such file; check the path") as info:
        mapper.map(np.zeros((64, 64), np.uint8), camera=missing)
    assert "remove" not in str(info.value) and "camera=None" in str(info.value)


def test_a_broken_camera_file_beside_an_image_says_how_to_map_it_without(ckpt: Path, tmp_path: Path) -> None:
    """``map("frame.png")`` beside a broken ``frame.camera.json`` raised the camera file's error alone:
    predict.py writes such an image's mask all the same, and nothing said how to get it from Python. The
    refusal names the file, and says to fix it or to give ``camera=None`` for the map in pixels."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = tmp_path / "frame.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    sidecar = tmp_path / "frame.camera.json"
    sidecar.write_text('{"model": "pinhole", "image_width": 64, "image_height": 64, "hfov_deg": 60}')
    with pytest.raises(CameraFileError, match=r"missing \['pitch_deg'\]") as info:
        mapper.map(image)
    assert str(sidecar) in str(info.value)
    assert "camera=None" in str(info.value) and "fix" in str(info.value)
    assert mapper.map(image, camera=None).mask.shape == (64, 64)  # the way out it names works


def test_a_refused_camera_is_caught_with_marsunits_other_user_errors(ckpt: Path, tmp_path: Path) -> None:
    """A script mapping many images with ``except MarsUnitsError`` (the base of marsunits' errors of input
    and configuration) to note an image's mistake and go on was stopped by a refused camera: a camera dict
    given, a broken camera file beside the image, a missing camera file given, or one for another image
    size (``CameraFileError`` was a ``ValueError`` alone). Caught there, and still a ``ValueError``."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = tmp_path / "frame.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    (tmp_path / "frame.camera.json").write_text(
        '{"model": "pinhole", "image_width": 64, "image_height": 64, "hfov_deg": 60}'
    )
    other_size = {"model": "pinhole", "image_width": 32, "image_height": 32, "hfov_deg": 60, "pitch_deg": 20}
    calls = {
        "dict": lambda: mapper.map(image, camera={"model": "pinhole", "image_width": 64}),
        "beside": lambda: mapper.map(image),
        "missing file": lambda: mapper.map(image, camera=tmp_path / "cams" / "frame.json"),
        "other size": lambda: mapper.map(np.zeros((64, 64), np.uint8), camera=other_size),
    }
    for name, call in calls.items():
        try:
            call()
        except MarsUnitsError as refused:
            assert isinstance(refused, CameraFileError) and isinstance(refused, ValueError), name
        else:
            pytest.fail(f"camera {name}: not refused")


def test_a_camera_that_cannot_be_used_is_refused_before_the_network_runs(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``map("panorama.png")`` beside a broken camera file raised only after the network had run over the
    whole image (minutes for a panorama), and the result was lost all the same: the camera is read and
    checked first, with the same refusal."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    image = tmp_path / "frame.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    sidecar = tmp_path / "frame.camera.json"
    sidecar.write_text('{"model": "pinhole", "image_width": 64, "image_height": 64, "hfov_deg": 60}')
    ran: list[int] = []
    predict = mapper.predictor.predict

    def counted_predict(x: torch.Tensor) -> torch.Tensor:
        ran.append(1)
        return predict(x)

    monkeypatch.setattr(mapper.predictor, "predict", counted_predict)
    with pytest.raises(CameraFileError, match=r"missing \['pitch_deg'\].*camera=None"):
        mapper.map(image)
    other_size = {"model": "pinhole", "image_width": 32, "image_height": 32, "hfov_deg": 60, "pitch_deg": 20}
    with pytest.raises(ValueError, match="32x32"):  # a camera given for another image size
        mapper.map(image, camera=other_size)
    with pytest.raises(ValueError, match="32x32"):  # and for an array
        mapper.map(np.zeros((64, 64), np.uint8), camera=other_size)
    assert ran == []  # all refused before the network ran
    sidecar.unlink()
    assert mapper.map(image).mask.shape == (64, 64) and ran == [1]


def test_save_refuses_a_stem_with_a_folder_in_it(ckpt: Path, tmp_path: Path) -> None:
    result = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None).map(np.zeros((64, 64), np.uint8))
    with pytest.raises(
        ConfigError, match=r"stem must be a plain file name \(no folder\), e.g. 'frame_0001', got '../x'"
    ):
        result.save(tmp_path, "../x")
    assert [p.name for p in result.save(tmp_path / "grey", "x")] == [
        "x.contact.geojson",
        "x.overlay.png",
        "x.thumb.jpg",
        "x.mask.png",
    ]
    assert json.loads((tmp_path / "grey" / "x.contact.geojson").read_text())["image_greyscale"] is True
    # Names predict.py writes (spaces, accents, a Latin-1 byte name as os.fsdecode gives it) are written the
    # same; one too long for the filesystem is refused as predict.py refuses it, before anything is written.
    for stem in ("a b", "café", os.fsdecode(b"caf\xe9")):
        assert {os.fsencode(p.name) for p in result.save(tmp_path / "odd", stem)} == {
            os.fsencode(stem) + suffix
            for suffix in (b".contact.geojson", b".overlay.png", b".thumb.jpg", b".mask.png")
        }
    # A word is not an on/off value: "no" is true to bool(), and probabilities declined were written.
    with pytest.raises(ConfigError, match=r"save_probabilities='no': give save_probabilities=True or"):
        result.save(tmp_path / "words", "x", save_probabilities="no")
    assert not (tmp_path / "words" / "x.prob.tif").exists()
    assert len(result.save(tmp_path / "np", "x", save_probabilities=np.bool_(True))) == 5
    with pytest.raises(ConfigError, match=r"longer than the filesystem allows \(\d+ bytes\): give a stem of"):
        result.save(tmp_path / "long", "x" * 240)
    assert not (tmp_path / "long").exists()  # nothing written, the folder not even made


def test_save_into_a_file_or_over_a_folder_says_which_and_writes_nothing(ckpt: Path, tmp_path: Path) -> None:
    """``save`` given a file as its folder raised "[Errno 17] File exists", and over a folder named like an
    output ("Is a directory") after writing the other outputs: neither said what was wrong."""
    result = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None).map(np.zeros((64, 64), np.uint8))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("field notes")
    with pytest.raises(ConfigError, match=rf"folder {re.escape(str(a_file))} is a file"):
        result.save(a_file, "x")
    with pytest.raises(
        ConfigError, match=rf"folder {re.escape(str(a_file / 'sol1'))}: {re.escape(str(a_file))} is a file"
    ):
        result.save(a_file / "sol1", "x")  # was "[Errno 20] Not a directory"
    assert a_file.read_text() == "field notes"
    for n, taken in enumerate(("x.overlay.png", "x.thumb.jpg")):
        out = tmp_path / f"out{n}"
        (out / taken).mkdir(parents=True)
        with pytest.raises(ConfigError, match=rf"{re.escape(taken)} is a folder"):
            result.save(out, "x")
        assert [p.name for p in out.iterdir()] == [taken]


def test_a_pil_image_closed_by_its_with_block_is_named_closed_not_corrupt(ckpt: Path, scenes: Path) -> None:
    """``with Image.open(path) as im: ...`` then ``mapper.map(im)`` failed with a bare AssertionError from
    inside Pillow; an image decoded, then closed, was said to be "truncated or corrupt (Operation on closed
    image). Copy or export the file again", a fault the file does not have."""
    from marsunits.data.io import ImageReadError

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    path = sorted((scenes / "images").glob("*.png"))[0]
    with Image.open(path) as lazy:
        pass
    loaded = Image.open(path)
    loaded.load()
    loaded.close()
    for im in (lazy, loaded):
        with pytest.raises(ImageReadError, match=r"the PIL image was closed") as caught:
            mapper.map(im)
        assert "corrupt" not in str(caught.value) and "inside the `with` block" in str(caught.value)


def test_an_rgba_array_s_refusal_points_to_the_read_that_maps_as_predict_py_does(
    ckpt: Path, tmp_path: Path
) -> None:
    """An RGBA mosaic read into an array (H, W, 4) was refused with only "drop the alpha channel first
    (image[..., :3])", which keeps the colours its transparent border hides, so the map differs from the
    file's (predict.py reads fully transparent pixels as black: no data). The refusal says how to get
    the file's reading."""
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    rgba = np.full((64, 64, 4), 255, np.uint8)
    rgba[:, :20, 3] = 0  # a transparent border hiding white
    path = tmp_path / "mosaic.png"
    Image.fromarray(rgba).save(path)
    with pytest.raises(ValueError, match=r"\(64, 64, 4\); drop the alpha channel first") as caught:
        mapper.map(np.asarray(Image.open(path)))
    assert "give the file or Image.open(it)" in str(caught.value)
    assert "transparent pixels are read as black" in str(caught.value)
    as_advised = mapper.map(Image.open(path))
    assert (as_advised.mask[:, :20] == 255).all()  # the transparent border is no data, as in predict.py
    assert (mapper.map(rgba[..., :3]).mask[:, :20] != 255).all()  # dropping alpha alone keeps it white


def test_predict_py_does_not_take_files_saved_from_python_for_its_own(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """Files ``UnitMap.save`` wrote (other settings: no minimum mapping unit) in a folder ``predict.py`` is
    then run into were skipped as its own finished outputs: no settings record to compare, and the image
    older than the mask. The folder's record then named settings that had not made them."""
    image = sorted((scenes / "images").glob("*.png"))[0]
    out = tmp_path / "out"
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None, min_unit_area_px=0)
    mapper.map(image).save(out, image.stem)
    saved = (out / f"{image.stem}.mask.png").read_bytes()
    with pytest.raises(ConfigError, match=r"was written by UnitMap.save \(from Python\).*overwrite=true"):
        run(make_cfg(tmp_path, ckpt, scenes / "images", out, "precision=32"))
    # Asked for probabilities the saved image lacks, predict.py replaced its files without a word.
    with pytest.raises(ConfigError, match=r"was written by UnitMap.save \(from Python\)"):
        run(make_cfg(tmp_path, ckpt, scenes / "images", out, "precision=32", "save_probabilities=true"))
    assert not (out / "manifest.csv").exists() and not (out / "prediction_settings.json").exists()
    assert (out / f"{image.stem}.mask.png").read_bytes() == saved  # the notebook's files are left alone
    # overwrite=true predicts it again with predict.py's settings.
    assert run(make_cfg(tmp_path, ckpt, scenes / "images", out, "precision=32", "overwrite=true")) == 0
    members = json.loads((out / f"{image.stem}.contact.geojson").read_text())
    assert "saved_by" not in members and "image_file" in members


def test_an_overwrite_run_leaves_files_saved_from_python_under_a_name_of_no_input(
    tmp_path: Path, ckpt: Path, scenes: Path
) -> None:
    """A notebook's ``result.save(out, "notebook_frame")`` in a folder that ``predict.py`` then predicts into:
    a first run leaves those files alone, but ``overwrite=true`` deleted them as "outputs of inputs removed
    since" (they never were an input's; README: other files in the folder are left alone). The files of
    inputs of earlier runs that are gone are still removed."""
    image = sorted((scenes / "images").glob("*.png"))[0]
    out = tmp_path / "out"
    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    saved = mapper.map(image).save(out, "notebook_frame", save_probabilities=True)
    before = {p.name: p.read_bytes() for p in saved}
    assert run(make_cfg(tmp_path, ckpt, scenes / "images", out, "precision=32")) == 0
    # The mask of an input removed since (an earlier run's), which overwrite=true still removes.
    (out / "gone.mask.png").write_bytes((out / f"{image.stem}.mask.png").read_bytes())
    assert run(make_cfg(tmp_path, ckpt, scenes / "images", out, "precision=32", "overwrite=true")) == 0
    assert {p.name: p.read_bytes() for p in saved if p.exists()} == before
    assert not (out / "gone.mask.png").exists()


def test_nan_probabilities_are_an_error_not_a_mask_of_unit_0():
    """A model whose output is NaN (weights broken: a checkpoint saved after training diverged elsewhere)
    gave a mask of smooth_volcanic everywhere (argmax of NaN is the first class), fractions 1.0 / 0 / 0 and
    no contact, with no word said. It is an error naming the fault; predict.py makes it the image's error
    row."""
    from marsunits.boundary import ContactConfig
    from marsunits.inference.unit_mapper import units_and_contacts

    image = np.full((32, 48, 3), 0.5, np.float32)
    probs = np.full((3, 32, 48), 1 / 3, np.float32)
    probs[:, 4:10, 5:9] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite at 24 of 1536 pixels"):
        units_and_contacts(probs, image, min_unit_area_px=200, nodata_max=0.03, contact=ContactConfig())
    image[:, :8] = 0.0  # a black border is no data: its probabilities are set aside, finite or not
    probs = np.full((3, 32, 48), 1 / 3, np.float32)
    probs[:, :, :8] = np.nan
    mask, _ = units_and_contacts(probs, image, min_unit_area_px=200, nodata_max=0.03, contact=ContactConfig())
    # The border and the one-pixel ring beside it (FRINGE_PX) are no data.
    assert (mask[:, :9] == 255).all() and (mask[:, 9:] == 0).all()


@pytest.mark.parametrize("fold_batchnorm", [True, False])
def test_a_model_given_to_the_mapper_is_left_as_it_was(fold_batchnorm: bool) -> None:
    """With fold_batchnorm=false the mapper put the caller's own model in eval mode and channels_last, and on
    the mapper's device: a notebook's model was left in eval mode (batch norm frozen in a hand-made training
    loop), or on the GPU for its next CPU call."""
    import torch

    task = tiny_task(TILE).train()
    params = dict(task.named_parameters())
    before = {name: (p.detach().clone(), p.stride(), p.device) for name, p in params.items()}
    mapper = UnitMapper(task, device="cpu", channels_last=True, fold_batchnorm=fold_batchnorm)
    result = mapper.map(np.zeros((TILE, TILE, 3), np.uint8))
    assert result.mask.shape == (TILE, TILE)
    assert task.training and all(m.training for m in task.modules())
    for name, p in task.named_parameters():
        value, stride, device = before[name]
        assert p.stride() == stride and p.device == device, name
        torch.testing.assert_close(p.detach(), value, rtol=0, atol=0)


def test_a_path_or_a_network_given_to_the_constructor_is_named_with_load(ckpt: Path) -> None:
    """``UnitMapper("model.ckpt")`` (for ``UnitMapper.load``) failed as "'str' object has no attribute
    'metadata'", the task's network (``task.model``) as "'Unet' object has no attribute 'metadata'"."""
    for given in (str(ckpt), ckpt):
        with pytest.raises(
            TypeError, match=rf"takes a loaded model; .*use UnitMapper.load\('{re.escape(str(ckpt))}'\)"
        ):
            UnitMapper(given)
    task = tiny_task(TILE)
    with pytest.raises(TypeError, match=r"SegmentationTask .*got Unet: .*task, not task.model"):
        UnitMapper(task.model)


def test_a_tensor_of_another_dtype_or_an_empty_one_is_named_as_a_tensor(ckpt: Path) -> None:
    """An int16 tensor was told to use numpy's ``image.astype`` (a tensor has none); an empty (3, 0, 64)
    tensor was named by its permuted (H, W, C) shape, (0, 64, 3)."""
    import torch

    mapper = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None)
    with pytest.raises(
        ValueError, match=r"image tensor, got dtype torch.int16; convert it, e.g. tensor.float\(\)"
    ):
        mapper.map(torch.zeros(3, TILE, TILE, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"tensor of shape \(C, H, W\) or \(H, W\), got \(3, 0, 64\)"):
        mapper.map(torch.zeros(3, 0, 64))
    for dtype in (torch.uint8, torch.float16, torch.bfloat16, torch.float64, torch.bool):
        assert mapper.map(torch.zeros(3, TILE, TILE, dtype=dtype)).mask.shape == (TILE, TILE)


def test_save_names_a_stem_that_is_not_a_str(tmp_path: Path, ckpt: Path) -> None:
    """``result.save(folder, Path("frame"))`` failed as "argument of type 'PosixPath' is not iterable"."""
    result = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None).map(
        np.zeros((TILE, TILE), np.uint8)
    )
    for stem in (Path("frame"), 5):
        with pytest.raises(
            TypeError, match=r"stem must be a str, .*Path\(image\).stem\), got (PosixPath|int)"
        ):
            result.save(tmp_path, stem)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())
    assert {p.name for p in result.save(tmp_path, "frame")} >= {"frame.mask.png", "frame.contact.geojson"}


def test_a_device_that_is_not_cpu_or_cuda_is_refused_naming_the_choices(ckpt: Path) -> None:
    """``device="mps"`` (a Mac's GPU) was taken by ``torch.device`` and failed when the model was moved, in
    torch's words ("PyTorch is not linked with support for mps devices"); a CUDA index past the machine's
    devices as "invalid device ordinal"."""
    import torch

    for device in ("mps", "meta", "xpu"):
        with pytest.raises(
            ConfigError, match=rf"device='{device}': .*CPU or a CUDA GPU only; use auto, cpu, cuda"
        ):
            UnitMapper.load(ckpt, device=device)
    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"cuda:99'.*numbered from 0"):
            UnitMapper.load(ckpt, device="cuda:99")
    assert UnitMapper.load(ckpt, device=torch.device("cpu")).config["device"] == "cpu"


def test_save_takes_an_image_file_name_as_its_stem_and_refuses_an_output_name(
    tmp_path: Path, ckpt: Path
) -> None:
    """``result.save(out, "frame.png")`` wrote ``frame.png.mask.png``: a name with an image suffix predict.py
    reads (``Path(image).name``) is taken as predict.py takes such an input, the stem ``frame``; an output's
    name (``frame.mask.png``), or its stem (``frame.mask``, which wrote ``frame.mask.mask.png``) where that
    output is, is refused naming the stem to give, and nothing is written; elsewhere ``frame.mask`` is the
    stem of an image named ``frame.mask.png`` (it was refused everywhere: such an image had no stem to give).
    """
    result = UnitMapper.load(ckpt, device="cpu", precision="32", tile=None).map(
        np.zeros((TILE, TILE), np.uint8)
    )
    for name in ("frame.png", "frame.JPG", "frame.tiff", "frame.jpeg"):
        out = tmp_path / name.replace(".", "_")
        assert sorted(p.name for p in result.save(out, name)) == [
            "frame.contact.geojson",
            "frame.mask.png",
            "frame.overlay.png",
            "frame.thumb.jpg",
        ]
        assert sorted(p.name for p in out.iterdir()) == [
            "frame.contact.geojson",
            "frame.mask.png",
            "frame.overlay.png",
            "frame.thumb.jpg",
        ]
    # A dot that is no image suffix is part of the stem, as in predict.py's names.
    assert {p.name for p in result.save(tmp_path / "dots", "sol0123.v2")} >= {"sol0123.v2.mask.png"}
    for name in (
        "frame.mask.png",
        "frame.overlay.png",
        "frame.thumb.jpg",
        "frame.contact.geojson",
        "frame.prob.tif",
    ):
        with pytest.raises(
            ConfigError,
            match=rf"stem {re.escape(repr(name))} is the name of an output; give the stem 'frame'",
        ):
            result.save(tmp_path / "outputs", name)
    assert not (tmp_path / "outputs").exists()
    # An output's Path.stem (frame.mask, from a listing of *.mask.png) wrote frame.mask.mask.png beside
    # frame.mask.png: refused where that output is.
    listed = tmp_path / "listed"
    result.save(listed, "frame", save_probabilities=True)
    before = sorted(p.name for p in listed.iterdir())
    for name in ("frame.mask", "frame.overlay", "frame.thumb", "frame.contact", "frame.prob"):
        with pytest.raises(
            ConfigError,
            match=rf"stem {re.escape(repr(name))} is the stem of an output \({re.escape(str(listed))}/"
            rf"{re.escape(name)}\.\*, in that folder\); give the stem 'frame'",
        ):
            result.save(listed, name)
    assert sorted(p.name for p in listed.iterdir()) == before
    # Elsewhere it is the stem of an image so named, frame.mask.png, which predict.py reads and names
    # frame.mask.mask.png (it was refused here too: such an image had no stem to give).
    assert {p.name for p in result.save(tmp_path / "image_named_so", "frame.mask")} >= {"frame.mask.mask.png"}
    # An image whose own name holds such a word keeps its outputs as predict.py names them.
    assert {p.name for p in result.save(tmp_path / "kept", "frame.mask.jpg")} >= {"frame.mask.mask.png"}
    assert {p.name for p in result.save(tmp_path / "kept", "masked")} >= {"masked.mask.png"}
    with pytest.raises(ConfigError, match=r"stem must be a plain file name"):
        result.save(tmp_path / "bare", ".png")
