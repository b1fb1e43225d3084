"""Keeping a long job's memory flat: glibc's allocator settings for a process that runs
forward passes of ever-changing shapes from several threads.

glibc gives each thread that allocates its own arena (up to 8 per core) and returns freed
memory to the system only from the top of the heap, so tensors of varying sizes freed in
many arenas leave holes that add up: a 200,000-record SST-2 job peaked 1 GB (+63%) above a
10,000-record one; with two arenas and an eager trim, +20% (bench/results/runners.md).

`pipeline/__init__.py` calls it, so every process that runs the job (launcher, DirectRunner
and LOOPBACK workers, Dataflow and Flink worker processes, which import `pipeline` to
unpickle the transforms) sets it before torch and gRPC start their threads.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_ARENA_MAX = -8
ARENAS = 2
TRIM_THRESHOLD_BYTES = 64 * 1024

_LOG = logging.getLogger(__name__)


def limit_allocator_arenas() -> bool:
    """Sets glibc's malloc to ARENAS arenas and an eager trim; False where libc is not glibc
    (nothing to do there). Takes effect for arenas created from now on, so call it early."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    done = mallopt(M_ARENA_MAX, ARENAS) == 1 and mallopt(M_TRIM_THRESHOLD,
                                                         TRIM_THRESHOLD_BYTES) == 1
    if not done:
        _LOG.warning("could not set malloc's arenas; memory may grow with long inputs")
    return done
