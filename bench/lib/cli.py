"""The parser every study starts from: the same --data and --results flags, the study's
docstring as its help; and the flags of the studies that replay random halvings of dev."""
from __future__ import annotations

import argparse

from bench.lib.paths import DEFAULT_DATA, RESULTS


def study_parser(module: str, description: str | None = None,
                 writes_results: bool = True) -> argparse.ArgumentParser:
    """The parser of `python -m module`: --data (SST-2's TSV files) and, unless it only builds
    fixtures (writes_results False), --results (the folder its markdown and JSON go to)."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with GLUE SST-2's TSV files")
    if writes_results:
        p.add_argument("--results", default=RESULTS,
                       help=f"folder for the study's .md and .json (default {RESULTS}), or "
                            "FILE.md to keep a variant run beside the default one")
    return p


def config_study_parser(module: str, description: str | None) -> argparse.ArgumentParser:
    """The parser of a study that times one cascade --config on the SST-2 --data."""
    p = study_parser(module, description)
    p.add_argument("--config", required=True, help="cascade config (YAML/JSON)")
    return p


def splits_arguments(module: str, budgets: str) -> argparse.ArgumentParser:
    """The flags of a bench that replays random halvings of SST-2 dev at some budgets."""
    p = study_parser(module)
    p.add_argument("--splits", type=int, default=200)
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--budgets", default=budgets, help="points, comma-separated")
    return p
