"""What a file named as a checkpoint is, told from its first bytes without importing torch.

A ``torch.save`` file starts as a zip archive or a pickle (:data:`_CHECKPOINT_STARTS`); a text file (a
run's ``config.yaml``, notes) given as ``ckpt_path`` or ``init_ckpt_path`` is refused by
:func:`check_checkpoint_start`, naming the option, before ``train.py`` imports torch and Lightning (some
10 s) or makes its run folder. :mod:`marsunits.checkpoint_loading` imports these names from here (its
:func:`~marsunits.checkpoint_loading.read_checkpoint` reads the whole checkpoint, with torch).
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any

from marsunits.errors import ConfigError, MarsUnitsError
from marsunits.user_paths import is_package

__all__ = ["CheckpointError", "NotACheckpointError", "check_checkpoint_start", "model_hyper_parameters"]


class CheckpointError(MarsUnitsError, ValueError):
    """A file is not a usable marsunits checkpoint; the message names the file and what to do. A
    :class:`~marsunits.errors.MarsUnitsError` and a ``ValueError``; not a ``ConfigError``, which the checks
    before Hydra catch (:class:`NotACheckpointError` is one)."""


class NotACheckpointError(CheckpointError, ConfigError):
    """A file named as a checkpoint does not even start as one (:func:`check_checkpoint_start`): a
    :class:`CheckpointError`, and a :class:`~marsunits.errors.ConfigError` so that ``train.py`` refuses it
    before Hydra makes the run folder."""


#: The first bytes of a file ``torch.save`` writes: a zip archive (its format since torch 1.6), or the
#: legacy pickle format, which starts with the pickle protocol opcode.
_CHECKPOINT_STARTS: tuple[bytes, ...] = (b"PK\x03\x04", b"\x80")


def check_checkpoint_start(path: str | Path, option: str, package_ok: bool = True) -> None:
    """Refuse a file whose first bytes are not those of a ``torch.save`` file (:data:`_CHECKPOINT_STARTS`):
    a text file (said as such, :func:`_text_file_kind`), an image or an empty file given as ``option``. Only
    the file's start is read (four bytes, and up to 64 KiB to tell text) and nothing heavy is imported, so
    the command line can check before torch is imported and the run folder is made; whether the file is a
    whole marsunits checkpoint is left to :func:`~marsunits.checkpoint_loading.read_checkpoint`.
    ``package_ok``: the option also takes a model package folder (as advised).

    Raises:
        NotACheckpointError: naming ``option``, the file, what it starts with and what to give.
    """
    with open(path, "rb") as f:
        start = f.read(4)
    if start.startswith(_CHECKPOINT_STARTS):
        return
    kind = _text_file_kind(Path(path)) if start else None  # a run's config.yaml, notes: said as text
    text = f"is a text file{'' if kind in (None, 'text') else f' ({kind})'} and " if kind else ""
    found = "is empty" if not start else f"{text}starts with {start!r}"
    raise NotACheckpointError(
        f"{option}={path} is not a checkpoint: the file {found}, where a checkpoint written by torch.save "
        "is a zip archive (PK\\x03\\x04) or a pickle (\\x80). Give a .ckpt written by marsunits' train.py "
        "(<run dir>/checkpoints/best.ckpt or last.ckpt)"
        + (" or a model package folder (python -m marsunits.export)." if package_ok else ".")
    )


#: How much of a file :func:`_text_file_kind` reads to tell text from a checkpoint's bytes.
_TEXT_SNIFF_BYTES = 1 << 16

#: The start of a YAML document: ``---``, a comment, or a ``key:`` line (a Hydra config.yaml's first line,
#: ``key: value`` or a mapping's ``key:`` alone on its line).
_YAML_START = re.compile(r"(---|#|[A-Za-z_][\w.-]*[ \t]*:(\s|$))")  # \s: a mapping's key line ends in \n


def _text_file_kind(path: Path) -> str | None:
    """``"YAML"``, ``"JSON"`` or ``"text"`` when ``path`` holds text, told by its content (UTF-8 without
    NUL bytes in its first 64 KiB, not a ``torch.save`` start), whatever its name; None for anything else
    (a checkpoint's zip or pickle bytes, an image, an empty file) or a file that cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(_TEXT_SNIFF_BYTES)
    except OSError:
        return None
    if not head or b"\x00" in head or head.startswith(_CHECKPOINT_STARTS):
        return None
    try:  # not final where only the first 64 KiB were read: a character cut there is not a fault
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=len(head) < _TEXT_SNIFF_BYTES)
    except UnicodeDecodeError:
        return None
    start = text.lstrip()
    if start.startswith(("{", "[")):
        return "JSON"
    return "YAML" if _YAML_START.match(start) else "text"


def model_hyper_parameters(path: Path) -> dict[str, Any] | None:
    """The hyper-parameters of the model at ``path`` as the run's model reports them (a model package's
    ``hparams`` in ``model.json``, over their copy in its ``metadata`` where an older package lacks them; a
    checkpoint's ``hyper_parameters``), without building the network; None where they cannot be read so (a
    damaged or legacy file, one needing ``trust_checkpoint``: the run's load says why). The checks made
    before Hydra read a model's settings through this (``train.py``'s ``init_ckpt_path``, ``predict.py``'s
    ``labels_class_map``).

    A checkpoint is memory-mapped (``mmap=True``): its pickle is read, not its weights' bytes. Torch maps only
    its zip format and paths that are valid UTF-8; others are left to the run."""
    folder = path if path.is_dir() else path.parent
    if is_package(folder) and (path.is_dir() or path.suffix in (".json", ".safetensors")):
        try:
            document = json.loads((folder / "model.json").read_text(encoding="utf-8-sig"))
            hparams, metadata = document.get("hparams"), document.get("metadata")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return None
        if not isinstance(hparams, dict) or not isinstance(metadata, dict):
            return None
        return {**metadata, **hparams}
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        hparams = checkpoint["hyper_parameters"]
    except Exception:  # noqa: BLE001 - the unpickler raises anything on garbage: the run's load says it
        return None
    return dict(hparams) if isinstance(hparams, dict) else None
