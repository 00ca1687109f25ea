"""Crash-safe checkpoint files: a Lightning ``CheckpointIO`` plugin that writes atomically.

A checkpoint is first written to ``<path>.tmp-<pid>`` in the same folder, flushed and ``fsync``-ed, then
renamed over ``<path>`` with :func:`os.replace` (atomic on POSIX and Windows within one file system), and the
folder is ``fsync``-ed so the rename itself survives a power cut. A process killed at any moment therefore
leaves either the previous complete ``last.ckpt`` or the new complete one, never a truncated file.
Temporary files left by a killed process are removed by the next save into the same folder.

Why not Lightning's own ``TorchCheckpointIO``: it serialises into memory and writes through an ``fsspec``
transaction, which does not ``fsync`` the file nor its folder, so after an OS crash the renamed file may
still be empty. Remote paths (``s3://``...) are left to it.

Enabled for every trainer config through ``configs/trainer/cpu.yaml``::

    plugins:
      - _target_: marsunits.checkpoint_io.AtomicCheckpointIO
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from marsunits.atomic import process_alive
from marsunits.errors import STORAGE_ERRNOS, MarsUnitsError

__all__ = ["AtomicCheckpointIO", "CheckpointWriteError", "remove_stale_temporaries", "temporary_path"]

log = logging.getLogger(__name__)

_TMP_INFIX = ".tmp-"


def temporary_path(path: Path, pid: int | None = None) -> Path:
    """The temporary file a save to ``path`` writes first: ``<path>.tmp-<pid>``, in the same folder.

    Same folder, because :func:`os.replace` is only atomic within one file system.
    """
    return path.with_name(f"{path.name}{_TMP_INFIX}{os.getpid() if pid is None else pid}")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``<name>.tmp-<pid>`` files in ``folder`` whose process no longer runs; return what was removed.

    Every checkpoint of the folder is covered, not only the one being saved: a run killed while writing
    ``best.ckpt`` must not leave its temporary behind when the resumed run only rewrites ``last.ckpt``.
    Files of live processes (a concurrent save) are kept: they may be mid-write. Process ids are those of
    this machine, so a checkpoint folder must not be written by two machines at once (Lightning writes
    checkpoints from global rank 0 only).
    """
    removed = []
    for candidate in sorted(folder.glob(f"*{_TMP_INFIX}*")):
        suffix = candidate.name.rpartition(_TMP_INFIX)[2]
        if not suffix.isdigit() or not candidate.is_file() or process_alive(int(suffix)):
            continue
        with contextlib.suppress(FileNotFoundError):  # another process may be cleaning up as well
            candidate.unlink()
            removed.append(candidate)
            log.info("removed %s, left by an interrupted checkpoint save", candidate)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network, FUSE) refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


class CheckpointWriteError(MarsUnitsError):
    """A checkpoint could not be written for a reason every further save shares (disk full, quota,
    read-only): one line naming the file, the cause and the fix, instead of torch's zip-writer traceback."""


#: errno values of a disk that takes no more: full, over quota, read-only, not writable.
_STORAGE_ERRNOS = {**STORAGE_ERRNOS, errno.EACCES: "permission to write there was denied"}


def _write_problem(exc: BaseException, folder: Path) -> str | None:
    """The cause of a failed save in words when the disk is the cause, else None (the error stays as it is).

    :func:`torch.save` reports a full disk as a ``RuntimeError`` of its zip writer ("unexpected pos ...",
    "PytorchStreamWriter failed writing file"), the errno lost: less than 1 MiB left free beside the partial
    file is then taken as the cause.
    """
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return f"{_STORAGE_ERRNOS[exc.errno]} ({exc.strerror or exc})"
    if isinstance(exc, RuntimeError | OSError):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        if free < 1 << 20:
            return f"the disk is full ({free / 2**20:.1f} MB free in {folder}; {type(exc).__name__}: {exc})"
    return None


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and durable (see the module docstring).

    Loading is inherited unchanged. Pass it to the trainer as ``plugins=[AtomicCheckpointIO()]``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` with :func:`torch.save` to ``<path>.tmp-<pid>``, fsync, rename to ``path``.

        Args:
            checkpoint: the state Lightning dumps (model, optimiser, loops, callbacks).
            path: target file; its folder is created if missing.
            storage_options: not supported (as in ``TorchCheckpointIO``).

        Raises:
            TypeError: ``storage_options`` is given.
            CheckpointWriteError: the disk is full, over quota, read-only or not writable (one line with the
                fix); the temporary file is removed first and ``path`` keeps its previous content.
            Exception: whatever else :func:`torch.save` or the file system raises, after the same clean-up.
        """
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} does not support `storage_options` (got {storage_options!r}); "
                "remove them from Trainer.save_checkpoint(...)."
            )
        path_str = str(path)
        if not _is_local(path_str):
            super().save_checkpoint(checkpoint, path)
            return
        target = Path(path_str.removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        tmp = temporary_path(target)
        try:
            with open(tmp, "wb") as f:
                # torch.save looked up at call time (not imported by name) so tests can interrupt it.
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException as exc:
            problem = _write_problem(exc, target.parent)  # before the partial file is removed
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if problem is None:
                raise
            raise CheckpointWriteError(
                f"could not write the checkpoint {target}: {problem}; free space, or write the runs to "
                "another disk with paths.log_dir=<folder>. The checkpoints already in that folder are kept "
                "as they were"
            ) from exc
        _fsync_dir(target.parent)

    def remove_checkpoint(self, path: Any) -> None:
        """Remove ``path`` (as Lightning does) and stale temporary files in its folder."""
        super().remove_checkpoint(path)
        if _is_local(str(path)):
            remove_stale_temporaries(Path(str(path).removeprefix("file://")).parent)
