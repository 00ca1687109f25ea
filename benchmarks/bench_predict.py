"""Throughput and memory of predict.py's engine against a naive baseline, in one run, printed as a table.

Usage::

    python benchmarks/bench_predict.py [--quick] [--json FILE] [--device cpu|cuda] [--skip-panorama]

What is measured (default model: configs/model/unet_lite0.yaml hyper-parameters with random weights, which
do not change speed, saved as a checkpoint in a temporary folder; tile = the checkpoint's tile size):

* **naive**: one image at a time, decoded in the main process, the whole image (reflect-padded to the
  network stride) in one float32 forward pass under ``torch.no_grad`` in PyTorch's default memory format,
  then argmax. No batching, no tiling, no parallel decoding.
* **engine**: what ``predict.py`` does up to the mask: images decoded in the main process on CPU (DataLoader
  workers ahead of the network on GPU; ``--num-workers``), Gaussian-blended
  windows (``tile`` and ``overlap`` of configs/predict.yaml: 512 px, 0.125) in batches of 4, batch norm
  folded into the convolutions, ``channels_last``, ``inference_mode``, threads = cores (or ``--threads``).
  Rows: the defaults (``runtime=torch precision=auto``: bfloat16 autocast on CPUs with AMX and on CUDA,
  else float32), PyTorch float32, ONNX Runtime float32, and the defaults and float32 with the previous
  window layout (the training crop size, 256 px, overlap 0.25).
  Methods are run in ``--rounds`` interleaved rounds and the best round of each is kept, so that a change
  of the machine's load affects all of them alike.
* **predict.py**: the whole ``predict_folder`` run with default options (also contacts, overlays, PNG
  writing, reports), for reference.

Both wall-clock and CPU-time figures are given (CPU time = this process + its DataLoader workers): on a
machine shared with other jobs the wall clock is inflated, CPU seconds much less so.

Machine limit: float32 FLOP/s of a 2048 x 2048 matmul (best of several) in this run; the model's FLOPs per
megapixel are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one tile. The fraction of the
limit is ``FLOPs/MP x MP/s / matmul FLOP/s`` (useful FLOPs: the extra work of overlapping windows counts
against the engine). ``fraction_of_matmul_limit`` is the default engine over the float32 matmul (the
definition the performance issue sets); ``fraction_of_own_precision_matmul_limit`` divides by the matmul
of the precision the engine computes in (bf16 with AMX: a much higher ceiling that this depthwise-
convolution network, bound by memory traffic, cannot approach).

Also: time per megapixel for single images of 1, 5, 10 and 20 MP (engine, in memory), and the peak resident
memory of a whole ``predict_folder`` run on one 12,000 x 1,600 panorama, measured in a subprocess
(``VmHWM``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import (
    check_json_destination,
    cpu_model,
    reproduction,
)  # sibling module: benchmarks/ is sys.path[0] when run as a script
from omegaconf import OmegaConf
from PIL import Image

from marsunits.user_paths import expand_home

REPO = Path(__file__).resolve().parents[1]
#: Window side of predict.py's default layout until 2026-11-25 (with overlap 0.25), kept as a comparison row.
PREVIOUS_TILE = 256
TARGETS = {
    "speedup_vs_naive": 2.5,
    "fraction_of_matmul_limit": 0.35,
    "scaling_spread": 0.20,
    "peak_rss_gb": 3.0,
}


# ------------------------------------------------------------------------------------------------ set-up
def default_task(in_channels: int = 3) -> Any:
    """The default model (configs/model/unet_lite0.yaml) with random weights and the default tile size."""
    from marsunits.task import SegmentationTask

    model = OmegaConf.load(REPO / "configs" / "model" / "unet_lite0.yaml")
    data = OmegaConf.load(REPO / "configs" / "data" / "synthetic.yaml")
    torch.manual_seed(0)
    return SegmentationTask(
        arch=model.arch,
        encoder=model.encoder,
        encoder_weights=None,
        encoder_depth=model.encoder_depth,
        decoder_channels=model.decoder_channels,
        in_channels=in_channels,
        tile_size=int(data.crop_size),
        dataset="benchmark",
    ).eval()


def save_checkpoint(task: Any, path: Path) -> Path:
    """A checkpoint ``marsunits.checkpoint_loading.load_task`` accepts (what Lightning writes, minus optimiser
    state)."""
    from marsunits.task import METADATA_KEY

    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            METADATA_KEY: task.metadata,
        },
        path,
    )
    return path


def procedural_image(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 ``(h, w, 3)``: smooth large-scale shading plus fine texture (a rough stand-in for terrain)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, h // 64), max(2, w // 64), 3), dtype=np.float32)
    big = np.asarray(
        Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC), np.float32
    )
    noise = rng.integers(-40, 41, (h, w, 1), dtype=np.int16)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def make_folder(root: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (w, h) in enumerate(sizes):
        path = root / f"img{i:02d}_{w}x{h}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(procedural_image(h, w, i)).save(path, quality=92)
        files.append(path)
    return files


# -------------------------------------------------------------------------------------------- measuring
def cpu_seconds() -> float:
    """CPU seconds of this process and of its terminated children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], float]) -> tuple[float, float, float]:
    """``(megapixels, wall s, cpu s)`` of ``fn()``, which returns the megapixels it processed."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    mp = fn()
    return mp, time.perf_counter() - w0, cpu_seconds() - c0


def matmul_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Best FLOP/s of an ``n x n`` matmul, by wall clock and by CPU time."""
    a = torch.rand(n, n).to(dtype)
    b = torch.rand(n, n).to(dtype)
    a @ b
    best_w = best_c = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        a @ b
        best_w = min(best_w, time.perf_counter() - w0)
        best_c = min(best_c, time.process_time() - c0)
    flops = 2.0 * n**3
    # CPU-time figure per thread: FLOP/s one fully busy core delivers, times the threads used.
    return flops / best_w, flops / best_c * torch.get_num_threads()


def flops_per_megapixel(task: Any, tile: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, int(task.hparams.in_channels), tile, tile)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        task(x)
    return counter.get_total_flops() / (tile * tile / 1e6)


def run_naive(task: Any, files: list[Path], stride: int) -> float:
    from marsunits.data.io import read_image, to_channels
    from marsunits.inference.tiling import pad_image, round_up

    mp = 0.0
    with torch.no_grad():
        for path in files:
            img = to_channels(read_image(path), 3)
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            h, w = x.shape[1:]
            x = pad_image(x, round_up(h, stride), round_up(w, stride)).contiguous()
            logits = task(x[None])[0, :, :h, :w]
            mask = logits.argmax(0).to(torch.uint8).numpy()
            mp += mask.size / 1e6
    return mp


def make_engine(
    task: Any,
    ckpt: Path,
    cache: Path,
    runtime: str,
    precision: str,
    device: torch.device,
    tile: int,
    overlap: float,
) -> Any:
    """predict.py's engine with windows of ``tile`` px overlapping by ``overlap``: the caller passes them, so
    no figure is timed with windows of another size (the scaling figures ran the checkpoint's 128 px
    windows with 25 % overlap while the README called them the default engine's, 512 px and 12.5 %)."""
    from marsunits.inference.predictor import Predictor
    from marsunits.inference.runtime import build_forward

    forward, choice = build_forward(
        task,
        runtime=runtime,
        device=device,
        precision=precision,
        channels_last=True,
        compile=False,
        threads=torch.get_num_threads(),
        ckpt_path=ckpt,
        cache_dir=cache,
        probe_shape=(4, 3, tile, tile),
    )
    predictor = Predictor(
        forward,
        in_channels=3,
        tile=tile,
        overlap=overlap,
        batch_size=4,
        device=device,
        stride=task.size_divisor,
    )
    return predictor, choice


def run_engine(predictor: Any, files: list[Path], num_workers: int) -> float:
    from marsunits.data.io import to_channels
    from marsunits.inference.predictor import ImageFileDataset, make_loader
    from marsunits.inference.unit_mapper import argmax_uint8

    mp = 0.0
    for item in make_loader(ImageFileDataset(files), num_workers):
        assert item.image is not None, item.error
        x = torch.from_numpy(to_channels(item.image, 3)).permute(2, 0, 1)
        mask = argmax_uint8(predictor.predict(x))
        mp += mask.size / 1e6
    return mp


def run_predict_folder(ckpt: Path, inp: Path, out: Path, threads: int | None) -> float:
    from marsunits.inference import PredictOptions, predict_folder

    opts = PredictOptions(ckpt_path=str(ckpt), input_dir=str(inp), output_dir=str(out), threads=threads)
    result = predict_folder(opts)
    return float(result.summary["megapixels"])


PANORAMA_SCRIPT = """
import sys, time
from marsunits.inference import PredictOptions, predict_folder
import marsunits.task, marsunits.boundary.extract
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) / 1024**2
base = hwm()
t = time.perf_counter()
threads = int(sys.argv[5]) if sys.argv[5] != "None" else None
r = predict_folder(PredictOptions(ckpt_path=sys.argv[1], input_dir=sys.argv[2], output_dir=sys.argv[3],
                                  device=sys.argv[4], threads=threads))
print('RESULT', base, hwm(), time.perf_counter() - t, r.exit_code)
"""


def panorama_peak(
    ckpt: Path, tmp: Path, width: int, height: int, device: str, threads: int | None
) -> dict[str, float]:
    """Peak RSS (GB) of a predict_folder run on one ``width x height`` image, in a fresh subprocess."""
    inp = tmp / "panorama"
    inp.mkdir()
    Image.fromarray(procedural_image(height, width, 99)).save(inp / "pano.jpg", quality=92)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PANORAMA_SCRIPT,
            str(ckpt),
            str(inp),
            str(tmp / "panorama_out"),
            device,
            str(threads),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"panorama run failed: {proc.stderr[-2000:]}")
    _, base, peak, seconds, _ = line[0].split()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # largest child, GB
    return {
        "width": width,
        "height": height,
        "peak_rss_gb": float(peak),
        "after_imports_gb": float(base),
        "largest_child_maxrss_gb": children,
        "seconds": float(seconds),
    }


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller folder, scaling sizes and panorama")
    p.add_argument("--json", default=str(Path(__file__).with_name("bench_predict.json")), help="output JSON")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per method; the best is kept")
    p.add_argument(
        "--num-workers", type=int, default=None, help="decoding workers of the engine (default: predict's)"
    )
    p.add_argument("--skip-panorama", action="store_true", help="skip the peak-memory panorama run")
    args = p.parse_args(argv)
    check_json_destination(p, args.json)

    from marsunits.inference.runtime import configure_threads, resolve_precision

    threads = configure_threads(args.threads)
    device = torch.device(args.device)
    from marsunits.inference.predictor import resolve_num_workers

    workers = resolve_num_workers(args.num_workers, device)
    default_precision = resolve_precision("auto", device)
    load_before = os.getloadavg()
    if args.quick:
        sizes = [(640, 480), (1024, 768), (1280, 960), (3072, 512)]
        scaling_mp = [0.5, 1.0, 2.0, 4.0]
        pano = (6000, 800)
    else:
        sizes = [(640, 480), (1024, 768), (1600, 1200), (2048, 1536), (800, 600), (4096, 768)]
        scaling_mp = [1.0, 5.0, 10.0, 20.0]
        pano = (12000, 1600)

    task = default_task()
    # The engine's window defaults are predict.py's (configs/predict.yaml); tile null = the checkpoint's.
    predict_cfg = OmegaConf.load(REPO / "configs" / "predict.yaml")
    tile = int(predict_cfg.tile) if predict_cfg.tile is not None else int(task.metadata["tile_size"])
    overlap = float(predict_cfg.overlap)
    stride = int(task.metadata["size_divisor"])
    fpm = flops_per_megapixel(task, tile)
    f32_wall, f32_cpu = matmul_flops(torch.float32)
    bf16_wall, bf16_cpu = matmul_flops(torch.bfloat16)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ckpt = save_checkpoint(task, tmp / "default.ckpt")
        files = make_folder(tmp / "images", sizes)

        def record(name: str, mp: float, wall: float, cpu: float, note: str = "") -> None:
            row = {
                "megapixels": mp,
                "wall_s": wall,
                "cpu_s": cpu,
                "mp_per_s": mp / wall,
                "mp_per_cpu_s": mp / cpu,
                "note": note,
            }
            old = rows.get(name)
            if old is None:
                rows[name] = row
            else:  # best of the rounds, separately for wall and CPU time
                rows[name] = {
                    **row,
                    "wall_s": min(wall, old["wall_s"]),
                    "cpu_s": min(cpu, old["cpu_s"]),
                    "mp_per_s": max(row["mp_per_s"], old["mp_per_s"]),
                    "mp_per_cpu_s": max(row["mp_per_cpu_s"], old["mp_per_cpu_s"]),
                }

        methods: list[tuple[str, Callable[[], float], str]] = []
        naive_task = default_task()  # its own copy, in the default (NCHW) memory format
        methods.append(("naive", lambda: run_naive(naive_task, files, stride), "whole image, fp32, NCHW"))
        # (name, runtime, precision, window side, overlap)
        engines = [
            (f"engine default (torch, {default_precision})", "torch", default_precision, tile, overlap),
            ("engine torch fp32", "torch", "32", tile, overlap),
            ("engine onnx fp32", "onnx", "32", tile, overlap),
            # The windows of the default until 2026-11-25: 256 px (the training crop size then), 25 % overlap.
            # Fixed: the checkpoint's tile size has changed since (128 px for the default synthetic model).
            (
                f"engine default, tile {PREVIOUS_TILE}, overlap 0.25",
                "torch",
                default_precision,
                PREVIOUS_TILE,
                0.25,
            ),
            (f"engine fp32, tile {PREVIOUS_TILE}, overlap 0.25", "torch", "32", PREVIOUS_TILE, 0.25),
        ]
        choices = {}
        for name, runtime, precision, side, share in engines:
            if device.type != "cpu" and runtime == "onnx":
                continue
            predictor, choice = make_engine(
                default_task(), ckpt, tmp / "onnx", runtime, precision, device, side, share
            )
            choices[name] = choice.to_dict()
            run_engine(predictor, files[:1], 0)  # warm-up (allocator, oneDNN primitive cache)
            methods.append((name, functools.partial(run_engine, predictor, files, workers), choice.reason))
        # Interleaved rounds: a change of the machine's load hits every method alike.
        for _ in range(max(1, args.rounds)):
            for name, fn, note in methods:
                record(name, *timed(fn), note)
        del methods
        out = tmp / "predict_out"
        record(
            "predict.py (all outputs)",
            *timed(lambda: run_predict_folder(ckpt, tmp / "images", out, args.threads)),
            "default options: + contacts, overlays, writing",
        )

        # Linear scaling: one in-memory image per size, default engine, best of --rounds (the first call
        # of a new window shape also pays for oneDNN's kernel set-up, which a folder of images shares).
        predictor, _ = make_engine(
            default_task(), ckpt, tmp / "onnx", "torch", default_precision, device, tile, overlap
        )
        scaling = []
        for mp in scaling_mp:
            w = int(round(np.sqrt(mp * 1e6 * 4 / 3)))
            h = int(round(mp * 1e6 / w))
            x = torch.from_numpy(procedural_image(h, w, 7)).permute(2, 0, 1).float() / 255.0

            def megapixels(x: torch.Tensor = x) -> float:
                return float(predictor.predict(x).shape[1] * x.shape[2] / 1e6)

            runs = [timed(megapixels) for _ in range(max(1, args.rounds))]
            got, wall, cpu = runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)
            scaling.append(
                {
                    "megapixels": got,
                    "width": w,
                    "height": h,
                    "s_per_mp": wall / got,
                    "cpu_s_per_mp": cpu / got,
                }
            )
            del x
        panorama = None
        if not args.skip_panorama:
            panorama = panorama_peak(ckpt, tmp, pano[0], pano[1], args.device, args.threads)

    naive = rows["naive"]
    default_name = engines[0][0]
    engine = rows[default_name]
    fp32 = rows["engine torch fp32"]
    best_name = max((n for n in rows if n.startswith("engine")), key=lambda n: rows[n]["mp_per_s"])
    spread = lambda key: max(s[key] for s in scaling) / min(s[key] for s in scaling) - 1.0  # noqa: E731
    # "Constant within +-20 %": the largest deviation of any size from the mean over the sizes.
    deviation = lambda key: max(  # noqa: E731
        abs(s[key] / np.mean([t[key] for t in scaling]) - 1.0) for s in scaling
    )
    limit = bf16_wall if default_precision == "bf16" else f32_wall
    limit_cpu = bf16_cpu if default_precision == "bf16" else f32_cpu
    result = {
        "megapixels_per_s": engine["mp_per_s"],
        "naive_megapixels_per_s": naive["mp_per_s"],
        "speedup_vs_naive": engine["mp_per_s"] / naive["mp_per_s"],
        "speedup_vs_naive_cpu_time": engine["mp_per_cpu_s"] / naive["mp_per_cpu_s"],
        "fp32_speedup_vs_naive": fp32["mp_per_s"] / naive["mp_per_s"],
        "default_engine": default_name,
        "default_precision": default_precision,
        "fastest_engine": best_name,
        "fastest_speedup_vs_naive": rows[best_name]["mp_per_s"] / naive["mp_per_s"],
        "flops_per_megapixel": fpm,
        "matmul_fp32_flops_per_s": f32_wall,
        "matmul_fp32_flops_per_cpu_s_x_threads": f32_cpu,
        "matmul_bf16_flops_per_s": bf16_wall,
        "matmul_bf16_flops_per_cpu_s_x_threads": bf16_cpu,
        # The definition: useful FLOPs of the default engine over a float32 matmul's FLOP/s ...
        "fraction_of_matmul_limit": fpm * engine["mp_per_s"] / f32_wall,
        "fraction_of_matmul_limit_cpu_time": fpm * engine["mp_per_cpu_s"] * threads / f32_cpu,
        # ... the default engine against the matmul of the precision it computes in (bf16 on AMX CPUs) ...
        "fraction_of_own_precision_matmul_limit": fpm * engine["mp_per_s"] / limit,
        "fraction_of_own_precision_matmul_limit_cpu_time": fpm * engine["mp_per_cpu_s"] * threads / limit_cpu,
        # ... and the fp32 engine against the fp32 limit.
        "fp32_fraction_of_fp32_matmul_limit": fpm * fp32["mp_per_s"] / f32_wall,
        "fp32_fraction_of_fp32_matmul_limit_cpu_time": fpm * fp32["mp_per_cpu_s"] * threads / f32_cpu,
        "tile": tile,
        "overlap": overlap,
        "window_overhead_factor": (tile / int(tile * (1.0 - overlap))) ** 2,
        "rows": rows,
        "runtime_choices": choices,
        "scaling": scaling,
        "scaling_spread_wall": spread("s_per_mp"),
        "scaling_spread_cpu": spread("cpu_s_per_mp"),
        "scaling_max_deviation_from_mean_wall": deviation("s_per_mp"),
        "scaling_max_deviation_from_mean_cpu": deviation("cpu_s_per_mp"),
        "panorama": panorama,
        "peak_rss_gb_panorama": panorama["peak_rss_gb"] if panorama else None,
        "targets": TARGETS,
        "quick": args.quick,
        "rounds": args.rounds,
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "processor": cpu_model(),
            "cpus": os.cpu_count(),
            "threads": threads,
            "device": str(device),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
    }
    result["reproduce"] = reproduction("bench_predict.py", args)
    _print(result)
    expand_home(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.json}")
    return 0


def _print(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(
        f"\npredict engine benchmark - {m['processor']}, {m['cpus']} CPUs, {m['threads']} threads, "
        f"load {m['loadavg_before'][0]:.1f} -> {m['loadavg_after'][0]:.1f}{' (quick)' if r['quick'] else ''}"
    )
    print(f"{'':28} {'MP':>6} {'wall s':>7} {'MP/s':>7} {'CPU s':>7} {'MP/CPU-s':>8}  x naive (wall / cpu)")
    naive = r["rows"]["naive"]
    for name, row in r["rows"].items():
        print(
            f"{name:28} {row['megapixels']:6.2f} {row['wall_s']:7.1f} {row['mp_per_s']:7.3f} "
            f"{row['cpu_s']:7.1f} "
            f"{row['mp_per_cpu_s']:8.3f}  {row['mp_per_s'] / naive['mp_per_s']:5.2f} / "
            f"{row['mp_per_cpu_s'] / naive['mp_per_cpu_s']:5.2f}"
        )
    print(
        f"model: {r['flops_per_megapixel'] / 1e9:.1f} GFLOP/MP; "
        f"matmul fp32 {r['matmul_fp32_flops_per_s'] / 1e9:.1f} "
        f"GFLOP/s, bf16 {r['matmul_bf16_flops_per_s'] / 1e9:.1f} GFLOP/s; window overlap costs "
        f"x{r['window_overhead_factor']:.2f} (not counted as useful work)"
    )
    print(
        f"  default engine ({r['default_precision']}): {100 * r['fraction_of_matmul_limit']:.1f} % of the "
        f"fp32 matmul limit (CPU time: {100 * r['fraction_of_matmul_limit_cpu_time']:.1f} %; target "
        f"{100 * TARGETS['fraction_of_matmul_limit']:.0f} %), "
        f"{100 * r['fraction_of_own_precision_matmul_limit']:.1f} % of the {r['default_precision']} limit"
    )
    print(
        f"  fp32 engine: {100 * r['fp32_fraction_of_fp32_matmul_limit']:.1f} % of the fp32 limit "
        f"(CPU time: {100 * r['fp32_fraction_of_fp32_matmul_limit_cpu_time']:.1f} %)"
    )
    print(
        "scaling (engine, one image):  "
        + "  ".join(
            f"{s['megapixels']:.1f} MP: {s['s_per_mp']:.2f} s/MP ({s['cpu_s_per_mp']:.2f} CPU-s/MP)"
            for s in r["scaling"]
        )
    )
    print(
        f"  largest deviation from the mean: wall {100 * r['scaling_max_deviation_from_mean_wall']:.0f} %, "
        f"CPU {100 * r['scaling_max_deviation_from_mean_cpu']:.0f} % (target within "
        f"+-{100 * TARGETS['scaling_spread']:.0f} %); "
        f"max/min - 1: wall {100 * r['scaling_spread_wall']:.0f} %, "
        f"CPU {100 * r['scaling_spread_cpu']:.0f} %"
    )
    if r["panorama"]:
        pa = r["panorama"]
        print(
            f"panorama {pa['width']}x{pa['height']}: peak RSS {pa['peak_rss_gb']:.2f} GB "
            f"({pa['after_imports_gb']:.2f} GB after imports), {pa['seconds']:.0f} s (target <= 3 GB)"
        )
    print(
        f"speed-up vs naive: {r['speedup_vs_naive']:.2f} x wall, "
        f"{r['speedup_vs_naive_cpu_time']:.2f} x CPU time "
        f"(target {TARGETS['speedup_vs_naive']} x); fastest engine: {r['fastest_engine']} "
        f"{r['fastest_speedup_vs_naive']:.2f} x"
    )


if __name__ == "__main__":
    raise SystemExit(main())
