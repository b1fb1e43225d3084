"""Routing: after a tier has scored a record, keep its answer or send the record on.

A record whose confidence at tier k is at least tier k's threshold is decided there; the
rest go to tier k+1. The last tier has no threshold and decides everything it receives.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from pipeline.config import TierConfig
from transforms.dead_letters import METRICS_NAMESPACE

ESCALATED = "escalated"


def is_confident(confidence: float, threshold: float | None) -> bool:
    """The routing rule: decided when confidence >= threshold; no threshold decides all."""
    return threshold is None or confidence >= threshold


class RouteByConfidence(beam.DoFn):
    """Decided records on the main output, uncertain ones on ESCALATED; counts both."""

    def __init__(self, tier: TierConfig):
        self._threshold = tier.threshold
        counter = beam.metrics.Metrics.counter
        self._seen = counter(METRICS_NAMESPACE, f"{tier.name}_seen")
        self._decided = counter(METRICS_NAMESPACE, f"{tier.name}_decided")
        self._escalated = counter(METRICS_NAMESPACE, f"{tier.name}_escalated")

    def process(self, record: dict[str, Any]) -> Iterator[Any]:
        self._seen.inc()
        if is_confident(record["tiers"][-1]["confidence"], self._threshold):
            self._decided.inc()
            yield record
        else:
            self._escalated.inc()
            yield TaggedOutput(ESCALATED, record)
