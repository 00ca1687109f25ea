"""Test-time adaptation of batch-norm statistics to the images being predicted (AdaBN).

A network's BatchNorm layers normalise each channel with the mean and variance they saw in training. Images
of another sol, site or light shift those statistics, and the network then reads shifted features. AdaBN
(Li, Wang, Shi, Liu & Hou 2016, "Revisiting Batch Normalization For Practical Domain Adaptation") replaces
the running statistics with those of the target images, unlabelled; no weight changes. On MarsScapes'
sol-grouped validation this is measured in the README (``benchmarks/eval_val_errors.py --adapt-bn``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["adapt_batchnorm"]


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
        ValueError: ``images`` was empty, or ``model`` has no BatchNorm layer.
    """
    adapted = copy.deepcopy(model).eval()
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("adapt_batchnorm: the model has no BatchNorm layer, so there is nothing to adapt.")
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
        norm.train()
    seen = 0
    with torch.no_grad():
        for batch in images:
            adapted(batch)
            seen += int(batch.shape[0])
    if seen == 0:
        raise ValueError("adapt_batchnorm: no images were given to estimate the statistics from.")
    for norm in norms:
        norm.eval()
    return adapted, seen
