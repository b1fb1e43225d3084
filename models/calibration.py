"""Temperature scaling and calibration metrics (Guo et al. 2017; Schwartz et al. 2020).

A tier is calibrated when, among the records it gives confidence 0.8, about 80% are right.
One temperature T per tier, dividing its logits before the softmax, is fitted on labelled dev
data by minimising the negative log-likelihood. Calibrated confidences make thresholds mean
the same thing across tiers and make the mean confidence of a tier's decisions an estimate of
their accuracy, without labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ECE_BINS = 15
# log T is searched in this range (T from about 0.02 to 50): wider gains nothing but overflow.
LOG_T_RANGE = (-4.0, 4.0)
# A fitted temperature keeps this many significant digits: what a tuned config shows is
# then exactly what calibrate used, and the NLL moves by far less than it could measure.
TEMPERATURE_DIGITS = 4


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor,
                            temperature: float = 1.0) -> float:
    """Mean NLL of the labels under softmax(logits / temperature)."""
    return torch.nn.functional.cross_entropy(logits.double() / temperature, labels).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the NLL of `labels` under softmax(logits / T).

    L-BFGS on log T (so T stays positive) from several starting points, keeping the best:
    the NLL is convex in 1/T but not in T, and a single start far from the optimum (very
    over-confident logits) can stall. Falls back to the best start if every run diverges.
    Rounded to TEMPERATURE_DIGITS significant digits before anything uses it, so the
    thresholds chosen with it hold for the temperature a tuned config writes.
    """
    logits, labels = logits.double(), labels.long()
    starts = torch.linspace(*LOG_T_RANGE, 9, dtype=torch.float64)
    best_log_t = min(starts.tolist(), key=lambda s: _nll_at(logits, labels, s))
    for start in starts.tolist():
        log_t = torch.tensor([start], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        candidate = min(max(log_t.item(), LOG_T_RANGE[0]), LOG_T_RANGE[1])
        if math.isfinite(candidate) and (_nll_at(logits, labels, candidate)
                                         < _nll_at(logits, labels, best_log_t)):
            best_log_t = candidate
    return float(f"{math.exp(best_log_t):.{TEMPERATURE_DIGITS}g}")


def _nll_at(logits: torch.Tensor, labels: torch.Tensor, log_t: float) -> float:
    value = negative_log_likelihood(logits, labels, math.exp(log_t))
    return value if math.isfinite(value) else math.inf


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: mean confidence, accuracy and record count (empty bins left out)."""

    confidence: list[float]
    accuracy: list[float]
    count: list[int]


def reliability(confidences: torch.Tensor, correct: torch.Tensor,
                bins: int = ECE_BINS) -> Reliability:
    """Bins records by confidence into `bins` equal-width bins (right-closed, the first also
    holding 0), the data of a reliability diagram."""
    index = torch.clamp(torch.ceil(confidences.double() * bins).long() - 1, 0, bins - 1)
    rows = [(confidences[index == b].double().mean().item(),
             correct[index == b].double().mean().item(), int((index == b).sum()))
            for b in range(bins) if (index == b).any()]
    return Reliability(*map(list, zip(*rows))) if rows else Reliability([], [], [])


def expected_calibration_error(confidences: torch.Tensor, correct: torch.Tensor,
                               bins: int = ECE_BINS) -> float:
    """ECE: the record-weighted mean gap between accuracy and mean confidence per bin."""
    r = reliability(confidences, correct, bins)
    gaps = sum(n * abs(a - c) for c, a, n in zip(r.confidence, r.accuracy, r.count))
    return gaps / len(confidences) if len(confidences) else 0.0


@dataclass(frozen=True)
class Calibration:
    """One tier's fitted temperature and its calibration before and after."""

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    accuracy: float


def calibrate(logits: torch.Tensor, labels: torch.Tensor) -> Calibration:
    """Fits the temperature and reports NLL and ECE (15 bins, max-prob confidence) around it."""
    temperature = fit_temperature(logits, labels)
    correct = logits.argmax(-1) == labels

    def ece(t: float) -> float:
        return expected_calibration_error(torch.softmax(logits.double() / t, -1).max(-1).values,
                                          correct)

    return Calibration(
        temperature=temperature,
        nll_before=negative_log_likelihood(logits, labels),
        nll_after=negative_log_likelihood(logits, labels, temperature),
        ece_before=ece(1.0), ece_after=ece(temperature),
        accuracy=correct.double().mean().item())
