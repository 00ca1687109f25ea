"""Training throughput (images per second) and peak memory of a model config, printed as a table.

Usage::

    python benchmarks/bench_train.py [--model unet_lite0[,other,...]] [--rounds 1] [--device cpu|cuda]
        [--steps 4] [--batch-size N] [--threads N] [--compile]

Model: ``configs/model/<--model>.yaml``, by default ``unet_lite0`` (smp's full Unet decoder, the real-data
model); the synthetic default ``python train.py`` trains is ``--model unet_lite0_d4 --crop-size 128
--batch-size 16``. Random encoder weights: weights do not change speed. Crop size and batch size default to
configs/data/synthetic.yaml (``crop_size``, ``batch_size``). One optimiser step is what
``SegmentationTask.training_step`` does (forward, loss, backward) plus the configured optimiser's step, on a
fixed random batch (data loading is not measured: see bench_synthetic.py for the scene generator).

Configurations, each in a fresh subprocess so that peak memory is its own: ``channels_last`` off / on, in
float32 on CPU; on CUDA also bf16 autocast (what ``trainer=gpu`` uses); on a CPU with AMX matrix units also
bf16 autocast with ``channels_last`` (prediction's default there, about 2x faster than float32: this row
says whether training would gain as much); with ``--compile`` also float32 ``channels_last`` with the
network under ``torch.compile`` (inductor), whose first step includes the compilation. The first step is a
warm-up and is not timed (its wall clock is reported as ``first_step_s``). Peak memory: the process's
``VmHWM`` (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).
The machine's load average is recorded: on a shared machine the wall clock is inflated, so CPU seconds
per image are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _machine import (
    check_json_destination,
    machine_info,
    reproduction,
)  # sibling module: benchmarks/ is sys.path[0] when run as a script

from marsunits.user_paths import expand_home

REPO = Path(__file__).resolve().parents[1]


def _hwm_gb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def worker(
    device: str,
    channels_last: bool,
    precision: str,
    steps: int,
    batch_size: int,
    crop: int,
    threads: int | None,
    compiled: bool = False,
    model: str = "unet_lite0",
) -> dict:
    """Time ``steps`` optimiser steps of one configuration in this process."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from omegaconf import OmegaConf

    from marsunits.task import SegmentationTask

    cfg = OmegaConf.load(REPO / "configs" / "model" / f"{model}.yaml")
    if "defaults" in cfg:  # a variant (unet_lite0_slim) over its base config
        base = OmegaConf.load(REPO / "configs" / "model" / f"{cfg.defaults[0]}.yaml")
        cfg = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "defaults"})
    torch.manual_seed(0)
    task = SegmentationTask(
        arch=cfg.arch,
        encoder=cfg.encoder,
        encoder_weights=None,
        encoder_depth=cfg.encoder_depth,
        decoder_channels=cfg.decoder_channels,
        in_channels=3,
        tile_size=crop,
        channels_last=channels_last,
        scheduler="none",
        lr=float(cfg.lr),
        weight_decay=float(cfg.weight_decay),
        optimizer=cfg.optimizer,
    ).to(device)
    task.train()
    optimizer = task.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    elif isinstance(optimizer, (list, tuple)):
        optimizer = optimizer[0][0] if isinstance(optimizer[0], (list, tuple)) else optimizer[0]
    images = torch.rand(batch_size, 3, crop, crop, device=device)
    masks = torch.randint(0, 3, (batch_size, crop, crop), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    forward = torch.compile(task) if compiled else task

    def step() -> float:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = forward(images)
            loss = task.criterion(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    first = time.perf_counter()
    step()  # warm-up (and compilation)
    sync()
    first_step_s = time.perf_counter() - first
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    w0, c0 = time.perf_counter(), time.process_time()
    losses = [step() for _ in range(steps)]
    sync()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = steps * batch_size
    peak = torch.cuda.max_memory_allocated() / 1024**3 if device.startswith("cuda") else _hwm_gb()
    return {
        "device": device,
        "channels_last": channels_last,
        "precision": precision,
        "compiled": compiled,
        "first_step_s": first_step_s,
        "batch_size": batch_size,
        "crop_size": crop,
        "steps": steps,
        "images_per_s": n / wall,
        "cpu_s_per_image": cpu / n,
        "peak_memory_gb": peak,
        "final_loss": losses[-1],
        "threads": torch.get_num_threads(),
    }


def _run_worker(
    args: argparse.Namespace, model: str, cl: str, precision: str, compiled: str
) -> dict[str, Any]:
    """Time one configuration of one model in a fresh subprocess (so peak memory is its own)."""
    cmd = [sys.executable, __file__, "--_worker", f"{cl},{precision},{compiled}", "--device", args.device,
           "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--crop-size", str(args.crop_size), "--model", model]  # fmt: skip
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(
            f"{model} configuration {cl},{precision},{compiled} failed:\n{proc.stderr[-3000:]}"
        )
    return dict(json.loads(line[0][len("RESULT ") :]))


_CONFIG_KEYS = ("channels_last", "precision", "compiled")
_MEASURES = ("images_per_s", "cpu_s_per_image", "peak_memory_gb", "first_step_s")


def _medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, configuration): the median of each measure over the rounds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], *(r[k] for k in _CONFIG_KEYS)), []).append(r)
    out = []
    for key, members in groups.items():
        row = {"model": key[0], **dict(zip(_CONFIG_KEYS, key[1:], strict=True)), "rounds": len(members)}
        row |= {m: statistics.median(r[m] for r in members) for m in _MEASURES}
        out.append(row)
    return out


def _ratios(summary: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """Each further model's median speed over the first model's, configuration by configuration."""
    first = {tuple(r[k] for k in _CONFIG_KEYS): r for r in summary if r["model"] == models[0]}
    out = []
    for r in summary:
        ref = first.get(tuple(r[k] for k in _CONFIG_KEYS))
        if r["model"] == models[0] or ref is None:
            continue
        out.append(
            {
                "model": r["model"],
                "reference": models[0],
                "configuration": ",".join(f"{k}={r[k]}" for k in _CONFIG_KEYS),
                "images_per_s_ratio": r["images_per_s"] / ref["images_per_s"],
                "cpu_s_per_image_ratio": r["cpu_s_per_image"] / ref["cpu_s_per_image"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    data = OmegaConf.load(REPO / "configs" / "data" / "synthetic.yaml")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default="unet_lite0",
        help="configs/model/<name>.yaml (default: unet_lite0); several, comma-separated, run interleaved",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every model and configuration this many times, interleaved; medians are reported",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=4, help="timed optimiser steps per configuration")
    p.add_argument(
        "--batch-size",
        type=int,
        default=int(data.batch_size),
        help="images per step (default: configs/data/synthetic.yaml's batch_size)",
    )
    p.add_argument(
        "--crop-size",
        type=int,
        default=int(data.crop_size),
        help="square crop side, px (default: configs/data/synthetic.yaml's crop_size)",
    )
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: PyTorch's)")
    p.add_argument("--compile", action="store_true", help="also time the network under torch.compile")
    p.add_argument(
        "--json",
        default=str(Path(__file__).with_name("bench_train.json")),
        help="result file (default: benchmarks/bench_train.json)",
    )
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        cl, precision, compiled = args._worker.split(",")
        out = worker(
            args.device,
            cl == "1",
            precision,
            args.steps,
            args.batch_size,
            args.crop_size,
            args.threads,
            compiled=compiled == "1",
            model=args.model,
        )
        print("RESULT " + json.dumps(out))
        return 0

    configs = [("0", "32", "0"), ("1", "32", "0")]
    if args.device.startswith("cuda"):
        configs += [("0", "bf16", "0"), ("1", "bf16", "0")]
    else:
        from marsunits.inference.runtime import cpu_has_bf16_matrix_units

        if cpu_has_bf16_matrix_units():
            configs += [("1", "bf16", "0")]
    if args.compile:
        configs += [("1", "32", "1")]
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if args.rounds < 1 or not models:
        p.error("--rounds must be >= 1 and --model must name at least one config")
    unknown = [m for m in models if not (REPO / "configs" / "model" / f"{m}.yaml").is_file()]
    if unknown:  # before the first subprocess, not as its traceback
        known = sorted(f.stem for f in (REPO / "configs" / "model").glob("*.yaml"))
        p.error(f"--model {', '.join(unknown)}: no configs/model/<name>.yaml; one of {', '.join(known)}")
    if args.steps < 1 or args.batch_size < 1 or args.crop_size < 1:
        p.error("--steps, --batch-size and --crop-size must be positive")
    check_json_destination(p, args.json)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    # Interleaved (round 1: every model and configuration, round 2: the same again, ...) so that a shared
    # machine's drifting speed falls on every model alike; the ratios of medians are what to compare.
    for round_ in range(args.rounds):
        for model in models:
            for cl, precision, compiled in configs:
                rows.append(
                    _run_worker(args, model, cl, precision, compiled) | {"model": model, "round": round_}
                )
    print(
        f"\ntraining step benchmark - crop {args.crop_size}, batch {args.batch_size}, {args.steps} steps, "
        f"{args.rounds} round(s), {args.device}, load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'model':>18} {'channels_last':>13} {'precision':>9} {'compiled':>8} {'images/s':>9} "
        f"{'CPU s/image':>11} {'peak GB':>8} {'first step s':>12}"
    )
    summary = _medians(rows)
    for r in summary:
        print(
            f"{r['model']:>18} {str(r['channels_last']):>13} {r['precision']:>9} {str(r['compiled']):>8} "
            f"{r['images_per_s']:9.2f} {r['cpu_s_per_image']:11.3f} {r['peak_memory_gb']:8.2f} "
            f"{r['first_step_s']:12.1f}"
        )
    ratios = _ratios(summary, models)
    for line in ratios:
        print(
            f"{line['model']} / {line['reference']} ({line['configuration']}): "
            f"images/s x{line['images_per_s_ratio']:.2f}, CPU s/image x{line['cpu_s_per_image_ratio']:.2f}"
        )
    result = {
        "model": models[0] if len(models) == 1 else models,
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "rows": rows,
        "medians": summary,
        "ratios_to_first_model": ratios,
        "machine": machine_info(load_before),  # the CPU model too: rows are quoted per machine
        "reproduce": reproduction("bench_train.py", args),
    }
    expand_home(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
