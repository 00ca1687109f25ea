"""MarsScapes panoramas (Liu et al. 2023): ``ROOT/images/<sol>_<n>.jpg``, ``ROOT/labels/<sol>_<n>.png``.

Curiosity Mastcam colour mosaics, height <= 512 px, widths up to ~6000 px, with a black no-data border
labelled 255. Labels hold the nine native MarsScapes ids; the config's ``class_map`` maps them to the
project classes as a proxy (soil/sand ~ smooth, bedrock/gravel/big rock ~ rough, sky/far field/rover ~
other). The sol of each panorama (for sol-grouped splits) comes from ``ROOT/stats.csv`` (``name``, ``sol``),
or from the ``<sol>_`` file-name prefix when there is no stats file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from marsunits.data.folder import check_root, pair_by_stem
from marsunits.data.layout import MARSSCAPES, check_layout
from marsunits.data.store import LabelledImage

__all__ = ["marsscapes_root", "read_sol_table", "scan_marsscapes"]


def read_sol_table(path: Path, column: str, dataset: str) -> dict[str, int]:
    """``{name: sol}`` from a CSV with columns ``name`` and ``column``.

    Raises:
        ValueError: the columns are missing or a sol is not an integer (names the file and row).
    """
    # utf-8-sig: a table saved by a spreadsheet ("CSV UTF-8") starts with a byte-order mark, which read
    # as part of the first column's name ('\ufeffname') and refused the file.
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "name" not in reader.fieldnames or column not in reader.fieldnames:
            raise ValueError(
                f"{path}: expected columns 'name' and '{column}', found {reader.fieldnames}. "
                f"Dataset '{dataset}' needs the sol of each image for sol-grouped splits."
            )
        table = {}
        for line, row in enumerate(reader, start=2):
            try:
                table[row["name"]] = int(float(row[column]))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}, line {line}: '{column}' is not a number: {row[column]!r}."
                ) from err
    return table


def marsscapes_root(root: str | Path, dataset: str = "marsscapes", key: str = "data.root") -> Path:
    """``root`` as a Path if it is a folder with MarsScapes' layout
    (:data:`~marsunits.data.layout.MARSSCAPES`), else :func:`~marsunits.data.folder.check_root`'s
    FileNotFoundError naming it, the layout expected and how to set it, or
    :func:`~marsunits.data.layout.check_layout`'s DataLayoutError (``key`` sets the folder); only folder
    names and the sol table's header are read."""
    path = check_root(root, dataset, MARSSCAPES.expected)
    check_layout(path, MARSSCAPES, dataset, key)
    return path


def scan_marsscapes(
    root: str | Path, dataset: str = "marsscapes", key: str = "data.root"
) -> list[LabelledImage]:
    """Records of a MarsScapes folder, grouped by sol; ``key`` sets ``root`` (as refusals name it).

    Raises:
        FileNotFoundError: missing root; DataLayoutError: a missing sub-folder, a sol table without its
            columns; ValueError: unpaired files or an unknown sol.
    """
    path = marsscapes_root(root, dataset, key)
    stats = path / str(MARSSCAPES.stats)
    sols = read_sol_table(stats, MARSSCAPES.sol_column, dataset) if stats.is_file() else {}

    def sol_of(stem: str) -> int:
        if stem in sols:
            return sols[stem]
        prefix = stem.split("_", 1)[0]
        if prefix.isdigit():
            return int(prefix)
        raise ValueError(
            f"Dataset '{dataset}': no sol for image '{stem}' (not in {stats}, and the name does not start "
            "with '<sol>_'). Add it to stats.csv (columns name,sol)."
        )

    return pair_by_stem(path / MARSSCAPES.images, path / MARSSCAPES.masks, dataset, sol_of)
