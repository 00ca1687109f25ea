"""The sweeper of ``hparams_search=optuna`` (``hydra.sweeper._target_``), and of ``hydra/sweeper=optuna``
given directly with marsunits' configs (:mod:`hydra_plugins.marsunits_sweeper.optuna_choice`):
hydra-optuna-sweeper's ``OptunaSweeper``, whose trials a stop (Ctrl-C, SIGTERM) leaves unfinished are told
FAIL in the study (:mod:`marsunits.optuna_study`). Hydra imports every module of ``hydra_plugins`` at each
start: Optuna is imported only when a study starts."""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class MarsunitsOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's sweeper with stopped trials told FAIL; takes the same settings, passed through
    as given (Hydra gives every field of the plugin's registered config: a copied signature broke every study
    on a plugin release that adds one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from marsunits.cli_sweeps import study_package_refusal
        from marsunits.errors import ConfigError, report_user_errors

        def check() -> None:  # a study composed without train.py's checks (an experiment's defaults)
            refusal = study_package_refusal()
            if refusal is not None:
                raise ConfigError(refusal)

        report_user_errors(check, prog="train.py")
        from marsunits.optuna_study import StopFailingOptunaSweeperImpl

        self.sweeper = StopFailingOptunaSweeperImpl(*args, **kwargs)
