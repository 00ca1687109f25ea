"""Throughput of the synthetic rover-scene generator (single process), printed as a table.

Usage::

    python benchmarks/bench_synthetic.py [--n 60] [--size 320x240] [--repeats 3] [--json FILE]

Reports, per output mode, the best of ``--repeats`` runs of ``--n`` scenes (generation only, nothing
written): wall-clock scenes per second, CPU-time scenes per second (``time.process_time``: less sensitive
to other processes sharing the cores, the figure to compare on a busy machine) and milliseconds per scene,
plus the time to write a scene to disk. The goal is >= 30 scenes/s at 320x240 on 2 cores with one torch
thread. ``--json`` writes the same figures (top-level ``scenes_per_s`` and ``cpu_scenes_per_s`` are those of
the first mode) with the machine: CPU count, CPU model (``/proc/cpuinfo``), torch threads and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import check_json_destination, cpu_model, reproduction
from torch.utils.data import DataLoader

from marsunits.data.synthetic import SceneConfig, SyntheticScenes, generate_scene, write_scene
from marsunits.user_paths import expand_home

TARGET_SCENES_PER_S = 30.0


def _run(config: SceneConfig, n: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds to render ``n`` scenes."""
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        generate_scene(seed, i, config)
    return time.perf_counter() - w0, time.process_time() - c0


def _loader_rate(cfg: SceneConfig, n: int, workers: int) -> float:
    """Scenes per second of :class:`SyntheticScenes` read through a DataLoader with ``workers`` processes
    (each with one torch thread), after the first item: the rate training sees on the whole machine."""
    loader = DataLoader(SyntheticScenes(n + 1, 7, cfg), batch_size=None, num_workers=workers)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    count = sum(1 for _ in it)
    return count / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60, help="scenes per run")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    p.add_argument("--repeats", type=int, default=3, help="runs per mode (best is reported)")
    p.add_argument("--modes", default="color,grey", help="comma-separated modes")
    p.add_argument(
        "--json",
        default=str(Path(__file__).with_name("bench_synthetic.json")),
        help="result file (default: benchmarks/bench_synthetic.json; an empty value writes none)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (grid_sample); default 1")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="DataLoader workers (whole machine)",
    )
    args = p.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size: expected WIDTHxHEIGHT such as 320x240, got {args.size!r}")
    if min(w, h, args.n, args.repeats) < 1:
        p.error(f"--size, --n and --repeats must be positive, got {args.size}, {args.n}, {args.repeats}")
    if args.json:
        check_json_destination(p, args.json)
    # One intra-op thread by default: the generator scales with DataLoader workers, not threads.
    torch.set_num_threads(args.threads)
    generate_scene(0, 0, SceneConfig(width=w, height=h))  # warm-up (imports, allocator)

    rows = []
    for mode in args.modes.split(","):
        cfg = SceneConfig(width=w, height=h, mode=mode)
        runs = [_run(cfg, args.n, seed=100 + r) for r in range(args.repeats)]
        wall = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        rows.append(
            {
                "mode": mode,
                "width": w,
                "height": h,
                "n": args.n,
                "scenes_per_s": args.n / wall,
                "cpu_scenes_per_s": args.n / cpu,
                "ms_per_scene": 1000.0 * wall / args.n,
                "cpu_ms_per_scene": 1000.0 * cpu / args.n,
            }
        )
    machine_rate = _loader_rate(SceneConfig(width=w, height=h), args.n * 2, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SceneConfig(width=w, height=h)
        scenes = [generate_scene(1, i, cfg) for i in range(10)]
        t0 = time.perf_counter()
        for s in scenes:
            write_scene(s, tmp)
        write_ms = 1000.0 * (time.perf_counter() - t0) / len(scenes)

    nproc = os.cpu_count()
    load = os.getloadavg()[0]
    print(
        f"synthetic scenes {w}x{h}, best of {args.repeats} x {args.n}, {torch.get_num_threads()} torch "
        f"thread(s), {nproc} CPUs ({cpu_model()}), load {load:.1f}"
    )
    print(
        f"{'mode':>6} | {'scenes/s':>9} | {'cpu scenes/s':>12} | {'ms/scene':>8} | {'cpu ms/scene':>12} | "
        f"vs target {TARGET_SCENES_PER_S:g}/s (wall, cpu)"
    )
    for r in rows:
        print(
            f"{r['mode']:>6} | {r['scenes_per_s']:9.1f} | {r['cpu_scenes_per_s']:12.1f} | "
            f"{r['ms_per_scene']:8.1f} | {r['cpu_ms_per_scene']:12.1f} | "
            f"x{r['scenes_per_s'] / TARGET_SCENES_PER_S:.2f}, "
            f"x{r['cpu_scenes_per_s'] / TARGET_SCENES_PER_S:.2f}"
        )
    print(
        f"whole machine: {machine_rate:.1f} scenes/s via a DataLoader with {args.workers} worker processes "
        f"(SyntheticScenes, as in training; x{machine_rate / TARGET_SCENES_PER_S:.2f} of the target)"
    )
    print(f"write_scene (PNG x2 + GeoJSON + JSON): {write_ms:.1f} ms/scene")
    if args.json:
        with open(expand_home(args.json), "w") as fh:
            json.dump(
                {
                    "scenes_per_s": rows[0]["scenes_per_s"],
                    "cpu_scenes_per_s": rows[0]["cpu_scenes_per_s"],
                    "mode": rows[0]["mode"],
                    "width": w,
                    "height": h,
                    "results": rows,
                    "write_ms_per_scene": write_ms,
                    "machine_scenes_per_s": machine_rate,
                    "machine_workers": args.workers,
                    "target_scenes_per_s": TARGET_SCENES_PER_S,
                    "machine": {
                        "nproc": nproc,
                        "cpu_model": cpu_model(),
                        "arch": platform.machine(),
                        "torch_threads": torch.get_num_threads(),
                        "load_avg_1min": load,
                        "python": sys.version.split()[0],
                        "numpy": np.__version__,
                        "torch": torch.__version__,
                    },
                    "reproduce": reproduction("bench_synthetic.py", args),
                },
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
