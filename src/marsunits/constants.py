"""The class contract shared by every module (see DESIGN.md).

Ids are fixed: masks on disk (uint8 PNG) and tensors (int64) use them, logits have one channel per class
in this order, and 255 marks pixels that are never trained on and never scored.
"""

from __future__ import annotations

SMOOTH_VOLCANIC = 0
ROUGH_OLIVINE = 1
OTHER = 2
IGNORE_INDEX = 255

CLASS_NAMES: tuple[str, ...] = ("smooth_volcanic", "rough_olivine", "other")
NUM_CLASSES = len(CLASS_NAMES)

#: Human-readable descriptions, for reports and the README.
CLASS_DESCRIPTIONS: dict[str, str] = {
    "smooth_volcanic": "smooth, dark, basaltic lava-flow plains (Máaz-like)",
    "rough_olivine": "rough, ridged, blocky olivine-rich cumulate (Séítah-like)",
    "other": "not a geologic unit surface: sky, rover hardware, far field",
}

#: RGB colour per class id, used by overlays, previews and W&B masks. Ignore is drawn black. Both units are
#: cool colours, away from the butterscotch of Mars images: rough_olivine was amber (240, 170, 40) until
#: 2026-12-07, and a panorama the model called mostly rough looked untouched under it. A model keeps the
#: palette it was trained with (its checkpoint's ``palette``).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (64, 110, 230),  # smooth_volcanic: blue
    (40, 200, 80),  # rough_olivine: olivine green
    (150, 150, 150),  # other: grey
)
IGNORE_COLOR: tuple[int, int, int] = (0, 0, 0)

#: The default palette (:data:`PALETTE`) until 2026-12-06, the one overlays were drawn in whatever a model's
#: ``palette`` said, for records written then (without ``overlay_palette``). The default's rough_olivine has
#: since changed (amber to olivine green, 2026-12-07). Also a colour mask may have been drawn in it.
PALETTE_UNTIL_2026_12_06: tuple[tuple[int, int, int], ...] = ((64, 110, 230), (240, 170, 40), (150, 150, 150))

#: Colour of contact lines drawn on overlays when no confidence colouring is used.
CONTACT_COLOR: tuple[int, int, int] = (255, 40, 40)

#: ImageNet normalisation, for encoders pretrained on ImageNet (RGB order).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Valid values in a project mask.
VALID_MASK_VALUES: frozenset[int] = frozenset({SMOOTH_VOLCANIC, ROUGH_OLIVINE, OTHER, IGNORE_INDEX})
