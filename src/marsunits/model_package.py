"""Model packages: a trained model in a form that is safe to share, and the one loader for models.

A Lightning ``.ckpt`` is a pickle: unpickling a file from someone else can run arbitrary code. A **model
package** holds the same model without any pickle:

```
<out>/
  model.safetensors   the network's weights (safetensors: raw tensors + a JSON header, nothing executable)
  model.json          what the model is and where it comes from (UTF-8 JSON, described below)
```

``model.json`` keys:

* ``format``: ``"marsunits-model-package"``; ``package_version``: ``1`` (:data:`PACKAGE_VERSION`).
* ``weights_file``: ``"model.safetensors"``; ``weights_sha256``: hex SHA-256 of that file, so a weights file
  from another package (or a partial copy) is caught.
* ``metadata``: the checkpoint's ``checkpoint["marsunits"]`` block (:attr:`SegmentationTask.metadata`):
  ``format_version``, ``class_names``, ``palette``, ``mean``, ``std`` (for [0, 1] inputs), ``in_channels``,
  ``tile_size`` (px), ``arch``, ``encoder``, ``num_classes``, ``class_map`` (training data's native id ->
  project id; JSON object keys are strings), ``dataset``, ``wandb_run_id``, ``encoder_depth``,
  ``decoder_channels``, ``size_divisor``, ``training`` (how far the model trained:
  :func:`marsunits.training_extent.training_record`; absent before 2026-12-07).
* ``hparams``: every :class:`SegmentationTask` constructor argument (``task.hparams``) with
  ``encoder_weights`` set to ``null``, so the network is rebuilt without downloading anything.
* ``provenance``: ``dataset``, ``wandb_run_id``, ``source_checkpoint`` (file name),
  ``source_checkpoint_sha256``, ``epoch``, ``global_step``, ``marsunits_version``, ``torch_version``,
  ``created`` (ISO 8601, UTC).

:func:`load_model` is the loader inference code should use: it reads a package (no unpickling at all) or a
Lightning checkpoint (through :func:`marsunits.checkpoint_loading.load_task`,
``torch.load(weights_only=True)``), and refuses a checkpoint that needs arbitrary unpickling unless the
caller says it trusts the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shlex
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

import marsunits
from marsunits.atomic import host_digest, process_alive
from marsunits.checkpoint_loading import load_task
from marsunits.constants import CLASS_NAMES
from marsunits.file_digest import file_sha256
from marsunits.task import (
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointError,
    SegmentationTask,
    _normalise_class_map,
)
from marsunits.training_extent import check_record, record_from_provenance
from marsunits.training_images import METADATA_KEY as IMAGES_KEY
from marsunits.training_images import check_images_record
from marsunits.user_paths import JSON_NAME, WEIGHTS_NAME, expand_home, is_package
from marsunits.user_paths import run_folder_checkpoint_hint as _run_folder_hint

__all__ = [
    "JSON_NAME",
    "PACKAGE_FORMAT",
    "PACKAGE_VERSION",
    "WEIGHTS_NAME",
    "file_sha256",
    "folder_refusal",
    "is_package",
    "load_model",
    "load_package",
    "network_sha256",
    "write_package",
]

PACKAGE_FORMAT = "marsunits-model-package"
#: Version of the ``model.json`` layout; bump when its keys change meaning.
PACKAGE_VERSION = 1

#: ``metadata`` keys a package must carry (the checkpoint metadata contract, see ``marsunits.task``).
METADATA_KEYS: tuple[str, ...] = (
    "format_version",
    "class_names",
    "palette",
    "mean",
    "std",
    "in_channels",
    "tile_size",
    "arch",
    "encoder",
    "num_classes",
    "class_map",
    "dataset",
    "wandb_run_id",
    "encoder_depth",
    "decoder_channels",
    "size_divisor",
)
PROVENANCE_KEYS: tuple[str, ...] = (
    "dataset",
    "wandb_run_id",
    "source_checkpoint",
    "source_checkpoint_sha256",
    "epoch",
    "global_step",
    "marsunits_version",
    "torch_version",
    "created",
)
#: Hyper-parameters that must agree between ``hparams`` and ``metadata`` (as :func:`load_task` checks).
_CONSISTENT_KEYS: tuple[str, ...] = ("arch", "encoder", "in_channels", "num_classes")
#: Further keys held in both ``metadata`` and ``hparams`` (absent from one of them in some older packages):
#: the model is built from ``hparams``, so an edit of ``metadata`` alone (a new palette) would be ignored.
#: ``class_names``, ``class_map`` and ``dataset`` too: the class-set check reads ``metadata`` while the
#: model reports ``hparams``' names, and ``labels_class_map=checkpoint`` scores with ``hparams``' map and
#: dataset, so an edit of one copy was accepted and half ignored.
_EDITABLE_KEYS: tuple[str, ...] = (
    "palette",
    "mean",
    "std",
    "tile_size",
    "encoder_depth",
    "decoder_channels",
    "class_names",
    "class_map",
    "dataset",
)


def _json_value(value: Any) -> Any:
    """Plain JSON-able copy: tuples -> lists, mapping keys -> str (JSON objects only have string keys)."""
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


#: The temporary names :func:`_temporary_path` gives a package's files: group 1 is the writer's PID, group 2
#: its machine's digest (:func:`marsunits.atomic.host_digest`; absent from names written before 2026-12-06,
#: which count as this machine's, as :func:`marsunits.atomic.remove_stale_temporaries` counts them).
_TEMPORARY = re.compile(
    rf"^(?:{re.escape(WEIGHTS_NAME)}|{re.escape(JSON_NAME)})\.tmp-(\d+)(?:@([0-9a-f]{{8}}))?$"
)


def _temporary_path(path: Path) -> Path:
    """``<name>.tmp-<pid>@<host digest>`` next to ``path``: the machine tells whose process id it is."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}@{host_digest()}")


def _interrupted_export_files(out: Path) -> list[Path]:
    """Temporary package files in ``out`` whose writer process, of this machine, is gone: what a killed
    export left.

    A file of another process still running (an export writing into ``out`` now) is not among them, nor one
    written on another machine (a shared folder: its process id cannot be checked from here, and the export
    that writes it may be running); one named with this process's PID is (called before this process writes
    any: an earlier process's PID).
    """
    found = []
    here = host_digest()
    for path in out.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and match.group(2) in (None, here):
            pid = int(match.group(1))
            if pid == os.getpid() or not process_alive(pid):
                found.append(path)
    return found


def _write_files(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write each ``(path, data)`` to a temporary file next to ``path`` (:func:`_temporary_path`), fsync it,
    and only once all are written rename each over its ``path``, in order.

    The package's two files are put in place together: written one after the other, a Ctrl-C, SIGTERM or
    full disk between them left ``model.safetensors`` without ``model.json``, a folder the same command then
    refused as "already holds a model package". On any error the temporaries are removed.
    """
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            tmp = _temporary_path(path)
            written.append((tmp, path))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise


def write_package(
    task: SegmentationTask,
    out: str | Path,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``task`` as a model package folder ``out`` (``model.safetensors`` + ``model.json``).

    Both files are written to temporary names, then renamed, ``model.json`` last; it records the weights'
    SHA-256, so an interrupted export never leaves a package that loads with the wrong weights, and one
    stopped before the renames leaves no package file (the same command then writes the package). One
    stopped between the renames leaves ``model.safetensors`` alone: the same command, ``overwrite`` or not,
    finds there byte for byte the weights it writes and completes the package with ``model.json``.

    Args:
        task: the model to package (its weights are copied to CPU).
        out: package folder; created if missing.
        provenance: training provenance (see the module docstring); missing keys are recorded as ``null``,
            ``marsunits_version``, ``torch_version`` and ``created`` are filled in here.
        overwrite: replace an existing package in ``out``.

    Returns:
        The package folder.

    Raises:
        FileExistsError: ``out`` already holds a package, or one of its two files (named as incomplete)
            other than this export's own weights, and ``overwrite`` is False, ``out`` is a file or a folder
            with other files, or a file stands where one of its parent folders would be.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out={out} is a file; give a folder for the model package.")
    # The nearest folder above out that exists must be a folder: mkdir said only "[Errno 20] Not a directory".
    above = next((parent for parent in out.parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise FileExistsError(
            f"out={out} lies under {above}, which is a file, not a folder, so the package folder cannot be "
            "made there; give an out under a folder (or move that file away)."
        )
    #: model.safetensors alone: this export's own first half if its bytes are the ones written below.
    weights_alone = False
    if is_package(out) and not overwrite:
        held = [name for name in (WEIGHTS_NAME, JSON_NAME) if (out / name).is_file()]
        if held == [WEIGHTS_NAME]:
            weights_alone = True  # decided once the weights to write are known
        elif len(held) == 1:  # "already holds a model package" for a folder load_model refuses as incomplete
            raise _incomplete_package(out, held[0])
        else:
            raise FileExistsError(
                f"{out} already holds a model package; pass overwrite=true to replace it, or choose another "
                "out."
            )
    # What an export killed while writing (SIGTERM from a job's time limit, SIGKILL) left: ours to remove,
    # not "other files" (the same command run again was refused, even with overwrite=true).
    leftovers = _interrupted_export_files(out) if out.is_dir() else []
    # A package is a folder of its own: written among other files (a folder of images), it is easily moved
    # or copied apart from them, or they from it. The weights an export left alone are completed only in a
    # folder of their own too, and not while another export may be writing there.
    others = (
        sorted(p.name for p in out.iterdir() if p not in leftovers and p.name != WEIGHTS_NAME)
        if out.is_dir() and (weights_alone or not is_package(out))
        else []
    )
    if others and all(_TEMPORARY.match(name) for name in others):
        # Of an export that may be writing now, here or on another machine sharing the folder: named, with
        # what to do, rather than "a folder with other files".
        raise FileExistsError(
            f"out={out} holds {', '.join(others)}, the temporary file of an export writing there now (a "
            "process of this machine with that number, or one of another machine sharing the folder, named "
            "after '@' by its host digest) or of one killed on another machine. Wait for that export to "
            "finish, or give another out; if none is running, delete the file and run again."
        )
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise FileExistsError(
            f"out={out} is a folder with other files ({shown}); a model package needs a folder of its own: "
            "give a new or empty folder as out."
        )
    out.mkdir(parents=True, exist_ok=True)
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)

    # clone(): safetensors refuses tensors that share storage; contiguous(): it stores dense row-major data.
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in task.state_dict().items()}
    # One metadata key only: safetensors writes its metadata map in hash order, so with two keys the same
    # weights gave different files (and weights_sha256) from one export to the next. model.json says what
    # made the package.
    weights = save_safetensors_bytes(tensors, metadata={"format": "pt"})
    weights_sha256 = hashlib.sha256(weights).hexdigest()
    if weights_alone and _sha256_or_none(out / WEIGHTS_NAME) != weights_sha256:
        raise _incomplete_package(out, WEIGHTS_NAME)  # other weights: not ours to describe
    hparams = dict(task.hparams)
    hparams["encoder_weights"] = None
    metadata = task.metadata
    prov: dict[str, Any] = {key: None for key in PROVENANCE_KEYS}
    prov.update({"dataset": metadata["dataset"], "wandb_run_id": metadata["wandb_run_id"]})
    prov.update(dict(provenance or {}))
    prov.update(
        {
            "marsunits_version": marsunits.__version__,
            "torch_version": torch.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    document = {
        "format": PACKAGE_FORMAT,
        "package_version": PACKAGE_VERSION,
        "weights_file": WEIGHTS_NAME,
        "weights_sha256": weights_sha256,
        "metadata": _json_value(metadata),
        "hparams": _json_value(hparams),
        "provenance": _json_value(prov),
    }
    # allow_nan=False: NaN/inf are not JSON; a hyper-parameter holding one is a bug to surface here.
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    if weights_alone:
        # An export of these weights stopped between its two renames (model.json is renamed last): the
        # weights in place are the ones it wrote, byte for byte, so the description completes the package.
        # It was refused as incomplete, "pass overwrite=true", while the stop's line said "run the same
        # command again".
        _write_files([(out / JSON_NAME, text.encode("utf-8"))])
    else:
        _write_files([(out / WEIGHTS_NAME, weights), (out / JSON_NAME, text.encode("utf-8"))])
    return out


def _incomplete_package(out: Path, held: str) -> FileExistsError:
    """The refusal of a folder holding ``held``, one package file without the other, that this export did
    not write (other weights, or a description alone)."""
    (missing,) = {WEIGHTS_NAME, JSON_NAME} - {held}
    return FileExistsError(
        f"out={out} holds {held} without {missing}, an incomplete model package (an export stopped before it "
        "finished, or a partial copy); pass overwrite=true to write the package there, or choose another out."
    )


#: What to do about a damaged or hand-broken model.json: whoever received the package has no checkpoint to
#: export again, so the first way out is the package as it came.
_RESTORE = (
    "undo the edit, or copy the package folder again from where it came; whoever has its checkpoint can "
    "re-export it (python -m marsunits.export)."
)


def network_sha256(task: SegmentationTask) -> str:
    """SHA-256 of the network as it computes: every tensor of ``task.state_dict()`` (name, dtype, shape,
    values, in name order) and the sub-class grouping (``hparams.subclasses``, which groups the outputs
    without a tensor of its own).

    The same for a model package and the checkpoint it was exported from, or a checkpoint saved again, and
    different for any other weights, whatever a package's ``provenance`` says (plain JSON, taken on trust:
    a package claiming a checkpoint as its source was taken for that checkpoint's model).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(task.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    subclasses = task.hparams.get("subclasses")
    digest.update(json.dumps(None if subclasses is None else [int(c) for c in subclasses]).encode())
    return digest.hexdigest()


def _package_dir(path: Path) -> Path:
    """The package folder ``path`` names: itself if a folder, or named as no file of the package (a folder
    that is not there); else the folder of the file. Idempotent: ``load_package`` hands its folder to
    ``read_package_json``, which took a missing ``/nope`` for a file of ``/`` and said ``/model.json does
    not exist`` for ``/nope/model.json``."""
    if path.is_dir() or not (path.is_file() or path.name in (JSON_NAME, WEIGHTS_NAME)):
        return path
    return path.parent


def read_package_json(path: str | Path) -> dict[str, Any]:
    """Read and check a package's ``model.json`` (format, version, required keys); no weights are read.

    A byte-order mark at its start (Windows editors write one) is not an error.

    Raises:
        FileNotFoundError: no ``model.json`` in the package folder.
        CheckpointError: not valid JSON, another format or version, or a required key is missing.
    """
    json_path = _package_dir(Path(path)) / JSON_NAME
    if not json_path.is_file():
        renamed = _renamed_package_json(json_path.parent)
        if renamed is not None:
            raise FileNotFoundError(
                f"{json_path} does not exist, but the folder holds {renamed}, a model package's description: "
                f"it is read from {JSON_NAME} only; rename it back (`mv {shlex.quote(str(renamed))} "
                f"{shlex.quote(str(json_path))}`)."
            )
        raise FileNotFoundError(
            f"{json_path} does not exist: a model package is a folder with {JSON_NAME} and {WEIGHTS_NAME}. "
            "Export one with `python -m marsunits.export ckpt_path=<ckpt> out=<folder>`."
        )
    try:
        # utf-8-sig: a model.json opened and saved in a Windows editor starts with a byte-order mark, which
        # the JSON reader refused ("not valid JSON; re-export"), and the receiver of a package has no
        # checkpoint to export again.
        document = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{json_path} is not valid JSON ({err}); {_RESTORE}") from err
    if not isinstance(document, dict) or document.get("format") != PACKAGE_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(
            f"{json_path} is not a marsunits model package (expected format {PACKAGE_FORMAT!r}, "
            f"found {found!r}). Export one with `python -m marsunits.export`."
        )
    if document.get("package_version") != PACKAGE_VERSION:
        raise CheckpointError(
            f"{json_path} has package_version={document.get('package_version')!r}; this marsunits reads "
            f"version {PACKAGE_VERSION}. Use the marsunits version that wrote it, or re-export."
        )
    for block, keys in (("metadata", METADATA_KEYS), ("hparams", _CONSISTENT_KEYS)):
        value = document.get(block)
        if not isinstance(value, dict):
            raise CheckpointError(f"{json_path} has no {block!r} object; {_RESTORE}")
        missing = [k for k in keys if k not in value]
        if missing:
            raise CheckpointError(
                f"{json_path}: {block} lacks the keys {missing} (missing metadata is an error, never a "
                f"silent default). {_RESTORE[0].upper()}{_RESTORE[1:]}"
            )
    for key in ("weights_sha256", "provenance"):
        if key not in document:
            raise CheckpointError(f"{json_path} lacks the key {key!r}; {_RESTORE}")
    return document


def folder_refusal(path: Path) -> str | None:
    """The refusal of ``path`` given as the model where it is a folder that is no model package, naming the
    checkpoint it holds (:func:`~marsunits.user_paths.run_folder_checkpoint_hint`) or what to give; None where
    it is no folder, a package, or a folder whose package description was renamed on its way
    (:func:`load_model` reads that one, to name the file to rename back). ``predict.py`` refuses such a
    folder before Hydra makes the run's log folder, in the words :func:`load_model` uses."""
    if not path.is_dir() or is_package(path) or _renamed_package_json(path) is not None:
        return None
    return _no_model_in(path)


def _no_model_in(folder: Path) -> str:
    """What ``folder``, given as the model and holding no package, is, and what to give instead."""
    held = _run_folder_hint(folder)  # a train.py run folder: its best.ckpt named
    held = (
        held
        or f"a folder without {JSON_NAME} or {WEIGHTS_NAME}: give a model package folder or a .ckpt file."
    )
    return f"{folder} is {held}"


def _renamed_package_json(folder: Path) -> Path | None:
    """A ``*.json`` file in ``folder`` (other than ``model.json``) that is a package's description, or None.

    Why: a ``model.json`` renamed on its way was "does not exist ... Export one with python -m
    marsunits.export", which its receiver, without the checkpoint, cannot do.
    """
    found = []
    for candidate in sorted(folder.glob("*.json")):
        try:
            if not candidate.is_file() or candidate.stat().st_size >= 16 * 2**20:
                continue
            document = json.loads(candidate.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        # Its "format", not a mention of it anywhere (a note naming the package).
        if isinstance(document, dict) and document.get("format") == PACKAGE_FORMAT:
            found.append((candidate, document.get("weights_sha256")))
    # Of several (another package's description beside it), the one describing the weights in the folder.
    weights = folder / WEIGHTS_NAME
    digest = _sha256_or_none(weights) if weights.is_file() and len(found) > 1 else None
    return next(
        (c for c, sha in found if digest is not None and sha == digest), found[0][0] if found else None
    )


def _sha256_or_none(path: Path) -> str | None:
    """:func:`file_sha256` of ``path``, or None if it cannot be read."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def _comparable(key: str, value: Any) -> Any:
    """``value`` of the duplicated ``key`` in the form the two copies are compared in.

    A class map's ids are compared as the model reads them (``{"3": 0}`` and ``{3: 0}`` are one map, in any
    key order); a value that is not a class map is compared as it is, so the mismatch is reported, not raised.
    """
    if key == "class_map":
        try:
            return _normalise_class_map(value)
        except (TypeError, ValueError, AttributeError):
            return value
    return value


def load_package(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    expected_class_names: Sequence[str] | None = CLASS_NAMES,
) -> SegmentationTask:
    """Load a model package (folder, or its ``model.json``/``model.safetensors``) without any unpickling.

    Returns:
        The task in eval mode on ``map_location``, ``wandb_run_id`` (and the run's name and group),
        ``trained_sols``, ``trained_image_keys`` and ``training_record`` restored.

    Raises:
        FileNotFoundError: a package file is missing.
        CheckpointError: a file is malformed, the weights do not match ``model.json`` (checksum, missing or
            extra tensors, shapes), or another class set than ``expected_class_names``. The message names the
            file.
    """
    folder = _package_dir(Path(path))
    json_path, weights_path = folder / JSON_NAME, folder / WEIGHTS_NAME
    document = read_package_json(folder)
    metadata, hparams = document["metadata"], dict(document["hparams"])
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has metadata format_version={metadata['format_version']!r}; this marsunits reads "
            f"version {FORMAT_VERSION}. Use the marsunits version that wrote it, or re-export."
        )
    _check_metadata_forms(metadata, json_path)
    if expected_class_names is not None and list(metadata["class_names"]) != list(expected_class_names):
        raise CheckpointError(
            f"{json_path} is a model for another class set: its classes are {metadata['class_names']}, "
            f"expected {list(expected_class_names)}. Use a model trained on this project's classes."
        )
    for key in (*_CONSISTENT_KEYS, *_EDITABLE_KEYS):
        if key in _EDITABLE_KEYS and key not in hparams:
            # Absent from 'hparams' in some older packages (or removed by hand): the model is built from the
            # copy 'metadata' holds (required, see METADATA_KEYS), not from the constructor's default, which
            # gave ImageNet's mean/std to a model that 'metadata' says was trained with others.
            hparams[key] = metadata[key]
            continue
        if _comparable(key, hparams.get(key)) != _comparable(key, metadata.get(key)):
            raise CheckpointError(
                f"{json_path} is inconsistent: hparams {key}={hparams.get(key)!r} but metadata says "
                f"{metadata.get(key)!r}. The model is built from 'hparams' and described and checked by "
                "'metadata', so a key edited in one copy alone is half ignored: make the two the same (edit "
                "both), or re-export the package."
            )
    if not weights_path.is_file():
        others = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
        # The file model.json describes, by its checksum: the first by name was named whatever it held
        # (another model's weights beside the renamed ones), and renamed back it failed that checksum.
        renamed = next((p for p in others if _sha256_or_none(p) == document["weights_sha256"]), None)
        if renamed is not None:
            # Weights given a descriptive name on their way: "incomplete, copy the whole folder" was wrong.
            raise FileNotFoundError(
                f"{weights_path} does not exist, but the folder holds {renamed}: a package's weights are "
                f"read from {WEIGHTS_NAME} only; rename it back (`mv {shlex.quote(str(renamed))} "
                f"{shlex.quote(str(weights_path))}`)."
            )
        if others:
            raise FileNotFoundError(
                f"{weights_path} does not exist, and the folder's {', '.join(str(p) for p in others)} are "
                f"not the weights {JSON_NAME} describes (their SHA-256 is not its weights_sha256): the "
                "package is incomplete. Copy the whole folder again from where it came, or re-export."
            )
        raise FileNotFoundError(
            f"{weights_path} does not exist: the package is incomplete. Copy the whole folder, or re-export."
        )
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != document["weights_sha256"]:
        raise CheckpointError(
            f"{weights_path} does not match {json_path} (SHA-256 differs from weights_sha256): the weights "
            "file was replaced, edited or copied partially. Copy the whole package again, or re-export."
        )
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({err}); re-export.") from err

    hparams["encoder_weights"] = None
    try:
        # First on the meta device, which holds shapes without memory: a model.json describing a huge network
        # (edited, damaged or sent so; a decoder of 65,536 channels) is refused by its weights' shapes. The
        # network was built first, and building it was a torch allocator traceback, or took all the memory.
        with torch.device("meta"):
            outline = SegmentationTask(**hparams)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{json_path}: its hparams do not build a SegmentationTask ({err}). If model.json was edited, "
            f"{_RESTORE} Otherwise the package may come from an incompatible marsunits version; use that "
            "version or re-export."
        ) from err
    _check_tensors(outline.state_dict(), tensors, weights_path)
    task = SegmentationTask(**hparams)
    task.load_state_dict(tensors, strict=True)
    _check_training_record(metadata, json_path)
    # Packages of before 2026-12-07 have no training record: the provenance's steps and epoch.
    task.restore_metadata(
        metadata, metadata.get("training") or record_from_provenance(document.get("provenance"))
    )
    return task.to(map_location).eval()


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


#: ``metadata`` keys whose form the constructor does not check, what they must be, and the test.
_METADATA_FORMS: tuple[tuple[str, str, Any], ...] = (
    (
        "class_names",
        "a list of class names",
        lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    ),
    ("mean", "a list of numbers, one per input channel", _is_number_list),
    ("std", "a list of numbers, one per input channel", _is_number_list),
    # A number or null too: train.py records data.name as Hydra reads it (data.name=2024 is a number), and
    # every reader of the name takes it as str() (null as none); a list or an object is no name.
    (
        "dataset",
        "a data set name (text, a number or null)",
        lambda v: v is None or isinstance(v, str | int | float),
    ),
    ("wandb_run_id", "a W&B run id (text) or null", _is_optional_str),
    ("wandb_run_name", "a W&B run name (text) or null", _is_optional_str),
    ("wandb_run_group", "a W&B run group (text) or null", _is_optional_str),
)


def _check_metadata_forms(metadata: Mapping[str, Any], json_path: Path) -> None:
    """Raise :class:`CheckpointError` naming ``json_path`` and the key if one of :data:`_METADATA_FORMS` is
    present in another form.

    Why: ``class_names: null`` stopped in a ``TypeError`` traceback; ``mean`` or ``std`` null is the
    constructor's "default" and normalised with ImageNet's values whatever the model was trained with (a
    silent default); a data set name or run id of another form failed only where it was read.
    """
    for key, expected, fits in _METADATA_FORMS:
        if key in metadata and not fits(metadata[key]):
            raise CheckpointError(
                f"{json_path}: metadata {key}={metadata[key]!r} is not {expected}; {_RESTORE}"
            )


def _is_sol_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _check_training_record(metadata: Mapping[str, Any], json_path: Path) -> None:
    """Raise :class:`CheckpointError` naming ``json_path`` if ``trained_sols`` or ``trained_image_keys`` is
    not in the form train.py writes (``{data set: [sol, ...]}`` and ``[key, ...]``, or null / absent).

    Why: they are plain JSON a user may edit (a list of sols for the map), and they are read only when a
    scored run writes its reports or a training run checks its validation sols: a malformed one crashed
    predict.py after every image was predicted, with a traceback and no manifest, summary or metrics.
    """
    sols = metadata.get("trained_sols")
    if sols is not None and not (
        isinstance(sols, dict) and all(isinstance(k, str) and _is_sol_list(v) for k, v in sols.items())
    ):
        raise CheckpointError(
            f"{json_path}: metadata trained_sols={sols!r} is not a map of data set to sols "
            '(e.g. {"marsscapes": [122, 123]}) or null. It records the sols the model trained on; put back '
            "the value the package came with (or null if they are unknown), or re-export the package."
        )
    keys = metadata.get("trained_image_keys")
    if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CheckpointError(
            f"{json_path}: metadata trained_image_keys={str(keys)[:80]!r} is not a list of strings or null. "
            "It records the images the model trained on; put back the value the package came with (or null "
            "if they are unknown), or re-export the package."
        )
    problem = check_record(metadata.get("training"))
    if problem is not None:  # read by predict.py's warning and summary.json: a crash there lost the run
        raise CheckpointError(
            f"{json_path}: metadata training {problem}. It records how far the model trained (optimiser "
            "steps, epoch, best validation mIoU); put back the value the package came with (or null if it is "
            "unknown), or re-export the package."
        )
    problem = check_images_record(metadata.get(IMAGES_KEY))
    if problem is not None:  # read by predict.py's summary: a crash there lost the run
        raise CheckpointError(
            f"{json_path}: metadata {IMAGES_KEY} {problem}. It records how many training images were grey "
            "and colour; put back the value the package came with (or null if it is unknown), or re-export "
            "the package."
        )


def _check_tensors(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], path: Path
) -> None:
    """Raise :class:`CheckpointError` naming ``path`` and the tensors that are missing, extra or misshapen."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if expected[k].shape != found[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    if shapes:
        problems.append(f"wrong shapes ({'; '.join(shapes[:5])}{' ...' if len(shapes) > 5 else ''})")
    if problems:
        raise CheckpointError(
            f"{path} does not fit the network described by {path.parent / JSON_NAME}: {', '.join(problems)}. "
            "The package is corrupt or mixed from two models; re-export it from its checkpoint."
        )


def _needs_arbitrary_unpickling(err: BaseException) -> bool:
    """True if ``load_task`` failed because the pickle references globals outside torch's safe allowlist.

    Why the message test: torch raises the same ``UnpicklingError`` type for garbage files ("Unsupported
    operand") and for pickles that import callables; only the latter can be loaded by trusting the file, so
    only then is ``trust_checkpoint`` worth suggesting. Torch words the latter two ways: "Unsupported global:
    GLOBAL x was not an allowed global" and, for modules it blocks outright (``os``/``posix``, the classic
    ``os.system`` payload), "Trying to load unsupported GLOBAL posix.system whose module posix is blocked".
    """
    cause = err.__cause__
    return isinstance(cause, pickle.UnpicklingError) and _UNSAFE_GLOBAL.search(str(cause)) is not None


#: Torch's two wordings of a refused global; group 1 is its dotted name.
_UNSAFE_GLOBAL = re.compile(r"unsupported (?:global: )?global ([\w.]+)", re.IGNORECASE)


def _unsafe_reason(err: BaseException) -> str:
    """The disallowed global named by torch's message, if any."""
    found = _UNSAFE_GLOBAL.search(str(err.__cause__))
    return found.group(1) if found else "a Python object torch does not allow"


def _load_trusted_checkpoint(
    path: Path, map_location: str | torch.device, expected_class_names: Sequence[str] | None
) -> SegmentationTask:
    """Unpickle a checkpoint the caller trusts (``weights_only=False``), then load it through load_task.

    Only the parts a model needs (``state_dict``, ``hyper_parameters``, metadata) are kept and re-saved to a
    temporary file, which :func:`load_task` reads with ``weights_only=True``; so all of load_task's checks
    apply, and a checkpoint whose model parts themselves hold arbitrary objects is still refused.
    """
    # The caller vouched for this file: this is the documented way to run its pickle.
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as err:
        # The pickle names a class of the sender's code (a callback of their own, another version of a
        # library) that is not importable here: unpickling needs that code, trusted or not.
        raise CheckpointError(
            f"{path} could not be unpickled even trusted: its pickle needs Python code that is not "
            f"installed here ({type(err).__name__}: {err}). Ask whoever sent it for a model package "
            "(`python -m marsunits.export ckpt_path=<ckpt> out=<folder> trust_checkpoint=true`, run where "
            "that code is installed), or install that code here (its module on PYTHONPATH) and try again."
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (expected a dict, found {type(checkpoint)})."
        )
    kept = {k: checkpoint[k] for k in ("state_dict", "hyper_parameters", METADATA_KEY) if k in checkpoint}
    # Lightning's counts, plain ints: how far an older checkpoint (no metadata "training") trained.
    kept.update({k: checkpoint[k] for k in ("epoch", "global_step") if type(checkpoint.get(k)) is int})
    with tempfile.TemporaryDirectory(prefix="marsunits-trusted-") as tmp:
        clean = Path(tmp) / path.name
        torch.save(kept, clean)
        try:
            task = load_task(clean, map_location=map_location, expected_class_names=expected_class_names)
        except CheckpointError as err:
            hint = (
                " Even trusted, its model parts (state_dict, hyper_parameters, metadata) hold objects other "
                "than tensors and plain Python values, which a marsunits checkpoint never does."
                if _needs_arbitrary_unpickling(err)
                else ""
            )
            raise CheckpointError(str(err).replace(str(clean), str(path)) + hint) from err
    return task


def zipped_package_json(path: Path) -> str | None:
    """The member name of a package's ``model.json`` in the zip archive ``path`` (the shortest, where it
    holds several), or None: ``path`` is no zip archive of a model package (an unreadable file too).
    Torch's checkpoints are zip archives as well, of ``<name>/data.pkl``: never a model.json."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None  # unreadable: load_task names the file and the problem
    inside = sorted((n for n in names if n == JSON_NAME or n.endswith(f"/{JSON_NAME}")), key=len)
    return inside[0] if inside else None


def _refuse_zipped_package(path: Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` is a zip archive holding a package's ``model.json``
    (:func:`zipped_package_json`).

    Why: a package is often shared as a zip of its folder, and given as it came it was refused as "not a
    checkpoint torch's safe loader can read ([enforce fail at inline_container.cc:180] ...)", which did not
    say what to do.
    """
    member = zipped_package_json(path)
    if member is None:
        return
    dest = path.with_suffix("") if path.suffix else path.with_name(path.name + "_unzipped")
    folder = f"{dest}/{member[: -len(JSON_NAME)]}"
    raise CheckpointError(
        f"{path} is a zip archive of a model package ({member} inside), not a checkpoint: unzip it "
        f"(`unzip {shlex.quote(str(path))} -d {shlex.quote(str(dest))}`) and give the folder holding "
        f"{JSON_NAME}: ckpt_path={shlex.quote(folder)}"
    )


def load_model(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    trust_checkpoint: bool = False,
    expected_class_names: Sequence[str] | None = CLASS_NAMES,
) -> SegmentationTask:
    """Load a model from a package (safe) or a Lightning checkpoint, in eval mode on ``map_location``.

    Args:
        path: a package folder (or its ``model.json``/``model.safetensors``), or a ``.ckpt`` file (``~`` is
            expanded).
        map_location: device for the model.
        trust_checkpoint: allow a ``.ckpt`` whose pickle needs arbitrary Python objects to be unpickled
            (``torch.load(weights_only=False)``). Unpickling can execute code: only for files you trust.
            Ignored for packages, which contain no pickle.
        expected_class_names: class names (in id order) the caller works with; ``None`` skips the check.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a usable marsunits model, or it is a checkpoint that needs
            arbitrary unpickling and ``trust_checkpoint`` is False (the message explains how to export a
            safe package).
    """
    # `~` expanded as UnitMapper.load, predict.py and the export expand it.
    path = expand_home(path)
    if not path.exists() and path.name in (JSON_NAME, WEIGHTS_NAME) and is_package(path.parent):
        # One of a package's files renamed on its way, given by its own name: the folder's check says which
        # file to rename back ("does not exist" alone did not).
        return load_package(path.parent, map_location, expected_class_names)
    if not path.exists():
        raise FileNotFoundError(
            f"model {path} does not exist; give a .ckpt written by train.py or a model package folder "
            "(python -m marsunits.export)"
        )
    if path.suffix.lower() == ".safetensors" and not is_package(path):
        # A package's weights under another name: torch read it as "not a Lightning checkpoint (expected a
        # dict with 'state_dict' ...)". Beside its model.json, the package's own check says to rename it.
        if (path.parent / JSON_NAME).is_file() and not (path.parent / WEIGHTS_NAME).is_file():
            return load_package(path.parent, map_location, expected_class_names)
        raise CheckpointError(
            f"{path} is a safetensors weights file, not a checkpoint: weights alone do not say what network "
            f"they belong to. Give a model package folder, {JSON_NAME} (what the model is) beside its "
            f"weights named {WEIGHTS_NAME}, as `python -m marsunits.export` writes it; ask whoever sent the "
            "file for the whole folder."
        )
    if is_package(path):
        return load_package(path, map_location, expected_class_names)
    if path.is_dir() and _renamed_package_json(path) is not None:
        # Both files renamed on their way (marsscapes.json, marsscapes.safetensors): the description says so,
        # naming the file to rename back (then the weights' check names theirs).
        read_package_json(path)
    if path.is_dir():
        raise FileNotFoundError(_no_model_in(path))
    _refuse_zipped_package(path)
    try:
        return load_task(path, map_location=map_location, expected_class_names=expected_class_names)
    except CheckpointError as err:
        if not _needs_arbitrary_unpickling(err):
            raise
        if not trust_checkpoint:
            raise CheckpointError(
                f"Refusing to load {path}: its pickle references {_unsafe_reason(err)}, which torch's safe "
                "loader does not allow, and unpickling such a file can execute arbitrary code. If you trust "
                "where it came from, export it once to a safe model package: `python -m marsunits.export "
                f"{shlex.quote(f'ckpt_path={path}')} out=<folder> trust_checkpoint=true`, then use the "
                "package as ckpt_path (or load the file itself: predict.py trust_checkpoint=true, or "
                "trust_checkpoint=True to load_model in Python)."
            ) from err
    return _load_trusted_checkpoint(path, map_location, expected_class_names)
