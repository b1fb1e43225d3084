"""The routing statistics extracted from a tally: a `RoutingStats` (models/routing_stats.py).

Every figure a job reports (rates, accuracies, the audit's bounds, the cost against the last
tier alone, the shift test, a window's throughput) is derived here from the counts in a
`RoutingTally` (transforms/statistics_tally.py), only once the tally is complete: counts
merge exactly across workers, ratios and bounds do not.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Iterable, Sequence

from apache_beam.utils.timestamp import Timestamp

from models.binomial import binomial_interval, binomial_upper_bound
from models.config import Guarantee, TierConfig
from models.routing_stats import (AloneEstimates, AuditSummary, CostSummary, RoutingStats,
                                  ThresholdRange, TierAudit, TierStats, WindowBounds)
from models.shift import ShiftTest, shift_test
from transforms.statistics_tally import RoutingTally, TierTally, merge_into


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


def in_window(stats: RoutingStats, start: Timestamp, end: Timestamp) -> RoutingStats:
    """The statistics with the bounds (ISO 8601 UTC times) of the window they cover, and
    their event-time throughput over it."""
    return dataclasses.replace(
        stats, window=WindowBounds(start.to_rfc3339(), end.to_rfc3339()),
        records_per_second=_ratio(stats.records, float(end - start)))


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None
