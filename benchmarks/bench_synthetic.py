"""Throughput of the synthetic rover-scene generator (single process), printed as a table.

Usage::

    python benchmarks/bench_synthetic.py [--n 60] [--size 320x240] [--repeats 3] [--json FILE]

Reports, per output mode, the best of ``--repeats`` runs of ``--n`` scenes: wall-clock scenes per second,
CPU-time scenes per second (less sensitive to other processes sharing the cores) and milliseconds per
scene, plus the time to write a scene to disk. The goal is >= 30 scenes/s at 320x240 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

from marsunits.data.synthetic import SceneConfig, generate_scene, write_scene

TARGET_SCENES_PER_S = 30.0


def _run(config: SceneConfig, n: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds to render ``n`` scenes."""
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        generate_scene(seed, i, config)
    return time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60, help="scenes per run")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    p.add_argument("--repeats", type=int, default=3, help="runs per mode (best is reported)")
    p.add_argument("--modes", default="color,grey", help="comma-separated modes")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (grid_sample); default 1")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
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
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SceneConfig(width=w, height=h)
        scenes = [generate_scene(1, i, cfg) for i in range(10)]
        t0 = time.perf_counter()
        for s in scenes:
            write_scene(s, tmp)
        write_ms = 1000.0 * (time.perf_counter() - t0) / len(scenes)

    print(
        f"synthetic scenes {w}x{h}, best of {args.repeats} x {args.n}, {args.threads} torch thread(s), "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'mode':>6} | {'scenes/s':>9} | {'cpu scenes/s':>12} | {'ms/scene':>8} | "
        f"vs target {TARGET_SCENES_PER_S:g}/s"
    )
    for r in rows:
        ratio = r["scenes_per_s"] / TARGET_SCENES_PER_S
        print(
            f"{r['mode']:>6} | {r['scenes_per_s']:9.1f} | {r['cpu_scenes_per_s']:12.1f} | "
            f"{r['ms_per_scene']:8.1f} | x{ratio:.2f}"
        )
    print(f"write_scene (PNG x2 + GeoJSON + JSON): {write_ms:.1f} ms/scene")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "results": rows,
                    "write_ms_per_scene": write_ms,
                    "target_scenes_per_s": TARGET_SCENES_PER_S,
                    "python": sys.version.split()[0],
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "threads": args.threads,
                    "load_avg_1min": os.getloadavg()[0],
                },
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
