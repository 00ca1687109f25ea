"""Crash recovery: mid-epoch ``last.ckpt`` (callbacks/recovery.yaml), resume with ``ckpt_path=last``.

The resumed run must do exactly the optimiser steps of an uninterrupted run (``global_step`` of the final
checkpoint), and leave no temporary checkpoint file behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from marsunits.checkpoint_loading import load_task
from marsunits.task import SegmentationTask
from marsunits.training import run

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


try:
    from .conftest import REPO_ROOT, compose_config
except ImportError:  # tests/ is not a package: pytest puts it on sys.path (rootdir conftest)
    from conftest import REPO_ROOT, compose_config  # type: ignore[no-redef]

#: Shrunk synthetic run with the recovery callback saving last.ckpt every `every_n_train_steps` steps.
SMALL = [
    "model=tiny",
    "logger=none",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.crop_size=64",
    "data.scene.width=64",
    "data.scene.height=64",
    "data.val_length=4",
    "data.test_length=4",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "test=false",
    "callbacks=[default,recovery]",
]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the test, then restore the setting.

    Why: the tiny model gains nothing from a second thread, and on a shared 2-core machine OpenMP threads
    waiting for each other made this test 5-15x slower (measured 1-2 s vs 3-28 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _global_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if ".tmp" in p.name)


def test_recovery_callback_composes_next_to_the_best_checkpoint(tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [*SMALL, "callbacks.recovery_checkpoint.every_n_train_steps=7"])
    callbacks = {name: instantiate(node) for name, node in cfg.callbacks.items()}
    recovery, best = callbacks["recovery_checkpoint"], callbacks["model_checkpoint"]
    assert isinstance(recovery, ModelCheckpoint) and isinstance(best, ModelCheckpoint)
    assert recovery.dirpath == best.dirpath == str(tmp_path / "checkpoints")
    assert recovery._every_n_train_steps == 7 and recovery.save_last and recovery.save_top_k == 0
    # training.run reads the best checkpoint from trainer.checkpoint_callback: it must stay the monitored one.
    trainer = instantiate(cfg.trainer, callbacks=list(callbacks.values()), logger=False)
    assert trainer.checkpoint_callback is best and best.monitor == "val/miou"


def test_crash_mid_epoch_then_resume_does_the_same_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """In-process: an exception at step 3 of 4 (mid second epoch), then ``ckpt_path=last`` finishes."""
    overrides = [*SMALL, "data.train_length=8", "callbacks.recovery_checkpoint.every_n_train_steps=1"]
    steps_per_epoch, max_epochs = 8 // 4, 2

    def crash(self: SegmentationTask, outputs: object, batch: object, batch_idx: int) -> None:
        if self.global_step == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(SegmentationTask, "on_train_batch_end", crash, raising=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(compose_config("train", tmp_path / "run", overrides))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert _global_step(last) == 3 and 3 % steps_per_epoch != 0  # a mid-epoch checkpoint
    monkeypatch.undo()

    run(compose_config("train", tmp_path / "run", [*overrides, "ckpt_path=last"]))
    assert _global_step(last) == steps_per_epoch * max_epochs
    assert not _temporaries(tmp_path)


def _train(args: list[str], log_file: Path) -> subprocess.Popen:
    # One OpenMP thread: see `one_thread`; the step count under test does not depend on it.
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "train.py", *args], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _wait(proc: subprocess.Popen, log_file: Path, timeout: float = 300) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert rc == 0, log_file.read_text()[-3000:]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """A real ``kill -9`` of ``train.py`` after a mid-epoch checkpoint; ``ckpt_path=last`` completes it."""
    steps_per_epoch = 64 // 4
    common = [
        *SMALL,
        "data.train_length=64",
        "callbacks.recovery_checkpoint.every_n_train_steps=3",  # 3 does not divide 16: mid-epoch saves
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    # Reference: the same run, uninterrupted.
    full_log = tmp_path / "full.log"
    _wait(_train([*common, "run_name=full"], full_log), full_log)
    full_steps = _global_step(tmp_path / "logs" / "train" / "full" / "checkpoints" / "last.ckpt")
    assert full_steps == 2 * steps_per_epoch

    # Killed: SIGKILL as soon as last.ckpt holds a step of the second epoch that is not an epoch boundary.
    run_dir = tmp_path / "logs" / "train" / "kill"
    last = run_dir / "checkpoints" / "last.ckpt"
    kill_log = tmp_path / "kill.log"
    proc = _train([*common, "run_name=kill"], kill_log)
    seen, deadline = -1, time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if last.is_file():
            # Safe to read while training writes: saves are atomic renames, never a partial file.
            seen = _global_step(last)
            if seen > steps_per_epoch and seen % steps_per_epoch:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    rc = proc.wait(timeout=60)
    assert rc == -signal.SIGKILL, f"train.py was not killed mid-epoch (rc={rc}, last step seen {seen})"
    killed_at = _global_step(last)
    assert steps_per_epoch < killed_at < full_steps

    _wait(_train([*common, "run_name=kill", "ckpt_path=last"], kill_log), kill_log)
    assert _global_step(last) == full_steps
    assert not _temporaries(tmp_path / "logs"), _temporaries(tmp_path / "logs")
    task = load_task(last)
    with torch.no_grad():
        assert task(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def _best_of_an_earlier_run_and_its_resume(tmp_path: Path) -> tuple[Path, Path, Any, Any]:
    """``(old, new, saved, resumed)``: the checkpoints folders of an earlier run (``run1``, its ``best.ckpt``
    written, scored 0.66) and of its resume into a new folder (``run2``), with the earlier run's best-model
    callback (``saved``) and the resumed run's, not yet given its state (``resumed``)."""
    from marsunits.best_checkpoint import RunModelCheckpoint

    old, new = tmp_path / "run1" / "checkpoints", tmp_path / "run2" / "checkpoints"
    old.mkdir(parents=True)
    (old / "best.ckpt").write_bytes(b"the earlier best model")
    saved = RunModelCheckpoint(dirpath=old, filename="best", monitor="val/miou", mode="max")
    saved.best_model_path, saved.best_model_score = str(old / "best.ckpt"), torch.tensor(0.66)
    resumed = RunModelCheckpoint(dirpath=new, filename="best", monitor="val/miou", mode="max")
    return old, new, saved, resumed


def test_a_resume_into_a_new_folder_keeps_the_best_model_so_far(tmp_path: Path) -> None:
    """ckpt_path=last without run_name continues in a new folder: Lightning forgot the best score there, so
    the resumed run's first validation became best.ckpt whatever it scored."""
    from types import SimpleNamespace

    from marsunits.best_checkpoint import RunModelCheckpoint

    old, new, saved, resumed = _best_of_an_earlier_run_and_its_resume(tmp_path)
    resumed.load_state_dict(saved.state_dict())
    assert (new / "best.ckpt").read_bytes() == b"the earlier best model"
    assert resumed.best_model_path == str(new / "best.ckpt")
    assert float(resumed.best_model_score) == pytest.approx(0.66)
    # A worse validation in the resumed run does not replace it; a better one does.
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda x, all=True: x))
    assert not resumed.check_monitor_top_k(trainer, torch.tensor(0.64))  # type: ignore[arg-type]
    assert resumed.check_monitor_top_k(trainer, torch.tensor(0.70))  # type: ignore[arg-type]
    # The same folder (a resume in place) or a missing earlier file: Lightning's own behaviour.
    (old / "best.ckpt").unlink()
    other = RunModelCheckpoint(dirpath=tmp_path / "run3", filename="best", monitor="val/miou", mode="max")
    other.load_state_dict(saved.state_dict())
    assert not (tmp_path / "run3" / "best.ckpt").exists() and other.best_model_score is None


class EachEpochWorse(pl.Callback):
    """Makes val/miou fall every epoch, so only epoch 0 is ever a new best (it runs before ModelCheckpoint's
    hooks: Lightning moves checkpoint callbacks to the end)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.callback_metrics["val/miou"] = torch.tensor(1.0 / (1 + trainer.current_epoch))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.on_validation_end(trainer, pl_module)  # the epoch-end update puts the logged value back


def test_last_ckpt_holds_the_final_step_when_the_last_epoch_is_not_the_best(
    tmp_path: Path, one_thread
) -> None:
    """Lightning 2.6 writes last.ckpt at an epoch's end only with a new best, and at the end only if it never
    wrote it: after a recovery save, a run whose last epoch was not its best kept last.ckpt at that save,
    and ckpt_path=last would have thrown the later steps away."""
    overrides = [
        *SMALL,
        "data.train_length=8",  # 2 steps per epoch
        "trainer.max_epochs=3",
        "callbacks.recovery_checkpoint.every_n_train_steps=4",  # a recovery save inside the run (step 4)
        "+callbacks.worse._target_=test_recovery_train.EachEpochWorse",
    ]
    run(compose_config("train", tmp_path, overrides))
    assert _global_step(tmp_path / "checkpoints" / "best.ckpt") == 2
    assert _global_step(tmp_path / "checkpoints" / "last.ckpt") == 6  # was 4: steps 5 and 6 lost


def test_the_best_model_carried_into_a_new_folder_is_copied_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every ``trainer.validate``/``test`` with a checkpoint restores the callbacks' state: after a resume
    into a new folder whose part found no better model, ``best.ckpt`` there is the copy, whose state still
    names the earlier folder, so testing it copied the earlier file over it again (60 MB for the default
    model) and logged "resumed into ... copied" a second time (seen on a finished run resumed with
    ``ckpt_path=last``)."""
    import logging

    old, new, saved, resumed = _best_of_an_earlier_run_and_its_resume(tmp_path)
    with caplog.at_level(logging.INFO, logger="marsunits.best_checkpoint"):
        resumed.load_state_dict(saved.state_dict())  # trainer.fit(ckpt_path=last)
        copied = (new / "best.ckpt").stat()
        resumed.load_state_dict(saved.state_dict())  # trainer.test(ckpt_path=<the copy>)
    assert (new / "best.ckpt").stat().st_ino == copied.st_ino  # not written again
    assert len([r for r in caplog.records if "resumed into" in r.getMessage()]) == 1
    assert resumed.best_model_path == str(new / "best.ckpt")
    assert float(resumed.best_model_score) == pytest.approx(0.66)
    # A later resume from another earlier folder still copies its best model.
    (new / "best.ckpt").unlink()
    resumed.load_state_dict(saved.state_dict())
    assert (new / "best.ckpt").read_bytes() == b"the earlier best model"


def test_a_resume_into_a_new_folder_does_not_say_the_best_score_is_lost(tmp_path: Path) -> None:
    """The recovery checkpoint (mid-epoch last.ckpt) is a second ModelCheckpoint: on ``ckpt_path=last`` into a
    new folder Lightning's warned "The dirpath has changed ..., therefore `best_model_score` ... won't be
    reloaded", right after the line saying the best checkpoint and its score were carried over. It monitors
    nothing: its state of the earlier folder is dropped without a word, and loaded in the same folder."""
    import warnings

    old = compose_config("train", tmp_path / "run1", SMALL).callbacks.recovery_checkpoint
    new = compose_config("train", tmp_path / "run2", SMALL).callbacks.recovery_checkpoint
    saved, resumed = instantiate(old), instantiate(new)
    saved.last_model_path = str(Path(saved.dirpath) / "last.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.load_state_dict(saved.state_dict())
    assert resumed.dirpath == str(tmp_path / "run2" / "checkpoints") and resumed.last_model_path == ""
    again = instantiate(old)  # a resume in place keeps Lightning's reading of the state
    again.load_state_dict(saved.state_dict())
    assert again.last_model_path == saved.last_model_path


def test_the_recovery_checkpoint_keeps_the_state_key_of_checkpoints_written_before(tmp_path: Path) -> None:
    """Lightning files a callback's state under its class name and settings: the recovery checkpoint was a
    plain ModelCheckpoint, and every run's last.ckpt holds its state as ``ModelCheckpoint{...}``. Under its
    own class name, resuming such a run warned "callbacks used to create the checkpoint need to be provided
    ... Please add the following callbacks" and its state was not restored."""
    node = compose_config("train", tmp_path, SMALL).callbacks.recovery_checkpoint
    recovery = instantiate(node)
    plain = ModelCheckpoint(**{k: v for k, v in node.items() if k != "_target_"})
    assert type(recovery) is not ModelCheckpoint and recovery.state_key == plain.state_key


def test_a_resume_of_a_debug_fdr_run_into_a_new_folder_is_not_warned_of_a_changed_dirpath(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``debug=fdr`` writes ``last.ckpt`` and no best model; resuming it with ``ckpt_path=<file>`` into a
    new run folder printed Lightning's "The dirpath has changed from ... therefore `best_model_score`,
    `kth_best_model_path`, `kth_value`, `last_model_path` and `best_k_models` won't be reloaded", of a
    best model that never was. Nothing is lost there, and nothing is said."""
    import logging
    import warnings

    from test_train import TINY

    run(compose_config("train", tmp_path / "fdr", [*TINY, "debug=fdr"]))
    last = tmp_path / "fdr" / "checkpoints" / "last.ckpt"
    resume = [*TINY, "trainer.max_epochs=2", "test=false", f"ckpt_path={last}"]
    with warnings.catch_warnings(record=True) as said, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        metrics = run(compose_config("train", tmp_path / "resumed", resume))
    assert metrics["best_ckpt"] == str(tmp_path / "resumed" / "checkpoints" / "best.ckpt")
    told = [str(w.message) for w in said] + [r.getMessage() for r in caplog.records]
    assert not [m for m in told if "dirpath" in m or "not carried over" in m], told


def test_a_best_model_left_behind_at_a_resume_is_one_line_of_ours(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the earlier best model cannot be carried into the new folder (its file deleted; another
    ``monitor``), the best score is left behind as Lightning leaves it, said in one line naming the file,
    its score and why, instead of Lightning's warning naming five attributes."""
    import logging
    import warnings

    from marsunits.best_checkpoint import RunModelCheckpoint

    old, new, saved, resumed = _best_of_an_earlier_run_and_its_resume(tmp_path)
    (old / "best.ckpt").unlink()
    other = RunModelCheckpoint(dirpath=new, filename="best", monitor="val/loss", mode="min")
    (old / "kept.ckpt").write_bytes(b"the earlier best model")
    moved = {**saved.state_dict(), "best_model_path": str(old / "kept.ckpt")}
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="marsunits.best_checkpoint"):
        warnings.simplefilter("error")
        resumed.load_state_dict(saved.state_dict())
        other.load_state_dict(moved)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"resumed into {new}: the earlier run's best checkpoint ({old / 'best.ckpt'}, val/miou "
        f"{float(torch.tensor(0.66))}) is not carried over, since that file is gone: best.ckpt here is the "
        "best of the validations from the resume on",
        f"resumed into {new}: the earlier run's best checkpoint ({old / 'kept.ckpt'}, val/miou "
        f"{float(torch.tensor(0.66))}) is not carried over, since it was chosen by val/miou, this run's by "
        "val/loss: best.ckpt here is the best of the validations from the resume on",
    ], lines
    assert resumed.best_model_score is None and other.best_model_score is None
    assert not (new / "kept.ckpt").exists()
