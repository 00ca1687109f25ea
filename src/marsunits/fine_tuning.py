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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from marsunits.checkpoint_files import CheckpointError, check_checkpoint_start
from marsunits.checkpoint_loading import load_task
from marsunits.constants import CLASS_NAMES
from marsunits.data.splits import merge_sols
from marsunits.errors import MissingFileError
from marsunits.file_digest import merge_image_keys
from marsunits.model_package import is_package, load_package
from marsunits.task import SegmentationTask, default_normalisation
from marsunits.training_extent import steps_in_all
from marsunits.training_images import UNKNOWN
from marsunits.user_paths import expand_home, missing_checkpoint

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


def network_differences(
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    our_hparams: Mapping[str, Any],
    their_hparams: Mapping[str, Any],
) -> tuple[list[str], dict[str, tuple[Any, Any]]]:
    """How a checkpoint's network differs from this run's: the tensor names missing on either side or of
    another shape (sorted), and the :data:`NETWORK_HPARAMS` that differ, ``{key: (checkpoint's, run's)}``.

    Args:
        ours, theirs: state dicts of this run's network and the checkpoint's (keyed alike).
        our_hparams, their_hparams: their saved hyper-parameters.
    """
    differing = {
        key: (their_hparams.get(key), our_hparams.get(key))
        for key in NETWORK_HPARAMS
        if their_hparams.get(key) != our_hparams.get(key)
    }
    mismatched = sorted(
        k
        for k in ours.keys() | theirs.keys()
        if k not in ours or k not in theirs or tuple(ours[k].shape) != tuple(theirs[k].shape)
    )
    return mismatched, differing


def tensors_differing(mismatched: Sequence[str]) -> tuple[str, str]:
    """How many of :func:`network_differences`' tensor names differ, and which: ("3 tensor names or shapes
    differ", "e.g. [the first three]"), or of one ("1 tensor name or shape differs", "[its name]")."""
    if len(mismatched) == 1:
        return "1 tensor name or shape differs", f"{list(mismatched)}"
    return f"{len(mismatched)} tensor names or shapes differ", f"e.g. {list(mismatched[:3])}"


def matching_overrides(differing: Mapping[str, tuple[Any, Any]]) -> str:
    """The command-line overrides that give this run the checkpoint's network settings."""
    return " ".join(_override(key, value[0]) for key, value in differing.items())


#: Network settings ``train=false`` takes from the evaluated checkpoint instead of the run's model config:
#: they decide the network's tensors or what its inputs must look like, and nothing of the data depends on
#: them (``in_channels``, ``num_classes`` and ``subclasses`` follow the data, so they are checked instead).
#: ``encoder_weights`` becomes null: every weight is overwritten by the checkpoint's.
EVALUATION_HPARAMS: tuple[str, ...] = ("arch", "encoder", "encoder_depth", "decoder_channels", "mean", "std")


def _listed(value: Any) -> Any:
    """Tuples as lists, so a checkpoint's ``(64, 32)`` equals a config's ``[64, 32]``."""
    return list(value) if isinstance(value, tuple) else value


def read_source(path: str | Path, option: str = "init_ckpt_path") -> SegmentationTask:
    """The trained task at ``path`` (a ``.ckpt`` of marsunits' ``train.py`` or a model package), read as
    :func:`~marsunits.checkpoint_loading.load_task` reads it (``weights_only``, metadata and class set
    checked).

    Raises:
        FileNotFoundError: ``path`` does not exist; the message names ``option`` and what to give.
        CheckpointError: not a marsunits checkpoint, or another class set.
    """
    path = check_source_exists(path, option)
    if is_package(path):  # a shared model (python -m marsunits.export): the same network, no pickle
        return load_package(path, expected_class_names=CLASS_NAMES)
    return load_task(path, expected_class_names=CLASS_NAMES)


def check_source_exists(path: str | Path, option: str = "init_ckpt_path") -> Path:
    """``path`` (``~`` expanded) if it is a model package or a file that starts as a checkpoint does, reading
    only its first bytes: the cheap check :func:`read_source` makes first, which the command line also makes
    before Hydra creates the run folder (``run_resume.checked_start``); whether the file is a whole checkpoint
    is left to :func:`read_source`.

    Raises:
        MissingFileError: (a ``FileNotFoundError`` and a ``ConfigError``) neither a package nor a file
            (missing, or another folder); the message names ``option`` and what to give.
        NotACheckpointError: (a ``CheckpointError`` and a ``ConfigError``) a file whose first bytes are not
            those of a ``torch.save`` file (:func:`~marsunits.checkpoint_files.check_checkpoint_start`).
    """
    path = expand_home(path)  # ~/runs/best.ckpt, as ckpt_path and data.root read it
    missing = missing_checkpoint(path, option)
    if missing is not None:
        raise MissingFileError(missing)
    if not is_package(path):  # a package's files are checked as the package is read
        check_checkpoint_start(path, option)  # a text file given as the checkpoint: four bytes read
    return path


def evaluation_model_settings(model_cfg: Mapping[str, Any], source: SegmentationTask) -> dict[str, Any]:
    """The model-config values that ``train=false`` must use to rebuild ``source``'s network.

    Evaluating a checkpoint is about that checkpoint: a MarsScapes model trained with
    ``model.encoder_depth=4`` is scored with the ``experiment=marsscapes`` command as it stands, without
    repeating its network settings (which the user may not know). Only :data:`EVALUATION_HPARAMS` are taken,
    plus ``encoder_weights=None``; keys whose value already fits are left out.

    Args:
        model_cfg: the run's ``model`` config as plain values (``OmegaConf.to_container(resolve=True)``).
        source: the task read from the evaluated checkpoint (:func:`read_source`).

    Returns:
        ``{key: value}`` to set in ``model_cfg``, values as plain Python types.
    """
    settings: dict[str, Any] = {}
    default_mean, default_std = default_normalisation(int(source.hparams["in_channels"]))
    for key in EVALUATION_HPARAMS:
        ours, theirs = _listed(model_cfg.get(key)), _listed(source.hparams.get(key))
        if key in ("mean", "std"):  # numbers compared as numbers; null is the default for the channels
            ours = (default_mean if key == "mean" else default_std) if ours is None else ours
            ours = [round(float(v), 6) for v in ours]
            theirs = [float(v) for v in theirs]
            if ours != [round(v, 6) for v in theirs]:
                settings[key] = theirs
        elif ours != theirs:
            settings[key] = theirs
    if model_cfg.get("encoder_weights") is not None:
        settings["encoder_weights"] = None
    return settings


def initialise_from_checkpoint(
    task: SegmentationTask,
    path: str | Path,
    option: str = "init_ckpt_path",
    source: SegmentationTask | None = None,
) -> None:
    """Copy the network weights of the checkpoint at ``path`` into ``task.model``, in place.

    The checkpoint is read as :func:`~marsunits.checkpoint_loading.load_task` reads it (``weights_only``,
    metadata checked) and must hold the same class names, in the same order, and the same network shapes as
    ``task``.

    Args:
        task: the freshly built task of the new run.
        path: a ``.ckpt`` written by marsunits' ``train.py``, or a model package (folder, or its
            ``model.json`` / ``model.safetensors``; :mod:`marsunits.export`); a leading ``~`` is the home
            folder (:func:`~marsunits.user_paths.expand_home`).
        option: the config key that gave ``path``, named in the messages (``ckpt_path`` for ``train=false``,
            which evaluates the checkpoint instead of fine-tuning it).
        source: the task already read from ``path`` (:func:`read_source`), so it is not read twice.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: not a marsunits checkpoint, another class set, another input normalisation, or a
            network of other shapes (the message lists the hyper-parameters that differ and how to match
            them).
    """
    path = expand_home(path)  # ~/runs/best.ckpt, as ckpt_path and data.root read it
    classes = list(task.hparams["class_names"])
    if source is None:
        source = read_source(path, option)
    if list(source.hparams["class_names"]) != classes:
        raise CheckpointError(
            f"{option}={path} is a model for another class set: its classes are "
            f"{list(source.hparams['class_names'])}, this run's are {classes}."
        )
    ours, theirs = task.model.state_dict(), source.model.state_dict()
    mismatched, differing = network_differences(ours, theirs, task.hparams, source.hparams)
    if mismatched or differing:
        theirs_sub, ours_sub = differing.get("subclasses", (None, None))
        if theirs_sub is not None and ours_sub is None:
            # data.subclasses alone does not run: the data's masks hold the three project classes, and
            # sub-class masks need a data.subclass_map from the dataset's native ids.
            raise CheckpointError(
                f"{option}={path} is a sub-class model: its network has one output per sub-class "
                f"(data.subclasses={json.dumps(theirs_sub, separators=(',', ':'))}), and this run's masks "
                "hold the three project classes. Use it on data labelled in those sub-classes (its "
                "experiment, e.g. experiment=marsscapes_subclasses, with data.subclass_map and "
                "data.subclasses), or start from a three-class model"
                + (" or from ImageNet weights (no init_ckpt_path)." if option == "init_ckpt_path" else ".")
            )
        settings = matching_overrides(differing)
        differ, which = tensors_differing(mismatched)
        raise CheckpointError(
            f"{option}={path}: its network does not fit this run's model "
            f"({differ}, the checkpoint has {len(theirs)} tensors{':' if len(mismatched) == 1 else ','} "
            f"{which}; "
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
    task.trained_sols = merge_sols(task.trained_sols, source.trained_sols)  # what the weights have seen
    task.trained_image_keys = merge_image_keys(task.trained_image_keys, source.trained_image_keys)
    # The steps behind the weights taken: a short fine-tuning of a trained model is not a barely trained one.
    task.steps_before = steps_in_all(source.training_record)
    # Its training images shaped the weights taken: kept under this run's record (unknown: said so).
    task.images_before = dict(source.training_images or UNKNOWN)
    log.info("network initialised from %s (trained on %s)", path, source.hparams.get("dataset"))
