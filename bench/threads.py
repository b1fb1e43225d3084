"""How many torch threads, idle and beside a busy neighbour?

    python -m bench.threads [--data ../shared/data/sst2] [--repeats 3] [--peer]

The reference tier 2 alone, as a Beam job (FnApiRunner, one process, each job a fresh
process) over the 2,693 SST-2 dev + test sentences, with 1 and 2 intra-op threads whose
OpenMP threads spin (OMP_WAIT_POLICY=ACTIVE) or sleep (PASSIVE, this project's default since
this measurement) while they wait, on an idle machine and beside one CPU-bound neighbour
process (a busy loop, as another job on a shared machine). With --peer, Beam's stock
RunInference + HuggingFacePipelineModelHandler job too (bench/peer.py, in its own environment,
with torch's defaults as a user gets them). All settings interleaved in each of --repeats
rounds; medians. Writes threads.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
from typing import Iterator

from bench.lib.cli import study_parser
from bench.lib.jobs import PEER, PEER_BATCH_SIZE, peer_python, run_job, run_peer, write_inputs
from bench.lib.paths import CACHE, REFERENCE_TIER2
from bench.lib.results import write_results
from bench.lib.timing import NEIGHBOURS, neighbour

THREADS = (1, 2)
WAIT_POLICIES = ("ACTIVE", "PASSIVE")


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
    p = study_parser("bench.threads", __doc__)
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
    records = len(inputs.all_texts)
    write_results(args.results, "threads", markdown(command, records, seconds), {
        "command": command, "records": records, "seconds": [
            {"machine": k, "threads": t, "wait_policy": w, "runs": v}
            for (k, t, w), v in seconds.items()]})


def markdown(command: str, records: int, seconds: dict[tuple, list[float]]) -> str:
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
