"""The input-shift test (models/shift.py) and how the statistics and summary report it."""
import random
from collections import Counter

from models.config import TierConfig
from models.routing_rule import confidence_bin
from models.shift import BINS, reference_quantiles, shift_test
from pipeline.summary import format_summary
from transforms.records import Record, Visit
from transforms.statistics_extraction import RoutingStatsFn
from transforms.statistics_tally import count_predictions


def _bins(confidences):
    return Counter(confidence_bin(c, BINS) for c in confidences)


def test_the_same_distribution_is_not_flagged_and_a_moved_one_is():
    rng = random.Random(0)
    reference = [rng.betavariate(5, 2) for _ in range(2000)]
    same = [rng.betavariate(5, 2) for _ in range(20_000)]
    moved = [rng.betavariate(3, 2) for _ in range(20_000)]  # less confident: new kind of input
    quantiles = reference_quantiles(reference)
    assert not shift_test(quantiles, len(reference), _bins(same)).shifted
    test = shift_test(quantiles, len(reference), _bins(moved))
    assert test.shifted and test.distance > 0.1 and test.p_value < 1e-6


def test_a_tiny_but_significant_difference_is_not_called_a_shift():
    rng = random.Random(1)
    reference = [rng.random() for _ in range(100_000)]
    nudged = [min(1.0, rng.random() + 0.01) for _ in range(1_000_000)]
    test = shift_test(reference_quantiles(reference), len(reference), _bins(nudged))
    assert test.p_value < 0.001 and not test.shifted


def test_the_statistics_and_summary_say_when_the_input_shifted():
    rng = random.Random(2)
    reference = reference_quantiles([rng.betavariate(5, 2) for _ in range(2000)])
    tiers = [TierConfig("small", "m", threshold=0.5, reference_confidences=reference,
                        reference_records=2000), TierConfig("large", "m")]
    fn = RoutingStatsFn(tiers)
    acc = fn.create_accumulator()
    for i in range(3000):
        c = rng.betavariate(2, 2)
        count_predictions(acc, [Record(i, "a text", tiers=(
            Visit("small", 1, (1 - c, c), c, 0.1, 1),))])
    stats = fn.extract_output(acc)
    assert stats.shifted_tiers == ("small",) and stats.tiers[0].shift.shifted
    assert stats.tiers[1].shift is None  # no reference: no test
    assert "INPUT SHIFT" in format_summary(stats, "out")
