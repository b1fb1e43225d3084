"""Guaranteed and fast? The accuracy promise with requested labels, against the oracle.

    python -m bench.request_coverage [--splits 200] [--labels 0,100,300,1000]
        [--budgets 0.5,1,2] [--confidence 0.9] [--sample 1821] [--seed 0]

The labelled sentences no tier saw come from bench.heldout_sst2 (run it first: it holds out
3,000 of SST-2 train's full sentences with every phrase in them and retrains the tiers on
the rest). Each split draws --sample of those sentences as the job's input (1,821, like
SST-2 test) and calibrates on it as `calibrate --unlabelled INPUT --request_labels N` and a
second `calibrate --labelled_requests` would: temperatures fitted on SST-2 dev (872
labelled), the N requests answered from the held-out labels, the fixed-sequence search run
with each evidence of the bound. Then the cascade at the chosen thresholds is scored on
the same sentences against the last tier alone there. With no requests the bound is the one
without them: the disagreement rate on the input times what dev's labelled disagreements
say of who is wrong.

Per tier 1 (the plain n-gram tier, and the n-gram + word CNN distilled from tier 2), label
count, evidence and budget it reports: the share of splits whose realised drop exceeds the
budget (the promise allows 1 - confidence), the mean escalation, the mean oracle escalation
(the least escalation of the threshold sequence whose realised drop on the sentences is
within budget: what a perfect bound would pick), and their ratio. "input" rows promise
the drop on the sentences calibrated on; the "distribution" rows calibrate on the same
sentences but promise (and are scored on) the other held-out sentences, with the margin for
sampling added. Writes request_coverage.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import torch
from tqdm import tqdm

from bench.lib.cli import study_parser
from bench.lib.data import sst2_labelled
from bench.lib.guarantees import (EVIDENCE, THRESHOLD_SEQUENCE, AnsweredRequests,
                                  GuaranteeSearch, disagreement_entries, guarantee_search,
                                  new_design, record_key)
from bench.lib.results import command_line, write_results
from bench.lib.scoring import (TierOutputs, calibrated_outputs, cascade_predictions,
                               fit_temperature, tier_logits)
from bench.lib.tiers import heldout_tiers

COSTS = (0.01, 1.0)  # relative: any tier 1 much cheaper than tier 2 orders the points alike
TIER1 = {"n-gram": "ngram", "n-gram + word CNN": "ngram-cnn32"}


def scored(work: str, data: str) -> tuple[dict, torch.Tensor, torch.Tensor, list[str]]:
    """Per tier 1 name, [tier 1, tier 2] outputs on dev and on the pool (temperatures fitted
    on dev); dev's and the pool's labels; the pool's texts."""
    dev = sst2_labelled(data, "dev.tsv")
    pool = sst2_labelled(work, "pool.tsv")
    dev_labels, pool_labels = torch.tensor(dev.label_ids), torch.tensor(pool.label_ids)

    def outputs(folder: str, name: str) -> tuple[TierOutputs, TierOutputs]:
        model = os.path.join(work, folder)
        on_dev = tier_logits(model, f"heldout-{name}", dev.texts, "dev")
        on_pool = tier_logits(model, f"heldout-{name}", pool.texts, "pool")
        temperature = fit_temperature(on_dev, dev_labels)
        return calibrated_outputs(on_dev, temperature), calibrated_outputs(on_pool, temperature)

    tier2 = outputs("tier2", "tier2")
    tiers = {}
    for name, folder in TIER1.items():
        tier1 = outputs(folder, folder)
        tiers[name] = ([tier1[0], tier2[0]], [tier1[1], tier2[1]])
    return tiers, dev_labels, pool_labels, pool.texts


def subset(tiers: list[TierOutputs], rows: torch.Tensor) -> list[TierOutputs]:
    return [TierOutputs(t.predictions[rows], t.confidences[rows], t.max_probs[rows])
            for t in tiers]


def drops_and_escalation(tiers: list[TierOutputs], labels: torch.Tensor
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Along the threshold sequence: the realised drop (points) against the last tier
    alone, and the share of records reaching the last tier."""
    alone = (tiers[-1].predictions == labels).double().mean().item()
    drops, escalation = [], []
    for threshold in THRESHOLD_SEQUENCE:
        cascade = cascade_predictions(tiers, (threshold,))
        drops.append(100 * (alone - (cascade == labels).double().mean().item()))
        escalation.append((tiers[0].confidences < threshold).double().mean().item())
    return np.array(drops), np.array(escalation)


def chosen_index(search: GuaranteeSearch, budget: float) -> int | None:
    """The index in the sequence of the threshold the search picks at `budget` (points);
    None where none passes (every record then goes to the last tier)."""
    index = None
    for k, point in enumerate(search.path):
        if point.bound.bound > budget / 100:
            break
        index = k
    return index


def one_split(tiers: tuple, dev_labels: torch.Tensor, pool_labels: torch.Tensor,
              keys: list[str], args: argparse.Namespace, seed: int) -> list[dict]:
    dev_tiers, pool_tiers = tiers
    order = torch.randperm(len(pool_labels), generator=torch.Generator().manual_seed(seed))
    inside, outside = order[:args.sample], order[args.sample:]
    on_input = subset(pool_tiers, inside)
    labels_in = pool_labels[inside]
    realised = {"input": drops_and_escalation(on_input, labels_in),
                "distribution": drops_and_escalation(subset(pool_tiers, outside),
                                                     pool_labels[outside])}
    input_keys = tuple(keys[i] for i in inside)
    entry = disagreement_entries(on_input)
    rows = []
    for count in args.labels:
        for evidence in (EVIDENCE if count else ("dev labels",)):
            for scope in ("input", "distribution"):
                requests = None
                if count:
                    design = new_design(input_keys, entry, count, seed)
                    asked = {k for band in design.bands for k in band.keys[:band.requested]}
                    answers = {k: int(l) for k, l in zip(input_keys, labels_in) if k in asked}
                    requests = AnsweredRequests(
                        design, input_keys, answers,
                        len(input_keys) if scope == "input" else None, evidence)
                search = guarantee_search(dev_tiers, dev_labels, on_input, COSTS,
                                          args.confidence, max(args.budgets) / 100,
                                          requests=requests,
                                          stop_above=max(args.budgets) / 100)
                drops, escalation = realised[scope]
                for budget in args.budgets:
                    k = chosen_index(search, budget)
                    within = np.flatnonzero(drops <= budget)
                    rows.append({"split": seed, "labels": count, "evidence": evidence,
                                 "scope": scope, "budget": budget,
                                 "drop": 0.0 if k is None else drops[k],
                                 "escalation": 1.0 if k is None else escalation[k],
                                 "oracle": escalation[within].min() if len(within) else 1.0})
    return rows


def summary(rows: list[dict], confidence: float) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["tier1"], r["scope"], r["labels"], r["evidence"], r["budget"]),
                          []).append(r)
    table = []
    for (tier1, scope, labels, evidence, budget), these in groups.items():
        escalation = statistics.mean(r["escalation"] for r in these)
        oracle = statistics.mean(r["oracle"] for r in these)
        table.append({"tier1": tier1, "scope": scope, "labels": labels, "evidence": evidence,
                      "budget": budget, "splits": len(these),
                      "over_budget": sum(r["drop"] > budget for r in these) / len(these),
                      "allowed": round(1 - confidence, 4), "escalation": escalation,
                      "oracle": oracle, "ratio": escalation / oracle if oracle else float("inf"),
                      "mean_drop": statistics.mean(r["drop"] for r in these)})
    return table


def markdown(table: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = ["# Guaranteed and fast: requested labels against the oracle", "",
             f"`{command}`", "",
             f"{args.splits} splits; each draws {args.sample} of the held-out SST-2 train "
             "sentences (bench.heldout_sst2: tiers retrained without them) as the input; "
             f"temperatures from SST-2 dev; confidence {args.confidence}. \"input\": promise "
             "and score on the input's sentences; \"distribution\": calibrate on them, "
             "promise and score on the other held-out sentences.", "",
             "| tier 1 | scope | labels | evidence | budget | over budget (allowed "
             f"{1 - args.confidence:.0%}) | mean drop | escalation | oracle | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['tier1']} | {r['scope']} | {r['labels']} | {r['evidence']} | "
                     f"{r['budget']:g} | {r['over_budget']:.1%} | {r['mean_drop']:+.2f} | "
                     f"{r['escalation']:.1%} | {r['oracle']:.1%} | {r['ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.request_coverage", __doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="bench.heldout_sst2's seed")
    p.add_argument("--splits", type=int, default=200)
    p.add_argument("--labels", default="0,100,300,1000")
    p.add_argument("--budgets", default="0.5,1,2")
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--sample", type=int, default=1821)
    args = p.parse_args(argv)
    args.labels = [int(x) for x in args.labels.split(",")]
    args.budgets = [float(x) for x in args.budgets.split(",")]
    work = heldout_tiers(args.seed, "request_coverage")
    tiers, dev_labels, pool_labels, texts = scored(work, args.data)
    keys = [record_key(t) for t in texts]
    rows = []
    for tier1, outputs in tiers.items():
        for seed in tqdm(range(args.splits), desc=tier1):
            rows += [{"tier1": tier1, **r} for r in
                     one_split(outputs, dev_labels, pool_labels, keys, args, seed)]
    command = command_line("bench.request_coverage", argv)
    table = summary(rows, args.confidence)
    write_results(args.results, "request_coverage", markdown(table, args, command),
                  {"command": command, "table": table})


if __name__ == "__main__":
    main()
