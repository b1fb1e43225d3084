"""Branches merged only after each has become what is written or counted.

TierCascade gives each tier's decided records as a branch of their own (transforms/cascade.py),
and the statistics take their inputs apart (transforms/statistics.py). A step that needs
them as one turns each branch into its compact result first (output rows, JSON text, Arrow
tables, partial statistics) and merges only those: a runner may materialise a multi-input
Flatten (the FnApiRunner does, holding it whole in memory), and records cost far more to
hold and encode than what is made of them.
"""
from __future__ import annotations

from typing import Mapping

import apache_beam as beam
from apache_beam.pvalue import PCollection


def merge_branches(label: str, steps: Mapping[str, tuple[PCollection, beam.PTransform]]
                   ) -> PCollection:
    """Each branch through its own step (`label[name]`), then the results merged
    (`Merge<label>`): {name: (branch, step)} in, one PCollection out."""
    return ([branch | f"{label}[{name}]" >> step for name, (branch, step) in steps.items()]
            | f"Merge{label}" >> beam.Flatten())
