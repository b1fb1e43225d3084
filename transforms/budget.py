"""Escalation budget: at most a fraction F of a tier's records go on to the next tier.

Tier k+1's capacity is what a cascade costs, and the share of uncertain records moves with the
input (a new source, a topic in the news). With a budget, each window (the whole run in batch
mode) gets an effective threshold: the configured one, lowered just enough that no more than
F of the window's records fall below it. The trade-off: records the budget keeps at tier k
are the ones tier k was unsure of, so accuracy drops when the budget binds; and routing waits
for the window's confidences to be complete, so in streaming every record of a window is
routed when its window closes (latency of one window), not as soon as it is scored.

Confidences are counted in bins of width 1/BINS, which keeps the combiner's memory bounded
(at most BINS counts per window, however many records) and the guarantee exact: a record
escalates only if its bin is below the cap bin, and at most F of the records are.

The window's Budget reaches its records by a join (CoGroupByKey on SHARDS record keys, the
Budget copied to each), not by a side input: a join waits for the window to close on every
runner, while windowed side inputs came out empty on Prism for windows whose main input ran
first (Beam issue 36563). The shards keep the routing parallel on distributed runners.
"""
from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.pvalue import PCollection

from models.config import TierConfig
from models.routing_rule import confidence_bin, decides
from transforms.records import Record
from transforms.windowing import combine_per_window

BINS = 10_000
SHARDS = 16


@dataclass(frozen=True)
class Budget:
    """A tier's routing for a window: a record escalates when the routing rule
    (models/routing_rule.py) sends it on and its confidence's bin is below the cap bin.

    Every tier routes by one: a tier without max_escalation_rate by a fixed Budget, which
    never caps; a tier with one by its window's (`per_window`), whose effective threshold
    each visit records."""

    threshold: float | None
    cap_bin: int = BINS + 1
    per_window: bool = False

    def escalates(self, confidence: float) -> bool:
        return not decides(confidence, self.threshold) and confidence_bin(confidence, BINS) < self.cap_bin

    @property
    def effective_threshold(self) -> float | None:
        """The threshold as a number: the configured one or, if lower, the cap bin's edge."""
        if self.threshold is None:
            return None
        return min(self.threshold, self.cap_bin / BINS)


def cap_bin(bins: Counter, max_rate: float) -> int:
    """The highest bin edge with at most max_rate of the counted records below it."""
    allowed = math.floor(max_rate * sum(bins.values()) + 1e-9)
    below = 0
    for b in sorted(bins):
        if below + bins[b] > allowed:
            return b
        below += bins[b]
    return BINS + 1


class EscalationBudgetFn(beam.CombineFn):
    """A tier's confidences in; the Budget for their window out."""

    def __init__(self, threshold: float, max_rate: float):
        self._threshold = threshold
        self._max_rate = max_rate

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, bins: Counter, confidence: float) -> Counter:
        bins[confidence_bin(confidence, BINS)] += 1
        return bins

    def merge_accumulators(self, accumulators: Iterable[Counter]) -> Counter:
        merged: Counter = Counter()
        for bins in accumulators:
            merged.update(bins)
        return merged

    def extract_output(self, bins: Counter) -> Budget:
        return Budget(self._threshold, cap_bin(bins, self._max_rate), per_window=True)


def shard_of(record: Record) -> int:
    """A record's shard, stable across retries (from its id)."""
    return zlib.crc32(json.dumps(record.id).encode()) % SHARDS


class JoinWindowBudget(beam.PTransform):
    """A tier's scored records in; `(record, Budget)` out, the Budget computed from all of
    the record's window's confidences."""

    def __init__(self, tier: TierConfig):
        super().__init__()
        self._tier = tier

    def expand(self, scored: PCollection) -> PCollection:
        tier = self._tier
        budgets = (scored
                   | "Confidences" >> beam.Map(lambda r: r.last_visit.confidence)
                   | "Budget" >> combine_per_window(
                       EscalationBudgetFn(tier.threshold, tier.max_escalation_rate), scored)
                   | "ToEveryShard" >> beam.FlatMap(lambda b: [(s, b) for s in range(SHARDS)]))
        keyed = scored | "KeyByShard" >> beam.WithKeys(shard_of)
        return ({"records": keyed, "budget": budgets} | "Join" >> beam.CoGroupByKey()
                | "WithBudget" >> beam.FlatMap(records_with_budget))


def records_with_budget(shard: tuple[int, dict[str, list]]) -> Iterator[tuple[Record, Budget]]:
    """One shard of a window's records, each paired with that window's Budget."""
    _, joined = shard
    budget, = joined["budget"]
    for record in joined["records"]:
        yield record, budget
