"""The cascade: tiers chained by confidence routing, decided branches merged back into one."""
from __future__ import annotations

from typing import Any, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection

from pipeline.config import TierConfig
from transforms.budget import JoinWindowBudget
from transforms.routing import ESCALATED, RouteByConfidence, RouteWithinBudget
from transforms.scoring import ScoreTier, TorchThreads


def route(tier: TierConfig, scored: PCollection) -> Any:
    """Tier's routing: by its threshold, or, with max_escalation_rate, by each window's
    Budget (transforms/budget.py), which holds the window's records until it closes."""
    if tier.max_escalation_rate is None:
        to_route, routing = scored, RouteByConfidence(tier)
    else:
        to_route = scored | f"Budget[{tier.name}]" >> JoinWindowBudget(tier)
        routing = RouteWithinBudget(tier)
    return to_route | f"Route[{tier.name}]" >> beam.ParDo(routing).with_outputs(
        ESCALATED, main="decided")


class Cascade(beam.PTransform):
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
