"""Dead letters: records the job could not classify, kept with the reason instead of dropped.

Every stage that can reject a record emits a DeadLetter (transforms/records.py) on the
DEAD_LETTERS tagged output; the pipeline flattens them into `errors-*.jsonl` and counts them
in the routing statistics.
"""
from __future__ import annotations

from typing import Any, Sequence

import apache_beam as beam

from transforms import progress
from transforms.progress import METRICS_NAMESPACE  # noqa: F401 - where the steps find it
from transforms.records import DeadLetter, Visit, raw_text

DEAD_LETTERS = "dead_letters"


def dead_letter(stage: str, reason: str, raw: Any, source: str | None = None,
                position: int | None = None, tiers: Sequence[Visit] = ()) -> DeadLetter:
    """A dead letter from stage `stage`, counted in the Beam metric `errors_<stage>` (and the
    progress line's tally); `raw` is kept as text (the JSON line as read, or the row encoded
    as JSON)."""
    progress.count(f"errors_{stage}", 1)
    return DeadLetter(stage, reason, raw_text(raw), source, position, tuple(tiers))
