"""Bare PyTorch loops over a tier's model: no Beam, no I/O, the model loaded once.

What they measure is the physical limit of a pipeline around the same models: a cascade
cannot beat tier 1's time on every text plus each later tier's time on the texts it gets.
Tokenization is included (a model cannot run without it).
"""
from __future__ import annotations

from models.throughput import scoring_seconds
from models.tier import Tier


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
