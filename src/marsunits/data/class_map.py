"""Native dataset label ids -> the project's class ids, through a 256-entry lookup table.

Real datasets label terrain *types*, not Jezero's geologic units. Their configs map them onto the project
classes (0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore) as a **proxy**: fine regolith (soil,
sand) stands in for the smooth volcanic unit and rock (bedrock, gravel, big rock) for the rough olivine-rich
unit. The mapping is declared in each ``configs/data/<name>.yaml`` under ``class_map`` so it is visible,
versioned and stored in checkpoints.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.atomic import atomic_write_text
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, VALID_MASK_VALUES
from marsunits.data.value_checks import whole_id

__all__ = [
    "CLASSES_FILE",
    "DATA_SET_LABEL_MAPS",
    "ClassMap",
    "classes_file_refusal",
    "data_set_label_map",
    "labels_classes_folder",
    "project_classes_file",
    "project_classes_text",
    "subclass_groups",
    "unreadable_classes_file",
    "write_project_classes_file",
]

_UNMAPPED = -1


#: More distinct unmapped values than this in one mask of project ids: not a class mask (the message says so
#: instead of listing every value and a map of them to fill in).
_MANY_VALUES = 16

#: Stray values in less than this share of a mask of project ids: the map keeping the project ids and adding
#: the strays is offered before a data set's whole map (:meth:`ClassMap.__call__`).
_FEW_STRAYS = 0.01

#: The native-id maps of the project's real data sets (``class_map`` of ``configs/data/<name>.yaml``, which
#: a test keeps these equal to), as a command line gives them: ``labels_class_map=<name>`` for a model not
#: trained on that data set reads the labels with it (the model's own map reads them wrongly: AI4Mars' sand,
#: 2, is MarsScapes' gravel, rough), as ``configs/`` is not in an installed package; training's refusal of a
#: mask whose values are all one data set's native ids spells it out (:data:`NATIVE_IDS`), as its
#: ``data.class_map`` takes no name (predict's messages name the data set instead).
DATA_SET_LABEL_MAPS: dict[str, str] = {
    "ai4mars": "{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}",
    "marsscapes": "{0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255}",
}


def data_set_label_map(name: str) -> dict[int, int]:
    """The map of :data:`DATA_SET_LABEL_MAPS` named ``name`` as ``{native id: project id}``.

    Raises:
        KeyError: ``name`` is not one of its data sets.
    """
    return {int(k): int(v) for k, v in re.findall(r"(\d+): (\d+)", DATA_SET_LABEL_MAPS[name])}


#: The native ids of the data sets of :data:`DATA_SET_LABEL_MAPS`, as their names are read in a message
#: (``data/README.md``): labels of either copied into a folder unconverted share 0, 1 and 2 with the
#: project's ids, which mean other classes there (AI4Mars' 2 is sand, smooth; MarsScapes' 2 is gravel, rough).
NATIVE_IDS: dict[str, tuple[str, str]] = {
    "ai4mars": ("AI4Mars", "0 soil, 1 bedrock, 2 sand, 3 big rock, 255 null"),
    "marsscapes": (
        "MarsScapes",
        "0 soil, 1 bedrock, 2 gravel, 3 sand, 4 big rock, 5 steep slope, 6 sky, 7 distant terrain, "
        "8 distant mountains, 9 rover, 255 no data",
    ),
}


def native_data_set_hint(
    present: Iterable[int] | np.ndarray, option: str, second: bool = False, by_name: bool = False
) -> str:
    """The sentence a refusal of masks outside the project ids adds when the mask's values (``present``) are
    all the native ids of a data set of :data:`NATIVE_IDS`: that data set's whole map, as the value of
    ``option`` (``data.class_map``, ``labels_class_map``). Its labels copied unconverted were told to keep
    their 0, 1 and 2, and AI4Mars' sand (2) trained as ``other`` without a word. Empty when no data set's
    ids hold them all.

    ``second``: said after the map that keeps the masks' project ids (their strays are few pixels,
    :meth:`ClassMap.__call__`), so it is offered only for a data set's own labels, saying which of the
    masks' 0, 1 and 2 it reads as another class: MarsScapes' map turns a user's 2 (other, sky) into rough.

    ``by_name``: ``option`` takes a data set's name for its map (``predict.py``'s ``labels_class_map``, not
    training's ``data.class_map``), so the name is offered, ``labels_class_map=ai4mars``, not the whole map
    spelt out to paste (:func:`~marsunits.inference.options.read_labels_class_map`).
    """
    values = {int(v) for v in present}
    fits = []
    for key, (name, ids) in NATIVE_IDS.items():
        mapping = data_set_label_map(key)
        if not values <= set(mapping):
            continue
        given = f"{option}={key}" if by_name else f"{option}='{DATA_SET_LABEL_MAPS[key]}'"
        fit = f"if they are {name} labels ({ids}), {given}"
        if second:  # which of the masks' project ids the map reads as another class
            moved = [
                f"{i} as {CLASS_NAMES[mapping[i]]}, not {CLASS_NAMES[i]}"
                for i in sorted(values & set(range(len(CLASS_NAMES))))
                if mapping[i] != i
            ]
            fit += f" (it reads their {'; their '.join(moved)})" if moved else ""
        fits.append(fit)
    if not fits:
        return ""
    if second:
        return (
            " Only if they are instead a data set's own labels, whose 0, 1 and 2 are other classes than the "
            f"project's, do they need its whole map: {'; '.join(fits)}."
        )
    named = (
        ", which its name gives (the map shipped for that data set, or the model's own map of it if the "
        "model was trained on it)"
        if by_name
        else ""
    )
    return (
        " These values are all native ids of a data set whose 0, 1 and 2 are other classes than the "
        f"project's, so such labels need its whole map{named}: {'; '.join(fits)}."
    )


#: The file beside a data set's labels folder (in the folder holding ``labels/`` or ``masks/``), or inside
#: it (:func:`labels_classes_folder`), that names the ids its masks hold, ``{"classes": [{"id": 0, "name":
#: "soil"}, ...]}``, as the AI4Mars and MarsScapes folders of ``data/README.md`` ship it (other keys are not
#: read).
CLASSES_FILE = "classes.json"

#: The project's ids, as a message names them.
_PROJECT_IDS = "0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore"

#: How many of a classes file's classes a message lists, and how much of each name.
_SHOW_CLASSES, _NAME_CHARS = 12, 40


def _plain_name(name: str) -> str:
    """A class name as compared with the project's: ``Rough olivine`` and ``rough-olivine`` are
    ``rough_olivine``."""
    return re.sub(r"[\s\-]+", "_", name.strip()).lower()


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else f"{name[: _NAME_CHARS - 3]}..."


def labels_classes_folder(labels_dir: Path) -> Path:
    """The folder whose :data:`CLASSES_FILE` says which ids the masks in ``labels_dir`` hold: ``labels_dir``
    itself where one is there (a folder of masks sent with its own), else the folder holding it, where the
    AI4Mars and MarsScapes folders ship theirs beside ``labels/``. Only the folder holding it was looked at:
    a ``classes.json`` among the masks was never read. The one rule for ``predict.py``'s ``labels_dir`` and
    for training, whose ``labels_dir`` is the data root's folder of masks (``masks/``, ``labels/``:
    :meth:`~marsunits.data.datamodule.MarsDataModule.check_label_classes`)."""
    return labels_dir if os.path.lexists(labels_dir / CLASSES_FILE) else labels_dir.parent


def _read_classes_file(path: Path) -> dict[int, str]:
    """``{id: name}`` of a :data:`CLASSES_FILE`.

    Raises:
        ValueError: It cannot be read (not a regular file, not UTF-8, not JSON) or holds no ``classes`` list
            of ``{"id": <0..255>, "name": <text>}`` with each id once; the message says which.
    """
    if not path.is_file():  # a folder, a broken link, a pipe (read, it would wait forever)
        raise ValueError("it is not a readable file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"it cannot be read as JSON ({exc})") from exc
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not classes:
        raise ValueError('it holds no "classes" list')
    found: dict[int, str] = {}
    for entry in classes:
        ident = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        whole = isinstance(ident, int) and not isinstance(ident, bool) and 0 <= ident <= 255
        if not whole or not isinstance(name, str) or ident in found:
            shown = json.dumps(entry)
            raise ValueError(
                f'its class {shown[:80]}{"..." if len(shown) > 80 else ""} is not {{"id": <0..255>, '
                '"name": <text>}, each id once'
            )
        found[int(ident)] = name  # type: ignore[arg-type]
    return found


def _classes_in(folder: Path) -> tuple[Path, dict[int, str] | None, str | None]:
    """``folder``'s :data:`CLASSES_FILE`, its ``{id: name}`` and why it cannot be read: ``(path, None,
    None)`` where there is none."""
    path = folder / CLASSES_FILE
    if not os.path.lexists(path):
        return path, None, None
    try:
        return path, _read_classes_file(path), None
    except ValueError as exc:
        return path, None, str(exc)


def _native_names(key: str) -> dict[int, str]:
    """``{id: name}`` of the data set ``key`` of :data:`NATIVE_IDS`, as its message lists them."""
    return {int(i): name for i, name in re.findall(r"(\d+) ([^,]+)", NATIVE_IDS[key][1])}


def _names_class(name: str, native: str) -> bool:
    """Whether a classes file's ``name`` names the data set's class ``native``: its words, in order, among
    the name's (MarsScapes' own file calls 5 ``steep_slope_or_unknown`` and 7
    ``unknown_or_ridge_distant_terrain``); ``sandstone`` does not name ``sand``."""
    want, words = _plain_name(native).split("_"), _plain_name(name).split("_")
    return any(words[i : i + len(want)] == want for i in range(len(words) - len(want) + 1))


def _data_sets_named(classes: Mapping[int, str]) -> list[str]:
    """The data sets of :data:`NATIVE_IDS` whose native ids ``classes`` lists, each under that data set's
    name (255, unlabelled, under any): all of them, or some (AI4Mars' file without 3 big_rock, for labels
    holding no big rock). Compared by ids alone, such a file got a map to fill in, and ids 0..3 named
    otherwise were taken for AI4Mars'."""
    found = []
    for key in NATIVE_IDS:
        native = _native_names(key)
        if all(
            ident in native and (ident == IGNORE_INDEX or _names_class(name, native[ident]))
            for ident, name in classes.items()
        ):
            found.append(key)
    return found


def _names_project_classes(classes: Mapping[int, str]) -> bool:
    """Whether a classes file's ``{id: name}`` names the project's classes only (names compared in lower
    case, spaces and hyphens as ``_``; 255, unlabelled, whatever its name)."""
    return all(
        ident == IGNORE_INDEX or (ident < len(CLASS_NAMES) and _plain_name(name) == CLASS_NAMES[ident])
        for ident, name in classes.items()
    )


def project_classes_file(folder: Path) -> Path | None:
    """``folder``'s :data:`CLASSES_FILE` where it says that the labels hold project ids, 2 being ``other``:
    it names the project's classes only, ``other`` among them (as :func:`classes_file_refusal` tells a user
    of such labels to write it); None for none, one that cannot be read, or one that names another class or
    no 2."""
    path, classes, _ = _classes_in(folder)
    if not classes or 2 not in classes or not _names_project_classes(classes):
        return None
    return path


def project_classes_text(masks: str) -> str:
    """The :data:`CLASSES_FILE` the project's own mask writers put beside their masks (the synthetic scene
    writer, the pseudo-label writer): the project's classes by id, 255 unlabelled, in the form of the files
    the AI4Mars and MarsScapes folders ship (``{"format": ..., "classes": [{"id": 0, "name": ...}, ...]}``),
    so that :func:`project_classes_file` reads their masks as project ids, 2 being ``other``. ``masks``: the
    file's ``format`` line, what the masks are."""
    classes = [{"id": i, "name": name} for i, name in enumerate(CLASS_NAMES)]
    classes.append({"id": IGNORE_INDEX, "name": "unlabelled"})
    return json.dumps({"format": masks, "classes": classes}, indent=1) + "\n"


def write_project_classes_file(folder: Path, masks: str) -> Path:
    """Write :func:`project_classes_text` as ``folder``'s :data:`CLASSES_FILE` (atomically; not again where
    the file holds that text already) and return its path. Labels written without one were told, when
    scored by ``predict.py``, that they had been read as project ids, as labels of unknown origin are."""
    path = folder / CLASSES_FILE
    text = project_classes_text(masks)
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass  # written anew below
    return atomic_write_text(path, text)


def classes_file_refusal(
    folder: Path, labels: str, option: str, by_name: bool = False, python: str | None = None
) -> str | None:
    """The refusal of labels read as project ids (``option``, ``labels_class_map`` or ``data.class_map``, is
    null) whose :data:`CLASSES_FILE` in ``folder`` (``labels_dir`` or the one holding it,
    :func:`labels_classes_folder`; for training, the data root's folder of masks or the root) names other
    classes: an id outside 0, 1, 2 and 255, or
    one of 0, 1, 2 named otherwise than the project's class of that id (names compared in lower case, spaces
    and hyphens as ``_``; 255 is unlabelled in every data set, whatever its name). Labels whose ids are all
    in 0..2 (AI4Mars' without a big rock) were read as project ids without a word, AI4Mars' sand (2) as
    ``other``.

    The message names the file, the data sets whose native ids (:data:`NATIVE_IDS`) the file lists under
    their names (all of a data set's ids or some), if any, and each one's whole map as ``option``'s value
    (with ``by_name``, ``predict.py``'s ``labels_class_map``, which takes a known data set's name for its
    map: that name, the map it gives spelt out beside it; training's ``data.class_map`` takes no name), else
    a map of the listed ids to fill in; and, for labels that do hold project ids, to name the project's
    classes in the file. ``labels`` names the labels in it (``labels_dir=<folder>``). ``python``: None for a
    command line's words (``option`` is null, ``option='{...}'``); for a Python parameter, how its map is
    written, ``{}`` standing for the dict (``"{}"`` for ``PredictOptions.labels_class_map``,
    ``"ClassMap({}, None)"`` for ``Evaluation``'s ``class_map``): told None, and the map as Python code.

    None: no such file, one naming the project's classes, or one that cannot be read
    (:func:`unreadable_classes_file` says why, for a warning: it must not stop a run that reads it not).
    """
    path, classes, _ = _classes_in(folder)
    if not classes or _names_project_classes(classes):
        return None
    known = _data_sets_named(classes)
    listed = ", ".join(f"{i} {_short(n)}" for i, n in sorted(classes.items())[:_SHOW_CLASSES])
    listed += ", ..." if len(classes) > _SHOW_CLASSES else ""
    misread = (
        f" (their 2, {_short(classes[2])}, as other)"
        if 2 in classes and _plain_name(classes[2]) != CLASS_NAMES[2]
        else ""
    )

    def given(mapping: str) -> str:
        return f"{option}='{mapping}'" if python is None else f"{option}={python.format(mapping)}"

    if known:
        helds, fixes = [], []
        for key in known:
            name, native = NATIVE_IDS[key][0], _native_names(key)
            helds.append(f"{name} ({', '.join(f'{i} {native[i]}' for i in sorted(classes))})")
            if by_name:  # labels_class_map=ai4mars: any model reads it (a model trained on it, as taught)
                named = key if python is None else repr(key)
                fix = (
                    f"{name} labels, give {option}={named} (the map shipped for them, "
                    f"{DATA_SET_LABEL_MAPS[key]}; with a model trained on {name}, the model's own)"
                )
            else:
                fix = f"{name} labels, give {given(DATA_SET_LABEL_MAPS[key])}"
            fixes.append(fix)
        held = f"the native ids of {' or of '.join(helds)}"
        fix = f"If they are {'; if they are '.join(fixes)}"
    else:
        held = f"ids of other classes ({listed})"
        entries = ", ".join(
            f"{i}: {IGNORE_INDEX}" if i == IGNORE_INDEX else f"{i}: <project id>" for i in sorted(classes)
        )
        fix = f"Give their map, {given(f'{{{entries}}}')} with each <project id> filled in ({_PROJECT_IDS})"
    return (
        f"{path}: the labels in {labels} hold {held}, not the project's ({_PROJECT_IDS}), but {option} is "
        f"{'null' if python is None else 'None'}, so they would be read as project ids{misread}. {fix}; if "
        f"the labels do hold project ids, name their classes in {path} as the project's ({_PROJECT_IDS}) "
        "or remove it."
    )


def unreadable_classes_file(
    folder: Path, labels: str, option: str, by_name: bool = False, python: bool = False
) -> str | None:
    """The warning for a :data:`CLASSES_FILE` in ``folder`` that cannot be read, for labels read as project
    ids (``option`` null): it is ignored, naming it, why and what to do; None when it is read or absent.
    ``by_name``: ``option`` takes a known data set's name for its map (``predict.py``'s ``labels_class_map``),
    which is offered for those data sets' labels; ``python``: as a Python string
    (``PredictOptions(labels_class_map='ai4mars')``), as :func:`classes_file_refusal` offers it there."""
    path, _, problem = _classes_in(folder)
    if problem is None:
        return None
    return (
        f"{path} is ignored: {problem}. It would say which ids the labels in {labels} hold; they are read as "
        f'project ids ({_PROJECT_IDS}). Fix it (a "classes" list of {{"id": <id>, "name": <name>}}, as '
        f"the AI4Mars and MarsScapes folders have it) or remove it, and give {option} if the labels are in "
        "a data set's own ids"
        + (
            f" ({' or '.join(f'{option}={repr(key) if python else key}' for key in DATA_SET_LABEL_MAPS)} for "
            f"{' or '.join(name for name, _ in NATIVE_IDS.values())} labels)."
            if by_name
            else "."
        )
    )


class ClassMap:
    """Apply ``native id -> project id`` to uint8 masks; native ids the map does not cover are an error.

    Args:
        mapping: ``{native_id: project_id}`` with native ids in 0..255 and project ids in {0, 1, 2, 255}.
            Keys may be ints or int-like strings (YAML/OmegaConf). ``None`` means the masks are already in
            project ids: only {0, 1, 2, 255} are accepted then.
        dataset: dataset name, used in error messages to point at ``configs/data/<dataset>.yaml``; ``None``
            for a map given on its own (``predict.py``'s ``labels_class_map``): messages name ``key`` only.
        num_targets: ``None`` (default): targets are project ids {0, 1, 2, 255}. An integer ``K``: targets
            are training sub-class ids ``0..K-1`` or 255 (``subclass_map`` in the data config; see
            :class:`~marsunits.data.datamodule.MarsDataModule`).
        key: the config key named in error messages (``class_map`` or ``subclass_map``).
        where: where the user fixes the map, for error messages (default ``configs/data/<dataset>.yaml``).
        named_by: the option that takes a data set's name for its map (``labels_class_map``): values the map
            does not cover that are all another data set's native ids are told that option with its name.

    Raises:
        ValueError: a key outside 0..255 or a target outside the accepted ids (``num_targets``).
    """

    def __init__(
        self,
        mapping: Mapping[Any, int] | None,
        dataset: str | None,
        num_targets: int | None = None,
        key: str = "class_map",
        where: str | None = None,
        named_by: str | None = None,
    ) -> None:
        self.dataset = dataset
        self._named_by = named_by
        self.key = key
        #: How messages name the map: "class_map of dataset 'ai4mars'", or the key alone.
        self.owner = f"{key} of dataset '{dataset}'" if dataset else key
        target_word = "project id" if num_targets is None else "sub-class id"
        # On the command line a whole map replaces only a null one: Hydra merges a dict given for an existing
        # map into it and refuses its new keys ("unknown option"); ++ adds or replaces one entry.
        command_line = (
            f"data.{key}='{{<native id>: <{target_word}>, ...}}'"
            if mapping is None
            else f"++data.{key}.<native id>=<{target_word}>, one entry each"
        )
        self.where = where or f"configs/data/{dataset}.yaml, or on the command line as {command_line}"
        #: Whether messages may spell the fix as a ``data.<key>=`` override (not for predict's own options).
        self._data_option = where is None
        self._num_targets = num_targets
        self.identity = mapping is None
        if num_targets is None:
            targets, described = VALID_MASK_VALUES, f"a project id ({sorted(VALID_MASK_VALUES)})"
        else:
            targets = frozenset([*range(int(num_targets)), IGNORE_INDEX])
            described = f"a sub-class id (0..{int(num_targets) - 1}) or {IGNORE_INDEX}"
        lut = np.full(256, _UNMAPPED, dtype=np.int16)
        if mapping is None:
            for value in VALID_MASK_VALUES:
                lut[value] = value
        else:
            for native_key, target in mapping.items():
                native = self._whole_number(native_key, "a key", "a native id 0..255")
                project = self._whole_number(target, f"the target of native id {native_key!r}", described)
                if not 0 <= native <= 255:
                    raise ValueError(
                        f"{self.owner}: native id {native_key!r} is outside 0..255 "
                        f"(masks are uint8). Fix {self.key} in {self.where}."
                    )
                if project not in targets:
                    raise ValueError(
                        f"{self.owner}: native id {native} maps to {target!r}, which is "
                        f"not {described}. Fix {self.key} in {self.where}."
                    )
                lut[native] = project
        self._lut = lut
        self._lut_u8 = np.where(lut < 0, 255, lut).astype(np.uint8)
        self._unmapped = lut == _UNMAPPED

    def _whole_number(self, value: Any, what: str, described: str) -> int:
        """``value`` as an int: an int or a string of digits (YAML and the command line give either).

        Raises:
            ValueError: Anything else (a class name, null, a list, a fraction, true/false), naming the
                entry: ``int()`` had raised a TypeError for null or a list (a traceback), said "invalid
                literal for int()" of a class name, and read 1.9 as 1 silently.
        """
        if not whole_id(value):
            raise ValueError(
                f"{self.owner}: {what} is {value!r}, not {described}: ids are numbers (project ids: "
                f"0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore). Fix {self.key} in {self.where}."
            )
        return int(value)

    def as_dict(self) -> dict[int, int] | None:
        """The mapping as plain ints (``None`` for identity), e.g. for checkpoint metadata."""
        if self.identity:
            return None
        return {i: int(v) for i, v in enumerate(self._lut) if v != _UNMAPPED}

    def __call__(self, mask: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
        """Map a ``uint8 (H, W)`` mask of native ids to project ids (new ``uint8`` array).

        Raises:
            ValueError: ``mask`` is not uint8, or holds values the map does not cover (names ``path``, the
                values and where to add them). Without a map, the fixes come in the order that explains the
                values best: stray values in under :data:`_FEW_STRAYS` of the mask get the map keeping the
                project ids first, a data set's whole map second; otherwise that data set's map comes first.
        """
        if mask.dtype != np.uint8:
            raise ValueError(f"{path}: masks must be uint8 label ids, got {mask.dtype}.")
        # A boolean LUT lookup is several times faster than a histogram on large panoramas; the offending
        # values are only collected when there are some.
        if self._unmapped[mask].any():
            present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
            missing = [int(v) for v in present if self._lut[v] == _UNMAPPED]
            if self.identity and len(missing) > _MANY_VALUES:
                # A photograph or an interpolated mask under masks/: a map to fill in of hundreds of entries
                # (the message listed every value) is no fix; say what the file probably is.
                raise ValueError(
                    f"{path}: {len(missing)} different mask values that are not project class ids "
                    f"{sorted(VALID_MASK_VALUES)} (e.g. {', '.join(map(str, missing[:_MANY_VALUES]))}, ...): "
                    "a class mask holds a few ids, so this is likely an image saved as a mask, a colour-"
                    "coded mask, or one resized with interpolation. Give the mask of class ids (resized "
                    f"nearest-neighbour), or with few native ids a class_map in {self.where}."
                )
            if self.identity:
                # A map replaces the identity: one for the odd values alone left 0, 1, 2 and 255 unmapped,
                # refused in a second run. The whole map, with only the odd values to fill in.
                whole = ", ".join(
                    [f"{v}: {v}" for v in sorted(VALID_MASK_VALUES)] + [f"{v}: <project id>" for v in missing]
                )
                counts = np.bincount(mask.ravel(), minlength=256)
                if (
                    self._data_option
                    and self._num_targets is None
                    and counts[missing].sum() < _FEW_STRAYS * mask.size
                ):
                    # Project ids with a few stray pixels (a 5 where an edge was painted): a data set's whole
                    # map, said first, turned the user's 2 (other, sky) into MarsScapes' gravel (rough). The
                    # map keeping the project ids explains such a mask best, so it comes first. Said in
                    # words, not as a share, so that masks with the same problem are still said once.
                    raise ValueError(
                        f"{path}: mask values {missing} are not project class ids "
                        f"{sorted(VALID_MASK_VALUES)} and dataset '{self.dataset}' has no class_map; they "
                        f"cover under {_FEW_STRAYS:.0%} of the mask, the rest being project ids. If the "
                        "masks are in project ids, keep them and map the stray values (a map replaces the "
                        f"project ids, so it lists them too): data.{self.key}='{{{whole}}}', each "
                        "<project id> filled in; or convert the masks."
                        f"{self._native_data_set_hint(present, second=True)}"
                    )
                example = (
                    f" If the masks' 0, 1, 2 and 255 already are project ids, a map replaces them, so list "
                    f"them too, e.g. data.{self.key}='{{{whole}}}'."
                    if self._data_option and self._num_targets is None
                    else ""
                )
                raise ValueError(
                    f"{path}: mask values {missing} are not project class ids "
                    f"{sorted(VALID_MASK_VALUES)} and dataset '{self.dataset}' has no class_map. Set "
                    f"class_map (native id -> project id) in {self.where}, or convert "
                    f"the masks.{self._native_data_set_hint(present)}{example}"
                )
            targets = (
                "0 smooth_volcanic, 1 rough_olivine, 2 other or 255 ignore"
                if self._num_targets is None
                else "a sub-class id or 255 ignore"
            )
            # A map replaces the identity entirely: 255 (unlabelled in project ids) must be listed as well.
            ignore = (
                f" ({IGNORE_INDEX}: {IGNORE_INDEX} keeps unlabelled pixels unlabelled)"
                if IGNORE_INDEX in missing
                else ""
            )
            raise ValueError(
                f"{path}: mask values {missing} are not covered by the {self.owner}. "
                f"Add them to {self.key} in {self.where} (native id -> {targets}){ignore}."
                f"{self._other_data_set_hint(present)}"
            )
        return self._lut_u8[mask]

    def _other_data_set_hint(self, present: Sequence[int] | np.ndarray) -> str:
        """The sentence naming the data sets whose native ids hold every value of a mask this map does not
        cover, with the name that gives their map (:attr:`_named_by`): MarsScapes labels scored with
        ``labels_class_map=ai4mars`` were told to write a map of their own. Empty where the option takes no
        name, for sub-class maps, and where no other data set's ids hold them all (this map's own data set,
        a model's map of it, is not offered again: its name reads this map)."""
        if self._named_by is None or self._num_targets is not None:
            return ""
        values = {int(v) for v in present}
        own = str(self.dataset).rsplit(": ", 1)[-1]  # "ai4mars", or a several-source model's "ms_ai: ai4mars"
        fits = [
            f"if they are {name} labels ({ids}), {self._named_by}={key}"
            for key, (name, ids) in NATIVE_IDS.items()
            if key != own and values <= set(data_set_label_map(key))
        ]
        if not fits:
            return ""
        return f" Their values are all native ids of another data set: {'; '.join(fits)}."

    def _native_data_set_hint(self, present: Sequence[int] | np.ndarray, second: bool = False) -> str:
        """The sentence a refusal of masks outside the project ids adds when the mask's values (``present``)
        are all the native ids of a data set of :data:`NATIVE_IDS`: that data set's whole map. Its labels
        copied unconverted were told to keep their 0, 1 and 2, and AI4Mars' sand (2) trained as ``other``
        without a word. Empty otherwise, and for sub-class maps."""
        if self._num_targets is not None:
            return ""
        return native_data_set_hint(present, f"data.{self.key}" if self._data_option else self.key, second)

    def __repr__(self) -> str:
        return f"ClassMap(dataset={self.dataset!r}, mapping={self.as_dict()})"


def subclass_groups(subclasses: Sequence[int], num_classes: int) -> list[list[int]]:
    """The sub-class ids of each project class, in class order, from ``subclasses[k]`` = the project class of
    sub-class ``k`` (``data.subclasses`` / ``model.subclasses``).

    Raises:
        ValueError: a sub-class's class is outside ``0..num_classes-1``, or a class has no sub-class.
    """
    groups = [[k for k, c in enumerate(subclasses) if int(c) == cls] for cls in range(num_classes)]
    if sum(map(len, groups)) != len(subclasses) or not all(groups):
        raise ValueError(
            f"subclasses={list(subclasses)} must give each sub-class a project class id in "
            f"0..{num_classes - 1} and each project class at least one sub-class."
        )
    return groups
