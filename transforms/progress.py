"""The counts behind the launcher's progress line: records read, each tier's records seen
and escalated.

Each count goes to Beam's metrics (namespace beam_cascade), which the launcher polls on the
runners whose `run()` returns while the job runs (Flink, Dataflow, Prism). The in-process
FnApiRunner hands its metrics over only at the end, so the counts also go to this process's
tally, which the launcher reads while that runner works in the same process. The steps
count once per bundle: a metric's increment per record cost as much as the routing itself.
"""
from __future__ import annotations

import threading
from collections import Counter

import apache_beam as beam

from transforms.dead_letters import METRICS_NAMESPACE

RECORDS_READ = "records_read"

_tally: Counter = Counter()
_lock = threading.Lock()


def seen(tier: str) -> str:
    return f"{tier}_seen"


def decided(tier: str) -> str:
    return f"{tier}_decided"


def escalated(tier: str) -> str:
    return f"{tier}_escalated"


def count(name: str, n: int) -> None:
    """Adds `n` to the Beam counter `name` and to this process's tally."""
    if n:
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(n)
        with _lock:
            _tally[name] += n


def local_counts() -> dict[str, int]:
    """The counts this process's steps have made since `reset_local_counts`."""
    with _lock:
        return dict(_tally)


def reset_local_counts() -> None:
    with _lock:
        _tally.clear()
