"""Training run: compose-time objects from the Hydra config, fit, validate/test the best model, write metrics.

``train.py`` is a thin wrapper around :func:`run`; tests and notebooks call it with a composed config.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import shlex
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from marsunits.atomic import atomic_write_text
from marsunits.averaging import EMAWeights, averaging_callbacks, check_averages_reachable, drop_averages
from marsunits.data.io import ImageReadError
from marsunits.errors import (
    ConfigError,
    DataError,
    TerminatedError,
    forget_told_stop,
    say_told_stop,
    sigterm_raises,
    some_of,
)
from marsunits.fine_tuning import evaluation_model_settings, initialise_from_checkpoint, read_source
from marsunits.lightning_logging import (
    _quiet_average_not_restored,
    _quiet_averaging_taken_over,
    _quiet_lightning_adverts,
    _quiet_lightning_deprecations,
    _quiet_logging_interval,
    _quiet_monitor_before_validation,
    _quiet_resumed_folder,
    log_lightning_once,
)
from marsunits.progress_bar import run_progress_bar
from marsunits.run_checks import check_config_values, evaluated_subclasses_refusal, subclasses_mismatch
from marsunits.run_folder_claim import claimed_run_folder
from marsunits.run_metrics import (
    _earlier_metrics,
    _earlier_record,
    _json_safe,
    _mark_earlier_metrics_outdated,
    _scalar_metrics,
    _scored_checkpoint,
    write_metrics,
)
from marsunits.run_metrics import read_metrics as read_metrics  # documented there (docs/training.md)
from marsunits.run_resume import checked_start
from marsunits.slurm_world import launch_problem
from marsunits.tracking import finish_loggers, prepare_loggers
from marsunits.training_extent import barely_trained, barely_trained_warning
from marsunits.user_paths import expand_home

log = logging.getLogger(__name__)


def _check_monitor_has_sources(cfg: DictConfig, datamodule: Any) -> None:
    """Refuse a best-checkpoint monitor of per-source means (``val/miou_source_mean``) when the run
    validates on one loader: the metric is never logged, and the run used to stop at its first validation,
    after training."""
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor", default=None)
    if isinstance(monitor, str) and monitor.endswith("miou_source_mean"):
        loaders = len(getattr(datamodule, "val_names", None) or [])
        if loaders < 2:
            raise ConfigError(
                f"callbacks.model_checkpoint.monitor={monitor} averages the validation mIoU of each data "
                f"source, but this run validates on {loaders} loader (one source, or "
                "data.separate_val=false): set data.separate_val=true, or add "
                "callbacks.model_checkpoint.monitor=val/miou"
            )


def _warn_without_checkpoints(cfg: DictConfig) -> None:
    """Say before training that a callbacks list without ``default`` keeps no ``best.ckpt`` or ``last.ckpt``.

    ``callbacks=ema`` (for ``'callbacks=[default,wandb,ema]'``) replaces the list: the run ended with status 0
    and ``best_ckpt`` and ``last_ckpt`` null, with only Lightning's own ``epoch=N-step=M.ckpt``, nothing for
    ``ckpt_path=last`` to resume and no checkpoint on Ctrl-C. Not refused: ``callbacks=[]`` is a way to train
    without the checkpoints. A list that keeps ``last.ckpt`` all the same (``callbacks=[wandb,recovery]``:
    a callback with ``save_last``) is told it keeps no ``best.ckpt`` only, not that nothing can be resumed.
    """
    node = cfg.get("callbacks")
    if isinstance(node, DictConfig) and "model_checkpoint" in node:
        return
    chosen = sorted(node) if isinstance(node, DictConfig) else []
    keeps_last = isinstance(node, DictConfig) and any(
        isinstance(value, DictConfig) and bool(value.get("save_last")) for value in node.values()
    )
    kept = (
        "keeps no best.ckpt (last.ckpt is kept)"
        if keeps_last
        else "keeps no best.ckpt or last.ckpt (nothing for ckpt_path=last to resume)"
    )
    log.warning(
        "callbacks %s have no model_checkpoint: this run %s. To add callbacks to the defaults, list them "
        "with them: 'callbacks=[default,wandb,ema]'",
        chosen,
        kept,
    )


def _check_monitor_is_logged(cfg: DictConfig, datamodule: Any, task: Any) -> None:
    """Refuse a best-checkpoint monitor or a sweep's ``optimized_metric`` under ``val/``, ``test/`` or
    ``train/`` that the task never logs (``callbacks.model_checkpoint.monitor=val/mIoU``): Lightning's
    checkpoint stopped the run at its first validation, after an epoch or more of training, and every trial
    of a sweep trained to its end before it failed for want of a value. The names are those of
    :class:`~marsunits.task.SegmentationTask` for this data's validation loaders (``datamodule.val_names``;
    ``test/`` has the same); other names (a callback's own metric) are left to Lightning."""
    sources = list(getattr(datamodule, "val_names", None) or [])
    per_prefix = ["miou", "pixel_acc", "boundary_f1", "contact_distance_px"]
    per_prefix += [f"iou_{name}" for name in task.hparams.get("class_names", [])]
    logged = ["train/loss", *(f"val/{m}" for m in per_prefix)]
    if len(sources) > 1:  # the loss is pooled per source (task._eval_step), the classes' mean over sources
        logged.append("val/miou_source_mean")
        logged += [f"val/{s}/{m}" for s in sources for m in [*per_prefix, "loss", "miou_labelled_classes"]]
    else:
        logged.append("val/loss")
    stops = "no best.ckpt could be chosen: the run would stop at its first validation"
    fails = "a sweep's trials would each train and then fail with no value to optimise"
    for key, why in (("callbacks.model_checkpoint.monitor", stops), ("optimized_metric", fails)):
        name = OmegaConf.select(cfg, key, default=None)
        if not isinstance(name, str) or not name.startswith(("val/", "test/", "train/")):
            continue  # null, auto (the monitor), or a metric of another callback
        stage = "test" if name.startswith("test/") else "val"
        known = [m.replace("val/", f"{stage}/", 1) for m in logged]
        if name in known:
            continue
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean {key}={guess[0]}? " if guess else ""
        raise ConfigError(
            f"{key}={name} is not a metric this run logs ({why}): {hint}The metrics: {some_of(known, 12)}"
        )


def _note_seen_sols(datamodule: Any, what: str, task: Any) -> None:
    """Tell the datamodule which sols and image files the network just loaded has trained on, so its
    ``setup`` refuses to validate on them (``MarsDataModule.sols_seen_by`` and ``images_seen_by``); other
    datamodules have no such lists."""
    seen = getattr(datamodule, "sols_seen_by", None)
    if isinstance(seen, list) and task.trained_sols:
        seen.append((what, task.trained_sols))
    images = getattr(datamodule, "images_seen_by", None)
    if isinstance(images, list) and task.trained_image_keys:
        images.append((what, frozenset(task.trained_image_keys)))


def _fast_dev_run_without_loggers(cfg: DictConfig) -> bool:
    """Whether the run is a ``trainer.fast_dev_run`` given loggers, which are then not started (said in one
    line): Lightning logs nothing in that mode, and a logger chosen on the command line
    (``debug=fdr logger=wandb``) started an empty W&B run in the project for each wiring check."""
    fast = OmegaConf.select(cfg, "trainer.fast_dev_run", default=False)
    given = [str(name) for name, node in (cfg.get("logger") or {}).items() if node]
    if fast is False or fast is None or fast == 0 or not given:
        return False
    log.info(
        "trainer.fast_dev_run: no logger started (%s; Lightning logs nothing in this mode); metrics.json is "
        "still written",
        ", ".join(given),
    )
    return True


def check_subclasses_match(task: Any, datamodule: Any) -> None:
    """Refuse a network whose outputs are not what the training masks hold.

    ``model.subclasses`` reads ``data.subclasses`` in every model config; set on the model alone, the network
    would get sub-class outputs while the masks hold project ids (or the reverse) and silently learn the
    wrong classes.

    Raises:
        ConfigError: the two differ; the message says which keys to set.
    """
    mismatch = subclasses_mismatch(task.hparams.get("subclasses"), getattr(datamodule, "subclasses", None))
    if mismatch is not None:
        raise ConfigError(mismatch)


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group mapping (callbacks, loggers) that has a ``_target_``."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def build_trainer(trainer_cfg: DictConfig, callbacks: list[Any], loggers: list[Any]) -> pl.Trainer:
    """The Lightning trainer of ``trainer_cfg``; with ``sync_batchnorm``, timm's batch norms keep their
    activations when synchronised (:class:`~marsunits.models.sync_batchnorm.TimmSyncBatchNorm`: Lightning's
    own conversion dropped them under ``trainer=ddp``)."""
    from marsunits.models.sync_batchnorm import layer_sync_plugins

    extra = layer_sync_plugins(trainer_cfg)
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, **extra)


class LogWithinEpoch(pl.Callback):
    """Lower ``trainer.log_every_n_steps`` to the optimiser steps of an epoch where it exceeds them, as
    Lightning's warning of such a run advises, once they are known (after the training loader is built).

    Why: the README's quick check of real data (``data.samples_per_epoch=16``, 2 batches of 8) logs every 10
    steps (``configs/trainer/cpu.yaml``), so its one epoch never logged ``train/loss`` to the CSV or W&B, and
    Lightning printed "The number of training batches (2) is smaller than the logging interval
    Trainer(log_every_n_steps=10)", read as something wrong.
    :func:`~marsunits.lightning_logging._quiet_logging_interval` silences that warning around the fit this
    callback runs in: the interval it asks for is given. 0 (no logging) and an interval within the epoch are
    left as they are; ``config.yaml`` keeps the value given.

    The interval counts optimiser steps (Lightning logs at every ``log_every_n_steps``-th step), so an
    epoch's is its batches over ``trainer.accumulate_grad_batches``: lowered to its batches, a run of 4
    batches accumulated 2 by 2 logged every second epoch, and its first epoch nothing.
    """

    def __init__(self) -> None:
        self._given: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # An attribute Lightning's logger connector sets on the trainer at run time (not in its type).
        now = int(trainer.log_every_n_steps)  # type: ignore[attr-defined]
        if self._given is None:
            self._given = now
        batches = trainer.num_training_batches
        # The optimiser steps of an epoch: its last batch steps whatever the accumulation (Lightning's rule).
        steps = (
            math.ceil(batches / max(1, int(trainer.accumulate_grad_batches))) if math.isfinite(batches) else 0
        )
        wanted = steps if self._given > 0 and 0 < steps < self._given else self._given  # inf stays
        if wanted != now and wanted < self._given:
            log.info(
                "trainer.log_every_n_steps=%d is more than the %d optimiser steps of an epoch: logging "
                "every %d steps",
                self._given,
                wanted,
                wanted,
            )
        trainer.log_every_n_steps = wanted  # type: ignore[attr-defined]


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) as the config says; return the metrics also written to ``metrics.json``.

    Args:
        cfg: The composed ``train.yaml`` config (with its ``paths`` resolved to real folders).

    Returns:
        Dict with final ``val/*`` metrics of the best checkpoint, ``test/*`` metrics, ``best_ckpt``,
        ``last_ckpt``, ``seconds`` (wall-clock time of this command) and, when training, ``seconds_total``
        (of the whole run: a resumed run adds the parts before it, each up to its last checkpoint).

    Raises:
        ConfigError: Among others, another ``train.py`` is running in the same run folder
            (:func:`~marsunits.run_folder_claim.claimed_run_folder`).
    """
    forget_told_stop()  # a stop of this run is said in its own line, not one of an earlier run in the process
    # SIGTERM (a scheduler's time limit) during the set-up or the test is reported as during training, where
    # Lightning's own handler stops at a step boundary: it used to end the run silently before that.
    with (
        claimed_run_folder(Path(cfg.paths.output_dir)),
        sigterm_raises(defer_to_later_handlers=True),
        warnings.catch_warnings(),
        _quiet_lightning_adverts(),
    ):
        _quiet_lightning_deprecations()
        return _run(cfg)


def _run(cfg: DictConfig) -> dict[str, Any]:
    """:func:`run`, in a run folder this process holds."""
    start = time.perf_counter()
    log_lightning_once()
    check_config_values(cfg)
    world_problem = launch_problem(cfg.trainer)
    if world_problem is not None:  # on every rank, before any of them waits for the others
        raise ConfigError(world_problem)
    output_dir = Path(cfg.paths.output_dir)
    training = bool(cfg.get("train", True))
    ckpt_path, evaluated = checked_start(cfg)

    evaluated_task = None
    if evaluated is not None:
        evaluated_task = read_source(evaluated[0], evaluated[1])
        _adopt_evaluated_network(cfg, evaluated_task, evaluated[0])

    pl.seed_everything(cfg.seed, workers=True)

    if training:
        _warn_without_checkpoints(cfg)
    datamodule = instantiate(cfg.data)
    if training:
        _check_monitor_has_sources(cfg, datamodule)
    task = instantiate(cfg.model)
    _check_network_fits_data(cfg, task, datamodule, training)
    if evaluated is not None:  # before its weights are loaded, in the words of the check before Hydra
        trained = getattr(evaluated_task, "hparams", {}).get("subclasses")
        refused = evaluated_subclasses_refusal(
            evaluated[1], evaluated[0], trained, task.hparams.get("subclasses")
        )
        if refused is not None:
            raise ConfigError(refused)
    if ckpt_path:
        resumed = _checked_resume(cfg, task, datamodule, ckpt_path)
    init_ckpt = _start_weights(cfg, task, datamodule, evaluated, evaluated_task, ckpt_path, output_dir)
    _check_split_and_labels(cfg, datamodule, training)
    _write_run_config(cfg, output_dir)
    trainer, loggers = _trainer_and_loggers(cfg, ckpt_path)
    # A resume with the other EMA class than its run's takes the average over, at the fit and at the
    # validation and test of a best.ckpt carried over from the run: Lightning's "Please add" is not true.
    _quiet_averaging_taken_over(
        (c.state_key for c in getattr(trainer, "callbacks", []) if isinstance(c, WeightAveraging)),
        (EMA_STATE_KEY, LIGHTNING_EMA_STATE_KEY),
    )
    _quiet_average_not_restored()  # the validation and test of best.ckpt score its average (drop_averages)

    status = "failed"
    seconds_before = 0.0
    # The checkpoint an earlier part's metrics.json scored, as it is before this part trains: a stop marks
    # that file outdated only if this part replaced it (a stop before any new best.ckpt leaves it true).
    scored = _scored_checkpoint(output_dir, str(ckpt_path), resumed.steps) if training and ckpt_path else None
    try:
        metrics: dict[str, Any] = {}
        if training:
            seconds_before = _fit(trainer, task, datamodule, ckpt_path, output_dir, start, metrics)
        best, test_is_val = _score_kept_checkpoint(cfg, trainer, task, datamodule, loggers, training, metrics)
        status = "success"
    except SIGTERMException:
        # Lightning's stop on SIGTERM, in fit (last.ckpt saved on the way) or while the kept checkpoint is
        # validated or tested: a SystemExit without a code, so status 0 and no word, as if finished.
        raise TerminatedError from None  # reported with status 143
    except SystemExit as exc:
        # Lightning turns Ctrl-C into a plain SystemExit(1) after its shutdown, in fit and after it alike.
        if type(exc) is SystemExit and exc.code == 1 and trainer.interrupted:
            raise KeyboardInterrupt from None  # reported as an interrupt (status 130)
        raise
    finally:
        try:
            finish_loggers(loggers, status)  # raises a stop (SIGTERM, Ctrl-C) while they close, once closed
        finally:
            try:
                if status != "success" and training and ckpt_path and getattr(rank_zero_only, "rank", 0) == 0:
                    _mark_earlier_metrics_outdated(output_dir, sys.exc_info()[1], scored, trainer.global_step)
            finally:
                # The stop's line (InterruptCheckpoint: the step, last.ckpt, ckpt_path=last) after what the
                # loggers print as they close (an offline W&B run's sync command): the last line a user reads.
                say_told_stop()

    result: dict[str, Any] = {k: _json_safe(v) for k, v in sorted(metrics.items())}
    result["best_ckpt"] = best
    # True: no test split of its own (real data), so test/* are the kept checkpoint's val/* scores.
    result["test_is_validation"] = test_is_val
    last = output_dir / "checkpoints" / "last.ckpt"
    result["last_ckpt"] = str(last) if last.is_file() else None
    if init_ckpt:
        result["init_ckpt"] = str(expand_home(init_ckpt).resolve())  # absolute, as best_ckpt
    if evaluated is not None:
        result["evaluated_ckpt"] = str(Path(evaluated[0]).resolve())
    result["seconds"] = round(time.perf_counter() - start, 2)
    if training:  # every part of a resumed run (each as far as its last checkpoint), this one in full
        result["seconds_total"] = round(seconds_before + result["seconds"], 2)
    if trainer.is_global_zero:
        _write_metrics_and_say_what_next(output_dir, result, training, best, trainer, task)
    return result


def _fit(
    trainer: pl.Trainer,
    task: Any,
    datamodule: Any,
    ckpt_path: str | None,
    output_dir: Path,
    start: float,
    metrics: dict[str, Any],
) -> float:
    """Fit (Lightning's warnings that the run acts on silenced), add the ``train/*`` metrics to ``metrics``
    (a finished run's recorded ones when nothing was left to train), and return the seconds of the run's
    parts before this one; every unreadable training image is listed in one error."""
    task.part_started = start
    try:
        with warnings.catch_warnings():
            _quiet_resumed_folder(ckpt_path)
            _quiet_logging_interval()
            _quiet_monitor_before_validation()
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        # best.ckpt is then validated and tested on its average, with any weight-averaging callback.
        drop_averages(getattr(trainer, "callbacks", []))
    except ImageReadError:  # last.ckpt saved already (InterruptCheckpoint)
        listed = getattr(datamodule, "unreadable_images", lambda: None)()
        if listed is None or len(listed.problems) < 2:
            raise
        raise listed from None  # every unreadable image in one round, not one per run
    # The parts of the run before this one (resumed), read before test/validation load best.ckpt.
    seconds_before = task.seconds_before
    trained = _scalar_metrics(trainer.callback_metrics, ("train/",))
    if ckpt_path and not trained:  # train/loss is logged at every step: none was taken
        trained = _nothing_left_to_train(trainer, str(ckpt_path), output_dir)
    metrics.update(trained)
    return seconds_before


def _score_kept_checkpoint(
    cfg: DictConfig,
    trainer: pl.Trainer,
    task: Any,
    datamodule: Any,
    loggers: list[Any],
    training: bool,
    metrics: dict[str, Any],
) -> tuple[str | None, bool]:
    """Validate and test the checkpoint the run keeps (once, when the test images are the validation ones),
    adding its ``val/*`` and ``test/*`` scores to ``metrics`` and the W&B summaries; say why a run that
    trained kept no best checkpoint. Return that checkpoint and whether the test was the validation."""
    best = _best_ckpt(trainer)
    monitored = getattr(trainer.checkpoint_callback, "monitor", None)  # a best-model checkpoint exists
    fast_dev_run = bool(getattr(trainer, "fast_dev_run", False))
    if best is None and monitored and training and not fast_dev_run:
        log.warning("no best checkpoint: %s", _why_no_best(cfg.trainer, cfg.get("callbacks"), trainer))
    testing = bool(cfg.get("test", True))
    # Real data has no labelled test split: its test images are the validation ones (the datamodule's
    # test_is_validation), and scoring the kept checkpoint on them twice cost a validation pass. Not
    # when the two passes score other batches (trainer.limit_val_batches=0.25 with the test on all):
    # the test pass's scores were copied to val/*, of other tiles than best.ckpt was chosen on.
    test_is_val = testing and not fast_dev_run and _test_is_validation(datamodule)
    test_is_val = test_is_val and _same_evaluation_limits(trainer)
    if fast_dev_run:
        metrics.update(_scalar_metrics(trainer.callback_metrics, ("val/",)))
    elif not test_is_val:
        # Validate the checkpoint that will be kept, so val/* in metrics.json describe best.ckpt.
        validated = _validate_unlogged(trainer, task, datamodule, best)
        for stage_metrics in validated:
            metrics.update(_scalar_metrics(stage_metrics, ("val/",)))
        _summarise_kept_checkpoint(loggers, metrics)
    if testing:
        tested = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)
        for stage_metrics in tested:
            metrics.update(_scalar_metrics(stage_metrics, ("test/",)))
    if test_is_val:  # the kept checkpoint's scores on the validation images, measured once
        metrics.update({"val/" + k[len("test/") :]: v for k, v in metrics.items() if k.startswith("test/")})
        _summarise_kept_checkpoint(loggers, metrics)
    return best, test_is_val


def _write_metrics_and_say_what_next(
    output_dir: Path, result: dict[str, Any], training: bool, best: str | None, trainer: pl.Trainer, task: Any
) -> None:
    """Write ``metrics.json`` and say where; after training, say how to map images with the kept model, or
    that it is too little trained to."""
    write_metrics(output_dir, result)
    log.info("metrics written to %s", output_dir / "metrics.json")
    if training and best:  # a first run ended on the line above, with nothing on what to do next
        barely, dataset = _kept_checkpoint_barely_trained(best, trainer, task)
        if barely is not None:  # predict.py would warn that its maps are close to noise: say so here
            log.warning("%s", barely_trained_warning(str(best), barely, dataset))
        else:
            log.info(
                "to map images with this model: python predict.py ckpt_path=%s input_dir=<folder of "
                "images> output_dir=<new folder for the maps> (docs/prediction.md)",
                shlex.quote(str(best)),
            )


def _check_network_fits_data(cfg: DictConfig, task: Any, datamodule: Any, training: bool) -> None:
    """Check the network built against the data: the crop and scene sizes against its divisor, its class set
    against the data's, and (training) that validation logs the metric the best checkpoint monitors."""
    # The sizes against the network built (train=false: the checkpoint's, not the model config's).
    divisor = getattr(task, "size_divisor", None)
    check_sizes = getattr(datamodule, "check_size_divisor", None)
    if isinstance(divisor, int) and callable(check_sizes):
        try:
            check_sizes(divisor)
        except ValueError as refused:
            raise ConfigError(str(refused)) from None
    check_subclasses_match(task, datamodule)
    if training:
        _check_monitor_is_logged(cfg, datamodule, task)


def _checked_resume(cfg: DictConfig, task: Any, datamodule: Any, ckpt_path: str) -> ResumePoint:
    """Check the checkpoint ``ckpt_path`` resumes against the run (network, epochs), and give the data module
    what that run trained on (its sols, its images), so that a split that moved since is refused; return
    where the checkpoint stands."""
    resumed = check_resume_checkpoint(ckpt_path, task, datamodule)
    _check_epochs_not_below(resumed, cfg.trainer, ckpt_path)
    _check_ema_kept(resumed, cfg.get("callbacks"), ckpt_path)
    if _fit_is_finished(resumed, cfg.trainer):
        # A finished run resumed to be scored again takes no step; Lightning asks for the training loader
        # all the same (for the schedule's length), which pre-rendered every synthetic scene (20 s for
        # the default's 1,792). Rendered as used instead: none.
        datamodule.render_processes = 0
    # Images added to (or removed from) the data since the run began re-draw the sol-grouped split
    # (GroupShuffleSplit shuffles the groups present), which then validated on sols the network had
    # trained on, silently, with best.ckpt chosen by those scores: refused in setup, as init_ckpt_path is.
    seen = getattr(datamodule, "sols_seen_by", None)
    if isinstance(seen, list) and resumed.trained_sols:
        seen.append((f"ckpt_path={ckpt_path} (the run this command resumes)", resumed.trained_sols))
    # Images without a sol (data=folder) are split one by one, by position: one image added moved several.
    if resumed.trained_images and hasattr(datamodule, "resumed_trained_images"):
        what = f"ckpt_path={ckpt_path} (the run this command resumes)"
        datamodule.resumed_trained_images = (what, resumed.trained_images)
    return resumed


def _start_weights(
    cfg: DictConfig,
    task: Any,
    datamodule: Any,
    evaluated: tuple[str, str] | None,
    evaluated_task: Any,
    ckpt_path: str | None,
    output_dir: Path,
) -> Any:
    """Load the weights the run starts from (the checkpoint ``train=false`` evaluates, or ``init_ckpt_path``;
    a resume's come from ``ckpt_path`` in the fit), noting the sols their model saw; return the
    ``init_ckpt`` that ``metrics.json`` records (None when evaluating)."""
    init_ckpt = cfg.get("init_ckpt_path")
    if evaluated is not None:
        initialise_from_checkpoint(task, evaluated[0], option=evaluated[1], source=evaluated_task)
        _note_seen_sols(datamodule, f"{evaluated[1]}={evaluated[0]}", task)
        init_ckpt = None
    elif init_ckpt and ckpt_path:
        # The resumed checkpoint holds the fine-tuned weights already; re-running a fine-tuning command with
        # ckpt_path=last must continue it, not fail.
        log.info("init_ckpt_path ignored: resuming from %s", ckpt_path)
        # metrics.json names what the run started from, as its first part recorded it, not the ignored path.
        init_ckpt = _earlier_record(output_dir, str(ckpt_path), "init_ckpt")
    elif init_ckpt:
        path = expand_home(init_ckpt)
        source = read_source(path)
        # Before its weights are loaded, in the words of the check before Hydra.
        refused = evaluated_subclasses_refusal(
            "init_ckpt_path", str(path), source.hparams.get("subclasses"), task.hparams.get("subclasses")
        )
        if refused is not None:
            raise ConfigError(refused)
        initialise_from_checkpoint(task, init_ckpt, source=source)
        _note_seen_sols(datamodule, f"init_ckpt_path={init_ckpt}", task)
    return init_ckpt


def _check_split_and_labels(cfg: DictConfig, datamodule: Any, training: bool) -> None:
    """Check the split against what the models this run comes from saw of it, and refuse training masks of
    one class (warned about instead when fine-tuning)."""
    # The split and what the models this run comes from saw of it (sols, images): refused here, before the
    # run folder and the loggers, not in the trainer's setup, which left a run folder and a failed W&B run.
    check_split = getattr(datamodule, "check_split", None)
    if callable(check_split):
        check_split()
    one_class = getattr(datamodule, "one_class_training", None)
    if training and callable(one_class) and (said := one_class()):
        # The option as given: a resume sets init_ckpt from the first part's metrics.json, which a run stopped
        # by Ctrl-C has not written yet.
        fine_tuned_from = cfg.get("init_ckpt_path")
        if not fine_tuned_from:
            raise DataError(said)
        # Fine-tuning a trained network on masks of one class (a geologist's corrections of the unit the model
        # misses) is a use of its own: refused, it had no way on. Said, as the risk stays.
        log.warning(
            "%s This run goes on, as it fine-tunes a trained network (init_ckpt_path=%s) that has learnt the "
            "other units already; check that it does not come to call everything that class (val/miou, the "
            "maps of predict.py).",
            said,
            fine_tuned_from,
        )


def _write_run_config(cfg: DictConfig, output_dir: Path) -> None:
    """Make the run folder and write its ``config.yaml`` (rank 0), once every check before the fit passed."""
    # After the data and model settings and the starting weights were accepted (a bad value or a checkpoint
    # that does not fit stops above), so a run that never started leaves no config.yaml, the record a later
    # ckpt_path=last compares with (a refused init_ckpt_path left one, and a later resume was told the run
    # had stopped before its first checkpoint).
    output_dir.mkdir(parents=True, exist_ok=True)
    if getattr(rank_zero_only, "rank", 0) == 0:  # every DDP rank runs this: one writes, atomically
        atomic_write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _trainer_and_loggers(cfg: DictConfig, ckpt_path: str | None) -> tuple[pl.Trainer, list[Any]]:
    """Build the callbacks, then the loggers, then the trainer; the loggers are finished as failed when the
    trainer cannot be built."""
    # The callbacks before the loggers: a callback setting refused here (callbacks.*) started a W&B run
    # that was never finished, an empty run in the project for each such slip.
    callbacks = _instantiate_group(cfg.get("callbacks"))
    check_averages_reachable(callbacks)
    loggers = [] if _fast_dev_run_without_loggers(cfg) else prepare_loggers(cfg, ckpt_path)
    try:
        if not loggers:
            # LearningRateMonitor refuses to run without a logger; with logger=none there is nowhere to log.
            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
        callbacks = run_progress_bar(callbacks, bool(cfg.trainer.get("enable_progress_bar", True)))
        callbacks = _with_wandb_run_id(callbacks, loggers)
        trainer = build_trainer(cfg.trainer, [*callbacks, LogWithinEpoch()], loggers)
    except BaseException:
        finish_loggers(loggers, "failed")
        raise
    return trainer, loggers


def _kept_checkpoint_barely_trained(path: str, trainer: pl.Trainer, task: Any) -> tuple[str | None, object]:
    """Why the checkpoint a run kept is barely trained, as ``predict.py`` judges it from the file's own
    training record (:func:`marsunits.training_extent.barely_trained`), or None, beside the data set its
    metadata names (the way on depends on it). None too when the file cannot be read: ``predict.py`` says
    why when it is given it.

    Where the run's last validation or test loaded that file into ``task`` (``trainer.ckpt_path``: every run
    that kept one but a fast_dev_run), its record is the task's, restored from the file by
    :meth:`~marsunits.task.SegmentationTask.on_load_checkpoint` as the file's reading gives it, and its data
    set the task's own (the file was written by this run, or by the run it resumes, which a resume holds to
    the same data): the file, as large as the network and its optimiser's state, is not read again."""
    from marsunits.checkpoint_files import CheckpointError
    from marsunits.checkpoint_loading import checkpoint_training_record, read_checkpoint
    from marsunits.task import METADATA_KEY

    loaded = trainer.ckpt_path
    if loaded is not None and Path(loaded).resolve() == Path(path).resolve():
        return barely_trained(task.training_record), task.metadata.get("dataset")
    try:
        checkpoint = read_checkpoint(path)
    except (CheckpointError, OSError):
        return None, None
    dataset = checkpoint[METADATA_KEY].get("dataset")
    return barely_trained(checkpoint_training_record(checkpoint)), dataset


def _why_no_best(trainer_cfg: DictConfig, callbacks_cfg: Any, trainer: pl.Trainer) -> str:
    """Why a run that trained kept no ``best.ckpt`` (mostly: it never validated), and what to change, in
    words.

    Every such run was told to lower ``trainer.check_val_every_n_epoch``, also where it was 1 already and
    the cause was ``trainer.max_epochs=0`` or ``trainer.limit_train_batches=0``, a ``trainer.max_steps``
    reached inside the first epoch, or ``trainer.limit_val_batches=0``; or, validation having run, the best
    checkpoint's ``save_top_k=0`` (``callbacks_cfg``, the ``callbacks`` node, names its key).
    """
    last = "so val/* and test/* are of the last weights, and checkpoints/best.ckpt was not written"
    if getattr(trainer.checkpoint_callback, "save_top_k", 1) == 0:
        nodes = callbacks_cfg.items() if isinstance(callbacks_cfg, Mapping) else []
        name = next(
            (k for k, v in nodes if isinstance(v, Mapping) and v.get("monitor") and v.get("save_top_k") == 0),
            None,
        )
        key = f"callbacks.{name}.save_top_k" if name else "save_top_k"
        return (
            f"the checkpoint that keeps the best model was told to keep none ({key}=0), {last}; give "
            f"{key}=1 to keep it"
        )
    limit_val, max_epochs = trainer_cfg.get("limit_val_batches"), trainer_cfg.get("max_epochs")
    if limit_val == 0:
        return (
            f"validation is off (trainer.limit_val_batches={limit_val}), {last}; raise "
            "trainer.limit_val_batches (1.0: every validation batch) to choose a best one"
        )
    limit_train = trainer_cfg.get("limit_train_batches")
    if max_epochs == 0 or limit_train == 0:
        setting, fix = (
            ("trainer.max_epochs=0", "trainer.max_epochs=1 or more")
            if max_epochs == 0
            else (f"trainer.limit_train_batches={limit_train}", "trainer.limit_train_batches=1.0")
        )
        return (
            f"nothing was trained ({setting}), so val/* and test/* are of the starting weights, "
            f"and checkpoints/best.ckpt was not written; give {fix} to train, or "
            "train=false ckpt_path=<file.ckpt> to score a trained model without training"
        )
    max_steps = trainer.max_steps
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
        # The epochs begun (ready), not current_epoch + 1: Lightning counts the epoch that max_steps ended
        # as done, so current_epoch is already the next one.
        epoch = trainer.fit_loop.epoch_progress.current.ready
        when, step = _first_validation(trainer)
        fix = f"to {step} or more" if step is not None else "past it, or lower trainer.val_check_interval,"
        return (
            f"trainer.max_steps={max_steps} ended training at step {trainer.global_step}, in epoch "
            f"{epoch}, before the first validation ({when}), {last}; raise trainer.max_steps {fix} to "
            "choose a best one"
        )
    return (
        f"validation never ran during training (trainer.check_val_every_n_epoch="
        f"{trainer_cfg.get('check_val_every_n_epoch')}, trainer.max_epochs={max_epochs}), {last}; lower "
        "check_val_every_n_epoch to choose a best one"
    )


def _first_validation(trainer: pl.Trainer) -> tuple[str, int | None]:
    """When the first validation of ``trainer``'s fit comes, in words, and the optimiser step it follows
    (None where that is not a whole number of batches: a time-based ``val_check_interval``, an endless data
    set, or ``accumulate_grad_batches`` > 1); in a resumed fit the step is a bound, not said in the words.

    Lightning validates after ``val_check_batch`` batches of every ``check_val_every_n_epoch``-th epoch, or
    every ``val_check_batch`` batches counted across epochs where that is None (an ``int``
    ``val_check_interval``); after epoch ``check_val_every_n_epoch`` alone was said, and "after epoch None"
    where that is null.
    """
    every, interval = trainer.check_val_every_n_epoch, trainer.val_check_interval
    per_epoch, batch = trainer.num_training_batches, trainer.val_check_batch
    if every is None:
        when = f"every {interval} training batches: trainer.val_check_interval={interval}"
        batches = batch
    elif isinstance(interval, float) and interval == 1.0:
        when = f"after epoch {every}"
        batches = every * per_epoch
    else:
        when = f"trainer.val_check_interval={interval} into epoch {every}"
        batches = (every - 1) * per_epoch + batch if isinstance(batch, int) else None
    exact = trainer.accumulate_grad_batches == 1 and math.isfinite(per_epoch)
    step = batches if isinstance(batches, int) and exact else None
    if step is None or trainer.ckpt_path is not None:
        # Resumed mid-epoch, Lightning ends that epoch early (the batches before the checkpoint are not run
        # again), so validation comes earlier: the step is then the latest it can be, not its place.
        return when, step
    return f"{when}, at step {step}", step


def _with_wandb_run_id(callbacks: list[Any], loggers: list[Any]) -> list[Any]:
    """``callbacks`` plus a :class:`~marsunits.tracking.callbacks.WandbRunInfo` when a W&B logger runs and
    none is there: the run id it stores in every checkpoint is what lets ``ckpt_path=last`` continue the same
    W&B run, so it cannot depend on choosing the dashboard callbacks (``callbacks=[default]`` with
    ``logger=wandb`` started a new W&B run at every resume)."""
    from lightning.pytorch.loggers import WandbLogger

    from marsunits.tracking.callbacks import WandbRunInfo

    if any(isinstance(lg, WandbLogger) for lg in loggers) and not any(
        isinstance(cb, WandbRunInfo) for cb in callbacks
    ):
        return [*callbacks, WandbRunInfo()]
    return callbacks


class ResumePoint(NamedTuple):
    """What a checkpoint to resume from holds besides its weights (:func:`check_resume_checkpoint`)."""

    #: Epochs and optimiser steps its run had finished: the counters Lightning's fit loop resumes from.
    epochs: int
    steps: int
    #: ``{source: sols}`` its network had trained on (``trained_sols`` in its metadata), or None.
    trained_sols: dict[str, list[int]] | None
    #: ``{source: image keys}`` of its training images without a sol (its datamodule's state), or None.
    trained_images: dict[str, list[str]] | None = None
    #: The weight-averaging callback its run was trained with (:func:`_averaging_callback`): the state key
    #: of :class:`~marsunits.averaging.EMAWeights` or of Lightning's ``EMAWeightAveraging``, "" for another
    #: ``WeightAveraging``; None for a run trained without one.
    averaged_by: str | None = None


#: Where Lightning keeps :class:`~marsunits.averaging.EMAWeights`' state in a checkpoint's ``callbacks``
#: (``Callback.state_key``: the class's name), from the class, so that a rename cannot leave the check
#: looking for a name nothing writes.
EMA_STATE_KEY = EMAWeights.__qualname__
#: The same of Lightning's own EMA callback, which a user may add in place of ``callbacks=ema``, and the
#: ``_target_`` that builds it
#: (``'+callbacks.<name>._target_=lightning.pytorch.callbacks.EMAWeightAveraging'``).
LIGHTNING_EMA_STATE_KEY = EMAWeightAveraging.__qualname__
LIGHTNING_EMA_TARGET = f"lightning.pytorch.callbacks.{EMAWeightAveraging.__qualname__}"


def check_resume_checkpoint(ckpt_path: str, task: Any, datamodule: Any = None) -> ResumePoint:
    """Refuse a checkpoint to resume from before anything is written: one that is damaged, cut short, not a
    marsunits checkpoint (or one that only unsafe unpickling would read), or whose network differs from the
    one this run builds (a checkpoint copied out of its run folder, so no config.yaml to compare with).
    Lightning read it inside ``fit``, after the run folder's files were written, and each of these ended in a
    traceback.

    Returns:
        Its counters (0 where the file does not hold them), trained sols and, with ``datamodule`` (whose
        state Lightning saved under its class name), the training images without a sol.

    Raises:
        CheckpointError: The file (:func:`marsunits.checkpoint_loading.read_checkpoint`).
        ConfigError: Its weights do not fit this run's network; names the first tensors that differ.
    """
    from marsunits.checkpoint_loading import read_checkpoint
    from marsunits.fine_tuning import matching_overrides, network_differences, tensors_differing
    from marsunits.task import METADATA_KEY

    checkpoint = read_checkpoint(ckpt_path)
    saved = checkpoint["state_dict"]
    mismatched, differing = network_differences(
        task.state_dict(), saved, task.hparams, checkpoint["hyper_parameters"]
    )
    if mismatched:
        differ, which = tensors_differing(mismatched)
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds another network than this run's model settings build: "
            f"{differ} ({which}; hyper-parameters "
            f"checkpoint vs run: {differing or 'none differ'}). Resume with the model options it was "
            f"trained with ({matching_overrides(differing) or 'its run folder config.yaml'}), or start a new "
            "run from its weights with init_ckpt_path=... and no ckpt_path"
        )
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs = fit_loop.get("epoch_progress", {}).get("current", {}).get("processed", 0)
    steps = checkpoint.get("global_step", 0)
    sols = (checkpoint.get(METADATA_KEY) or {}).get("trained_sols")
    # Lightning keeps a datamodule's state_dict under its class's qualified name.
    state = checkpoint.get(type(datamodule).__qualname__) if datamodule is not None else None
    images = state.get("trained_images") if isinstance(state, dict) else None
    return ResumePoint(
        epochs if isinstance(epochs, int) else 0,
        steps if isinstance(steps, int) else 0,
        sols if isinstance(sols, dict) and sols else None,
        images if isinstance(images, dict) and images else None,
        _averaging_callback(checkpoint),
    )


def _averaging_callback(checkpoint: Mapping[str, Any]) -> str | None:
    """The weight-averaging callback a checkpoint's run was trained with: the state key of
    :class:`~marsunits.averaging.EMAWeights` (``callbacks=ema``) or of Lightning's ``EMAWeightAveraging``
    among its ``callbacks``, or "" for another ``WeightAveraging``, told by what every one writes during
    ``fit`` (the raw weights as ``current_model_state``, the average as the ``state_dict``); None for none."""
    states = checkpoint.get("callbacks")
    for key in (EMA_STATE_KEY, LIGHTNING_EMA_STATE_KEY):
        if isinstance(states, dict) and key in states:
            return key
    if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
        return ""
    return None


def _check_ema_kept(done: ResumePoint, callbacks_cfg: Any, ckpt_path: str) -> None:
    """Refuse to resume a run trained with a weight-averaging callback (``callbacks=ema``, Lightning's own
    ``EMAWeightAveraging``, or another ``WeightAveraging``) on a command that has none (``ckpt_path=last``
    without the run's ``'+callbacks=[ema]'``), before anything is written. Lightning loaded the checkpoint's
    ``state_dict``, the average, as the network and trained on from it without averaging, the raw weights
    (``current_model_state``) dropped, with only its "Please add the following callbacks: ['EMAWeights']" to
    say so. Any averaging callback on the command takes the run's average and raw weights over (Lightning's
    ``WeightAveraging`` restores both, whichever class wrote them).

    Raises:
        ConfigError: naming the checkpoint and the callbacks to add.
    """
    if done.averaged_by is None:
        return
    if averaging_callbacks(callbacks_cfg):
        return
    lost = (
        "which this command leaves out, so the resume would train on from the averaged weights without "
        "averaging, the raw weights dropped"
    )
    if done.averaged_by == LIGHTNING_EMA_STATE_KEY:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: its run was trained with Lightning's EMA callback (EMAWeightAveraging), "
            f"{lost}. Add it as the run had it: '+callbacks.ema._target_={LIGHTNING_EMA_TARGET}' (with the "
            "run's decay, +callbacks.ema.decay=...), or marsunits' '+callbacks=[ema]', which takes the "
            "average over"
        )
    if done.averaged_by == "":
        raise ConfigError(
            f"ckpt_path={ckpt_path}: its run was trained with a weight-averaging callback (its checkpoint "
            f"holds current_model_state), {lost}. Add the callback the run had "
            "('+callbacks.<name>._target_=...'), or marsunits' EMA, '+callbacks=[ema]'"
        )
    raise ConfigError(
        f"ckpt_path={ckpt_path}: its run was trained with the EMA callback (callbacks=ema), {lost}. Add it "
        "as the run had it: '+callbacks=[ema]', or ema in the list a callbacks= choice gives "
        "('callbacks=[default,ema]')"
    )


def _fit_is_finished(done: ResumePoint, trainer_cfg: Any) -> bool:
    """Whether a run resumed at ``done`` has nothing left to train under ``trainer_cfg``'s
    ``max_epochs``/``max_steps`` (Lightning's rule: -1 or null is no limit)."""
    epochs, steps = done.epochs, done.steps
    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps")
    if isinstance(max_steps, int) and max_steps >= 0 and steps >= max_steps:
        return True
    return isinstance(max_epochs, int) and max_epochs >= 0 and epochs >= max_epochs


def _check_epochs_not_below(done: ResumePoint, trainer_cfg: Any, ckpt_path: str) -> None:
    """Refuse to resume a checkpoint that has trained more epochs than ``trainer.max_epochs`` allows (a run of
    ``trainer.max_epochs=8`` resumed with the default's 4, the override left out), before any checkpoint is
    written. Lightning refused it inside ``fit``, once the new run folder had been given a copy of the run's
    ``best.ckpt``: "You restored a checkpoint with current_epoch=8, but you have set Trainer(max_epochs=4)",
    naming no option.

    Raises:
        ConfigError: naming the epochs trained and the ``trainer.max_epochs`` to give.
    """
    max_epochs = trainer_cfg.get("max_epochs")
    if isinstance(max_epochs, int) and max_epochs >= 0 and done.epochs > max_epochs:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: its run has trained {done.epochs} epochs, more than this command's "
            f"trainer.max_epochs={max_epochs}: give trainer.max_epochs={done.epochs} to score it as it is, "
            "or more to train it longer (a run cannot go back to an earlier epoch; a new run from its "
            f"weights: init_ckpt_path={ckpt_path} and no ckpt_path)"
        )


def _same_evaluation_limits(trainer: pl.Trainer) -> bool:
    """Whether validation and test score the same batches (``trainer.limit_val_batches`` and
    ``limit_test_batches``), or validation scores none (``limit_val_batches=0``: no validation during
    training, and the test pass is the only score of the validation images, which ``val/*`` then copy, as
    the "no best checkpoint" warning says; ``val/*`` were left out of ``metrics.json``). Lightning reads an
    int as a number of batches and a float as a fraction of them, so ``1`` (one batch) and ``1.0`` (every
    batch) differ though they compare equal."""
    val, test = trainer.limit_val_batches, trainer.limit_test_batches
    return val == 0 or (type(val) is type(test) and val == test)


def _test_is_validation(datamodule: Any) -> bool:
    """Whether ``datamodule`` tests on its validation images (real data: no labelled test split)."""
    datamodule.setup("test")
    return bool(getattr(datamodule, "test_is_validation", False))


def _validate_unlogged(trainer: pl.Trainer, task: Any, datamodule: Any, ckpt: str | None) -> list[Any]:
    """``trainer.validate`` of ``ckpt`` with the loggers detached: the score of the kept checkpoint is for
    ``metrics.json``, not one more point of the training curves (it was logged at epoch ``max_epochs``, so
    every ``val/*`` curve ended with a copy of the best value, and the dashboard's images and confusion
    matrix once more)."""
    loggers = list(trainer.loggers)
    trainer.loggers = []
    try:
        return trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    finally:
        trainer.loggers = loggers


def _summarise_kept_checkpoint(loggers: list[Any], metrics: Mapping[str, Any]) -> None:
    """Put the kept checkpoint's ``val/*`` scores in each W&B run's summary (what the runs table shows), as
    ``metrics.json`` has them: the summary otherwise holds the last epoch's, not the best checkpoint's."""
    from lightning.pytorch.loggers import WandbLogger

    scores = {k: v for k, v in metrics.items() if k.startswith("val/") and isinstance(v, (int, float))}
    for logger in loggers:
        if isinstance(logger, WandbLogger) and getattr(rank_zero_only, "rank", 0) == 0 and scores:
            logger.experiment.summary.update(scores)


def _nothing_left_to_train(trainer: pl.Trainer, ckpt_path: str, output_dir: Path) -> dict[str, float]:
    """Say that a resumed run had already finished, and return the ``train/*`` metrics it recorded then.

    Resuming a finished run (same command with ``ckpt_path=last``) takes no step, so Lightning logs no
    ``train/loss``: ``metrics.json`` lost the figure the finished run wrote. It is read back from the
    ``metrics.json`` in this run folder, else in the resumed checkpoint's run folder; empty if neither has it.
    """
    log.warning(
        "nothing trained: %s had already finished (epoch %d of trainer.max_epochs=%s); val/* and test/* "
        "are scored again. To train longer, run the same command with a higher trainer.max_epochs (a cosine "
        "schedule is stretched to the new end)",
        ckpt_path,
        trainer.current_epoch,
        trainer.max_epochs,
    )
    for previous in _earlier_metrics(output_dir, ckpt_path):
        found = {k: v for k, v in previous.items() if k.startswith("train/") and isinstance(v, float)}
        if found:
            return found
    return {}


def _adopt_evaluated_network(cfg: DictConfig, source: Any, path: str) -> None:
    """Give ``cfg.model`` the network settings of the checkpoint ``train=false`` evaluates, in place.

    The run's model config describes the network to train; a run that trains nothing scores the checkpoint's
    network, whatever model config its command composes (see
    :func:`marsunits.fine_tuning.evaluation_model_settings`). The settings taken are logged and end up in the
    run's ``config.yaml``.
    """
    model_values = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model_values, dict)
    settings = evaluation_model_settings({str(k): v for k, v in model_values.items()}, source)
    network = {k: v for k, v in settings.items() if k != "encoder_weights"}
    if network:
        log.info(
            "train=false: the network is built as %s was trained: %s",
            path,
            " ".join(f"model.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in network.items()),
        )
    with open_dict(cfg.model):
        for key, value in settings.items():
            cfg.model[key] = value


def _best_ckpt(trainer: pl.Trainer) -> str | None:
    """Path of the best checkpoint if a ModelCheckpoint that ranks by a metric saved one, else None (use the
    weights in memory). Lightning's own checkpoint, added when the callbacks hold none (``callbacks=[]``,
    ``[wandb]``), monitors nothing: its file is the last epoch's, which metrics.json called best_ckpt."""
    cb = trainer.checkpoint_callback
    if cb is None or not getattr(cb, "monitor", None):
        return None
    path = getattr(cb, "best_model_path", "")
    return path if path and Path(path).is_file() else None
