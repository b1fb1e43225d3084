"""The SST-2 speed/accuracy benchmark: is the cascade faster than its big model, at nearly
its accuracy, and how close does the pipeline come to the physical limit?

    python -m bench.sst2 [--data ../shared/data/sst2] [--tier1 DIR] [--tier2 DIR]

In one run, on the same input (the 872 labelled dev sentences for accuracy; dev plus the
1,821 unlabelled test sentences, 2,693 in all, for throughput), interleaving the settings in
each of --repeats rounds so that machine noise hits them alike:
  1. tier 2 alone through this project's pipeline;
  2. tier 2 alone through Beam's stock RunInference + HuggingFacePipelineModelHandler (the
     peer, in its own environment, see bench/peer_venv.sh);
  3. bare PyTorch loops of each tier over the same texts at their best batch size: the ideal
     time of a cascade is tier 1 on all texts + tier 2 on the escalated ones;
  4. the cascade at a sweep of tier-1 thresholds (by default those that escalate 10% ... 60%
     of the input, read off tier 1's confidences: no labels involved);
  5. any cascade configs given with --config (for example those `beam-cascade calibrate`
     writes, with early exit or int8 tiers), each with bare loops of its own tiers over the
     records that reached them.
Every job runs in a fresh process with the same runner, timed from pipeline construction to
its end, model loading included. Writes sst2.{md,png,json} into --results (default bench/results).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import torch

from bench.lib.cli import study_parser
from bench.lib.configs import CascadeConfig, TierConfig, config_to_dict
from bench.lib.jobs import (STARTUP_RECORDS, Inputs, bench_config, peer_python, records_per_tier,
                            run_job, run_peer, write_inputs)
from bench.lib.paths import CACHE, LABELS, REFERENCE_TIER2
from bench.lib.results import command_line
from bench.lib.scoring import escalated_indices, score, threshold_below
from bench.lib.tiers import load_configured_tier, load_tier, tier1_model, tier2_model
from bench.lib.timing import ONE_PASS, BareTimer, load_for_timing
from bench.report import write_report

DEFAULT_ESCALATION = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)


def cascade_config(tiers: list[dict], threshold: float | None) -> dict:
    """A config for tier 2 alone (threshold None) or the two-tier cascade."""
    chosen = tiers if threshold is not None else tiers[1:]
    return {"label_field": "label", "id_field": "id",
            "tiers": [{**t, "threshold": threshold} if i < len(chosen) - 1 else t
                      for i, t in enumerate(chosen)]}


def tier1_confidences(tier1: str, texts: list[str]) -> tuple[list[float], list[int]]:
    """Tier 1's max-probability confidences and labels, computed as the pipeline does."""
    scores = score(load_tier(tier1).logits(texts))
    return scores.confidences, scores.label_ids


def thresholds_for(confidences: list[float], fractions: list[float]) -> list[float]:
    """For each fraction e, the threshold below which e of the records fall: halfway between
    two neighbouring confidences, so float noise between batchings flips no record."""
    ordered = sorted(confidences)
    return [threshold_below(ordered, min(max(round(e * len(ordered)), 1), len(ordered) - 1))
            for e in fractions]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = study_parser("bench.sst2", __doc__)
    p.add_argument("--tier1", help="tier 1 folder (default: n-gram tier trained into "
                                   f"{CACHE})")
    p.add_argument("--tier2", help=f"tier 2 folder (default: {CACHE}/sst2-minilm-l6 when "
                                   f"trained, else {REFERENCE_TIER2})")
    p.add_argument("--escalation", default=",".join(map(str, DEFAULT_ESCALATION)),
                   help="sweep the thresholds that escalate these fractions of the input")
    p.add_argument("--thresholds", help="sweep these tier 1 thresholds instead (comma list)")
    p.add_argument("--config", action="append", default=[],
                   help="also time this cascade config (YAML/JSON, e.g. written by `beam-cascade "
                        "calibrate`) in every round, with its tiers' batch sizes; repeatable")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; medians reported")
    p.add_argument("--tier1_batch_sizes", default="256,1024")
    p.add_argument("--tier2_batch_sizes", default="16,32,64,128")
    p.add_argument("--peer_batch_size", type=int, default=64)
    p.add_argument("--no_peer", action="store_true", help="skip the stock-handler peer")
    return p.parse_args(argv)


def tier_key(path: str, tier: TierConfig) -> str:
    """The bare-loop timer's name for a tier of a --config."""
    return f"{path}:{tier.name}"


@dataclass(frozen=True)
class Plan:
    """What every round times: the two tiers (at their best batch sizes), the sweep's
    thresholds and the records each escalates, and the --configs."""

    tiers: list[dict]
    thresholds: list[float]
    escalated: dict[float, list[int]]
    configs: dict[str, CascadeConfig]

    def run_names(self) -> list[str]:
        return ["tier2", "peer", "bare_tier1", "bare_tier2", "bare_tier2_input_order",
                "startup_tier2", "startup_cascade",
                *(f"{kind}@{t}" for kind in ("cascade", "bare_tier2") for t in self.thresholds),
                *(f"{kind}@{path}" for path in self.configs
                  for kind in ("config", "startup_config", "bare_config"))]


def time_jobs(plan: Plan, inputs: Inputs, work: str, peer: str | None, peer_batch_size: int,
              runs: dict[str, list]) -> None:
    """Every pipeline job once, each in a fresh process; appends to `runs`."""
    def job(config: dict, name: str, startup: bool = False) -> dict:
        return run_job(config, inputs.startup_path if startup else inputs.all_path, work, name)

    tier2_alone = cascade_config(plan.tiers, None)
    runs["tier2"].append(job(tier2_alone, "tier2"))
    runs["startup_tier2"].append(job(tier2_alone, "startup-tier2", startup=True))
    runs["startup_cascade"].append(job(cascade_config(plan.tiers, plan.thresholds[0]),
                                       "startup-cascade", startup=True))
    if peer:
        runs["peer"].append(run_peer(peer, plan.tiers[1]["model"], inputs, work,
                                     peer_batch_size))
    for t in plan.thresholds:
        runs[f"cascade@{t}"].append(job(cascade_config(plan.tiers, t), f"cascade-{t}"))
    for i, (path, config) in enumerate(plan.configs.items()):
        plain = config_to_dict(config)
        runs[f"config@{path}"].append(job(plain, f"config-{i}"))
        runs[f"startup_config@{path}"].append(job(plain, f"startup-config-{i}", startup=True))


def time_bare_loops(plan: Plan, bare: BareTimer, inputs: Inputs, work: str,
                    runs: dict[str, list]) -> None:
    """Every bare loop once: the tiers on all texts, tier 2 on each threshold's escalated
    texts, each config's tiers on the records that reached them in its job (time_jobs ran
    it)."""
    batch1, batch2 = (t["batch_size"] for t in plan.tiers)
    runs["bare_tier1"].append(bare.seconds("tier1", batch1))
    runs["bare_tier2"].append(bare.seconds("tier2", batch2))
    runs["bare_tier2_input_order"].append(bare.seconds("tier2", batch2, sort_by_length=False))
    for t in plan.thresholds:
        runs[f"bare_tier2@{t}"].append(bare.seconds("tier2", batch2, plan.escalated[t]))
    for i, (path, config) in enumerate(plan.configs.items()):
        reached = records_per_tier(os.path.join(work, "out", f"config-{i}"), config,
                                   inputs.all_ids)
        runs[f"bare_config@{path}"].append(sum(
            bare.seconds(tier_key(path, t), t.batch_size, reached[t.name])
            for t in config.tiers))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = command_line("bench.sst2", argv)
    work = os.path.join(CACHE, "work")
    os.makedirs(work, exist_ok=True)
    inputs = write_inputs(args.data, work)
    tier1, tier2 = tier1_model(args.tier1, args.data), tier2_model(args.tier2, args.data)
    configs = {path: bench_config(path) for path in args.config}
    peer = None if args.no_peer else peer_python()

    bare = BareTimer({"tier1": load_for_timing(tier1), "tier2": load_for_timing(tier2),
                      **{tier_key(path, t): load_configured_tier(t, ONE_PASS)
                         for path, config in configs.items() for t in config.tiers}},
                     inputs.all_texts)
    batch1 = bare.best_batch_size("tier1", [int(b) for b in args.tier1_batch_sizes.split(",")])
    batch2 = bare.best_batch_size("tier2", [int(b) for b in args.tier2_batch_sizes.split(",")])
    confidences, tier1_labels = tier1_confidences(tier1, inputs.all_texts)
    thresholds = ([float(t) for t in args.thresholds.split(",")] if args.thresholds else
                  thresholds_for(confidences, [float(e) for e in args.escalation.split(",")]))
    plan = Plan([{"name": "tier1", "model": tier1, "batch_size": batch1},
                 {"name": "tier2", "model": tier2, "batch_size": batch2}], thresholds,
                {t: escalated_indices(confidences, t) for t in thresholds},
                configs)

    runs: dict[str, list] = {name: [] for name in plan.run_names()}
    for round_ in range(args.repeats):
        print(f"bench: round {round_ + 1}/{args.repeats}", file=sys.stderr)
        time_jobs(plan, inputs, work, peer, args.peer_batch_size, runs)
        time_bare_loops(plan, bare, inputs, work, runs)

    dev_errors = sum(LABELS[y] != g for y, g in zip(tier1_labels, inputs.dev_labels))
    facts = {
        "command": command, "date": time.strftime("%Y-%m-%d"), "records": len(inputs.all_texts),
        "dev_records": len(inputs.dev_texts), "tier1": tier1, "tier2": tier2,
        "tier1_batch_size": batch1, "tier2_batch_size": batch2,
        "peer_batch_size": args.peer_batch_size, "thresholds": thresholds,
        "configs": list(configs), "startup_records": STARTUP_RECORDS,
        "escalated": {str(t): len(plan.escalated[t]) / len(inputs.all_texts)
                      for t in thresholds},
        "oracle_escalated_dev": dev_errors / len(inputs.dev_texts),
        "tier1_dev_accuracy": 1 - dev_errors / len(inputs.dev_texts),
        "batch_size_sweep": bare.sweep, "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
    }
    write_report(args.results, facts, runs)


if __name__ == "__main__":
    main()
