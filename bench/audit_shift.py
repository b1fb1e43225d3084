"""Under a shift of input, does the run-time audit's bound cover the true accuracy drop, and
does the summary say the input shifted? And what does auditing cost?

    python -m bench.audit_shift [--data ../shared/data/sst2] [--rounds 3]

1. SST-2 dev is cut at its median length: calibrate tunes the n-gram -> MiniLM cascade on
   the short half (policy: at most 40% of records to tier 2), then the tuned config, with
   audit_rate 0.5 on tier 1 (a 436-record run needs a large share to audit enough), runs
   on the long half with its labels, and on PHRASES labelled SST-2 train phrases (a
   different kind of text: fragments, not sentences): the true drop against tier 2 alone
   (run on the same records) next to the audit's 95% bound, the shift flag, and the
   label-free estimates. Each shifted input runs again with max_disagreement LOOP_TARGET
   (the closed loop): its escalation and true drop.
2. Cost: the tuned config with audit_rate 0, 0.01 and 0.05 over dev + the unlabelled test
   sentences (2,693 records), --rounds interleaved rounds, median records/s.
Writes audit_shift.{md,json} into --results (default bench/results).
"""
from __future__ import annotations

import os
import random
import statistics
import tempfile
import time

import yaml

from bench.lib.cli import study_parser
from bench.lib.configs import RoutingStats
from bench.lib.data import sst2_labelled, sst2_unlabelled, write_jsonl
from bench.lib.paths import LABELS
from bench.lib.results import write_results
from bench.lib.tiers import tier1_model, tier2_model
from pipeline.calibrate import main as calibrate
from pipeline.job import run

PHRASES = 4000
LOOP_TARGET = 0.03


def with_audit(config_path: str, rate: float, out_path: str,
               max_disagreement: float | None = None) -> str:
    raw = yaml.safe_load(open(config_path, encoding="utf-8"))
    raw["tiers"][0]["audit_rate"] = rate
    if max_disagreement is not None:
        raw["tiers"][0]["max_disagreement"] = max_disagreement
    for tier in raw["tiers"]:  # written relative to the tuned config's folder
        tier["model"] = os.path.abspath(os.path.join(os.path.dirname(config_path),
                                                     tier["model"]))
    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    return out_path


def job(config: str, data: str, output: str) -> RoutingStats:
    return run(["--config", config, "--input", data, "--output", output,
                "--runner", "FnApiRunner", "--label_field", "label"])


def labelled_rows(data: str, name: str, prefix: str) -> list[dict]:
    labelled = sst2_labelled(data, name)
    return [{"id": f"{prefix}-{i}", "text": t, "label": LABELS[y]}
            for i, (t, y) in enumerate(zip(labelled.texts, labelled.label_ids))]


def shift_case(work: str, data: str) -> dict:
    rows = sorted(labelled_rows(data, "dev.tsv", "dev"), key=lambda r: len(r["text"]))
    phrases = random.Random(0).sample(labelled_rows(data, "train.tsv", "train"), PHRASES)
    short = write_jsonl(os.path.join(work, "short.jsonl"), rows[: len(rows) // 2])
    inputs = {"short (calibration data)": short,
              "long (shifted)": write_jsonl(os.path.join(work, "long.jsonl"),
                                            rows[len(rows) // 2:]),
              "train phrases (shifted)": write_jsonl(os.path.join(work, "phrases.jsonl"),
                                                     phrases)}
    base = os.path.join(work, "cascade.yaml")
    with open(base, "w", encoding="utf-8") as f:
        yaml.safe_dump({"label_field": "label", "tiers": [
            {"name": "ngram", "model": os.path.abspath(tier1_model(None, data)),
             "threshold": 0.9},
            {"name": "minilm", "model": os.path.abspath(tier2_model(None, data))}]}, f)
    tuned = os.path.join(work, "tuned.yaml")
    assert calibrate(["--config", base, "--dev", short, "--output", tuned,
                      "--max_escalation_rate", "0.4", "--batch_sizes", "64",
                      "--repeats", "1"]) == 0
    configs = {"": with_audit(tuned, 0.5, os.path.join(work, "audited.yaml")),
               f" + max_disagreement {LOOP_TARGET}": with_audit(
                   tuned, 0.5, os.path.join(work, "loop.yaml"), LOOP_TARGET)}
    alone = os.path.join(work, "alone.yaml")
    with open(alone, "w", encoding="utf-8") as f:
        yaml.safe_dump({"label_field": "label", "tiers": [
            {"name": "minilm", "model": os.path.abspath(tier2_model(None, data))}]}, f)
    results = {}
    for name, path in inputs.items():
        reference = job(alone, path, os.path.join(work, f"alone-{len(results)}"))
        for suffix, config in configs.items():
            if suffix and name.startswith("short"):
                continue
            cascade = job(config, path, os.path.join(work, f"out-{len(results)}"))
            results[name + suffix] = measured(cascade, reference)
    return results


def measured(cascade: RoutingStats, reference: RoutingStats) -> dict:
    """A cascade run's audit and estimates next to the truth (tier 2 alone, same records)."""
    tier1 = cascade.tiers[0]
    used = tier1.effective_threshold
    return {
        "records": cascade.predictions,
        "escalation_rate": tier1.escalation_rate,
        "thresholds": {"min": used.min, "max": used.max} if used else None,
        "true_drop_points": 100 * (reference.accuracy - cascade.accuracy),
        "audit_disagreement_points": 100 * cascade.audit.disagreement,
        "audit_drop_bound_95_points": 100 * cascade.audit.drop_bound_95,
        "audited": cascade.audit.audited,
        "shifted_tiers": list(cascade.shifted_tiers),
        "ks_distance_tier1": tier1.shift.distance,
        "ks_p_value_tier1": tier1.shift.p_value,
        "accuracy": cascade.accuracy,
        "estimated_accuracy_confidence": cascade.estimated_accuracy,
        "last_tier_probability": cascade.audit.last_tier_probability}


def audit_cost(work: str, data: str, rounds: int) -> dict:
    test = sst2_unlabelled(data)
    rows = [{"id": r["id"], "text": r["text"]} for r in labelled_rows(data, "dev.tsv", "dev")]
    rows += [{"id": f"test-{i}", "text": t} for i, t in enumerate(test)]
    data_path = write_jsonl(os.path.join(work, "all.jsonl"), rows)
    tuned = os.path.join(work, "tuned.yaml")
    seconds: dict[float, list[float]] = {rate: [] for rate in (0.0, 0.01, 0.05)}
    for r in range(rounds):
        for rate in seconds:
            config = with_audit(tuned, rate, os.path.join(work, f"cost-{rate}.yaml"))
            start = time.perf_counter()
            job(config, data_path, os.path.join(work, f"cost-{rate}-{r}"))
            seconds[rate].append(time.perf_counter() - start)
    return {str(rate): {"records": len(rows), "median_seconds": statistics.median(s),
                        "records_per_second": len(rows) / statistics.median(s)}
            for rate, s in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.audit_shift", __doc__)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="audit-shift-")
    result = {"shift": shift_case(work, args.data), "cost": audit_cost(work, args.data,
                                                                        args.rounds)}
    lines = [f"# Audit under shift, and its cost (`python -m bench.audit_shift --rounds "
             f"{args.rounds}`)", "",
             "| run on | records | escalated | tier-1 thresholds | true drop | disagreement "
             "| drop bound (95%) | audited | shift flagged | KS distance (p) | accuracy "
             "| estimate: confidence | last tier's probability |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["shift"].items():
        threshold = (f"{s['thresholds']['min']:.4f}-{s['thresholds']['max']:.4f}"
                     if s["thresholds"] else "configured")
        lines.append(
            f"| {name} | {s['records']} | {s['escalation_rate']:.1%} | {threshold} | "
            f"{s['true_drop_points']:+.2f} | "
            f"{s['audit_disagreement_points']:.2f} | {s['audit_drop_bound_95_points']:.2f} | "
            f"{s['audited']} | {', '.join(s['shifted_tiers']) or 'no'} | "
            f"{s['ks_distance_tier1']:.3f} ({s['ks_p_value_tier1']:.1g}) | {s['accuracy']:.2%} | "
            f"{s['estimated_accuracy_confidence']:.2%} | "
            f"{s['last_tier_probability']:.2%} |")
    lines += ["", "| audit_rate | records | median seconds | records/s |", "|---|---|---|---|"]
    lines += [f"| {rate} | {c['records']} | {c['median_seconds']:.1f} | "
              f"{c['records_per_second']:.0f} |" for rate, c in result["cost"].items()]
    write_results(args.results, "audit_shift", "\n".join(lines) + "\n", result)


if __name__ == "__main__":
    main()
