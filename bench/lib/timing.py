"""Timing a tier's model in bare PyTorch loops: no Beam, no I/O, the model loaded once, and
the models/ throughput functions those loops are built from, under the bench's names.

What they measure is the physical limit of a pipeline around the same models: a cascade
cannot beat tier 1's time on every text plus each later tier's time on the texts it gets.
Tokenization is included (a model cannot run without it). Timings can be taken beside a
busy neighbour process, as on a shared machine.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Iterator

from models.throughput import ONE_PASS, interleaved_medians, load_for_timing, scoring_seconds
from models.tier import Tier

__all__ = ["NEIGHBOURS", "ONE_PASS", "BareTimer", "interleaved_medians", "load_for_timing",
           "neighbour", "scoring_seconds"]

NEIGHBOURS = ("idle", "one busy neighbour")


class BareTimer:
    """Times named, loaded tiers over the benchmark's texts, or over a subset of them."""

    def __init__(self, tiers: dict[str, Tier], texts: list[str]):
        self.tiers = tiers
        self.texts = texts
        self.sweep: dict[str, dict[int, float]] = {}

    def seconds(self, tier: str, batch_size: int, indices: list[int] | None = None,
                sort_by_length: bool = True) -> float:
        """Wall seconds to score the texts (all, or those at `indices`) in forward passes of
        `batch_size`, sorted by length first unless `sort_by_length` is False."""
        texts = self.texts if indices is None else [self.texts[i] for i in indices]
        return scoring_seconds(self.tiers[tier], texts, batch_size, sort_by_length)

    def best_batch_size(self, tier: str, sizes: list[int]) -> int:
        """The fastest of `sizes` over all texts (after one warm-up pass); kept in `sweep`."""
        self.seconds(tier, sizes[0])
        times = {size: self.seconds(tier, size) for size in sizes}
        self.sweep[tier] = times
        return min(times, key=times.get)


@contextlib.contextmanager
def neighbour(kind: str) -> Iterator[None]:
    """A CPU-bound process beside the job for the `with` block, or nothing."""
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
            if kind != "idle" else None)
    try:
        yield
    finally:
        if busy:
            busy.kill()
            busy.wait()
