"""Choosing the operating point and writing it into the config.

The policy's point (`choose_point`: for an accuracy-drop budget, the cheapest threshold the
guarantee's search accepts), chosen again with every later tier refitted on the records that
reach it until it stays; whether the int8 fallback tier stays in the cascade; the split-half
check that the thresholds carry over to unseen data; and the tuned config with the
guarantee it carries and the confidences the run's shift test compares with.
"""
from __future__ import annotations

import dataclasses
import datetime

import torch

from models.config import CascadeConfig, Guarantee, TierConfig
from models.guarantee import DropBound, bounded_point, guarantee_search, records_bounder
from models.records_bound import RecordsDropBound
from models.operating_points import (NoOperatingPoint, OperatingPoint, Policy, TierOutputs,
                                     choose, deciding_tiers, last_tier_alone, replay, sweep)
from models.shift import reference_quantiles
from models.tuning.fitting import refit_on_reached
from models.tuning.progress import step
from models.tuning.results import (Choice, FallbackChoice, HalfCheck, SplitHalfCheck,
                                   TierMeasurements)

REFIT_ROUNDS = 3


def choose_point(labelled: list[TierOutputs], labels: torch.Tensor,
                 unlabelled: list[TierOutputs] | None, costs: list[float],
                 policy: Policy) -> Choice:
    """The policy's point. An accuracy-drop budget takes the cheapest threshold the
    guarantee's fixed-sequence search accepts; the speed and escalation policies choose on
    the replayed points and report the bound where they land."""
    budget = (policy.max_accuracy_drop or 0.0) / 100
    search = guarantee_search(labelled, labels, unlabelled, costs, policy.confidence, budget,
                              requests=policy.requests)
    if policy.max_accuracy_drop is None:
        point = choose(sweep(labelled, labels, costs), last_tier_alone(labelled, labels, costs),
                       policy)
        bounded = bounded_point(labelled, labels, unlabelled, costs, point.thresholds,
                                policy.confidence,
                                bounder=records_bounder(unlabelled, policy.requests,
                                                        policy.confidence))
        return Choice(point, bounded.bound, search)
    picked = search.chosen
    if picked is None or picked.point.reach[-1] >= 1.0:
        raise NoOperatingPoint(
            f"at confidence {policy.confidence} the data supports no accuracy-drop budget "
            f"below {100 * search.smallest_budget:.2f} points, above the "
            f"{policy.max_accuracy_drop} asked for: raise --max_accuracy_drop, lower "
            "--confidence, or give more data (--unlabelled records tighten the bound most "
            "cheaply; more labelled dev records tighten it too)")
    return Choice(picked.point, picked.bound, search)


def point_estimate_choice(points: list[OperatingPoint], reference: OperatingPoint,
                          policy: Policy) -> OperatingPoint | None:
    """For a drop budget, the point the dev accuracy alone would pick (no guarantee): what
    the guarantee costs is the difference."""
    if policy.max_accuracy_drop is None:
        return None
    try:
        return choose(points, reference, policy)
    except NoOperatingPoint:
        return None


def tiers_to_keep(configs: tuple[TierConfig, ...], tiers: list[TierMeasurements],
                  labels: torch.Tensor, costs: list[float], policy: Policy,
                  fallback: int | None) -> tuple[list[int], FallbackChoice | None]:
    """The indices of the tiers to tune: all of them, or without the int8 fallback tier
    (runtime_choice.py) where the cascade is cheaper at the policy without it.

    The guarantee's search shares one threshold among the tiers; where the budget asks for
    a high one, the int8 copy (about as unsure as the last tier itself) decides next to
    nothing and only adds its cost, so both cascades are chosen and the cheaper one kept."""
    every = list(range(len(configs)))
    if fallback is None:
        return every, None
    without = [k for k in every if k != fallback]
    with_it, without_it = (_expected_cost([configs[k] for k in subset],
                                          [tiers[k] for k in subset], labels,
                                          [costs[k] for k in subset], policy)
                           for subset in (every, without))
    kept = with_it is not None and (without_it is None or with_it < without_it)
    choice = FallbackChoice(configs[fallback].name, kept or without_it is None, with_it,
                            without_it)
    step(f"the {choice.name} tier: {'kept' if choice.kept else 'left out'} (expected ms per "
         f"record at the policy: {_ms(with_it)} with it, {_ms(without_it)} without it)")
    return (every if choice.kept else without), choice


def _ms(seconds: float | None) -> str:
    return "none meets it" if seconds is None else f"{1000 * seconds:.3f}"


def _expected_cost(configs: list[TierConfig], tiers: list[TierMeasurements],
                   labels: torch.Tensor, costs: list[float], policy: Policy) -> float | None:
    """The expected seconds per record of the policy's point; None where none meets it."""
    try:
        choice, _ = choose_with_reached_calibration(tuple(configs), tiers, labels, costs,
                                                    policy)
    except NoOperatingPoint:
        return None
    return choice.point.cost


def choose_with_reached_calibration(configs: tuple[TierConfig, ...],
                                    first_fit: list[TierMeasurements], labels: torch.Tensor,
                                    costs: list[float], policy: Policy
                                    ) -> tuple[Choice, list[TierMeasurements]]:
    """The policy's point, with every tier after the first calibrated on the dev records
    that reach it there. Refitting a tier that routes moves the records that reach the next
    and may move the choice, so choose, refit and choose again until the thresholds stay
    (at most REFIT_ROUNDS times; a two-tier cascade settles at once: its last tier routes
    nothing)."""
    tiers = first_fit
    choice = _choose(tiers, labels, costs, policy)
    for _ in range(REFIT_ROUNDS if len(tiers) > 1 else 0):
        step(f"refitting tiers 2-{len(tiers)} on the dev records that reach them at "
             f"thresholds {[round(t, 4) for t in choice.point.thresholds]}")
        deciding = deciding_tiers([t.calibrated for t in tiers], choice.point.thresholds)
        tiers = [tiers[0]] + [refit_on_reached(c, m, labels, deciding >= k)
                              for k, (c, m) in enumerate(zip(configs, first_fit)) if k > 0]
        previous, choice = choice, _choose(tiers, labels, costs, policy)
        if choice.point.thresholds == previous.point.thresholds:
            break
    return choice, tiers


def _choose(tiers: list[TierMeasurements], labels: torch.Tensor, costs: list[float],
            policy: Policy) -> Choice:
    on_unlabelled = [t.unlabelled for t in tiers] if tiers[0].unlabelled is not None else None
    return choose_point([t.calibrated for t in tiers], labels, on_unlabelled, costs, policy)


def split_half_check(tiers: list[TierOutputs], labels: torch.Tensor,
                     unlabelled: list[TierOutputs] | None, costs: list[float], policy: Policy,
                     seed: int) -> SplitHalfCheck:
    """Tunes on a random half of dev (and the unlabelled sample, if any) and replays those
    thresholds on the other half: the accuracy drop on the unseen half is what a user
    should expect on new data."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    halves = {"tuned": order[: len(order) // 2], "held_out": order[len(order) // 2:]}
    subset = {name: ([TierOutputs(t.predictions[i], t.confidences[i], t.max_probs[i])
                      for t in tiers], labels[i]) for name, i in halves.items()}
    tuned_tiers, tuned_labels = subset["tuned"]
    chosen = choose_point(tuned_tiers, tuned_labels, unlabelled, costs, policy).point
    checks = {}
    for name, (half_tiers, half_labels) in subset.items():
        point = replay(half_tiers, half_labels, chosen.thresholds, costs)
        alone = last_tier_alone(half_tiers, half_labels, costs)
        checks[name] = HalfCheck(len(half_labels), point.accuracy, alone.accuracy,
                                 100 * (alone.accuracy - point.accuracy), point.speedup,
                                 point.estimated_accuracy)
    return SplitHalfCheck(chosen.thresholds, seed, **checks)


def tuned_config(config: CascadeConfig, tiers: list[TierMeasurements], chosen: OperatingPoint,
                 batch_sizes: list[int], reached: list[list[float]]) -> CascadeConfig:
    thresholds = list(chosen.thresholds) + [None]
    return dataclasses.replace(config, tiers=tuple(
        dataclasses.replace(c, threshold=th, temperature=t.calibration.temperature,
                            batch_size=b,
                            exit_temperatures=t.exits.temperatures if t.exits else None,
                            keep_tokens=t.lengths.chosen.keep if t.lengths else c.keep_tokens,
                            reference_confidences=reference_quantiles(r) if r else None,
                            reference_records=len(r) or None,
                            seconds_per_record=t.costs[t.best_batch_size])
        for c, t, th, b, r in zip(config.tiers, tiers, thresholds, batch_sizes, reached)))


def recorded_guarantee(policy: Policy, bound: DropBound | RecordsDropBound,
                       chosen: OperatingPoint, labelled: int, unlabelled: int
                       ) -> Guarantee | None:
    """The promise the tuned config carries (models/config.py Guarantee); None unless the
    policy was an accuracy-drop budget, the only one with a guarantee."""
    if policy.max_accuracy_drop is None:
        return None
    return Guarantee(max_accuracy_drop=policy.max_accuracy_drop, confidence=policy.confidence,
                     drop_bound=100 * bound.bound, labelled_records=labelled,
                     unlabelled_records=unlabelled, evidence=bound.source,
                     expected_escalation=chosen.reach[-1], expected_speedup=chosen.speedup,
                     calibrated_on=datetime.date.today().isoformat())


def reached_confidences(tiers: list[TierOutputs], thresholds: tuple[float, ...]
                        ) -> list[list[float]]:
    """Per tier, the calibrated confidences of the records that reach it at these
    thresholds: what the run's shift test compares its own with."""
    deciding = deciding_tiers(tiers, thresholds)
    return [t.confidences[deciding >= k].tolist() for k, t in enumerate(tiers)]
