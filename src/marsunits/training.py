"""Training run: compose-time objects from the Hydra config, fit, validate/test the best model, write metrics.

``train.py`` is a thin wrapper around :func:`run`; tests and notebooks call it with a composed config.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Optional, get_args

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.precision.precision import (
    _PRECISION_INPUT_INT,
    _PRECISION_INPUT_STR,
    _PRECISION_INPUT_STR_ALIAS,
)
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from marsunits.atomic import atomic_write_text
from marsunits.data.io import ImageReadError
from marsunits.errors import (
    YES_NO_WORDS,
    ConfigError,
    TerminatedError,
    sigterm_raises,
    some_of,
    switch_value_refusal,
)
from marsunits.fine_tuning import (
    NETWORK_HPARAMS,
    check_source_exists,
    evaluation_model_settings,
    initialise_from_checkpoint,
    read_source,
)
from marsunits.progress_bar import run_progress_bar
from marsunits.run_folder_claim import claimed_run_folder
from marsunits.slurm_world import launch_problem
from marsunits.targets import UnimportableTargetError, locate, unimportable_target
from marsunits.task import check_checkpoint_start
from marsunits.tracking import finish_loggers, prepare_loggers
from marsunits.tracking.wandb_setup import check_wandb_modes
from marsunits.user_paths import expand_home

log = logging.getLogger(__name__)

#: The run name the command line added for a default, time-made ``run_name`` (``cli_overrides.
#: claim_run_folder``), so that Hydra's folder is the one it claimed: still a default, not a name the user
#: gave (``ckpt_path=last`` then resumes the newest run of the job, not that new folder's).
PINNED_RUN_NAME_ENV = "MARSUNITS_PINNED_RUN_NAME"


def resolve_ckpt_path(
    ckpt_path: str | None,
    output_dir: Path,
    log_dir: Path,
    task_name: str,
    job: Mapping[str, Any] | None = None,
    data_moved: bool = False,
    run_name: str | None = None,
    seed: int | None = None,
) -> str | None:
    """Turn the ``ckpt_path`` config value into a checkpoint file, or None for a fresh run.

    ``last`` means ``<output_dir>/checkpoints/last.ckpt`` if it exists, else the most recently written
    ``last.ckpt`` of a run under ``<log_dir>/<task_name>/`` that trained the same job: with ``job`` given
    (:func:`job_identity` of this run's config), only runs whose ``config.yaml`` has the same identity count,
    so ``experiment=ai4mars ckpt_path=last`` never resumes the newest synthetic run; with ``data_moved``
    the data's location (``_DATA_LOCATION_KEYS``) is left out of that comparison. With ``run_name`` (a run
    folder the user named) only that folder's ``last.ckpt`` counts: continuing another run under the name
    given, as the fallback did for a run killed before its first recovery checkpoint, resumed the wrong run
    and its W&B run without a word. With ``seed``, only runs trained with that seed count: seeds run side by
    side and stopped together (a job array) each resumed the newest of them, two into one W&B run.

    Raises:
        ConfigError: If the file does not exist or no matching ``last.ckpt`` can be found;
            :class:`~marsunits.task.NotACheckpointError` if the file does not start as a checkpoint does.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        own = output_dir / "checkpoints" / "last.ckpt"
        if own.is_file():
            return str(own)
        if run_name is not None:
            kept = sorted((output_dir / "checkpoints").glob("*.ckpt"))
            if kept:
                chosen = next((p for p in kept if p.name == "best.ckpt"), kept[0])
                # A disk that filled at the first last.ckpt (best.ckpt was written just before it at the
                # epoch's end): "without ckpt_path" is refused in a folder holding a checkpoint
                # (check_run_folder), so the way on is the checkpoint that is there.
                again = shlex.join([f"run_name={run_name}", f"ckpt_path={chosen}"])
                raise ConfigError(
                    f"ckpt_path=last with run_name={run_name}: {own} does not exist (the run stopped before "
                    f"writing it), but {chosen} does: run the same command with {again} instead to continue "
                    "the run from it (the steps after it are trained again; free space first if a full disk "
                    "stopped the run), or start anew under another run_name=..."
                )
            started = (output_dir / "config.yaml").is_file()
            raise ConfigError(
                f"ckpt_path=last with run_name={run_name}: {own} does not exist ("
                + (
                    "the run stopped before its first checkpoint, written every 50 optimiser steps and at "
                    "each epoch's end"
                    if started
                    else "no run of that name has started"
                )
                + "), so there is nothing of it to resume. Run the same command without ckpt_path to start "
                "it from the beginning, or give the checkpoint to continue: ckpt_path=<its .ckpt file>"
            )
        candidates = sorted(
            (log_dir / task_name).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise ConfigError(
                f"ckpt_path=last: no last.ckpt under {log_dir / task_name}/*/checkpoints/. "
                "Train once without ckpt_path, or pass ckpt_path=<path to a .ckpt file>."
            )
        if job is not None:
            same = [c for c in candidates if _same_job(_saved_job(c.parent.parent, job), job, data_moved)]
            if not same:
                raise ConfigError(
                    f"ckpt_path=last: none of the {len(candidates)} runs under {log_dir / task_name}/ "
                    f"trained this model on this data (newest: {candidates[-1].parent.parent.name}); pass "
                    "ckpt_path=<path to its last.ckpt> to resume a particular run, or drop ckpt_path to "
                    "start a new one"
                )
            candidates = same
        if seed is not None:
            seeds = {c: _saved_seed(c.parent.parent) for c in candidates}
            same_seed = [c for c in candidates if seeds[c] == seed]
            if not same_seed:
                others = ", ".join(str(v) for v in sorted({v for v in seeds.values() if v is not None}))
                raise ConfigError(
                    f"ckpt_path=last: the {len(candidates)} run(s) of this model and data under "
                    f"{log_dir / task_name}/ were trained with seed {others or 'unknown'} (newest: "
                    f"{candidates[-1].parent.parent.name}), not seed={seed}; give the seed of the run to "
                    "resume, or ckpt_path=<path to its last.ckpt>"
                )
            candidates = same_seed
        log.info("ckpt_path=last -> %s", candidates[-1])
        return str(candidates[-1])
    path = expand_home(ckpt_path)
    if not path.is_file():
        from marsunits.model_package import is_package

        if path.exists() and is_package(path):  # "no such file" for a folder that is there
            raise ConfigError(
                f"ckpt_path={ckpt_path} is a model package (python -m marsunits.export): it holds the "
                "weights, not the run's optimiser and epochs, so it cannot be resumed. Start a new run "
                f"from it with init_ckpt_path={ckpt_path}, or score it with train=false ckpt_path={ckpt_path}"
            )
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file. Pass an existing .ckpt file, or `last`.")
    check_checkpoint_start(path, "ckpt_path", package_ok=False)  # a text file: refused before the run folder
    return str(path)


#: Data settings that change only speed, not what is trained on: a resumed run may change them.
_DATA_PERFORMANCE_KEYS = frozenset(
    {
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "render_processes",
        "val_batch_size",
        # Decoded images (rendered scenes) held in memory or read again: the same pixels either way, so a
        # run out of memory resumes with data.cache=false (it was refused: a new run lost the optimiser).
        "cache",
        "cache_scenes",
    }
)


#: Data settings that say where the data is, not what it is: ``data_moved=true`` lets a resume change them.
_DATA_LOCATION_KEYS = frozenset({"root", "source_dirs"})

#: Data settings that switch a check on or off, not what is trained on: a resumed run may change them.
_DATA_CHECK_KEYS = frozenset({"allow_seen_val_sols"})

#: Data settings added since runs were first recorded, with the value that gives the behaviour before
#: them: a run folder whose config.yaml lacks one is compared as if it had that value, so a run from
#: before still resumes, and one that would now train on other data says which setting restores it.
_DATA_KEYS_ADDED = {
    "sol_margin": 0,
    # ClassMix (2026-12-02; in configs/data/ai4mars.yaml since 2026-12-05) and validation context (MarsScapes
    # from 2026-12-02; ai4mars.yaml and folder.yaml since 2026-12-05): runs recorded before had neither.
    "class_mix_prob": 0.0,
    "val_context_px": 0,
}


def _same_job(saved: Mapping[str, Any] | None, job: Mapping[str, Any], data_moved: bool) -> bool:
    """Whether a saved :func:`job_identity` is ``job``; with ``data_moved``, wherever the data now is."""
    if saved is None:
        return False
    if not data_moved:
        return dict(saved) == dict(job)

    def located(identity: Mapping[str, Any]) -> dict[str, Any]:
        data = identity.get("data")
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in _DATA_LOCATION_KEYS}
        return {**identity, "data": data}

    return located(saved) == located(job)


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


def job_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: the ``model`` and ``data`` configs (the
    data's performance settings, ``_DATA_PERFORMANCE_KEYS``, aside), so ``data.root=/A`` never resumes a
    run trained on ``/B``.

    Plain (resolved) containers, comparable with ``==`` to what :func:`_saved_job` reads back.
    """

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    data = plain(cfg.get("data"))
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _DATA_PERFORMANCE_KEYS | _DATA_CHECK_KEYS}
    return {"model": plain(cfg.get("model")), "data": data}


class _Absent:
    """A key one config has and the other lacks (shown as ``absent``; a lacking key is not a None)."""

    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain nested dicts (``model.lr: 0.001 -> 0.002``); a key
    on one side only shows as ``absent`` on the other."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_run_folder(
    output_dir: Path, ckpt_path: str | None, job: Mapping[str, Any], data_moved: bool = False
) -> None:
    """Refuse to start where a run would overwrite another run's record or resume another job.

    * A new run (no ``ckpt_path``) in a folder that already holds checkpoints (``run_name=`` of an earlier
      run) would overwrite them and its ``config.yaml``.
    * A resumed checkpoint whose run folder's ``config.yaml`` trained another model or data
      (:func:`job_identity`) would die on mismatched tensors or silently go on with other data; this holds
      for ``ckpt_path=last`` in the run's own folder and for an explicit path alike. With ``data_moved``
      (``data_moved=true``: the same data under another path) only the data's location may differ.

    Raises:
        ConfigError: Naming the folder, the differing settings and what to do.
    """
    held = sorted((output_dir / "checkpoints").glob("*.ckpt"))
    if ckpt_path is None:
        if held:
            raise ConfigError(
                f"{output_dir} already holds a run ({len(held)} checkpoint(s) in checkpoints/); resume it "
                "with ckpt_path=last, or give this run another run_name=... (or move that folder away)"
            )
        return
    source = Path(ckpt_path).resolve().parent.parent
    if held and source != output_dir.resolve():
        raise ConfigError(
            f"{output_dir} already holds another run's checkpoints; resume {ckpt_path} under another "
            "run_name=..., or resume this folder's run with ckpt_path=last"
        )
    saved = _saved_job(source, job)
    if saved is not None and not _same_job(saved, job, data_moved):
        diff = _differences(saved, dict(job))
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        changed = [d.split(":")[0] for d in diff]  # dotted keys
        # Its weights can start a new run only on the same network (fine_tuning.NETWORK_HPARAMS).
        network = [k for k in changed if k in {f"model.{name}" for name in NETWORK_HPARAMS}]
        way_out = (
            f"start a new run from its weights with init_ckpt_path={ckpt_path} and no ckpt_path"
            if not network
            else f"start a new run without ckpt_path (its weights do not fit another {', '.join(network)})"
        )
        only_moved = all(k in {f"data.{name}" for name in _DATA_LOCATION_KEYS} for k in changed)
        moved = (
            "; if the same data has only moved to the new path, add data_moved=true"
            if only_moved and not data_moved
            else ""
        )
        raise ConfigError(
            f"{ckpt_path} was trained with other model or data settings ({source / 'config.yaml'}: {shown}). "
            f"Resume it with its own settings, or {way_out}{moved}"
        )


def _saved_seed(run_dir: Path) -> int | None:
    """The ``seed`` of the run in ``run_dir`` from its ``config.yaml`` (None when unreadable or absent)."""
    try:
        saved = OmegaConf.load(run_dir / "config.yaml")
    except Exception:  # noqa: BLE001 - a missing or broken config.yaml: no seed known
        return None
    seed = saved.get("seed") if isinstance(saved, DictConfig) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _saved_job(run_dir: Path, job: Mapping[str, Any]) -> dict[str, Any] | None:
    """:func:`job_identity` of the run in ``run_dir`` from its ``config.yaml`` (None when unreadable), with
    the settings added since it was written (``_DATA_KEYS_ADDED``) that ``job`` has at their earlier value,
    and a ``data.fold`` recorded without ``data.n_folds`` as 0: it was ignored (the single held-out split),
    and is refused since 2026-12-05, so such a run could be resumed neither with it nor without it."""
    try:
        saved = OmegaConf.load(run_dir / "config.yaml")
    except Exception:  # noqa: BLE001 - a missing or broken config.yaml just means "not this job"
        return None
    if not isinstance(saved, DictConfig) or saved.get("model") is None or saved.get("data") is None:
        return None  # empty or not a run's config: no record to compare with
    identity = job_identity(saved)
    data, now = identity.get("data"), job.get("data")
    if isinstance(data, dict) and isinstance(now, dict):
        for key, before in _DATA_KEYS_ADDED.items():
            if key in now and key not in data:
                data[key] = before
        if data.get("n_folds") is None and "fold" in data:
            data["fold"] = 0  # what it trained with: fold was ignored without n_folds
    return identity


#: Integer settings checked before anything is rendered or built: ``(key, smallest value, what it is)``.
#: Lightning checks some of these only when the loop first reads them, after minutes of set-up, with a
#: ``TypeError`` that names no key; the data module's ``int()`` names no key either.
_INTEGER_VALUES: tuple[tuple[str, int, str], ...] = (
    ("seed", 0, "the random seed"),
    ("trainer.max_epochs", -1, "epochs (-1: no limit)"),
    ("trainer.min_epochs", 0, "epochs"),
    ("trainer.max_steps", -1, "optimiser steps (-1: no limit)"),
    ("trainer.check_val_every_n_epoch", 1, "epochs"),
    ("trainer.log_every_n_steps", 1, "steps"),
    ("trainer.accumulate_grad_batches", 1, "batches"),
    ("trainer.num_nodes", 1, "machines"),
    ("trainer.num_sanity_val_steps", -1, "batches"),
    ("data.batch_size", 1, "crops per batch"),
    ("data.val_batch_size", 1, "crops per batch"),
    ("data.num_workers", 0, "loader processes"),
    # The data module's own int() named no key (`invalid literal for int()`), or compared text with a
    # number inside Hydra's instantiation (a traceback: data.crop_size=abc), and read data.seed=1.5 as 1.
    ("data.crop_size", 1, "pixels, a multiple of the network's input divisor"),
    ("data.samples_per_epoch", 1, "training crops per epoch"),
    ("data.seed", 0, "the split and crop seed"),
    ("data.sol_block", 1, "sols per split group"),
    ("data.val_context_px", 0, "pixels"),
    ("data.n_folds", 2, "cross-validation folds"),
    ("data.fold", 0, "the validation fold"),
    ("data.train_length", 1, "training scenes"),
    ("data.val_length", 1, "validation scenes"),
    ("data.test_length", 1, "test scenes"),
    # The task's int() of these named no key (`invalid literal for int()`), model.warmup_steps only once the
    # optimiser was built, after the scenes were rendered; 1.5 was read as 1.
    ("model.encoder_depth", 1, "encoder stages, at most 5"),
    ("model.contact_radius_px", 1, "pixels"),
    ("model.warmup_steps", 0, "optimiser steps; null: none"),
)
#: The example an integer's message gives where 4 would not be accepted.
_INTEGER_EXAMPLES = {
    "data.crop_size": 256,
    "data.val_context_px": 64,
    "model.contact_radius_px": 3,
    "model.warmup_steps": 100,
}

#: Real-valued settings checked before anything is read: ``(key, lowest, highest or None, what it
#: is, an example)``. ``float()`` in the data module named no key (``could not convert string to float``)
#: and the augmentation values failed with a traceback when the first transform was built. Shares whose
#: range the data module checks with a message of its own (``val_fraction``, ``focus_fraction``, ...) are
#: only checked to be numbers here. ``model.drop_path_rate`` and ``trainer.gradient_clip_val`` as text failed
#: inside Hydra's instantiation of the network or the trainer, with its multi-line error and status 1.
_NUMBER_VALUES: tuple[tuple[str, float | None, float | None, str, str], ...] = (
    ("data.val_fraction", None, None, "the share of images or sol groups held out for validation", "0.2"),
    ("data.min_labelled_fraction", None, None, "the share of labelled pixels a crop needs", "0.05"),
    ("data.focus_fraction", None, None, "the share of crops placed on focus_class", "0.33"),
    ("data.class_mix_prob", None, None, "the chance of ClassMix per crop", "0.5"),
    ("data.hflip_p", 0.0, 1.0, "the chance of a horizontal flip", "0.5"),
    ("data.min_scale", 0.0, 1.0, "the smallest area fraction of a resized crop", "1.0"),
    ("data.max_rotation_deg", 0.0, None, "degrees", "0.0"),
    ("data.brightness", 0.0, None, "colour jitter", "0.2"),
    ("data.contrast", 0.0, None, "colour jitter", "0.2"),
    ("data.saturation", 0.0, None, "colour jitter", "0.15"),
    ("model.drop_path_rate", 0.0, 1.0, "the encoder's stochastic depth", "0.1"),
    ("trainer.gradient_clip_val", 0.0, None, "the largest gradient norm; null: no clipping", "1.0"),
)


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a plain container (``OmegaConf.to_container`` of a config
    with ``resolve=False``: interpolations are their ``${...}`` text)."""
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, f"{prefix}{key!s}.")]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in _leaves(value, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), node)]


#: Parameters whose mapping holds another class's parameters (``data.scene``: the synthetic scenes' fields).
_FIELDS_OF = {
    ("marsunits.data.datamodule.MarsDataModule", "scene"): "marsunits.data.synthetic.config.SceneConfig"
}


#: Classes whose ``**kwargs`` go to another class or function: ``trainer.strategy.static_graph`` is torch's
#: DDP's, ``logger.wandb.monitor_gym`` is ``wandb.init``'s (imported with Lightning's WandbLogger already).
_KWARGS_TO = {
    "lightning.pytorch.strategies.DDPStrategy": "torch.nn.parallel.DistributedDataParallel",
    "lightning.pytorch.loggers.WandbLogger": "wandb.init",
}


def _takes_bool(parameter: inspect.Parameter) -> bool:
    """Whether a parameter takes true or false: its annotation (``from __future__`` text, or the types) says
    so (``bool``, ``bool | None``, ``Union[bool, Literal['link'], None]``, ``bool | Mapping[str, bool]``), or,
    unannotated (torch's), its default is true or false."""
    if parameter.annotation is inspect.Parameter.empty:
        return isinstance(parameter.default, bool)
    return re.search(r"\bbool\b", str(parameter.annotation)) is not None


#: Annotations of a parameter that takes true or false only (``from __future__`` text, or the types).
_SWITCH_ANNOTATIONS = ("bool", "bool | None", "Optional[bool]", bool, Optional[bool])  # noqa: UP045


def _takes_only_bool(parameter: inspect.Parameter) -> bool:
    """Whether a parameter takes true or false and nothing else (null aside): annotated so
    (:data:`_SWITCH_ANNOTATIONS`), or unannotated (torch's) with a true or false default. Any text given to
    it is a mistake (``fasle``), where ``save_last`` (``bool | Literal['link']``) also takes a word."""
    if parameter.annotation is inspect.Parameter.empty:
        return isinstance(parameter.default, bool)
    return parameter.annotation in _SWITCH_ANNOTATIONS


def _switch_leaves(node: Any, prefix: str = "", cls: Any = None) -> Iterator[tuple[str, Any, bool]]:
    """``(dotted key, value, only a bool)`` of each leaf of a plain container (:func:`_leaves`) that a class
    reads as true or false: a parameter that takes a bool (:func:`_takes_bool`; everything under it,
    ``data.cache.ai4mars``) of the class its node builds (``_target_``; with the class its ``**kwargs`` go to,
    :data:`_KWARGS_TO`), or ``cls`` for a node without one (:data:`_FIELDS_OF`). The third is whether the
    parameter takes nothing but true or false (:func:`_takes_only_bool`; False under a mapping or list).
    A class that cannot be imported here (refused first by :func:`check_config_values`) has no keys."""
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    if isinstance(target, str):
        try:
            cls = locate(target)
        except UnimportableTargetError:  # refused by check_config_values before these checks
            cls = None
    kwargs_to = None
    if isinstance(target, str) and target in _KWARGS_TO:
        try:
            kwargs_to = locate(_KWARGS_TO[target])
        except UnimportableTargetError:  # not importable here: its keys are none, as for a class
            kwargs_to = None
    parameters: dict[str, inspect.Parameter] = {}
    for named in (cls, kwargs_to):
        try:
            parameters = {**dict(inspect.signature(named).parameters), **parameters} if named else parameters
        except (TypeError, ValueError):  # no signature to read
            continue
    for key, value in node.items():
        dotted = f"{prefix}{key!s}"
        parameter = parameters.get(str(key))
        if parameter is not None and _takes_bool(parameter):
            if isinstance(value, dict | list):
                yield from ((k, v, False) for k, v in _leaves(value, f"{dotted}."))
            else:
                yield dotted, value, _takes_only_bool(parameter)
            continue
        fields = _FIELDS_OF.get((str(target), str(key)))
        if isinstance(value, dict):
            yield from _switch_leaves(value, f"{dotted}.", locate(fields) if fields else None)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from _switch_leaves(item, f"{dotted}.{i}.")


def check_run_values(cfg: DictConfig) -> None:
    """Refuse mistyped run settings before anything is rendered or built, naming the key.

    Checks the switches ``train``, ``test``, ``data_moved`` (and that no switch of a class the config builds,
    :func:`_switch_leaves`, is yes/no/on/off, which the config reads as text and a switch as true:
    ``train=no`` trained; elsewhere such a word is a value, ``run_name=no``), those switches given as other
    text where they take nothing but true or false (``model.channels_last=abc``,
    ``callbacks.model_checkpoint.auto_insert_metric_name=fasle``, ``+data.scene.distortion=fasle``), the
    integers of :data:`_INTEGER_VALUES` (null allowed where the config has null), the numbers of the data
    config (:data:`_NUMBER_VALUES`: ``data.val_fraction=abc``, ``data.hflip_p=abc``), the
    ``trainer.limit_*_batches`` (a fraction in [0, 1] or a whole number of batches), and ``trainer=gpu`` /
    ``trainer.accelerator=gpu`` on a machine without a CUDA GPU. The ``data.*`` values only where
    ``data._target_`` is marsunits' own data module (:func:`marsunits_datamodule`).

    Raises:
        ConfigError: naming the key, the value and what to give instead.
    """
    for key in ("train", "test", "data_moved"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(switch_value_refusal(key, value))
    switches = list(_switch_leaves(OmegaConf.to_container(cfg, resolve=False)))
    for key, value, _ in switches:
        if isinstance(value, str) and value.lower() in YES_NO_WORDS:
            # The config reads yes/no/on/off as text, and any text counts as true where a switch is read.
            # Only where a switch is read: run_name=no names a folder, a data module of one's own has its
            # own keys (data.mode=on).
            raise ConfigError(switch_value_refusal(key, value))
    for key, value, only_bool in switches:
        # Other text where nothing but true or false is taken (an interpolation, ${...}, is left alone):
        # model.channels_last=abc, callbacks.model_checkpoint.auto_insert_metric_name=fasle ran switched on.
        if only_bool and isinstance(value, str) and "${" not in value:
            raise ConfigError(switch_value_refusal(key, value))
    own_data = marsunits_datamodule(cfg)
    for key, lowest, unit in _INTEGER_VALUES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None or (key.startswith("data.") and not own_data):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            shown = _INTEGER_EXAMPLES.get(key, 4)
            raise ConfigError(
                f"{key}={value!r}: expected a whole number >= {lowest} ({unit}), e.g. {key}={shown}"
                f"{_text_from_interpolation(cfg, key, value)}"
            )
    for key, low, high, unit, example in _NUMBER_VALUES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None or (key.startswith("data.") and not own_data):
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number or (low is not None and value < low) or (high is not None and value > high):
            bounds = "" if low is None else f" >= {low:g}" if high is None else f" in [{low:g}, {high:g}]"
            raise ConfigError(
                f"{key}={value!r}: expected a number{bounds} ({unit}), e.g. {key}={example}"
                f"{_text_from_interpolation(cfg, key, value)}"
            )
    for stage in ("train", "val", "test"):
        key = f"trainer.limit_{stage}_batches"
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        fraction = isinstance(value, float) and 0.0 <= value <= 1.0
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not (fraction or count):
            raise ConfigError(
                f"{key}={value!r}: expected a fraction of the batches in [0.0, 1.0] or a whole number of "
                f"batches, e.g. {key}=0.25 or {key}=10"
            )
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    if precision is not None and precision not in _PRECISIONS:
        # Lightning's refusal came inside Hydra's instantiation of the Trainer, after the scenes were made.
        raise ConfigError(
            f"trainer.precision={precision!r}: give one of Lightning's precisions, e.g. "
            "trainer.precision=32-true (CPU) or trainer.precision=bf16-mixed (GPU); all: "
            f"{', '.join(map(str, _PRECISIONS))}"
        )
    devices = OmegaConf.select(cfg, "trainer.devices", default=None)
    if devices is not None and not _devices_value(devices):
        # Lightning's own refusal came inside Hydra's instantiation of the Trainer: a traceback, status 1.
        raise ConfigError(
            f"trainer.devices={devices!r}: give a number of devices (trainer.devices=2), auto, -1 (every "
            "device), or a list of GPU ids (trainer.devices=[0,1])"
        )
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="") or "").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU that PyTorch can use "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); train on the CPU with "
            "trainer=cpu (the default), or install a CUDA build of PyTorch on a GPU machine"
        )


def _text_from_interpolation(cfg: DictConfig, key: str, value: Any) -> str:
    """For a number refused as text that an interpolation made (``${oc.env:BATCH}``: OmegaConf's
    ``oc.env`` always gives text), how to read it as a number; else "". The refusal alone
    (``data.batch_size='4': expected a whole number``) gave an example of the value it refused."""
    if not isinstance(value, str):
        return ""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not isinstance(node, DictConfig) or leaf not in node:
        return ""
    raw = node._get_node(leaf)
    if raw is None or not OmegaConf.is_interpolation(node, leaf):
        return ""
    written = raw._value()  # type: ignore[union-attr]
    return (
        f" (it is text: {written} gives text; read it as a number with oc.decode, "
        f"{key}='${{oc.decode:{written}}}')"
    )


#: The ``trainer.precision`` values Lightning's Trainer takes (as its own check lists them).
_PRECISIONS: tuple[str | int, ...] = (
    *get_args(_PRECISION_INPUT_STR),
    *get_args(_PRECISION_INPUT_INT),
    *get_args(_PRECISION_INPUT_STR_ALIAS),
)

#: The data modules of marsunits (the ``_target_`` of ``configs/data/*.yaml``): the ``data.*`` checks here are
#: about their settings. A user's own data module (``data._target_=mypkg.MyDataModule``) has keys of its own,
#: which those checks refused (``data.crop_size=100`` where it means something else, or nothing).
OWN_DATAMODULES: tuple[str, ...] = ("marsunits.data.datamodule.MarsDataModule",)


def marsunits_datamodule(cfg: DictConfig) -> bool:
    """Whether ``cfg.data`` builds one of :data:`OWN_DATAMODULES` (its ``_target_``, or another import
    path of the same class)."""
    data = cfg.get("data")
    target = data.get("_target_") if isinstance(data, DictConfig) else None
    if not isinstance(target, str):
        return False
    if target in OWN_DATAMODULES:
        return True
    if not target.startswith("marsunits."):  # a user's class: not imported here
        return False
    try:
        found = locate(target)
    except UnimportableTargetError:  # refused by check_config_values (unimportable_target)
        return False
    return any(found is locate(own) for own in OWN_DATAMODULES)


def check_input_sizes(cfg: DictConfig) -> None:
    """Refuse a ``data.crop_size``, validation window (``crop_size + 2 x val_context_px``) or synthetic scene
    side (``data.scene.width``/``height``: validated whole) that is not a multiple of the input divisor of the
    configured network (:func:`~marsunits.models.input_divisor`: ``2**model.encoder_depth`` for Unet and FPN,
    16 for the default model; at most 16 for DeepLabV3+), naming that number. Only for marsunits' own data
    module and task (:func:`marsunits_datamodule`), and only where the run trains: ``train=false`` builds
    the checkpoint's network whatever the model config (``model=tiny``'s multiples of 8 under the default
    model's 16), so its sizes are checked against that network instead: before the run folder by
    :func:`refusal_before_hydra` (the checkpoint's ``arch`` and ``encoder_depth``), and in the run by the
    data module against the network built (``MarsDataModule.check_size_divisor``).

    Raises:
        ConfigError: naming the key, the value, the divisor and values that fit.
    """
    from marsunits.data.datamodule import size_refusal
    from marsunits.models import input_divisor

    model = cfg.get("model")
    if not marsunits_datamodule(cfg) or not isinstance(model, DictConfig):
        return
    if model.get("_target_") != "marsunits.task.SegmentationTask":
        return  # another network: its own needs
    if cfg.get("train", True) is False:
        return  # the checkpoint's network, not the model config's: checked once built
    arch, depth = model.get("arch", "unet"), model.get("encoder_depth", 5)
    try:
        divisor = input_divisor(arch, depth)
    except ValueError:
        return  # refused by check_model_values, naming the key
    stride = f"2**{depth} = {divisor}" if divisor == 2**depth else f"its encoder's output stride, {divisor}"
    why = f"model.arch={arch} with model.encoder_depth={depth} takes multiples of {stride}"
    synthetic = OmegaConf.select(cfg, "data.sources", default=None) == ["synthetic"]
    scene = OmegaConf.select(cfg, "data.scene", default=None) if synthetic else None
    refused = size_refusal(
        OmegaConf.select(cfg, "data.crop_size", default=None),
        OmegaConf.select(cfg, "data.val_context_px", default=None),
        scene if isinstance(scene, DictConfig) else None,
        divisor,
        why,
    )
    if refused is not None:
        raise ConfigError(refused)


def check_config_values(cfg: DictConfig) -> None:
    """Refuse every value of a composed ``train.yaml`` config that can be judged without reading data or
    building anything: missing values (``???``), a ``_target_`` that does not import
    (:func:`~marsunits.targets.unimportable_target`), :func:`check_run_values`, that the checkpoint files
    named are there (:func:`check_checkpoint_files`), the W&B logger's settings,
    :func:`check_model_values`, :func:`check_input_sizes`, and the data's channels against the model's.
    The ``data.*`` values are checked only for marsunits' own data modules (:func:`marsunits_datamodule`).

    The command line runs it before Hydra makes the run folder (:func:`refusal_before_hydra`), so a
    mistyped value leaves no folder of a run that never started; :func:`run` runs it again for a config
    composed another way (tests, notebooks).

    Raises:
        ConfigError: naming the key, the value and what to give instead.
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:  # before anything is written or rendered: e.g. data=folder without data.root
        layout = ""
        if "data.root" in missing and list(cfg.data.get("sources") or []) == ["folder"]:
            from marsunits.data.folder import FOLDER_LAYOUT

            # data=folder's root has no usual place: say what the folder must hold, not /path/to/folder.
            layout = f", <folder> holding {FOLDER_LAYOUT} (data/README.md)"
        overrides = " ".join(
            "data.root=<folder>" if k == "data.root" and layout else f"{k}=..." for k in missing
        )
        raise ConfigError(
            f"{', '.join(missing)} not set (??? in the config); add {overrides} to the command{layout}"
        )
    refused = unimportable_target(cfg)
    if refused is not None:  # before the checks below read the classes' parameters
        # Hydra's refusal came when the run instantiated it: its error logged twice, after the run folder.
        raise ConfigError(refused)
    check_run_values(cfg)
    check_checkpoint_files(cfg)
    check_wandb_modes(cfg)
    check_model_values(cfg)
    check_input_sizes(cfg)
    data_channels, model_channels = cfg.data.get("in_channels"), cfg.model.get("in_channels")
    own_data = marsunits_datamodule(cfg)
    if (
        own_data
        and data_channels is not None
        and (isinstance(data_channels, bool) or data_channels not in (1, 3))
    ):
        # Refused by the data module once built, after the run folder was made, naming its config file.
        raise ConfigError(
            f"data.in_channels={data_channels!r}: give 1 (grey) or 3 (colour), e.g. data.in_channels=3"
        )
    if None not in (data_channels, model_channels) and data_channels != model_channels:
        raise ConfigError(
            f"data.in_channels={data_channels} but model.in_channels={model_channels}: the network must take "
            "the channels the data delivers (1 grey, 3 colour). Set data.in_channels only (the model "
            "follows it), e.g. data.in_channels=3"
        )


def check_checkpoint_files(cfg: DictConfig) -> None:
    """Refuse a ``ckpt_path`` or ``init_ckpt_path`` the run would read that names no file (nor model package
    folder), or a file whose first bytes are not a checkpoint's (a text file), reading only those: whether
    it is a whole checkpoint, and ``ckpt_path=last``, which looks for runs, are the run's to judge.
    ``init_ckpt_path`` beside a resumed ``ckpt_path`` is ignored by the run, so not checked. Through
    :func:`check_config_values`, the command line checks this before Hydra makes the run folder: a
    missing file left one with only ``.hydra/`` and ``train.log``.

    Raises:
        ConfigError: (a :class:`~marsunits.errors.MissingFileError` for a missing file, a
            :class:`~marsunits.task.NotACheckpointError` for a text file) naming the option.
    """
    ckpt, init = cfg.get("ckpt_path"), cfg.get("init_ckpt_path")
    given = ckpt not in (None, "", "null")
    if given and str(ckpt) == "last":
        return
    if given and bool(cfg.get("train", True)):
        # Its own file checks (a model package is refused as no resume); nothing of the run folder is used.
        resolve_ckpt_path(str(ckpt), Path(), Path(), "")
    elif given:
        check_source_exists(str(ckpt), "ckpt_path")
    elif init:
        check_source_exists(str(init), "init_ckpt_path")


def check_model_values(cfg: DictConfig) -> None:
    """Refuse a name the task cannot build (``model.arch``, ``model.encoder``, ``model.encoder_weights``,
    ``model.optimizer``, ``model.scheduler``, ``model.loss``), an ``model.encoder_depth`` outside 1..5 or
    ``model.decoder_channels`` that do not fit it, a learning rate or loss weight out of range
    (``model.lr=0``; :func:`~marsunits.task.check_numbers`), a learning-rate schedule over a run without
    an end (``trainer.max_epochs=-1``), or a ``model.num_classes`` other than the task's classes, naming the
    key; a model config that builds another class is left alone.

    Raises:
        ConfigError: the key and value, then the task's own message with the valid choices.
    """
    from marsunits.constants import CLASS_NAMES
    from marsunits.models import LOSSES, check_depth, check_names
    from marsunits.task import _DEFAULTS, OPTIMIZERS, SCHEDULERS, check_numbers

    model = cfg.get("model")
    if not isinstance(model, DictConfig) or model.get("_target_") != "marsunits.task.SegmentationTask":
        return
    arch, encoder = model.get("arch", "unet"), model.get("encoder", "efficientnet_lite0")
    weights = model.get("encoder_weights", "lite0_offline")
    for key, value, names in (  # one at a time, so that the message names the key that is wrong
        ("arch", arch, (arch, "efficientnet_lite0", None)),
        ("encoder", encoder, ("unet", encoder, None)),
        ("encoder_weights", weights, ("unet", encoder, weights)),
    ):
        try:
            check_names(*names)
        except ValueError as exc:
            raise ConfigError(f"model.{key}={value!r}: {exc}") from None
    try:  # the task's own checks, which ran only once the scenes were rendered (model.encoder_depth=7)
        check_depth(arch, model.get("encoder_depth", 5), model.get("decoder_channels"))
    except ValueError as exc:
        # Named by the key the message is about: the widths' refusals named model.encoder_depth.
        key = "decoder_channels" if str(exc).startswith("decoder_channels") else "encoder_depth"
        raise ConfigError(f"model.{key}={model.get(key, 5)!r}: {exc}") from None
    try:  # model.lr=0: the task's message, naming the key
        check_numbers(
            {k: model.get(k, _DEFAULTS[k]) for k in ("lr", "encoder_lr_mult")},
            {k: model.get(k, _DEFAULTS[k]) for k in ("weight_decay", "dice_weight", "contact_weight")},
        )
    except ConfigError as refused:
        key = str(refused).split(" ", 1)[0]  # "model.<name> must be ..."
        raise ConfigError(f"{refused}{_text_from_interpolation(cfg, key, model.get(key[6:]))}") from None
    for key, default, choices in (
        ("optimizer", "adamw", OPTIMIZERS),
        ("scheduler", "cosine", SCHEDULERS),
        ("loss", "ce", LOSSES),
    ):
        value = model.get(key, default)
        if value not in choices:
            raise ConfigError(
                f"model.{key}={value!r}: Unknown {key} {value!r}. Valid choices: {list(choices)}."
            )
    scheduler = model.get("scheduler", "cosine")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    steps = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    if scheduler != "none" and epochs == -1 and steps in (None, -1):
        # Lightning's estimate of the run's steps is then infinite: refused by the task once the scenes were
        # rendered and the trainer built.
        raise ConfigError(
            f"trainer.max_epochs=-1 (no limit) but model.scheduler={scheduler!r} needs a finite run length "
            "(it decays over the run): give trainer.max_epochs=<epochs> or +trainer.max_steps=<steps>, or "
            "model.scheduler=none"
        )
    names = model.get("class_names", CLASS_NAMES)
    classes = model.get("num_classes", len(names))
    if classes != len(names):
        raise ConfigError(
            f"model.num_classes={classes!r}: the project has {len(names)} classes ({', '.join(names)}; "
            "marsunits.constants), and every data config maps its labels onto them. For more network "
            "outputs per class, train sub-classes (data.subclass_map and data.subclasses, e.g. "
            "experiment=marsscapes_subclasses); leave model.num_classes at 3"
        )


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


def _devices_value(devices: Any) -> bool:
    """Whether ``devices`` is a value Lightning's ``Trainer(devices=...)`` reads: a count >= 1, -1 (all),
    ``auto``, a list of device ids, or the same written as text (``"2"``, ``"0,1"``, ``"0,"``: GPU 0)."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return True
        if "," in text:  # device ids ("0,1", or "0," for GPU 0)
            ids = [p.strip() for p in text.split(",") if p.strip()]
            return bool(ids) and all(re.fullmatch("[0-9]+", p) for p in ids)
        # ASCII digits only: "--1" and "²" passed str.isdigit and ended in int()'s ValueError, a traceback.
        return re.fullmatch("-?[0-9]+", text) is not None and _devices_value(int(text))
    if isinstance(devices, list | tuple | ListConfig):
        return bool(devices) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices
        )
    return False


def check_subclasses_match(task: Any, datamodule: Any) -> None:
    """Refuse a network whose outputs are not what the training masks hold.

    ``model.subclasses`` reads ``data.subclasses`` in every model config; set on the model alone, the network
    would get sub-class outputs while the masks hold project ids (or the reverse) and silently learn the
    wrong classes.

    Raises:
        ConfigError: the two differ; the message says which keys to set.
    """
    model_groups = task.hparams.get("subclasses")
    data_groups = getattr(datamodule, "subclasses", None)
    if model_groups != data_groups:
        raise ConfigError(
            f"model.subclasses={model_groups} but data.subclasses={data_groups}: the network's outputs must "
            "be the classes the training masks hold. Set data.subclass_map and data.subclasses (the model "
            "reads them), e.g. experiment=marsscapes_subclasses, and leave model.subclasses to follow them."
        )


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group mapping (callbacks, loggers) that has a ``_target_``."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def _scalar_metrics(metrics: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, float]:
    """Float copies of the metrics whose names start with one of ``prefixes`` (NaN kept as null later)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if name.startswith(prefixes):
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                continue
    return out


def _json_safe(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def log_lightning_once() -> None:
    """Leave Lightning's log lines to the root logger's handlers when it has some (Hydra's console and
    ``train.log``).

    Why: importing ``lightning`` adds a console handler of its own (``INFO: ...``) to the ``lightning``
    logger, whose records also propagate to the root logger: under Hydra every Lightning line was printed
    twice. Imported while the root logger has no handler yet (the command line imports this module to claim
    the run folder before Hydra configures logging), ``lightning.pytorch`` and ``lightning.fabric`` add a
    console handler each and stop propagating: every Lightning line (``Trainer.fit`` stopped, the DDP
    ranks joining, checkpoints restored) went to the console unformatted and never reached ``train.log``.
    Without root handlers (plain Python use) Lightning's own console handlers stay.
    """
    import lightning  # noqa: F401  (adds its handler on import)
    import lightning.pytorch  # noqa: F401  (and these, theirs when the root logger had none)

    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        package = logging.getLogger(name)
        own = [h for h in package.handlers if type(h) is logging.StreamHandler]
        for handler in own:
            package.removeHandler(handler)
        if own and name != "lightning":  # Lightning turned propagation off when it added its handler
            package.propagate = True


def build_trainer(trainer_cfg: DictConfig, callbacks: list[Any], loggers: list[Any]) -> pl.Trainer:
    """The Lightning trainer of ``trainer_cfg``; with ``sync_batchnorm``, timm's batch norms keep their
    activations when synchronised (:class:`~marsunits.models.sync_batchnorm.TimmSyncBatchNorm`: Lightning's
    own conversion dropped them under ``trainer=ddp``)."""
    from marsunits.models.sync_batchnorm import layer_sync_plugins

    extra = layer_sync_plugins(trainer_cfg)
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, **extra)


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
    # SIGTERM (a scheduler's time limit) during the set-up or the test is reported as during training, where
    # Lightning's own handler stops at a step boundary: it used to end the run silently before that.
    with claimed_run_folder(Path(cfg.paths.output_dir)), sigterm_raises(defer_to_later_handlers=True):
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
    if ckpt_path:
        resumed = check_resume_checkpoint(ckpt_path, task, datamodule)
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
        initialise_from_checkpoint(task, init_ckpt)
        _note_seen_sols(datamodule, f"init_ckpt_path={init_ckpt}", task)
    # The split and what the models this run comes from saw of it (sols, images): refused here, before the
    # run folder and the loggers, not in the trainer's setup, which left a run folder and a failed W&B run.
    check_split = getattr(datamodule, "check_split", None)
    if callable(check_split):
        check_split()
    # After the data and model settings and the starting weights were accepted (a bad value or a checkpoint
    # that does not fit stops above), so a run that never started leaves no config.yaml, the record a later
    # ckpt_path=last compares with (a refused init_ckpt_path left one, and a later resume was told the run
    # had stopped before its first checkpoint).
    output_dir.mkdir(parents=True, exist_ok=True)
    if getattr(rank_zero_only, "rank", 0) == 0:  # every DDP rank runs this: one writes, atomically
        atomic_write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # The callbacks before the loggers: a callback setting refused here (callbacks.*) started a W&B run
    # that was never finished, an empty run in the project for each such slip.
    callbacks = _instantiate_group(cfg.get("callbacks"))
    loggers = [] if _fast_dev_run_without_loggers(cfg) else prepare_loggers(cfg, ckpt_path)
    try:
        if not loggers:
            # LearningRateMonitor refuses to run without a logger; with logger=none there is nowhere to log.
            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
        callbacks = run_progress_bar(callbacks, bool(cfg.trainer.get("enable_progress_bar", True)))
        callbacks = _with_wandb_run_id(callbacks, loggers)
        trainer = build_trainer(cfg.trainer, callbacks, loggers)
    except BaseException:
        finish_loggers(loggers, "failed")
        raise

    status = "failed"
    seconds_before = 0.0
    # The checkpoint an earlier part's metrics.json scored, as it is before this part trains: a stop marks
    # that file outdated only if this part replaced it (a stop before any new best.ckpt leaves it true).
    scored = _scored_checkpoint(output_dir, str(ckpt_path), resumed.steps) if training and ckpt_path else None
    try:
        metrics: dict[str, Any] = {}
        if training:
            task.part_started = start
            try:
                trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
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
            metrics.update(
                {"val/" + k[len("test/") :]: v for k, v in metrics.items() if k.startswith("test/")}
            )
            _summarise_kept_checkpoint(loggers, metrics)
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
            if status != "success" and training and ckpt_path and getattr(rank_zero_only, "rank", 0) == 0:
                _mark_earlier_metrics_outdated(output_dir, sys.exc_info()[1], scored, trainer.global_step)

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
        write_metrics(output_dir, result)
        log.info("metrics written to %s", output_dir / "metrics.json")
    return result


#: What identifies a checkpoint file's version: a replaced file (written and renamed over it, or rewritten in
#: place) has another inode or modification time.
_FileVersion = tuple[int, int, int, int] | None


def _file_version(path: Path) -> _FileVersion:
    """``path``'s device, inode, size and modification time (ns), or None when it is not a file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if path.is_file() else None


class _ScoredCheckpoint(NamedTuple):
    """The checkpoint an earlier part's ``metrics.json`` scored, as it was before this part trained."""

    path: Path
    version: _FileVersion
    #: Its optimiser step when it is the checkpoint this part resumed from, else None.
    step: int | None


def _scored_checkpoint(output_dir: Path, resumed: str | None, resumed_step: int) -> _ScoredCheckpoint | None:
    """The checkpoint whose scores the ``metrics.json`` in ``output_dir`` holds (its ``best_ckpt``; without
    one, its ``last_ckpt``: the weights in memory at the end were scored; in ``output_dir``'s ``checkpoints/``
    when the run folder was moved since and the path it names is gone) and that file's version now, and,
    when it is the checkpoint ``resumed`` (at step ``resumed_step``), that step; None without a readable
    ``metrics.json`` naming one."""
    try:
        earlier = read_metrics(output_dir)
    except (OSError, ValueError):
        return None
    recorded = earlier.get("best_ckpt") or earlier.get("last_ckpt")
    if not isinstance(recorded, str) or not recorded:
        return None
    path = Path(recorded)
    here = output_dir / "checkpoints" / path.name
    if not path.is_file() and here.is_file():
        # The run folder was moved (another disk or node): metrics.json names the checkpoint where it was.
        path = here
    try:
        step = resumed_step if resumed and os.path.samefile(path, resumed) else None
    except OSError:
        step = None
    return _ScoredCheckpoint(path, _file_version(path), step)


def _mark_earlier_metrics_outdated(
    output_dir: Path, stop: BaseException | None, scored: _ScoredCheckpoint | None, step: int
) -> None:
    """Add ``outdated`` to the ``metrics.json`` an earlier part of this run wrote in ``output_dir``, when a
    later part that trained (a resume, ``ckpt_path=last``) stops before its end (``stop``: Ctrl-C, SIGTERM, an
    error) after it replaced the checkpoint the file scored (``scored``: its path and version before this
    part trained, :func:`_scored_checkpoint`; ``best.ckpt``, or ``last.ckpt`` without one), so that the file
    no longer reads as the scores of the run's checkpoints. A part stopped before it saved a new best (before
    its first step, or before a validation) leaves the file as it is, its scores still those of
    ``best.ckpt`` (such a stop marked it too); so does one that resumed from the scored checkpoint and took
    no step (at optimiser ``step`` still): the interrupt's ``last.ckpt`` it wrote holds the same weights.
    The part that finishes the run rewrites the file without it. Nothing else of the record changes; a file
    that cannot be read or written is left as it is."""
    if scored is None:
        return  # no metrics.json (the run's first part was stopped too), or not this tool's
    path = scored.path
    if _file_version(path) == scored.version:
        return  # the scored checkpoint is the file it was: the scores still hold
    if scored.step is not None and step == scored.step:
        return  # resumed from it and no step taken: rewritten (the interrupt's last.ckpt) with its weights
    try:
        earlier = read_metrics(output_dir)
    except (OSError, ValueError):
        return
    if isinstance(stop, (TerminatedError, SIGTERMException)):
        how = "terminated (SIGTERM)"
    elif isinstance(stop, KeyboardInterrupt):
        how = "interrupted (Ctrl-C)"
    else:
        how = "stopped by an error"
    earlier["outdated"] = (
        f"a later part of this run (resumed with ckpt_path=last) was {how} before its end and replaced "
        f"{path.name}, the checkpoint these scores are of: they are of the part that finished before it. Run "
        "the same command with ckpt_path=last to finish the run and rewrite this file"
    )
    try:
        write_metrics(output_dir, earlier)
    except OSError:  # a full disk that stopped the run: the stop's own message says what to do
        log.debug("metrics.json not marked outdated", exc_info=True)


#: The keys of ``metrics.json`` that hold paths (escaped where a name is not UTF-8: :func:`write_metrics`).
METRICS_PATH_KEYS = ("best_ckpt", "last_ckpt", "init_ckpt", "evaluated_ckpt")


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``run_dir/metrics.json`` atomically, as valid UTF-8, and return its path.

    A path of :data:`METRICS_PATH_KEYS` with a name that is not UTF-8 (a run folder under a Latin-1 name:
    Python holds its bytes as lone surrogates) is written as ``manifest.csv`` writes names, each such byte
    ``\\xNN`` and a backslash doubled, and its key listed in ``escaped_paths``
    (:func:`~marsunits.inference.writers.escaped_path_values`); :func:`read_metrics` undoes it. They were
    written ``"\\udce9"``, which strict JSON readers refuse or turn into U+FFFD, so no tool but Python found
    the checkpoints from the file.
    """
    from marsunits.inference.writers import escaped_path_values

    record = escaped_path_values(metrics, METRICS_PATH_KEYS)
    return atomic_write_text(run_dir / "metrics.json", json.dumps(record, indent=2) + "\n")


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metrics.json`` that ``train.py`` wrote (the file, or its run folder), with its paths as the
    filesystem names them (:func:`write_metrics`'s escapes undone: a Latin-1 run folder's ``best_ckpt``
    opens as it is).

    ``~`` is the home folder, as in every path option.

    Raises:
        FileNotFoundError: no such file, or a run folder without ``metrics.json`` (a run not finished).
        OSError: the file cannot be read. ValueError: it is not JSON, or not a JSON object (the message
            names the file).
        TypeError: ``path`` is not a path (a list of runs: one at a time).
    """
    from marsunits.inference.writers import unescaped_path_values

    if not isinstance(path, (str, os.PathLike)):  # pathlib's "expected str, bytes or os.PathLike object"
        raise TypeError(
            f"read_metrics takes the path of a run folder or its metrics.json, got {type(path).__name__} "
            f"{path!r:.60}; for several runs: [read_metrics(p) for p in paths]"
        )
    file = expand_home(path)  # "~/runs/x" was "No such file or directory: '~/runs/x'"
    if file.is_dir():
        file = file / "metrics.json"
        if not file.exists():
            raise FileNotFoundError(
                f"no metrics.json in the run folder {file.parent}: train.py writes it at the end of a run; "
                "give the folder of a finished run"
            )
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # it named no file
        raise ValueError(f"{file}: not the JSON train.py writes ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{file}: a JSON {type(record).__name__}, not the object train.py writes")
    return unescaped_path_values(record)


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
        CheckpointError: The file (:func:`marsunits.task.read_checkpoint`).
        ConfigError: Its weights do not fit this run's network; names the first tensors that differ.
    """
    from marsunits.fine_tuning import matching_overrides, network_differences
    from marsunits.task import METADATA_KEY, read_checkpoint

    checkpoint = read_checkpoint(ckpt_path)
    saved = checkpoint["state_dict"]
    mismatched, differing = network_differences(
        task.state_dict(), saved, task.hparams, checkpoint["hyper_parameters"]
    )
    if mismatched:
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds another network than this run's model settings build: "
            f"{len(mismatched)} tensor names or shapes differ (e.g. {mismatched[:3]}; hyper-parameters "
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
    )


def _fit_is_finished(done: ResumePoint, trainer_cfg: Any) -> bool:
    """Whether a run resumed at ``done`` has nothing left to train under ``trainer_cfg``'s
    ``max_epochs``/``max_steps`` (Lightning's rule: -1 or null is no limit)."""
    epochs, steps = done.epochs, done.steps
    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps")
    if isinstance(max_steps, int) and max_steps >= 0 and steps >= max_steps:
        return True
    return isinstance(max_epochs, int) and max_epochs >= 0 and epochs >= max_epochs


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


def checked_start(cfg: DictConfig) -> tuple[str | None, tuple[str, str] | None]:
    """What the run starts from, checked against its run folder before anything is written there.

    Returns:
        ``(ckpt_path, evaluated)``: the checkpoint to resume (:func:`resolve_ckpt_path`; None for a new run
        or ``train=false``) and, for ``train=false``, the checkpoint whose network is validated and tested
        with the option that gave it (:func:`_evaluated_checkpoint`).

    Raises:
        ConfigError: No such checkpoint, or the folder holds another run, or the resumed run trained another
            job (:func:`check_run_folder`).
    """
    output_dir = Path(cfg.paths.output_dir)
    job = job_identity(cfg)
    data_moved = bool(cfg.get("data_moved", False))
    evaluated = None  # train=false: (the checkpoint whose network is validated and tested, its option)
    if bool(cfg.get("train", True)):
        ckpt_path = resolve_ckpt_path(
            cfg.get("ckpt_path"),
            output_dir,
            Path(cfg.paths.log_dir),
            cfg.task_name,
            job,
            data_moved,
            run_name=_named_run(cfg),
            seed=cfg.get("seed"),
        )
    else:
        evaluated, ckpt_path = _evaluated_checkpoint(cfg), None
    # Before config.yaml, the record it compares with, is replaced.
    check_run_folder(output_dir, ckpt_path, job, data_moved)
    return ckpt_path, evaluated


def refusal_before_hydra(cfg: DictConfig, output_dir: Path) -> str | None:
    """The refusal of :func:`check_config_values` or :func:`checked_start` for the run ``cfg`` (composed
    before Hydra starts, so without Hydra's runtime values) would make in ``output_dir``, or None; any other
    problem is left to the run.

    Hydra writes its ``.hydra/`` record and a ``train.log`` line in the run folder before the run's code
    starts: a command refused there (a new run given a finished run's ``run_name``, a resume with other
    settings) rewrote the finished run's record with the refused command's settings, and a mistyped value
    (``model.arch=unet++``, ``data.batch_size=eight``) left a run folder of a run that never started.
    """
    refused = config_value_refusal(cfg, output_dir)
    if refused is not None:
        return refused
    cfg = cfg.copy()
    try:
        OmegaConf.update(cfg, "paths.output_dir", str(output_dir), force_add=True)
        _, evaluated = checked_start(cfg)
        if evaluated is not None:
            _check_evaluated_input_sizes(cfg, evaluated[0], evaluated[1])
    except ConfigError as refused_start:
        return str(refused_start)
    except Exception:  # noqa: BLE001 - not composable this early (a missing value): the run says it
        return None
    return None


def _check_evaluated_input_sizes(cfg: DictConfig, path: str, option: str) -> None:
    """:func:`check_input_sizes` for ``train=false``, against the network of the checkpoint it scores (read
    from the checkpoint's hyper-parameters, without building it), as the run checks the network it builds.

    Raises:
        ConfigError: naming the size, the divisor and the checkpoint.
    """
    from marsunits.task import read_checkpoint

    hparams = read_checkpoint(path)["hyper_parameters"]
    network = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    with open_dict(network):
        network.train = True
        network.model.arch = hparams.get("arch", network.model.get("arch"))
        network.model.encoder_depth = hparams.get("encoder_depth", network.model.get("encoder_depth"))
    try:
        check_input_sizes(network)
    except ConfigError as refused:
        raise ConfigError(f"{refused} (the network of {option}={path}, which train=false scores)") from None


def config_value_refusal(cfg: DictConfig, output_dir: Path) -> str | None:
    """The refusal of :func:`check_config_values`, then of :func:`data_folder_refusal` (not with
    ``hydra.job.chdir=true``, where the run reads relative folders from its run folder), for the config
    ``cfg`` (composed before Hydra starts, with or without Hydra's node) run in ``output_dir``, or None; any
    other problem is left to the run.

    Needs no run folder: the command line runs it where the folder is not known yet (a ``run_name`` made of
    the clock, ``--config-name``) and for each trial of a sweep, so a mistyped value leaves no folder.
    """
    cfg = cfg.copy()
    try:
        # hydra.job.chdir=true: the run reads relative folders from its run folder, not from here.
        moves = OmegaConf.select(cfg, "hydra.job.chdir", default=False) is True
        OmegaConf.update(cfg, "paths.output_dir", str(output_dir), force_add=True)
        # Without Hydra's own node, which does not resolve outside a Hydra run (hydra.job.num)
        cfg = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
        check_config_values(cfg)
    except ConfigError as refused:
        return str(refused)
    except Exception:  # noqa: BLE001 - not composable this early (a missing value): the run says it
        return None
    return None if moves else data_folder_refusal(cfg)


def data_folder_refusal(cfg: DictConfig) -> str | None:
    """The refusal of a data folder the run would not find (``data.root``, or a source's
    ``data.source_dirs.<source>``) or would find laid out otherwise (another dataset's layout, one level too
    high or low, a subfolder or the sol table missing), in the data module's own words
    (:meth:`~marsunits.data.datamodule.MarsDataModule.check_source_folders`), or None.

    Only for marsunits' own data modules (:func:`marsunits_datamodule`): a user's own has folders of its own.
    The data module is built from ``cfg.data`` as the run builds it, so ``data.root`` is resolved as the run
    resolves it (``paths.data_root``, ``MARSUNITS_DATA``, ``~``, relative to the current folder); a data
    config the module refuses, or one that does not resolve here (Hydra's runtime values), is left to the
    run. Run by :func:`config_value_refusal`, before Hydra makes the run folder: a missing folder, or one of
    the wrong layout, was refused only in the run, which left a run folder with only Hydra's record and
    ``train.log``.
    """
    if not marsunits_datamodule(cfg):
        return None
    try:
        datamodule = instantiate(cfg.data)
    except Exception:  # noqa: BLE001 - a value the data module refuses, or unresolvable here: the run says it
        return None
    try:
        datamodule.check_source_folders()
    except FileNotFoundError as missing:
        return str(missing)
    except Exception:  # noqa: BLE001 - a folder that cannot be looked at: the run says it
        return None
    return None


def _named_run(cfg: DictConfig) -> str | None:
    """The run's name when the user gave one (``run_name=...``); None for the default, a time stamp, and in
    a sweep, whose trials run in ``multirun-<time>/<n>`` whatever the name."""
    from marsunits.sweep_trials import in_multirun

    if in_multirun():
        return None
    raw = OmegaConf.to_container(cfg, resolve=False).get("run_name")  # type: ignore[union-attr]
    if not isinstance(raw, str) or "${now:" in raw:  # a default: a time stamp, maybe after the data name
        return None
    if os.environ.get(PINNED_RUN_NAME_ENV) == str(cfg.run_name):  # the default, pinned by the command line
        return None
    return str(cfg.run_name)


def _earlier_metrics(output_dir: Path, ckpt_path: str) -> Iterator[dict[str, Any]]:
    """The ``metrics.json`` of this run folder, then of the resumed checkpoint's run folder, where readable
    (a run stopped before its end has none)."""
    for folder in (output_dir, Path(ckpt_path).resolve().parent.parent):
        try:
            yield read_metrics(folder / "metrics.json")
        except (OSError, ValueError):
            continue


def _earlier_record(output_dir: Path, ckpt_path: str, key: str) -> Any:
    """``key`` of the first earlier ``metrics.json`` (:func:`_earlier_metrics`) that has it, or None."""
    return next((m[key] for m in _earlier_metrics(output_dir, ckpt_path) if m.get(key) is not None), None)


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


def _evaluated_checkpoint(cfg: DictConfig) -> tuple[str, str]:
    """The model ``train=false`` validates and tests, and the option that gave it: ``ckpt_path`` (a file or
    model package, not ``last``), else ``init_ckpt_path``.

    Validate and test used to run with Lightning's ``ckpt_path="best"``, which is no checkpoint when nothing
    was trained: a freshly initialised network was scored and ``ckpt_path`` silently ignored.

    Raises:
        ConfigError: neither is given, or ``ckpt_path=last``.
    """
    ckpt, init = cfg.get("ckpt_path"), cfg.get("init_ckpt_path")
    if ckpt in (None, "", "null"):
        if init:
            return str(init), "init_ckpt_path"
        raise ConfigError(
            "train=false validates and tests a trained model without training: give it with "
            "ckpt_path=<run dir>/checkpoints/best.ckpt (or a model package folder)"
        )
    if ckpt == "last":
        raise ConfigError(
            "train=false with ckpt_path=last: name the checkpoint to evaluate, "
            "ckpt_path=<run dir>/checkpoints/best.ckpt"
        )
    return str(expand_home(ckpt)), "ckpt_path"


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
