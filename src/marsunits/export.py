"""Export a training checkpoint to a model package that is safe to share (no pickle).

Usage::

    python -m marsunits.export ckpt_path=logs/train/<run>/checkpoints/best.ckpt out=models/unet_lite0
    python -m marsunits.export ckpt_path=third_party.ckpt out=models/theirs trust_checkpoint=true

writes ``<out>/model.safetensors`` (weights) and ``<out>/model.json`` (classes, palette, normalisation,
architecture hyper-parameters, class map, tile size and training provenance); the layout is described in
:mod:`marsunits.model_package`. Load either form with :func:`marsunits.model_package.load_model`.

Arguments are ``key=value`` (as for ``train.py``): ``ckpt_path`` (required), ``out`` (required),
``trust_checkpoint`` (``false``; ``true`` unpickles a checkpoint that needs arbitrary Python objects, which
can execute code: only for files you trust), ``overwrite`` (``false``). Errors are printed as one line
and the exit status is 2 (set ``MARSUNITS_TRACEBACK=1`` to see the traceback).
"""

from __future__ import annotations

import os
import pickle
import shlex
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marsunits.errors import (
    USER_ERRORS,
    ConfigError,
    TerminatedError,
    readable,
    sigterm_raises,
    stop_said,
    storage_problem,
)
from marsunits.user_paths import JSON_NAME, WEIGHTS_NAME, expand_home, is_package, run_folder_checkpoint_hint

# torch, Lightning and the model code are imported inside the functions: they take seconds to import,
# and argument or path errors should be reported at once.

__all__ = ["export_checkpoint", "main", "parse_args"]

PROG = "python -m marsunits.export"
_KEYS: dict[str, str] = {
    "ckpt_path": "Lightning checkpoint (.ckpt) written by train.py",
    "out": "folder to write model.safetensors and model.json into",
    "trust_checkpoint": "true/false (default false): unpickle a checkpoint needing arbitrary objects",
    "overwrite": "true/false (default false): replace an existing package in out",
}
#: Reported as one line: the entry points' user errors, plus an existing package in ``out``.
_CLI_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, FileExistsError)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _checkpoint_progress(path: Path, trusted: bool) -> dict[str, Any]:
    """``epoch`` and ``global_step`` stored in a checkpoint (``None`` where absent).

    ``mmap=True`` reads the pickle without loading tensor data, so this second read is cheap; torch maps
    only its zip format, so a checkpoint in the legacy format (``torch.save(...,
    _use_new_zipfile_serialization=False)``, which ``load_model`` reads) is read whole, and torch maps only
    files whose path is valid UTF-8, so one under a folder named in Latin-1 bytes (a run folder from an old
    archive) is read whole too: its export stopped in ``UnicodeEncodeError``.
    """
    import torch

    mmap = zipfile.is_zipfile(path) and readable(str(path)) == str(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        if not trusted:
            raise
        # Reached only after load_model accepted the file under trust_checkpoint=True.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    return {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}


def export_checkpoint(
    ckpt_path: str | Path,
    out: str | Path,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
) -> Path:
    """Convert a Lightning checkpoint into a model package folder; return the folder.

    Args:
        ckpt_path: a ``.ckpt`` written by marsunits' ``train.py`` (``~`` is expanded).
        out: package folder (created; ``~`` is expanded).
        trust_checkpoint: see :func:`marsunits.model_package.load_model`.
        overwrite: replace a package already in ``out``.

    Raises:
        FileNotFoundError: ``ckpt_path`` does not exist (``last``, train.py's word, naming the newest run's
            ``best.ckpt`` under ``logs/`` of ``$MARSUNITS_ROOT`` or the current folder).
        ConfigError: ``ckpt_path`` is a model package (its folder or one of its files: exported already), or
            another folder or a ``.json`` or ``.safetensors`` file.
        CheckpointError: the checkpoint is unusable or needs trust (see ``load_model``).
        FileExistsError: ``out`` holds a package and ``overwrite`` is False.
    """
    # `~` expanded as predict.py and train.py expand it: zsh (macOS's shell) and sh leave `out=~/models/m`
    # to the program, and a folder named `~` was made in the current one.
    ckpt, out = expand_home(ckpt_path), expand_home(out)
    # Checked before importing the model code (seconds), so a mistyped path is reported at once.
    # A package's folder, or one of its two files (predict.py reads the package by either): told "give the
    # .ckpt file" alone, or that a file was "a folder or a model package file", as if the export had not been
    # done. A file renamed on its way (not there, its folder holding the other) is the package's too.
    package = ckpt if ckpt.is_dir() else ckpt.parent if ckpt.name in (JSON_NAME, WEIGHTS_NAME) else None
    if package is not None and package.is_dir() and is_package(package):
        of = "" if package == ckpt else f" (a file of the package {package})"
        raise ConfigError(
            f"ckpt_path={ckpt} is a model package already{of}: there is nothing to export. Share the folder "
            f"as it is (predict.py ckpt_path={ckpt} reads it); to export again, give the .ckpt it came from."
        )
    # A package's file name in no package (ckpt_path=/nope/model.json) is missing, as any other path: "is a
    # folder or a model package file" said what it is not. One renamed on its way is the package's.
    package_file = ckpt.exists() or (ckpt.parent.is_dir() and is_package(ckpt.parent))
    if ckpt.is_dir() or (ckpt.suffix in (".json", ".safetensors") and package_file):
        held = run_folder_checkpoint_hint(ckpt) if ckpt.is_dir() else ""  # a run folder: its best.ckpt named
        raise ConfigError(
            f"ckpt_path={ckpt} is {held}"
            if held
            else f"ckpt_path={ckpt} is a folder or a model package file; give the .ckpt file to export."
        )
    if out.suffix.lower() == ".zip" and not out.is_dir():
        # A folder named m.zip was made: no zip tool opens it, and a mail client does not attach it as a file.
        folder = out.with_suffix("")
        raise ConfigError(
            f"out={out} names a zip archive, but a model package is a folder: give out={folder}, then zip it "
            f"to send it (`cd {shlex.quote(str(folder.parent))} && zip -r {shlex.quote(out.name)} "
            f"{shlex.quote(folder.name)}`); predict.py reads the folder once unzipped."
        )
    if os.fspath(ckpt_path) == "last":
        # train.py's word for resuming, carried over: told "no such file", where predict.py names the newest
        # run's best.ckpt; refused by predict.py's check, in this program's name. Its runs are under logs/ of
        # the folder it ran in, or of $MARSUNITS_ROOT (configs/paths/default.yaml).
        from marsunits.inference.checks import refuse_train_last

        root = Path(os.environ.get("MARSUNITS_ROOT") or Path.cwd())
        refuse_train_last(ckpt_path, expand_home(root) / "logs", PROG)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt}: no such file. Give a .ckpt written by train.py "
            "(<run dir>/checkpoints/best.ckpt or last.ckpt)."
        )
    from marsunits.model_package import file_sha256, load_model, write_package, zipped_package_json

    if zipped_package_json(ckpt) is not None:
        # load_model's advice (unzip, then ckpt_path=<folder>) is predict.py's: the export then refused that
        # folder as a package. A zipped package is exported already.
        raise ConfigError(
            f"ckpt_path={ckpt} is a model package already (zipped): there is nothing to export. Unzip it "
            "and give its folder to predict.py or UnitMapper.load; to export again, give the .ckpt it came "
            "from."
        )
    task = load_model(ckpt, map_location="cpu", trust_checkpoint=trust_checkpoint)
    provenance = {
        "source_checkpoint": ckpt.name,
        "source_checkpoint_sha256": file_sha256(ckpt),
        **_checkpoint_progress(ckpt, trusted=trust_checkpoint),
    }
    return write_package(task, out, provenance=provenance, overwrite=overwrite)


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{key}={value!r}: expected true or false.")


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` arguments (see the module docstring) into ``export_checkpoint`` keyword args.

    Raises:
        ConfigError: an argument is not ``key=value``, a key is unknown or repeated, or a required key is
            missing.
    """
    args: dict[str, str] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"argument {item!r} is not key=value; usage: {PROG} ckpt_path=<ckpt> out=<folder>"
            )
        if key not in _KEYS:
            raise ConfigError(f"unknown argument {key!r}; valid keys: {list(_KEYS)}.")
        if key in args:
            raise ConfigError(f"argument {key!r} given twice.")
        args[key] = value
    missing = [k for k in ("ckpt_path", "out") if not args.get(k)]
    if missing:
        raise ConfigError(f"missing {' and '.join(missing)}; usage: {PROG} ckpt_path=<ckpt> out=<folder>")
    return {
        "ckpt_path": args["ckpt_path"],
        "out": args["out"],
        "trust_checkpoint": _flag("trust_checkpoint", args.get("trust_checkpoint", "false")),
        "overwrite": _flag("overwrite", args.get("overwrite", "false")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 written, 2 user error, 130 Ctrl-C, 143
    SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        lines = [
            f"usage: {PROG} ckpt_path=<ckpt> out=<folder> [trust_checkpoint=false] [overwrite=false]",
            "Write <out>/model.safetensors and <out>/model.json, a model package that is safe to share.",
            *(f"  {k}: {v}" for k, v in _KEYS.items()),
        ]
        try:
            print("\n".join(lines), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left; Python's own advice for this case
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    args: dict[str, Any] = {}
    try:
        with sigterm_raises():
            args = parse_args(argv)
            out = export_checkpoint(**args)
    except (KeyboardInterrupt, TerminatedError) as stop:
        # One line, as predict.py and train.py say it (a traceback; SIGTERM ended the command silently). The
        # package's files are both written before either is put in place (write_package), so none is left in
        # out and the same command writes the package.
        if os.environ.get("MARSUNITS_TRACEBACK"):
            raise
        how, status = stop_said(stop)
        print(f"{PROG}: {how}; the package is not complete: run the same command again", file=sys.stderr)
        return status
    except Exception as exc:  # noqa: BLE001 - re-raised below unless a user error or a full disk
        # The package folder where the error names no file (a write() refused), and the export's own fix:
        # the default line named train.py's and predict.py's options.
        full = storage_problem(
            exc,
            "free space, or give another out=<folder>; then run the same command again",
            args.get("out", "a file"),
        )
        if os.environ.get("MARSUNITS_TRACEBACK") or not (full or isinstance(exc, _CLI_ERRORS)):
            raise
        # One line, whatever the message: scripts and users read the first line only.
        print(readable(f"{PROG}: error: {full or ' '.join(str(exc).split())}"), file=sys.stderr)
        return 2
    # A folder named in Latin-1 bytes as \xNN: a strict UTF-8 console refused it once the package was written
    print(readable(f"wrote model package {out}/ ({out / 'model.safetensors'}, {out / 'model.json'})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
