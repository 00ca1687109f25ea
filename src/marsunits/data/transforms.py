"""Paired image/mask augmentation for training (torchvision ``transforms.v2``).

torchvision applies each geometric transform with the same random parameters to every ``tv_tensors``
object in the input, and always resamples ``tv_tensors.Mask`` with nearest neighbour, so masks never get
interpolated ids. Photometric transforms only touch ``tv_tensors.Image``. Pixels a rotation brings in from
outside the crop get image value 0 and mask 255 (ignore), so they are never trained on.

Call the transform on a dict: ``t({"image": tv_tensors.Image(x), "mask": tv_tensors.Mask(m)})`` with
``x`` float32 ``(C, H, W)`` in [0, 1] and ``m`` integer ``(H, W)``; the output has the same keys, the image
stays in [0, 1] and has size ``crop_size`` x ``crop_size``.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from marsunits.constants import IGNORE_INDEX

__all__ = ["build_train_transform"]


def build_train_transform(
    crop_size: int,
    in_channels: int,
    hflip_p: float = 0.5,
    min_scale: float = 0.5,
    max_rotation_deg: float = 5.0,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.15,
) -> v2.Compose:
    """Training augmentation: flip, random resized crop (zoom in; ``min_scale`` 1: a plain random crop at
    native resolution), small rotation, photometric jitter.

    Args:
        crop_size: output height and width in pixels.
        in_channels: 1 (greyscale: brightness/contrast only, saturation needs colour) or 3.
        hflip_p: probability of a horizontal flip (vertical flips would put the sky at the bottom).
        min_scale: smallest area fraction of the input kept by the random resized crop (1 = no zoom).
        max_rotation_deg: rotation drawn uniformly in ``[-max, max]`` degrees (camera roll); 0 disables.
        brightness: ColorJitter brightness factor range ``[1 - b, 1 + b]``.
        contrast: ColorJitter contrast factor range.
        saturation: ColorJitter saturation factor range (ignored for 1 channel).

    Returns:
        A ``v2.Compose`` taking and returning ``{"image": Image, "mask": Mask}``.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}.")
    steps: list[v2.Transform] = []
    if hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip_p))
    if min_scale < 1.0:
        steps.append(
            v2.RandomResizedCrop(
                size=(crop_size, crop_size),
                scale=(min_scale, 1.0),
                ratio=(3 / 4, 4 / 3),
                interpolation=v2.InterpolationMode.BILINEAR,
                antialias=True,
            )
        )
    else:
        # A crop at native resolution: a crop of crop_size already (real data) passes unchanged; a larger
        # image (a synthetic 160x128 scene) gives a random crop_size window, not a resized copy. Resize here
        # squeezed every scene to 128x128 (its units 0.8 times as wide as in validation and prediction,
        # bilinearly resampled, never shifted); a smaller side is padded as the rotation fills (mask: ignore).
        steps.append(
            v2.RandomCrop(
                size=(crop_size, crop_size),
                pad_if_needed=True,
                fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX},
            )
        )
    if max_rotation_deg > 0:
        steps.append(
            v2.RandomRotation(
                degrees=max_rotation_deg,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX},
            )
        )
    jitter_saturation = saturation if in_channels == 3 else 0.0
    if brightness > 0 or contrast > 0 or jitter_saturation > 0:
        steps.append(v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=jitter_saturation))
    # Bilinear resampling cannot overshoot, but clamp anyway so the [0, 1] contract holds for any
    # future interpolation choice.
    steps.append(v2.Lambda(_clamp_image, tv_tensors.Image))
    return v2.Compose(steps)


def _clamp_image(image: torch.Tensor) -> torch.Tensor:
    return image.clamp(0.0, 1.0)
