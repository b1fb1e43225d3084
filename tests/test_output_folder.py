"""The output folder is the user's: a run replaces only what an earlier run of this tool wrote,
only once it has finished, and tells the scheduler by its exit status and marker whether the
run can be trusted (docs/reliability.md)."""
import json
import shutil
import signal

import pytest
from conftest import RUNNER, read_predictions, snapshot, write_jsonl

from models.routing_stats import RoutingStats
from pipeline.output_folder import FAILED_FILE, MANIFEST_FILE, SUCCESS_FILE
from pipeline.run import EXIT_DATA_ERRORS, EXIT_USAGE, main

ROWS = [{"text": t} for t in ["good movie", "bad plot", "fun story", "dull actor"] * 5]


def _job(models, data, out, *extra) -> list[str]:
    return ["--input", str(data), "--output", str(out), "--tier1", models["small"],
            "--tier2", models["large"], "--threshold", "0.9", *extra, *RUNNER]


@pytest.fixture()
def data(tmp_path):
    (tmp_path / "in").mkdir()
    return write_jsonl(tmp_path / "in" / "rows.jsonl", ROWS)


def test_a_rerun_replaces_only_the_files_the_previous_run_wrote(models, data, tmp_path,
                                                                 caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    assert main(_job(models, data, out)) == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert SUCCESS_FILE in manifest["files"] and "routing_stats.json" in manifest["files"]
    assert sorted(manifest["files"]) == sorted(
        p.name for p in out.iterdir() if p.name not in ("notes.txt", MANIFEST_FILE))

    assert main(_job(models, data, out, "--output_format", "jsonl")) == 0
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert not list(out.glob("*.parquet")) and len(read_predictions(out)) == len(ROWS)
    assert "replaced the previous run's errors-00000-of-00001.jsonl" in caplog.text
    assert not list(out.glob(".beam-cascade-staging-*"))


def test_a_run_in_this_process_gives_back_the_signal_handlers_it_found(models, data, tmp_path):
    """`run` turns Ctrl-C and SIGTERM into a clean stop while it runs, and only then: a
    caller in the same process (a test runner, a notebook) keeps its own handlers."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(_job(models, data, tmp_path / "out")) == 0
    assert {s: signal.getsignal(s) for s in before} == before


def test_files_no_run_wrote_are_never_deleted(models, data, tmp_path, capsys):
    """A folder that never held a run, with a file named like this tool's outputs: refused,
    untouched (the old cleanup deleted any predictions-* or errors-* file silently)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions-00007-of-00009.parquet").write_text("someone else's shard")
    assert main(_job(models, data, out)) == EXIT_USAGE
    assert "holds predictions-00007-of-00009.parquet, which no run of beam-cascade wrote" in (
        capsys.readouterr().err)
    assert snapshot(out) == {"predictions-00007-of-00009.parquet": b"someone else's shard"}


def test_an_output_folder_holding_the_inputs_is_refused(models, data, tmp_path, capsys):
    """--output equal to the input folder used to delete the job's own inputs mid-run."""
    before = snapshot(data.parent)
    assert main(_job(models, data, data.parent)) == EXIT_USAGE
    assert f"holds input file {str(data)!r}" in capsys.readouterr().err
    assert main(_job(models, data.parent / "*.jsonl", tmp_path)) == EXIT_USAGE
    assert snapshot(data.parent) == before


def test_an_output_that_is_a_file_is_refused(models, data, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    out.write_text("a file")
    assert main(_job(models, data, out)) == EXIT_USAGE
    assert "is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["under a file", "/proc"])
def test_an_output_that_cannot_be_written_is_refused_before_the_job(models, data, tmp_path,
                                                                    capsys, where):
    """Found after the job before (exit 1 or 3 after retries); now on the launcher."""
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "out" if where == "under a file" else "/proc/beam-cascade-out"
    assert main(_job(models, data, out)) == EXIT_USAGE
    assert f"--output {str(out)!r} cannot be written" in capsys.readouterr().err


def test_a_model_found_damaged_at_launch_leaves_the_previous_run_whole(models, data,
                                                                        tmp_path, capsys):
    """Corrupt weights were found only on the worker, after the previous outputs were
    deleted; now the launcher refuses them and touches nothing."""
    tier = tmp_path / "tier"
    shutil.copytree(models["large"], tier)
    out = tmp_path / "out"
    job = ["--input", str(data), "--output", str(out), "--tier1", models["small"],
           "--tier2", str(tier), "--threshold", "0.9", *RUNNER]
    assert main(job) == 0
    before = snapshot(out)
    weights = (tier / "model.safetensors").read_bytes()
    (tier / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert main(job) == EXIT_USAGE
    assert "model.safetensors' is truncated" in capsys.readouterr().err
    assert snapshot(out) == before


def test_more_dead_letters_than_the_limit_fail_the_job_after_writing_everything(
        models, tmp_path, capsys):
    rows = [json.dumps(r) for r in ROWS[:8]] + ["not json", '{"text": ""}']
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(_job(models, data, out, "--max_error_rate", "0.1")) == EXIT_DATA_ERRORS
    assert "2 of 10 records (20.00%) are dead letters, more than max_error_rate 10.00%" in (
        capsys.readouterr().err)
    assert not (out / SUCCESS_FILE).exists()
    failed = json.loads((out / FAILED_FILE).read_text())["failures"]
    assert tuple(failed) == RoutingStats.from_json(
        json.loads((out / "routing_stats.json").read_text())).failures
    assert len(read_predictions(out)) == 8

    assert main(_job(models, data, out, "--max_error_rate", "0.2")) == 0
    assert (out / SUCCESS_FILE).exists() and not (out / FAILED_FILE).exists()


def test_a_run_that_classified_nothing_fails_and_says_why(models, tmp_path, capsys):
    """Every record a dead letter (the text in 'sentence', the config reading 'text') used
    to exit 0 with _SUCCESS; a nightly scheduler saw success."""
    data = write_jsonl(tmp_path / "in.jsonl", [{"sentence": r["text"]} for r in ROWS])
    out = tmp_path / "out"
    assert main(_job(models, data, out)) == EXIT_DATA_ERRORS
    said = f"no record was classified: no 'text' field in {len(ROWS)} of {len(ROWS)} records: " \
           "set text_field (--text_field) to the input's field that holds it"
    assert said in capsys.readouterr().err
    assert not (out / SUCCESS_FILE).exists()
    assert said in json.loads((out / FAILED_FILE).read_text())["failures"][0]
    assert main(_job(models, data, out, "--max_error_rate", "1")) == EXIT_DATA_ERRORS
    assert main(_job(models, data, out, "--text_field", "sentence")) == 0


def test_empty_inputs_fail_the_run(models, tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    assert main(_job(models, data, tmp_path / "out")) == EXIT_DATA_ERRORS
    assert "no record was classified: the inputs hold no records" in capsys.readouterr().err


def test_dead_letters_above_the_default_limit_fail_the_run(models, tmp_path, capsys):
    """By default more than 1% dead letters fail the run, as load jobs fail on bad records
    unless told otherwise; max_error_rate 1 accepts any share."""
    rows = [json.dumps(r) for r in ROWS] + ['{"text": ""}']
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(_job(models, data, out)) == EXIT_DATA_ERRORS
    assert (f"1 of {len(ROWS) + 1} records (4.76%) are dead letters, more than max_error_rate "
            "1.00%; the most common reason: 'text' is empty in 1 of 21 records (errors-*.jsonl "
            "holds each record and its reason)") in capsys.readouterr().err
    assert main(_job(models, data, out, "--max_error_rate", "1")) == 0


def test_max_error_rate_in_the_config_is_checked(models, data, tmp_path, capsys):
    config = tmp_path / "cascade.yaml"
    config.write_text(f"max_error_rate: 1.5\ntiers:\n  - model: {models['small']}\n")
    assert main(["--input", str(data), "--output", str(tmp_path / "out"), "--config",
                 str(config), *RUNNER]) == EXIT_USAGE
    assert "max_error_rate 1.5 must be a share in [0, 1]" in capsys.readouterr().err
