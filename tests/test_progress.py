"""The progress line of `beam-cascade run`: what it says, and that its counts are the job's."""
import re

from conftest import run_job

from pipeline.progress import Snapshot, progress_line
from transforms import progress


def test_progress_line_says_what_is_read_classified_at_what_rate_and_the_time_left():
    before = Snapshot(52.0, {"records_read": 1200, "files_read": 2, "small_seen": 600,
                             "small_decided": 450, "small_escalated": 150})
    now = Snapshot(62.0, {"records_read": 1500, "files_read": 3, "errors_parse": 20,
                          "errors_read": 1, "small_scored": 1024, "small_seen": 1000,
                          "small_decided": 750, "small_escalated": 250, "large_scored": 250,
                          "large_seen": 230, "large_decided": 230})
    # 980 classified, 530 more in 10 s; 1,500 - 980 - 20 dead letters = 500 left: 9 s
    assert progress_line(now, before, ["small", "large"], input_files=3) == (
        "progress 1:02: 1,500 records read (3/3 files); small 1,024 scored, 25.0% escalated; "
        "large 250 scored; 980 classified, 53/s over the last 10 s; about 0:09 left")
    reading = Snapshot(62.0, {**now.counts, "files_read": 2})
    assert progress_line(reading, before, ["small", "large"], input_files=3).endswith(
        "980 classified, 53/s over the last 10 s")  # how many records in all: not known yet
    assert progress_line(Snapshot(0.0, {}), None, ["small", "large"]) == (
        "progress 0:00: 0 records read; small 0 scored; large 0 scored; 0 classified")


def test_counts_are_handed_on_while_a_bundle_runs(monkeypatch):
    """The FnApiRunner runs a stage as one bundle: counted once per bundle, a tier showed
    0 seen until its end."""
    monkeypatch.setattr(progress, "FLUSH_SECS", 0.0)
    progress.reset_local_counts()
    counts = progress.BatchedCounts("small_seen")
    counts.add("small_seen", 256)
    assert progress.local_counts() == {"small_seen": 256}
    monkeypatch.setattr(progress, "FLUSH_SECS", 3600.0)
    counts.add("small_seen", 100)
    assert progress.local_counts() == {"small_seen": 256}
    counts.flush()
    assert progress.local_counts() == {"small_seen": 356}


def final_progress(stderr: str) -> tuple[int, dict[str, int]]:
    """The records read and the tiers' records scored on the last progress line (those
    seen, in a job without audits or failed batches)."""
    line = [line for line in stderr.splitlines() if line.startswith("progress ")][-1]
    read = int(re.search(r"([\d,]+) records read", line).group(1).replace(",", ""))
    return read, {name: int(n.replace(",", ""))
                  for name, n in re.findall(r"(\w+) ([\d,]+) scored", line)}


def assert_progress_matches(stderr: str, stats: dict) -> None:
    read, seen = final_progress(stderr)
    assert read == stats.records_read
    assert seen == {t.name: t.seen for t in stats.tiers}


def test_a_batch_run_prints_progress_ending_at_the_jobs_counts(tmp_path, models, capsys):
    rows = "".join(f'{{"id": {i}, "text": "text number {i} of many"}}\n' for i in range(300))
    (tmp_path / "in.jsonl").write_text(rows + "not json\n")
    stats = run_job(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
                     "--tier1", models["small"], "--tier2", models["large"],
                     "--threshold", "0.9", "--progress_secs", "0.01"])
    stderr = capsys.readouterr().err
    assert stderr.count("progress ") >= 2  # at least one while running, one at the end
    assert_progress_matches(stderr, stats)
    assert stats.records_read == 301


def test_no_progress_with_progress_secs_0(tmp_path, models, capsys):
    (tmp_path / "in.jsonl").write_text('{"text": "one"}\n')
    run_job(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
             "--tier1", models["small"], "--progress_secs", "0"])
    assert "progress " not in capsys.readouterr().err
