"""A tier's Budget per window: an escalation budget caps the tier's cost, a disagreement
target steers its threshold for accuracy.

Escalation budget (`max_escalation_rate` F): at most a fraction F of a tier's records go on
to the next tier. Tier k+1's capacity is what a cascade costs, and the share of uncertain
records moves with the input (a new source, a topic in the news). With a budget, each window
(the whole run in batch mode) gets an effective threshold: the configured one, lowered just
enough that no more than F of the window's records fall below it. The trade-off: records the
budget keeps at tier k are the ones tier k was unsure of, so accuracy drops when the budget
binds; and routing waits for the window's confidences to be complete, so in streaming every
record of a window is routed when its window closes (latency of one window), not as soon as
it is scored.

Disagreement target (`max_disagreement` D, with `audit_rate` A): the closed loop. A hash
sample of a share A of the tier's records (the same sample the audit takes,
models/routing_rule.audited) is also scored by the last tier before routing; each window's
threshold is then the lowest (not below the configured one) at which the 95% upper bound on
the share of the window's records that the tier decides with another answer than the last
tier's stays within D: the tier's contribution to the accuracy drop against the last tier,
bounded per window without labels. Harder windows get a higher threshold and more
escalation. The bound needs a sample: with none disagreeing it is about 3 / (A x records in
the window), so a target below that escalates every record; and the sample costs the last
tier A x the tier's records, on top of the audit. With both set, the escalation budget wins
(cost is the hard limit) and the statistics' audit shows what the drop bound then is.

Confidences are counted in bins of width 1/BINS, which keeps the combiners' memory bounded
(at most BINS counts per window, however many records) and the cap exact: a record
escalates only if its bin is below the cap bin, and at most F of the records are.

The window's Budget reaches its records by a join (CoGroupByKey on SHARDS keys, each chunk of
records keyed by its first record's id, the Budget copied to each key), not by a side input:
a join waits for the window to close on every runner, while windowed side inputs came out
empty on Prism for windows whose main input ran first (Beam issue 36563). The shards keep the
routing parallel on distributed runners.
"""
from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.pvalue import PCollection

from models.config import TierConfig
from models.binomial import binomial_upper_bound
from models.guarantee import THRESHOLD_SEQUENCE
from models.routing_rule import confidence_bin, decides
from transforms.records import Chunk
from transforms.windowing import combine_per_window

BINS = 10_000
SHARDS = 16


@dataclass(frozen=True)
class Budget:
    """A tier's routing for a window: a record escalates when the routing rule
    (models/routing_rule.py) sends it on and its confidence's bin is below the cap bin.

    Every tier routes by one: a tier without max_escalation_rate or max_disagreement by a
    fixed Budget, which never caps; a tier with either by its window's (`per_window`), whose
    effective threshold each visit records."""

    threshold: float | None
    cap_bin: int = BINS + 1
    per_window: bool = False

    def escalates(self, confidence: float) -> bool:
        return (not decides(confidence, self.threshold)
                and confidence_bin(confidence, BINS) < self.cap_bin)

    @property
    def effective_threshold(self) -> float | None:
        """The threshold as a number: the configured (or steered) one or, if lower, the cap
        bin's edge."""
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


STEERING_RISK = 0.05  # the steered threshold's bound holds at 95%, like the statistics'
ESCALATE_ALL = math.nextafter(1.0, 2.0)  # above every confidence: nothing is decided


@dataclass
class WindowCounts:
    """What a window's Budget is computed from, in bounded memory: the tier's confidences by
    bin, the size of its steering sample (records the last tier also scored), and by bin
    those of the sample whose answer differed from the last tier's."""

    confidences: Counter = field(default_factory=Counter)
    sampled: int = 0
    disagreed: Counter = field(default_factory=Counter)

    def merge(self, other: "WindowCounts") -> None:
        self.confidences.update(other.confidences)
        self.sampled += other.sampled
        self.disagreed.update(other.disagreed)


def steered_threshold(counts: WindowCounts, floor: float, target: float) -> float:
    """The lowest threshold, not below `floor`, at which the 95% upper bound on the share of
    the window's records the tier decides with another answer than the last tier's stays
    within `target`; ESCALATE_ALL when even the safest fails (too small a sample).

    The candidates (the fixed sequence above `floor`, then `floor` itself) are walked from
    the safest down and the walk stops at the first failure
    (fixed-sequence testing, models/guarantee.py), so choosing among them spends nothing of
    the 95%; the share is over the steering sample, a uniform hash sample of the window."""
    chosen = ESCALATE_ALL
    for threshold in [t for t in THRESHOLD_SEQUENCE if t > floor] + [floor]:
        edge = math.floor(threshold * BINS + 1e-9)  # bins from here hold every decided record
        disagreed = sum(n for b, n in counts.disagreed.items() if b >= edge)
        if binomial_upper_bound(disagreed, counts.sampled, STEERING_RISK) > target:
            break
        chosen = threshold
    return chosen


class ScoredConfidences(NamedTuple):
    """The tier's confidences of a chunk of the records it scored."""

    confidences: list[float]

    def count_into(self, counts: WindowCounts) -> None:
        counts.confidences.update(confidence_bin(c, BINS) for c in self.confidences)


class SteeringOutcomes(NamedTuple):
    """A chunk of the steering sample: each record's confidence at the tier and whether the
    last tier gave the same answer."""

    outcomes: list[tuple[float, bool]]

    def count_into(self, counts: WindowCounts) -> None:
        counts.sampled += len(self.outcomes)
        counts.disagreed.update(confidence_bin(c, BINS) for c, agreed in self.outcomes
                                if not agreed)


class WindowBudgetFn(beam.CombineFn):
    """A tier's ScoredConfidences and, with max_disagreement, SteeringOutcomes in; the Budget
    for their window out: the threshold steered by the sample (else the configured one),
    capped by max_escalation_rate (else uncapped)."""

    def __init__(self, tier: TierConfig):
        self._tier = tier

    def create_accumulator(self) -> WindowCounts:
        return WindowCounts()

    def add_input(self, counts: WindowCounts, item: ScoredConfidences | SteeringOutcomes
                  ) -> WindowCounts:
        item.count_into(counts)
        return counts

    def merge_accumulators(self, accumulators: Iterable[WindowCounts]) -> WindowCounts:
        merged = WindowCounts()
        for counts in accumulators:
            merged.merge(counts)
        return merged

    def extract_output(self, counts: WindowCounts) -> Budget:
        tier = self._tier
        threshold = tier.threshold
        if tier.max_disagreement is not None:
            threshold = steered_threshold(counts, tier.threshold, tier.max_disagreement)
        cap = (BINS + 1 if tier.max_escalation_rate is None
               else cap_bin(counts.confidences, tier.max_escalation_rate))
        return Budget(threshold, cap, per_window=True)


def shard_of(chunk: Chunk) -> int:
    """A chunk's shard, stable across retries (from its first record's id)."""
    return zlib.crc32(json.dumps(chunk[0].id).encode()) % SHARDS


class JoinWindowBudget(beam.PTransform):
    """A tier's chunks of scored records in; `(chunk, Budget)` out, the Budget computed from
    all of the chunk's window's confidences and, with max_disagreement, from its steering
    sample (`sampled`: chunks of sampled records after the last tier's visit)."""

    def __init__(self, tier: TierConfig, sampled: PCollection | None = None):
        super().__init__()
        self._tier = tier
        self._sampled = sampled

    def expand(self, scored: PCollection) -> PCollection:
        items = [scored | "Confidences" >> beam.Map(
            lambda chunk: ScoredConfidences([r.last_visit.confidence for r in chunk]))]
        if self._sampled is not None:
            items.append(self._sampled | "Agreement" >> beam.Map(
                lambda chunk: SteeringOutcomes([(r.tiers[-2].confidence,
                                                 r.tiers[-2].label_id == r.tiers[-1].label_id)
                                                for r in chunk])))
        budgets = (items | "BudgetInputs" >> beam.Flatten()
                   | "Budget" >> combine_per_window(WindowBudgetFn(self._tier), scored)
                   | "ToEveryShard" >> beam.FlatMap(lambda b: [(s, b) for s in range(SHARDS)]))
        keyed = scored | "KeyByShard" >> beam.WithKeys(shard_of)
        return ({"records": keyed, "budget": budgets} | "Join" >> beam.CoGroupByKey()
                | "WithBudget" >> beam.FlatMap(records_with_budget))


def records_with_budget(shard: tuple[int, dict[str, list]]) -> Iterator[tuple[Chunk, Budget]]:
    """One shard of a window's chunks, each paired with that window's Budget."""
    _, joined = shard
    budget, = joined["budget"]
    for chunk in joined["records"]:
        yield chunk, budget
