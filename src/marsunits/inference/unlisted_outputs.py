"""Per-image outputs in a prediction run's ``output_dir`` that none of its reports lists, said at its end.

A run without ``overwrite=true`` deletes nothing, so the outputs of inputs removed since a run that
predicted them, or failing now, stay in the folder; in no report (``manifest.csv``, ``summary.json``,
``index.html``), they went unsaid and were shared with the folder. :func:`say_outputs_of_no_input` warns of
them, and says apart those of images still in ``input_dir`` that the run's ``patterns`` leave out (with
``map=true``, also off the contact map, which is drawn from the run's images alone).

Split from :mod:`marsunits.inference.runner`, whose session calls it once its reports are written: it needs
only the folders, the patterns and the rows, none of the session's model or state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from marsunits.errors import counted
from marsunits.inference.inputs import normalise_patterns
from marsunits.inference.options import PredictOptions
from marsunits.inference.writers import SUFFIXES, OutputPaths, has_outputs, printable, remove_outputs_except

#: The run's logger: its lines are the runner's (``[marsunits.inference.runner]`` in ``predict.log``), as
#: they were before this module was split from it.
log = logging.getLogger("marsunits.inference.runner")


def say_outputs_of_no_input(
    output_dir: Path,
    input_dir: Path,
    patterns: Sequence[str],
    rows: list[dict[str, Any]],
    all_inputs: set[str],
    other_input_dirs: Collection[str],
    mapped: bool = False,
) -> None:
    """Warn of the per-image outputs in the folder that no row of the reports has (inputs removed since a
    run that predicted them, or failing now): kept, as a run without ``overwrite=true`` deletes nothing,
    but in no report, they went unsaid and were shared with the folder. Not in a folder that also holds
    another input folder's outputs (which cannot be told from them; that run warns of it already).

    Args:
        output_dir: The run's output folder.
        input_dir: The run's input folder.
        patterns: The run's ``patterns`` option (file extensions of the inputs).
        rows: The rows of the run's reports.
        all_inputs: Every input of the folder (relative posix paths), on every rank's shard.
        other_input_dirs: Other input folders whose outputs ``output_dir`` holds, by its settings record.
        mapped: The run has ``map=true``. Its contact map is drawn from the run's images alone, as its
            other reports are: the images ``patterns`` leave out are then off the map too (a folder
            predicted with every format, re-run with ``patterns=[jpg]``, lost the other images' ground
            contacts from ``contact_map.*`` without a word). They are not drawn from their outputs: the
            map is one of the run's reports, of the same images as ``manifest.csv`` and ``summary.json``
            (its title counts them), and a geologist who narrows ``patterns`` asks for those images. The
            line, a warning then, says so and gives the ``patterns`` that map every image: that run skips
            the finished ones as done (seconds) and maps them again.
    """
    if other_input_dirs:
        return
    input_stems: dict[Path, dict[str, set[str]]] = {}  # folder of input_dir -> stem -> its extensions
    # An input of the folder that a stopped run did not reach has no row yet: its outputs are not stale.
    unreached = all_inputs - {str(row["path"]) for row in rows}
    keep = [
        path
        for rel in [*(str(row["path"]) for row in rows if has_outputs(row)), *unreached]
        for path in OutputPaths(output_dir, PurePosixPath(rel)).written(True)
    ]
    stale = remove_outputs_except(output_dir, keep, dry_run=True)
    # Outputs of an image still in input_dir that this run's patterns leave out (patterns=[jpg] after a
    # run of every extension) are of no removed input: said apart, as what they are.
    known = {
        PurePosixPath(rel).with_suffix("").as_posix()
        for rel in [*all_inputs, *(str(row["path"]) for row in rows)]
    }
    flags = [_input_left_out(p, known, output_dir, input_dir, input_stems) for p in stale]
    left_out = [p for p, out in zip(stale, flags, strict=True) if out]
    if left_out:
        given = [e.lstrip(".") for e in normalise_patterns(patterns)]
        others = sorted({e for found in flags for e in found} - set(given))
        every = ",".join([*given, *others])
        log.log(
            logging.WARNING if mapped else logging.INFO,
            "%s in %s %s of images in %s that patterns=[%s] leaves out, so in none of its reports%s: "
            "kept (an overwrite=true run with these patterns removes them)%s",
            counted(len(left_out), "output file"),
            printable(os.fspath(output_dir)),
            "is" if len(left_out) == 1 else "are",
            printable(os.fspath(input_dir)),
            ",".join(given),
            " and off the contact map, which map=true draws from this run's images alone" if mapped else "",
            f"; for the map of every image run again with patterns=[{every}] (their outputs are skipped as "
            "done)"
            if mapped
            else "",
        )
    stale = [p for p, out in zip(stale, flags, strict=True) if not out]
    if stale:
        names = [printable(p.relative_to(output_dir).as_posix()) for p in stale]
        one = len(stale) == 1
        log.warning(
            "%s in %s %s no longer in %s or failing now, so in none of its reports (manifest.csv, "
            "summary.json, index.html): %s; a run with overwrite=true removes %s, or delete %s by hand",
            counted(len(stale), "output file"),
            printable(os.fspath(output_dir)),
            "is of an input" if one else "are of inputs",
            printable(os.fspath(input_dir)),
            ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else ""),
            *(["it"] * 2 if one else ["them"] * 2),
        )


def _input_left_out(
    output: Path,
    known: set[str],
    output_dir: Path,
    input_dir: Path,
    input_stems: dict[Path, dict[str, set[str]]],
) -> set[str]:
    """The extensions (``"png"``) of the image in ``input_dir`` that ``output`` (a per-image output file
    under ``output_dir``) is of (same place and stem, an extension of the default ``patterns``) where this
    run's ``patterns`` leave it out: not one of ``known`` (``<folder>/<stem>`` of the run's inputs and
    rows), whose outputs are this run's or those of an input failing now. Empty where it is of no such
    image. ``input_stems`` caches each folder's images: stem -> extensions."""
    rel = output.relative_to(output_dir)
    stem = next(rel.name[: -len(end)] for end in SUFFIXES.values() if rel.name.endswith(end))
    if (rel.parent / stem).as_posix() in known:
        return set()
    folder = input_dir / rel.parent
    if folder not in input_stems:
        images = set(normalise_patterns(PredictOptions.patterns))
        stems: dict[str, set[str]] = {}
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    suffix = Path(e.name).suffix.lower()
                    if suffix in images and e.is_file():
                        stems.setdefault(Path(e.name).stem, set()).add(suffix.lstrip("."))
        except OSError:  # no such folder (removed with its images) or unreadable: nothing there to name
            stems = {}
        input_stems[folder] = stems
    return input_stems[folder].get(stem, set())
