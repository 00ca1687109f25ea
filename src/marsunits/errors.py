"""Errors a user can cause and fix: entry points print their message in one line, without a traceback.

Every message says what was expected, what was found (naming the file or value) and what to do.
Set ``MARSUNITS_TRACEBACK=1`` to see the full traceback anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar


class MarsUnitsError(Exception):
    """Base class for errors caused by input or configuration (not by a bug)."""


class ConfigError(MarsUnitsError, ValueError):
    """A configuration value is missing or wrong."""


class DataError(MarsUnitsError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent."""


#: Exceptions an entry point reports as one line: project errors plus the standard ones raised for bad
#: paths and values by the libraries underneath (their messages name the file).
USER_ERRORS: tuple[type[BaseException], ...] = (
    MarsUnitsError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    IsADirectoryError,
)

T = TypeVar("T")


def report_user_errors(fn: Callable[[], T], prog: str) -> T:
    """Run ``fn``; on a user error print ``<prog>: error: <message>`` and exit with status 2."""
    try:
        return fn()
    except USER_ERRORS as exc:
        if os.environ.get("MARSUNITS_TRACEBACK"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        print(f"{prog}: (set MARSUNITS_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None
