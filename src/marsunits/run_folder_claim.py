"""One training run per run folder at a time: a claim file that a second ``train.py`` in the folder refuses.

The default ``run_name`` is the start time to the second, so two runs started in the same second (seeds
started together with ``&``, a job array) got the same folder and wrote their ``config.yaml``,
checkpoints and ``metrics.json`` over each other, both ending with status 0. Hand-written: neither Hydra
nor Lightning guards a run folder, and a file created with ``O_EXCL`` is the portable way to do it.

The claim is ``<run folder>/.train.claim`` (JSON: ``pid``, ``host``, ``started``), made by the run's global
rank 0 only (DDP ranks share the folder) and removed when the run ends however it ends. A claim left by a
process that is gone (a SIGKILL, a power cut) on this machine is taken over; one from another machine
cannot be checked and is refused with the file to delete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from marsunits.errors import ConfigError

__all__ = ["CLAIM_NAME", "claimed_run_folder", "is_global_rank_zero"]

CLAIM_NAME = ".train.claim"


def is_global_rank_zero() -> bool:
    """Whether this process is the run's global rank 0, from the launchers' environment variables (before
    Lightning sets its own): ``RANK`` (torchrun) or ``SLURM_PROCID``; else ``LOCAL_RANK`` on node
    ``NODE_RANK``/``GROUP_RANK`` 0 (Lightning's own launcher); a plain process is rank 0."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").strip():
            return os.environ[name].strip() == "0"
    local = os.environ.get("LOCAL_RANK", "0").strip() or "0"
    node = (os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or "0").strip() or "0"
    return local == "0" and node == "0"


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one owned by another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refusal(folder: Path, claim: Path, holder: dict) -> str:
    host = socket.gethostname()
    who = f"train.py (pid {holder.get('pid')}"
    who += f", started {holder['started']})" if holder.get("started") else ")"
    where = "on this machine" if holder.get("host") == host else f"on {holder.get('host', 'another machine')}"
    text = (
        f"run folder {folder} is in use by {who} {where}. Two runs started in the same second get the same "
        "default run_name: give this one its own, e.g. run_name=<name>, or wait for that run to end"
    )
    if holder.get("host") != host:
        text += f" (if no run is using the folder any more, delete {claim})"
    return text


def _read(claim: Path) -> dict:
    try:
        holder = json.loads(claim.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def claimed_run_folder(folder: Path) -> Iterator[None]:
    """Hold the claim on ``folder`` for the ``with`` block (global rank 0 only; other ranks pass through).

    Raises:
        ConfigError: Another live ``train.py`` holds the folder (names it, and what to do).
    """
    if not is_global_rank_zero():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / CLAIM_NAME
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    for _ in range(3):  # a stale claim is removed, then made again; another process may be doing the same
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read(claim)
            pid = holder.get("pid")
            same_host = holder.get("host") == mine["host"]
            if holder and same_host and isinstance(pid, int) and pid != mine["pid"] and not _alive(pid):
                claim.unlink(missing_ok=True)  # left by a run that is gone: take the folder over
                continue
            if holder.get("pid") == mine["pid"] and same_host:  # this process holds it (a run within a run)
                yield
                return
            raise ConfigError(_refusal(folder, claim, holder)) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(mine, fh)
        break
    else:
        raise ConfigError(_refusal(folder, claim, _read(claim)))
    try:
        yield
    finally:
        if _read(claim).get("pid") == mine["pid"]:
            claim.unlink(missing_ok=True)
