"""Segmentation networks (smp + timm encoders), offline pretrained encoder weights, and losses."""

from marsunits.models.factory import (
    ARCHITECTURES,
    CURATED_ENCODERS,
    ENCODER_WEIGHTS,
    build_model,
    check_depth,
    check_names,
    input_divisor,
    size_divisor,
)
from marsunits.models.losses import LOSSES, SegmentationLoss
from marsunits.models.pretrained import (
    OFFLINE_WEIGHTS,
    PretrainedWeightsError,
    load_offline_into_encoder,
)

__all__ = [
    "ARCHITECTURES",
    "CURATED_ENCODERS",
    "ENCODER_WEIGHTS",
    "LOSSES",
    "OFFLINE_WEIGHTS",
    "PretrainedWeightsError",
    "SegmentationLoss",
    "build_model",
    "check_depth",
    "check_names",
    "input_divisor",
    "load_offline_into_encoder",
    "size_divisor",
]
