"""Command-line options of `beam-cascade run`, as Beam PipelineOptions.

Being PipelineOptions, they parse alongside every standard Beam option (`--runner`,
`--direct_num_workers`, `--temp_location`, ...) and travel with the job to the workers.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
from typing import Iterator

from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions,
                                                  PipelineOptions, StandardOptions)

from models.cpus import TorchThreads
from pipeline.flags import add_run_arguments


class CascadeOptions(PipelineOptions):
    """Where to read and write, and which cascade to run (a config file or tier flags)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        add_run_arguments(parser)


@contextlib.contextmanager
def _beam_warnings_held() -> Iterator[None]:
    beam_options_log = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_options_log.level
    beam_options_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        beam_options_log.setLevel(level)


def unknown_flags(options: PipelineOptions) -> dict[str, str | None]:
    """The flags that neither this tool nor Beam knows, each with the nearest known flag.

    Beam itself drops such flags with a warning and runs without them: a misspelt
    `--max_escalation 0.1` would run the job with no escalation budget at all. Beam's own
    warning about them is held back here: the refusal that follows says it once."""
    with _beam_warnings_held():
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
