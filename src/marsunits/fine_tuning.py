"""Start a new training run from the network weights of an earlier marsunits checkpoint (fine-tuning).

Resuming (``ckpt_path``) continues one run exactly: epoch, optimiser and schedule. Fine-tuning
(``init_ckpt_path``) is a new run, on new data or with a new recipe, whose network starts from a trained one
instead of from ImageNet: a rover team's few labelled frames of their own site, started from the MarsScapes
model, is the typical use. Only the network's weights are taken; the optimiser, schedule, epoch count,
normalisation and every other hyper-parameter come from the new run's config.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from marsunits.model_package import is_package, load_package
from marsunits.task import CheckpointError, SegmentationTask, load_task

log = logging.getLogger(__name__)

#: Hyper-parameters that decide the network's tensors; named in the error when the shapes do not fit.
NETWORK_HPARAMS: tuple[str, ...] = (
    "arch",
    "encoder",
    "encoder_depth",
    "decoder_channels",
    "in_channels",
    "num_classes",
    "subclasses",
)


def _override(key: str, value: Any) -> str:
    """A command-line override that gives this run the checkpoint's ``key``, pasteable in a shell."""
    # JSON spelling is Hydra's: null (not None), true/false, lists without spaces.
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if key == "in_channels":  # the data must deliver what the network takes; model.in_channels follows data's
        return f"data.in_channels={text}"
    if key == "subclasses":  # the model reads them from the data, which must hold masks of those classes
        return "data.subclass_map=null data.subclasses=null" if value is None else f"data.subclasses={text}"
    return f"model.{key}={text}"


def initialise_from_checkpoint(
    task: SegmentationTask, path: str | Path, option: str = "init_ckpt_path"
) -> None:
    """Copy the network weights of the checkpoint at ``path`` into ``task.model``, in place.

    The checkpoint is read as :func:`~marsunits.task.load_task` reads it (``weights_only``, metadata checked)
    and must hold the same class names, in the same order, and the same network shapes as ``task``.

    Args:
        task: the freshly built task of the new run.
        path: a ``.ckpt`` written by marsunits' ``train.py``, or a model package (folder, or its
            ``model.json`` / ``model.safetensors``; :mod:`marsunits.export`).
        option: the config key that gave ``path``, named in the messages (``ckpt_path`` for ``train=false``,
            which evaluates the checkpoint instead of fine-tuning it).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: not a marsunits checkpoint, another class set, another input normalisation, or a
            network of other shapes (the message lists the hyper-parameters that differ and how to match
            them).
    """
    path = Path(path)
    classes = list(task.hparams["class_names"])
    if is_package(path):  # a shared model (python -m marsunits.export): the same network, no pickle
        source = load_package(path, expected_class_names=classes)
    elif not path.is_file():
        raise FileNotFoundError(
            f"{option}={path}: no such file or model package. Give a .ckpt written by train.py "
            "(<run dir>/checkpoints/best.ckpt) or a model package folder (python -m marsunits.export)"
            + (
                ", or drop init_ckpt_path to start from ImageNet weights."
                if option == "init_ckpt_path"
                else "."
            )
        )
    else:
        source = load_task(path, expected_class_names=classes)
    differing = {
        key: (source.hparams.get(key), task.hparams.get(key))
        for key in NETWORK_HPARAMS
        if source.hparams.get(key) != task.hparams.get(key)
    }
    ours, theirs = task.model.state_dict(), source.model.state_dict()
    mismatched = sorted(
        k
        for k in ours.keys() | theirs.keys()
        if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape
    )
    if mismatched or differing:
        settings = " ".join(_override(key, value[0]) for key, value in differing.items())
        raise CheckpointError(
            f"{option}={path}: its network does not fit this run's model "
            f"({len(mismatched)} tensor names or shapes differ, the checkpoint has {len(theirs)} tensors, "
            f"e.g. {mismatched[:3]}; "
            f"hyper-parameters checkpoint vs run: {differing or 'none differ'}). Choose the checkpoint's "
            f"network for this run ({settings or 'the same model config'})"
            + (
                ", or train from ImageNet weights without init_ckpt_path."
                if option == "init_ckpt_path"
                else "."
            )
        )
    for key in ("mean", "std"):
        if [round(v, 6) for v in source.hparams[key]] != [round(v, 6) for v in task.hparams[key]]:
            raise CheckpointError(
                f"{option}={path}: the checkpoint's network was trained on inputs normalised with "
                f"{key}={list(source.hparams[key])}, this run uses {key}={list(task.hparams[key])}. Set "
                f"model.{key}={list(source.hparams[key])} so the weights see the inputs they learned on."
            )
    task.model.load_state_dict(theirs, strict=True)
    log.info("network initialised from %s (trained on %s)", path, source.hparams.get("dataset"))
