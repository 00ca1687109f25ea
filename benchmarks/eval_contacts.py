"""Contact-mapping accuracy of a trained model on synthetic scenes from seeds never used in training.

Measures the three figures the contact issue asks for, side by side in one run:

* extraction alone: mean symmetric distance (px) between the contact extracted from the *true* mask and the
  true contact, and the one-sided mean distance from extracted vertices to the true contact;
* predicted contacts: boundary F1 at 3 px and mean contact distance (px), from ``predict.py``'s metrics.json;
* ground projection with the true camera: median distance (m) from predicted ground contact vertices within
  15 m of the camera to the true ground contact;
* where along the view the predicted contact goes wrong: boundary recall and precision at 3 px of the mask
  contact (the cracks :func:`~marsunits.boundary.metrics.boundary_scores` counts, pooled over the scenes
  where both masks have a contact) by the ground range of each crack, from the true camera.

Usage::

    python benchmarks/eval_contacts.py --ckpt logs/train/<run>/checkpoints/best.ckpt [--n 64] [--seed 777]

Training uses seeds derived from ``data.seed`` (0 by default) through ``SeedSequence([seed, index])``, and
validation/test use offsets of about 10^6; seed 777 is none of those. Writes ``--json``; without it
``benchmarks/eval_contacts.json`` (the README's default column) only when the run repeats the measurement that
file records (the same checkpoint file, number of scenes, seed, size, minimum mapping unit and ``--set``
overrides that change predict.py's configuration: :func:`changing_overrides`), else
``benchmarks/eval_contacts_<what differs>.json`` (:func:`result_file`), and says which before measuring.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from subprocess import CalledProcessError

import numpy as np
import shapely
from _machine import (
    check_json_destination,
    machine_info,
    reproduction,
)  # sibling module: benchmarks/ is sys.path[0] when run as a script
from omegaconf import OmegaConf
from scipy.spatial import cKDTree

from marsunits.boundary.camera.io import load_camera
from marsunits.boundary.contact_io import read_contacts
from marsunits.boundary.extract import contacts_from_mask
from marsunits.boundary.metrics import BOUNDARY_TOLERANCE_PX, line_scores, scored_cracks
from marsunits.data.mask_io import read_mask
from marsunits.data.synthetic import SceneConfig, generate_dataset
from marsunits.user_paths import expand_home

REPO = Path(__file__).resolve().parents[1]
#: predict.py's configurations (the code's own, whatever repository ``REPO`` names).
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUND_RANGE_M = 15.0
#: Edges of the ground-range bins of the by-range breakdown, metres (the last bin is open).
RANGE_BINS_M = (0.0, 4.0, 8.0, 12.0, 18.0, 30.0)


class RangeTally:
    """Matched and total contact cracks per ground-range bin: recall (true cracks), precision (predicted).

    A crack is matched when the other mask has a crack within ``BOUNDARY_TOLERANCE_PX`` (3 px, as in
    ``metrics.json``); its range is the horizontal distance from the camera to the ground point under the
    crack's midpoint (cracks above the horizon fall in the last bin).
    """

    def __init__(self) -> None:
        n = len(RANGE_BINS_M)
        self.true_hit, self.true_all = np.zeros(n), np.zeros(n)
        self.pred_hit, self.pred_all = np.zeros(n), np.zeros(n)

    def add(self, pred_mask: np.ndarray, true_mask: np.ndarray, camera: object) -> None:
        pred, true = scored_cracks(pred_mask, true_mask)
        if not len(true) or not len(pred):
            return
        centre = np.asarray(camera.center)[:2]  # type: ignore[attr-defined]
        for pts, other, hit, total in (
            (true, pred, self.true_hit, self.true_all),
            (pred, true, self.pred_hit, self.pred_all),
        ):
            matched = cKDTree(other).query(pts)[0] <= BOUNDARY_TOLERANCE_PX
            ground = camera.pixel_to_ground(pts[:, 0], pts[:, 1])  # type: ignore[attr-defined]
            rng = np.hypot(*(ground[:, :2] - centre).T)
            bins = np.digitize(np.where(np.isfinite(rng), rng, np.inf), RANGE_BINS_M) - 1
            np.add.at(total, bins, 1)
            np.add.at(hit, bins, matched)

    def table(self) -> list[dict[str, object]]:
        rows = []
        for k, lo in enumerate(RANGE_BINS_M):
            hi = RANGE_BINS_M[k + 1] if k + 1 < len(RANGE_BINS_M) else None
            rows.append(
                {
                    "range_m": f"{lo:g}-{hi:g}" if hi is not None else f">{lo:g}",
                    "true_cracks": int(self.true_all[k]),
                    "recall": float(self.true_hit[k] / self.true_all[k]) if self.true_all[k] else None,
                    "pred_cracks": int(self.pred_all[k]),
                    "precision": float(self.pred_hit[k] / self.pred_all[k]) if self.pred_all[k] else None,
                }
            )
        return rows


def scene_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (e.g. ``160x128``) as two positive ints, for ``--size``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 160x128, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return width, height


def recorded_checkpoint(ckpt: Path) -> str:
    """A result's ``checkpoint``: the resolved ``ckpt`` relative to the repository (POSIX form) when it is
    inside it, else absolute, so that a later run recognises it whatever folder either was launched from
    (``--ckpt`` as given, relative to its launch folder, is in ``reproduce``'s arguments)."""
    try:
        return ckpt.relative_to(REPO).as_posix()
    except ValueError:
        return str(ckpt)


def _same_file(recorded: object, ckpt: Path) -> bool:
    """Whether ``recorded`` (a result's ``checkpoint``: :func:`recorded_checkpoint`; in results written before
    2026-12-06 as ``--ckpt`` was given, relative to the folder the run was launched from, most often the
    repository root) names the file or folder ``ckpt``."""
    if not isinstance(recorded, str) or not recorded:
        return False
    path = expand_home(recorded)
    for candidate in [path] if path.is_absolute() else [REPO / path, Path.cwd() / path]:
        try:
            if os.path.samefile(candidate, ckpt):
                return True
        except OSError:  # not there (any more), or not readable
            continue
    return False


def _holds(result: Path, settings: dict[str, object], ckpt: Path) -> bool | None:
    """Whether the result file ``result`` records the measurement of ``ckpt`` with ``settings`` (True),
    another one or something unreadable (False); None when there is no such file."""
    try:
        recorded = json.loads(result.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and _same_file(recorded.get("checkpoint"), ckpt)
        and all(recorded.get(k) == v for k, v in settings.items())
    )


def _checkpoint_label(ckpt: Path) -> str:
    """A short name for a checkpoint: ``<run>-<stem>`` for train.py's ``<run>/checkpoints/<stem>.ckpt``,
    else the file's stem or the model package folder's name."""
    if ckpt.parent.name == "checkpoints" and ckpt.parent.parent.name:
        return f"{ckpt.parent.parent.name}-{ckpt.stem}"
    return ckpt.name if ckpt.is_dir() else ckpt.stem


def result_file(settings: dict[str, object], ckpt: Path, given_ckpt: str) -> tuple[Path, str]:
    """Where a run without ``--json`` writes its result, and why there (a line to print).

    ``benchmarks/eval_contacts.json`` holds the README's default column: a run replaces it only when it
    repeats the measurement the file records (its ``checkpoint`` the same file as ``ckpt``, and the same
    ``settings``), or when there is no such file and the settings are the script's defaults. Any other run
    (another checkpoint, ``--set tta=true``, another seed: each replaced the README's figure) writes
    ``benchmarks/eval_contacts_<parts>.json``, a part for each setting that differs from that file's (or
    the defaults): ``ckpt-<run>-best``, ``n<scenes>``, ``seed<N>``, ``<W>x<H>``, ``mmu<px>`` and each
    ``--set`` (``tta-true``), in that order; when that file records another measurement (another checkpoint
    of the same label: ``a/best.ckpt`` and ``b/best.ckpt``), it is kept and ``-2``, ``-3``... is added.

    Args:
        settings: this run's ``scenes``, ``seed``, ``size`` (``WxH``), ``min_unit_area_px`` and
            ``predict_overrides``, as its result records them.
        ckpt: the checkpoint or model package, resolved.
        given_ckpt: ``--ckpt`` as given (said in the line).
    """
    default = REPO / "benchmarks" / "eval_contacts.json"
    reference: dict[str, object] = {"scenes": 64, "seed": 777, "size": "160x128", "predict_overrides": []}
    recorded: dict[str, object] | None
    try:
        loaded = json.loads(default.read_text(encoding="utf-8"))
    except FileNotFoundError:
        recorded, same_ckpt = None, True
    except (OSError, ValueError):  # unreadable or not JSON: never replaced without --json
        recorded, same_ckpt = {}, False
    else:
        recorded = loaded if isinstance(loaded, dict) else {}
        same_ckpt = _same_file(recorded.get("checkpoint"), ckpt)
        reference.update({k: v for k, v in recorded.items() if k in settings})
    if "min_unit_area_px" not in reference:
        reference["min_unit_area_px"] = int(
            OmegaConf.load(REPO / "configs" / "predict.yaml").min_unit_area_px
        )
    differs = [k for k in settings if settings[k] != reference[k]]
    if same_ckpt and not differs:
        what = "the default settings" if recorded is None else "the measurement it records"
        return default, f"result file {default} (the README's default column: {what}, so it is replaced)"
    names = {"scenes": "n{}", "seed": "seed{}", "min_unit_area_px": "mmu{}"}
    parts = [] if same_ckpt else [f"ckpt-{_checkpoint_label(ckpt)}"]
    for key in differs:
        value = settings[key]
        parts.extend(value if isinstance(value, list) else [names.get(key, "{}").format(value)])
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(map(str, parts)).replace("=", "-")).strip("-")
    if len(stem) > 150:  # many --set overrides: a name the filesystem takes, still one per set of settings
        stem = f"{stem[:140]}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"
    # Another checkpoint of the same label (a/best.ckpt, b/best.ckpt) or settings recorded otherwise: that
    # file is kept (it was replaced) and the first name free or holding this very measurement is taken.
    path = next(
        candidate
        for n in itertools.count(1)
        for candidate in [REPO / "benchmarks" / f"eval_contacts_{stem}{'' if n == 1 else f'-{n}'}.json"]
        if _holds(candidate, settings, ckpt) is not False
    )
    flags = {"scenes": "--n", "seed": "--seed", "size": "--size", "min_unit_area_px": "--min-unit-area"}

    def shown(value: object) -> str:
        return (" ".join(map(str, value)) or "none") if isinstance(value, list) else str(value)

    why = [f"{flags.get(k, '--set')} {shown(settings[k])} (it has {shown(reference[k])})" for k in differs]
    if not same_ckpt:
        why.insert(0, f"--ckpt {given_ckpt} is not its checkpoint ({(recorded or {}).get('checkpoint')})")
    return path, (
        f"result file {path}: not benchmarks/eval_contacts.json, the README's default column, as this run "
        f"differs from {'the default settings' if recorded is None else 'the measurement it records'}: "
        f"{'; '.join(why)}"
        + (
            ""
            if path.name == f"eval_contacts_{stem}.json"
            else f" (eval_contacts_{stem}.json and the names before this one record other measurements, kept)"
        )
        + "; give --json FILE to choose the file"
    )


def changing_overrides(overrides: list[str], fixed: list[str]) -> list[str]:
    """The ``--set`` overrides that change the configuration predict.py runs with, in their order.

    An override is left out when the configuration composed without it is the same: it gives the value
    predict.py has anyway (``configs/predict.yaml`` with this script's own ``fixed`` overrides, e.g.
    ``--set tta=false``), or a later ``--set`` of the same key replaces it. Such a run repeats the
    measurement without them, and went to a file of its own (``eval_contacts_tta-false.json``) instead of
    the README's default column. Overrides Hydra cannot compose are all kept: predict.py says what is wrong
    with them.
    """
    if not overrides:
        return []
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    kept = list(overrides)
    with initialize_config_dir(version_base=None, config_dir=str(CONFIGS), job_name="eval_contacts"):

        def composed(chosen: list[str]) -> object:
            return OmegaConf.to_container(compose("predict", overrides=[*fixed, *chosen]), resolve=False)

        try:
            reference = composed(kept)
            # Until none can go: ``tta=true tta=false`` loses the first, then the second gives the default.
            while True:
                for i in reversed(range(len(kept))):
                    if composed(kept[:i] + kept[i + 1 :]) == reference:
                        kept = kept[:i] + kept[i + 1 :]
                        break
                else:
                    break
        except (HydraException, OmegaConfBaseException):
            return list(overrides)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt",
        required=True,
        help="checkpoint or model package to evaluate (a relative path is taken from the current directory)",
    )
    parser.add_argument("--n", type=int, default=64, help="number of synthetic scenes")
    parser.add_argument("--seed", type=int, default=777, help="scene seed (never used in training)")
    parser.add_argument(
        "--size", default="160x128", type=scene_size, help="scene size WxH (default: training size)"
    )
    parser.add_argument(
        "--min-unit-area",
        type=int,
        default=None,
        help="predict's min_unit_area_px (minimum mapping unit, px); default: configs/predict.yaml's value",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra predict.py override, repeatable (e.g. --set tta=true)",
    )
    parser.add_argument(
        "--json",
        default=None,
        help="result file (default: benchmarks/eval_contacts.json, the README's default column, only for a "
        "run that repeats the measurement it records; else benchmarks/eval_contacts_<what differs>.json, "
        "e.g. eval_contacts_seed555.json, eval_contacts_tta-true.json, eval_contacts_ckpt-<run>-best.json)",
    )
    args = parser.parse_args(argv)
    if args.json is not None:
        check_json_destination(parser, args.json)
    # predict.py runs from the repository root: hand it an absolute path, so that a relative --ckpt means
    # the file the caller sees from where they launched this script.
    ckpt = expand_home(args.ckpt).resolve()
    if not ckpt.exists():
        parser.error(
            f"--ckpt {args.ckpt}: {ckpt} does not exist; pass a .ckpt written by train.py "
            "(logs/train/<run>/checkpoints/best.ckpt) or a model package folder"
        )
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    load_before = os.getloadavg()
    width, height = args.size
    for override in args.set:  # predict.py takes the last value: record the one it uses
        key, sep, value = override.partition("=")
        if not sep or not key.lstrip("+"):
            parser.error(f"--set {override}: expected KEY=VALUE, e.g. --set tta=true")
        if key.lstrip("+") == "min_unit_area_px":
            try:
                args.min_unit_area = int(value)
            except ValueError:
                parser.error(f"--set {override}: min_unit_area_px must be a whole number of pixels, e.g. 200")
    if args.min_unit_area is None:
        args.min_unit_area = int(OmegaConf.load(REPO / "configs" / "predict.yaml").min_unit_area_px)
    fixed = ["num_workers=0", "precision=32", f"min_unit_area_px={args.min_unit_area}"]
    predict_overrides = changing_overrides(args.set, fixed)
    if args.json is None:
        settings = {
            "scenes": args.n,
            "seed": args.seed,
            "size": f"{width}x{height}",
            "min_unit_area_px": args.min_unit_area,
            "predict_overrides": predict_overrides,
        }
        destination, said = result_file(settings, ckpt, args.ckpt)
        args.json = str(destination)
        check_json_destination(parser, args.json)
        print(said, flush=True)
    else:
        print(f"result file {args.json} (--json)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        scenes, out = Path(tmp) / "scenes", Path(tmp) / "pred"
        names = generate_dataset(scenes, args.n, args.seed, SceneConfig(width=width, height=height))
        cmd = [
            sys.executable,
            str(REPO / "predict.py"),
            f"ckpt_path={ckpt}",
            f"input_dir={scenes / 'images'}",
            f"output_dir={out}",
            f"labels_dir={scenes / 'masks'}",
            *fixed,
            *args.set,
            f"hydra.run.dir={Path(tmp) / 'hydra'}",
        ]
        try:
            subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, WANDB_MODE="disabled"))
        except CalledProcessError as exc:
            # predict.py has printed its own one-line reason (a bad checkpoint, a bad --set): no traceback.
            print(
                f"eval_contacts.py: error: predict.py stopped with exit status {exc.returncode} (its message "
                f"is above); nothing was written to {args.json}",
                file=sys.stderr,
            )
            return exc.returncode or 1
        metrics = json.loads((out / "metrics.json").read_text())

        extraction: list[float] = []
        extraction_to_truth: list[float] = []
        ground_err: list[float] = []
        by_range = RangeTally()
        for name in names:
            by_range.add(
                read_mask(out / f"{name}.mask.png"),
                read_mask(scenes / "masks" / f"{name}.png"),
                load_camera(scenes / "cameras" / f"{name}.json"),
            )
            true_lines, _ = read_contacts(scenes / "contacts" / f"{name}.contact.geojson")
            if not true_lines:
                continue
            extracted = contacts_from_mask(read_mask(scenes / "masks" / f"{name}.png"))
            if extracted:
                d = line_scores(extracted, true_lines, tolerance_px=3.0)["mean_distance_px"]
                if np.isfinite(d):
                    extraction.append(d)
                # One-sided: how far extracted vertices lie from the true line. The symmetric distance also
                # charges true contact under sand or rover hardware, where the mask shows no 0/1 edge.
                truth_px = shapely.MultiLineString([t.pixels for t in true_lines])
                extraction_to_truth.extend(
                    truth_px.distance(shapely.Point(p)) for line in extracted for p in line.pixels
                )
            pred_lines, _ = read_contacts(out / f"{name}.contact.geojson")
            true_ground = [shapely.LineString(t.ground_m) for t in true_lines if t.ground_m is not None]
            cam = json.loads((scenes / "cameras" / f"{name}.json").read_text())
            centre = np.array([cam.get("x_m", 0.0), cam.get("y_m", 0.0)])
            for line in pred_lines:
                if line.ground_m is None or not true_ground:
                    continue
                near = line.ground_m[np.hypot(*(line.ground_m - centre).T) <= GROUND_RANGE_M]
                truth = shapely.MultiLineString(true_ground)
                ground_err.extend(truth.distance(shapely.Point(p)) for p in near)

    overall = metrics.get("overall", metrics)
    result = {
        "scenes": args.n,
        "seed": args.seed,
        "size": f"{width}x{height}",
        "checkpoint": recorded_checkpoint(ckpt),
        "min_unit_area_px": args.min_unit_area,
        "predict_overrides": predict_overrides,
        "extraction_mean_distance_px": float(np.mean(extraction)) if extraction else None,
        "extraction_to_truth_mean_px": float(np.mean(extraction_to_truth)) if extraction_to_truth else None,
        "boundary_f1_3px": overall.get("boundary_f1"),
        "contact_distance_px": overall.get("contact_distance_px"),
        "line_boundary_f1_3px": overall.get("line_boundary_f1"),
        "line_contact_distance_px": overall.get("line_contact_distance_px"),
        "miou": overall.get("miou"),
        "ground_median_error_m_within_15m": float(np.median(ground_err)) if ground_err else None,
        "ground_vertices": len(ground_err),
        "by_range": by_range.table(),
    }
    result["machine"] = machine_info(load_before)
    result["reproduce"] = reproduction("eval_contacts.py", args)
    expand_home(args.json).write_text(json.dumps(result, indent=2) + "\n")
    width_col = max(len(k) for k in result)
    for key, value in result.items():
        if key not in ("by_range", "reproduce"):
            print(f"{key:<{width_col}}  {value}")
    print("mask contact at 3 px by ground range (scenes where both masks have a contact):")
    for row in result["by_range"]:  # type: ignore[union-attr]
        cells = (f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        print("  " + "  ".join(cells))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
