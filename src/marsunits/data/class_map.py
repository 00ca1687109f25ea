"""Native dataset label ids -> the project's class ids, through a 256-entry lookup table.

Real datasets label terrain *types*, not Jezero's geologic units. Their configs map them onto the project
classes (0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore) as a **proxy**: fine regolith (soil,
sand) stands in for the smooth volcanic unit and rock (bedrock, gravel, big rock) for the rough olivine-rich
unit. The mapping is declared in each ``configs/data/<name>.yaml`` under ``class_map`` so it is visible,
versioned and stored in checkpoints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marsunits.constants import IGNORE_INDEX, VALID_MASK_VALUES

__all__ = ["DATA_SET_LABEL_MAPS", "ClassMap", "subclass_groups"]

_UNMAPPED = -1


#: More distinct unmapped values than this in one mask of project ids: not a class mask (the message says so
#: instead of listing every value and a map of them to fill in).
_MANY_VALUES = 16

#: The native-id maps of the project's real data sets (``class_map`` of ``configs/data/<name>.yaml``, which
#: a test keeps these equal to), as a command line gives them: a refusal of ``labels_class_map=<name>`` for
#: a model not trained on that data set spells its map out, since the model's own map reads those labels
#: wrongly (AI4Mars' sand, 2, is MarsScapes' gravel, rough) and ``configs/`` is not in an installed package;
#: so does the refusal of a mask whose values are all one data set's native ids (:data:`NATIVE_IDS`).
DATA_SET_LABEL_MAPS: dict[str, str] = {
    "ai4mars": "{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}",
    "marsscapes": "{0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255}",
}

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


def native_data_set_hint(present: Iterable[int] | np.ndarray, option: str) -> str:
    """The sentence a refusal of masks outside the project ids adds when the mask's values (``present``) are
    all the native ids of a data set of :data:`NATIVE_IDS`: that data set's whole map, as the value of
    ``option`` (``data.class_map``, ``labels_class_map``). Its labels copied unconverted were told to keep
    their 0, 1 and 2, and AI4Mars' sand (2) trained as ``other`` without a word. Empty when no data set's
    ids hold them all."""
    values = {int(v) for v in present}
    fits = [
        f"if they are {name} labels ({ids}), {option}='{DATA_SET_LABEL_MAPS[key]}'"
        for key, (name, ids) in NATIVE_IDS.items()
        if values <= {int(v) for v in re.findall(r"(\d+):", DATA_SET_LABEL_MAPS[key])}
    ]
    if not fits:
        return ""
    return (
        " These values are all native ids of a data set whose 0, 1 and 2 are other classes than the "
        f"project's, so such labels need its whole map: {'; '.join(fits)}."
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
    ) -> None:
        self.dataset = dataset
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
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
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
                values and where to add them).
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
            )
        return self._lut_u8[mask]

    def _native_data_set_hint(self, present: Sequence[int] | np.ndarray) -> str:
        """The sentence a refusal of masks outside the project ids adds when the mask's values (``present``)
        are all the native ids of a data set of :data:`NATIVE_IDS`: that data set's whole map. Its labels
        copied unconverted were told to keep their 0, 1 and 2, and AI4Mars' sand (2) trained as ``other``
        without a word. Empty otherwise, and for sub-class maps."""
        if self._num_targets is not None:
            return ""
        return native_data_set_hint(present, f"data.{self.key}" if self._data_option else self.key)

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
