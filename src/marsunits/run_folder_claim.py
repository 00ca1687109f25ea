"""One run per folder at a time: a locked claim file that a second ``train.py`` in its run folder, or a
second ``predict.py`` in its ``output_dir``, cannot take.

The default ``run_name`` is the start time to the second, so two runs started in the same second (seeds
started together with ``&``, a job array) got the same folder and wrote their ``config.yaml``,
checkpoints and ``metrics.json`` over each other, both ending with status 0. Hand-written: neither Hydra
nor Lightning guards a run folder.

Two ``predict.py`` into one ``output_dir`` (the same command started twice, a job array) each predicted the
images the other had not finished when it started, so up to every image twice, each over the other's
outputs. With other settings or another model the settings record refuses the second run
(:mod:`marsunits.inference.output_settings`) only if the first had written it already: two runs started
within the second or two of loading their models both passed that check.

The claim is ``<run folder>/.train.claim`` (``<output_dir>/.predict.claim`` for prediction), held with a
POSIX record lock (``fcntl.lockf``) by the run's global rank 0 (DDP ranks share the folder) for as long as
the run lasts. The operating system releases the
lock when the process ends however it ends (a SIGKILL, a node lost: NFS lock leases), so no claim is ever
left stale. The file holds the holder's pid, host and start time for the message a second run gets, and is
removed when the run ends (a killed run leaves it, unlocked, to be claimed again). On a filesystem without
locks the run goes on unguarded. POSIX locks belong to the process and end when any descriptor of the file
is closed, so the file is never opened elsewhere while it is held.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from marsunits.errors import ConfigError

__all__ = [
    "CLAIM_NAME",
    "PREDICT_CLAIM_NAME",
    "claimed_folder",
    "claimed_output_dir",
    "claimed_run_folder",
    "hold_run_folder_for_process",
    "hold_sweep_folder_for_process",
    "is_global_rank_zero",
    "release_held_claims",
    "run_folder_holder",
    "sweep_folder_holder",
]

log = logging.getLogger(__name__)

CLAIM_NAME = ".train.claim"
PREDICT_CLAIM_NAME = ".predict.claim"

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


def _holder_phrase(program: str, holder: dict) -> str:
    """``"train.py (pid 12, started ...) on this machine"`` from a claim's contents."""
    who = f"{program} (pid {holder.get('pid', '?')}"
    who += f", started {holder['started']})" if holder.get("started") else ")"
    host = holder.get("host")
    return who + (" on this machine" if host in (None, socket.gethostname()) else f" on {host}")


def _run_folder_refusal(folder: Path, holder: dict) -> str:
    return (
        f"run folder {folder} is in use by {_holder_phrase('train.py', holder)}. Two runs started in the "
        "same second get the same default run_name: give this one its own, e.g. run_name=<name>, or wait for "
        "that run to end"
    )


def _sweep_folder_refusal(folder: Path, holder: dict) -> str:
    return (
        f"sweep folder {folder} is in use by the sweep of {_holder_phrase('train.py', holder)}. Two sweeps "
        "started in the same second get the same default folder: run this one again, or give it its own, "
        "hydra.sweep.dir=<new folder>"
    )


def _output_dir_refusal(folder: Path, holder: dict) -> str:
    return (
        f"output_dir {folder} is in use by {_holder_phrase('predict.py', holder)}. Two runs into one folder "
        "would predict the same images twice and write over each other's reports: wait for that run to end "
        "(then run this command again: its finished images are skipped), or choose another output_dir"
    )


def run_folder_holder(folder: Path) -> str | None:
    """The refusal :func:`claimed_run_folder` would give now for ``folder`` (another live ``train.py`` holds
    it), or None; nothing is created. The lock is taken and released at once: a check, not a claim."""
    return _folder_holder(folder, _run_folder_refusal)


def sweep_folder_holder(folder: Path) -> str | None:
    """As :func:`run_folder_holder`, for a sweep's folder (``hydra.sweep.dir``)."""
    return _folder_holder(folder, _sweep_folder_refusal)


def _folder_holder(folder: Path, refusal: Callable[[Path, dict], str]) -> str | None:
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(folder / CLAIM_NAME, os.O_RDWR)
    except OSError:  # no claim file (or no folder): free
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return refusal(folder, _holder(fd)) if exc.errno in (errno.EACCES, errno.EAGAIN) else None
    finally:
        os.close(fd)  # releases the lock if it was taken
    return None


def claimed_run_folder(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``train.py``'s claim on its run folder for the ``with`` block (global rank 0 only; other ranks
    pass through).

    Raises:
        ConfigError: Another live ``train.py`` holds the folder (names it, and what to do).
    """
    return claimed_folder(folder, CLAIM_NAME, _run_folder_refusal, take=is_global_rank_zero())


def claimed_output_dir(folder: Path, take: bool) -> contextlib.AbstractContextManager[None]:
    """Hold ``predict.py``'s claim on its ``output_dir`` for the ``with`` block when ``take`` (the sharded
    run's rank 0; the other ranks share the folder).

    Raises:
        ConfigError: Another live ``predict.py`` holds the folder (names it, and what to do).
    """
    return claimed_folder(folder, PREDICT_CLAIM_NAME, _output_dir_refusal, take=take)


@contextlib.contextmanager
def claimed_folder(
    folder: Path, claim_name: str, refusal: Callable[[Path, dict], str], take: bool = True
) -> Iterator[None]:
    """Hold the claim ``folder/claim_name`` for the ``with`` block; ``take=False`` passes through.

    Raises:
        ConfigError: Another live process holds it; the message is ``refusal(folder, holder)``, where
            ``holder`` is what that process wrote (pid, host, start time; {} when unreadable).
    """
    fd = _take(folder, claim_name, refusal) if take else None
    if fd is not None:
        _HANDED_OVER.add(os.path.normpath(folder / claim_name))  # its early claim is this one's now
    if fd is None:  # not taken, or not POSIX, or a filesystem without locks: no guard
        yield
        return
    try:
        yield
    finally:
        (folder / claim_name).unlink(missing_ok=True)  # while still held: one who opened it sees it gone
        os.close(fd)  # releases the lock (and any other of this process's locks on the file)


def _take(folder: Path, claim_name: str, refusal: Callable[[Path, dict], str]) -> int | None:
    """Lock ``folder/claim_name`` (made with the folder if need be) and write this process into it; returns
    the locked descriptor, or None where there is no guard (not POSIX, a filesystem without locks). The
    process that holds the lock already takes it again (POSIX locks belong to the process).

    Raises:
        ConfigError: Another live process holds it (``refusal(folder, holder)``).
    """
    try:
        import fcntl
    except ImportError:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / claim_name
    for _ in range(5):
        fd = os.open(claim, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):  # ENOLCK: a filesystem without locks
                log.debug("folder %s not claimed: %s", folder, exc)
                return None
            raise ConfigError(refusal(folder, holder)) from None
        try:
            same = os.stat(claim).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed that file as it ended: claim the new one
    else:
        raise ConfigError(refusal(folder, {}))
    try:
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
    except OSError as exc:
        # A disk with no byte free takes the empty file but not its contents. The lock is held: remove the
        # file (as claimed_folder does on leaving), and name it, since os.pwrite's error names no file and
        # the line said "cannot write a file".
        claim.unlink(missing_ok=True)
        os.close(fd)
        raise OSError(exc.errno, exc.strerror, str(claim)) from exc
    return fd


#: ``(folder, descriptor, folders made for it)`` of the claims :func:`hold_run_folder_for_process` took: open
#: until the process ends (:func:`release_held_claims`). The folders made are the claimed folder and those of
#: its parents that did not exist, deepest first (:func:`_missing_folders`).
_HELD_FOR_PROCESS: list[tuple[Path, int, list[Path]]] = []


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what making it makes."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


#: Claim files a run of this process took again (:func:`claimed_folder`), which removed them as it ended: at
#: the process's end a file at that path is another run's, even one that reuses the inode number.
_HANDED_OVER: set[str] = set()


def release_held_claims() -> None:
    """Close the claims :func:`hold_run_folder_for_process` took (at the process's end), removing a claim
    file that is still this process's own: the run never took it (Hydra or the config failed first, a
    Ctrl-C during the imports), so nothing else removes it. A file the run removed, or another run's file
    made since at that path (another inode), is left alone.

    With its claim removed, the folder is removed too where this process made it and it is empty (with
    the parents made for it, such as ``logs/train/``, each only while empty): a sweep refused by its sweeper
    before its first trial (an Optuna study without ``optimized_metric``) left an empty
    ``multirun-<time>/``. A folder holding anything (a sweep's trials, its ``multirun.yaml``) is kept."""
    while _HELD_FOR_PROCESS:
        folder, fd, made = _HELD_FOR_PROCESS.pop()
        claim = folder / CLAIM_NAME
        mine = os.path.normpath(claim) not in _HANDED_OVER
        with contextlib.suppress(OSError):
            if mine and os.stat(claim).st_ino == os.fstat(fd).st_ino:
                claim.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)
        for made_folder in made if mine else ():
            try:
                made_folder.rmdir()  # only an empty folder: never one holding anything
            except OSError:
                break  # it holds something (or is gone): so do its parents


def hold_run_folder_for_process(folder: Path) -> str | None:
    """Take ``train.py``'s claim on ``folder`` for the rest of this process (before Hydra starts, so that a
    second command in the same folder is refused before Hydra writes its ``.hydra/`` record and log there),
    or return the refusal when another live run holds it. The run's own :func:`claimed_run_folder` takes it
    again and removes it when the run ends, which releases it; the descriptor kept here is then lockless,
    and closed when the process ends (:func:`release_held_claims`, which removes the file only where the
    run never took it)."""
    return _hold_for_process(folder, _run_folder_refusal)


def hold_sweep_folder_for_process(folder: Path) -> str | None:
    """As :func:`hold_run_folder_for_process`, for a sweep's folder (``hydra.sweep.dir``), held by the
    process that runs the sweep until it ends (its trials claim their own ``<n>/`` folders)."""
    return _hold_for_process(folder, _sweep_folder_refusal)


def _hold_for_process(folder: Path, refusal: Callable[[Path, dict], str]) -> str | None:
    made = _missing_folders(folder)
    try:
        fd = _take(folder, CLAIM_NAME, refusal)
    except ConfigError as refused:
        return str(refused)
    if fd is not None:
        if not _HELD_FOR_PROCESS:
            atexit.register(release_held_claims)
        _HELD_FOR_PROCESS.append((folder, fd, made))
    return None
