"""Temperatures: each tier's, fitted on some dev records (NLL), and its outputs under them.

A multi-exit tier first gets one temperature per exit (and the table of its early-exit
knob), with which it then exits early at its exit_threshold, if set; then the temperature of
the logits it routes by. `refit_on_reached` fits a later tier again on the dev records that
reach it at the chosen thresholds: in the cascade it sees only those, the ones the tiers
before it were unsure of; fitted on all records, its confidence there runs high and so does
the label-free accuracy estimate. The guarantee's bound uses only the labels' verdict on
disagreements and the disagreement rate, so it holds whatever the temperatures.
"""
from __future__ import annotations

import dataclasses

import torch

from models.calibration import calibrate, expected_calibration_error
from models.confidence import confidence, probabilities
from models.config import TierConfig
from models.early_exit import EarlyExit, choose_exits, exit_sweep
from models.loading import TierModel
from models.names import LEARNED_CONFIDENCE
from models.operating_points import TierOutputs
from models.tier import Tier
from models.tuning.results import (ExitMeasurements, LearnedRouting, ReachedCalibration,
                                   TierFit, TierMeasurements)

EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.01)  # 1.01: never early

# A later tier is refitted on the records that reach it only with at least MIN_REACHED of
# them, MIN_EACH_WAY right and wrong; otherwise its all-records temperature stays. On SST-2
# (bench/results/reached_calibration.md) a refit on ~300 records took the estimate's bias on
# held-out escalated records from +1.8 to +0.3 points, on ~190 it broke even, and on ~100 its
# noise outweighed the bias it removed.
MIN_REACHED = 200
MIN_EACH_WAY = 5


def fit_tier(tier: TierConfig, model: Tier, dev_logits: torch.Tensor, labels: torch.Tensor,
             unlabelled_logits: torch.Tensor | None, fit_on: torch.Tensor,
             learned: LearnedRouting | None = None) -> TierFit:
    """The tier's temperatures fitted on the dev records `fit_on` selects, and its outputs
    with them on all records: for a multi-exit tier first one temperature per exit, with
    which it then exits early (at its exit_threshold, if set), then the temperature of the
    logits it routes by. The unlabelled sample's outputs use the same temperatures; a
    learned tier's confidences are its router's (max_prob until it has one)."""
    measure = "max_prob" if tier.confidence == LEARNED_CONFIDENCE else tier.confidence
    exits = None
    if len(dev_logits) > 1:
        exits = measure_exits(measure, model, dev_logits[:, fit_on], labels[fit_on])
        if tier.exit_threshold is not None:
            model = model.with_settings(early_exit=EarlyExit(
                tier.exit_threshold, exits.temperatures, measure))
    logits = routing_logits(model, dev_logits)
    fitted = calibrate(logits[fit_on], labels[fit_on])
    on_unlabelled = None if unlabelled_logits is None else tier_outputs(
        routing_logits(model, unlabelled_logits), fitted.temperature, measure,
        learned.unlabelled if learned else None)
    dev_confidences = learned.dev if learned else None
    return TierFit(model=model, calibration=fitted,
                   raw=tier_outputs(logits, 1.0, measure, dev_confidences),
                   calibrated=tier_outputs(logits, fitted.temperature, measure,
                                           dev_confidences),
                   unlabelled=on_unlabelled, exits=exits)


def routing_logits(model: Tier, all_exits: torch.Tensor) -> torch.Tensor:
    """The logits the tier routes by: its last exit's, or, exiting early, each record's
    exit's."""
    if len(all_exits) > 1 and model.early_exit is not None:
        return choose_exits(all_exits, model.early_exit)[0]
    return all_exits[-1]


def measure_exits(measure: str, model: TierModel, all_exits: torch.Tensor,
                  labels: torch.Tensor) -> ExitMeasurements:
    """One temperature per exit, and the exit-threshold knob replayed with them (exits
    compared by `measure`)."""
    calibrations = [calibrate(logits, labels) for logits in all_exits]
    layers = model.exits.exit_layers
    temperatures = tuple(c.temperature for c in calibrations)
    return ExitMeasurements(layers, calibrations, exit_sweep(
        all_exits, labels, temperatures, layers, EXIT_THRESHOLDS, measure))


def tier_outputs(logits: torch.Tensor, temperature: float, measure: str,
                 confidences: torch.Tensor | None = None) -> TierOutputs:
    """Predictions, confidences (the measure's, or `confidences` given) and max-probs."""
    probs = probabilities(logits, temperature)
    return TierOutputs(predictions=probs.argmax(-1),
                       confidences=confidence(probs, measure) if confidences is None
                       else confidences,
                       max_probs=probs.max(-1).values)


def refit_on_reached(tier: TierConfig, measured: TierMeasurements, labels: torch.Tensor,
                     reaching: torch.Tensor) -> TierMeasurements:
    """The tier refitted on the dev records that reach it (a later tier sees only the ones
    the tiers before it were unsure of, where confidences fitted on all records run high),
    with the ECE and estimate on those records before and after. Unchanged when none
    reach it."""
    if not reaching.any():
        return measured
    fit = fit_tier(tier, measured.model, measured.dev_logits, labels,
                   measured.unlabelled_logits, reaching, measured.learned)
    right = int((fit.calibrated.predictions[reaching] == labels[reaching]).sum())
    enough = (int(reaching.sum()) >= MIN_REACHED
              and min(right, int(reaching.sum()) - right) >= MIN_EACH_WAY)
    chosen = fit if enough else TierFit(measured.model, measured.calibration, measured.raw,
                                        measured.calibrated, measured.unlabelled,
                                        measured.exits)
    return dataclasses.replace(measured, **vars(chosen), reached=ReachedCalibration(
        records=int(reaching.sum()),
        accuracy=_accuracy_on(measured.calibrated, labels, reaching),
        temperature_all=measured.calibration.temperature,
        temperature_reached=fit.calibration.temperature if enough else None,
        ece_all=_ece_on(measured.calibrated, labels, reaching),
        ece_reached=_ece_on(chosen.calibrated, labels, reaching),
        estimate_all=measured.calibrated.max_probs[reaching].double().mean().item(),
        estimate_reached=chosen.calibrated.max_probs[reaching].double().mean().item()))


def _ece_on(outputs: TierOutputs, labels: torch.Tensor, subset: torch.Tensor) -> float:
    return expected_calibration_error(outputs.max_probs[subset],
                                      outputs.predictions[subset] == labels[subset])


def _accuracy_on(outputs: TierOutputs, labels: torch.Tensor, subset: torch.Tensor) -> float:
    return (outputs.predictions[subset] == labels[subset]).double().mean().item()
