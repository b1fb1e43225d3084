"""The cascade: tiers chained by confidence routing, each tier's decided records given apart
(transforms/branches.py merges them once they are made into what is written or counted)."""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection

from models.config import TierConfig
from models.cpus import TorchThreads
from transforms.budget import Budget, JoinWindowBudget
from transforms.records import Chunk
from transforms.routing import AUDIT, ESCALATED, RouteByConfidence, audit_sample
from transforms.scoring import ScoreTier


class Routed(NamedTuple):
    """A tier's routing: the chunks of records it decided, of those it sent on, of its audit
    sample (decided records, none without audit_rate), and the dead letters of its
    steering sample (None without max_disagreement)."""

    decided: PCollection
    escalated: PCollection
    audit_sample: PCollection
    steering_failures: PCollection | None


def route(tier: TierConfig, scored: PCollection, threads: TorchThreads,
          last: TierConfig) -> Routed:
    """Tier's routing, always within a Budget: the tier's fixed one or, with
    max_escalation_rate or max_disagreement, each window's (transforms/budget.py), which
    holds the window's records until it closes."""
    sampled, steering_failures = None, None
    if tier.max_escalation_rate is None and tier.max_disagreement is None:
        with_budget, fixed = scored, Budget(tier.threshold)
    else:
        if tier.max_disagreement is not None:
            sampled, steering_failures = steering_sample(tier, scored, threads, last)
        with_budget = scored | f"Budget[{tier.name}]" >> JoinWindowBudget(tier, sampled)
        fixed = None
    routed = with_budget | f"Route[{tier.name}]" >> beam.ParDo(
        RouteByConfidence(tier, fixed)).with_outputs(ESCALATED, AUDIT, main="decided")
    return Routed(routed.decided, routed[ESCALATED], routed[AUDIT], steering_failures)


def steering_sample(tier: TierConfig, scored: PCollection, threads: TorchThreads,
                    last: TierConfig) -> tuple[PCollection, PCollection]:
    """A max_disagreement tier's steering sample: its audit sample drawn from every record it
    scored (decided or not), scored by the last tier before routing. (scored, failures)."""
    return (scored | f"SteeringSample[{tier.name}]" >> beam.FlatMap(
                steering_chunks, tier.name, tier.audit_rate).with_output_types(Chunk)
            | f"Steer[{tier.name}]" >> ScoreTier(last, threads))


def steering_chunks(chunk: Chunk, tier: str, rate: float) -> Iterator[Chunk]:
    """The chunk's audit sample as a chunk of its own, none when it is empty."""
    sample = audit_sample(chunk, tier, rate)
    if sample:
        yield sample


class CascadeOutputs(NamedTuple):
    """TierCascade's outputs, typed as Beam's RunInference types its dead letters
    (RunInferenceDLQ)."""

    decided: dict[str, PCollection]  # tier name -> the chunks of records it decided, in order
    dead_letters: PCollection  # the records a tier's model failed on
    audits: PCollection | None = None  # chunks of audited records (None without audit_rate)
    audit_failures: PCollection | None = None  # the audits' dead letters (None without)


class TierCascade(beam.PTransform):
    """Chunks of records in; CascadeOutputs out.

    The decided branches are given apart, not flattened: a runner may materialise a
    multi-input Flatten (the FnApiRunner does), and records cost far more to encode than
    the output rows or statistics made from them on each branch (transforms/branches.py).

    Tier k runs only on the records tier k-1 escalated, so an expensive tier's cost scales
    with the uncertain fraction, not the input. Every prediction carries the visits of all the
    tiers it went through, the last one being the tier that decided it.

    The audit sample of a tier with audit_rate (records it decided) also runs through the
    last tier, in a RunInference of its own so that an audit never delays, fails or changes
    a prediction: 'audits' are those records with the last tier's visit after the deciding
    tier's, 'audit_failures' the dead letters of audits (and of a max_disagreement tier's
    steering sample) the last tier failed on (counted in the statistics, not written as
    errors: their records were predicted).
    """

    def __init__(self, tiers: Sequence[TierConfig], threads: TorchThreads = TorchThreads()):
        super().__init__()
        self._tiers = tuple(tiers)
        self._threads = threads

    def expand(self, records: PCollection) -> CascadeOutputs:
        decided, dead, audits, audit_failures = {}, [], [], []
        pending = records
        last = self._tiers[-1]
        for tier in self._tiers:
            scored, failed = pending | f"Score[{tier.name}]" >> ScoreTier(tier, self._threads)
            routed = route(tier, scored, self._threads, last)
            decided[tier.name] = routed.decided
            dead.append(failed)
            pending = routed.escalated
            if tier.audit_rate:
                audits.append(routed.audit_sample)
            if routed.steering_failures is not None:
                audit_failures.append(routed.steering_failures)
        dead_letters = dead | "MergeTierFailures" >> beam.Flatten()
        if not audits:  # no audit branch, whose RunInference would load the model again
            return CascadeOutputs(decided, dead_letters)
        audited, failed_audits = (audits | "MergeAudits" >> beam.Flatten()
                                  | f"Audit[{last.name}]" >> ScoreTier(last, self._threads))
        return CascadeOutputs(decided, dead_letters, audited, [
            failed_audits, *audit_failures] | "MergeAuditFailures" >> beam.Flatten())
