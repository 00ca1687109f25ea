"""Score predicted masks against label masks: confusion matrix, per-class IoU, mIoU, pixel accuracy.

Counting is a ``numpy.bincount`` over ``target * 3 + pred`` (the same sum torchmetrics'
``MulticlassConfusionMatrix`` forms), done in numpy because masks arrive from disk as uint8 arrays and a
panorama-sized int64 tensor copy would only cost memory. Pixels whose label is 255 (ignore) are not scored.

Conventions: confusion rows are true classes, columns predicted classes, ids 0..2
(:data:`marsunits.constants.CLASS_NAMES`). A class that is absent from both the labels and the predictions
has no IoU (``None``); mIoU is the mean over the classes that have one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from marsunits.data.io import ImageReadError, read_mask

#: Label file extensions tried, in order, for ``labels_dir/<rel folder>/<stem><ext>``.
LABEL_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff")


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Confusion counts ``(num_classes, num_classes)`` int64; rows = target, columns = prediction.

    Args:
        pred: Integer ``(H, W)`` predicted ids in ``[0, num_classes)``.
        target: Integer ``(H, W)`` label ids in ``[0, num_classes)`` or ``ignore_index``.

    Raises:
        ValueError: Shapes differ, or ids outside the valid range (the message lists them).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction is {pred.shape[::-1]} (W, H) but the label is {target.shape[::-1]}")
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    for name, ids in (("label", t), ("prediction", p)):
        bad = np.unique(ids[(ids < 0) | (ids >= num_classes)])
        if bad.size:
            raise ValueError(
                f"{name} holds ids {bad.tolist()} outside 0..{num_classes - 1} and {ignore_index} (ignore); "
                "convert the mask to project ids first"
            )
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(cm: np.ndarray) -> dict[str, Any]:
    """IoU per class (by name), mIoU, pixel accuracy and the matrix itself, from confusion counts.

    Returns:
        ``{"iou": {name: float | None}, "miou": float | None, "pixel_accuracy": float | None,
        "pixels": int, "confusion_matrix": [[int]]}``; None where the quantity is undefined (no pixels).
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = {name: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, name in enumerate(CLASS_NAMES)}
    defined = [v for v in iou.values() if v is not None]
    total = int(cm.sum())
    return {
        "iou": iou,
        "miou": float(np.mean(defined)) if defined else None,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "pixels": total,
        "confusion_matrix": cm.tolist(),
    }


def find_label(labels_dir: Path, rel: PurePosixPath) -> Path | None:
    """Label of input ``rel``: ``labels_dir/<rel folder>/<stem>`` + the first LABEL_EXTENSIONS found."""
    for ext in LABEL_EXTENSIONS:
        candidate = labels_dir / rel.parent / f"{rel.stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Evaluation:
    """Accumulates per-image and overall scores for a prediction run with ``labels_dir``.

    Attributes:
        labels_dir: Folder of label masks (project ids) mirroring the input folder.
    """

    labels_dir: Path
    total: np.ndarray = field(default_factory=lambda: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64))
    per_image: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, rel: PurePosixPath, pred: np.ndarray) -> None:
        """Score ``pred`` (uint8 ``(H, W)``) against its label, if one exists; problems are recorded."""
        key = rel.as_posix()
        label_path = find_label(self.labels_dir, rel)
        if label_path is None:
            self.missing.append(key)
            return
        try:
            cm = confusion_matrix(pred, read_mask(label_path))
        except (ImageReadError, ValueError) as exc:
            self.errors[key] = f"{label_path}: {exc}"
            return
        self.total += cm
        self.per_image[key] = {"label": os.fspath(label_path), **scores(cm)}

    def merge(self, other: Evaluation) -> None:
        """Add the scores of ``other`` (another shard of the same run, disjoint images) to this one."""
        self.total += other.total
        self.per_image.update(other.per_image)
        self.missing.extend(other.missing)
        self.errors.update(other.errors)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "labels_dir": os.fspath(self.labels_dir),
            "class_names": list(CLASS_NAMES),
            "ignore_index": IGNORE_INDEX,
            "images_scored": len(self.per_image),
            "overall": scores(self.total),
            "per_image": self.per_image,
            "missing_labels": sorted(self.missing),
            "label_errors": self.errors,
        }
