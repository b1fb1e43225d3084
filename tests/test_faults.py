"""Faults: transient failures retried without duplicates, interrupted runs replaced cleanly,
and the same predictions run after run on every runner tested.

A tier whose model raises on a batch is in test_end_to_end.py
(test_a_tier_that_raises_sends_its_batches_to_dead_letters).
"""
import json

import pytest
from conftest import read_predictions, run_job

import transforms.parsing as parsing
from pipeline.io import SUCCESS_FILE
from pipeline.run import run

RECORDS = 300


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "in.jsonl"
    words = "good bad movie plot fun dull great awful".split()
    path.write_text("".join(
        json.dumps({"id": f"r{i}", "text": " ".join(words[(i * 3 + j) % 8]
                                                     for j in range(i % 9 + 1))}) + "\n"
        for i in range(RECORDS)))
    return path


def _args(data, out, models):
    return ["--input", str(data), "--output", str(out), "--id_field", "id",
            "--tier1", models["small"], "--tier2", models["medium"], "--tier3", models["large"],
            "--threshold", "0.9,0.95"]


def _fail_on(monkeypatch, record_id: str, times: int) -> dict:
    """Makes parsing raise on `record_id` the first `times` times it is seen (the DoFn runs
    in this process on the runners used here)."""
    seen = {"failures": 0}
    to_record = parsing.to_record

    def flaky(row, *args, **kwargs):
        if row.get("id") == record_id and seen["failures"] < times:
            seen["failures"] += 1
            raise ConnectionError(f"injected transient fault on {record_id}")
        return to_record(row, *args, **kwargs)

    monkeypatch.setattr(parsing, "to_record", flaky)
    return seen


def test_a_transient_fault_is_retried_and_every_record_written_once(
        data, models, tmp_path, monkeypatch):
    """The BundleBasedDirectRunner retries a failed bundle (as Flink and Dataflow do); the
    output of the failed attempt is discarded, so no record is lost or doubled."""
    seen = _fail_on(monkeypatch, "r123", times=1)
    out = tmp_path / "out"
    stats = run(_args(data, out, models) + ["--runner", "BundleBasedDirectRunner"])
    ids = [p["id"] for p in read_predictions(out)]
    assert seen["failures"] == 1
    assert sorted(ids) == sorted(f"r{i}" for i in range(RECORDS))
    assert stats["records_read"] == stats["predictions"] == RECORDS and stats["errors"] == 0


def test_an_interrupted_run_is_replaced_cleanly_by_the_rerun(data, models, tmp_path,
                                                            monkeypatch):
    """The FnApiRunner does not retry: the fault fails the job midway, which leaves no
    completion marker; the rerun replaces every file the failed one left."""
    out = tmp_path / "out"
    run_job(_args(data, out, models))
    assert (out / SUCCESS_FILE).exists()
    _fail_on(monkeypatch, "r123", times=10 ** 6)
    with pytest.raises(Exception, match="injected transient fault"):
        run_job(_args(data, out, models))
    assert not (out / SUCCESS_FILE).exists()
    monkeypatch.undo()
    (out / "beam-temp-predictions-0123").mkdir()
    (out / "beam-temp-predictions-0123" / "half-written").write_text("stale")
    (out / "predictions-00007-of-00009.parquet").write_text("a shard of some other run")

    stats = run_job(_args(data, out, models))
    assert (out / SUCCESS_FILE).exists()
    assert not list(out.glob("beam-temp-*"))
    assert not (out / "predictions-00007-of-00009.parquet").exists()
    assert sorted(p["id"] for p in read_predictions(out)) == sorted(
        f"r{i}" for i in range(RECORDS))
    assert stats["predictions"] == RECORDS


RUNNERS = {
    "FnApiRunner": ["--runner", "FnApiRunner"],
    "BundleBasedDirectRunner": ["--runner", "BundleBasedDirectRunner"],
    "FnApiRunner, 2 processes": ["--runner", "FnApiRunner", "--direct_running_mode",
                                 "multi_processing", "--direct_num_workers", "2"],
}


def test_same_predictions_run_after_run_on_every_runner(data, models, tmp_path):
    """Labels, deciding tiers and confidences (to float rounding: batches are composed
    differently on each runner) are identical across runs and runners."""
    def job(name, runner_args):
        out = tmp_path / name.replace(" ", "_").replace(",", "")
        stats = run(_args(data, out, models) + runner_args)
        return stats, {p["id"]: p for p in read_predictions(out)}

    first_stats, first = job("first", RUNNERS["FnApiRunner"])
    runs = {"again": job("again", RUNNERS["FnApiRunner"])}
    runs.update({name: job(name, args) for name, args in RUNNERS.items()
                 if name != "FnApiRunner"})
    for name, (stats, other) in runs.items():
        assert other.keys() == first.keys(), name
        for record_id, p in first.items():
            q = other[record_id]
            assert (q["label"], q["decided_by"]) == (p["label"], p["decided_by"]), name
            for key in ("confidence_tier1", "confidence_tier2", "confidence_tier3"):
                assert q[key] == pytest.approx(p[key], abs=1e-6), (name, key)
        counts = ("seen", "decided", "escalated", "failed")
        assert [[t[k] for k in counts] for t in stats["tiers"]] == [
            [t[k] for k in counts] for t in first_stats["tiers"]], name
