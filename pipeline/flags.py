"""The flags of `beam-cascade run`, as plain argparse: the job's PipelineOptions
(pipeline/options.py) take them from here, and the command reads them, prints its help and
checks the config before Beam or torch is imported (seconds saved on every start).
"""
from __future__ import annotations

import argparse

INPUT_FORMATS = ("jsonl", "parquet", "tsv", "csv")
OUTPUT_FORMATS = ("jsonl", "parquet")


def _thresholds(value: str) -> list[float]:
    return [float(v) for v in value.split(",")]


# Flags that set a tier key in every tier whose config leaves it unset (pipeline/config.py).
TIER_FLAGS = {
    "max_batch_duration_secs": "batch across bundles, waiting at most this long for a batch "
                               "to fill (for Flink and other small-bundle runners)",
    "inference_timeout_secs": "dead-letter a batch whose model call takes longer than this",
    "max_escalation_rate": "at most this share of a tier's records (per window in "
                           "streaming, of the whole run in batch) go on to the next tier: the "
                           "threshold is lowered where needed (docs/streaming.md); escalating tiers "
                           "only",
    "audit_rate": "this share of a tier's decisions (hash-chosen by id) also goes to the last "
                  "tier, to measure their disagreement (docs/outputs.md); escalating tiers only",
    "max_disagreement": "per window, raise a tier's threshold until the 95%% bound on the "
                        "share of its records it decides against the last tier's answer is "
                        "within this (needs audit_rate; docs/streaming.md); escalating tiers "
                        "only",
}
ESCALATING_TIER_FLAGS = ("max_escalation_rate", "audit_rate", "max_disagreement")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the run command's own flags to `parser`."""
    parser.add_argument(
        "--input", action="append", default=None,
        help="input file or glob (Parquet, JSON Lines, TSV or CSV; all but Parquet "
             "optionally .gz); repeatable")
    parser.add_argument(
        "--input_format", choices=INPUT_FORMATS, default=None,
        help="format of every input file, when it cannot be told from the file names")
    parser.add_argument("--output", default=None,
                        help="output folder (any Beam filesystem path)")
    parser.add_argument(
        "--output_format", choices=OUTPUT_FORMATS, default=None,
        help="predictions format; default: the --output name's extension, else parquet")
    parser.add_argument("--config", default=None,
                        help="cascade config, YAML or JSON (docs/configuration.md)")
    for k in (1, 2, 3):
        parser.add_argument(f"--tier{k}", default=None,
                            help=f"checkpoint folder of tier {k}, instead of --config")
    parser.add_argument(
        "--threshold", type=_thresholds, default=None,
        help="with --tierN flags: confidence threshold of every tier but the last, or a "
             "comma list, one per tier")
    for field in ("text_field", "label_field", "text_pair_field"):
        parser.add_argument(f"--{field}", default=None,
                            help=f"overrides the config's {field}")
    parser.add_argument(
        "--id_field", default=None,
        help="field holding the records' own ids (default: id, where present; a record "
             "without one gets file:line); --id_field '' generates every id")
    parser.add_argument(
        "--max_error_rate", type=float, default=None,
        help="fail the job (exit status 3, _FAILED instead of _SUCCESS, after writing "
             "everything) when more than this share of the records end as dead letters "
             "(default 0.01; 1 accepts any share); a run that classified no record and an "
             "input file that cannot be read fail it always")
    parser.add_argument(
        "--calibrate_on_input", type=int, default=None, metavar="N",
        help="before routing, choose the thresholds under the accuracy guarantee on a "
             "sample of N input records (by id hash) and the labelled file the config's "
             "calibrate_on_input names; sets its records (docs/configuration.md)")
    parser.add_argument(
        "--torch_threads", type=int, default=None,
        help="torch threads per worker process; default: the CPUs the process may use "
             "(affinity, cgroup quota) divided by the workers that share them "
             "(docs/deployment.md, sizing threads)")
    for flag, help_text in TIER_FLAGS.items():
        parser.add_argument(f"--{flag}", type=float, default=None,
                            help=f"{help_text}; applies to every tier that does not set it")
    parser.add_argument(
        "--progress_secs", type=float, default=10.0,
        help="print a progress line (records read and per second, each tier's records "
             "seen and escalated) every this many seconds of a batch job; 0: none")
    parser.add_argument(
        "--window_secs", type=float, default=60.0,
        help="streaming: event-time window of the predictions files and routing "
             "statistics, in seconds (default 60)")
    parser.add_argument(
        "--poll_interval_secs", type=float, default=10.0,
        help="streaming: how often the --input patterns are listed for new files")
    parser.add_argument("--pubsub_subscription", default=None,
                        help="streaming: read JSON records from this Pub/Sub "
                             "subscription (projects/P/subscriptions/S) instead of files")
    parser.add_argument("--pubsub_topic", default=None,
                        help="streaming: read JSON records from this Pub/Sub topic")
    parser.add_argument("--kafka_bootstrap_servers", default=None,
                        help="streaming: read JSON records from Kafka (host:port,...)")
    parser.add_argument("--kafka_topic", action="append", default=None,
                        help="streaming: Kafka topic to read (repeatable)")
    parser.add_argument(
        "--kafka_expansion_jar", default=None,
        help="streaming: the Kafka source's Java expansion service from "
             "scripts/kafka_expansion_service.sh, which runs it as a local Java process "
             "(no Docker; tested on Prism); default: Beam's own, in Docker")
    parser.add_argument(
        "--training_examples", action="store_true",
        help="also write training-*.jsonl: each record the last tier scored (the escalated "
             "ones and the audit sample) with its text and the last tier's probabilities, "
             "for `beam-cascade train --from_outputs` (docs/outputs.md)")
    parser.add_argument(
        "--passthrough_fields", default=None,
        help="comma list of input fields copied to the output; overrides the config")


def run_parser() -> argparse.ArgumentParser:
    """The run command's own flags; Beam's pipeline options are parsed by Beam."""
    parser = argparse.ArgumentParser(
        prog="beam-cascade run", description="Classify files with a cascade of models.",
        epilog="Every other flag is a Beam pipeline option (--runner, --direct_num_workers, "
               "--temp_location, ...). The config file: docs/configuration.md.")
    add_run_arguments(parser)
    return parser
