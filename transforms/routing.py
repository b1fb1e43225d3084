"""Routing: after a tier has scored a record, keep its answer or send the record on.

A record whose confidence at tier k is at least tier k's threshold is decided there; the
rest go to tier k+1. The last tier has no threshold and decides everything it receives.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from pipeline.config import TierConfig
from transforms.budget import Budget
from transforms.dead_letters import METRICS_NAMESPACE

ESCALATED = "escalated"
# Fields only the models and dead letters use: a decided record goes on without them, which
# halves what runners that hold the merged decided branches in memory (the FnApiRunner
# materialises every multi-input Flatten) keep per record.
MODEL_INPUT_FIELDS = ("text", "text_pair", "source", "position")


def is_confident(confidence: float, threshold: float | None) -> bool:
    """The routing rule: decided when confidence >= threshold; no threshold decides all."""
    return threshold is None or confidence >= threshold


def without_model_inputs(record: dict[str, Any]) -> dict[str, Any]:
    """The decided record as the outputs and statistics need it."""
    return {key: value for key, value in record.items() if key not in MODEL_INPUT_FIELDS}


class RouteByConfidence(beam.DoFn):
    """Decided records (without their model inputs) on the main output, uncertain ones on
    ESCALATED; counts both. Given a Budget (a tier with an escalation budget), the window's
    Budget decides instead of the fixed threshold, and the visit records the effective
    threshold it was routed by."""

    def __init__(self, tier: TierConfig):
        self._threshold = tier.threshold
        counter = beam.metrics.Metrics.counter
        self._seen = counter(METRICS_NAMESPACE, f"{tier.name}_seen")
        self._decided = counter(METRICS_NAMESPACE, f"{tier.name}_decided")
        self._escalated = counter(METRICS_NAMESPACE, f"{tier.name}_escalated")

    def process(self, record: dict[str, Any], budget: Budget | None = None) -> Iterator[Any]:
        self._seen.inc()
        confidence = record["tiers"][-1]["confidence"]
        if budget is not None:
            record = with_last_visit(record, threshold=budget.effective_threshold)
            escalates = budget.escalates(confidence)
        else:
            escalates = not is_confident(confidence, self._threshold)
        if escalates:
            self._escalated.inc()
            yield TaggedOutput(ESCALATED, record)
        else:
            self._decided.inc()
            yield without_model_inputs(record)


class RouteWithinBudget(RouteByConfidence):
    """The budgeted routing, on the output of transforms.budget.JoinWindowBudget: one shard
    of a window's records with that window's Budget."""

    def process(self, shard: tuple[int, dict[str, Any]]) -> Iterator[Any]:  # type: ignore[override]
        _, joined = shard
        budget, = joined["budget"]
        for record in joined["records"]:
            yield from super().process(record, budget)


def with_last_visit(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A copy of the record whose last visit has the fields added (inputs stay unchanged)."""
    return {**record, "tiers": record["tiers"][:-1] + [{**record["tiers"][-1], **fields}]}
