"""Routing: after a tier has scored a record, keep its answer or send the record on, by the
routing rule (models/routing_rule.py) within the tier's Budget (transforms/budget.py): a
fixed one for most tiers, each window's own for a tier with max_escalation_rate.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from models.config import TierConfig
from transforms.budget import Budget
from transforms.dead_letters import METRICS_NAMESPACE

ESCALATED = "escalated"
# Fields only the models and dead letters use: a decided record goes on without them, which
# halves what runners that hold the merged decided branches in memory (the FnApiRunner
# materialises every multi-input Flatten) keep per record.
MODEL_INPUT_FIELDS = ("text", "text_pair", "source", "position")


def without_model_inputs(record: dict[str, Any]) -> dict[str, Any]:
    """The decided record as the outputs and statistics need it."""
    return {key: value for key, value in record.items() if key not in MODEL_INPUT_FIELDS}


class RouteByConfidence(beam.DoFn):
    """(record, Budget) in; decided records (without their model inputs) on the main
    output, uncertain ones on ESCALATED; counts both. A window's budget (a tier with
    max_escalation_rate) also records in the visit the effective threshold it routed by."""

    def __init__(self, tier: TierConfig):
        counter = beam.metrics.Metrics.counter
        self._seen = counter(METRICS_NAMESPACE, f"{tier.name}_seen")
        self._decided = counter(METRICS_NAMESPACE, f"{tier.name}_decided")
        self._escalated = counter(METRICS_NAMESPACE, f"{tier.name}_escalated")

    def process(self, routed: tuple[dict[str, Any], Budget]) -> Iterator[Any]:
        record, budget = routed
        self._seen.inc()
        if budget.per_window:
            record = with_last_visit(record, threshold=budget.effective_threshold)
        if budget.escalates(record["tiers"][-1]["confidence"]):
            self._escalated.inc()
            yield TaggedOutput(ESCALATED, record)
        else:
            self._decided.inc()
            yield without_model_inputs(record)


def with_last_visit(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A copy of the record whose last visit has the fields added (inputs stay unchanged)."""
    return {**record, "tiers": record["tiers"][:-1] + [{**record["tiers"][-1], **fields}]}
