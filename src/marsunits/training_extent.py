"""How far a model's training went (steps, epoch, best validation mIoU), and whether it is too little to use.

A checkpoint that barely trained (``debug=fdr``, a one-minute check, a first epoch interrupted) predicts
noise, and ``predict.py`` used it without a word. :class:`~marsunits.task.SegmentationTask` records its
training's extent in its metadata (``metadata["training"]``, :func:`training_record`), so that
``predict.py`` can put it in ``summary.json`` and warn of a model evidently too short to use
(:func:`barely_trained`). Lightning's own checkpoint keys (``epoch``, ``global_step``, the
``ModelCheckpoint`` state) give the same for a checkpoint written before the record
(:func:`record_from_checkpoint`), and a package's ``provenance`` for a package exported before it.

Plain Python, no torch: the record is read from a checkpoint's dict or a package's JSON alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BEST_SCORE_MONITOR",
    "DEFAULT_RUN_STEPS",
    "MIN_TRAINING_STEPS",
    "barely_trained",
    "barely_trained_warning",
    "check_record",
    "record_from_checkpoint",
    "record_from_provenance",
    "steps_in_all",
    "train_longer",
    "training_record",
]

#: The fewest optimiser steps, in all, of a model trained to a length that was not counted in steps.
#:
#: The default run (``python train.py``) takes 448 (4 epochs of 1792 scenes in batches of 16, 112 steps an
#: epoch); the checkpoints the README calls no model to use take 1 (``debug=fdr``) and 2 (its one-minute
#: check of real data, ``data.samples_per_epoch=16`` in batches of 8), and a first epoch of the default
#: interrupted before its end up to 111. 100 is under a quarter of the default run and above every one of
#: those but the interrupted epoch's last few steps.
MIN_TRAINING_STEPS = 100

#: Optimiser steps of the README's default run, ``python train.py`` (``tests/test_training_extent.py``
#: checks them against the composed config): what the warning offers as the way on.
DEFAULT_RUN_STEPS = 448

#: The metric whose best value a checkpoint's ``ModelCheckpoint`` state holds in a run of ``train.py``
#: (``configs/callbacks/default.yaml``); a state monitoring another metric gives no best mIoU.
BEST_SCORE_MONITOR = "val/miou"

#: The record's keys (:func:`training_record`).
_KEYS = ("optimizer_steps", "epoch", "steps_before", "fast_dev_run", "max_steps", "best_val_miou")


def training_record(
    optimizer_steps: int,
    epoch: int,
    steps_before: int | None = 0,
    fast_dev_run: bool | None = False,
    max_steps: int | None = None,
    best_val_miou: float | None = None,
) -> dict[str, Any]:
    """The ``training`` entry of a model's metadata (plain JSON types).

    Args:
        optimizer_steps: Lightning's ``global_step`` when the checkpoint was saved: the run's optimiser
            steps, the parts before a resume included.
        epoch: Lightning's ``epoch`` of the checkpoint (0-based: the epoch it was saved in; after the last
            epoch, the count of epochs run).
        steps_before: optimiser steps of the model the run's network started from (``init_ckpt_path``, in
            all, its own start's included); 0 from ImageNet or random weights, None when unknown.
        fast_dev_run: Lightning's ``fast_dev_run`` (``debug=fdr``): one batch of each stage, whatever the
            run's length was set to (Lightning marks nothing of it in the file). None when unknown.
        max_steps: ``trainer.max_steps`` when the run's length was set in optimiser steps (None: set in
            epochs, or unknown).
        best_val_miou: the run's best validation mIoU when the checkpoint was saved (its ``best.ckpt``'s
            score: this checkpoint's own when it is ``best.ckpt``); None when it validated nothing, or
            monitored another metric.
    """
    return {
        "optimizer_steps": int(optimizer_steps),
        "epoch": int(epoch),
        "steps_before": None if steps_before is None else int(steps_before),
        "fast_dev_run": None if fast_dev_run is None else bool(fast_dev_run),
        "max_steps": None if max_steps is None or max_steps <= 0 else int(max_steps),
        "best_val_miou": None if best_val_miou is None else round(float(best_val_miou), 6),
    }


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number or a one-element tensor (a ``best_model_score``)."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _best_score(callbacks: Any) -> float | None:
    """The best ``val/miou`` a Lightning checkpoint's callback states hold (``RunModelCheckpoint``'s)."""
    if not isinstance(callbacks, Mapping):
        return None
    for state in callbacks.values():
        if isinstance(state, Mapping) and state.get("monitor") == BEST_SCORE_MONITOR:
            score = _number(state.get("best_model_score"))
            if score is not None:
                return score
    return None


def record_from_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of a Lightning checkpoint's dict written before ``metadata["training"]`` (2026-12-07):
    its ``global_step``, ``epoch`` and best ``val/miou``; whether it was a fast_dev_run, its ``max_steps``
    and the steps of a model it was fine-tuned from are unknown. None without ``global_step``."""
    return _record_of_lightning_keys(checkpoint, _best_score(checkpoint.get("callbacks")))


def record_from_provenance(provenance: Any) -> dict[str, Any] | None:
    """The record of a model package exported before ``metadata["training"]``: its ``provenance``'s
    ``global_step`` and ``epoch`` (the checkpoint's). None where they are not recorded."""
    if not isinstance(provenance, Mapping):
        return None
    return _record_of_lightning_keys(provenance)


def _record_of_lightning_keys(
    keys: Mapping[str, Any], best_val_miou: float | None = None
) -> dict[str, Any] | None:
    """The record of Lightning's ``global_step`` and ``epoch`` in ``keys`` (a checkpoint's dict or a
    package's ``provenance``), the rest unknown; None without a whole ``global_step``."""
    steps, epoch = keys.get("global_step"), keys.get("epoch")
    if not isinstance(steps, int) or isinstance(steps, bool):
        return None
    return training_record(
        steps,
        epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0,
        steps_before=None,
        fast_dev_run=None,
        best_val_miou=best_val_miou,
    )


def check_record(record: Any) -> str | None:
    """Why ``record`` (a package's ``metadata["training"]``, plain JSON a user may edit) is not in the form
    :func:`training_record` writes, or None when it is (or is null). Keys other than those it writes are
    not looked at (a package of a later version may hold more)."""
    if record is None:
        return None
    if not isinstance(record, Mapping):
        return "is not an object"

    # Keys it does not know are left alone: a later version may record more, and its packages still load.
    def whole(key: str, optional: bool) -> bool:
        value = record.get(key)
        if value is None:
            return optional
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    for key, optional in (("optimizer_steps", False), ("epoch", False), ("steps_before", True)):
        if not whole(key, optional):
            return f"{key}={record.get(key)!r} is not a whole number >= 0"
    if not whole("max_steps", True):
        return f"max_steps={record.get('max_steps')!r} is not a whole number or null"
    if record.get("fast_dev_run") not in (None, True, False):
        return f"fast_dev_run={record.get('fast_dev_run')!r} is not true, false or null"
    score = record.get("best_val_miou")
    if score is not None and (_number(score) is None or not 0.0 <= float(score) <= 1.0):
        return f"best_val_miou={score!r} is not a number in [0, 1] or null"
    return None


def steps_in_all(record: Mapping[str, Any] | None) -> int | None:
    """The optimiser steps behind the model's weights: its run's and those of the model it started from
    (unknown ones counted as none). None without a record."""
    if not record:
        return None
    return int(record.get("optimizer_steps") or 0) + int(record.get("steps_before") or 0)


def barely_trained(record: Mapping[str, Any] | None) -> str | None:
    """Why a model with this training record is evidently too little trained to use, or None.

    The rule judges a model by its training's own record, not by a step count alone:

    * a **fast_dev_run** (``debug=fdr``) is one batch of training whatever the run was set to: a check of
      the wiring, never a model, unless it started from a model of :data:`MIN_TRAINING_STEPS` or more
      (``init_ckpt_path``): its weights are that model's and one batch, judged by their steps in all;
    * otherwise, fewer than :data:`MIN_TRAINING_STEPS` optimiser steps in all (:func:`steps_in_all`: a
      fine-tuning counts the steps of the model it started from, so a few steps on a trained model are not
      flagged), **unless** the run's length was set in optimiser steps (``trainer.max_steps``) and it took
      them all. A length counted in steps is a deliberate one (a fine-tuning's, a test's one-step model, a
      program that trains a network and sets its weights itself); a length set in epochs comes from the
      data's size, and a small data set or ``data.samples_per_epoch`` makes it a handful of steps that no
      one counted (the README's one-minute check of real data: 2 steps). A run stopped before its
      ``max_steps`` (interrupted, killed) is judged by its steps like any other.

    A record without ``max_steps`` (a checkpoint or package from before the record) is judged by its steps.
    None when there is no record: nothing is known to warn of.
    """
    if not record:
        return None
    if record.get("fast_dev_run") and int(record.get("steps_before") or 0) < MIN_TRAINING_STEPS:
        return (
            "it is a fast_dev_run checkpoint (debug=fdr): one batch of training, a check of the wiring, "
            "not a model"
        )
    steps = steps_in_all(record)
    assert steps is not None
    if steps >= MIN_TRAINING_STEPS:
        return None
    max_steps = record.get("max_steps")
    if isinstance(max_steps, int) and max_steps > 0 and int(record.get("optimizer_steps") or 0) >= max_steps:
        return None  # trained to the number of steps it was set to: chosen, not evident
    before = int(record.get("steps_before") or 0)
    what = f"it took {steps} optimiser step{'' if steps == 1 else 's'} in all" + (
        f" ({before} of them by the model it was fine-tuned from)" if before else ""
    )
    what += f" (fewer than {MIN_TRAINING_STEPS}; the default run takes {DEFAULT_RUN_STEPS})"
    if isinstance(max_steps, int) and max_steps > 0:
        what += f", its run ended before the trainer.max_steps={max_steps} it was set to"
    best = record.get("best_val_miou")
    if best is not None:
        what += f", best validation mIoU {float(best):.3f}"
    return what


def train_longer(dataset: object) -> str:
    """The way on from a barely trained model whose metadata names ``dataset``: for a model of synthetic
    scenes (or of no recorded data set), the README's default run; for one of real data, the command that
    made it without what shortened it. Every such model was sent to ``python train.py``, the synthetic
    default, whose model maps real images no better (a run's last line says so): a geologist whose own
    folder's quick check was flagged was told to train a model of synthetic scenes."""
    if dataset is None or dataset == "synthetic":
        return (
            f"train longer (python train.py, the README's default: {DEFAULT_RUN_STEPS} steps, about 5 "
            "minutes on a laptop CPU)"
        )
    return (
        f"train longer on its data ({dataset!r}): the python train.py command that made it, without what "
        "shortened it (trainer.max_epochs, data.samples_per_epoch, trainer.max_steps, debug=...; docs/"
        "training.md)"
    )


def barely_trained_warning(model: str, reason: str, dataset: object = None) -> str:
    """The warning ``predict.py`` logs for ``model`` (the ``ckpt_path`` given), barely trained for ``reason``
    (:func:`barely_trained`), with the way on for a model of ``dataset`` (:func:`train_longer`)."""
    way_on = train_longer(dataset)
    return (
        f"{model} is barely trained: {reason}; its maps will be close to noise. "
        f"{way_on[0].upper()}{way_on[1:]} and predict with that run's checkpoints/best.ckpt"
    )
