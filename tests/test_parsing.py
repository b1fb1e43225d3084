import dataclasses
import datetime
import json
from decimal import Decimal

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import json_values, lines

from models.text_checks import has_visible_character
from transforms.dead_letters import DEAD_LETTERS
from transforms.parsing import (InvalidRecord, ParseRecords, RecordFields,
                                decode_json_line, decode_with_json, label_id,
                                to_record)
from transforms.records import Record

FIELDS = RecordFields(text_field="text", id_field="id", label_field="label",
                      passthrough_fields=("extra",), labels=("neg", "pos"))


@pytest.mark.parametrize("line, reason", [
    (b"{bad json\n", "invalid JSON"),
    (b"[1, 2]\n", "JSON value is a list, not an object"),
    (b'"just a string"\n', "JSON value is a str, not an object"),
    (b'{"text": "caf\xe9"}\n', "not valid UTF-8"),
])
def test_undecodable_lines_are_invalid(line, reason):
    with pytest.raises(InvalidRecord, match=reason):
        decode_json_line(line)


def test_unpaired_surrogates_in_fields_the_job_reads_make_dead_letters():
    lines = [b'{"text": "a\\ud800"}', b'{"text": "ok", "extra": ["\\udfff"]}',
             b'{"text": "ok", "unread": "\\udfff"}', b'{"text": "\\ud83d\\ude00 good"}']
    outputs = [list(ParseRecords(FIELDS).process([("f.jsonl", n, line)]))[0]
               for n, line in enumerate(lines, start=1)]
    assert [o.value.reason for o in outputs[:2]] == [
        "'text' holds an unpaired UTF-16 surrogate \\ud800 (character 1), which is not valid "
        "Unicode (a lone JSON escape \\ud800 to \\udfff, or a command-line byte that is not "
        "UTF-8)",
        "JSON holds an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff), which is not "
        "valid Unicode"]
    assert [chunk[0].text for chunk in outputs[2:]] == ["ok", "\U0001f600 good"]


def test_blank_lines_are_not_records():
    assert decode_json_line(b"   \n") is None


@pytest.mark.parametrize("row, reason", [
    ({"id": 1}, "no 'text' field"),
    ({"text": None}, "'text' is null"),
    ({"text": 42}, "'text' is a int, not a string"),
    ({"text": ["a"]}, "'text' is a list, not a string"),
    ({"text": ""}, "'text' is empty"),
    ({"text": " \t\n"}, "'text' is empty"),
    ({"text": "\u200b\u200b"}, "'text' is empty"),  # zero-width spaces
    ({"text": "\u0000"}, "'text' is empty"),
    ({"text": "\x01\x02 \u2028\ufeff"}, "'text' is empty"),
])
def test_rows_without_usable_text_are_invalid(row, reason):
    with pytest.raises(InvalidRecord, match=reason):
        to_record(row, FIELDS, "f.jsonl", 3)


def test_record_keeps_id_label_and_passthrough():
    record = to_record({"id": 17, "text": "good", "label": "pos", "extra": [1]},
                       FIELDS, "f.jsonl", 3)
    assert record == Record(id=17, text="good", text_pair=None, gold=1,
                            passthrough={"extra": [1]}, source="f.jsonl", position=3, tiers=())


def test_missing_id_is_generated_from_the_position():
    assert to_record({"text": "good"}, FIELDS, "data/f.jsonl", 3).id == "data/f.jsonl:3"


@pytest.mark.parametrize("value, expected", [
    (1, 1), ("1", "1"), (True, True), (2.5, 2.5), ("r-7", "r-7"),
    (None, "f.jsonl:3"), ("", "f.jsonl:3"), (float("nan"), "f.jsonl:3"),
])
def test_ids_keep_their_json_type_and_empty_ones_are_generated(value, expected):
    """1 and "1" stay two ids, true stays a boolean (no Python str()), "" gets an id."""
    record_id = to_record({"text": "good", "id": value}, FIELDS, "f.jsonl", 3).id
    assert record_id == expected and type(record_id) is type(expected)


@pytest.mark.parametrize("value, reason", [
    ({"a": 1}, "'id' is a dict; an id must be a string or a number"),
    ([1, 2], "'id' is a list; an id must be a string or a number"),
    (b"\x00", "'id' is a bytes"),
    (float("inf"), "'id' is inf, which is not an id"),
])
def test_ids_that_are_not_json_scalars_are_invalid(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        to_record({"text": "good", "id": value}, FIELDS, "f.jsonl", 3)


@pytest.mark.parametrize("value, expected", [
    (Decimal("12"), 12), (Decimal("1E+3"), 1000), (Decimal("12.50"), "12.50"),
    (Decimal("1.0E-7"), "0.00000010"), (datetime.date(2024, 1, 2), "2024-01-02"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 6), "2024-01-02T03:04:05.000006"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
     "2024-01-02T03:04:05-05:00"),
    (datetime.time(23, 59), "23:59:00"),
])
def test_decimal_date_and_time_ids_become_the_json_scalar_that_names_them_exactly(value, expected):
    record_id = to_record({"text": "good", "id": value}, FIELDS, "f.parquet", 3).id
    assert record_id == expected and type(record_id) is type(expected)


@pytest.mark.parametrize("value, reason", [
    (Decimal("NaN"), "'id' is NaN, which is not an id"),
    (Decimal("-Infinity"), "'id' is -Infinity, which is not an id"),
    (datetime.timedelta(seconds=5), "'id' is a timedelta; an id must be a string or a number"),
])
def test_decimal_ids_that_are_not_numbers_and_durations_are_invalid(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        to_record({"text": "good", "id": value}, FIELDS, "f.parquet", 3)


def test_the_id_field_defaults_to_id_and_can_be_switched_off():
    row = {"text": "good", "id": "mine"}
    assert to_record(row, RecordFields(), "f.jsonl", 3).id == "mine"
    assert to_record(row, RecordFields(id_field=None), "f.jsonl", 3).id == "f.jsonl:3"


def test_text_pair_is_required_when_configured():
    fields = RecordFields(text_pair_field="hypothesis", labels=("neg", "pos"))
    assert to_record({"text": "a", "hypothesis": "b"}, fields, "f", 1).text_pair == "b"
    with pytest.raises(InvalidRecord, match="no 'hypothesis' field"):
        to_record({"text": "a"}, fields, "f", 1)


@pytest.mark.parametrize("value, expected", [
    ("pos", 1), (0, 0), ("1", 1), (1.0, 1), (2, None), ("positive", None), (True, None),
    ("\u00b2", None), ("-1", None),
])
def test_gold_labels_map_by_name_or_id(value, expected):
    assert label_id(value, ("neg", "pos")) == expected


def test_unrecognized_gold_label_is_kept_for_the_statistics():
    record = to_record({"text": "a", "label": "maybe"}, FIELDS, "f", 1)
    assert record.gold is None and record.gold_unrecognized == "maybe"


def test_parse_dofn_splits_records_and_dead_letters():
    """Each chunk of rows gives a chunk of its valid records (none when it has none)."""
    rows = [("f.jsonl", 1, b'{"text": "good"}\n'), ("f.jsonl", 2, b"oops\n"),
            ("f.jsonl", 3, b"\n"), ("f.parquet", 0, {"text": 3}),
            ("f.jsonl", 4, b'{"text": "fine"}\n'), ("f.jsonl", 5, b'{"text": "well"}\n')]
    with TestPipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create([rows[:2], rows[2:4], rows[4:]])
               | beam.ParDo(ParseRecords(FIELDS)).with_outputs(DEAD_LETTERS, main="records"))
        assert_that(out.records | beam.Map(lambda chunk: [r.id for r in chunk]),
                    equal_to([["f.jsonl:1"], ["f.jsonl:4", "f.jsonl:5"]]), label="records")
        assert_that(out[DEAD_LETTERS] | beam.Map(lambda d: (d.source, d.position, d.stage, d.raw)),
                    equal_to([("f.jsonl", 2, "parse", "oops"),
                              ("f.parquet", 0, "parse", '{"text": 3}')]),
                    label="dead letters")


@settings(max_examples=500, deadline=None)
@given(lines)
def test_any_line_becomes_a_record_a_dead_letter_or_a_blank(line):
    """Parsing never raises: no line can crash the job, and Beam can encode what it emits."""
    outputs = list(ParseRecords(FIELDS).process([("f.jsonl", 1, line)]))
    assert len(outputs) <= 1
    for output in outputs:
        if isinstance(output, TaggedOutput):
            assert output.tag == DEAD_LETTERS and output.value.reason
            emitted = output.value
        else:
            emitted, = output
            assert isinstance(emitted.text, str) and emitted.text.strip()
        json.dumps(dataclasses.asdict(emitted), ensure_ascii=False).encode("utf-8")


@given(st.text())
def test_the_fast_test_for_a_visible_character_agrees_with_the_plain_definition(text):
    assert has_visible_character(text) == any(c.isprintable() and not c.isspace()
                                              for c in text)


def _decoded(decode, line):
    try:
        return "row", decode(line)
    except InvalidRecord as e:
        return "invalid", str(e)


@given(lines | json_values.map(lambda value: json.dumps({"text": "a", "n": value}).encode()))
@settings(max_examples=300)
def test_orjson_decodes_every_line_as_pythons_json_does(line):
    """orjson is the fast path; Python's json decides what a line holds (same rows, same
    reasons), including the values orjson reads otherwise or refuses."""
    assert repr(_decoded(decode_json_line, line)) == repr(_decoded(decode_with_json, line))


@pytest.mark.parametrize("line", [
    b'{"id": 123456789012345678901234567890, "text": "a"}',  # orjson: a float
    b'{"id": -9223372036854775809, "text": "a"}',
    b'{"text": "a", "x": NaN, "y": 1e400}',  # orjson refuses both
    b'{"text": "a\\ud800"}',
])
def test_values_orjson_reads_otherwise_are_decoded_by_pythons_json(line):
    assert repr(decode_json_line(line)) == repr(json.loads(line))


@pytest.mark.parametrize("depth", [300, 990, 1010, 1100])
def test_deeply_nested_lines_decode_as_pythons_json_decides(depth):
    line = b'{"text": "a", "deep": ' + b"[" * depth + b"]" * depth + b"}"
    assert repr(_decoded(decode_json_line, line)) == repr(_decoded(decode_with_json, line))
