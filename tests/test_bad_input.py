"""The bad-input matrix: every kind of bad input ends as a prediction, a dead letter with a
clear reason, or a clear error before the job starts; never a crash, never a silent drop.

docs/reliability.md's "Bad input" table is this test's expectations, row by row.
"""
import datetime
import json
import math
import re
import logging
from collections import Counter
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.pvalue import TaggedOutput
from conftest import read_errors, read_predictions, run_job, snapshot, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import file_lines, json_values

from pipeline.run import main
from pipeline.sinks import to_json_line
from pipeline.sources import (InputError, ReadInputFile, list_input_files, read_json_lines,
                              read_parquet_rows)
from transforms.dead_letters import DEAD_LETTERS
from transforms.parsing import ParseRecords, RecordFields

BAD_LINES = {  # JSON Lines input -> the start of its dead-letter reason
    b"{not json": "invalid JSON",
    b"[1, 2]": "JSON value is a list, not an object",
    b'{"id": "no-text"}': "no 'text' field",
    b'{"text": null}': "'text' is null",
    b'{"text": 3.5}': "'text' is a float, not a string",
    b'{"text": ""}': "'text' is empty",
    b'{"text": " \\t "}': "'text' is empty",
    b'{"text": "caf\xe9"}': "line is not valid UTF-8",
    b'{"text": "half a pair \\ud800"}': "'text' holds an unpaired UTF-16 surrogate",
    b'{"text": "ok", "id": "\\udfff"}': "JSON holds an unpaired UTF-16 surrogate escape",
}
MEGABYTE_TEXT = "good movie " * 95_000  # ~1 MB
TWO_TEXT_COLUMNS = pa.Table.from_arrays(  # pyarrow writes duplicate column names as they are
    [pa.array(["good film"]), pa.array([7]), pa.array(["bad film"])], names=["text", "id", "text"])


def _write_inputs(folder):
    """One file per kind of bad input, and the good records among them."""
    folder.mkdir()
    good = [{"text": "good movie", "id": "dup"}, {"text": "bad plot", "id": "dup"},
            {"text": MEGABYTE_TEXT, "id": "huge"}]
    lines = [json.dumps(r).encode() for r in good] + list(BAD_LINES)
    (folder / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "empty.jsonl").write_bytes(b"")
    pq.write_table(pa.table({"text": [1, 2]}), folder / "int_text.parquet")
    whole = folder / "whole.parquet"
    pq.write_table(pa.table({"text": [f"fine film {i}" for i in range(5000)]}), whole)
    (folder / "truncated.parquet").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    (folder / "garbage.parquet").write_bytes(b"PAR1 not a parquet file")
    pq.write_table(TWO_TEXT_COLUMNS, folder / "two_text_columns.parquet")
    return good


def test_each_bad_input_is_a_dead_letter_with_its_reason(tmp_path, models, caplog):
    good = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        stats = run_job(["--input", str(tmp_path / "in" / "*"), "--output", str(out),
                         "--tier1", models["small"], "--tier2", models["large"],
                         "--threshold", "0.9", "--id_field", "id"])
    predictions, errors = read_predictions(out), read_errors(out)

    assert Counter(p["id"] for p in predictions) == {"dup": 2, "huge": 1}
    assert stats.records_read == stats.predictions + stats.errors == len(good) + len(
        BAD_LINES) + 2
    assert stats.unaccounted == 0 and stats.files_unread == 3
    parse = {e["position"]: e["reason"] for e in errors
             if e["stage"] == "parse" and e["source"].endswith("mixed.jsonl")}
    assert len(parse) == len(BAD_LINES)
    for position, expected in enumerate(BAD_LINES.values(), start=len(good) + 1):
        assert parse[position].startswith(expected), (position, parse[position])
    mistyped = [e for e in errors if e["source"].endswith("int_text.parquet")]
    assert [e["reason"] for e in mistyped] == ["'text' is a int, not a string"] * 2
    unreadable = {e["source"].rsplit("/", 1)[1]: e["reason"] for e in errors
                  if e["stage"] == "read"}
    assert sorted(unreadable) == ["garbage.parquet", "truncated.parquet",
                                  "two_text_columns.parquet"]
    assert all("cannot read parquet file" in r for r in unreadable.values())
    assert unreadable["two_text_columns.parquet"].endswith(
        "it has 2 columns named 'text' (columns 1 and 3): rename or drop all but one")
    assert "empty.jsonl is empty" in caplog.text


def test_a_glob_that_matches_nothing_is_an_error_naming_it(tmp_path, models, capsys):
    pattern = str(tmp_path / "nowhere" / "*.jsonl")
    assert main(["--input", pattern, "--output", str(tmp_path / "out"),
                 "--tier1", models["small"]]) == 2
    assert f"input pattern {pattern!r} matches no file" in capsys.readouterr().err


FIELDS = RecordFields(text_field="text", id_field="id", labels=("neg", "pos"))
@pytest.fixture(scope="module")
def previous_output(tmp_path_factory, models):
    """The output folder of a finished run, which a run refused before its job must leave as
    it was; and the run's input beside it."""
    folder = tmp_path_factory.mktemp("previous")
    write_jsonl(folder / "in.jsonl", [{"text": "good movie", "label": "pos"}])
    run_job(["--input", str(folder / "in.jsonl"), "--output", str(folder / "out"),
             "--tier1", models["small"]])
    return folder / "out"


def test_pass_through_fields_written_as_one_column_are_refused_before_the_job(
        models, capsys, previous_output):
    before = snapshot(previous_output)
    assert main(["--input", str(previous_output.parent / "in.jsonl"),
                 "--output", str(previous_output), "--tier1", models["small"],
                 "--passthrough_fields", "label,input_label"]) == 2
    assert ("passthrough fields 'label' and 'input_label' would both be written as column "
            "'input_label'") in capsys.readouterr().err
    assert snapshot(previous_output) == before


def test_a_folder_as_input_is_refused_before_the_job_with_a_pattern_to_give(
        tmp_path, models, capsys, previous_output):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"text": ["good movie"]}), folder / "part-0.parquet")
    before = snapshot(previous_output)
    assert main(["--input", str(folder), "--input_format", "parquet",
                 "--output", str(previous_output), "--tier1", models["small"]]) == 2
    assert (f"input {str(folder)!r} is a folder; give a pattern of the files in it, such as "
            f"{str(folder / '*.parquet')!r}") in capsys.readouterr().err
    assert snapshot(previous_output) == before
    with pytest.raises(InputError, match=re.escape(f"such as {str(folder / '*.jsonl')!r}")):
        list_input_files([str(folder)])
    assert list_input_files([str(folder) + "/"]) == [(str(folder / "part-0.parquet"), "parquet")]


def _parse_all(raw_rows):
    """Runs the job's parse DoFn over raw rows; returns (records, dead letters)."""
    outputs = list(ParseRecords(FIELDS).process(list(raw_rows)))
    chunks = [o for o in outputs if not isinstance(o, TaggedOutput)]
    assert len(chunks) <= 1 and all(chunks)  # one chunk of records, never an empty one
    return ([r for chunk in chunks for r in chunk],
            [o.value for o in outputs if isinstance(o, TaggedOutput) and o.tag == DEAD_LETTERS])


def _is_blank(line: bytes) -> bool:
    """The parser's rule: a line that decodes and holds only (Unicode) whitespace."""
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def _readable(path):
    return fileio.ReadableFile(FileMetadata(str(path), path.stat().st_size))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_lines)
def test_json_lines_read_equal_records_plus_dead_letters(tmp_path, file_lines):
    """Property: every non-blank line of a file is exactly one record or one dead letter."""
    path = tmp_path / "random.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in file_lines))
    raw_rows = list(read_json_lines(_readable(path)))
    records, dead = _parse_all(raw_rows)
    non_blank = [n for _, n, line in raw_rows if not _is_blank(line)]
    assert len(non_blank) == len(records) + len(dead)
    assert sorted(r.position for r in records + dead) == non_blank


column_values = st.one_of(
    st.lists(st.text(max_size=20) | st.none(), max_size=20),
    st.lists(st.integers(-5, 5) | st.none(), max_size=20),
    st.lists(st.floats(allow_nan=True) | st.none(), max_size=20),
    st.lists(st.binary(max_size=10) | st.none(), max_size=20),
    st.lists(st.lists(st.text(max_size=5), max_size=3), max_size=20),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column_values)
def test_parquet_rows_read_equal_records_plus_dead_letters(tmp_path, values):
    """Property: every Parquet row, whatever its text column's type, is exactly one record or
    one dead letter."""
    path = tmp_path / "random.parquet"
    pq.write_table(pa.table({"text": values}), path)
    records, dead = _parse_all(read_parquet_rows(_readable(path), FIELDS.columns))
    assert len(records) + len(dead) == len(values)
    assert sorted(r.position for r in records + dead) == list(range(len(values)))


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_lines)
def test_whole_job_accounts_for_every_line(tmp_path_factory, models, file_lines):
    """Property, end to end: records read = predictions + errors in the routing statistics
    and in the files written."""
    folder = tmp_path_factory.mktemp("job")
    (folder / "in.jsonl").write_bytes(b"".join(line + b"\n" for line in file_lines))
    stats = run_job(["--input", str(folder / "in.jsonl"), "--output", str(folder / "out"),
                     "--tier1", models["small"], "--tier2", models["large"],
                     "--threshold", "0.9"])
    non_blank = sum(1 for line in file_lines if not _is_blank(line))
    assert stats.records_read == non_blank == stats.predictions + stats.errors
    assert len(read_predictions(folder / "out")) == stats.predictions
    assert len(read_errors(folder / "out")) == stats.errors


def test_a_byte_order_mark_before_the_first_record_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "good movie"}\n{"text": "bad plot"}\n')
    records, dead = _parse_all(read_json_lines(_readable(path)))
    assert [r.text for r in records] == ["good movie", "bad plot"] and not dead


def test_a_file_named_several_ways_is_read_once(tmp_path, monkeypatch):
    """A relative path, an absolute one, a `..` detour and a symbolic link name one file."""
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "good"}\n')
    (tmp_path / "link-to-a.jsonl").symlink_to(folder / "a.jsonl")
    monkeypatch.chdir(folder)
    files = list_input_files(["a.jsonl", str(folder / "a.jsonl"), "../x/a.jsonl",
                              str(tmp_path / "link-to-a.jsonl"), str(folder / "*.jsonl")])
    assert len(files) == 1


def _infinities_as_null(value):
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, list):
        return [_infinities_as_null(v) for v in value]
    if isinstance(value, dict):
        return {k: _infinities_as_null(v) for k, v in value.items()}
    return value


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_output_lines_read_back_as_the_rows_written_with_infinities_as_null(row):
    assert json.loads(to_json_line(row)) == _infinities_as_null(row)


def test_output_values_json_has_no_type_for_are_written_as_text_and_long_integers_exactly():
    row = {"id": 123456789012345678901234567890, "when": datetime.date(2026, 12, 1),
           "raw": b"x", "nan": float("nan"), "text": "caf\u00e9 \U0001f600"}
    line = to_json_line(row)
    assert json.loads(line)["id"] == 123456789012345678901234567890
    assert json.loads(to_json_line({k: v for k, v in row.items() if k != "id"})) == {
        "when": "2026-12-01", "raw": "b'x'", "nan": None, "text": "caf\u00e9 \U0001f600"}


def test_a_deeply_nested_pass_through_value_is_written_like_any_other():
    deep = [[[[]]]]
    for _ in range(150):
        deep = [[[[deep]]]]
    line = to_json_line({"id": 1, "deep": deep, "nan": float("nan")})
    assert json.loads(line)["nan"] is None and json.loads(line)["deep"] == deep


@pytest.mark.parametrize("ids, expected", [
    (pa.array([Decimal("12"), Decimal("-12345678901234567890123")], pa.decimal128(38, 0)),
     [12, -12345678901234567890123]),
    (pa.array([Decimal("7")], pa.decimal256(40, 0)), [7]),
    (pa.array([Decimal("12.50"), Decimal("-0.07")], pa.decimal128(12, 2)), ["12.50", "-0.07"]),
    (pa.array([Decimal("0.0000001")], pa.decimal128(10, 8)), ["0.00000010"]),
    (pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.datetime(2024, 1, 2, 3, 4, 5, 500)],
              pa.timestamp("us")), ["2024-01-02T03:04:05", "2024-01-02T03:04:05.000500"]),
    (pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)],
              pa.timestamp("ms", tz="Europe/Paris")), ["2024-01-02T04:04:05+01:00"]),
    (pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)],
              pa.timestamp("s", tz="UTC")), ["2024-01-02T03:04:05+00:00"]),
    (pa.array([datetime.date(2024, 1, 2)], pa.date32()), ["2024-01-02"]),
    (pa.array([datetime.time(1, 2, 3)], pa.time64("us")), ["01:02:03"]),
])
def test_parquet_decimal_date_and_time_ids_are_read_as_exact_json_scalars(tmp_path, ids, expected):
    """Decimal keys as databases export them, timestamps, dates: each row keeps its own id."""
    path = tmp_path / "typed_ids.parquet"
    pq.write_table(pa.table({"text": ["good film"] * len(ids), "id": ids}), path)
    records, dead = _parse_all(read_parquet_rows(_readable(path), FIELDS.columns))
    assert not dead
    assert [r.id for r in records] == expected
    assert [type(r.id) for r in records] == [type(e) for e in expected]


def test_a_parquet_file_with_two_columns_the_job_reads_under_one_name_is_a_read_error(tmp_path):
    """Which of the two would be read is pyarrow's choice, not the user's: the file is
    refused as a whole, as a damaged one is, naming both columns."""
    path = tmp_path / "two_text_columns.parquet"
    pq.write_table(TWO_TEXT_COLUMNS, path)
    outputs = list(ReadInputFile(None, FIELDS.columns).process(_readable(path)))
    assert [o.tag for o in outputs] == [DEAD_LETTERS]
    assert outputs[0].value.stage == "read"
    assert outputs[0].value.reason == (
        f"cannot read parquet file {str(path)!r} from row 0 on: InputError: it has 2 columns "
        "named 'text' (columns 1 and 3): rename or drop all but one")
    pq.write_table(TWO_TEXT_COLUMNS.rename_columns(["text", "unread", "unread"]), path)
    assert [chunk[0][2] for chunk in ReadInputFile(None, FIELDS.columns).process(
        _readable(path))] == [{"text": "good film"}]
