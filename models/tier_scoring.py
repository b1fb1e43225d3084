"""Scoring texts with one tier, without Beam: the step that the job's RunInference
(transforms/scoring.py `TierModelHandler`) and in-process prediction (pipeline/predict.py)
both run, so that `predict` answers exactly as a job does.
"""
from __future__ import annotations

import time
from typing import NamedTuple

from models.confidence import score
from models.config import TierConfig
from models.learned_deferral import Router, deferral_inputs
from models.tier import Tier


class TextScore(NamedTuple):
    """One tier's answer for one text. Its fields are those of the `Visit` a record carries
    (transforms/records.py), by name: `Visit(**text_score._asdict())`."""

    tier: str
    label_id: int
    probabilities: tuple[float, ...]  # after the tier's temperature
    confidence: float  # what routing compares with the threshold (the router's, if any)
    ms: float  # the call's time shared out per text
    batch: int  # texts in the call
    exit_layer: int | None  # the layer an early-exit tier's text left at; else None
    passes: int  # the model's forward passes in the call


def score_texts(tier: TierConfig, model: Tier, texts: list[str],
                text_pairs: list[str] | None = None, router: Router | None = None
                ) -> list[TextScore]:
    """Scores `texts` with one tier in one call: each text's label, probabilities after the
    tier's temperature and routing confidence (the router's, when the tier has one), the
    call's time and size and, for an early-exit tier, the layer it left at."""
    start = time.perf_counter()
    if router is not None and router.inner_exits:  # the router reads every exit's answer
        all_exits = model.exit_logits(texts, text_pairs)
        logits, layers = all_exits[-1], None
        inputs = deferral_inputs(model, logits, texts, text_pairs, all_exits[:-1])
    else:
        logits, layers = model.logits_and_exits(texts, text_pairs)
        inputs = None if router is None else deferral_inputs(model, logits, texts, text_pairs)
    learned = None if router is None else router.confidences(inputs)
    scores = score(logits, tier.temperature, tier.confidence, learned)
    ms_per_text = (time.perf_counter() - start) * 1000.0 / max(1, len(texts))
    exit_layers = layers.tolist() if model.early_exit and layers is not None \
        else [None] * len(texts)
    passes = model.forward_passes(len(texts))
    return [TextScore(tier.name, label_id, tuple(probs), conf, ms_per_text, len(texts), layer,
                      passes)
            for label_id, probs, conf, layer in zip(
                scores.label_ids, scores.probabilities, scores.confidences, exit_layers)]
