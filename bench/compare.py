"""Times whole cascade configs side by side on SST-2: for example tier 2 alone against the
configs `beam-cascade calibrate` writes.

    python -m bench.compare --config tier2.yaml --config tuned.yaml [--repeats 3]

Each config runs as a real job (a fresh process, FnApiRunner, model loading included, as in
bench/sst2.py) over the 2,693 SST-2 dev + test sentences, the configs interleaved in each of
--repeats rounds; medians are reported with the dev accuracy and the speedup over the first
config. The configs' field names are replaced by the benchmark input's (text, id, label).
Writes a markdown table (--results) and prints it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

from bench.lib.cli import study_parser
from bench.lib.configs import config_to_dict
from bench.lib.jobs import bench_config, job_stats, run_job, write_inputs
from bench.lib.paths import CACHE
from bench.lib.results import command_line, markdown_table, write_results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = study_parser("bench.compare", __doc__)
    p.add_argument("--config", action="append", required=True,
                   help="cascade config (YAML/JSON); repeatable; the first is the baseline")
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args(argv)


def table(paths: list[str], runs: dict[str, list[dict]], records: int) -> str:
    medians = {p: statistics.median(r["seconds"] for r in runs[p]) for p in paths}
    baseline = medians[paths[0]]
    rows = []
    for path in paths:
        stats = job_stats(runs[path][-1])
        shares = ", ".join(f"{t.name} {t.seen / stats.predictions:.1%}" for t in stats.tiers)
        rows.append([path, len(stats.tiers), f"{stats.accuracy:.2%}", shares,
                     f"{medians[path]:.2f}", f"{records / medians[path]:.0f}",
                     f"{baseline / medians[path]:.2f}x"])
    return markdown_table(["config", "tiers", "dev accuracy", "share per tier",
                           "seconds (median)", "records/s", "speedup"], rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = os.path.join(CACHE, "work")
    os.makedirs(work, exist_ok=True)
    inputs = write_inputs(args.data, work)
    configs = {path: config_to_dict(bench_config(path)) for path in args.config}
    runs: dict[str, list[dict]] = {path: [] for path in args.config}
    for round_ in range(args.repeats):
        print(f"bench: round {round_ + 1}/{args.repeats}", file=sys.stderr)
        for i, path in enumerate(args.config):
            runs[path].append(run_job(configs[path], inputs.all_path, work, f"compare-{i}"))
    write_results(args.results, "compare",
                  f"# Cascade configs side by side\n\n{len(inputs.all_texts)} SST-2 dev + test "
                  f"records (accuracy on the {len(inputs.dev_texts)} dev ones), median of "
                  f"{args.repeats} runs, each a fresh process.\n\n"
                  f"{table(args.config, runs, len(inputs.all_texts))}",
                  command=command_line("bench.compare", argv))


if __name__ == "__main__":
    main()
