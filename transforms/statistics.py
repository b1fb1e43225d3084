"""Routing statistics, computed inside the pipeline by combiners: the steps pipeline/ uses.

Being combiners, the figures are exact on any runner and any number of workers: partial
accumulators are merged, nothing depends on driver-side state. The input is typed
(`StatisticsInputs`: the parsed records, the dead letters, each tier's decided records, the
audits), each kind counted by its own function; the output is a `RoutingStats`
(models/routing_stats.py, written as routing_stats.json: docs/outputs.md). One concept a file:
  transforms/statistics_tally.py            the tally each input is counted into
  transforms/statistics_extraction.py       the RoutingStats extracted from a tally
  transforms/statistics_running_totals.py   streaming's statistics of every window so far
  transforms/statistics.py (here)           the Beam steps that tie them together
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms.window import IntervalWindow

from models.config import Guarantee, TierConfig
from models.routing_stats import RoutingStats
from transforms.branches import merge_branches
from transforms.optional_inputs import TakesOptionalInputs
from transforms.statistics_extraction import RoutingStatsFn, in_window
from transforms.statistics_running_totals import CumulativeRoutingStats
# A streaming job's saved state pickles its running total by this module's old path: kept
# so that a job restarted from a savepoint taken before the split reads it back.
from transforms.statistics_running_totals import RunningTotalState  # noqa: F401
from transforms.statistics_tally import (Counting, RoutingTally, count_audit_failure,
                                         count_audits, count_error, count_parsed,
                                         count_predictions, merge_into)
from transforms.windowing import combine_per_window


class AccumulateInput(beam.CombineFn):
    """One of StatisticsInputs' PCollections in; its accumulator out, without the final
    extraction: one input's partial result, to be merged with the others'. `count` is the
    input's counting function (`count_parsed`, ...; `merge_into` to merge partial results),
    bound here rather than tagged on every element by a step of its own."""

    def __init__(self, fn: RoutingStatsFn, count: Counting):
        self._fn = fn
        self._count = count

    def create_accumulator(self) -> RoutingTally:
        return self._fn.create_accumulator()

    def add_input(self, accumulator: RoutingTally, element: Any) -> RoutingTally:
        self._count(accumulator, element)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[RoutingTally]) -> RoutingTally:
        return self._fn.merge_accumulators(accumulators)

    def extract_output(self, accumulator: RoutingTally) -> RoutingTally:
        return accumulator


class StatisticsInputs(NamedTuple):
    """What the routing statistics count, each PCollection in its own right: the chunks of
    parsed records, every dead letter, each tier's chunks of decided records (tier name ->
    branch, as TierCascade gives them) and, with audits configured, the chunks of audited
    records and the audits' dead letters (None without)."""

    parsed: PCollection
    dead_letters: PCollection
    decided: dict[str, PCollection]
    audits: PCollection | None = None
    audit_failures: PCollection | None = None

    def counted(self) -> dict[str, tuple[PCollection, Counting]]:
        """Each input by a name for its step, with the function that counts its elements."""
        counted = {"parsed": (self.parsed, count_parsed),
                   "dead_letters": (self.dead_letters, count_error),
                   **{f"decided[{tier}]": (branch, count_predictions)
                      for tier, branch in self.decided.items()}}
        if self.audits is not None:
            counted["audits"] = (self.audits, count_audits)
        if self.audit_failures is not None:
            counted["audit_failures"] = (self.audit_failures, count_audit_failure)
        return counted


class AccumulateRoutingStats(TakesOptionalInputs):
    """StatisticsInputs in; one RoutingStatsFn accumulator per window out (one in all in
    batch mode).

    Each input is combined on its own and only the partial results are merged: a Flatten of
    the records themselves is held whole in memory by the FnApiRunner (it materialises every
    multi-input Flatten), which made peak memory grow with the input.
    """

    def __init__(self, stats: RoutingStatsFn):
        super().__init__()
        self._stats = stats

    def expand(self, inputs: StatisticsInputs) -> PCollection:
        partials = merge_branches("Accumulate", {
            name: (pcoll, combine_per_window(AccumulateInput(self._stats, count), pcoll))
            for name, (pcoll, count) in inputs.counted().items()})
        return partials | "Merge" >> combine_per_window(
            AccumulateInput(self._stats, merge_into), inputs.parsed)


class ExtractStats(beam.DoFn):
    """An accumulator in; its RoutingStats out, with the window's bounds and record rate
    when windowed (streaming)."""

    def __init__(self, stats: RoutingStatsFn):
        self._stats = stats

    def process(self, accumulator: RoutingTally, window=beam.DoFn.WindowParam
                ) -> Iterator[RoutingStats]:
        stats = self._stats.extract_output(accumulator)
        if isinstance(window, IntervalWindow):
            stats = in_window(stats, window.start, window.end)
        yield stats


class RoutingStatsOutputs(NamedTuple):
    """ComputeRoutingStats' outputs: a RoutingStats per window (one in all in batch) and,
    in streaming, after each closed window the statistics of every window closed so far
    (None in batch)."""

    windows: PCollection
    running: PCollection | None


class ComputeRoutingStats(TakesOptionalInputs):
    """StatisticsInputs in; RoutingStatsOutputs out. With the config's `guarantee`, the
    statistics state the promise the thresholds carry."""

    def __init__(self, tiers: Sequence[TierConfig], guarantee: Guarantee | None = None):
        super().__init__()
        self._stats = RoutingStatsFn(tiers, guarantee)

    def expand(self, inputs: StatisticsInputs) -> RoutingStatsOutputs:
        accumulators = inputs | "Accumulate" >> AccumulateRoutingStats(self._stats)
        windows = accumulators | "Extract" >> beam.ParDo(ExtractStats(self._stats))
        if accumulators.windowing.is_default():
            return RoutingStatsOutputs(windows, None)
        return RoutingStatsOutputs(
            windows, accumulators | "Cumulative" >> CumulativeRoutingStats(self._stats))
