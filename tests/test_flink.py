"""The cascade on Apache Flink: Beam's FlinkRunner, an embedded Flink cluster of parallelism 2
started by Beam's Flink job server (built by scripts/flink_job_server.sh), Python workers in
the LOOPBACK environment. Same input, same predictions and statistics as the DirectRunner.

Tier 2 loads from a memory:// URL and tier 3 from a file:// URL, so the Flink workers go
through the model cache too (LOOPBACK workers share this process's memory filesystem).
"""
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import built, labelled_rows, read_errors, read_predictions
from test_model_cache import upload
from test_progress import assert_progress_matches

from models import model_cache
from models.routing_stats import RoutingStats
from pipeline.job import run

RECORDS = 3000
BAD_LINES = [b"{not json\n", b"[1, 2]\n", b'{"label": "pos"}\n', b'{"text": null}\n',
             b'{"text": 12}\n', b'{"text": "  "}\n', b'{"text": "caf\xe9"}\n']
# Timings and batch shapes depend on the runner; every other statistic must not.
RUNNER_DEPENDENT = {"inference_seconds", "ms_per_record", "calls", "mean_records_per_call",
                    "records_per_call_histogram", "model_passes", "mean_records_per_pass"}

pytestmark = pytest.mark.skipif(shutil.which("java") is None,
                                reason="the Flink job server needs Java 11+ (java not found)")


@pytest.fixture(scope="module")
def job_server_jar() -> str:
    return built("flink_job_server.sh")


@pytest.fixture()
def inputs(tmp_path) -> list[str]:
    rows = [{"id": f"r{i}", **row} for i, row in enumerate(labelled_rows(
        RECORDS, "good bad movie plot fun dull great awful not very", 3, 9, 7))]
    pq.write_table(pa.Table.from_pylist(rows[:1000]), tmp_path / "part-0.parquet")
    lines = [json.dumps(row).encode() + b"\n" for row in rows[1000:]]
    (tmp_path / "part-1.jsonl").write_bytes(b"".join(lines[:500] + BAD_LINES + lines[500:]))
    return ["--input", str(tmp_path / "part-0.parquet"), "--input", str(tmp_path / "part-1.jsonl")]


@pytest.fixture()
def config(tmp_path, models, monkeypatch) -> str:
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "model-cache"))
    path = tmp_path / "cascade.yaml"
    path.write_text(
        "id_field: id\nlabel_field: label\ntiers:\n"
        f"  - {{name: small, model: {models['small']}, threshold: 0.9, batch_size: 32}}\n"
        f"  - {{name: medium, model: '{upload(models['medium'])}', threshold: 0.97}}\n"
        f"  - {{name: large, model: 'file://{models['large']}', batch_size: 16}}\n")
    return str(path)


def flink_args(jar: str) -> list[str]:
    return ["--runner", "FlinkRunner", "--flink_master", "[local]", "--parallelism", "2",
            "--environment_type", "LOOPBACK", "--flink_job_server_jar", jar]


def decisions(output: Path) -> dict[str, tuple]:
    return {p["id"]: (p["label"], p["decided_by"], p["confidence_small"],
                      p["confidence_medium"], p["confidence_large"])
            for p in read_predictions(output)}


def fields_of(value: Any, leave_out: set[str]) -> dict[str, Any]:
    """A dataclass's fields by name, less those left out."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
            if f.name not in leave_out}


def runner_independent(stats: RoutingStats) -> dict:
    """The statistics flattened to `field` and `tier.field` (what pytest.approx compares),
    less the runner-dependent ones (the model time in `cost`); float sums may differ in
    their last bits by summation order."""
    flat = fields_of(stats, {"tiers", "errors_by_stage", "errors_by_reason", "failures",
                             "shifted_tiers", "cost"})
    for name, counts in (("errors_by_stage", stats.errors_by_stage),
                         ("errors_by_reason", stats.errors_by_reason)):
        flat.update({f"{name}.{k}": v for k, v in counts.items()})
    flat.update({f"shifted_tiers.{name}": True for name in stats.shifted_tiers})
    for tier in stats.tiers:
        flat.update({f"{tier.name}.{k}": v for k, v in fields_of(
            tier, RUNNER_DEPENDENT | {"records_per_exit"}).items()})
    return flat


def test_flink_gives_the_direct_runners_predictions_and_statistics(
        tmp_path, inputs, config, job_server_jar, capsys):
    direct = run(inputs + ["--config", config, "--output", str(tmp_path / "direct"),
                           "--runner", "FnApiRunner"])
    capsys.readouterr()
    flink = run(inputs + ["--config", config, "--output", str(tmp_path / "flink"),
                          "--progress_secs", "0.5"] + flink_args(job_server_jar))
    assert_progress_matches(capsys.readouterr().err, flink)  # from Flink's metrics

    expected, got = decisions(tmp_path / "direct"), decisions(tmp_path / "flink")
    assert len(got) == RECORDS and got.keys() == expected.keys()
    for record_id, (label, tier, *confidences) in got.items():
        assert (label, tier) == expected[record_id][:2], record_id
        assert confidences == pytest.approx(expected[record_id][2:], abs=1e-6, nan_ok=True)
    assert runner_independent(flink) == pytest.approx(runner_independent(direct))
    assert flink.failures == direct.failures == ()
    assert flink.records_read == RECORDS + len(BAD_LINES)
    assert flink.records_read == flink.predictions + flink.errors
    assert flink.errors_by_stage == {"parse": len(BAD_LINES)}
    assert sorted(e["position"] for e in read_errors(tmp_path / "flink")) == list(
        range(501, 501 + len(BAD_LINES)))
    assert all(t.seen > 0 for t in flink.tiers)
