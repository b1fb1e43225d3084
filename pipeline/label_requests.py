"""Request files: the records `calibrate --request_labels` asks people to label, written in
the input's own format with an empty label column, and read back by
`calibrate --labelled_requests` once labelled.

Beside each request file lies its design (`<file>.design.json`, models/label_requests.py):
the bands, their random orders and how much of each was requested. The design is what
makes the labels usable: the bound weighs each band's labels as the uniform sample it is.
A record is matched to the unlabelled sample by a hash of its texts, so the file may be
reordered, its ids dropped, or its rows converted to another format. The columns
`request_band` and `request_inclusion` say which band a record was drawn from and its
chance of being drawn; they are for people, the design file is what counts.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from models.datasets import label_ids_of, read_rows
from models.guarantee import disagreement_entries
from models.operating_points import TierOutputs, deciding_tiers
from models.label_requests import (RequestDesign, more_requests, new_design, newly_requested,
                                   record_key, record_keys)
from models.records_bound import AnsweredRequests
from transforms.parsing import RecordFields
from transforms.records import Record

if TYPE_CHECKING:
    from pipeline.unlabelled_sample import UnlabelledSample

FORMATS = (".jsonl", ".parquet", ".tsv")


@dataclass(frozen=True)
class Answers:
    """The labelled requests of one or more rounds, with the design of the latest."""

    design: RequestDesign
    labels: dict[str, int]  # record key -> label id
    unanswered: int  # requested rows whose label is still empty

    def on_sample(self, sample: UnlabelledSample, evidence: str) -> AnsweredRequests:
        """The answers as the guarantee uses them: on this sample (its records are matched
        again where calibrate sets some aside), the promise on the input when the sample
        is all of it."""
        return AnsweredRequests(self.design, (), self.labels, sample.records_read,
                                evidence).matched_to(sample.texts.texts,
                                                     sample.texts.text_pairs)


def sample_keys(sample: UnlabelledSample) -> tuple[str, ...]:
    return record_keys(sample.texts.texts, sample.texts.text_pairs)


def design_requests(tiers: Sequence[TierOutputs] | None, sample: UnlabelledSample,
                    before: RequestDesign | None, requests: int, seed: int) -> RequestDesign:
    """The design of a new round: the first (bands of the cascade's disagreements on the
    sample, by entry; `tiers`: its calibrated outputs there) or the next of `before`."""
    if before is not None:
        return more_requests(before, requests)
    keys = sample_keys(sample)
    if tiers is None or len(tiers[0].predictions) != len(keys):
        raise ValueError("label requests need every record of the --unlabelled sample scored "
                         "(a learned router set some aside): request labels with a cascade "
                         "whose tiers route by confidence")
    return new_design(keys, disagreement_entries(tiers), requests, seed)


def design_path(requests_file: str) -> str:
    return requests_file + ".design.json"


def requests_file(output: str, input_pattern: str) -> str:
    """Where a round's requests go: beside the tuned config, in the input's format
    (CSV and compressed inputs get TSV, which the readers take too)."""
    stem = os.path.splitext(output)[0]
    ext = next((e for e in FORMATS if input_pattern.endswith(e)), ".tsv")
    return f"{stem}-requests{ext}"


def write_requests(path: str, records: Sequence[Record], before: RequestDesign | None,
                   design: RequestDesign, fields: RecordFields) -> int:
    """Writes the records `design` requests beyond `before`, and the design beside them;
    returns how many were written (none, and no file, where nothing is left to request)."""
    by_key = {record_key(r.text, r.text_pair): r for r in records}
    band_of = {key: (number, band.inclusion) for number, band in enumerate(design.bands, 1)
               for key in band.keys}
    rows = [_row(by_key[key], fields, *band_of[key])
            for key in newly_requested(before, design) if key in by_key]
    if not rows:
        return 0
    _write_rows(path, rows, _columns(fields))
    with fsspec.open(design_path(path), "w", encoding="utf-8") as f:
        f.write(design.to_json())
    return len(rows)


def read_answers(paths: Sequence[str], fields: RecordFields, labels: tuple[str, ...]
                 ) -> Answers:
    """The labels of every answered request in these files (rounds, in any order), with
    the most advanced design among theirs: every round must come from one first design."""
    designs, answers, unanswered = [], {}, 0
    for path in paths:
        designs.append(_read_design(path))
        rows = read_rows(path)
        label_field = fields.label_field or "label"
        answered = [r for r in rows if str(r.get(label_field) or "").strip()]
        unanswered += len(rows) - len(answered)
        ids = label_ids_of([str(r[label_field]).strip() for r in answered], labels, path)
        for row, label in zip(answered, ids):
            answers[record_key(str(row[fields.text_field]), _pair(row, fields))] = label
    latest = max(designs, key=lambda d: d.requested)
    for design, path in zip(designs, paths):
        if [b.keys for b in design.bands] != [b.keys for b in latest.bands]:
            raise ValueError(f"{path!r} comes from another request design than the other "
                             "files given: give the rounds of one series of requests only "
                             "(a new --request_labels without --labelled_requests starts a "
                             "new series)")
    return Answers(latest, answers, unanswered)


def _read_design(path: str) -> RequestDesign:
    try:
        with fsspec.open(design_path(path), "r", encoding="utf-8") as f:
            return RequestDesign.from_json(f.read())
    except FileNotFoundError:
        raise ValueError(f"{design_path(path)!r} is missing: the labelled requests need the "
                         "design file calibrate wrote beside them; keep it next to the "
                         "file under the same name") from None
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{design_path(path)!r} is not a request design ({e})") from None


def _pair(row: dict, fields: RecordFields) -> str | None:
    return str(row[fields.text_pair_field]) if fields.text_pair_field else None


def _columns(fields: RecordFields) -> list[str]:
    named = [fields.id_field, fields.text_field, fields.text_pair_field,
             *fields.passthrough_fields, fields.label_field or "label"]
    return list(dict.fromkeys(c for c in named if c)) + ["request_band", "request_inclusion"]


def _row(record: Record, fields: RecordFields, band: int, inclusion: float) -> dict:
    row = {**record.passthrough, fields.text_field: record.text,
           fields.label_field or "label": "", "request_band": band,
           "request_inclusion": round(inclusion, 6)}
    if fields.id_field:
        row[fields.id_field] = record.id
    if fields.text_pair_field:
        row[fields.text_pair_field] = record.text_pair
    return row


def _write_rows(path: str, rows: list[dict], columns: list[str]) -> None:
    if path.endswith(".parquet"):
        with fsspec.open(path, "wb") as f:
            pq.write_table(pa.Table.from_pylist(rows), f)
        return
    with fsspec.open(path, "w", encoding="utf-8", newline="") as f:
        if path.endswith(".jsonl"):
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            return
        # As the readers read TSV (split on tabs, nothing quoted or escaped): a text goes
        # back exactly as it came, backslashes and quotes included.
        f.write("\t".join(columns) + "\n")
        f.writelines("\t".join(_one_line(row.get(c, "")) for c in columns) + "\n"
                     for row in rows)


def _one_line(value) -> str:
    """A TSV field: no tab or line break inside (they become spaces), None empty."""
    text = "" if value is None else str(value)
    return " ".join(text.split()) if any(c in text for c in "\t\n\r") else text


def bands_section(design: RequestDesign, keys: Sequence[str], tiers: Sequence[TierOutputs],
                  before: RequestDesign | None) -> list[str]:
    """The report's "Label requests" section: per band, the thresholds and escalation it
    covers, its records, the requests, each record's chance of one, and what the last
    tier's probabilities predict the labels will show there."""
    row_of = {key: i for i, key in enumerate(keys)}
    done = [0] * len(design.bands) if before is None else [b.requested for b in before.bands]
    lines = ["", "## Label requests", "",
             "The disagreements of the sample, by the threshold at which the cascade's answer "
             "starts to differ from the last tier's, highest first (docs/label-requests.md). "
             "A band labelled whole makes the bound exact at its thresholds; a sampled band's "
             "labels bound its mistakes; a disagreement without a label counts as the "
             "cascade's mistake.", "",
             "| band | thresholds | records to the last tier there | disagreements | "
             "requested (this round) | chance of a request | mistakes of the cascade the last "
             "tier predicts |", "|---|---|---|---|---|---|---|"]
    for number, (band, earlier) in enumerate(zip(design.bands, done), 1):
        rows = [row_of[k] for k in band.keys if k in row_of]
        predicted = float(tiers[-1].max_probs[rows].double().mean()) if rows else 0.0
        lines.append(
            f"| {number} | {band.entry_high:.4f} to {band.entry_low:.4f} | "
            f"{_escalation(tiers, band.entry_high):.1%} to {_escalation(tiers, band.entry_low):.1%}"
            f" | {len(band.keys)} | {band.requested} ({band.requested - earlier}) | "
            f"{band.inclusion:.0%} | {predicted:.0%} |")
    return lines


def _escalation(tiers: Sequence[TierOutputs], threshold: float) -> float:
    deciding = deciding_tiers(tiers, (threshold,) * (len(tiers) - 1))
    return float((deciding == len(tiers) - 1).double().mean())
