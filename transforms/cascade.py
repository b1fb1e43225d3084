"""The cascade: tiers chained by confidence routing, decided branches merged back into one."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection

from models.config import TierConfig
from models.loading import TorchThreads
from transforms.budget import Budget, JoinWindowBudget
from transforms.records import Chunk
from transforms.routing import AUDIT, ESCALATED, RouteByConfidence, audit_sample
from transforms.scoring import ScoreTier


def route(tier: TierConfig, scored: PCollection, threads: TorchThreads,
          last: TierConfig) -> tuple[Any, PCollection | None]:
    """Tier's routing, always within a Budget: the tier's fixed one or, with
    max_escalation_rate or max_disagreement, each window's (transforms/budget.py), which
    holds the window's records until it closes. Returns the routed outputs and the failures
    of the steering sample (None without max_disagreement)."""
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
    return routed, steering_failures


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


def decided_key(tier: str) -> str:
    """TierCascade's output of the records `tier` decided."""
    return f"decided[{tier}]"


def decided_branches(outputs: dict[str, PCollection]) -> dict[str, PCollection]:
    """The decided records of each tier by its name, from TierCascade's outputs."""
    return {key[len("decided["):-1]: pcoll for key, pcoll in outputs.items()
            if key.startswith("decided[")}


class TierCascade(beam.PTransform):
    """Chunks of records in; {decided_key(tier): the records each tier decided (in chunks),
    'dead_letters'} out, and with audits configured {'audits' (chunks), 'audit_failures'}.

    The decided branches are given apart, not flattened: a runner may materialise a
    multi-input Flatten (the FnApiRunner does), and records cost far more to encode than
    the output rows or statistics made from them on each branch.

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

    def expand(self, records: PCollection) -> dict[str, PCollection]:
        decided, dead, audits, audit_failures = {}, [], [], []
        pending = records
        last = self._tiers[-1]
        for tier in self._tiers:
            scored, failed = pending | f"Score[{tier.name}]" >> ScoreTier(tier, self._threads)
            routed, steering_failures = route(tier, scored, self._threads, last)
            decided[decided_key(tier.name)] = routed.decided
            dead.append(failed)
            pending = routed[ESCALATED]
            if tier.audit_rate:
                audits.append(routed[AUDIT])
            if steering_failures is not None:
                audit_failures.append(steering_failures)
        outputs = {**decided, "dead_letters": dead | "MergeTierFailures" >> beam.Flatten()}
        if audits:  # else no audit branch, whose RunInference would load the model again
            outputs["audits"], failed_audits = (
                audits | "MergeAudits" >> beam.Flatten()
                | f"Audit[{last.name}]" >> ScoreTier(last, self._threads))
            outputs["audit_failures"] = (
                [failed_audits, *audit_failures] | "MergeAuditFailures" >> beam.Flatten())
        return outputs
