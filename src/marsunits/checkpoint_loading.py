"""Checkpoint files read and checked, and a :class:`~marsunits.task.SegmentationTask` rebuilt from one.

:func:`read_checkpoint` reads a marsunits checkpoint with ``torch.load(weights_only=True)`` after checking its
zip archive's CRCs, and refuses a damaged, cut-short or text file, or one without marsunits metadata, in one
message naming the fix. :func:`load_task` is the one way inference code loads a checkpoint: the network is
rebuilt from the saved hyper-parameters, downloading nothing. :func:`checkpoint_training_record` says how
far a checkpoint's model trained. Telling a file from its first bytes, without torch, is
:mod:`marsunits.checkpoint_files`' job; writing checkpoints, :mod:`marsunits.checkpoint_io`'s.
"""

from __future__ import annotations

import os
import shlex
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from marsunits.checkpoint_files import CheckpointError, _text_file_kind
from marsunits.constants import CLASS_NAMES
from marsunits.task import FORMAT_VERSION, METADATA_KEY, SegmentationTask
from marsunits.training_extent import record_from_checkpoint


def _load_failure_reason(err: BaseException) -> str:
    """The part of a ``torch.load`` error that says what is wrong with the file.

    For a file that is no pickle at all (an image, a text), torch's ``UnpicklingError`` opens with advice to
    re-run with ``weights_only=False``, which is wrong for such a file and unsafe for any: the reason is the
    ``Unsupported operand``/``global`` line further down, so that is what the user is shown.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            after = line.split("WeightsUnpickler error:", 1)[1].strip()
            return after or (lines[i + 1] if i + 1 < len(lines) else "unreadable pickle")
    return lines[0] if lines else "no message"


def _damaged_member(path: Path) -> str | None:
    """The first member of a checkpoint's zip archive whose bytes fail their CRC-32, else None (also for a
    file that is not a zip archive: torch's loader says what is wrong with it). A member stored with CRC 0
    is not checked: torch writes 0 when told not to compute them
    (``torch.utils.serialization.config.save.compute_crc32 = False``), and reads such files."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    continue
                try:
                    with archive.open(info) as member:  # zipfile compares the CRC at the member's end
                        while member.read(1 << 20):
                            pass
                except (zipfile.BadZipFile, EOFError):
                    return info.filename
    except (zipfile.BadZipFile, OSError, EOFError):
        return None
    return None


def _text_not_checkpoint(path: Path, kind: str) -> str:
    """The refusal of a text file (:func:`_text_file_kind`) given as a checkpoint, with the checkpoint to
    give: the run's own ``checkpoints/best.ckpt`` (or ``last.ckpt``) where the file is in a train.py run
    folder (its ``config.yaml``, or ``.hydra/config.yaml``)."""
    said = f"{path} is a text file{'' if kind == 'text' else f' ({kind})'}, not a checkpoint: give the run's "
    said += "checkpoints/best.ckpt (or last.ckpt)"
    run_dir = path.parent.parent if path.parent.name == ".hydra" else path.parent
    for name in ("best.ckpt", "last.ckpt"):
        found = run_dir / "checkpoints" / name
        if found.is_file():
            return f"{said}: here, ckpt_path={shlex.quote(os.fspath(found))}"
    return said + " or a model package folder (python -m marsunits.export)"


def checkpoint_training_record(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """How far the model of a loaded checkpoint dict (:func:`read_checkpoint`) trained: its metadata's
    ``training`` record, or for a checkpoint saved before that record (2026-12-07) the one Lightning's own
    keys give (:func:`~marsunits.training_extent.record_from_checkpoint`); None when neither says."""
    return checkpoint[METADATA_KEY].get("training") or record_from_checkpoint(checkpoint)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A marsunits checkpoint's dict, read with ``torch.load(weights_only=True)`` after checking the zip
    archive's CRC of every member: torch does not, and a file with damaged bytes inside (a bad disk, a
    broken copy) loaded without a word and predicted every pixel as one class.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: a damaged or cut-short file, not a checkpoint torch's safe loader can read, not a
            Lightning checkpoint, or no marsunits metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. Give the path of a .ckpt written by train.py "
            "(<run dir>/checkpoints/*.ckpt)."
        )
    damaged = _damaged_member(path)
    if damaged:
        raise CheckpointError(
            f"{path} is damaged: its member {damaged} fails its CRC check (the bytes changed after it was "
            "written: a bad disk or an interrupted copy?). Copy it again, or use the run's other checkpoint "
            "(best.ckpt or last.ckpt)."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - the unpickler raises anything on garbage (KeyError on "hello")
        with open(path, "rb") as f:
            zip_start = f.read(4) == b"PK\x03\x04"  # torch.save's format is a zip archive
        if zip_start and not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} is a checkpoint file cut short or damaged (its zip archive has no end; "
                f"{path.stat().st_size} bytes): an interrupted copy or download? Copy it again, or use the "
                "run's other checkpoint (best.ckpt or last.ckpt)."
            ) from err
        kind = _text_file_kind(path)
        if kind is not None:  # a run's config.yaml said "(IndexError: pop from empty list)"
            raise CheckpointError(_text_not_checkpoint(path, kind)) from err
        raise CheckpointError(
            f"{path} is not a checkpoint torch's safe loader can read ({type(err).__name__}: "
            f"{_load_failure_reason(err)}). Give a .ckpt written by marsunits' train.py "
            "(<run dir>/checkpoints/best.ckpt); predict.py and init_ckpt_path also take a model package "
            "folder (python -m marsunits.export)."
        ) from err
    if (
        not isinstance(checkpoint, dict)
        or "state_dict" not in checkpoint
        or "hyper_parameters" not in checkpoint
    ):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (expected a dict with 'state_dict' and "
            "'hyper_parameters'). "
            "Give a .ckpt written by marsunits' train.py."
        )
    metadata = checkpoint.get(METADATA_KEY)
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path} has no {METADATA_KEY!r} metadata (missing metadata, never a silent default): it was not "
            "written by marsunits.task.SegmentationTask. Retrain with marsunits' train.py."
        )
    return checkpoint


def load_task(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    expected_class_names: Sequence[str] | None = CLASS_NAMES,
) -> SegmentationTask:
    """Load a marsunits checkpoint into a :class:`SegmentationTask` in eval mode, downloading nothing.

    The file is read with ``torch.load(weights_only=True)`` (no arbitrary code from pickles). The network is
    rebuilt from the saved hyper-parameters with ``encoder_weights=None`` (the state dict overwrites every
    weight, so neither the internet nor the weights package is needed), then the state dict is loaded
    strictly.

    Args:
        path: a ``.ckpt`` written by Lightning from a :class:`SegmentationTask`.
        map_location: device for the tensors (``"cpu"`` by default).
        expected_class_names: the class names (in id order) the caller works with; ``None`` skips the check.

    Returns:
        The task in eval mode, with ``wandb_run_id`` (and the run's name and group), ``trained_sols`` and
        ``trained_image_keys`` restored from the metadata.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: not a PyTorch/Lightning checkpoint, no marsunits metadata, an unknown metadata
            format, another class set than ``expected_class_names``, or weights that do not fit the
            architecture.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location)
    metadata = checkpoint[METADATA_KEY]
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has metadata format_version={version!r}; this marsunits reads version {FORMAT_VERSION}. "
            "Use the marsunits version that wrote it, or retrain."
        )
    if expected_class_names is not None and list(metadata.get("class_names", [])) != list(
        expected_class_names
    ):
        raise CheckpointError(
            f"{path} is a checkpoint from another class set: its classes are {metadata.get('class_names')}, "
            f"expected {list(expected_class_names)}. Use a checkpoint trained on this project's classes."
        )
    hparams = dict(checkpoint["hyper_parameters"])
    for key in ("arch", "encoder", "in_channels", "num_classes"):
        if hparams.get(key) != metadata.get(key):
            raise CheckpointError(
                f"{path} is inconsistent: hyper-parameter {key}={hparams.get(key)!r} but metadata says "
                f"{metadata.get(key)!r}. The file was edited or corrupted; use another checkpoint."
            )
    hparams["encoder_weights"] = None
    try:
        task = SegmentationTask(**hparams)
    except (TypeError, ValueError) as err:
        # Apart from the weights below: an unknown hyper-parameter (a newer marsunits) was reported as
        # weights that do not fit, though none had been compared.
        raise CheckpointError(
            f"{path}: its hyper-parameters do not build a SegmentationTask of this marsunits ({err}). It "
            "was probably written by another marsunits version; use the marsunits version that wrote it, or "
            "retrain."
        ) from err
    try:
        task.load_state_dict(checkpoint["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: the saved weights do not fit the architecture rebuilt from its hyper-parameters "
            f"({err}). "
            "The checkpoint may come from an incompatible marsunits version; retrain or use that version."
        ) from err
    # Before 2026-12-07 no training record: Lightning's own keys give the steps, epoch and best score.
    task.restore_metadata(metadata, checkpoint_training_record(checkpoint))
    return task.to(map_location).eval()
