"""What each real dataset's root folder holds, as its scanner reads it: two subfolders (images and their
label images) and, for MarsScapes and AI4Mars, a sol table with its sol column.

The one statement of the layouts: the scanners (:func:`~marsunits.data.marsscapes.scan_marsscapes`,
:func:`~marsunits.data.ai4mars.scan_ai4mars`, :func:`~marsunits.data.folder.scan_folder`) read these names
and start with :func:`check_layout`, which ``train.py`` runs too before Hydra makes the run folder
(:meth:`~marsunits.data.datamodule.MarsDataModule.check_source_folders`). The check looks at folder names,
the table's header line and, for MarsScapes without its table, a few image names, never inside an image,
so it costs milliseconds on any dataset; a refusal says what the folder looks like instead (another
dataset's layout, the folder holding the dataset or several datasets, a folder inside it) and the value
to give.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from marsunits.errors import DataLayoutError, some_of

__all__ = [
    "AI4MARS",
    "FOLDER",
    "FOLDER_LAYOUT",
    "LAYOUTS",
    "MARSSCAPES",
    "Layout",
    "check_layout",
    "has_layout",
    "holders_near",
]

#: What a ``data=folder`` root must hold, as its errors say it (data/README.md has the details).
FOLDER_LAYOUT = (
    "images/<stem>.<jpg|png|tif> and masks/<stem>.png of the same stems (subfolders allowed), the masks "
    "uint8 project ids (0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore; data.class_map=... for "
    "other ids), optionally cameras/<stem>.json"
)

#: How many subfolders of a root are looked at for the dataset's layout (a root one level too high).
_INNER_LOOKED_AT = 100


@dataclass(frozen=True)
class Layout:
    """What a dataset's root folder holds.

    Attributes:
        title: the dataset's name in messages (``MarsScapes``).
        called: a folder of this layout in messages (``a MarsScapes folder``).
        expected: one line saying what the folder holds (messages).
        images: the subfolder of images.
        masks: the subfolder of label images, named as the images.
        config: the data config that reads this layout (``data=<config>``).
        experiment: the experiment that trains on it, or None.
        stats: the sol table's file name, or None for none.
        sol_column: the table's column of sols (beside ``name``).
        stats_required: whether the scanner needs the table (MarsScapes reads a sol from ``<sol>_`` names
            without one).
    """

    title: str
    called: str
    expected: str
    images: str
    masks: str
    config: str
    experiment: str | None = None
    stats: str | None = None
    sol_column: str = "sol"
    stats_required: bool = False


MARSSCAPES = Layout(
    "MarsScapes",
    "a MarsScapes folder",
    "images/<sol>_<n>.jpg, labels/<sol>_<n>.png and stats.csv with columns name,sol",
    "images",
    "labels",
    "marsscapes",
    experiment="marsscapes",
    stats="stats.csv",
    sol_column="sol",
)
AI4MARS = Layout(
    "AI4Mars",
    "an AI4Mars folder",
    "images/<id>.jpg, labels/<id>.png and stats.csv with columns name,sol_approx",
    "images",
    "labels",
    "ai4mars",
    experiment="ai4mars",
    stats="stats.csv",
    sol_column="sol_approx",
    stats_required=True,
)
FOLDER = Layout("folder dataset", "a folder dataset", FOLDER_LAYOUT, "images", "masks", "folder")
#: Each real source's layout, by the source's name in a data config's ``sources``.
LAYOUTS: dict[str, Layout] = {"marsscapes": MARSSCAPES, "ai4mars": AI4MARS, "folder": FOLDER}


@dataclass(frozen=True)
class _Problem:
    """Why a folder does not have a layout: the first subfolder missing, else what is wrong with the table."""

    folder: str | None = None
    table: str | None = None


def _table_columns(path: Path) -> list[str] | None:
    """The header of the CSV file ``path`` (a spreadsheet's byte-order mark dropped), or None where it cannot
    be read: that is said where the table is read (:func:`~marsunits.data.marsscapes.read_sol_table`)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _problem(path: Path, layout: Layout) -> _Problem | None:
    """What keeps the folder ``path`` from having ``layout``, or None if it has it."""
    for sub in (layout.images, layout.masks):
        if not (path / sub).is_dir():
            return _Problem(folder=sub)
    if layout.stats is None:
        return None
    table = path / layout.stats
    if not table.is_file():
        if not layout.stats_required:
            return None
        return _Problem(
            table=f"{table} not found. It gives the sol of every image (columns name,{layout.sol_column}), "
            "which the sol-grouped train/val split needs."
        )
    columns = _table_columns(table)
    lacking = [c for c in ("name", layout.sol_column) if columns is not None and c not in columns]
    if not lacking:
        return None
    said = " and ".join(repr(c) for c in lacking)
    return _Problem(
        table=f"{table} has no {said} column{'s' if len(lacking) > 1 else ''} (its columns: "
        f"{some_of(columns or [], 6)}); "
        f"{layout.title} reads the sol of each image there (columns name,{layout.sol_column}) for the "
        "sol-grouped split."
    )


def _subfolders(path: Path) -> list[Path]:
    """The folders in ``path``, hidden ones left out, sorted; empty where it cannot be listed."""
    try:
        return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return []


def has_layout(path: Path, layout: Layout) -> bool:
    """Whether the folder ``path`` has ``layout`` (what :func:`check_layout` accepts), by names and the sol
    table's header alone."""
    return _problem(path, layout) is None


def holders_near(root: Path, sub: str, layout: Layout) -> list[Path]:
    """The folders one level above or below ``root`` (its parent, its subfolders) that hold ``sub`` with
    ``layout``: where ``data.root`` of a config of several sources, each read from ``data.root/<sub>``, was
    meant to point when ``root/<sub>`` is not there."""
    root = Path(os.path.abspath(root))  # data.root=. or ..: its parent is looked at too
    candidates = ([root.parent] if root.parent != root else []) + _subfolders(root)[:_INNER_LOOKED_AT]
    return [c for c in candidates if (c / sub).is_dir() and _problem(c / sub, layout) is None]


def _holding(layout: Layout) -> str:
    """What a folder of ``layout`` holds, in short (``images/, labels/ and stats.csv``)."""
    table = f" and {layout.stats} (name,{layout.sol_column})" if layout.stats else ""
    return f"{layout.images}/, {layout.masks}/{table}" if table else f"{layout.images}/ and {layout.masks}/"


def _looks_like(path: Path, layout: Layout, table_seen: bool) -> bool:
    """Whether ``path`` has ``layout``; with ``table_seen``, only if its sol table is there too (a folder of
    images/ and labels/ alone is no evidence of being MarsScapes rather than AI4Mars without its table).
    Without its table (a layout whose table is optional: MarsScapes), only if its images are named by sol
    (:func:`_named_by_sol`), as its scanner then reads their sols: a user's own images/ beside labels/
    (AI4Mars frames, given as data=folder) was called a MarsScapes folder, and data=marsscapes refused every
    image for its missing sol."""
    if _problem(path, layout) is not None:
        return False
    if layout.stats is None or (path / layout.stats).is_file():
        return True
    return not table_seen and _named_by_sol(path / layout.images)


#: How many file names of an images/ folder :func:`_named_by_sol` looks at.
_NAMES_LOOKED_AT = 20


def _named_by_sol(folder: Path) -> bool:
    """Whether the first files of ``folder`` (:data:`_NAMES_LOOKED_AT`, hidden ones left out, in the order
    the folder lists them) are all named ``<sol>_...``, as MarsScapes reads a sol from a name without its
    table. Names only: no file is opened."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if not e.name.startswith(".")][:_NAMES_LOOKED_AT]
    except OSError:
        return False
    return bool(names) and all(n.split("_", 1)[0].isdigit() and "_" in n for n in names)


def _recipe(layout: Layout, path: Path) -> str:
    """The experiment that trains on ``layout`` read from ``path``, in parentheses (empty for none)."""
    if layout.experiment is None:
        return ""
    return f" (experiment={layout.experiment} data.root={path}: its training recipe)"


def _other_layout(path: Path, layout: Layout, table_seen: bool) -> Layout | None:
    """The first layout other than ``layout`` that the folder ``path`` has (:func:`_looks_like`), or None."""
    return next((o for o in LAYOUTS.values() if o is not layout and _looks_like(path, o, table_seen)), None)


def _other_layouts(folders: list[Path], layout: Layout) -> list[tuple[Path, Layout]]:
    """Each of ``folders`` that has a layout other than ``layout`` (its sol table there, for a layout with
    one: images/ and labels/ alone may be MarsScapes or AI4Mars), with that layout."""
    found = []
    for folder in folders:
        other = _other_layout(folder, layout, table_seen=True)
        if other is not None:
            found.append((folder, other))
    return found


def check_layout(path: Path, layout: Layout, dataset: str, key: str = "data.root") -> None:
    """Check that the folder ``path`` has ``layout``: its two subfolders, and its sol table where there is
    one (required, or there) with the ``name`` and sol columns. Looks at names and the table's header only.

    Args:
        path: the dataset's root folder (it exists).
        layout: what it must hold.
        dataset: the data config's name (messages).
        key: the config key that sets ``path``: ``data.root``, or ``data.source_dirs.<source>`` for a data
            config of several sources (which has no other data config to switch to).

    Raises:
        DataLayoutError: naming what is missing, what the folder looks like instead (another dataset's
            layout; a subfolder, or the parent, with this layout; subfolders with other datasets' layouts,
            each with the data config and ``data.root`` that read it) and the value to give.
    """
    problem = _problem(path, layout)
    if problem is None:
        return
    # A root given relative to the current folder (data.root=.) is said, and its parent looked at, absolute.
    path = Path(os.path.abspath(path))
    folders = _subfolders(path)
    if problem.folder is not None:
        what = "images" if problem.folder == layout.images else "masks"
        said = (
            f"Dataset '{dataset}': expected a folder of {what} at {path / problem.folder}, but it does not "
            "exist."
        )
    else:
        said = f"Dataset '{dataset}': {problem.table}"
    inner = [p for p in folders[:_INNER_LOOKED_AT] if _problem(p, layout) is None]
    # The folder holding the datasets, each in its own layout (data=folder data.root=../shared/data).
    others = [] if inner else _other_layouts(folders[:_INNER_LOOKED_AT], layout)
    parent = path.parent if path.parent != path and _problem(path.parent, layout) is None else None
    if problem.folder is not None and folders and not inner and not others and parent is None:
        names = [p.name for p in folders]
        if set(names) - {layout.images, layout.masks}:
            said += f" {path} holds {names}: if one of them has the {what}, rename it {problem.folder}/."
        else:
            said += f" {path} holds only {names}."
        if names == [layout.images]:  # unlabelled images (marsscapes_unlabeled/): predicted, not trained on
            said += (
                f" Images without labels are predicted (predict.py input_dir={path / layout.images}), not "
                "trained on."
            )
    other = _other_layout(path, layout, table_seen=problem.folder is None)
    if other is not None:
        said += f" {path} looks like {other.called} ({other.expected})"
        if key == "data.root":
            said += (
                f": data={other.config} data.root={path} reads it as it is{_recipe(other, path)}, without "
                f"renaming anything; or give data.root=<the folder holding {_holding(layout)}>."
            )
        else:
            said += f", not {layout.called}: give {key}=<the folder holding {_holding(layout)}>."
    if inner:
        listed = some_of([f"{p.name}/" for p in inner], 3)
        said += (
            f" {path} holds {listed} with the {layout.title} layout: it is one level too high; give "
            f"{key}={inner[0]}" + (" (or another of them)." if len(inner) > 1 else ".")
        )
    elif others:
        if key == "data.root":
            listed = "; ".join(
                f"{p.name}/, {other.called}: data={other.config} data.root={p} reads it{_recipe(other, p)}"
                for p, other in others[:3]
            )
            said += (
                f" {path} holds {listed}{'; ...' if len(others) > 3 else ''}. For {layout.called}, give "
                f"data.root=<the folder holding {_holding(layout)}>."
            )
        else:
            listed = some_of([f"{p.name}/, {other.called}" for p, other in others], 3)
            said += (
                f" {path} holds {listed}, not {layout.called}: give {key}=<the folder holding "
                f"{_holding(layout)}>."
            )
    elif parent is not None and path.name in (layout.images, layout.masks):
        said += (
            f" {key} looks like the {path.name}/ folder itself: give the folder that holds {layout.images}/ "
            f"and {layout.masks}/, {key}={parent}."
        )
    elif parent is not None:
        said += (
            f" {path} lies inside {parent}, which has the {layout.title} layout: it is one level too low; "
            f"give {key}={parent}."
        )
    raise DataLayoutError(f"{said} Check {key} and the dataset layout (data/README.md).")
