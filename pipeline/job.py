"""Assembles and runs the cascade job (the `beam-cascade run` command is pipeline/run.py).

    read files -> parse (bad rows to dead letters) -> tier 1 -> route by confidence
      -> tier 2 on the uncertain branch -> ... -> merge decided branches
      -> write predictions, errors and routing statistics

Everything the job needs is checked on the launcher first (config, model folders, labels,
input patterns), so a mistake fails in seconds with a message instead of on a worker.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.config import CascadeConfig, ConfigError
from models.cpus import TorchThreads
from models.routing_stats import InputCalibration, RoutingStats
from models.validation import validate_models
from pipeline.config import cascade_config
from pipeline.input_calibration import calibrated_on_input
from pipeline.options import CascadeOptions, torch_threads, unknown_flags
from pipeline.output_folder import (OutputFolderError, check_output_folder,
                                    claim_for_streaming, discard_stale_staging,
                                    new_staging_folder, publish)
from pipeline.progress import ProgressReporter
from pipeline.sinks import (WriteErrors, WritePredictions, WriteRoutingStats,
                            WriteTrainingExamples, read_routing_stats, rewrite_routing_stats)
from pipeline.sources import (FORMAT_SUFFIXES, InputError, ListedFiles, ReadKafkaRecords,
                              ReadPubSubRecords, ReadRecords, WatchedFiles, list_input_files)
from pipeline.stopping import reraise_if_stopped, signals_deferred
from transforms.cascade import TierCascade
from transforms.dead_letters import DEAD_LETTERS
from transforms.parsing import ParseRecords, RecordFields
from transforms.statistics import ComputeRoutingStats, StatisticsInputs
from transforms.windowing import fixed_windows

_LOG = logging.getLogger(__name__)
# What the launcher refuses before the job starts, besides a ConfigError (exit status 2).
USAGE_ERRORS = (InputError, OutputFolderError)


@dataclass(frozen=True)
class CascadeJob:
    """Everything a run needs, checked: the cascade, its labels, where records come from
    (a ReadRecords or streaming source), the output, and in streaming the window size; the
    input files or patterns, which the output folder must not hold."""

    config: CascadeConfig
    labels: tuple[str, ...]
    source: beam.PTransform
    output: str
    output_format: str
    threads: TorchThreads = TorchThreads()
    progress_secs: float = 0.0  # a progress line every so often (0: none)
    window_secs: float | None = None
    input_files: tuple[str, ...] = ()  # listed on the launcher (batch)
    watched_patterns: tuple[str, ...] = ()  # streaming
    training_examples: bool = False  # also write training-*.jsonl
    input_calibration: InputCalibration | None = None  # the thresholds chosen on the input

    @property
    def fields(self) -> RecordFields:
        return RecordFields.of(self.config, self.labels)


def output_format(options: CascadeOptions) -> str:
    """--output_format, else the output folder's extension (out.jsonl/), else parquet."""
    if options.output_format:
        return options.output_format
    extension = os.path.splitext(options.output.rstrip("/"))[1].lower()
    return FORMAT_SUFFIXES.get(extension, "parquet")


def job_from_options(pipeline_options: PipelineOptions,
                     config: CascadeConfig | None = None) -> CascadeJob:
    """Checks the options, the config (built from the options unless it was already), the
    model folders and the inputs."""
    unknown = unknown_flags(pipeline_options)
    if unknown:
        raise ConfigError("unknown flag(s) " + ", ".join(
            f"--{name}" + (f" (did you mean --{nearest}?)" if nearest else "")
            for name, nearest in unknown.items())
            + "; `beam-cascade run --help` lists this tool's flags, and every Beam pipeline "
              "option is accepted as well")
    options = pipeline_options.view_as(CascadeOptions)
    if not options.output:
        raise ConfigError("no output: pass --output FOLDER")
    if options.torch_threads is not None and options.torch_threads < 1:
        raise ConfigError(f"--torch_threads {options.torch_threads} must be at least 1")
    config = config or cascade_config(options)
    labels = validate_models(config)
    streaming = pipeline_options.view_as(StandardOptions).streaming
    if streaming and not options.window_secs > 0:
        raise ConfigError(f"--window_secs {options.window_secs} must be a number of seconds > 0")
    if streaming and config.calibrate_on_input:
        raise ConfigError("calibrate_on_input samples the whole input before the job routes "
                          "any record, and a streaming source cannot be sampled ahead: "
                          "remove it, or calibrate on a batch of the stream's records with "
                          "beam-cascade calibrate --unlabelled")
    source, input_files = record_source(options, streaming, config)
    calibration = None
    if config.calibrate_on_input:
        config, calibration = calibrated_on_input(config, labels, options.input,
                                                  options.input_format)
    return CascadeJob(config, labels, source, options.output, output_format(options),
                      torch_threads(pipeline_options), options.progress_secs,
                      options.window_secs if streaming else None,
                      tuple(input_files), tuple(options.input or ()) if streaming else (),
                      options.training_examples, calibration)


def record_source(options: CascadeOptions, streaming: bool, config: CascadeConfig
                  ) -> tuple[beam.PTransform, list[str]]:
    """Where records come from: the --input files (listed now in batch, watched in
    streaming), a Pub/Sub subscription or topic, or Kafka topics (streaming only); and the
    input files listed now (batch only)."""
    columns = RecordFields.of(config).columns
    pubsub = options.pubsub_subscription or options.pubsub_topic
    kafka = options.kafka_bootstrap_servers or options.kafka_topic
    given = [name for name, value in (("--input", options.input), ("--pubsub_*", pubsub),
                                      ("--kafka_*", kafka)) if value]
    if len(given) > 1:
        raise ConfigError(f"give one source, not {' and '.join(given)}")
    if (pubsub or kafka) and not streaming:
        raise ConfigError("Pub/Sub and Kafka sources are unbounded: add --streaming")
    if options.pubsub_subscription and options.pubsub_topic:
        raise ConfigError("give --pubsub_subscription or --pubsub_topic, not both")
    if pubsub:
        return ReadPubSubRecords(options.pubsub_subscription, options.pubsub_topic), []
    if kafka:
        if not (options.kafka_bootstrap_servers and options.kafka_topic):
            raise ConfigError("Kafka needs both --kafka_bootstrap_servers host:port and "
                              "--kafka_topic NAME")
        jar = options.kafka_expansion_jar
        if jar and not os.path.isfile(jar):
            raise ConfigError(f"--kafka_expansion_jar {jar}: no such file; build it with "
                              "scripts/kafka_expansion_service.sh")
        return ReadKafkaRecords(options.kafka_bootstrap_servers, options.kafka_topic,
                                options.kafka_expansion_jar), []
    if not streaming:
        files = [path for path, _ in list_input_files(options.input or [], options.input_format)]
        return ReadRecords(ListedFiles(files), options.input_format, columns), files
    if not options.input:
        raise ConfigError("no input: pass --input PATTERN (files to watch), "
                          "--pubsub_subscription or --kafka_topic")
    if not options.poll_interval_secs > 0:
        raise ConfigError(f"--poll_interval_secs {options.poll_interval_secs} must be > 0")
    return ReadRecords(WatchedFiles(options.input, options.poll_interval_secs),
                       options.input_format, columns), []


def build_pipeline(pipeline: beam.Pipeline, job: CascadeJob) -> None:
    """Adds the whole cascade job to `pipeline`."""
    config, tier_names = job.config, job.config.tier_names
    read = pipeline | "Read" >> job.source
    rows, read_errors = read["rows"], read["dead_letters"]
    if job.window_secs is not None:
        rows = rows | "Windows" >> fixed_windows(job.window_secs)
        read_errors = read_errors | "ErrorWindows" >> fixed_windows(job.window_secs)
    parsed = rows | "Parse" >> beam.ParDo(ParseRecords(job.fields)).with_outputs(
        DEAD_LETTERS, main="records")
    cascade = parsed.records | "Cascade" >> TierCascade(config.tiers, job.threads)
    dead_letters = (read_errors, parsed[DEAD_LETTERS], cascade.dead_letters
                    ) | "AllDeadLetters" >> beam.Flatten()
    _ = (cascade.decided | "WritePredictions" >> WritePredictions(
        job.output, job.output_format, job.labels, tier_names, config.passthrough_fields))
    _ = dead_letters | "WriteErrors" >> WriteErrors(job.output)
    if job.training_examples:
        scored_by_last = {"escalated": cascade.decided[tier_names[-1]],
                          **({"audit": cascade.audits} if cascade.audits is not None else {})}
        _ = scored_by_last | "WriteTrainingExamples" >> WriteTrainingExamples(job.output,
                                                                              job.labels)
    inputs = StatisticsInputs(parsed.records, dead_letters, cascade.decided, cascade.audits,
                              cascade.audit_failures)
    _ = (inputs
         | "RoutingStats" >> ComputeRoutingStats(config.tiers, config.guarantee)
         | "WriteStats" >> WriteRoutingStats(job.output))


def run(argv: Sequence[str] | None = None, config: CascadeConfig | None = None
        ) -> RoutingStats | None:
    """Runs the job that the flags `argv` (and `config`, when already built from them)
    describe to completion and returns its routing statistics, with `failures`: the reasons
    the run failed its error limits (empty when it did not); in streaming, those of the
    windows closed when the job stopped (None if none had).

    The job writes into a staging folder; only once the pipeline has finished are the
    previous run's files replaced by the new ones, and the folder marked `_SUCCESS` (or
    `_FAILED` with the failures). A job that raises leaves the previous run's files as they
    were (pipeline/output_folder.py).
    """
    options = PipelineOptions(argv)
    job = job_from_options(options, config)
    check_output_folder(job.output, job.input_files, job.watched_patterns)
    if job.window_secs is not None:
        return run_streaming(options, job)
    staging = new_staging_folder(job.output)
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, dataclasses.replace(job, output=staging))
        with ProgressReporter(job.config.tier_names, job.progress_secs,
                              input_files=len(job.input_files)) as reporter:
            result = pipeline.run()  # the in-process FnApiRunner returns at the end
            reporter.follow(result)
            result.wait_until_finish()
        stats = read_routing_stats(staging)
    except BaseException as e:
        discard_stale_staging(job.output)
        reraise_if_stopped(e)
        raise
    stats = dataclasses.replace(stats, failures=tuple(job_failures(stats, job.config)),
                                input_calibration=job.input_calibration)
    rewrite_routing_stats(staging, stats)
    with signals_deferred():
        publish(job.output, staging, stats.failures)
    return stats


def job_failures(stats: RoutingStats, config: CascadeConfig) -> list[str]:
    """Why a finished run counts as failed: it classified nothing, an input file could not
    be read, more dead letters than `max_error_rate` (default DEFAULT_MAX_ERROR_RATE) allow,
    or records it lost track of. A dead-letter failure names the most common reason."""
    failures = []
    if not stats.predictions:
        failures.append("no record was classified: " + (
            f"{most_common_reason(stats, config)}" if stats.records
            else "the inputs hold no records"))
    if stats.files_unread:
        failures.append(f"{stats.files_unread} input file(s) could not be read to the end; "
                        "their 'read' errors in errors-*.jsonl name them")
    limit = config.error_rate_limit
    rate = stats.error_rate
    if stats.predictions and rate is not None and rate > limit:
        failures.append(f"{stats.errors:,} of {stats.records:,} records ({rate:.2%}) are "
                        f"dead letters, more than max_error_rate {limit:.2%}; the most common "
                        f"reason: {most_common_reason(stats, config)}")
    if stats.unaccounted:
        failures.append(f"{stats.unaccounted} records read are neither predicted nor in the "
                        "errors; please report this as a bug")
    return failures


def most_common_reason(stats: RoutingStats, config: CascadeConfig) -> str:
    """"no 'text' field in 1,821 of 1,821 records: set text_field (...)": the commonest
    dead-letter reason, its count, and the fix where the cause is the config's."""
    reasons = stats.errors_by_reason or {"unknown": stats.errors}
    reason, count = max(reasons.items(), key=lambda item: item[1])
    fixes = {f"no {config.text_field!r} field": "text_field",
             f"no {config.text_pair_field!r} field": "text_pair_field"}
    fix = (f": set {fixes[reason]} (--{fixes[reason]}) to the input's field that holds it"
           if reason in fixes else " (errors-*.jsonl holds each record and its reason)")
    return f"{reason} in {count:,} of {stats.records:,} records{fix}"


def run_streaming(options: PipelineOptions, job: CascadeJob) -> RoutingStats | None:
    """Runs until the job is stopped (Ctrl-C or SIGTERM here cancel it on the runner) and
    returns the running statistics of the windows closed by then (None if none had). A
    streaming output is never complete, so it gets no `_SUCCESS` marker."""
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, job)
    claim_for_streaming(job.output)
    result = pipeline.run()
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            _LOG.warning("stopping the streaming job (signal %d)", signum)
            stopping.set()
            result.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    try:
        result.wait_until_finish()
    except Exception:  # noqa: BLE001 - a cancelled job ends in an error on some runners
        if not stopping.is_set():
            raise
    try:
        return read_routing_stats(job.output)
    except OSError:
        return None
