"""`tune`: the recipe of `beam-cascade calibrate`, step by step (models/tuning/__init__.py)."""
from __future__ import annotations

import dataclasses
import os

import torch

from models.config import CascadeConfig, TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.loading import load_configured_tier
from models.operating_points import Policy, last_tier_alone, pareto_frontier, replay, sweep
from models.throughput import ONE_PASS
from models.tuning.choice import (choose_with_reached_calibration, point_estimate_choice,
                                  reached_confidences, recorded_guarantee, split_half_check,
                                  tiers_to_keep, tuned_config)
from models.tuning.measurement import batch_sizes_for_their_share, measure_tier
from models.tuning.progress import step
from models.tuning.results import ExitMeasurements, ExitReport, TierReport, TuningResult
from models.tuning.routers import check_learned_routers, with_learned_routers
from models.tuning.runtime_choice import RuntimeVariant, choose_runtimes


def tune(config: CascadeConfig, dev: LabelledTexts, policy: Policy, batch_sizes: list[int],
         repeats: int, report_dir: str, seed: int,
         unlabelled: UnlabelledTexts | None = None,
         max_int8_drop: float | None = None, int8_fallback: bool = False) -> TuningResult:
    """Calibrates, measures and chooses; returns the tuned config and everything measured.
    With `max_int8_drop` (points), each plain transformer tier first gets its runtime and
    precision chosen (runtime_choice.py), and with `int8_fallback` a last tier whose
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
    # ONE_PASS: the measuring loop makes the passes
    models = [load_configured_tier(t, batch_size=ONE_PASS) for t in config.tiers]
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


def exits_report(tier: TierConfig, exits: ExitMeasurements) -> ExitReport:
    return ExitReport(exits.layers, tier.exit_threshold, exits.calibrations, exits.sweep)
