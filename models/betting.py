"""A finite-sample upper bound on the mean of a finite population, from a sample drawn
without replacement: betting confidence bounds (Waudby-Smith and Ramdas, "Confidence
sequences for sampling without replacement", NeurIPS 2020; "Estimating means of bounded
random variables by betting", JRSS-B 2024).

Why betting: the records whose labels decide a guarantee are few (tens to hundreds per
band of the threshold sequence), their values bounded, often of small variance (a
prediction-powered residual is near 0 where the last tier is calibrated). Betting bounds
adapt to that variance like a Bernstein bound but without its constants, stay valid at
every sample size at once (so a second round of labels, requested after seeing the first,
costs nothing), and tighten as the sample nears the whole population (sampling without
replacement). `confseq` (the authors' package) implements them, but builds a C++ extension
with Boost on install; the fixed-time upper bound needed here is the few lines below.

How: for a candidate population mean m, a gambler bets against it record by record; with
S the sum of the records drawn so far, the mean of the next draw is known under m:
(N m - S) / (N - t + 1). Her capital multiplies by 1 + bet x (that mean - the record). If
the mean is m the capital is a nonnegative martingale, so it reaches 1/risk with
probability at most `risk` (Ville's inequality); every m at which it did is rejected, and
the bound is the largest m not rejected. The bets are the predictable plug-in ones (an
empirical-Bernstein-optimal size from the records before, capped at 3/4 of ruin).
"""
from __future__ import annotations

import math

import numpy as np

GRID = 96  # candidate means per pass; two passes, the second inside the first's bracket
BET_CAP = 0.75  # a bet never risks more than this share of ruin


def upper_mean_bound(sample: np.ndarray, population: int, risk: float) -> float:
    """An upper bound on the mean of `population` values in [0, 1], of which `sample`
    were drawn uniformly without replacement, in draw order: above the true mean with
    probability at most `risk`. The whole population drawn gives its mean exactly."""
    x = np.asarray(sample, dtype=float)
    n = len(x)
    if not 0 < risk < 1:
        raise ValueError(f"risk {risk} must be between 0 and 1")
    if n > population:
        raise ValueError(f"{n} records drawn from a population of {population}")
    if n == population:
        return float(x.sum() / population) if population else 0.0
    lowest, highest = x.sum() / population, (x.sum() + population - n) / population
    if n == 0:
        return float(highest)
    bets = _plug_in_bets(x, risk)
    low, high = lowest, highest
    for _ in range(2):
        grid = np.linspace(low, high, GRID)
        kept = grid[~_rejected(x, population, grid, bets, risk)]
        if len(kept) == 0:  # only where float rounding rejects the observed mean itself
            return float(lowest)
        step = grid[1] - grid[0]
        low, high = kept.max(), min(highest, kept.max() + step)
    return float(high)


def _plug_in_bets(x: np.ndarray, risk: float) -> np.ndarray:
    """Each draw's bet size before the cap, from the draws before it only."""
    n = len(x)
    t = np.arange(1, n + 1)
    running_mean = (0.5 + np.cumsum(x)) / (t + 1)
    squares = np.cumsum((x - running_mean) ** 2)
    variance = (0.25 + np.concatenate(([0.0], squares[:-1]))) / t  # before draw t
    return np.sqrt(2 * math.log(1 / risk) / (n * variance))


def _rejected(x: np.ndarray, population: int, means: np.ndarray, bets: np.ndarray,
              risk: float) -> np.ndarray:
    """For each candidate mean, whether the gambler's capital reached 1/risk."""
    t = np.arange(len(x))
    before = np.concatenate(([0.0], np.cumsum(x)[:-1]))
    next_mean = (population * means[:, None] - before[None, :]) / (population - t)[None, :]
    impossible = (next_mean < -1e-12).any(axis=1)
    headroom = np.maximum(1 - next_mean, 1e-12)
    bet = np.minimum(bets[None, :], BET_CAP / headroom)
    log_capital = np.cumsum(np.log1p(bet * (next_mean - x[None, :])), axis=1)
    return impossible | (log_capital.max(axis=1) >= math.log(1 / risk))
