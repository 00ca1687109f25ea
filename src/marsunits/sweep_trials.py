"""What a failing trial does to a sweep (``train.py -m ...`` or ``hparams_search=optuna``).

A single run that fails on a user error prints one line and exits with status 2
(:func:`~marsunits.errors.report_user_errors`). Inside a sweep that exit ended the whole process: the
remaining trials never ran, and an Optuna study with in-memory storage was lost. A trial is one job of
many, so here its failure is reported the same way and then raised as a :class:`TrialFailedError`, which
Hydra's launcher records as that job's failure while it runs the other jobs:

* a plain grid (Hydra's basic sweeper and launcher, trials one after another in this process) runs every
  other trial and then ends with one line naming the failed trials, status 1 (:func:`run_trial`,
  :func:`end_sweep`); Hydra's own report of a failed job was a traceback of its launcher;
* the Optuna sweeper records the trial as failed and samples on (``hydra.sweeper.max_failure_rate: 1.0``
  in ``configs/hparams_search/optuna.yaml``; its default, 0, stops the study at the first failure).
  NaN is no way to say "failed" to it: the installed plugin (1.2) then tells Optuna the value and the
  failure both, which Optuna refuses, and the study stops with a traceback.

Ctrl-C and SIGTERM still stop the whole sweep, as they should, in a trial or between two
(:func:`stopped_sweep`: one line naming the trials that finished, with their folders, those that failed or
were stopped, and those that did not start; status 130 or 143). So does a mistake that every trial shares.
The trials' config values are checked before the sweep starts
(:func:`~marsunits.cli_sweeps.sweep_refusal`: one line and status 2, before any trial folder is made,
when every trial's config of a grid is refused, or the same refusal is met whatever the swept values of an
Optuna study or a large grid). Any other (a data path, swept values that each fail their own way): once the
first :data:`FAILURES_BEFORE_STOP` trials have all failed on user errors, none having finished, the sweep
stops with status 2 instead of running every trial to the same error (an Optuna study of 50 trials, or a
long grid, each failing in seconds). A diverged trial
(:class:`~marsunits.errors.DivergedError`) does not count towards that: a learning rate too high for the
network is what a sweep explores, not a mistake in the command.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from marsunits.errors import (
    DivergedError,
    TerminatedError,
    readable,
    recorded_for_torchrun,
    report_user_errors,
    sigterm_raises,
    some_of,
    stop_said,
    stop_words,
)

__all__ = [
    "FAILURES_BEFORE_STOP",
    "TrialFailedError",
    "end_sweep",
    "finished_value",
    "in_multirun",
    "report_trial_errors",
    "run_trial",
    "stopped_sweep",
    "sweep_objective",
]

T = TypeVar("T")

#: Exit statuses of a stop the user asked for (Ctrl-C, SIGTERM): they end the sweep too.
_STOPS = (130, 143)

#: Trials that fail on user errors, none having finished before them, after which the sweep stops.
FAILURES_BEFORE_STOP = 3

#: This process's trials so far (Hydra's basic launcher and the Optuna sweeper run them one after another).
_tally = {"finished": 0, "failed": 0}

#: The trials of a grid run in this process so far, and those of them that failed (:func:`run_trial`).
_grid: dict[str, list[str]] = {"run": [], "failed": []}


@dataclass
class _Started:
    """A trial of a sweep this process started (:func:`run_trial`): its number (``hydra.job.num``), how it is
    named in messages, its folder, and how it ended: ``finished`` (with its ``value``, None when nothing is
    optimised), ``failed``, ``stopped`` (Ctrl-C, SIGTERM), or ``running``."""

    num: int
    name: str
    folder: Path
    study_trials: int | None  # an Optuna study's hydra.sweeper.n_trials; None: a grid, another sweeper
    outcome: str = "running"
    value: float | None = None
    #: The trial's own overrides (``model.lr=0.001``, ...), and once it finished the score of its kept
    #: checkpoint (:func:`_kept_score`: metric, value, ``max``/``min``) and that checkpoint's file.
    overrides: tuple[str, ...] = ()
    score: tuple[str, float, str] | None = None
    best_ckpt: str | None = None


#: Every trial of a sweep started in this process so far, in order (grids and Optuna studies alike).
_started: list[_Started] = []

#: Whether :func:`stopped_sweep` has said how the sweep was stopped (:func:`end_sweep` says nothing more).
_stop_said = {"said": False}

#: How the run of a command that is not a sweep ended (:func:`run_trial`): "" before it began, "running",
#: "finished", "failed" or "stopped"; a stop after it finished is said so (:func:`stopped_sweep`).
_single_run = {"outcome": ""}


class TrialFailedError(Exception):
    """One trial of a sweep failed (on a user error said above it, or without a value to optimise)."""


def in_multirun() -> bool:
    """Whether this process runs the jobs of a Hydra sweep (``-m`` or a config with ``hydra.mode``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _trial() -> str:
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    return f"trial {hydra.job.num} ({' '.join(hydra.overrides.task)})"


def run_trial(fn: Callable[[], Mapping[str, Any]], cfg: Mapping[str, Any], prog: str) -> float | None:
    """``train.py``'s task: run ``fn`` (the training, returning its metrics) as :func:`report_trial_errors`
    does and return :func:`sweep_objective` of its metrics. Under torchrun the error that ends the run (a
    user's one-line error too) is also written to the agent's error file
    (:func:`~marsunits.errors.recorded_for_torchrun`), so torchrun's failure summary names each failing
    rank's own error, where it said ``error_file: <N/A>``.

    In a grid whose trials run one after another in this process (Hydra's basic sweeper and launcher), a
    failed trial is said in one line and recorded, and the job returns None: raised to Hydra, it ended
    the grid with a traceback of Hydra's launcher. :func:`end_sweep`, after the sweep, names the failed
    trials and exits with status 1. Other sweepers and launchers get :class:`TrialFailedError`: Optuna
    records the trial as failed, and a launcher in other processes reports it to this one.

    Raises:
        SystemExit: as :func:`report_trial_errors`.
        TrialFailedError: a trial failed, outside such a grid.
    """
    grid = _grid_in_this_process()
    if grid:
        _grid["run"].append(_trial())
    started = _start_trial()
    _ended(started, "running")

    def checked_fn() -> Mapping[str, Any]:
        # A study whose direction disagrees with the metric's was refused only after each trial had trained.
        objective_name(cfg.get("optimized_metric"), cfg)
        return fn()

    try:
        # Under torchrun, the error that ends this rank also goes to its agent's error file (its summary).
        metrics = report_trial_errors(recorded_for_torchrun(checked_fn), prog)
        value = sweep_objective(metrics, cfg.get("optimized_metric"), cfg, prog)
    except TrialFailedError as exc:
        _ended(started, "failed")
        if not grid:
            raise
        _grid["failed"].append(_trial())
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    except Exception:
        _ended(started, "failed")
        if grid:  # not a user error: Hydra shows its traceback once the other trials have run
            _grid["failed"].append(_trial())
        raise
    except BaseException as stop:
        _ended(started, "stopped" if _stop_status(stop) else "failed")  # SystemExit(2): a failed trial
        raise
    _ended(started, "finished", value)
    if started is not None:
        started.score = _kept_score(metrics, cfg)
        best = metrics.get("best_ckpt")
        started.best_ckpt = best if isinstance(best, str) and best else None
    return value


def _kept_score(metrics: Mapping[str, Any], cfg: Mapping[str, Any]) -> tuple[str, float, str] | None:
    """The metric that chose a finished trial's kept checkpoint (``callbacks.model_checkpoint.monitor``,
    else ``val/miou``), its value in ``metrics`` and its mode (``max``, ``min``); None where not a finite
    number (a run without validation)."""
    from omegaconf import DictConfig, OmegaConf

    node = (
        OmegaConf.select(cfg, "callbacks.model_checkpoint", default=None)
        if isinstance(cfg, DictConfig)
        else None
    )
    name = str(node.get("monitor") or "val/miou") if node is not None else "val/miou"
    mode = str(node.get("mode", "max")) if node is not None else "max"
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return name, float(value), mode


def _start_trial() -> _Started | None:
    """Record the trial of a sweep now starting in :data:`_started` (None outside a sweep)."""
    if not in_multirun():
        return None
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    planned = _sweeper_setting("n_trials")
    optuna = str(_sweeper_setting("_target_")).endswith("OptunaSweeper")  # the plugin's, or ours
    study_trials = planned if optuna and isinstance(planned, int) else None
    started = _Started(
        int(hydra.job.num),
        _trial(),
        Path(str(hydra.runtime.output_dir)),
        study_trials,
        overrides=tuple(hydra.overrides.task),
    )
    _started.append(started)
    return started


def _ended(started: _Started | None, outcome: str, value: float | None = None) -> None:
    """Record how a trial of a sweep (``started``), or the run outside a sweep (None), ended."""
    if started is not None:
        started.outcome, started.value = outcome, value
    else:
        _single_run["outcome"] = outcome


def finished_value(num: int) -> tuple[bool, float | None]:
    """Whether trial ``num`` (``hydra.job.num``) of the sweep finished in this process, and the value it
    returned to the sweeper (None when nothing is optimised). A stop between that trial's end and the
    sweeper's record of it (:mod:`marsunits.optuna_study`) tells the study this value, not a failure."""
    for started in _started:
        if started.num == num and started.outcome == "finished":
            return True, started.value
    return False, None


def _stop_status(stop: BaseException) -> int | None:
    """130 or 143 when ``stop`` is a stop the user asked for (Ctrl-C, SIGTERM: raised, or the status a
    trial's report of it exits with), else None."""
    if isinstance(stop, (KeyboardInterrupt, TerminatedError)):
        return stop_said(stop)[1]
    if isinstance(stop, SystemExit) and stop.code in _STOPS:
        return int(stop.code)  # type: ignore[arg-type]
    return None


@contextlib.contextmanager
def stopped_sweep(prog: str) -> Iterator[None]:
    """Around ``train.py``'s ``main()``: SIGTERM raises :class:`~marsunits.errors.TerminatedError` (the
    handler before it is restored at the end), and a sweep stopped by Ctrl-C or SIGTERM once it has started
    trials ends with one line saying which trials finished (and their folders), which failed or were
    stopped, and which did not start; status 130 or 143.

    A stop inside a trial is reported by the trial (:func:`report_trial_errors`, and the training's line on
    how it goes on) before this line. Between two trials (Hydra's launcher writing the next trial's folder,
    Optuna sampling it), Ctrl-C said ``interrupted (Ctrl-C) before the run started; nothing was written``
    (:func:`~marsunits.errors.quiet_interrupt_at_start`), and SIGTERM, with no handler there, ended the
    process at once with status 143 and no word. A stop before any trial started is left to the caller
    (``quiet_interrupt_at_start``). A command that is not a sweep, stopped after its run finished (Hydra
    ending the job), says so in one line: it was said to be stopped before the run started, nothing written.
    With ``MARSUNITS_TRACEBACK=1`` the stop's traceback follows the line.

    Raises:
        SystemExit: 130 or 143, for a Ctrl-C or SIGTERM between two trials, or after the run finished.
    """
    _single_run["outcome"] = ""  # this command's run has not begun (a test may have run one in-process)
    with sigterm_raises():
        try:
            yield
        except BaseException as stop:
            status = _stop_status(stop)
            if status is not None and not _started and _single_run["outcome"] == "finished":
                # Hydra ending the job (its callbacks, its logs): the run wrote all it writes.
                print(
                    f"{prog}: {stop_words(status)} after the run finished; its outputs are kept",
                    file=sys.stderr,
                )
                if isinstance(stop, SystemExit) or os.environ.get("MARSUNITS_TRACEBACK"):
                    raise
                raise SystemExit(status) from None
            if status is None or not _started:
                raise
            print(readable(_stopped_sweep_line(prog, status)), file=sys.stderr)  # a Latin-1 folder name
            _stop_said["said"] = True
            if isinstance(stop, SystemExit) or os.environ.get("MARSUNITS_TRACEBACK"):
                raise
            raise SystemExit(status) from None


def _stopped_sweep_line(prog: str, status: int) -> str:
    """The line :func:`stopped_sweep` says for a sweep stopped (exit ``status``) after :data:`_started`."""
    how = stop_words(status)
    last = _started[-1]
    by_outcome: dict[str, list[_Started]] = {}
    for started in _started:
        outcome = "stopped" if started.outcome == "running" else started.outcome
        by_outcome.setdefault(outcome, []).append(started)
    planned = last.study_trials
    if last.outcome in ("stopped", "running"):
        where = f"in trial {last.num} of the sweep"
    elif planned is not None and planned <= len(_started):  # the sweeper writing its results
        where = f"after the last trial of the sweep, trial {last.num}"
    else:
        where = f"between two trials of the sweep, after trial {last.num}"
    said = [f"{prog}: {how} {where}"]
    finished = by_outcome.get("finished", [])
    if finished:
        said.append(f"finished: {_numbers(finished)} ({_folders(finished)})")
    else:
        said.append("no trial finished")
    failed = by_outcome.get("failed", [])
    if failed:
        each = "with its error above" if len(failed) == 1 else "each with its error above"
        said.append(f"failed, {each}: {some_of([t.name for t in failed], 3)}")
    stopped = by_outcome.get("stopped", [])
    if stopped:
        said.append(f"stopped: {_numbers(stopped)} ({_folders(stopped)})")
    if planned is not None:
        if planned > len(_started):
            said.append(f"not started: {planned - len(_started)} of the study's {planned} trials")
    else:
        said.append(f"not started: the sweep's trials after trial {last.num}, if any")
    return "; ".join(said)


def _numbers(trials: list[_Started]) -> str:
    """``trial 3`` or ``trials 0, 1, 2`` (the first 20, then ``...``)."""
    nums = [str(t.num) for t in trials]
    return f"trial{'s' if len(nums) > 1 else ''} {some_of(nums, 20)}"


def _folders(trials: list[_Started]) -> str:
    """Where ``trials``' folders are: ``folders 0, 1 in <sweep folder>`` when they share one, else each."""
    parents = {t.folder.parent for t in trials}
    if len(parents) == 1:
        names = some_of([t.folder.name for t in trials], 20)
        return f"folder{'s' if len(trials) > 1 else ''} {names} in {parents.pop()}"
    return f"in {some_of([str(t.folder) for t in trials], 5)}"


def end_sweep(prog: str, ended_by: BaseException | None = None) -> None:
    """After ``main()``: at the end of a grid run in this process, one line giving each finished trial's
    score and the best (:func:`_say_grid_scores`); when trials of it failed (:func:`run_trial`), then say
    which in one line, and exit with status 1, the status Hydra gave such a grid.

    ``ended_by``: what ended the sweep instead of its end (its own status stands; nothing is raised here).
    A stop (Ctrl-C, SIGTERM) names the failed trials of those started, unless :func:`stopped_sweep` has
    named them in its line on the stop (``train.py``); a sweep stopped by the rule of
    :data:`FAILURES_BEFORE_STOP` has said so in its own line; an error that is not a user error (Hydra
    raises it once the other trials have run, with its traceback) counts as a failed trial.

    Raises:
        SystemExit: 1, when a trial failed and ``ended_by`` is None.
    """
    failed, run = list(_grid["failed"]), list(_grid["run"])
    if ended_by is None and run:
        _say_grid_scores(prog, _started[-len(run) :])  # this grid's trials
    _grid["failed"].clear()  # said once
    _grid["run"].clear()
    if not failed or (isinstance(ended_by, SystemExit) and ended_by.code == 2):
        return
    if ended_by is not None and _stop_said["said"]:
        return  # stopped_sweep's line named the failed trials with the others
    # TerminatedError itself: a SIGTERM with MARSUNITS_TRACEBACK=1, which leaves the trial unreported.
    stopped = isinstance(ended_by, (KeyboardInterrupt, TerminatedError)) or (
        isinstance(ended_by, SystemExit) and ended_by.code in _STOPS
    )
    if stopped:
        what = (
            "the only trial the grid started failed"
            if len(run) == 1
            else f"{len(failed)} of the {len(run)} trials the grid started failed"
        )
        ending = f"; the sweep was stopped in trial {len(run) - 1}"
    elif len(run) == 1:
        what, ending = "the grid's only trial failed", ""
    else:
        what = f"{len(failed)} of the grid's {len(run)} trials failed"
        ending = "; the other trials finished" if len(failed) < len(run) else ""
    each = "with its error above" if len(failed) == 1 else "each with its error above"
    folders = "The trial's folder" if len(run) == 1 else "Each trial's folder"
    print(
        f"{prog}: error: {what}, {each}: {some_of(failed, 3)}{ending}. {folders} holds its train.log",
        file=sys.stderr,
    )
    if ended_by is None:
        raise SystemExit(1)


def _say_grid_scores(prog: str, trials: list[_Started]) -> None:
    """At the end of a grid of several ``trials``, one line giving each finished trial's score of its kept
    checkpoint, the trial named by its swept values, and the best trial's ``best.ckpt``: the grid ended
    with its last trial's own lines, and the best was found by opening each trial's ``metrics.json``."""
    scores = [(t, t.score) for t in trials if t.outcome == "finished" and t.score is not None]
    if len(trials) < 2 or not scores:
        return
    name, _, mode = scores[0][1]
    scored = [(t, value) for t, (metric, value, _) in scores if metric == name]
    swept = _swept_overrides([t.overrides for t in trials])
    named = {t.num: " ".join(o for o in t.overrides if o in swept) for t in trials}
    each = ", ".join(
        f"trial {t.num}{f' ({named[t.num]})' if named[t.num] else ''} {value:.4g}" for t, value in scored
    )
    best, _ = (max if mode == "max" else min)(scored, key=lambda scored_trial: scored_trial[1])
    finished = sum(t.outcome == "finished" for t in trials)
    how_many = (
        f"{'the' if finished == len(trials) else f'{finished} of the'} grid's {len(trials)} trials finished"
    )
    print(
        readable(
            f"{prog}: {how_many}; {name} of each one's best.ckpt: {each}. Best: trial {best.num}, "
            f"{best.best_ckpt or best.folder}"
        ),
        file=sys.stderr,
    )


def _swept_overrides(trials: list[tuple[str, ...]]) -> set[str]:
    """The overrides of ``trials`` that not all of them share (``model.lr=0.001``, ``model.lr=0.002``):
    what tells the trials of a grid apart."""
    common = set(trials[0]).intersection(*trials[1:]) if trials else set()
    return {o for overrides in trials for o in overrides if o not in common}


def _grid_in_this_process() -> bool:
    """Whether this is a trial of a sweep run by Hydra's basic sweeper and basic launcher (a plain grid,
    ``train.py -m a=1,2``), whose trials run one after another in this process."""
    if not in_multirun():
        return False
    sweeper, launcher = _sweeper_setting("_target_"), _hydra_setting("launcher._target_")
    return str(sweeper).endswith(".BasicSweeper") and str(launcher).endswith(".BasicLauncher")


def report_trial_errors(fn: Callable[[], T], prog: str) -> T:
    """:func:`~marsunits.errors.report_user_errors`, except that in a sweep a user error fails the trial,
    not the sweep (see the module docstring).

    Raises:
        SystemExit: outside a sweep, as ``report_user_errors``; in one, for Ctrl-C and SIGTERM.
        TrialFailedError: a trial of a sweep failed on a user error (said on the line above).
    """
    try:
        result = report_user_errors(fn, prog)
    except SystemExit as exc:
        if exc.code in _STOPS or not in_multirun():
            raise
        if not _diverged(exc):
            _tally["failed"] += 1
        if _tally["finished"] == 0 and _tally["failed"] >= FAILURES_BEFORE_STOP:
            print(
                f"{prog}: error: {_tally['failed']} trials of this sweep failed on user errors before any "
                "finished, the last with the error above: a mistake every trial shares (a path, a config "
                "value) would fail the rest too, so the sweep stops here. Fix it and start the sweep again "
                "(if it is the swept values that fail, as values of the grid, leave them out of it)",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        _stop_if_no_trial_finished(prog)
        raise TrialFailedError(
            f"{_trial()} failed with the error above; the sweep's other trials run all the same"
        ) from None
    return result


def _stop_if_no_trial_finished(prog: str) -> None:
    """After a failed trial: when it was the last an in-memory Optuna study plans and no trial of the study
    gave a value, say so in one line and exit with status 2. The sweeper then asked Optuna for the best of
    no finished trial, a traceback with status 1. (A study kept in ``storage`` may hold values of earlier
    runs: left to the sweeper.)

    Raises:
        SystemExit: 2, in that case.
    """
    planned = _planned_trials()
    if _tally["finished"] == 0 and planned is not None and _trial_number() >= planned - 1:
        print(
            f"{prog}: error: none of the {planned} trials of this sweep gave a value to optimise (the last "
            "failed as said above), so it has no best trial. Fix what made them fail (a diverged training: "
            "a lower learning-rate range; no validation: limit_val_batches) and start the sweep again",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _planned_trials() -> int | None:
    """The number of trials an in-memory study plans (``hydra.sweeper.n_trials``, the Optuna sweeper), or
    None (another sweeper, or a study kept in ``storage``, which may hold trials of earlier runs)."""
    if _sweeper_setting("storage") is not None:
        return None
    planned = _sweeper_setting("n_trials")
    return planned if isinstance(planned, int) and planned > 0 else None


def _sweeper_setting(key: str) -> Any:
    """``hydra.sweeper.<key>`` of the running Hydra job, or None (no such setting, or no Hydra job)."""
    return _hydra_setting(f"sweeper.{key}")


def _hydra_setting(key: str) -> Any:
    """``hydra.<key>`` of the running Hydra job, or None (no such setting, or no Hydra job)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    return OmegaConf.select(OmegaConf.structured(HydraConfig.get()), key, default=None)


def _trial_number() -> int:
    """This trial's number in the sweep, from 0 (``hydra.job.num``)."""
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.num)


def _diverged(stop: SystemExit) -> bool:
    """Whether the user error behind ``report_user_errors``' exit was a diverged training (its context;
    Hydra's instantiate wraps what a constructor raises, hence one more step)."""
    error = stop.__context__
    if error is not None and not isinstance(error, DivergedError) and error.__cause__ is not None:
        error = error.__cause__
    return isinstance(error, DivergedError)


def sweep_objective(
    metrics: Mapping[str, Any], name: str | None, cfg: Mapping[str, Any] | None = None, prog: str = "train.py"
) -> float | None:
    """The value a sweeper optimises: ``metrics[name]`` (None when nothing is optimised). ``name`` ``auto``
    (``hparams_search=optuna``) is the metric that chooses the kept checkpoint
    (``callbacks.model_checkpoint.monitor`` of ``cfg``, else ``val/miou``; :func:`objective_name`).

    Raises:
        TrialFailedError: in a sweep, when the value is missing or not a finite number (a run whose
            validation never ran): the trial is recorded as failed, not as NaN (see the module docstring).
        SystemExit: 2, when that was the last trial of a study none of whose trials gave a value.
    """
    name = objective_name(name, cfg)
    if not name:
        if in_multirun():
            _tally["finished"] += 1
        return None
    value = metrics.get(name)
    number = float(value) if isinstance(value, (int, float)) else math.nan
    if in_multirun():
        if not math.isfinite(number):
            print(f"{prog}: error: {_trial()} has no finite {name} ({value!r}) to optimise", file=sys.stderr)
            _stop_if_no_trial_finished(prog)
            raise TrialFailedError(f"{_trial()} has no finite {name} ({value!r}) to optimise")
        _tally["finished"] += 1
    return number


def objective_name(name: str | None, cfg: Mapping[str, Any] | None, direction: Any = None) -> str | None:
    """``name``, or for ``auto`` the metric that chooses the kept checkpoint, so that a study optimises what
    ``best.ckpt`` is chosen by (``val/miou_source_mean`` for ``experiment=marsscapes_ai4mars``; the study
    optimised the pooled ``val/miou``): ``callbacks.model_checkpoint.monitor``, else ``val/miou``.

    Raises:
        ConfigError: the metric (``auto``, or a name that is the kept checkpoint's monitor) is minimised
            (``mode: min``, e.g. ``val/loss``) and the study maximises (``hydra.sweeper.direction``), or the
            reverse: it would look for the worst trial (``-m hydra/sweeper=optuna optimized_metric=val/miou``
            minimised the mIoU: the plugin's default direction). ``direction``: the study's, where the
            caller has it (the sweeper, whose process has no Hydra job config); else that of the running
            Hydra job's sweeper.
    """
    if name is None:
        return None
    from omegaconf import DictConfig, OmegaConf

    from marsunits.errors import ConfigError

    node = (
        OmegaConf.select(cfg, "callbacks.model_checkpoint", default=None)
        if isinstance(cfg, DictConfig)
        else None
    )
    monitor = node.get("monitor") if node is not None else None
    if name != "auto" and name != monitor:
        return name  # a metric whose direction the command gives
    if node is None or not monitor:
        return "val/miou"
    mode = str(node.get("mode", "max"))
    direction = _direction_word(direction) if direction is not None else _sweeper_direction()
    if direction is not None and (direction == "maximize") != (mode == "max"):
        what = (
            f"the kept checkpoint's monitor {monitor}" if name == "auto" else "the kept checkpoint's monitor"
        )
        raise ConfigError(
            f"the study {direction}s optimized_metric={name}, {what}, which is chosen with mode={mode}: set "
            f"hydra.sweeper.direction={'maximize' if mode == 'max' else 'minimize'}, or "
            f"optimized_metric=<a metric to {direction}>"
        )
    return str(monitor)


def _sweeper_direction() -> str | None:
    """``hydra.sweeper.direction`` of a running sweep (``maximize``/``minimize``), or None."""
    direction = _sweeper_setting("direction")
    return _direction_word(direction) if direction is not None else None


def _direction_word(direction: Any) -> str | None:
    """``maximize``/``minimize`` of a study's direction (text or Optuna's enum), None for several (a
    multi-objective study)."""
    from omegaconf import ListConfig

    if isinstance(direction, (list, tuple, ListConfig)):
        return None
    return str(direction).lower().split(".")[-1]
