"""The rules of the data module's values that need no data read, its training draw's aside
(:mod:`marsunits.data.sampling_checks`): which sources it reads (``sources``), how it splits them
(``val_fraction``, ``exclude_sols``, ``sol_margin``), how many processes render synthetic scenes
(``render_processes``), how often ClassMix mixes crops (``class_mix_prob``), the sizes a network
takes (``crop_size``, ``val_context_px``, a synthetic scene's sides: :func:`size_refusal`), where the
real sources are and how their masks are mapped (:func:`source_settings_refusal`), and the training
masks' sub-classes (:func:`subclasses_refusal`).

One wording of each rule for :class:`~marsunits.data.datamodule.MarsDataModule` (and, for ``val_fraction``,
:func:`~marsunits.data.splits.split_by_group`, which it splits with), which refuse them inside the run, and
for ``train.py``'s checks before Hydra (:func:`data_value_refusal`, from
:func:`~marsunits.run_checks.check_run_values`), which refuse them before the run folder is made: the data
module alone left a folder with Hydra's record and ``train.log`` of a run that never started. Imports
neither torch nor the data module (seconds of start-up for a one-line refusal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

__all__ = [
    "SOURCES",
    "check_sol_ranges",
    "class_map_refusal",
    "class_mix_prob_refusal",
    "data_value_refusal",
    "flat_map_refusal",
    "map_entries_refusal",
    "map_refusal",
    "multiples_around",
    "render_processes_refusal",
    "size_refusal",
    "sol_margin_refusal",
    "source_settings_refusal",
    "sources_refusal",
    "subclasses_refusal",
    "val_fraction_refusal",
    "whole_id",
]

#: The source names a data config's ``sources`` lists: generated scenes, or real datasets (each one's
#: scanner: :data:`~marsunits.data.source_folders.REAL_SOURCES`, in this order).
SOURCES: tuple[str, ...] = ("synthetic", "marsscapes", "ai4mars", "folder")


def sources_refusal(name: str, sources: Any) -> str | None:
    """The refusal of the data config ``configs/data/<name>.yaml``'s ``sources`` (a plain value, as the
    data module is given it), or None: a list (or tuple) of known names (:data:`SOURCES`), at least one,
    ``synthetic`` alone, none twice. Text is refused as not a list: ``data.sources=mars`` was listed as its
    letters and refused as ``unknown sources ['m', 'a', 'r', 's']``, and ``data.sources=null`` failed in
    ``list()`` naming no key."""
    where = f"configs/data/{name}.yaml"
    if not isinstance(sources, list | tuple):
        text = sources.strip() if isinstance(sources, str) else ""
        example = text or (name if name in SOURCES else SOURCES[1])
        return (
            f"{where}: sources must be a list of source names from {list(SOURCES)}, got {sources!r}; e.g. "
            f"data.sources=[{example}], or 'data.sources=[marsscapes,ai4mars]' (quoted for the shell) for "
            "several."
        )
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if not sources or unknown:
        return f"{where}: unknown sources {unknown or sources}; choose from {list(SOURCES)}."
    if "synthetic" in sources and len(sources) > 1:
        return f"{where}: 'synthetic' cannot be combined with other sources in one data config."
    if len(sources) != len(set(sources)):
        return f"{where}: sources are listed twice: {sources}."
    return None


def check_sol_ranges(
    ranges: Sequence[Sequence[int]] | None, where: str, key: str = "data.exclude_sols"
) -> list[tuple[int, int]]:
    """``[[first, last], ...]`` inclusive sol ranges as int pairs (``None``: no range).

    Raises:
        ValueError: not a list, or an entry that is not two whole numbers with ``first <= last``; the message
            names ``where`` (the config file) and shows ``key`` (the command-line override) with an example.
    """
    if ranges is not None and (isinstance(ranges, str) or not isinstance(ranges, Sequence)):
        raise ValueError(
            f"{where}: {key} must be a list of [first_sol, last_sol] pairs, got {ranges!r}; "
            f"e.g. {key}=[[100,550]]"
        )
    checked: list[tuple[int, int]] = []
    for entry in ranges or []:
        pair = list(entry) if isinstance(entry, Sequence) and not isinstance(entry, str) else [entry]
        if (
            len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in pair)
            or pair[0] > pair[1]
        ):
            raise ValueError(
                f"{where}: each entry of {key} must be [first_sol, last_sol] (whole numbers, first <= last), "
                f"got {entry!r}; e.g. {key}=[[100,550]]"
            )
        checked.append((int(pair[0]), int(pair[1])))
    return checked


def sol_margin_refusal(name: str, sol_margin: Any) -> str | None:
    """The refusal of ``sol_margin`` (a whole number of sols >= 0) of ``configs/data/<name>.yaml``, or
    None."""
    if isinstance(sol_margin, bool) or not isinstance(sol_margin, int) or sol_margin < 0:
        return (
            f"configs/data/{name}.yaml: sol_margin must be a whole number of sols >= 0, got {sol_margin!r}; "
            "e.g. data.sol_margin=2"
        )
    return None


def render_processes_refusal(name: str, render_processes: Any) -> str | None:
    """The refusal of ``render_processes`` (None: automatic, or a whole number >= 0; 1.5 was read as 1, text
    failed in ``int()`` naming no key) of ``configs/data/<name>.yaml``, or None."""
    if render_processes is None:
        return None
    if isinstance(render_processes, bool) or not isinstance(render_processes, int) or render_processes < 0:
        return (
            f"configs/data/{name}.yaml: render_processes must be null (automatic) or an integer >= 0, got "
            f"{render_processes!r}."
        )
    return None


def _fraction(value: Any) -> float | None:
    """``float(value)`` for a number (not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def class_mix_prob_refusal(name: str, class_mix_prob: Any) -> str | None:
    """The refusal of ``class_mix_prob`` (a probability in [0, 1]; text failed in ``float()`` naming no key)
    of ``configs/data/<name>.yaml``, or None."""
    chance = _fraction(class_mix_prob)
    if chance is None or not 0.0 <= chance <= 1.0:
        return (
            f"configs/data/{name}.yaml: class_mix_prob must be a probability in [0, 1], got "
            f"{class_mix_prob!r}; e.g. data.class_mix_prob=0.5 (0 turns ClassMix off)."
        )
    return None


def whole_id(value: Any) -> bool:
    """Whether ``value`` is a label id as a map holds it: an int or a string of digits (YAML and the command
    line give either), never true/false, null, a fraction or a name. The one rule of
    :class:`~marsunits.data.class_map.ClassMap` and of the checks here."""
    return not isinstance(value, bool) and isinstance(value, int | str) and str(value).strip().isdigit()


def map_refusal(name: str, key: str, value: Any) -> str | None:
    """The refusal of ``class_map`` or ``subclass_map`` (``key``) of ``configs/data/<name>.yaml``: a map of
    native id to project (or sub-class) id, or null, or None when it is one. ``data.class_map=3:1`` on the
    command line (the quotes and braces left out) is text, which the network's set-up read as a map and
    stopped on in Hydra's words (``AttributeError("'str' object has no attribute 'values'")``) after the
    run folder was made. ``subclass_map``'s entries are ids too (:func:`map_entries_refusal`); a
    ``class_map``'s are checked by :func:`class_map_refusal`, which knows its shape (several sources nest one
    map per source, each checked here as ``class_map.<source>``)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return map_entries_refusal(name, key, value) if key == "subclass_map" else None
    project = key.split(".")[0] == "class_map"
    target = "project id" if project else "sub-class id"
    explained = "data/README.md" if project else "docs/training.md"  # where each map is described
    return (
        f"configs/data/{name}.yaml: {key} must be a map {{<native id>: <{target}>, ...}} or null, got "
        f"{value!r} ({type(value).__name__}); on the command line write it in braces and single quotes, "
        f"data.{key}='{{<native id>: <{target}>, ...}}' ({explained})."
    )


def map_entries_refusal(name: str, key: str, value: Mapping[Any, Any]) -> str | None:
    """The refusal of the first entry of the map ``key`` (``class_map`` or ``subclass_map``) of
    ``configs/data/<name>.yaml`` whose native id or target is no whole number (:func:`whole_id`), or None.
    ``data.subclass_map='{1: a}'`` (merged by Hydra into the map the config has) ended, once the run folder
    was made, in ``invalid literal for int() with base 10: 'a'``, naming no key; a fraction was read as the
    id below it (1.5 as 1) and refused for the wrong reason. ``key`` is ``class_map.<source>`` for one
    source's map of several."""
    if key.split(".")[0] == "class_map":
        target = "a project id (0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore)"
    else:
        target = "a sub-class id (its position in data.subclasses, from 0) or 255 (ignore)"
    for native, mapped in value.items():
        if not whole_id(native):
            return (
                f"configs/data/{name}.yaml: {key} has the key {native!r} ({type(native).__name__}): its keys "
                f"are native ids, whole numbers 0..255, each mapped to {target}."
            )
        if not whole_id(mapped):
            return (
                f"configs/data/{name}.yaml: {key} maps native id {native} to {mapped!r} "
                f"({type(mapped).__name__}): it takes {target}, a whole number; on the command line "
                f"++data.{key}.{native}=<id>."
            )
    return None


def flat_map_refusal(name: str, key: str, value: Any) -> str | None:
    """The refusal of ``key`` of ``configs/data/<name>.yaml``, a map of native id to id (``subclass_map``, one
    source's ``class_map``, or ``class_map.<source>``) or null, or None: its shape (:func:`map_refusal`), then
    its entries (:func:`map_entries_refusal`)."""
    refused = map_refusal(name, key, value)
    if refused is None and isinstance(value, Mapping):
        refused = map_entries_refusal(name, key, value)
    return refused


def _class_map_ids_refusal(name: str, key: str, mapping: Any) -> str | None:
    """The refusal of :class:`~marsunits.data.class_map.ClassMap` of the map ``key`` (``class_map`` or
    ``class_map.<source>``) of ``configs/data/<name>.yaml`` whose entries are whole numbers, in its words,
    or None: a native id outside 0..255 or a target that is no project id (``data.class_map='{1: 7}'``),
    which the run refused only as its data was read, after the run folder was made. Built as the data
    module builds it (:mod:`marsunits.data.real_datasets`), so the words are the run's."""
    if not isinstance(mapping, Mapping):
        return None
    from marsunits.data.class_map import ClassMap

    try:
        ClassMap(mapping, name, key=key)
    except ValueError as refused:
        return str(refused)
    return None


def class_map_refusal(name: str, class_map: Any, sources: Sequence[Any] | None) -> str | None:
    """The refusal of ``class_map`` of ``configs/data/<name>.yaml`` read by ``sources``, or None. With one
    source it is a map of native id to project id, or null (:func:`map_refusal`); with several, one such
    map (or null) per source, ``{marsscapes: {0: 0, ...}, ai4mars: {...}}``
    (``configs/data/marsscapes_ai4mars.yaml``), its keys the sources, each of them. Each entry is a whole
    number (:func:`map_entries_refusal`): ``data.class_map='{1: a}'`` (Hydra merges it into the config's map)
    was refused by :class:`~marsunits.data.class_map.ClassMap` only once the run folder was made. Where
    ``sources`` is not known (not a list), only the map's shape is checked.

    The one rule of ``class_map`` for ``train.py``'s checks before Hydra (:func:`data_value_refusal`) and for
    :class:`~marsunits.data.datamodule.MarsDataModule` built any other way (a notebook), through
    :func:`source_settings_refusal`: a module built in Python took a map with a misspelt key and refused it
    only once it read the masks, in other words, and a source's map given as ``ai4mar`` in other words than
    the command line's."""
    several = sources is not None and len(sources) > 1
    if not isinstance(class_map, Mapping) or not several:
        check = flat_map_refusal if sources is not None else map_refusal
        return check(name, "class_map", class_map) or _class_map_ids_refusal(name, "class_map", class_map)
    assert sources is not None  # several
    listed = ", ".join(str(s) for s in sources)
    for source, mapping in class_map.items():
        if source not in sources:
            # data.class_map='{1: 2}' merged beside the sources' maps, or a misspelt source: read by none.
            what = "not one of its sources" if source in SOURCES else "no source"
            fix = (
                f"map a native id in its source's map, ++data.class_map.<source>.{source}=<project id> "
                f"(++data.class_map.{sources[0]}.{source}=<project id>)"
                if whole_id(source)
                else f"name a source ({listed})"
            )
            return (
                f"configs/data/{name}.yaml: class_map holds one map per source ({listed}), but also the key "
                f"{source}, which is {what} and is read by none; {fix}."
            )
        key = f"class_map.{source}"
        refused = flat_map_refusal(name, key, mapping) or _class_map_ids_refusal(name, key, mapping)
        if refused is not None:
            return refused
    # A source left out read its native ids as project ids: AI4Mars sand (2) became other.
    unmapped = [s for s in sources if s not in class_map]
    if unmapped:
        return (
            f"configs/data/{name}.yaml: class_map has no entry for {unmapped}: give each source's map, or "
            f"class_map.{unmapped[0]}: null where its masks hold project ids (0, 1, 2, 255)."
        )
    return None


def val_fraction_refusal(val_fraction: Any, where: str | None = None) -> str | None:
    """The refusal of ``val_fraction``, the share of sol groups a single held-out split validates on: in
    (0, 1), the ends excluded (no validation, or no training), or None. ``where`` (a config file) starts
    the message where known."""
    fraction = _fraction(val_fraction)
    if fraction is not None and 0.0 < fraction < 1.0:
        return None
    start = f"{where}: " if where else ""
    return (
        f"{start}val_fraction must be in (0, 1), got {val_fraction!r}: the share of sol groups held out for "
        "validation; e.g. data.val_fraction=0.2."
    )


#: The data module's defaults of the values :func:`data_value_refusal` reads, where a config leaves one out.
_DEFAULTS: dict[str, Any] = {
    "val_fraction": 0.2,
    "n_folds": None,
    "exclude_sols": None,
    "sol_margin": 0,
    "render_processes": None,
    "class_mix_prob": 0.0,
    "class_map": None,
    "subclass_map": None,
}


def data_value_refusal(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first refusal of a data config's values (plain values, as the data module is given them; a key
    left out is the data module's default) by the rules above, in the data module's order, as the key it
    refuses and the refusal (``("render_processes", "configs/data/synthetic.yaml: render_processes must
    be ...")``), or None: ``sources`` (where given: the data module has no default), ``exclude_sols``,
    ``class_map`` and ``subclass_map`` (maps or null; sub-classes, where ``subclasses`` is given, against each
    other and ``class_map``: :func:`subclasses_refusal`), ``sol_margin``, ``render_processes``,
    ``class_mix_prob`` and, where the run splits real data into one held-out split (``n_folds`` null),
    ``val_fraction``. The key lets the caller say more of the value it
    was given (``train.py``: text an interpolation made, how to read it as a number).
    """
    name = str(data.get("name", "<data>"))
    where = f"configs/data/{name}.yaml"
    values = {**_DEFAULTS, **{key: data[key] for key in _DEFAULTS if key in data}}
    raw = data.get("sources")
    if "sources" in data:
        refused = sources_refusal(name, raw)
        if refused is not None:
            return "sources", refused
    sources = list(raw) if isinstance(raw, list | tuple) else None
    try:
        check_sol_ranges(values["exclude_sols"], where)
    except ValueError as wrong:
        return "exclude_sols", str(wrong)
    refused = class_map_refusal(name, values["class_map"], sources)
    if refused is not None:
        return "class_map", refused
    refused = map_refusal(name, "subclass_map", values["subclass_map"])
    if refused is not None:
        return "subclass_map", refused
    # The sub-classes against each other and class_map (a native id added to subclass_map alone, or
    # focus_class beside them): refused in the data module, after the run folder was made. Sub-classes that
    # are no class ids are the model's check's (model.subclasses follows data.subclasses).
    subclasses = data.get("subclasses")
    listed = isinstance(subclasses, list | tuple) and all(whole_id(c) for c in subclasses)
    if sources is not None and (subclasses is None or listed):
        refused = subclasses_refusal(
            name, sources, values["class_map"], values["subclass_map"], subclasses, data.get("focus_class")
        )
        if refused is not None:
            return "subclass_map", refused
    for key, rule in (
        ("sol_margin", sol_margin_refusal),
        ("render_processes", render_processes_refusal),
        ("class_mix_prob", class_mix_prob_refusal),
    ):
        refused = rule(name, values[key])
        if refused is not None:
            return key, refused
    real = sources is not None and bool(sources) and "synthetic" not in sources
    if real and values["n_folds"] is None:
        refused = val_fraction_refusal(values["val_fraction"], where)
        if refused is not None:
            return "val_fraction", refused
    return None


def multiples_around(value: int, divisor: int) -> list[int]:
    """The positive multiples of ``divisor`` next to ``value``, below and above it (one where none is
    below): the values a refusal of ``value`` suggests."""
    below = value // divisor * divisor
    return [n for n in (below, below + divisor) if n > 0]


def size_refusal(
    crop_size: Any, val_context_px: Any, scene: Mapping[str, Any] | None, divisor: int, why: str
) -> str | None:
    """The refusal of sizes a network whose inputs are multiples of ``divisor`` cannot take, or None:
    ``crop_size`` and the validation windows (``crop_size + 2 * val_context_px``, so ``val_context_px`` a
    multiple of half ``divisor``) must be multiples of it, and so must a synthetic scene's ``width`` and
    ``height`` (``scene``; None for real data), validated and tested whole. ``why`` says where ``divisor``
    comes from. Values that are not whole numbers are left to their own checks.

    The one wording of the rule, for the check before the run (``run_checks.check_input_sizes``, the
    configured network) and
    :meth:`~marsunits.data.datamodule.MarsDataModule.check_size_divisor` (the built network).
    """

    def whole(value: Any) -> TypeGuard[int]:
        return isinstance(value, int) and not isinstance(value, bool)

    def fits(key: str, value: int, step: int) -> str:
        return " or ".join(f"{key}={n}" for n in multiples_around(value, step))

    if whole(crop_size) and crop_size % divisor:
        return (
            f"data.crop_size={crop_size}: expected a multiple of {divisor} ({why}), "
            f"e.g. {fits('data.crop_size', crop_size, divisor)}"
        )
    if whole(val_context_px) and (2 * val_context_px) % divisor:
        half = divisor // 2
        return (
            f"data.val_context_px={val_context_px}: expected a multiple of {half} (validation windows are "
            f"crop_size + 2 x val_context_px, and {why}), "
            f"e.g. {fits('data.val_context_px', val_context_px, half)}"
        )
    for side in ("width", "height"):
        value = (scene or {}).get(side)
        if whole(value) and value % divisor:
            return (
                f"data.scene.{side}={value}: expected a multiple of {divisor} (validation and test run on "
                f"whole scenes, and {why}), e.g. {fits(f'data.scene.{side}', value, divisor)}"
            )
    return None


def source_settings_refusal(
    name: str,
    sources: Any,
    in_channels: Any,
    crop_size: Any,
    val_context_px: Any,
    class_map: Any,
    root: str | None,
    source_dirs: Any,
) -> str | None:
    """The first refusal of what the data config ``configs/data/<name>.yaml`` reads and its images' shape,
    in this order, or None: ``in_channels`` (1 or 3), ``crop_size`` (>= 1) and ``val_context_px`` (>= 0)
    (their multiples of the network's divisor: :func:`size_refusal`), ``sources``
    (:func:`sources_refusal`), ``class_map`` (:func:`class_map_refusal`, as ``train.py`` checks it before
    Hydra) and, for real sources, ``root`` (set), and with several sources a folder (``source_dirs``) for
    each.
    A ``crop_size`` or ``val_context_px`` that is no number is left to ``int()``'s error, as the data
    module always left it."""
    where = f"configs/data/{name}.yaml"
    if in_channels not in (1, 3):
        return f"{where}: in_channels must be 1 (greyscale) or 3 (colour), got {in_channels}."
    if isinstance(crop_size, bool) or int(crop_size) <= 0:
        return f"{where}: crop_size must be a whole number of pixels >= 1, got {crop_size!r}."
    if isinstance(val_context_px, bool) or int(val_context_px) < 0:
        return f"{where}: val_context_px must be a whole number >= 0, got {val_context_px!r}."
    # Also train.py's, before Hydra: a module built in Python is told in the same words.
    refused = sources_refusal(name, sources) or class_map_refusal(name, class_map, list(sources))
    if refused is not None or "synthetic" in sources:
        return refused
    if root is None:
        return f"{where}: root is not set. Pass data.root=/path/to/data."
    missing = [s for s in sources if s not in (source_dirs or {})]
    if len(sources) > 1 and missing:  # one source reads root itself
        return f"{where}: source_dirs lacks {missing}: give each source's folder under root."
    return None


def subclasses_refusal(
    name: str,
    sources: Sequence[str],
    class_map: Any,
    subclass_map: Any,
    subclasses: Any,
    focus_class: Any,
) -> str | None:
    """The refusal of ``subclass_map`` and ``subclasses`` of ``configs/data/<name>.yaml``, checked against
    each other and ``class_map``, or None: both or neither, one real source with a class map, no
    ``focus_class`` beside them, ``subclasses`` a project class for each sub-class id, and each native id
    mapped to a sub-class of its project class (or to 255 in both)."""
    from marsunits.constants import CLASS_NAMES, IGNORE_INDEX
    from marsunits.data.class_map import subclass_groups

    where = f"configs/data/{name}.yaml"
    if subclass_map is None and subclasses is None:
        return None
    if subclass_map is None or subclasses is None:
        return (
            f"{where}: subclass_map and subclasses go together (sub-class ids and the project class of "
            "each); set both, or neither to train on the project classes."
        )
    if len(sources) != 1 or sources[0] == "synthetic" or class_map is None:
        return (
            f"{where}: sub-classes need one real source with a class_map (native ids to map), got "
            f"sources={sources}; set data.subclass_map=null data.subclasses=null."
        )
    if focus_class is not None:
        return (
            f"{where}: focus_class names a project class, but with subclass_map the training masks hold "
            "sub-class ids; set data.focus_class=null, or train without sub-classes."
        )
    for key, value in (("subclass_map", subclass_map), ("class_map", class_map)):
        refused = flat_map_refusal(name, key, value)
        if refused is not None:
            return refused
    groups = [int(c) for c in subclasses]
    try:
        subclass_groups(groups, len(CLASS_NAMES))
    except ValueError as err:
        return f"{where}: {err}"
    fine = {int(k): int(v) for k, v in subclass_map.items()}
    coarse = {int(k): int(v) for k, v in class_map.items()}
    if set(fine) != set(coarse):
        return (
            f"{where}: subclass_map and class_map must list the same native ids; only in subclass_map: "
            f"{sorted(set(fine) - set(coarse))}, only in class_map: {sorted(set(coarse) - set(fine))}."
        )
    for native, sub in sorted(fine.items()):
        if sub == IGNORE_INDEX:
            expected: int | None = IGNORE_INDEX
        else:
            expected = groups[sub] if 0 <= sub < len(groups) else None
        if expected is None or coarse[native] != expected:
            return (
                f"{where}: native id {native} maps to sub-class {sub} in subclass_map "
                f"(project class {expected}) but to {coarse[native]} in class_map; a sub-class id is in "
                f"0..{len(groups) - 1} or {IGNORE_INDEX}, and belongs to the native id's project class."
            )
    return None
