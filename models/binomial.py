"""Exact binomial (Clopper-Pearson) bounds on a rate: what a count of successes in
independent trials says of the true rate, at a stated risk, with no approximation."""
from __future__ import annotations


def binomial_upper_bound(successes: int, trials: int, risk: float) -> float:
    """The exact (Clopper-Pearson) upper bound on a rate: at most `risk` chance that the
    true rate is above it. 1 with no trials."""
    if successes >= trials:
        return 1.0
    from scipy.stats import beta  # here: scipy.stats adds 0.6 s to every worker's start-up
    return float(beta.ppf(1 - risk, successes + 1, trials - successes))


def binomial_interval(successes: int, trials: int, confidence: float = 0.95
                      ) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval on a rate; (0, 1) with no trials."""
    from scipy.stats import beta
    risk = (1 - confidence) / 2
    low = 0.0 if successes <= 0 else float(beta.ppf(risk, successes, trials - successes + 1))
    return low, binomial_upper_bound(successes, trials, risk)
