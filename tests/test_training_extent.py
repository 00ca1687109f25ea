"""How far a model trained, recorded in its checkpoint, and predict.py's warning of a barely trained one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from marsunits.checkpoint_loading import load_task
from marsunits.inference import run
from marsunits.training_extent import (
    DEFAULT_RUN_STEPS,
    MIN_TRAINING_STEPS,
    barely_trained,
    barely_trained_warning,
    check_record,
    record_from_checkpoint,
    record_from_provenance,
    training_record,
)

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import compose_config, one_step_trainer, run_summary, tiny_task
    from .test_predict import TILE, make_cfg
except ImportError:
    from conftest import compose_config, one_step_trainer, run_summary, tiny_task  # type: ignore[no-redef]
    from test_predict import TILE, make_cfg  # type: ignore[no-redef]

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fitted(path: Path, batches: int = 1, **trainer_options: object) -> Path:
    """The tiny network fitted on ``batches`` random batches of 2 and saved to ``path``."""
    from torch.utils.data import DataLoader

    task = tiny_task(TILE)
    samples = [
        {"image": torch.rand(3, TILE, TILE), "mask": torch.randint(0, 3, (TILE, TILE)), "path": f"{i}"}
        for i in range(2 * batches)
    ]
    # A length set in epochs, as train.py's runs have it, takes no max_steps (Lightning's -1: none).
    unbounded = {"max_steps": -1} if "max_epochs" in trainer_options else {}
    trainer = one_step_trainer(**unbounded, **trainer_options)
    trainer.fit(task, DataLoader(samples, batch_size=2))
    trainer.save_checkpoint(path)
    return path


def _image(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / "scene.png")
    return folder


def test_the_rule_flags_a_fast_dev_run_and_few_steps_not_a_length_chosen_in_steps() -> None:
    """Principled, from the record alone: a fast_dev_run, or fewer than MIN_TRAINING_STEPS in all, unless
    the run was set to a number of steps (max_steps) and took them all; a fine-tuning counts its start's."""
    fdr = barely_trained(training_record(1, 1, fast_dev_run=True, max_steps=1))
    assert fdr is not None and "fast_dev_run checkpoint (debug=fdr)" in fdr
    few = barely_trained(training_record(2, 1))  # trainer.max_epochs=1 on a small data set
    assert (
        few
        == f"it took 2 optimiser steps in all (fewer than {MIN_TRAINING_STEPS}; the default run takes 448)"
    )
    assert barely_trained(training_record(MIN_TRAINING_STEPS, 3)) is None
    assert barely_trained(training_record(1, 0, max_steps=1)) is None  # the tests' one-step fixtures
    assert barely_trained(training_record(30, 0, max_steps=30)) is None  # a deliberate 30-step fine-tuning
    stopped = barely_trained(training_record(20, 0, max_steps=1000))  # interrupted before its end
    assert stopped is not None and "ended before the trainer.max_steps=1000" in stopped, stopped
    assert barely_trained(training_record(20, 0, steps_before=448)) is None  # fine-tuned from a trained one
    # debug=fdr of a fine-tuning: the trained weights and one batch, not the wiring check of a new model.
    assert barely_trained(training_record(1, 0, steps_before=448, fast_dev_run=True)) is None
    assert barely_trained(training_record(1, 0, steps_before=20, fast_dev_run=True)) is not None
    assert barely_trained(None) is None  # nothing known, nothing said
    # A checkpoint from before the record: Lightning's keys, its fast_dev_run and max_steps unknown.
    old = record_from_checkpoint(
        {
            "global_step": 7,
            "epoch": 1,
            "callbacks": {
                "RecoveryCheckpoint{...}": {"monitor": None, "best_model_score": None},
                "RunModelCheckpoint{...}": {"monitor": "val/miou", "best_model_score": torch.tensor(0.4375)},
            },
        }
    )
    assert old == training_record(7, 1, steps_before=None, fast_dev_run=None, best_val_miou=0.4375)
    assert barely_trained(old) is not None
    assert record_from_provenance({"global_step": 500, "epoch": 4}) == training_record(
        500, 4, steps_before=None, fast_dev_run=None
    )
    assert record_from_provenance({"global_step": None}) is None
    assert check_record(training_record(5, 0, best_val_miou=0.5)) is None
    # A package of a later version may record more: its own keys are still checked, the others left alone.
    assert check_record({**training_record(5, 0), "learning_rate_at_end": 1e-5}) is None
    assert (
        check_record({**training_record(5, 0), "epoch": -1, "later": 1})
        == "epoch=-1 is not a whole number >= 0"
    )
    assert (
        check_record({"optimizer_steps": "many", "epoch": 0})
        == "optimizer_steps='many' is not a whole number >= 0"
    )


def test_the_default_run_takes_the_steps_the_warning_names(tmp_path: Path) -> None:
    """The warning's way on names the default run's steps; the threshold stays well under them."""
    cfg = compose_config("train", tmp_path, [])
    per_epoch = cfg.data.train_length // cfg.data.batch_size  # a short last batch dropped (datamodule)
    assert per_epoch * cfg.trainer.max_epochs == DEFAULT_RUN_STEPS
    assert MIN_TRAINING_STEPS <= DEFAULT_RUN_STEPS // 4


def test_the_test_fixture_checkpoint_records_its_one_step_and_is_not_flagged(tmp_path: Path) -> None:
    path = _fitted(tmp_path / "one.ckpt")
    saved = torch.load(path, map_location="cpu", weights_only=True)["marsunits"]["training"]
    assert saved == training_record(1, 1, steps_before=0, fast_dev_run=False, max_steps=1)
    assert load_task(path).training_record == saved
    assert barely_trained(saved) is None


def test_predict_warns_of_a_fast_dev_run_checkpoint_and_records_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A debug=fdr checkpoint predicted without a word; now the run warns, naming it and the way on, says
    so again in its last line, and summary.json records its training and why it is barely trained."""
    ckpt = _fitted(tmp_path / "fdr.ckpt", fast_dev_run=True)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, ckpt, _image(tmp_path / "in"), out)) == 0
    said = [r.getMessage() for r in caplog.records if "barely trained" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(f"{ckpt} is barely trained: it is a fast_dev_run checkpoint (debug=fdr)")
    assert "python train.py" in said[0] and "checkpoints/best.ckpt" in said[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint_metadata"]["training"]["fast_dev_run"] is True
    assert summary["checkpoint_barely_trained"].startswith("it is a fast_dev_run checkpoint")
    assert "The model is barely trained: it is a fast_dev_run checkpoint" in summary["text"]


def test_a_barely_trained_model_of_real_data_is_sent_back_to_its_own_command_not_the_synthetic_default() -> (
    None
):
    """The quick check of a data=folder run (trainer.max_epochs=1 data.samples_per_epoch=32: 4 steps) was told
    to "Train longer (python train.py, the README's default ...)": the synthetic default, whose model maps
    real images no better. A model of real data is sent back to its own command, lengthened."""
    from marsunits.inference.run_summary_text import summary_paragraph

    reason = "it took 4 optimiser steps in all (fewer than 100)"
    for dataset in ("synthetic", None):
        said = barely_trained_warning("best.ckpt", reason, dataset)
        assert said.endswith(
            f"Train longer (python train.py, the README's default: {DEFAULT_RUN_STEPS} steps, about 5 "
            "minutes on a laptop CPU) and predict with that run's checkpoints/best.ckpt"
        ), said
    for dataset in ("folder", "marsscapes"):
        said = barely_trained_warning("best.ckpt", reason, dataset)
        assert (
            f"Train longer on its data ({dataset!r}): the python train.py command that made it, without "
            in (said)
            and "README's default" not in said
        ), said
        summary = run_summary(checkpoint_barely_trained=reason, checkpoint_metadata={"dataset": dataset})
        text = " ".join(summary_paragraph(summary).split())
        assert f"close to noise; train longer on its data ({dataset!r}): the python train.py command" in text
        assert "README's default" not in text, text


def test_predict_records_a_short_epoch_run_and_says_nothing_of_a_one_step_fixture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run set in epochs that took 2 steps (trainer.max_epochs=1 on little data) is flagged; the tests'
    one-step checkpoint (trainer.max_steps=1, reached) is recorded and not warned of."""
    inputs = _image(tmp_path / "in")
    short = _fitted(tmp_path / "short.ckpt", batches=2, max_epochs=1)
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, short, inputs, tmp_path / "a")) == 0
    said = [r.getMessage() for r in caplog.records if "barely trained" in r.getMessage()]
    assert len(said) == 1 and "it took 2 optimiser steps in all (fewer than" in said[0], said
    record = json.loads((tmp_path / "a" / "summary.json").read_text())["checkpoint_metadata"]["training"]
    assert (record["optimizer_steps"], record["epoch"], record["max_steps"]) == (2, 1, None)

    caplog.clear()
    one = _fitted(tmp_path / "one.ckpt")
    with caplog.at_level("WARNING"):
        assert run(make_cfg(tmp_path, one, inputs, tmp_path / "b")) == 0
    assert not [r for r in caplog.records if "barely trained" in r.getMessage()]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["checkpoint_barely_trained"] is None and "barely" not in summary["text"]
    assert summary["checkpoint_metadata"]["training"]["optimizer_steps"] == 1


def test_a_package_keeps_the_record_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    from marsunits.model_package import load_package, write_package
    from marsunits.task import CheckpointError

    task = load_task(_fitted(tmp_path / "one.ckpt"))
    package = write_package(task, tmp_path / "pkg", provenance={"global_step": 1, "epoch": 0})
    assert load_package(package).training_record == task.training_record
    document = json.loads((package / "model.json").read_text())
    del document["metadata"]["training"]  # a package exported before the record: its provenance's
    (package / "model.json").write_text(json.dumps(document))
    assert load_package(package).training_record == training_record(
        1, 0, steps_before=None, fast_dev_run=None
    )
    document["metadata"]["training"] = {"optimizer_steps": 1, "epoch": 0, "best_val_miou": 7}
    (package / "model.json").write_text(json.dumps(document))
    with pytest.raises(
        CheckpointError, match=r"model\.json: metadata training best_val_miou=7 is not a number"
    ):
        load_package(package)


def test_unit_mapper_load_warns_of_a_fast_dev_run_checkpoint_as_predict_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from marsunits.inference import UnitMapper

    fdr = _fitted(tmp_path / "fdr.ckpt", fast_dev_run=True)
    with caplog.at_level("WARNING", logger="marsunits.inference.unit_mapper"):
        UnitMapper.load(fdr)
        UnitMapper.load(_fitted(tmp_path / "one.ckpt"))
    said = [r.getMessage() for r in caplog.records if "barely trained" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{fdr} is barely trained: it is a fast_dev_run"), said
