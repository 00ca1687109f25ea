"""Experiment tracking: logger set-up with an offline W&B fallback, W&B dashboard callbacks, prediction runs.

Entry points for ``marsunits.training.run`` / ``marsunits.inference.run``:
:func:`prepare_loggers`, :func:`finish_loggers`, :func:`log_prediction_run`. The callbacks
(:mod:`marsunits.tracking.callbacks`) are configured in ``configs/callbacks/wandb.yaml``.
"""

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
