"""The batch-norm statistics ``adapt_bn=true`` adapted, kept in ``output_dir`` so a re-run predicts with them.

``adapt_bn=true`` estimates the statistics on every input of the folder
(:mod:`marsunits.inference.adaptation`). Estimated again by a resumed run with another ``batch_size`` or
``threads``, they came out a float rounding apart: the images of the two runs were drawn by two networks, and
their contact files named two digests. So the run that adapts keeps the adapted layers' buffers
(``running_mean``, ``running_var``, ``num_batches_tracked``: all that adaptation changes) in
``OUT/adapted_batchnorm.safetensors``, beside ``prediction_settings.json``, and a later run of the folder that
would adapt to the same inputs with the same network reads them instead of adapting again
(:func:`load_adapted`). ``overwrite=true`` adapts again and replaces the file once every image is predicted
again. In a sharded run each rank adapts on its shard and the ranks add up their sums, so every rank holds
the same statistics (:meth:`~marsunits.inference.runner._Session._adapt_batchnorm`), or every rank takes the
file rank 0 read (its bytes, sent to the others: rank 0 alone decides whether the run reads or adapts); rank 0
writes it.

The file is safetensors (tensors and a JSON header, nothing executable), 170 kB for the default network,
written atomically. Its one metadata entry, ``marsunits``, is JSON: the adapted network's digest
(``network_sha256``, which every contact file of the folder names), the checkpoint's network it was adapted
from (``checkpoint_network_sha256``, ``prediction_settings.json``'s ``network_sha256``), the inputs it was
adapted to (``adapt_bn_inputs``, as that record holds them), the window layout (``tile``, ``overlap``), the
method's version and ``adapted_on_images``. ``prediction_settings.json`` names the adapted network too
(``adapted_network_sha256``), so a file deleted or swapped for another folder's is told from a folder begun
before the files were kept. A file that cannot be read, is missing or holds another adapted network than the
record names, was adapted from another network, to other inputs or windows, or whose tensors are not those
its digest names, is refused (:class:`AdaptedStateError`): adapting again would predict the rest of the folder
with another network than the images already there. A folder under the file's name is refused before
anything is predicted (:func:`refuse_folder_in_the_way`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from marsunits.atomic import atomic_write_bytes
from marsunits.errors import ConfigError, counted

if TYPE_CHECKING:
    from marsunits.task import SegmentationTask

__all__ = [
    "ADAPTED_STATE_NAME",
    "AdaptedStateError",
    "adapted_buffers",
    "load_adapted",
    "missing_refusal",
    "refuse_folder_in_the_way",
    "read_adapted_bytes",
    "read_adapted_state",
    "write_adapted_state",
]

#: File name of the stored statistics in the output folder.
ADAPTED_STATE_NAME = "adapted_batchnorm.safetensors"
#: The metadata key of the file (one key: safetensors writes a map of several in hash order).
_META_KEY = "marsunits"
#: What the file is, in its metadata (``format``).
_FORMAT = "marsunits adapted batch-norm statistics"
#: The metadata members that decide whether the file is this run's statistics (with ``adapt_bn_inputs``).
_DECIDING = ("checkpoint_network_sha256", "tile", "overlap", "adapt_bn_version")
#: What every refusal of the file ends with: the two ways out.
_FIX = "run with overwrite=true to adapt again and predict every image, or give another output_dir"


class AdaptedStateError(ConfigError):
    """The stored statistics cannot be used: unreadable, damaged, or of another network, inputs or windows
    (a :class:`~marsunits.errors.ConfigError`: refused as another setting of the folder is, status 2)."""

    #: What is wrong with the file, without its path and the fix ("cannot be read (...)", "holds ...").
    fault: str = ""


def adapted_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers of every batch-norm layer of ``model`` (running mean and variance, the batch count), by
    their ``state_dict`` names: what :mod:`marsunits.inference.adaptation` changes, and nothing else."""
    buffers: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for key, value in module.named_buffers(recurse=False):
                if value is not None:
                    buffers[f"{name}.{key}" if name else key] = value
    return buffers


def write_adapted_state(
    output_dir: Path, buffers: Mapping[str, torch.Tensor], record: Mapping[str, Any]
) -> Path:
    """Write an adapted network's batch-norm ``buffers`` (:func:`adapted_buffers`) and ``record`` (the module
    docstring's members) to ``output_dir``/:data:`ADAPTED_STATE_NAME`, atomically; returns its path."""
    # clone(): safetensors refuses tensors that share storage; contiguous(): it stores dense row-major data.
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in buffers.items()}
    meta = json.dumps({"format": _FORMAT, **record}, sort_keys=True)
    data = save_safetensors_bytes(tensors, {_META_KEY: meta})
    return atomic_write_bytes(output_dir / ADAPTED_STATE_NAME, data)


def read_adapted_bytes(path: Path) -> bytes:
    """The bytes of the stored statistics at ``path``, as :func:`read_adapted_state` takes them.

    Raises:
        FileNotFoundError: there is no such file.
        AdaptedStateError: it cannot be read (a disk's error, no permission).
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _refused(path, f"cannot be read ({exc.strerror or exc})") from exc


def read_adapted_state(
    path: Path, data: bytes | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the record of the stored statistics at ``path``, or in ``data``, the bytes of that
    file as another process read them (:func:`read_adapted_bytes`; ``path`` then only names it).

    Raises:
        FileNotFoundError: there is no such file.
        AdaptedStateError: it cannot be read (not safetensors, cut short, no record of ours).
    """
    if data is None:
        data = read_adapted_bytes(path)
    try:
        tensors = load_safetensors_bytes(data)
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size])
        record = json.loads(header.get("__metadata__", {}).get(_META_KEY, "null"))
    except (SafetensorError, ValueError, AttributeError) as exc:
        raise _refused(path, f"cannot be read (not a whole safetensors file: {exc})") from exc
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise _refused(path, "cannot be read (it does not record which network and inputs it was adapted to)")
    return tensors, record


def refuse_folder_in_the_way(output_dir: Path, resume_needs_it: bool) -> None:
    """Refuse a folder under :data:`ADAPTED_STATE_NAME` in ``output_dir``: it could be neither read, written
    (the rename at the end of a whole ``overwrite=true`` run failed) nor removed. ``resume_needs_it``: the
    folder's images were predicted with statistics kept there, now gone, so only ``overwrite=true`` goes on.

    Raises:
        AdaptedStateError: one sentence naming the folder and what to do.
    """
    path = output_dir / ADAPTED_STATE_NAME
    if path.is_dir():
        then = f"then {_FIX}" if resume_needs_it else "then run again, or give another output_dir"
        raise AdaptedStateError(
            f"{path} is a folder, where predict.py keeps the batch-norm statistics adapt_bn=true adapts: "
            f"remove or rename it, {then}"
        )


def missing_refusal(path: Path, output_dir: Path, digest: str) -> AdaptedStateError:
    """The refusal of a resume whose kept statistics at ``path`` are gone, though ``output_dir``'s record
    names the adapted network ``digest`` its images were predicted with."""
    return AdaptedStateError(
        f"{path} is missing: {output_dir}'s images were predicted with batch-norm statistics adapted to its "
        f"inputs (network {digest[:12]}…, as prediction_settings.json records), which it kept, and adapting "
        f"again would mix two networks' outputs; put the file back, or {_FIX}"
    )


def load_adapted(
    task: nn.Module,
    path: Path,
    expected: Mapping[str, Any],
    recorded_network: str | None = None,
    data: bytes | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``task`` (in eval mode) with the batch-norm statistics stored at ``path``, and their record.
    ``data``: the file's bytes as another process read them (a sharded run's rank 0), not read again.

    ``expected``: this run's ``checkpoint_network_sha256`` (the loaded network's digest), ``adapt_bn_inputs``,
    ``tile``, ``overlap`` and ``adapt_bn_version``; the file must have been adapted with the same. The copy's
    digest must be the ``network_sha256`` the file records (the one the folder's contact files name), and
    that one ``recorded_network`` where given (``prediction_settings.json``'s ``adapted_network_sha256``).

    Raises:
        FileNotFoundError: there is no such file.
        AdaptedStateError: one sentence naming the file, what is wrong and the fix.
    """
    from marsunits.inference.output_settings import same_adaptation_inputs
    from marsunits.model_package import network_sha256

    tensors, record = read_adapted_state(path, data)
    if record.get("checkpoint_network_sha256") != expected["checkpoint_network_sha256"]:
        then, now = (str(r.get("checkpoint_network_sha256"))[:12] for r in (record, expected))
        raise _refused(
            path,
            f"holds batch-norm statistics adapted from another network ({then}…) than this checkpoint's "
            f"({now}…)",
        )
    differing = [
        f"{key} ({json.dumps(record.get(key))} then, {json.dumps(expected[key])} now)"
        for key in _DECIDING[1:]
        if record.get(key) != expected[key]
    ]
    if not same_adaptation_inputs(record.get("adapt_bn_inputs"), expected["adapt_bn_inputs"]):
        n_then, n_now = (
            int((r or {}).get("files", 0))
            for r in (record.get("adapt_bn_inputs"), expected["adapt_bn_inputs"])
        )
        differing.insert(
            0,
            f"input files ({counted(n_then, 'file')} then, {counted(n_now, 'file')} now, or some of them "
            "changed)",
        )
    if differing:
        raise _refused(
            path,
            "holds batch-norm statistics adapted with other settings than this run's: "
            + "; ".join(differing),
        )
    if recorded_network is not None and record.get("network_sha256") != recorded_network:
        raise _refused(
            path,
            f"holds other batch-norm statistics (network {str(record.get('network_sha256'))[:12]}…) than "
            f"those {path.parent}'s images were predicted with (network {recorded_network[:12]}…, as "
            "prediction_settings.json records; another folder's file?)",
        )
    adapted = copy.deepcopy(task).eval()
    own = adapted_buffers(adapted)
    if set(own) != set(tensors) or any(own[k].shape != tensors[k].shape for k in own):
        raise _refused(
            path, "does not hold the batch-norm layers of this network (damaged, or another network's)"
        )
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(tensors[key].to(value))
    if network_sha256(cast("SegmentationTask", adapted)) != record.get("network_sha256"):
        raise _refused(
            path,
            "does not hold the statistics it records (its tensors do not give the adapted network's digest, "
            f"{str(record.get('network_sha256'))[:12]}…): the file was damaged or edited",
        )
    return adapted, record


def _refused(path: Path, what: str) -> AdaptedStateError:
    """The refusal of the stored statistics at ``path``: ``what`` is wrong, so the folder cannot be resumed
    with the network its images were predicted with; :data:`_FIX`."""
    error = AdaptedStateError(
        f"{path} {what}: the folder's images cannot be resumed with the network they were predicted with "
        f"(adapt_bn=true), and adapting again would mix two networks' outputs; {_FIX}"
    )
    error.fault = what
    return error
