"""The progress line `beam-cascade run` prints while a job runs: records read, their rate,
and each tier's records seen and escalated so far.

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


def progress_line(counts: dict[str, int], tier_names: Sequence[str], seconds: float) -> str:
    """`progress 0:42: 123456 records read (2940/s); ngram 120000 seen, 11.6% escalated;
    minilm 13900 seen`."""
    read = counts.get(progress.RECORDS_READ, 0)
    tiers = []
    for name in tier_names:
        seen = counts.get(progress.seen(name), 0)
        text = f"{name} {seen} seen"
        if name != tier_names[-1] and seen:
            text += f", {counts.get(progress.escalated(name), 0) / seen:.1%} escalated"
        tiers.append(text)
    minutes, secs = divmod(int(seconds), 60)
    return (f"progress {minutes}:{secs:02d}: {read} records read "
            f"({read / max(seconds, 1e-9):.0f}/s); " + "; ".join(tiers))


class ProgressReporter:
    """Prints `progress_line` every `interval` seconds from a thread of its own while in its
    `with` block, and once more at its end if it printed at all. It reads this process's
    tally until `follow(result)` points it at a running job's metrics."""

    def __init__(self, tier_names: Sequence[str], interval: float, out: IO[str] | None = None):
        self._names = list(tier_names)
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
        print(progress_line(counts, self._names, time.monotonic() - self._start),
              file=self._out, flush=True)
        self._printed = True
