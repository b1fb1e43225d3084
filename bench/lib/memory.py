"""A job process's peak resident memory, measured one way for this project's jobs
(bench/timed_job.py) and the stock-handler peer's (bench/peer.py); imports nothing of the
project, so that the peer's environment can use it."""
from __future__ import annotations

import resource


def peak_rss_mib() -> dict[str, float]:
    """Peak resident MiB of this process (its own high-water mark) and of the largest child
    process it waited for (getrusage gives no sum over children).

    Not getrusage(RUSAGE_SELF) for the process itself: Linux keeps that figure across fork
    and exec, so a job started by a study that had once held 15 GB reported 15 GB whatever
    it used (bench.big_cascade's first run). /proc/self/status's VmHWM belongs to this
    program's memory alone."""
    return {"job": _own_high_water_mib(),
            "largest_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _own_high_water_mib() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
