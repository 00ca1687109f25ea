"""One training run per run folder at a time: a locked claim file that a second ``train.py`` in the folder
cannot take.

The default ``run_name`` is the start time to the second, so two runs started in the same second (seeds
started together with ``&``, a job array) got the same folder and wrote their ``config.yaml``,
checkpoints and ``metrics.json`` over each other, both ending with status 0. Hand-written: neither Hydra
nor Lightning guards a run folder.

The claim is ``<run folder>/.train.claim``, held with a POSIX record lock (``fcntl.lockf``) by the run's
global rank 0 (DDP ranks share the folder) for as long as the run lasts. The operating system releases the
lock when the process ends however it ends (a SIGKILL, a node lost: NFS lock leases), so no claim is ever
left stale. The file holds the holder's pid, host and start time for the message a second run gets, and is
removed when the run ends (a killed run leaves it, unlocked, to be claimed again). On a filesystem without
locks the run goes on unguarded. POSIX locks belong to the process and end when any descriptor of the file
is closed, so the file is never opened elsewhere while it is held.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from marsunits.errors import ConfigError

__all__ = ["CLAIM_NAME", "claimed_run_folder", "is_global_rank_zero"]

log = logging.getLogger(__name__)

CLAIM_NAME = ".train.claim"

#: Environment variables that launchers set to a process's rank: torchrun (``RANK``, ``LOCAL_RANK``,
#: ``GROUP_RANK``), Lightning's own launcher (``LOCAL_RANK``, ``NODE_RANK``), SLURM, Open MPI, MPICH/PMI, LSF.
_RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "SLURM_PROCID",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "JSM_NAMESPACE_RANK",
)


def is_global_rank_zero() -> bool:
    """Whether this process is the run's global rank 0: every rank variable a launcher set is 0 (a plain
    process sets none). Any one of them non-zero is another rank: Lightning's launcher gives its child
    processes ``LOCAL_RANK`` 1, 2, ... beside an inherited ``SLURM_PROCID=0`` in an interactive SLURM job."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value and value != "0":
            return False
    return True


def _holder(fd: int) -> dict:
    """The pid, host and start time that the claim's holder wrote ({} when unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _refusal(folder: Path, holder: dict) -> str:
    who = f"train.py (pid {holder.get('pid', '?')}"
    who += f", started {holder['started']})" if holder.get("started") else ")"
    host = holder.get("host")
    where = "on this machine" if host in (None, socket.gethostname()) else f"on {host}"
    return (
        f"run folder {folder} is in use by {who} {where}. Two runs started in the same second get the same "
        "default run_name: give this one its own, e.g. run_name=<name>, or wait for that run to end"
    )


@contextlib.contextmanager
def claimed_run_folder(folder: Path) -> Iterator[None]:
    """Hold the claim on ``folder`` for the ``with`` block (global rank 0 only; other ranks pass through).

    Raises:
        ConfigError: Another live ``train.py`` holds the folder (names it, and what to do).
    """
    if not is_global_rank_zero():
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / CLAIM_NAME
    for _ in range(5):
        fd = os.open(claim, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):  # ENOLCK: a filesystem without locks
                log.debug("run folder %s not claimed: %s", folder, exc)
                yield
                return
            raise ConfigError(_refusal(folder, holder)) from None
        try:
            same = os.stat(claim).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed that file as it ended: claim the new one
    else:
        raise ConfigError(_refusal(folder, {}))
    try:
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
        yield
    finally:
        claim.unlink(missing_ok=True)  # while still held: a run that opened it meanwhile sees it gone
        os.close(fd)  # releases the lock
