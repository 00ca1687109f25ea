"""The code version a run was made with: git commit and whether the working tree had uncommitted changes.

Read with the ``git`` command line (``git rev-parse HEAD``, ``git status --porcelain``) under a timeout, so
a missing ``git``, a folder that is not a repository or that git does not track (an installed copy of the
code), or a hung network file system gives ``"unknown"`` instead of an error or a stalled training start.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

UNKNOWN = "unknown"


def _git(args: list[str], cwd: Path, timeout_s: float) -> str | None:
    """stdout of ``git <args>`` in ``cwd``, or None if git is missing, fails or times out."""
    exe = shutil.which("git")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_info(
    repo_dir: str | Path, timeout_s: float = 5.0, *, untracked_files: bool = True
) -> dict[str, str | bool]:
    """Commit and dirty flag of the git working tree that tracks ``repo_dir``.

    Args:
        repo_dir: A folder of the repository holding tracked files (the project root, the package's folder).
            A folder git does not track -- a git-ignored virtual environment inside the repository, where
            ``pip install .`` copied the code -- is "unknown", as one outside any repository is: that
            repository's commit says nothing of the files in it.
        timeout_s: Seconds each ``git`` call may take.
        untracked_files: Whether untracked files count as changes (``dirty``); False counts only changes to
            tracked files, as the benchmarks' ``uncommitted_changes`` does.

    Returns:
        ``{"commit": <40-hex sha or "unknown">, "dirty": <bool or "unknown">}``. ``dirty`` is True when
        ``git status --porcelain`` lists any change, untracked files included unless ``untracked_files`` is
        False (by default they count: they can change results too).
    """
    cwd = Path(repo_dir)
    if not cwd.is_dir():
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    head = _git(["rev-parse", "HEAD"], cwd, timeout_s)
    commit = head.strip() if head and head.strip() else UNKNOWN
    if commit == UNKNOWN or _git(["ls-files", "--error-unmatch", "--", "."], cwd, timeout_s) is None:
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    status = _git(
        ["status", "--porcelain", *([] if untracked_files else ["--untracked-files=no"])], cwd, timeout_s
    )
    dirty: str | bool = UNKNOWN if status is None else bool(status.strip())
    return {"commit": commit, "dirty": dirty}
