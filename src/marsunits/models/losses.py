"""Segmentation losses that skip ignored pixels (label 255) and stay finite when a batch has none to score.

``ce``: pixel cross-entropy with optional class weights. ``ce+dice``: ``ce + dice_weight * dice`` with
smp's multiclass :class:`~segmentation_models_pytorch.losses.DiceLoss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn

from marsunits.constants import IGNORE_INDEX
from marsunits.model_settings import LOSSES as LOSSES  # the names accepted here; importable without torch


class SegmentationLoss(nn.Module):
    """Cross-entropy (+ optional Dice) over logits ``(N, C, H, W)`` and targets ``(N, H, W)`` int64.

    The cross-entropy is the weighted mean over scored pixels, as ``F.cross_entropy`` computes it, but the
    normalisation is written out here because ``F.cross_entropy(reduction="mean")`` divides 0 by 0 and
    returns NaN when every target pixel is ``ignore_index``. Here such a batch gives exactly 0, still attached
    to the graph (so ``backward`` works and, under DDP, every parameter gets a gradient), without a host sync.

    Args:
        num_classes: number of logit channels.
        loss: ``"ce"`` or ``"ce+dice"``.
        dice_weight: weight of the Dice term (``"ce+dice"`` only).
        class_weights: one non-negative weight per class for the cross-entropy, or ``None`` for equal weights.
        ignore_index: target label never scored.
        contact_weight: extra cross-entropy weight of pixels near a contact: a pixel within
            ``contact_radius_px`` (Chebyshev distance) of both a unit-0 and a unit-1 target pixel counts
            ``1 + contact_weight`` times. 0 (default) leaves the loss unchanged. Meant to sharpen the
            predicted contact, which a per-pixel loss weighs only by its few pixels.
        contact_radius_px: half-width of that band, pixels (>= 1).
    """

    class_weights: torch.Tensor  # buffer, declared for type checkers

    def __init__(
        self,
        num_classes: int,
        loss: str = "ce",
        dice_weight: float = 0.5,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        contact_weight: float = 0.0,
        contact_radius_px: int = 3,
    ) -> None:
        super().__init__()
        if contact_weight < 0 or int(contact_radius_px) < 1:
            raise ValueError(
                f"contact_weight must be >= 0 and contact_radius_px >= 1, got {contact_weight} and "
                f"{contact_radius_px}."
            )
        self.contact_weight = float(contact_weight)
        self.contact_radius_px = int(contact_radius_px)
        if loss not in LOSSES:
            raise ValueError(f"Unknown loss {loss!r}. Valid choices: {list(LOSSES)}.")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.dice_weight = float(dice_weight)
        weights = torch.ones(num_classes)
        if class_weights is not None:
            # Checked as numbers, not as a tensor: model_package lays the task out on the meta device (shapes
            # without values), where reading a tensor's values raised and no package of such a model loaded.
            values = [float(w) for w in class_weights]
            if len(values) != num_classes or any(w < 0 for w in values) or sum(values) <= 0:
                raise ValueError(
                    f"class_weights must be {num_classes} non-negative numbers (not all 0), one per class, "
                    f"got {list(class_weights)}."
                )
            weights = torch.as_tensor(values, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)
        self.dice = (
            DiceLoss(mode="multiclass", from_logits=True, ignore_index=self.ignore_index)
            if loss == "ce+dice"
            else None
        )

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted mean cross-entropy over pixels not labelled ``ignore_index`` (0 if there are none)."""
        per_pixel = F.cross_entropy(
            logits, target, weight=self.class_weights, ignore_index=self.ignore_index, reduction="none"
        )
        valid = target != self.ignore_index
        # Same denominator as F.cross_entropy's "mean": the sum of the targets' class weights.
        pixel_weight = self.class_weights[torch.where(valid, target, 0)] * valid
        if self.contact_weight > 0:
            extra = 1.0 + self.contact_weight * self.near_contact(target).to(per_pixel.dtype)
            per_pixel = per_pixel * extra
            pixel_weight = pixel_weight * extra
        return per_pixel.sum() / pixel_weight.sum().clamp_min(torch.finfo(per_pixel.dtype).tiny)

    def near_contact(self, target: torch.Tensor) -> torch.Tensor:
        """Bool ``(N, H, W)``: pixels within ``contact_radius_px`` of both a unit-0 and a unit-1 pixel."""
        k = 2 * self.contact_radius_px + 1
        units = torch.stack([target == 0, target == 1], dim=1).float()  # (N, 2, H, W)
        near = F.max_pool2d(units, k, stride=1, padding=self.contact_radius_px)
        return (near[:, 0] > 0) & (near[:, 1] > 0)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for logits ``(N, C, H, W)`` and int64 targets ``(N, H, W)``."""
        loss = self.cross_entropy(logits, target)
        if self.dice is not None:
            loss = loss + self.dice_weight * self.dice(logits, target)
        return loss
