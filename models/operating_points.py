"""Cascade operating points: what each vector of thresholds costs and how accurate it is.

On labelled dev data, with every tier's predictions and confidences known for every record,
a cascade with thresholds (t_1, ..., t_{N-1}) can be replayed exactly without running it:
record i is decided by the first tier k whose confidence reaches t_k, else by the last tier.
Its expected cost per record is sum_k reach_k * cost_k, where reach_k is the share of records
that tier k sees and cost_k its measured seconds per record. A policy then picks one point.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from tqdm import tqdm

from models.routing_rule import decided_mask

GRID_POINTS = 20_000  # threshold vectors replayed at most: every distinct confidence of a
# 2-tier cascade on a dev set of thousands, about 140 quantiles per tier for 3 tiers

if TYPE_CHECKING:
    from models.records_bound import AnsweredRequests


@dataclass(frozen=True)
class TierOutputs:
    """One tier's predicted label id, confidence (the tier's measure, which routes) and
    largest class probability (which estimates accuracy when calibrated) per dev record."""

    predictions: torch.Tensor  # [n] long
    confidences: torch.Tensor  # [n] float
    max_probs: torch.Tensor  # [n] float


@dataclass(frozen=True)
class OperatingPoint:
    thresholds: tuple[float, ...]  # one per tier but the last
    accuracy: float
    reach: tuple[float, ...]  # share of all records each tier sees; reach[0] == 1
    cost: float  # expected seconds per record
    speedup: float  # the last tier alone on every record, divided by `cost`
    estimated_accuracy: float  # mean max probability of the deciding tiers: no labels needed

    @property
    def escalation(self) -> tuple[float, ...]:
        """Per tier but the last: the share of the records it saw that it sent on."""
        return tuple(after / before if before else 0.0
                     for before, after in zip(self.reach, self.reach[1:]))


def deciding_tiers(tiers: Sequence[TierOutputs], thresholds: Sequence[float]) -> torch.Tensor:
    """Per record, the index of the tier that decides it at these thresholds."""
    n = len(tiers[0].predictions)
    deciding = torch.full((n,), len(tiers) - 1, dtype=torch.long)
    pending = torch.ones(n, dtype=torch.bool)
    for k, threshold in enumerate(thresholds):
        decided_here = pending & decided_mask(tiers[k].confidences, threshold)
        deciding[decided_here] = k
        pending &= ~decided_here
    return deciding


def cascade_predictions(tiers: Sequence[TierOutputs], thresholds: Sequence[float]
                        ) -> torch.Tensor:
    """The cascade's answer per record at these thresholds."""
    deciding = deciding_tiers(tiers, thresholds)
    return torch.stack([t.predictions for t in tiers])[deciding, torch.arange(len(deciding))]


def replay(tiers: Sequence[TierOutputs], labels: torch.Tensor, thresholds: Sequence[float],
           costs: Sequence[float], reference_cost: float | None = None) -> OperatingPoint:
    """The accuracy, reach and cost of the cascade with these thresholds on this data; the
    speedup is against `reference_cost` per record (default: the last tier's cost)."""
    deciding = deciding_tiers(tiers, thresholds)
    reach = [(deciding >= k).double().mean().item() for k in range(len(tiers))]
    rows = torch.arange(len(labels))
    predictions = torch.stack([t.predictions for t in tiers])[deciding, rows]
    max_probs = torch.stack([t.max_probs.double() for t in tiers])[deciding, rows]
    cost = sum(r * c for r, c in zip(reach, costs))
    return OperatingPoint(
        thresholds=tuple(float(t) for t in thresholds),
        accuracy=(predictions == labels).double().mean().item(),
        reach=tuple(reach), cost=cost, speedup=(reference_cost or costs[-1]) / cost,
        estimated_accuracy=max_probs.mean().item())


def candidate_thresholds(confidences: torch.Tensor, steps: int) -> list[float]:
    """Thresholds at evenly spaced quantiles of a tier's confidences, so the grid follows the
    data (raw max-softmax confidences crowd near 1), plus 0 (decide everything) and 1
    (escalate all but certainties).

    Each sits halfway between two neighbouring distinct confidences, never on one: a record
    whose confidence moves in the last float digit (another batch composition, a temperature
    written to YAML) then still lands on the same side of it.
    """
    distinct = torch.unique(confidences.double()).tolist()  # sorted
    positions = torch.linspace(0, len(distinct) - 1, steps + 1).round().long().tolist()
    return sorted({0.0, 1.0, *(threshold_below(distinct, i) for i in positions if i > 0)})


def threshold_below(ordered: Sequence[float], k: int) -> float:
    """A threshold with exactly the first k of the sorted confidences below it: halfway
    between the k-th and the next, so that float noise between batchings flips no record,
    written as the shortest decimal within a twentieth of the gap from halfway (0.83, not
    0.8300000417232513: what a config file then shows)."""
    low, high = ordered[k - 1], ordered[k]
    middle = (low + high) / 2
    for digits in range(1, 18):
        short = round(middle, digits)
        if abs(short - middle) <= (high - low) / 20:
            return short
    return middle


def sweep(tiers: Sequence[TierOutputs], labels: torch.Tensor, costs: Sequence[float],
          steps: int | None = None, progress: str | None = None) -> list[OperatingPoint]:
    """Every combination of candidate thresholds (a grid over the threshold vector, so a
    3-tier cascade is searched in two dimensions, not along one shared threshold). `steps`
    quantiles per tier, by default as many as GRID_POINTS allows; `progress` names a
    progress bar (shown on a terminal)."""
    if steps is None:
        steps = max(2, int(GRID_POINTS ** (1 / max(1, len(tiers) - 1))))
    grids = [candidate_thresholds(t.confidences, steps) for t in tiers[:-1]]
    combos = tqdm(itertools.product(*grids), total=math.prod(map(len, grids)), desc=progress,
                  unit="point", leave=False, disable=None if progress else True)
    return [replay(tiers, labels, combo, costs) for combo in combos]


def last_tier_alone(tiers: Sequence[TierOutputs], labels: torch.Tensor,
                    costs: Sequence[float]) -> OperatingPoint:
    """The reference: every record to the last tier (its cost counted alone)."""
    last = tiers[-1]
    return OperatingPoint(thresholds=(), accuracy=(last.predictions == labels).double().mean()
                          .item(), reach=(1.0,), cost=costs[-1], speedup=1.0,
                          estimated_accuracy=last.max_probs.double().mean().item())


def pareto_frontier(points: Sequence[OperatingPoint]) -> list[OperatingPoint]:
    """The points no other point beats on both cost and accuracy, cheapest first."""
    frontier: list[OperatingPoint] = []
    for point in sorted(points, key=lambda p: (p.cost, -p.accuracy)):
        if not frontier or point.accuracy > frontier[-1].accuracy:
            frontier.append(point)
    return frontier


class NoOperatingPoint(ValueError):
    """No point meets the policy; the message gives the closest one."""


@dataclass(frozen=True)
class Policy:
    """How to choose: at most `max_accuracy_drop` points below the last tier alone, at
    `confidence` (models/guarantee.py: the cheapest threshold whose upper bound on the drop
    passes), or at least `min_speedup` (most accurate such point), or at most
    `max_escalation` of the records reaching the last tier (most accurate such point).
    With `requests`, the bound rests on labels requested on the unlabelled sample
    (models/records_bound.py) instead of the labelled records' disagreements."""

    max_accuracy_drop: float | None = None
    min_speedup: float | None = None
    max_escalation: float | None = None
    confidence: float = 0.9
    requests: AnsweredRequests | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.max_accuracy_drop, self.min_speedup, self.max_escalation)
                 if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one policy: --max_accuracy_drop, --min_speedup or "
                             "--max_escalation_rate")
        if not 0 < self.confidence < 1:
            raise ValueError(f"--confidence {self.confidence} must be between 0 and 1 "
                             "(0.9: the promise holds in 9 of 10 calibrations)")


def choose(points: Sequence[OperatingPoint], reference: OperatingPoint,
           policy: Policy) -> OperatingPoint:
    """The operating point the policy asks for, among `points`."""
    if policy.max_accuracy_drop is not None:
        floor = reference.accuracy - policy.max_accuracy_drop / 100.0
        eligible = [p for p in points if p.accuracy >= floor - 1e-12]
        rank = lambda p: (p.cost, -p.accuracy)  # noqa: E731
        what = f"accuracy >= {floor:.4f}"
    elif policy.min_speedup is not None:
        eligible = [p for p in points if p.speedup >= policy.min_speedup]
        rank = lambda p: (-p.accuracy, p.cost)  # noqa: E731
        what = f"speedup >= {policy.min_speedup}"
    else:
        eligible = [p for p in points if p.reach[-1] <= policy.max_escalation + 1e-12]
        rank = lambda p: (-p.accuracy, p.cost)  # noqa: E731
        what = f"at most {policy.max_escalation:.0%} of records reaching the last tier"
    if not eligible:
        best = max(points, key=lambda p: (p.speedup, p.accuracy))
        raise NoOperatingPoint(
            f"no threshold setting gives {what}; the fastest reaches {best.speedup:.2f}x at "
            f"{best.accuracy:.2%} accuracy. Relax the policy.")
    return min(eligible, key=rank)
