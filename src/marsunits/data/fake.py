"""Tiny fake datasets in the real datasets' on-disk layouts, for tests and smoke runs.

Written in the spirit of torchgeo's ``tests/data/*/data.py``: a few small files with the real layout and
the real *native* label ids, so the scanning, class mapping, splitting and batching code runs exactly as on
the real data, in milliseconds. Pixel content is random; only the structure is realistic (a MarsScapes-like
panorama has a black border labelled 255 and sky on top; AI4Mars-like frames are greyscale with 255 holes).
Each folder has the ``classes.json`` its real counterpart has beside its labels: the native ids' names for
MarsScapes and AI4Mars, the project's classes for a labelled folder (as the synthetic scenes' and
pseudo-labels' folders have it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from marsunits.data.class_map import CLASSES_FILE, write_project_classes_file

__all__ = ["write_fake_ai4mars", "write_fake_folder", "write_fake_marsscapes"]


#: The ``format`` line of the ``classes.json`` that :func:`write_fake_folder` writes beside its masks.
FOLDER_MASKS_FORMAT = "masks/<stem>.png: single-channel uint8 project ids (marsunits.data.fake)"


#: The classes each real data set's folder names in its ``classes.json`` (beside ``labels/``), by native id,
#: as ``data/README.md``'s folders ship them.
NATIVE_CLASSES: dict[str, dict[int, str]] = {
    "marsscapes": {
        0: "soil",
        1: "bedrock",
        2: "gravel",
        3: "sand",
        4: "big_rock",
        5: "steep_slope_or_unknown",
        6: "sky",
        7: "unknown_or_ridge_distant_terrain",
        8: "ridge_distant_mountains",
        9: "rover",
        255: "no_data",
    },
    "ai4mars": {0: "soil", 1: "bedrock", 2: "sand", 3: "big_rock", 255: "null"},
}


def _write_native_classes(root: Path, key: str, labels: str) -> None:
    """``root/classes.json`` naming the data set ``key``'s native ids, in the real folder's form."""
    classes = [{"id": i, "name": name} for i, name in NATIVE_CLASSES[key].items()]
    text = json.dumps({"format": labels, "classes": classes}, indent=1) + "\n"
    (root / CLASSES_FILE).write_text(text, encoding="utf-8")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_fake_marsscapes(
    root: str | Path,
    sols: Sequence[int] = (122, 123, 150, 151, 345, 346, 401, 402),
    height: int = 48,
    width: int = 160,
    seed: int = 0,
) -> Path:
    """MarsScapes layout: ``images/<sol>_1.jpg`` (RGB), ``labels/<sol>_1.png`` (native ids), ``stats.csv``,
    ``classes.json`` (:data:`NATIVE_CLASSES`).

    Each label has sky (6) on the top quarter, a soil (0) / bedrock (1) ground split by a vertical contact,
    a few sand (3) and big-rock (4) patches, a steep-slope (5) patch and a 4 px no-data (255) border.
    Widths vary by image (``width`` + 16 * i) like real panoramas.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i, sol in enumerate(sols):
        w = width + 16 * i
        label = np.zeros((height, w), np.uint8)
        label[:, w // 2 :] = 1
        label[: height // 4] = 6
        label[height // 2 : height // 2 + 4, 8:16] = 3
        label[height // 2 + 6 : height // 2 + 10, w - 20 : w - 12] = 4
        label[height // 4 : height // 4 + 3, 4:10] = 5
        label[:4], label[-4:], label[:, :4], label[:, -4:] = 255, 255, 255, 255
        image = rng.integers(40, 220, size=(height, w, 3), dtype=np.uint8)
        image[label == 255] = 0
        name = f"{sol}_1"
        Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=92)
        Image.fromarray(label).save(root / "labels" / f"{name}.png")
        rows.append((name, sol, w, height))
    _write_csv(root / "stats.csv", ("name", "sol", "width", "height"), rows)
    _write_native_classes(
        root, "marsscapes", "labels/<sol>_<n>.png: single-channel uint8, native MarsScapes ids"
    )
    return root


def write_fake_ai4mars(
    root: str | Path, n_images: int = 12, size: int = 64, sols_per_image: int = 7, seed: int = 0
) -> Path:
    """AI4Mars layout: ``images/<id>.jpg`` (greyscale), ``labels/<id>.png`` (0-3, 255), ``stats.csv``
    (``name``, ``sol_approx``), ``classes.json`` (:data:`NATIVE_CLASSES`); image ``k`` is on sol
    ``k * sols_per_image``.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_images):
        label = np.zeros((size, size), np.uint8)
        label[:, size // 2 :] = 1
        label[size // 2 :, : size // 4] = 2
        label[size // 2 :, size - size // 4 :] = 3
        label[: size // 4] = 255  # unlabelled far field
        image = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
        name = f"NLA_{397681586 + 1000 * k}EDR_F0020000AUT_04096M1"
        Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=92)
        Image.fromarray(label).save(root / "labels" / f"{name}.png")
        rows.append((name, "dev", k * sols_per_image))
    _write_csv(root / "stats.csv", ("name", "split", "sol_approx"), rows)
    _write_native_classes(root, "ai4mars", "labels/<id>.png: single-channel uint8, native AI4Mars ids")
    return root


def write_fake_folder(
    root: str | Path,
    n_images: int = 6,
    height: int = 40,
    width: int = 72,
    seed: int = 0,
    stems: Sequence[str] | None = None,
) -> Path:
    """Folder layout: ``images/img_<k>.png`` (RGB), ``masks/img_<k>.png`` (project ids 0/1/2/255); with
    ``stems``, one image of each of those names instead (e.g. ``528_1``: a sol-named pseudo-label folder).
    Beside ``masks/``, the ``classes.json`` naming the project's classes that the project's own folders of
    such masks have (synthetic scenes, pseudo-labels), so that ``predict.py labels_dir=<root>/masks`` and
    ``data=folder`` read them as project ids knowingly.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(stems) if stems is not None else [f"img_{k}" for k in range(n_images)]
    for name in names:
        mask = np.zeros((height, width), np.uint8)
        mask[:, width // 3 :] = 1
        mask[: height // 5] = 2
        mask[-2:] = 255
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    write_project_classes_file(root, FOLDER_MASKS_FORMAT)
    return root
