"""Save ``last.ckpt`` when training is stopped with Ctrl-C, SIGTERM or a data error, and say how to go on.

Lightning answers Ctrl-C with a graceful shutdown and exit status 1, keeping only the checkpoints written so
far: with the mid-epoch recovery checkpoint every 50 optimiser steps, up to 49 steps are lost, and nothing
tells the user that ``ckpt_path=last`` resumes. Lightning's own ``OnExceptionCheckpoint`` saves to another
file name on *every* exception (also on a configuration error before the first step) and deletes it at a
normal teardown, so it is not what ``ckpt_path=last`` looks for; this callback writes the run's
``last.ckpt`` itself, only for an interrupt during ``fit``. SIGTERM (a scheduler pre-empting the job or
reaching its time limit) is the same case: Lightning stops at a step boundary with its ``SIGTERMException``,
and the steps since the last recovery checkpoint were lost too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, WeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException

from marsunits.checkpoint_io import CheckpointWriteError
from marsunits.data.io import ImageReadError
from marsunits.errors import (
    DataError,
    MarsUnitsError,
    TerminatedError,
    log_to_files,
    stop_said,
    stop_told,
)
from marsunits.sweep_trials import in_multirun

__all__ = ["InterruptCheckpoint"]

log = logging.getLogger(__name__)


class InterruptCheckpoint(Callback):
    """On Ctrl-C, SIGTERM or a data error (``DataError``, ``OSError``: an image gone unreadable) during
    ``fit``, write ``<dirpath>/last.ckpt`` (atomically, through the trainer's checkpoint IO) and print one
    line saying that the same command with ``ckpt_path=last`` resumes (once the data is fixed); where
    ``last.ckpt`` cannot be written (a full disk), one line saying why, the step reached, and which
    ``last.ckpt`` saved earlier is kept to resume from (with none: the checkpoint that goes on instead).
    A checkpoint the disk refused (``CheckpointWriteError``) before any ``last.ckpt`` was written gets that
    last line too, before the error's own. The line said on a Ctrl-C or SIGTERM is the stop's only one
    (:func:`~marsunits.errors.stop_told`: ``train.py``'s generic ``interrupted (Ctrl-C); finished outputs
    are kept`` followed it), written to ``train.log`` at once and printed once the loggers have closed (the
    lines of an offline W&B run finishing came after it, and the user's last line was not how to go on).

    Only in a single process (under DDP the other ranks are not at the save's barrier), and inside the
    validation of an epoch only without a weight-averaging callback (EMA holds swapped weights there);
    otherwise the recovery checkpoint written every ``every_n_train_steps`` is what the run resumes from.
    (Validation used to be left out altogether, so Ctrl-C during a long validation of a run with short
    epochs kept nothing.)

    Args:
        dirpath: The run's checkpoint folder (the one ``ModelCheckpoint`` writes ``last.ckpt`` to).
    """

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A validation rewound by _validation_to_run_again (one batch "started" more than completed) has now
        # run in full: put the counters back in line, or a checkpoint saved later in this epoch would read as
        # saved mid-validation and its resume would run a 1-batch validation.
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        total = trainer.fit_loop.epoch_loop.val_loop.batch_progress.total
        if total.ready > total.completed:
            total.ready = total.completed
            total.started = total.completed  # type: ignore[attr-defined]  # a _ProcessedTracker
            total.processed = total.completed  # type: ignore[attr-defined]

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, CheckpointWriteError):
            _say_without_last_ckpt(trainer, self.dirpath)
            return
        stopped = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        # A training image that turned unreadable mid-run (a network disk, a file moved away): the weights
        # are those of the last finished step, so they are saved as for an interrupt.
        data_error = isinstance(exception, (DataError, ImageReadError, OSError))
        if trainer.world_size == 1 and _say_stopped_rendering(trainer, self.dirpath, exception):
            return
        if not (stopped or data_error) or trainer.world_size > 1:
            return
        if trainer.state.fn != "fit" or trainer.global_step == 0 or getattr(trainer, "fast_dev_run", False):
            return
        if trainer.sanity_checking:
            return
        averaging = any(isinstance(cb, WeightAveraging) for cb in getattr(trainer, "callbacks", []))
        if trainer.validating and averaging:
            # A weight-averaging callback (EMA) swaps the averaged weights in for validation: saved now, the
            # raw and averaged weights would be stored swapped. The recovery checkpoint stands instead.
            return
        if trainer.validating:
            _validation_to_run_again(trainer)
        if stopped:
            how, then = stop_said(exception)[0], "Run"
        else:
            how, then = "stopped by the error below", "Fix what it names, then run"
        path = self.dirpath / "last.ckpt"
        where = f"{how} at epoch {trainer.current_epoch}, optimiser step {trainer.global_step}"
        try:
            with _logging_step_as_lightning_restores_it(trainer):
                trainer.save_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - the interrupt is what the user asked for; say why nothing was saved
            # One line (a warning with torch's chained zip-writer traceback said neither what was kept nor how
            # to go on): a disk that turned full is the usual cause, and CheckpointWriteError names the file,
            # the cause and the fix.
            log.debug("last.ckpt could not be written", exc_info=True)
            why = str(exc) if isinstance(exc, MarsUnitsError) else f"{type(exc).__name__}: {exc}"
            if path.is_file():  # the checkpoint save writes atomically: the earlier one stands
                kept = f"{path}, saved earlier in the run, is kept (any steps after it are lost). " + (
                    _trial_resume_advice(then, self.dirpath.parent)
                    if in_multirun()
                    else f"{then} the same command with {_resume_overrides(self.dirpath.parent)} to go "
                    "on from it."
                )
            else:
                kept = _without_last_ckpt(trainer, self.dirpath)
            said = f"{where}, but {why}. {kept}"
            log_to_files(said)
            if stopped:  # the stop's one line, printed once the loggers closed: train.py adds none of its own
                stop_told(f"train.py: {said}", exception)
            else:
                print(f"train.py: {said}", file=sys.stderr)
            return
        said = f"{where}; saved {path}. " + (
            _trial_resume_advice(then, self.dirpath.parent)
            if in_multirun()
            else f"{then} the same command with {_resume_overrides(self.dirpath.parent)} to go on."
        )
        log_to_files(said)  # train.log says how to go on too, not only the console
        if stopped:  # the stop's one line, printed once the loggers closed: train.py adds none of its own
            stop_told(f"train.py: {said}", exception)
        else:
            print(f"train.py: {said}", file=sys.stderr)


def _say_stopped_rendering(trainer: pl.Trainer, dirpath: Path, stop: BaseException) -> bool:
    """When ``stop`` (Ctrl-C; SIGTERM, which raises :class:`TerminatedError` there) came while the data module
    pre-rendered the synthetic training scenes (its ``stopped_rendering``), say so in one line with how the
    run goes on, and return True; else say nothing and return False.

    The render takes tens of seconds to minutes before the first step, with nothing to save: the stop said
    only ``interrupted (Ctrl-C); finished outputs are kept``, not whether the run could go on. With a
    ``last.ckpt`` of an earlier part in the run folder (a resume), the command that resumes it; resumed from
    another folder's checkpoint, the same command again; else, the same command starts the run again."""
    if not isinstance(stop, (KeyboardInterrupt, TerminatedError, SIGTERMException)):
        return False
    rendering = getattr(getattr(trainer, "datamodule", None), "stopped_rendering", None)
    if rendering is None or trainer.state.fn != "fit":
        return False
    how = stop_said(stop)[0]
    scenes = "a training scene" if rendering == 1 else f"the {rendering} training scenes"
    where = f"{how} while rendering {scenes}, before the first step"
    last = dirpath / "last.ckpt"
    resumed = getattr(trainer, "ckpt_path", None)
    if last.is_file():
        kept = f"{last}, saved earlier in the run, is kept. " + (
            _trial_resume_advice("Run", dirpath.parent)
            if in_multirun()
            else f"Run the same command with {_resume_overrides(dirpath.parent)} to go on from it."
        )
    elif resumed:
        kept = f"nothing of this part was trained: run the same command again to go on from {resumed}."
    else:
        kept = "nothing was trained yet: run the same command again to start the run."
    said = f"{where}; {kept}"
    log_to_files(said)
    stop_told(f"train.py: {said}", stop)  # the stop's one line, printed once the loggers closed
    return True


def _say_without_last_ckpt(trainer: pl.Trainer, dirpath: Path) -> None:
    """Before the line of a checkpoint the disk refused (:class:`CheckpointWriteError`), what goes on when no
    ``last.ckpt`` was written yet: a disk full at the first one left ``best.ckpt`` alone (written just before
    it at the epoch's end), and ``ckpt_path=last`` could not find this run (with the time-made name, it
    resumed the newest other run of the job)."""
    if trainer.world_size > 1 or trainer.state.fn != "fit" or (dirpath / "last.ckpt").is_file():
        return
    said = (
        f"no last.ckpt of this run was written; once space is freed: {_without_last_ckpt(trainer, dirpath)}"
    )
    log_to_files(said)
    print(f"train.py: {said}", file=sys.stderr)


def _without_last_ckpt(trainer: pl.Trainer, dirpath: Path) -> str:
    """How to go on when ``last.ckpt`` could not be written and none was saved before: from the checkpoint
    this part resumed (the same command again), from a checkpoint the folder holds (``best.ckpt``, written
    at an epoch's end just before a disk too full for the first ``last.ckpt``; in a sweep, by the trial's own
    command), else from the beginning.
    "Without ckpt_path" was said in every case: refused in a folder holding ``best.ckpt`` (``already holds
    a run``), and the loss of the earlier parts of a resumed run."""
    resumed = getattr(trainer, "ckpt_path", None)
    if resumed:
        return (
            f"Nothing of this part was saved: run the same command again to go on from {resumed} (the steps "
            "since are trained again)."
        )
    held = sorted(dirpath.glob("*.ckpt"))
    if held:
        chosen = next((p for p in held if p.name == "best.ckpt"), held[0])
        if in_multirun():  # the sweep's command with this ckpt_path would resume every trial from it
            return f"{chosen}, of the best epoch so far, is kept. " + _trial_resume_advice(
                "Run", dirpath.parent, f"ckpt_path={chosen}"
            )
        # With the time-made name pinned, as _resume_overrides does: the run goes on in its own folder (the
        # same command alone made a new time-named one, leaving this run unfinished beside it).
        resume = _resume_overrides(dirpath.parent, f"ckpt_path={chosen}")
        return (
            f"{chosen}, of the best epoch so far, is kept: run the same command with {resume} to go on from "
            "it (the steps after it are trained again)."
        )
    return "No checkpoint of this run was written yet: run it again without ckpt_path to start it anew."


def _resume_overrides(run_dir: Path, resume: str = "ckpt_path=last") -> str:
    """What to add to the command to resume this run: ``resume`` (``ckpt_path=last``, or a checkpoint of the
    run), with ``run_name=<its folder>`` when its name was the time-made default (pinned by the command line,
    ``cli_run_folder.claim_run_folder``).
    Without the name, ``ckpt_path=last`` resumes the newest run of the same model, data and seed: of runs
    stopped together with the same settings (a job array re-run), each resumed the newest one."""
    from marsunits.run_resume import PINNED_RUN_NAME_ENV

    if os.environ.get(PINNED_RUN_NAME_ENV) == run_dir.name:
        return f"{shlex.quote(f'run_name={run_dir.name}')} {shlex.quote(resume)}"
    return shlex.quote(resume)


def _trial_resume_advice(then: str, trial_dir: Path, resume: str = "ckpt_path=last") -> str:
    """How to go on with the interrupted trial of a sweep: the sweep's command with ``ckpt_path=last`` looked
    for runs of its first trial's job under ``logs/train/*/`` and refused every trial; the trial itself
    resumes alone, in its own folder, with its own overrides and ``resume`` (the checkpoint to go on from)."""
    from hydra.core.hydra_config import HydraConfig

    task = list(HydraConfig.get().overrides.task)
    if any(o.startswith("hparams_search=") for o in task):  # its config also sets the model: kept, as one run
        task.append("hydra.mode=RUN")
    overrides = " ".join(shlex.quote(o) for o in task)
    return (
        f"{then} this trial alone to go on: python train.py {overrides} "
        f"{shlex.quote(f'hydra.run.dir={trial_dir}')} {shlex.quote(resume)} (the sweep's own command starts "
        "its trials anew, in a new folder)."
    )


@contextlib.contextmanager
def _logging_step_as_lightning_restores_it(trainer: pl.Trainer) -> Iterator[None]:
    """Save the logging step (``fit_loop.epoch_loop._batches_that_stepped``, the ``step`` of the CSV rows and
    W&B history) one lower while inside it when the stop came in a batch before its step: Lightning adds one
    to it on every restart but from the end of a batch (its own checkpoints are saved before the batch is
    counted), and the batch the stop cut short is trained again and counted then. Saved as it stood, every
    metric of the resumed run was logged one step to the right of an uninterrupted run's, one more for each
    such stop. With gradient accumulation Lightning adds it, and the batch cut short counts, only where that
    batch is one that steps (``_should_accumulate`` false, as its ``reset`` asks on the restart, from the
    same saved progress): a stop in a batch that only accumulates is saved as it stands. Hand-written, as
    Lightning's ``update_restart_stage`` and ``reset`` read the counters.

    Both names are Lightning's private ones (2.6). Where a Lightning release renames either, the step is
    saved as it stands, with a warning: ``last.ckpt`` is written all the same (an ``AttributeError`` here
    left the run without it), and only the resumed run's logging step may be one to the right.
    """
    loop = trainer.fit_loop.epoch_loop
    total = loop.batch_progress.total
    whole = total.ready == total.started == total.processed  # type: ignore[attr-defined]
    at_batch_end = whole and total.completed in (total.processed, total.processed - 1)  # type: ignore[attr-defined]
    should_accumulate = getattr(loop, "_should_accumulate", None)
    stepped = getattr(loop, "_batches_that_stepped", None)
    if at_batch_end:
        shifted = False  # saved as it stands, whatever Lightning's private names
    elif callable(should_accumulate) and isinstance(stepped, int):
        shifted = not should_accumulate() and stepped > 0
    else:
        shifted = False
        missing = [
            name
            for name, found in (
                ("_should_accumulate()", callable(should_accumulate)),
                ("_batches_that_stepped", isinstance(stepped, int)),
            )
            if not found
        ]
        log.warning(
            "Lightning %s's training loop has no %s (private, read by marsunits as Lightning 2.6 names it): "
            "last.ckpt keeps its logging step as it stands, and a run resumed from it may log its metrics "
            "one step later than a run never stopped; the training itself resumes as usual.",
            pl.__version__,
            " nor ".join(missing),
        )
    if shifted:
        loop._batches_that_stepped -= 1
    try:
        yield
    finally:
        if shifted:
            loop._batches_that_stepped += 1


def _validation_to_run_again(trainer: pl.Trainer) -> None:
    """Record the interrupted validation as "restarted before its first batch was processed", so that a
    resume from the checkpoint saved now runs that epoch's whole validation again.

    Saved as it stood mid-validation, the checkpoint read as a finished training epoch, and Lightning's
    resume went on with the next epoch: the interrupted epoch was never scored, so it could never become
    ``best.ckpt`` (in the last epoch, the run's final weights were never scored at all). Lightning resumes
    an evaluation it finds started but not processed (``_EvaluationLoop.restarted_mid_evaluation``) from
    the batches it completed, and the scores are only whole when they cover every batch, so the progress
    of this validation is set back to its start. Hand-written: Lightning has no public way to say this.
    """
    progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
    before = progress.total.completed - progress.current.completed  # validation batches of earlier epochs
    for counter, base in ((progress.total, before), (progress.current, 0)):
        counter.ready = base + 1
        counter.started = base + 1  # type: ignore[attr-defined]  # a _ProcessedTracker at run time
        counter.processed = base  # type: ignore[attr-defined]
        counter.completed = base
