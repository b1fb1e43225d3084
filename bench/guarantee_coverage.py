"""Does calibrate's accuracy promise hold on sentences it was not tuned on?

    python -m bench.guarantee_coverage [--data ../shared/data/sst2] [--splits 200]

SST-2 dev (872 labelled sentences) is split at random, many times, into a calibration half
and a held-out half. On each split the temperatures are fitted and the thresholds chosen on
the calibration half only (plus, for one policy, the 1,821 unlabelled test sentences, whose
labels nobody has), then the cascade is replayed on the held-out half. For each policy and
budget it reports the share of splits whose held-out accuracy drop against the last tier
exceeds the budget (the guarantee promises at most 1 - confidence, up to the noise of a
436-sentence held-out half) and the escalation paid for it. Policies:

- point estimate: the cheapest threshold whose calibration-half drop is within the budget
  (what calibrate did before the guarantee);
- guarantee, labels only: the fixed-sequence search on the calibration half;
- guarantee + unlabelled: the same with the disagreement rate measured on the unlabelled
  test sentences.

Tier 1 is the n-gram tier (trained into bench/cache on first use), tier 2 the reference
MiniLM (bench/sst2.py). Model outputs are computed once; the splits are replays. Writes
guarantee.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import torch
from tqdm import tqdm

from bench.lib.cli import splits_arguments
from bench.lib.guarantees import guarantee_search
from bench.lib.results import write_results
from bench.lib.scoring import (COSTS, NoOperatingPoint, Policy, TierOutputs, choose,
                               fit_temperature, last_tier_alone, outputs, replay, sst2_logits,
                               sweep)

POLICIES = ("point estimate", "guarantee, labels only", "guarantee + unlabelled")
EVERY_RECORD_ON = (2.0,)  # a tier-1 threshold no confidence reaches: the last tier alone


@dataclass(frozen=True)
class Outcome:
    """One policy on one split, replayed on the held-out half."""

    drop: float  # points
    escalation: float  # share of held-out records reaching tier 2
    supported: bool  # False: no threshold passed; every record goes to tier 2


def choose_thresholds(policy: str, calibration: list[TierOutputs], labels: torch.Tensor,
                      unlabelled: list[TierOutputs], budget: float, confidence: float
                      ) -> tuple[float, ...] | None:
    """The thresholds a policy picks on the calibration half; None: none qualifies."""
    if policy == "point estimate":
        try:
            return choose(sweep(calibration, labels, COSTS),
                          last_tier_alone(calibration, labels, COSTS),
                          Policy(max_accuracy_drop=budget)).thresholds
        except NoOperatingPoint:
            return None
    search = guarantee_search(calibration, labels,
                              unlabelled if policy == "guarantee + unlabelled" else None,
                              COSTS, confidence, budget / 100)
    chosen = search.chosen
    return chosen.point.thresholds if chosen and chosen.point.reach[-1] < 1 else None


def split_outcomes(dev_logits: list[torch.Tensor], unlabelled_logits: list[torch.Tensor],
                   labels: torch.Tensor, seed: int, budgets: list[float], confidence: float
                   ) -> dict[tuple[str, float], Outcome]:
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    tune, held = order[: len(order) // 2], order[len(order) // 2:]
    temperatures = [fit_temperature(l[tune], labels[tune]) for l in dev_logits]
    calibration = outputs([l[tune] for l in dev_logits], temperatures)
    held_out = outputs([l[held] for l in dev_logits], temperatures)
    unlabelled = outputs(unlabelled_logits, temperatures)
    alone = last_tier_alone(held_out, labels[held], COSTS).accuracy
    result = {}
    for budget in budgets:
        for policy in POLICIES:
            thresholds = choose_thresholds(policy, calibration, labels[tune], unlabelled,
                                           budget, confidence)
            point = replay(held_out, labels[held], thresholds or EVERY_RECORD_ON, COSTS)
            result[policy, budget] = Outcome(100 * (alone - point.accuracy), point.reach[-1],
                                             thresholds is not None)
    return result


def summary_rows(outcomes: list[dict], budgets: list[float], confidence: float) -> list[dict]:
    rows = []
    for budget in budgets:
        for policy in POLICIES:
            these = [o[policy, budget] for o in outcomes]
            rows.append({
                "policy": policy, "budget_points": budget,
                "share_over_budget": sum(o.drop > budget for o in these) / len(these),
                "allowed_share": round(1 - confidence, 4),
                "mean_held_out_drop": statistics.mean(o.drop for o in these),
                "mean_escalation": statistics.mean(o.escalation for o in these),
                "unsupported_splits": sum(not o.supported for o in these)})
    return rows


def write(rows: list[dict], args: argparse.Namespace) -> None:
    command = (f"python -m bench.guarantee_coverage --splits {args.splits} --confidence "
               f"{args.confidence}")
    lines = ["# Does the accuracy promise hold on unseen sentences?", "",
             f"`{command}`: {args.splits} random halvings of SST-2 dev (436 calibration, 436 "
             f"held out), confidence {args.confidence}, unlabelled sample = the 1,821 test "
             "sentences; n-gram tier 1, reference MiniLM tier 2.", "",
             "| policy | budget (points) | held-out drop over budget | allowed | mean held-out "
             "drop | mean escalation | splits where no threshold qualified |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['budget_points']} | {r['share_over_budget']:.1%} | "
              f"{r['allowed_share']:.0%} | {r['mean_held_out_drop']:+.2f} | "
              f"{r['mean_escalation']:.1%} | {r['unsupported_splits']} |" for r in rows]
    write_results(args.results, "guarantee", "\n".join(lines) + "\n",
                  {"command": command, "rows": rows})


def main(argv: list[str] | None = None) -> None:
    args = splits_arguments("bench.guarantee_coverage", "0.5,1,2").parse_args(argv)
    dev_logits, test_logits, labels = sst2_logits(args.data)
    budgets = [float(b) for b in args.budgets.split(",")]
    outcomes = [split_outcomes(dev_logits, test_logits, labels, seed, budgets, args.confidence)
                for seed in tqdm(range(args.splits), desc="splits")]
    write(summary_rows(outcomes, budgets, args.confidence), args)


if __name__ == "__main__":
    main()
