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
from transforms.budget import Budget
from transforms.dead_letters import METRICS_NAMESPACE
from transforms.records import Record

ESCALATED = "escalated"
AUDIT = "audit"


class RouteByConfidence(beam.DoFn):
    """(record, Budget) in; decided records (without their model inputs) on the main
    output, uncertain ones on ESCALATED; counts both. A window's budget (a tier with
    max_escalation_rate or max_disagreement) also records in the visit the effective
    threshold it routed by.
    A decided record in the tier's audit sample also goes, whole, on AUDIT."""

    def __init__(self, tier: TierConfig):
        self._name = tier.name
        self._audit_rate = tier.audit_rate
        counter = beam.metrics.Metrics.counter
        self._seen = counter(METRICS_NAMESPACE, f"{tier.name}_seen")
        self._decided = counter(METRICS_NAMESPACE, f"{tier.name}_decided")
        self._escalated = counter(METRICS_NAMESPACE, f"{tier.name}_escalated")

    def process(self, routed: tuple[Record, Budget]) -> Iterator[Any]:
        record, budget = routed
        self._seen.inc()
        if budget.per_window:
            record = record.with_last_visit(threshold=budget.effective_threshold)
        if budget.escalates(record.last_visit.confidence):
            self._escalated.inc()
            yield TaggedOutput(ESCALATED, record)
        else:
            self._decided.inc()
            if audited(self._name, record.id, self._audit_rate):
                yield TaggedOutput(AUDIT, record)
            yield record.without_model_inputs()
