"""Physically grounded synthetic rover scenes with exact labels (smooth volcanic vs rough olivine).

A pinhole camera on a mast looks at a flat ground plane; each pixel is ray-cast to the ground and all
appearance (relief, slabs, layers, rocks, shadows, dust, sand) is computed in ground metres, band-limited
by the pixel footprint. Two units are split by a lobate contact on the ground; the mask and the projected
true contact come from the same curve. See ``scene.py`` for the pipeline and ``config.py`` for the knobs.

Public API: :class:`SceneConfig`, :class:`Scene`, :func:`generate_scene`, :func:`write_scene`,
:func:`generate_dataset`, :class:`SyntheticScenes`; CLI ``python -m marsunits.data.synthetic``.
"""

from typing import TYPE_CHECKING

import lazy_loader

# Loaded on first use (lazy_loader): the dataset module imports torch, seconds that ``python -m
# marsunits.data.synthetic`` spent importing this package before its ``__main__`` put its stop guard up
# (quiet_interrupt_at_start): a SIGTERM then ended the command without a word.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["SceneConfig"],
        "dataset": ["SyntheticScenes", "generate_dataset", "write_scene"],
        "scene": ["Scene", "generate_scene", "scene_name"],
    },
)
__all__ = [
    "Scene",
    "SceneConfig",
    "SyntheticScenes",
    "generate_dataset",
    "generate_scene",
    "scene_name",
    "write_scene",
]

if TYPE_CHECKING:  # the names for type checkers
    from marsunits.data.synthetic.config import SceneConfig
    from marsunits.data.synthetic.dataset import SyntheticScenes, generate_dataset, write_scene
    from marsunits.data.synthetic.scene import Scene, generate_scene, scene_name
