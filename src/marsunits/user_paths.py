"""Paths as a user types them: a leading ``~`` is the home folder.

A quoted ``"~/x"`` reaches a program as it is, and Python callers pass such strings, so the functions that
take a path read ``~`` and ``~user`` as a shell does. pathlib's ``Path.expanduser`` raises ``RuntimeError``
("Could not determine home directory") for a ``~name`` that names no user, though that is just a file
named so (``~a.LBL``, or an image ``~scan.png`` found in the working folder), which the shell leaves as it
is; :func:`expand_home` leaves it as it is too (``os.path.expanduser``). A train.py run folder given where a
checkpoint file is wanted is told the checkpoint it holds (:func:`run_folder_checkpoint_hint`). Whether a path
names a model package (:func:`is_package`) or nothing a checkpoint option takes (:func:`missing_checkpoint`)
is told from the path alone, importing nothing heavy: ``train.py`` says it before torch is imported; and
the name outputs know a model by (:func:`model_file_name`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "JSON_NAME",
    "WEIGHTS_NAME",
    "expand_home",
    "is_package",
    "meant_path",
    "missing_checkpoint",
    "model_file_name",
    "run_folder_checkpoint_hint",
]

#: The files of a model package folder (``python -m marsunits.export``; :mod:`marsunits.model_package`).
WEIGHTS_NAME = "model.safetensors"
JSON_NAME = "model.json"


def expand_home(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` read as that home folder; a ``~name`` naming no user (and
    any other path) is kept as it is. Never raises for a ``~``; applying it twice is applying it once."""
    return Path(os.path.expanduser(path))


def meant_path(path: Path, folder: bool = False) -> Path | None:
    """The entry of ``path``'s parent folder whose name is closest to the one given (a typo: ``panos`` for
    ``pano``, ``own/mask`` for ``own/masks``, ``defualt.ckpt``), a folder when ``folder``; None when the
    parent is not there or nothing there is close. Hidden entries are not offered."""
    import difflib

    parent = path.parent
    try:
        entries = [e for e in os.scandir(parent) if not e.name.startswith(".")]
    except OSError:
        return None
    names = [e.name for e in entries if not folder or e.is_dir()]
    close = difflib.get_close_matches(path.name, names, n=1)
    return parent / close[0] if close else None


def run_folder_checkpoint_hint(folder: Path) -> str:
    """What ``folder`` is and the checkpoint to give from it, to follow "``<folder> is``", when it is a
    train.py run folder or its ``checkpoints/`` (``best.ckpt``, else ``last.ckpt``, else the one ``.ckpt``
    there): "a train.py run folder, not a checkpoint: give the checkpoint it holds, ckpt_path=<it> (...)";
    else "". One clause, so that the caller's refusal says "give" once. Reads no checkpoint and imports
    nothing heavy: ``python -m marsunits.export`` says it before loading torch."""
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
            if checkpoints != folder:
                kind = "a train.py run folder"
            elif folder.name == "checkpoints":
                kind = "a train.py run's checkpoints/ folder"
            else:
                kind = "a folder"
            given = f"ckpt_path={checkpoints / best}"
            return f"{kind}, not a checkpoint: give the checkpoint it holds, {given}{what}"
    return ""


def is_package(path: str | Path) -> bool:
    """True if ``path`` is a package folder, or its ``model.json`` / ``model.safetensors``."""
    path = Path(path)
    if path.is_dir():
        return (path / JSON_NAME).is_file() or (path / WEIGHTS_NAME).is_file()
    return path.name in (JSON_NAME, WEIGHTS_NAME)


def model_file_name(path: str | os.PathLike[str]) -> str:
    """The name of the model ``path`` loads, as outputs record it beside the network's digest: a checkpoint's
    file name (``best.ckpt``), or a model package's folder name where ``path`` is the package (its folder, its
    ``model.json`` or its ``model.safetensors``: names every package's files share)."""
    path = Path(os.path.normpath(expand_home(path).absolute()))  # "<package>/.." names the folder above
    if is_package(path) and not path.is_dir():
        path = path.parent
    return path.name


def missing_checkpoint(path: Path, option: str) -> str | None:
    """The refusal of ``option`` (``init_ckpt_path``, or ``ckpt_path`` where ``train=false`` scores it) given
    ``path`` (``~`` expanded) that names neither a model package (:func:`is_package`) nor a file (missing, or
    another folder), naming the option and what to give; None where it names one. Looks at the path only:
    whether the file is a checkpoint is :func:`marsunits.fine_tuning.check_source_exists`'s to say.

    A package's ``model.json`` or ``model.safetensors`` that is not there counts as missing, unless its
    folder is a package (holding the other file): one renamed on its way, which the package's own check
    names (:func:`marsunits.model_package.load_model`). Taken for a package by its name alone,
    ``ckpt_path=/nope/model.json`` passed this check and was refused inside the run, after Hydra had made
    the run folder, as ``/model.json does not exist``."""
    if path.is_file() or (path.is_dir() and is_package(path)):
        return None
    if path.name in (JSON_NAME, WEIGHTS_NAME) and path.parent.is_dir() and is_package(path.parent):
        return None
    return (
        f"{option}={path}: no such file or model package. Give a .ckpt written by train.py "
        "(<run dir>/checkpoints/best.ckpt) or a model package folder (python -m marsunits.export)"
        + (", or drop init_ckpt_path to start from ImageNet weights." if option == "init_ckpt_path" else ".")
    )
