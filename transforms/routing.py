"""Routing: after a tier has scored a chunk of records, keep its answer for each record or
send the record on, by the routing rule (models/routing_rule.py) within the tier's Budget
(transforms/budget.py): a fixed one for most tiers, each window's own for a tier with
max_escalation_rate or max_disagreement.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from models.config import TierConfig
from models.routing_rule import audited
from transforms import progress
from transforms.budget import Budget
from transforms.records import Chunk

ESCALATED = "escalated"
AUDIT = "audit"


def audit_sample(chunk: Chunk, tier: str, rate: float | None) -> Chunk:
    """The chunk's records in the tier's audit sample (models/routing_rule.audited)."""
    return [record for record in chunk if audited(tier, record.id, rate)] if rate else []


@beam.typehints.with_output_types(Chunk, **{ESCALATED: Chunk, AUDIT: Chunk})
class RouteByConfidence(beam.DoFn):
    """Chunks of scored records in, routed by `fixed` (a tier's fixed Budget), or (chunk,
    Budget) pairs without one (a window's budget: a tier with max_escalation_rate or
    max_disagreement, whose visits also record the effective threshold they were routed by).
    Each chunk's decided records on the main output, its uncertain ones on ESCALATED, and
    the decided records in the tier's audit sample on AUDIT; each as a chunk, none where it
    would be empty.

    Counts both for the progress line (transforms/progress.py), in batches."""

    def __init__(self, tier: TierConfig, fixed: Budget | None = None):
        self._name = tier.name
        self._audit_rate = tier.audit_rate
        self._fixed = fixed
        self._counted = (progress.seen(tier.name), progress.decided(tier.name),
                         progress.escalated(tier.name))
        self._counts = progress.BatchedCounts(*self._counted)

    def start_bundle(self) -> None:
        self._counts = progress.BatchedCounts(*self._counted)

    def process(self, element: Chunk | tuple[Chunk, Budget]) -> Iterator[Any]:
        chunk, budget = (element, self._fixed) if self._fixed is not None else element
        if budget.per_window:
            chunk = [r.with_last_visit(threshold=budget.effective_threshold) for r in chunk]
        decided, escalated = [], []
        for record in chunk:
            (escalated if budget.escalates(record.last_visit.confidence) else decided
             ).append(record)
        self._counts.add(progress.decided(self._name), len(decided))
        self._counts.add(progress.escalated(self._name), len(escalated))
        self._counts.add(progress.seen(self._name), len(chunk))
        if escalated:
            yield TaggedOutput(ESCALATED, escalated)
        if decided:
            sample = audit_sample(decided, self._name, self._audit_rate)
            if sample:
                yield TaggedOutput(AUDIT, sample)
            yield decided

    def finish_bundle(self) -> None:
        self._counts.flush()
