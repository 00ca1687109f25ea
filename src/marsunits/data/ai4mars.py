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
from marsunits.data.marsscapes import read_sol_table
from marsunits.data.store import LabelledImage

__all__ = ["ai4mars_root", "scan_ai4mars"]


def ai4mars_root(root: str | Path, dataset: str = "ai4mars") -> Path:
    """``root`` as a Path if it is a folder, else :func:`~marsunits.data.folder.check_root`'s
    FileNotFoundError naming it, the layout expected and how to set it; nothing inside it is read."""
    return check_root(root, dataset, "images/<id>.jpg, labels/<id>.png and stats.csv")


def scan_ai4mars(root: str | Path, dataset: str = "ai4mars") -> list[LabelledImage]:
    """Records of an AI4Mars folder, grouped by approximate sol.

    Raises:
        FileNotFoundError: missing root, sub-folder or ``stats.csv``; ValueError: unpaired files, or an
            image without a sol in ``stats.csv``.
    """
    path = ai4mars_root(root, dataset)
    stats = path / "stats.csv"
    if not stats.is_file():
        raise FileNotFoundError(
            f"Dataset '{dataset}': {stats} not found. It gives the sol of every image (columns "
            "name,sol_approx), which the sol-grouped train/val split needs."
        )
    sols = read_sol_table(stats, "sol_approx", dataset)

    def sol_of(stem: str) -> int:
        if stem not in sols:
            raise ValueError(
                f"Dataset '{dataset}': image '{stem}' has no row in {stats}. Add its sol_approx there."
            )
        return sols[stem]

    records = pair_by_stem(path / "images", path / "labels", dataset, sol_of)
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
