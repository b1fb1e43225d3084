"""The few models/ functions the replay studies score with, under the bench's names: a tier's
logits on a split (computed once, kept in bench/cache/logits), a temperature fitted on
labelled logits, and the calibrated outputs a cascade replay routes on."""
from __future__ import annotations

import os

import torch

from models.calibration import fit_temperature
from models.config import TierConfig
from models.loading import load_configured_tier
from models.operating_points import TierOutputs
from models.tuning.fitting import tier_outputs
from models.tuning.logits_cache import cached_logits

from bench.lib.paths import CACHE

__all__ = ["TierOutputs", "calibrated_outputs", "fit_temperature", "tier_logits"]


def tier_logits(model: str, name: str, texts: list[str], what: str) -> torch.Tensor:
    """The tier `model`'s logits on `what` texts (dev, unlabelled, pool), scored once per
    model, texts and settings and kept in bench/cache/logits under `name`."""
    tier = TierConfig(name=name, model=model)
    return cached_logits(tier, texts, None, what, os.path.join(CACHE, "logits"),
                         load_configured_tier(tier))[-1]


def calibrated_outputs(logits: torch.Tensor, temperature: float) -> TierOutputs:
    """Predictions and max-probability confidences at `temperature`: what the pipeline routes
    on."""
    return tier_outputs(logits, temperature, "max_prob")
