"""Paths as a user types them: a leading ``~`` is the home folder.

A quoted ``"~/x"`` reaches a program as it is, and Python callers pass such strings, so the functions that
take a path read ``~`` and ``~user`` as a shell does. pathlib's ``Path.expanduser`` raises ``RuntimeError``
("Could not determine home directory") for a ``~name`` that names no user, though that is just a file
named so (``~a.LBL``, or an image ``~scan.png`` found in the working folder), which the shell leaves as it
is; :func:`expand_home` leaves it as it is too (``os.path.expanduser``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["expand_home"]


def expand_home(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` read as that home folder; a ``~name`` naming no user (and
    any other path) is kept as it is. Never raises for a ``~``; applying it twice is applying it once."""
    return Path(os.path.expanduser(path))
