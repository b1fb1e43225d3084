"""Several worker processes on one machine: each loads each tier once, torch threads are
shared out over the workers, and results match one worker (test_faults.py checks the
predictions across runners)."""
import os

import apache_beam as beam
import pytest
import torch
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import labelled_rows, read_predictions, write_jsonl

from models import cpus
from models.cpus import TorchThreads
from models.loading import set_torch_threads
from pipeline.job import build_pipeline, job_from_options
from pipeline.options import torch_threads

TWO_PROCESSES = ["--runner", "FnApiRunner", "--direct_running_mode", "multi_processing",
                 "--direct_num_workers", "2"]


def run_with_metrics(args: list[str]):
    options = PipelineOptions(args)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, job_from_options(options))
    result = pipeline.run()
    result.wait_until_finish()
    return result


def test_each_worker_process_loads_each_tier_once(tmp_path, models):
    rows = write_jsonl(tmp_path / "in.jsonl", labelled_rows(2000, "good bad plot fun dull", 3, 9, 5))
    out = tmp_path / "out"
    result = run_with_metrics(
        ["--input", str(rows), "--output", str(out), "--tier1", models["small"],
         "--tier2", models["medium"], "--threshold", "0.9"] + TWO_PROCESSES)
    loads = result.metrics().query(MetricsFilter().with_name(
        "load_model_latency_milli_secs"))["distributions"]
    per_tier: dict[str, int] = {}
    for load in loads:
        namespace = load.key.metric.namespace
        per_tier[namespace] = per_tier.get(namespace, 0) + load.committed.count
    assert set(per_tier) == {"beam_cascade_tier1", "beam_cascade_tier2"}
    assert all(1 <= count <= 2 for count in per_tier.values()), per_tier
    assert len(read_predictions(out)) == 2000


@pytest.mark.parametrize("args, expected", [
    ([], TorchThreads(None, 1)),
    (["--direct_num_workers", "2"], TorchThreads(None, 2)),
    (["--runner", "FlinkRunner", "--parallelism", "4"], TorchThreads(None, 4)),
    (["--runner", "DataflowRunner"], TorchThreads(1, 1)),
    (["--runner", "DataflowRunner", "--torch_threads", "4"], TorchThreads(4, 1)),
])
def test_torch_threads_follow_the_workers_per_machine(args, expected):
    assert torch_threads(PipelineOptions(args)) == expected


def test_threads_are_the_cores_shared_out_over_the_workers(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count is not what counts
    monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda root: None)
    try:
        assert set_torch_threads(None, 2) == 4 == torch.get_num_threads()
        assert set_torch_threads(None, 16) == 1
        assert set_torch_threads(3, 2) == 3 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
