"""Paths as a user types them: a leading ``~`` is the home folder.

A quoted ``"~/x"`` reaches a program as it is, and Python callers pass such strings, so the functions that
take a path read ``~`` and ``~user`` as a shell does. pathlib's ``Path.expanduser`` raises ``RuntimeError``
("Could not determine home directory") for a ``~name`` that names no user, though that is just a file
named so (``~a.LBL``, or an image ``~scan.png`` found in the working folder), which the shell leaves as it
is; :func:`expand_home` leaves it as it is too (``os.path.expanduser``). A train.py run folder given where a
checkpoint file is wanted is told the checkpoint it holds (:func:`run_folder_checkpoint_hint`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["expand_home", "run_folder_checkpoint_hint"]


def expand_home(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` read as that home folder; a ``~name`` naming no user (and
    any other path) is kept as it is. Never raises for a ``~``; applying it twice is applying it once."""
    return Path(os.path.expanduser(path))


def run_folder_checkpoint_hint(folder: Path) -> str:
    """A sentence naming the checkpoint to give when ``folder`` is a train.py run folder or its
    ``checkpoints/`` (``best.ckpt``, else ``last.ckpt``, else the one ``.ckpt`` there), or "". Reads no
    checkpoint and imports nothing heavy: ``python -m marsunits.export`` says it before loading torch."""
    for checkpoints in (folder / "checkpoints", folder):
        try:
            found = sorted(p.name for p in checkpoints.glob("*.ckpt") if p.is_file())
        except OSError:
            continue
        named = [n for n in ("best.ckpt", "last.ckpt") if n in found]
        best = named[0] if named else found[0] if len(found) == 1 else None
        if best is not None:
            what = {
                "best.ckpt": " (the best weights, chosen by the run's callbacks.model_checkpoint.monitor)",
                "last.ckpt": " (the last weights)",
            }.get(best, "")
            return (
                f" Give the checkpoint file it holds{what}: ckpt_path={checkpoints / best} (a train.py run "
                "keeps best.ckpt and last.ckpt in its checkpoints/ folder)"
            )
    return ""
