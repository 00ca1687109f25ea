"""Writing scenes in the project's data layout, and a torch ``Dataset`` that renders them on the fly.

Layout (DESIGN.md), for a scene named ``<name>``::

    images/<name>.png               uint8 RGB or grey
    masks/<name>.png                uint8 class ids {0, 1, 2, 255}
    contacts/<name>.contact.geojson true contact, pixel coordinates + ground_m, length_m and site
                                    (contact_io format, as predict.py writes it with the camera file);
                                    its pieces share contact_id 0 (one contact)
    cameras/<name>.json             PinholeCamera.to_dict()
    classes.json                    the project's classes by id, beside masks/ (as AI4Mars and MarsScapes
                                    ship theirs), so predict.py's labels_dir and data=folder read the masks
                                    as project ids knowingly (data.class_map.project_classes_file)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from marsunits.atomic import atomic_write_text
from marsunits.boundary.contact_io import write_contacts
from marsunits.data.class_map import write_project_classes_file
from marsunits.data.io import write_png_atomic
from marsunits.data.synthetic.config import SceneConfig
from marsunits.data.synthetic.scene import Scene, generate_scene

#: The ``format`` line of the ``classes.json`` written beside the scenes' masks.
MASKS_FORMAT = "masks/<name>.png: single-channel uint8 project ids, the exact labels of synthetic scenes"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> Path:
    """Write JSON through :func:`marsunits.atomic.atomic_write_text` (never half a file; its temporary
    names are the ones :func:`~marsunits.atomic.remove_stale_temporaries` removes after a killed process)."""
    return atomic_write_text(path, json.dumps(data, indent=1))


def write_scene(scene: Scene, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write one scene under ``out_dir`` in the layout above (each file atomically).

    Returns:
        Paths keyed ``image``, ``mask``, ``contacts``, ``camera`` (the scene's own files; ``classes.json``,
        the same for every scene, is written once: not again where it is there already).
    """
    out = Path(out_dir)
    H, W = scene.mask.shape
    written = {
        "image": write_png_atomic(out / "images" / f"{scene.name}.png", scene.image),
        "mask": write_png_atomic(out / "masks" / f"{scene.name}.png", scene.mask),
        "contacts": write_contacts(out / "contacts" / f"{scene.name}.contact.geojson", scene.contacts, W, H),
        "camera": _write_json_atomic(out / "cameras" / f"{scene.name}.json", scene.camera.to_dict()),
    }
    # Without it, predict.py scoring against these masks said they had been read as project ids, their 2
    # as other, as it says of labels of unknown origin.
    write_project_classes_file(out, MASKS_FORMAT)
    return written


def generate_dataset(
    out_dir: str | os.PathLike[str], n: int, seed: int, config: SceneConfig | None = None
) -> list[str]:
    """Render scenes ``0 .. n-1`` of ``seed`` and write them under ``out_dir``.

    Returns:
        The scene names, in index order.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n (number of scenes) must be a non-negative integer, got {n!r}")
    names = []
    for i in range(n):
        scene = generate_scene(seed, i, config)
        write_scene(scene, out_dir)
        names.append(scene.name)
    return names


class SyntheticScenes(Dataset):
    """``length`` synthetic scenes of ``seed``, rendered on demand (no files, no shared state).

    Item ``i`` is the sample dict of the project contract for ``generate_scene(seed, i, config)``:
    ``image`` float32 (C, H, W) in [0, 1] (C = 3 colour, 1 grey), ``mask`` int64 (H, W),
    ``path`` ``"synthetic://seed=<seed>/<i>"`` and ``camera`` (``PinholeCamera.to_dict()``).
    The object holds only its arguments, so it pickles into DataLoader workers and every worker renders
    the same item identically.

    Args:
        length: Number of scenes (>= 0).
        seed: Non-negative integer seed.
        config: Generator settings (default :class:`SceneConfig()`).
        channels: Optional 1 or 3 to force the channel count (grey repeated to 3, colour averaged to 1
            with luminance weights); needed to batch ``mode="mixed"`` scenes, which otherwise vary.
    """

    def __init__(
        self, length: int, seed: int, config: SceneConfig | None = None, channels: int | None = None
    ) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a non-negative integer, got {length!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
        self.length = length
        self.seed = seed
        self.config = config if config is not None else SceneConfig()
        self.channels = channels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"scene index {i} out of range for {self.length} scenes")
        scene = generate_scene(self.seed, i, self.config)
        img = scene.image.astype(np.float32) / np.float32(255.0)
        img = img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))
        if self.channels == 3 and img.shape[0] == 1:
            img = np.repeat(img, 3, axis=0)
        elif self.channels == 1 and img.shape[0] == 3:
            img = np.einsum("chw,c->hw", img, np.array([0.30, 0.59, 0.11], np.float32))[None]
        return {
            "image": torch.from_numpy(img),
            "mask": torch.from_numpy(scene.mask.astype(np.int64)),
            "path": f"synthetic://seed={self.seed}/{i}",
            "camera": scene.camera.to_dict(),
        }
