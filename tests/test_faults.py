"""Faults: transient failures retried without duplicates, failed runs that leave the previous
run whole, models that fail to load or hang, writes that fail, a killed worker, and the same
predictions run after run on every runner tested.

A tier whose model raises on a batch is in test_end_to_end.py
(test_a_tier_that_raises_sends_its_batches_to_dead_letters).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from apache_beam.io.localfilesystem import LocalFileSystem
from conftest import ROOT, read_errors, read_predictions, run_job, snapshot

import pipeline.job as pipeline_job
import pipeline.run as pipeline_run
import pipeline.sources as pipeline_sources
import transforms.parsing as parsing
import transforms.scoring as scoring
from models.loading import TierModel
from models.routing_stats import RoutingStats
from pipeline.job import run
from pipeline.output_folder import FAILED_FILE, SUCCESS_FILE

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
    assert stats.records_read == stats.predictions == RECORDS and stats.errors == 0


def test_a_failed_run_leaves_the_previous_run_whole_and_the_rerun_replaces_it(
        data, models, tmp_path, monkeypatch):
    """The FnApiRunner does not retry: the fault fails the job midway. It wrote only into its
    staging folder, so the previous run's files (and its _SUCCESS) are exactly as they were,
    and no staging folder is left; the rerun replaces them."""
    out = tmp_path / "out"
    run_job(_args(data, out, models))
    before = snapshot(out)
    assert SUCCESS_FILE in before
    _fail_on(monkeypatch, "r123", times=10 ** 6)
    with pytest.raises(Exception, match="injected transient fault"):
        run_job(_args(data, out, models))
    assert snapshot(out) == before
    monkeypatch.undo()

    stats = run_job(_args(data, out, models))
    assert (out / SUCCESS_FILE).exists()
    assert sorted(p["id"] for p in read_predictions(out)) == sorted(
        f"r{i}" for i in range(RECORDS))
    assert stats.predictions == RECORDS


RUNNERS = {
    "FnApiRunner": ["--runner", "FnApiRunner"],
    "BundleBasedDirectRunner": ["--runner", "BundleBasedDirectRunner"],
    "FnApiRunner, 2 processes": ["--runner", "FnApiRunner", "--direct_running_mode",
                                 "multi_processing", "--direct_num_workers", "2"],
    "FnApiRunner, 2 threads": ["--runner", "FnApiRunner", "--direct_running_mode",
                               "multi_threading", "--direct_num_workers", "2"],
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
        assert [[getattr(t, k) for k in counts] for t in stats.tiers] == [
            [getattr(t, k) for k in counts] for t in first_stats.tiers], name


@pytest.fixture()
def no_backoff(monkeypatch):
    monkeypatch.setattr(pipeline_sources, "READ_BACKOFF_SECS", 0.0)


def test_a_storage_failure_mid_file_is_retried_without_losing_or_doubling_rows(
        data, models, tmp_path, monkeypatch, no_backoff):
    read = pipeline_sources.read_json_lines
    failures = []

    def flaky(readable):
        for number, row in enumerate(read(readable)):
            if number == 100 and len(failures) < 2:
                failures.append(number)
                raise ConnectionResetError("injected: connection reset by peer")
            yield row

    monkeypatch.setattr(pipeline_sources, "read_json_lines", flaky)
    out = tmp_path / "out"
    stats = run_job(_args(data, out, models))
    assert len(failures) == 2
    assert sorted(p["id"] for p in read_predictions(out)) == sorted(
        f"r{i}" for i in range(RECORDS))
    assert stats.files_unread == 0 and stats.errors == 0 and not stats.failures


def test_a_file_that_vanishes_fails_the_job_with_status_3(data, models, tmp_path,
                                                          monkeypatch, no_backoff, capsys):
    """It used to count as one dead-letter record, with exit 0 and _SUCCESS."""
    list_files = pipeline_job.list_input_files
    monkeypatch.setattr(pipeline_job, "list_input_files", lambda *a: list_files(*a) + [
        (str(tmp_path / "gone.jsonl"), "jsonl")])
    out = tmp_path / "out"
    assert pipeline_run.main(_args(data, out, models) + ["--runner", "FnApiRunner"]) == 3
    assert "1 input file(s) could not be read to the end" in capsys.readouterr().err
    stats = RoutingStats.from_json(json.loads((out / "routing_stats.json").read_text()))
    assert stats.files_unread == 1 and stats.records_read == RECORDS
    assert stats.errors == 0 and stats.unaccounted == 0
    assert (out / FAILED_FILE).exists() and not (out / SUCCESS_FILE).exists()
    [error] = read_errors(out)
    assert error["stage"] == "read" and "gone.jsonl" in error["reason"]
    assert "after 4 attempts" in error["reason"]


def test_a_model_that_fails_to_load_on_the_worker_fails_the_job_once(
        data, models, tmp_path, monkeypatch, capsys):
    """Every load fails (the launcher's checks passed): the job ends with the model's error
    and status 1, after a bounded number of tries, and the previous run stays whole."""
    out = tmp_path / "out"
    run_job(_args(data, out, models))
    before = snapshot(out)
    loads = []

    def broken(tier, *args, **kwargs):
        loads.append(tier.name)
        raise OSError(f"injected: cannot map the weights of {tier.name}")

    monkeypatch.setattr(scoring, "load_configured_tier", broken)
    assert pipeline_run.main(_args(data, out, models) + ["--runner", "FnApiRunner"]) == 1
    err = capsys.readouterr().err
    assert "the job failed; the previous run's files" in err
    assert "injected: cannot map the weights of tier" in err  # setup order is Beam's
    assert 1 <= len(loads) <= 10
    assert snapshot(out) == before


def test_a_write_failure_fails_the_job_and_touches_neither_inputs_nor_outputs(
        data, models, tmp_path, monkeypatch, capsys):
    """A read-only output folder (simulated: the tests run as root, which ignores modes)."""
    out = tmp_path / "out"
    run_job(_args(data, out, models))
    before, inputs = snapshot(out), data.read_bytes()
    create = LocalFileSystem.create

    def read_only(self, path, *args, **kwargs):
        if path.startswith(str(out)):
            raise PermissionError(13, "Permission denied", path)
        return create(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "create", read_only)
    assert pipeline_run.main(_args(data, out, models) + ["--runner", "FnApiRunner"]) == 1
    assert "Permission denied" in capsys.readouterr().err
    monkeypatch.undo()
    assert snapshot(out) == before and data.read_bytes() == inputs


def test_a_hung_model_call_is_dead_lettered_after_the_timeout(data, models, tmp_path,
                                                             monkeypatch):
    release = threading.Event()
    logits = TierModel.logits_and_exits

    def hangs_on_r7(model, texts, pairs=None):
        if HUNG_TEXT in texts:
            release.wait(120)
        return logits(model, texts, pairs)

    lines = data.read_text().splitlines()
    lines[7] = json.dumps({"id": "r7", "text": HUNG_TEXT})
    data.write_text("\n".join(lines) + "\n")
    config = tmp_path / "cascade.yaml"
    config.write_text(
        "tiers:\n"
        f"  - {{model: {models['small']}, threshold: 0.9, batch_size: 4, sort_window: 1,"
        " inference_timeout_secs: 1}\n"
        f"  - {{model: {models['large']}}}\n")
    monkeypatch.setattr(TierModel, "logits_and_exits", hangs_on_r7)
    out = tmp_path / "out"
    try:
        stats = run_job(["--input", str(data), "--output", str(out), "--config", str(config)])
    finally:
        release.set()
    errors = read_errors(out)
    assert 1 <= len(errors) <= 4 and "r7" in {json.loads(e["raw"])["id"] for e in errors}
    assert all("no answer within inference_timeout_secs 1 s" in e["reason"] for e in errors)
    assert stats.predictions + stats.errors == RECORDS and stats.unaccounted == 0


HUNG_TEXT = "the model hangs on this one"


HANGING_MODEL = '''
import os
import time

from transformers import BertForSequenceClassification

SIGNALS = {signals!r}


class HangingBertForSequenceClassification(BertForSequenceClassification):
    """Says which process runs it, then waits (at most 5 minutes) to be released."""

    def forward(self, *args, **kwargs):
        open(os.path.join(SIGNALS, f"worker-{{os.getpid()}}"), "w").close()
        deadline = time.time() + 300
        while not os.path.exists(os.path.join(SIGNALS, "release")) and time.time() < deadline:
            time.sleep(0.1)
        return super().forward(*args, **kwargs)
'''


def hanging_model(models, tmp_path) -> tuple[str, Path]:
    """A tier (trusted code from its folder) whose forward pass writes `worker-<pid>` into a
    signals folder and waits there: a worker process to kill at a known moment."""
    folder, signals = tmp_path / "hanging", tmp_path / "signals"
    shutil.copytree(models["large"], folder)
    signals.mkdir()
    (folder / "modeling_hang.py").write_text(HANGING_MODEL.format(signals=str(signals)))
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["HangingBertForSequenceClassification"], auto_map={
        "AutoModelForSequenceClassification":
            "modeling_hang.HangingBertForSequenceClassification"})
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder), signals


def test_a_killed_worker_process_fails_the_job_cleanly_and_the_rerun_is_complete(
        data, models, tmp_path):
    out = tmp_path / "out"
    run_job(_args(data, out, models))
    before = snapshot(out)
    job, err = interrupted_hanging_job(
        data, out, models, tmp_path, lambda job, worker: os.kill(worker, signal.SIGKILL),
        "--direct_running_mode", "multi_processing", "--direct_num_workers", "2")
    assert job.returncode == 1, err[-2000:]
    assert "beam-cascade: error: the job failed" in err
    assert snapshot(out) == before

    stats = run_job(_args(data, out, models) + RUNNERS["FnApiRunner, 2 processes"])
    assert stats.predictions == RECORDS and (out / SUCCESS_FILE).exists()
    assert sorted(p["id"] for p in read_predictions(out)) == sorted(
        f"r{i}" for i in range(RECORDS))


def interrupted_hanging_job(data, out, models, tmp_path, interrupt, *flags: str
                            ) -> tuple[subprocess.Popen, str]:
    """Runs `beam-cascade run` with a hanging tier in a process of its own, calls
    `interrupt(job, pid of the worker inside the model)` once a worker hangs there, then
    releases the model; the finished job and its stderr."""
    model, signals = hanging_model(models, tmp_path)
    config = tmp_path / "hanging.yaml"
    config.write_text(f"tiers:\n  - {{model: {model}, trust_remote_code: true}}\n")
    job = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", "--input", str(data), "--output", str(out),
         "--config", str(config), "--runner", "FnApiRunner", *flags],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        interrupt(job, wait_for_worker(signals, job))
        (signals / "release").touch()  # the other workers (or the model's thread) go on
        _, err = job.communicate(timeout=300)
    finally:
        (signals / "release").touch()
        job.kill()
    return job, err


def wait_for_worker(signals, job, seconds: float = 240) -> int:
    """The pid of the first worker process inside the model's forward pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and job.poll() is None:
        started = sorted(signals.glob("worker-*"))
        if started:
            return int(started[0].name.split("-", 1)[1])
        time.sleep(0.2)
    raise AssertionError(f"no worker reached the model (job status {job.poll()}): "
                         f"{job.stderr.read()[-2000:] if job.poll() is not None else ''}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_says_so_and_leaves_the_previous_run_whole(data, models, tmp_path,
                                                                signum):
    """SIGTERM exited 143 with nothing said; now one line says what the folder holds, the
    exit status is 128 + the signal's number and no staging folder is left behind."""
    out = tmp_path / "out"
    run_job(_args(data, out, models))
    before = snapshot(out)
    job, err = interrupted_hanging_job(data, out, models, tmp_path,
                                       lambda job, worker: job.send_signal(signum))
    assert job.returncode == 128 + signum, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("beam-cascade:")]
    assert said == [f"beam-cascade: stopped by {signal.Signals(signum).name}: {out} holds the "
                    "previous run's files, as they were (nothing was published)"], err[-2000:]
    assert snapshot(out) == before
