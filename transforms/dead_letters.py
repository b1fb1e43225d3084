"""Dead letters: records the job could not classify, kept with the reason instead of dropped.

Every stage that can reject a record emits a dead letter on the DEAD_LETTERS tagged output;
the pipeline flattens them into `errors-*.jsonl` and counts them in the routing statistics.
"""
from __future__ import annotations

import json
from typing import Any

import apache_beam as beam

DEAD_LETTERS = "dead_letters"
METRICS_NAMESPACE = "beam_cascade"


def dead_letter(stage: str, reason: str, raw: Any, source: str | None = None,
                position: int | None = None, tiers: list | None = None) -> dict[str, Any]:
    """A dead-letter row: where it came from, which stage refused it, why, and the raw input.

    `raw` is kept as text (the JSON line as read, or the row encoded as JSON) so that the
    errors file can always be written and the record replayed after a fix. `tiers` holds the
    visits of the tiers that scored the record before the one that failed on it.
    """
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"errors_{stage}").inc()
    return {
        "stage": stage,
        "reason": reason,
        "source": source,
        "position": position,
        "raw": raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False),
        "tiers": tiers or [],
    }
