"""The closed loop: a tier with max_disagreement routes each window by the threshold its
steering sample supports (transforms/budget.py), checked against direct computations and,
on simulated windows with a known disagreement, for the bound's coverage."""
import random

from models.binomial import binomial_upper_bound
from models.guarantee import THRESHOLD_SEQUENCE
from models.routing_rule import confidence_bin
from transforms.budget import BINS, ESCALATE_ALL, WindowCounts, steered_threshold


def counts_of(sample: list[tuple[float, bool]]) -> WindowCounts:
    """The steering sample (confidence, agreed with the last tier) as the combiner counts it."""
    counts = WindowCounts()
    for confidence, agreed in sample:
        counts.sampled += 1
        counts.disagreed[confidence_bin(confidence, BINS)] += not agreed
    return counts


def direct_threshold(sample: list[tuple[float, bool]], floor: float, target: float) -> float:
    """The fixed-sequence walk on the raw sample, written out: accept thresholds from the
    safest down while the bound on (decided and disagreeing) / sampled stays within target."""
    chosen = ESCALATE_ALL
    for t in [t for t in THRESHOLD_SEQUENCE if t > floor] + [floor]:
        disagreeing = sum(1 for c, agreed in sample if c >= t and not agreed)
        if binomial_upper_bound(disagreeing, len(sample), 0.05) > target:
            return chosen
        chosen = t
    return chosen


def simulated_sample(rng: random.Random, n: int, hardness: float) -> list[tuple[float, bool]]:
    """Confidences in [0.5, 1]; a record disagrees with the last tier with a chance that
    grows as its confidence falls, scaled by the window's hardness."""
    sample = []
    for _ in range(n):
        c = 0.5 + rng.random() / 2
        sample.append((c, rng.random() >= hardness * 2 * (1 - c)))
    return sample


def test_the_steered_threshold_is_the_fixed_sequence_walk():
    rng = random.Random(3)
    for hardness in (0.1, 0.4, 0.9):
        for n in (0, 20, 400):
            sample = simulated_sample(rng, n, hardness)
            for floor, target in ((0.5, 0.05), (0.8, 0.1), (0.0, 0.2)):
                steered = steered_threshold(counts_of(sample), floor, target)
                assert steered == direct_threshold(sample, floor, target)
                assert steered >= floor
    assert steered_threshold(WindowCounts(), 0.5, 0.5) == ESCALATE_ALL  # no evidence


def test_harder_windows_get_higher_thresholds():
    rng = random.Random(5)
    steered = [steered_threshold(counts_of(simulated_sample(rng, 2000, hardness)), 0.5, 0.04)
               for hardness in (0.05, 0.3, 0.9)]
    assert steered[0] < steered[1] < steered[2]


def test_the_window_bound_covers_the_true_disagreement():
    """300 windows of 4,000 records, each steered from a 5% sample: the share of windows
    whose true (decided and disagreeing) share exceeds the target stays within the 5% risk
    (allowing for the simulation's own noise), and the loop does not just escalate all."""
    rng = random.Random(11)
    target, misses, thresholds = 0.05, 0, []
    for w in range(300):
        window = simulated_sample(rng, 4000, hardness=rng.choice((0.2, 0.5, 0.8)))
        sample = [r for r in window if rng.random() < 0.05]
        t = steered_threshold(counts_of(sample), 0.5, target)
        thresholds.append(t)
        true_share = sum(1 for c, agreed in window if c >= t and not agreed) / len(window)
        misses += true_share > target
    assert misses <= 25  # expected at most 15 (5%); 25 is beyond 3 standard deviations
    assert sum(t < 1 for t in thresholds) > 250
