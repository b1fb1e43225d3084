"""The progress line `beam-cascade run` prints while a job runs: records and files read,
each tier's records scored and escalated so far, the records classified and their rate over
the last interval, and once every file is read the time left at that rate.

The counts come from the job's Beam metrics, polled from the launcher, on runners whose
`run()` returns while the job works (Flink, Dataflow, Prism: the counts of all workers);
from this process's own tally while the in-process FnApiRunner works (it hands its metrics
over only at the end; with --direct_running_mode multi_processing its workers are other
processes and the line stays at zero until the end). See transforms/progress.py.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable, Sequence

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability import portable_runner
from apache_beam.runners.runner import PipelineResult

from transforms import progress
from transforms.dead_letters import METRICS_NAMESPACE

Counts = Callable[[], dict[str, int]]


def metric_counts(result: PipelineResult) -> dict[str, int]:
    """The job's beam_cascade counters as the runner reports them now (attempted: the
    committed counts of a running job are not kept by every runner)."""
    if isinstance(result, portable_runner.PipelineResult):
        # Beam's portable result (Flink, Prism) keeps the first answer of the job service
        # for good; forget it, so that this call asks again.
        result._metrics = None  # noqa: SLF001 - no public way to ask again
    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in counters["counters"]:
        totals[counter.key.metric.name] = (totals.get(counter.key.metric.name, 0)
                                           + (counter.attempted or 0))
    return totals


@dataclass(frozen=True)
class Snapshot:
    """The counts at a moment of the job (seconds since it started)."""

    seconds: float
    counts: dict[str, int]

    def classified(self, tier_names: Sequence[str]) -> int:
        return sum(self.counts.get(progress.decided(name), 0) for name in tier_names)

    def dead_letters(self) -> int:
        """Records given up on (an unread file's dead letter is not a record)."""
        return sum(n for name, n in self.counts.items()
                   if name.startswith("errors_") and name != "errors_read")


def progress_line(now: Snapshot, before: Snapshot | None, tier_names: Sequence[str],
                  input_files: int | None = None) -> str:
    """`progress 0:42: 10,772 records read (3/3 files); small 9,800 scored, 21.3% escalated;
    large 2,100 scored; 8,600 classified, 240/s over the last 10 s; about 0:09 left`. A
    tier's records count as scored when its model has answered their batch (the last
    tier's audits too), as escalated and classified once routed; the rate is over the
    interval since `before`; the time left is shown once every input file has been read
    (before that the number of records is not known)."""
    read = now.counts.get(progress.RECORDS_READ, 0)
    files = (f" ({now.counts.get(progress.FILES_READ, 0)}/{input_files} files)"
             if input_files else "")
    parts = [f"progress {_clock(now.seconds)}: {read:,} records read{files}"]
    for name in tier_names:
        text = f"{name} {now.counts.get(progress.scored(name), 0):,} scored"
        routed = now.counts.get(progress.seen(name), 0)
        if name != tier_names[-1] and routed:
            text += f", {now.counts.get(progress.escalated(name), 0) / routed:.1%} escalated"
        parts.append(text)
    classified = now.classified(tier_names)
    text = f"{classified:,} classified"
    if before is not None and now.seconds > before.seconds:
        interval = now.seconds - before.seconds
        rate = (classified - before.classified(tier_names)) / interval
        text += f", {rate:,.0f}/s over the last {interval:.0f} s"
        all_read = input_files and now.counts.get(progress.FILES_READ, 0) >= input_files
        left = read - classified - now.dead_letters()
        if all_read and rate > 0 and left > 0:
            text += f"; about {_clock(left / rate)} left"
    parts.append(text)
    return "; ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class ProgressReporter:
    """Prints `progress_line` every `interval` seconds from a thread of its own while in its
    `with` block, and once more at its end if it printed at all. It reads this process's
    tally until `follow(result)` points it at a running job's metrics."""

    def __init__(self, tier_names: Sequence[str], interval: float, out: IO[str] | None = None,
                 input_files: int | None = None):
        self._names = list(tier_names)
        self._input_files = input_files
        self._previous: Snapshot | None = None
        self._interval = interval
        self._out = out or sys.stderr
        self._counts: Counts = progress.local_counts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, name="beam-cascade-progress",
                                        daemon=True)
        self._start = 0.0
        self._printed = False

    def follow(self, result: PipelineResult) -> None:
        """From now on, report the metrics of `result` (a job the runner is running)."""
        self._counts = lambda: metric_counts(result)

    def __enter__(self) -> "ProgressReporter":
        progress.reset_local_counts()
        self._start = time.monotonic()
        if self._interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            if self._printed and exc_info[0] is None:
                self._print()

    def _report(self) -> None:
        while not self._stop.wait(self._interval):
            self._print()

    def _print(self) -> None:
        try:
            counts = self._counts()
        except Exception:  # noqa: BLE001 - a runner that cannot answer now: skip this line
            return
        now = Snapshot(time.monotonic() - self._start, counts)
        print(progress_line(now, self._previous, self._names, self._input_files),
              file=self._out, flush=True)
        self._previous = now
        self._printed = True
