"""`beam-cascade calibrate` as a user runs it, in a fresh process, and its label requests
answered from labels a study holds (what the person labelling them would do)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.lib.data import write_jsonl
from bench.lib.jobs import run_command


def timed_calibrate(flags: list[str]) -> float:
    """Seconds of one `beam-cascade calibrate` in a fresh process; exits when it fails."""
    start = time.perf_counter()
    run_command([sys.executable, "-m", "pipeline.calibrate", *flags])
    return time.perf_counter() - start


def calibrate_allowing_refusals(flags: list[str]) -> tuple[float, str]:
    """Seconds and stderr of one `calibrate`, which may refuse some of its budgets (exit 2,
    the tuned configs of the others written): a study reports a refused budget rather than
    stopping. Exits on any other failure."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.calibrate", *flags],
                          capture_output=True, text=True)
    if done.returncode not in (0, 2):
        sys.exit(f"bench: calibrate {' '.join(flags)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stderr


def answer_requests(requests: str, truth: dict[str, str], text_field: str) -> int:
    """Fills in the labels of a JSON Lines request file from `truth` (text -> label name);
    returns how many."""
    with open(requests, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for row in rows:
        row["label"] = truth[row[text_field]]
    write_jsonl(requests, rows)
    return len(rows)
