"""The cascade: tiers chained by confidence routing, decided branches merged back into one."""
from __future__ import annotations

from typing import Any, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection

from pipeline.config import TierConfig
from transforms.budget import EscalationBudgetFn
from transforms.routing import ESCALATED, RouteByConfidence
from transforms.scoring import ScoreTier, TorchThreads
from transforms.windowing import combine_per_window


def escalation_budget(tier: TierConfig, scored: PCollection) -> dict[str, Any]:
    """The routing's side input for a tier with max_escalation_rate: its Budget per window,
    computed from the confidences of all the window's records (transforms/budget.py)."""
    if tier.max_escalation_rate is None:
        return {}
    budgets = (scored
               | f"Confidences[{tier.name}]" >> beam.Map(lambda r: r["tiers"][-1]["confidence"])
               | f"Budget[{tier.name}]" >> combine_per_window(
                   EscalationBudgetFn(tier.threshold, tier.max_escalation_rate), scored))
    return {"budget": beam.pvalue.AsSingleton(budgets)}


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
            routed = scored | f"Route[{tier.name}]" >> beam.ParDo(
                RouteByConfidence(tier), **escalation_budget(tier, scored)).with_outputs(
                    ESCALATED, main="decided")
            decided.append(routed.decided)
            dead.append(failed)
            pending = routed[ESCALATED]
        return {
            "predictions": decided | "MergeDecided" >> beam.Flatten(),
            "dead_letters": dead | "MergeTierFailures" >> beam.Flatten(),
        }
