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

from marsunits.inference.tiling import NETWORK_STRIDE, sliding_window

__all__ = ["NoImagesError", "adapt_batchnorm", "adapt_batchnorm_tiled"]


class _PooledStatistics:
    """Exact per-channel mean and variance of every BatchNorm layer's input over all that was fed.

    PyTorch's own ``momentum=None`` average weights every batch alike, whatever it holds, and averages the
    variances *within* batches, leaving out the spread between them; the statistics then depended on how the
    images were batched (``predict.py``'s ``batch_size``, which must only change speed: 8 % of one image's
    pixels changed class between batch sizes 1 and 4). Here each layer's input is summed per channel (sum,
    sum of squares, count of values, in float64) by a forward pre-hook, and the running statistics are set
    from the totals at the end. Sums of one item are kept apart until :meth:`commit`, so an item the network
    cannot take in training mode (:meth:`discard`) leaves nothing behind.
    """

    def __init__(self, norms: list[nn.modules.batchnorm._BatchNorm]) -> None:
        self.norms = norms
        self.total = [_Sums.zeros(n.num_features) for n in norms]
        self.pending = [_Sums.zeros(n.num_features) for n in norms]
        self.handles = [n.register_forward_pre_hook(self._hook(k)) for k, n in enumerate(norms)]

    def _hook(self, k: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def add(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach()
            dims = [d for d in range(x.dim()) if d != 1]  # every axis but the channels
            sums = self.pending[k]
            sums.values += x.sum(dim=dims, dtype=torch.float64).cpu()
            sums.squares += (x * x).sum(dim=dims, dtype=torch.float64).cpu()
            sums.count += x.numel() // x.shape[1]

        return add

    def commit(self) -> None:
        """Add the item just fed to the totals."""
        for total, pending in zip(self.total, self.pending, strict=True):
            total.add(pending)
            pending.clear()

    def discard(self) -> None:
        """Forget the item just fed (the network could not take it)."""
        for pending in self.pending:
            pending.clear()

    def apply(self, items: int) -> None:
        """Set every layer's running mean and (unbiased) variance from the totals."""
        for norm, sums in zip(self.norms, self.total, strict=True):
            if sums.count == 0 or norm.running_mean is None or norm.running_var is None:
                continue
            mean = sums.values / sums.count
            var = (sums.squares / sums.count - mean * mean).clamp_min(0.0)
            var = var * (sums.count / max(sums.count - 1, 1))  # unbiased, as BatchNorm's running_var
            norm.running_mean.copy_(mean.to(norm.running_mean))
            norm.running_var.copy_(var.to(norm.running_var))
            if norm.num_batches_tracked is not None:
                norm.num_batches_tracked.fill_(items)


@dataclass
class _Sums:
    """Per-channel sums of one BatchNorm layer's input: values, squares, and how many values per channel."""

    values: torch.Tensor
    squares: torch.Tensor
    count: int = 0

    @classmethod
    def zeros(cls, channels: int) -> _Sums:
        return cls(torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64))

    def add(self, other: _Sums) -> None:
        self.values += other.values
        self.squares += other.squares
        self.count += other.count

    def clear(self) -> None:
        self.values.zero_()
        self.squares.zero_()
        self.count = 0


@contextmanager
def _collecting_statistics(model: nn.Module) -> Iterator[_PooledStatistics]:
    """Inside: every BatchNorm layer of ``model`` (in place) normalises with the statistics of what passes
    through it (training mode) while :class:`_PooledStatistics` sums its inputs, the rest of the model in
    eval mode; on exit the layers return to eval mode (the caller sets the pooled statistics)."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("adapt_batchnorm: the model has no BatchNorm layer, so there is nothing to adapt.")
    for norm in norms:
        norm.train()
    stats = _PooledStatistics(norms)
    try:
        yield stats
    finally:
        for handle in stats.handles:
            handle.remove()
        for norm in norms:
            norm.eval()


class NoImagesError(ValueError):
    """No image was given to estimate the statistics from (as opposed to a model with nothing to adapt).

    ``too_small``: how many images were given but left out as too small (0: none was given)."""

    def __init__(self, message: str, too_small: int = 0) -> None:
        super().__init__(message)
        self.too_small = too_small


def _one_value_per_channel(exc: ValueError) -> bool:
    """Whether ``exc`` is BatchNorm's refusal of an input with one value per channel in training mode (an
    image so small that the deepest feature map is 1 x 1)."""
    return "Expected more than 1 value per channel" in str(exc)


def _adapted_copy(
    model: nn.Module, items: Iterable[torch.Tensor], feed: Callable[[nn.Module, torch.Tensor], int]
) -> tuple[nn.Module, int]:
    """Copy ``model``, pass every item through the copy with ``feed`` (which returns how many images the item
    held) while its BatchNorm layers collect statistics, and return ``(copy in eval mode, images seen)``.

    An item too small for a BatchNorm layer in training mode (one value per channel) is left out; when every
    item is, :class:`NoImagesError` says so."""
    adapted = copy.deepcopy(model)
    seen = too_small = 0
    with _collecting_statistics(adapted) as stats, torch.no_grad():
        for item in items:
            try:
                count = feed(adapted, item)
            except ValueError as exc:
                if not _one_value_per_channel(exc):
                    raise
                stats.discard()
                too_small += 1
                continue
            stats.commit()
            seen += count
        if seen:
            stats.apply(seen)
    if seen == 0 and too_small:
        raise NoImagesError(
            f"adapt_batchnorm: all {too_small} image(s) are too small to estimate statistics from (the "
            "network's deepest feature map is 1 x 1 pixel); give images of at least 64 px a side",
            too_small=too_small,
        )
    if seen == 0:
        raise NoImagesError("adapt_batchnorm: no images were given to estimate the statistics from.")
    return adapted, seen


def adapt_batchnorm(model: nn.Module, images: Iterable[torch.Tensor]) -> tuple[nn.Module, int]:
    """Return a copy of ``model`` whose BatchNorm running statistics are those of ``images``.

    Every BatchNorm layer's running mean and variance are replaced by the mean and variance of its input over
    every value of every image (pooled exactly, :class:`_PooledStatistics`), while each layer normalises the
    batch passing through with the batch's own statistics; the rest of the network is in evaluation mode.
    Images too small for that (a 1 x 1 deepest feature map with one image in the batch) are left out. Written
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

    The windows pass one at a time whatever ``batch_size``, so that the statistics (and the masks) do not
    depend on it: in training mode a BatchNorm layer normalises a batch with that batch's statistics, so
    batching windows together changed what deeper layers saw.

    Args:
        model: maps float ``(B, C, h, w)`` in [0, 1] to logits (a task; left unchanged), on ``device``.
        images: float32 ``(C, H, W)`` tensors in [0, 1], any size, in the model's channel count.
        tile, overlap, stride: the window layout, as in :func:`~marsunits.inference.tiling.sliding_window`.
        batch_size: accepted for the caller's convenience and not used (see above).
        num_classes: channels of the model's output.
        device: where ``model`` is; windows are copied there.

    Returns:
        ``(adapted copy in eval mode, number of images seen)``.

    Raises:
        NoImagesError: no image was given, or every image was too small.
        ValueError: the model has no BatchNorm layer.
    """
    del batch_size  # one window at a time: see above

    def feed(adapted: nn.Module, image: torch.Tensor) -> int:
        # The blended output is discarded: the pass is for the statistics the windows leave behind.
        sliding_window(
            adapted,
            image,
            tile=tile,
            overlap=overlap,
            batch_size=1,
            device=device,
            out_channels=num_classes,
            stride=stride,
        )
        return 1

    return _adapted_copy(model, images, feed)
