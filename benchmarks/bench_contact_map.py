"""Time to write contact maps (``predict.py ... map=true``'s last step), printed as a table.

Usage::

    python benchmarks/bench_contact_map.py [--sites 20] [--stations 50] [--repeats 3] [--profile N]
        [--keep DIR] [--json FILE]

Two cases, each ``--repeats`` times (the best kept), through
:func:`marsunits.boundary.contact_map.build_contact_map` as ``predict.py`` calls it:

* ``sites``: ``--sites`` sites of one image each (a Mars 2020 traverse gives one site a drive), one call;
  seconds per site (one GeoJSON and one PNG each);
* ``stations``: one site of ``--stations`` images along a traverse, one every metre (a camera station each,
  so the map places and measures that many labels); seconds for its map.

Wall-clock and CPU seconds (``time.process_time``: the figure to compare on a busy machine) are printed and
written. ``--profile N`` prints cProfile's N most expensive functions of each case (cumulative time).
``--keep DIR`` writes the maps of the last round into ``DIR/sites`` and ``DIR/stations``, to compare two
versions' drawings. Matplotlib, numpy and shapely only: no torch, no model.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import check_json_destination, machine_info, reproduction

from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.boundary.contact_io import ContactLine
from marsunits.boundary.contact_map import build_contact_map
from marsunits.user_paths import expand_home

#: The image size of the runs measured in the issue: 160 x 120 synthetic images.
WIDTH, HEIGHT = 160, 120


def _camera(**kw: Any) -> PinholeCamera:
    return PinholeCamera(image_width=WIDTH, image_height=HEIGHT, hfov_deg=60.0, pitch_deg=20.0, **kw)


def _line(camera: PinholeCamera, row: float) -> ContactLine:
    """A contact across the image at ``row`` (pixels), with a confidence that varies along it."""
    u = np.linspace(0.5, camera.image_width - 0.5, 9)
    vc = np.linspace(0.3, 0.95, len(u))
    return ContactLine(pixels=np.c_[u, np.full_like(u, row)], confidence=0.8, vertex_confidence=vc)


def sites_items(n: int) -> list[tuple[str, list[ContactLine], PinholeCamera]]:
    """``n`` sites of one image each, every camera at its site's origin, turned by a different yaw."""
    items = []
    for i in range(n):
        cam = _camera(yaw_deg=i * 13.0, site=f"ROVER_NAV_{i:04d}")
        items.append((f"sol{i:04d}/NLF_{i:04d}.png", [_line(cam, 0.75 * HEIGHT)], cam))
    return items


def stations_items(n: int) -> list[tuple[str, list[ContactLine], PinholeCamera]]:
    """One site of ``n`` images along a traverse, one metre apart, each its own camera station."""
    items = []
    for i in range(n):
        cam = _camera(yaw_deg=i * 7.2, x_m=float(i), site="TRAVERSE")
        items.append((f"img{i:03d}.png", [_line(cam, 0.75 * HEIGHT)], cam))
    return items


def _time(items: list, out: Path, profile: int) -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``build_contact_map`` call into the emptied ``out``, and files written."""
    shutil.rmtree(out, ignore_errors=True)
    profiler = cProfile.Profile() if profile else None
    w0, c0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    written = build_contact_map(items, out)
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)
    return wall, cpu, len(written)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=20, help="sites of one image each (the 'sites' case)")
    p.add_argument(
        "--stations", type=int, default=50, help="camera stations of one site (the 'stations' case)"
    )
    p.add_argument("--repeats", type=int, default=3, help="rounds of each case; the best is kept")
    p.add_argument("--profile", type=int, default=0, help="print cProfile's N costliest functions per case")
    p.add_argument("--keep", default=None, help="write the last round's maps under this folder")
    p.add_argument("--json", default=None, help="result file (default benchmarks/bench_contact_map.json)")
    args = p.parse_args()
    if args.json:
        check_json_destination(p, args.json)
    import matplotlib

    load = os.getloadavg()
    cases = {"sites": (sites_items(args.sites), args.sites), "stations": (stations_items(args.stations), 1)}
    results: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_contact_map(sites_items(1), Path(tmp) / "warm-up")  # imports and font cache out of the timing
        for case, (items, maps) in cases.items():
            out = Path(tmp) / case if args.keep is None else expand_home(args.keep) / case
            rounds = [_time(items, out, args.profile if r == 0 else 0) for r in range(args.repeats)]
            wall, cpu = min(r[0] for r in rounds), min(r[1] for r in rounds)
            results[case] = {
                "images": len(items),
                "maps": maps,
                "files": rounds[-1][2],
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "cpu_s_per_map": round(cpu / maps, 4),
            }
    print(f"{'case':<10}{'images':>8}{'maps':>6}{'wall s':>9}{'CPU s':>9}{'CPU s/map':>11}")
    for case, r in results.items():
        print(
            f"{case:<10}{r['images']:>8}{r['maps']:>6}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}"
            f"{r['cpu_s_per_map']:>11.3f}"
        )
    record = {
        "results": results,
        "matplotlib": matplotlib.__version__,
        "machine": machine_info(load),
        "reproduce": reproduction("bench_contact_map.py", args),
    }
    target = expand_home(args.json) if args.json else Path(__file__).with_name("bench_contact_map.json")
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {target}")


if __name__ == "__main__":
    main()
