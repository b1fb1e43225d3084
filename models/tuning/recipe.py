"""`tune`: the recipe of `beam-cascade calibrate`, step by step (models/tuning/__init__.py):
what is measured once (`measure_cascade`) and what is chosen per policy
(`choose_for_policy`), so that several budgets share one measurement."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from models.config import CascadeConfig, TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.loading import load_configured_tier
from models.operating_points import Policy, last_tier_alone, pareto_frontier, replay, sweep
from models.throughput import ONE_PASS
from models.tuning.choice import (choose_with_reached_calibration, point_estimate_choice,
                                  reached_confidences, recorded_guarantee, split_half_check,
                                  tiers_to_keep, tuned_config)
from models.tuning.logits_cache import logits_folder
from models.tuning.measurement import batch_sizes_for_their_share, measure_tier
from models.tuning.progress import step
from models.tuning.results import ExitMeasurements, ExitReport, TierReport, TuningResult
from models.tuning.routers import check_learned_routers, with_learned_routers
from models.tuning.runtime_choice import RuntimeVariant, choose_runtimes


@dataclass(frozen=True)
class MeasuredCascade:
    """What calibrate measures once, whatever the budget: every tier's logits, temperatures,
    costs and learned router, and what choosing a point for a policy needs besides
    (`choose_for_policy` runs once per policy on it)."""

    config: CascadeConfig  # with the runtimes chosen (and the int8 fallback tier, if added)
    policies: list[Policy]  # as tuned: an int8 last tier has taken its share of a drop budget
    tiers: list[TierMeasurements]  # each .model as measured: with its exits and lengths
    dev: LabelledTexts
    unlabelled: UnlabelledTexts | None  # less the records a learned router was fitted on
    runtimes: dict[str, list[RuntimeVariant]]
    fallback: int | None  # the int8 fallback tier's index, with --int8_fallback
    batch_sizes: list[int]
    repeats: int
    seed: int
    remeasure: bool

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor(self.dev.label_ids)


def tune(config: CascadeConfig, dev: LabelledTexts, policy: Policy, batch_sizes: list[int],
         repeats: int, seed: int, unlabelled: UnlabelledTexts | None = None,
         max_int8_drop: float | None = None, int8_fallback: bool = False,
         remeasure: bool = False) -> TuningResult:
    """Calibrates, measures and chooses for one policy; returns the tuned config and
    everything measured (`measure_cascade`, then `choose_for_policy`)."""
    measured = measure_cascade(config, dev, [policy], batch_sizes, repeats, seed, unlabelled,
                               max_int8_drop, int8_fallback, remeasure)
    return choose_for_policy(measured, measured.policies[0])


def measure_cascade(config: CascadeConfig, dev: LabelledTexts, policies: list[Policy],
                    batch_sizes: list[int], repeats: int, seed: int,
                    unlabelled: UnlabelledTexts | None = None,
                    max_int8_drop: float | None = None, int8_fallback: bool = False,
                    remeasure: bool = False) -> MeasuredCascade:
    """Loads and measures every tier once for all `policies` (logits and costs from this
    machine's caches, unless `remeasure` times again). With `max_int8_drop` (points), each
    plain transformer tier first gets its runtime and precision chosen
    (runtime_choice.py), within the policy's drop budget, so there must be one policy; with
    `int8_fallback` a last tier whose int8 was refused gets its int8 copy as a tier before
    it."""
    check_learned_routers(config, unlabelled)
    runtimes: dict[str, list[RuntimeVariant]] = {}
    given = len(config.tiers)
    if max_int8_drop is not None:
        if len(policies) != 1:
            raise ValueError("comparing runtimes spends part of the accuracy-drop budget on an "
                             "int8 last tier, so it tunes one budget at a time: give one")
        step("comparing each transformer tier on PyTorch, ONNX Runtime (fp32, int8) and "
             "OpenVINO where installed")
        config, policy, runtimes = choose_runtimes(config, dev, unlabelled, policies[0],
                                                   max_int8_drop, repeats, step, int8_fallback)
        policies = [policy]
    step(f"loading {len(config.tiers)} tiers")
    # ONE_PASS: the measuring loop makes the passes
    models = [load_configured_tier(t, batch_size=ONE_PASS) for t in config.tiers]
    tiers = [measure_tier(t, m, dev, unlabelled, batch_sizes, repeats, logits_folder(),
                          remeasure)
             for t, m in zip(config.tiers, models)]
    tiers, unlabelled = with_learned_routers(config.tiers, tiers, dev, unlabelled, seed)
    return MeasuredCascade(
        config=config, policies=policies, tiers=tiers, dev=dev, unlabelled=unlabelled,
        runtimes=runtimes,
        fallback=len(config.tiers) - 2 if len(config.tiers) > given else None,
        batch_sizes=batch_sizes, repeats=repeats, seed=seed, remeasure=remeasure)


def choose_for_policy(measured: MeasuredCascade, policy: Policy) -> TuningResult:
    """The policy's tuned config and report from the measured cascade: the int8 fallback
    kept or not, the point chosen with the later tiers refitted where they are reached,
    their batch sizes timed on the records that reach them, the frontier and the split-half
    check. Raises NoOperatingPoint when the data supports no point for the policy."""
    labels, unlabelled = measured.labels, measured.unlabelled
    if policy.requests is not None and unlabelled is not None:
        policy = dataclasses.replace(policy, requests=policy.requests.matched_to(
            unlabelled.texts, unlabelled.text_pairs))
    costs = [t.costs[t.best_batch_size] for t in measured.tiers]  # each tier on every text
    kept, fallback = tiers_to_keep(measured.config.tiers, measured.tiers, labels, costs,
                                   policy, fallback=measured.fallback)
    config = dataclasses.replace(measured.config,
                                 tiers=tuple(measured.config.tiers[k] for k in kept))
    tiers, costs = [measured.tiers[k] for k in kept], [costs[k] for k in kept]
    models = [t.model for t in tiers]  # as measured, before the refit: exits and lengths
    choice, tiers = choose_with_reached_calibration(config.tiers, tiers, labels, costs, policy)
    calibrated = [t.calibrated for t in tiers]
    on_unlabelled = [t.unlabelled for t in tiers] if unlabelled else None
    step("replaying the cascade at every threshold vector")
    points = sweep(calibrated, labels, costs, progress="threshold vectors")
    reference = last_tier_alone(calibrated, labels, costs)
    batch_sizes_chosen, share_costs = batch_sizes_for_their_share(
        config.tiers, models, tiers, measured.dev, choice.point, measured.batch_sizes,
        measured.repeats, measured.remeasure)
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
                          measured.runtimes.get(c.name), t.learned)
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
        split_half=split_half_check(calibrated, labels, on_unlabelled, costs, policy,
                                    measured.seed),
        reliability={c.name: (t.raw, t.calibrated) for c, t in zip(config.tiers, tiers)},
        labels=labels,
        fallback=fallback,
        unlabelled_tiers=on_unlabelled)


def exits_report(tier: TierConfig, exits: ExitMeasurements) -> ExitReport:
    return ExitReport(exits.layers, tier.exit_threshold, exits.calibrations, exits.sweep)
