"""Measured cost of a tier on this machine: seconds per record at each batch size.

Used by `calibrate` (per-tier costs of operating points, best batch size per tier) and by the
benchmark's bare loops. Tokenization is included: a model cannot run without it.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping, Sequence, TypeVar

from tqdm import tqdm

from models.batching import batches, length_order
from models.loading import load_tier
from models.tier import Tier

K = TypeVar("K")
ONE_PASS = 1 << 20  # load tiers with this batch size: the timing loop makes the passes itself


def load_for_timing(path: str, max_length: int = 128, device: str = "auto",
                    **load_options) -> Tier:
    """A tier that runs each `logits` call as one forward pass, for `scoring_seconds`."""
    return load_tier(path, max_length=max_length, batch_size=ONE_PASS, device=device,
                     **load_options)


def scoring_seconds(model: Tier, texts: Sequence[str], batch_size: int,
                    sort_by_length: bool = True, text_pairs: Sequence[str] | None = None
                    ) -> float:
    """Wall seconds to score `texts` (with their `text_pairs`, if any) in forward passes of
    `batch_size`, sorted by length first (as the pipeline's tiers do) unless
    `sort_by_length` is False."""
    start = time.perf_counter()
    order = length_order(texts, text_pairs) if sort_by_length else None
    for chunk in batches(len(texts), batch_size, order):
        model.logits([texts[i] for i in chunk],
                     [text_pairs[i] for i in chunk] if text_pairs else None)
    return time.perf_counter() - start


def seconds_per_record(model: Tier, texts: Sequence[str],
                       batch_sizes: Sequence[int], repeats: int = 3,
                       text_pairs: Sequence[str] | None = None,
                       progress: str | None = None) -> dict[int, float]:
    """Median seconds per record at each batch size (interleaved_medians)."""
    seconds = interleaved_medians(
        {size: lambda size=size: scoring_seconds(model, texts, size, text_pairs=text_pairs)
         for size in batch_sizes}, repeats, progress)
    return {size: s / len(texts) for size, s in seconds.items()}


def interleaved_medians(settings: Mapping[K, Callable[[], object]], repeats: int,
                        progress: str | None = None) -> dict[K, float]:
    """Median wall seconds of each setting over `repeats` rounds, after one warm-up run of
    each; the settings are interleaved in every round, so that a noisy machine's drifts hit
    them alike (timings here are compared as ratios measured side by side). `progress`
    names a progress bar (shown on a terminal)."""
    bar = tqdm(total=len(settings) * (repeats + 1), desc=progress, unit="run", leave=False,
               disable=None if progress else True)
    for run in settings.values():
        run()
        bar.update()
    times: dict[K, list[float]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, run in settings.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            bar.update()
    bar.close()
    return {name: statistics.median(t) for name, t in times.items()}
