"""Confidence measures that decide whether a tier keeps a record or escalates it.

Every measure maps a row of class probabilities to a score in [0, 1] where higher means
"more sure", so one threshold semantics ("escalate when below") holds for all of them.
Temperature scaling (Guo et al. 2017; Schwartz et al. 2020) is applied to the logits first,
so calibrated temperatures change the routing without touching the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from models.names import CONFIDENCE_MEASURE_NAMES

ConfidenceFn = Callable[[torch.Tensor], torch.Tensor]


def max_prob(probs: torch.Tensor) -> torch.Tensor:
    """Largest class probability (TangoBERT's max-softmax confidence)."""
    return probs.max(dim=-1).values


def margin(probs: torch.Tensor) -> torch.Tensor:
    """Gap between the two most likely classes: small when the model hesitates between two."""
    top2 = probs.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """One minus the entropy normalised by its maximum log(K): 1 for a one-hot, 0 for uniform."""
    num_classes = probs.shape[-1]
    plogp = torch.where(probs > 0, probs * probs.log(), torch.zeros_like(probs))
    return 1.0 + plogp.sum(dim=-1) / math.log(num_classes)


CONFIDENCE_MEASURES: dict[str, ConfidenceFn] = dict(zip(
    CONFIDENCE_MEASURE_NAMES, (max_prob, margin, entropy), strict=True))


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of temperature-scaled logits, in float32 whatever the model's dtype."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def confidence(probs: torch.Tensor, measure: str) -> torch.Tensor:
    """Scores each row of `probs` with the named measure (see CONFIDENCE_MEASURES)."""
    try:
        return CONFIDENCE_MEASURES[measure](probs)
    except KeyError:
        raise ValueError(
            f"unknown confidence measure {measure!r}; use one of {sorted(CONFIDENCE_MEASURES)}"
        ) from None


@dataclass(frozen=True)
class Scores:
    """One batch's decisions: per row the predicted label id, its probabilities and confidence."""

    label_ids: list[int]
    probabilities: list[list[float]]
    confidences: list[float]


def score(logits: torch.Tensor, temperature: float = 1.0, measure: str = "max_prob",
          confidences: torch.Tensor | None = None) -> Scores:
    """Turns a batch of logits into labels, calibrated probabilities and confidences: the
    measure's, or `confidences` when given (a learned router's, models/learned_deferral.py)."""
    probs = probabilities(logits, temperature)
    return Scores(
        label_ids=probs.argmax(dim=-1).tolist(),
        probabilities=probs.tolist(),
        confidences=(confidence(probs, measure) if confidences is None else confidences
                     ).tolist(),
    )
