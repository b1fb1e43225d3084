"""The counts behind the launcher's progress line: input files and records read, each
tier's records seen, decided and escalated.

Each count goes to Beam's metrics (namespace beam_cascade), which the launcher polls on the
runners whose `run()` returns while the job runs (Flink, Dataflow, Prism). The in-process
FnApiRunner hands its metrics over only at the end, so the counts also go to this process's
tally, which the launcher reads while that runner works in the same process. The steps
count in batches (`BatchedCounts`): a metric's increment per record cost as much as the
routing itself, but once per bundle was too seldom, as the FnApiRunner runs a whole stage
as one bundle (the line said "0 seen" for 40 s of a 53 s job, then jumped to the end).
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import apache_beam as beam

METRICS_NAMESPACE = "beam_cascade"  # every counter of this tool's steps

RECORDS_READ = "records_read"
FILES_READ = "files_read"  # input files read to their end (or given up on)
FLUSH_SECS = 0.5  # how often BatchedCounts hands its counts on within a bundle

_tally: Counter = Counter()
_lock = threading.Lock()


def seen(tier: str) -> str:
    return f"{tier}_seen"


def scored(tier: str) -> str:
    """Records the tier's model has scored (audits and steering samples of the last tier
    included), counted as each batch is done: routing may see them later."""
    return f"{tier}_scored"


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


class BatchedCounts:
    """Counts a step makes, handed on (`count`) at most every FLUSH_SECS and at `flush`
    (a DoFn's finish_bundle): the progress line moves while a long bundle runs, at the cost
    of one clock reading per chunk."""

    def __init__(self, *names: str):
        self._pending = Counter({name: 0 for name in names})
        self._last_flush = time.monotonic()

    def add(self, name: str, n: int) -> None:
        self._pending[name] += n
        if time.monotonic() - self._last_flush >= FLUSH_SECS:
            self.flush()

    def flush(self) -> None:
        for name, n in self._pending.items():
            count(name, n)
        self._pending = Counter({name: 0 for name in self._pending})
        self._last_flush = time.monotonic()
