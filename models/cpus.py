"""How many CPUs this process may really use, how many torch threads each worker runs, and
how torch's threads wait for work.

`os.cpu_count()` counts the machine's CPUs, not the ones a process is allowed: a container
limited with `--cpus 2` on a 64-core host, a Kubernetes pod's CPU limit or a job pinned with
`taskset` would start dozens of threads that then wait on each other. The affinity mask gives
the CPUs the process may run on, a cgroup CPU quota the share of them it may use.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class TorchThreads:
    """torch threads per worker process (None: the machine's cores / workers_per_machine);
    set on each worker by models/loading.py `set_torch_threads`. Torch-free, so that the
    pipeline's options and steps name it without loading torch."""

    per_worker: int | None = None
    workers_per_machine: int = 1


def available_cpus(cgroup_root: str = CGROUP_ROOT) -> int:
    """The CPUs of this process's affinity mask, capped by its cgroup's CPU quota (rounded
    up); at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(root: str = CGROUP_ROOT) -> float | None:
    """The CPU quota in CPUs (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us` over
    `cpu.cfs_period_us`); None when there is none or it cannot be read."""
    v2 = _read(os.path.join(root, "cpu.max"))
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    quota = _read(os.path.join(root, "cpu", "cpu.cfs_quota_us"))
    period = _read(os.path.join(root, "cpu", "cpu.cfs_period_us"))
    return _ratio(quota, period) if quota is not None and period is not None else None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = float(quota), float(period)
    except ValueError:  # "max": no quota
        return None
    return q / p if q > 0 and p > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


WAIT_POLICY = "PASSIVE"


def prefer_passive_openmp_waits() -> None:
    """OpenMP threads that sleep while they wait for work instead of spinning, unless
    OMP_WAIT_POLICY is set already. OpenMP reads it once, when torch loads it, so this runs
    when the models package is imported, before any of its modules imports torch.

    Spinning threads fight any other busy process for the cores: beside one CPU-bound
    neighbour on 2 cores, the reference tier 2 with 2 threads took 31.7 s with OpenMP's
    default, 23.8 s spinning always and 17.8 s passive (1 thread: 17.3 s), and on an idle
    machine 10.4 s passive against 10.2 s spinning (bench/results/threads.md)."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
