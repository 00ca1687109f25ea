"""Torch datasets over an :class:`~marsunits.data.store.ImageStore` or a synthetic scene dataset.

Every item is a sample dict (the project contract): ``image`` float32 ``(C, H, W)`` in [0, 1] with
``C = in_channels``, ``mask`` int64 ``(H, W)`` with values in {0, 1, 2, 255}, ``path`` str, and ``camera``
(dict) only where the image is unmodified and a camera is known.

* :class:`RandomCropDataset` (training): ``length`` random ``crop_size``-square crops per epoch; the image
  is drawn with probability proportional to its labelled (non-255) pixels, so a 6000 px panorama is
  sampled more than a 1500 px one and all-ignore images never; crops whose labelled fraction is below
  ``min_labelled_fraction`` are re-drawn (``max_tries``), then centred on a random labelled pixel.
* :class:`TiledDataset` (validation/test on real data): a fixed grid of ``crop_size`` tiles covering each
  image. The last tile of a row/column is flush with the image edge; the part it shares with the previous
  tile is set to 255 in its mask, so every labelled pixel is scored exactly once and the metrics equal
  full-image metrics (up to the model seeing less context at tile edges). With ``context_px`` the network
  sees each tile inside a larger window (``crop_size + 2 * context_px`` square, shifted inwards at image
  edges) whose mask is ignore outside the tile, as a sliding-window prediction would. Tiles with no
  labelled pixel are skipped. The tile order is a fixed seeded permutation, so
  ``trainer.limit_val_batches`` takes an unbiased, still deterministic, subset.
* :class:`SceneDataset`: wraps a synthetic scene dataset (channels converted, optional augmentation).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from marsunits.constants import IGNORE_INDEX
from marsunits.data.io import to_channels
from marsunits.data.store import ImageStore, as_float
from marsunits.errors import TerminatedError, counted, some_of

__all__ = ["RandomCropDataset", "SceneDataset", "TiledDataset", "make_sample", "tile_starts"]

Transform = Callable[[dict[str, Any]], dict[str, Any]]
log = logging.getLogger(__name__)


def make_sample(
    image: np.ndarray,
    mask: np.ndarray,
    path: str,
    in_channels: int,
    crop_size: int | None = None,
    transform: Transform | None = None,
    reflect_pad: bool = False,
) -> dict[str, Any]:
    """Arrays -> a sample dict, padding to ``crop_size`` (image 0, mask 255) and converting channels.

    Args:
        image: ``(H, W, C)`` uint8 (0..255) or float [0, 1].
        mask: ``(H, W)`` project ids (any integer dtype).
        path: source file, stored as ``sample["path"]``.
        in_channels: channels of the output image (1 or 3).
        crop_size: pad bottom/right up to this size if smaller (``None``: no padding).
        transform: optional paired transform (see :mod:`marsunits.data.transforms`).
        reflect_pad: pad the image by reflection, as ``predict.py`` pads a side shorter than its window
            (:func:`marsunits.inference.tiling.pad_image`), instead of with 0; the mask is 255 either way.
    """
    img = to_channels(as_float(image), in_channels)
    if crop_size is not None and (img.shape[0] < crop_size or img.shape[1] < crop_size):
        pad_h, pad_w = max(crop_size - img.shape[0], 0), max(crop_size - img.shape[1], 0)
        img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if reflect_pad else "constant")
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"{path}: mask values must be in 0..255, found {mask.min()}..{mask.max()}.")
        mask = mask.astype(np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    # uint8 through the transforms (nearest resampling of uint8 masks is much cheaper than of int64);
    # the int64 of the sample contract is produced at the end.
    m = torch.from_numpy(np.ascontiguousarray(mask))
    if transform is not None:
        out = transform({"image": tv_tensors.Image(x), "mask": tv_tensors.Mask(m)})
        x, m = out["image"], out["mask"]
    return {
        "image": x.as_subclass(torch.Tensor).float().contiguous(),
        "mask": m.as_subclass(torch.Tensor).long().contiguous(),
        "path": path,
    }


@contextlib.contextmanager
def fixed_draws(seed: int | None, index: int) -> Iterator[None]:
    """Inside the block, torch's global generator is seeded from ``(seed, index)`` (and restored after), so
    sample ``index`` gets the same crop and augmentation every epoch; ``seed`` None: nothing changes.
    For ``debug=overfit`` (``data.fixed_crops``): fresh random crops every epoch never let a model overfit
    "a few batches" of real data, and a healthy model looked broken."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0]))
        yield


class RandomCropDataset(Dataset):
    """``length`` random square crops per epoch, images drawn in proportion to their labelled pixels.

    Randomness comes from torch's generator (seeded per worker and epoch by the DataLoader, and by
    ``lightning.seed_everything``), so crops differ between epochs yet runs are reproducible; the
    ``index`` argument only counts samples.

    Args:
        store: the training images.
        length: crops per epoch (``len(self)``).
        crop_size: crop height and width in pixels (images smaller than this are padded with ignore).
        in_channels: 1 or 3.
        transform: paired augmentation applied after cropping.
        min_labelled_fraction: a crop needs at least this fraction of non-255 pixels, else it is re-drawn.
        max_tries: re-draws before falling back to a crop centred on a random labelled pixel.
        focus_class: project id of a class to over-sample (nnU-Net's foreground over-sampling), or None.
        focus_fraction: fraction of the crops (drawn per crop) that are placed to contain a pixel of
            ``focus_class``: the image is drawn in proportion to its pixels of that class, the pixel
            uniformly among them, and the crop uniformly among the positions that contain it. The other
            crops are drawn as without focus. 0 (the default) draws no extra random numbers, so runs
            without focus are unchanged.
        fixed_seed: when given, crop ``index`` and its augmentation are drawn from ``(fixed_seed, index)``
            (:func:`fixed_draws`): the same crops every epoch, for ``debug=overfit``.

    Raises:
        ValueError: no image has a labelled pixel; ``focus_fraction`` outside [0, 1]; a focus class with no
            pixel in any training image.
    """

    def __init__(
        self,
        store: ImageStore,
        length: int,
        crop_size: int,
        in_channels: int,
        transform: Transform | None = None,
        min_labelled_fraction: float = 0.01,
        max_tries: int = 20,
        focus_class: int | None = None,
        focus_fraction: float = 0.0,
        fixed_seed: int | None = None,
    ) -> None:
        counts = store.labelled_counts.astype(np.float64)
        if len(store) == 0 or counts.sum() == 0:
            names = ", ".join(r.image.name for r in store.records[:5])
            raise ValueError(
                f"No labelled pixels in the {counted(len(store), 'training image')} ({names}): every mask "
                "value maps to 255. Check the masks and the class_map in configs/data/<name>.yaml."
            )
        unlabelled = [store.records[i].mask.name for i in np.flatnonzero(counts == 0)]
        if unlabelled:  # never drawn (their probability is 0): say so, a mask saved wrongly looks like this
            one = len(unlabelled) == 1
            log.warning(
                "%d of %s %s no labelled pixel after the class map, so %s never trained on: %s. If %s "
                "be labelled, check that %s saved with class ids (0, 1, 2; 255 = no label) and not as a "
                "colour rendering",
                len(unlabelled),
                counted(len(store), "training mask"),
                "holds" if one else "hold",
                "its image is" if one else "their images are",
                some_of(unlabelled, 10),
                "it should" if one else "they should",
                "it was" if one else "they were",
            )
        self.store = store
        self.fixed_seed = fixed_seed
        self.length = int(length)
        self.crop_size = int(crop_size)
        self.in_channels = int(in_channels)
        self.transform = transform
        self.min_labelled_fraction = float(min_labelled_fraction)
        self.max_tries = int(max_tries)
        #: Probability of drawing each image (proportional to its labelled pixels).
        self.probabilities = counts / counts.sum()
        if not 0.0 <= focus_fraction <= 1.0:
            raise ValueError(
                f"data.focus_fraction must be in [0, 1] (a share of the crops), got {focus_fraction}."
            )
        self.focus_class = focus_class
        self.focus_fraction = float(focus_fraction) if focus_class is not None else 0.0
        #: Probability of drawing each image for a focused crop (proportional to its focus-class pixels).
        self.focus_probabilities: np.ndarray | None = None
        if self.focus_fraction > 0:
            focus = np.array([np.count_nonzero(store.mask(i) == focus_class) for i in range(len(store))])
            if focus.sum() == 0:
                raise ValueError(
                    f"focus_class={focus_class}: no pixel of that class in the "
                    f"{counted(len(store), 'training image')}; set data.focus_class to a class present in "
                    "the training masks, or data.focus_fraction=0."
                )
            self.focus_probabilities = focus / focus.sum()

    def __len__(self) -> int:
        return self.length

    def _window(self, rng: np.random.Generator, mask: np.ndarray) -> tuple[int, int]:
        """Top-left corner of a crop with enough labelled pixels (re-drawn up to ``max_tries`` times)."""
        c = self.crop_size
        h, w = mask.shape
        max_y, max_x = max(h - c, 0), max(w - c, 0)
        need = self.min_labelled_fraction * c * c
        for _ in range(self.max_tries):
            y0, x0 = int(rng.integers(0, max_y + 1)), int(rng.integers(0, max_x + 1))
            labelled = np.count_nonzero(mask[y0 : y0 + c, x0 : x0 + c] != IGNORE_INDEX)
            if labelled > 0 and labelled >= need:
                return y0, x0
        # Rare (mostly-ignore images): centre the crop on a labelled pixel, which guarantees >= 1 label.
        ys, xs = np.nonzero(mask != IGNORE_INDEX)
        k = int(rng.integers(0, len(ys)))
        y0 = int(np.clip(ys[k] - c // 2, 0, max_y))
        x0 = int(np.clip(xs[k] - c // 2, 0, max_x))
        return y0, x0

    def _focused_window(self, rng: np.random.Generator, mask: np.ndarray) -> tuple[int, int]:
        """Top-left corner of a crop containing a random pixel of ``focus_class`` (anywhere in the crop)."""
        c = self.crop_size
        h, w = mask.shape
        flat = np.flatnonzero(mask == self.focus_class)
        y, x = divmod(int(flat[int(rng.integers(0, len(flat)))]), w)
        # Uniform among the corners whose crop holds (y, x) and lies inside the image. Shifting by a random
        # 0..c-1 and clipping to the image put half the crops of a 512 px image flush with its edges.
        y0 = int(rng.integers(max(0, y - c + 1), max(min(y, h - c), 0) + 1))
        x0 = int(rng.integers(max(0, x - c + 1), max(min(x, w - c), 0) + 1))
        return y0, x0

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} crops per epoch")
        with fixed_draws(self.fixed_seed, index):
            return self._crop()

    def _crop(self) -> dict[str, Any]:
        """One random crop, drawn from torch's global generator (which :func:`fixed_draws` seeds per index
        when the crops are fixed)."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        if self.focus_probabilities is not None and rng.random() < self.focus_fraction:
            i = int(rng.choice(len(self.focus_probabilities), p=self.focus_probabilities))
            mask = self.store.mask(i)
            y0, x0 = self._focused_window(rng, mask)
        else:
            i = int(rng.choice(len(self.probabilities), p=self.probabilities))
            mask = self.store.mask(i)
            y0, x0 = self._window(rng, mask)
        c = self.crop_size
        image = self.store.image(i)[y0 : y0 + c, x0 : x0 + c]
        return make_sample(
            image,
            mask[y0 : y0 + c, x0 : x0 + c],
            str(self.store.records[i].image),
            self.in_channels,
            crop_size=c,
            transform=self.transform,
        )


def tile_starts(length: int, tile: int) -> list[tuple[int, int]]:
    """``(start, keep_from)`` of tiles covering ``range(length)``: stride ``tile``, last tile flush with the
    end; ``keep_from`` is the first offset inside the tile not covered by an earlier tile."""
    if length <= tile:
        return [(0, 0)]
    starts = [(s, 0) for s in range(0, length - tile + 1, tile)]
    covered = starts[-1][0] + tile
    if covered < length:
        last = length - tile
        starts.append((last, covered - last))
    return starts


class TiledDataset(Dataset):
    """A deterministic grid of ``crop_size`` tiles covering every image once (validation / test).

    Args:
        store: the images.
        crop_size: tile height and width: the part of each item that is scored.
        in_channels: 1 or 3.
        order_seed: seed of the fixed permutation of tiles (``None``: image order, row-major).
        context_px: extra pixels of image the network sees on each side of a tile. Items are then
            ``crop_size + 2 * context_px`` square windows (moved inwards where the tile is near an image
            edge), whose mask is 255 outside the tile, so each labelled pixel is still scored exactly once.

    Where an image is smaller than the window, the window is padded bottom/right with mask 255 and the
    image reflected, as ``predict.py`` pads a short side: padded with black, the network saw a dark border
    that ``predict.py`` never shows it, and a 128 x 96 px image in a 256 px window was scored 3 to 4 points
    of pixel accuracy lower than ``predict.py`` scores it, with ``other`` predicted beside the border.
    """

    def __init__(
        self,
        store: ImageStore,
        crop_size: int,
        in_channels: int,
        order_seed: int | None = 0,
        context_px: int = 0,
    ) -> None:
        if context_px < 0:
            raise ValueError(f"context_px must be >= 0, got {context_px}")
        self.store = store
        self.crop_size = int(crop_size)
        self.context_px = int(context_px)
        self.in_channels = int(in_channels)
        tiles: list[tuple[int, int, int, int, int]] = []
        for i in range(len(store)):
            if store.labelled_counts[i] == 0:
                continue
            mask = store.mask(i)
            h, w = mask.shape
            for y0, ky in tile_starts(h, self.crop_size):
                for x0, kx in tile_starts(w, self.crop_size):
                    keep = mask[y0 + ky : y0 + self.crop_size, x0 + kx : x0 + self.crop_size]
                    if np.any(keep != IGNORE_INDEX):
                        tiles.append((i, y0, x0, ky, kx))
        if order_seed is not None:
            perm = np.random.default_rng(order_seed).permutation(len(tiles))
            tiles = [tiles[k] for k in perm]
        #: ``(image index, y0, x0, keep_y, keep_x)`` per tile.
        self.tiles = tiles

    @property
    def window_size(self) -> int:
        """Side of each item in pixels: ``crop_size + 2 * context_px``."""
        return self.crop_size + 2 * self.context_px

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, y0, x0, ky, kx = self.tiles[index]
        c, win = self.crop_size, self.window_size
        full_mask = self.store.mask(i)
        h, w = full_mask.shape
        # Window origin: the tile centred in its context, moved inwards at the image edges.
        wy = min(max(y0 - self.context_px, 0), max(h - win, 0))
        wx = min(max(x0 - self.context_px, 0), max(w - win, 0))
        window_mask = full_mask[wy : wy + win, wx : wx + win]
        mask = np.full(window_mask.shape, IGNORE_INDEX, dtype=window_mask.dtype)
        # Only the tile is scored, and of it only the rows/columns no earlier tile scored.
        ys, xs = slice(y0 + ky - wy, y0 + c - wy), slice(x0 + kx - wx, x0 + c - wx)
        mask[ys, xs] = window_mask[ys, xs]
        image = self.store.image(i)[wy : wy + win, wx : wx + win]
        return make_sample(
            image, mask, str(self.store.records[i].image), self.in_channels, crop_size=win, reflect_pad=True
        )


class SceneDataset(Dataset):
    """Adapt a dataset of sample dicts (e.g. ``SyntheticScenes``) to ``in_channels``, optionally augmenting.

    With ``cache=True`` the base items are kept in memory after their first access, so a fixed set of
    generated scenes reused every epoch (synthetic training, validation and test) is rendered once; the
    augmentation is still drawn anew at every access. Images are stored as uint8 (``round(255 x)``:
    exact for 8-bit sources such as synthetic scenes; other float images are quantised to 1/255) and
    masks as uint8, about 0.25 MB per 320x256 colour scene. The cache lives in the dataset object, so it
    is **per DataLoader worker process**: with ``num_workers=0`` it is shared for the whole run; with
    workers, each worker fills its own copy, kept between epochs only with ``persistent_workers=True``
    (otherwise rebuilt every epoch).

    Args:
        base: dataset whose items have ``image`` float (C, H, W) [0, 1], ``mask`` integer (H, W), ``path``
            and optionally ``camera``.
        in_channels: 1 or 3 (grey scenes are replicated, colour scenes converted to BT.601 luma).
        transform: paired augmentation; when given, the camera is dropped because it no longer matches
            the pixels.
        cache: keep the base items in memory (see above).
        fixed_seed: when given, item ``index``'s augmentation is drawn from ``(fixed_seed, index)``
            (:func:`fixed_draws`): the same every epoch, for ``debug=overfit``.
    """

    def __init__(
        self,
        base: Dataset,
        in_channels: int,
        transform: Transform | None = None,
        cache: bool = False,
        fixed_seed: int | None = None,
    ) -> None:
        self.base = base
        self.in_channels = int(in_channels)
        self.transform = transform
        self.cache = bool(cache)
        self.fixed_seed = fixed_seed
        #: Cached base items by index: ``(image (H, W, C) uint8, mask (H, W) uint8, path, camera)``.
        self._items: dict[int, tuple[np.ndarray, np.ndarray, str, Any]] = {}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _base_item(self, index: int) -> tuple[np.ndarray, np.ndarray, str, Any]:
        """``(image (H, W, C), mask (H, W), path, camera)`` of base item ``index``, from the cache if on."""
        if self.cache and index in self._items:
            return self._items[index]
        entry = _base_entry(self.base, index, self.cache)
        if self.cache:
            self._items[index] = entry
        return entry

    def uncached(self, first: int | None = None) -> int:
        """How many base items :meth:`fill_cache` would render (0 without ``cache=True``); of the ``first``
        items only, where given."""
        return len(self._uncached(first)) if self.cache else 0

    def _uncached(self, first: int | None) -> list[int]:
        n = len(self) if first is None else min(len(self), max(0, first))
        return [i for i in range(n) if i not in self._items]

    def fill_cache(self, processes: int, first: int | None = None) -> int:
        """Render every base item not cached yet (of the ``first`` items only, where given: the scenes
        ``debug=overfit``'s batches draw), in ``processes`` worker processes; returns how many.

        Used before training so the fixed synthetic scenes are rendered on all cores at once instead of one
        at a time inside the first epoch (rendering is single-threaded NumPy). The entries are the same as
        lazy rendering's (each item depends on its index only). ``processes <= 1`` renders here, in order.
        Workers are started with ``forkserver`` (``spawn`` where that is missing), never ``fork``: the
        training process already runs threads (PyTorch, W&B) that a forked child could deadlock on.
        Each worker runs PyTorch and BLAS on one thread (:func:`_single_threaded`): with their default of
        one thread per core, ``processes`` workers oversubscribed the cores and rendered 1,536 scenes no
        faster than one process did (33.7 s against 33.8 s on 2 cores; 19.5 s with one thread each).
        Does nothing without ``cache=True``.
        """
        if not self.cache:
            return 0
        todo = self._uncached(first)
        if processes <= 1 or len(todo) < 2:
            for i in todo:
                self._base_item(i)
            return len(todo)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        processes = min(processes, len(todo))
        # A few chunks per process: balanced load, and each chunk pickles the (small) base dataset once.
        n_chunks = min(len(todo), processes * 4)
        chunks = [todo[k::n_chunks] for k in range(n_chunks)]
        try:
            with ProcessPoolExecutor(processes, mp_context=context, initializer=_single_threaded) as pool:
                try:
                    results = pool.map(_base_entries, [self.base] * n_chunks, chunks)
                    for chunk, entries in zip(chunks, results, strict=True):
                        self._items.update(zip(chunk, entries, strict=True))
                except (KeyboardInterrupt, TerminatedError):
                    _stop_at_once(pool)
                    raise
        except BrokenProcessPool:
            # forkserver/spawn workers re-import the script that started training; one without an
            # `if __name__ == "__main__":` guard makes them fail. Render here instead of failing the run.
            log.warning(
                "rendering scenes in %d worker processes failed, rendering them in this process instead "
                "(slower). If you start training from your own script, put its code under "
                '`if __name__ == "__main__":`, or set data.render_processes=0.',
                processes,
            )
            for i in todo:
                self._base_item(i)
        return len(todo)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} scenes")
        image_hwc, mask, path, camera = self._base_item(index)
        with fixed_draws(self.fixed_seed, index):
            sample = make_sample(image_hwc, mask, path, self.in_channels, transform=self.transform)
        if self.transform is None and camera is not None:
            sample["camera"] = camera
        return sample


def _base_entry(base: Dataset, index: int, compact: bool) -> tuple[np.ndarray, np.ndarray, str, Any]:
    """Item ``index`` of ``base`` as ``(image (H, W, C), mask (H, W), path, camera)``.

    ``compact``: image and mask as uint8 (the cache's form; see :class:`SceneDataset`), after checking that
    the mask fits in 0..255.
    """
    item = base[index]
    image = item["image"]
    image_hwc = (image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)).transpose(1, 2, 0)
    mask = item["mask"].numpy() if isinstance(item["mask"], torch.Tensor) else np.asarray(item["mask"])
    path, camera = str(item.get("path", "")), item.get("camera")
    if not compact:
        return image_hwc, mask, path, camera
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"{path}: mask values must be in 0..255, found {mask.min()}..{mask.max()}.")
    if image_hwc.dtype != np.uint8:
        image_hwc = np.clip(np.rint(np.asarray(image_hwc, np.float32) * 255.0), 0, 255)
    return (
        np.ascontiguousarray(image_hwc, dtype=np.uint8),
        np.ascontiguousarray(mask, dtype=np.uint8),
        path,
        camera,
    )


def _stop_at_once(pool: ProcessPoolExecutor) -> None:
    """Cancel what ``pool`` has not started and end its workers now (Ctrl-C, SIGTERM): leaving the ``with``
    block would otherwise wait for every chunk being rendered, seconds after the user asked to stop.

    The pool's manager thread then finds its workers gone and tries to fail the futures it cancelled, which
    CPython refuses with an ``InvalidStateError`` printed as a traceback after train.py's one-line
    "interrupted" message; that one error of that thread is kept quiet (:func:`_quiet_pool_manager`).
    """
    _quiet_pool_manager()
    # Taken before shutdown, which forgets them (pool._processes = None): no public way to end the workers.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _quiet_pool_manager() -> None:
    """Install (once) a ``threading.excepthook`` that drops the ``InvalidStateError`` a process pool's manager
    thread raises when its cancelled futures meet workers that were ended; anything else goes to the hook
    that was there."""
    import threading
    from concurrent.futures import InvalidStateError
    from concurrent.futures.process import _ExecutorManagerThread

    previous = threading.excepthook
    if getattr(previous, "_marsunits_quiet_pool", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, InvalidStateError) and isinstance(args.thread, _ExecutorManagerThread):
            return
        previous(args)

    hook._marsunits_quiet_pool = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _single_threaded() -> None:
    """Initialiser of :meth:`SceneDataset.fill_cache`'s workers: one PyTorch and one BLAS/OpenMP thread.

    The workers are already one per core; the scene renderer's few PyTorch ops (``grid_sample``) and NumPy
    calls would otherwise each start a thread per core and the processes would fight over the cores.
    """
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    torch.set_num_threads(1)
    threadpool_limits(1)
    # Ctrl-C reaches the whole process group: the training process stops the workers itself (fill_cache);
    # a worker dying of it on its own made the pool's manager thread print a traceback first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _base_entries(base: Dataset, indices: list[int]) -> list[tuple[np.ndarray, np.ndarray, str, Any]]:
    """Compact entries of ``indices`` (a worker task of :meth:`SceneDataset.fill_cache`)."""
    return [_base_entry(base, i, compact=True) for i in indices]
