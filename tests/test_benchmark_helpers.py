"""Helpers of the diagnostic benchmarks that the README's figures depend on."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:  # as when run as a script: its siblings (_machine) import directly
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def eval_val_errors():
    return _load("eval_val_errors")


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.0, 1.5])
def test_scaled_logits_returns_the_label_grid(eval_val_errors, scale):
    """Logits come back on the input's (H, W) grid at any scale, and a pointwise model on a constant
    image gives the same logits at every scale (resizing a constant changes nothing)."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, kernel_size=1)
    image = torch.full((2, 3, 96, 160), 0.3)
    with torch.no_grad():
        out = eval_val_errors.scaled_logits(model, image, scale)
        plain = model(image)
    assert out.shape == plain.shape
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=0)


def test_scaled_logits_changes_resolution_when_asked(eval_val_errors):
    """At scale 0.5 the network sees half the pixels per side (multiples of 32), not the original grid."""
    seen: list[tuple[int, int]] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape[-2:]))
            return x

    image = torch.rand(1, 3, 128, 192)
    out = eval_val_errors.scaled_logits(Probe(), image, 0.5)
    assert seen == [(64, 96)]
    assert out.shape == image.shape


def test_bench_train_medians_and_ratios_pair_configurations():
    """Interleaved rounds collapse to one median row per (model, configuration), and each further model's
    ratio is taken against the first model's same configuration only."""
    bench_train = _load("bench_train")

    def row(model, cl, ips, cpu):
        config = {"model": model, "channels_last": cl, "precision": "32", "compiled": False}
        return config | {
            "images_per_s": ips,
            "cpu_s_per_image": cpu,
            "peak_memory_gb": 1.0,
            "first_step_s": 1.0,
        }

    rows = [row("a", True, v, 1 / v) for v in (10.0, 30.0, 20.0)] + [row("a", False, 5.0, 0.2)]
    rows += [row("b", True, v, 1 / v) for v in (40.0, 25.0, 30.0)]
    medians = {(r["model"], r["channels_last"]): r for r in bench_train._medians(rows)}
    assert set(medians) == {("a", True), ("a", False), ("b", True)}
    assert medians["a", True]["images_per_s"] == 20.0 and medians["a", True]["rounds"] == 3
    assert medians["b", True]["images_per_s"] == 30.0
    ratios = bench_train._ratios(list(medians.values()), ["a", "b"])
    assert len(ratios) == 1  # b has no channels_last=False row to compare
    assert ratios[0]["images_per_s_ratio"] == pytest.approx(1.5)
    assert ratios[0]["cpu_s_per_image_ratio"] == pytest.approx((1 / 30) / (1 / 20))


class _StopError(Exception):
    """Raised by the fake predict.py run: the tests below only need the command it was given."""


def test_eval_contacts_relative_ckpt_is_the_callers_file(tmp_path, monkeypatch):
    """A relative --ckpt means the file seen from the caller's directory, not from the repository root
    that predict.py runs in: the command carries its absolute path."""
    eval_contacts = _load("eval_contacts")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "best.ckpt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(eval_contacts, "generate_dataset", lambda *a, **k: [])
    seen: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        raise _StopError

    monkeypatch.setattr(eval_contacts, "subprocess", SimpleNamespace(run=fake_run))
    with pytest.raises(_StopError):
        eval_contacts.main(["--ckpt", "runs/best.ckpt", "--n", "1", "--json", str(tmp_path / "out.json")])
    assert f"ckpt_path={tmp_path / 'runs' / 'best.ckpt'}" in seen[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ckpt", "no/such.ckpt"], "no/such.ckpt"),
        (["--ckpt", "best.ckpt", "--size", "160"], "WIDTHxHEIGHT"),
        (["--ckpt", "best.ckpt", "--n", "0"], "--n"),
        (["--ckpt", "best.ckpt", "--set", "min_unit_area_px=abc"], "whole number"),
        (["--ckpt", "best.ckpt", "--set", "tta"], "KEY=VALUE"),
    ],
)
def test_eval_contacts_bad_arguments_stop_before_the_scenes(tmp_path, monkeypatch, capsys, args, needle):
    """A missing checkpoint or a malformed --size/--n/--set is a usage error naming it, before any scene."""
    eval_contacts = _load("eval_contacts")
    (tmp_path / "best.ckpt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)

    def no_scenes(*a, **k):
        raise AssertionError("scenes generated despite a bad argument")

    monkeypatch.setattr(eval_contacts, "generate_dataset", no_scenes)
    with pytest.raises(SystemExit) as exc:
        eval_contacts.main([*args, "--json", str(tmp_path / "out.json")])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_eval_val_errors_default_root_follows_marsunits_data(
    eval_val_errors, tiny_ckpt, tmp_path, monkeypatch
):
    """Without --root the split is read where train.py reads it: under $MARSUNITS_DATA when it is set. A
    folder that is not there is named with this script's way to give it, --root (the dataset's message said
    to add ``data.root=...`` to the command line, which this script refuses as an unknown argument)."""
    monkeypatch.setenv("MARSUNITS_DATA", str(tmp_path / "datasets"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "datasets" / "marsscapes")) as missing:
        eval_val_errors.main(["--ckpt", str(tiny_ckpt), "--json", str(tmp_path / "out.json")])
    assert "--root" in str(missing.value) and "data.root=/" not in str(missing.value), missing.value
    with pytest.raises(FileNotFoundError, match=f"--root {tmp_path / 'nowhere'}") as missing:
        eval_val_errors.main(["--ckpt", str(tiny_ckpt), "--root", str(tmp_path / "nowhere")])
    assert "data.root=/" not in str(missing.value), missing.value


def test_eval_val_errors_default_root_follows_marsunits_root(
    eval_val_errors, tiny_ckpt, tmp_path, monkeypatch, capsys
):
    """Without --root and $MARSUNITS_DATA the split is read under ``$MARSUNITS_ROOT/../shared/data`` when
    that is set, as train.py reads it (``paths.root_dir``), not under ``../shared/data`` from the current
    directory, which --help and benchmarks/README.md said: both name MARSUNITS_ROOT now."""
    monkeypatch.delenv("MARSUNITS_DATA", raising=False)
    monkeypatch.setenv("MARSUNITS_ROOT", str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="data folder (\\S+) does not exist") as missing:
        eval_val_errors.main(["--ckpt", str(tiny_ckpt), "--json", str(tmp_path / "out.json")])
    folder = Path(str(missing.value).split("data folder ")[1].split(" does not exist")[0])
    assert folder.resolve() == (tmp_path / "shared" / "data" / "marsscapes").resolve(), folder
    assert str(tmp_path / "root") in str(folder)
    with pytest.raises(SystemExit):
        eval_val_errors.main(["--help"])
    assert "MARSUNITS_ROOT" in " ".join(capsys.readouterr().out.split())
    readme = (Path(__file__).resolve().parents[1] / "benchmarks" / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `eval_val_errors.py`")]
    assert "$MARSUNITS_ROOT" in row


def test_eval_val_errors_missing_checkpoint_is_a_usage_error(eval_val_errors, tmp_path, capsys):
    """A --ckpt that does not exist (with or without its own overrides) stops the run before any data is
    read, naming the path."""
    missing = tmp_path / "gone.ckpt"
    with pytest.raises(SystemExit) as exc:
        eval_val_errors.main(["--ckpt", f"{missing},data.n_folds=5,data.fold=1", "--root", str(tmp_path)])
    assert exc.value.code == 2
    assert str(missing) in capsys.readouterr().err


def test_bench_train_unknown_model_is_a_usage_error(capsys):
    """An unknown --model names the missing config and the known ones instead of a worker's traceback."""
    bench_train = _load("bench_train")
    with pytest.raises(SystemExit) as exc:
        bench_train.main(["--model", "unet_lite0_d4,unet_lite9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unet_lite9" in err and "unet_lite0_d4" in err


@pytest.mark.parametrize("size", ["320", "320xabc", "0x240"])
def test_bench_synthetic_bad_size_is_a_usage_error(size, capsys):
    bench_synthetic = _load("bench_synthetic")
    with pytest.raises(SystemExit) as exc:
        bench_synthetic.main(["--size", size])
    assert exc.value.code == 2
    assert "--size" in capsys.readouterr().err


def test_eval_contacts_records_the_minimum_mapping_unit_predict_uses(tmp_path, monkeypatch):
    """``--set min_unit_area_px=N`` reaches predict.py after the script's own value and wins there, so the
    JSON's ``min_unit_area_px`` (and the command) must say N, not configs/predict.yaml's default."""
    eval_contacts = _load("eval_contacts")
    (tmp_path / "best.ckpt").write_bytes(b"")
    monkeypatch.setattr(eval_contacts, "generate_dataset", lambda *a, **k: [])
    seen: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        out = Path(next(c for c in cmd if c.startswith("output_dir=")).split("=", 1)[1])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text("{}")

    monkeypatch.setattr(eval_contacts, "subprocess", SimpleNamespace(run=fake_run))
    out = tmp_path / "out.json"
    args = ["--ckpt", str(tmp_path / "best.ckpt"), "--set", "min_unit_area_px=50", "--json", str(out)]
    eval_contacts.main(args)
    assert [c for c in seen[0] if c.startswith("min_unit_area_px=")][-1] == "min_unit_area_px=50"
    assert json.loads(out.read_text())["min_unit_area_px"] == 50


def test_eval_val_errors_prints_ensembles_of_any_checkpoint_paths(
    eval_val_errors, tmp_path, monkeypatch, capsys
):
    """Checkpoints outside a ``<run>/checkpoints/`` folder (``a.ckpt``, ``runs/b.ckpt``) are named as given
    in the ensemble lines instead of ending the run in an IndexError after the JSON is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    ckpts = ["a.ckpt", "runs/b.ckpt", "logs/train/run7/checkpoints/best.ckpt"]
    for c in ckpts:
        (tmp_path / c).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / c).write_bytes(b"")
    summary = {"miou": 0.5, "iou": {}, "confusion_matrix": []}

    def fake_split(names, *args, **kwargs):
        return {
            "overrides": [],
            "seconds": 0.0,
            "models": {
                c: {"alone": summary, "rough_offset_miou": {"+0": 0.5}, "input_scale": {}} for c in names
            },
            "ensembles": [{"members": names, **summary}],
        }

    monkeypatch.setattr(eval_val_errors, "evaluate_split", fake_split)
    args = [a for c in ckpts for a in ("--ckpt", c)]
    assert eval_val_errors.main([*args, "--root", str(tmp_path), "--json", str(tmp_path / "out.json")]) == 0
    assert "mean of 3 (a.ckpt, runs/b.ckpt, run7): mIoU 0.5000" in capsys.readouterr().out


REPO = BENCHMARKS.parent


def _check_reproduce(record: dict, script: str, **arguments) -> None:
    """A result JSON's ``reproduce``: the script, its arguments, the commit that ran and the versions."""
    assert record["script"] == f"benchmarks/{script}"
    for key, value in arguments.items():
        assert record["arguments"][key] == value, key
    if (REPO / ".git").exists():
        assert len(record["commit"]) == 40 and isinstance(record["uncommitted_changes"], bool)
    assert record["torch"] == torch.__version__


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny network of configs/model/tiny.yaml (64 px crops), saved by Lightning."""
    from torch.utils.data import DataLoader

    from conftest import one_step_trainer, tiny_task

    task = tiny_task(64)
    samples = [{"image": torch.rand(3, 64, 64), "mask": torch.randint(0, 3, (64, 64)), "path": "0"}] * 2
    trainer = one_step_trainer()
    trainer.fit(task, DataLoader(samples, batch_size=2))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_eval_contacts_failed_predict_is_one_line(tmp_path, monkeypatch, capsys):
    """predict.py refusing the checkpoint (it prints its own one-line reason) ends eval_contacts.py with
    predict's exit status and one line saying so, not a CalledProcessError traceback; no JSON is written."""
    import subprocess

    eval_contacts = _load("eval_contacts")
    (tmp_path / "bad.ckpt").write_bytes(b"junk")
    monkeypatch.setattr(eval_contacts, "generate_dataset", lambda *a, **k: [])

    def fake_run(cmd, **kwargs):
        raise subprocess.CalledProcessError(2, cmd)

    fake = SimpleNamespace(run=fake_run, CalledProcessError=subprocess.CalledProcessError)
    monkeypatch.setattr(eval_contacts, "subprocess", fake)
    out = tmp_path / "out.json"
    assert eval_contacts.main(["--ckpt", str(tmp_path / "bad.ckpt"), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "predict.py stopped with exit status 2" in err and str(out) in err
    assert not out.exists()


@pytest.mark.parametrize(
    "script", ["eval_contacts", "eval_val_errors", "bench_train", "bench_synthetic", "eval_border_bands"]
)
def test_json_in_a_missing_folder_stops_before_measuring(script, tmp_path, capsys):
    """``--json`` in a folder that is not there is a usage error naming it before any measurement: the
    figures of a whole run were lost in a traceback when the file was written at its end."""
    module = _load(script)
    (tmp_path / "best.ckpt").write_bytes(b"")
    args = {
        "eval_contacts": ["--ckpt", str(tmp_path / "best.ckpt")],
        "eval_border_bands": ["--ckpt", str(tmp_path / "best.ckpt")],
        "eval_val_errors": ["--ckpt", str(tmp_path / "best.ckpt"), "--root", str(tmp_path)],
        "bench_train": ["--model", "tiny"],
        "bench_synthetic": [],
    }[script]
    with pytest.raises(SystemExit) as exc:
        module.main([*args, "--json", str(tmp_path / "no_such_folder" / "out.json")])
    assert exc.value.code == 2
    assert str(tmp_path / "no_such_folder") in capsys.readouterr().err


def test_bench_predict_json_in_a_missing_folder_stops_before_measuring(tmp_path, capsys):
    bench_predict = _load("bench_predict")
    with pytest.raises(SystemExit) as exc:
        bench_predict.main(["--quick", "--json", str(tmp_path / "gone" / "out.json")])
    assert exc.value.code == 2
    assert str(tmp_path / "gone") in capsys.readouterr().err


def test_eval_contacts_json_records_how_to_reproduce_it(tmp_path, monkeypatch):
    """The JSON holds the commit, the torch version and every argument (defaults included), besides the
    machine: what is needed to run the measurement again."""
    eval_contacts = _load("eval_contacts")
    (tmp_path / "best.ckpt").write_bytes(b"")
    monkeypatch.setattr(eval_contacts, "generate_dataset", lambda *a, **k: [])

    def fake_run(cmd, **kwargs):
        out = Path(next(c for c in cmd if c.startswith("output_dir=")).split("=", 1)[1])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text("{}")

    monkeypatch.setattr(eval_contacts, "subprocess", SimpleNamespace(run=fake_run))
    out = tmp_path / "out.json"
    eval_contacts.main(["--ckpt", str(tmp_path / "best.ckpt"), "--n", "3", "--json", str(out)])
    result = json.loads(out.read_text())
    _check_reproduce(result["reproduce"], "eval_contacts.py", n=3, seed=777, set=[])
    assert result["machine"]["cpus"]


@pytest.mark.parametrize(
    "script",
    [
        "eval_contacts",
        "eval_val_errors",
        "bench_train",
        "bench_synthetic",
        "bench_predict",
        "eval_border_bands",
    ],
)
def test_every_benchmark_argument_has_help(script, monkeypatch):
    """``--help`` documents every argument of every benchmark script (the parser caught as main builds it)."""
    import argparse

    module = _load(script)
    caught: list[argparse.ArgumentParser] = []

    def catch(self, *args, **kwargs):
        caught.append(self)
        raise _StopError

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_StopError):
        module.main([])
    options = [a for a in caught[0]._actions if a.option_strings and a.help != argparse.SUPPRESS]
    undocumented = [a.option_strings[0] for a in options if a.option_strings[0] != "-h" and not a.help]
    assert not undocumented, f"{script}.py arguments without help: {undocumented}"
    # benchmarks/README.md's table row of the script shows how to run it with every option.
    rows = (BENCHMARKS / "README.md").read_text(encoding="utf-8").splitlines()
    row = next(line for line in rows if line.startswith(f"| `{script}.py` |"))
    unlisted = [a.option_strings[-1] for a in options if a.option_strings[-1] not in row + " --help"]
    assert not unlisted, f"benchmarks/README.md's row of {script}.py does not list {unlisted}"


def test_eval_val_errors_scores_a_model_package_and_records_its_run(eval_val_errors, tiny_ckpt, tmp_path):
    """Smoke test of the whole path on a small synthetic split: a model package folder is scored as its
    checkpoint is (it was refused as "no such checkpoint"); the JSON holds both, and what reproduces it."""
    from marsunits.model_package import load_model, write_package

    package = write_package(load_model(tiny_ckpt), tmp_path / "pkg")
    out = tmp_path / "out.json"
    args = ["--ckpt", str(tiny_ckpt), "--ckpt", str(package), "--experiment", "synthetic"]
    args += [
        "--set",
        "data.val_length=2",
        "--set",
        "data.val_batch_size=2",
        "--offsets=0",
        "--json",
        str(out),
    ]
    assert eval_val_errors.main(args) == 0
    result = json.loads(out.read_text())
    models = result["splits"][0]["models"]
    assert set(models) == {str(tiny_ckpt), str(package)}
    assert models[str(tiny_ckpt)]["alone"]["miou"] == pytest.approx(models[str(package)]["alone"]["miou"])
    assert len(result["splits"][0]["ensembles"]) == 1
    _check_reproduce(result["reproduce"], "eval_val_errors.py", experiment="synthetic", offsets="0")


@pytest.mark.parametrize("what", ["not_a_model", "data_root"])
def test_eval_val_errors_user_errors_are_one_line(eval_val_errors, tiny_ckpt, tmp_path, capsys, what):
    """A file that is no checkpoint, or a data folder that is not there, ends the command in one line naming
    it and status 2, not a traceback."""
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    ckpt, needle = (junk, str(junk)) if what == "not_a_model" else (tiny_ckpt, str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as exc:
        eval_val_errors.cli(["--ckpt", str(ckpt), "--root", str(tmp_path / "nowhere")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def _at(data, path: str):
    for key in path.split("."):
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


# (committed file, key path, figure as quoted, text that quotes it) in RESULTS.md, the experiment log behind
# the README's Results summary
RESULTS_FIGURES = [
    (
        "eval_contacts.json",
        "boundary_f1_3px",
        "0.62",
        "boundary F1 at 3 px (mask contact; from the contact lines: 0.59 and 0.80) | 0.62 |",
    ),
    ("eval_contacts.json", "line_boundary_f1_3px", "0.59", "from the contact lines: 0.59 and 0.80) | 0.62 |"),
    ("eval_contacts.json", "contact_distance_px", "4.9", "(from the lines: 4.8 px and 2.6 px) | 4.9 px |"),
    (
        "eval_contacts.json",
        "line_contact_distance_px",
        "4.8",
        "(from the lines: 4.8 px and 2.6 px) | 4.9 px |",
    ),
    ("eval_contacts.json", "ground_median_error_m_within_15m", "0.13", "within 15 m | 0.13 m | 0.05 m |"),
    ("eval_contacts.json", "miou", "0.962", "| mIoU on the same scenes | 0.962 | 0.987 |"),
    (
        "eval_contacts.json",
        "extraction_to_truth_mean_px",
        "0.25",
        "to the true contact | 0.25 px | 0.25 px |",
    ),
    ("eval_contacts.json", "extraction_mean_distance_px", "1.21", "rover hardware) | 1.21 px | 1.21 px |"),
    ("eval_contacts.json", "by_range.0.recall", "0.725", "| 0–4 m | 0.725 | 0.756 |"),
    ("eval_contacts.json", "by_range.0.precision", "0.756", "| 0–4 m | 0.725 | 0.756 |"),
    ("eval_contacts.json", "by_range.4.recall", "0.498", "| 18–30 m | 0.498 | 0.621 |"),
    ("eval_contacts.json", "by_range.4.precision", "0.621", "| 18–30 m | 0.498 | 0.621 |"),
    ("eval_contacts_32x_tta.json", "boundary_f1_3px", "0.868", "0.62 | 0.868 | ≥ 0.85 |"),
    ("eval_contacts_32x_tta.json", "contact_distance_px", "1.74", "| 4.9 px | 1.74 px | ≤ 2 px |"),
    ("eval_contacts_32x_tta.json", "miou", "0.987", "| mIoU on the same scenes | 0.962 | 0.987 |"),
    ("eval_contacts_32x.json", "boundary_f1_3px", "0.841", "| 0.841 | **1.85 px** (lines 2.7 px) |"),
    ("eval_contacts_32x.json", "contact_distance_px", "1.85", "| 0.841 | **1.85 px** (lines 2.7 px) |"),
    ("eval_contacts_32x.json", "by_range.0.recall", "0.934", "| 0.900 | 0.917 | 0.934 | 0.929 |"),
    ("eval_contacts_mmu2_seed777.json", "boundary_f1_3px", "0.654", "seed 777 BF1 **0.638 → 0.654**"),
    ("eval_contacts_mmu2_seed777.json", "contact_distance_px", "5.06", "contact distance 5.09 → 5.06 px"),
    ("eval_contacts_mmu2_seed555.json", "boundary_f1_3px", "0.681", "seed 555 BF1 0.659 → 0.681"),
    (
        "eval_border_bands.json",
        "variants.engine.bands.top 0-4.accuracy",
        "0.975",
        "scores **0.975 in the top 0–4",
    ),
    (
        "eval_border_bands.json",
        "variants.engine.bands.interior.accuracy",
        "0.980",
        "px band** against 0.980 inside",
    ),
    (
        "eval_border_bands.json",
        "variants.reflect-16.bands.top 0-4.accuracy",
        "0.890",
        "top band to **0.890**",
    ),
    ("eval_border_bands.json", "variants.engine.boundary_f1_3px", "0.662", "0.662 to 0.657 (4.01 → 4.50 px)"),
    (
        "eval_border_bands.json",
        "variants.reflect-16.boundary_f1_3px",
        "0.657",
        "0.662 to 0.657 (4.01 → 4.50 px)",
    ),
    (
        "eval_border_bands.json",
        "variants.replicate-16.bands.bottom 0-4.accuracy",
        "0.841",
        "drops the bottom band to 0.841",
    ),
]

# the same, in README.md's Results summary and docs/performance.md's table
README_FIGURES = [
    ("eval_contacts.json", "boundary_f1_3px", "0.62", "default model: 0.62 and 4.9 px (same scenes"),
    ("eval_contacts.json", "contact_distance_px", "4.9", "default model: 0.62 and 4.9 px (same scenes"),
    ("eval_contacts.json", "extraction_to_truth_mean_px", "0.25", "| 0.25 px (256 unseen synthetic"),
    ("eval_contacts.json", "ground_median_error_m_within_15m", "0.13", "| 0.13 m (default model, same"),
    ("eval_contacts_mmu2_seed777.json", "boundary_f1_3px", "0.654", "0.654 and 5.06 px with the"),
    ("eval_contacts_mmu2_seed777.json", "contact_distance_px", "5.06", "0.654 and 5.06 px with the"),
    ("eval_contacts_32x_tta.json", "boundary_f1_3px", "0.868", ": **0.868** and **1.74 px**"),
    ("eval_contacts_32x_tta.json", "contact_distance_px", "1.74", ": **0.868** and **1.74 px**"),
    (
        "eval_contacts_32x_tta.json",
        "ground_median_error_m_within_15m",
        "0.05",
        "0.05 m with `synthetic_long`",
    ),
    ("eval_contacts_32x.json", "boundary_f1_3px", "0.841", "here) 0.841 and 1.85 px"),
    ("eval_contacts_32x.json", "contact_distance_px", "1.85", "here) 0.841 and 1.85 px"),
    ("bench_predict.json", "speedup_vs_naive", "3.58", "| **3.58×** (2.41 vs 0.67 MP/s;"),
    ("bench_predict.json", "megapixels_per_s", "2.41", "| **3.58×** (2.41 vs 0.67 MP/s;"),
    ("bench_predict.json", "naive_megapixels_per_s", "0.67", "| **3.58×** (2.41 vs 0.67 MP/s;"),
    ("bench_predict.json", "fraction_of_matmul_limit", "0.61", "| **61 %** for the default engine"),
    ("bench_predict.json", "peak_rss_gb_panorama", "1.90", "| 1.90 GB (0.85 GB of it imports);"),
    ("bench_train.json", "rows.1.images_per_s", "4.60", "| 4.60 img/s channels_last, 3.38 img/s without;"),
    ("bench_train.json", "rows.2.images_per_s", "5.82", "bf16 autocast (AMX) 5.82 img/s: 1.27×"),
    ("bench_train_d4_vs_slim_128.json", "medians.3.images_per_s", "32.8", "| 32.8 against 28.6 img/s"),
    ("bench_train_d4_vs_slim_128.json", "medians.1.images_per_s", "28.6", "| 32.8 against 28.6 img/s"),
    ("bench_train_compile.json", "rows.2.images_per_s", "21.2", "| 21.2 img/s compiled against 25.4 eager"),
    ("bench_train_compile.json", "rows.2.first_step_s", "64.5", "a first step of 64.5 s (compilation)"),
    ("bench_synthetic.json", "machine_scenes_per_s", "43.7", "43.7 /s with 2 DataLoader workers"),
]


@pytest.mark.parametrize(
    ("doc", "name", "key", "quoted", "text"),
    [("README.md", *figure) for figure in README_FIGURES] + [("RESULTS.md", *f) for f in RESULTS_FIGURES],
)
def test_readme_figures_are_those_of_the_committed_benchmark_files(doc, name, key, quoted, text):
    """A figure README.md or RESULTS.md quotes from a committed file in benchmarks/ is that file's value,
    rounded as quoted, and the sentence that quotes it is still in the file that quotes it (a re-run that
    changed the JSON file, or an edit of README.md or RESULTS.md, shows up here)."""
    # README.md's figures: its Results summary, and the pages of docs/ (Performance).
    docs = [REPO / doc, *sorted((REPO / "docs").glob("*.md"))] if doc == "README.md" else [REPO / doc]
    quoting = "\n".join(path.read_text(encoding="utf-8") for path in docs)
    assert text in quoting, f"{doc} no longer says {text!r}"
    # the quoted figure is the document's own, in that sentence (a percentage as it writes it)
    assert quoted in text or f"{float(quoted) * 100:.0f} %" in text, f"{text!r} does not quote {quoted}"
    value = _at(json.loads((BENCHMARKS / name).read_text()), key)
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    assert f"{value:.{decimals}f}" == quoted, f"{name} {key} = {value}, {doc} quotes {quoted}"


def test_bench_synthetic_smoke_writes_its_figures(tmp_path):
    """The whole script on a few small scenes: the JSON holds the rates the README quotes and how to rerun."""
    bench_synthetic = _load("bench_synthetic")
    out = tmp_path / "out.json"
    args = ["--n", "2", "--size", "64x48", "--repeats", "1", "--modes", "color", "--workers", "0"]
    assert bench_synthetic.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scenes_per_s"] > 0 and result["machine_scenes_per_s"] > 0
    assert [r["mode"] for r in result["results"]] == ["color"] and result["width"] == 64
    _check_reproduce(result["reproduce"], "bench_synthetic.py", n=2, size="64x48", workers=0)


def _run_script(script: str, args: list[str], cwd: Path) -> None:
    """Run ``benchmarks/<script>.py`` as the README does, from ``cwd`` (not the repository root)."""
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_eval_contacts_smoke_from_another_folder(tiny_ckpt, tmp_path):
    """The whole path (scenes, predict.py, scoring) from a folder other than the repository root, with a
    relative --ckpt and --json: the JSON holds the figures the README quotes, by_range among them."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny.ckpt").write_bytes(tiny_ckpt.read_bytes())
    _run_script("eval_contacts", ["--ckpt", "runs/tiny.ckpt", "--n", "2", "--json", "ec.json"], tmp_path)
    result = json.loads((tmp_path / "ec.json").read_text())
    for key in ("boundary_f1_3px", "contact_distance_px", "miou", "extraction_to_truth_mean_px", "machine"):
        assert result[key] is not None, key
    assert [r["range_m"] for r in result["by_range"]] == ["0-4", "4-8", "8-12", "12-18", "18-30", ">30"]
    _check_reproduce(result["reproduce"], "eval_contacts.py", n=2, ckpt="runs/tiny.ckpt")


@pytest.mark.slow
def test_bench_train_smoke_from_another_folder(tmp_path):
    """Every configuration's worker runs and the JSON holds its rows, medians and what reproduces it."""
    args = ["--model", "tiny", "--steps", "1", "--crop-size", "64", "--batch-size", "2", "--threads", "1"]
    _run_script("bench_train", [*args, "--json", "bt.json"], tmp_path)
    result = json.loads((tmp_path / "bt.json").read_text())
    assert {r["channels_last"] for r in result["medians"]} == {False, True}
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    _check_reproduce(result["reproduce"], "bench_train.py", model="tiny", steps=1, crop_size=64, threads=1)


def _fake_eval_contacts(tmp_path, monkeypatch):
    """eval_contacts with its repository at ``tmp_path`` (holding the README's default column, made with
    ``runs/default.ckpt``) and predict.py replaced by a run that writes an empty metrics.json."""
    eval_contacts = _load("eval_contacts")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "default.ckpt").write_bytes(b"")
    (tmp_path / "other.ckpt").write_bytes(b"")
    recorded = {
        "scenes": 256,
        "seed": 777,
        "size": "160x128",
        "checkpoint": "runs/default.ckpt",
        "min_unit_area_px": 200,
        "predict_overrides": [],
        "boundary_f1_3px": 0.62,
    }
    (tmp_path / "benchmarks" / "eval_contacts.json").write_text(json.dumps(recorded))
    monkeypatch.setattr(eval_contacts, "REPO", tmp_path)
    monkeypatch.setattr(eval_contacts, "generate_dataset", lambda *a, **k: [])

    def fake_run(cmd, **kwargs):
        out = Path(next(c for c in cmd if c.startswith("output_dir=")).split("=", 1)[1])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text("{}")

    monkeypatch.setattr(eval_contacts, "subprocess", SimpleNamespace(run=fake_run))
    return eval_contacts, recorded


def test_eval_contacts_another_seed_keeps_the_default_result_file(tmp_path, monkeypatch):
    """Without --json, a run on another seed (the README's tuning seed 555) writes its own file instead of
    replacing benchmarks/eval_contacts.json, the README's default column (seed 777)."""
    eval_contacts, recorded = _fake_eval_contacts(tmp_path, monkeypatch)
    default = ["--ckpt", str(tmp_path / "runs" / "default.ckpt"), "--n", "256", "--min-unit-area", "200"]
    eval_contacts.main([*default, "--seed", "555"])
    assert json.loads((tmp_path / "benchmarks" / "eval_contacts.json").read_text()) == recorded
    assert json.loads((tmp_path / "benchmarks" / "eval_contacts_seed555.json").read_text())["seed"] == 555


def test_eval_contacts_another_checkpoint_or_option_keeps_the_default_result_file(
    tmp_path, monkeypatch, capsys
):
    """Without --json, only a run that repeats the README's default column (its checkpoint, scenes, seed,
    size, minimum mapping unit and no --set) writes benchmarks/eval_contacts.json: ``--ckpt <another>`` or
    ``--set tta=true`` on seed 777 replaced it. Those write a file named for what differs, and say where
    before measuring."""
    eval_contacts, recorded = _fake_eval_contacts(tmp_path, monkeypatch)
    bench = tmp_path / "benchmarks"
    same = ["--n", "256", "--min-unit-area", "200"]
    eval_contacts.main(["--ckpt", str(tmp_path / "other.ckpt"), *same])
    assert json.loads((bench / "eval_contacts.json").read_text()) == recorded
    # The checkpoint as the repository names it (tmp_path is the repository here).
    assert json.loads((bench / "eval_contacts_ckpt-other.json").read_text())["checkpoint"] == "other.ckpt"
    said = capsys.readouterr().out
    assert said.index(f"result file {bench / 'eval_contacts_ckpt-other.json'}") < said.index("scenes")
    assert "not benchmarks/eval_contacts.json" in said and "--json FILE" in said
    eval_contacts.main(["--ckpt", str(tmp_path / "runs" / "default.ckpt"), *same, "--set", "tta=true"])
    assert json.loads((bench / "eval_contacts.json").read_text()) == recorded
    assert json.loads((bench / "eval_contacts_tta-true.json").read_text())["predict_overrides"] == [
        "tta=true"
    ]
    eval_contacts.main(["--ckpt", str(tmp_path / "runs" / "default.ckpt"), "--min-unit-area", "200"])
    assert json.loads((bench / "eval_contacts.json").read_text()) == recorded
    assert json.loads((bench / "eval_contacts_n64.json").read_text())["scenes"] == 64
    # The same measurement again (the checkpoint named from another folder) refreshes the default column.
    monkeypatch.chdir(tmp_path / "runs")
    capsys.readouterr()
    eval_contacts.main(["--ckpt", "default.ckpt", *same])
    refreshed = json.loads((bench / "eval_contacts.json").read_text())
    assert refreshed["checkpoint"] == "runs/default.ckpt" and refreshed["boundary_f1_3px"] is None  # this run
    assert f"result file {bench / 'eval_contacts.json'}" in capsys.readouterr().out
    assert sorted(p.name for p in bench.iterdir()) == [
        "eval_contacts.json",
        "eval_contacts_ckpt-other.json",
        "eval_contacts_n64.json",
        "eval_contacts_tta-true.json",
    ]


def test_eval_contacts_default_column_refreshed_from_another_folder_is_still_recognised(
    tmp_path, monkeypatch, capsys
):
    """A run repeating the README's default column from another working directory (``--ckpt default.ckpt``
    from ``runs/``) recorded ``checkpoint`` as given, relative to that folder: the same measurement run
    again from the repository root (``--ckpt runs/default.ckpt``, as the README's commands run) no longer
    matched it and went to ``eval_contacts_ckpt-default.json``. The recorded path is the repository's
    (or absolute outside it), so either launch folder recognises the file."""
    eval_contacts, _ = _fake_eval_contacts(tmp_path, monkeypatch)
    bench = tmp_path / "benchmarks"
    same = ["--n", "256", "--min-unit-area", "200"]
    monkeypatch.chdir(tmp_path / "runs")
    eval_contacts.main(["--ckpt", "default.ckpt", *same])
    refreshed = json.loads((bench / "eval_contacts.json").read_text())
    assert refreshed["checkpoint"] == "runs/default.ckpt"
    assert refreshed["reproduce"]["arguments"]["ckpt"] == "default.ckpt"  # as given, for the command
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    eval_contacts.main(["--ckpt", "runs/default.ckpt", *same])
    assert f"result file {bench / 'eval_contacts.json'}" in capsys.readouterr().out
    assert sorted(p.name for p in bench.iterdir()) == ["eval_contacts.json"]
    # Outside the repository: the absolute path, recognised from anywhere.
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "model.ckpt").write_bytes(b"")
    monkeypatch.chdir(outside)
    eval_contacts.main(["--ckpt", "model.ckpt", *same, "--json", str(bench / "eval_contacts.json")])
    assert json.loads((bench / "eval_contacts.json").read_text())["checkpoint"] == str(outside / "model.ckpt")
    monkeypatch.chdir(tmp_path / "runs")
    capsys.readouterr()
    eval_contacts.main(["--ckpt", str(outside / "model.ckpt"), *same])
    assert f"result file {bench / 'eval_contacts.json'}" in capsys.readouterr().out


def test_eval_contacts_overrides_that_change_nothing_repeat_the_default_column(tmp_path, monkeypatch, capsys):
    """``--set tta=false`` (predict.py's own value), or a ``--set`` a later one of the same key replaces,
    repeats the README's default measurement: it wrote ``eval_contacts_tta-false.json`` instead of
    refreshing the default column. Only the overrides that change predict.py's configuration are recorded
    and name a file."""
    eval_contacts, _ = _fake_eval_contacts(tmp_path, monkeypatch)
    bench = tmp_path / "benchmarks"
    same = ["--ckpt", str(tmp_path / "runs" / "default.ckpt"), "--n", "256", "--min-unit-area", "200"]
    eval_contacts.main([*same, "--set", "tta=false", "--set", "precision=32"])
    assert f"result file {bench / 'eval_contacts.json'}" in capsys.readouterr().out
    assert json.loads((bench / "eval_contacts.json").read_text())["predict_overrides"] == []
    eval_contacts.main([*same, "--set", "tta=true", "--set", "overlap=0.5", "--set", "tta=false"])
    assert json.loads((bench / "eval_contacts_overlap-0.5.json").read_text())["predict_overrides"] == [
        "overlap=0.5"
    ]
    assert sorted(p.name for p in bench.iterdir()) == ["eval_contacts.json", "eval_contacts_overlap-0.5.json"]
    assert eval_contacts.changing_overrides(["no_such_key=1"], []) == ["no_such_key=1"]  # predict.py says why


def test_eval_contacts_two_checkpoints_of_the_same_name_get_two_result_files(tmp_path, monkeypatch, capsys):
    """Without --json, two checkpoints named alike (``a/best.ckpt`` and ``b/best.ckpt``, a checkpoint copied
    to /tmp as the README's mmu2 runs were, or the same trial number of two sweeps) both went to
    ``eval_contacts_ckpt-best.json``, the second replacing the first's measurement. A file recording another
    measurement is kept and the run takes the next free name; the same measurement again replaces its own."""
    eval_contacts, _ = _fake_eval_contacts(tmp_path, monkeypatch)
    bench = tmp_path / "benchmarks"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "best.ckpt").write_bytes(b"")
    same = ["--n", "256", "--min-unit-area", "200"]
    eval_contacts.main(["--ckpt", str(tmp_path / "a" / "best.ckpt"), *same])
    eval_contacts.main(["--ckpt", str(tmp_path / "b" / "best.ckpt"), *same])
    assert json.loads((bench / "eval_contacts_ckpt-best.json").read_text())["checkpoint"] == "a/best.ckpt"
    assert json.loads((bench / "eval_contacts_ckpt-best-2.json").read_text())["checkpoint"] == "b/best.ckpt"
    said = capsys.readouterr().out
    assert f"result file {bench / 'eval_contacts_ckpt-best-2.json'}" in said
    kept = "(eval_contacts_ckpt-best.json and the names before this one record other measurements, kept)"
    assert kept in said
    eval_contacts.main(["--ckpt", str(tmp_path / "b" / "best.ckpt"), *same])  # again: its own file
    assert f"result file {bench / 'eval_contacts_ckpt-best-2.json'}" in capsys.readouterr().out
    eval_contacts.main(["--ckpt", str(tmp_path / "a" / "best.ckpt"), *same, "--seed", "555"])
    eval_contacts.main(["--ckpt", str(tmp_path / "a" / "best.ckpt"), *same])
    assert sorted(p.name for p in bench.iterdir()) == [
        "eval_contacts.json",
        "eval_contacts_ckpt-best-2.json",
        "eval_contacts_ckpt-best.json",
        "eval_contacts_ckpt-best_seed555.json",
    ]


@pytest.mark.parametrize("script", ["eval_contacts", "bench_synthetic"])
def test_json_under_a_tilde_naming_no_user_is_a_usage_error(script, tmp_path, capsys, monkeypatch):
    """``--json ~nosuchuser/out.json`` is read as the rest of the project reads a ``~`` (expand_home: kept as
    it is when it names no user), so a folder of that name that is not there is the usage error naming it;
    it was a RuntimeError traceback ('Could not determine home directory')."""
    module = _load(script)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "best.ckpt").write_bytes(b"")
    args = ["--ckpt", str(tmp_path / "best.ckpt")] if script == "eval_contacts" else []
    with pytest.raises(SystemExit) as exc:
        module.main([*args, "--json", "~no_such_user_hy37/out.json"])
    assert exc.value.code == 2
    assert "--json ~no_such_user_hy37/out.json" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["eval_contacts", "eval_val_errors"])
def test_ckpt_under_a_tilde_naming_no_user_is_a_usage_error(script, tmp_path, capsys, monkeypatch):
    """``--ckpt ~nosuchuser/best.ckpt`` ended in pathlib's RuntimeError traceback ('Could not determine home
    directory'), as ``--json`` did; it is the usage error naming the checkpoint that is not there."""
    module = _load(script)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        module.main(["--ckpt", "~no_such_user_34/best.ckpt"])
    assert exc.value.code == 2
    assert "~no_such_user_34/best.ckpt" in capsys.readouterr().err


def test_reproduce_records_no_commit_for_a_copy_git_does_not_track(tmp_path):
    """An sdist or copy of the project unpacked inside another repository (untracked there) recorded that
    repository's commit, and ``uncommitted_changes`` false, as the code's: its commit says nothing of these
    files. Like git_info, the record is None for both unless the repository tracks the script that ran."""
    import argparse
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("needs git")
    outer = tmp_path / "outer"
    (outer / "copy" / "benchmarks").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(outer)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "other project"], check=True)
    for name in ("_machine.py", "eval_contacts.py"):
        shutil.copy2(BENCHMARKS / name, outer / "copy" / "benchmarks" / name)
    spec = importlib.util.spec_from_file_location(
        "_machine_copy", outer / "copy" / "benchmarks" / "_machine.py"
    )
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    record = copy.reproduction("eval_contacts.py", argparse.Namespace(n=3))
    assert record["commit"] is None and record["uncommitted_changes"] is None, record
    # the checkout itself still records its commit
    if (REPO / ".git").exists():
        _load("eval_contacts")  # puts benchmarks/ on sys.path, as a run of the script does
        import _machine

        _check_reproduce(_machine.reproduction("eval_contacts.py", argparse.Namespace()), "eval_contacts.py")


@pytest.mark.parametrize(("height", "width"), [(37, 50), (128, 160), (20, 9)])
def test_border_bands_split_each_side_and_leave_the_interior(height, width):
    """Each side's bands 0-4, 4-8 and 8-16 px are disjoint and together are the pixels within 16 px of that
    side; the interior is exactly the pixels in no band (a side shorter than the bands leaves none)."""
    bands = _load("eval_border_bands").band_masks(height, width)
    rows, cols = np.mgrid[:height, :width]
    distance = {"top": rows, "bottom": height - 1 - rows, "left": cols, "right": width - 1 - cols}
    near_any = np.zeros((height, width), dtype=bool)
    for side, d in distance.items():
        mine = [bands[f"{side} {b}"] for b in ("0-4", "4-8", "8-16")]
        assert (sum(m.astype(int) for m in mine) <= 1).all(), side
        assert np.array_equal(np.logical_or.reduce(mine), d < 16), side
        assert np.array_equal(bands[f"{side} 0-4"], d < 4), side
        near_any |= d < 16
    assert np.array_equal(bands["interior"], ~near_any)
    assert bands["all"].all() and bands["all"].shape == (height, width)


@pytest.mark.parametrize(("height", "width", "margin"), [(37, 50, 8), (5, 3, 16), (64, 64, 32)])
def test_border_bands_padding_is_cropped_back_onto_its_pixels(height, width, margin):
    """The padded variants hand the network the image with its margin and crop the output back onto the
    image's own pixels: with a 'network' that returns its input, the result is the image itself (any size,
    one smaller than the margin included), and the padding the network saw is the mode's."""
    module = _load("eval_border_bands")
    seen = []

    def identity(x: torch.Tensor) -> np.ndarray:
        seen.append(x.clone())
        return x.numpy().copy()

    mapper = SimpleNamespace(predictor=SimpleNamespace(predict=identity), metadata={"mean": [0.1, 0.2, 0.3]})
    image = torch.rand(3, height, width)
    for mode in ("reflect", "replicate"):
        out = module.padded_predict(mapper, margin, mode)(image)
        assert out.shape == (3, height, width) and np.array_equal(out, image.numpy()), mode
        assert seen[-1].shape == (3, height + 2 * margin, width + 2 * margin)
    assert torch.equal(seen[-1][:, :margin, margin:-margin], image[:, :1].expand(3, margin, width))  # edge
    out = module.mean_padded_predict(mapper, 16)(image)
    assert np.array_equal(out, image.numpy())
    padded = seen[-1]
    assert padded.shape[1] % 16 == 0 and padded.shape[2] % 16 == 0
    assert torch.equal(padded[:, :height, :width], image)
    assert np.allclose(padded[:, height:, :].reshape(3, -1).T, [0.1, 0.2, 0.3])


def test_eval_border_bands_smoke_writes_every_variant(tiny_ckpt, tmp_path, capsys):
    """Two small scenes through every variant: each is scored on the same pixels, its figures are fractions,
    the stride variant comes for a size that is no multiple of the stride, and the JSON says how to rerun."""
    module = _load("eval_border_bands")
    out = tmp_path / "bands.json"
    args = ["--ckpt", str(tiny_ckpt), "--n", "2", "--size", "60x44", "--margins", "8", "--json", str(out)]
    assert module.main(args) == 0
    result = json.loads(out.read_text())
    variants = result["variants"]
    assert list(variants) == ["engine", "reflect-8", "replicate-8", "mean-to-stride-8"]
    pixels = {v: {b: row["pixels"] for b, row in t["bands"].items()} for v, t in variants.items()}
    assert all(p == pixels["engine"] for p in pixels.values())
    assert 0 < pixels["engine"]["top 0-4"] <= 2 * 4 * 60 and pixels["engine"]["all"] <= 2 * 60 * 44
    for table in variants.values():
        for row in table["bands"].values():
            assert row["accuracy"] is None or 0.0 <= row["accuracy"] <= 1.0
            assert all(v is None or 0.0 <= v <= 1.0 for v in row["iou"].values())
        assert table["seconds_per_image"] > 0
    _check_reproduce(result["reproduce"], "eval_border_bands.py", n=2, margins=[8])
    assert "reflect-8" in capsys.readouterr().out
