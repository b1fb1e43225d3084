"""The accuracy guarantee (models/guarantee.py): exact binomial bounds, the drop bound, and
the fixed-sequence search, checked for coverage on simulated data whose true drop is known."""
import math
from types import SimpleNamespace

import pytest
import torch

from models.binomial import binomial_interval, binomial_upper_bound
from models.guarantee import DropBound, GuaranteedPoint, accepted_prefix, drop_bound, guarantee_search
from models.operating_points import TierOutputs, cascade_predictions


def test_clopper_pearson_on_known_values():
    # 0 of n: the upper bound solves (1 - p)^n = risk.
    assert binomial_upper_bound(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert binomial_upper_bound(5, 5, 0.05) == 1.0
    assert binomial_upper_bound(0, 0, 0.05) == 1.0
    low, high = binomial_interval(10, 100)
    assert low == pytest.approx(0.0490, abs=2e-4) and high == pytest.approx(0.1762, abs=2e-4)


@pytest.mark.parametrize("rate,trials", [(0.01, 300), (0.2, 50), (0.5, 20)])
def test_the_upper_bound_covers_the_rate_at_its_risk(rate, trials):
    generator = torch.Generator().manual_seed(0)
    draws = torch.binomial(torch.full((3000,), float(trials)), torch.full((3000,), rate),
                           generator=generator).long().tolist()
    misses = sum(binomial_upper_bound(k, trials, 0.1) < rate for k in draws)
    assert misses / len(draws) <= 0.1 + 0.015  # exact bounds are conservative


def test_the_drop_bound_from_its_parts():
    cascade = torch.tensor([1, 1, 0, 0, 1, 1, 1, 1, 1, 1])
    last = torch.tensor([1, 0, 1, 0, 1, 1, 1, 1, 1, 1])
    labels = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 1, 1])  # disagreements: 1 (cascade
    # right), 2 (cascade wrong)
    b = drop_bound(cascade, last, labels, None, 0.9)
    assert (b.compared, b.disagreements, b.labelled_disagreements, b.cascade_wrong) == (
        10, 2, 2, 1)
    assert b.bound == pytest.approx(binomial_upper_bound(2, 10, 0.05)
                                    * (2 * binomial_upper_bound(1, 2, 0.05) - 1))
    # with unlabelled answers, they alone give the disagreement rate
    u = drop_bound(cascade, last, labels, (torch.zeros(1000), torch.zeros(1000)), 0.9)
    assert u.compared == 1000 and u.disagreements == 0
    assert u.bound == pytest.approx(binomial_upper_bound(0, 1000, 0.05)
                                    * (2 * binomial_upper_bound(1, 2, 0.05) - 1))


def test_without_labelled_disagreements_the_bound_is_the_disagreement_rates():
    bound = DropBound(0.9, compared=1000, disagreements=30, labelled_disagreements=0,
                      cascade_wrong=0)
    assert bound.bound == pytest.approx(binomial_upper_bound(30, 1000, 0.05))
    assert "alone" in bound.source


def test_fixed_sequence_stops_at_the_first_failure():
    path = [GuaranteedPoint(None, SimpleNamespace(bound=b)) for b in (0.0, 0.002, 0.011, 0.004)]
    assert [p.bound.bound for p in accepted_prefix(path, 0.01)] == [0.0, 0.002]


POPULATION = 100_000
SEQUENCE = tuple(round(1 - k / 40, 3) for k in range(21))  # 1.0 down to 0.5, fixed


def _population(seed=0):
    """A binary task: tier 1's confidence c ~ U(0.5, 1), right with probability 0.4 + 0.6c
    (over-confident below 0.9); the last tier right with probability 0.9. Labels all 1."""
    g = torch.Generator().manual_seed(seed)
    confidence = 0.5 + 0.5 * torch.rand(POPULATION, generator=g)
    tier1_right = torch.rand(POPULATION, generator=g) < 0.4 + 0.6 * confidence
    last_right = torch.rand(POPULATION, generator=g) < 0.9
    tiers = [TierOutputs(tier1_right.long(), confidence, confidence),
             TierOutputs(last_right.long(), torch.ones(POPULATION), torch.ones(POPULATION))]
    return tiers, torch.ones(POPULATION, dtype=torch.long)


def _subset(tiers, index):
    return [TierOutputs(t.predictions[index], t.confidences[index], t.max_probs[index])
            for t in tiers]


def _true_drop(tiers, labels, threshold):
    cascade = cascade_predictions(tiers, (threshold,))
    return ((tiers[-1].predictions == labels).double().mean()
            - (cascade == labels).double().mean()).item()


@pytest.mark.parametrize("unlabelled_records", [0, 3000])
def test_the_guarantee_holds_at_its_confidence_where_the_point_estimate_does_not(
        unlabelled_records):
    """200 simulated calibrations of 400 labelled records (and an unlabelled sample): the
    share whose chosen threshold's true drop exceeds the 1-point budget stays within
    1 - confidence; picking by the dev drop alone, as if it were exact, exceeds it far more
    often. The test would fail on a bound that did not hold or a search that spent it."""
    tiers, labels = _population()
    truth = {t: _true_drop(tiers, labels, t) for t in SEQUENCE}
    g = torch.Generator().manual_seed(1)
    budget, guaranteed_misses, estimate_misses, escalation = 0.01, 0, 0, []
    for _ in range(200):
        dev = torch.randint(POPULATION, (400,), generator=g)
        sample = (_subset(tiers, torch.randint(POPULATION, (unlabelled_records,), generator=g))
                  if unlabelled_records else None)
        search = guarantee_search(_subset(tiers, dev), labels[dev], sample, (1.0, 10.0), 0.9,
                                  budget, sequence=SEQUENCE)
        chosen = search.chosen.point
        guaranteed_misses += truth[chosen.thresholds[0]] > budget
        escalation.append(chosen.reach[-1])
        reference = search.path[0].point.accuracy  # threshold 1: the last tier alone
        by_estimate = [p.point for p in search.path if reference - p.point.accuracy <= budget]
        estimate_misses += truth[min(by_estimate, key=lambda p: p.cost).thresholds[0]] > budget
    assert guaranteed_misses / 200 <= 0.1
    assert estimate_misses / 200 >= 0.2
    assert 0 < sum(escalation) / 200 < 1  # it does choose a cascade, not the last tier alone
    assert math.isfinite(search.smallest_budget)
