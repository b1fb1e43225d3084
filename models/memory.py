"""Keeping a long job's memory flat, and its forward passes fast: glibc's allocator
settings for a process that runs forward passes of ever-changing shapes from several threads.

glibc gives each thread that allocates its own arena (up to 8 per core) and returns freed
memory to the system only from the top of the heap, so tensors of varying sizes freed in
many arenas leave holes that add up: a 200,000-record SST-2 job peaked 1 GB (+63%) above a
10,000-record one; with two arenas and an eager trim, +20% (bench/results/runners.md).

Setting the trim threshold also freezes glibc's mmap threshold at 128 KiB, so every
activation tensor of a forward pass (megabytes each) was mapped and unmapped, its pages
faulted in and zeroed again every time: a transformer tier ran 20-30% slower in the job than
in a bare loop, more so with two threads (docs/benchmarks.md, the pipeline's cost per
record). Tensors below MMAP_THRESHOLD_BYTES now come from the arenas, and a tier hands the
free memory back after each model call (`release_free_memory`), which keeps the job's
memory as flat as before.

`pipeline/__init__.py` calls it, so every process that runs the job (launcher, DirectRunner
and LOOPBACK workers, Dataflow and Flink worker processes, which import `pipeline` to
unpickle the transforms) sets it before torch and gRPC start their threads.
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import gc
import logging

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
TRIM_THRESHOLD_BYTES = 64 * 1024
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024

_LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (find_library runs ldconfig); None if not loadable."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def limit_allocator_arenas() -> bool:
    """Sets glibc's malloc to ARENAS arenas, an eager trim and MMAP_THRESHOLD_BYTES; False
    where libc is not glibc (nothing to do there). Takes effect for arenas created from now
    on, so call it early."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    done = all(mallopt(parameter, value) == 1 for parameter, value in (
        (M_ARENA_MAX, ARENAS), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)))
    if not done:
        _LOG.warning("could not set malloc's arenas; memory may grow with long inputs")
    return done


def freeze_long_lived_objects() -> None:
    """Moves every object alive now (a loaded model, its tokenizer, the modules loaded for
    them) out of reach of Python's collector, which otherwise scans them again and again
    while records stream through (measured: a few percent of a job). Call it once they are
    loaded; they are unfrozen at exit, so that extension modules that check for leaks at
    shutdown find none."""
    gc.collect()
    gc.freeze()
    _unfreeze_at_exit()


@functools.lru_cache(maxsize=1)
def _unfreeze_at_exit() -> None:
    atexit.register(gc.unfreeze)


def release_free_memory() -> None:
    """Hands the allocator's free memory back to the system (glibc's malloc_trim); nothing
    where libc is not glibc."""
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
