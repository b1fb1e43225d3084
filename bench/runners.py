"""The same cascade job on each runner, and its peak memory as the input grows.

    python -m bench.runners --config bench/results/configs/tuned-combined-two-tier-drop03.yaml

Runners, each a real job in a fresh process over the same --records SST-2 sentences (dev,
test and train cycled, so the inputs need not be committed), interleaved over --repeats
rounds, medians reported: the FnApiRunner in one process and in two
(`--direct_running_mode multi_processing`), and Beam's FlinkRunner (parallelism 2, LOOPBACK,
the job server of scripts/flink_job_server.sh), with and without cross-bundle batching.
Each row gives the tiers' batch-size distributions from the routing statistics.

Memory: the FnApiRunner and Flink jobs over --memory_sizes records; peak RSS of the job
process and of its largest child.
Writes a markdown report (--results) and prints it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from bench.lib.cli import config_study_parser
from bench.lib.configs import RoutingStats, config_to_dict
from bench.lib.data import write_records
from bench.lib.jobs import DIRECT, TWO_PROCESSES, bench_config, flink, job_stats, run_job
from bench.lib.paths import CACHE
from bench.lib.results import command_line, write_results

MEMORY_SETUPS = ("FnApiRunner, 1 process", "Flink, parallelism 2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = config_study_parser("bench.runners", __doc__)
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--memory_sizes", default="10000,200000")
    return p.parse_args(argv)


def batches(stats: RoutingStats) -> str:
    return "; ".join(
        f"{t.name}: {t.calls} calls, mean {t.mean_records_per_call or 0:.0f}, "
        + ", ".join(f"{size}: {n}" for size, n in t.records_per_call_histogram.items())
        for t in stats.tiers)


def runner_table(setups: dict[str, list[str]], runs: dict[str, list[dict]], records: int
                 ) -> str:
    medians = {name: statistics.median(r["seconds"] for r in runs[name]) for name in setups}
    baseline = medians[next(iter(setups))]
    lines = ["| runner | seconds (median) | records/s | vs FnApiRunner | tier batches "
             "(size: count) |", "|---|---|---|---|---|"]
    for name in setups:
        lines.append(f"| {name} | {medians[name]:.1f} | {records / medians[name]:.0f} | "
                     f"{baseline / medians[name]:.2f}x | {batches(job_stats(runs[name][-1]))} |")
    return "\n".join(lines)


def memory_table(sizes: list[int], runs: dict[str, dict[int, dict]]) -> str:
    """Peak RSS per runner and input size: the job process (with LOOPBACK, Flink's Python
    workers run in it) and its largest child (Flink's Java job server and embedded cluster)."""
    lines = ["| runner | records | seconds | peak RSS of the job (MiB) "
             "| largest child process (MiB) |", "|---|---|---|---|---|"]
    growth = []
    for name, by_size in runs.items():
        lines += [f"| {name} | {n} | {by_size[n]['seconds']:.0f} "
                  f"| {by_size[n]['peak_rss_mib']['job']:.0f} "
                  f"| {by_size[n]['peak_rss_mib']['largest_worker']:.0f} |" for n in sizes]
        small, large = (by_size[n]["peak_rss_mib"]["job"] for n in (sizes[0], sizes[-1]))
        growth.append(f"{name}: {large / small - 1:+.1%}")
    lines.append(f"\nPeak RSS of the job at {sizes[-1]} records over {sizes[0]}: "
                 + "; ".join(growth) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = os.path.join(CACHE, "work")
    os.makedirs(work, exist_ok=True)
    config = config_to_dict(bench_config(args.config))
    jar = subprocess.run(["scripts/flink_job_server.sh"], check=True, capture_output=True,
                         text=True).stdout.split()[-1]
    setups = {"FnApiRunner, 1 process": DIRECT, "FnApiRunner, 2 processes": TWO_PROCESSES,
              "Flink, parallelism 2": flink(jar),
              "Flink, parallelism 2, max_batch_duration_secs 1":
                  flink(jar) + ["--max_batch_duration_secs", "1"]}
    inputs = write_records(args.data, args.records, os.path.join(work, "runners.jsonl"))
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    for round_ in range(args.repeats):
        for i, (name, runner) in enumerate(setups.items()):
            print(f"bench: round {round_ + 1}/{args.repeats}: {name}", file=sys.stderr)
            runs[name].append(run_job(config, inputs, work, f"runner-{i}", runner))
    sizes = [int(n) for n in args.memory_sizes.split(",")]
    paths = {n: write_records(args.data, n, os.path.join(work, f"memory-{n}.jsonl"))
             for n in sizes}
    memory: dict[str, dict[int, dict]] = {}
    for i, name in enumerate(MEMORY_SETUPS):
        memory[name] = {}
        for n in sizes:
            print(f"bench: memory, {name}, {n} records", file=sys.stderr)
            memory[name][n] = run_job(config, paths[n], work, f"memory-{i}-{n}", setups[name])
    write_results(args.results, "runners",
                  f"# Runners and memory\n\nConfig `{args.config}`; {args.records} SST-2 "
                  f"sentences; median of {args.repeats} runs per runner, each a fresh process "
                  f"(2 cores).\n\n{runner_table(setups, runs, args.records)}\n\n"
                  f"## Peak memory as the input grows\n\n"
                  f"{memory_table(sizes, memory)}", command=command_line("bench.runners", argv))


if __name__ == "__main__":
    main()
