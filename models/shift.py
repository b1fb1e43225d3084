"""Has the input moved away from the data calibrate tuned on?

Thresholds, temperatures and the label-free accuracy estimate are all fitted to the
calibration data; on input of another kind (a new source, longer texts) they stop meaning
what they meant. A tier's confidences show it first: calibrate keeps their quantiles
(`reference_confidences`, over the records that reached the tier, with their number), and
the run compares the confidences it saw with them by a two-sample Kolmogorov-Smirnov test.

The run keeps its confidences in bins of 1/BINS, so the test is evaluated at the reference's
quantiles against binned counts, taking the smallest distance the bins allow. A shift is
reported when the test is significant (p < P_VALUE) and the distance large enough to matter
(at least MIN_DISTANCE), since with millions of records any difference is significant.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from models.routing_rule import confidence_bin

REFERENCE_QUANTILES = 49  # at 1/50, 2/50, ... 49/50
BINS = 1000
P_VALUE = 0.001
MIN_DISTANCE = 0.05


def reference_quantiles(confidences: Sequence[float]) -> tuple[float, ...]:
    """The calibration data's confidence quantiles at 1/50 ... 49/50 (rounded to 4 places:
    a config file shows them)."""
    ordered = sorted(confidences)
    last = len(ordered) - 1
    return tuple(round(ordered[round(last * j / (REFERENCE_QUANTILES + 1))], 4)
                 for j in range(1, REFERENCE_QUANTILES + 1))


@dataclass(frozen=True)
class ShiftTest:
    distance: float  # the largest gap between the two cumulative distributions
    p_value: float
    shifted: bool


def shift_test(quantiles: Sequence[float], reference_records: int, bins: Counter) -> ShiftTest:
    """Compares the run's binned confidences with the reference quantiles."""
    from scipy.stats import kstwobign
    seen = sum(bins.values())
    levels = [j / (len(quantiles) + 1) for j in range(1, len(quantiles) + 1)]
    distance = max(_gap(bins, seen, q, level) for q, level in zip(quantiles, levels))
    effective = reference_records * seen / (reference_records + seen)
    p_value = float(kstwobign.sf(distance * math.sqrt(effective)))
    return ShiftTest(distance, p_value, p_value < P_VALUE and distance >= MIN_DISTANCE)


def _gap(bins: Counter, total: int, value: float, level: float) -> float:
    """How far the run's share of confidences at most `value` is from `level`, at least:
    the records in `value`'s own bin may lie on either side of it, so the gap is measured
    to the nearer end (never a shift made up by binning)."""
    own = confidence_bin(value, BINS)
    below = sum(n for b, n in bins.items() if b < own) / total
    through = below + bins.get(own, 0) / total
    return max(0.0, below - level, level - through)
