"""The parameters and switches of the classes a config builds (its ``_target_`` values): read from their
signatures, which imports them (:func:`class_parameters`, :func:`class_switches`), or, for marsunits' own
classes, from a table written out (:data:`OWN_PARAMETERS`, :func:`target_parameters`) that imports nothing;
and the refusal of a switch given yes/no/on/off, or other text where it takes only true or false
(:func:`_check_switches`).

Imports neither torch nor Lightning: a class read from its signature is imported when it is read, so the
checks of ``train.py``'s plain values and the option names of :mod:`marsunits.cli_overrides` use the table.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from marsunits.errors import YES_NO_WORDS, ConfigError, switch_value_refusal
from marsunits.targets import UnimportableTargetError, locate


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


def class_switches(target: str) -> dict[str, bool]:
    """The parameters of the class ``target`` names (with those of the class its ``**kwargs`` go to,
    :data:`_KWARGS_TO`) that take true or false (:func:`_takes_bool`), each with whether it takes nothing
    else (:func:`_takes_only_bool`); read from their signatures, which imports them. A class that cannot be
    imported here (refused first by :func:`~marsunits.run_checks.check_config_values`) has none."""
    found: list[Any] = []
    for path in (target, _KWARGS_TO.get(target)):
        try:
            found.append(locate(path) if path else None)
        except UnimportableTargetError:  # refused by check_config_values: its keys are none, as for a class
            found.append(None)
    parameters: dict[str, inspect.Parameter] = {}
    for named in found:
        try:
            parameters = {**dict(inspect.signature(named).parameters), **parameters} if named else parameters
        except (TypeError, ValueError):  # no signature to read
            continue
    return {name: _takes_only_bool(p) for name, p in parameters.items() if _takes_bool(p)}


def class_parameters(target: str) -> set[str] | None:
    """The keyword parameters of the class or function ``target`` (a ``_target_``), read from its signature,
    which imports it; None when it takes any keyword (``**kwargs``) or cannot be imported here (imported
    quietly: Hydra's ``get_object`` logged its error line on the console before the command's own refusal of
    the target). :func:`target_parameters` knows marsunits' own classes' without importing them."""
    try:
        parameters = inspect.signature(locate(target)).parameters.values()
    except (UnimportableTargetError, TypeError, ValueError):  # refused later (check_config_values)
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}


#: The parameters of marsunits' own classes that the configs build, written out so that what is judged by
#: them is judged without importing them (torch and Lightning, some 6 s, 23 s under load, for one line):
#: their switches (``model.channels_last=fasle``, ``data.pin_memory=no``, ``+data.scene.distortion=fasle``)
#: and the keys they take that a config does not list (``data.val_context_px=3``: add it with a plus) or do
#: not take (``+model.channel_last=true``). Each parameter is given what :func:`class_switches` says of it
#: (True: a switch that takes true or false only; False: one that takes other values too), None where it is
#: no switch. ``tests/test_cli_overrides.py`` checks each class's entry against its signature
#: (:func:`class_parameters`, :func:`class_switches`).
OWN_PARAMETERS: dict[str, dict[str, bool | None]] = {
    "marsunits.task.SegmentationTask": {
        **dict.fromkeys((  # no switch
            "arch", "encoder", "encoder_weights", "in_channels", "num_classes", "class_names", "palette",
            "mean", "std", "loss", "dice_weight", "class_weights", "optimizer", "lr", "weight_decay",
            "scheduler", "warmup_steps", "tile_size", "class_map", "dataset", "encoder_depth",
            "decoder_channels", "encoder_lr_mult", "contact_weight", "contact_radius_px", "drop_path_rate",
            "subclasses",
        )),
        "channels_last": True,
        "freeze_encoder_bn": True,
    },
    "marsunits.data.datamodule.MarsDataModule": {
        **dict.fromkeys((  # no switch
            "name", "sources", "in_channels", "crop_size", "class_map", "val_context_px", "root",
            "source_dirs", "batch_size", "val_batch_size", "num_workers", "seed", "val_fraction", "n_folds",
            "fold", "sol_block", "exclude_sols", "sol_margin", "samples_per_epoch", "min_labelled_fraction",
            "focus_class", "focus_fraction", "train_length", "val_length", "test_length", "scene",
            "render_processes", "train_only", "hflip_p", "min_scale", "max_rotation_deg", "brightness",
            "contrast", "saturation", "class_mix_prob", "subclass_map", "subclasses",
        )),
        "pin_memory": True,
        "persistent_workers": True,
        "shared_sol_holdout": True,
        "allow_seen_val_sols": True,
        "cache": False,
        "fixed_crops": True,
        "cache_scenes": True,
        "separate_val": True,
        "folder_sols_from_names": True,
    },
    "marsunits.data.synthetic.config.SceneConfig": {
        **dict.fromkeys((  # no switch
            "width", "height", "mode", "difficulty", "p_contact", "p_sand", "p_rover", "max_range_m",
            "hfov_deg_range", "pitch_deg_range", "roll_deg_max", "height_m_range", "jpeg_quality_range",
        )),
        "distortion": True,
    },
    # The callbacks of configs/callbacks/ and the checkpoint IO of configs/trainer/ (their modules import
    # Lightning: ``callbacks.interrupt_checkpoint.bogus=1`` took some 13 s to refuse). The two checkpoint
    # callbacks take Lightning's ModelCheckpoint's parameters, and the learning-rate monitor is Lightning's.
    **dict.fromkeys(
        ("marsunits.best_checkpoint.RunModelCheckpoint", "marsunits.best_checkpoint.RecoveryCheckpoint"),
        {
            **dict.fromkeys((  # no switch
                "dirpath", "filename", "monitor", "save_top_k", "mode", "every_n_train_steps",
                "train_time_interval", "every_n_epochs",
            )),
            "verbose": True,
            "save_last": False,
            "save_on_exception": True,
            "save_weights_only": True,
            "auto_insert_metric_name": True,
            "save_on_train_epoch_end": True,
            "enable_version_counter": True,
        },
    ),
    "marsunits.interrupt_checkpoint.InterruptCheckpoint": {"dirpath": None},
    "marsunits.tracking.callbacks.WandbRunInfo": {},
    "marsunits.tracking.callbacks.WandbValidationImages": dict.fromkeys(
        ("every_n_epochs", "n_images", "key")
    ),
    "marsunits.tracking.callbacks.WandbConfusionMatrix": dict.fromkeys(("every_n_epochs", "stage")),
    "lightning.pytorch.callbacks.LearningRateMonitor": {
        "logging_interval": None,
        "log_momentum": True,
        "log_weight_decay": True,
    },
    "marsunits.checkpoint_io.AtomicCheckpointIO": {},
}  # fmt: skip

#: The classes the configs build that take any keyword (``**kwargs``: :func:`class_parameters` is None for
#: them), known without importing them: ``EMAWeights`` hands its keywords to Lightning's ``WeightAveraging``.
OWN_ANY_KEYWORD = frozenset({"marsunits.averaging.EMAWeights"})

#: :func:`class_switches` of marsunits' own classes (those of :data:`OWN_PARAMETERS` that are switches).
OWN_SWITCHES: dict[str, dict[str, bool]] = {
    target: {name: only_bool for name, only_bool in parameters.items() if only_bool is not None}
    for target, parameters in OWN_PARAMETERS.items()
}


def target_parameters(target: str) -> set[str] | None:
    """:func:`class_parameters` of ``target``: from :data:`OWN_PARAMETERS` for marsunits' own classes (nothing
    imported; None for those of :data:`OWN_ANY_KEYWORD`), else from its signature (which imports it)."""
    if target in OWN_ANY_KEYWORD:
        return None
    own = OWN_PARAMETERS.get(target)
    return set(own) if own is not None else class_parameters(target)


def _switch_leaves(
    node: Any,
    prefix: str = "",
    target: str | None = None,
    switches_of: Callable[[str], dict[str, bool] | None] = class_switches,
) -> Iterator[tuple[str, Any, bool]]:
    """``(dotted key, value, only a bool)`` of each leaf of a plain container (:func:`_leaves`) that a class
    reads as true or false: a parameter that takes a bool (everything under it, ``data.cache.ai4mars``) of
    the class its node builds (``_target_``), or ``target`` for a node without one (:data:`_FIELDS_OF`). The
    third is whether the parameter takes nothing but true or false (False under a mapping or list).

    ``switches_of`` says a class's switches (:func:`class_switches`, which imports it); one that gives None
    for a class leaves out its node and all under it (:data:`OWN_SWITCHES`, for the switches known without
    importing anything: some of the leaves of :func:`class_switches`, none else)."""
    if not isinstance(node, dict):
        return
    built = node.get("_target_")
    if isinstance(built, str):
        target = built
    switches = switches_of(target) if target is not None else {}
    if switches is None:  # not known here
        return
    for key, value in node.items():
        dotted = f"{prefix}{key!s}"
        only_bool = switches.get(str(key))
        if only_bool is not None:
            if isinstance(value, dict | list):
                yield from ((k, v, False) for k, v in _leaves(value, f"{dotted}."))
            else:
                yield dotted, value, only_bool
            continue
        fields = _FIELDS_OF.get((str(built), str(key)))
        if isinstance(value, dict):
            yield from _switch_leaves(value, f"{dotted}.", fields, switches_of)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from _switch_leaves(item, f"{dotted}.{i}.", None, switches_of)


def _check_switches(cfg: DictConfig, switches_of: Callable[[str], dict[str, bool] | None]) -> None:
    """Refuse a switch (:func:`_switch_leaves` with ``switches_of``) given yes/no/on/off, or other text
    where it takes nothing but true or false.

    Raises:
        ConfigError: naming the key, the value and what to give instead (:func:`switch_value_refusal`).
    """
    switches = list(_switch_leaves(OmegaConf.to_container(cfg, resolve=False), switches_of=switches_of))
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
