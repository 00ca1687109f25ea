"""AI4Mars MSL Navcam subset (Swan et al. 2021): ``ROOT/images/<id>.jpg`` (greyscale, 256x256),
``ROOT/labels/<id>.png`` (0 soil, 1 bedrock, 2 sand, 3 big rock, 255 null) and ``ROOT/stats.csv``
(``name``, ``sol_approx``, and where present ``site`` and ``drive``: the frames of one rover position stay
on one side of the split).

The crowdsourced labels are noisy and ~43 % of pixels are unlabelled. The config's ``class_map`` maps
soil/sand -> smooth and bedrock/big rock -> rough, a proxy for the geologic units; AI4Mars has no sky or
rover class, so it never teaches class 2 (other).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from marsunits.data.folder import check_root, pair_by_stem
from marsunits.data.layout import AI4MARS, check_layout
from marsunits.data.marsscapes import read_sol_table
from marsunits.data.store import LabelledImage

__all__ = ["ai4mars_root", "scan_ai4mars"]


def ai4mars_root(root: str | Path, dataset: str = "ai4mars", key: str = "data.root") -> Path:
    """``root`` as a Path if it is a folder with AI4Mars' layout (:data:`~marsunits.data.layout.AI4MARS`),
    else :func:`~marsunits.data.folder.check_root`'s FileNotFoundError naming it, the layout expected and how
    to set it, or :func:`~marsunits.data.layout.check_layout`'s DataLayoutError (``key`` sets the folder);
    only folder names and the sol table's header are read."""
    path = check_root(root, dataset, AI4MARS.expected)
    check_layout(path, AI4MARS, dataset, key)
    return path


def scan_ai4mars(root: str | Path, dataset: str = "ai4mars", key: str = "data.root") -> list[LabelledImage]:
    """Records of an AI4Mars folder, grouped by approximate sol; ``key`` sets ``root`` (as refusals name it).

    Raises:
        FileNotFoundError: missing root; DataLayoutError: a missing sub-folder or ``stats.csv``, or one
            without its columns; ValueError: unpaired files, or an image without a sol in ``stats.csv``.
    """
    path = ai4mars_root(root, dataset, key)
    stats = path / str(AI4MARS.stats)
    sols = read_sol_table(stats, AI4MARS.sol_column, dataset)

    def sol_of(stem: str) -> int:
        if stem not in sols:
            raise ValueError(
                f"Dataset '{dataset}': image '{stem}' has no row in {stats}. Add its sol_approx there."
            )
        return sols[stem]

    records = pair_by_stem(path / AI4MARS.images, path / AI4MARS.masks, dataset, sol_of)
    places = _places(stats)
    return [replace(r, place=places.get(r.image.stem)) for r in records]


def _places(stats: Path) -> dict[str, str]:
    """``{name: "<site>/<drive>"}`` from ``stats.csv`` where it has the ``site`` and ``drive`` columns (the
    rover position of each frame, from the PDS file name); empty when it has not. A position keeps its
    frames on one side of the split: near-identical frames shot from one parked position on sols 1439 and
    1441 sat in training and validation."""
    with stats.open(newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's byte-order mark
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"site", "drive"} <= set(reader.fieldnames):
            return {}
        return {
            row["name"]: f"{row['site']}/{row['drive']}"
            for row in reader
            if row.get("site") not in (None, "") and row.get("drive") not in (None, "")
        }
