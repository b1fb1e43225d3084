"""Tuning a cascade on labelled dev data: what `beam-cascade calibrate` measures and chooses.

1. Runs every tier once over the dev texts (logits cached in the report folder); a tier with
   a `length_budget` first gets its token-dropping length configuration searched.
2. Fits one temperature per tier (NLL); a multi-exit tier also gets one temperature per exit
   and the table of its early-exit knob; its `exit_threshold`, if set, is kept and the tier
   is measured exiting early. A tier with `confidence: learned` gets its router fitted on
   half of the unlabelled sample (`with_learned_routers`); the other half is the sample
   every later step measures on, so the guarantee's disagreement rate is counted on records
   the router never saw.
3. Measures each tier's seconds per record at each batch size on this machine.
4. Replays the cascade at every threshold vector on the dev data (the frontier) and picks
   the operating point the policy asks for: for an accuracy-drop budget, the cheapest
   threshold whose upper confidence bound on the drop passes (models/guarantee.py), the
   disagreement rate measured on an unlabelled sample when one is given. Every tier after
   the first is then refitted on the dev records that reach it there, and the point chosen
   again, until it stays (`choose_with_reached_calibration`).
5. Re-measures the later tiers on the records that reach them at that point (they see the
   harder, often longer, texts, and fewer of them) and picks their batch size for that.
6. Returns the tuned config and everything measured (`TuningResult`), with a split-half
   check that the chosen thresholds carry over to unseen data.

A later tier's temperature is fitted on the records that reach it because in the cascade it
sees only those, the ones the tiers before it were unsure of: fitted on all records, its
confidence there runs high and so does the label-free accuracy estimate. The guarantee's
bound uses only the labels' verdict on disagreements and the disagreement rate, so it holds
whatever the temperatures.

No Beam and no files but the logits cache: pipeline/calibrate.py reads the inputs and
writes the config, pipeline/calibration_report.py the report.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from models.batching import batches
from models.calibration import Calibration, calibrate, expected_calibration_error
from models.confidence import confidence, probabilities
from models.config import CascadeConfig, Guarantee, TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.early_exit import EarlyExit, ExitPoint, choose_exits, exit_sweep
from models.guarantee import DropBound, GuaranteeSearch, bounded_point, guarantee_search
from models.learned_deferral import Router, deferral_inputs, fit_router, ranking_auc
from models.loading import TierModel
from models.model_cache import local_model_folder
from models.names import LEARNED_CONFIDENCE
from models.operating_points import (NoOperatingPoint, OperatingPoint, Policy, TierOutputs,
                                     choose, deciding_tiers, last_tier_alone, pareto_frontier,
                                     replay, sweep)
from models.routing_rule import decided_mask
from models.runtime_choice import RuntimeVariant, choose_runtimes
from models.shift import reference_quantiles
from models.throughput import ONE_PASS, seconds_per_record
from models.tier import Tier
from models.token_dropping import LengthPoint, best_within_budget, length_family, length_sweep

EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.01)  # 1.01: never early
# A later tier is refitted on the records that reach it only with at least MIN_REACHED of
# them, MIN_EACH_WAY right and wrong; otherwise its all-records temperature stays. On SST-2
# (bench/results/reached_calibration.md) a refit on ~300 records took the estimate's bias on
# held-out escalated records from +1.8 to +0.3 points, on ~190 it broke even, and on ~100 its
# noise outweighed the bias it removed.
MIN_REACHED = 200
MIN_EACH_WAY = 5
REFIT_ROUNDS = 3
ROUTER_SHARE = 0.5  # of the unlabelled sample, to fit learned routers on


def step(message: str) -> None:
    """Says what calibrate is doing now, on stderr (progress bars show within a step)."""
    tqdm.write(f"calibrate: {message}", file=sys.stderr)


@dataclass(frozen=True)
class ExitMeasurements:
    """What calibrate learnt about a multi-exit tier's exits."""

    layers: tuple[int, ...]
    calibrations: list[Calibration]  # one per exit
    sweep: list[ExitPoint]  # the exit-threshold knob, at EXIT_THRESHOLDS

    @property
    def temperatures(self) -> tuple[float, ...]:
        return tuple(c.temperature for c in self.calibrations)


@dataclass(frozen=True)
class LengthMeasurements:
    """The length configurations tried for a tier with a length_budget, and the choice."""

    budget: float
    points: list[LengthPoint]  # the full model first
    chosen: LengthPoint


@dataclass(frozen=True)
class LearnedRouting:
    """A tier's fitted router, its confidences on the dev records and on the held-out
    unlabelled records (fixed once fitted: the router reads temperature-1 logits), and how
    well it and max_prob rank the held-out records the last tier answers otherwise (AUC)."""

    router: Router
    dev: torch.Tensor
    unlabelled: torch.Tensor
    held_out: int
    auc_learned: float
    auc_max_prob: float


@dataclass(frozen=True)
class TierMeasurements:
    """What calibrate learnt about one tier."""

    model: Tier  # the tier as measured (its exits and length configuration set)
    calibration: Calibration
    raw: TierOutputs  # confidences at temperature 1
    calibrated: TierOutputs
    costs: dict[int, float]  # seconds per record by batch size, on all dev texts
    dev_logits: torch.Tensor  # every exit's (exits x records x labels), temperature 1
    unlabelled_logits: torch.Tensor | None = None
    unlabelled: TierOutputs | None = None  # calibrated, on the unlabelled sample
    exits: ExitMeasurements | None = None
    lengths: LengthMeasurements | None = None
    reached: ReachedCalibration | None = None  # tiers after the first, once refitted
    learned: LearnedRouting | None = None  # confidence: learned, once its router is fitted

    @property
    def best_batch_size(self) -> int:
        return min(self.costs, key=self.costs.get)


@dataclass(frozen=True)
class TierFit:
    """A tier's temperatures fitted on some dev records, and its outputs with them."""

    model: Tier  # exiting early (at its exit_threshold, if set) with the fitted exit temperatures
    calibration: Calibration
    raw: TierOutputs
    calibrated: TierOutputs
    unlabelled: TierOutputs | None
    exits: ExitMeasurements | None


@dataclass(frozen=True)
class ReachedCalibration:
    """A later tier's calibration on the dev records that reach it at the chosen thresholds
    (the harder ones): its temperature fitted on all dev records against the one fitted on
    those, with the ECE and the label-free accuracy estimate (mean max-prob) on those records
    under each. `temperature_reached` is None when too few records reach it (or too few of
    them are right or wrong) to fit on: the all-records temperature is kept."""

    records: int
    accuracy: float
    temperature_all: float
    temperature_reached: float | None
    ece_all: float
    ece_reached: float
    estimate_all: float
    estimate_reached: float


@dataclass(frozen=True)
class ExitReport:
    """A multi-exit tier's exits as the report shows them."""

    layers: tuple[int, ...]
    exit_threshold: float | None
    calibrations: list[Calibration]
    sweep: list[ExitPoint]


@dataclass(frozen=True)
class TierReport:
    """What the report says of one tier."""

    name: str
    model: str
    batch_size: int
    calibration: Calibration
    seconds_per_record: dict[int, float]
    exits: ExitReport | None = None
    lengths: LengthMeasurements | None = None
    reached: ReachedCalibration | None = None
    runtimes: list[RuntimeVariant] | None = None  # with --compare_runtimes
    learned: LearnedRouting | None = None  # confidence: learned


@dataclass(frozen=True)
class HalfCheck:
    """The chosen thresholds replayed on one half of dev."""

    records: int
    accuracy: float
    last_tier_accuracy: float
    accuracy_drop_points: float
    speedup: float
    estimated_accuracy: float


@dataclass(frozen=True)
class SplitHalfCheck:
    """Thresholds tuned on one random half of dev, replayed on both halves."""

    thresholds: tuple[float, ...]
    seed: int
    tuned: HalfCheck
    held_out: HalfCheck


@dataclass(frozen=True)
class Choice:
    """The operating point the policy picked, its drop bound, and the guarantee's search
    (the policy searched it when it is an accuracy-drop budget)."""

    point: OperatingPoint
    bound: DropBound
    search: GuaranteeSearch


@dataclass(frozen=True)
class FallbackChoice:
    """Whether the int8 copy of the last tier (calibrate --int8_fallback) stayed in the
    cascade, and the expected seconds per record at the policy with and without it (None
    where no point met the policy)."""

    name: str
    kept: bool
    seconds_with: float | None
    seconds_without: float | None


@dataclass(frozen=True)
class TuningResult:
    """The tuned config and everything measured to choose it."""

    config: CascadeConfig
    policy: Policy
    tiers: list[TierReport]
    reference: OperatingPoint
    chosen: OperatingPoint
    bound: DropBound  # at the chosen thresholds
    guarantee: GuaranteeSearch
    point_estimate: OperatingPoint | None  # what the drop budget picks without a guarantee
    unlabelled_records: int
    frontier: list[OperatingPoint]
    frontier_uncalibrated: list[OperatingPoint]
    split_half: SplitHalfCheck
    reliability: dict[str, tuple[TierOutputs, TierOutputs]]  # per tier: raw, calibrated
    labels: torch.Tensor
    fallback: FallbackChoice | None = None  # with calibrate --int8_fallback

    @property
    def dev_records(self) -> int:
        return len(self.labels)


def tune(config: CascadeConfig, dev: LabelledTexts, policy: Policy, batch_sizes: list[int],
         repeats: int, report_dir: str, seed: int,
         unlabelled: UnlabelledTexts | None = None,
         max_int8_drop: float | None = None, int8_fallback: bool = False) -> TuningResult:
    """Calibrates, measures and chooses; returns the tuned config and everything measured.
    With `max_int8_drop` (points), each plain transformer tier first gets its runtime and
    precision chosen (models/runtime_choice.py), and with `int8_fallback` a last tier whose
    int8 was refused gets its int8 copy as a tier before it."""
    check_learned_routers(config, unlabelled)
    labels = torch.tensor(dev.label_ids)
    cache = os.path.join(report_dir, "logits")
    runtimes: dict[str, list[RuntimeVariant]] = {}
    given = len(config.tiers)
    if max_int8_drop is not None:
        step("comparing each transformer tier on PyTorch, ONNX Runtime (fp32, int8) and "
             "OpenVINO where installed")
        config, policy, runtimes = choose_runtimes(config, dev, unlabelled, policy,
                                                   max_int8_drop, repeats, step, int8_fallback)
    step(f"loading {len(config.tiers)} tiers")
    models = [t.load(batch_size=ONE_PASS) for t in config.tiers]  # the loop makes passes
    tiers = [measure_tier(t, m, dev, unlabelled, batch_sizes, repeats, cache)
             for t, m in zip(config.tiers, models)]
    tiers, unlabelled = with_learned_routers(config.tiers, tiers, dev, unlabelled, seed)
    models = [t.model for t in tiers]  # as measured: with their exits and lengths
    costs = [t.costs[t.best_batch_size] for t in tiers]  # each tier timed on every text
    kept, fallback = tiers_to_keep(
        config.tiers, tiers, labels, costs, policy,
        fallback=len(config.tiers) - 2 if len(config.tiers) > given else None)
    config = dataclasses.replace(config, tiers=tuple(config.tiers[k] for k in kept))
    tiers, models, costs = ([seq[k] for k in kept] for seq in (tiers, models, costs))
    choice, tiers = choose_with_reached_calibration(config.tiers, tiers, labels, costs, policy)
    calibrated = [t.calibrated for t in tiers]
    on_unlabelled = [t.unlabelled for t in tiers] if unlabelled else None
    step("replaying the cascade at every threshold vector")
    points = sweep(calibrated, labels, costs, progress="threshold vectors")
    reference = last_tier_alone(calibrated, labels, costs)
    batch_sizes_chosen, share_costs = batch_sizes_for_their_share(
        models, tiers, dev, choice.point, batch_sizes, repeats)
    chosen = replay(calibrated, labels, choice.point.thresholds, share_costs,
                    reference_cost=reference.cost)
    config = tuned_config(config, tiers, chosen, batch_sizes_chosen,
                          reached_confidences(on_unlabelled or calibrated, chosen.thresholds))
    return TuningResult(
        config=dataclasses.replace(config, guarantee=recorded_guarantee(
            policy, choice.bound, chosen, len(labels),
            len(unlabelled.texts) if unlabelled else 0)),
        policy=policy,
        tiers=[TierReport(c.name, c.model, b, t.calibration, t.costs,
                          exits_report(c, t.exits) if t.exits else None, t.lengths, t.reached,
                          runtimes.get(c.name), t.learned)
               for c, t, b in zip(config.tiers, tiers, batch_sizes_chosen)],
        reference=reference,
        chosen=chosen,
        bound=choice.bound,
        guarantee=choice.search,
        point_estimate=point_estimate_choice(points, reference, policy),
        unlabelled_records=len(unlabelled.texts) if unlabelled else 0,
        frontier=pareto_frontier(points),
        frontier_uncalibrated=pareto_frontier(sweep([t.raw for t in tiers], labels, costs,
                                                    progress="threshold vectors, temperature 1")),
        split_half=split_half_check(calibrated, labels, on_unlabelled, costs, policy, seed),
        reliability={c.name: (t.raw, t.calibrated) for c, t in zip(config.tiers, tiers)},
        labels=labels,
        fallback=fallback)


def choose_point(labelled: list[TierOutputs], labels: torch.Tensor,
                 unlabelled: list[TierOutputs] | None, costs: list[float],
                 policy: Policy) -> Choice:
    """The policy's point. An accuracy-drop budget takes the cheapest threshold the
    guarantee's fixed-sequence search accepts; the speed and escalation policies choose on
    the replayed points and report the bound where they land."""
    budget = (policy.max_accuracy_drop or 0.0) / 100
    search = guarantee_search(labelled, labels, unlabelled, costs, policy.confidence, budget)
    if policy.max_accuracy_drop is None:
        point = choose(sweep(labelled, labels, costs), last_tier_alone(labelled, labels, costs),
                       policy)
        bounded = bounded_point(labelled, labels, unlabelled, costs, point.thresholds,
                                policy.confidence)
        return Choice(point, bounded.bound, search)
    picked = search.chosen
    if picked is None or picked.point.reach[-1] >= 1.0:
        raise NoOperatingPoint(
            f"at confidence {policy.confidence} the data supports no accuracy-drop budget "
            f"below {100 * search.smallest_budget:.2f} points, above the "
            f"{policy.max_accuracy_drop} asked for: raise --max_accuracy_drop, lower "
            "--confidence, or give more data (--unlabelled records tighten the bound most "
            "cheaply; more labelled dev records tighten it too)")
    return Choice(picked.point, picked.bound, search)


def point_estimate_choice(points: list[OperatingPoint], reference: OperatingPoint,
                          policy: Policy) -> OperatingPoint | None:
    """For a drop budget, the point the dev accuracy alone would pick (no guarantee): what
    the guarantee costs is the difference."""
    if policy.max_accuracy_drop is None:
        return None
    try:
        return choose(points, reference, policy)
    except NoOperatingPoint:
        return None


def measure_tier(tier: TierConfig, model: Tier, dev: LabelledTexts,
                 unlabelled: UnlabelledTexts | None, batch_sizes: list[int], repeats: int,
                 cache: str) -> TierMeasurements:
    """Logits (cached), the temperatures fitted on all dev records (`fit_tier`), and seconds
    per record by batch size, timed as the tier will run (exiting early, if it does)."""
    labels = torch.tensor(dev.label_ids)
    lengths = None
    if tier.length_budget is not None:
        step(f"tier {tier.name}: searching length configurations within {tier.length_budget:.0%}")
        lengths = search_lengths(tier, model, dev, labels)
        model = model.with_settings(keep_tokens=lengths.chosen.keep)
    dev_logits = cached_logits(tier, dev.texts, dev.text_pairs, "dev", cache, model)
    unlabelled_logits = None if unlabelled is None else cached_logits(
        tier, unlabelled.texts, unlabelled.text_pairs, "unlabelled", cache, model)
    fit = fit_tier(tier, model, dev_logits, labels, unlabelled_logits,
                   torch.ones(len(labels), dtype=torch.bool))
    step(f"tier {tier.name}: temperature {fit.calibration.temperature:.3f} (ECE "
         f"{fit.calibration.ece_before:.4f} -> {fit.calibration.ece_after:.4f}); timing batch "
         f"sizes {batch_sizes}, {repeats} rounds")
    return TierMeasurements(
        **vars(fit),
        costs=seconds_per_record(fit.model, dev.texts, batch_sizes, repeats, dev.text_pairs,
                                 progress=f"{tier.name}: timing"),
        dev_logits=dev_logits, unlabelled_logits=unlabelled_logits, lengths=lengths)


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


def check_learned_routers(config: CascadeConfig, unlabelled: UnlabelledTexts | None) -> None:
    """Refuses, before minutes of scoring, a learned tier with nothing to learn from."""
    if unlabelled is None and any(t.confidence == LEARNED_CONFIDENCE for t in config.tiers):
        raise ValueError("confidence: learned fits a router on the last tier's answers over "
                         "unlabelled records: give calibrate --unlabelled (a sample of the "
                         "job's input, a thousand records or more)")


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


def tiers_to_keep(configs: tuple[TierConfig, ...], tiers: list[TierMeasurements],
                  labels: torch.Tensor, costs: list[float], policy: Policy,
                  fallback: int | None) -> tuple[list[int], FallbackChoice | None]:
    """The indices of the tiers to tune: all of them, or without the int8 fallback tier
    (models/runtime_choice.py) where the cascade is cheaper at the policy without it.

    The guarantee's search shares one threshold among the tiers; where the budget asks for
    a high one, the int8 copy (about as unsure as the last tier itself) decides next to
    nothing and only adds its cost, so both cascades are chosen and the cheaper one kept."""
    every = list(range(len(configs)))
    if fallback is None:
        return every, None
    without = [k for k in every if k != fallback]
    with_it, without_it = (_expected_cost([configs[k] for k in subset],
                                          [tiers[k] for k in subset], labels,
                                          [costs[k] for k in subset], policy)
                           for subset in (every, without))
    kept = with_it is not None and (without_it is None or with_it < without_it)
    choice = FallbackChoice(configs[fallback].name, kept or without_it is None, with_it,
                            without_it)
    step(f"the {choice.name} tier: {'kept' if choice.kept else 'left out'} (expected ms per "
         f"record at the policy: {_ms(with_it)} with it, {_ms(without_it)} without it)")
    return (every if choice.kept else without), choice


def _ms(seconds: float | None) -> str:
    return "none meets it" if seconds is None else f"{1000 * seconds:.3f}"


def _expected_cost(configs: list[TierConfig], tiers: list[TierMeasurements],
                   labels: torch.Tensor, costs: list[float], policy: Policy) -> float | None:
    """The expected seconds per record of the policy's point; None where none meets it."""
    try:
        choice, _ = choose_with_reached_calibration(tuple(configs), tiers, labels, costs,
                                                    policy)
    except NoOperatingPoint:
        return None
    return choice.point.cost


def choose_with_reached_calibration(configs: tuple[TierConfig, ...],
                                    first_fit: list[TierMeasurements], labels: torch.Tensor,
                                    costs: list[float], policy: Policy
                                    ) -> tuple[Choice, list[TierMeasurements]]:
    """The policy's point, with every tier after the first calibrated on the dev records
    that reach it there. Refitting a tier that routes moves the records that reach the next
    and may move the choice, so choose, refit and choose again until the thresholds stay
    (at most REFIT_ROUNDS times; a two-tier cascade settles at once: its last tier routes
    nothing)."""
    tiers = first_fit
    choice = _choose(tiers, labels, costs, policy)
    for _ in range(REFIT_ROUNDS if len(tiers) > 1 else 0):
        step(f"refitting tiers 2-{len(tiers)} on the dev records that reach them at "
             f"thresholds {[round(t, 4) for t in choice.point.thresholds]}")
        deciding = deciding_tiers([t.calibrated for t in tiers], choice.point.thresholds)
        tiers = [tiers[0]] + [refit_on_reached(c, m, labels, deciding >= k)
                              for k, (c, m) in enumerate(zip(configs, first_fit)) if k > 0]
        previous, choice = choice, _choose(tiers, labels, costs, policy)
        if choice.point.thresholds == previous.point.thresholds:
            break
    return choice, tiers


def _choose(tiers: list[TierMeasurements], labels: torch.Tensor, costs: list[float],
            policy: Policy) -> Choice:
    on_unlabelled = [t.unlabelled for t in tiers] if tiers[0].unlabelled is not None else None
    return choose_point([t.calibrated for t in tiers], labels, on_unlabelled, costs, policy)


def routing_logits(model: Tier, all_exits: torch.Tensor) -> torch.Tensor:
    """The logits the tier routes by: its last exit's, or, exiting early, each record's
    exit's."""
    if len(all_exits) > 1 and model.early_exit is not None:
        return choose_exits(all_exits, model.early_exit)[0]
    return all_exits[-1]


def search_lengths(tier: TierConfig, model: TierModel, dev: LabelledTexts,
                   labels: torch.Tensor) -> LengthMeasurements:
    """Tries the full model and every configuration of `length_family` on dev; keeps the most
    accurate one within the tier's length_budget."""
    configs = [()] + length_family(model.depth)
    points = length_sweep(model, dev.texts, dev.text_pairs, labels, configs)
    return LengthMeasurements(tier.length_budget, points,
                              best_within_budget(points, tier.length_budget))


def measure_exits(measure: str, model: TierModel, all_exits: torch.Tensor,
                  labels: torch.Tensor) -> ExitMeasurements:
    """One temperature per exit, and the exit-threshold knob replayed with them (exits
    compared by `measure`)."""
    calibrations = [calibrate(logits, labels) for logits in all_exits]
    layers = model.exits.exit_layers
    temperatures = tuple(c.temperature for c in calibrations)
    return ExitMeasurements(layers, calibrations, exit_sweep(
        all_exits, labels, temperatures, layers, EXIT_THRESHOLDS, measure))


def exits_report(tier: TierConfig, exits: ExitMeasurements) -> ExitReport:
    return ExitReport(exits.layers, tier.exit_threshold, exits.calibrations, exits.sweep)


def tier_outputs(logits: torch.Tensor, temperature: float, measure: str,
                 confidences: torch.Tensor | None = None) -> TierOutputs:
    """Predictions, confidences (the measure's, or `confidences` given) and max-probs."""
    probs = probabilities(logits, temperature)
    return TierOutputs(predictions=probs.argmax(-1),
                       confidences=confidence(probs, measure) if confidences is None
                       else confidences,
                       max_probs=probs.max(-1).values)


def cached_logits(tier: TierConfig, texts: list[str], text_pairs: list[str] | None, what: str,
                  cache: str, model: Tier) -> torch.Tensor:
    """The tier's logits on `what` texts (dev, unlabelled) at every exit (shape exits x
    records x labels; one exit for most tiers), computed once per model folder, data and
    length."""
    key = hashlib.sha256(json.dumps([
        "exits x records x labels", _folder_fingerprint(local_model_folder(tier.model)),
        tier.max_length, tier.runtime,
        tier.quantize, getattr(model, "keep_tokens", None), texts, text_pairs,
    ]).encode()).hexdigest()[:20]
    path = os.path.join(cache, f"{tier.name}-{key}.pt")
    if os.path.exists(path):
        step(f"tier {tier.name}: logits on the {len(texts)} {what} texts from the cache")
        return torch.load(path)
    step(f"tier {tier.name}: logits on the {len(texts)} {what} texts")
    chunks = tqdm(list(batches(len(texts), 64)), desc=f"{tier.name}: logits", unit="batch",
                  leave=False, disable=None)
    logits = torch.cat([model.exit_logits([texts[i] for i in chunk],
                                          [text_pairs[i] for i in chunk]
                                          if text_pairs else None)
                        for chunk in chunks], dim=1)
    os.makedirs(cache, exist_ok=True)
    torch.save(logits, path)
    return logits


def _folder_fingerprint(folder: str) -> list:
    """Names, sizes and modification times of a model folder's files: a retrained model in
    the same folder gets new logits."""
    return sorted((name, os.path.getsize(os.path.join(folder, name)),
                   os.path.getmtime(os.path.join(folder, name)))
                  for name in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, name)))


def batch_sizes_for_their_share(models: list[Tier], tiers: list[TierMeasurements],
                                dev: LabelledTexts, chosen: OperatingPoint,
                                batch_sizes: list[int], repeats: int
                                ) -> tuple[list[int], list[float]]:
    """Tier 1 keeps the batch size measured on all texts; each later tier is re-measured on
    the dev texts that reach it at the chosen point (TangoBERT's per-tier batch sizes)."""
    chosen_sizes = [tiers[0].best_batch_size]
    costs = [tiers[0].costs[chosen_sizes[0]]]
    pending = torch.ones(len(dev.texts), dtype=torch.bool)
    for k in range(1, len(tiers)):
        pending &= ~decided_mask(tiers[k - 1].calibrated.confidences, chosen.thresholds[k - 1])
        reaching = [i for i, keep in enumerate(pending.tolist()) if keep]
        if len(reaching) < max(batch_sizes):  # too few to time; keep the all-texts figures
            chosen_sizes.append(tiers[k].best_batch_size)
            costs.append(tiers[k].costs[chosen_sizes[-1]])
            continue
        step(f"tier {k + 1}: timing batch sizes on the {len(reaching)} dev texts that reach it")
        share_costs = seconds_per_record(
            models[k], [dev.texts[i] for i in reaching], batch_sizes, repeats,
            [dev.text_pairs[i] for i in reaching] if dev.text_pairs else None,
            progress=f"tier {k + 1}: timing")
        chosen_sizes.append(min(share_costs, key=share_costs.get))
        costs.append(share_costs[chosen_sizes[-1]])
    return chosen_sizes, costs


def split_half_check(tiers: list[TierOutputs], labels: torch.Tensor,
                     unlabelled: list[TierOutputs] | None, costs: list[float], policy: Policy,
                     seed: int) -> SplitHalfCheck:
    """Tunes on a random half of dev (and the unlabelled sample, if any) and replays those
    thresholds on the other half: the accuracy drop on the unseen half is what a user
    should expect on new data."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    halves = {"tuned": order[: len(order) // 2], "held_out": order[len(order) // 2:]}
    subset = {name: ([TierOutputs(t.predictions[i], t.confidences[i], t.max_probs[i])
                      for t in tiers], labels[i]) for name, i in halves.items()}
    tuned_tiers, tuned_labels = subset["tuned"]
    chosen = choose_point(tuned_tiers, tuned_labels, unlabelled, costs, policy).point
    checks = {}
    for name, (half_tiers, half_labels) in subset.items():
        point = replay(half_tiers, half_labels, chosen.thresholds, costs)
        alone = last_tier_alone(half_tiers, half_labels, costs)
        checks[name] = HalfCheck(len(half_labels), point.accuracy, alone.accuracy,
                                 100 * (alone.accuracy - point.accuracy), point.speedup,
                                 point.estimated_accuracy)
    return SplitHalfCheck(chosen.thresholds, seed, **checks)


def tuned_config(config: CascadeConfig, tiers: list[TierMeasurements], chosen: OperatingPoint,
                 batch_sizes: list[int], reached: list[list[float]]) -> CascadeConfig:
    thresholds = list(chosen.thresholds) + [None]
    return dataclasses.replace(config, tiers=tuple(
        dataclasses.replace(c, threshold=th, temperature=t.calibration.temperature,
                            batch_size=b,
                            exit_temperatures=t.exits.temperatures if t.exits else None,
                            keep_tokens=t.lengths.chosen.keep if t.lengths else c.keep_tokens,
                            reference_confidences=reference_quantiles(r) if r else None,
                            reference_records=len(r) or None)
        for c, t, th, b, r in zip(config.tiers, tiers, thresholds, batch_sizes, reached)))


def recorded_guarantee(policy: Policy, bound: DropBound, chosen: OperatingPoint,
                       labelled: int, unlabelled: int) -> Guarantee | None:
    """The promise the tuned config carries (models/config.py Guarantee); None unless the
    policy was an accuracy-drop budget, the only one with a guarantee."""
    if policy.max_accuracy_drop is None:
        return None
    return Guarantee(max_accuracy_drop=policy.max_accuracy_drop, confidence=policy.confidence,
                     drop_bound=100 * bound.bound, labelled_records=labelled,
                     unlabelled_records=unlabelled, evidence=bound.source,
                     expected_escalation=chosen.reach[-1], expected_speedup=chosen.speedup,
                     calibrated_on=datetime.date.today().isoformat())


def reached_confidences(tiers: list[TierOutputs], thresholds: tuple[float, ...]
                        ) -> list[list[float]]:
    """Per tier, the calibrated confidences of the records that reach it at these
    thresholds: what the run's shift test compares its own with."""
    deciding = deciding_tiers(tiers, thresholds)
    return [t.confidences[deciding >= k].tolist() for k, t in enumerate(tiers)]


