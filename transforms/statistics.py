"""Routing statistics, computed inside the pipeline by combiners.

Being combiners, the figures are exact on any runner and any number of workers: partial
accumulators are merged, nothing depends on driver-side state. The input is typed
(`StatisticsInputs`: the parsed records, the dead letters, each tier's decided records, the
audits), each kind counted by its own function; the output is a `RoutingStats`
(models/routing_stats.py, written as routing_stats.json: docs/outputs.md).
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, Tuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.pvalue import PCollection
from apache_beam.transforms import window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import IntervalWindow
from apache_beam.utils.timestamp import Timestamp

from models.config import Guarantee, TierConfig
from models.binomial import binomial_interval, binomial_upper_bound
from models.routing_rule import confidence_bin
from models.routing_stats import (AloneEstimates, AuditSummary, CostSummary, RoutingStats,
                                  ThresholdRange, TierAudit, TierStats, WindowBounds)
from models.shift import BINS as SHIFT_BINS
from models.shift import ShiftTest, shift_test
from transforms.branches import merge_branches
from transforms.optional_inputs import TakesOptionalInputs
from transforms.records import Chunk, DeadLetter, Record, Visit
from transforms.windowing import combine_per_window

@dataclass
class AuditTally:
    """The audit of one tier's decisions: how many went to the last tier too, how many of
    those the last tier answered alike, the last tier's probability of the tier's answer
    (summed: with a calibrated last tier, the expected accuracy of the tier's decisions), and
    with gold labels how often each was right."""

    audited: int = 0
    agreed: int = 0
    last_prob_of_answer: float = 0.0
    labelled: int = 0
    correct: int = 0
    last_correct: int = 0
    failed: int = 0  # audits the last tier failed on (their records were predicted)

    def count(self, decided: Visit, last: Visit, gold: int | None) -> None:
        self.audited += 1
        self.agreed += decided.label_id == last.label_id
        self.last_prob_of_answer += last.probabilities[decided.label_id]
        if gold is not None:
            self.labelled += 1
            self.correct += decided.label_id == gold
            self.last_correct += last.label_id == gold


@dataclass
class TierTally:
    """One tier's running counts and sums (a record failed on by a later tier still counts
    as escalated here)."""

    seen: int = 0
    decided: int = 0
    escalated: int = 0
    labelled_seen: int = 0
    correct_seen: int = 0
    labelled_decided: int = 0
    correct_decided: int = 0
    confidence_seen: float = 0.0
    confidence_decided: float = 0.0
    max_prob_decided: float = 0.0
    ms: float = 0.0
    chars_seen: int = 0  # characters of the predicted records it saw (for cost_summary)
    exits: Counter = field(default_factory=Counter)  # records per exit layer
    call_records: Counter = field(default_factory=Counter)  # visits per (call size, passes)
    thresholds: Counter = field(default_factory=Counter)  # visits per effective threshold
    audit: AuditTally = field(default_factory=AuditTally)
    confidence_bins: Counter = field(default_factory=Counter)  # seen, for the shift test

    def count(self, visits: Sequence[Visit], final: bool, golds: Sequence[int | None],
              chars: int = 0) -> None:
        """Counts the tier's visits of records that it decided (`final`) or sent on, with
        their gold labels (None where unlabelled) and their texts' characters in all. A
        whole chunk's visits at once: a pass over a list per sum costs less per record than
        a method call per visit."""
        confidences = [visit.confidence for visit in visits]
        self.seen += len(visits)
        self.chars_seen += chars
        self.confidence_bins.update([confidence_bin(c, SHIFT_BINS) for c in confidences])
        if final:
            self.decided += len(visits)
            self.confidence_decided += sum(confidences)
            self.max_prob_decided += sum([max(visit.probabilities) for visit in visits])
        else:
            self.escalated += len(visits)
        self.confidence_seen += sum(confidences)
        self.ms += sum([visit.ms for visit in visits])
        self.call_records.update([(visit.batch, visit.passes) for visit in visits])
        self.exits.update([v.exit_layer for v in visits if v.exit_layer is not None])
        self.thresholds.update([v.threshold for v in visits if v.threshold is not None])
        correct = [visit.label_id == gold for visit, gold in zip(visits, golds)
                   if gold is not None]
        self.labelled_seen += len(correct)
        self.correct_seen += sum(correct)
        if final:
            self.labelled_decided += len(correct)
            self.correct_decided += sum(correct)


@dataclass
class RoutingTally:
    """The accumulator of the routing statistics: counts over the whole run (or window)."""

    parsed: int = 0
    predictions: int = 0
    chars: int = 0  # characters of the predicted records' texts
    labels_unrecognized: int = 0
    errors: Counter = field(default_factory=Counter)  # dead letters per stage
    reasons: Counter = field(default_factory=Counter)  # record dead letters per reason_kind
    tiers: dict[str, TierTally] = field(default_factory=dict)  # (labelled predictions too)


def count_parsed(acc: RoutingTally, chunk: Chunk) -> None:
    """A chunk of parsed records: the records read, less the dead letters of parsing."""
    acc.parsed += len(chunk)


def count_predictions(acc: RoutingTally, chunk: Chunk) -> None:
    """Decided records at every tier they visited (the last one decided each), tier by
    tier for the records that went the same way."""
    acc.predictions += len(chunk)
    acc.labels_unrecognized += sum([record.gold_unrecognized is not None for record in chunk])
    by_path: dict[tuple[str, ...], list[Record]] = {}
    for record in chunk:
        by_path.setdefault(tuple([visit.tier for visit in record.tiers]), []).append(record)
    for path, records in by_path.items():
        golds = [record.gold for record in records]
        chars = sum([len(record.text) for record in records])
        acc.chars += chars
        for i, visits in enumerate(zip(*[record.tiers for record in records])):
            acc.tiers[path[i]].count(visits, i == len(path) - 1, golds, chars)


MAX_REASON_KINDS = 50  # beyond, "other reasons": an accumulator stays small


def reason_kind(reason: str) -> str:
    """What a dead letter's reason says without its particulars (where in the line, which
    bytes, the exception's details: the reasons give them after a colon, semicolon or
    parenthesis), so that reasons can be counted: "invalid JSON: Expecting value at column
    5" -> "invalid JSON"."""
    return re.split(r": |; | \(", reason, maxsplit=1)[0][:120]


def count_error(acc: RoutingTally, letter: DeadLetter) -> None:
    """A dead letter by its stage (and, a record's, by its reason), and as escalated at the
    tiers that scored it before."""
    acc.errors[letter.stage] += 1
    if letter.stage != "read":
        kind = reason_kind(letter.reason)
        acc.reasons[kind if kind in acc.reasons or len(acc.reasons) < MAX_REASON_KINDS
                    else "other reasons"] += 1
    for visit in letter.tiers:
        acc.tiers[visit.tier].count([visit], final=False, golds=[None])
    if letter.stage.startswith("tier:"):
        acc.tiers[letter.stage[len("tier:"):]].seen += 1


def count_audits(acc: RoutingTally, chunk: Chunk) -> None:
    """A chunk of audited records, each with the deciding tier's visit, then the last
    tier's."""
    for record in chunk:
        *_, decided, last = record.tiers
        acc.tiers[decided.tier].audit.count(decided, last, record.gold)


def count_audit_failure(acc: RoutingTally, letter: DeadLetter) -> None:
    """An audit the last tier failed on (its record was predicted all the same)."""
    acc.tiers[letter.tiers[-1].tier].audit.failed += 1


def merge_into(total: Any, part: Any) -> None:
    """Adds a tally's counts, sums and counters (and its tiers' tallies) into `total`."""
    for f in dataclasses.fields(total):
        mine, theirs = getattr(total, f.name), getattr(part, f.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        elif isinstance(mine, dict):
            for name, tally in theirs.items():
                merge_into(mine[name], tally)
        elif dataclasses.is_dataclass(mine):
            merge_into(mine, theirs)
        else:
            setattr(total, f.name, mine + theirs)


class RoutingStatsFn:
    """The routing statistics' accumulator (a RoutingTally) for a cascade's tiers: made,
    merged and turned into a RoutingStats here; filled by the counting function of each
    input (`count_parsed`, `count_predictions`, `count_error`, `count_audits`,
    `count_audit_failure`), which AccumulateInput binds to its input.

    A tier's `seen` counts every record it received: decided + escalated + failed. Records
    that a later tier failed on still count at the tiers that escalated them.
    """

    def __init__(self, tiers: Sequence[TierConfig], guarantee: Guarantee | None = None):
        self._guarantee = guarantee
        self._names = [t.name for t in tiers]
        self._thresholds = {t.name: t.threshold for t in tiers}
        self._calibrated_costs = [t.seconds_per_record for t in tiers]
        self._references = {t.name: (t.reference_confidences, t.reference_records)
                            for t in tiers if t.reference_confidences}

    def create_accumulator(self) -> RoutingTally:
        return RoutingTally(tiers={name: TierTally() for name in self._names})

    def merge_accumulators(self, accumulators: Iterable[RoutingTally]) -> RoutingTally:
        merged = self.create_accumulator()
        for acc in accumulators:
            merge_into(merged, acc)
        return merged

    def extract_output(self, acc: RoutingTally) -> RoutingStats:
        """The statistics. A dead letter of stage 'read' is a file that could not be read
        (to its end), counted in `files_unread`, apart from the records."""
        predictions = acc.predictions
        labelled = sum(t.labelled_decided for t in acc.tiers.values())
        correct = sum(t.correct_decided for t in acc.tiers.values())
        record_errors = {stage: n for stage, n in acc.errors.items() if stage != "read"}
        errors = sum(record_errors.values())
        records_read = acc.parsed + record_errors.get("parse", 0)
        tiers = [self._tier_output(name, acc.tiers[name], predictions, acc.errors)
                 for name in self._names]
        return RoutingStats(
            records=predictions + errors,
            records_read=records_read,
            unaccounted=records_read - predictions - errors,
            files_unread=acc.errors["read"],
            predictions=predictions,
            errors=errors,
            error_rate=_ratio(errors, predictions + errors),
            errors_by_stage=dict(sorted(record_errors.items())),
            errors_by_reason=dict(acc.reasons.most_common(10)),
            labelled=labelled,
            labels_unrecognized=acc.labels_unrecognized,
            accuracy=_ratio(correct, labelled),
            estimated_accuracy=_ratio(
                sum(t.max_prob_decided for t in acc.tiers.values()), predictions),
            audit=audit_summary(acc.tiers, self._names, predictions),
            cost=cost_summary(acc, self._names, self._calibrated_costs),
            guarantee=self._guarantee,
            shifted_tiers=tuple(t.name for t in tiers if t.shift and t.shift.shifted),
            tiers=tuple(tiers),
        )

    def _tier_output(self, name: str, t: TierTally, predictions: int,
                     errors: Counter) -> TierStats:
        return TierStats(
            name=name,
            threshold=self._thresholds[name],
            effective_threshold=(ThresholdRange(min(t.thresholds), max(t.thresholds))
                                 if t.thresholds else None),
            seen=t.seen,
            decided=t.decided,
            escalated=t.escalated,
            failed=errors.get(f"tier:{name}", 0),
            escalation_rate=_ratio(t.escalated, t.seen),
            decided_share=_ratio(t.decided, predictions),
            mean_confidence_seen=_ratio(t.confidence_seen, t.seen),
            mean_confidence_decided=_ratio(t.confidence_decided, t.decided),
            accuracy_decided=_ratio(t.correct_decided, t.labelled_decided),
            estimated_accuracy_decided=_ratio(t.max_prob_decided, t.decided),
            accuracy_seen=_ratio(t.correct_seen, t.labelled_seen),
            inference_seconds=t.ms / 1000.0,
            ms_per_record=_ratio(t.ms, t.seen),
            records_per_exit={str(layer): n for layer, n in sorted(t.exits.items())},
            **call_sizes(t.call_records),
            audit=tier_audit(t),
            shift=self._shift(name, t),
        )

    def _shift(self, name: str, t: TierTally) -> ShiftTest | None:
        """The tier's confidences against calibration's (models/shift.py); None without a
        reference or records."""
        if name not in self._references or not t.seen:
            return None
        return shift_test(*self._references[name], t.confidence_bins)


def tier_audit(t: TierTally) -> TierAudit | None:
    """A tier's audit: agreement with the last tier on its audited decisions, with a 95%
    interval; the upper end of the disagreement, which bounds how much accuracy the tier's
    decisions lose against the last tier (no labels needed), also as a share of the records
    that reached the tier (what max_disagreement steers); the last tier's estimate of their
    accuracy; with labels, both accuracies on the audited records."""
    a = t.audit
    if not a.audited and not a.failed:
        return None
    low, high = binomial_interval(a.agreed, a.audited)
    return TierAudit(
        audited=a.audited, failed=a.failed, agreed=a.agreed,
        agreement=_ratio(a.agreed, a.audited),
        agreement_interval_95=(low, high) if a.audited else None,
        drop_bound_95=1 - low if a.audited else None,
        seen_drop_bound_95=(1 - low) * t.decided / t.seen if a.audited and t.seen else None,
        estimated_accuracy=_ratio(a.last_prob_of_answer, a.audited),
        labelled=a.labelled,
        accuracy=_ratio(a.correct, a.labelled),
        last_tier_accuracy=_ratio(a.last_correct, a.labelled),
    )


def audit_summary(tiers: dict[str, TierTally], names: Sequence[str],
                  predictions: int) -> AuditSummary | None:
    """The audit of the whole output: the share of the predictions on which the cascade and
    the last tier disagree is the sum over audited tiers of (their share of the
    predictions) x (their disagreement rate). It is not the accuracy drop (the cascade may be
    right where they disagree: on shifted data it was better than its last tier) but it
    bounds it: its 95% upper bound (each tier's at 95% / (tiers audited), a union bound) is
    an upper bound on the drop. Also the last tier's mean probability of the cascade's
    answers (audited tiers' decisions valued by it, the others by their own): an accuracy
    estimate only when the last tier is calibrated on this data, so it carries no interval
    and is not called one."""
    audited_names = [n for n in names[:-1] if tiers[n].audit.audited]
    audited = [tiers[n] for n in audited_names]
    if not audited or not predictions:
        return None
    risk = 0.05 / len(audited)
    estimate = bound = 0.0
    for t in audited:
        share = t.decided / predictions
        estimate += share * (1 - t.audit.agreed / t.audit.audited)
        bound += share * binomial_upper_bound(t.audit.audited - t.audit.agreed,
                                              t.audit.audited, risk)
    unaudited = [tiers[n] for n in names if n not in audited_names]
    corrected = (sum(t.decided * t.audit.last_prob_of_answer / t.audit.audited for t in audited)
                 + sum(t.max_prob_decided for t in unaudited)) / predictions
    return AuditSummary(audited=sum(t.audit.audited for t in audited),
                        disagreement=estimate, drop_bound_95=min(1.0, bound),
                        last_tier_probability=corrected)


def cost_summary(acc: RoutingTally, names: Sequence[str],
                 calibrated_costs: Sequence[float | None] = ()) -> CostSummary:
    """What the cascade's model time bought: the seconds all tiers spent, against an estimate
    of the last tier alone on every predicted record.

    The last tier's own cost in the job misleads: it scored only the hard records, often
    longer and run in few passes of mixed lengths, so scaled up it overstates the saving
    (on the demo, 1.7x where running it alone measured 1.1x). Where calibrate timed every
    tier on all its texts (`seconds_per_record` in the tuned config), the estimate is the
    first tier's cost per record in this job (it scores every record) times the last tier's
    cost relative to it as calibrate measured. Without those timings it is the last tier's
    cost per record or per character in the job, whichever is lower, and says so."""
    first, last = acc.tiers[names[0]], acc.tiers[names[-1]]
    spent = sum(t.ms for t in acc.tiers.values()) / 1000.0
    by_record = _ratio(last.ms * acc.predictions, 1000.0 * last.seen) if last.ms else None
    by_character = (_ratio(last.ms * acc.chars, 1000.0 * last.chars_seen)
                    if last.ms and last.chars_seen else by_record)
    timed = list(calibrated_costs)
    by_calibration = (timed[-1] / timed[0] * first.ms * acc.predictions / (1000.0 * first.seen)
                      if len(timed) == len(names) and timed[0] and timed[-1] and first.seen
                      else None)
    alone = by_calibration if by_calibration is not None else (
        None if by_record is None else min(by_record, by_character))
    return CostSummary(model_seconds=spent, last_tier=names[-1],
                       last_tier_alone_seconds=alone,
                       last_tier_alone_seconds_by=AloneEstimates(by_record, by_character,
                                                                 by_calibration),
                       times_cheaper=_ratio(alone, spent) if alone is not None else None)


def call_sizes(records_by_call: Counter) -> dict[str, Any]:
    """TierStats' fields on how the tier's records were batched: the RunInference calls
    (their number, mean size and a histogram of sizes in powers of two: "1", "2-3", "4-7",
    ...) and the model's forward passes within them (a transformer tier splits a call into
    passes of its batch_size). A call of n records is n visits that each carry n, so the
    calls are counted exactly from the records."""
    histogram: Counter = Counter()
    passes = 0
    for (size, passes_per_call), records in records_by_call.items():
        low = 1 << (size.bit_length() - 1)
        histogram[low] += records // size
        passes += records // size * passes_per_call
    calls = sum(histogram.values())
    records = sum(records_by_call.values())
    return {
        "calls": calls,
        "mean_records_per_call": _ratio(records, calls),
        "records_per_call_histogram": {(str(low) if low == 1 else f"{low}-{2 * low - 1}"): n
                                       for low, n in sorted(histogram.items())},
        "model_passes": passes,
        "mean_records_per_pass": _ratio(records, passes),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


Counting = Callable[[RoutingTally, Any], None]  # adds one element of an input to a tally


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


def in_window(stats: RoutingStats, start: Timestamp, end: Timestamp) -> RoutingStats:
    """The statistics with the bounds (ISO 8601 UTC times) of the window they cover, and
    their event-time throughput over it."""
    return dataclasses.replace(
        stats, window=WindowBounds(start.to_rfc3339(), end.to_rfc3339()),
        records_per_second=_ratio(stats.records, float(end - start)))
