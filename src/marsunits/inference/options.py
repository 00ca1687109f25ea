"""``predict.py``'s options (``configs/predict.yaml``) read into plain values, each checked before anything
is predicted: :class:`PredictOptions`, the ``contact`` group (:func:`read_contact_config`) and
``labels_class_map`` (:func:`read_labels_class_map`). A value of the wrong kind is refused with the option
named and an example, never read by Python's own rules (``bool("no")`` is true)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from marsunits.constants import IGNORE_INDEX
from marsunits.data.class_map import DATA_SET_LABEL_MAPS, ClassMap, data_set_label_map
from marsunits.errors import ConfigError, switch_value_refusal

if TYPE_CHECKING:
    from marsunits.boundary.extract import ContactConfig

__all__ = [
    "RUNTIMES",
    "PredictOptions",
    "check_option_types",
    "labels_class_map_word",
    "offers_checkpoint_map",
    "plain_scalar",
    "read_contact_config",
    "read_labels_class_map",
    "shipped_map_note",
]


#: The values of ``runtime`` (:mod:`marsunits.inference.runtime`), kept here: they are checked
#: (:meth:`PredictOptions.check_values`) before Hydra starts, by checks that import no torch.
RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class PredictOptions:
    """The options of ``configs/predict.yaml`` as plain values (see that file for their meaning).

    Built in Python (``predict_folder(PredictOptions(...))``) the values are checked for their kind as the
    config's are (:func:`check_option_types`); their ranges by :meth:`check_values`. A numpy scalar
    (``np.int64(4)``, ``np.True_``) is kept as the Python number or bool it holds (:func:`plain_scalar`).
    Refusals are in Python's words (``tta=True``, ``tile=None``), those of options read by
    :meth:`from_config` in ``predict.py``'s (``tta=true``, ``tile=null``): see :attr:`config_words`.

    Raises:
        ConfigError: An on/off option that is not a bool (``tta="no"``), a number option that is not a number.
    """

    ckpt_path: str
    input_dir: str
    output_dir: str
    patterns: Sequence[str] = ("jpg", "jpeg", "png", "tif", "tiff")
    tile: int | None = 512
    overlap: float = 0.125
    batch_size: int = 4
    num_workers: int | None = None
    device: str = "auto"
    overwrite: bool = False
    save_probabilities: bool = False
    probability_dtype: str = "uint8"
    labels_dir: str | None = None
    labels_class_map: Any = None
    allow_errors: bool = False
    max_megapixels: float | None = 100.0
    max_file_mb: float | None = 500.0
    trust_checkpoint: bool = False
    map: bool = False
    logger: Mapping[str, Any] | None = None
    max_range_m: float = 30.0
    contact: Mapping[str, Any] = field(default_factory=dict)
    min_unit_area_px: int = 200
    nodata_max: float | None = 0.03
    tta: bool = False
    adapt_bn: bool = False
    threads: int | None = None
    runtime: str = "torch"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    fold_batchnorm: bool = True
    onnx_cache_dir: str | None = None
    onnx_tolerance: float = 1e-3
    devices: int = 1
    num_nodes: int = 1
    rank_timeout_s: float = 60.0

    #: True for options read from ``predict.py``'s config (:meth:`from_config`): their refusals say ``true``,
    #: ``false`` and ``null``, the config's words; built in Python, ``True``, ``False`` and ``None``. Not a
    #: field (not an option): kept by :meth:`with_values`.
    config_words = False

    def __post_init__(self) -> None:
        # A number computed with numpy is the number it holds, as UnitMapper takes it: np.int64(4) was refused
        # as "not a whole number" (and a numpy scalar cannot be written to the settings' JSON).
        for f in fields(self):
            setattr(self, f.name, plain_scalar(getattr(self, f.name)))
        self.labels_class_map = labels_class_map_word(self.labels_class_map)
        # Checked in from_config only: built in Python, trust_checkpoint="no" (true to bool()) loaded an
        # untrusted checkpoint's pickle, overwrite="no" replaced outputs and tta="no" averaged mirrored maps.
        # In Python's words ("give tta=True"): from_config has checked its values in the config's already.
        check_option_types(vars(self), python=True)

    def with_values(self, **changes: Any) -> PredictOptions:
        """These options with ``changes`` (option names), in the same words (:attr:`config_words`)."""
        changed = replace(self, **changes)
        changed.config_words = self.config_words
        return changed

    @classmethod
    def from_config(cls, cfg: DictConfig) -> PredictOptions:
        """Read the options from a composed ``predict`` config.

        Raises:
            ConfigError: A required option (``ckpt_path``, ``input_dir``, ``output_dir``) is missing.
        """
        missing = [k for k in ("ckpt_path", "input_dir", "output_dir") if OmegaConf.is_missing(cfg, k)]
        if missing:
            example = " ".join(f"{k}=..." for k in missing)
            raise ConfigError(
                f"missing required option(s) {', '.join(missing)}: run python predict.py {example}"
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in cfg:
                value = cfg[f.name]
                values[f.name] = (
                    OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                )
        check_option_types(values)
        opts = cls(**values)
        opts.config_words = True  # its refusals in predict.py's words: tta=true, tile=null
        return opts

    def check_values(self, python: bool | None = None) -> None:
        """Refuse values out of their range, each with the option named, what it means and an example, before
        anything is loaded or predicted (``DataLoader`` refused ``num_workers=-1`` only after the reports
        were written). ``python``: the values are keyword arguments of the Python API (``PredictOptions``
        built in Python, :class:`~marsunits.inference.unit_mapper.UnitMapper`), told that "none" is
        ``None``, not ``null``; None (the default): unless they were read from the config
        (:attr:`config_words`).

        Raises:
            ConfigError: naming the option and the value.
        """
        if self.labels_dir is None and self.labels_class_map is not None:
            raise ConfigError(
                f"labels_class_map={self.labels_class_map} maps the ids of label masks, but no labels_dir "
                "was given, so nothing would be scored; add labels_dir=<folder of label masks> or drop "
                "labels_class_map"
            )
        if self.probability_dtype not in ("uint8", "float16"):
            raise ConfigError(f"probability_dtype must be uint8 or float16, got {self.probability_dtype!r}")
        # overlap, runtime and patterns were refused only once the model was loaded or the folder walked
        # (in every rank of a sharded run, as a spawn traceback).
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(
                f"overlap={self.overlap!r}: give a fraction of the window in [0, 1) shared with its "
                "neighbours, e.g. overlap=0.125"
            )
        from marsunits.inference.inputs import normalise_patterns

        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {self.runtime!r}")
        normalise_patterns(self.patterns)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if python is None:
            python = not self.config_words
        none = "None" if python else "null"
        if self.num_workers is not None and int(self.num_workers) < 0:
            raise ConfigError(
                f"num_workers must be >= 0 (or {none}: 0 on a CPU, 2 on a GPU), got {self.num_workers}"
            )
        area = self.min_unit_area_px
        if isinstance(area, bool) or not isinstance(area, int) or area < 0:
            raise ConfigError(
                f"min_unit_area_px must be a whole number of pixels >= 0 (0 turns the minimum mapping unit "
                f"off), got {area!r}"
            )
        nodata = self.nodata_max
        if nodata is not None and (
            isinstance(nodata, bool) or not isinstance(nodata, (int, float)) or not 0.0 <= nodata < 1.0
        ):
            raise ConfigError(
                f"nodata_max must be {none} or a number in [0, 1) (0.03: 8-bit values up to 7), "
                f"got {nodata!r}"
            )
        max_range = self.max_range_m
        if (
            isinstance(max_range, bool)
            or not isinstance(max_range, (int, float))
            or not 0 < max_range < math.inf
        ):
            raise ConfigError(
                f"max_range_m must be a finite distance in metres > 0 (how far from the camera contacts are "
                f"put on the ground; default 30, e.g. max_range_m=200 for far terrain), got {max_range!r}"
            )
        wait = self.rank_timeout_s
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 1 <= wait < math.inf:
            raise ConfigError(
                f"rank_timeout_s must be a finite number of seconds >= 1 (how long the ranks of a sharded "
                f"run wait for a silent rank before stopping; default 60, e.g. rank_timeout_s=300), got "
                f"{wait!r}"
            )
        tile = self.tile
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0):
            raise ConfigError(
                f"tile must be {none} (the checkpoint's tile size) or a whole number of pixels, "
                f"e.g. tile=512, got {tile!r}"
            )


#: Number options whose own check (:meth:`PredictOptions.check_values`) names their range and meaning.
_CHECKED_WITH_THEIR_RANGE = frozenset(
    {"tile", "min_unit_area_px", "nodata_max", "max_range_m", "rank_timeout_s"}
)


#: Number options where ``inf`` means "no limit" (none of them is written to the settings record).
_INFINITY_IS_NO_LIMIT = frozenset({"max_megapixels", "max_file_mb", "onnx_tolerance"})


def check_option_types(values: Mapping[str, Any], python: bool = False) -> None:
    """Refuse option values of the wrong kind (:func:`_check_option_type`), ``values`` keyed by the
    option names of :class:`PredictOptions` (other keys are not checked here). ``python``: the values are
    keyword arguments of the Python API (:class:`~marsunits.inference.unit_mapper.UnitMapper`), told to give
    a switch as ``True`` or ``False`` (:func:`~marsunits.errors.switch_value_refusal`), not ``true``, and
    "none" (no limit) as ``None``, not ``null``.

    Raises:
        ConfigError: naming the option, the value and what to give.
    """
    for f in fields(PredictOptions):
        if f.name in values:
            _check_option_type(f.name, str(f.type), values[f.name], python)


def _check_option_type(name: str, annotation: str, value: Any, python: bool = False) -> None:
    """Refuse an on/off option that is not ``true``/``false`` and a number option that is not a number.

    The config hands ``trust_checkpoint=no`` over as the text ``"no"``, which ``bool()`` reads as true: it
    loaded an untrusted checkpoint's code, and ``overwrite=no`` replaced another model's outputs. Numbers
    typed as text (``max_megapixels=abc``) failed later with a traceback.

    Raises:
        ConfigError: naming the option, the value and what to give.
    """
    kinds = {part.strip() for part in annotation.split("|")}
    if value is None and "None" in kinds:
        return
    if kinds == {"bool"} and not isinstance(value, bool):
        raise ConfigError(switch_value_refusal(name, value, python))
    number = kinds & {"int", "float"} if name not in _CHECKED_WITH_THEIR_RANGE else set()
    accepted = (float, int) if "float" in number else int
    # nan (and inf, but for limits, where it means none) passed, and ended in a JSON error naming no option
    # when the settings were written.
    bad = isinstance(value, bool) or not isinstance(value, accepted)
    if isinstance(value, float) and not bad:
        bad = math.isnan(value) or (math.isinf(value) and name not in _INFINITY_IS_NO_LIMIT)
    none = "None" if python else "null"  # Python's word, or the config's
    if number and bad:
        what = "a number" if "float" in number else "a whole number"
        empty = f" or {none}" if "None" in kinds else ""
        raise ConfigError(f"{name}={value!r}: give {what}{empty}, e.g. {name}={_example(name, none)}")
    if name in ("max_megapixels", "max_file_mb") and not value > 0:
        raise ConfigError(f"{name}={value!r}: give a limit > 0, or {name}={none} for none")


def plain_scalar(value: Any) -> Any:
    """A numpy scalar as the Python bool, int or float it holds (other values as they are)."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _example(name: str, none: str = "null") -> Any:
    """The option's default in :class:`PredictOptions`, quoted in a refusal as an example value (a default of
    None as ``none``: ``null`` in the config's words, ``None`` in Python's)."""
    default = {f.name: f.default for f in fields(PredictOptions)}.get(name)
    return none if default is None else default


def read_contact_config(options: Mapping[str, Any]) -> ContactConfig:
    # Imported here: the contact code's SciPy and Shapely, over a second of predict.py's checks before Hydra
    # starts, which a refusal of a folder or of another value does not need.
    from marsunits.boundary.extract import ContactConfig

    valid = [f.name for f in fields(ContactConfig)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown contact option(s) {unknown}; valid options are {valid}")
    for f in fields(ContactConfig):  # a word typed for a number: say which option, not Python's comparison
        default, value = f.default, options.get(f.name)
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if (
            f.name in options
            and numeric
            and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(float(value))
            )
        ):
            raise ConfigError(
                f"contact.{f.name}={value!r}: expected a finite number, e.g. contact.{f.name}={default}"
            )
    try:
        return ContactConfig(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad contact option: {exc}") from exc


def labels_class_map_word(value: Any) -> Any:
    """``labels_class_map``'s value as the run reads it: ``checkpoint`` or a known data set's name
    (:data:`~marsunits.data.class_map.DATA_SET_LABEL_MAPS`) in any letter case is that word in lower case,
    so ``MarsScapes`` and ``AI4Mars``, the names as the data sets and the docs spell them, read their maps
    (they were refused as names of no map); any other value is returned as it is."""
    if (
        isinstance(value, str)
        and value != value.lower()
        and value.lower() in ("checkpoint", *DATA_SET_LABEL_MAPS)
    ):
        return value.lower()
    return value


def read_labels_class_map(value: Any, metadata: Mapping[str, Any]) -> ClassMap | None:
    """``labels_class_map``: None (labels in project ids), ``checkpoint`` (the map the model was trained
    with, from its metadata), the name of one of a several-source model's data sets (that source's map,
    e.g. ``marsscapes`` for a ``marsscapes_ai4mars`` model) or of a one-source model's data set (its map, as
    ``checkpoint``), the name of a known data set the model was not trained on or carries no map of (the
    map shipped for it, :data:`~marsunits.data.class_map.DATA_SET_LABEL_MAPS`: AI4Mars labels scored with a
    MarsScapes or a synthetic model, or with an AI4Mars model whose metadata lost its map), or a
    ``{native id: project id}`` mapping.

    A model trained on a known data set reads its name as its training map, which may be a user's override
    of the shipped one (``data.class_map=...``): that is how the model's classes were taught.

    Raises:
        ConfigError: Another value (a misspelt name is told the word meant), a model without the map asked
            for, or a mapping with ids out of range.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if _reads_a_shipped_map(value, metadata):
            where = (
                "a labels_class_map='{native id: project id, ...}' of your own instead of the map shipped "
                f"for {value} labels (labels_class_map={value})"
            )
            return ClassMap(
                data_set_label_map(value), value, key="class_map", where=where, named_by="labels_class_map"
            )
        mapping, name = _training_map(value, metadata)
        where = (
            "a labels_class_map='{native id: project id, ...}' of your own instead of the model's training "
            f"map (labels_class_map={value})"
        )
        return ClassMap(mapping, name, key="class_map", where=where, named_by="labels_class_map")
    if not isinstance(value, Mapping):
        names = ", ".join(sorted(DATA_SET_LABEL_MAPS))
        raise ConfigError(
            f"labels_class_map must be null, checkpoint, a data set's name ({names}) or a mapping "
            f"{{native id: project id}}, got {value!r}"
        )
    # 255 (unlabelled) stays 255 unless the map says otherwise: every project and dataset uses it so.
    keys = {str(k) for k in value}
    mapping = dict(value) if str(IGNORE_INDEX) in keys else {**value, IGNORE_INDEX: IGNORE_INDEX}
    where = "the command: labels_class_map='{native id: project id, ...}'"
    try:
        return ClassMap(mapping, None, key="labels_class_map", where=where, named_by="labels_class_map")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def shipped_map_note(value: Any, metadata: Mapping[str, Any]) -> str | None:
    """The line a run logs once when ``labels_class_map=<value>`` reads the labels with the map shipped for
    a known data set the model was not trained on, or carries no map of (:func:`read_labels_class_map`):
    which map, and that it is not the model's (where the model has one: a model trained on masks in project
    ids was told its "training map" was not used); None for any other value. Such a name was refused,
    spelling the map to give (and, for a model of that data set without a map, said it was trained on masks
    in project ids)."""
    if not isinstance(value, str) or not _reads_a_shipped_map(value, metadata):
        return None
    if _carries_no_map_of(value, metadata):
        trained = (
            f"was trained on {value} masks in project ids (it carries no class_map of {value}: an older or "
            "edited checkpoint, or one trained with its class_map set to null)"
        )
        instead = "; give labels_class_map=null if the labels hold project ids"
    else:
        trained = _what_it_was_trained_on(metadata)
        trained += "" if metadata.get("dataset") is None else f", not on {value}"
        # Not said of a model with no map at all (synthetic scenes, data=folder): it has none to read them.
        mapping = metadata.get("class_map")
        by_source = _maps_by_source(mapping)
        has_map = any(by_source.values()) if by_source is not None else bool(mapping)
        instead = ", not with the model's training map" if has_map else ""
    return (
        f"labels_class_map={value}: this model {trained}, so the labels are read with the map shipped for "
        f"{value} labels (the class_map of configs/data/{value}.yaml: {DATA_SET_LABEL_MAPS[value]})"
        f"{instead}; metrics.json records it as labels_class_map"
    )


def _reads_a_shipped_map(value: str, metadata: Mapping[str, Any]) -> bool:
    """Whether ``labels_class_map=<value>`` names a known data set (:data:`DATA_SET_LABEL_MAPS`) that the
    model of ``metadata`` was not trained on, or carries no map of (:func:`_carries_no_map_of`): one of a
    several-source model's sources, or a one-source model's data set, with a map is read as that training
    map instead (:func:`_training_map`)."""
    if value not in DATA_SET_LABEL_MAPS:
        return False
    if _carries_no_map_of(value, metadata):
        return True
    by_source = _maps_by_source(metadata.get("class_map"))
    if by_source is not None:
        return value not in by_source
    return metadata.get("dataset") is None or str(metadata.get("dataset")) != value


def _carries_no_map_of(value: str, metadata: Mapping[str, Any]) -> bool:
    """Whether the model of ``metadata`` was trained on the data set ``value`` (its one data set, or one of
    its sources) but carries no class map of it: a checkpoint whose metadata lost it, or a training with
    that data set's ``class_map`` set to null. ``labels_class_map=<value>`` was refused for such a model,
    spelling out the map the name means; it reads the labels with that map now, saying so."""
    mapping = metadata.get("class_map")
    by_source = _maps_by_source(mapping)
    if by_source is not None:
        return value in by_source and not by_source[value]
    return not mapping and metadata.get("dataset") is not None and str(metadata.get("dataset")) == value


def _what_it_was_trained_on(metadata: Mapping[str, Any]) -> str:
    """How a log line names what the model of ``metadata`` was trained on."""
    dataset, mapping = metadata.get("dataset"), metadata.get("class_map")
    by_source = _maps_by_source(mapping)
    if by_source is not None:
        return f"was trained on {dataset!r} ({', '.join(sorted(by_source))})"
    if dataset is None:
        return "names no data set it was trained on"
    return f"was trained on {str(dataset)!r}" + ("" if mapping else " (masks in project ids)")


def offers_checkpoint_map(metadata: Mapping[str, Any]) -> bool:
    """Whether ``labels_class_map=checkpoint`` gives a map for the model of ``metadata``: not for one trained
    on masks in project ids (synthetic scenes, ``data=folder``), nor for one trained on several data sets
    with a map each (the data set is to be named), which refuse it."""
    try:
        _training_map("checkpoint", metadata)
    except ConfigError:
        return False
    return True


def _labels_of_another_data_set(value: str, offered: Iterable[str]) -> str:
    """The sentence a refusal of ``labels_class_map=<value>`` ends with: a value close to a word the refusal
    offers (``offered``: ``checkpoint``, the model's data sets) or to a known data set's name, a misspelling
    (``chekpoint``, ``marscapes``), is told that word; another, that labels of another data set take a known
    data set's name (its shipped map, :func:`read_labels_class_map`) or their own map, as a mapping."""
    close = difflib.get_close_matches(value, [*offered, *DATA_SET_LABEL_MAPS], n=1, cutoff=0.8)
    if close:
        return f"; did you mean labels_class_map={close[0]}?"
    return (
        "; labels of another data set take its name if it is one of "
        f"{', '.join(sorted(DATA_SET_LABEL_MAPS))} (the map shipped for it, e.g. labels_class_map=ai4mars "
        "for AI4Mars labels), else their own map, labels_class_map='{native id: project id, ...}'"
    )


def _training_map(value: str, metadata: Mapping[str, Any]) -> tuple[Mapping[Any, Any], str]:
    """The map the model was trained with that ``labels_class_map=<value>`` names, and its data set's name.

    A several-source model's map is ``{source: map or None}`` (``task._normalise_class_map``):
    ``checkpoint`` takes its one source's map when only one has a map (a self-trained student's
    pseudo-labels are in project ids), and a source's name takes that source's. Read as one map, the source
    names were refused as native ids, blaming the user's map.

    Raises:
        ConfigError: The model has no such map, or several where ``checkpoint`` asks for one.
    """
    mapping, dataset = metadata.get("class_map"), str(metadata.get("dataset"))
    by_source = _maps_by_source(mapping)
    if by_source is None:
        if not mapping:
            # Whatever name was given: the model has no map to offer (checkpoint would be refused too).
            raise _no_training_map(dataset, value)
        # The data set's own name (labels_class_map=marsscapes for a MarsScapes model) means its one map:
        # what a several-source model takes, and what a user types. It was refused as neither checkpoint
        # nor a mapping, which did not say that the model's map was one word away.
        named = metadata.get("dataset") is not None
        if value != "checkpoint" and not (named and value == dataset):
            trained_on = f"was trained on one data set, {dataset!r}" if named else "names no data set"
            raise ConfigError(
                f"labels_class_map={value}: this model {trained_on}; give checkpoint"
                f"{f' (or {dataset})' if named else ''} for its map, null for labels in project ids, or a "
                "mapping {native id: project id}"
                + _labels_of_another_data_set(value, ["checkpoint", dataset] if named else ["checkpoint"])
            )
        return mapping, dataset
    if value == "checkpoint":
        mapped = sorted(source for source, sub in by_source.items() if sub)
        if not mapped:
            raise _no_training_map(dataset)
        if len(mapped) > 1:
            raise ConfigError(
                "labels_class_map=checkpoint, but this model was trained on several data sets, each with "
                f"its own class_map ({', '.join(mapped)}): name the one the labels come from, e.g. "
                f"labels_class_map={mapped[0]}"
            )
        value = mapped[0]
    if value not in by_source:
        raise ConfigError(
            f"labels_class_map={value}: not a data set this model was trained on; give checkpoint, one of "
            f"{', '.join(sorted(by_source))}, null or a mapping {{native id: project id}}"
            + _labels_of_another_data_set(value, ["checkpoint", *by_source])
        )
    if not by_source[value]:
        raise ConfigError(
            f"labels_class_map={value}: this model's {value} masks were in project ids (no class_map); give "
            "labels_class_map=null for labels in project ids"
        )
    return by_source[value], f"{dataset}: {value}"


def _no_training_map(dataset: str, value: str = "checkpoint") -> ConfigError:
    """The refusal of ``labels_class_map=<value>`` for a model trained on masks in project ids: the labels'
    own map is to be given, by a known data set's name (its shipped map) or as a mapping. ``value`` is no
    known data set's name: that is read with the map shipped for it (:func:`_reads_a_shipped_map`), for a
    model trained on that data set without a map too (this refusal spelt the map out to give)."""
    which = (
        f"the name of their data set if it is one of {', '.join(sorted(DATA_SET_LABEL_MAPS))} (the map "
        "shipped for it, e.g. labels_class_map=ai4mars for AI4Mars labels), else the class_map of their data "
        "set's configs/data/<name>.yaml as a mapping"
    )
    return ConfigError(
        f"labels_class_map={value}, but this model was trained on masks in project ids (dataset "
        f"{dataset!r} has no class_map); give the labels' map instead: {which}"
    )


def _maps_by_source(class_map: Any) -> dict[str, Any] | None:
    """A several-source model's ``{source: {native: project} or None}`` (``task._normalise_class_map``),
    or None for a single map or none."""
    several = isinstance(class_map, Mapping) and bool(class_map)
    if several and all(isinstance(v, Mapping) or v is None for v in class_map.values()):
        return {str(k): v for k, v in class_map.items()}
    return None
