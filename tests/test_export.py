"""Model packages (safetensors + JSON): export, exact reload, provenance, refusal of unsafe pickles, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

import marsunits
from marsunits.checkpoint_loading import load_task
from marsunits.data.datamodule import collate_samples
from marsunits.export import export_checkpoint, main, parse_args
from marsunits.model_package import JSON_NAME, WEIGHTS_NAME, is_package, load_model, load_package
from marsunits.task import CheckpointError

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


try:
    from .conftest import REPO_ROOT, compose_config, one_step_trainer
except ImportError:  # tests/ is not a package: pytest puts it on sys.path (rootdir conftest)
    from conftest import REPO_ROOT, compose_config, one_step_trainer  # type: ignore[no-redef]


class _Scenes(Dataset):
    """Two random 32x32 samples in the project's sample format (enough for one optimiser step)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {
            "image": torch.rand(3, 32, 32, generator=g),
            "mask": torch.randint(0, 3, (32, 32), generator=g),
        }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Lightning checkpoint of the tiny model (configs/model/tiny.yaml) after one optimiser step.

    A native class map with integer ids and a W&B run id exercise the JSON round trip (JSON keys are str).
    """
    run_dir = tmp_path_factory.mktemp("train")
    cfg = compose_config("train", run_dir, ["model=tiny", "model.scheduler=none"])
    task = instantiate(cfg.model, class_map={"3": 0, "7": 1, "9": 2}, dataset="ai4mars")
    task.wandb_run_id = "run-abc123"
    trainer = one_step_trainer(limit_val_batches=0, default_root_dir=run_dir)
    trainer.fit(task, DataLoader(_Scenes(), batch_size=2, collate_fn=collate_samples))
    path = run_dir / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def package(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_checkpoint(checkpoint, tmp_path_factory.mktemp("pkg") / "model")


def _copy_package(package: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in (JSON_NAME, WEIGHTS_NAME):
        (dest / name).write_bytes((package / name).read_bytes())
    return dest


def _rewrite_weights(pkg: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the weights and update the checksum: a consistent-looking but wrong package."""
    save_file(tensors, pkg / WEIGHTS_NAME)
    doc = json.loads((pkg / JSON_NAME).read_text())
    doc["weights_sha256"] = hashlib.sha256((pkg / WEIGHTS_NAME).read_bytes()).hexdigest()
    (pkg / JSON_NAME).write_text(json.dumps(doc))


class _TouchOnUnpickle:
    """Harmless stand-in for a malicious object: unpickling it creates ``marker`` (proof that code ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (pathlib.Path.touch, (self.marker,))


def test_package_reproduces_the_checkpoint_exactly(checkpoint: Path, package: Path) -> None:
    assert sorted(p.name for p in package.iterdir()) == [JSON_NAME, WEIGHTS_NAME]
    assert is_package(package) and is_package(package / JSON_NAME)
    from_ckpt, from_pkg = load_task(checkpoint), load_model(package)
    assert not from_pkg.training
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(from_ckpt(x), from_pkg(x))
    assert from_pkg.metadata == from_ckpt.metadata
    assert dict(from_pkg.hparams) == {**dict(from_ckpt.hparams), "encoder_weights": None}


def test_json_holds_metadata_hparams_and_provenance(checkpoint: Path, package: Path) -> None:
    doc = json.loads((package / JSON_NAME).read_text())
    task = load_task(checkpoint)
    assert doc["metadata"] == json.loads(json.dumps(task.metadata))  # every key, JSON-typed
    for key in (
        "class_names",
        "palette",
        "mean",
        "std",
        "in_channels",
        "tile_size",
        "arch",
        "encoder",
        "num_classes",
        "class_map",
        "dataset",
        "wandb_run_id",
        "format_version",
    ):
        assert key in doc["metadata"], key
    assert doc["hparams"]["encoder_weights"] is None
    assert set(task.hparams) == set(doc["hparams"])
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    prov = doc["provenance"]
    assert prov["epoch"] == raw["epoch"] and prov["global_step"] == raw["global_step"] == 1
    assert prov["source_checkpoint"] == checkpoint.name
    assert prov["source_checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert prov["dataset"] == "ai4mars" and prov["wandb_run_id"] == "run-abc123"
    assert doc["metadata"]["class_map"] == {"3": 0, "7": 1, "9": 2}
    assert prov["marsunits_version"] == marsunits.__version__
    assert datetime.fromisoformat(prov["created"]).tzinfo is not None
    assert doc["weights_sha256"] == hashlib.sha256((package / WEIGHTS_NAME).read_bytes()).hexdigest()
    # The weights file holds tensors only, one per state-dict entry.
    assert set(load_file(package / WEIGHTS_NAME)) == set(task.state_dict())


def test_a_checkpoint_in_a_folder_named_in_latin1_bytes_exports(checkpoint: Path, tmp_path: Path) -> None:
    """A run folder named in Latin-1 bytes (an old archive's name): the export's memory-mapped read of the
    checkpoint stopped in UnicodeEncodeError (torch maps only UTF-8 paths). It exports, with its progress."""
    import shutil

    from safetensors.torch import load as load_safetensors

    source = tmp_path / os.fsdecode(b"r\xe9") / "best.ckpt"
    source.parent.mkdir()
    shutil.copy(checkpoint, source)
    out = export_checkpoint(source, tmp_path / os.fsdecode(b"m\xe9"))
    prov = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))["provenance"]
    assert prov["global_step"] == 1 and prov["source_checkpoint"] == "best.ckpt"
    weights = load_safetensors((out / WEIGHTS_NAME).read_bytes())  # (its Rust reader takes UTF-8 paths only)
    assert set(weights) == set(load_task(checkpoint).state_dict())


def test_the_export_names_a_latin1_package_folder_on_a_strict_console(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m marsunits.export ... out=<folder named in Latin-1 bytes>`` wrote the package, then its
    closing line raised UnicodeEncodeError on a strict UTF-8 console (a terminal in en_US.UTF-8): a
    traceback and status 1. The line names the folder with the byte as ``\\xNN``; status 0."""
    import io

    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", console)
    out = tmp_path / os.fsdecode(b"m\xe9")
    assert main([f"ckpt_path={checkpoint}", f"out={out}"]) == 0
    console.flush()
    shown = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert f"wrote model package {tmp_path}/m\\xe9/" in shown, shown
    assert (out / JSON_NAME).is_file()


def test_the_package_metadata_is_the_checkpoints_whole_block(checkpoint: Path, tmp_path: Path) -> None:
    """model.json's metadata is 'the checkpoint's metadata' (README): the W&B run's name and group,
    which a checkpoint of a W&B run carries beside its id, were written as null."""
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw["marsunits"].update({"wandb_run_name": "marsscapes-2026-12-05", "wandb_run_group": "cv5"})
    named = tmp_path / "named.ckpt"
    torch.save(raw, named)
    pkg = export_checkpoint(named, tmp_path / "pkg")
    expected = json.loads(json.dumps(raw["marsunits"]))
    assert json.loads((pkg / JSON_NAME).read_text())["metadata"] == expected
    for model in (named, pkg):
        assert json.loads(json.dumps(load_model(model).metadata)) == expected


def _weights_sha256(package: Path) -> str:
    return str(json.loads((package / JSON_NAME).read_text())["weights_sha256"])


def test_the_same_checkpoint_exports_to_the_same_weights_file(checkpoint: Path, tmp_path: Path) -> None:
    """Two metadata keys were written in hash order, so exports of one checkpoint in two processes gave
    different weights files and weights_sha256 values: a hash could not tell that two packages hold one
    model. safetensors' hash order (Rust's, keyed afresh for each map) changes from one export to the next
    even in one process: eight exports here (two keys gave the same file eight times in 1 of 128). An
    export in a process of another Python hash seed is the slow test below (a new Python: 6-8 s of torch
    and Lightning imports, most of this test's time)."""
    digests = set()
    for i in range(8):
        digests.add(_weights_sha256(export_checkpoint(checkpoint, tmp_path / f"p{i}")))
    assert len(digests) == 1


@pytest.mark.slow
def test_an_export_in_a_process_of_another_hash_seed_writes_the_same_weights_file(
    checkpoint: Path, tmp_path: Path
) -> None:
    """The export of the test above, by ``python -m marsunits.export`` in a process of another Python hash
    seed: the same weights file as this process's export."""
    here = _weights_sha256(export_checkpoint(checkpoint, tmp_path / "this_process"))
    out = tmp_path / "other_process"
    subprocess.run(
        [sys.executable, "-m", "marsunits.export", f"ckpt_path={checkpoint}", f"out={out}"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"},
        timeout=120,
    )
    assert _weights_sha256(out) == here


def test_malicious_checkpoint_is_refused_unless_trusted(checkpoint: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["callbacks"]["evil"] = _TouchOnUnpickle(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(payload, evil)
    assert not marker.exists()

    with pytest.raises(CheckpointError, match="execute arbitrary code") as info:
        load_model(evil)
    assert not marker.exists(), "refusing must not run the pickle"
    assert "marsunits.export" in str(info.value) and str(evil) in str(info.value)
    with pytest.raises(CheckpointError):
        export_checkpoint(evil, tmp_path / "pkg")
    assert not marker.exists() and not (tmp_path / "pkg" / JSON_NAME).exists()

    task = load_model(evil, trust_checkpoint=True)
    assert marker.exists(), "trusting the file runs its pickle: this is why the default refuses"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(task(x), load_task(checkpoint)(x))

    # Trusted once, exported to a package that then loads with no pickle at all.
    marker.unlink()
    pkg = export_checkpoint(evil, tmp_path / "safe", trust_checkpoint=True)
    marker.unlink()
    with torch.no_grad():
        assert torch.equal(load_model(pkg)(x), task(x))
    assert not marker.exists()


def test_a_trusted_checkpoint_needing_code_not_installed_here_is_one_line(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague's checkpoint pickling a class of their own code: trusting it, as the refusal advises,
    gave ModuleNotFoundError's traceback (predict.py exit 1); it is a CheckpointError naming the file and
    the module, so predict.py and the export print one line and exit 2."""
    module = tmp_path / "their_code"
    module.mkdir()
    (module / "their_callbacks.py").write_text("class Tracker:\n    pass\n")
    monkeypatch.syspath_prepend(str(module))
    import their_callbacks  # type: ignore[import-not-found]

    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["callbacks"]["theirs"] = their_callbacks.Tracker()
    theirs = tmp_path / "theirs.ckpt"
    torch.save(payload, theirs)
    monkeypatch.delitem(sys.modules, "their_callbacks")
    sys.path.remove(str(module))  # the receiving machine: the sender's module is not installed

    for load in (
        lambda: load_model(theirs, trust_checkpoint=True),
        lambda: export_checkpoint(theirs, tmp_path / "pkg", trust_checkpoint=True),
    ):
        with pytest.raises(CheckpointError, match="their_callbacks") as info:
            load()
        assert str(theirs) in str(info.value) and "PYTHONPATH" in str(info.value)
    assert main([f"ckpt_path={theirs}", f"out={tmp_path / 'pkg'}", "trust_checkpoint=true"]) == 2


def test_a_checkpoint_in_torchs_legacy_format_exports_as_predict_reads_it(
    checkpoint: Path, tmp_path: Path
) -> None:
    """A checkpoint re-saved in torch's pre-zip format (slimmed for sending, by an older script): load_model
    and predict.py read it, the export stopped with torch's mmap RuntimeError traceback."""
    legacy = tmp_path / "legacy.ckpt"
    torch.save(torch.load(checkpoint, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    pkg = export_checkpoint(legacy, tmp_path / "pkg")
    provenance = json.loads((pkg / JSON_NAME).read_text())["provenance"]
    assert provenance["global_step"] == torch.load(checkpoint, weights_only=True)["global_step"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_model(pkg)(x), load_task(checkpoint)(x))


def test_a_checkpoint_with_a_hyper_parameter_of_a_newer_version_says_so(
    checkpoint: Path, tmp_path: Path
) -> None:
    """A .ckpt from a newer marsunits holds a hyper-parameter this one does not know: it was refused as 'the
    saved weights do not fit the architecture', though no weight had been compared."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["new_option"] = 1
    newer = tmp_path / "newer.ckpt"
    torch.save(ckpt, newer)
    with pytest.raises(CheckpointError, match=r"hyper-parameters do not build .*'new_option'") as info:
        load_model(newer)
    assert str(newer) in str(info.value) and "weights do not fit" not in str(info.value)
    assert "marsunits version that wrote it" in str(info.value)


def test_garbage_checkpoint_is_not_offered_trust(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.ckpt") as info:
        load_model(garbage)
    assert "trust_checkpoint" not in str(info.value)


def test_corrupt_packages_fail_naming_the_file(package: Path, tmp_path: Path) -> None:
    good = load_file(package / WEIGHTS_NAME)
    name = sorted(k for k in good if k.endswith("weight"))[0]

    missing = _copy_package(package, tmp_path / "missing_tensor")
    _rewrite_weights(missing, {k: v for k, v in good.items() if k != name})
    with pytest.raises(CheckpointError, match=r"missing tensors") as info:
        load_model(missing)
    assert str(missing / WEIGHTS_NAME) in str(info.value) and name in str(info.value)

    shape = _copy_package(package, tmp_path / "wrong_shape")
    _rewrite_weights(shape, {**good, name: torch.zeros(*good[name].shape, 2)})
    with pytest.raises(CheckpointError, match=r"wrong shapes") as info:
        load_model(shape)
    assert str(shape / WEIGHTS_NAME) in str(info.value) and name in str(info.value)

    swapped = _copy_package(package, tmp_path / "swapped")
    save_file({k: v + 1 for k, v in good.items()}, swapped / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match="SHA-256") as info:
        load_model(swapped)
    assert str(swapped / WEIGHTS_NAME) in str(info.value)

    no_key = _copy_package(package, tmp_path / "no_key")
    doc = json.loads((no_key / JSON_NAME).read_text())
    del doc["metadata"]["palette"]
    (no_key / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="palette") as info:
        load_model(no_key)
    assert str(no_key / JSON_NAME) in str(info.value)

    no_weights = _copy_package(package, tmp_path / "no_weights")
    (no_weights / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        load_package(no_weights)

    other_classes = _copy_package(package, tmp_path / "other_classes")
    doc = json.loads((other_classes / JSON_NAME).read_text())
    doc["metadata"]["class_names"] = ["soil", "bedrock", "sand"]
    (other_classes / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="another class set"):
        load_model(other_classes)


def test_an_edit_of_one_copy_of_a_duplicated_key_is_refused_and_of_both_is_used(
    package: Path, tmp_path: Path
) -> None:
    """model.json holds the palette (and normalisation, tile size...) twice: the model is built from
    'hparams', so a palette changed in 'metadata' alone was silently ignored."""
    palette = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    one = _copy_package(package, tmp_path / "one")
    doc = json.loads((one / JSON_NAME).read_text())
    doc["metadata"]["palette"] = palette
    (one / JSON_NAME).write_text(json.dumps(doc))
    edited = r"inconsistent: hparams palette=.*metadata says .*edit both"
    with pytest.raises(CheckpointError, match=edited) as info:
        load_model(one)
    assert str(one / JSON_NAME) in str(info.value)
    doc["hparams"]["palette"] = palette
    (one / JSON_NAME).write_text(json.dumps(doc))
    assert load_model(one).metadata["palette"] == palette


@pytest.mark.parametrize(
    ("key", "value"),
    [("mean", [0.1, 0.2, 0.3]), ("std", [0.5, 0.4, 0.3]), ("palette", [[1, 2, 3], [4, 5, 6], [7, 8, 9]])],
)
def test_a_key_missing_from_hparams_is_built_from_its_metadata_copy(
    package: Path, tmp_path: Path, key: str, value: object
) -> None:
    """A duplicated key absent from 'hparams' (removed by hand, or an older package) built the model with the
    constructor's default, ImageNet's mean/std, while 'metadata' described another normalisation: a silently
    wrong model. The model is built from the copy the package holds."""
    pkg = _copy_package(package, tmp_path / "pkg")
    doc = json.loads((pkg / JSON_NAME).read_text())
    doc["metadata"][key] = value
    del doc["hparams"][key]
    (pkg / JSON_NAME).write_text(json.dumps(doc))
    task = load_model(pkg)
    assert task.metadata[key] == value
    if key in ("mean", "std"):
        assert getattr(task, key).flatten().tolist() == pytest.approx(value)


@pytest.mark.parametrize(
    ("block", "key", "value"),
    [
        ("metadata", "class_map", {"3": 1, "7": 0, "9": 2}),
        ("hparams", "class_names", ["soil", "bedrock", "sand"]),
        ("metadata", "dataset", "marsscapes"),
    ],
)
def test_an_edit_of_one_copy_of_the_class_list_map_or_dataset_is_refused(
    package: Path, tmp_path: Path, block: str, key: str, value: object
) -> None:
    """class_names, class_map and dataset are in model.json twice too: the class-set check read 'metadata'
    while the model was built from 'hparams', so another class list in 'hparams' alone was accepted, and a
    class map edited in 'metadata' alone was ignored by labels_class_map=checkpoint, silently."""
    one = _copy_package(package, tmp_path / "one")
    doc = json.loads((one / JSON_NAME).read_text())
    doc[block][key] = value
    (one / JSON_NAME).write_text(json.dumps(doc))
    edited = rf"inconsistent: hparams {key}=.*metadata says .*edit both"
    with pytest.raises(CheckpointError, match=edited) as info:
        load_model(one)
    assert str(one / JSON_NAME) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("tile_size", None, "tile_size must be a positive whole number of pixels, got None"),
        ("tile_size", 0, "tile_size must be a positive whole number of pixels, got 0"),
        ("tile_size", 64.5, "tile_size must be a positive whole number of pixels, got 64.5"),
        ("palette", [[300, 0, 0], [0, 255, 0], [0, 0, 255]], "from 0 to 255"),
        ("palette", [[255, 0], [0, 255, 0], [0, 0, 255]], "3 values"),
        ("mean", [float("nan"), 0.456, 0.406], "mean and std need 3 values each (finite"),
        ("std", [float("inf"), 0.224, 0.225], "mean and std need 3 values each (finite"),
    ],
)
def test_a_value_edited_out_of_range_in_both_copies_is_refused_naming_it(
    package: Path, tmp_path: Path, key: str, value: object, said: str
) -> None:
    """A tile_size edited to null in both copies loaded, then UnitMapper.load and predict.py tile=null stopped
    in a TypeError traceback; a palette colour of 300 loaded and was drawn wrapped round as 44; a mean of NaN
    (Python's JSON reader takes NaN and Infinity) loaded and mapped every pixel as smooth_volcanic."""
    pkg = _copy_package(package, tmp_path / "pkg")
    doc = json.loads((pkg / JSON_NAME).read_text())
    for block in ("metadata", "hparams"):
        doc[block][key] = value
    (pkg / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=re.escape(said)) as info:
        load_model(pkg)
    assert str(pkg / JSON_NAME) in str(info.value) and "undo the edit" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("class_names", None), ("mean", None), ("std", None), ("dataset", []), ("wandb_run_id", {})],
)
def test_a_key_edited_to_another_type_in_both_copies_is_refused_naming_it(
    package: Path, tmp_path: Path, key: str, value: object
) -> None:
    """class_names null stopped in a TypeError traceback; mean or std null loaded and normalised with
    ImageNet's values whatever the model was trained with (a silent default); a data set name or W&B run id
    of another form loaded, to fail where it is read (labels_class_map=checkpoint, fine-tuning)."""
    pkg = _copy_package(package, tmp_path / "pkg")
    doc = json.loads((pkg / JSON_NAME).read_text())
    for block in ("metadata", "hparams"):
        if key in doc[block]:
            doc[block][key] = value
    (pkg / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=rf"metadata {key}=.* is not ") as info:
        load_model(pkg)
    assert str(pkg / JSON_NAME) in str(info.value) and "undo the edit" in str(info.value)


@pytest.mark.parametrize("dataset", [2024, None])
def test_the_export_of_a_model_of_a_number_or_null_data_set_name_loads(
    tmp_path: Path, dataset: object
) -> None:
    """train.py takes data.name=2024 (Hydra reads it as a number) or data.name=null, and the checkpoint
    loads; its export was refused by the package's own check ('metadata dataset=2024 is not a data set name
    (text)'), though every reader of the name takes it as str() and null as none."""
    from conftest import tiny_task
    from marsunits.model_package import write_package
    from marsunits.task import SegmentationTask

    task = SegmentationTask(**{**tiny_task(64).hparams, "dataset": dataset})
    pkg = write_package(task, tmp_path / "pkg")
    assert json.loads((pkg / JSON_NAME).read_text())["metadata"]["dataset"] == dataset
    assert load_model(pkg).metadata["dataset"] == dataset


def test_a_class_map_edited_in_both_copies_is_the_models_map(package: Path, tmp_path: Path) -> None:
    """The documented way to change a duplicated key (edit both) works for the class map, whose ids JSON
    writes as strings and in any order."""
    both = _copy_package(package, tmp_path / "both")
    doc = json.loads((both / JSON_NAME).read_text())
    doc["metadata"]["class_map"] = {"9": 2, "3": 1, "7": 0}
    doc["hparams"]["class_map"] = {"3": 1, "7": 0, "9": 2}
    (both / JSON_NAME).write_text(json.dumps(doc))
    assert load_model(both).metadata["class_map"] == {3: 1, 7: 0, 9: 2}


def test_a_model_json_saved_by_a_windows_editor_loads(package: Path, tmp_path: Path) -> None:
    """model.json opened and saved in a Windows editor starts with a byte-order mark: it was 'not valid
    JSON; re-export the package', which the receiver of a package, without the checkpoint, cannot do."""
    edited = _copy_package(package, tmp_path / "edited")
    (edited / JSON_NAME).write_bytes(b"\xef\xbb\xbf" + (package / JSON_NAME).read_bytes())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_model(edited)(x), load_model(package)(x))


def test_export_refuses_to_overwrite_unless_asked(checkpoint: Path, package: Path, tmp_path: Path) -> None:
    out = _copy_package(package, tmp_path / "existing")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_checkpoint(checkpoint, out)
    export_checkpoint(checkpoint, out, overwrite=True)
    assert not list(out.glob("*.tmp-*"))
    # A folder of other files (images) was written into: refused, overwrite or not; an empty one is fine.
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"x")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"is a folder with other files \(a\.png\).*of its own"):
            export_checkpoint(checkpoint, images, overwrite=overwrite)
    assert sorted(p.name for p in images.iterdir()) == ["a.png"]
    (tmp_path / "empty").mkdir()
    export_checkpoint(checkpoint, tmp_path / "empty")
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        assert torch.equal(load_model(out)(x), load_model(package)(x))


def test_an_out_under_a_file_is_refused_naming_the_file(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """out=notes.txt/model: mkdir's bare "[Errno 20] Not a directory" named neither the file in the way nor
    what to give instead."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    assert main([f"ckpt_path={checkpoint}", f"out={blocker / 'deeper' / 'model'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker}, which is a file" in err
    assert "give an out under a folder" in err
    assert blocker.read_text() == "not a folder"


def test_export_again_after_a_killed_export_writes_the_package(checkpoint: Path, tmp_path: Path) -> None:
    """An export killed while writing (SIGTERM from a job's time limit) leaves model.safetensors.tmp-<pid>:
    the same command run again was refused ("a folder with other files"), even with overwrite=true. A
    temporary file of an export still running is left alone and still refused."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    out = tmp_path / "model"
    out.mkdir()
    (out / f"{WEIGHTS_NAME}.tmp-{dead_pid}").write_bytes(b"\0" * 100)
    assert export_checkpoint(checkpoint, out) == out
    assert sorted(p.name for p in out.iterdir()) == sorted([JSON_NAME, WEIGHTS_NAME])
    load_model(out)

    busy = tmp_path / "busy"
    busy.mkdir()
    running = busy / f"{JSON_NAME}.tmp-{os.getppid()}"  # the test runner's parent: alive
    running.write_text("{")
    with pytest.raises(FileExistsError, match="temporary file of an export writing there now"):
        export_checkpoint(checkpoint, busy)
    assert running.exists()


def _killed_export(task: Any, out: Path, machine: str) -> int:
    """The exit status of an export of ``task`` to ``out`` killed (SIGKILL, a node lost) after its temporary
    files are written, in a forked process of ``machine`` (``this``, or ``other`` of the cluster): its
    process id is then dead, as a killed export's is. Forked, not a new Python: no seconds of imports."""
    import socket

    from marsunits.model_package import write_package

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            if machine == "other":
                socket.gethostname = lambda: "another-node.cluster"  # an export of another machine
            os.replace = lambda *args: os._exit(9)  # type: ignore[assignment]  # killed before its renames
            write_package(task, out)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_export_keeps_the_temporary_file_of_an_export_on_another_machine(
    checkpoint: Path, tmp_path: Path
) -> None:
    """Exports into a shared folder from two machines: the other machine's process id means nothing here (no
    such process, or another one), so its temporary file, of an export that may still be writing, was
    deleted as a killed export's leftover, and that export then failed on its rename. Kept and refused now,
    naming it; a killed export of this machine still leaves nothing in the way."""
    task = load_task(checkpoint)
    for machine in ("other", "this"):
        out = tmp_path / machine
        assert _killed_export(task, out, machine) == 9
        left = sorted(p.name for p in out.iterdir())  # both files, written before either is renamed
        assert len(left) == 2 and [n.split(".tmp-")[0] for n in left] == sorted([JSON_NAME, WEIGHTS_NAME])
        if machine == "other":
            for overwrite in (False, True):
                with pytest.raises(FileExistsError, match="another machine") as info:
                    export_checkpoint(checkpoint, out, overwrite=overwrite)
                assert all(name in str(info.value) for name in left)
            assert sorted(p.name for p in out.iterdir()) == left
        else:
            export_checkpoint(checkpoint, out)
            assert sorted(p.name for p in out.iterdir()) == sorted([JSON_NAME, WEIGHTS_NAME])


def test_a_broken_model_json_says_how_its_receiver_repairs_it(package: Path, tmp_path: Path) -> None:
    """A model.json broken by a hand edit (a comma deleted) said only "re-export the package", which the
    receiver of a package, who has no checkpoint, cannot do."""
    broken = _copy_package(package, tmp_path / "broken")
    text = (broken / JSON_NAME).read_text()
    (broken / JSON_NAME).write_text(text.replace(",", "", 1))
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_model(broken)
    assert str(broken / JSON_NAME) in str(info.value) and "copy the package folder again" in str(info.value)
    doc = json.loads(text)
    del doc["weights_sha256"]
    (broken / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(
        CheckpointError, match="lacks the key 'weights_sha256'.*copy the package folder again"
    ):
        load_model(broken)


def test_cli_writes_a_package(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_pkg"
    assert main([f"ckpt_path={checkpoint}", f"out={out}"]) == 0
    assert str(out) in capsys.readouterr().out
    assert (out / WEIGHTS_NAME).is_file() and (out / JSON_NAME).is_file()
    load_model(out)
    # Exporting again into the same folder is refused (exit 2, one line) unless overwrite=true.
    assert main([f"ckpt_path={checkpoint}", f"out={out}"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main([f"ckpt_path={checkpoint}", f"out={out}", "overwrite=true"]) == 0


def test_cli_expands_the_home_folder_as_predict_does(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zsh (macOS) and sh pass `out=~/models/m` on unexpanded: the package went to a folder named `~` in
    the current folder, and `ckpt_path=~/...` was 'no such file', where predict.py takes both."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    (home / "best.ckpt").write_bytes(checkpoint.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert main(["ckpt_path=~/best.ckpt", "out=~/models/m"]) == 0
    assert is_package(home / "models" / "m") and list(cwd.iterdir()) == []


def test_cli_missing_checkpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    """Through ``python -m`` as a user runs it: one line on stderr, exit status 2, nothing written."""
    env = {k: v for k, v in os.environ.items() if k != "MARSUNITS_TRACEBACK"}
    missing = tmp_path / "nope.ckpt"
    bad = subprocess.run(
        [sys.executable, "-m", "marsunits.export", f"ckpt_path={missing}", f"out={tmp_path / 'x'}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "no such file" in lines[0], bad.stderr
    assert not (tmp_path / "x").exists()


def test_cli_argument_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert parse_args(["ckpt_path=a.ckpt", "out=b", "trust_checkpoint=TRUE"]) == {
        "ckpt_path": "a.ckpt",
        "out": "b",
        "trust_checkpoint": True,
        "overwrite": False,
    }
    for argv in (
        ["out=b"],
        ["ckpt_path=a", "out=b", "colour=red"],
        ["a.ckpt", "b"],
        ["ckpt_path=a", "out=b", "overwrite=maybe"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m marsunits.export: error:"), err


def test_a_folder_predicted_with_a_package_goes_on_with_its_checkpoint(
    checkpoint: Path, package: Path, tmp_path: Path
) -> None:
    """The package holds the checkpoint's weights (it records the checkpoint's SHA-256): re-running the folder
    with the .ckpt used to be refused as "another model"; another model's checkpoint still is."""
    from marsunits.errors import ConfigError
    from marsunits.inference import run

    try:
        from .test_predict import make_cfg, read_manifest, save_rgb
    except ImportError:
        from test_predict import make_cfg, read_manifest, save_rgb  # type: ignore[no-redef]

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 32, 40)
    assert run(make_cfg(tmp_path, package, inp, out)) == 0
    assert run(make_cfg(tmp_path, checkpoint, inp, out)) == 0
    assert read_manifest(out)["a.png"]["status"] == "skipped"
    assert run(make_cfg(tmp_path, package, inp, out)) == 0  # and back
    other = tmp_path / "other.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    first = next(k for k, v in saved["state_dict"].items() if v.is_floating_point())
    saved["state_dict"][first] = saved["state_dict"][first] + 1.0
    torch.save(saved, other)
    with pytest.raises(ConfigError, match="the model"):
        run(make_cfg(tmp_path, other, inp, out))


def test_a_package_given_by_any_of_its_files_is_its_checkpoints_model(
    checkpoint: Path, package: Path, tmp_path: Path
) -> None:
    """A package may be given as its folder, model.json or model.safetensors: given as model.safetensors,
    a folder begun with its checkpoint was refused as predicted by "another model" (and the reverse),
    though the folder and model.json were accepted."""
    from marsunits.inference import run

    try:
        from .test_predict import make_cfg, read_manifest, save_rgb
    except ImportError:
        from test_predict import make_cfg, read_manifest, save_rgb  # type: ignore[no-redef]

    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 32, 40)
    for name in (JSON_NAME, WEIGHTS_NAME):
        for first, then in ((checkpoint, package / name), (package / name, checkpoint)):
            out = tmp_path / f"out-{name}-{first.name}"
            assert run(make_cfg(tmp_path, first, inp, out)) == 0
            assert run(make_cfg(tmp_path, then, inp, out)) == 0
            assert read_manifest(out)["a.png"]["status"] == "skipped"


def test_help_into_a_closed_pipe_is_quiet() -> None:
    """``python -m marsunits.export --help | head -1`` ended with a BrokenPipeError traceback when the reader
    left before the last line was written."""
    child = subprocess.Popen(
        [sys.executable, "-m", "marsunits.export", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader leaves at once; the child is still importing
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0 and "Traceback" not in err, err


def test_a_package_folder_missing_one_of_its_files_is_said_so(package: Path, tmp_path: Path) -> None:
    """A folder with one of the two package files is a package (to load, and not to overwrite unasked):
    loading it names the missing file, not "a folder without model.json or model.safetensors"."""
    cases = ((JSON_NAME, WEIGHTS_NAME, "incomplete"), (WEIGHTS_NAME, JSON_NAME, "does not exist"))
    for kept, missing, said in cases:
        folder = tmp_path / f"only_{kept}"
        folder.mkdir()
        (folder / kept).write_bytes((package / kept).read_bytes())
        assert is_package(folder)
        with pytest.raises(FileNotFoundError, match=said) as info:
            load_model(folder)
        assert missing in str(info.value) and "folder without" not in str(info.value)


@pytest.mark.parametrize("inside", ["", "my_model/"])
def test_a_zipped_package_says_to_unzip_it(package: Path, tmp_path: Path, inside: str) -> None:
    """A package is shared as a zip of its folder: given as it came, it was 'not a checkpoint torch's safe
    loader can read ([enforce fail at inline_container.cc:180] ...)', which does not say what to do."""
    import zipfile

    archive = tmp_path / "my model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in (JSON_NAME, WEIGHTS_NAME):
            zf.write(package / name, inside + name)
    with pytest.raises(CheckpointError, match="zip archive of a model package") as info:
        load_model(archive)
    message = str(info.value)
    assert str(archive) in message and "unzip" in message and "inline_container" not in message
    assert f"'{tmp_path / 'my model'}/{inside}'" in message
    # The export: that advice (ckpt_path=<folder>) was then refused there as a package folder.
    from marsunits.errors import ConfigError

    with pytest.raises(ConfigError, match=r"is a model package already \(zipped\): there is nothing"):
        export_checkpoint(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_load_model_expands_the_home_folder_and_names_both_forms_for_a_missing_path(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_model, the loader the README points Python users to, took '~/models/m' literally (UnitMapper.load
    and the export expand it), and a mistyped package folder was 'Checkpoint ... does not exist. Give the path
    of a .ckpt written by train.py', as if packages were not accepted."""
    monkeypatch.setenv("HOME", str(tmp_path))
    _copy_package(package, tmp_path / "shared model")
    assert load_model("~/shared model").metadata == load_model(package).metadata
    with pytest.raises(FileNotFoundError, match="model package folder") as info:
        load_model("~/shared modle")
    assert str(tmp_path / "shared modle") in str(info.value)


def test_a_package_whose_weights_file_was_renamed_says_to_rename_it_back(
    package: Path, tmp_path: Path
) -> None:
    """Weights renamed to a descriptive name ('unet_marsscapes.safetensors'), the usual fate of a file passed
    around: the folder was 'incomplete. Copy the whole folder', and the file itself 'not a Lightning
    checkpoint (expected a dict with 'state_dict' ...)'."""
    pkg = _copy_package(package, tmp_path / "received")
    renamed = pkg / "unet_marsscapes.safetensors"
    (pkg / WEIGHTS_NAME).rename(renamed)
    for given in (pkg, renamed):
        with pytest.raises((FileNotFoundError, CheckpointError), match="rename it back") as info:
            load_model(given)
        message = str(info.value)
        assert str(renamed) in message and str(pkg / WEIGHTS_NAME) in message, message
    alone = tmp_path / "weights only.safetensors"
    renamed.rename(alone)
    with pytest.raises(CheckpointError, match=f"{JSON_NAME}") as info:
        load_model(alone)
    assert "Lightning checkpoint" not in str(info.value) and str(alone) in str(info.value)


def test_a_package_whose_model_json_was_renamed_says_to_rename_it_back(package: Path, tmp_path: Path) -> None:
    """model.json renamed on its way was 'model.json does not exist ... Export one with python -m
    marsunits.export', which its receiver, without the checkpoint, cannot do."""
    pkg = _copy_package(package, tmp_path / "received")
    renamed = pkg / "unet_marsscapes.json"
    (pkg / JSON_NAME).rename(renamed)
    (pkg / "notes.json").write_text('{"author": "me"}')
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        load_model(pkg)
    assert str(renamed) in str(info.value) and "notes.json" not in str(info.value)


def test_of_several_safetensors_files_the_one_model_json_describes_is_named(
    package: Path, tmp_path: Path
) -> None:
    """A folder holding another weights file besides the renamed one (sorted first): 'rename it back' named
    the first file by name, the wrong weights (refused by their checksum only after the rename), whichever
    file the user gave; the file whose SHA-256 is model.json's weights_sha256 is named, and a folder with
    none such says the weights are not there rather than 'rename it back'."""
    pkg = _copy_package(package, tmp_path / "received")
    renamed = pkg / "unet_marsscapes.safetensors"
    (pkg / WEIGHTS_NAME).rename(renamed)
    decoy = pkg / "a_older_model.safetensors"
    save_file({"w": torch.zeros(2)}, decoy)
    for given in (pkg, renamed, decoy):
        with pytest.raises(FileNotFoundError, match="rename it back") as info:
            load_model(given)
        message = str(info.value)
        assert str(renamed) in message and str(decoy) not in message, message
    renamed.unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_model(pkg)
    message = str(info.value)
    assert "rename it back" not in message and str(decoy) in message and "weights_sha256" in message, message


def test_of_several_json_files_the_description_of_these_weights_is_named(
    package: Path, tmp_path: Path
) -> None:
    """A renamed model.json beside another package's description (sorted first) and a file that merely
    mentions the package format: the one whose weights_sha256 is model.safetensors' is named."""
    pkg = _copy_package(package, tmp_path / "received")
    document = json.loads((pkg / JSON_NAME).read_text())
    renamed = pkg / "unet_marsscapes.json"
    (pkg / JSON_NAME).rename(renamed)
    other = pkg / "a_other_model.json"
    other.write_text(json.dumps({**document, "weights_sha256": "0" * 64}))
    (pkg / "0_notes.json").write_text(json.dumps({"note": "a marsunits-model-package, see unet_marsscapes"}))
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        load_model(pkg)
    message = str(info.value)
    assert str(renamed) in message and str(other) not in message and "notes" not in message, message


def test_a_missing_model_json_or_weights_given_by_name_gets_the_packages_advice(
    package: Path, tmp_path: Path
) -> None:
    """ckpt_path=<pkg>/model.json (or model.safetensors), renamed on its way, was only 'does not exist':
    the folder's own check says which file to rename back, as for ckpt_path=<pkg>."""
    pkg = _copy_package(package, tmp_path / "received")
    (pkg / JSON_NAME).rename(pkg / "unet.json")
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        load_model(pkg / JSON_NAME)
    assert str(pkg / "unet.json") in str(info.value)
    (pkg / "unet.json").rename(pkg / JSON_NAME)
    (pkg / WEIGHTS_NAME).rename(pkg / "unet.safetensors")
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        load_model(pkg / WEIGHTS_NAME)
    assert str(pkg / "unet.safetensors") in str(info.value)


def test_a_package_file_name_in_no_package_is_said_missing_by_its_path_given(
    package: Path, tmp_path: Path
) -> None:
    """A missing ``/nope/model.json`` was taken for a package's file by its name alone: load_package said
    '/model.json does not exist' (the folder's folder), and the export 'is a folder or a model package
    file'. Each now names the path given, in its own words for a missing model; a package's file renamed
    on its way is still the package's to name."""
    from marsunits.errors import ConfigError

    (tmp_path / "empty").mkdir()
    for given in (
        tmp_path / "nope" / JSON_NAME,
        tmp_path / "nope" / WEIGHTS_NAME,
        tmp_path / "empty" / JSON_NAME,
        tmp_path / "nope",
    ):
        with pytest.raises(FileNotFoundError) as info:
            load_package(given)
        said = str(info.value)
        json_path = (given.parent if given.suffix else given) / JSON_NAME  # read first, named by the package
        assert said.startswith(f"{json_path} does not exist"), said
        with pytest.raises(FileNotFoundError, match="does not exist; give a .ckpt") as info:
            load_model(given)
        assert str(info.value).startswith(f"model {given} does not exist"), info.value
        if given.suffix:
            with pytest.raises(FileNotFoundError) as info:
                export_checkpoint(given, tmp_path / "out")
            assert str(info.value).startswith(f"ckpt_path={given}: no such file. Give a .ckpt"), info.value
    pkg = _copy_package(package, tmp_path / "received")
    (pkg / JSON_NAME).rename(pkg / "unet.json")
    with pytest.raises(FileNotFoundError, match="rename it back"):
        load_package(pkg / JSON_NAME)
    with pytest.raises(ConfigError, match="is a model package already"):  # the package's: not "no such file"
        export_checkpoint(pkg / JSON_NAME, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_train_py_s_check_before_the_run_leaves_a_renamed_package_file_to_the_package(
    package: Path, tmp_path: Path
) -> None:
    """train.py's check of a missing checkpoint (before Hydra makes the run folder) takes a package's file
    renamed on its way for the package, whose own check says to rename it back; a package's file name in no
    package (``/nope/model.json``) is missing, as any other path."""
    from marsunits.user_paths import missing_checkpoint

    pkg = _copy_package(package, tmp_path / "received")
    (pkg / JSON_NAME).rename(pkg / "unet.json")
    assert missing_checkpoint(pkg / JSON_NAME, "ckpt_path") is None
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "nope" / JSON_NAME, tmp_path / "empty" / WEIGHTS_NAME):
        said = missing_checkpoint(path, "init_ckpt_path") or ""
        assert said.startswith(f"init_ckpt_path={path}: no such file or model package. Give"), said


def test_a_package_folder_with_both_files_renamed_says_to_rename_them_back(
    package: Path, tmp_path: Path
) -> None:
    """Both files given the model's name on their way (marsscapes.json, marsscapes.safetensors): the folder
    was 'a folder without model.json or model.safetensors', the description in it never looked at."""
    pkg = _copy_package(package, tmp_path / "received")
    (pkg / JSON_NAME).rename(pkg / "marsscapes.json")
    (pkg / WEIGHTS_NAME).rename(pkg / "marsscapes.safetensors")
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        load_model(pkg)
    assert str(pkg / "marsscapes.json") in str(info.value)
    (pkg / "marsscapes.json").rename(pkg / JSON_NAME)  # as told: then the weights are named
    with pytest.raises(FileNotFoundError, match="rename it back") as info:
        load_model(pkg)
    assert str(pkg / "marsscapes.safetensors") in str(info.value)


def test_a_package_with_a_tensor_the_network_lacks_is_refused(package: Path, tmp_path: Path) -> None:
    """An extra tensor in model.safetensors (mixed from another model) is a CheckpointError naming the file
    and the tensor, as a missing one is, not torch's load_state_dict error."""
    good = load_file(package / WEIGHTS_NAME)
    extra = _copy_package(package, tmp_path / "extra_tensor")
    _rewrite_weights(extra, {**good, "head.extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['head.extra.weight'\]") as info:
        load_model(extra)
    assert str(extra / WEIGHTS_NAME) in str(info.value)


def test_each_loader_reads_back_the_whole_metadata_a_checkpoint_keeps(
    checkpoint: Path, tmp_path: Path
) -> None:
    """What a checkpoint's metadata keeps of its run beside the weights (its W&B run, the sols and image
    files trained on, the training record and the training images' record) is read back whole, the same,
    by each of the three ways a task is made from a file: Lightning's resume or test
    (``on_load_checkpoint``), :func:`load_task` and a package's :func:`load_model`. A key restored by one
    of them and not another (each restored them key by key) would fail here."""
    from marsunits.task import METADATA_KEY, SegmentationTask
    from marsunits.training_images import images_record

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    kept = raw[METADATA_KEY]
    kept.update(
        wandb_run_id="abc123",
        wandb_run_name="run-7",
        wandb_run_group="sweep",
        trained_sols={"marsscapes": [3, 600]},
        trained_image_keys=["marsscapes/sol600/a"],
        training={**kept["training"], "optimizer_steps": 41, "steps_before": 9, "best_val_miou": 0.5},
        training_images=images_record(2, 5, parent=images_record(1, None)),
    )
    edited = tmp_path / "edited.ckpt"
    torch.save(raw, edited)

    resumed = SegmentationTask(**{**raw["hyper_parameters"], "encoder_weights": None})
    resumed.on_load_checkpoint(torch.load(edited, map_location="cpu", weights_only=True))
    loaded = load_task(edited)
    packaged = load_model(export_checkpoint(edited, tmp_path / "model"))
    for task in (resumed, loaded, packaged):
        assert task.metadata == kept, type(task)
        assert task.steps_before == 9 and task.images_before == images_record(1, None)


def test_a_package_restores_the_training_record_its_metadata_holds(package: Path, tmp_path: Path) -> None:
    """The sols and image keys a model was trained on and its W&B run are read back from model.json onto
    the task (predict.py names scored images the model trained on from them)."""
    edited = _copy_package(package, tmp_path / "trained")
    doc = json.loads((edited / JSON_NAME).read_text())
    record = {
        "trained_sols": {"marsscapes": [3, 600]},
        "trained_image_keys": ["marsscapes/sol600/a"],
        "wandb_run_id": "abc123",
        "wandb_run_name": "run-7",
        "wandb_run_group": "sweep",
    }
    doc["metadata"].update(record)
    (edited / JSON_NAME).write_text(json.dumps(doc))
    task = load_model(edited)
    assert {key: getattr(task, key) for key in record} == record


@pytest.mark.parametrize(
    ("key", "value"),
    [("trained_sols", [3, 600]), ("trained_sols", {"marsscapes": "3-600"}), ("trained_image_keys", "abc")],
)
def test_a_training_record_hand_edited_out_of_shape_is_refused_naming_the_key(
    package: Path, tmp_path: Path, key: str, value: object
) -> None:
    """A list of sols where a map of data set to sols belongs loaded, and predict.py with labels_dir crashed
    with a traceback after predicting every image (no manifest, summary or metrics); refused at load."""
    edited = _copy_package(package, tmp_path / "edited")
    doc = json.loads((edited / JSON_NAME).read_text())
    doc["metadata"][key] = value
    (edited / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=rf"metadata {key}=.* put back the value") as info:
        load_model(edited)
    assert str(edited / JSON_NAME) in str(info.value)
    doc["metadata"][key] = None  # unknown: accepted
    (edited / JSON_NAME).write_text(json.dumps(doc))
    assert getattr(load_model(edited), key) is None


def test_the_provenance_records_the_checkpoints_own_epoch_and_step(checkpoint: Path, tmp_path: Path) -> None:
    """provenance.epoch and provenance.global_step are the checkpoint's, each under its own name."""
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
    stored.update(epoch=3, global_step=70)
    torch.save(stored, tmp_path / "later.ckpt")
    export_checkpoint(tmp_path / "later.ckpt", tmp_path / "pkg")
    provenance = json.loads((tmp_path / "pkg" / JSON_NAME).read_text())["provenance"]
    assert (provenance["epoch"], provenance["global_step"]) == (3, 70)


def test_a_package_of_another_metadata_format_is_refused(package: Path, tmp_path: Path) -> None:
    other = _copy_package(package, tmp_path / "other_format")
    doc = json.loads((other / JSON_NAME).read_text())
    doc["metadata"]["format_version"] += 1
    (other / JSON_NAME).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="format_version") as info:
        load_model(other)
    assert str(other / JSON_NAME) in str(info.value)


def test_an_empty_or_repeated_argument_and_a_package_file_as_checkpoint_are_refused(
    package: Path, tmp_path: Path
) -> None:
    """``out=`` (empty) is missing, not the current folder; a key given twice is an error, not the last one
    silently; a package's ``model.safetensors`` given as ckpt_path is said before anything is loaded."""
    from marsunits.errors import ConfigError

    with pytest.raises(ConfigError, match="missing out"):
        parse_args(["ckpt_path=a.ckpt", "out="])
    with pytest.raises(ConfigError, match="given twice"):
        parse_args(["ckpt_path=a.ckpt", "out=b", "out=c"])
    with pytest.raises(ConfigError, match="is a model package already"):
        export_checkpoint(package / WEIGHTS_NAME, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_a_package_file_given_to_the_export_is_said_to_be_a_package_already(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m marsunits.export ckpt_path=<package>/model.json`` said 'is a folder or a model package
    file; give the .ckpt', as if the export had not been done. A file of a package is said to be a model
    package already, as its folder is, with what to do with it: predict.py takes it as ckpt_path."""
    out = tmp_path / "again"
    for given in (package, package / JSON_NAME, package / WEIGHTS_NAME):
        assert main([f"ckpt_path={given}", f"out={out}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        said = err[0]
        assert said.startswith(f"python -m marsunits.export: error: ckpt_path={given} is "), said
        assert "a model package already" in said and ": there is nothing to export" in said, said
        assert f"predict.py ckpt_path={given} reads it" in said, said
        assert "give the .ckpt it came from" in said and "is a folder or" not in said, said
        if given != package:
            assert f"a model package already (a file of the package {package}):" in said, said
    assert not out.exists()


def test_a_package_describing_a_huge_network_is_refused_by_its_shapes_before_it_is_built(
    package: Path, tmp_path: Path
) -> None:
    """``model.json`` edited (or damaged, or sent so) to a decoder of 65,536 channels in both copies: the
    network was built before its weights' shapes were compared, and building it asked for 150 GB, a
    RuntimeError traceback from torch's allocator (a size that fits in memory took it all, for seconds,
    before the refusal). The shapes are now compared on a network without memory first."""
    from marsunits.task import CheckpointError

    pkg = _copy_package(package, tmp_path / "huge")
    document = json.loads((pkg / JSON_NAME).read_text())
    for copy in ("hparams", "metadata"):
        document[copy]["decoder_channels"] = [65536] * len(document[copy]["decoder_channels"])
    (pkg / JSON_NAME).write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"does not fit the network described by .*wrong shapes"):
        load_package(pkg)


def test_an_out_named_as_a_zip_archive_is_refused_with_the_folder_to_give(
    checkpoint: Path, tmp_path: Path
) -> None:
    """``out=models/m.zip``, meaning an archive to send: a folder named ``m.zip`` was made, which no zip tool
    opens and a mail client does not attach as a file. A package is a folder: the refusal gives the folder
    and the zip command, and nothing is written."""
    from marsunits.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        export_checkpoint(checkpoint, tmp_path / "m.zip")
    said = str(refused.value)
    assert f"out={tmp_path / 'm'}" in said and "zip -r" in said, said
    assert not (tmp_path / "m.zip").exists() and not (tmp_path / "m").exists()


def test_a_package_of_a_model_trained_with_class_weights_loads(tmp_path: Path) -> None:
    """A model trained with ``model.class_weights`` exports and loads back: laying the network out on the
    meta device (shapes before memory) also built its loss there, whose check of the weights reads their
    values, and every such package was refused with torch's "Tensor.item() cannot be called on meta
    tensors" traceback."""
    cfg = compose_config("train", tmp_path, ["model=tiny", "model.scheduler=none"])
    task = instantiate(cfg.model, class_weights=[1.0, 2.0, 0.5])
    trainer = one_step_trainer(limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(task, DataLoader(_Scenes(), batch_size=2, collate_fn=collate_samples))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = load_package(export_checkpoint(tmp_path / "last.ckpt", tmp_path / "model"))
    assert loaded.criterion.class_weights.tolist() == [1.0, 2.0, 0.5]
    for name, tensor in task.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_run_folder_or_a_package_folder_as_checkpoint_is_told_what_to_give(
    checkpoint: Path, package: Path, tmp_path: Path
) -> None:
    """``ckpt_path=logs/train/<run>`` (the run folder, as predict.py accepts it with its checkpoint named) and
    ``ckpt_path=<a package folder>`` were both told "is a folder or a model package file; give the .ckpt
    file": the first not which file, the second not that the package is exported already."""
    import shutil

    from marsunits.errors import ConfigError

    run = tmp_path / "logs" / "train" / "run1"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(checkpoint, run / "checkpoints" / "best.ckpt")
    with pytest.raises(ConfigError) as folder:
        export_checkpoint(run, tmp_path / "out1")
    # Said once, the folder for what it is: "give the .ckpt file to export. Give the checkpoint file it holds"
    # said "give" twice, and "a folder or a model package file" of a run folder.
    assert str(folder.value).startswith(
        f"ckpt_path={run} is a train.py run folder, not a checkpoint: give the checkpoint it holds, "
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'} (the best weights"
    ), str(folder.value)
    assert str(folder.value).replace(str(tmp_path), "").lower().count("give") == 1, str(folder.value)
    with pytest.raises(ConfigError) as exported:
        export_checkpoint(package, tmp_path / "out2")
    said = str(exported.value)
    assert "is a model package already" in said and "nothing to export" in said
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_ckpt_path_last_names_the_newest_runs_best_checkpoint_to_export(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m marsunits.export ckpt_path=last out=...`` (train.py's word, carried over, as predict.py's
    users do) was told "ckpt_path=last: no such file", where predict.py names the newest run's best.ckpt.
    From the folder train.py ran in (``logs/``), or ``$MARSUNITS_ROOT``'s, as train.py finds its runs."""
    import shutil

    run = tmp_path / "logs" / "train" / "run1" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copyfile(checkpoint, run / "best.ckpt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, root in ((tmp_path, None), (elsewhere, str(tmp_path))):
        monkeypatch.chdir(cwd)
        if root is None:
            monkeypatch.delenv("MARSUNITS_ROOT", raising=False)
        else:
            monkeypatch.setenv("MARSUNITS_ROOT", root)
        assert main(["ckpt_path=last", "out=pkg"]) == 2
        said = capsys.readouterr().err
        assert "ckpt_path=last means something only to train.py" in said, said
        assert f"ckpt_path={run / 'best.ckpt'}" in said, said
        assert "predict.py needs" not in said and "python -m marsunits.export needs the model itself" in said
        assert "package" not in said  # the export refuses one: exported already
        assert not (cwd / "pkg").exists()


@pytest.mark.parametrize(
    ("stop", "status", "said"), [("ctrl-c", 130, "interrupted (Ctrl-C)"), ("term", 143, "(SIGTERM)")]
)
def test_a_stopped_export_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
    status: int,
    said: str,
) -> None:
    """Ctrl-C printed a traceback, and SIGTERM ended the command without a word."""
    from marsunits import export
    from marsunits.errors import TerminatedError

    def stopped(**kwargs: object) -> None:
        raise TerminatedError if stop == "term" else KeyboardInterrupt

    monkeypatch.setattr(export, "export_checkpoint", stopped)
    assert main([f"ckpt_path={tmp_path / 'a.ckpt'}", f"out={tmp_path / 'pkg'}"]) == status
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and said in err and "run the same command again" in err


@pytest.mark.parametrize("stop", ["ctrl-c", "full"])
def test_an_export_stopped_between_its_two_files_goes_on_with_the_same_command(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """Stopped after model.safetensors was in place and before model.json (Ctrl-C, or a disk that filled at
    the second file), the stop's line said "run the same command again", which refused the folder as
    "already holds a model package; pass overwrite=true". Both files are now written before either is put in
    place: a stop leaves no package file, and the same command writes the package."""
    import errno

    from marsunits import model_package

    real_open = open

    def refusing_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and Path(file).name.startswith(f"{JSON_NAME}.tmp-"):
            if stop == "full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
            raise KeyboardInterrupt
        return real_open(file, mode, *args, **kwargs)

    out = tmp_path / "pkg"
    argv = [f"ckpt_path={checkpoint}", f"out={out}"]
    with monkeypatch.context() as patch:
        patch.setattr(model_package, "open", refusing_open, raising=False)
        assert main(argv) == (130 if stop == "ctrl-c" else 2)
    assert not out.exists() or not list(out.iterdir())
    assert main(argv) == 0 and is_package(out)
    load_package(out)


@pytest.mark.parametrize("left", [WEIGHTS_NAME, JSON_NAME])
def test_a_half_package_is_named_incomplete_and_overwrite_writes_it(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], left: str
) -> None:
    """A folder left with one package file that this export would not write (other weights, a description
    alone: an export of before 2026-12-06 stopped between its two files, or a partial copy): the same command
    said the folder "already holds a model package", which load_model refuses as incomplete. It is named as
    the incomplete package it is, and overwrite=true writes the package."""
    out = tmp_path / "pkg"
    export_checkpoint(checkpoint, out)
    (out / ({WEIGHTS_NAME, JSON_NAME} - {left}).pop()).unlink()
    if left == WEIGHTS_NAME:  # another model's weights: not this export's first half
        (out / WEIGHTS_NAME).write_bytes((out / WEIGHTS_NAME).read_bytes() + b" ")
    argv = [f"ckpt_path={checkpoint}", f"out={out}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    missing = ({WEIGHTS_NAME, JSON_NAME} - {left}).pop()
    assert f"holds {left} without {missing}" in err and "overwrite=true" in err, err
    assert "already holds a model package" not in err
    assert [p.name for p in out.iterdir()] == [left]  # nothing is removed unasked
    assert main([*argv, "overwrite=true"]) == 0
    load_package(out)


@pytest.mark.parametrize("killed", [False, True], ids=["stopped", "killed"])
def test_an_export_stopped_between_its_two_renames_is_completed_by_the_same_command(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed: bool
) -> None:
    """Stopped after model.safetensors was renamed into place and before model.json was, the stop's line
    said "run the same command again", which refused the folder as "incomplete ... pass overwrite=true".
    The weights there are byte for byte the ones the export writes, so the same command completes the
    package (killed there, the description's temporary file is left too: the re-run removes it)."""
    from marsunits import model_package

    real_replace = os.replace

    def stopping_replace(src: Any, dst: Any) -> None:
        if Path(dst).name == JSON_NAME:
            if killed:  # SIGKILL: no clean-up ran, the temporary file stays, its process is gone
                Path(src).rename(Path(src).with_name(f"{JSON_NAME}.tmp-999999999"))
            raise KeyboardInterrupt
        real_replace(src, dst)

    out = tmp_path / "pkg"
    argv = [f"ckpt_path={checkpoint}", f"out={out}"]
    with monkeypatch.context() as patch:
        patch.setattr(model_package.os, "replace", stopping_replace)
        assert main(argv) == 130
    assert (out / WEIGHTS_NAME).is_file() and not (out / JSON_NAME).exists()
    if not killed:  # another machine's export may be writing there: not completed under it
        other = out / f"{JSON_NAME}.tmp-1@00000000"
        other.write_bytes(b"{}")
        assert main(argv) == 2 and other.exists()
        other.unlink()
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS_NAME, JSON_NAME])
    load_package(out)


def test_a_full_disk_export_names_the_package_folder_and_the_export_s_own_fix(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write refused by a full disk names no file: the line said "cannot write a file: the disk is full;
    free space, or write to another disk (train.py: paths.log_dir=<folder>; predict.py: output_dir=...)",
    options the export does not have."""
    import errno

    from marsunits import model_package

    def full_open(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() says it: no file named

    monkeypatch.setattr(model_package, "open", full_open, raising=False)
    out = tmp_path / "pkg"
    assert main([f"ckpt_path={checkpoint}", f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}: the disk is full" in err and "out=<folder>" in err, err
    assert "paths.log_dir" not in err and "output_dir" not in err


@pytest.mark.parametrize("given", ["run", "run/checkpoints"])
def test_a_train_run_folder_given_as_the_model_names_its_best_checkpoint(tmp_path: Path, given: str) -> None:
    """``ckpt_path=logs/train/<run>`` (or its ``checkpoints/``): the refusal said only "a folder without
    model.json or model.safetensors: give a model package folder or a .ckpt file", not which file of the
    folder is the model to give; then it said both, "give ... Give", where one sentence says what the folder
    is and which file to give."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"a checkpoint")
    with pytest.raises(FileNotFoundError) as refused:
        load_model(tmp_path / given)
    message = str(refused.value)
    kind = "a train.py run folder" if given == "run" else "a train.py run's checkpoints/ folder"
    assert message.startswith(
        f"{tmp_path / given} is {kind}, not a checkpoint: give the checkpoint it holds, "
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'} (the best weights"
    ), message
    assert message.replace(str(tmp_path), "").lower().count("give") == 1, message  # the path: "..._given_0"
    # best.ckpt is chosen by the run's callbacks.model_checkpoint.monitor, val/miou_source_mean with
    # experiment=marsscapes_ai4mars, or val/loss: the hint named val/miou for every run.
    assert "val/miou" not in message and "chosen by the run's callbacks.model_checkpoint.monitor" in message


def test_the_model_name_outputs_record_is_the_package_s_or_the_checkpoint_s(tmp_path: Path) -> None:
    """Contact files' ``model.checkpoint``: a package's folder name whichever of its paths is given, a
    checkpoint's file name; a path with ``..`` or ``.`` in it names what it leads to (``<pkg>/model.json/..``
    was recorded as ``..``)."""
    from marsunits.user_paths import model_file_name

    package = tmp_path / "navcam_model"
    package.mkdir()
    (package / "model.json").write_text("{}", encoding="utf-8")
    (tmp_path / "best.ckpt").write_bytes(b"x")
    given = [package, f"{package}/", package / "model.json", package / "model.safetensors", package / "."]
    assert {model_file_name(p) for p in given} == {"navcam_model"}
    assert model_file_name(package / "model.json" / "..") == "navcam_model"
    assert model_file_name(package / ".." / "best.ckpt") == "best.ckpt"
