"""Measured cost of a tier on this machine: seconds per record at each batch size.

Used by `calibrate` (per-tier costs of operating points, best batch size per tier) and by the
benchmark's bare loops. Tokenization is included: a model cannot run without it.
"""
from __future__ import annotations

import statistics
import time
from typing import Sequence

from models.loading import TierModel, load_tier
from models.ngram import NgramTier

ONE_PASS = 1 << 20  # load tiers with this batch size: the timing loop makes the passes itself


def load_for_timing(path: str, max_length: int = 128, device: str = "auto",
                    **load_options) -> TierModel | NgramTier:
    """A tier that runs each `logits` call as one forward pass, for `scoring_seconds`."""
    return load_tier(path, max_length=max_length, batch_size=ONE_PASS, device=device,
                     **load_options)


def scoring_seconds(model: TierModel | NgramTier, texts: Sequence[str], batch_size: int,
                    sort_by_length: bool = True, text_pairs: Sequence[str] | None = None
                    ) -> float:
    """Wall seconds to score `texts` (with their `text_pairs`, if any) in forward passes of
    `batch_size`, sorted by length first (as the pipeline's tiers do) unless
    `sort_by_length` is False."""
    start = time.perf_counter()
    order = (sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort_by_length
             else list(range(len(texts))))
    for first in range(0, len(order), batch_size):
        chunk = order[first:first + batch_size]
        model.logits([texts[i] for i in chunk],
                     [text_pairs[i] for i in chunk] if text_pairs else None)
    return time.perf_counter() - start


def seconds_per_record(model: TierModel | NgramTier, texts: Sequence[str],
                       batch_sizes: Sequence[int], repeats: int = 3,
                       text_pairs: Sequence[str] | None = None) -> dict[int, float]:
    """Median seconds per record at each batch size, after one warm-up pass; the sizes are
    interleaved in each round so that drifts of a noisy machine hit them alike."""
    scoring_seconds(model, texts, batch_sizes[0], text_pairs=text_pairs)
    runs: dict[int, list[float]] = {size: [] for size in batch_sizes}
    for _ in range(repeats):
        for size in batch_sizes:
            seconds = scoring_seconds(model, texts, size, text_pairs=text_pairs)
            runs[size].append(seconds / len(texts))
    return {size: statistics.median(times) for size, times in runs.items()}
