"""Assembles and runs the cascade job: `python -m pipeline.run` or `beam-cascade run`.

    read files -> parse (bad rows to dead letters) -> tier 1 -> route by confidence
      -> tier 2 on the uncertain branch -> ... -> merge decided branches
      -> write predictions, errors and routing statistics

Everything the job needs is checked on the launcher first (config, model folders, labels,
input patterns), so a mistake fails in seconds with a message instead of on a worker.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.config import (CascadeConfig, ConfigError, check_config, config_from_flags,
                             load_config, validate_models)
from pipeline.io import (FORMAT_SUFFIXES, InputError, ReadRecords, WriteErrors,
                         WritePredictions, WriteRoutingStats, clear_previous_outputs,
                         list_input_files, mark_complete, output_row, passthrough_columns,
                         prediction_schema, read_routing_stats)
from pipeline.options import CascadeOptions, torch_threads
from pipeline.summary import format_summary
from transforms.cascade import Cascade
from transforms.dead_letters import DEAD_LETTERS
from transforms.parsing import ParseRecords, RecordFields
from transforms.scoring import TorchThreads
from transforms.statistics import ComputeRoutingStats

FIELD_FLAGS = ("text_field", "id_field", "label_field", "text_pair_field")


@dataclass(frozen=True)
class CascadeJob:
    """Everything a run needs, checked: the cascade, its labels, the files, the output."""

    config: CascadeConfig
    labels: tuple[str, ...]
    files: list[tuple[str, str]]
    output: str
    output_format: str
    threads: TorchThreads = TorchThreads()

    @property
    def fields(self) -> RecordFields:
        c = self.config
        return RecordFields(c.text_field, c.id_field, c.label_field, c.text_pair_field,
                            c.passthrough_fields, self.labels)


def cascade_config(options: CascadeOptions) -> CascadeConfig:
    """The config file or the tier flags, with the field flags applied on top."""
    tier_flags = [m for m in (options.tier1, options.tier2, options.tier3) if m]
    if options.config and (tier_flags or options.threshold):
        raise ConfigError("give either --config or --tier1/--tier2/--threshold flags, not both")
    if options.tier3 and not options.tier2:
        raise ConfigError("--tier3 needs --tier2")
    if options.config:
        config = load_config(options.config)
    elif tier_flags:
        if len(tier_flags) > 1 and not options.threshold:
            raise ConfigError("--tier1/--tier2 need --threshold (e.g. --threshold 0.9)")
        if len(tier_flags) == 1 and options.threshold:
            raise ConfigError("--threshold needs a --tier2 to escalate to")
        config = config_from_flags(tier_flags, options.threshold or [])
    else:
        raise ConfigError("no cascade: pass --config cascade.yaml, or --tier1 PATH "
                          "--tier2 PATH --threshold T")
    overrides: dict[str, Any] = {f: getattr(options, f) for f in FIELD_FLAGS
                                 if getattr(options, f) is not None}
    if options.passthrough_fields is not None:
        overrides["passthrough_fields"] = tuple(
            f.strip() for f in options.passthrough_fields.split(",") if f.strip())
    if options.max_batch_duration_secs is not None:
        overrides["tiers"] = tuple(
            tier if tier.max_batch_duration_secs is not None else dataclasses.replace(
                tier, max_batch_duration_secs=options.max_batch_duration_secs)
            for tier in config.tiers)
    config = dataclasses.replace(config, **overrides)
    check_config(config, "flags")
    return config


def output_format(options: CascadeOptions) -> str:
    """--output_format, else the output folder's extension (out.jsonl/), else parquet."""
    if options.output_format:
        return options.output_format
    extension = os.path.splitext(options.output.rstrip("/"))[1].lower()
    return FORMAT_SUFFIXES.get(extension, "parquet")


def job_from_options(pipeline_options: PipelineOptions) -> CascadeJob:
    """Checks the options, the config, the model folders and the inputs."""
    options = pipeline_options.view_as(CascadeOptions)
    if not options.output:
        raise ConfigError("no output: pass --output FOLDER")
    if options.torch_threads is not None and options.torch_threads < 1:
        raise ConfigError(f"--torch_threads {options.torch_threads} must be at least 1")
    config = cascade_config(options)
    labels = validate_models(config)
    files = list_input_files(options.input or [], options.input_format)
    return CascadeJob(config, labels, files, options.output, output_format(options),
                      torch_threads(pipeline_options))


def build_pipeline(pipeline: beam.Pipeline, job: CascadeJob) -> None:
    """Adds the whole cascade job to `pipeline`."""
    config, tier_names = job.config, job.config.tier_names
    read = pipeline | "Read" >> ReadRecords(job.files, job.fields.columns)
    parsed = read["rows"] | "Parse" >> beam.ParDo(ParseRecords(job.fields)).with_outputs(
        DEAD_LETTERS, main="records")
    cascade = parsed.records | "Cascade" >> Cascade(config.tiers, job.threads)
    predictions = cascade["predictions"]
    dead_letters = (read["dead_letters"], parsed[DEAD_LETTERS], cascade["dead_letters"]
                    ) | "AllDeadLetters" >> beam.Flatten()

    passthrough = passthrough_columns(config.passthrough_fields, tier_names)
    _ = (predictions
         | "OutputRows" >> beam.Map(output_row, job.labels, tier_names,
                                    config.passthrough_fields)
         | "WritePredictions" >> WritePredictions(
             job.output, job.output_format,
             prediction_schema(tier_names, config.passthrough_fields),
             [column for _, column in passthrough]))
    _ = dead_letters | "WriteErrors" >> WriteErrors(job.output)
    _ = ((parsed.records, predictions, dead_letters)
         | "RoutingStats" >> ComputeRoutingStats(config.tiers)
         | "WriteStats" >> WriteRoutingStats(job.output))


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the job to completion and returns its routing statistics.

    The output folder is cleared of any earlier run first and marked complete (`_SUCCESS`)
    only once the pipeline has finished, so an interrupted run leaves no marker and rerunning
    it replaces whatever it left.
    """
    options = PipelineOptions(argv)
    job = job_from_options(options)
    clear_previous_outputs(job.output)
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, job)
    mark_complete(job.output)
    return read_routing_stats(job.output)


def help_text() -> str:
    """The run options' help; Beam's own option parser does not print one."""
    parser = argparse.ArgumentParser(
        prog="beam-cascade run", description="Classify files with a cascade of models.",
        epilog="Every other flag is a Beam pipeline option (--runner, --direct_num_workers, "
               "--temp_location, ...). See README.md for the config file.")
    CascadeOptions._add_argparse_args(parser)
    return parser.format_help()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: runs, prints the summary; a bad config or input exits 2 with the reason."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    try:
        stats = run(argv)
    except (ConfigError, InputError) as e:
        print(f"beam-cascade: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(stats, PipelineOptions(argv).view_as(CascadeOptions).output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
