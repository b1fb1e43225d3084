"""Is the label-free accuracy estimate right on the records that reach tier 2?

    python -m bench.reached_calibration [--data ../shared/data/sst2] [--splits 200]

calibrate used to fit tier 2's temperature on all dev records, while in the cascade tier 2
sees only the records tier 1 was unsure of; now it fits it on those (models/tuning/fitting.py,
`refit_on_reached`). SST-2 dev is halved at random, many times: on the calibration half the
temperatures are fitted and the threshold chosen (the guarantee's search with the 1,821
unlabelled test sentences, at each budget); tier 2's temperature is fitted both ways. On the
held-out half, over the records that reach tier 2, the estimate (tier 2's mean max-prob)
under each temperature is set against tier 2's true accuracy there, with the ECE; and the
whole cascade's estimate against its accuracy. "calibrate's rule" refits only with at least
MIN_REACHED records reaching tier 2 (models/tuning/fitting.py), as calibrate does. Model outputs as in bench/guarantee_coverage.py.
Writes reached_calibration.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import statistics

import torch
from tqdm import tqdm

from bench.lib.cli import splits_arguments
from bench.lib.guarantees import guarantee_search
from bench.lib.results import write_results
from bench.lib.scoring import (COSTS, MIN_REACHED, decided_mask, expected_calibration_error,
                               fit_temperature, outputs, sst2_logits)

FITS = ("all records", "reached records", "calibrate's rule")


def split_result(dev: list[torch.Tensor], unlabelled: list[torch.Tensor], labels: torch.Tensor,
                 seed: int, budget: float, confidence: float) -> dict | None:
    """One halving: per way of fitting tier 2, on the held-out records reaching it, the
    estimate, the truth and the ECE, and the cascade's estimate and truth; None when no
    threshold qualified (every record to tier 2: nothing to compare)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    tune, held = order[: len(order) // 2], order[len(order) // 2:]
    t1 = fit_temperature(dev[0][tune], labels[tune])
    t2_all = fit_temperature(dev[1][tune], labels[tune])
    calibration = outputs([l[tune] for l in dev], [t1, t2_all])
    search = guarantee_search(calibration, labels[tune], outputs(unlabelled, [t1, t2_all]),
                              COSTS, confidence, budget / 100)
    if search.chosen is None or search.chosen.point.reach[-1] >= 1:
        return None
    threshold = search.chosen.point.thresholds[0]
    reached_tune = tune[~decided_mask(calibration[0].confidences, threshold)]
    t2_reached = fit_temperature(dev[1][reached_tune], labels[reached_tune])
    t2_rule = t2_reached if len(reached_tune) >= MIN_REACHED else t2_all
    tier1_held = outputs([dev[0][held]], [t1])[0]
    escalated = ~decided_mask(tier1_held.confidences, threshold)
    result = {"threshold": threshold, "reached_share": escalated.double().mean().item()}
    for fit, t2 in zip(FITS, (t2_all, t2_reached, t2_rule)):
        tier2 = outputs([dev[1][held][escalated]], [t2])[0]
        right = tier2.predictions == labels[held][escalated]
        decided_right = tier1_held.predictions[~escalated] == labels[held][~escalated]
        result[fit] = {
            "temperature": t2,
            "estimate": tier2.max_probs.double().mean().item(),
            "truth": right.double().mean().item(),
            "ece": expected_calibration_error(tier2.max_probs, right),
            "cascade_estimate": (tier1_held.max_probs[~escalated].double().sum()
                                 + tier2.max_probs.double().sum()).item() / len(held),
            "cascade_truth": (decided_right.sum() + right.sum()).item() / len(held)}
    return result


def summary(results: list[dict]) -> dict:
    rows = {}
    for fit in FITS:
        gaps = [r[fit]["estimate"] - r[fit]["truth"] for r in results]
        cascade = [r[fit]["cascade_estimate"] - r[fit]["cascade_truth"] for r in results]
        rows[fit] = {
            "mean_gap_points": 100 * statistics.mean(gaps),
            "mean_abs_gap_points": 100 * statistics.mean(abs(g) for g in gaps),
            "mean_ece": statistics.mean(r[fit]["ece"] for r in results),
            "mean_cascade_gap_points": 100 * statistics.mean(cascade),
            "mean_cascade_abs_gap_points": 100 * statistics.mean(abs(g) for g in cascade),
            "median_temperature": statistics.median(r[fit]["temperature"] for r in results)}
    return rows


def main(argv: list[str] | None = None) -> None:
    args = splits_arguments("bench.reached_calibration", "1,2,5").parse_args(argv)
    dev_logits, test_logits, labels = sst2_logits(args.data)
    command = (f"python -m bench.reached_calibration --splits {args.splits} --confidence "
               f"{args.confidence} --budgets {args.budgets}")
    lines = ["# The label-free estimate on the records that reach tier 2", "",
             f"`{command}`: random halvings of SST-2 dev; thresholds chosen on one half by the "
             "guarantee (with the 1,821 unlabelled test sentences); tier 2's temperature fitted "
             "on all of that half's records, on those reaching it, or by calibrate's rule (those "
             f"reaching it when at least {MIN_REACHED}); measured on the held-out half. Gap = "
             "estimate - truth, in points.", "",
             "| budget (points) | splits | reaching tier 2 | tier 2 fitted on | temperature "
             "(median) | gap on reached | mean abs gap | ECE on reached | cascade gap | "
             "cascade abs gap |", "|---|---|---|---|---|---|---|---|---|---|"]
    saved = {"command": command, "budgets": {}}
    for budget in (float(b) for b in args.budgets.split(",")):
        results = [r for seed in tqdm(range(args.splits), desc=f"budget {budget}")
                   if (r := split_result(dev_logits, test_logits, labels, seed, budget,
                                         args.confidence))]
        rows = summary(results)
        reach = statistics.mean(r["reached_share"] for r in results)
        saved["budgets"][str(budget)] = {"splits": len(results), "reached_share": reach,
                                         "fits": rows}
        lines += [f"| {budget} | {len(results)} | {reach:.1%} | {fit} | "
                  f"{s['median_temperature']:.3f} | {s['mean_gap_points']:+.2f} | "
                  f"{s['mean_abs_gap_points']:.2f} | {s['mean_ece']:.4f} | "
                  f"{s['mean_cascade_gap_points']:+.2f} | {s['mean_cascade_abs_gap_points']:.2f} |"
                  for fit, s in rows.items()]
    write_results(args.results, "reached_calibration", "\n".join(lines) + "\n", saved)


if __name__ == "__main__":
    main()
