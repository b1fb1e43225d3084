"""The pipeline's own cost per record: how close a job comes to its tiers' bare loops on a
bulk input, on each runner.

    python -m bench.pipeline_cost --config bench/results/configs/tuned-two-tier.yaml \
        [--config another.yaml ...] [--records 50000] [--repeats 3] \
        [--runners direct,threads2,direct2,flink]

Jobs, each in a fresh process, interleaved over --repeats rounds (medians reported), on
--records SST-2 sentences (dev, test and train cycled, unique ids) and on the first
--startup_records of them (the job's fixed cost: pipeline construction, model loading,
stage set-up):
  - tier 1 of the (first) config alone (its threshold dropped): the pipeline's cost per
    record with a model that costs next to nothing;
  - the whole cascade of each config (several configs are timed side by side, for example
    the same cascade with its tiers on other runtimes).
Bare loops (models/throughput.py: no Beam, the model loaded once, texts sorted by length,
tokenisation included) of each tier over the records that reached it in the job give the
ideal time. Reported per runner and job:
  - records/s after start-up: (records - startup records) / (seconds - startup seconds);
  - pipeline ms per record: (seconds after start-up - bare loops) / records;
  - efficiency: bare loops / seconds after start-up;
  - break-even against the first runner: the input size from which this runner's job takes
    less wall time than the first runner's same job, from both jobs' start-up and records/s
    after start-up (the size a bulk job must reach to earn back a larger start-up).
Runners: `direct` (FnApiRunner, one process), `threads2` (one process, two worker threads:
`--direct_running_mode multi_threading`), `direct2` (two worker processes), `flink`
(FlinkRunner, parallelism 2, LOOPBACK, the job server of scripts/flink_job_server.sh).
Writes --results (markdown) and its .json twin.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys

from bench.lib.cli import study_parser
from bench.lib.configs import CascadeConfig, config_to_dict
from bench.lib.data import write_records
from bench.lib.jobs import (DIRECT, TWO_PROCESSES, TWO_THREADS, bench_config, flink, job_stats,
                            records_per_tier, run_job)
from bench.lib.paths import CACHE
from bench.lib.results import command_line, write_results
from bench.lib.tiers import load_configured_tier
from bench.lib.timing import ONE_PASS, BareTimer

RUNNERS = ("direct", "threads2", "direct2", "flink")
RUNNER_NAMES = {"direct": "FnApiRunner, 1 process", "threads2": "FnApiRunner, 2 threads",
                "direct2": "FnApiRunner, 2 processes", "flink": "Flink, parallelism 2"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = study_parser("bench.pipeline_cost", __doc__)
    p.add_argument("--config", action="append", required=True,
                   help="cascade config (YAML/JSON); repeatable")
    p.add_argument("--records", type=int, default=50000)
    p.add_argument("--startup_records", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runners", default=",".join(RUNNERS),
                   help=f"comma list of {', '.join(RUNNERS)}")
    args = p.parse_args(argv)
    args.runners = args.runners.split(",")
    unknown = set(args.runners) - set(RUNNERS)
    if unknown:
        p.error(f"unknown runner(s) {', '.join(sorted(unknown))}; choose from {RUNNERS}")
    return args


def runner_args(name: str) -> list[str]:
    if name == "direct":
        return DIRECT
    if name == "threads2":
        return TWO_THREADS
    if name == "direct2":
        return TWO_PROCESSES
    jar = subprocess.run(["scripts/flink_job_server.sh"], check=True, capture_output=True,
                         text=True).stdout.split()[-1]
    return flink(jar)


def tier1_alone(config: CascadeConfig) -> CascadeConfig:
    first = dataclasses.replace(config.tiers[0], threshold=None)
    return dataclasses.replace(config, tiers=(first,))


def bare_seconds(bare: BareTimer, config: CascadeConfig, reached: dict[str, list[int]]
                 ) -> float:
    """The tiers' bare loops over the records that reached them."""
    return sum(bare.seconds(t.name, t.batch_size, reached[t.name]) for t in config.tiers)


def row(name: str, job: str, records: int, startup_records: int, runs: list[dict],
        startups: list[dict], bare: list[float]) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    startup = statistics.median(r["seconds"] for r in startups)
    after = seconds - startup
    ideal = statistics.median(bare)
    stats = job_stats(runs[-1])
    return {"runner": name, "job": job, "seconds": seconds, "startup_seconds": startup,
            "records_per_second_after_startup": (records - startup_records) / after,
            "bare_seconds": ideal, "pipeline_ms_per_record": (after - ideal) * 1000 / records,
            "efficiency": ideal / after,
            "escalated": [t.escalation_rate for t in stats.tiers[:-1]],
            "peak_rss_mib": runs[-1]["peak_rss_mib"]}


def break_even(row: dict, first: dict, startup_records: int) -> str:
    """The input sizes at which `row`'s job takes less wall time than `first`'s: each job's
    time is its start-up plus its records after start-up at its measured rate."""
    if row is first:
        return "-"
    extra_startup = row["startup_seconds"] - first["startup_seconds"]
    saved_per_record = (1 / first["records_per_second_after_startup"]
                        - 1 / row["records_per_second_after_startup"])
    crossing = f"{startup_records + extra_startup / (saved_per_record or 1):,.0f}"
    if saved_per_record > 0:  # faster once started: wins past the crossing
        return "any size" if extra_startup <= 0 else f"from {crossing}"
    if saved_per_record < 0 and extra_startup < 0:  # quicker start, slower after: wins below
        return f"below {crossing}"
    return "any size" if extra_startup < 0 else "never"


def table(rows: list[dict], startup_records: int) -> str:
    firsts = {}
    for r in rows:
        firsts.setdefault(r["job"], r)
    lines = ["| runner | job | seconds | start-up s | records/s after start-up | bare loops s "
             "| pipeline ms/record | efficiency | escalated | peak RSS MiB (job, largest child) "
             f"| faster than {rows[0]['runner']} (records) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        escalated = ", ".join(f"{e:.1%}" for e in r["escalated"]) or "-"
        rss = r["peak_rss_mib"]
        lines.append(
            f"| {r['runner']} | {r['job']} | {r['seconds']:.1f} | {r['startup_seconds']:.1f} | "
            f"{r['records_per_second_after_startup']:.0f} | {r['bare_seconds']:.1f} | "
            f"{r['pipeline_ms_per_record']:.3f} | {r['efficiency']:.2f} | {escalated} | "
            f"{rss['job']:.0f}, {rss['largest_worker']:.0f} | "
            f"{break_even(r, firsts[r['job']], startup_records)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = os.path.join(CACHE, "work")
    os.makedirs(work, exist_ok=True)
    cascades = {path: bench_config(path) for path in args.config}
    jobs = {"tier 1 alone": tier1_alone(cascades[args.config[0]])}
    jobs.update({"cascade" if len(cascades) == 1 else f"cascade ({os.path.basename(path)})":
                 cascade for path, cascade in cascades.items()})
    inputs = write_records(args.data, args.records, os.path.join(work, "bulk.jsonl"))
    startup_input = write_records(args.data, args.startup_records,
                                  os.path.join(work, "bulk-startup.jsonl"))
    with open(inputs, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    ids, texts = [r["id"] for r in rows], [r["text"] for r in rows]
    bares = {job: BareTimer({t.name: load_configured_tier(t, ONE_PASS) for t in config.tiers},
                            texts)
             for job, config in jobs.items()}
    setups = {name: runner_args(name) for name in args.runners}
    runs: dict[tuple[str, str, bool], list[dict]] = {}
    bare_runs: dict[str, list[float]] = {job: [] for job in jobs}
    for round_ in range(args.repeats):
        for runner, runner_argv in setups.items():
            for j, (job, config) in enumerate(jobs.items()):
                print(f"bench: round {round_ + 1}/{args.repeats}: {runner}, {job}",
                      file=sys.stderr)
                plain = config_to_dict(config)
                for startup, path in ((False, inputs), (True, startup_input)):
                    name = f"cost-{runner}-{j}{'-startup' if startup else ''}"
                    runs.setdefault((runner, job, startup), []).append(
                        run_job(plain, path, work, name, runner_argv))
        for j, (job, config) in enumerate(jobs.items()):
            first = args.runners[0]
            reached = records_per_tier(os.path.join(work, "out", f"cost-{first}-{j}"),
                                       config, ids)
            bare_runs[job].append(bare_seconds(bares[job], config, reached))
    results = [row(RUNNER_NAMES[runner], job, args.records, args.startup_records,
                   runs[runner, job, False], runs[runner, job, True], bare_runs[job])
               for runner in args.runners for job in jobs]
    write_results(args.results, "pipeline_cost", (
        f"# The pipeline's cost per record\n\nConfigs {', '.join(f'`{c}`' for c in args.config)}; "
        f"{args.records} SST-2 "
        f"sentences (start-up measured on {args.startup_records}); median of {args.repeats} "
        f"rounds, each job a fresh process, runners and jobs interleaved (2 cores).\n\n"
        f"{table(results, args.startup_records)}\n\nEfficiency = bare loops of each tier over "
        "the records that reached it / job seconds after start-up; pipeline ms/record = "
        "(seconds after start-up - bare loops) / records; faster than the first runner: the "
        "input sizes at which the job would take less wall time than the first runner's, from "
        "their start-up and records/s after start-up."),
        {"records": args.records, "configs": args.config, "rows": results},
        command=command_line("bench.pipeline_cost", argv))


if __name__ == "__main__":
    main()
