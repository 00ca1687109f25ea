"""Knobs of the synthetic rover-scene generator, validated once so every module can trust them."""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES: tuple[str, ...] = ("color", "grey", "mixed")


def _check_range(name: str, rng: tuple[float, float], lo: float, hi: float) -> None:
    """Raise if ``rng`` is not an ordered pair inside ``[lo, hi]``."""
    if len(rng) != 2:
        raise ValueError(f"SceneConfig.{name} must be a (min, max) pair, got {rng!r}")
    a, b = float(rng[0]), float(rng[1])
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < lo or b > hi:
        raise ValueError(
            f"SceneConfig.{name} must satisfy {lo} <= min <= max <= {hi}, got {rng!r}; pass an ordered pair"
        )


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"SceneConfig.{name} is a probability and must be in [0, 1], got {p!r}")


@dataclass(frozen=True)
class SceneConfig:
    """What the generator draws scenes from.

    Attributes:
        width: Image width in pixels (> 0).
        height: Image height in pixels (> 0).
        mode: ``"color"`` (RGB, Mastcam-Z-like), ``"grey"`` (one channel, Navcam-like) or ``"mixed"``
            (colour or grey drawn per scene, half each).
        difficulty: 0 (easy) ... 1 (hard): widens the overlap of unit tones, weakens the texture contrast
            between units, adds sand drifts and sensor noise.
        p_contact: Probability that a scene shows both units split by a contact (else one unit only).
        p_sand: Probability of dark sand drifts along the contact (scaled up with ``difficulty``).
        p_rover: Probability of rover hardware (class 2) in a bottom corner.
        max_range_m: Ground farther than this horizontal range is labelled 255 (still rendered, hazier).
        hfov_deg_range: Horizontal field of view range, degrees (25 ~ Mastcam-Z zoomed, 90 ~ Navcam).
        pitch_deg_range: Camera pitch below the horizon, degrees.
        roll_deg_max: Roll drawn uniformly in ``[-roll_deg_max, roll_deg_max]``, degrees.
        height_m_range: Camera height above the ground, metres.
        jpeg_quality_range: JPEG quality range applied to half of the scenes, or None for lossless output.
        distortion: Whether to draw a radial distortion ``k1`` (half of the scenes); ray casting with
            distortion iterates the inverse, so it costs about a third more time per scene.
    """

    width: int = 320
    height: int = 240
    mode: str = "color"
    difficulty: float = 0.5
    p_contact: float = 0.85
    p_sand: float = 0.3
    p_rover: float = 0.25
    max_range_m: float = 30.0
    hfov_deg_range: tuple[float, float] = (25.0, 90.0)
    pitch_deg_range: tuple[float, float] = (10.0, 45.0)
    roll_deg_max: float = 3.0
    height_m_range: tuple[float, float] = (1.8, 2.2)
    jpeg_quality_range: tuple[int, int] | None = (70, 95)
    distortion: bool = False

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"SceneConfig.{name} must be a positive integer (pixels), got {v!r}")
        if min(self.width, self.height) < 8:
            raise ValueError(
                f"SceneConfig size {self.width}x{self.height} is too small; use at least 8x8 pixels"
            )
        if self.mode not in MODES:
            raise ValueError(f"SceneConfig.mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= float(self.difficulty) <= 1.0:
            raise ValueError(f"SceneConfig.difficulty must be in [0, 1], got {self.difficulty!r}")
        for name in ("p_contact", "p_sand", "p_rover"):
            _check_prob(name, getattr(self, name))
        if not (math.isfinite(self.max_range_m) and self.max_range_m > 0):
            raise ValueError(
                f"SceneConfig.max_range_m must be a positive number of metres, got {self.max_range_m!r}"
            )
        # Hydra/OmegaConf pass lists; store plain float tuples so configs compare, hash and pickle.
        for name in ("hfov_deg_range", "pitch_deg_range", "height_m_range"):
            v = getattr(self, name)
            if not isinstance(v, tuple | list) and not hasattr(v, "__len__"):
                raise ValueError(f"SceneConfig.{name} must be a (min, max) pair, got {v!r}")
            object.__setattr__(self, name, tuple(float(a) for a in v))
        if self.jpeg_quality_range is not None:
            object.__setattr__(self, "jpeg_quality_range", tuple(int(a) for a in self.jpeg_quality_range))
        _check_range("hfov_deg_range", self.hfov_deg_range, 1.0, 150.0)
        _check_range("pitch_deg_range", self.pitch_deg_range, 1.0, 80.0)
        _check_range("height_m_range", self.height_m_range, 0.1, 100.0)
        if not 0.0 <= float(self.roll_deg_max) <= 45.0:
            raise ValueError(
                f"SceneConfig.roll_deg_max must be in [0, 45] degrees, got {self.roll_deg_max!r}"
            )
        if self.jpeg_quality_range is not None:
            _check_range("jpeg_quality_range", self.jpeg_quality_range, 1, 100)
