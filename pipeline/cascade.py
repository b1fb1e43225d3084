"""The cascade as a building block of your own Beam pipeline, the way RunInference is one:

    from pipeline.cascade import Cascade

    outputs = rows | Cascade.from_config("cascade.yaml")
    outputs["predictions"]   # dicts, as the rows of predictions files
    outputs["dead_letters"]  # dicts, as the lines of errors files

`rows` is a PCollection of dicts holding the config's fields (`text`, and `id`, a label and
pass-through fields when the config names them). The config and model folders are checked
when the transform is made, so a mistake fails while the pipeline is built.
"""
from __future__ import annotations

import random
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import PCollection

from models.config import CascadeConfig
from models.cpus import TorchThreads
from models.validation import validate_models
from pipeline.config import load_config
from transforms.branches import merge_branches
from transforms.cascade import TierCascade
from transforms.dead_letters import DEAD_LETTERS
from transforms.parsing import ParseRecords, RecordFields
from transforms.records import output_rows

SOURCE = "input"  # the source of a row in generated ids and dead letters


class Cascade(beam.PTransform):
    """Rows (dicts) in; {'predictions', 'dead_letters'} out, both as plain dicts.

    A row without an id (see the config's `id_field`) gets `input:<random number>`: give
    your rows ids to find their predictions again."""

    def __init__(self, config: CascadeConfig, threads: TorchThreads = TorchThreads()):
        super().__init__()
        self._config = config
        self._labels = validate_models(config)
        self._threads = threads

    @classmethod
    def from_config(cls, path: str, threads: TorchThreads = TorchThreads()) -> "Cascade":
        """The cascade a YAML or JSON config file describes (any fsspec URL)."""
        return cls(load_config(path), threads)

    def expand(self, rows: PCollection) -> dict[str, PCollection]:
        config = self._config
        parsed = (rows
                  | "Positions" >> beam.Map(lambda row: [with_position(row)])
                  | "Parse" >> beam.ParDo(ParseRecords(RecordFields.of(config, self._labels)))
                  .with_outputs(DEAD_LETTERS, main="records"))
        cascade = parsed.records | "Tiers" >> TierCascade(config.tiers, self._threads)
        predictions = merge_branches("Rows", {
            tier: (branch, beam.FlatMap(output_rows, self._labels, config.tier_names,
                                        config.passthrough_fields))
            for tier, branch in cascade.decided.items()})
        dead_letters = ((parsed[DEAD_LETTERS], cascade.dead_letters)
                        | "DeadLetters" >> beam.Flatten()
                        | "AsDicts" >> beam.Map(lambda letter: letter.to_json()))
        return {"predictions": predictions, "dead_letters": dead_letters}


def with_position(row: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """A row as the parser takes it: its source and a position, random for rows that come
    from a PCollection rather than a file line."""
    return SOURCE, random.getrandbits(63), row
