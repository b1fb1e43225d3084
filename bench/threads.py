"""How many torch threads, idle and beside a busy neighbour?

    python -m bench.threads [--data ../shared/data/sst2] [--repeats 3]

The reference tier 2 alone, as a Beam job (FnApiRunner, one process, each job a fresh
process) over the 2,693 SST-2 dev + test sentences, with 1 and 2 intra-op threads and with
OpenMP's default (spinning) or passive wait policy, on an idle machine and beside one
CPU-bound neighbour process (a busy loop, as another job on a shared machine). All settings
interleaved in each of --repeats rounds; medians. Writes bench/results/threads.{md,json}.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
from typing import Iterator

from bench.sst2 import CACHE, DEFAULT_DATA, REFERENCE_TIER2, run_job, write_inputs

RESULTS = "bench/results"
THREADS = (1, 2)
WAIT_POLICIES = ("default", "PASSIVE")
NEIGHBOURS = ("idle", "one busy neighbour")


@contextlib.contextmanager
def neighbour(kind: str) -> Iterator[None]:
    """A CPU-bound process beside the job for the `with` block, or nothing."""
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
            if kind != "idle" else None)
    try:
        yield
    finally:
        if busy:
            busy.kill()
            busy.wait()


@contextlib.contextmanager
def wait_policy(policy: str) -> Iterator[None]:
    """OMP_WAIT_POLICY for the jobs started in the `with` block (read when torch starts)."""
    saved = os.environ.get("OMP_WAIT_POLICY")
    if policy != "default":
        os.environ["OMP_WAIT_POLICY"] = policy
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)
        if saved is not None:
            os.environ["OMP_WAIT_POLICY"] = saved


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with GLUE SST-2's TSV files")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    work = os.path.join(CACHE, "threads")
    os.makedirs(work, exist_ok=True)
    inputs = write_inputs(args.data, work)
    config = {"id_field": "id", "tiers": [{"name": "minilm6",
                                           "model": os.path.abspath(REFERENCE_TIER2)}]}
    settings = list(itertools.product(NEIGHBOURS, THREADS, WAIT_POLICIES))
    seconds: dict[tuple, list[float]] = {s: [] for s in settings}
    for round_ in range(args.repeats):
        for kind, threads, policy in settings:
            print(f"bench: round {round_ + 1}/{args.repeats}: {kind}, {threads} threads, "
                  f"wait policy {policy}", file=sys.stderr)
            with neighbour(kind), wait_policy(policy):
                result = run_job(config, inputs.all_path, work, "job",
                                 ["--runner", "FnApiRunner", "--torch_threads", str(threads),
                                  "--progress_secs", "0"])
            seconds[kind, threads, policy].append(result["seconds"])
    write_results(args.repeats, len(inputs.all_texts), seconds)


def write_results(repeats: int, records: int, seconds: dict[tuple, list[float]]) -> None:
    medians = {s: statistics.median(v) for s, v in seconds.items()}
    lines = ["# Torch threads, idle and beside a busy neighbour", "",
             f"`python -m bench.threads --repeats {repeats}`: the reference MiniLM-L6 tier alone "
             f"as a Beam job (FnApiRunner, one process) over {records:,} SST-2 sentences, "
             "seconds (median; start-up included), 2 cores.", "",
             "| machine | threads | OpenMP wait policy | seconds | vs 2 threads, default policy, "
             "same machine |", "|---|---|---|---|---|"]
    for (kind, threads, policy), value in medians.items():
        base = medians[kind, 2, "default"]
        lines.append(f"| {kind} | {threads} | {policy} | {value:.1f} | {base / value:.2f}x |")
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "threads.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "threads.json"), "w", encoding="utf-8") as f:
        json.dump({"records": records, "seconds": [
            {"machine": k, "threads": t, "wait_policy": w, "runs": v}
            for (k, t, w), v in seconds.items()]}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
