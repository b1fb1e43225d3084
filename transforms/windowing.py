"""Windows: the whole run is one (global) window in batch mode; streaming cuts event time
into fixed windows, and everything per window (predictions files, routing statistics,
escalation budgets) follows from the records' windows, so batch and streaming share one graph.

Beam's file sinks write one pane per window, so windows take no allowed lateness: a record
arriving behind the watermark, after its window has closed, is dropped by Beam at the writes
and statistics. The folder source cannot produce one (a file's records carry the time it was
found, and the watermark waits for them); on Pub/Sub and Kafka the runner's watermark makes
them rare (see docs/streaming.md).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms import window


def fixed_windows(seconds: float) -> beam.WindowInto:
    """Fixed event-time windows of `seconds`, firing once when the watermark passes their end."""
    return beam.WindowInto(window.FixedWindows(seconds))


def combine_per_window(fn: beam.CombineFn, like: PCollection) -> beam.PTransform:
    """CombineGlobally for `like`'s windowing: one result for the global window (the
    CombineFn's empty result for an empty batch input), else one per window that has input."""
    combine = beam.CombineGlobally(fn)
    return combine if like.windowing.is_default() else combine.without_defaults()
