"""A run's routing statistics as typed values: what `routing_stats.json` holds
(docs/outputs.md), built in the pipeline (transforms/statistics*.py), judged and printed by
the launcher (pipeline/job.py, pipeline/summary.py) and read by the benchmarks.

Frozen dataclasses, no Beam. The file's keys appear only in the JSON round trip
(`RoutingStats.to_json`, `RoutingStats.from_json`): everything else reads fields, so a field
renamed or dropped fails where it is read, when the code is checked, instead of as a
KeyError in a run. The fields are declared in the order the file writes its keys.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from models.config import Guarantee
from models.shift import ShiftTest


@dataclass(frozen=True)
class ThresholdRange:
    """The lowest and highest threshold a window-budgeted tier's records were routed by
    (above 1: every record of a window escalated)."""

    min: float
    max: float


@dataclass(frozen=True)
class TierAudit:
    """A tier's audited decisions against the last tier
    (transforms/statistics_extraction.tier_audit)."""

    audited: int
    failed: int  # audits the last tier failed on (their records were predicted)
    agreed: int
    agreement: float | None
    agreement_interval_95: tuple[float, float] | None
    drop_bound_95: float | None
    seen_drop_bound_95: float | None
    estimated_accuracy: float | None
    labelled: int
    accuracy: float | None
    last_tier_accuracy: float | None


@dataclass(frozen=True)
class TierStats:
    """One tier's counts, rates and model time over the run (or window)."""

    name: str
    threshold: float | None
    effective_threshold: ThresholdRange | None
    seen: int
    decided: int
    escalated: int
    failed: int
    escalation_rate: float | None
    decided_share: float | None
    mean_confidence_seen: float | None
    mean_confidence_decided: float | None
    accuracy_decided: float | None
    estimated_accuracy_decided: float | None
    accuracy_seen: float | None
    inference_seconds: float
    ms_per_record: float | None
    records_per_exit: dict[str, int]
    calls: int
    mean_records_per_call: float | None
    records_per_call_histogram: dict[str, int]
    model_passes: int
    mean_records_per_pass: float | None
    audit: TierAudit | None
    shift: ShiftTest | None


@dataclass(frozen=True)
class AuditSummary:
    """The audit of the whole output (transforms/statistics_extraction.audit_summary)."""

    audited: int
    disagreement: float
    drop_bound_95: float
    last_tier_probability: float


@dataclass(frozen=True)
class AloneEstimates:
    """The last tier alone on every predicted record, in seconds: scaled from its cost in
    the job per record and per character, and (`calibration`, with calibrate's timings in
    the config) from the first tier's cost in the job times the tiers' cost ratio that
    calibrate measured."""

    record: float | None
    character: float | None
    calibration: float | None = None


@dataclass(frozen=True)
class CostSummary:
    """What the cascade's model time bought (transforms/statistics_extraction.cost_summary)."""

    model_seconds: float
    last_tier: str
    last_tier_alone_seconds: float | None
    last_tier_alone_seconds_by: AloneEstimates
    times_cheaper: float | None


@dataclass(frozen=True)
class InputCalibration:
    """How a run chose its thresholds on its own input (`calibrate_on_input`,
    pipeline/input_calibration.py): the evidence, the budget and the bound. `thresholds`
    None: no threshold kept the drop's bound within the budget, so every record went to
    the last tier alone (and `drop_bound`, `evidence` are None)."""

    records_sampled: int
    records_read: int  # the valid input records the sample was drawn from
    labelled: str  # the labelled file
    labelled_records: int
    max_accuracy_drop: float  # points: the budget
    confidence: float
    thresholds: tuple[float, ...] | None
    drop_bound: float | None  # points: the upper bound at `thresholds`
    evidence: str | None  # which evidence set the bound, in words


@dataclass(frozen=True)
class WindowBounds:
    """A window's (or the closed windows') bounds as ISO 8601 UTC times."""

    start: str
    end: str


@dataclass(frozen=True)
class RoutingStats:
    """The statistics of a run or, in streaming, of a window (`window`,
    `records_per_second`) or of every window closed so far (`windows` too). `failures` is
    the launcher's verdict on a finished batch run (None until it is judged)."""

    records: int
    records_read: int
    unaccounted: int
    files_unread: int
    predictions: int
    errors: int
    error_rate: float | None
    errors_by_stage: dict[str, int]
    errors_by_reason: dict[str, int]
    labelled: int
    labels_unrecognized: int
    accuracy: float | None
    estimated_accuracy: float | None
    audit: AuditSummary | None
    cost: CostSummary
    guarantee: Guarantee | None
    shifted_tiers: tuple[str, ...]
    tiers: tuple[TierStats, ...]
    window: WindowBounds | None = field(default=None, kw_only=True)
    windows: int | None = field(default=None, kw_only=True)
    records_per_second: float | None = field(default=None, kw_only=True)
    failures: tuple[str, ...] | None = field(default=None, kw_only=True)
    input_calibration: InputCalibration | None = field(default=None, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        """The statistics as routing_stats.json holds them: the streaming keys (`windows`
        and `window` first, `records_per_second` after the rest), `failures` and
        `input_calibration` only where they apply."""
        core = {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not f.kw_only}
        streaming = self.window is not None
        return {**({"windows": self.windows} if self.windows is not None else {}),
                **({"window": _to_json(self.window)} if streaming else {}),
                **core,
                **({"records_per_second": self.records_per_second} if streaming else {}),
                **({"failures": list(self.failures)} if self.failures is not None else {}),
                **({"input_calibration": _to_json(self.input_calibration)}
                   if self.input_calibration is not None else {})}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "RoutingStats":
        """The statistics from routing_stats.json's contents (`to_json`'s output)."""
        return _from_json(cls, raw)


def _to_json(value: Any) -> Any:
    """A field's value as JSON data: dataclasses as objects, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def _from_json(kind: Any, value: Any) -> Any:
    """JSON data as the annotated type `kind`: objects as the dataclasses the annotations
    name, lists as tuples; numbers, strings and dicts of them as they are."""
    if value is None:
        return None
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # X | None
        return _from_json(next(a for a in arguments if a is not type(None)), value)
    if origin is tuple:  # tuple[X, ...] or a pair of X
        return tuple(_from_json(arguments[0], item) for item in value)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        unknown = value.keys() - hints.keys()
        if unknown:
            raise ValueError(f"{kind.__name__} has no field(s) {sorted(unknown)}: the "
                             "statistics were written by another version of beam-cascade")
        return kind(**{name: _from_json(hints[name], item) for name, item in value.items()})
    return value
