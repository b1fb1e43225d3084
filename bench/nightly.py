"""Five nights of self-improvement on SST-2: each night's job keeps what its last tier scored,
tier 1 is retrained on it, calibrate chooses the next night's threshold.

    python -m bench.nightly [--data ../shared/data/sst2] [--nights 5] [--base 17349]
        [--night_records 10000] [--word_cnn] [--work bench/cache/nightly]

SST-2's 67,349 train phrases, shuffled (seed 0): the first --base, with their gold labels,
train the night-0 n-gram tier 1; the rest are the unlabelled input of the nights,
--night_records each. Tier 2 is the reference MiniLM-L6. Every night, with the real commands:

  1. `beam-cascade run --config night<k-1>.yaml --input night<k>.jsonl --training_examples`
     (tier 1 escalates what it is unsure of; the audit sample, 2% of its decisions, is
     checked too);
  2. `beam-cascade train --kind ngram --train base.jsonl --from_outputs out1 ... out<k>`:
     tier 1 again, on the base phrases and every night's examples so far (tier 2's
     probabilities as soft targets);
  3. `beam-cascade calibrate` on the 872 dev sentences with the 1,821 test sentences as the
     unlabelled sample (no tier ever trains on either): the threshold whose 90% bound on the
     drop against tier 2 alone is within --max_accuracy_drop points, for night k+1.

With --word_cnn, tier 1 carries a word CNN beside its linear model (`train --word_vectors`,
the reference tier 2's word pieces; models/word_cnn.py), retrained with it every night; the
work folder and results then end in -word-cnn.

Per night: tier 1's dev accuracy, the escalation calibrate chooses on dev and its bound, the
escalation and drop of the point estimate (the lowest threshold within 0.5 points on one half
of dev, replayed on the other: medians over 20 halvings, no bound), and the escalation the
night's job saw on its own input. Writes nightly[-word-cnn].{md,json,png} into --results (default bench/results).
"""
from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys

import torch
import yaml

from bench.lib.cli import study_parser
from bench.lib.configs import RoutingStats
from bench.lib.data import sst2_labelled
from bench.lib.paths import CACHE, LABELS, REFERENCE_TIER2, sst2_file
from bench.lib.results import markdown_table, result_file, write_results
from bench.lib.tiers import load_tier

HALVINGS = 20
ESTIMATE_BUDGET = 0.005
AUDIT_RATE = 0.02


def beam_cascade(*args: str) -> None:
    """Runs one `beam-cascade` command in a fresh process, as a nightly cron would."""
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True,
                   stdout=subprocess.DEVNULL)


def write_inputs(data: str, work: str, base: int, nights: int, night_records: int) -> None:
    """base.jsonl (labelled) and night<k>.jsonl (texts only) from the shuffled phrases."""
    train = sst2_labelled(data, "train.tsv")
    order = list(range(len(train.texts)))
    random.Random(0).shuffle(order)
    if base + nights * night_records > len(order):
        raise SystemExit(f"--base {base} + {nights} x {night_records} exceeds the "
                         f"{len(order)} train phrases")
    with open(os.path.join(work, "base.jsonl"), "w", encoding="utf-8") as f:
        for i in order[:base]:
            f.write(json.dumps({"text": train.texts[i], "label": LABELS[train.label_ids[i]]})
                    + "\n")
    for night in range(1, nights + 1):
        start = base + (night - 1) * night_records
        with open(os.path.join(work, f"night{night}.jsonl"), "w", encoding="utf-8") as f:
            for n, i in enumerate(order[start:start + night_records]):
                f.write(json.dumps({"id": f"n{night}-{n}", "text": train.texts[i]}) + "\n")


def calibrated_config(work: str, night: int, data: str, max_accuracy_drop: float) -> dict:
    """Calibrates night `night`'s tier 1 before tier 2; returns the report's figures."""
    config = os.path.join(work, f"cascade{night}.yaml")
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump({"text_field": "sentence", "label_field": "label", "tiers": [
            {"name": "ngram", "model": os.path.abspath(os.path.join(work, f"tier1-{night}")),
             "threshold": 0.9, "audit_rate": AUDIT_RATE},
            {"name": "minilm6", "model": os.path.abspath(REFERENCE_TIER2)}]}, f)
    report = os.path.join(work, f"report{night}")
    beam_cascade("calibrate", "--config", config, "--dev", sst2_file(data, "dev.tsv"),
                 "--unlabelled", sst2_file(data, "test_unlabeled.tsv"), "--output",
                 os.path.join(work, f"night{night}.yaml"), "--report", report,
                 "--batch_sizes", "64", "--repeats", "1",
                 "--max_accuracy_drop", str(max_accuracy_drop))
    with open(os.path.join(report, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def point_estimate(tier1: str, dev_texts: list[str], labels: torch.Tensor,
                   tier2_right: torch.Tensor) -> tuple[float, float, float]:
    """Tier 1's dev accuracy, and the held-out escalation and drop (points) of the lowest
    max_prob threshold within ESTIMATE_BUDGET on the other half: medians over HALVINGS."""
    probs = load_tier(tier1).logits(dev_texts).softmax(-1)
    right, confidence = probs.argmax(-1) == labels, probs.max(-1).values
    escalations, drops = [], []
    for seed in range(HALVINGS):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        tune, held = order[: len(order) // 2], order[len(order) // 2:]
        target = tier2_right[tune].double().mean() - ESTIMATE_BUDGET
        threshold = next((t for t in sorted(set(confidence[tune].tolist())) + [1.01]
                          if torch.where(confidence[tune] < t, tier2_right[tune],
                                         right[tune]).double().mean() >= target), 1.01)
        escalated = confidence[held] < threshold
        cascade = torch.where(escalated, tier2_right[held], right[held]).double().mean()
        escalations.append(escalated.double().mean().item())
        drops.append(100 * (tier2_right[held].double().mean() - cascade).item())
    return (right.double().mean().item(), statistics.median(escalations),
            statistics.median(drops))


def examples_in(folders: list[str]) -> int:
    """The training examples the jobs wrote into these output folders."""
    count = 0
    for folder in folders:
        for name in os.listdir(folder):
            if name.startswith("training-"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    count += sum(1 for line in f if line.strip())
    return count


def plot(nights: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = [n["night"] for n in nights]
    left.plot(x, [100 * n["guaranteed_escalation"] for n in nights], marker="o",
              label="calibrate's choice (guarantee), dev")
    left.plot(x, [100 * n["estimate_escalation"] for n in nights], marker="s",
              label="point estimate, unseen dev half")
    jobs = [n for n in nights if n["job_escalation"] is not None]
    left.plot([n["night"] for n in jobs], [100 * n["job_escalation"] for n in jobs],
              marker="^", label="the night's job, its own input")
    left.set_xlabel("night (tier 1 retrained after it)")
    left.set_ylabel("escalated to tier 2 (%)")
    left.legend(fontsize=7)
    right.plot(x, [n["guaranteed_drop_dev"] for n in nights], marker="o",
               label="calibrate's choice, dev")
    right.plot(x, [n["guaranteed_bound"] for n in nights], marker="x", label="its 90% bound")
    right.plot(x, [n["estimate_drop"] for n in nights], marker="s",
               label="point estimate, unseen dev half")
    right.set_xlabel("night")
    right.set_ylabel("accuracy drop against tier 2 alone (points)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.nightly", __doc__)
    p.add_argument("--nights", type=int, default=5)
    p.add_argument("--base", type=int, default=17_349, help="labelled phrases of night 0")
    p.add_argument("--night_records", type=int, default=10_000)
    p.add_argument("--max_accuracy_drop", type=float, default=0.5)
    p.add_argument("--word_cnn", action="store_true",
                   help="tier 1 with a word CNN beside the linear model")
    p.add_argument("--work", help="default bench/cache/nightly[-word-cnn]")
    args = p.parse_args(argv)
    name = "nightly-word-cnn" if args.word_cnn else "nightly"
    args.work = args.work or os.path.join(CACHE, name)
    word_cnn = ["--word_vectors", REFERENCE_TIER2] if args.word_cnn else []
    os.makedirs(args.work, exist_ok=True)
    write_inputs(args.data, args.work, args.base, args.nights, args.night_records)
    dev = sst2_labelled(args.data, "dev.tsv")
    labels = torch.tensor(dev.label_ids)
    tier2_right = load_tier(REFERENCE_TIER2).logits(dev.texts).argmax(-1) == labels
    base = os.path.join(args.work, "base.jsonl")
    outputs, nights = [], []
    for night in range(args.nights + 1):
        print(f"bench: night {night}", file=sys.stderr)
        job_escalation = None
        if night:
            out = os.path.join(args.work, f"out{night}")
            beam_cascade("run", "--config", os.path.join(args.work, f"night{night - 1}.yaml"),
                         "--input", os.path.join(args.work, f"night{night}.jsonl"), "--output",
                         out, "--output_format", "jsonl", "--text_field", "text",
                         "--training_examples", "--runner", "FnApiRunner")
            with open(os.path.join(out, "routing_stats.json"), encoding="utf-8") as f:
                job_escalation = RoutingStats.from_json(json.load(f)).tiers[0].escalation_rate
            outputs += ["--from_outputs", out]
        beam_cascade("train", "--kind", "ngram", "--train", base, "--label_names",
                     ",".join(LABELS), "--output", os.path.join(args.work, f"tier1-{night}"),
                     "--overwrite", *word_cnn, *outputs)
        report = calibrated_config(args.work, night, args.data, args.max_accuracy_drop)
        accuracy, estimate_escalation, estimate_drop = point_estimate(
            os.path.join(args.work, f"tier1-{night}"), dev.texts, labels, tier2_right)
        chosen = report["chosen"]
        nights.append({
            "night": night, "examples": examples_in(outputs[1::2]),
            "tier1_accuracy": accuracy, "job_escalation": job_escalation,
            "guaranteed_escalation": chosen["reach"][1],
            "guaranteed_drop_dev": 100 * (report["reference"]["accuracy"] - chosen["accuracy"]),
            "guaranteed_bound": report["bound"]["bound_points"],
            "estimate_escalation": estimate_escalation, "estimate_drop": estimate_drop})
    rows = [[n["night"], n["examples"], f"{n['tier1_accuracy']:.2%}",
             "-" if n["job_escalation"] is None else f"{n['job_escalation']:.1%}",
             f"{n['guaranteed_escalation']:.1%}", f"{n['guaranteed_drop_dev']:+.2f}",
             f"{n['guaranteed_bound']:.2f}", f"{n['estimate_escalation']:.1%}",
             f"{n['estimate_drop']:+.2f}"] for n in nights]
    text = "\n".join([
        "# Five nights of self-improvement (SST-2)", "",
        f"`python -m bench.nightly --nights {args.nights} --base {args.base} --night_records "
        f"{args.night_records} --max_accuracy_drop {args.max_accuracy_drop}"
        f"{' --word_cnn' if args.word_cnn else ''}`: the n-gram tier 1"
        f"{' with a word CNN' if args.word_cnn else ''} "
        f"trained on {args.base} labelled train phrases, then each night a job over "
        f"{args.night_records} unlabelled phrases with `--training_examples`, `train "
        "--from_outputs` on every night so far, `calibrate` on dev with the test sentences as "
        "the unlabelled sample. Tier 2: the reference MiniLM-L6.", "",
        markdown_table(["night", "examples from the jobs", "tier 1 dev accuracy",
                        "job escalation (its input, last night's threshold)",
                        "escalation (calibrate, dev)", "drop (calibrate, dev)",
                        "90% bound (points)", "escalation (estimate, unseen half)",
                        "drop (estimate, unseen half)"], rows),
        "", f"![nightly]({name}.png)"]) + "\n"
    write_results(args.results, name, text, nights)
    plot(nights, result_file(args.results, name, "png"))


if __name__ == "__main__":
    main()
