"""calibrate_on_input: a job that chooses its thresholds on a hash sample of its own input
(and the labelled evidence its config names) under the accuracy guarantee, then routes by
them and says so in its statistics."""
import json
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import labelled_rows, read_predictions, run_job, write_jsonl

from models.config import ConfigError
from models.hash_sample import BottomHashSample, stable_hash
from models.routing_stats import RoutingStats
from pipeline.config import cascade_config
from pipeline.flags import run_parser
from pipeline.input_calibration import input_policy, sample_input
from pipeline.summary import format_summary
from transforms.parsing import RecordFields

WORDS = "good bad movie plot fun dull great awful brilliant boring"


def _input_rows(count: int) -> list[dict]:
    return [{"id": f"r{i}", **row} for i, row in enumerate(
        labelled_rows(count, WORDS, step=3, max_words=6, period=1))]


def _labelled_file(tmp_path, count: int = 60, labels: tuple[str, str] = ("neg", "pos")):
    path = tmp_path / "labelled.tsv"
    rows = labelled_rows(count, WORDS, step=7, max_words=5, period=1)
    path.write_text("text\tlabel\n" + "".join(
        f"{r['text']}\t{labels[r['label'] == 'pos']}\n" for r in rows))
    return path


def _config(tmp_path, models, calibrate_on_input: dict | None, **top) -> str:
    """A calibrated-looking two-tier config (temperatures and calibrate's timings)."""
    path = tmp_path / "tuned.yaml"
    raw = {"label_field": "label", **top, "tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9, "temperature": 1.0,
         "seconds_per_record": 0.001},
        {"name": "large", "model": models["large"], "temperature": 1.0,
         "seconds_per_record": 0.01}]}
    if calibrate_on_input is not None:
        raw["calibrate_on_input"] = calibrate_on_input
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _built(config: str, *flags: str):
    return cascade_config(run_parser().parse_known_args(["--config", config, *flags])[0])


# The sample ---------------------------------------------------------------------------------

def test_the_bottom_hash_sample_keeps_the_smallest_keys_in_bounded_memory():
    keys = [(stable_hash(["id", i]), 0) for i in range(5000)]
    sample = BottomHashSample(7)
    for key, i in zip(keys, range(5000)):
        sample.offer(key, i)
        assert len(sample) <= 7
    smallest = sorted(range(5000), key=lambda i: keys[i])[:7]
    assert sample.items() == smallest
    assert stable_hash("a") == stable_hash("a") != stable_hash("b")
    assert stable_hash(1) != stable_hash("1")  # ids 1 and "1" are two ids


@pytest.mark.parametrize("id_field", ["id", None])
def test_the_same_records_are_sampled_whatever_the_file_order_or_split(tmp_path, id_field):
    """By id (or, without ids, by text): the same sample from one file, or the same
    records shuffled over a JSON Lines and a Parquet file."""
    rows = _input_rows(80)
    one = write_jsonl(tmp_path / "one.jsonl", rows)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    split = tmp_path / "split"
    split.mkdir()
    write_jsonl(split / "a.jsonl", shuffled[:50])
    pq.write_table(pa.Table.from_pylist(shuffled[50:]), split / "b.parquet")
    fields = RecordFields("text", id_field, None, None, (), ("neg", "pos"))

    whole = sample_input([str(one)], fields, 12, None)
    parts = sample_input([str(split / "*")], fields, 12, None)
    assert whole.records_read == parts.records_read == 80
    assert len(whole.records) == 12
    key = (lambda r: r.id) if id_field else (lambda r: r.text)
    assert [key(r) for r in whole.records] == [key(r) for r in parts.records]
    assert [r.text for r in whole.records] != [r["text"] for r in rows[:12]]  # not the first


def test_records_the_job_would_dead_letter_are_not_sampled(tmp_path):
    rows = _input_rows(20) + [{"id": "bad", "text": ""}, {"id": "none"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    fields = RecordFields("text", "id", None, None, (), ("neg", "pos"))
    sample = sample_input([str(path)], fields, 100, None)
    assert (sample.records_read, sample.invalid, len(sample.records)) == (20, 2, 20)


# The job ------------------------------------------------------------------------------------

def test_a_job_calibrated_on_its_input_routes_by_the_chosen_thresholds_and_states_the_bound(
        tmp_path, models):
    labelled = _labelled_file(tmp_path)
    config = _config(tmp_path, models, {"records": 30, "labelled": "labelled.tsv",
                                        "max_accuracy_drop": 100, "confidence": 0.8})
    data = write_jsonl(tmp_path / "in.jsonl", _input_rows(60))
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--config", config])

    calibration = stats.input_calibration
    assert (calibration.records_sampled, calibration.records_read) == (30, 60)
    assert (calibration.labelled, calibration.labelled_records) == (str(labelled), 60)
    assert (calibration.max_accuracy_drop, calibration.confidence) == (100, 0.8)
    assert calibration.thresholds is not None and calibration.thresholds != (0.9,)
    assert 0 <= calibration.drop_bound <= 100 and calibration.evidence
    threshold, = calibration.thresholds
    assert stats.tiers[0].threshold == threshold  # routed by it, not by the config's 0.9
    for row in read_predictions(out):
        assert (row["decided_by"] == "small") == (row["confidence_small"] >= threshold)
    assert stats.guarantee.unlabelled_records == 30  # the promise the new thresholds carry
    assert stats.guarantee.labelled_records == 60
    assert stats.shifted_tiers == ()

    written = RoutingStats.from_json(json.loads((out / "routing_stats.json").read_text()))
    assert written.input_calibration == calibration
    summary = format_summary(stats, str(out))
    assert (f"calibrated on this input: threshold {threshold:.4f} chosen on 30 records "
            "sampled of 60 read") in summary
    assert "60 labelled records" in summary and "budget 100 points" in summary
    assert f"at most {calibration.drop_bound:.2f} points" in summary


def test_when_no_threshold_passes_every_record_goes_to_the_last_tier_and_it_is_said(
        tmp_path, models):
    _labelled_file(tmp_path)
    config = _config(tmp_path, models, {"records": 20, "labelled": "labelled.tsv",
                                        "max_accuracy_drop": 0.01, "confidence": 0.99})
    data = write_jsonl(tmp_path / "in.jsonl", _input_rows(30))
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--config", config])

    assert stats.input_calibration.thresholds is None
    assert stats.input_calibration.drop_bound is None
    assert {row["decided_by"] for row in read_predictions(out)} == {"large"}
    assert stats.predictions == 30 and stats.failures == ()
    assert stats.guarantee is None  # no promise is claimed
    summary = format_summary(stats, str(out))
    assert ("calibrated on this input: NO threshold keeps the accuracy drop within the "
            "budget of 0.01 points at confidence 99%") in summary
    assert "every record went to the last tier, 'large', alone" in summary


# Settings and refusals ----------------------------------------------------------------------

def test_the_budget_and_confidence_default_to_the_calibrated_guarantee(tmp_path, models):
    _labelled_file(tmp_path)
    plain = _config(tmp_path, models, {"labelled": "labelled.tsv"})
    policy = input_policy(_built(plain))
    assert (policy.max_accuracy_drop, policy.confidence) == (0.5, 0.9)
    assert _built(plain).calibrate_on_input.records == 20000

    promise = {"max_accuracy_drop": 2.0, "confidence": 0.95, "drop_bound": 1.8,
               "labelled_records": 872, "unlabelled_records": 0, "evidence": "the labels",
               "expected_escalation": 0.3, "expected_speedup": 2.5,
               "calibrated_on": "2026-12-07"}
    tuned = _config(tmp_path, models, {"labelled": "labelled.tsv"}, guarantee=promise)
    policy = input_policy(_built(tuned))
    assert (policy.max_accuracy_drop, policy.confidence) == (2.0, 0.95)
    given = _config(tmp_path, models, {"labelled": "labelled.tsv", "max_accuracy_drop": 1},
                    guarantee=promise)
    assert input_policy(_built(given)).max_accuracy_drop == 1
    assert _built(given, "--calibrate_on_input", "500").calibrate_on_input.records == 500


@pytest.mark.parametrize("block, flags, message", [
    ({"labelled": "labelled.tsv", "records": 0}, (),
     "calibrate_on_input: records 0 must be a whole number >= 1"),
    ({"labelled": "labelled.tsv"}, ("--calibrate_on_input", "0"),
     "calibrate_on_input: records 0 must be a whole number >= 1"),
    ({"records": 10}, (), "calibrate_on_input lacks 'labelled'"),
    ({"labelled": "labelled.tsv", "confidence": 1.5}, (),
     "calibrate_on_input: confidence 1.5 must be between 0 and 1"),
    ({"labelled": "labelled.tsv", "sample": 3}, (), "unknown key(s) ['sample']"),
    (None, ("--calibrate_on_input", "100"),
     "--calibrate_on_input needs the labelled evidence"),
])
def test_bad_settings_are_refused_before_the_job(tmp_path, models, block, flags, message):
    config = _config(tmp_path, models, block)
    with pytest.raises(ConfigError, match=re.escape(message)):
        _built(config, *flags)


def test_tiers_calibrate_has_not_timed_are_refused(tmp_path, models):
    _labelled_file(tmp_path)
    data = write_jsonl(tmp_path / "in.jsonl", _input_rows(10))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"calibrate_on_input": {"labelled": "labelled.tsv"},
                                      "tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    with pytest.raises(ConfigError, match=r"tier\(s\) \['small', 'large'\] carry no "
                                          "temperature .* run beam-cascade calibrate first"):
        run_job(["--input", str(data), "--output", str(tmp_path / "out"),
                 "--config", str(config)])


def test_a_missing_labelled_file_and_other_labels_are_refused(tmp_path, models):
    data = write_jsonl(tmp_path / "in.jsonl", _input_rows(10))
    config = _config(tmp_path, models, {"labelled": "nowhere.tsv"})
    with pytest.raises(ConfigError, match="calibrate_on_input: the labelled file .*nowhere.tsv"
                                          ".* does not exist"):
        run_job(["--input", str(data), "--output", str(tmp_path / "out"), "--config", config])

    _labelled_file(tmp_path, labels=("bad", "good"))
    config = _config(tmp_path, models, {"labelled": "labelled.tsv"})
    with pytest.raises(ConfigError, match=r"calibrate_on_input: .*labels \['bad', 'good'\], "
                                          r"not among \['neg', 'pos'\]"):
        run_job(["--input", str(data), "--output", str(tmp_path / "out"), "--config", config])


def test_a_streaming_source_is_refused(tmp_path, models):
    _labelled_file(tmp_path)
    config = _config(tmp_path, models, {"labelled": "labelled.tsv"})
    with pytest.raises(ConfigError, match="cannot be sampled ahead"):
        run_job(["--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "out"),
                 "--config", config, "--streaming"])
