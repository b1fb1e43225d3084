"""What calibrate measures of each tier: its logits on dev (and the unlabelled sample), its
length configuration within a length_budget, its temperatures (fitting.py) and its seconds
per record at each batch size on this machine, on all dev texts and then on those that reach
it at the chosen point."""
from __future__ import annotations

import torch

from models.config import TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.loading import TierModel
from models.operating_points import OperatingPoint
from models.routing_rule import decided_mask
from models.throughput import seconds_per_record
from models.tier import Tier
from models.token_dropping import best_within_budget, length_family, length_sweep
from models.tuning.fitting import fit_tier
from models.tuning.logits_cache import cached_logits
from models.tuning.progress import step
from models.tuning.results import LengthMeasurements, TierMeasurements


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


def search_lengths(tier: TierConfig, model: TierModel, dev: LabelledTexts,
                   labels: torch.Tensor) -> LengthMeasurements:
    """Tries the full model and every configuration of `length_family` on dev; keeps the most
    accurate one within the tier's length_budget."""
    configs = [()] + length_family(model.depth)
    points = length_sweep(model, dev.texts, dev.text_pairs, labels, configs)
    return LengthMeasurements(tier.length_budget, points,
                              best_within_budget(points, tier.length_budget))


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
