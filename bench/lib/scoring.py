"""The models/ functions the replay studies score with, under the bench's names: a tier's
logits on a split (computed once, kept in bench/cache/logits), a temperature fitted on
labelled logits, the calibrated outputs a cascade replay routes on, and the operating points,
routing rule and learned deferral those outputs are replayed and routed with."""
from __future__ import annotations

import os

import torch

from models.calibration import calibrate, expected_calibration_error, fit_temperature
from models.confidence import probabilities, score
from models.config import TierConfig
from models.learned_deferral import deferral_inputs, fit_router, ranking_auc
from models.loading import load_configured_tier
from models.operating_points import (NoOperatingPoint, Policy, TierOutputs, cascade_predictions,
                                     choose, last_tier_alone, replay, sweep, threshold_below)
from models.routing_rule import decided_mask, escalated_indices
from models.token_dropping import best_within_budget, length_family, length_sweep
from models.tuning.fitting import MIN_REACHED, tier_outputs
from models.tuning.logits_cache import cached_logits

from bench.lib.data import sst2_labelled, sst2_unlabelled
from bench.lib.paths import CACHE
from bench.lib.tiers import tier1_model, tier2_model

__all__ = ["COSTS", "MIN_REACHED", "NoOperatingPoint", "Policy", "TierOutputs",
           "best_within_budget", "calibrate", "calibrated_outputs", "cascade_predictions",
           "choose", "decided_mask", "deferral_inputs", "escalated_indices",
           "expected_calibration_error", "fit_router", "fit_temperature", "last_tier_alone",
           "length_family", "length_sweep", "lowest_threshold", "outputs", "probabilities",
           "ranking_auc", "replay", "score", "sst2_logits", "sweep", "threshold_below",
           "tier_logits"]

COSTS = (0.01, 1.0)  # relative seconds per record: the n-gram tier is ~100x cheaper


def tier_logits(model: str, name: str, texts: list[str], what: str, runtime: str = "torch",
                quantize: str | None = None) -> torch.Tensor:
    """The tier `model`'s logits on `what` texts (dev, unlabelled, pool), on `runtime` in
    `quantize`'s precision, scored once per model, texts and settings and kept in
    bench/cache/logits under `name`."""
    tier = TierConfig(name=name, model=model, runtime=runtime, quantize=quantize)
    return cached_logits(tier, texts, None, what, os.path.join(CACHE, "logits"),
                         load_configured_tier(tier))[-1]


def calibrated_outputs(logits: torch.Tensor, temperature: float) -> TierOutputs:
    """Predictions and max-probability confidences at `temperature`: what the pipeline routes
    on."""
    return tier_outputs(logits, temperature, "max_prob")


def outputs(logits: list[torch.Tensor], temperatures: list[float]) -> list[TierOutputs]:
    """Each tier's calibrated_outputs at its own temperature."""
    return [calibrated_outputs(l, t) for l, t in zip(logits, temperatures)]


def sst2_logits(data: str) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """The n-gram and MiniLM tiers' logits on SST-2 dev and on the unlabelled test sentences
    (cached), and dev's labels."""
    dev, test = sst2_labelled(data, "dev.tsv"), sst2_unlabelled(data)
    models = [("ngram", tier1_model(None, data)), ("minilm", tier2_model(None, data))]
    return ([tier_logits(m, n, dev.texts, "dev") for n, m in models],
            [tier_logits(m, n, test, "unlabelled") for n, m in models],
            torch.tensor(dev.label_ids))


def lowest_threshold(confidence: torch.Tensor, tier1_right: torch.Tensor,
                     tier2_right: torch.Tensor, budget: float) -> float:
    """The lowest threshold (the least escalation) whose cascade accuracy is within `budget`
    (a share) of tier 2 alone on these records."""
    target = tier2_right.double().mean().item() - budget
    for threshold in sorted(set(confidence.tolist())) + [1.01]:
        escalated = confidence < threshold
        right = torch.where(escalated, tier2_right, tier1_right)
        if right.double().mean().item() >= target:
            return threshold
    return 1.01
