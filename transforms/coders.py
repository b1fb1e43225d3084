"""Beam coders for the records that flow between the job's steps (transforms/records.py).

Without one, Beam falls back to pickling a Record wherever it encodes one, and it encodes far
more often than records cross a shuffle: it samples the elements of every PCollection to
estimate their size, the batches of thousands of records that RunInference builds among them.
RecordCoder writes a record as a tuple of plain values (FastPrimitivesCoder's own encodings,
no pickling) and estimates a size from its texts without encoding anything.
"""
from __future__ import annotations

from typing import Any

from apache_beam.coders import Coder, FastPrimitivesCoder, registry

from transforms.records import Record, Visit

VISIT_BYTES = 64  # the estimated size of a visit: a few numbers and a tier name
RECORD_BYTES = 48  # the estimated size of a record's fields besides its texts and visits


def record_fields(record: Record) -> tuple[Any, ...]:
    """The record as a tuple of plain values, its visits as tuples of theirs."""
    values = tuple(record.__dict__.values())
    return values[:-1] + (tuple(tuple(v.__dict__.values()) for v in record.tiers),)


def record_from_fields(values: tuple[Any, ...]) -> Record:
    return Record(*values[:-1], tiers=tuple(Visit(*v) for v in values[-1]))


class RecordCoder(Coder):
    """Records as tuples of plain values; a size estimate from the texts' lengths."""

    def __init__(self) -> None:
        self._values = FastPrimitivesCoder()

    def encode(self, record: Record) -> bytes:
        return self._values.encode(record_fields(record))

    def decode(self, encoded: bytes) -> Record:
        return record_from_fields(self._values.decode(encoded))

    def estimate_size(self, record: Record) -> int:
        return (RECORD_BYTES + len(record.text or "") + len(record.text_pair or "")
                + VISIT_BYTES * len(record.tiers))

    def is_deterministic(self) -> bool:
        return False  # pass-through fields are a dict; records are never keys

    def to_type_hint(self) -> type:
        return Record

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


def register_coders() -> None:
    """Makes Beam encode every PCollection typed Record with RecordCoder (the steps that make
    records declare it; registering again is harmless)."""
    registry.register_coder(Record, RecordCoder)
