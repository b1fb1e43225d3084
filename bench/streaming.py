"""The cascade in streaming mode on Prism: throughput, landing-to-prediction latency, and the
escalation rate per window with and without a budget.

    python -m bench.streaming --config bench/results/configs/tuned-combined-two-tier-drop03.yaml

Each run starts `beam-cascade run --streaming` on an empty watched folder, waits until the job
is up (a probe file's predictions appear), then drops --files files of --per_file SST-2
sentences, one every --every seconds, each renamed into place whole. A file's latency is the
time from its rename to the first moment all its ids are in the predictions files; the
throughput is all records over the time from the first landing to the last file's
predictions. A last run drops all files at once: its rate is the job's streaming capacity
(the paced runs only keep up with what is offered). The batch job over the same records
gives the batch rate. Sentences land shortest first, so the stream gets harder as it goes
(long SST-2 sentences escalate more) and the escalation rate shifts between windows.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench.lib.cli import config_study_parser
from bench.lib.configs import RoutingStats, ThresholdRange, config_to_dict
from bench.lib.data import write_records
from bench.lib.jobs import DIRECT, bench_config, run_job
from bench.lib.paths import CACHE
from bench.lib.results import command_line, write_results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = config_study_parser("bench.streaming", __doc__)
    p.add_argument("--files", type=int, default=12)
    p.add_argument("--per_file", type=int, default=500)
    p.add_argument("--every", type=float, default=2.0, help="seconds between landings")
    p.add_argument("--window_secs", type=float, default=5.0)
    p.add_argument("--max_escalation_rate", type=float, default=None,
                   help="also run with this escalation budget")
    return p.parse_args(argv)


def prism() -> str:
    return subprocess.run(["scripts/prism.sh"], check=True, capture_output=True,
                          text=True).stdout.split()[-1]


def predicted_ids(output: str) -> set[str]:
    ids = set()
    for name in os.listdir(output) if os.path.isdir(output) else []:
        if name.startswith("predictions-"):
            with open(os.path.join(output, name), encoding="utf-8") as f:
                ids.update(json.loads(line)["id"] for line in f)
    return ids


def land(rows: list[str], folder: str, name: str) -> float:
    staged = os.path.join(folder, f".{name}.tmp")
    with open(staged, "w", encoding="utf-8") as f:
        f.writelines(rows)
    os.rename(staged, os.path.join(folder, name))
    return time.time()


def streaming_run(args, config_path: str, chunks: list[list[str]], work: str,
                  budget: float | None, every: float) -> dict:
    """One streaming job over the chunks; latencies, throughput and per-window stats."""
    folder, output = os.path.join(work, "landing"), os.path.join(work, "out")
    for path in (folder, output):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(folder)
    argv = [sys.executable, "-m", "pipeline.run", "--streaming", "--runner", "PrismRunner",
            "--prism_location", prism(), "--config", config_path, "--input",
            os.path.join(folder, "*.jsonl"), "--output", output, "--output_format", "jsonl",
            "--window_secs", str(args.window_secs), "--poll_interval_secs", "0.5"]
    if budget is not None:
        argv += ["--max_escalation_rate", str(budget)]
    log = open(os.path.join(work, f"job-budget-{budget}-every-{every:g}.log"), "w",
               encoding="utf-8")
    job = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = [json.dumps({"id": "probe", "text": "warm up"}) + "\n"]
        land(probe, folder, "probe.jsonl")
        wait_until(lambda: "probe" in predicted_ids(output), job, 300)
        landed = {}
        pending = {}
        for n, chunk in enumerate(chunks):
            landed[n] = land(chunk, folder, f"part-{n:03d}.jsonl")
            pending[n] = {json.loads(line)["id"] for line in chunk}
            time.sleep(every)
        done = {}
        wait_until(lambda: _mark_done(pending, done, predicted_ids(output)), job, 600)
    finally:
        job.terminate()
        job.wait(60)
        log.close()
    latencies = [done[n] - landed[n] for n in landed]
    windows = sorted((RoutingStats.from_json(json.load(open(os.path.join(output, name))))
                      for name in os.listdir(output) if name.startswith("routing_stats-")),
                     key=lambda s: s.window.start)
    records = sum(len(c) for c in chunks)
    return {"latencies": latencies, "records": records,
            "records_per_second": records / (max(done.values()) - min(landed.values())),
            "windows": [(w.predictions, w.tiers[0].escalation_rate,
                         threshold_used(w.tiers[0].effective_threshold))
                        for w in windows]}


def threshold_used(used: ThresholdRange | None) -> str:
    if used is None:
        return "configured"
    low, high = f"{used.min:.3f}", f"{used.max:.3f}"
    return low if low == high else f"{low} to {high}"


def _mark_done(pending: dict, done: dict, ids: set[str]) -> bool:
    for n in list(pending):
        if pending[n] <= ids:
            done[n] = time.time()
            del pending[n]
    return not pending


def wait_until(condition, job: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if job.poll() is not None:
            raise RuntimeError(f"the streaming job exited with {job.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("predictions did not appear in time")
        time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = os.path.join(CACHE, "work", "streaming")
    os.makedirs(work, exist_ok=True)
    config = config_to_dict(bench_config(args.config))
    config_path = os.path.join(work, "cascade.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    total = args.files * args.per_file
    path = write_records(args.data, total, os.path.join(work, "records.jsonl"))
    with open(path, encoding="utf-8") as f:
        lines = sorted(f, key=len)  # shortest first: the stream gets harder as it goes
    chunks = [lines[i * args.per_file:(i + 1) * args.per_file] for i in range(args.files)]
    batch = run_job(config, path, work, "batch", DIRECT)
    runs = {budget: streaming_run(args, config_path, chunks, work, budget, args.every)
            for budget in dict.fromkeys((None, args.max_escalation_rate))}
    saturated = streaming_run(args, config_path, chunks, work, None, 0.0)
    lines_out = [
        f"# Streaming\n\n{args.files} files of {args.per_file} SST-2 sentences (shortest "
        f"first), one landing every {args.every} s in a watched folder (paced runs) or all at "
        f"once (saturated); Prism runner, {args.window_secs:g} s windows, polling every 0.5 s; "
        "2 cores.\n",
        "| mode | records/s | latency median (s) | latency p95 (s) |", "|---|---|---|---|",
        f"| batch, FnApiRunner | {total / batch['seconds']:.0f} | | |"]
    rows = [(f"streaming, paced, budget {budget}", run) for budget, run in runs.items()]
    for mode, run in rows + [("streaming, saturated, budget None", saturated)]:
        lines_out.append(
            f"| {mode} | {run['records_per_second']:.0f} "
            f"| {statistics.median(run['latencies']):.1f} "
            f"| {percentile(run['latencies'], 0.95):.1f} |")
    for budget, run in runs.items():
        lines_out += [f"\n## Tier-1 escalation per window, budget {budget}\n",
                      "| window | records | escalation rate | effective threshold |",
                      "|---|---|---|---|"]
        lines_out += [f"| {i} | {n} | {rate:.3f} | {used} |"
                      for i, (n, rate, used) in enumerate(run["windows"])]
    write_results(args.results, "streaming", "\n".join(lines_out),
                  command=command_line("bench.streaming", argv))


if __name__ == "__main__":
    main()
