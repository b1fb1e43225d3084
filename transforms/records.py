"""What flows between the job's steps: records, the tiers' visits, dead letters, output rows.

Frozen dataclasses, like Beam's own PredictionResult a plain typed value: Beam passes them
between fused steps as they are, pickles them across a shuffle, and where a step needs a
deterministic encoding its FastPrimitivesCoder encodes frozen dataclasses field by field.
No Beam here, so the types can be built and read anywhere (tests, tools).

Records travel between the job's steps in chunks (`Chunk`, a list: the valid records of one
chunk of input rows, or the part of a chunk a tier decided or escalated), so that Beam's
cost per element (its operations, coders, counters, size sampling) is paid once per chunk,
not once per record; what must be done per record is done in a loop over the chunk.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from models.config import ConfigError

RecordId = Union[str, int, float, bool]  # a JSON scalar, kept as the input gave it


@dataclass(frozen=True, init=False)
class Visit:
    """One tier's answer for one record: the predicted label, its probabilities (after the
    tier's temperature), the routing confidence, the model time shared out per record and
    the number of records in the RunInference call and the model's forward passes in it;
    for an early-exit tier the layer the record left at, and under an escalation budget the
    effective threshold it was routed by."""

    tier: str
    label_id: int
    probabilities: tuple[float, ...]
    confidence: float
    ms: float
    batch: int  # records in the RunInference call
    exit_layer: int | None = None
    threshold: float | None = None
    passes: int = 1  # forward passes the call made (a tier splits it by its batch_size)

    def __init__(self, tier: str, label_id: int, probabilities: tuple[float, ...],
                 confidence: float, ms: float, batch: int, exit_layer: int | None = None,
                 threshold: float | None = None, passes: int = 1):
        """Fills the fields straight into the instance's dict (see `Record.__init__`)."""
        self.__dict__.update(tier=tier, label_id=label_id, probabilities=probabilities,
                             confidence=confidence, ms=ms, batch=batch, exit_layer=exit_layer,
                             threshold=threshold, passes=passes)

    def to_json(self) -> dict[str, Any]:
        """The visit as written to the errors file (fields that do not apply left out)."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if value is not None or key not in ("exit_layer", "threshold")}


@dataclass(frozen=True, init=False)
class Record:
    """A record on its way through the cascade, with the visits of the tiers it has been to
    (the last one decided it, once it is decided)."""

    id: RecordId
    text: str | None
    text_pair: str | None = None
    gold: int | None = None
    gold_unrecognized: str | None = None  # a gold label that matched no label name or id
    passthrough: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    position: int | None = None
    tiers: tuple[Visit, ...] = ()

    def __init__(self, id: RecordId, text: str | None, text_pair: str | None = None,
                 gold: int | None = None, gold_unrecognized: str | None = None,
                 passthrough: dict[str, Any] | None = None, source: str | None = None,
                 position: int | None = None, tiers: tuple[Visit, ...] = ()):
        """Fills the fields straight into the instance's dict: a frozen dataclass's own
        `__init__` goes through `object.__setattr__` once per field, which costs twice as
        much, and records and visits are made once per record (and tier) of a job. The
        fields stay the dataclass's (tests/test_records.py checks that this signature
        matches them)."""
        self.__dict__.update(id=id, text=text, text_pair=text_pair, gold=gold,
                             gold_unrecognized=gold_unrecognized,
                             passthrough={} if passthrough is None else passthrough,
                             source=source, position=position, tiers=tiers)

    @property
    def last_visit(self) -> Visit:
        return self.tiers[-1]

    def visited(self, visit: Visit) -> "Record":
        """The record with one more tier's visit."""
        return self.replaced(tiers=self.tiers + (visit,))

    def with_last_visit(self, **changes: Any) -> "Record":
        """The record with its last visit changed."""
        last = dataclasses.replace(self.tiers[-1], **changes)
        return self.replaced(tiers=self.tiers[:-1] + (last,))

    def replaced(self, **changes: Any) -> "Record":
        """`dataclasses.replace`, without its per-call look-up of the fields and the frozen
        `__init__`'s `object.__setattr__` per field: a record is copied a few times on its
        way, and the general version cost more than the n-gram tier's model per record.
        (Record has no `__post_init__` to skip.)"""
        if not changes.keys() <= RECORD_FIELDS:
            raise TypeError(f"Record has no field(s) {sorted(changes.keys() - RECORD_FIELDS)}")
        copy = object.__new__(Record)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy


RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))
Chunk = list[Record]


@dataclass(frozen=True)
class DeadLetter:
    """A record (or file) the job could not classify: where it came from, which stage
    refused it, why, the raw input as text (so the errors file can always be written and the
    record replayed after a fix), and the visits of the tiers that scored it before the one
    that failed on it."""

    stage: str
    reason: str
    raw: str
    source: str | None = None
    position: int | None = None
    tiers: tuple[Visit, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The dead letter as a line of the errors file."""
        return {"stage": self.stage, "reason": self.reason, "source": self.source,
                "position": self.position, "raw": self.raw,
                "tiers": [visit.to_json() for visit in self.tiers]}


@dataclass(frozen=True)
class Prediction:
    """The fixed columns of a predictions row (the output's schema starts with these; then a
    confidence per tier and the pass-through fields follow)."""

    id: RecordId
    label: str
    label_id: int
    confidence: float
    decided_by: str
    probabilities: tuple[float, ...]


PREDICTION_COLUMNS = tuple(f.name for f in dataclasses.fields(Prediction))


def passthrough_columns(passthrough: Sequence[str], tier_names: Sequence[str]
                        ) -> list[tuple[str, str]]:
    """(input field, output column) for each pass-through field: a field named like one of
    the output's own columns (PREDICTION_COLUMNS, a tier's `confidence_<tier>`) is written as
    `input_<name>`. Raises ConfigError when two fields would be written as one column: a row
    would keep only one of the two values, and a Parquet file would hold the column twice
    (which pyarrow cannot read back). The job builds its RecordFields, which calls this, on
    the launcher, so the refusal comes before anything runs."""
    taken = set(PREDICTION_COLUMNS) | {f"confidence_{name}" for name in tier_names}
    columns = [(name, f"input_{name}" if name in taken else name) for name in passthrough]
    written_by: dict[str, str] = {}
    for name, column in columns:
        if column in written_by:
            raise ConfigError(_same_column(written_by[column], name, column))
        written_by[column] = name
    return columns


def _same_column(first: str, second: str, column: str) -> str:
    if first == second:
        return (f"passthrough field {first!r} is listed twice in passthrough_fields; "
                "list it once")
    return (f"passthrough fields {first!r} and {second!r} would both be written as column "
            f"{column!r} (a field named like one of the output's own columns is written as "
            "input_<name>); drop one from passthrough_fields")


def prediction_row(record: Record, labels: Sequence[str]) -> dict[str, Any]:
    """The fixed columns of a decided record's output row (PREDICTION_COLUMNS, in order;
    built directly: `dataclasses.asdict` deep-copies, at a cost per record)."""
    final = record.last_visit
    return {"id": record.id, "label": labels[final.label_id], "label_id": final.label_id,
            "confidence": final.confidence, "decided_by": final.tier,
            "probabilities": final.probabilities}


def output_rows(chunk: Chunk, labels: Sequence[str], tier_names: Sequence[str],
                passthrough: Sequence[str]) -> list[dict[str, Any]]:
    """The output rows of a chunk of decided records: each record's decision
    (`Prediction`'s columns), its confidence at each tier (None where it did not go),
    its pass-through fields. A pass-through field whose name clashes with an output column
    is written as `input_<name>`. (Column names are made once per chunk, not per row.)"""
    confidence_columns = [(name, f"confidence_{name}") for name in tier_names]
    renamed = passthrough_columns(passthrough, tier_names)
    rows = []
    for record in chunk:
        row = prediction_row(record, labels)
        confidences = {visit.tier: visit.confidence for visit in record.tiers}
        for name, column in confidence_columns:
            row[column] = confidences.get(name)
        for name, column in renamed:
            row[column] = record.passthrough.get(name)
        rows.append(row)
    return rows


def raw_text(raw: Any) -> str:
    """A raw input as the errors file keeps it: text as it is, anything else as JSON."""
    return raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
