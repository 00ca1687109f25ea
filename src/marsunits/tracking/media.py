"""Pictures for the experiment dashboard: images with contact lines drawn, and the confusion-matrix heatmap.

Pure functions of arrays (no W&B, no Lightning), so they are tested on their own and reused by any logger.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from marsunits.boundary.contact_io import ContactLine
from marsunits.constants import CONTACT_COLOR


def image_to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Turn a model input into a displayable picture.

    Args:
        image: float array ``(C, H, W)`` with values in [0, 1], C in {1, 3} (the sample contract); values
            outside [0, 1] are clipped.

    Returns:
        uint8 array ``(H, W, 3)``; a single channel is repeated into grey RGB.

    Raises:
        ValueError: If the array is not ``(C, H, W)`` with 1 or 3 channels.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (C, H, W) with C in {{1, 3}}, got {arr.shape}")
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def draw_contacts(
    rgb: np.ndarray,
    lines: Sequence[ContactLine],
    color: tuple[int, int, int] = CONTACT_COLOR,
    width: int | None = None,
) -> np.ndarray:
    """Draw contact polylines on a copy of an RGB image.

    Args:
        rgb: uint8 ``(H, W, 3)`` image.
        lines: Contact lines in the project's pixel coordinates (``x`` = column, ``y`` = row, origin at the
            top-left pixel's corner), which is also PIL's drawing convention, so no shift is applied.
        color: RGB colour of the lines.
        width: Line width in pixels; default scales with the image (1 px per 128 px of the short side, at
            least 1) so lines stay visible on large images without hiding small ones.

    Returns:
        A new uint8 ``(H, W, 3)`` array.
    """
    canvas = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    if width is None:
        width = max(1, round(min(rgb.shape[:2]) / 128))
    draw = ImageDraw.Draw(canvas)
    for line in lines:
        pts = [(float(x), float(y)) for x, y in np.asarray(line.pixels, dtype=float)]
        if len(pts) >= 2:
            draw.line(pts, fill=tuple(color), width=width, joint="curve")
    return np.asarray(canvas)


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Confusion matrix divided by its row sums (recall per true class); rows with no pixels are NaN.

    Args:
        matrix: ``(K, K)`` counts, rows = true class, columns = predicted class.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be square (K, K), got shape {counts.shape}")
    sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, counts / np.where(sums > 0, sums, 1.0), np.nan)


def confusion_rows(matrix: np.ndarray, class_names: Sequence[str]) -> list[list[object]]:
    """Rows ``[true, predicted, pixels, fraction_of_true]`` for a table, one per cell of the matrix.

    ``fraction_of_true`` is the row-normalised value (None for a class absent from the ground truth).
    """
    counts = np.asarray(matrix)
    norm = row_normalised(counts)
    _check_names(counts, class_names)
    rows: list[list[object]] = []
    for i, true_name in enumerate(class_names):
        for j, pred_name in enumerate(class_names):
            frac = None if np.isnan(norm[i, j]) else round(float(norm[i, j]), 6)
            rows.append([true_name, pred_name, int(counts[i, j]), frac])
    return rows


def _check_names(matrix: np.ndarray, class_names: Sequence[str]) -> None:
    if len(class_names) != matrix.shape[0]:
        raise ValueError(
            f"{len(class_names)} class names ({list(class_names)}) for a {matrix.shape[0]}x{matrix.shape[1]} "
            "confusion matrix; pass one name per class id."
        )


def confusion_heatmap(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> np.ndarray:
    """Render the row-normalised confusion matrix as an annotated heatmap.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global figure state), so it
    is safe in a training process and in worker threads.

    Args:
        matrix: ``(K, K)`` counts, rows = true class, columns = predicted class.
        class_names: K names, in class-id order (axis labels).
        title: Optional figure title.

    Returns:
        uint8 RGB array ``(H, W, 3)``. Cells show the row fraction and, below it, the pixel count; a true
        class with no pixels shows "n/a".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    _check_names(counts, class_names)
    norm = row_normalised(counts)
    k = len(class_names)
    fig = Figure(figsize=(1.6 * k + 2.2, 1.4 * k + 1.6), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.nan_to_num(norm, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), labels=list(class_names), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(k):
        for j in range(k):
            value = norm[i, j]
            text = "n/a" if np.isnan(value) else f"{value:.2f}\n{int(counts[i, j]):,} px"
            dark = not np.isnan(value) and value > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
