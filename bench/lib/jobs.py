"""Running a beam-cascade job (or the stock-handler peer's) in a fresh process, on the
benchmark's JSONL input, on one of the runners the studies compare, and reading what it
measured."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Sequence

from models.config import CascadeConfig
from models.routing_stats import RoutingStats
from pipeline.config import load_config

from bench.lib.data import sst2_labelled, sst2_unlabelled
from bench.lib.paths import LABELS

STARTUP_RECORDS = 16
DIRECT = ["--runner", "FnApiRunner"]
TWO_PROCESSES = DIRECT + ["--direct_running_mode", "multi_processing",
                          "--direct_num_workers", "2"]
TWO_THREADS = DIRECT + ["--direct_running_mode", "multi_threading", "--direct_num_workers", "2"]
PEER = "Beam's stock handler"
PEER_BATCH_SIZE = 64


def flink(jar: str) -> list[str]:
    """The runner arguments of Beam's FlinkRunner: parallelism 2, LOOPBACK, the job server
    `jar` (scripts/flink_job_server.sh)."""
    return ["--runner", "FlinkRunner", "--flink_master", "[local]", "--parallelism", "2",
            "--environment_type", "LOOPBACK", "--flink_job_server_jar", jar]


@dataclass(frozen=True)
class Inputs:
    """The benchmark's texts, and the JSONL files every setting reads."""

    dev_texts: list[str]
    dev_labels: list[str]
    all_texts: list[str]  # dev first, then test
    all_ids: list[str]
    all_path: str
    startup_path: str  # the first STARTUP_RECORDS records: a job's fixed cost


def write_inputs(data: str, work: str) -> Inputs:
    """dev (with labels) and test (without) as one JSONL file: accuracy comes from the
    labelled records, throughput from all of them."""
    dev = sst2_labelled(data, "dev.tsv")
    test = sst2_unlabelled(data)
    dev_labels = [LABELS[i] for i in dev.label_ids]
    rows = [{"id": f"dev-{i}", "text": t, "label": y}
            for i, (t, y) in enumerate(zip(dev.texts, dev_labels))]
    rows += [{"id": f"test-{i}", "text": t} for i, t in enumerate(test)]
    paths = [os.path.join(work, name) for name in ("sst2-dev-test.jsonl", "startup.jsonl")]
    for path, chosen in zip(paths, (rows, rows[:STARTUP_RECORDS])):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in chosen)
    return Inputs(dev.texts, dev_labels, [r["text"] for r in rows], [r["id"] for r in rows],
                  *paths)


def bench_config(path: str) -> CascadeConfig:
    """A cascade config file, reading the benchmark input's fields (text, id, label)."""
    return dataclasses.replace(load_config(path), text_field="text", id_field="id",
                               label_field="label", text_pair_field=None)


def run_job(config: dict, input_path: str, work: str, name: str,
            runner_args: Sequence[str] = ("--runner", "FnApiRunner")) -> dict:
    """One beam-cascade job in a fresh process; its seconds, routing statistics and peak
    memory (bench/timed_job.py)."""
    config_path = os.path.join(work, f"{name}.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    argv = [sys.executable, "-m", "bench.timed_job", "--config", config_path,
            "--input", input_path, "--output", os.path.join(work, "out", name),
            "--output_format", "jsonl", *runner_args]
    return json.loads(run_command(argv).splitlines()[-1])


def job_stats(run: dict) -> RoutingStats:
    """A timed job's routing statistics (bench/timed_job.py gives them as routing_stats.json
    holds them)."""
    return RoutingStats.from_json(run["stats"])


def records_per_tier(output: str, config: CascadeConfig, ids: list[str]) -> dict[str, list[int]]:
    """For each tier, the indices (into `ids`) of the records that reached it: those with a
    confidence from that tier in the job's predictions."""
    index = {record_id: i for i, record_id in enumerate(ids)}
    reached: dict[str, list[int]] = {t.name: [] for t in config.tiers}
    for path in sorted(glob.glob(os.path.join(output, "predictions-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for row in map(json.loads, f):
                for name, indices in reached.items():
                    if row[f"confidence_{name}"] is not None:
                        indices.append(index[row["id"]])
    return reached


def run_peer(peer_python: str, model: str, inputs: Inputs, work: str,
             batch_size: int) -> dict:
    """The stock Beam HF handler job in the peer's environment; seconds and dev accuracy."""
    prefix = os.path.join(work, "out", "peer", "predictions")
    for old in _files_with_prefix(prefix):
        os.remove(old)
    argv = [peer_python, "-m", "bench.peer", "--input", inputs.all_path, "--model", model,
            "--output", prefix, "--batch_size", str(batch_size)]
    result = json.loads(run_command(argv).splitlines()[-1])
    labels = {}
    for path in _files_with_prefix(prefix):
        with open(path, encoding="utf-8") as f:
            labels.update((r["id"], r["label"]) for r in map(json.loads, f))
    gold = {f"dev-{i}": y for i, y in enumerate(inputs.dev_labels)}
    result["records"] = len(labels)
    result["accuracy"] = sum(labels.get(i) == y for i, y in gold.items()) / len(gold)
    return result


def _files_with_prefix(prefix: str) -> list[str]:
    folder = os.path.dirname(prefix)
    if not os.path.isdir(folder):
        return []
    base = os.path.basename(prefix)
    return [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(base)]


def run_command(argv: list[str]) -> str:
    """A command's stdout; exits with the command and the end of its stderr when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: `{shlex.join(argv)}` failed:\n{done.stderr[-3000:]}")
    return done.stdout


def peer_python() -> str:
    """The peer environment's Python, built on first use by bench/peer_venv.sh."""
    script = 'source bench/peer_venv.sh >&2 && echo "$peer_python"'
    return run_command(["bash", "-c", script]).strip().splitlines()[-1]
