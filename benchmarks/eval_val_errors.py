"""Where a real-data model's validation errors come from: variance between runs, or a shared bias?

Two questions, answered on a run's own sol-grouped validation split (the tiles ``train.py`` scores, with the
data config's validation context), in one pass over the tiles:

* **Ensemble**: checkpoints trained on the *same* split, scored alone and as the mean of their softmax
  probabilities (every subset of two or more). If averaging runs does not raise mIoU, their errors are
  shared (a bias of the recipe or the data), not noise of one run, and more runs will not fix them.
* **Class-prior offset**: one checkpoint at a time, a constant added to the log-probability of
  ``rough_olivine`` before the argmax (post-hoc logit adjustment). If the best offset differs in sign from
  one validation fold to the next, the under-prediction of rough terrain is not a prior to correct.
* **Input scale** (``--scales``): one checkpoint at a time, each validation window resized by a factor
  (area-averaged when shrinking, bilinear when enlarging; sides rounded to multiples of 32) before the
  network and its logits resized back to the labels' grid. A scale that helps one split but not the folds
  is a property of that split's panoramas, not a better working resolution.
* **Batch-norm adaptation** (``--adapt-bn``): one checkpoint at a time, its BatchNorm statistics
  re-estimated on the split's validation windows, unlabelled (AdaBN,
  :func:`marsunits.inference.adaptation.adapt_batchnorm`), then scored. Test-time adaptation to the held-out
  sols' images: it uses no label, but it does see all the validation images before predicting them.

Usage::

    python benchmarks/eval_val_errors.py --ckpt A.ckpt --ckpt B.ckpt [--set data.n_folds=5 --set data.fold=0]
        [--experiment marsscapes] [--root ../shared/data/marsscapes] [--offsets=-0.5,0,0.5,1]
        [--scales=0.75,1] [--adapt-bn]

Each ``--ckpt`` may carry its own overrides after commas (``A.ckpt,data.n_folds=5,data.fold=2``): a
checkpoint with overrides is scored only on its own split and enters no ensemble; the plain ones share the
split of ``--set``. Writes ``--json`` (default ``benchmarks/eval_val_errors.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _machine import (
    check_json_destination,
    machine_info,
    reproduction,
)  # sibling module: benchmarks/ is sys.path[0] when run as a script
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marsunits.errors import report_user_errors
from marsunits.inference.adaptation import adapt_batchnorm
from marsunits.inference.evaluation import confusion_matrix, scores
from marsunits.inference.tiling import NETWORK_STRIDE
from marsunits.model_package import load_model
from marsunits.user_paths import expand_home

REPO = Path(__file__).resolve().parents[1]
ROUGH = 1


def scaled_logits(model: torch.nn.Module, image: torch.Tensor, scale: float) -> torch.Tensor:
    """Logits of ``image`` (N, C, H, W) seen at ``scale`` times its size, on the original (H, W) grid.

    The resized sides are rounded to multiples of the network stride (``NETWORK_STRIDE``, 32), so the two
    axes may be scaled by slightly different factors; ``scale=1`` is the plain forward pass.
    """
    h, w = image.shape[-2:]
    step = NETWORK_STRIDE
    size = (max(step, round(h * scale / step) * step), max(step, round(w * scale / step) * step))
    if size == (h, w):
        return model(image)
    resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    return F.interpolate(model(resized), size=(h, w), mode="bilinear", align_corners=False)


def _val_loader(experiment: str, root: str | None, overrides: list[str]) -> Any:
    """The validation loader of ``experiment``'s data config; ``root`` None keeps the config's ``data.root``
    (``paths.data_root``: ``$MARSUNITS_DATA``, else ``../shared/data`` from ``$MARSUNITS_ROOT`` or, without
    it, the launch directory, as in ``train.py``)."""
    data_root = [] if root is None else [f"data.root={root}"]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        cfg = compose("train", overrides=[f"experiment={experiment}", *data_root, "logger=none", *overrides])
    folder = OmegaConf.select(cfg, "data.root")
    if isinstance(folder, str) and not expand_home(folder).is_dir():
        # The dataset's own message says to add data.root=... to the command line: an unknown argument here.
        given = f"--root {root}" if folder == root else f"the {experiment} experiment's data.root"
        raise FileNotFoundError(
            f"{given}: the data folder {expand_home(folder)} does not exist; give the dataset's folder with "
            "--root DIR, or set MARSUNITS_DATA to the folder holding the datasets"
        )
    dm = instantiate(cfg.data)
    dm.setup("validate")
    loader = dm.val_dataloader()
    return loader[0] if isinstance(loader, list) else loader


def _summary(cm: np.ndarray) -> dict[str, Any]:
    s = scores(cm)
    return {"miou": s["miou"], "iou": s["iou"], "confusion_matrix": s["confusion_matrix"]}


def evaluate_split(
    ckpts: list[str],
    experiment: str,
    root: str | None,
    overrides: list[str],
    offsets: list[float],
    scales: tuple[float, ...] = (1.0,),
    adapt_bn: bool = False,
) -> dict[str, Any]:
    """Score ``ckpts`` alone, with each rough offset, at each input scale, with batch-norm statistics
    adapted to the split (``adapt_bn``), and (two or more) as probability-mean ensembles."""
    # The models first: a file that is no model is refused in seconds, not after the split's set-up. Packages
    # load as checkpoints do (and a checkpoint whose pickle would run code is refused, as by predict.py).
    models = [load_model(c, map_location="cpu").eval() for c in ckpts]
    loader = _val_loader(experiment, root, overrides)
    n = len(models)
    subsets = [s for k in range(2, n + 1) for s in itertools.combinations(range(n), k)]
    cm_offset = {(i, o): np.zeros((3, 3), np.int64) for i in range(n) for o in offsets}
    cm_subset = {s: np.zeros((3, 3), np.int64) for s in subsets}
    rescaled = [s for s in scales if s != 1.0]
    cm_scale = {(i, s): np.zeros((3, 3), np.int64) for i in range(n) for s in rescaled}
    start = time.perf_counter()
    adapted = [adapt_batchnorm(m, (b["image"] for b in loader))[0] for m in models] if adapt_bn else []
    cm_adapted = [np.zeros((3, 3), np.int64) for _ in adapted]
    with torch.inference_mode():
        for batch in loader:
            target = batch["mask"].numpy()
            logp = [m(batch["image"]).log_softmax(1) for m in models]
            for i, lp in enumerate(logp):
                for o in offsets:
                    shifted = lp.clone()
                    shifted[:, ROUGH] += o
                    cm_offset[i, o] += confusion_matrix(shifted.argmax(1).numpy(), target)
            for i, m in enumerate(models):
                for sc in rescaled:
                    logits = scaled_logits(m, batch["image"], sc)
                    cm_scale[i, sc] += confusion_matrix(logits.argmax(1).numpy(), target)
            for i, net in enumerate(adapted):
                cm_adapted[i] += confusion_matrix(net(batch["image"]).argmax(1).numpy(), target)
            probs = [lp.exp() for lp in logp] if subsets else []
            for s in subsets:
                mean_p = torch.stack([probs[i] for i in s]).mean(0)
                cm_subset[s] += confusion_matrix(mean_p.argmax(1).numpy(), target)
    return {
        "overrides": overrides,
        "seconds": round(time.perf_counter() - start, 1),
        "models": {
            c: {
                "alone": _summary(cm_offset[i, 0.0]),
                "rough_offset_miou": {f"{o:+g}": scores(cm_offset[i, o])["miou"] for o in offsets},
                "input_scale": {
                    f"{sc:g}": _summary(cm_offset[i, 0.0] if sc == 1.0 else cm_scale[i, sc])
                    for sc in sorted({1.0, *rescaled})
                },
                **({"adapted_bn": _summary(cm_adapted[i])} if adapt_bn else {}),
            }
            for i, c in enumerate(ckpts)
        },
        "ensembles": [{"members": [ckpts[i] for i in s], **_summary(cm_subset[s])} for s in subsets],
    }


def _run_name(ckpt: str) -> str:
    """The run folder of ``<run>/checkpoints/<file>.ckpt`` (what train.py writes), else ``ckpt`` as given."""
    path = Path(ckpt)
    return path.parts[-3] if len(path.parts) >= 3 and path.parent.name == "checkpoints" else ckpt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt",
        action="append",
        required=True,
        help="checkpoint or model package folder[,override,...]; repeat for more",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="shared override")
    parser.add_argument(
        "--experiment",
        default="marsscapes",
        help="configs/experiment/<name>.yaml whose data config holds the validation split (default: "
        "marsscapes)",
    )
    parser.add_argument(
        "--root",
        default=None,
        help="dataset folder (default: the experiment's data.root, under $MARSUNITS_DATA if set, else "
        "../shared/data from $MARSUNITS_ROOT if set, else from the current directory, as for train.py)",
    )
    parser.add_argument(
        "--offsets",
        default="-0.5,-0.25,0,0.25,0.5,1,1.5",
        help="constants added to the rough class's log-probability, comma-separated (0 is always scored); "
        "write --offsets=-0.5,0 when the first is negative",
    )
    parser.add_argument("--scales", default="1", help="input scales to score each checkpoint at")
    parser.add_argument("--adapt-bn", action="store_true", help="also score with AdaBN on the split")
    parser.add_argument(
        "--json",
        default=str(REPO / "benchmarks" / "eval_val_errors.json"),
        help="result file (default: benchmarks/eval_val_errors.json)",
    )
    args = parser.parse_args(argv)
    check_json_destination(parser, args.json)
    load_before = os.getloadavg()
    offsets = sorted({float(v) for v in args.offsets.split(",")} | {0.0})
    scales = tuple(sorted({float(v) for v in args.scales.split(",")} | {1.0}))
    if min(scales) <= 0:
        parser.error(f"--scales must be positive, got {args.scales}")

    shared = [c for c in args.ckpt if "," not in c]
    own = [c.split(",") for c in args.ckpt if "," in c]
    missing = [c for c in [*shared, *(o[0] for o in own)] if not expand_home(c).exists()]
    if missing:  # before the (minutes-long) data set-up, not as a traceback after it
        parser.error(
            f"--ckpt: no such checkpoint {', '.join(missing)}; pass .ckpt files written by train.py "
            "(logs/train/<run>/checkpoints/best.ckpt) or model package folders (python -m marsunits.export), "
            "each optionally followed by ,override,..."
        )
    results = []
    if shared:
        results.append(
            evaluate_split(shared, args.experiment, args.root, args.set, offsets, scales, args.adapt_bn)
        )
    for ckpt, *overrides in own:
        results.append(
            evaluate_split([ckpt], args.experiment, args.root, overrides, offsets, scales, args.adapt_bn)
        )

    report = {"experiment": args.experiment, "splits": results}
    report["machine"] = machine_info(load_before)
    report["reproduce"] = reproduction("eval_val_errors.py", args)
    expand_home(args.json).write_text(json.dumps(report, indent=2) + "\n")
    for res in results:
        print(f"split {res['overrides'] or 'default'} ({res['seconds']} s)")
        for ckpt, r in res["models"].items():
            offs = "  ".join(f"{k}:{v:.3f}" for k, v in r["rough_offset_miou"].items())
            print(f"  {ckpt}: mIoU {r['alone']['miou']:.4f}; rough offsets {offs}")
            if len(r["input_scale"]) > 1:
                sc = "  ".join(f"{k}:{v['miou']:.3f}" for k, v in r["input_scale"].items())
                print(f"    input scales {sc}")
            if "adapted_bn" in r:
                print(f"    batch-norm statistics adapted to the split: mIoU {r['adapted_bn']['miou']:.4f}")
        for e in res["ensembles"]:
            print(
                f"  mean of {len(e['members'])} ({', '.join(_run_name(m) for m in e['members'])}): "
                f"mIoU {e['miou']:.4f}"
            )
    print(f"written {args.json}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` as a command: a user's error (a file that is no model, a data folder that is not there)
    is one line and exit status 2, not a traceback (``MARSUNITS_TRACEBACK=1`` shows it)."""
    return report_user_errors(lambda: main(argv), "eval_val_errors.py")


if __name__ == "__main__":
    raise SystemExit(cli())
