"""Label requests and the bound they feed (models/label_requests.py, models/betting.py,
models/records_bound.py): betting bounds cover, designs are deterministic and round-trip,
the weighted estimate is unbiased, and calibrations with requests keep their promise on
simulated data whose drop is known, also where the last tier's probabilities lie."""
import numpy as np
import pytest
import torch

from models.betting import upper_mean_bound
from models.guarantee import disagreement_entries, guarantee_search
from models.label_requests import (RequestDesign, more_requests, new_design, newly_requested,
                                   record_key)
from models.operating_points import TierOutputs, cascade_predictions
from models.records_bound import AnsweredRequests, RecordsBounder


@pytest.mark.parametrize("population,drawn,rate", [(300, 60, 0.3), (200, 150, 0.05),
                                                   (1000, 40, 0.5)])
def test_the_betting_bound_covers_a_finite_population(population, drawn, rate):
    rng = np.random.default_rng(0)
    values = (rng.random(population) < rate).astype(float)
    misses = sum(upper_mean_bound(rng.permutation(values)[:drawn], population, 0.1)
                 < values.mean() for _ in range(300))
    assert misses / 300 <= 0.1 + 0.05  # 0.1 allowed; 0.05 of simulation noise


def test_the_betting_bound_is_exact_on_the_whole_population_and_narrows_towards_it():
    rng = np.random.default_rng(1)
    values = rng.random(100)
    assert upper_mean_bound(values, 100, 0.1) == pytest.approx(values.mean())
    widths = [upper_mean_bound(values[:n], 100, 0.1) - values.mean() for n in (10, 50, 95)]
    assert widths[0] > widths[1] > widths[2] >= 0
    with pytest.raises(ValueError, match="population of 5"):
        upper_mean_bound(values[:6], 5, 0.1)


def world(n: int, seed: int, lying_last_tier: bool = False):
    """Two tiers on n records: tier 1 right more often when confident; the last tier right
    with its stated probability, or (lying) far more often than the little it states, so
    that its probabilities call the cascade right where it is wrong."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    labels = rng.integers(0, 2, n)
    first_right = rng.random(n) < np.clip(confidence - 0.05, 0.5, 1)
    stated = rng.uniform(0.5, 0.65, n) if lying_last_tier else rng.uniform(0.6, 1.0, n)
    last_right = rng.random(n) < (0.97 if lying_last_tier else stated)
    first = np.where(first_right, labels, 1 - labels)
    last = np.where(last_right, labels, 1 - labels)
    tiers = [TierOutputs(torch.tensor(p), torch.tensor(c, dtype=torch.float32),
                         torch.tensor(c, dtype=torch.float32))
             for p, c in ((first, confidence), (last, stated))]
    return tiers, torch.tensor(labels)


def answered(tiers, labels, requests, seed, evidence="both", whole=True):
    keys = tuple(record_key(f"{seed}-{i}") for i in range(len(labels)))
    design = new_design(keys, disagreement_entries(tiers), requests, seed)
    asked = set(newly_requested(None, design))
    return AnsweredRequests(design, keys,
                            {k: int(y) for k, y in zip(keys, labels) if k in asked},
                            len(keys) if whole else None, evidence)


def test_a_design_is_deterministic_for_a_seed_and_requests_the_earliest_disagreements_whole():
    tiers, labels = world(800, 0)
    keys = [record_key(f"r{i}") for i in range(800)]
    entry = disagreement_entries(tiers)
    design = new_design(keys, entry, 40, seed=3)
    assert design == new_design(keys, entry, 40, seed=3)
    assert design != new_design(keys, entry, 40, seed=4)
    first, *rest = design.bands
    assert first.requested == len(first.keys) == 20  # half the requests, labelled whole
    assert [len(b.keys) for b in rest[:2]] == [80, 160] and rest[0].requested == 10
    assert design.requested == 40
    assert first.entry_low >= rest[0].entry_high  # bands follow the entry, highest first
    disagreeing = {k for k, e in zip(keys, entry) if np.isfinite(e)}
    assert {k for b in design.bands for k in b.keys} == disagreeing


def test_requests_beyond_the_planned_bands_go_to_the_records_left():
    keys = [record_key(f"r{i}") for i in range(12)]
    entry = np.array([1 - i / 100 for i in range(5)] + [-np.inf] * 7)  # 5 disagreements
    assert new_design(keys, entry, 4, seed=0).requested == 4
    assert new_design(keys, entry, 9, seed=0).requested == 5  # every one, no more


def test_a_later_round_takes_the_next_records_of_the_same_bands_and_the_design_round_trips():
    tiers, _ = world(800, 0)
    keys = [record_key(f"r{i}") for i in range(800)]
    design = new_design(keys, disagreement_entries(tiers), 40, seed=3)
    later = more_requests(design, 20)
    assert later.requested == 60
    new = newly_requested(design, later)
    assert len(new) == 20 and not set(new) & set(newly_requested(None, design))
    for before, after in zip(design.bands, later.bands):
        assert after.keys == before.keys and after.requested >= before.requested
    assert RequestDesign.from_json(later.to_json()) == later
    with pytest.raises(ValueError, match="at least one label"):
        more_requests(design, 0)


def test_with_every_disagreement_labelled_the_bound_is_the_drop_on_the_records():
    tiers, labels = world(300, 2)
    requests = answered(tiers, labels, 300, seed=0)
    bounder = RecordsBounder(requests, 0.9)
    for threshold in (0.99, 0.9, 0.7):
        cascade = cascade_predictions(tiers, (threshold,))
        drop = ((tiers[-1].predictions == labels).double().mean()
                - (cascade == labels).double().mean()).item()
        bound = bounder.bound(cascade.numpy(), tiers[-1].predictions.numpy(),
                              tiers[-1].max_probs.double().numpy())
        assert bound.bound == pytest.approx(drop) and bound.unrequested == 0


def test_the_weighted_estimate_of_the_drop_is_unbiased():
    tiers, labels = world(1500, 5)
    cascade = cascade_predictions(tiers, (0.6,))
    last = tiers[-1].predictions
    truth = ((last == labels).double().mean() - (cascade == labels).double().mean()).item()
    estimates = []
    for seed in range(300):
        bounder = RecordsBounder(answered(tiers, labels, 120, seed), 0.9)
        estimates.append(bounder.bound(cascade.numpy(), last.numpy(),
                                       tiers[-1].max_probs.double().numpy()).drop_estimate)
    error = np.mean(estimates) - truth
    assert abs(error) < 3 * np.std(estimates) / np.sqrt(len(estimates))


@pytest.mark.parametrize("evidence,lying", [("both", False), ("labels", False),
                                            ("prediction-powered", True)])
def test_calibrations_with_requests_keep_the_promise(evidence, lying):
    """Hundreds of simulated calibrations: the chosen thresholds' realised drop on the
    records exceeds the budget in at most 1 - confidence of them (plus simulation noise),
    also when the last tier's probabilities mislead the prediction-powered bound."""
    budget, misses, runs = 0.01, 0, 150
    for seed in range(runs):
        tiers, labels = world(500, 100 + seed, lying)
        search = guarantee_search(tiers, labels, tiers, (0.01, 1.0), 0.9, budget,
                                  requests=answered(tiers, labels, 12, seed, evidence),
                                  stop_above=budget)
        chosen = search.chosen
        if chosen is None:
            continue
        cascade = cascade_predictions(tiers, chosen.point.thresholds)
        drop = ((tiers[-1].predictions == labels).double().mean()
                - (cascade == labels).double().mean()).item()
        misses += drop > budget + 1e-9  # a drop known exactly may equal the budget
    assert misses / runs <= 0.1 + 0.05


def test_a_sample_of_a_larger_input_adds_a_margin_for_sampling_it():
    tiers, labels = world(400, 3)
    cascade, last = cascade_predictions(tiers, (0.8,)).numpy(), tiers[-1].predictions.numpy()
    probs = tiers[-1].max_probs.double().numpy()
    on_records = RecordsBounder(answered(tiers, labels, 50, 0), 0.9).bound(cascade, last, probs)
    on_input = RecordsBounder(answered(tiers, labels, 50, 0, whole=False), 0.9).bound(
        cascade, last, probs)
    assert on_records.sampling_margin == 0 < on_input.sampling_margin
    assert on_input.bound > on_records.bound
