"""Turns raw input rows into cascade records, or into dead letters saying what is wrong.

A raw row is `(source, position, payload)`: `payload` is the undecoded bytes of one JSON Lines
line, or a dict read from a Parquet, TSV or CSV row. Rows travel in chunks (lists) from the
reader to the parser, and the valid records of a chunk go on as a chunk of records
(transforms/records.py), so that the steps between (the shuffle that spreads the rows over
the workers above all) cost per chunk, not per row. Parsing is kept apart from file reading
so that it is the one place that decides what a valid record is, whatever the file format.
"""
from __future__ import annotations

import datetime
import decimal
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator, Union

import apache_beam as beam
import orjson
from apache_beam.pvalue import TaggedOutput

from models.config import CascadeConfig
from models.text_checks import InvalidRecord, checked_text
from transforms import progress
from transforms.coders import register_coders
from transforms.dead_letters import DEAD_LETTERS, METRICS_NAMESPACE, dead_letter
from transforms.records import Chunk, Record, passthrough_columns

RawRow = tuple[str, int, Union[bytes, dict]]
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a cheap test before the exact one
LONG_INTEGER_DIGITS = 19  # 64-bit integers have up to 19 digits (20 unsigned)
LONG_INTEGER = re.compile(rb"\d{%d}" % LONG_INTEGER_DIGITS)
DIGITS = b"0123456789"
MAX_FAST_NESTING = 256  # brackets in a line beyond which orjson is not asked


@dataclass(frozen=True)
class RecordFields:
    """Which input fields the cascade reads, and the label names of its tiers."""

    text_field: str = "text"
    id_field: str | None = "id"
    label_field: str | None = None
    text_pair_field: str | None = None
    passthrough_fields: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: CascadeConfig, labels: tuple[str, ...] = ()) -> "RecordFields":
        """The input fields a cascade config names (and its tiers' labels, to read gold
        labels). Raises ConfigError for pass-through fields that would be written as one
        output column (`passthrough_columns`): every job builds its fields on the launcher,
        so a config the output cannot hold is refused before the job starts."""
        passthrough_columns(config.passthrough_fields, config.tier_names)
        return cls(config.text_field, config.id_field, config.label_field,
                   config.text_pair_field, config.passthrough_fields, labels)

    @property
    def columns(self) -> list[str]:
        """The input columns worth reading (Parquet reads only these)."""
        named = [self.text_field, self.text_pair_field, self.id_field, self.label_field]
        return list(dict.fromkeys([c for c in named if c] + list(self.passthrough_fields)))


def decode_json_line(line: bytes) -> dict[str, Any] | None:
    """Decodes one JSON Lines line; None for a blank line. Raises InvalidRecord.

    orjson decodes a line in a fifth of the time Python's json takes (0.4 against 1.9
    microseconds on SST-2 lines), a share of the pipeline's own cost per record. Python's
    json stays the judge of what a line holds: a line orjson refuses (invalid JSON, but also
    NaN, numbers beyond the float range, lone surrogate escapes, which Python's json
    accepts), one with a run of LONG_INTEGER_DIGITS digits (an integer orjson would turn
    into a float beyond 64 bits) or one that may nest deeper than MAX_FAST_NESTING (orjson
    reads 1,023 levels, Python's json fewer) goes through `decode_with_json`, so every line
    decodes to what Python's json makes of it, and a bad one is refused for the same
    reason."""
    if (not may_hold_long_integer(line)
            and line.count(b"[") + line.count(b"{") < MAX_FAST_NESTING):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
        else:
            return _as_object(row)
    return decode_with_json(line)


def may_hold_long_integer(line: bytes) -> bool:
    """Whether the line holds a run of LONG_INTEGER_DIGITS digits. Most lines hold fewer
    digits than that in all, which bytes.translate counts in C four times faster than the
    regular expression scans a line."""
    return (len(line) - len(line.translate(None, DIGITS)) >= LONG_INTEGER_DIGITS
            and LONG_INTEGER.search(line) is not None)


def decode_with_json(line: bytes) -> dict[str, Any] | None:
    """`decode_json_line` with Python's json alone."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRecord(f"line is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        return None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRecord(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # e.g. 5,000-digit numbers, deep nesting
        raise InvalidRecord(f"JSON that cannot be decoded: {type(e).__name__}: "
                            f"{str(e)[:200]}") from None
    return _as_object(row)


def _as_object(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise InvalidRecord(f"JSON value is a {type(row).__name__}, not an object")
    return row


def reject_lone_surrogates(record: Record) -> None:
    """JSON may escape half a UTF-16 pair (`"\\ud800"`); Python decodes it into a string
    that cannot be encoded, so Beam could not even pass the record on. Raises InvalidRecord.

    Only the record is checked, not the whole row: a field the job does not read may hold
    anything."""
    try:
        json.dumps([record.id, record.text, record.text_pair, record.gold_unrecognized,
                    record.passthrough], ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecord("JSON holds an unpaired UTF-16 surrogate escape (\\ud800 to "
                            "\\udfff), which is not valid Unicode") from None


def to_record(row: dict[str, Any], fields: RecordFields, source: str, position: int) -> Record:
    """Validates one row and builds the record the tiers see. Raises InvalidRecord."""
    text = _required_text(row, fields.text_field)
    pair = _required_text(row, fields.text_pair_field) if fields.text_pair_field else None
    record_id = given_id(row, fields.id_field) if fields.id_field else None
    raw_label = row.get(fields.label_field) if fields.label_field else None
    gold = label_id(raw_label, fields.labels) if raw_label is not None else None
    return Record(
        id=f"{source}:{position}" if record_id is None else record_id,
        text=text, text_pair=pair, gold=gold,
        gold_unrecognized=str(raw_label) if raw_label is not None and gold is None else None,
        passthrough={name: row.get(name) for name in fields.passthrough_fields},
        source=source, position=position)


def given_id(row: dict[str, Any], field: str) -> str | int | float | bool | None:
    """The row's own id, kept as the JSON scalar it is (1 and "1" stay two ids); None when
    absent, null, NaN or "", so that one is generated. A Parquet decimal, date, time or
    timestamp becomes a JSON scalar (`exact_scalar_id`). Raises InvalidRecord for any other
    value."""
    value = row.get(field)
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and math.isinf(value):
        raise InvalidRecord(f"{field!r} is {value}, which is not an id")
    if not isinstance(value, (str, int, float, bool)):
        return exact_scalar_id(value, field)
    return value


def exact_scalar_id(value: Any, field: str) -> str | int:
    """An id of a type JSON has no scalar for, as Parquet gives them, as the JSON scalar that
    names it exactly, so that each row keeps an id of its own. A decimal without digits after
    the point (decimal(18, 0): integer keys as databases export them) is an integer, as a JSON
    integer is; one with digits after the point is its exact text at the column's scale
    ('12.50'; a float, as JSON readers make of 12.50, could make two ids one). A date, time or
    timestamp is its ISO 8601 text (the fraction of a second only when there is one, the
    column's time zone as an offset: '2024-01-02T04:04:05+01:00'). Raises InvalidRecord for
    anything else."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value.as_tuple().exponent >= 0 else f"{value:f}"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        raise InvalidRecord(f"{field!r} is {value}, which is not an id")
    raise InvalidRecord(f"{field!r} is a {type(value).__name__}; an id must be a string "
                        "or a number")


def label_id(value: Any, labels: tuple[str, ...]) -> int | None:
    """Maps a gold label given as a name, an id, or an id in a string to the tiers' label id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if value in labels:
            return labels.index(value)
        value = int(value) if value.strip().isascii() and value.strip().isdigit() else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value < len(labels):
        return value
    return None


def _required_text(row: dict[str, Any], field: str) -> str:
    if field not in row:
        raise InvalidRecord(f"no {field!r} field")
    return checked_text(row[field], field)


@beam.typehints.with_output_types(Chunk)
class ParseRecords(beam.DoFn):
    """Chunks of raw rows in; each chunk's valid records, as a chunk, on the main output (none
    for a chunk without one) and dead letters (stage 'parse') on DEAD_LETTERS."""

    def __init__(self, fields: RecordFields):
        register_coders()
        self._fields = fields
        self._blank = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "blank_lines_skipped")

    def process(self, raw_rows: list[RawRow]) -> Iterator[Any]:
        records, blank = [], 0
        for source, position, payload in raw_rows:
            try:
                row = decode_json_line(payload) if isinstance(payload, bytes) else payload
                if row is None:
                    blank += 1
                    continue
                record = to_record(row, self._fields, source, position)
                if isinstance(payload, bytes) and SURROGATE_ESCAPE.search(payload):
                    reject_lone_surrogates(record)
            except InvalidRecord as e:
                yield TaggedOutput(DEAD_LETTERS, dead_letter(
                    "parse", str(e), _as_text(payload), source, position))
                continue
            records.append(record)
        progress.count(progress.RECORDS_READ, len(raw_rows) - blank)
        if blank:
            self._blank.inc(blank)
        if records:
            yield records


def _as_text(payload: bytes | dict) -> str | dict:
    """The raw input as it can be written to the errors file (bad bytes replaced)."""
    return payload.decode("utf-8", "replace").rstrip("\r\n") if isinstance(payload, bytes) \
        else payload
