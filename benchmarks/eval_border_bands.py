"""Accuracy near the image border: pixel accuracy and per-class IoU in bands from each of the four borders.

The network pads its convolutions with zeros. Windows overlap inside an image, but at the image's own border
every window's output there comes from convolutions over zero padding, where training crops had real content
behind most of their borders. This script measures what that costs, on synthetic scenes from seeds never
used in training, and what padding the image with a margin before the windowing (then cropping the
probabilities back) gives instead:

* ``engine``: the engine as ``predict.py`` runs it (``configs/predict.yaml``'s tile and overlap, float32,
  batch norm folded): a side shorter than the window is reflect-padded at its bottom/right end to the
  network's stride, and nothing else is padded;
* ``<mode>-<M>``: every image padded by ``M`` pixels on all four sides (``numpy.pad`` mode ``reflect``, or
  ``edge``, called ``replicate``) before it is given to the engine, and the probabilities cropped back;
* ``mean-to-stride-<S>`` (only for a ``--size`` that is no multiple of the network's stride ``S``): the image
  padded at its bottom/right to the stride with its normalisation mean (what the network's own zero padding
  reads once normalised) instead of the engine's reflection.

For each, in bands 0-4, 4-8 and 8-16 px from the top, bottom, left and right border and in the interior
(16 px or more from every border): pixel accuracy and per-class IoU (pooled over the scenes); and over the
whole image, with ``predict.py``'s mask (minimum mapping unit, no-data) the contact's boundary F1 at 3 px and
mean distance (mean over the scenes with a contact, as ``metrics.json``), and the seconds per image.

Usage::

    python benchmarks/eval_border_bands.py --ckpt <best.ckpt> [--n 128] [--seed 777] [--size 160x128]
        [--margins 16 32] [--modes reflect replicate] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from _machine import check_json_destination, machine_info, reproduction
from eval_contacts import recorded_checkpoint, scene_size

from marsunits.boundary.metrics import BOUNDARY_TOLERANCE_PX, crack_scores, scored_cracks
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX
from marsunits.data.io import to_channels
from marsunits.data.synthetic import SceneConfig, generate_scene
from marsunits.inference.unit_mapper import UnitMapper
from marsunits.user_paths import expand_home

#: Band edges in pixels from a border; the interior is at least the last edge from every border.
BAND_EDGES = (0, 4, 8, 16)
SIDES = ("top", "bottom", "left", "right")
NUMPY_MODES: dict[str, Literal["reflect", "edge"]] = {"reflect": "reflect", "replicate": "edge"}
REPO = Path(__file__).resolve().parents[1]


def band_masks(height: int, width: int) -> dict[str, np.ndarray]:
    """``{"<side> <lo>-<hi>": bool (H, W)}`` for every side and band, and ``"interior"``."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    distance = {
        "top": np.broadcast_to(rows, (height, width)),
        "bottom": np.broadcast_to(height - 1 - rows, (height, width)),
        "left": np.broadcast_to(cols, (height, width)),
        "right": np.broadcast_to(width - 1 - cols, (height, width)),
    }
    masks: dict[str, np.ndarray] = {}
    for side in SIDES:
        for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=True):
            masks[f"{side} {lo}-{hi}"] = (distance[side] >= lo) & (distance[side] < hi)
    nearest = np.minimum.reduce([distance[s] for s in SIDES])
    masks["interior"] = nearest >= BAND_EDGES[-1]
    masks["all"] = np.ones((height, width), dtype=bool)
    return masks


class Tally:
    """Confusion matrices per band, and the contact scores of each scene."""

    def __init__(self, bands: list[str], num_classes: int) -> None:
        self.num_classes = num_classes
        self.cm = {b: np.zeros((num_classes, num_classes), dtype=np.int64) for b in bands}
        self.f1: list[float] = []
        self.distance: list[float] = []
        self.seconds = 0.0
        self.images = 0

    def add(self, pred: np.ndarray, true: np.ndarray, masks: dict[str, np.ndarray]) -> None:
        self.images += 1
        labelled = true != IGNORE_INDEX
        for band, where in masks.items():
            sel = where & labelled
            idx = true[sel].astype(np.int64) * self.num_classes + pred[sel].astype(np.int64)
            self.cm[band] += np.bincount(idx, minlength=self.num_classes**2).reshape(
                self.num_classes, self.num_classes
            )

    def table(self) -> dict[str, object]:
        rows: dict[str, object] = {}
        for band, cm in self.cm.items():
            tp = np.diag(cm).astype(float)
            union = cm.sum(0) + cm.sum(1) - tp
            iou = {
                name: (float(tp[k] / union[k]) if union[k] else None) for k, name in enumerate(CLASS_NAMES)
            }
            scored = [v for v in iou.values() if v is not None]
            rows[band] = {
                "pixels": int(cm.sum()),
                "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else None,
                "iou": iou,
                "miou": float(np.mean(scored)) if scored else None,
                "true_fraction": {
                    name: float(cm[k].sum() / cm.sum()) if cm.sum() else None
                    for k, name in enumerate(CLASS_NAMES)
                },
                "predicted_fraction": {
                    name: float(cm[:, k].sum() / cm.sum()) if cm.sum() else None
                    for k, name in enumerate(CLASS_NAMES)
                },
            }
        return {
            "bands": rows,
            "boundary_f1_3px": float(np.mean(self.f1)) if self.f1 else None,
            "contact_distance_px": float(np.mean(self.distance)) if self.distance else None,
            "n_contact_images": len(self.f1),
            "seconds_per_image": self.seconds / max(self.images, 1),
        }


def padded_predict(mapper: UnitMapper, margin: int, mode: str) -> Callable[[torch.Tensor], np.ndarray]:
    """The mapper's probabilities of an image padded by ``margin`` on all sides, cropped back."""

    def predict(image: torch.Tensor) -> np.ndarray:
        _, h, w = image.shape
        pad = ((0, 0), (margin, margin), (margin, margin))
        padded = torch.from_numpy(np.pad(image.numpy(), pad, mode=NUMPY_MODES[mode]))
        probs = mapper.predictor.predict(padded)
        return np.ascontiguousarray(probs[:, margin : margin + h, margin : margin + w])

    return predict


def mean_padded_predict(mapper: UnitMapper, stride: int) -> Callable[[torch.Tensor], np.ndarray]:
    """The mapper's probabilities of an image padded at the bottom/right to a multiple of ``stride`` with its
    normalisation mean (0 once normalised: what the network's own zero padding reads), cropped back; the
    engine reflect-pads those sides instead."""
    mean = np.asarray(mapper.metadata["mean"], dtype=np.float32)[:, None, None]

    def predict(image: torch.Tensor) -> np.ndarray:
        c, h, w = image.shape
        padded = np.empty((c, -(-h // stride) * stride, -(-w // stride) * stride), dtype=np.float32)
        padded[...] = mean[:c]
        padded[:, :h, :w] = image.numpy()
        probs = mapper.predictor.predict(torch.from_numpy(padded))
        return np.ascontiguousarray(probs[:, :h, :w])

    return predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt", required=True, help="checkpoint or model package to evaluate (.ckpt or package folder)"
    )
    parser.add_argument("--n", type=int, default=128, help="number of synthetic scenes")
    parser.add_argument("--seed", type=int, default=777, help="scene seed (never used in training)")
    parser.add_argument("--size", default="160x128", type=scene_size, help="scene size WxH")
    parser.add_argument("--margins", type=int, nargs="*", default=[16, 32], help="margins M to try (px)")
    parser.add_argument(
        "--modes", nargs="*", default=["reflect", "replicate"], choices=sorted(NUMPY_MODES), help="pad modes"
    )
    parser.add_argument(
        "--json", default=str(REPO / "benchmarks" / "eval_border_bands.json"), help="result file"
    )
    args = parser.parse_args(argv)
    check_json_destination(parser, args.json)
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    if any(m < 1 for m in args.margins):
        parser.error(f"--margins must be positive, got {args.margins}")
    ckpt = expand_home(args.ckpt).resolve()
    if not ckpt.exists():
        parser.error(f"--ckpt {args.ckpt}: {ckpt} does not exist")
    load_before = os.getloadavg()
    width, height = args.size
    engine = UnitMapper.load(ckpt, device="cpu", precision="32")
    variants: dict[str, Callable[[torch.Tensor], np.ndarray]] = {"engine": engine.predictor.predict}
    for mode in args.modes:
        for margin in args.margins:
            variants[f"{mode}-{margin}"] = padded_predict(engine, margin, mode)
    stride = engine.predictor.stride
    if height % stride or width % stride:
        variants[f"mean-to-stride-{stride}"] = mean_padded_predict(engine, stride)
    masks = band_masks(height, width)
    num_classes = len(CLASS_NAMES)
    tallies = {name: Tally(list(masks), num_classes) for name in variants}
    config = SceneConfig(width=width, height=height)
    for index in range(args.n):
        scene = generate_scene(args.seed, index, config)
        pixels = scene.image.astype(np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        x = torch.from_numpy(to_channels(pixels, engine.in_channels)).permute(2, 0, 1).contiguous()
        for name, predict in variants.items():
            start = time.perf_counter()
            probs = predict(x)
            tallies[name].seconds += time.perf_counter() - start
            tallies[name].add(probs.argmax(0), scene.mask, masks)
            mask, _ = engine.units_from_probabilities(probs, pixels)
            valid = mask != IGNORE_INDEX
            # As metrics.json scores a mask: the scenes where either mask has a contact.
            pred_cracks, true_cracks = scored_cracks(mask, scene.mask, valid=None if valid.all() else valid)
            if len(pred_cracks) or len(true_cracks):
                b = crack_scores(pred_cracks, true_cracks, tolerance_px=BOUNDARY_TOLERANCE_PX)
                tallies[name].f1.append(b["f1"])
                if np.isfinite(b["mean_distance_px"]):
                    tallies[name].distance.append(b["mean_distance_px"])
        if (index + 1) % 16 == 0:
            print(f"{index + 1}/{args.n} scenes", flush=True)
    result: dict[str, object] = {
        "scenes": args.n,
        "seed": args.seed,
        "size": f"{width}x{height}",
        "checkpoint": recorded_checkpoint(ckpt),
        "tile": engine.tile,
        "overlap": engine.predictor.overlap,
        "variants": {},
    }
    for name, tally in tallies.items():
        result["variants"][name] = tally.table()  # type: ignore[index]
    result["machine"] = machine_info(load_before)
    result["reproduce"] = reproduction("eval_border_bands.py", args)
    Path(expand_home(args.json)).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"written {args.json}")
    return 0


def _cell(row: dict[str, object]) -> str:
    """``accuracy (mIoU)`` of a band, 16 characters; dashes for a band with no labelled pixel."""
    if row["accuracy"] is None:
        return f"{'-':>16}"
    return f"{row['accuracy']:>9.3f} ({row['miou']:.2f})"


def _number(value: object, spec: str) -> str:
    return f"{'-':>7}" if value is None else f"{value:{spec}}"


def print_table(result: dict[str, object]) -> None:
    """Pixel accuracy (mIoU) in each band of each side and inside, and the contact scores; a row a variant."""
    variants: dict[str, dict[str, Any]] = result["variants"]  # type: ignore[assignment]
    bands = [f"{lo}-{hi}" for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=True)]
    names = [f"{s} {b}" for s in SIDES for b in bands] + ["interior", "all"]
    print(f"pixel accuracy (mIoU) by distance from the border, {result['scenes']} scenes {result['size']}:")
    print(f"{'variant':<20}" + "".join(f"{n:>16}" for n in names) + f"{'BF1':>7}{'dist':>7}{'s/img':>7}")
    for name, table in variants.items():
        rows = table["bands"]
        print(
            f"{name:<20}"
            + "".join(_cell(rows[n]) for n in names)
            + _number(table["boundary_f1_3px"], ">7.3f")
            + _number(table["contact_distance_px"], ">7.2f")
            + _number(table["seconds_per_image"], ">7.3f")
        )


if __name__ == "__main__":
    raise SystemExit(main())
