"""Tier 2 alone as a Beam job on each runtime, against Beam's stock handler, on an idle
machine and beside a busy neighbour.

    python -m bench.runtime_jobs [--data ../shared/data/sst2] [--repeats 3]
        [--records 50000] [--machines idle] [--runtimes torch/,onnxruntime/int8]
        [--cascade bench/results/configs/tuned-two-tier.yaml ...] [--processes 1,2]

The reference MiniLM-L6 tier alone, as a job (FnApiRunner, one process, each job a fresh
process, start-up and model loading included) over the 2,693 SST-2 dev + test sentences, on
PyTorch fp32 (the default: 2 threads that sleep while they wait), ONNX Runtime fp32, int8 of
the attention only and int8 everywhere (models/onnx_export.py; exported before the first
round, the export's seconds reported apart), OpenVINO fp32, and Beam's stock RunInference +
HuggingFacePipelineModelHandler job (bench/peer.py, its own environment, torch's defaults),
idle and beside one CPU-bound process (bench/threads.py `neighbour`). All settings
interleaved in each of --repeats rounds; medians of seconds and of peak memory (the job's
process plus its largest child: getrusage gives no sum over children). Accuracy: the 872
labelled dev sentences, as each job scored them. With --records N the input is N sentences:
dev and test first, then SST-2's train phrases cycled (unique ids; accuracy still on the dev
records). --machines and --runtimes choose settings; each --cascade adds a cascade config (its
own fields replaced by the input's) as one more setting; --processes 1,2 runs every job of
this project also on the DirectRunner's 2 worker processes (`--direct_running_mode
multi_processing --direct_num_workers 2`; the stock handler keeps its one process). Writes
runtime_jobs.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import statistics
import sys
import time

from bench.lib.cli import study_parser
from bench.lib.configs import config_to_dict
from bench.lib.data import sst2_labelled
from bench.lib.jobs import (DIRECT, PEER, PEER_BATCH_SIZE, Inputs, bench_config, job_stats,
                            peer_python, run_job, run_peer, write_inputs)
from bench.lib.paths import CACHE, REFERENCE_TIER2
from bench.lib.results import command_line, write_results
from bench.lib.tiers import exported_model
from bench.lib.timing import NEIGHBOURS, neighbour

RUNTIMES = (("torch", None), ("onnxruntime", None), ("onnxruntime", "int8_attention"),
            ("onnxruntime", "int8"), ("openvino", None))


def export_seconds(runtimes) -> dict[str, float]:
    """Exports the tier in each ONNX precision into this machine's cache (timed)."""
    seconds = {}
    for quantize in dict.fromkeys(q for r, q in runtimes if r != "torch"):
        start = time.perf_counter()
        exported_model(os.path.abspath(REFERENCE_TIER2), quantize)
        seconds[quantize or "fp32"] = time.perf_counter() - start
    return seconds


def tier_config(runtime: str, quantize: str | None) -> dict:
    return {"id_field": "id", "label_field": "label", "tiers": [{
        "name": "minilm6", "model": os.path.abspath(REFERENCE_TIER2), "runtime": runtime,
        "quantize": quantize}]}


def bulk_inputs(inputs: Inputs, data: str, records: int, work: str) -> Inputs:
    """`records` sentences: the dev (labelled) and test ones, then train phrases, cycled."""
    train = sst2_labelled(data, "train.tsv").texts
    labels = dict(zip(inputs.all_ids, inputs.dev_labels))
    path = os.path.join(work, f"bulk-{records}.jsonl")
    texts = itertools.cycle(inputs.all_texts + train)
    with open(path, "w", encoding="utf-8") as f:
        for i, text in zip(range(records), texts):
            key = inputs.all_ids[i] if i < len(inputs.all_ids) else f"r{i}"
            row = {"id": key, "text": text, **({"label": labels[key]} if key in labels else {})}
            f.write(json.dumps(row) + "\n")
    return dataclasses.replace(inputs, all_path=path)


def parse_runtimes(text: str) -> list[tuple[str, str | None]]:
    """"torch/,onnxruntime/int8" -> [("torch", None), ("onnxruntime", "int8")]."""
    pairs = [item.split("/") for item in text.split(",")]
    return [(runtime, quantize or None) for runtime, quantize in pairs]


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.runtime_jobs", __doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--records", type=int, help="a bulk input of this many sentences")
    p.add_argument("--machines", default=",".join(NEIGHBOURS),
                   help=f"comma list of {', '.join(NEIGHBOURS)}")
    p.add_argument("--runtimes", default=",".join(f"{r}/{q or ''}" for r, q in RUNTIMES),
                   help="comma list of runtime/precision (empty: fp32)")
    p.add_argument("--cascade", action="append", default=[],
                   help="a cascade config to time beside tier 2 alone (repeatable)")
    p.add_argument("--processes", default="1",
                   help="comma list of DirectRunner worker processes for this project's jobs")
    args = p.parse_args(argv)
    peer = peer_python()
    work = os.path.join(CACHE, "runtime_jobs")
    os.makedirs(work, exist_ok=True)
    inputs = write_inputs(args.data, work)
    if args.records:
        inputs = bulk_inputs(inputs, args.data, args.records, work)
    runtimes = parse_runtimes(args.runtimes)
    exports = export_seconds(runtimes)
    configs = {setting: tier_config(*setting) for setting in runtimes}
    for path in args.cascade:
        configs[path] = {**config_to_dict(bench_config(path)), "id_field": "id",
                         "label_field": "label"}
    jobs = {(setting, int(n)): config for setting, config in configs.items()
            for n in args.processes.split(",")}
    settings = [(kind, setting) for kind in args.machines.split(",")
                for setting in (*jobs, PEER)]
    runs: dict[tuple, list[dict]] = {s: [] for s in settings}
    for round_ in range(args.repeats):
        for kind, setting in settings:
            print(f"bench: round {round_ + 1}/{args.repeats}: {kind}, {setting}",
                  file=sys.stderr)
            with neighbour(kind):
                if setting == PEER:
                    result = run_peer(peer, REFERENCE_TIER2, inputs, work, PEER_BATCH_SIZE)
                else:
                    result = run_job(jobs[setting], inputs.all_path, work, "job",
                                     runner_args(setting[1]))
                    result["accuracy"] = job_stats(result).accuracy
            runs[kind, setting].append(result)
    command = command_line("bench.runtime_jobs", argv)
    records = args.records or len(inputs.all_texts)
    write_results(args.results, "runtime_jobs", markdown(command, records, exports, runs),
                  {"command": command, "records": records, "export_seconds": exports,
                   "runs": [{"machine": k, "setting": _name(s), "results": v}
                            for (k, s), v in runs.items()]})


def runner_args(processes: int) -> list[str]:
    """The DirectRunner (FnApiRunner) in one process, or in `processes` worker processes."""
    workers = [] if processes == 1 else ["--direct_running_mode", "multi_processing",
                                         "--direct_num_workers", str(processes)]
    return DIRECT + workers + ["--progress_secs", "0"]


def _name(setting) -> str:
    if setting == PEER:
        return setting
    job, processes = setting
    name = (f"`{os.path.basename(job)}`" if isinstance(job, str)
            else f"tier 2 alone, {job[0]} {job[1] or 'fp32'}")
    return name if processes == 1 else f"{name}, {processes} processes"


def markdown(command: str, records: int, exports: dict[str, float],
             runs: dict[tuple, list[dict]]) -> str:
    seconds = {s: statistics.median(r["seconds"] for r in v) for s, v in runs.items()}
    lines = ["# Tier 2 alone on each runtime against Beam's stock handler", "",
             f"`{command}`: Beam jobs (FnApiRunner, one process unless said, a fresh process "
             f"per job, start-up included) over {records:,} SST-2 sentences, medians; 2 cores; tier 2 "
             "is the reference MiniLM-L6. Export before the first round (once per machine): "
             + ", ".join(f"{k} {v:.1f} s" for k, v in exports.items()) + ".", "",
             "| machine | setting | dev accuracy | seconds | records/s | vs stock handler | "
             "peak memory (MiB) |", "|---|---|---|---|---|---|---|"]
    for (kind, setting), results in runs.items():
        peak = (statistics.median(_peak_mib(r) for r in results)
                if "peak_rss_mib" in results[0] else None)
        lines.append(
            f"| {kind} | {_name(setting)} | {results[0]['accuracy']:.2%} | "
            f"{seconds[kind, setting]:.1f} | {records / seconds[kind, setting]:.0f} | "
            f"{seconds[kind, PEER] / seconds[kind, setting]:.2f}x | "
            f"{'' if peak is None else f'{peak:.0f}'} |")
    lines += [""] + [
        f"{_name(setting)}: {seconds[kind, (setting[0], 1)] / seconds[kind, setting]:.2f}x "
        f"the records/s of one process ({kind})."
        for kind, setting in runs if setting != PEER and setting[1] > 1
        and (kind, (setting[0], 1)) in seconds]
    return "\n".join(lines) + "\n"


def _peak_mib(result: dict) -> float:
    """The job's own process plus its largest child process, in MiB."""
    return sum(result["peak_rss_mib"].values())


if __name__ == "__main__":
    main()
