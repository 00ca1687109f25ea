"""The model side of prediction: a :class:`Predictor` (checkpoint -> class probabilities for one image)
and the decoding side: :class:`ImageFileDataset` + :func:`make_loader` (a torch DataLoader whose workers
decode the next images while the network runs on the current one).

Loading one image per loader item (batch size 1 of *images*) keeps memory bounded by the largest image;
the network batches are made of windows cut from that image inside
:func:`marsunits.inference.tiling.sliding_window`.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from marsunits.data.io import ImageReadError, read_image_noted
from marsunits.errors import ConfigError, MarsUnitsError, counted
from marsunits.inference.output_settings import image_file_identity
from marsunits.inference.runtime import ForwardFn, TorchForward
from marsunits.inference.tiling import NETWORK_STRIDE, sliding_window


def select_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises:
        ConfigError: The name is not a device, is not a CPU or CUDA device, or asks for a CUDA device that
            is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device={name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):
        # "mps" (a Mac's GPU), "xpu", "meta": torch.device took the name and moving the model failed later,
        # in torch's words ("PyTorch is not linked with support for mps devices").
        raise ConfigError(
            f"device={name!r}: prediction runs on the CPU or a CUDA GPU only; use auto, cpu, cuda or cuda:N"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} asks for CUDA but no CUDA device is available; use device=cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(  # torch's "invalid device ordinal" came when the model was moved
            f"device={name!r}: this machine has {counted(torch.cuda.device_count(), 'CUDA device')}, "
            "numbered from 0; use cuda:0 (or cuda)"
        )
    return device


class Predictor:
    """Turns images into per-class probabilities with a forward function, tile by tile.

    Args:
        forward: Maps float ``(N, in_channels, h, w)`` in [0, 1] on ``device`` (``h``, ``w`` multiples of
            ``stride``) to softmax probabilities ``(N, num_classes, h, w)`` float32 (see
            :mod:`marsunits.inference.runtime`; a plain logits ``nn.Module`` is wrapped in a
            :class:`~marsunits.inference.runtime.TorchForward`).
        in_channels: Channels the model expects (1 or 3); images are converted to it.
        tile: Window side in pixels (multiple of ``stride``).
        overlap: Window overlap fraction in [0, 1).
        batch_size: Windows per forward pass.
        device: Where the forward function runs; on CUDA windows are copied from pinned memory.
        num_classes: Output channels of the model.
        stride: Network stride (input sides must be multiples of it). ``None``: the ``size_divisor`` of
            ``forward`` when it is a :class:`~marsunits.task.SegmentationTask` (16 for the default model,
            which decodes from 1/16; what ``predict.py`` uses), else
            :data:`~marsunits.inference.tiling.NETWORK_STRIDE`. With a forward function (ONNX, TTA), pass
            the task's ``size_divisor`` to lay the windows out as ``predict.py`` does.
        mirror_average: Test-time augmentation (``predict.py tta=true``): the mean of the image's
            probabilities and the mirrored probabilities of its left-right mirror image,
            ``(P(x) + mirror(P(mirror(x)))) / 2``, each tiled as a whole. A mirrored image then gets exactly
            the mirrored probabilities, which averaging window by window did not give: the window layout
            and the padding of short sides are not mirror-symmetric (1.6 % of a 256 x 310 image's pixels
            differed). Only the horizontal flip: training flips left-right only (the sky is always up).
            Twice the network time.
    """

    def __init__(
        self,
        forward: ForwardFn | nn.Module,
        *,
        in_channels: int,
        tile: int,
        overlap: float = 0.25,
        batch_size: int = 4,
        device: torch.device | str = "cpu",
        num_classes: int = 3,
        stride: int | None = None,
        mirror_average: bool = False,
    ) -> None:
        if stride is None:  # the model's own: a fixed 32 laid windows out unlike predict.py for d4 models
            stride = int(getattr(forward, "size_divisor", NETWORK_STRIDE))
        self.device = torch.device(device)
        if isinstance(forward, nn.Module):
            forward = TorchForward(forward, self.device, channels_last=True)
        self.forward = forward
        self.in_channels = in_channels
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.stride = stride
        self.mirror_average = mirror_average

    def predict(self, image: torch.Tensor) -> np.ndarray:
        """Class probabilities of one image.

        Args:
            image: Float32 CPU tensor ``(in_channels, H, W)`` in [0, 1], any ``H, W >= 1``.

        Returns:
            Float32 ``(num_classes, H, W)``: softmax probabilities of each window, blended with the
            Gaussian weights of :mod:`marsunits.inference.tiling`; each pixel's values sum to 1.
        """
        if image.shape[0] != self.in_channels:
            raise ValueError(
                f"the model expects {counted(self.in_channels, 'channel')}, got an image of shape "
                f"{tuple(image.shape)}"
            )
        probs = self._tiled(image)
        if self.mirror_average:
            mirrored = self._tiled(torch.flip(image, dims=(-1,)))
            probs += mirrored[:, :, ::-1]
            probs *= 0.5
        return probs

    def _tiled(self, image: torch.Tensor) -> np.ndarray:
        return sliding_window(
            self.forward,
            image,
            tile=self.tile,
            overlap=self.overlap,
            batch_size=self.batch_size,
            device=self.device,
            out_channels=self.num_classes,
            stride=self.stride,
        )


@dataclass
class LoadedImage:
    """One decoded input (or the reason it could not be decoded).

    Attributes:
        index: Position in the dataset's file list.
        image: Float32 ``(H, W, C)`` in [0, 1] as read (C in {1, 3}), or None on error.
        error: Why the file could not be read, or None.
        seconds: Time spent reading and decoding.
        file_identity: Size, modification time and SHA-256 of the file before it was read
            (:func:`~marsunits.inference.output_settings.image_file_identity`), or None.
        note: A warning about how the file was read (:func:`~marsunits.data.io.read_image_noted`: 8-bit
            values in a 16-bit file, a TIFF of several pages), for the main process to say (a loader
            worker's log line was lost or repeated), or None.
    """

    index: int
    image: np.ndarray | None
    error: str | None
    seconds: float
    file_identity: dict[str, Any] | None = None
    note: str | None = None


class ImageFileDataset(Dataset[LoadedImage]):
    """Decodes image files for prediction; a file that fails becomes an item with ``error`` set.

    Errors are returned, not raised, so that one bad file cannot stop a DataLoader worker.

    Args:
        files: The image paths.
        max_megapixels: Refuse images larger than this (checked from the header before decoding). None: no
            limit, not even the decompression-bomb limit of the image library (``predict.py
            max_megapixels=null`` is the user saying so).
        max_file_mb: Refuse files larger than this many megabytes (10**6 bytes; checked with ``os.stat``
            before the file is opened). None: no limit.
        identity: Also take each file's size, time and SHA-256 (``LoadedImage.file_identity``), which the
            outputs record; False for a pass that writes none (AdaBN's statistics).
    """

    def __init__(
        self,
        files: Sequence[Path],
        max_megapixels: float | None = None,
        max_file_mb: float | None = None,
        identity: bool = True,
    ) -> None:
        self.files = list(files)
        self.max_megapixels = max_megapixels
        self.max_file_mb = max_file_mb
        self.identity = identity

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> LoadedImage:
        path = self.files[index]
        start = time.perf_counter()
        try:
            if path.is_symlink() and not path.exists():
                target = os.readlink(path)
                raise ImageReadError(
                    f"{path}: a symbolic link to {target} that cannot be followed (missing target or a link "
                    "loop); fix or remove the link"
                )
            check_file_size(path, self.max_file_mb)
            # Before reading: a file replaced meanwhile is redone.
            identity = image_file_identity(path) if self.identity else None
            limit = math.inf if self.max_megapixels is None else self.max_megapixels
            image, note = read_image_noted(path, max_megapixels=limit)
        except ImageReadError as exc:
            return LoadedImage(index, None, str(exc), time.perf_counter() - start)
        except (OSError, MemoryError) as exc:
            return LoadedImage(
                index, None, f"{path}: {type(exc).__name__}: {exc}", time.perf_counter() - start
            )
        return LoadedImage(index, image, None, time.perf_counter() - start, identity, note)


class LoaderWorkerError(MarsUnitsError):
    """A DataLoader worker decoding the images died (killed by a signal other than SIGTERM, or exited):
    no image is to blame; the message says so and advises ``num_workers=0`` (decoding in the main process)."""


def loader_worker_death(exc: BaseException) -> str | None:
    """torch's message if ``exc`` says a DataLoader worker died, else None.

    torch raises a plain ``RuntimeError`` for it, from its SIGCHLD handler wherever the main thread is
    (``DataLoader worker (pid N) is killed by signal: Terminated.``, inside an image's prediction, which
    recorded it as that image's error) or from the next read (``... exited unexpectedly``); its message is
    the only mark. The read's error comes while the handler's is handled, so the signal is said in the one
    before it (``__context__``), whose message this returns then.
    """
    deaths: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(deaths) < 5:
        if isinstance(seen, RuntimeError) and str(seen).startswith("DataLoader worker (pid"):
            deaths.append(str(seen))
        seen = seen.__context__
    if not deaths or deaths[0] != str(exc):
        return None
    return next((d for d in deaths if "killed by signal" in d), deaths[0])


def killed_by_sigterm(death: str) -> bool:
    """Whether :func:`loader_worker_death`'s message is that of a worker ended by SIGTERM."""
    return "killed by signal: Terminated" in death


def _worker_init(worker_id: int) -> None:
    """A decoding worker ends at once on SIGTERM (the signal's default action), leaving the stop to the main
    process, which reports it (:func:`loader_worker_death`): the worker inherits the main process's handler
    (``sigterm_raises``), and a ``TerminatedError`` raised in the worker ended it with a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def check_file_size(path: Path, max_file_mb: float | None) -> None:
    """Refuse a file above ``max_file_mb`` megabytes before reading it.

    Raises:
        ImageReadError: The file is too large (names the file, its size and the option to raise).
    """
    if max_file_mb is None:
        return
    size = os.stat(path).st_size
    if size > max_file_mb * 1e6:
        raise ImageReadError(
            f"{path}: the file is {size / 1e6:.1f} MB, more than max_file_mb={max_file_mb:g} (checked before "
            "reading); raise max_file_mb if you trust this file"
        )


def _single(batch: list[LoadedImage]) -> LoadedImage:
    """Collate for batch size 1: the item itself (images of different sizes are never stacked)."""
    return batch[0]


def resolve_num_workers(num_workers: int | None, device: torch.device) -> int:
    """DataLoader workers for decoding: ``num_workers`` if given, else 0 on CPU and 2 on an accelerator.

    On CPU the network costs far more than decoding (about 5 % of the time for JPEG/PNG here), and worker
    processes compete with the compute threads for the same cores: measured on the 2-core development
    machine, the engine ran 3.2 MP/s decoding in the main process and 2.3 MP/s with 2 workers. On a GPU the
    CPU is otherwise idle and decoding ahead keeps the device busy.
    """
    if num_workers is not None:
        return int(num_workers)
    return 0 if device.type == "cpu" else 2


def make_loader(dataset: ImageFileDataset, num_workers: int) -> DataLoader[Any]:
    """A DataLoader yielding one :class:`LoadedImage` at a time, in order.

    With workers, ``prefetch_factor=1`` bounds the decoded images waiting in memory to ``num_workers``.
    Workers are not persistent: one loader serves one run (one pass), so there is nothing to keep them
    alive for. A worker given SIGTERM ends at once (:func:`_worker_init`); its death reaches the main process
    as torch's ``RuntimeError`` (:func:`loader_worker_death`).
    Pinning happens per window batch in :func:`~marsunits.inference.tiling.sliding_window`
    (the decoded item is a numpy array, not what is copied to the GPU).
    """
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    extra: dict[str, Any] = (
        {"prefetch_factor": 1, "persistent_workers": False, "worker_init_fn": _worker_init}
        if num_workers
        else {}
    )
    return DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=_single, **extra
    )
