"""Tier 2 alone as a Beam job on each runtime, against Beam's stock handler, on an idle
machine and beside a busy neighbour.

    python -m bench.runtime_jobs [--data ../shared/data/sst2] [--repeats 3]

The reference MiniLM-L6 tier alone, as a job (FnApiRunner, one process, each job a fresh
process, start-up and model loading included) over the 2,693 SST-2 dev + test sentences, on
PyTorch fp32 (the default: 2 threads that sleep while they wait), ONNX Runtime fp32, int8 of
the attention only and int8 everywhere (models/onnx_export.py; exported before the first
round, the export's seconds reported apart), and Beam's stock RunInference +
HuggingFacePipelineModelHandler job (bench/peer.py, its own environment, torch's defaults),
idle and beside one CPU-bound process (bench/threads.py `neighbour`). All settings
interleaved in each of --repeats rounds; medians of seconds and of peak memory (the job's
process plus its largest child: getrusage gives no sum over children). Accuracy: the 872
labelled dev sentences, as each job scored them. Writes bench/results/runtime_jobs.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench.sst2 import (CACHE, DEFAULT_DATA, REFERENCE_TIER2, peer_python, run_job, run_peer,
                        write_inputs)
from bench.threads import NEIGHBOURS, PEER, PEER_BATCH_SIZE, neighbour
from models.onnx_export import exported_model

RESULTS = "bench/results"
RUNTIMES = (("torch", None), ("onnxruntime", None), ("onnxruntime", "int8_attention"),
            ("onnxruntime", "int8"))


def export_seconds() -> dict[str, float]:
    """Exports the tier in every precision into this machine's cache (timed)."""
    seconds = {}
    for _, quantize in RUNTIMES[1:]:
        start = time.perf_counter()
        exported_model(os.path.abspath(REFERENCE_TIER2), quantize)
        seconds[quantize or "fp32"] = time.perf_counter() - start
    return seconds


def tier_config(runtime: str, quantize: str | None) -> dict:
    return {"id_field": "id", "label_field": "label", "tiers": [{
        "name": "minilm6", "model": os.path.abspath(REFERENCE_TIER2), "runtime": runtime,
        "quantize": quantize}]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.runtime_jobs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with GLUE SST-2's TSV files")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    peer = peer_python()
    work = os.path.join(CACHE, "runtime_jobs")
    os.makedirs(work, exist_ok=True)
    inputs = write_inputs(args.data, work)
    exports = export_seconds()
    settings = [(kind, setting) for kind in NEIGHBOURS for setting in (*RUNTIMES, PEER)]
    runs: dict[tuple, list[dict]] = {s: [] for s in settings}
    for round_ in range(args.repeats):
        for kind, setting in settings:
            print(f"bench: round {round_ + 1}/{args.repeats}: {kind}, {setting}",
                  file=sys.stderr)
            with neighbour(kind):
                if setting == PEER:
                    result = run_peer(peer, REFERENCE_TIER2, inputs, work, PEER_BATCH_SIZE)
                else:
                    result = run_job(tier_config(*setting), inputs.all_path, work, "job",
                                     ["--runner", "FnApiRunner", "--progress_secs", "0"])
                    result["accuracy"] = result["stats"]["accuracy"]
            runs[kind, setting].append(result)
    write_results(f"python -m bench.runtime_jobs --repeats {args.repeats}",
                  len(inputs.all_texts), exports, runs)


def _name(setting) -> str:
    return setting if setting == PEER else f"{setting[0]} {setting[1] or 'fp32'}"


def write_results(command: str, records: int, exports: dict[str, float],
                  runs: dict[tuple, list[dict]]) -> None:
    seconds = {s: statistics.median(r["seconds"] for r in v) for s, v in runs.items()}
    lines = ["# Tier 2 alone on each runtime against Beam's stock handler", "",
             f"`{command}`: the reference MiniLM-L6 tier alone as a Beam job (FnApiRunner, one "
             f"process, a fresh process per job, start-up included) over {records:,} SST-2 "
             "sentences, medians; 2 cores. Export before the first round (once per machine): "
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
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "runtime_jobs.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "runtime_jobs.json"), "w", encoding="utf-8") as f:
        json.dump({"command": command, "records": records, "export_seconds": exports,
                   "runs": [{"machine": k, "setting": _name(s), "results": v}
                            for (k, s), v in runs.items()]}, f, indent=1)
    print(text)


def _peak_mib(result: dict) -> float:
    """The job's own process plus its largest child process, in MiB."""
    return sum(result["peak_rss_mib"].values())


if __name__ == "__main__":
    main()
