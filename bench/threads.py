"""How many torch threads, idle and beside a busy neighbour?

    python -m bench.threads [--data ../shared/data/sst2] [--repeats 3] [--peer]

The reference tier 2 alone, as a Beam job (FnApiRunner, one process, each job a fresh
process) over the 2,693 SST-2 dev + test sentences, with 1 and 2 intra-op threads whose
OpenMP threads spin (OMP_WAIT_POLICY=ACTIVE) or sleep (PASSIVE, this project's default since
this measurement) while they wait, on an idle machine and beside one CPU-bound neighbour
process (a busy loop, as another job on a shared machine). With --peer, Beam's stock
RunInference + HuggingFacePipelineModelHandler job too (bench/peer.py, in its own environment,
with torch's defaults as a user gets them). All settings interleaved in each of --repeats
rounds; medians. Writes bench/results/threads.{md,json}.
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

from bench.sst2 import (CACHE, DEFAULT_DATA, REFERENCE_TIER2, peer_python, run_job, run_peer,
                        write_inputs)

RESULTS = "bench/results"
THREADS = (1, 2)
WAIT_POLICIES = ("ACTIVE", "PASSIVE")
PEER = "Beam's stock handler"
PEER_BATCH_SIZE = 64
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
def wait_policy(policy: str | None) -> Iterator[None]:
    """OMP_WAIT_POLICY for the processes started in the `with` block (torch reads it when it
    loads), or none at all (None: OpenMP's own default, as the peer runs)."""
    saved = os.environ.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
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
    p.add_argument("--peer", action="store_true",
                   help="also Beam's stock handler (its environment is built on first use)")
    args = p.parse_args(argv)
    peer = peer_python() if args.peer else None
    work = os.path.join(CACHE, "threads")
    os.makedirs(work, exist_ok=True)
    inputs = write_inputs(args.data, work)
    config = {"id_field": "id", "tiers": [{"name": "minilm6",
                                           "model": os.path.abspath(REFERENCE_TIER2)}]}
    settings = list(itertools.product(NEIGHBOURS, THREADS, WAIT_POLICIES))
    if peer:
        settings += [(kind, PEER, "OpenMP's default") for kind in NEIGHBOURS]
    seconds: dict[tuple, list[float]] = {s: [] for s in settings}
    for round_ in range(args.repeats):
        for kind, threads, policy in settings:
            print(f"bench: round {round_ + 1}/{args.repeats}: {kind}, {threads} threads, "
                  f"wait policy {policy}", file=sys.stderr)
            with neighbour(kind), wait_policy(policy if threads != PEER else None):
                if threads == PEER:
                    result = run_peer(peer, REFERENCE_TIER2, inputs, work, PEER_BATCH_SIZE)
                else:
                    result = run_job(config, inputs.all_path, work, "job",
                                     ["--runner", "FnApiRunner", "--torch_threads",
                                      str(threads), "--progress_secs", "0"])
            seconds[kind, threads, policy].append(result["seconds"])
    command = f"python -m bench.threads --repeats {args.repeats}" + (" --peer" if peer else "")
    write_results(command, len(inputs.all_texts), seconds)


def write_results(command: str, records: int, seconds: dict[tuple, list[float]]) -> None:
    medians = {s: statistics.median(v) for s, v in seconds.items()}
    lines = ["# Torch threads, idle and beside a busy neighbour", "",
             f"`{command}`: the reference MiniLM-L6 tier alone "
             f"as a Beam job (FnApiRunner, one process) over {records:,} SST-2 sentences, "
             "seconds (median; start-up included), 2 cores.", "",
             "| machine | threads | OpenMP wait policy | seconds | speed vs 2 spinning threads, "
             "same machine |", "|---|---|---|---|---|"]
    for (kind, threads, policy), value in medians.items():
        base = medians[kind, 2, "ACTIVE"]
        lines.append(f"| {kind} | {threads} | {policy} | {value:.1f} | {base / value:.2f}x |")
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "threads.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "threads.json"), "w", encoding="utf-8") as f:
        json.dump({"command": command, "records": records, "seconds": [
            {"machine": k, "threads": t, "wait_policy": w, "runs": v}
            for (k, t, w), v in seconds.items()]}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
