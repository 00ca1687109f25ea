"""The Optuna sweeper of ``hparams_search=optuna``: the plugin's (hydra-optuna-sweeper), with the trials a
stop leaves unfinished told failed.

The plugin asks Optuna for a batch of trials (``study.ask``), launches them, and tells each its result
(``study.tell``) once the launcher returns. A stop in a trial (Ctrl-C, SIGTERM: status 130 or 143, which
:mod:`marsunits.sweep_trials` lets end the sweep) leaves the launcher with an exception, so the asked
trials were never told: they stayed RUNNING in the study's storage, forever with a persistent one
(``hydra.sweeper.storage=sqlite:///...``), where a resumed study, ``optuna-dashboard`` and a sampler with
``constant_liar`` take them for trials still running. Optuna's own ``study.optimize`` tells FAIL for a trial
ended by Ctrl-C (Optuna >= 3.0), and so does this sweeper, before the stop goes on. A trial that finished in
this process before the stop came (between two trials: after its end, before the plugin's ``tell``) is told
its value instead (:func:`~marsunits.sweep_trials.finished_value`): it was told FAIL, its value lost to the
study though its run was complete. Written by hand: the plugin gives no hook for it; this subclass records
each batch it asks for, and the job number of its first trial (``_configure_trials``).

A study kept in a database (``hydra.sweeper.storage=sqlite:///logs/optuna.db``) needs SQLAlchemy < 2 with
the Optuna the plugin pins (< 3): on SQLAlchemy 2 its database storage failed before the first trial with
an ``AssertionError`` traceback of Optuna's. pyproject.toml asks for SQLAlchemy < 2; an environment that
has SQLAlchemy 2 all the same is refused in one line naming the ``pip install`` that fixes it
(:func:`prepare_storage`).

The Hydra plugin class itself is ``MarsunitsOptunaSweeper`` of ``hydra_plugins.marsunits_sweeper``
(Hydra instantiates plugins of the ``hydra_plugins`` package only); it imports this module, and so Optuna,
only when a study starts.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import Trial, TrialState
from packaging.version import Version

from marsunits.errors import ConfigError, counted, report_user_errors
from marsunits.user_paths import expand_home

__all__ = [
    "StopFailingOptunaSweeperImpl",
    "check_objective",
    "draw_anew_in_a_resumed_study",
    "fail_unfinished",
    "prepare_storage",
]

log = logging.getLogger(__name__)


class StopFailingOptunaSweeperImpl(OptunaSweeperImpl):
    """The plugin's sweeper, telling FAIL to the trials of its batch that an exception or a stop leaves
    unfinished (RUNNING) before it goes on (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The plugin's settings as given: the plugin's signature is its own to change (a copy of it broke
        # every study on a release that added a setting).
        super().__init__(*args, **kwargs)
        self._asked: list[Trial] = []
        self._first_job = 0
        # Before Hydra's set-up and the study: a traceback of Optuna's was all a user saw.
        self.storage = report_user_errors(lambda: prepare_storage(self.storage), prog="train.py")

    def _configure_trials(self, trials: list[Trial], *args: Any, **kwargs: Any) -> Sequence[Sequence[str]]:
        self._asked = list(trials)  # the batch about to be launched
        self._first_job = int(getattr(self, "job_idx", 0) or 0)  # the launcher numbers its jobs from it
        return super()._configure_trials(trials, *args, **kwargs)

    def sweep(self, arguments: list[str]) -> None:
        report_user_errors(lambda: check_objective(self.config, self.direction), prog="train.py")
        draw_anew_in_a_resumed_study(self.sampler, self.storage, self.study_name)
        try:
            super().sweep(arguments)
        except BaseException:
            fail_unfinished(self._asked, self._first_job)
            raise


def check_objective(config: Any, direction: Any = None) -> None:
    """Refuse a study of a config whose ``optimized_metric`` is null (``train.py -m hydra/sweeper=optuna``
    without ``hparams_search=optuna``, which sets it): ``train.py`` then returns no value, so every trial
    trained in full, was told failed, and the study ended in the sweeper's traceback (``No trials are
    completed yet``). A config without the key (another application's) is left alone. A direction that
    disagrees with the kept checkpoint's monitor (:func:`~marsunits.sweep_trials.objective_name`) is refused
    here too, before the first trial: each trial was refused in turn (three, or with the plugin's
    ``max_failure_rate`` of 0 the first batch, ending in the sweeper's traceback). ``direction``: the
    study's (``hydra.sweeper.direction``).

    Raises:
        ConfigError: in those cases, naming what to give.
    """
    if "optimized_metric" not in config:
        return
    from marsunits.sweep_trials import objective_name

    objective_name(config.optimized_metric, config, direction)
    if config.optimized_metric is None:
        raise ConfigError(
            "optimized_metric is null: an Optuna study (hydra/sweeper=optuna) needs a value from each trial "
            "to optimise, and train.py returns none; use hparams_search=optuna (marsunits' study: it "
            "optimises the metric that chooses best.ckpt), or give optimized_metric=auto "
            "hydra.sweeper.direction=maximize"
        )


def draw_anew_in_a_resumed_study(sampler: Any, storage: Any, study_name: str | None) -> int:
    """Reseed ``sampler`` (randomly: Optuna's ``reseed_rng``) when the study ``study_name`` in ``storage``
    already holds trials, a study resumed by a sweep started again; returns how many it holds.

    A sampler given a seed (``hparams_search=optuna``'s TPE, 1234) drew in the resumed study the same
    values it drew in the first run: while the study was in its random start-up trials, each of the first
    run's trials was trained again. A study in memory, or a sampler without a seed of its own (the grid
    sampler, given to the sweeper unmade), is left alone.
    """
    if storage is None or study_name is None or not hasattr(sampler, "reseed_rng"):
        return 0
    try:
        earlier = len(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))
    except KeyError:  # no such study yet: the sweeper makes it
        return 0
    if earlier:
        sampler.reseed_rng()
        sweeps, them = ("an earlier sweep", "it") if earlier == 1 else ("earlier sweeps", "them")
        log.info(
            "the study %s holds %s: it goes on with %s, its sampler reseeded so as not to draw the earlier "
            "values again",
            study_name,
            f"{counted(earlier, 'trial')} of {sweeps}",
            them,
        )
    return earlier


def prepare_storage(storage: Any) -> Any:
    """Make ready a database ``storage`` (a URL: ``sqlite:///logs/optuna.db``; Optuna reads every URL but
    ``redis://...`` as one) and return the storage to give Optuna: refuse it where the installed Optuna
    cannot use it, Optuna before 3.1 (the plugin pins < 3) with SQLAlchemy 2, whose storage failed with an
    ``AssertionError`` before the first trial; make the folder of a SQLite file (relative to the current
    folder, as SQLite reads it), where SQLite failed with ``unable to open database file`` naming none.

    A SQLite path starting with ``~`` (``sqlite:///~/studies/optuna.db``) is read as the home folder, as the
    command line's other paths are (:func:`~marsunits.user_paths.expand_home`), and the URL returned names
    it: SQLite does not read ``~``, and the folder made was one named ``~`` in the current folder. Any other
    storage is returned as given.

    Raises:
        ConfigError: in those cases, naming the value and what to do.
    """
    if not isinstance(storage, str) or storage.startswith("redis"):
        return storage  # in memory (None), a storage object, or Redis: no SQLAlchemy
    if Version(optuna.__version__) < Version("3.1") and Version(sqlalchemy.__version__) >= Version("2"):
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: the installed Optuna {optuna.__version__} "
            "(hydra-optuna-sweeper needs Optuna < 3) cannot keep a study in a database with SQLAlchemy "
            f"{sqlalchemy.__version__}; install SQLAlchemy 1.4, as marsunits asks: {sys.executable} -m pip "
            'install "sqlalchemy<2" "alembic<1.20" (alembic 1.20 needs SQLAlchemy 2), or leave '
            "hydra.sweeper.storage out for a study kept in memory"
        )
    if not re.match(r"sqlite(\+\w+)?:", storage):  # sqlite:///..., sqlite+pysqlite:///...
        return storage
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: not a database URL ({exc}); a SQLite file is named "
            "sqlite:///<path> (three slashes, then the path: sqlite:///logs/optuna.db, or "
            "sqlite:////home/me/optuna.db for an absolute one)"
        ) from exc
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return storage
    if database.startswith("~"):
        database = str(expand_home(database))
        if not database.startswith("~"):  # ~name naming no user stays as it is
            storage = url.set(database=database).render_as_string(hide_password=False)
    folder = Path(database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: cannot make the database's folder {folder} "
            f"({exc.strerror or exc}); name a file in a folder you can write, e.g. "
            "hydra.sweeper.storage=sqlite:///logs/optuna.db"
        ) from exc
    return storage


def fail_unfinished(trials: Sequence[Trial], first_job: int | None = None) -> list[int]:
    """Tell FAIL to those of ``trials`` still RUNNING in their study's storage; returns their numbers.

    ``first_job``: the Hydra job number (``hydra.job.num``) of ``trials[0]``, the others following it, as the
    launcher numbers a batch. A trial of them that finished in this process with a value
    (:func:`~marsunits.sweep_trials.finished_value`; a stop between its end and the sweeper's record of it)
    is told that value instead, and not counted among those returned.

    A storage that cannot be written now (a database gone) is said in a warning: the stop that called this
    goes on all the same.
    """
    from marsunits.sweep_trials import finished_value

    failed: list[int] = []
    for index, trial in enumerate(trials):
        try:
            if trial.study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                continue  # told by the sweeper (its value, or its failure)
            finished, value = finished_value(first_job + index) if first_job is not None else (False, None)
            if finished and value is not None and len(trial.study.directions) == 1:
                trial.study.tell(trial, value)  # as the sweeper would have, had the stop come later
                continue
            trial.study.tell(trial, state=TrialState.FAIL)
        except Exception as exc:  # noqa: BLE001 - the stop is what the user sees; this is said beside it
            log.warning("trial %d of the study is left RUNNING in its storage: %s", trial.number, exc)
            continue
        failed.append(trial.number)
    if failed:
        log.info("the study's unfinished trials %s are told failed: the sweep was stopped", failed)
    return failed
