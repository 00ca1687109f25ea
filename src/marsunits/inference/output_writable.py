"""An ``output_dir`` that cannot take files: refused before anything is predicted, or the run stopped.

:func:`check_output_writable` refuses, at the start, an ``output_dir`` whose nearest existing folder cannot
be written (or is a file). A write that fails later for a reason every further write shares (a full disk
or quota, a read-only or forbidden folder: :data:`OUTPUT_STOP_ERRNOS`) stops the run with
:class:`OutputWriteError`, worded by :func:`output_stop_message`, instead of failing every remaining input.

Split from :mod:`marsunits.inference.runner` (which still exports :class:`OutputWriteError`): the runner's
session raises the stop, and :mod:`marsunits.inference.sharded_run` runs the check before a run claims its
folder.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from marsunits.errors import STORAGE_ERRNOS, MarsUnitsError

#: errno values that mean the output folder cannot take more files: stop instead of failing every input.
OUTPUT_STOP_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", None)) if e
)


class OutputWriteError(MarsUnitsError):
    """Writing to the output folder failed in a way that would fail every further input (full, read-only)."""


def output_stop_message(
    output_dir: Path, exc: OSError, file: Path | None = None, overwrite: bool = False
) -> str:
    """One sentence for a write that failed for a reason every further write shares: where and what to do.

    Names the folder that refused (a hidden temporary file's folder, not the file), or ``file``, the file
    being written, where it is given and the error names no other (a ``write()`` names none) or only its
    temporary; and the remedy that fits the cause: space for a full disk or quota, permissions for a denied
    or read-only folder. Then what the same command does run again: it skips the finished images, or, for
    an ``overwrite=true`` run, goes on with it, skipping the images it finished (a stopped overwrite leaves
    the folder marked: a run of other settings is refused there).
    """
    where = Path(exc.filename) if exc.filename else file or output_dir
    if where.name.startswith(".") and where.name.endswith(".tmp"):
        where = file or where.parent  # atomic writes go through hidden temporaries: name their folder
    full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
    what = STORAGE_ERRNOS.get(exc.errno or 0, "permission to write there was denied")
    fix = "free space" if full else "make that folder writable"
    again = (
        "run the same command again: it goes on, skipping the images this run finished"
        if overwrite
        else "run the same command again (finished images are kept and skipped)"
    )
    return (
        f"stopped: cannot write outputs to {where} because {what} ({exc.strerror or exc}); {fix} or choose "
        f"another output_dir, then {again}"
    )


def check_output_writable(output_dir: Path) -> None:
    """Refuse an ``output_dir`` that cannot be written, before anything is predicted.

    The nearest existing folder on its path must allow writing (``os.access``, which also sees read-only
    filesystems); otherwise the first write would fail with a bare ``Permission denied`` on a temporary file.

    Raises:
        OutputWriteError: Naming the folder and what to do.
    """
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    # output_dir=notes.txt/out: this said "permission denied or read-only", which was not the cause.
    if existing != output_dir and not existing.is_dir():
        raise OutputWriteError(
            f"output_dir {output_dir} cannot be made: {existing} is a file, not a folder; choose another "
            "output_dir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputWriteError(
            f"output_dir {output_dir} cannot be written ({existing}: permission denied or read-only); make "
            "it writable or choose another output_dir"
        )
