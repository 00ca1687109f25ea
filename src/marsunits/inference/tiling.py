"""Sliding-window inference for images of any size, with Gaussian blending of overlapping windows.

The idea is MONAI's ``sliding_window_inference`` (``monai/inferers/utils.py``): cut the image into
overlapping windows, run the network on batches of windows, weight each window's output with a Gaussian
importance map (``sigma = window / 8``) so that pixels near a window's border, where the network sees
little context, count less, and divide the weighted sum by the summed weights. It is written here
because MONAI is not a dependency, and because two choices differ from it:

* **Separable normalisation.** The windows form a product grid (the same row starts for every column
  start) and the Gaussian is separable, so the summed weight at pixel ``(r, c)`` is
  ``sum_rows(r) * sum_cols(c)``. Only two 1-D vectors are kept instead of a full ``(H, W)`` weight image,
  so the CPU accumulation holds exactly one ``(C_out, H, W)`` float32 buffer: its size depends on the
  image only, never on the number of windows or of images.
* **Padding only where needed.** A side shorter than the window is reflect-padded to the next multiple
  of the network stride (32) and covered by one window; a side at least as long as the window is
  covered by windows that lie entirely inside the image, so a wide panorama is never copied or padded.
* **Windows sized to the image.** ``tile`` is the largest window; each side gets the fewest windows that
  keep the requested overlap, each only as wide as needed and evenly spread (:func:`side_layout`), so
  the repeated work at overlaps stays near ``(1 + overlap)`` per side whatever the image size.

What is blended is whatever ``fn`` returns; :class:`~marsunits.inference.predictor.Predictor` passes
softmax probabilities, so the result is a weighted mean of per-window class distributions (itself a
distribution, bounded in [0, 1]) and a single over-confident window cannot dominate its neighbours the
way a large logit would.

Coordinates: ``(row, column)`` with the origin at the top-left pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

#: Output stride of a five-stage encoder (five 2x downsamplings): its inputs must be multiples of it. A model
#: decoding from fewer stages has a smaller one (``SegmentationTask.size_divisor``: 16 for the default model),
#: and the callers pass that; 32 is the default where no model is at hand, and a multiple of every one.
NETWORK_STRIDE = 32

#: Gaussian width relative to the window size (MONAI's default ``sigma_scale``).
SIGMA_SCALE = 0.125


@dataclass(frozen=True)
class TileGrid:
    """Where the windows of one image lie.

    Attributes:
        height: Image height in pixels (before padding).
        width: Image width in pixels (before padding).
        padded_height: Height after reflect-padding (``== height`` when ``height >= window``).
        padded_width: Width after reflect-padding.
        window_height: Window height in pixels (a multiple of the stride).
        window_width: Window width in pixels (a multiple of the stride).
        row_starts: Top row of each window row, in padded coordinates.
        col_starts: Left column of each window column, in padded coordinates.
    """

    height: int
    width: int
    padded_height: int
    padded_width: int
    window_height: int
    window_width: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @property
    def num_windows(self) -> int:
        """Number of windows the image is cut into."""
        return len(self.row_starts) * len(self.col_starts)

    def windows(self) -> Iterator[tuple[int, int]]:
        """Yield ``(row_start, col_start)`` of every window, row by row."""
        for r in self.row_starts:
            for c in self.col_starts:
                yield r, c


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return int(math.ceil(value / multiple) * multiple)


def side_layout(
    length: int, tile: int, overlap: float, stride: int = NETWORK_STRIDE
) -> tuple[int, tuple[int, ...]]:
    """Window side and start offsets covering ``[0, length)`` when ``length >= tile``.

    The fewest windows of at most ``tile`` pixels whose neighbours share at least ``overlap * tile``
    pixels are used, and they are made only as wide as needed (rounded up to ``stride``) and spread
    evenly. A fixed ``tile`` with the last window pushed back to the far edge (MONAI's layout) would
    repeat up to a whole window of work on a side just longer than a multiple of the step: 1536 px with
    512 px windows and 64 px of overlap takes four 512 px windows (2048 px of work) there, four of
    448 px (1792 px) here.

    Args:
        length: Side length in pixels, ``>= tile``.
        tile: Largest window side in pixels, a multiple of ``stride``.
        overlap: Smallest fraction of ``tile`` shared by neighbouring windows, in ``[0, 1)``.
        stride: Window sides are multiples of it.

    Returns:
        ``(window, starts)``: ``window`` a multiple of ``stride`` with ``window <= tile``; ``starts`` sorted
        and distinct, the first 0 and the last ``length - window``, neighbours at most
        ``window - overlap * tile`` apart (so they share at least ``min(overlap * tile, tile - 1)`` pixels,
        give or take one from rounding), every window inside ``[0, length)``, every pixel in one.
    """
    if length < tile:
        raise ValueError(f"side_layout needs length >= tile, got length={length}, tile={tile}")
    # At most tile - 1: an overlap close to 1 (0.99 of 32 px) rounds to the whole tile, and a step of one
    # pixel then counted one window too few, leaving the last rows of the side in no window (NaN
    # probabilities, which predict.py refused as a model with broken weights).
    shared = min(int(round(overlap * tile)), tile - 1)
    step = tile - shared
    count = max(1, int(math.ceil((length - shared) / step)))
    # count * tile >= length + (count - 1) * shared, so the window below never exceeds tile.
    window = min(tile, round_up(int(math.ceil((length + (count - 1) * shared) / count)), stride))
    if count == 1:
        return window, (0,)
    starts = np.round(np.linspace(0, length - window, count)).astype(int)
    return window, tuple(sorted({int(s) for s in starts}))


def model_tile_note(option: str, tile: int, stride: int, source: object = None) -> str:
    """What to add to :func:`make_grid`'s refusal of a ``tile`` taken from the model (``option``, e.g.
    ``tile=null``, asks for its ``tile_size``): the refusal's "got 36" names a value the user never typed.

    Returns:
        ``""`` when ``tile`` is a positive multiple of ``stride`` (the refusal is about something else),
        else `` (tile=null takes the model's tile_size (36) in <source>; give a tile, e.g. tile=32)``.
    """
    if tile > 0 and tile % stride == 0:
        return ""
    where = f" in {source}" if source is not None else ""
    fit = max(stride, tile // stride * stride)
    return f" ({option} takes the model's tile_size ({tile}){where}; give a tile, e.g. tile={fit})"


def make_grid(height: int, width: int, tile: int, overlap: float, stride: int = NETWORK_STRIDE) -> TileGrid:
    """Plan the windows for an image of ``height`` x ``width`` pixels.

    A side shorter than ``tile`` is padded to the stride and covered by one window; a longer one is laid
    out by :func:`side_layout` (windows inside the image, at most ``tile`` wide).

    Args:
        height: Image height in pixels (>= 1).
        width: Image width in pixels (>= 1).
        tile: Largest window side in pixels; must be a positive multiple of ``stride``.
        overlap: Smallest fraction of ``tile`` shared by neighbouring windows, in ``[0, 1)``.
        stride: Network output stride; padded sizes and windows are multiples of it.

    Raises:
        ValueError: If ``tile`` is not a positive multiple of ``stride`` or ``overlap`` is outside ``[0, 1)``.
    """
    if tile <= 0 or tile % stride:
        lower, upper = max(stride, tile // stride * stride), round_up(max(tile, 1), stride)
        choice = f"{lower} or {upper}" if lower != upper else f"e.g. {upper} or {4 * upper}"
        raise ValueError(
            f"tile must be a positive multiple of the network stride {stride}, got {tile}; use {choice}"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap}")
    if height < 1 or width < 1:
        raise ValueError(f"image must have at least one pixel, got {height}x{width}")

    def side(length: int) -> tuple[int, int, tuple[int, ...]]:
        if length < tile:
            padded = round_up(length, stride)
            return padded, padded, (0,)
        window, starts = side_layout(length, tile, overlap, stride)
        return length, window, starts

    ph, wh, rows = side(height)
    pw, ww, cols = side(width)
    return TileGrid(height, width, ph, pw, wh, ww, rows, cols)


def gaussian_1d(length: int, sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Gaussian importance profile of a window side, peak 1 at the centre, float32 ``(length,)``.

    ``sigma = sigma_scale * length``. At the window edge (4 sigma) the weight is ~3e-4, never zero, so
    every pixel keeps a positive total weight. The 2-D map is ``outer(gaussian_1d(h), gaussian_1d(w))``.
    ``scipy.signal.windows.gaussian(length, sigma)`` gives the same float32 window (checked for lengths 1 to
    1024), but importing ``scipy.signal`` adds about 0.3 s to every ``predict.py`` start for two lines.
    """
    centre = (length - 1) / 2.0
    sigma = max(sigma_scale * length, 1e-3)
    x = np.arange(length, dtype=np.float64)
    g = np.exp(-0.5 * ((x - centre) / sigma) ** 2)
    return np.maximum(g, np.finfo(np.float32).tiny).astype(np.float32)


def summed_weights(starts: tuple[int, ...], window: int, length: int, profile: np.ndarray) -> np.ndarray:
    """Sum of the window profiles placed at ``starts`` along one side, float64 ``(length,)``."""
    total = np.zeros(length, dtype=np.float64)
    for s in starts:
        total[s : s + window] += profile
    return total


def pad_image(image: torch.Tensor, padded_height: int, padded_width: int) -> torch.Tensor:
    """Reflect-pad ``image`` (C, H, W) at the bottom/right to the padded size; no copy when none is needed.

    Reflection repeats as often as needed (``numpy.pad`` semantics), so a 1-pixel side works too.
    """
    _, h, w = image.shape
    if (h, w) == (padded_height, padded_width):
        return image
    padded = np.pad(image.numpy(), ((0, 0), (0, padded_height - h), (0, padded_width - w)), mode="reflect")
    return torch.from_numpy(padded)


@torch.inference_mode()
def sliding_window(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    tile: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    out_channels: int = 3,
    stride: int = NETWORK_STRIDE,
) -> np.ndarray:
    """Run ``fn`` over overlapping windows of ``image`` and blend the outputs with a Gaussian weight.

    Args:
        fn: Maps a float batch ``(B, C, h, w)`` on ``device`` to ``(B, out_channels, h, w)``; ``h`` and
            ``w`` are multiples of ``stride``.
        image: Float32 CPU tensor ``(C, H, W)``, any ``H, W >= 1``.
        tile: Largest window side in pixels, a multiple of ``stride`` (see :func:`make_grid`). Sides
            shorter than ``tile`` are padded to a multiple of ``stride`` instead of being tiled.
        overlap: Smallest fraction of ``tile`` shared by neighbouring windows, in ``[0, 1)``.
        batch_size: Windows per call of ``fn``.
        device: Where ``fn`` runs. Windows are copied there (from pinned memory on CUDA); the
            accumulation stays on the CPU.
        out_channels: Channels ``fn`` returns.
        stride: Network stride.

    Precision, memory format and runtime are ``fn``'s business (:mod:`marsunits.inference.runtime`).

    Returns:
        Float32 array ``(out_channels, H, W)``: the weighted mean of the window outputs at each pixel,
        cropped to the exact input size.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    _, h, w = image.shape
    grid = make_grid(h, w, tile, overlap, stride)
    source = pad_image(image.float(), grid.padded_height, grid.padded_width)

    gy = gaussian_1d(grid.window_height)
    gx = gaussian_1d(grid.window_width)
    weight = torch.from_numpy(np.outer(gy, gx))  # (wh, ww) float32
    # The single accumulation buffer, shape fixed by the (padded) image size.
    acc = np.zeros((out_channels, grid.padded_height, grid.padded_width), dtype=np.float32)
    acc_t = torch.from_numpy(acc)

    positions = list(grid.windows())
    wh, ww = grid.window_height, grid.window_width
    use_pinned = device.type == "cuda"
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        batch = torch.stack([source[:, r : r + wh, c : c + ww] for r, c in chunk])
        if use_pinned:
            batch = batch.pin_memory()
        batch = batch.to(device, non_blocking=use_pinned)
        out = fn(batch)
        if out.shape != (len(chunk), out_channels, wh, ww):
            raise RuntimeError(
                f"the model returned shape {tuple(out.shape)} for windows of shape {tuple(batch.shape)}; "
                f"expected {(len(chunk), out_channels, wh, ww)}"
            )
        out = out.float().cpu()
        for (r, c), o in zip(chunk, out, strict=True):
            acc_t[:, r : r + wh, c : c + ww].add_(o * weight)

    # Separable normalisation (see module docstring): divide by outer(row sums, column sums) in place,
    # one row band at a time so no (H, W) temporary is made.
    row_total = summed_weights(grid.row_starts, wh, grid.padded_height, gy).astype(np.float32)
    col_total = summed_weights(grid.col_starts, ww, grid.padded_width, gx).astype(np.float32)
    band = 256
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        acc[:, r0:r1, :w] /= np.outer(row_total[r0:r1], col_total[:w])[None]
    if (grid.padded_height, grid.padded_width) == (h, w):
        return acc
    return np.ascontiguousarray(acc[:, :h, :w])
