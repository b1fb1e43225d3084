"""Distilled n-gram tier 1 against the plain one, in the n-gram -> MiniLM-L6 cascade on SST-2.

    python -m bench.distillation [--data ../shared/data/sst2] [--splits 50]
        [--teacher_temperatures 1,2]

Tier 1, plain: `beam-cascade train --kind ngram` on SST-2's 67,349 labelled train phrases
(bench/cache/sst2-ngram). Distilled: the same labelled phrases plus the same phrases again as
unlabelled text, labelled by the reference MiniLM-L6 tier 2 (`--teacher ... --unlabelled
...`, at each of --teacher_temperatures; bench/cache/sst2-ngram-distilled-t<T>): gold labels
where they exist, the teacher's probabilities besides. All with the default n-gram settings.

For each tier 1, on the 872 dev sentences with the reference tier 2's answers:
  - accuracy alone, and the oracle escalation (the share of records tier 1 gets wrong: an
    ideal router escalates exactly those);
  - over --splits random halvings of dev: the lowest threshold whose accuracy on one half is
    within 0.5 points of tier 2 alone there, replayed on the other half: escalation and
    accuracy drop on the unseen half (medians, and the share of splits where the drop
    exceeds 0.5);
  - the bare-loop speed bound: tier 2's cost / (tier 1's cost + escalation x tier 2's).
Writes distillation.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import statistics

import torch

from bench.lib.cli import study_parser
from bench.lib.data import sst2_labelled
from bench.lib.paths import REFERENCE_TIER2
from bench.lib.results import markdown_table, write_results
from bench.lib.scoring import lowest_threshold, probabilities
from bench.lib.tiers import distilled_tier, load_tier, tier1_model
from bench.lib.timing import load_for_timing, scoring_seconds

BUDGET = 0.005  # half a point


def split_half(confidence: torch.Tensor, tier1_right: torch.Tensor, tier2_right: torch.Tensor,
               splits: int) -> dict:
    """Thresholds chosen on one half of dev within BUDGET of tier 2, replayed on the other."""
    escalations, drops = [], []
    for seed in range(splits):
        order = torch.randperm(len(confidence), generator=torch.Generator().manual_seed(seed))
        tuned, held = order[: len(order) // 2], order[len(order) // 2:]
        threshold = lowest_threshold(confidence[tuned], tier1_right[tuned], tier2_right[tuned],
                                     BUDGET)
        escalated = confidence[held] < threshold
        right = torch.where(escalated, tier2_right[held], tier1_right[held])
        escalations.append(escalated.double().mean().item())
        drops.append(tier2_right[held].double().mean().item() - right.double().mean().item())
    return {"escalation": statistics.median(escalations), "drop": statistics.median(drops),
            "broken": sum(d > BUDGET for d in drops) / splits}


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.distillation", __doc__)
    p.add_argument("--splits", type=int, default=50)
    p.add_argument("--teacher_temperatures", default="1,2",
                   help="comma list: one distilled tier per teacher temperature")
    args = p.parse_args(argv)
    dev = sst2_labelled(args.data, "dev.tsv")
    labels = torch.tensor(dev.label_ids)
    tier2 = load_tier(REFERENCE_TIER2, device="cpu")
    tier2_right = tier2.logits(dev.texts).argmax(-1) == labels
    tier2_seconds = scoring_seconds(load_for_timing(REFERENCE_TIER2, device="cpu"), dev.texts, 32)
    tiers = {"plain": tier1_model(None, args.data)}
    tiers.update({f"distilled, teacher at T={t:g}": distilled_tier(args.data, t)
                  for t in map(float, args.teacher_temperatures.split(","))})
    rows, record = [], {}
    for name, folder in tiers.items():
        tier1 = load_tier(folder)
        probs = probabilities(tier1.logits(dev.texts), 1.0)
        right = probs.argmax(-1) == labels
        confidence = probs.max(-1).values
        seconds = scoring_seconds(load_for_timing(folder), dev.texts, 1024)
        halves = split_half(confidence, right, tier2_right, args.splits)
        bound = tier2_seconds / (seconds + halves["escalation"] * tier2_seconds)
        record[name] = {"accuracy": right.double().mean().item(),
                        "oracle_escalation": (~right).double().mean().item(),
                        **halves, "speedup_bound": bound,
                        "cost_ratio": tier2_seconds / seconds}
        r = record[name]
        rows.append([name, f"{r['accuracy']:.2%}", f"{r['oracle_escalation']:.1%}",
                     f"{r['escalation']:.1%}", f"{100 * r['drop']:+.2f}", f"{r['broken']:.0%}",
                     f"{r['speedup_bound']:.2f}x", f"{r['cost_ratio']:.0f}x"])
    text = "\n".join([
        "# Distilled n-gram tier 1", "",
        f"`python -m bench.distillation --splits {args.splits} --teacher_temperatures "
        f"{args.teacher_temperatures}`: SST-2 dev (872 sentences), "
        f"tier 2 the reference MiniLM-L6 ({tier2_right.double().mean().item():.2%}). "
        f"Escalation and drop: medians over {args.splits} halvings of dev, thresholds chosen "
        "on one half within 0.5 points of tier 2 (dev accuracy, no bound), replayed on the "
        "other.", "",
        markdown_table(["tier 1", "accuracy alone", "oracle escalation",
                        "escalation (held-out half)", "drop (points, held-out)",
                        "splits over 0.5", "speed bound vs tier 2", "tier 1 cheaper by"],
                       rows)]) + "\n"
    write_results(args.results, "distillation", text, record)


if __name__ == "__main__":
    main()
