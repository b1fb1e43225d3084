"""The running total of a streaming job's routing statistics: every window closed so far.

Per-window statistics say how each window went; the running total says how the job has gone
since it started. It is kept in Beam state (one key, global window) rather than recomputed,
so it survives bundles and restarts on any runner that checkpoints state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, NamedTuple, Tuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.pvalue import PCollection
from apache_beam.transforms import window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Timestamp

from models.routing_stats import RoutingStats
from transforms.statistics_extraction import RoutingStatsFn, in_window
from transforms.statistics_tally import RoutingTally


class RunningTotalState(NamedTuple):
    """What RunningTotal keeps: the number of windows closed, their span, their tally."""

    windows: int
    start: Timestamp
    end: Timestamp
    accumulator: RoutingTally


class RunningTotal(beam.DoFn):
    """Per-window accumulators in (one key, global window); after each, the statistics of
    every window closed so far. Stateful, so the total survives bundles and restarts on any
    runner that checkpoints state."""

    TOTAL = ReadModifyWriteStateSpec("total", PickleCoder())

    def __init__(self, stats: RoutingStatsFn):
        self._stats = stats

    def process(self, keyed: tuple[str, tuple[Timestamp, Timestamp, RoutingTally]],
                total=beam.DoFn.StateParam(TOTAL)) -> Iterator[RoutingStats]:
        _, (start, end, accumulator) = keyed
        previous = total.read() or RunningTotalState(0, start, end,
                                                     self._stats.create_accumulator())
        current = RunningTotalState(
            previous.windows + 1, min(previous.start, start), max(previous.end, end),
            self._stats.merge_accumulators([previous.accumulator, accumulator]))
        total.write(current)
        stats = self._stats.extract_output(current.accumulator)
        yield dataclasses.replace(in_window(stats, current.start, current.end),
                                  windows=current.windows)


class CumulativeRoutingStats(beam.PTransform):
    """Per-window accumulators in; the running statistics out, one RoutingStats per closed
    window."""

    def __init__(self, stats: RoutingStatsFn):
        super().__init__()
        self._stats = stats

    def expand(self, accumulators: PCollection) -> PCollection:
        return (accumulators
                | "WithBounds" >> beam.Map(
                    lambda acc, w=beam.DoFn.WindowParam: ("all", (w.start, w.end, acc))
                ).with_output_types(Tuple[str, Any])  # a deterministic key coder for the state
                | "AllTime" >> beam.WindowInto(window.GlobalWindows())
                | "Total" >> beam.ParDo(RunningTotal(self._stats)))
