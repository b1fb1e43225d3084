"""The unlabelled sample `beam-cascade calibrate --unlabelled` measures disagreement on.

Read on this machine with the job's own readers and parser (any input `run` reads: JSON
Lines, Parquet, TSV, CSV, compressed, local or remote), so a record counts here exactly when
it would be classified there. The sample is uniform over every valid record of the inputs
(reservoir sampling with a seed), not the first files' records, which are often one day or
one source.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from models.datasets import UnlabelledTexts
from pipeline.sources import InputError, ReadInputFile, list_input_files
from transforms.parsing import ParseRecords, RecordFields
from transforms.records import Record


@dataclass(frozen=True)
class UnlabelledSample:
    """The sampled texts and what reading them met."""

    texts: UnlabelledTexts
    records_read: int  # valid records in the inputs
    invalid: int  # rows skipped because the job would dead-letter them
    records: tuple[Record, ...] = ()  # as parsed, in the order of `texts`: label requests name them


def sample_unlabelled(patterns: Sequence[str], fields: RecordFields, size: int, seed: int,
                      input_format: str | None = None) -> UnlabelledSample:
    """Up to `size` valid records drawn uniformly from all of the inputs."""
    if size < 1:
        raise ValueError(f"--unlabelled_sample {size}: give a positive number of records")
    chosen: list[Record] = []
    rng = random.Random(seed)
    seen = invalid = 0
    for item in parsed_rows(patterns, fields, input_format):
        if not isinstance(item, Record):
            invalid += 1
            continue
        seen += 1
        if len(chosen) < size:
            chosen.append(item)
        elif (slot := rng.randrange(seen)) < size:
            chosen[slot] = item
    if not chosen:
        raise InputError(f"--unlabelled {list(patterns)} holds no valid record with a "
                         f"{fields.text_field!r} field ({invalid} rows invalid)")
    pairs = [r.text_pair for r in chosen] if fields.text_pair_field else None
    return UnlabelledSample(UnlabelledTexts([r.text for r in chosen], pairs), seen, invalid,
                            tuple(chosen))


def parsed_rows(patterns: Sequence[str], fields: RecordFields, input_format: str | None,
                reading_for: str = "--unlabelled") -> Iterator[Record | TaggedOutput]:
    """Every row of the inputs as the job parses it: a Record, or a tagged dead letter (a
    row that is not valid; a file that cannot be read is an error here, naming the setting
    `reading_for` that read it)."""
    read, parse = ReadInputFile(input_format, fields.columns), ParseRecords(fields)
    for path, _ in list_input_files(patterns, input_format):
        metadata, = FileSystems.match([path])[0].metadata_list
        for chunk in read.process(fileio.ReadableFile(metadata)):
            if isinstance(chunk, TaggedOutput):
                raise InputError(f"{reading_for}: {chunk.value.reason}")
            for out in parse.process(chunk):
                yield from ([out] if isinstance(out, TaggedOutput) else out)
