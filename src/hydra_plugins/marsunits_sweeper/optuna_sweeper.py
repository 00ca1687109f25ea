"""The sweeper of ``hparams_search=optuna`` (``hydra.sweeper._target_``): hydra-optuna-sweeper's
``OptunaSweeper``, whose trials a stop (Ctrl-C, SIGTERM) leaves unfinished are told FAIL in the study
(:mod:`marsunits.optuna_study`). Hydra imports every module of ``hydra_plugins`` at each start: Optuna is
imported only when a study starts."""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class MarsunitsOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's sweeper with stopped trials told FAIL; takes the same settings."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        search_space: Any | None,
        custom_search_space: str | None,
        params: Any | None,
    ) -> None:
        from marsunits.optuna_study import StopFailingOptunaSweeperImpl

        self.sweeper = StopFailingOptunaSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            search_space,
            custom_search_space,
            params,
        )
