"""What calibrate measures of each tier: its logits on dev (and the unlabelled sample), its
length configuration within a length_budget, its temperatures (fitting.py) and its seconds
per record at each batch size on this machine, on all dev texts and then on those that reach
it at the chosen point (kept across runs on this machine: cost_cache.py)."""
from __future__ import annotations

import torch

from models.config import TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.loading import TierModel
from models.operating_points import OperatingPoint
from models.routing_rule import decided_mask
from models.tier import Tier
from models.token_dropping import best_within_budget, length_family, length_sweep
from models.tuning.cost_cache import cached_costs
from models.tuning.fitting import fit_tier
from models.tuning.logits_cache import cached_logits
from models.tuning.progress import step
from models.tuning.results import LengthMeasurements, TierMeasurements


def measure_tier(tier: TierConfig, model: Tier, dev: LabelledTexts,
                 unlabelled: UnlabelledTexts | None, batch_sizes: list[int], repeats: int,
                 cache: str, remeasure: bool = False) -> TierMeasurements:
    """Logits (cached in `cache`), the temperatures fitted on all dev records (`fit_tier`),
    and seconds per record by batch size, timed as the tier will run (exiting early, if it
    does; reused from an earlier run on this machine unless `remeasure`)."""
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
         f"{fit.calibration.ece_before:.4f} -> {fit.calibration.ece_after:.4f})")
    return TierMeasurements(
        **vars(fit),
        costs=cached_costs(tier, fit.model, dev.texts, dev.text_pairs, batch_sizes, repeats,
                           f"the {len(dev.texts)} dev texts", remeasure),
        dev_logits=dev_logits, unlabelled_logits=unlabelled_logits, lengths=lengths)


def search_lengths(tier: TierConfig, model: TierModel, dev: LabelledTexts,
                   labels: torch.Tensor) -> LengthMeasurements:
    """Tries the full model and every configuration of `length_family` on dev; keeps the most
    accurate one within the tier's length_budget."""
    configs = [()] + length_family(model.depth)
    points = length_sweep(model, dev.texts, dev.text_pairs, labels, configs)
    return LengthMeasurements(tier.length_budget, points,
                              best_within_budget(points, tier.length_budget))


def batch_sizes_for_their_share(configs: tuple[TierConfig, ...], models: list[Tier],
                                tiers: list[TierMeasurements], dev: LabelledTexts,
                                chosen: OperatingPoint,
                                batch_sizes: list[int], repeats: int, remeasure: bool = False
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
        share_costs = cached_costs(
            configs[k], models[k], [dev.texts[i] for i in reaching],
            [dev.text_pairs[i] for i in reaching] if dev.text_pairs else None, batch_sizes,
            repeats, f"the {len(reaching)} dev texts that reach it", remeasure)
        chosen_sizes.append(min(share_costs, key=share_costs.get))
        costs.append(share_costs[chosen_sizes[-1]])
    return chosen_sizes, costs
