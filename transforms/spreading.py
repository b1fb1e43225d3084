"""Spreading a PCollection over all workers, on every runner.

Beam's `Reshuffle` does this on the DirectRunner and Dataflow, but Beam's Flink runner
(job server 2.62, batch) translates it to Flink's `rebalance`, and a Reshuffle placed after
another one's fused stage left every element on one of the two subtasks: the cascade then
ran on one worker while the other idled. Random keys through `ReshufflePerKey` (a
GroupByKey) hash the elements over all workers everywhere.
"""
from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.pvalue import PCollection


class SpreadEvenly(beam.PTransform):
    """Elements in; the same elements out, hashed over all workers by a random key."""

    def expand(self, elements: PCollection) -> PCollection:
        return (elements
                | "RandomKey" >> beam.Map(lambda element: (random.getrandbits(32), element))
                | "Shuffle" >> beam.transforms.util.ReshufflePerKey()
                | "DropKey" >> beam.Values())
