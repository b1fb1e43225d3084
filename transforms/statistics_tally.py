"""The routing statistics' tally: what each input of the statistics adds to the counts.

A `RoutingTally` is the combiners' accumulator (transforms/statistics.py); each input kind
(parsed records, decided records, dead letters, audits) has its own counting function, so a
step binds the function to its input instead of tagging every element. Plain Python, no
Beam: partial tallies from any worker merge exactly (`merge_into`), and turning a tally into
a `RoutingStats` is transforms/statistics_extraction.py's job.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from models.routing_rule import confidence_bin
from models.shift import BINS as SHIFT_BINS
from transforms.records import Chunk, DeadLetter, Record, Visit


@dataclass
class AuditTally:
    """The audit of one tier's decisions: how many went to the last tier too, how many of
    those the last tier answered alike, the last tier's probability of the tier's answer
    (summed: with a calibrated last tier, the expected accuracy of the tier's decisions), and
    with gold labels how often each was right."""

    audited: int = 0
    agreed: int = 0
    last_prob_of_answer: float = 0.0
    labelled: int = 0
    correct: int = 0
    last_correct: int = 0
    failed: int = 0  # audits the last tier failed on (their records were predicted)

    def count(self, decided: Visit, last: Visit, gold: int | None) -> None:
        self.audited += 1
        self.agreed += decided.label_id == last.label_id
        self.last_prob_of_answer += last.probabilities[decided.label_id]
        if gold is not None:
            self.labelled += 1
            self.correct += decided.label_id == gold
            self.last_correct += last.label_id == gold


@dataclass
class TierTally:
    """One tier's running counts and sums (a record failed on by a later tier still counts
    as escalated here)."""

    seen: int = 0
    decided: int = 0
    escalated: int = 0
    labelled_seen: int = 0
    correct_seen: int = 0
    labelled_decided: int = 0
    correct_decided: int = 0
    confidence_seen: float = 0.0
    confidence_decided: float = 0.0
    max_prob_decided: float = 0.0
    ms: float = 0.0
    chars_seen: int = 0  # characters of the predicted records it saw (for cost_summary)
    exits: Counter = field(default_factory=Counter)  # records per exit layer
    call_records: Counter = field(default_factory=Counter)  # visits per (call size, passes)
    thresholds: Counter = field(default_factory=Counter)  # visits per effective threshold
    audit: AuditTally = field(default_factory=AuditTally)
    confidence_bins: Counter = field(default_factory=Counter)  # seen, for the shift test

    def count(self, visits: Sequence[Visit], final: bool, golds: Sequence[int | None],
              chars: int = 0) -> None:
        """Counts the tier's visits of records that it decided (`final`) or sent on, with
        their gold labels (None where unlabelled) and their texts' characters in all. A
        whole chunk's visits at once: a pass over a list per sum costs less per record than
        a method call per visit."""
        confidences = [visit.confidence for visit in visits]
        self.seen += len(visits)
        self.chars_seen += chars
        self.confidence_bins.update([confidence_bin(c, SHIFT_BINS) for c in confidences])
        if final:
            self.decided += len(visits)
            self.confidence_decided += sum(confidences)
            self.max_prob_decided += sum([max(visit.probabilities) for visit in visits])
        else:
            self.escalated += len(visits)
        self.confidence_seen += sum(confidences)
        self.ms += sum([visit.ms for visit in visits])
        self.call_records.update([(visit.batch, visit.passes) for visit in visits])
        self.exits.update([v.exit_layer for v in visits if v.exit_layer is not None])
        self.thresholds.update([v.threshold for v in visits if v.threshold is not None])
        correct = [visit.label_id == gold for visit, gold in zip(visits, golds)
                   if gold is not None]
        self.labelled_seen += len(correct)
        self.correct_seen += sum(correct)
        if final:
            self.labelled_decided += len(correct)
            self.correct_decided += sum(correct)


@dataclass
class RoutingTally:
    """The accumulator of the routing statistics: counts over the whole run (or window)."""

    parsed: int = 0
    predictions: int = 0
    chars: int = 0  # characters of the predicted records' texts
    labels_unrecognized: int = 0
    errors: Counter = field(default_factory=Counter)  # dead letters per stage
    reasons: Counter = field(default_factory=Counter)  # record dead letters per reason_kind
    tiers: dict[str, TierTally] = field(default_factory=dict)  # (labelled predictions too)


def count_parsed(acc: RoutingTally, chunk: Chunk) -> None:
    """A chunk of parsed records: the records read, less the dead letters of parsing."""
    acc.parsed += len(chunk)


def count_predictions(acc: RoutingTally, chunk: Chunk) -> None:
    """Decided records at every tier they visited (the last one decided each), tier by
    tier for the records that went the same way."""
    acc.predictions += len(chunk)
    acc.labels_unrecognized += sum([record.gold_unrecognized is not None for record in chunk])
    by_path: dict[tuple[str, ...], list[Record]] = {}
    for record in chunk:
        by_path.setdefault(tuple([visit.tier for visit in record.tiers]), []).append(record)
    for path, records in by_path.items():
        golds = [record.gold for record in records]
        chars = sum([len(record.text) for record in records])
        acc.chars += chars
        for i, visits in enumerate(zip(*[record.tiers for record in records])):
            acc.tiers[path[i]].count(visits, i == len(path) - 1, golds, chars)


MAX_REASON_KINDS = 50  # beyond, "other reasons": an accumulator stays small


def reason_kind(reason: str) -> str:
    """What a dead letter's reason says without its particulars (where in the line, which
    bytes, the exception's details: the reasons give them after a colon, semicolon or
    parenthesis), so that reasons can be counted: "invalid JSON: Expecting value at column
    5" -> "invalid JSON"."""
    return re.split(r": |; | \(", reason, maxsplit=1)[0][:120]


def count_error(acc: RoutingTally, letter: DeadLetter) -> None:
    """A dead letter by its stage (and, a record's, by its reason), and as escalated at the
    tiers that scored it before."""
    acc.errors[letter.stage] += 1
    if letter.stage != "read":
        kind = reason_kind(letter.reason)
        acc.reasons[kind if kind in acc.reasons or len(acc.reasons) < MAX_REASON_KINDS
                    else "other reasons"] += 1
    for visit in letter.tiers:
        acc.tiers[visit.tier].count([visit], final=False, golds=[None])
    if letter.stage.startswith("tier:"):
        acc.tiers[letter.stage[len("tier:"):]].seen += 1


def count_audits(acc: RoutingTally, chunk: Chunk) -> None:
    """A chunk of audited records, each with the deciding tier's visit, then the last
    tier's."""
    for record in chunk:
        *_, decided, last = record.tiers
        acc.tiers[decided.tier].audit.count(decided, last, record.gold)


def count_audit_failure(acc: RoutingTally, letter: DeadLetter) -> None:
    """An audit the last tier failed on (its record was predicted all the same)."""
    acc.tiers[letter.tiers[-1].tier].audit.failed += 1


def merge_into(total: Any, part: Any) -> None:
    """Adds a tally's counts, sums and counters (and its tiers' tallies) into `total`."""
    for f in dataclasses.fields(total):
        mine, theirs = getattr(total, f.name), getattr(part, f.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        elif isinstance(mine, dict):
            for name, tally in theirs.items():
                merge_into(mine[name], tally)
        elif dataclasses.is_dataclass(mine):
            merge_into(mine, theirs)
        else:
            setattr(total, f.name, mine + theirs)


Counting = Callable[[RoutingTally, Any], None]  # adds one element of an input to a tally
