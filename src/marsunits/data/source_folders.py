"""Where each real source of a data config is read from, and what is checked there before any image is read.

The real sources (``marsscapes``, ``ai4mars``, ``folder``) each have a scanner (:data:`REAL_SOURCES`) and a
check of their root folder's layout (:data:`SOURCE_ROOTS`). :class:`SourceFolders` is the part of
:class:`~marsunits.data.datamodule.MarsDataModule`'s config that places them (``data.root``, and with
several sources ``data.source_dirs.<source>`` below it or, absolute, instead of it): each source's folder
(``~`` read as the home folder), the key that moves it, its scan, an image's key below it, and the checks
``train.py`` also runs before Hydra makes the run folder (the folders and their layouts, a ``classes.json``
that says the masks hold another data set's ids), which read no image.

Its errors name the key to change: a FileNotFoundError of a several-source config is said with the source's
``data.source_dirs`` key (:meth:`SourceFolders.reading`); one source's, as the scanner said it. The data
module makes one from its attributes whenever it asks, so the answers follow them; this module does not
import the data module.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marsunits.data.ai4mars import ai4mars_root, scan_ai4mars
from marsunits.data.class_map import classes_file_refusal, labels_classes_folder, unreadable_classes_file
from marsunits.data.folder import folder_root, scan_folder
from marsunits.data.layout import LAYOUTS, holders_near
from marsunits.data.marsscapes import marsscapes_root, scan_marsscapes
from marsunits.data.store import LabelledImage
from marsunits.errors import ConfigError
from marsunits.user_paths import expand_home

__all__ = ["REAL_SOURCES", "SOURCE_ROOTS", "SourceFolders"]

# The data module's logger: the lines of its set-up keep the name a log is filtered by.
log = logging.getLogger("marsunits.data.datamodule")

REAL_SOURCES: dict[str, Any] = {"marsscapes": scan_marsscapes, "ai4mars": scan_ai4mars, "folder": scan_folder}
#: Each real source's check of its root folder and its layout (:mod:`marsunits.data.layout`: subfolders and
#: the sol table's header, no image), the one its scanner (:data:`REAL_SOURCES`) starts with.
SOURCE_ROOTS: dict[str, Any] = {"marsscapes": marsscapes_root, "ai4mars": ai4mars_root, "folder": folder_root}
# SOURCES (value_checks, which train.py reads before Hydra without the data module) names these, after
# synthetic.


@dataclass(frozen=True)
class SourceFolders:
    """The folders of a data config's sources, as its keys give them.

    Args:
        name: the data config's name (``configs/data/<name>.yaml``), as messages name it.
        sources: the config's sources (real ones, and ``synthetic``, which has no folder).
        root: ``data.root``: the dataset folder (one source) or the folder holding the sources' folders.
        source_dirs: several sources: ``{source: its folder}``, below ``root`` unless absolute.
        train_only: the sources that only train (a training-only ``folder`` not there yet is said to be
            written by the pseudo-label command).
    """

    name: str | None
    sources: Sequence[str]
    root: str | None
    source_dirs: Mapping[str, str]
    train_only: Collection[str] = ()

    def root_of(self, source: str) -> Path:
        """The folder ``source`` is read from."""
        # ``~`` read as the home folder here too, as the scanners read it: the images' keys below the folder,
        # the split's log line and a pseudo-label teacher's record were looked for under a folder named ``~``.
        assert self.root is not None
        if len(self.sources) == 1:
            return expand_home(self.root)
        return expand_home(self.root) / expand_home(self.source_dirs[source])

    def key(self, source: str) -> str:
        """The config key that sets ``source``'s folder: ``data.root`` for one source, else its
        ``data.source_dirs.<source>``."""
        return "data.root" if len(self.sources) == 1 else f"data.source_dirs.{source}"

    @contextlib.contextmanager
    def reading(self, source: str) -> Iterator[None]:
        """Reading ``source``: a FileNotFoundError of a several-source config is said with the key that moves
        the source's folder (:meth:`missing_message`); of one source, as it is."""
        try:
            yield
        except FileNotFoundError as exc:
            if len(self.sources) == 1:
                raise
            raise FileNotFoundError(self.missing_message(source, exc)) from exc

    def scan(self, source: str, sols_from_names: bool) -> list[LabelledImage]:
        """Every labelled image of ``source``, as its scanner (:data:`REAL_SOURCES`) finds them
        (``sols_from_names``: the ``folder`` source's images are grouped by the sol their names begin
        with)."""
        with self.reading(source):
            scan = REAL_SOURCES[source]
            key = self.key(source)
            if source == "folder":
                records: list[LabelledImage] = scan(
                    self.root_of(source), self.name, sols_from_names=sols_from_names, key=key
                )
            else:
                records = scan(self.root_of(source), self.name, key=key)
        return records

    def image_key(self, source: str, rec: LabelledImage) -> str:
        """``rec``'s image as a path below its source's root (POSIX form), or the whole path if outside."""
        try:
            return rec.image.relative_to(self.root_of(source)).as_posix()
        except ValueError:
            return rec.image.as_posix()

    def check(self) -> None:
        """Raise the FileNotFoundError that reading a real source raises when its folder is not there, or is
        not laid out as the source is read (:func:`~marsunits.data.layout.check_layout`'s DataLayoutError), in
        the same words, looking at folder names and the sol table's header only, no image (see
        :meth:`~marsunits.data.datamodule.MarsDataModule.check_source_folders`)."""
        for source in self.sources:
            if source in SOURCE_ROOTS and self.root is not None:
                with self.reading(source):
                    SOURCE_ROOTS[source](self.root_of(source), self.name, self.key(source))

    def check_label_classes(self, class_map: Any, warn: bool) -> None:
        """Refuse a real source read without a class map whose folder holds a ``classes.json`` naming other
        classes; with ``warn``, say a ``classes.json`` that cannot be read in a warning (see
        :meth:`~marsunits.data.datamodule.MarsDataModule.check_label_classes`).

        Raises:
            ConfigError: naming the file, the data set whose native ids it lists and the map to give.
        """
        if self.root is None:
            return
        for source in self.sources:
            several = len(self.sources) > 1
            mapping = (class_map or {}).get(source) if several else class_map
            if source not in SOURCE_ROOTS or mapping is not None:
                continue
            root = expand_home(str(self.root_of(source)))
            labels = f"{root} ({self.key(source)})"
            option = f"data.class_map.{source}" if several else "data.class_map"
            # The masks' folder's own classes.json first, else the root's: predict.py's rule for labels_dir.
            folder = labels_classes_folder(root / LAYOUTS[source].masks)
            refused = classes_file_refusal(folder, labels, option)
            if refused is not None:
                raise ConfigError(refused)
            unread = unreadable_classes_file(folder, labels, option) if warn else None
            if unread is not None:
                log.warning("%s", unread)

    def missing_message(self, source: str, exc: FileNotFoundError) -> str:
        """The error for a source of a several-source config that cannot be read: the key that moves it.

        A relative ``data.source_dirs.<source>`` lies under ``data.root``, so either key may need fixing (a
        missing one is said with the folder ``data.root`` must be, the one holding it: ``check_root``'s
        ``data.root=/path/to/<config name>`` read ``/path/to/<config name>/<dir>``);
        an absolute one (the pseudo-label folder of ``marsscapes_pseudo``) replaces ``data.root``, so only
        its own key moves it (``check_root``'s ``data.root=`` and ``MARSUNITS_DATA`` hints do not apply
        there), and a training-only folder not there yet is said to be written by the pseudo-label command.
        """
        path = self.root_of(source)
        key = f"data.source_dirs.{source}"
        if not Path(self.source_dirs[source]).is_absolute():
            # Several sources: each lies in data.root/<source_dirs.source>; either key may need fixing.
            if path.is_dir():  # the folder is there; what is wrong inside it is exc's to say
                return (
                    f"{exc} With several sources, '{source}' is read from data.root/"
                    f"{self.source_dirs[source]}: fix data.root or {key}."
                )
            # check_root's `data.root=/path/to/<this config's name>` read data.root/<name>/<dir>, no folder.
            sub = self.source_dirs[source]
            # data.root one level too low or too high: the folder that holds <sub>/ with its layout is named.
            near = holders_near(expand_home(str(self.root)), sub, LAYOUTS[source])
            seen = (
                f" {near[0]} holds {sub}/ with the {LAYOUTS[source].title} layout: give data.root={near[0]}."
                if near
                else ""
            )
            return (
                f"Dataset '{self.name}': {path} does not exist: with several sources, the folder of source "
                f"'{source}' is data.root/{sub} ({key}={sub}).{seen} Give the folder that holds {sub}/ with "
                "data.root=<folder> (or set MARSUNITS_DATA to it: paths.data_root), or this source's own "
                f"folder with {key}=<folder> "
                "(an absolute path is not under data.root)."
            )
        if path.is_dir():  # the folder is there; what is wrong inside it is exc's to say
            return f"{exc} ('{source}' is read from {key}, an absolute path: data.root is not used for it.)"
        said = (
            f"Dataset '{self.name}': the folder of source '{source}', {path}, does not exist (it is {key}, "
            f"an absolute path: data.root is not used for it). Give the folder with {key}=<folder>"
        )
        if source in self.train_only and source == "folder":
            # The command in full: its --predictions and --images are required (a bare --out was refused).
            said += (
                ", or write it first: a teacher's pseudo-labels are written there by `python -m "
                "marsunits.inference.pseudo_labels --predictions <predict.py output_dir, made with "
                f"save_probabilities=true> --images <its input_dir> --out {shlex.quote(str(path))}` "
                "(docs/training.md, Self-training)"
            )
        return said + "."
