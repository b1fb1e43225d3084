"""Command-line options of `beam-cascade run`, as Beam PipelineOptions.

Being PipelineOptions, they parse alongside every standard Beam option (`--runner`,
`--direct_num_workers`, `--temp_location`, ...) and travel with the job to the workers.
"""
from __future__ import annotations

import difflib

from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions,
                                                  PipelineOptions, StandardOptions)

from models.loading import TorchThreads
from pipeline.io import INPUT_FORMATS, OUTPUT_FORMATS


def _thresholds(value: str) -> list[float]:
    return [float(v) for v in value.split(",")]


# Flags that set a tier key in every tier whose config leaves it unset (pipeline/config.py).
TIER_FLAGS = {
    "max_batch_duration_secs": "batch across bundles, waiting at most this long for a batch "
                               "to fill (for Flink and other small-bundle runners)",
    "inference_timeout_secs": "dead-letter a batch whose model call takes longer than this",
    "max_escalation_rate": "at most this share of a tier's records (per window in "
                           "streaming, of the whole run in batch) go on to the next tier: the "
                           "threshold is lowered where needed (see README); escalating tiers "
                           "only",
}


class CascadeOptions(PipelineOptions):
    """Where to read and write, and which cascade to run (a config file or tier flags)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--input", action="append", default=None,
            help="input file or glob (Parquet or JSON Lines, optionally .gz); repeatable")
        parser.add_argument(
            "--input_format", choices=INPUT_FORMATS, default=None,
            help="format of every input file, when it cannot be told from the file names")
        parser.add_argument("--output", default=None,
                            help="output folder (any Beam filesystem path)")
        parser.add_argument(
            "--output_format", choices=OUTPUT_FORMATS, default=None,
            help="predictions format; default: the --output name's extension, else parquet")
        parser.add_argument("--config", default=None,
                            help="cascade config, YAML or JSON (see README)")
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
                 "everything) when more than this share of the records end as dead letters; "
                 "an input file that cannot be read fails it always")
        parser.add_argument(
            "--torch_threads", type=int, default=None,
            help="torch threads per worker process; default: the machine's cores divided by "
                 "the workers that share it (see README, Sizing threads)")
        for flag, help_text in TIER_FLAGS.items():
            parser.add_argument(f"--{flag}", type=float, default=None,
                                help=f"{help_text}; applies to every tier that does not set it")
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
            "--passthrough_fields", default=None,
            help="comma list of input fields copied to the output; overrides the config")


def unknown_flags(options: PipelineOptions) -> dict[str, str | None]:
    """The flags that neither this tool nor Beam knows, each with the nearest known flag.

    Beam itself drops such flags with a warning and runs without them: a misspelt
    `--max_escalation 0.1` would run the job with no escalation budget at all."""
    known = options.get_all_options()
    given = options.get_all_options(retain_unknown_options=True)
    return {name: next(iter(difflib.get_close_matches(name, known, n=1)), None)
            for name in sorted(set(given) - set(known))}


def torch_threads(options: PipelineOptions) -> TorchThreads:
    """--torch_threads, else cores shared out over the workers of a machine, as far as the
    options tell: the DirectRunner's workers, a Flink job's parallelism (all of it on one
    machine with the LOOPBACK environment); on Dataflow one thread, since it runs one SDK
    process per vCPU."""
    explicit = options.view_as(CascadeOptions).torch_threads
    runner = (options.view_as(StandardOptions).runner or "").lower()
    if explicit is None and "dataflow" in runner:
        explicit = 1
    if "flink" in runner:
        workers = options.view_as(FlinkRunnerOptions).parallelism
    else:
        workers = options.view_as(DirectOptions).direct_num_workers
    return TorchThreads(explicit, max(1, workers or 1))
