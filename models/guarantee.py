"""Accuracy guarantees: how far below the last tier a cascade may fall, at a stated confidence.

A cascade loses accuracy against its last tier alone only on records where their answers
differ. With r the rate at which they differ (no labels needed) and q the share of those
disagreements on which the cascade is the one that is wrong (labels needed):

    drop = accuracy(last tier alone) - accuracy(cascade) <= r * (2q - 1)

(equal with two classes; with more, both answers can be wrong, which the bound counts
against the cascade). Exact binomial (Clopper-Pearson) upper bounds on r and on q, each at
a risk of (1 - confidence) / 2, bound the drop at `confidence` (a union bound). r can be
measured on any number of unlabelled records, so with a large unlabelled sample only q, from
the labelled disagreements, is loose; with no labelled disagreement q's bound is 1 and the
bound is the disagreement rate's alone.

Picking the cheapest of many thresholds whose bound passes would spend the guarantee (one
of them passes by luck). Instead, as in Learn then Test (Angelopoulos et al. 2021,
fixed-sequence testing), the candidates are one fixed sequence from the safest threshold
(every record to the last tier) down; each is accepted while its bound stays within the
budget, and the search stops at the first that does not. The chance that any accepted
threshold's true drop exceeds the budget is then at most 1 - confidence, however long the
sequence: an accepted threshold past the first bad one would need the first bad one accepted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from models.binomial import binomial_upper_bound
from models.label_requests import entries
from models.operating_points import OperatingPoint, TierOutputs, cascade_predictions, replay
from models.records_bound import AnsweredRequests, RecordsBounder, RecordsDropBound

# The fixed sequence of thresholds, safest first: every 0.0025 from 1 down to 0, with finer
# steps just below 1 where raw max-softmax confidences crowd. Fixed in advance, never read
# off the data, so searching it spends nothing of the guarantee.
THRESHOLD_SEQUENCE = tuple(sorted(
    {round(1 - k / 400, 4) for k in range(401)} | {0.9999, 0.9995, 0.999}, reverse=True))


@dataclass(frozen=True)
class DropBound:
    """An upper confidence bound on a cascade's accuracy drop against its last tier alone,
    with what it was computed from."""

    confidence: float
    compared: int  # records whose cascade answer was compared with the last tier's
    disagreements: int  # ... on which the two differ
    labelled_disagreements: int  # labelled records on which they differ
    cascade_wrong: int  # ... on which the cascade's answer is the wrong one

    @property
    def disagreement_rate(self) -> float:
        return self.disagreements / self.compared if self.compared else 0.0

    @property
    def disagreement_bound(self) -> float:
        """Upper bound on r, the rate at which the cascade and the last tier differ."""
        return binomial_upper_bound(self.disagreements, self.compared, (1 - self.confidence) / 2)

    @property
    def wrong_share_bound(self) -> float:
        """Upper bound on q, the share of disagreements on which the cascade is wrong."""
        return binomial_upper_bound(self.cascade_wrong, self.labelled_disagreements,
                                    (1 - self.confidence) / 2)

    @property
    def bound(self) -> float:
        """The drop's upper bound, as a rate (0.005 is half a point)."""
        return self.disagreement_bound * max(0.0, 2 * self.wrong_share_bound - 1)

    @property
    def source(self) -> str:
        """In words, which evidence set the bound."""
        if self.labelled_disagreements == 0:
            return "the disagreement rate alone (no labelled disagreement to weigh it)"
        return (f"the disagreement rate times what {self.labelled_disagreements} labelled "
                "disagreements say of who is wrong")

    def describe(self) -> str:
        """The bound's evidence in a sentence, for reports."""
        return (f"the cascade and the last tier disagree on "
                f"{self.disagreement_rate:.2%} of them (at most {self.disagreement_bound:.2%}), "
                f"and the cascade is the wrong one in {self.cascade_wrong} of "
                f"{self.labelled_disagreements} labelled disagreements (at most "
                f"{self.wrong_share_bound:.0%}); set by {self.source}.")


def drop_bound(cascade: torch.Tensor, last: torch.Tensor, labels: torch.Tensor,
               unlabelled: tuple[torch.Tensor, torch.Tensor] | None,
               confidence: float) -> DropBound:
    """The bound from the cascade's and the last tier's answers on labelled records and,
    when given, on unlabelled ones (which then alone measure the disagreement rate)."""
    differs = cascade != last
    compared = differs if unlabelled is None else unlabelled[0] != unlabelled[1]
    return DropBound(confidence=confidence, compared=len(compared),
                     disagreements=int(compared.sum()),
                     labelled_disagreements=int(differs.sum()),
                     cascade_wrong=int((differs & (cascade != labels)).sum()))


@dataclass(frozen=True)
class GuaranteedPoint:
    """One threshold of the sequence: the cascade replayed there, and its drop bound."""

    point: OperatingPoint
    bound: DropBound | RecordsDropBound


@dataclass(frozen=True)
class GuaranteeSearch:
    """The fixed-sequence search: every threshold vector of the sequence with its bound,
    safest first, and how many of the first ones pass `budget` (a rate)."""

    confidence: float
    budget: float
    path: list[GuaranteedPoint]

    @property
    def accepted(self) -> list[GuaranteedPoint]:
        return accepted_prefix(self.path, self.budget)

    @property
    def chosen(self) -> GuaranteedPoint | None:
        """The cheapest accepted point; None when not even the safest passes."""
        return min(self.accepted, key=lambda p: p.point.cost, default=None)

    @property
    def smallest_budget(self) -> float:
        """The smallest budget (a rate) under which the cascade saves anything: the largest
        bound on the way to the first threshold at which tier 1 decides a record."""
        largest = 0.0
        for p in self.path:
            largest = max(largest, p.bound.bound)
            if p.point.reach[-1] < 1.0:
                return largest
        return math.inf


def accepted_prefix(path: Sequence[GuaranteedPoint], budget: float) -> list[GuaranteedPoint]:
    """The points accepted by fixed-sequence testing: those before the first whose bound
    exceeds the budget."""
    accepted = []
    for p in path:
        if p.bound.bound > budget:
            break
        accepted.append(p)
    return accepted


def guarantee_search(labelled: Sequence[TierOutputs], labels: torch.Tensor,
                     unlabelled: Sequence[TierOutputs] | None, costs: Sequence[float],
                     confidence: float, budget: float, reference_cost: float | None = None,
                     sequence: Sequence[float] = THRESHOLD_SEQUENCE,
                     requests: AnsweredRequests | None = None,
                     stop_above: float | None = None) -> GuaranteeSearch:
    """Replays the cascade along `sequence`, safest first (one threshold shared by every
    tier but the last, which calibrated confidences make comparable) and bounds each point's
    drop: from requested labels on the unlabelled sample's own records where there are any
    (records_bound.py), else from the labelled records and the disagreement rate. Which is
    fixed by whether labels were requested, before any is seen, so choosing spends nothing.
    With `stop_above` the path ends at the first bound above it (no budget up to it would
    accept anything past there)."""
    bounder = records_bounder(unlabelled, requests, confidence)
    path = []
    for threshold in sequence:
        path.append(bounded_point(labelled, labels, unlabelled, costs,
                                  (threshold,) * (len(labelled) - 1), confidence,
                                  reference_cost, bounder))
        if stop_above is not None and path[-1].bound.bound > stop_above:
            break
    return GuaranteeSearch(confidence, budget, path)


def bounded_point(labelled: Sequence[TierOutputs], labels: torch.Tensor,
                  unlabelled: Sequence[TierOutputs] | None, costs: Sequence[float],
                  thresholds: Sequence[float], confidence: float,
                  reference_cost: float | None = None,
                  bounder: RecordsBounder | None = None) -> GuaranteedPoint:
    """The cascade at these thresholds, replayed on the labelled records, with its bound."""
    point = replay(labelled, labels, thresholds, costs, reference_cost)
    if bounder is not None:
        return GuaranteedPoint(point, bounder.bound(
            cascade_predictions(unlabelled, thresholds).numpy(),
            unlabelled[-1].predictions.numpy(), unlabelled[-1].max_probs.double().numpy()))
    answers = None
    if unlabelled is not None:
        answers = (cascade_predictions(unlabelled, thresholds), unlabelled[-1].predictions)
    bound = drop_bound(cascade_predictions(labelled, thresholds), labelled[-1].predictions,
                       labels, answers, confidence)
    return GuaranteedPoint(point, bound)


def records_bounder(unlabelled: Sequence[TierOutputs] | None,
                    requests: AnsweredRequests | None, confidence: float
                    ) -> RecordsBounder | None:
    """What bounds the drop from requested labels; None without them."""
    if requests is None:
        return None
    if unlabelled is None or len(requests.keys) != len(unlabelled[0].predictions):
        raise ValueError("requested labels need the unlabelled sample they were drawn from "
                         "(--unlabelled, as when the labels were requested)")
    return RecordsBounder(requests, confidence)


def disagreement_entries(tiers: Sequence[TierOutputs],
                         sequence: Sequence[float] = THRESHOLD_SEQUENCE) -> np.ndarray:
    """Per record, the highest threshold of the sequence at which the cascade's answer
    differs from the last tier's (-inf where it never does): where label requests start
    to matter for it (models/label_requests.py)."""
    last = tiers[-1].predictions
    disagree = np.stack([(cascade_predictions(tiers, (t,) * (len(tiers) - 1)) != last).numpy()
                         for t in sequence])
    return entries(disagree, sequence)
