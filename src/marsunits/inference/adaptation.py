"""Test-time adaptation of batch-norm statistics to the images being predicted (AdaBN).

A network's BatchNorm layers normalise each channel with the mean and variance they saw in training. Images
of another sol, site or light shift those statistics, and the network then reads shifted features. AdaBN
(Li, Wang, Shi, Liu & Hou 2016, "Revisiting Batch Normalization For Practical Domain Adaptation") replaces
the running statistics with those of the target images, unlabelled; no weight changes. On MarsScapes'
sol-grouped validation this is measured in the README (``benchmarks/eval_val_errors.py --adapt-bn``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from marsunits.inference.tiling import NETWORK_STRIDE, sliding_window

__all__ = ["NoImagesError", "adapt_batchnorm", "adapt_batchnorm_tiled"]


@contextmanager
def _collecting_statistics(model: nn.Module) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """Inside: every BatchNorm layer of ``model`` (in place) averages the statistics of what passes through
    it from scratch, the rest of the model in eval mode; on exit the layers return to eval mode."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("adapt_batchnorm: the model has no BatchNorm layer, so there is nothing to adapt.")
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
        norm.train()
    try:
        yield norms
    finally:
        for norm in norms:
            norm.eval()


class NoImagesError(ValueError):
    """No image was given to estimate the statistics from (as opposed to a model with nothing to adapt)."""


def _adapted_copy(
    model: nn.Module, items: Iterable[torch.Tensor], feed: Callable[[nn.Module, torch.Tensor], int]
) -> tuple[nn.Module, int]:
    """Copy ``model``, pass every item through the copy with ``feed`` (which returns how many images the item
    held) while its BatchNorm layers collect statistics, and return ``(copy in eval mode, images seen)``."""
    adapted = copy.deepcopy(model)
    seen = 0
    with _collecting_statistics(adapted), torch.no_grad():
        for item in items:
            seen += feed(adapted, item)
    if seen == 0:
        raise NoImagesError("adapt_batchnorm: no images were given to estimate the statistics from.")
    return adapted, seen


def adapt_batchnorm(model: nn.Module, images: Iterable[torch.Tensor]) -> tuple[nn.Module, int]:
    """Return a copy of ``model`` whose BatchNorm running statistics are those of ``images``.

    Every BatchNorm layer's running mean and variance are reset and re-estimated as the plain average over
    all batches of ``images`` (``momentum=None``), with the rest of the network in evaluation mode. Written
    here rather than with :func:`torch.optim.swa_utils.update_bn`, which puts the whole model in training
    mode for the pass, so dropout and stochastic depth (``model.drop_path_rate``) would act on the very
    activations whose statistics are being measured.

    Args:
        model: a network or :class:`~marsunits.task.SegmentationTask` (left unchanged).
        images: batches ``(N, C, H, W)`` as ``model`` takes them (for a task: float in [0, 1]).

    Returns:
        ``(adapted copy in eval mode, number of images seen)``.

    Raises:
        NoImagesError: ``images`` was empty.
        ValueError: ``model`` has no BatchNorm layer.
    """

    def feed(adapted: nn.Module, batch: torch.Tensor) -> int:
        adapted(batch)
        return int(batch.shape[0])

    return _adapted_copy(model, images, feed)


def adapt_batchnorm_tiled(
    model: nn.Module,
    images: Iterable[torch.Tensor],
    *,
    tile: int,
    overlap: float,
    batch_size: int,
    num_classes: int,
    stride: int = NETWORK_STRIDE,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, int]:
    """:func:`adapt_batchnorm` over the windows ``predict.py`` cuts each image into.

    Args:
        model: maps float ``(B, C, h, w)`` in [0, 1] to logits (a task; left unchanged), on ``device``.
        images: float32 ``(C, H, W)`` tensors in [0, 1], any size, in the model's channel count.
        tile, overlap, batch_size, stride: the window layout, as in
            :func:`~marsunits.inference.tiling.sliding_window`.
        num_classes: channels of the model's output.
        device: where ``model`` is; windows are copied there.

    Returns:
        ``(adapted copy in eval mode, number of images seen)``.

    Raises:
        NoImagesError: no image was given.
        ValueError: the model has no BatchNorm layer.
    """

    def feed(adapted: nn.Module, image: torch.Tensor) -> int:
        # The blended output is discarded: the pass is for the statistics the windows leave behind.
        sliding_window(
            adapted,
            image,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            out_channels=num_classes,
            stride=stride,
        )
        return 1

    return _adapted_copy(model, images, feed)
