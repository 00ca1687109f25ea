"""Machine description shared by the benchmark scripts (imported as a sibling module when they run)."""

from __future__ import annotations

import platform


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
    import os
    import sys

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_before": list(loadavg_before),
        "loadavg_after": list(os.getloadavg()),
    }
