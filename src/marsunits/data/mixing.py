"""ClassMix: paste the pixels of some classes of one training crop onto another (Olsson et al., WACV 2021).

On MarsScapes the models miss rough terrain (gravel) on sols they have not seen and call it smooth; the
crops of one batch come from different panoramas, mostly different sols. Pasting, say, the rough pixels of
a crop from one sol onto a crop from another puts a unit's texture next to terrain, lighting and context
it never appeared with, so the network must decide from the texture itself.

Written by hand (about twenty lines of tensor indexing): torchvision's ``CutMix``/``MixUp`` mix
classification labels, not masks, and no library in the project's stack mixes segmentation masks by class.
"""

from __future__ import annotations

import torch

from marsunits.constants import IGNORE_INDEX

__all__ = ["class_mix"]


def class_mix(
    images: torch.Tensor,
    masks: torch.Tensor,
    probability: float,
    generator: torch.Generator,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a copy of the batch where each crop, with ``probability``, gets the pixels of half the classes
    of another crop of the batch pasted onto it, image and label together.

    For crop ``i`` the partner is ``j = perm[(k + 1) % N]`` where ``perm[k] = i`` for a random permutation
    (so ``j != i`` whenever ``N > 1``); of the classes present in ``masks[j]`` (``ignore_index`` excluded),
    ``ceil(n / 2)`` chosen at random are pasted: every pixel of ``masks[j]`` holding one of them replaces
    the pixel of crop ``i`` in both the image and the mask. Ignore pixels of the partner are never pasted.
    Partners are read from the batch as it came in, so a crop that was pasted onto is not pasted on.

    Args:
        images: float ``(N, C, H, W)`` batch (any value range; values are copied, not blended).
        masks: integer ``(N, H, W)`` project ids with ``ignore_index`` for unlabelled pixels.
        probability: chance in [0, 1] that a crop is mixed; 0 returns the inputs unchanged.
        generator: CPU generator for all random choices (seeded by the caller, so runs repeat).
        ignore_index: label value that is never pasted.

    Returns:
        ``(images, masks)`` with the same shapes, dtypes and device as the inputs.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"class_mix probability must be in [0, 1], got {probability}.")
    if images.ndim != 4 or masks.ndim != 3 or images.shape[0] != masks.shape[0]:
        raise ValueError(
            f"class_mix needs images (N, C, H, W) and masks (N, H, W), got {tuple(images.shape)} and "
            f"{tuple(masks.shape)}."
        )
    n = images.shape[0]
    if probability == 0.0 or n < 2:
        return images, masks
    perm = torch.randperm(n, generator=generator)
    partner = torch.empty_like(perm)
    partner[perm] = perm.roll(-1)
    mixed = torch.rand(n, generator=generator) < probability
    out_images, out_masks = images.clone(), masks.clone()
    for i in torch.nonzero(mixed).flatten().tolist():
        j = int(partner[i])
        classes = torch.unique(masks[j]).cpu()
        classes = classes[classes != ignore_index]
        if classes.numel() == 0:
            continue
        chosen = classes[torch.randperm(classes.numel(), generator=generator)[: (classes.numel() + 1) // 2]]
        paste = torch.isin(masks[j], chosen.to(masks.device))
        out_masks[i][paste] = masks[j][paste]
        out_images[i][:, paste] = images[j][:, paste]
    return out_images, out_masks
