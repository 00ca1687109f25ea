"""The checks of a training run's config that need neither a network built nor data read: ``train.py`` runs
them before Hydra starts (:func:`refusal_before_hydra`, :func:`config_value_refusal`: a refused command leaves
no run folder) and :func:`~marsunits.training.run` runs them again for a config composed another way (tests,
notebooks). What the run starts from, checked against its run folder, is :mod:`marsunits.run_resume`'s; the
parameters and switches of the classes a config builds are :mod:`marsunits.target_parameters`'.

Imports neither torch nor Lightning: a refusal that needs neither (``data=folder`` without ``data.root``)
paid some 5 s of their start-up when these lived in :mod:`marsunits.training`. A check that reads a class
(a ``_target_``'s parameters), a checkpoint or the data module imports what it reads when it reads it, and
:func:`check_config_values` runs the checks that read none first (``trainer.max_epochs=abc``,
``model.lr=-1``).
"""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from marsunits.checkpoint_files import check_checkpoint_start, model_hyper_parameters
from marsunits.constants import CLASS_NAMES
from marsunits.errors import ConfigError, MissingFileError, switch_value_refusal
from marsunits.model_settings import (
    _DEFAULTS,
    LOSSES,
    OPTIMIZERS,
    PLAIN_ENCODER_ARCHITECTURES,
    SCHEDULERS,
    check_depth,
    check_encoder_strides,
    check_names,
    check_numbers,
    input_divisor,
)
from marsunits.run_resume import _resumed_file, checked_start
from marsunits.target_parameters import OWN_SWITCHES, _check_switches, class_switches
from marsunits.targets import UnimportableTargetError, locate, unimportable_target
from marsunits.user_paths import expand_home, is_package, missing_checkpoint

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


def check_run_values(cfg: DictConfig) -> None:
    """Refuse mistyped run settings before anything is rendered or built, naming the key.

    Checks the switches ``train``, ``test``, ``data_moved`` (and that no switch of a class the config builds,
    :func:`~marsunits.target_parameters._switch_leaves`, is yes/no/on/off, which the config reads as text
    and a switch as true: ``train=no`` trained; elsewhere such a word is a value, ``run_name=no``), those
    switches given as other text where they take nothing but true or false (``model.channels_last=abc``,
    ``callbacks.model_checkpoint.auto_insert_metric_name=fasle``, ``+data.scene.distortion=fasle``), the
    integers of :data:`_INTEGER_VALUES` (null allowed where the config has null), the numbers of the data
    config (:data:`_NUMBER_VALUES`: ``data.val_fraction=abc``, ``data.hflip_p=abc``), a ``data.fold``
    other than 0 without ``data.n_folds`` (as the data module refuses it), the data module's rules of its
    training draw (:func:`_sampling_refusal`: ``data.focus_class=7``, ``data.min_labelled_fraction=1.5``)
    and its other values that need no data read (:func:`_data_value_refusal`: ``data.sources=[mars]``,
    ``data.class_mix_prob=1.5``, ``data.val_fraction=1.5``),
    the ``trainer.limit_*_batches`` (a fraction in [0, 1] or a whole number of batches), ``trainer.precision``
    (one of Lightning's, :data:`PRECISIONS`), and ``trainer=gpu`` / ``trainer.accelerator=gpu`` on a machine
    without a CUDA GPU. The ``data.*`` values only where
    ``data._target_`` is marsunits' own data module (:func:`marsunits_datamodule`).

    The values that need no class first (:func:`check_plain_run_values`), then those judged by the classes
    the run builds (:func:`check_class_run_values`).

    Raises:
        ConfigError: naming the key, the value and what to give instead.
    """
    check_plain_run_values(cfg)
    check_class_run_values(cfg)


def check_plain_run_values(cfg: DictConfig) -> None:
    """The checks of :func:`check_run_values` that import no class (nor torch, nor Lightning): ``train``,
    ``test`` and ``data_moved``, the switches of marsunits' own task and data module
    (:data:`~marsunits.target_parameters.OWN_SWITCHES`; :func:`check_class_run_values` checks every
    class's), the integers and numbers, ``data.fold``, the training draw's rules (:func:`_sampling_refusal`),
    the ``trainer.limit_*_batches``, ``trainer.devices``
    and ``trainer.precision`` (:data:`PRECISIONS`). :func:`check_config_values` runs them before it imports
    the config's classes, so that ``trainer.max_epochs=abc`` is refused in a second, not after some 6 s of
    torch and Lightning.

    Raises:
        ConfigError: naming the key, the value and what to give instead.
    """
    for key in ("train", "test", "data_moved"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(switch_value_refusal(key, value))
    _check_switches(cfg, OWN_SWITCHES.get)  # marsunits' own classes' switches, known without importing
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
    fold = OmegaConf.select(cfg, "data.fold", default=None)
    if own_data and fold not in (None, 0) and OmegaConf.select(cfg, "data.n_folds", default=None) is None:
        # The data module's refusal came inside the run, after Hydra had made the run folder (README: a
        # refused config value makes none); the same words.
        name = OmegaConf.select(cfg, "data.name", default="<data>")
        raise ConfigError(
            f"configs/data/{name}.yaml: fold={fold} needs n_folds (the number of cross-validation folds); "
            "without it the single held-out split (val_fraction) is used. Add data.n_folds=5 (or your "
            f"number of folds) to data.fold={fold}, or drop data.fold."
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
    refused = (_data_value_refusal(cfg) or _sampling_refusal(cfg)) if own_data else None
    if refused is not None:
        raise ConfigError(refused)
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
    devices = OmegaConf.select(cfg, "trainer.devices", default=None)
    if devices is not None and not _devices_value(devices):
        # Lightning's own refusal came inside Hydra's instantiation of the Trainer: a traceback, status 1.
        raise ConfigError(
            f"trainer.devices={devices!r}: give a number of devices (trainer.devices=2), auto, -1 (every "
            "device), or a list of GPU ids (trainer.devices=[0,1])"
        )
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    if precision is not None and precision not in PRECISIONS:
        # Lightning's refusal came inside Hydra's instantiation of the Trainer, after the scenes were made.
        raise ConfigError(
            f"trainer.precision={precision!r}: give one of Lightning's precisions, e.g. "
            "trainer.precision=32-true (CPU) or trainer.precision=bf16-mixed (GPU); all: "
            f"{', '.join(map(str, PRECISIONS))}"
        )


def check_class_run_values(cfg: DictConfig) -> None:
    """The checks of :func:`check_run_values` that import what they judge by: the switches of the classes
    the config builds (their parameters, :func:`~marsunits.target_parameters._switch_leaves`), one
    weight-averaging callback at most (:func:`_check_one_averaging`), the network's sub-classes against
    those of a user's own data module (:func:`_check_user_data_subclasses`), an average that keeps its own
    batch-norm statistics (:func:`_check_averaged_statistics`) and a CUDA GPU for
    ``trainer.accelerator=gpu`` (torch).

    Raises:
        ConfigError: naming the key, the value and what to give instead.
    """
    _check_switches(cfg, class_switches)
    _check_one_averaging(cfg)
    _check_user_data_subclasses(cfg)
    _check_averaged_statistics(cfg)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="") or "").lower()
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        # A CUDA build that finds no GPU needs a machine with one (or its driver), not another install.
        fix = (
            "run on a machine with a CUDA GPU (this torch is a CUDA build: where the machine has a GPU, its "
            "driver does not work; nvidia-smi tells)"
            if torch.version.cuda
            else "install a CUDA build of PyTorch on a GPU machine"
        )
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU that PyTorch can use "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); train on the CPU with "
            f"trainer=cpu (the default), or {fix}"
        )


def _check_one_averaging(cfg: DictConfig) -> None:
    """Refuse a training with two weight-averaging callbacks (``callbacks=[default,ema]`` beside Lightning's
    own ``EMAWeightAveraging`` or ``WeightAveraging`` added directly, or two of those). Each swapped its
    average in and out around every validation, so the two swaps left the network on an average and
    training went on from there; and each wrote its average as the checkpoint's weights, the first's
    then stored as the "raw" weights a resume trains on.

    Raises:
        ConfigError: naming the callbacks' keys and classes, and the fix.
    """
    if not cfg.get("train", True):  # a train=false run trains nothing: no average is kept
        return
    from marsunits.averaging import averaging_callbacks  # Lightning: these checks import the classes

    found = averaging_callbacks(cfg.get("callbacks"))
    if len(found) < 2:
        return
    named = ", ".join(f"callbacks.{key} ({name})" for key, name in found)
    raise ConfigError(
        f"{named}: {len(found)} weight-averaging callbacks, of which a run takes one (each swaps its own "
        "average in for validation and writes it as the checkpoint's weights, so training would go on from "
        "an average and the checkpoints would keep no raw weights); keep one: marsunits' EMA "
        "('+callbacks=[ema]', or ema in a callbacks= list) or Lightning's, not both"
    )


def _check_user_data_subclasses(cfg: DictConfig) -> None:
    """Refuse ``model.subclasses`` that are not the sub-classes a user's own data module
    (``data._target_``, not :data:`OWN_DATAMODULES`) will hold, where they are known before it is built
    (:func:`_user_data_subclasses`), in the run's line (:func:`subclasses_mismatch`). The run checks the
    network against the data module built (:func:`marsunits.training.check_subclasses_match`), once Hydra
    has made the run folder; marsunits' own is checked without importing it (:func:`check_model_values`).

    Raises:
        ConfigError: the two differ.
    """
    model = cfg.get("model")
    if not isinstance(model, DictConfig) or model.get("_target_") != "marsunits.task.SegmentationTask":
        return
    known, data_groups = _user_data_subclasses(cfg)
    if known:
        mismatch = subclasses_mismatch(_plain_value(model.get("subclasses")), data_groups)
        if mismatch is not None:
            raise ConfigError(mismatch)


def _user_data_subclasses(cfg: DictConfig) -> tuple[bool, Any]:
    """Whether the sub-classes a user's own data module (``data._target_``, not :data:`OWN_DATAMODULES`)
    will hold as ``subclasses`` are known before it is built, and them: a class that names ``subclasses``
    among its parameters, or a subclass of marsunits' data module (which holds what it is given), holds
    ``data.subclasses`` where the config gives it, else the parameter's default. Another class's (one that
    takes any keyword and is no marsunits data module) are the run's to read."""
    data = cfg.get("data")
    target = data.get("_target_") if isinstance(data, DictConfig) else None
    if not isinstance(target, str) or marsunits_datamodule(cfg):
        return False, None
    try:
        built = locate(target)
        parameter = inspect.signature(built).parameters.get("subclasses")
    except (UnimportableTargetError, TypeError, ValueError):  # refused by unimportable_target; no signature
        return False, None
    from marsunits.data.datamodule import MarsDataModule  # imported with the user's class already

    if parameter is None and isinstance(built, type) and issubclass(built, MarsDataModule):
        parameter = inspect.signature(MarsDataModule).parameters["subclasses"]
    given = isinstance(data, DictConfig) and "subclasses" in data
    if parameter is None or (parameter.default is inspect.Parameter.empty and not given):
        return False, None
    return True, _plain_value(data.get("subclasses")) if given else parameter.default


def _check_averaged_statistics(cfg: DictConfig) -> None:
    """Refuse a weight-averaging callback with ``use_buffers=false`` (Lightning's own, added directly, or
    ``callbacks=ema``, which passes it on). torch's ``AveragedModel`` then copies the raw network's
    batch-norm statistics into the average at each update, and Lightning leaves recomputing them for the
    averaged weights (``torch.optim.swa_utils.update_bn``) to the user, which ``train.py`` never is: every
    validation, ``best.ckpt``, its test and ``predict.py`` used averaged weights with the statistics of
    other weights (every marsunits network has batch norm, in its decoder at least), without a word.

    Raises:
        ConfigError: naming the callback's key and class, and the fix.
    """
    if not cfg.get("train", True):  # a train=false run trains nothing: no average is kept
        return
    from marsunits.averaging import averaging_callbacks  # Lightning: these checks import the classes

    for key, name in averaging_callbacks(cfg.get("callbacks")):
        if cfg.callbacks[key].get("use_buffers", True):
            continue
        other = "" if name == "EMAWeights" else ", or train with marsunits' EMA, '+callbacks=[ema]'"
        raise ConfigError(
            f"callbacks.{key}.use_buffers=false ({name}): the average would keep the raw weights' batch-norm "
            "statistics (torch copies them over at each update), not statistics of the averaged weights, "
            "which Lightning leaves to the user to recompute (torch.optim.swa_utils.update_bn) and train.py "
            "does not, so validation, best.ckpt and its test would use averaged weights with other weights' "
            f"statistics; leave use_buffers out (true, the default, averages the statistics too){other}"
        )


def _sampling_refusal(cfg: DictConfig) -> str | None:
    """The data module's refusal of ``data.samples_per_epoch``, ``data.min_labelled_fraction``,
    ``data.focus_class``, ``data.focus_fraction`` or ``data.train_only``
    (:func:`~marsunits.data.sampling_checks.sampling_refusal`, its own rules and words), or None. Refused
    only when the data module was built, inside the run, they left a run folder of a run that never started.
    A key the config does not set is the data module's default, which it takes."""
    from marsunits.data.sampling_checks import sampling_refusal

    data = cfg.get("data")
    sources = data.get("sources") if isinstance(data, DictConfig) else None
    if not isinstance(sources, ListConfig) or not all(isinstance(s, str) for s in sources):
        return None  # not a list of names: the data module refuses it in words of its own
    train_only = data.get("train_only") or []
    return sampling_refusal(
        str(data.get("name", "<data>")),
        list(sources),
        data.get("samples_per_epoch"),
        data.get("min_labelled_fraction"),
        data.get("focus_class"),
        data.get("focus_fraction"),
        list(train_only) if isinstance(train_only, ListConfig | list | tuple) else [train_only],
    )


def _data_value_refusal(cfg: DictConfig) -> str | None:
    """The data module's refusal of ``data.sources``, ``data.exclude_sols``, ``data.sol_margin``,
    ``data.render_processes``, ``data.class_mix_prob`` or, where its split reads it, ``data.val_fraction``
    (:func:`~marsunits.data.value_checks.data_value_refusal`, its own rules and words), or None. Refused
    only when the data module was built or split the data, inside the run, they left a run folder of a run
    that never started. A number refused as text that an interpolation made
    (``data.render_processes=${oc.env:NPROC}``) is told how to read it as one, as the integer checks tell
    it (:func:`_text_from_interpolation`)."""
    from marsunits.data.value_checks import data_value_refusal

    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return None
    keys = ("name", "sources", "n_folds", *_DATA_VALUE_KEYS)  # only these resolved: the rest is not read
    values = {key: _plain_value(data.get(key)) for key in keys if key in data}
    refused = data_value_refusal(values)
    if refused is None:
        return None
    key, said = refused
    if key not in _DATA_NUMBER_KEYS:
        return said  # a list (sources, exclude_sols): oc.decode reads it too, but not as a number
    tip = _text_from_interpolation(cfg, f"data.{key}", values.get(key))
    return f"{said.removesuffix('.')}{tip}." if tip and said.endswith(".") else f"{said}{tip}"


#: The values of :func:`_data_value_refusal`'s rules besides the data config's name, sources and folds.
_DATA_VALUE_KEYS = (
    "val_fraction",
    "exclude_sols",
    "class_map",
    "subclass_map",
    "subclasses",
    "focus_class",
    "sol_margin",
    "render_processes",
    "class_mix_prob",
)

#: Those of :data:`_DATA_VALUE_KEYS` that are numbers.
_DATA_NUMBER_KEYS = ("val_fraction", "sol_margin", "render_processes", "class_mix_prob")


def _plain_value(value: Any) -> Any:
    """A config node's value as the data module is given it: a list or mapping as plain ones, resolved."""
    plain = isinstance(value, DictConfig | ListConfig)
    return OmegaConf.to_container(value, resolve=True) if plain else value


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


#: The ``trainer.precision`` values Lightning's Trainer takes, as its own check lists them (its
#: ``_PRECISION_INPUT_STR``, ``_PRECISION_INPUT_INT`` and ``_PRECISION_INPUT_STR_ALIAS``, in that order):
#: written out so that ``trainer.precision=bogus`` is refused without importing Lightning (and torch), some
#: 6 s (13 s under load) for one line. ``tests/test_cli_overrides.py`` checks that it is Lightning's list.
PRECISIONS: tuple[str | int, ...] = (
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    64,
    32,
    16,
    "64",
    "32",
    "16",
    "bf16",
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
    configured network (:func:`~marsunits.model_settings.input_divisor`: ``2**model.encoder_depth`` for Unet
    and FPN, 16 for the default model; at most 16 for DeepLabV3+; smp not imported for these), naming that
    number. Only for marsunits' own data module and task (:func:`marsunits_datamodule`), and only where the
    run trains: ``train=false`` builds the checkpoint's network whatever the model config (``model=tiny``'s
    multiples of 8 under the default model's 16), so its sizes are checked against that network instead:
    before the run folder by :func:`refusal_before_hydra` (the checkpoint's ``arch`` and ``encoder_depth``),
    and in the run by the data module against the network built (``MarsDataModule.check_size_divisor``).

    Raises:
        ConfigError: naming the key, the value, the divisor and values that fit.
    """
    from marsunits.data.value_checks import size_refusal  # no torch: the data module's rule

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
    if str(arch).lower() in PLAIN_ENCODER_ARCHITECTURES:
        stride = f"{divisor}, which its decoder needs"
    elif divisor == 2**depth:
        stride = f"2**{depth} = {divisor}"
    else:
        stride = f"its encoder's output stride, {divisor}"
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

    The values judged without importing any class (:func:`check_plain_run_values`,
    :func:`check_model_values`, the channels, :func:`check_input_sizes`, the W&B logger's settings, a
    checkpoint file that is not there or holds text, :func:`check_checkpoint_files`) come first: importing
    the config's classes to check the ``_target_`` values imports torch and Lightning, some 6 s (19 s under
    load) that a refused ``trainer.max_epochs=abc`` or ``model.lr=-1`` paid for one line.

    The command line runs it before Hydra makes the run folder (:func:`refusal_before_hydra`), so a
    mistyped value leaves no folder of a run that never started; :func:`~marsunits.training.run` runs it
    again for a config composed another way (tests, notebooks).

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
    check_plain_run_values(cfg)
    check_model_values(cfg)
    _check_channels(cfg)
    check_input_sizes(cfg)  # smp only for an architecture the project has not tested
    from marsunits.tracking.wandb_checks import check_wandb_modes  # no Lightning: W&B nodes told by name

    check_wandb_modes(cfg)
    check_checkpoint_files(cfg)  # a missing file, a text file: before the classes are imported
    refused = unimportable_target(cfg)
    if refused is not None:  # before the checks below read the classes' parameters
        # Hydra's refusal came when the run instantiated it: its error logged twice, after the run folder.
        raise ConfigError(refused)
    check_class_run_values(cfg)


def _check_channels(cfg: DictConfig) -> None:
    """Refuse a ``data.in_channels`` other than 1 or 3 (marsunits' own data modules), or one the model's
    ``model.in_channels`` does not take.

    Raises:
        ConfigError: naming the key, the value and what to give instead.
    """
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


def _checkpoint_read(cfg: DictConfig) -> tuple[str, Path, bool] | None:
    """The checkpoint the run reads, told to be there from its path alone (no file read, nothing imported):
    its option, the file or model package folder (``~`` expanded), and whether it is resumed (``ckpt_path``
    where the run trains: a package is then refused, :func:`~marsunits.run_resume._resumed_file`); None
    for none, or for ``ckpt_path=last``, which looks for runs (the run's to judge). ``init_ckpt_path`` beside
    a resumed or scored ``ckpt_path`` is ignored by the run, so not looked at.

    Raises:
        ConfigError: (a :class:`~marsunits.errors.MissingFileError` for ``init_ckpt_path`` or a scored
            ``ckpt_path``) the path names no file (nor model package folder), naming the option.
    """
    ckpt, init = cfg.get("ckpt_path"), cfg.get("init_ckpt_path")
    given = ckpt not in (None, "", "null")
    if given and str(ckpt) == "last":
        return None
    if given and bool(cfg.get("train", True)):
        # Its own path checks (a model package is refused as no resume); nothing of the run folder is used.
        return "ckpt_path", _resumed_file(str(ckpt)), True
    if not given and not init:
        return None
    option, value = ("ckpt_path", ckpt) if given else ("init_ckpt_path", init)
    path = expand_home(str(value))
    missing = missing_checkpoint(path, option)
    if missing is not None:
        raise MissingFileError(missing)
    return option, path, False


def check_checkpoint_files(cfg: DictConfig) -> None:
    """Refuse a ``ckpt_path`` or ``init_ckpt_path`` the run would read that names no file (nor model package
    folder, told from the path alone), or a file whose first bytes are not a checkpoint's (a text file,
    :func:`~marsunits.checkpoint_files.check_checkpoint_start`), reading only those and importing nothing
    heavy, so :func:`check_config_values` runs it before the config's classes import torch and Lightning
    (``train=false ckpt_path=x.ckpt`` paid some 23 s for one line, a text file some 10 s). Whether it is a
    whole checkpoint, and ``ckpt_path=last``, which looks for runs, are the run's to judge.
    ``init_ckpt_path`` beside a resumed ``ckpt_path`` is ignored by the run, so not checked. Through
    :func:`check_config_values`, the command line checks this before Hydra makes the run folder: a missing
    file left one with only ``.hydra/`` and ``train.log``.

    Raises:
        ConfigError: (a :class:`~marsunits.errors.MissingFileError` for a missing file, a
            :class:`~marsunits.checkpoint_files.NotACheckpointError` for a text file) naming the option.
    """
    read = _checkpoint_read(cfg)
    if read is None:
        return
    option, path, resumed = read
    if resumed or not is_package(path):  # a package's files are checked as the package is read
        check_checkpoint_start(path, option, package_ok=not resumed)  # four bytes read


def check_model_values(cfg: DictConfig) -> None:
    """Refuse a name the task cannot build (``model.arch``, ``model.encoder``, ``model.encoder_weights``,
    ``model.optimizer``, ``model.scheduler``, ``model.loss``), an ``model.encoder_depth`` outside 1..5 or
    ``model.decoder_channels`` that do not fit it, a timm encoder whose feature maps smp's decoders cannot
    take (a plain ViT, but with ``dpt``: :func:`~marsunits.model_settings.check_encoder_strides`), a learning
    rate or loss weight out of range (``model.lr=0``; :func:`~marsunits.model_settings.check_numbers`), a
    learning-rate schedule over a run without an end (``trainer.max_epochs=-1``), or a ``model.num_classes``
    other than the task's classes or ``model.subclasses`` that are not class ids, naming the key, or, where
    the run reads marsunits' data module (``train=false`` too), that are not ``data.subclasses``
    (:func:`subclasses_mismatch`, the run's own line); a model config that builds another class is left
    alone.

    Imports no torch, Lightning, smp or timm (:mod:`marsunits.model_settings`) but for an architecture or
    encoder outside those the project tested, which only smp's or timm's own list can tell (such an
    encoder's feature strides are read from timm's model built on the meta device, without weights).

    Raises:
        ConfigError: the key and value, then the task's own message with the valid choices.
    """
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
            if key == "encoder":  # smp's decoders cannot take it (a plain ViT): no weights fix that, so
                check_encoder_strides(encoder, arch)  # said before them; smp refused it only in the run
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
    subclasses_refused = _subclasses_refusal(model, len(names))
    if subclasses_refused is not None:
        raise ConfigError(subclasses_refused)
    if marsunits_datamodule(cfg):
        # train=false too: its network takes the checkpoint's architecture, but its outputs are still
        # model.subclasses', which the run checks against the data module built (the same line).
        data_groups = OmegaConf.select(cfg, "data.subclasses", default=None)
        mismatch = subclasses_mismatch(_plain_value(model.get("subclasses")), _plain_value(data_groups))
        if mismatch is not None:  # refused only once the data module and the network were built
            raise ConfigError(mismatch)


def subclasses_mismatch(model_groups: Any, data_groups: Any) -> str | None:
    """The refusal of a network whose outputs are not the classes the training masks hold: its
    ``model.subclasses`` differ from ``data.subclasses`` (sub-class outputs set on the model alone, or the
    reverse), or None. The model configs follow ``data.subclasses``; one set alone would silently learn the
    wrong classes. Said the same before the run folder (:func:`check_model_values`) and in the run, of the
    network and data module built (:func:`marsunits.training.check_subclasses_match`)."""
    if model_groups == data_groups:
        return None
    return (
        f"model.subclasses={model_groups} but data.subclasses={data_groups}: the network's outputs must "
        "be the classes the training masks hold. Set data.subclass_map and data.subclasses (the model "
        "reads them), e.g. experiment=marsscapes_subclasses, and leave model.subclasses to follow them."
    )


def _subclasses_refusal(model: DictConfig, classes: int) -> str | None:
    """The refusal of ``model.subclasses`` (null, or the project class id of each sub-class, each class at
    least once: ``data.subclasses``, which it follows), or None. Text (``model.subclasses=[a,b]``) ended in
    the task's ``invalid literal for int() with base 10: 'a'``, naming no key, once Hydra made the folder."""
    value = model.get("subclasses")
    if value is None:
        return None
    plain = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    ids = plain if isinstance(plain, list) else None
    if (
        ids
        and all(isinstance(c, int) and not isinstance(c, bool) for c in ids)
        and set(ids) == set(range(classes))
    ):
        return None
    named = ", ".join(f"{k} {n}" for k, n in enumerate(CLASS_NAMES))
    if OmegaConf.is_interpolation(model, "subclasses"):  # the model config's ${oc.select:data.subclasses}
        return (
            f"data.subclasses={plain!r} (which model.subclasses follows): give the project class id (0 to "
            f"{classes - 1}: {named}) of each sub-class of data.subclass_map, each class at least once "
            "(e.g. [0,0,1,1,2]), or null"
        )
    return (
        f"model.subclasses={plain!r}: give the project class id (0 to {classes - 1}: {named}) of each "
        "sub-class, each class at least once (e.g. [0,0,1,1,2]), or null. It follows data.subclasses: leave "
        "it out and set data.subclass_map and data.subclasses (e.g. experiment=marsscapes_subclasses)"
    )


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


def refusal_before_hydra(cfg: DictConfig, output_dir: Path) -> str | None:
    """The refusal of :func:`check_config_values` or :func:`~marsunits.run_resume.checked_start` for the run
    ``cfg`` (composed before Hydra starts, so without Hydra's runtime values) would make in ``output_dir``,
    or None; any other problem is left to the run.

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
            _check_evaluated_network(cfg, evaluated[0], evaluated[1])
        elif bool(cfg.get("train", True)):
            _check_initial_network(cfg)
    except ConfigError as refused_start:
        return str(refused_start)
    except Exception:  # noqa: BLE001 - not composable this early (a missing value): the run says it
        return None
    return None


def _check_evaluated_network(cfg: DictConfig, path: str, option: str) -> None:
    """Check the network of the checkpoint ``train=false`` scores (``option``, its ``path``), read from its
    hyper-parameters without building it, against the run, as the run checks the network it builds: the
    sizes (:func:`_check_evaluated_input_sizes`), then its sub-classes against the run's
    (:func:`evaluated_subclasses_refusal`).

    Raises:
        ConfigError: naming what does not fit and the checkpoint.
    """
    from marsunits.checkpoint_loading import read_checkpoint

    hparams = read_checkpoint(path)["hyper_parameters"]
    _check_evaluated_input_sizes(cfg, hparams, path, option)
    model = cfg.get("model")
    if isinstance(model, DictConfig) and model.get("_target_") == "marsunits.task.SegmentationTask":
        run_groups = _plain_value(model.get("subclasses"))
        refused = evaluated_subclasses_refusal(option, path, hparams.get("subclasses"), run_groups)
        if refused is not None:
            raise ConfigError(refused)


def _check_initial_network(cfg: DictConfig) -> None:
    """Refuse the ``init_ckpt_path`` a new training run fine-tunes whose network was trained on other
    sub-classes than the run's (:func:`evaluated_subclasses_refusal`), from its hyper-parameters read
    without its weights (:func:`~marsunits.checkpoint_files.model_hyper_parameters`): the run refused it
    only as it loaded the weights (:func:`~marsunits.fine_tuning.initialise_from_checkpoint`), after the run
    folder was made.
    Nothing else of the checkpoint is judged here: fine-tuning takes its network as the run builds it.

    Raises:
        ConfigError: naming the checkpoint, its sub-classes and the run's.
    """
    model = cfg.get("model")
    if not isinstance(model, DictConfig) or model.get("_target_") != "marsunits.task.SegmentationTask":
        return
    read = _checkpoint_read(cfg)
    if read is None or read[0] != "init_ckpt_path":
        return
    hparams = model_hyper_parameters(read[1])
    if hparams is None:  # not readable so: the run's load says why
        return
    run_groups = _plain_value(model.get("subclasses"))
    refused = evaluated_subclasses_refusal(
        "init_ckpt_path", str(read[1]), hparams.get("subclasses"), run_groups
    )
    if refused is not None:
        raise ConfigError(refused)


def evaluated_subclasses_refusal(option: str, path: str, trained: Any, run_groups: Any) -> str | None:
    """The refusal of the checkpoint ``train=false`` scores or a training run fine-tunes (``option``,
    ``ckpt_path`` or ``init_ckpt_path``, its ``path``) whose network was trained on other sub-classes
    (``trained``, its ``model.subclasses``) than the run's (``run_groups``, ``model.subclasses``, which
    follows ``data.subclasses``), or None. Said the same before the run folder (:func:`refusal_before_hydra`,
    from the checkpoint's hyper-parameters) and in the run, before its weights are loaded
    (:func:`marsunits.training._run`): the load refused it after the run folder was made, as a network of
    other tensor shapes (or, for ``init_ckpt_path``, as a sub-class model)."""
    trained = None if trained is None else [int(c) for c in trained]
    run_groups = None if run_groups is None else list(run_groups)
    if trained == run_groups:
        return None
    fine_tuned = option == "init_ckpt_path"
    use = "fine-tune it" if fine_tuned else "score it"
    if trained is None:
        fix = f"{use} without sub-classes, data.subclass_map=null data.subclasses=null"
    else:
        groups = json.dumps(trained, separators=(",", ":"))
        fix = (
            f"{use} on data of its sub-classes, data.subclasses={groups} with the data.subclass_map it "
            "was trained with (its experiment, e.g. experiment=marsscapes_subclasses)"
        )
    if fine_tuned:
        fix += ", or train from ImageNet weights (no init_ckpt_path)"
    return (
        f"{option}={path} was trained with model.subclasses={trained}, this run's are {run_groups} (they "
        f"follow data.subclasses): {'fine-tuning' if fine_tuned else 'train=false'} builds the run's outputs "
        f"and loads the checkpoint's weights into them; {fix}."
    )


def _check_evaluated_input_sizes(cfg: DictConfig, hparams: Any, path: str, option: str) -> None:
    """:func:`check_input_sizes` for ``train=false``, against the network of the checkpoint it scores (its
    hyper-parameters ``hparams``, read without building it), as the run checks the network it builds.

    Raises:
        ConfigError: naming the size, the divisor and the checkpoint.
    """
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
    high or low, a subfolder or the sol table missing), or whose masks, read as project ids, lie beside a
    ``classes.json`` naming other classes, in the data module's own words
    (:meth:`~marsunits.data.datamodule.MarsDataModule.check_source_folders`,
    :meth:`~marsunits.data.datamodule.MarsDataModule.check_label_classes`), or None.

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
        datamodule.check_label_classes(warn=False)  # the run warns of an unreadable classes.json, once
    except FileNotFoundError as missing:
        return str(missing)
    except ConfigError as refused:  # masks read as project ids beside a classes.json naming other classes
        return str(refused)
    except Exception:  # noqa: BLE001 - a folder that cannot be looked at: the run says it
        return None
    return None
