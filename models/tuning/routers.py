"""Learned deferral's routers (`confidence: learned`, models/learned_deferral.py), fitted by
calibrate on ROUTER_SHARE of the unlabelled sample, where the target is the last tier
answering otherwise; every later step measures on the rest, so the guarantee's disagreement
rate is counted on records no router was fitted to."""
from __future__ import annotations

import dataclasses

import torch

from models.config import CascadeConfig, TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.learned_deferral import deferral_inputs, fit_router, ranking_auc
from models.names import LEARNED_CONFIDENCE
from models.tuning.fitting import fit_tier, routing_logits
from models.tuning.progress import step
from models.tuning.results import LearnedRouting, TierMeasurements

ROUTER_SHARE = 0.5  # of the unlabelled sample, to fit learned routers on


def check_learned_routers(config: CascadeConfig, unlabelled: UnlabelledTexts | None) -> None:
    """Refuses, before minutes of scoring, a learned tier with nothing to learn from."""
    if unlabelled is None and any(t.confidence == LEARNED_CONFIDENCE for t in config.tiers):
        raise ValueError("confidence: learned fits a router on the last tier's answers over "
                         "unlabelled records: give calibrate --unlabelled (a sample of the "
                         "job's input, a thousand records or more)")


def with_learned_routers(configs: tuple[TierConfig, ...], tiers: list[TierMeasurements],
                         dev: LabelledTexts, unlabelled: UnlabelledTexts | None, seed: int
                         ) -> tuple[list[TierMeasurements], UnlabelledTexts | None]:
    """Fits the router of every `confidence: learned` tier on ROUTER_SHARE of the unlabelled
    sample (the target: the last tier answers otherwise there) and returns every tier
    measured on the rest, with that rest: the guarantee then counts disagreements on records
    no router was fitted to. Unchanged when no tier is learned."""
    if not any(c.confidence == LEARNED_CONFIDENCE for c in configs):
        return tiers, unlabelled
    assert unlabelled is not None  # refused before any tier ran (check_learned_routers)
    order = torch.randperm(len(unlabelled.texts),
                           generator=torch.Generator().manual_seed(seed)).tolist()
    fit_part = order[: int(len(order) * ROUTER_SHARE)]
    held = sorted(order[len(fit_part):])
    last = tiers[-1].unlabelled.predictions
    everyone = torch.ones(len(dev.label_ids), dtype=torch.bool)
    labels = torch.tensor(dev.label_ids)
    refitted = []
    for config, measured in zip(configs, tiers):
        learned = None if config.confidence != LEARNED_CONFIDENCE else learn_router(
            config, measured, dev, unlabelled, last, fit_part, held)
        held_logits = measured.unlabelled_logits[:, held]
        fit = fit_tier(config, measured.model, measured.dev_logits, labels, held_logits,
                       everyone, learned)
        refitted.append(dataclasses.replace(measured, **vars(fit), learned=learned,
                                            unlabelled_logits=held_logits))
    return refitted, unlabelled.subset(held)


def learn_router(config: TierConfig, measured: TierMeasurements, dev: LabelledTexts,
                 unlabelled: UnlabelledTexts, last_predictions: torch.Tensor,
                 fit_part: list[int], held: list[int]) -> LearnedRouting:
    """The tier's router fitted on the `fit_part` records, scored on dev and on `held`."""
    model = measured.model
    inner = model.exits.exit_layers[:-1] if len(measured.dev_logits) > 1 else ()
    logits = routing_logits(model, measured.unlabelled_logits)
    inputs = deferral_inputs(model, logits, unlabelled.texts, unlabelled.text_pairs,
                             measured.unlabelled_logits[:-1] if inner else None)
    disagrees = logits.argmax(-1) != last_predictions
    router = fit_router(config.name, tuple(model.labels), inputs[fit_part],
                        disagrees[fit_part], inner)
    held_confidences = router.confidences(inputs[held])
    dev_inputs = deferral_inputs(model, routing_logits(model, measured.dev_logits), dev.texts,
                                 dev.text_pairs, measured.dev_logits[:-1] if inner else None)
    routing = LearnedRouting(
        router=router, dev=router.confidences(dev_inputs),
        unlabelled=held_confidences, held_out=len(held),
        auc_learned=ranking_auc(-held_confidences, disagrees[held]),
        auc_max_prob=ranking_auc(-torch.softmax(logits[held], -1).max(-1).values,
                                 disagrees[held]))
    step(f"tier {config.name}: router fitted on {router.fitted_on} unlabelled records "
         f"({router.disagreements} where the last tier answers otherwise); on the "
         f"{len(held)} held out it ranks those with AUC {routing.auc_learned:.3f} (max_prob "
         f"{routing.auc_max_prob:.3f})")
    return routing
