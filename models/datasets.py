"""Labelled text files for training and evaluation: TSV, JSON Lines or Parquet.

Used by `beam-cascade train` (not by the Beam job, which reads through Beam's IO).
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with label ids, and the label names those ids stand for. With `soft_targets`
    (one probability per label and text: a teacher's answers, models/distillation.py)
    training fits those instead, and `label_ids` are their most probable labels."""

    texts: list[str]
    label_ids: list[int]
    label_names: tuple[str, ...]
    text_pairs: list[str] | None = None
    soft_targets: list[list[float]] | None = None

    def subset(self, indices: list[int]) -> "LabelledTexts":
        """The examples at `indices`, in that order."""
        def pick(values: list | None) -> list | None:
            return None if values is None else [values[i] for i in indices]
        return LabelledTexts(pick(self.texts), pick(self.label_ids), self.label_names,
                             pick(self.text_pairs), pick(self.soft_targets))


def read_rows(path: str) -> list[dict]:
    """Rows of a .tsv (header line), .jsonl/.json or .parquet file, a local path or any
    fsspec URL (gs://, s3://, ...)."""
    if not path.endswith((".parquet", ".tsv", ".jsonl", ".json")):
        raise ValueError(f"{path!r}: give a .tsv, .jsonl or .parquet file")
    if path.endswith(".parquet"):
        with fsspec.open(path, "rb") as f:
            return pq.read_table(f).to_pylist()
    with fsspec.open(path, "r", encoding="utf-8", newline="") as f:
        if path.endswith(".tsv"):
            return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        return [_json_row(path, number, line)
                for number, line in enumerate(f, start=1) if line.strip()]


def _json_row(path: str, number: int, line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError as e:
        raise ValueError(f"{path!r} line {number} is not valid JSON ({e}); a labelled file "
                         "for train or calibrate must be clean: fix or drop the line") from None


def read_labelled(path: str, text_field: str = "text", label_field: str = "label",
                  label_names: tuple[str, ...] | None = None, limit: int | None = None,
                  text_pair_field: str | None = None) -> LabelledTexts:
    """Reads texts (and second texts of pairs) and labels. Labels may be names or ids;
    `label_names` fixes the id order (default: sorted distinct values). Rows without text or
    label are an error, since a data set with silent gaps would misreport its size."""
    rows = read_rows(path)[:limit]
    needed = [f for f in (text_field, text_pair_field) if f]
    missing = [i for i, r in enumerate(rows)
               if any(not r.get(f) for f in needed) or r.get(label_field) in (None, "")]
    if missing:
        found = sorted(rows[missing[0]]) if isinstance(rows[missing[0]], dict) else []
        raise ValueError(f"{path!r}: {len(missing)} rows lack {' or '.join(map(repr, needed))} "
                         f"or {label_field!r} (first at row {missing[0]}, whose fields are "
                         f"{found}); name the fields with --text_field / --label_field")
    raw_labels = [str(r[label_field]).strip() for r in rows]
    names = label_names or tuple(sorted(set(raw_labels)))
    pairs = [str(r[text_pair_field]) for r in rows] if text_pair_field else None
    return LabelledTexts([str(r[text_field]) for r in rows],
                         label_ids_of(raw_labels, names, path), tuple(names), pairs)


def label_ids_of(raw_labels: list[str], names: tuple[str, ...], path: str) -> list[int]:
    """Each label (a name or an id) as its id among `names`; refused where one is neither."""
    ids = {name: i for i, name in enumerate(names)}
    ids.update({str(i): i for i in range(len(names))})
    unknown = sorted(set(raw_labels) - set(ids))
    if unknown:
        rows_unknown = sum(label not in ids for label in raw_labels)
        raise ValueError(f"{path!r}: {rows_unknown} rows have labels {unknown[:5]}, not among "
                         f"{list(names)}: a model predicts only the labels it was trained "
                         "on; relabel or drop those rows (or, training, list every label in "
                         "--label_names)")
    return [ids[v] for v in raw_labels]


def check_learnable(data: LabelledTexts, source: str, purpose: str = "train") -> None:
    """Refuses a data set a classifier cannot be trained or judged on: no rows, or every row
    of one label. Trained on one, a tier would be written with one label (or none), and
    `run` would refuse it only at the next job: a nightly retrain must fail, not succeed."""
    if not data.texts:
        raise ValueError(f"{source} holds 0 labelled rows: nothing to {purpose} on; give a "
                         "file with labelled rows (is it a header alone, or did --limit cut "
                         "it to none?)")
    counts = Counter(data.label_ids)
    if len(counts) < 2:
        (only,) = counts
        others = [name for i, name in enumerate(data.label_names) if i != only]
        add = (f"add rows labelled {' or '.join(map(repr, others))}" if others
               else "add rows of the other labels")
        raise ValueError(f"every one of the {len(data.texts):,} rows of {source} has label "
                         f"{data.label_names[only]!r}: a classifier needs at least 2 classes "
                         f"to {purpose}; {add}, or check that --label_field names the "
                         "label column")


@dataclass(frozen=True)
class UnlabelledTexts:
    """Texts (and second texts of pairs) without labels: calibrate's unlabelled sample."""

    texts: list[str]
    text_pairs: list[str] | None = None

    def subset(self, indices: list[int]) -> "UnlabelledTexts":
        """The texts at `indices`, in that order."""
        return UnlabelledTexts([self.texts[i] for i in indices],
                               None if self.text_pairs is None
                               else [self.text_pairs[i] for i in indices])


def read_unlabelled(patterns: list[str], text_field: str = "text",
                    text_pair_field: str | None = None) -> UnlabelledTexts:
    """The texts of every file matching the patterns (.tsv, .jsonl or .parquet; local or any
    fsspec URL); a row without its text is an error, as in a labelled file."""
    paths = [path for pattern in patterns for path in _matching(pattern)]
    texts, pairs = [], [] if text_pair_field else None
    for path in paths:
        rows = read_rows(path)
        needed = [f for f in (text_field, text_pair_field) if f]
        missing = [i for i, r in enumerate(rows) if any(not r.get(f) for f in needed)]
        if missing:
            raise ValueError(f"{path!r}: {len(missing)} rows lack "
                             f"{' or '.join(map(repr, needed))} (first at row {missing[0]}); "
                             "name the field with --text_field")
        texts += [str(r[text_field]) for r in rows]
        if pairs is not None:
            pairs += [str(r[text_pair_field]) for r in rows]
    return UnlabelledTexts(texts, pairs)


def _matching(pattern: str) -> list[str]:
    """The files a path or glob pattern names, as URLs fsspec opens; refused when none."""
    files = fsspec.open_files(pattern)
    if not files:
        raise ValueError(f"no file matches {pattern!r}; check the path or pattern")
    return [f.full_name for f in files]
