"""Dead letters: records the job could not classify, kept with the reason instead of dropped.

Every stage that can reject a record emits a DeadLetter (transforms/records.py) on the
DEAD_LETTERS tagged output; the pipeline flattens them into `errors-*.jsonl` and counts them
in the routing statistics.
"""
from __future__ import annotations

from typing import Any, Sequence

import apache_beam as beam

from transforms.records import DeadLetter, Visit, raw_text

DEAD_LETTERS = "dead_letters"
METRICS_NAMESPACE = "beam_cascade"


def dead_letter(stage: str, reason: str, raw: Any, source: str | None = None,
                position: int | None = None, tiers: Sequence[Visit] = ()) -> DeadLetter:
    """A dead letter from stage `stage`, counted in the Beam metric `errors_<stage>`; `raw`
    is kept as text (the JSON line as read, or the row encoded as JSON)."""
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"errors_{stage}").inc()
    return DeadLetter(stage, reason, raw_text(raw), source, position, tuple(tiers))
