"""Experiment tracking: logger set-up with an offline W&B fallback, W&B dashboard callbacks, prediction runs.

Entry points for ``marsunits.training.run`` / ``marsunits.inference.run``:
:func:`prepare_loggers`, :func:`finish_loggers`, :func:`log_prediction_run`. The callbacks
(:mod:`marsunits.tracking.callbacks`) are configured in ``configs/callbacks/wandb.yaml``. The checks of the
W&B settings that need no logger: :mod:`marsunits.tracking.wandb_checks`.
"""

from typing import TYPE_CHECKING

import lazy_loader

# Loaded on first use (lazy_loader): the logger set-up and the callbacks import Lightning and torch (seconds
# of CPU), and predict.py's checks before Hydra import marsunits.tracking.wandb_checks, which needs neither: a
# refusal of logger=wandb's mode paid those seconds for one line.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "callbacks": ["WandbConfusionMatrix", "WandbRunInfo", "WandbValidationImages", "find_wandb_logger"],
        "git_info": ["git_info"],
        "prediction_run": ["log_prediction_run"],
        "wandb_setup": [
            "finish_loggers",
            "prepare_loggers",
            "resolve_wandb_mode",
            "run_context",
            "run_from_checkpoint",
            "run_id_from_checkpoint",
            "wandb_credentials_available",
        ],
    },
)
__all__ = [
    "WandbConfusionMatrix",
    "WandbRunInfo",
    "WandbValidationImages",
    "find_wandb_logger",
    "finish_loggers",
    "git_info",
    "log_prediction_run",
    "prepare_loggers",
    "resolve_wandb_mode",
    "run_context",
    "run_from_checkpoint",
    "run_id_from_checkpoint",
    "wandb_credentials_available",
]

if TYPE_CHECKING:  # the names for type checkers
    from marsunits.tracking.callbacks import (
        WandbConfusionMatrix,
        WandbRunInfo,
        WandbValidationImages,
        find_wandb_logger,
    )
    from marsunits.tracking.git_info import git_info
    from marsunits.tracking.prediction_run import log_prediction_run
    from marsunits.tracking.wandb_setup import (
        finish_loggers,
        prepare_loggers,
        resolve_wandb_mode,
        run_context,
        run_from_checkpoint,
        run_id_from_checkpoint,
        wandb_credentials_available,
    )
