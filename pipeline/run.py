"""`beam-cascade run` (or `python -m pipeline.run`): classify files with a cascade.

    read files -> parse (bad rows to dead letters) -> tier 1 -> route by confidence
      -> tier 2 on the uncertain branch -> ... -> merge decided branches
      -> write predictions, errors and routing statistics

The command reads its own flags, prints its help and checks the config before Beam and
torch are imported (they take seconds to load): a typo answers at once. The job itself, and
everything else it checks before it starts, is pipeline/job.py.
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence

from models.config import ConfigError
from pipeline.config import cascade_config
from pipeline.flags import run_parser
from pipeline.stopping import Stopped, stopping_on_signals
from pipeline.summary import format_summary

# Exit statuses of `beam-cascade run` (docs/reliability.md).
EXIT_JOB_FAILED = 1  # the pipeline raised: nothing published, the previous run's files kept
EXIT_USAGE = 2  # bad flags, config, model folder, input or output: nothing started
EXIT_DATA_ERRORS = 3  # finished and published, but failed its error limits: _FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: runs, prints the summary; a bad config or input exits 2 with the reason."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline").setLevel(logging.INFO)  # what it replaces in the output
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = run_parser()
    if "-h" in argv or "--help" in argv:
        print(parser.format_help())
        return 0
    flags, _ = parser.parse_known_args(argv)  # Beam's own options are for Beam to parse
    try:
        config = cascade_config(flags)
    except ConfigError as e:
        return usage_error(e)
    from pipeline import job  # Beam and torch load here, once the config is known to be right
    try:
        with stopping_on_signals():
            stats = job.run(argv, config)
    except (ConfigError, *job.USAGE_ERRORS) as e:
        return usage_error(e)
    except Stopped as e:
        held = ("this run's files, published before it stopped" if e.published else
                "the previous run's files, as they were (nothing was published)")
        print(f"beam-cascade: {e}: {flags.output} holds {held}", file=sys.stderr)
        return e.exit_status
    except Exception as e:  # noqa: BLE001 - any failure of the job itself: exit 1, say so
        print(f"beam-cascade: error: the job failed; the previous run's files in "
              f"{flags.output} are as they were. {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_JOB_FAILED
    print(format_summary(stats, flags.output))
    failures = (stats.failures if stats else None) or ()  # streaming: never judged
    for failure in failures:
        print(f"beam-cascade: error: {failure}", file=sys.stderr)
    return EXIT_DATA_ERRORS if failures else 0


def usage_error(error: Exception) -> int:
    print(f"beam-cascade: error: {error}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
