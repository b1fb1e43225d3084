"""Routing: after a tier has scored a record, keep its answer or send the record on, by the
routing rule (models/routing_rule.py) within the tier's Budget (transforms/budget.py): a
fixed one for most tiers, each window's own for a tier with max_escalation_rate or
max_disagreement.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from models.config import TierConfig
from models.routing_rule import audited
from transforms import progress
from transforms.budget import Budget
from transforms.records import Record

ESCALATED = "escalated"
AUDIT = "audit"


@beam.typehints.with_output_types(Record, **{ESCALATED: Record, AUDIT: Record})
class RouteByConfidence(beam.DoFn):
    """Scored records in, routed by `fixed` (a tier's fixed Budget), or (record, Budget)
    pairs without one (a window's budget: a tier with max_escalation_rate or
    max_disagreement, whose visits also record the effective threshold they were routed by).
    Decided records (without their model inputs) on the main output, uncertain ones on
    ESCALATED; a decided record in the tier's audit sample also goes, whole, on AUDIT.

    Counts both for the progress line (transforms/progress.py), once per bundle."""

    def __init__(self, tier: TierConfig, fixed: Budget | None = None):
        self._name = tier.name
        self._audit_rate = tier.audit_rate
        self._fixed = fixed
        self._counts = [0, 0]  # decided, escalated in this bundle

    def start_bundle(self) -> None:
        self._counts = [0, 0]

    def process(self, element: Record | tuple[Record, Budget]) -> Iterator[Any]:
        record, budget = (element, self._fixed) if self._fixed is not None else element
        if budget.per_window:
            record = record.with_last_visit(threshold=budget.effective_threshold)
        if budget.escalates(record.last_visit.confidence):
            self._counts[1] += 1
            yield TaggedOutput(ESCALATED, record)
        else:
            self._counts[0] += 1
            if audited(self._name, record.id, self._audit_rate):
                yield TaggedOutput(AUDIT, record)
            yield record.without_model_inputs()

    def finish_bundle(self) -> None:
        decided, escalated = self._counts
        progress.count(progress.seen(self._name), decided + escalated)
        progress.count(progress.decided(self._name), decided)
        progress.count(progress.escalated(self._name), escalated)
