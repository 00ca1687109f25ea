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
from dataclasses import dataclass

import torch
from torch import nn

from marsunits.errors import DataError
from marsunits.inference.tiling import NETWORK_STRIDE, sliding_window

__all__ = ["NoImagesError", "adapt_batchnorm", "adapt_batchnorm_tiled"]


class _PooledStatistics:
    """Exact per-channel mean and variance of every BatchNorm layer's input over all that was fed.

    PyTorch's own ``momentum=None`` average weights every batch alike, whatever it holds, and averages the
    variances *within* batches, leaving out the spread between them; the statistics then depended on how the
    images were batched (``predict.py``'s ``batch_size``, which must only change speed: 8 % of one image's
    pixels changed class between batch sizes 1 and 4). Here each layer's input is summed per channel (sum,
    sum of squares, count of values, in float64, on the input's device) by a forward pre-hook, and the
    running statistics are set from the totals at the end.

    The same hook decides how the layer normalises the batch passing through: with that batch's statistics
    (training mode), except when the batch holds one value per channel, which training mode refuses (a
    global-pooling branch such as DeepLabV3+'s, or the deepest map of a tiny image, with one window at a
    time): then the layer's own running statistics (eval mode). With ``per_item=True`` each item of the
    batch is normalised with its own statistics instead, as training mode normalises a batch of one, so that
    windows batched together see what they see one at a time and the statistics do not depend on the batch
    size. A layer that saw fewer than two values in all keeps its running statistics.

    The totals are additive: a sharded run's ranks each feed their own images, and the sums of every rank,
    added up (:meth:`packed`, :meth:`unpack`), are those of one process fed every image (per item, each
    image's normalisation does not depend on the others), but for the order of the float64 additions.
    """

    def __init__(self, norms: list[nn.modules.batchnorm._BatchNorm], per_item: bool = False) -> None:
        self.norms = norms
        self.per_item = per_item
        self.sums: list[_Sums | None] = [None] * len(norms)
        self.handles = [n.register_forward_pre_hook(self._hook(k)) for k, n in enumerate(norms)]

    def _hook(self, k: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
        def add(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            x = args[0].detach()
            per_channel = x.numel() // max(x.shape[1], 1)
            dims = [d for d in range(x.dim()) if d != 1]  # every axis but the channels
            sums = self.sums[k]
            if sums is None:
                sums = self.sums[k] = _Sums.zeros(x.shape[1], x.device)
            sums.values += x.sum(dim=dims, dtype=torch.float64)
            sums.squares += (x * x).sum(dim=dims, dtype=torch.float64)
            sums.count += per_channel
            norm = self.norms[k]
            if self.per_item and norm.running_mean is not None and norm.running_var is not None:
                module.training = False
                return (_as_running_statistics(args[0], norm), *args[1:])
            module.training = per_channel > 1
            return args

        return add

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()

    def packed(self, items: int) -> torch.Tensor:
        """Every layer's totals and ``items`` (the images fed) as one float64 vector, on the device of the
        layers' buffers: per layer its sums of values and of squares (a layer not fed: zeros) and its count,
        then ``items``. Counts are exact as float64 up to 2**53 values per channel."""
        device = next((s.values.device for s in self.sums if s is not None), None)
        if device is None:
            buffer = next((n.running_mean for n in self.norms if n.running_mean is not None), None)
            device = buffer.device if buffer is not None else torch.device("cpu")
        parts: list[torch.Tensor] = []
        for norm, sums in zip(self.norms, self.sums, strict=True):
            if sums is None:
                sums = _Sums.zeros(norm.num_features, device)
            count = torch.tensor([float(sums.count)], dtype=torch.float64, device=device)
            parts += [sums.values.to(device), sums.squares.to(device), count]
        parts.append(torch.tensor([float(items)], dtype=torch.float64, device=device))
        return torch.cat(parts)

    def unpack(self, totals: torch.Tensor) -> int:
        """Take the totals of a :meth:`packed` vector (the sum of every rank's) as the layers' own; returns
        the images they came from."""
        offset = 0
        for k, norm in enumerate(self.norms):
            channels = norm.num_features
            values = totals[offset : offset + channels].clone()
            squares = totals[offset + channels : offset + 2 * channels].clone()
            count = int(totals[offset + 2 * channels].item())
            offset += 2 * channels + 1
            self.sums[k] = _Sums(values, squares, count) if count else None
        if offset + 1 != totals.numel():
            raise ValueError(f"adapt_batchnorm: {totals.numel()} totals for {offset + 1} expected")
        return int(totals[offset].item())

    def apply(self, items: int) -> None:
        """Set every layer's running mean and (unbiased) variance from the totals."""
        for norm, sums in zip(self.norms, self.sums, strict=True):
            if sums is None or sums.count < 2 or norm.running_mean is None or norm.running_var is None:
                continue
            mean = sums.values / sums.count
            var = (sums.squares / sums.count - mean * mean).clamp_min(0.0)
            var = var * (sums.count / (sums.count - 1))  # unbiased, as BatchNorm's running_var
            norm.running_mean.copy_(mean.to(norm.running_mean))
            norm.running_var.copy_(var.to(norm.running_var))
            if norm.num_batches_tracked is not None:
                norm.num_batches_tracked.fill_(items)


def _as_running_statistics(x: torch.Tensor, norm: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``x`` with each item's per-channel mean and (biased) variance moved onto ``norm``'s running ones.

    An eval-mode layer then normalises every item with the item's own statistics, which is what training
    mode does to a batch of one, and the layer's own forward (timm's ``BatchNormAct2d`` adds an activation)
    runs unchanged. An item with one value per channel (a 1 x 1 map) has no statistics of its own: left as
    it is, it is normalised with the running statistics, as eval mode does.
    """
    spatial = list(range(2, x.dim()))
    if not spatial or x[0, 0].numel() < 2:
        return x
    assert norm.running_mean is not None and norm.running_var is not None
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=spatial, correction=0, keepdim=True)
    shape = (1, -1) + (1,) * len(spatial)
    scale = torch.sqrt(norm.running_var.float() + norm.eps).view(shape) * torch.rsqrt(var + norm.eps)
    return ((xf - mean) * scale + norm.running_mean.float().view(shape)).to(x.dtype)


@dataclass
class _Sums:
    """Per-channel sums of one BatchNorm layer's input: values, squares, and how many values per channel."""

    values: torch.Tensor
    squares: torch.Tensor
    count: int = 0

    @classmethod
    def zeros(cls, channels: int, device: torch.device) -> _Sums:
        zero = torch.zeros(channels, dtype=torch.float64, device=device)
        return cls(zero, zero.clone())


@contextmanager
def _collecting_statistics(model: nn.Module, per_item: bool = False) -> Iterator[_PooledStatistics]:
    """Inside: every BatchNorm layer of ``model`` (in place) sums its inputs and normalises with the
    statistics of the batch passing through, or of each of its items with ``per_item``
    (:class:`_PooledStatistics`), the rest of the model in eval
    mode, its running statistics left alone (``momentum=0``) until the caller sets the pooled ones; on exit
    the layers return to eval mode with their momentum."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("adapt_batchnorm: the model has no BatchNorm layer, so there is nothing to adapt.")
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = 0.0  # training mode would otherwise move the running statistics
    stats = _PooledStatistics(norms, per_item)
    try:
        yield stats
    finally:
        stats.remove()
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            norm.eval()


class NoImagesError(DataError):
    """No image was given to estimate the statistics from (as opposed to a model with nothing to adapt); a
    :class:`~marsunits.errors.DataError`, so a ``ValueError`` still."""


def _adapted_copy(
    model: nn.Module,
    items: Iterable[torch.Tensor],
    feed: Callable[[nn.Module, torch.Tensor], int],
    per_item: bool = False,
    all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[nn.Module, int]:
    """Copy ``model``, pass every item through the copy with ``feed`` (which returns how many images the item
    held) while its BatchNorm layers collect statistics, and return ``(copy in eval mode, images seen)``.
    ``per_item``: the layers normalise each item of a batch alone (:class:`_PooledStatistics`).
    ``all_sum``: a sharded run's sum over its ranks of a float64 vector, the same on every rank; the
    statistics and the images seen are then those of every rank's items."""
    adapted = copy.deepcopy(model)
    seen = 0
    with _collecting_statistics(adapted, per_item) as stats, torch.no_grad():
        for item in items:
            seen += feed(adapted, item)
        if all_sum is not None:
            seen = stats.unpack(all_sum(stats.packed(seen)))
        if seen:
            stats.apply(seen)
    if seen == 0:
        raise NoImagesError("adapt_batchnorm: no images were given to estimate the statistics from.")
    return adapted, seen


def adapt_batchnorm(model: nn.Module, images: Iterable[torch.Tensor]) -> tuple[nn.Module, int]:
    """Return a copy of ``model`` whose BatchNorm running statistics are those of ``images``.

    Every BatchNorm layer's running mean and variance are replaced by the mean and variance of its input over
    every value of every image (pooled exactly, :class:`_PooledStatistics`), while each layer normalises the
    batch passing through with the batch's own statistics (its running ones where the batch holds a single
    value per channel); the rest of the network is in evaluation mode. Written
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
    all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[nn.Module, int]:
    """:func:`adapt_batchnorm` over the windows ``predict.py`` cuts each image into.

    Every BatchNorm layer normalises each window with that window's own statistics, as if it passed alone,
    while ``batch_size`` windows pass at a time: the statistics (and the masks) then do not depend on the
    batch size. (Training mode normalises a batch with the whole batch's statistics, so batching windows
    that way changed what deeper layers saw; passing them one at a time instead left a GPU idle.)

    Args:
        model: maps float ``(B, C, h, w)`` in [0, 1] to logits (a task; left unchanged), on ``device``.
        images: float32 ``(C, H, W)`` tensors in [0, 1], any size, in the model's channel count.
        tile, overlap, stride: the window layout, as in :func:`~marsunits.inference.tiling.sliding_window`.
        batch_size: windows per forward pass (speed and memory only, see above).
        num_classes: channels of the model's output.
        device: where ``model`` is; windows are copied there.
        all_sum: for one rank of a sharded run that passes its own share of the images: ``all_sum(vector)``
            returns the sum of every rank's float64 ``vector``, bit for bit the same on every rank (called
            once, by every rank, whatever its share). The statistics and the count returned are then those of
            every rank's images together, and the same on every rank.

    Returns:
        ``(adapted copy in eval mode, number of images seen)``.

    Raises:
        NoImagesError: no image was given (to any rank).
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

    return _adapted_copy(model, images, feed, per_item=True, all_sum=all_sum)
