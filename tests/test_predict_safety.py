"""``predict.py`` against unsafe models and hostile file systems: packages and malicious checkpoints,
symbolic-link escapes, full or read-only output disks, size limits."""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import re
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from marsunits.data.mask_io import read_mask
from marsunits.errors import ConfigError, DataError, report_user_errors
from marsunits.inference import run, run_reports
from marsunits.inference import runner as runner_module
from marsunits.inference.inputs import check_folders, discover, output_escape

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import CONFIG_DIR
    from .test_predict import ckpt, make_cfg, read_manifest, save_rgb  # noqa: F401  (ckpt is a fixture)
except ImportError:
    from conftest import CONFIG_DIR  # type: ignore[no-redef]
    from test_predict import ckpt, make_cfg, read_manifest, save_rgb  # type: ignore[no-redef]  # noqa: F401


def _tree(inp: Path, n: int = 3) -> None:
    for i in range(n):
        save_rgb(inp / f"img{i}.png", 40 + 3 * i, 50, seed=i)


def _run_cli(cfg, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """What ``predict.py`` does with ``cfg``: the exit status and its stderr."""
    try:
        code = report_user_errors(lambda: run(cfg), prog="predict.py")
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------------ 1. model packages
def test_package_predicts_the_same_masks_as_its_checkpoint(tmp_path: Path, ckpt: Path) -> None:
    from marsunits.export import export_checkpoint

    inp = tmp_path / "in"
    _tree(inp, 2)
    package = export_checkpoint(ckpt, tmp_path / "package")
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "from_ckpt")) == 0
    assert run(make_cfg(tmp_path, package, inp, tmp_path / "from_pkg")) == 0
    for i in range(2):
        a = (tmp_path / "from_ckpt" / f"img{i}.mask.png").read_bytes()
        b = (tmp_path / "from_pkg" / f"img{i}.mask.png").read_bytes()
        assert a == b
    summary = json.loads((tmp_path / "from_pkg" / "summary.json").read_text())
    assert summary["checkpoint"] == str(package.resolve())


def test_a_package_with_edited_normalisation_does_not_add_to_its_folder(tmp_path: Path, ckpt: Path) -> None:
    """model.json's mean/std sit outside the hashed weights: an edited copy changed every mask, yet was taken
    for the same model and its masks were added beside the original's in one folder."""
    from marsunits.export import export_checkpoint

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    package = export_checkpoint(ckpt, tmp_path / "package")
    assert run(make_cfg(tmp_path, package, inp, out)) == 0
    edited = tmp_path / "edited"
    shutil.copytree(package, edited)
    doc = json.loads((edited / "model.json").read_text())
    for part in ("hparams", "metadata"):
        doc[part]["mean"] = [0.1, 0.1, 0.1]
    (edited / "model.json").write_text(json.dumps(doc))
    save_rgb(inp / "img9.png", 40, 50, seed=9)  # one more input: it would be predicted with the edited copy
    with pytest.raises(ConfigError, match=r"other settings: .*normalisation"):
        run(make_cfg(tmp_path, edited, inp, out))
    assert not (out / "img9.mask.png").exists()
    assert run(make_cfg(tmp_path, package, inp, out)) == 0  # the original package goes on


def test_a_package_naming_a_checkpoint_as_its_source_is_judged_by_its_weights(
    tmp_path: Path, ckpt: Path
) -> None:
    """model.json's provenance is plain JSON, taken on trust: a package of other weights whose provenance
    named the folder's checkpoint (carried over by a script re-writing a package, or edited) was taken for
    that checkpoint's model, and its masks were added beside the checkpoint's in one folder."""
    from marsunits.export import export_checkpoint
    from marsunits.file_digest import file_sha256
    from marsunits.model_package import load_model, write_package

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    other = load_model(ckpt)
    with torch.no_grad():
        next(other.parameters()).add_(0.5)  # another model
    claimed = {"source_checkpoint_sha256": file_sha256(ckpt)}
    forged = write_package(other, tmp_path / "forged", provenance=claimed)
    save_rgb(inp / "img9.png", 40, 50, seed=9)  # one more input: it would be predicted with the other model
    with pytest.raises(ConfigError, match=r"other settings: the model \(network .*forged"):
        run(make_cfg(tmp_path, forged, inp, out))
    assert not (out / "img9.mask.png").exists()
    package = export_checkpoint(ckpt, tmp_path / "package")  # the checkpoint's own package goes on
    assert run(make_cfg(tmp_path, package, inp, out)) == 0
    assert (out / "img9.mask.png").exists()


def test_a_recoloured_package_does_not_add_overlays_in_its_colours_to_a_folder(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The palette is edited in model.json (README: edit both copies), outside the hashed weights: the folder
    was resumed, its new overlays drawn in the new colours beside the old: one gallery in two palettes."""
    from marsunits.export import export_checkpoint

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    package = export_checkpoint(ckpt, tmp_path / "package")
    assert run(make_cfg(tmp_path, package, inp, out)) == 0
    record = out / "prediction_settings.json"
    older = {k: v for k, v in json.loads(record.read_text()).items() if k != "palette"}
    record.write_text(json.dumps(older))  # a folder recorded before the palette was: resumed as before
    assert run(make_cfg(tmp_path, package, inp, out)) == 0
    recoloured = tmp_path / "recoloured"
    shutil.copytree(package, recoloured)
    doc = json.loads((recoloured / "model.json").read_text())
    palette = [[255, 0, 0], [0, 0, 255], [0, 255, 0]]
    assert palette != doc["metadata"]["palette"]
    for part in ("hparams", "metadata"):
        doc[part]["palette"] = palette
    (recoloured / "model.json").write_text(json.dumps(doc))
    save_rgb(inp / "img9.png", 40, 50, seed=9)  # one more input: its overlay would be in the new colours
    code, err = _run_cli(make_cfg(tmp_path, recoloured, inp, out), capsys)
    assert code == 2
    assert "palette" in err and "overwrite=true" in err and str(out) in err
    assert not (out / "img9.overlay.png").exists()
    settings = json.loads((out / "prediction_settings.json").read_text())
    assert settings["palette"] != palette  # the folder's record still names the colours its overlays have
    # overwrite=true redraws every overlay in the new colours and records them.
    assert run(make_cfg(tmp_path, recoloured, inp, out, "overwrite=true")) == 0
    assert json.loads((out / "prediction_settings.json").read_text())["palette"] == palette


def test_a_folder_drawn_in_the_default_colours_is_not_resumed_in_the_models(
    tmp_path: Path, ckpt: Path
) -> None:
    """Until 2026-12-06 the overlays were drawn in the default palette whatever the model's, while the record
    named the model's palette: a recoloured package resuming such a folder (records alike) drew its new
    overlays in its own colours beside the old default ones. A record without the drawn colours is taken as
    drawn in the default palette of that time: refused for a recoloured model and for one of today's default
    (rough_olivine green, not amber), resumed for one of that time's colours whatever palette it recorded."""
    from marsunits.export import export_checkpoint
    from marsunits.inference.output_settings import PALETTE_UNTIL_2026_12_06

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    todays = export_checkpoint(ckpt, tmp_path / "todays")
    package = export_checkpoint(ckpt, tmp_path / "package")  # recoloured as a model trained until 2026-12-06
    doc = json.loads((package / "model.json").read_text())
    default = [list(rgb) for rgb in PALETTE_UNTIL_2026_12_06]
    assert doc["metadata"]["palette"] != default  # today's default differs
    for part in ("hparams", "metadata"):
        doc[part]["palette"] = default
    (package / "model.json").write_text(json.dumps(doc))
    recoloured = tmp_path / "recoloured"
    shutil.copytree(package, recoloured)
    palette = [[255, 0, 0], [0, 0, 255], [0, 255, 0]]
    for part in ("hparams", "metadata"):
        doc[part]["palette"] = palette
    (recoloured / "model.json").write_text(json.dumps(doc))
    record = out / "prediction_settings.json"

    def as_recorded_before(recorded_palette: list[list[int]]) -> None:
        """The record as predict.py wrote it before the overlays were drawn in the model's palette."""
        old = json.loads(record.read_text())
        old.pop("overlay_palette", None)
        old["palette"] = recorded_palette
        record.write_text(json.dumps(old))

    assert run(make_cfg(tmp_path, recoloured, inp, out, "overwrite=true")) == 0
    as_recorded_before(palette)  # overlays drawn in the default colours, the record naming the model's
    save_rgb(inp / "img9.png", 40, 50, seed=9)
    with pytest.raises(ConfigError, match="palette"):
        run(make_cfg(tmp_path, recoloured, inp, out))
    with pytest.raises(ConfigError, match="palette"):  # today's default colours are not those drawn either
        run(make_cfg(tmp_path, todays, inp, out))
    assert not (out / "img9.overlay.png").exists()
    # The default-coloured model's overlays are those the folder holds: resumed.
    assert run(make_cfg(tmp_path, package, inp, out)) == 0
    assert (out / "img9.overlay.png").exists()
    assert json.loads(record.read_text())["palette"] == default


def test_a_renamed_model_json_given_by_name_is_said_by_predict_and_unit_mapper(
    tmp_path: Path, ckpt: Path
) -> None:
    """ckpt_path=<package>/model.json (the README's other form of a package), its model.json renamed on its
    way: predict.py and UnitMapper.load said only 'does not exist', before load_model could say which file
    to rename back."""
    from marsunits.export import export_checkpoint
    from marsunits.inference.unit_mapper import UnitMapper

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 1)
    package = export_checkpoint(ckpt, tmp_path / "package")
    (package / "model.json").rename(package / "marsscapes.json")
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        run(make_cfg(tmp_path, package / "model.json", inp, out))
    assert str(package / "marsscapes.json") in str(info.value)
    with pytest.raises(FileNotFoundError, match="rename it back"):
        UnitMapper.load(package / "model.json")


def test_a_recoloured_package_draws_its_overlays_in_its_colours(tmp_path: Path, ckpt: Path) -> None:
    """The README's way to change the overlay colours is to edit the palette in model.json; the overlays of
    predict.py and UnitMap.overlay were drawn in the project's default palette whatever the model's."""
    from marsunits.export import export_checkpoint
    from marsunits.inference.unit_mapper import UnitMapper
    from marsunits.inference.writers import OVERLAY_ALPHA

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    grey = np.full((40, 50, 3), 128, np.uint8)
    Image.fromarray(grey).save(inp / "grey.png")
    recoloured = export_checkpoint(ckpt, tmp_path / "recoloured")
    doc = json.loads((recoloured / "model.json").read_text())
    palette = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]])
    for part in ("hparams", "metadata"):
        doc[part]["palette"] = palette.tolist()
    (recoloured / "model.json").write_text(json.dumps(doc))
    a = round(OVERLAY_ALPHA * 256)

    def share_in_palette(overlay: np.ndarray, mask: np.ndarray) -> float:
        """Share of the pixels tinted exactly in their class's palette colour over the grey image (contact
        lines, drawn on top, are the rest)."""
        expected = (128 * (256 - a) + palette[mask] * a) >> 8
        return float((overlay.astype(int) == expected).all(-1).mean())

    assert run(make_cfg(tmp_path, recoloured, inp, out)) == 0
    overlay = np.asarray(Image.open(out / "grey.overlay.png").convert("RGB"))
    assert share_in_palette(overlay, read_mask(out / "grey.mask.png")) > 0.9
    assert "rgb(255, 0, 0)" in (out / "index.html").read_text()  # the gallery's key: the same colours
    mapped = UnitMapper.load(recoloured, tile=None).map(grey)
    assert share_in_palette(mapped.overlay(), mapped.mask) > 0.9


class _Payload:
    """Unpickling this creates a marker file: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _SystemPayload:
    """The classic payload, ``os.system(command)``: torch blocks the ``os``/``posix`` module outright and
    words the refusal differently ("unsupported GLOBAL posix.system whose module posix is blocked"), which was
    reported as an unreadable file, repeating torch's advice to load it unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_package_tile_size_that_tile_null_cannot_use_names_where_it_came_from(
    tmp_path: Path, ckpt: Path
) -> None:
    """tile=null takes the model's tile_size: one edited in model.json to a size the network cannot tile
    (36, stride 8) stopped with 'tile must be a positive multiple of the network stride 8, got 36', a value
    the user never gave; the message says it is the model's tile_size, in which file, and the way on."""
    from marsunits.export import export_checkpoint
    from marsunits.inference.unit_mapper import UnitMapper

    inp = tmp_path / "in"
    _tree(inp, 1)
    package = export_checkpoint(ckpt, tmp_path / "package")
    doc = json.loads((package / "model.json").read_text())
    for part in ("hparams", "metadata"):
        doc[part]["tile_size"] = 36
    (package / "model.json").write_text(json.dumps(doc))
    said = r"got 36.*tile=null takes the model's tile_size \(36\)"
    with pytest.raises(ConfigError, match=said) as info:
        run(make_cfg(tmp_path, package, inp, tmp_path / "out"))
    assert str(package) in str(info.value) and "tile=32" in str(info.value)
    assert not (tmp_path / "out" / "img0.mask.png").exists()
    with pytest.raises(ConfigError, match=said.replace("null", "None")):
        UnitMapper.load(package, tile=None)


@pytest.mark.parametrize("payload", [_Payload, _SystemPayload])
def test_malicious_checkpoint_is_refused_without_running_its_code(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], payload: type
) -> None:
    marker = tmp_path / "pwned"
    evil = torch.load(ckpt, map_location="cpu", weights_only=True)
    evil["payload"] = payload(marker)
    evil_path = tmp_path / "from a colleague" / "evil.ckpt"  # a space: the advised command quotes it
    evil_path.parent.mkdir()
    torch.save(evil, evil_path)
    assert not marker.exists()
    inp = tmp_path / "in"
    _tree(inp, 1)
    out = tmp_path / "out"
    code, err = _run_cli(make_cfg(tmp_path, evil_path, inp, out), capsys)
    assert code == 2
    message = err.splitlines()[0]
    assert "Refusing to load" in message and "trust_checkpoint=true" in message
    assert f"`python -m marsunits.export 'ckpt_path={evil_path}' out=<folder>" in message
    assert "weights_only" not in message  # torch's advice to load it unsafely is not passed on
    assert not marker.exists(), "the checkpoint's pickle was executed"
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (
            "trust_checkpoint=no",
            "trust_checkpoint='no': give trust_checkpoint=true or trust_checkpoint=false",
        ),
        ("overwrite=no", "overwrite='no': give overwrite=true or overwrite=false"),
        ("tta=yes", "tta='yes': give tta=true or tta=false"),
        ("max_megapixels=abc", "max_megapixels='abc': give a number or null, e.g. max_megapixels=100.0"),
        ("max_file_mb=0", "max_file_mb=0: give a limit > 0, or max_file_mb=null for none"),
        ("batch_size=2.5", "batch_size=2.5: give a whole number, e.g. batch_size=4"),
        # nan and inf passed, and ended in "Out of range float values are not JSON compliant".
        ("overlap=nan", "overlap=nan: give a number, e.g. overlap=0.125"),
        ("max_range_m=inf", "max_range_m must be a finite distance in metres > 0"),
        ("rank_timeout_s=0", "rank_timeout_s must be a finite number of seconds >= 1"),
        ("rank_timeout_s=inf", "rank_timeout_s must be a finite number of seconds >= 1"),
        ("contact.smoothing_sigma_px=nan", "contact.smoothing_sigma_px=nan: expected a finite number"),
    ],
)
def test_switches_given_as_words_and_numbers_given_as_text_are_refused(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], option: str, said: str
) -> None:
    """``trust_checkpoint=no`` reached the loader as the text "no", true to bool(): it loaded a malicious
    checkpoint's code. ``overwrite=no`` replaced another model's outputs; ``max_megapixels=abc`` crashed."""
    marker = tmp_path / "pwned"
    evil = torch.load(ckpt, map_location="cpu", weights_only=True)
    evil["payload"] = _Payload(marker)
    torch.save(evil, tmp_path / "evil.ckpt")
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 1)
    code, err = _run_cli(make_cfg(tmp_path, tmp_path / "evil.ckpt", inp, out, option), capsys)
    assert code == 2 and err.splitlines()[0].startswith(f"predict.py: error: {said}")
    assert not marker.exists() and not out.exists()


def test_infinite_limits_still_mean_no_limit(tmp_path: Path, ckpt: Path) -> None:
    """Refusing nan and inf for number options must not refuse the limits where inf means none."""
    from marsunits.inference.options import PredictOptions

    inp, out = tmp_path / "in", tmp_path / "out"
    cfg = make_cfg(tmp_path, ckpt, inp, out, "max_megapixels=inf", "max_file_mb=inf", "onnx_tolerance=inf")
    opts = PredictOptions.from_config(cfg)
    assert opts.max_megapixels == opts.max_file_mb == opts.onnx_tolerance == float("inf")


def test_trust_checkpoint_defaults_to_false() -> None:
    assert OmegaConf.load(CONFIG_DIR / "predict.yaml").trust_checkpoint is False


# ----------------------------------------------------------------------------- 5. outputs stay inside
def test_symlinked_inputs_are_mirrored_by_their_walked_path(tmp_path: Path, ckpt: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "real.png", 40, 40, seed=1)
    outside = tmp_path / "outside"
    save_rgb(outside / "secret.png", 36, 44, seed=2)
    save_rgb(outside / "folder" / "deep.png", 33, 35, seed=3)
    (inp / "link.png").symlink_to(outside / "secret.png")
    (inp / "dirlink").symlink_to(outside / "folder", target_is_directory=True)
    before = sorted(p.relative_to(tmp_path) for p in outside.rglob("*"))

    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert set(rows) == {"real.png", "link.png", "dirlink/deep.png"}
    assert read_mask(out / "link.mask.png").shape == (36, 44)
    assert read_mask(out / "dirlink" / "deep.mask.png").shape == (33, 35)
    assert sorted(p.relative_to(tmp_path) for p in outside.rglob("*")) == before  # nothing written there
    assert not list(inp.rglob("*.mask.png"))


def test_a_link_to_a_folder_of_input_dir_never_takes_that_folder_s_own_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link to a sub-folder of input_dir (``latest -> sol0100``) took the folder's images when its name
    sorted first: ``sol0100/x.png`` was predicted as ``latest/x.png`` and ``sol0100`` was passed over
    without a word, so whether outputs kept their folder's name depended on what a link was called (and
    adding one re-predicted the folder under another name). Real folders keep their names; links reach what
    they alone reach."""
    import logging

    inp = tmp_path / "in"
    save_rgb(inp / "sol0100" / "x.png", 8, 8)
    save_rgb(inp / "zz" / "deep" / "y.png", 8, 8)
    (inp / "latest").symlink_to(inp / "sol0100", target_is_directory=True)  # sorts before sol0100
    (inp / "a").mkdir()
    (inp / "a" / "shortcut").symlink_to(inp / "zz" / "deep", target_is_directory=True)  # another depth
    (inp / "cycle").symlink_to(inp, target_is_directory=True)
    save_rgb(tmp_path / "outside" / "o.png", 8, 8)
    (inp / "b_ext").symlink_to(tmp_path / "outside", target_is_directory=True)  # only a link reaches it
    (inp / "c_ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    with caplog.at_level(logging.INFO, logger="marsunits.inference.inputs"):
        files, problems = discover(inp.resolve(), ["png"])
    assert [f.rel.as_posix() for f in files] == ["b_ext/o.png", "sol0100/x.png", "zz/deep/y.png"]
    assert not problems
    assert "input_dir/latest is a link to input_dir/sol0100, searched under that name" in caplog.text
    assert "input_dir/c_ext is a link to input_dir/b_ext, searched under that name" in caplog.text


def test_a_link_to_a_folder_that_is_not_searched_is_not_said_to_be_searched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Folders walked by name come first now: a link to labels_dir (or to another run's output_dir) met
    after it was said to be "searched under that name", which it was not."""
    import logging

    inp = tmp_path / "in"
    save_rgb(inp / "x.png", 8, 8)
    save_rgb(inp / "labels" / "x.png", 8, 8)
    save_rgb(inp / "old_run" / "x.mask.png", 8, 8)
    (inp / "old_run" / "prediction_settings.json").write_text("{}")
    (inp / "a_labels").symlink_to(inp / "labels", target_is_directory=True)  # sorts first: walked after
    (inp / "b_old").symlink_to(inp / "old_run", target_is_directory=True)
    with caplog.at_level(logging.INFO, logger="marsunits.inference.inputs"):
        files, _ = discover(inp.resolve(), ["png"], skip={(inp / "labels").resolve(): "labels_dir"})
    assert [f.rel.as_posix() for f in files] == ["x.png"]
    assert "searched under that name" not in caplog.text
    assert "input_dir/a_labels is a link to input_dir/labels, which is not searched for images" in caplog.text
    assert "input_dir/b_old is a link to input_dir/old_run, which is not searched for images" in caplog.text


def test_a_folder_that_cannot_be_listed_is_an_error_row_naming_it_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sub-folder this user may not read (``chmod 700`` by another user; root reads any, so the refusal
    is made here) was the row ``locked, cannot list folder: Permission denied``: no path, nothing to do."""
    inp = tmp_path / "in"
    save_rgb(inp / "x.png", 8, 8)
    save_rgb(inp / "locked" / "y.png", 8, 8)
    real_scandir = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, problems = discover(inp.resolve(), ["png"])
    assert [f.rel.as_posix() for f in files] == ["x.png"]
    assert [p.rel.as_posix() for p in problems] == ["locked"]
    message = problems[0].message
    assert str(inp.resolve() / "locked") in message and "Permission denied" in message
    assert "make it readable" in message and "move it out of input_dir" in message


def test_an_input_dir_that_cannot_be_listed_stops_the_run_and_keeps_its_outputs(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """input_dir itself unreadable (an NFS mount gone stale, permissions changed) was one error row ``.``
    advising to "move it out of input_dir", and an ``overwrite=true`` run then took every earlier output
    for one of an input removed since and deleted them all."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    before = sorted(p.name for p in out.glob("img*.*"))
    real_scandir = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if os.path.realpath(path) == os.path.realpath(inp):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, err = _run_cli(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true"), capsys)
    assert code == 2
    assert f"input_dir {inp.resolve()} cannot be listed (Permission denied)" in err
    assert "move it out of input_dir" not in err and "chmod a+rx" in err
    assert sorted(p.name for p in out.glob("img*.*")) == before
    # Said by the checks a sharded run makes before spawning its ranks (each stopped with a traceback)...
    with pytest.raises(DataError, match=r"input_dir .* cannot be listed \(Permission denied\)"):
        check_folders(inp, out)
    # ...and by the walk (a folder that stops being readable after the checks; pseudo-labelling's walk).
    with pytest.raises(DataError, match=r"input_dir .* cannot be listed \(Permission denied\); make it"):
        discover(inp.resolve(), ["png"])


def test_an_output_name_taken_by_a_folder_is_an_error_row_naming_it_whatever_the_order(
    tmp_path: Path, ckpt: Path
) -> None:
    """``x.png`` beside a folder of images ``x.mask.png/`` (mirrored into output_dir, where x's mask goes),
    or a folder already in output_dir under an output's name: the clash was a raw "IsADirectoryError:
    [Errno 21] Is a directory" row without a fix, with some of the image's outputs left written; and
    ``b.png`` with ``save_probabilities=true`` beside ``b.prob.tif/`` wrote its file first, so the
    folder's images failed instead (which one failed hung on the order of the names)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    names = ("x.png", "x.mask.png/inner.png", "y.png", "b.png", "b.prob.tif/deep.png", "zz.png", "t.png")
    for name in (*names, "u.png", "u.thumb.jpg/inner.png"):
        save_rgb(inp / name, 24, 32)
    (out / "y.overlay.png").mkdir(parents=True)  # made by hand, empty
    (out / "t.thumb.jpg").mkdir(parents=True)  # the thumbnail is no completion marker, but is written
    assert run(make_cfg(tmp_path, ckpt, inp, out, "save_probabilities=true")) == 1
    rows = read_manifest(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "b.png": "error",
        "b.prob.tif/deep.png": "ok",
        "t.png": "error",
        "u.png": "error",
        "u.thumb.jpg/inner.png": "ok",
        "x.mask.png/inner.png": "ok",
        "x.png": "error",
        "y.png": "error",
        "zz.png": "ok",
    }
    assert f"{out / 't.thumb.jpg'} is a folder" in rows["t.png"]["message"]
    assert "input_dir/u.thumb.jpg/" in rows["u.png"]["message"]
    assert "b.prob.tif" in rows["b.png"]["message"] and "input_dir/b.prob.tif/" in rows["b.png"]["message"]
    assert "x.mask.png" in rows["x.png"]["message"] and "rename" in rows["x.png"]["message"]
    assert f"{out / 'y.overlay.png'} is a folder" in rows["y.png"]["message"]
    assert not [p for p in out.glob("[bxytu].*.*") if p.is_file()]  # no refused image's outputs half-written
    assert read_mask(out / "b.prob.tif" / "deep.mask.png").shape == (24, 32)


def test_a_folder_predicted_before_thumbnails_resumes_where_a_folder_has_a_thumbnails_name(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thumbnail is no part of an input's completion rule, yet a folder of ``input_dir`` named like one
    (``x.thumb.jpg/`` beside ``x.png``, predicted by a version that wrote no thumbnails) turned the finished
    ``x.png`` into an error row on resume: in no report, its outputs called those of an input failing now.
    It is skipped as done (its card shows the overlay); predicting it again is refused as before."""
    from marsunits.inference import writers

    inp, out = tmp_path / "in", tmp_path / "out"
    for name in ("x.png", "x.thumb.jpg/inner.png"):
        save_rgb(inp / name, 24, 32)
    with monkeypatch.context() as older:  # a version that wrote, and so checked, no thumbnail
        older.setattr(writers, "write_thumbnail", lambda *args, **kwargs: None)
        older.setattr(
            writers.OutputPaths, "kinds_written", staticmethod(lambda sp: ("contact", "overlay", "mask"))
        )
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert (out / "x.mask.png").is_file() and (out / "x.thumb.jpg" / "inner.mask.png").is_file()
    written = (out / "x.mask.png").stat().st_mtime_ns
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    statuses = {k: r["status"] for k, r in read_manifest(out).items()}
    assert statuses == {"x.png": "skipped", "x.thumb.jpg/inner.png": "skipped"}
    assert (out / "x.mask.png").stat().st_mtime_ns == written
    assert '<a href="x.overlay.png"><img src="x.overlay.png"' in (out / "index.html").read_text()
    assert run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true")) == 1  # written again: refused, said
    assert "input_dir/x.thumb.jpg/" in read_manifest(out)["x.png"]["message"]
    assert (out / "x.thumb.jpg" / "inner.mask.png").is_file()


def test_a_folder_given_as_a_link_loop_stops_with_one_sentence(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``output_dir``, ``input_dir``, ``labels_dir`` or ``ckpt_path`` a symbolic link that points back to
    itself stopped predict.py with Python's traceback ending in "RuntimeError: Symlink loop from ..."."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 1)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    cases = {
        "output_dir": (ckpt, inp, loop),
        "input_dir": (ckpt, loop, out),
        "labels_dir": (ckpt, inp, out, f"labels_dir={loop}"),
        "ckpt_path": (loop, inp, out),
    }
    for option, args in cases.items():
        status, err = _run_cli(make_cfg(tmp_path, *args), capsys)
        assert status == 2
        assert err.splitlines()[0] == (
            f"predict.py: error: {option} {loop} is a symbolic link loop (a link that leads back to itself); "
            "fix or remove the link, or give another path"
        )
        assert "Traceback" not in err
    assert not out.exists()


def test_output_escape_refuses_parent_parts_and_planted_links(tmp_path: Path) -> None:
    out = (tmp_path / "out").resolve()
    out.mkdir()
    assert output_escape(out, PurePosixPath("a/b.png")) is None
    assert "outside output_dir" in output_escape(out, PurePosixPath("../b.png"))
    assert "outside output_dir" in output_escape(out, PurePosixPath("/etc/b.png"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    message = output_escape(out, PurePosixPath("sub/deeper/x.png"))
    assert message is not None and "symbolic link" in message


def test_a_link_planted_in_output_dir_becomes_an_error_row(tmp_path: Path, ckpt: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "sub" / "x.png", 40, 40)
    save_rgb(inp / "y.png", 40, 40)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 1
    rows = read_manifest(out)
    assert rows["sub/x.png"]["status"] == "error" and "symbolic link" in rows["sub/x.png"]["message"]
    assert rows["y.png"]["status"] == "ok"
    assert list(elsewhere.iterdir()) == []


def test_a_link_to_output_dir_inside_input_dir_is_not_searched(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """output_dir reached through a symbolic link under input_dir: each run predicted the previous run's
    masks and overlays as photographs (14 PNGs after three runs, and growing)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 1)
    out.mkdir()
    (inp / "results").symlink_to(out, target_is_directory=True)
    (inp / "all").symlink_to(tmp_path, target_is_directory=True)  # a link to a folder above output_dir
    for _ in range(2):
        assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert set(rows) == {"img0.png"}  # "all" reaches the input folder (walked once) and out/ (skipped)
    assert not [p for p in out.rglob("*.png") if p.name.count(".mask") + p.name.count(".overlay") > 1]
    assert "is output_dir (this run's outputs): not searched for images" in caplog.text


def test_labels_kept_under_the_input_folder_are_not_predicted_as_photographs(
    tmp_path: Path, ckpt: Path
) -> None:
    inp, out = tmp_path / "photos", tmp_path / "out"
    _tree(inp, 1)
    labels = inp / "labels"
    labels.mkdir()
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(labels / "img0.png")
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"labels_dir={labels}")) == 0
    assert set(read_manifest(out)) == {"img0.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_scored"] == 1 and not metrics["missing_labels"]
    # Photographs and their masks side by side, the masks left out by patterns: as before, scored
    side = tmp_path / "side"
    save_rgb(side / "a.jpg", 40, 50)
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(side / "a.png")
    assert run(make_cfg(tmp_path, ckpt, side, tmp_path / "out2", f"labels_dir={side}", "patterns=[jpg]")) == 0
    assert json.loads((tmp_path / "out2" / "metrics.json").read_text())["images_scored"] == 1
    # Default patterns: refused. The message began with masks beside the photographs ("give patterns for
    # the photographs only"); labels_dir = input_dir is more often the photographs' folder given twice.
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(tmp_path, ckpt, side, tmp_path / "out3", f"labels_dir={side}"))
    said = str(refused.value)
    assert said.startswith(
        f"labels_dir is the same folder as input_dir ({side}): labels are class-id masks, usually in a "
        f"folder of their own (e.g. {tmp_path / 'labels'})"
    ), said
    assert re.search(r"if the masks do sit beside the photographs.*patterns=\[jpg\].*\.png", said), said
    # A folder of masks beside input_dir is named, as the labels_dir to give.
    (tmp_path / "masks").mkdir()
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(tmp_path, ckpt, side, tmp_path / "out3", f"labels_dir={side}"))
    assert (
        f"folder of their own, as {tmp_path / 'masks'} beside it may be (labels_dir={tmp_path / 'masks'})"
        in str(refused.value)
    ), refused.value


def test_a_mosaic_over_pillows_limit_is_predicted_scored_and_skipped_with_max_megapixels_null(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_megapixels=null lifted Pillow's decompression-bomb limit for the photograph only: the camera
    file's orientation check made an image with a camera an error row, its label went to label_errors, and
    its own mask could not be read back, so every run predicted it again. Pillow's limit is shrunk here so
    5,120-pixel images stand for mosaics over 179 megapixels."""
    from marsunits.boundary.camera.pinhole import PinholeCamera

    inp, out, labels = tmp_path / "in", tmp_path / "out", tmp_path / "labels"
    save_rgb(inp / "a.png", 64, 80, seed=1)
    save_rgb(inp / "b.png", 64, 80, seed=2)
    (inp / "b.camera.json").write_text(json.dumps(PinholeCamera(80, 64, 60.0, 20.0, site="s").to_dict()))
    labels.mkdir()
    Image.fromarray(np.zeros((64, 80), np.uint8)).save(labels / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # Pillow refuses above 4,000 pixels
    cfg = make_cfg(tmp_path, ckpt, inp, out, "max_megapixels=null", f"labels_dir={labels}")
    assert run(cfg) == 0
    assert {k: r["status"] for k, r in read_manifest(out).items()} == {"a.png": "ok", "b.png": "ok"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_scored"] == 1 and not metrics["label_errors"]
    assert run(cfg) == 0
    assert {r["status"] for r in read_manifest(out).values()} == {"skipped"}


def test_input_dir_inside_output_dir_is_refused(tmp_path: Path, ckpt: Path) -> None:
    out = tmp_path / "out"
    inp = out / "in"
    _tree(inp, 1)
    with pytest.raises(ConfigError, match="inside output_dir"):
        run(make_cfg(tmp_path, ckpt, inp, out))
    assert sorted(p.name for p in out.iterdir()) == ["in"]


# ------------------------------------------------------------------------ 6. full disk, read-only disk
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_output_stops_with_exit_2_and_keeps_what_was_done(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 3)
    real = runner_module.write_prediction
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "write_prediction", failing)
    status, err = _run_cli(make_cfg(tmp_path, ckpt, inp, out), capsys)
    assert status == 2
    first = err.splitlines()[0]
    assert str(out) in first and "run the same command again" in first
    assert len(calls) == 2  # stopped at the first failure, not once per remaining input
    rows = read_manifest(out)
    assert list(rows) == ["img0.png"] and rows["img0.png"]["status"] == "ok"
    assert read_mask(out / "img0.mask.png").shape == (40, 50)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and str(out) in summary["stopped_early"]
    assert summary["exit_status"] == 2 and summary["exit_reasons"] == ["stopped"]  # as the command exits
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    monkeypatch.setattr(runner_module, "write_prediction", real)  # disk freed: the re-run finishes
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert [rows[f"img{i}.png"]["status"] for i in range(3)] == ["skipped", "ok", "ok"]
    assert json.loads((out / "summary.json").read_text())["stopped_early"] is None


# ------------------------------------------------------------------------------------------ 7. limits
def test_default_limits_accept_navcam_frames_and_panoramas() -> None:
    cfg = OmegaConf.load(CONFIG_DIR / "predict.yaml")
    assert cfg.max_megapixels >= 20
    assert cfg.max_megapixels * 1e6 >= 12_000 * 1_600
    assert cfg.max_file_mb >= 100  # a 20 MP 16-bit uncompressed TIFF is ~120 MB with 3 channels


def test_size_limits_become_error_rows_naming_file_size_and_option(tmp_path: Path, ckpt: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "small.png", 20, 20, seed=1)
    save_rgb(inp / "big.png", 200, 300, seed=2)  # random pixels: ~180 kB, 0.06 MP
    size_mb = (inp / "big.png").stat().st_size / 1e6
    assert run(make_cfg(tmp_path, ckpt, inp, out, f"max_file_mb={size_mb / 2}")) == 1
    row = read_manifest(out)["big.png"]
    assert row["status"] == "error"
    assert (
        "big.png" in row["message"]
        and "max_file_mb" in row["message"]
        and f"{size_mb:.1f} MB" in row["message"]
    )
    assert read_manifest(out)["small.png"]["status"] == "ok"

    out2 = tmp_path / "out2"
    assert run(make_cfg(tmp_path, ckpt, inp, out2, "max_megapixels=0.01")) == 1
    row = read_manifest(out2)["big.png"]
    assert row["status"] == "error" and "300x200" in row["message"] and "max_megapixels" in row["message"]
    assert read_manifest(out2)["small.png"]["status"] == "ok"
    assert np.array_equal(read_mask(out / "small.mask.png"), read_mask(out2 / "small.mask.png"))


# ------------------------------------------------------------------------ 8. one run per output folder
def test_a_second_run_into_an_output_dir_in_use_is_refused_before_loading(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two predict.py into one output_dir each predicted the images the other had not finished, up to every
    image twice; the settings record stops another model only once the first run has written it."""
    import subprocess
    import sys
    import textwrap

    from marsunits.inference.options import PredictOptions
    from marsunits.inference.sharded_run import Shard, predict_shard

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    holder = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from marsunits.run_folder_claim import claimed_output_dir
        with claimed_output_dir(Path({str(out)!r}), take=True):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        loaded = []
        monkeypatch.setattr(runner_module, "_Session", lambda *a, **k: loaded.append(1))
        status, err = _run_cli(make_cfg(tmp_path, ckpt, inp, out), capsys)
        assert status == 2 and not loaded  # refused before the model was loaded
        assert f"output_dir {out} is in use by predict.py (pid {other.pid}" in err
        assert "choose another output_dir" in err and "Traceback" not in err
        assert [p.name for p in out.iterdir()] == [".predict.claim"]  # nothing of this run written
        # A sharded run: every rank stops with rank 0's refusal, not only rank 0 (the others would predict
        # into the folder, then wait for rank 0 for ever).
        opts = PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out))
        told: list[str | None] = []

        def broadcast(obj: str | None) -> str | None:  # rank 0's object, given to every rank
            told.append(obj)
            return told[0]

        with pytest.raises(ConfigError, match=f"output_dir {out} is in use by predict.py"):
            predict_shard(opts, Shard(rank=0, world_size=2), broadcast=broadcast)
        with pytest.raises(ConfigError, match=f"output_dir {out} is in use by predict.py"):
            predict_shard(opts, Shard(rank=1, world_size=2), broadcast=broadcast)
        assert told[1] is None  # rank 1 did not claim: it stops on rank 0's word
        assert not loaded
        # devices=2 spawned from here: the folder in use is said by the launching process, in one line (a
        # spawned rank's ConfigError came as a spawn traceback with status 1).
        from marsunits.inference import distributed

        monkeypatch.setattr(distributed, "launch", lambda *a: loaded.append("launched"))
        status, err = _run_cli(make_cfg(tmp_path, ckpt, inp, out, "devices=2"), capsys)
        assert status == 2 and not loaded and "is in use by predict.py" in err and "Traceback" not in err
        monkeypatch.undo()
    finally:
        other.kill()
        other.wait()
    # The holder is gone (SIGKILL): the system released its lock, so the folder is free again.
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    assert sorted(read_manifest(out)) == ["img0.png", "img1.png"]
    assert not (out / ".predict.claim").exists()  # removed by the run that held it
    # A run refused at start (no such checkpoint) leaves none of the folders made for its claim.
    deep = tmp_path / "new" / "a" / "b"
    status, err = _run_cli(make_cfg(tmp_path, tmp_path / "missing.ckpt", inp, deep), capsys)
    assert status == 2 and not (tmp_path / "new").exists()


def test_a_sharded_run_checks_option_values_before_spawning_ranks(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """devices=2 batch_size=0 was refused inside each spawned rank: a 70-line spawn traceback, status 1."""
    from marsunits.inference import distributed

    inp = tmp_path / "in"
    _tree(inp, 1)
    launched: list[object] = []
    monkeypatch.setattr(distributed, "launch", lambda *a: launched.append(a))
    status, err = _run_cli(
        make_cfg(tmp_path, ckpt, inp, tmp_path / "out", "devices=2", "batch_size=0"), capsys
    )
    assert status == 2 and not launched
    assert err.splitlines()[0] == "predict.py: error: batch_size must be >= 1, got 0"
    assert "Traceback" not in err
    # So are the other checks that need neither the model nor the images.
    for extra, said in (
        ("precision=bogus", "precision must be one of"),
        ("contact.dominance_threshold=abc", "contact.dominance_threshold='abc'"),
        ("threads=-2", "threads must be a positive integer"),
        # These three were refused only once the model was loaded (overlap, runtime) or the folder walked.
        ("overlap=1.5", "overlap=1.5: give a fraction of the window in [0, 1)"),
        ("runtime=tensorrt", "runtime must be one of ['auto', 'torch', 'onnx'], got 'tensorrt'"),
        ("patterns=[]", "patterns is empty"),
        (f"labels_dir={tmp_path / 'none'}", "is not an existing folder"),
        (f"ckpt_path={tmp_path / 'none.ckpt'}", "does not exist"),
    ):
        cfg = make_cfg(tmp_path, ckpt, inp, tmp_path / "out", "devices=2", extra)
        status, err = _run_cli(cfg, capsys)
        assert status == 2 and not launched and said in err.splitlines()[0] and "Traceback" not in err, err


def test_ckpt_path_last_says_it_is_train_pys_word_and_names_the_newest_best_ckpt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ckpt_path=last, carried over from train.py's resume, said only 'checkpoint <cwd>/last does not exist;
    pass a .ckpt...'. It names train.py's meaning and the newest run's best.ckpt under paths.log_dir."""
    inp = tmp_path / "in"
    _tree(inp, 1)
    cfg = make_cfg(tmp_path, "last", inp, tmp_path / "out")  # type: ignore[arg-type]
    log_dir = Path(cfg.paths.log_dir)
    status, err = _run_cli(cfg, capsys)  # no run trained yet: the general form
    first = err.splitlines()[0]
    assert status == 2 and "Traceback" not in err, err
    assert "ckpt_path=last means something only to train.py" in first, first
    assert f"no run under {log_dir} has a checkpoints/best.ckpt" in first, first
    assert "ckpt_path=<log folder>/train/<run>/checkpoints/best.ckpt" in first, first
    assert "last.ckpt" not in first.split("predict.py needs the model itself")[1], first
    # Only last.ckpt files (a debug=fdr run's, a train run stopped before its first best): the newest is
    # named as a path to give, said to be a last.ckpt and a debug run's, and not used.
    lasts = [
        log_dir / "train" / "2026-01-02_00-00-00" / "checkpoints" / "last.ckpt",
        log_dir / "debug" / "2026-01-03_00-00-00" / "checkpoints" / "last.ckpt",
    ]
    for written, last in zip((1e9, 2e9), lasts, strict=True):
        last.parent.mkdir(parents=True)
        last.write_bytes(b"")
        os.utime(last, (written, written))
    status, err = _run_cli(cfg, capsys)
    first = err.splitlines()[0]
    assert status == 2 and "Traceback" not in err, err
    assert f"no run under {log_dir} has a checkpoints/best.ckpt" in first, first
    assert (
        "the newest checkpoint there is a last.ckpt of a debug run (a few batches of training, to check "
        f"the wiring): ckpt_path={lasts[1]} if it is the model you mean" in first
    ), first
    assert not (tmp_path / "out").exists()
    lasts[1].unlink()
    status, err = _run_cli(cfg, capsys)
    first = err.splitlines()[0]
    assert (
        "debug" not in first
        and f"a last.ckpt, the weights where its run stopped: ckpt_path={lasts[0]} " in first
    ), first
    runs = {
        "old": log_dir / "train" / "2026-01-01_00-00-00" / "checkpoints",
        "new": log_dir / "train" / "multirun-2026-02-01_00-00-00" / "3" / "checkpoints",  # a sweep's trial
        "debug": log_dir / "debug" / "2026-01-15_00-00-00" / "checkpoints",
    }
    for written, folder in zip((1e9, 3e9, 2e9), runs.values(), strict=True):  # the trial's is the newest
        folder.mkdir(parents=True)
        (folder / "best.ckpt").write_bytes(b"")
        os.utime(folder / "best.ckpt", (written, written))
    (log_dir / "train" / "2026-03-01_00-00-00" / "checkpoints").mkdir(parents=True)  # nothing kept yet
    status, err = _run_cli(cfg, capsys)
    first = err.splitlines()[0]
    assert status == 2 and "Traceback" not in err, err
    assert "ckpt_path=last means something only to train.py" in first, first
    assert f"ckpt_path={runs['new'] / 'best.ckpt'} " in first, first
    assert not (tmp_path / "out").exists()
    # From Python (no log folder known), the general form, still as a missing file.
    from marsunits.inference import PredictOptions, predict_folder

    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last means something only to train\.py.*<run>"):
        predict_folder(PredictOptions(ckpt_path="last", input_dir=str(inp), output_dir=str(tmp_path / "o")))


def test_a_text_file_given_as_the_checkpoint_is_told_as_text_by_its_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's config.yaml given as ckpt_path said "not a checkpoint torch's safe loader can read (IndexError:
    pop from empty list)". It is told as a text file (YAML), not a checkpoint, with the checkpoint to give:
    the run's own where the file is in a run folder. Told by the content, not the name: a YAML file named
    .ckpt is text too; a checkpoint named .yaml is no text file."""
    inp = tmp_path / "in"
    _tree(inp, 1)
    run_dir = tmp_path / "logs" / "train" / "2026-01-01_00-00-00"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")  # not read: only named
    (run_dir / ".hydra").mkdir()
    yaml_text = "task_name: train\nseed: 12345\ndata:\n  num_workers: 4\n"
    for given in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        given.write_text(yaml_text)
        status, err = _run_cli(make_cfg(tmp_path, given, inp, tmp_path / "out"), capsys)
        first = err.splitlines()[0]
        assert status == 2 and "Traceback" not in err, err
        assert (
            f"{given} is a text file (YAML), not a checkpoint: give the run's checkpoints/best.ckpt (or "
            f"last.ckpt): here, ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"
        ) in first, first
        assert "IndexError" not in err, err
    named = tmp_path / "model.ckpt"  # YAML under a checkpoint's name: told by its content
    named.write_text(yaml_text)
    status, err = _run_cli(make_cfg(tmp_path, named, inp, tmp_path / "out"), capsys)
    assert status == 2 and f"{named} is a text file (YAML), not a checkpoint" in err, err
    notes = tmp_path / "notes.txt"
    notes.write_text("the model is in the checkpoints folder\n")
    status, err = _run_cli(make_cfg(tmp_path, notes, inp, tmp_path / "out"), capsys)
    assert status == 2 and f"{notes} is a text file, not a checkpoint" in err, err
    binary = tmp_path / "weights.yaml"  # bytes, whatever the name: not said to be text
    binary.write_bytes(b"\x80\x02}q\x00garbage")
    status, err = _run_cli(make_cfg(tmp_path, binary, inp, tmp_path / "out"), capsys)
    assert status == 2 and "text file" not in err and "is not a checkpoint" in err, err


def test_an_output_disk_too_full_for_the_claim_names_the_folder_and_leaves_no_claim(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output_dir on a disk with no byte free: writing the claim (pid, host, time) failed, and the one
    line said "cannot write a file", naming neither the file nor the folder, and left an empty claim."""
    from marsunits import run_folder_claim

    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 1)

    def full(*args, **kwargs):  # as os.pwrite raises it: no file name
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_folder_claim.os, "pwrite", full)
    status, err = _run_cli(make_cfg(tmp_path, ckpt, inp, out), capsys)
    assert status == 2
    first = err.splitlines()[0]
    assert f"cannot write {out / '.predict.claim'}: the disk is full" in first
    assert "free space" in first and "output_dir=" in first and "Traceback" not in err
    assert not out.exists()  # neither an empty claim file nor the folder made for the run is left


def test_reports_the_full_disk_also_refuses_are_one_line_not_a_traceback(
    tmp_path: Path,
    ckpt: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The disk that stopped the run took no manifest either: the console showed two chained tracebacks
    (40 lines) between the progress and the stop's line. Now one warning line naming the folder; the re-run
    writes the reports, with a row for the image finished before the stop."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _tree(inp, 2)
    real_write, real_manifest = runner_module.write_prediction, run_reports.write_manifest
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(*args, **kwargs)

    def full(path, rows):  # as atomic_write's open() raises it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) + ".tmp")

    monkeypatch.setattr(runner_module, "write_prediction", failing)
    monkeypatch.setattr(run_reports, "write_manifest", full)
    with caplog.at_level(logging.WARNING, logger="marsunits.inference.runner"):
        status, err = _run_cli(make_cfg(tmp_path, ckpt, inp, out), capsys)
    assert status == 2 and str(out) in err.splitlines()[0] and "Traceback" not in err
    said = [r for r in caplog.records if "could not write the reports" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is None and "Traceback" not in caplog.text
    assert str(out) in said[0].getMessage() and "the disk is full" in said[0].getMessage()
    assert not (out / "manifest.csv").exists()

    monkeypatch.setattr(runner_module, "write_prediction", real_write)  # disk freed
    monkeypatch.setattr(run_reports, "write_manifest", real_manifest)
    assert run(make_cfg(tmp_path, ckpt, inp, out)) == 0
    rows = read_manifest(out)
    assert [rows[f"img{i}.png"]["status"] for i in range(2)] == ["skipped", "ok"]


@pytest.mark.parametrize(
    ("option", "value"), [("trust_checkpoint", "no"), ("overwrite", "no"), ("tta", "no"), ("threads", "2")]
)
def test_predict_options_built_in_python_refuse_a_word_for_a_switch_or_a_number(
    option: str, value: str
) -> None:
    """``predict_folder(PredictOptions(...))`` skipped the config's kind checks: ``trust_checkpoint="no"``,
    true to ``bool()``, unpickled an untrusted checkpoint's code, ``overwrite="no"`` replaced outputs and
    ``tta="no"`` averaged mirrored maps, without a word."""
    from marsunits.inference import PredictOptions

    with pytest.raises(ConfigError, match=rf"{option}='{value}': give "):
        PredictOptions(ckpt_path="m.ckpt", input_dir="in", output_dir="out", **{option: value})
    opts = PredictOptions(
        ckpt_path="m.ckpt", input_dir="in", output_dir="out", trust_checkpoint=False, tta=True
    )
    assert opts.tta is True and opts.trust_checkpoint is False


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("tta", "yes", r"tta='yes': give tta=True or tta=False \(yes/no/on/off are read as text\)"),
        ("max_megapixels", 0, r"max_megapixels=0: give a limit > 0, or max_megapixels=None for none"),
        ("max_file_mb", "abc", r"max_file_mb='abc': give a number or None, e\.g\. max_file_mb=500\.0"),
        ("tile", -1, r"tile must be None \(the checkpoint's tile size\) or a whole number"),
        ("nodata_max", 2, r"nodata_max must be None or a number in \[0, 1\)"),
        ("num_workers", -1, r"num_workers must be >= 0 \(or None: 0 on a CPU"),
        ("threads", 0, r"threads must be a positive integer or None \(= all cores\)"),
    ],
)
def test_predict_options_built_in_python_are_refused_in_python_s_words(
    tmp_path: Path, option: str, value: object, message: str
) -> None:
    """``predict_folder(PredictOptions(tta="yes"))`` was told "give tta=true", and ``tile=-1`` "must be
    null": predict.py's config words, where Python has ``True`` and ``None`` (``true`` and ``null`` are no
    names); as ``UnitMapper`` says them. predict.py keeps its own words
    (:func:`test_switches_given_as_words_and_numbers_given_as_text_are_refused`)."""
    from marsunits.inference import PredictOptions, predict_folder

    inp = tmp_path / "in"
    _tree(inp, 1)
    with pytest.raises(ConfigError, match=message) as refused:  # built, or refused before the model loads
        opts = PredictOptions(
            ckpt_path=str(tmp_path / "none.ckpt"),
            input_dir=str(inp),
            output_dir=str(tmp_path / "out"),
            **{option: value},
        )
        predict_folder(opts)
    said = str(refused.value)
    assert "null" not in said and "=true" not in said and "=false" not in said, said
    assert not (tmp_path / "out").exists()


def test_predict_options_built_in_python_take_numpy_numbers_as_the_numbers_they_hold() -> None:
    """The kind checks of ``PredictOptions(...)`` refused numbers computed with numpy
    (``batch_size=np.int64(4)``: "give a whole number", ``tta=np.True_``: "give tta=true or tta=false"), which
    ``UnitMapper`` takes as the numbers they hold; kept as numpy scalars they could not be written to the
    settings' JSON either."""
    import json

    import numpy as np

    from marsunits.inference import PredictOptions

    given = {
        "batch_size": np.int64(2),
        "tta": np.True_,
        "overlap": np.float32(0.25),
        "threads": np.int32(1),
        "tile": np.int64(256),
        "min_unit_area_px": np.uint16(10),
        "nodata_max": np.float32(0.5),
        "max_range_m": np.float64(40.0),
        "max_megapixels": np.float32(8.0),
    }
    opts = PredictOptions(ckpt_path="m.ckpt", input_dir="in", output_dir="out", **given)
    opts.check_values()
    for name, value in given.items():
        held = getattr(opts, name)
        assert type(held) in (bool, int, float), (name, type(held))
        assert held == value.item(), name
    json.dumps({name: getattr(opts, name) for name in given})
    with pytest.raises(ConfigError, match=r"tta=1.0: give "):  # a number is still no switch
        PredictOptions(ckpt_path="m.ckpt", input_dir="in", output_dir="out", tta=np.float64(1.0))
