"""Atomic file writes: a file is either complete under its final name or absent.

Every writer in the project goes through :func:`atomic_write`: the content is written to a temporary file
in the destination folder (same filesystem, so the rename is atomic on POSIX and Windows), flushed and
fsynced, then moved into place with ``os.replace``. On any error, including ``KeyboardInterrupt``, the
temporary file is removed.

Temporary names are ``.<name>.<pid>@<host>.<random>.tmp``: hidden (prediction's input discovery skips
hidden files), and carrying the writer's process id and a digest of its machine's name, so that
:func:`remove_stale_temporaries` can delete the leftovers of a process of this machine that was killed
(``SIGKILL`` or power loss skip every cleanup handler) while leaving those of a live process (another rank
of a sharded run) alone, and those of another machine writing to the same shared folder (a multi-node run),
whose process ids mean nothing here. ``<name>`` is the destination's name, shortened where needed so that the
temporary name stays within the 255 bytes a file name may have.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "remove_stale_temporaries"]

#: Temporary names written by :func:`atomic_write`: group 1 is the writer's pid, group 2 its machine's
#: digest (absent from the names written before it was added, which count as this machine's).
_TEMP_NAME = re.compile(r"^\..+\.(\d+)(?:@([0-9a-f]{8}))?\.[^.]+\.tmp$")

#: The longest file name most filesystems accept, in bytes.
_NAME_MAX = 255
#: Bytes of a temporary name besides the destination's name: dots, pid, host digest, mkstemp's 8 random
#: characters and ".tmp", with room to spare.
_TEMP_OVERHEAD = 48


def host_digest() -> str:
    """Eight hex digits naming this machine in temporary names, from its host name. (Not its boot id: the
    leftovers of a power loss must still count as this machine's after the reboot. Nodes that share a host
    name, as some container set-ups do, are told apart only by process id, as before.)"""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temporary_prefix(dest: Path) -> str:
    """``.<name>.<pid>@<host>.`` for a temporary next to ``dest``, the name cut (at a character boundary)
    so that the whole temporary name fits in :data:`_NAME_MAX` bytes: a 230-byte output name is valid, and
    its temporary must be too."""
    # Bytes as the filesystem holds them (os.fsencode keeps undecodable names: surrogateescape).
    cut = os.fsencode(dest.name)[: _NAME_MAX - _TEMP_OVERHEAD]
    while cut:
        try:
            cut.decode()  # not inside a UTF-8 character
            break
        except UnicodeDecodeError as err:
            if err.start < len(cut) - 3:
                break  # the name holds bytes that are not UTF-8 anyway: the cut is as good as any
            cut = cut[:-1]
    name = os.fsdecode(cut)
    return f".{name}.{os.getpid()}@{host_digest()}."


def _default_file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (``mkstemp`` makes its files 0600).

    Read once at import: ``os.umask`` can only be read by setting it, which is not safe to repeat while other
    threads create files.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


#: Permissions of every file written here: as an ordinary ``open()`` would make it (0644 under umask 022),
#: so results on a shared server are readable by whoever could read a file the user saved by hand.
FILE_MODE = _default_file_mode()


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, fsync it, then rename it to ``path``.

    Args:
        path: Destination file; parent folders are created.
        write: Writes the whole content to the open binary file object (it may use ``fh.name`` or seek;
            the object is a real named file).

    Returns:
        The destination path.

    Raises:
        OSError: Whatever the filesystem raises (full disk, read-only, permissions); nothing is left
            behind under the temporary name and an existing ``path`` is unchanged.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(dest), suffix=".tmp", dir=dest.parent)
    os.close(fd)  # reopened by name: some writers (tifffile) want a file object with a real ``name``
    try:
        # An existing file keeps its mode (a user may have restricted it); a mount that refuses chmod
        # (some CIFS, FUSE) keeps mkstemp's 0600 rather than failing every write.
        with contextlib.suppress(OSError):
            os.chmod(tmp, dest.stat().st_mode & 0o777 if dest.exists() else FILE_MODE)
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data))  # type: ignore[arg-type,return-value]


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`). A file name that is not valid UTF-8
    (a Latin-1 name from an old archive: Python holds its bytes as surrogates) is written as its own bytes
    (``surrogateescape``, as the filesystem spells it); the strict encoding failed on every run that had
    such an input, so its manifest and gallery could never be written."""
    return atomic_write_bytes(path, text.encode(encoding, errors="surrogateescape"))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (unknown counts as alive: keep its files; a number
    too large to be a process id, in a temporary name of digits, is no process)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OverflowError:  # beyond the C pid_t: os.kill raised this, not an OSError, out of every caller
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # cannot tell: keep the file
    return True


def remove_stale_temporaries(root: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` under ``root`` whose writer process is gone.

    Only files written on this machine are judged (:func:`host_digest`): another machine's process ids
    cannot be checked from here, so its files are kept, and a later run on that machine removes them.
    Symbolic links to folders are not followed (nothing outside ``root`` is touched). A pid reused by an
    unrelated live process only makes a stale file survive until a later call.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    here = host_digest()
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            match = _TEMP_NAME.match(name)
            if match is None or match.group(2) not in (None, here) or process_alive(int(match.group(1))):
                continue
            path = Path(dirpath) / name
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed
