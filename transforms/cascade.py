"""The cascade: tiers chained by confidence routing, decided branches merged back into one."""
from __future__ import annotations

from typing import Any, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection

from models.config import TierConfig
from models.loading import TorchThreads
from transforms.budget import Budget, JoinWindowBudget
from transforms.routing import ESCALATED, RouteByConfidence
from transforms.scoring import ScoreTier


def route(tier: TierConfig, scored: PCollection) -> Any:
    """Tier's routing, always within a Budget: the tier's fixed one, or, with
    max_escalation_rate, each window's (transforms/budget.py), which holds the window's
    records until it closes."""
    if tier.max_escalation_rate is None:
        with_budget = scored | f"FixedBudget[{tier.name}]" >> beam.Map(
            lambda record, budget: (record, budget), Budget(tier.threshold))
    else:
        with_budget = scored | f"Budget[{tier.name}]" >> JoinWindowBudget(tier)
    return with_budget | f"Route[{tier.name}]" >> beam.ParDo(
        RouteByConfidence(tier)).with_outputs(ESCALATED, main="decided")


class TierCascade(beam.PTransform):
    """Records in; {'predictions', 'dead_letters'} out.

    Tier k runs only on the records tier k-1 escalated, so an expensive tier's cost scales
    with the uncertain fraction, not the input. Every prediction carries the visits of all the
    tiers it went through, the last one being the tier that decided it.
    """

    def __init__(self, tiers: Sequence[TierConfig], threads: TorchThreads = TorchThreads()):
        super().__init__()
        self._tiers = tuple(tiers)
        self._threads = threads

    def expand(self, records: PCollection) -> dict[str, PCollection]:
        decided, dead = [], []
        pending = records
        for tier in self._tiers:
            scored, failed = pending | f"Score[{tier.name}]" >> ScoreTier(tier, self._threads)
            routed = route(tier, scored)
            decided.append(routed.decided)
            dead.append(failed)
            pending = routed[ESCALATED]
        return {
            "predictions": decided | "MergeDecided" >> beam.Flatten(),
            "dead_letters": dead | "MergeTierFailures" >> beam.Flatten(),
        }
