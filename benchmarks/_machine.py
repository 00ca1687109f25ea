"""What every benchmark script shares (imported as a sibling module when they run): the machine description,
the record of how a result was made (commit, library versions, arguments) and the check of ``--json``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

from marsunits.tracking.git_info import UNKNOWN, git_info
from marsunits.user_paths import expand_home

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(loadavg_before: tuple[float, float, float]) -> dict[str, object]:
    """What a result JSON records about the machine: Python, platform, CPU model and count, load averages.

    Args:
        loadavg_before: ``os.getloadavg()`` taken when the measurement started (the one after is read here).
    """
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_before": list(loadavg_before),
        "loadavg_after": list(os.getloadavg()),
    }


def reproduction(script: str, args: argparse.Namespace) -> dict[str, Any]:
    """How to make a result again, recorded in its JSON as ``reproduce``: the script, every argument as
    parsed (defaults included), the commit of the code that ran (``uncommitted_changes`` true when tracked
    files differed from it; None for both outside a git checkout or where its repository does not track
    ``benchmarks/``: :func:`marsunits.tracking.git_info.git_info`) and the versions of the libraries that
    decide the figures.

    Args:
        script: the script's file name (``eval_contacts.py``).
        args: its parsed arguments.
    """
    import numpy
    import torch

    # git_info reads it as training's dashboard does: a copy git does not track (an sdist unpacked inside
    # another repository) is "unknown", not the enclosing repository's commit; None here.
    version = {
        k: None if v == UNKNOWN else v
        for k, v in git_info(REPO / "benchmarks", timeout_s=30, untracked_files=False).items()
    }
    return {
        "script": f"benchmarks/{script}",
        "arguments": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "commit": version["commit"],
        "uncommitted_changes": version["dirty"],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


def check_json_destination(parser: argparse.ArgumentParser, path: str) -> None:
    """Stop with a usage error (exit 2) naming ``--json`` when its folder does not exist or is not writable,
    or when it names a folder: checked before a measurement, whose figures were otherwise lost in a
    traceback when the file was written at its end. A ``~`` is read by :func:`expand_home`, as the scripts
    read it when they write the file (a ``~name`` naming no user stays a folder of that name)."""
    target = expand_home(path)
    folder = target.parent
    if target.is_dir():
        parser.error(f"--json {path}: is a folder; give a file name, e.g. {target / 'result.json'}")
    if not folder.is_dir():
        parser.error(f"--json {path}: the folder {folder} does not exist; create it first or pick another")
    if not os.access(folder, os.W_OK):
        parser.error(f"--json {path}: the folder {folder} is not writable; pick another --json")
