"""The warning of a run without ``labels_dir`` that removes an earlier run's scores (``metrics.json``).

Scores of an earlier run against labels would describe masks this run may have replaced, so the run removes
them; :func:`removed_scores_warning` says so and gives the options that score the folder's masks again, as
the earlier run recorded them (``labels_dir``, ``labels_class_map``: a shipped data set's map by its name).

Split from :mod:`marsunits.inference.runner`, whose session removes the file as it writes its reports.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marsunits.data.class_map import DATA_SET_LABEL_MAPS, data_set_label_map
from marsunits.errors import ConfigError
from marsunits.inference.options import read_labels_class_map
from marsunits.inference.writers import printable


def removed_scores_warning(metrics_file: Path, metadata: Mapping[str, Any] | None = None) -> str:
    """The warning of a run without ``labels_dir`` that removes ``metrics_file``, an earlier run's scores:
    naming the ``labels_dir`` and ``labels_class_map`` it recorded, as the options that score the folder's
    masks again (or saying that it could not be read). A recorded map that is a shipped data set's map
    (:func:`_shipped_map_name`, the model's ``metadata`` given) is given back by that data set's name, as
    the command may have given it (``labels_class_map=ai4mars``): it was spelt out as a mapping."""
    try:
        earlier = json.loads(metrics_file.read_text(encoding="utf-8"))
        labels, mapping = earlier["labels_dir"], earlier.get("labels_class_map")
        # Quoted for the shell, as the command is to be typed: a folder named "native labels" split in two.
        options = f"labels_dir={shlex.quote(printable(str(labels)))}"
        if isinstance(mapping, Mapping) and mapping:
            recorded = {int(k): int(v) for k, v in mapping.items()}
            name = _shipped_map_name(recorded, metadata)
            pairs = ", ".join(f"{k}: {v}" for k, v in recorded.items())
            options += f" labels_class_map={name}" if name else f" labels_class_map='{{{pairs}}}'"
    except (OSError, ValueError, KeyError, TypeError):
        options = "labels_dir=<the labels' folder> (and its labels_class_map, if it had one)"
    return (
        f"removed {printable(os.fspath(metrics_file))}, the scores of an earlier run against labels, as this "
        "run has no labels_dir (they would not describe the masks of this run); to score the folder's masks "
        f"again, run this command with {options} (images already done are not predicted again)"
    )


def _shipped_map_name(recorded: Mapping[int, int], metadata: Mapping[str, Any] | None) -> str | None:
    """The data set (:data:`~marsunits.data.class_map.DATA_SET_LABEL_MAPS`) whose shipped map is
    ``recorded``, where its name reads that map with the model of ``metadata``
    (:func:`~marsunits.inference.options.read_labels_class_map`: a model trained on that data set with a
    map of its own reads the name as its own map); None for any other map."""
    for name in sorted(DATA_SET_LABEL_MAPS):
        if data_set_label_map(name) != dict(recorded):
            continue
        if metadata is not None:
            try:
                read = read_labels_class_map(name, metadata)
            except ConfigError:
                continue
            if read is None or read.as_dict() != dict(recorded):
                continue
        return name
    return None
