"""The records that flow between the job's steps, and Beam's coder for them."""
import dataclasses
import inspect
import pickle
import re

import pytest
from apache_beam.coders import registry

from models.config import ConfigError
from transforms.coders import RecordCoder, register_coders
from transforms.records import (PREDICTION_COLUMNS, Record, Visit, passthrough_columns,
                                prediction_row)

VISIT = Visit("small", 1, (0.25, 0.75), 0.75, 0.5, 64, exit_layer=2, threshold=0.8, passes=2)
RECORDS = [
    Record("r1", "a text", gold=1, passthrough={"lang": "en", "n": [1, 2]}, source="f.jsonl",
           position=3),
    Record(7, None, text_pair=None, gold_unrecognized="maybe", tiers=(VISIT, VISIT)),
    Record(2.5, "t", "pair", tiers=(VISIT,)),
]


@pytest.mark.parametrize("record", RECORDS)
def test_the_record_coder_gives_back_the_same_record(record):
    coder = RecordCoder()
    assert coder.decode(coder.encode(record)) == record


def test_the_record_coder_encodes_without_pickling_and_estimates_without_encoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickled")

    monkeypatch.setattr(pickle, "dumps", refuse)
    coder = RecordCoder()
    coder.encode(RECORDS[0])
    assert coder.estimate_size(RECORDS[2]) < 1000


def test_beam_uses_the_record_coder_for_records():
    register_coders()
    assert isinstance(registry.get_coder(Record), RecordCoder)


def test_replaced_is_dataclasses_replace():
    record = RECORDS[0]
    assert record.visited(VISIT).tiers == (VISIT,)
    assert record.visited(VISIT).with_last_visit(threshold=0.5).last_visit.threshold == 0.5
    assert record.replaced(text=None, source=None) == Record(
        "r1", None, gold=1, passthrough=record.passthrough, position=record.position)


@pytest.mark.parametrize("cls", [Record, Visit])
def test_the_hand_written_initialiser_takes_the_dataclass_fields(cls):
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields):
        default = {} if field.default_factory is dict else field.default
        given = {} if parameter.default is None and default == {} else parameter.default
        assert given == (inspect.Parameter.empty if default is dataclasses.MISSING else default)
    made = cls(*[f"value {i}" for i in range(len(fields))])
    assert [getattr(made, f.name) for f in fields] == [f"value {i}" for i in range(len(fields))]
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.tiers = ()


def test_a_prediction_row_has_the_prediction_columns_in_order():
    row = prediction_row(RECORDS[1], ["negative", "positive"])
    assert tuple(row) == PREDICTION_COLUMNS
    assert row["label"] == "positive" and row["decided_by"] == "small"


def test_pass_through_fields_named_like_output_columns_are_written_as_input_name():
    assert passthrough_columns(("label", "confidence_small", "lang", "input_lang"), ("small",)) == [
        ("label", "input_label"), ("confidence_small", "input_confidence_small"),
        ("lang", "lang"), ("input_lang", "input_lang")]


@pytest.mark.parametrize("fields, message", [
    (("label", "input_label"), "passthrough fields 'label' and 'input_label' would both be "
                               "written as column 'input_label'"),
    (("input_confidence_small", "confidence_small"),
     "passthrough fields 'input_confidence_small' and 'confidence_small' would both be written "
     "as column 'input_confidence_small'"),
    (("lang", "id", "lang"), "passthrough field 'lang' is listed twice"),
])
def test_pass_through_fields_written_as_one_column_are_refused(fields, message):
    """Two fields in one column would lose one value per row (and make a Parquet file with
    the column twice, which pyarrow cannot read back)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        passthrough_columns(fields, ("small",))
