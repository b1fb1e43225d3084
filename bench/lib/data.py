"""SST-2's splits as the studies read them: the labelled train and dev phrases, the
unlabelled test sentences, the TSV files of (sentence, label) rows the studies derive, and
the JSON Lines inputs of their jobs."""
from __future__ import annotations

import csv
import itertools
import json
import os

from models.datasets import (LabelledTexts, UnlabelledTexts, read_labelled, read_rows,
                             read_unlabelled)

from bench.lib.paths import LABELS, sst2_file

__all__ = ["LabelledTexts", "TSV_HEADER", "UnlabelledTexts", "read_tsv", "read_unlabelled",
           "sst2_labelled", "sst2_unlabelled", "write_jsonl", "write_records", "write_tsv"]


def sst2_labelled(data: str, name: str) -> LabelledTexts:
    """train.tsv or dev.tsv (or any TSV of `sentence`/`label` columns) of the --data folder."""
    return read_labelled(sst2_file(data, name), "sentence", label_names=LABELS)


def sst2_unlabelled(data: str) -> list[str]:
    """The 1,821 test sentences, which come without labels."""
    return [row["sentence"] for row in read_rows(sst2_file(data, "test_unlabeled.tsv"))]


TSV_HEADER = ("sentence", "label")


def read_tsv(path: str) -> list[tuple[str, str]]:
    """(sentence, label) rows of an SST-2-style TSV file, header skipped."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0].strip(), r[1]) for r in rows[1:]]


def write_tsv(path: str, rows: list[tuple[str, str]]) -> None:
    """(sentence, label) rows as an SST-2-style TSV file, written whole or not at all."""
    with open(path + ".part", "w", newline="", encoding="utf-8") as f:
        f.write("\t".join(TSV_HEADER) + "\n")
        f.writelines(f"{text}\t{label}\n" for text, label in rows)
    os.replace(path + ".part", path)


def write_jsonl(path: str, rows: list[dict]) -> str:
    """`rows` as a JSON Lines file (a job's input); its path."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def write_records(data: str, count: int, path: str) -> str:
    """`count` SST-2 sentences (dev, test, then train phrases, cycled) as JSON Lines."""
    texts = sst2_labelled(data, "dev.tsv").texts + sst2_unlabelled(data)
    texts += sst2_labelled(data, "train.tsv").texts
    with open(path, "w", encoding="utf-8") as f:
        for i, text in zip(range(count), itertools.cycle(texts)):
            f.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    return path
