"""Per-image outputs in a prediction run's ``output_dir`` that none of its reports lists, said at its end.

A run without ``overwrite=true`` deletes nothing, so the outputs of inputs removed since a run that
predicted them, or failing now, stay in the folder; in no report (``manifest.csv``, ``summary.json``,
``index.html``), they went unsaid and were shared with the folder. :func:`say_outputs_of_no_input` warns of
them, and says apart those of images still in ``input_dir`` that the run's ``patterns`` leave out.

Split from :mod:`marsunits.inference.runner`, whose session calls it once its reports are written: it needs
only the folders, the patterns and the rows, none of the session's model or state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

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
    """
    if other_input_dirs:
        return
    input_stems: dict[Path, set[str]] = {}  # folder of input_dir -> stems of its files
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
        log.info(
            "%d output file(s) in %s are of images in %s that patterns=[%s] leaves out, so in none of "
            "its reports: kept (an overwrite=true run with these patterns removes them)",
            len(left_out),
            printable(os.fspath(output_dir)),
            printable(os.fspath(input_dir)),
            ",".join(e.lstrip(".") for e in normalise_patterns(patterns)),
        )
    stale = [p for p, out in zip(stale, flags, strict=True) if not out]
    if stale:
        names = [printable(p.relative_to(output_dir).as_posix()) for p in stale]
        log.warning(
            "%d output file(s) in %s are of inputs no longer in %s or failing now, so in none of its "
            "reports (manifest.csv, summary.json, index.html): %s; a run with overwrite=true removes "
            "them, or delete them by hand",
            len(stale),
            printable(os.fspath(output_dir)),
            printable(os.fspath(input_dir)),
            ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else ""),
        )


def _input_left_out(
    output: Path, known: set[str], output_dir: Path, input_dir: Path, input_stems: dict[Path, set[str]]
) -> bool:
    """Whether ``output`` (a per-image output file under ``output_dir``) is of an image in ``input_dir``
    (same place and stem, an extension of the default ``patterns``) that this run's ``patterns`` leave
    out: not one of ``known`` (``<folder>/<stem>`` of the run's inputs and rows), whose outputs are
    this run's or those of an input failing now. ``input_stems`` caches the stems of each folder's images."""
    rel = output.relative_to(output_dir)
    stem = next(rel.name[: -len(end)] for end in SUFFIXES.values() if rel.name.endswith(end))
    if (rel.parent / stem).as_posix() in known:
        return False
    folder = input_dir / rel.parent
    if folder not in input_stems:
        images = set(normalise_patterns(PredictOptions.patterns))
        try:
            with os.scandir(folder) as entries:
                input_stems[folder] = {
                    Path(e.name).stem
                    for e in entries
                    if Path(e.name).suffix.lower() in images and e.is_file()
                }
        except OSError:  # no such folder (removed with its images) or unreadable: nothing there to name
            input_stems[folder] = set()
    return stem in input_stems[folder]
