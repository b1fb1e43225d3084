"""The progress line of `beam-cascade run`: what it says, and that its counts are the job's."""
import re

from conftest import run_job

from pipeline.progress import progress_line


def test_progress_line_says_records_read_their_rate_and_each_tiers_routing():
    counts = {"records_read": 1200, "small_seen": 1000, "small_escalated": 250,
              "large_seen": 250}
    assert progress_line(counts, ["small", "large"], 62.0) == (
        "progress 1:02: 1200 records read (19/s); small 1000 seen, 25.0% escalated; "
        "large 250 seen")
    assert progress_line({}, ["small", "large"], 0.0).startswith(
        "progress 0:00: 0 records read (0/s); small 0 seen; large 0 seen")


def final_progress(stderr: str) -> tuple[int, dict[str, int]]:
    """The records read and the tiers' records seen on the last progress line."""
    line = [line for line in stderr.splitlines() if line.startswith("progress ")][-1]
    read = int(re.search(r"(\d+) records read", line).group(1))
    return read, {name: int(n) for name, n in re.findall(r"(\w+) (\d+) seen", line)}


def assert_progress_matches(stderr: str, stats: dict) -> None:
    read, seen = final_progress(stderr)
    assert read == stats["records_read"]
    assert seen == {t["name"]: t["seen"] for t in stats["tiers"]}


def test_a_batch_run_prints_progress_ending_at_the_jobs_counts(tmp_path, models, capsys):
    rows = "".join(f'{{"id": {i}, "text": "text number {i} of many"}}\n' for i in range(300))
    (tmp_path / "in.jsonl").write_text(rows + "not json\n")
    stats = run_job(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
                     "--tier1", models["small"], "--tier2", models["large"],
                     "--threshold", "0.9", "--progress_secs", "0.01"])
    stderr = capsys.readouterr().err
    assert stderr.count("progress ") >= 2  # at least one while running, one at the end
    assert_progress_matches(stderr, stats)
    assert stats["records_read"] == 301


def test_no_progress_with_progress_secs_0(tmp_path, models, capsys):
    (tmp_path / "in.jsonl").write_text('{"text": "one"}\n')
    run_job(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
             "--tier1", models["small"], "--progress_secs", "0"])
    assert "progress " not in capsys.readouterr().err
