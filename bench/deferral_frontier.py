"""Which tier 1 knows what it does not know: plain and distilled tiers, routed by max_prob and
by a learned router, in the tier 1 -> MiniLM-L6 cascade on SST-2 (issue: learned deferral).

    python -m bench.deferral_frontier [--data ../shared/data/sst2] [--splits 20]
        [--tier1 NAME=FOLDER ...]

Tiers 1 (default): the plain n-gram tier (bench/cache/sst2-ngram), the n-gram tier distilled
from the reference tier 2 over the train phrases (bench/cache/sst2-ngram-distilled-t1, made by
bench.distillation), the same with a word CNN of width 32 and of width 64 beside it
(bench/cache/sst2-ngram-cnn<W>-distilled, models/word_cnn.py, also made by
bench.distillation) and the reference tier 2's first layer distilled from it over the train
phrases (bench/cache/sst2-minilm-l1-distilled, trained here when absent, ~30 minutes). No
tier 1 saw the dev or test sentences.

Each of --splits rounds splits the 1,821 unlabelled test sentences in two halves (the router
is fitted on one, the guarantee counts disagreements on the other) and the 872 dev sentences
in two halves (one tunes, the other is unseen), and for each tier 1 and routing:
  - calibrate's choice: the temperature fitted on the tuning half, the cheapest threshold
    whose 90% bound on the accuracy drop against tier 2 alone is within 0.5 points
    (models/guarantee.py, the held-out unlabelled half as the disagreement sample);
  - the point estimate: the lowest threshold within 0.5 points on the tuning half (no bound);
each replayed on the unseen dev half: escalation and drop there. max_prob is also given the
whole unlabelled set (it needs none to fit), which is what it gets from calibrate.
Medians over the rounds. Also, as the probe and issue 22 counted it: the escalation at the
lowest max_prob threshold within 0.5 points on all of dev (in sample, no bound). Costs: bare
loops over the 2,693 dev + test sentences (tier 2 on PyTorch in passes of 32 sorted by
length, n-gram tiers in calls of 1,024 in input order, the 1-layer MiniLM in passes of 64
sorted), medians of --repeats rounds interleaved after a warm-up round (which also makes the
word CNNs' word vectors, as a long job has them); the speed bound is tier 2's cost / (tier
1's cost + the guaranteed escalation x tier 2's). Writes deferral_frontier.{md,json,png} into
--results (default bench/results).
"""
from __future__ import annotations

import statistics
import sys

import torch

from bench.lib.cli import study_parser
from bench.lib.data import LabelledTexts, UnlabelledTexts, read_unlabelled, sst2_labelled
from bench.lib.guarantees import guarantee_search
from bench.lib.paths import LABELS, REFERENCE_TIER2, sst2_file
from bench.lib.results import markdown_table, result_file, write_results
from bench.lib.scoring import (TierOutputs, calibrate, deferral_inputs, fit_router,
                               lowest_threshold, ranking_auc, replay)
from bench.lib.tiers import (NgramTier, distilled_pair, distilled_tier, distilled_transformer,
                             load_tier, tier1_model)
from bench.lib.timing import interleaved_medians, load_for_timing, scoring_seconds

BUDGET = 0.005  # half a point
CONFIDENCE = 0.9  # calibrate's default
ROUTINGS = ("max_prob, all unlabelled", "max_prob", "learned")
TIER2 = "tier 2"
NOMINAL_COSTS = [0.01, 1.0]  # per record, tier 1 and tier 2: the cheaper point is the one
# escalating less, whatever the true costs (the speed bound uses the measured ones)


class Tier1:
    """A tier 1's logits and router features on dev and the unlabelled sentences."""

    def __init__(self, folder: str, dev: LabelledTexts, unlabelled: UnlabelledTexts):
        model = load_tier(folder, device="cpu")
        self.dev_logits = model.logits(dev.texts)
        self.unlabelled_logits = model.logits(unlabelled.texts)
        self.dev_inputs = deferral_inputs(model, self.dev_logits, dev.texts)
        self.unlabelled_inputs = deferral_inputs(model, self.unlabelled_logits,
                                                 unlabelled.texts)


def outputs(logits: torch.Tensor, temperature: float,
            confidences: torch.Tensor | None = None) -> TierOutputs:
    probs = torch.softmax(logits / temperature, -1)
    top = probs.max(-1).values
    return TierOutputs(probs.argmax(-1), top if confidences is None else confidences, top)


def one_round(tier1: Tier1, tier2_dev: torch.Tensor, tier2_unlabelled: torch.Tensor,
              labels: torch.Tensor, seed: int) -> dict[str, dict]:
    """Every routing's choices for one split of dev and of the unlabelled sentences."""
    generator = torch.Generator().manual_seed(seed)
    dev_order = torch.randperm(len(labels), generator=generator)
    tune, unseen = dev_order[: len(labels) // 2], dev_order[len(labels) // 2:]
    unlabelled_order = torch.randperm(len(tier2_unlabelled), generator=generator)
    fit_part, held = unlabelled_order[: len(unlabelled_order) // 2], \
        unlabelled_order[len(unlabelled_order) // 2:]
    temperature = calibrate(tier1.dev_logits[tune], labels[tune]).temperature
    disagrees = tier1.unlabelled_logits.argmax(-1) != tier2_unlabelled.argmax(-1)
    router = fit_router("tier1", LABELS, tier1.unlabelled_inputs[fit_part], disagrees[fit_part])
    learned_dev = router.confidences(tier1.dev_inputs)
    learned_unlabelled = router.confidences(tier1.unlabelled_inputs)
    last_dev, last_unlabelled = outputs(tier2_dev, 1.0), outputs(tier2_unlabelled, 1.0)
    held_max_prob = torch.softmax(tier1.unlabelled_logits[held], -1).max(-1).values
    results = {}
    for routing in ROUTINGS:
        learned = routing == "learned"
        dev_tier1 = outputs(tier1.dev_logits, temperature, learned_dev if learned else None)
        sample = held if routing != "max_prob, all unlabelled" else unlabelled_order
        unlabelled_tier1 = outputs(tier1.unlabelled_logits[sample], temperature,
                                   learned_unlabelled[sample] if learned else None)
        results[routing] = {
            **guaranteed_choice(dev_tier1, last_dev, labels, tune, unseen, unlabelled_tier1,
                                subset(last_unlabelled, sample)),
            **point_estimate(dev_tier1, last_dev, labels, tune, unseen),
            "auc": ranking_auc(-(learned_unlabelled[held] if learned else held_max_prob),
                               disagrees[held])}
    return results


def subset(tier: TierOutputs, rows: torch.Tensor) -> TierOutputs:
    return TierOutputs(tier.predictions[rows], tier.confidences[rows], tier.max_probs[rows])


def guaranteed_choice(tier1: TierOutputs, tier2: TierOutputs, labels: torch.Tensor,
                      tune: torch.Tensor, unseen: torch.Tensor, unlabelled_tier1: TierOutputs,
                      unlabelled_tier2: TierOutputs) -> dict:
    """calibrate's choice on the tuning half, replayed on the unseen half."""
    search = guarantee_search([subset(tier1, tune), subset(tier2, tune)], labels[tune],
                              [unlabelled_tier1, unlabelled_tier2], NOMINAL_COSTS, CONFIDENCE,
                              BUDGET)
    chosen = search.chosen
    threshold = chosen.point.thresholds[0] if chosen else 1.01
    escalation, drop = on_unseen(tier1, tier2, labels, unseen, threshold)
    return {"guaranteed_escalation": escalation, "guaranteed_drop": drop}


def point_estimate(tier1: TierOutputs, tier2: TierOutputs, labels: torch.Tensor,
                   tune: torch.Tensor, unseen: torch.Tensor) -> dict:
    """The lowest threshold within BUDGET on the tuning half, replayed on the unseen half."""
    tuned = [subset(tier1, tune), subset(tier2, tune)]
    target = (tier2.predictions[tune] == labels[tune]).double().mean().item() - BUDGET
    threshold = next((t for t in sorted(set(tier1.confidences[tune].tolist())) + [1.01]
                      if replay(tuned, labels[tune], (t,), NOMINAL_COSTS).accuracy >= target),
                     1.01)
    escalation, drop = on_unseen(tier1, tier2, labels, unseen, threshold)
    return {"estimate_escalation": escalation, "estimate_drop": drop}


def on_unseen(tier1: TierOutputs, tier2: TierOutputs, labels: torch.Tensor,
              unseen: torch.Tensor, threshold: float) -> tuple[float, float]:
    """Escalation and accuracy drop (points) against tier 2 alone on the unseen half."""
    point = replay([subset(tier1, unseen), subset(tier2, unseen)], labels[unseen],
                   (threshold,), NOMINAL_COSTS)
    alone = (tier2.predictions[unseen] == labels[unseen]).double().mean().item()
    return point.reach[1], 100 * (alone - point.accuracy)


def summarise(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Medians over the rounds, and the share of rounds whose unseen drop exceeds BUDGET."""
    summary = {}
    for routing in ROUTINGS:
        values = [r[routing] for r in rounds]
        summary[routing] = {key: statistics.median(v[key] for v in values) for key in values[0]}
        summary[routing]["guaranteed_broken"] = sum(
            v["guaranteed_drop"] > 100 * BUDGET for v in values) / len(values)
    return summary


def frontier(tier1: TierOutputs, tier2_dev: torch.Tensor, labels: torch.Tensor
             ) -> list[tuple[float, float]]:
    """(escalation, dev accuracy) at thresholds on every percentile of the confidences:
    the curve the plot shows."""
    thresholds = torch.quantile(tier1.confidences.double(),
                                torch.linspace(0, 1, 101, dtype=torch.double)).tolist()
    points = [replay([tier1, outputs(tier2_dev, 1.0)], labels, (t,), NOMINAL_COSTS)
              for t in thresholds + [1.01]]
    return [(p.reach[1], p.accuracy) for p in points]


def learned_dev_confidences(tier1: Tier1, tier2_unlabelled: torch.Tensor,
                            seed: int) -> torch.Tensor:
    """Round `seed`'s router (as in `one_round`) scoring the dev sentences."""
    generator = torch.Generator().manual_seed(seed)
    torch.randperm(len(tier1.dev_logits), generator=generator)  # the dev split comes first
    order = torch.randperm(len(tier2_unlabelled), generator=generator)
    fit_part = order[: len(order) // 2]
    disagrees = tier1.unlabelled_logits.argmax(-1) != tier2_unlabelled.argmax(-1)
    return fit_router("tier1", LABELS, tier1.unlabelled_inputs[fit_part],
                      disagrees[fit_part]).confidences(tier1.dev_inputs)


def plot(curves: dict[str, list[tuple[float, float]]], tier2_accuracy: float,
         path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        ax.plot([100 * e for e, _ in curve], [100 * a for _, a in curve], label=name,
                linestyle="--" if name.endswith("learned") else "-")
    ax.axhline(100 * tier2_accuracy, color="grey", linewidth=0.8, label="tier 2 alone")
    ax.axhline(100 * tier2_accuracy - 0.5, color="grey", linewidth=0.8, linestyle=":",
               label="0.5 points below")
    ax.set_xlabel("escalated to tier 2 (% of dev)")
    ax.set_ylabel("cascade accuracy on dev (%)")
    ax.set_ylim(100 * tier2_accuracy - 6, 100 * tier2_accuracy + 1)
    ax.legend(fontsize=7)
    ax.set_title("SST-2 dev: tier 1 -> MiniLM-L6 (router fitted on half the test sentences)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def bare_loop_seconds(candidates: dict[str, str], texts: list[str], repeats: int
                      ) -> dict[str, float]:
    """Each tier's bare-loop seconds over `texts` (and tier 2's, as TIER2), interleaved."""
    tiers = {TIER2: load_for_timing(REFERENCE_TIER2, device="cpu"),
             **{name: load_for_timing(folder, device="cpu")
                for name, folder in candidates.items()}}
    ngram = {name for name, tier in tiers.items() if isinstance(tier, NgramTier)}
    return interleaved_medians(
        {name: lambda tier=tier, name=name: (
            scoring_seconds(tier, texts, 1024, sort_by_length=False) if name in ngram
            else scoring_seconds(tier, texts, 32 if name == TIER2 else 64))
         for name, tier in tiers.items()}, repeats)


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.deferral_frontier", __doc__)
    p.add_argument("--splits", type=int, default=20, help="rounds of random halvings")
    p.add_argument("--tier1", action="append", default=[], metavar="NAME=FOLDER",
                   help="tier 1 candidates (default: plain and distilled n-gram, the distilled "
                        "n-gram with word CNNs of width 32 and 64, distilled MiniLM-L1)")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (medians)")
    args = p.parse_args(argv)
    candidates = dict(item.split("=", 1) for item in args.tier1) or {
        "n-gram": tier1_model(None, args.data),
        "n-gram, distilled": distilled_tier(args.data, 1.0),
        "n-gram + word CNN 32, distilled": distilled_pair(args.data, 32),
        "n-gram + word CNN 64, distilled": distilled_pair(args.data, 64),
        "MiniLM 1 layer, distilled": distilled_transformer(args.data)}
    dev = sst2_labelled(args.data, "dev.tsv")
    unlabelled = read_unlabelled([sst2_file(args.data, "test_unlabeled.tsv")], "sentence")
    labels = torch.tensor(dev.label_ids)
    tier2 = load_tier(REFERENCE_TIER2, device="cpu")
    tier2_dev, tier2_unlabelled = tier2.logits(dev.texts), tier2.logits(unlabelled.texts)
    tier2_accuracy = (tier2_dev.argmax(-1) == labels).double().mean().item()
    seconds = bare_loop_seconds(candidates, dev.texts + unlabelled.texts, args.repeats)
    tier2_seconds = seconds.pop(TIER2)
    record, rows, curves = {}, [], {}
    for name, folder in candidates.items():
        print(f"bench: {name} ({folder})", file=sys.stderr)
        tier1 = Tier1(folder, dev, unlabelled)
        right = tier1.dev_logits.argmax(-1) == labels
        confidence = tier1.dev_logits.softmax(-1).max(-1).values
        in_sample = confidence < lowest_threshold(confidence, right,
                                                  tier2_dev.argmax(-1) == labels, BUDGET)
        summary = summarise([one_round(tier1, tier2_dev, tier2_unlabelled, labels, seed)
                             for seed in range(args.splits)])
        record[name] = {"folder": folder, "accuracy": right.double().mean().item(),
                        "oracle_escalation": (~right).double().mean().item(),
                        "escalation_all_dev": in_sample.double().mean().item(),
                        "cheaper_than_tier2": tier2_seconds / seconds[name],
                        "routings": summary}
        for routing, r in summary.items():
            bound = tier2_seconds / (seconds[name] + r["guaranteed_escalation"] * tier2_seconds)
            r["speed_bound"] = bound
            rows.append([name, routing, f"{record[name]['accuracy']:.2%}",
                         f"{record[name]['oracle_escalation']:.1%}",
                         f"{record[name]['escalation_all_dev']:.1%}", f"{r['auc']:.3f}",
                         f"{r['guaranteed_escalation']:.1%}", f"{r['guaranteed_drop']:+.2f}",
                         f"{r['guaranteed_broken']:.0%}", f"{r['estimate_escalation']:.1%}",
                         f"{r['estimate_drop']:+.2f}", f"{bound:.2f}x",
                         f"{tier2_seconds / seconds[name]:.0f}x"])
        curves[f"{name}, max_prob"] = frontier(outputs(tier1.dev_logits, 1.0), tier2_dev, labels)
        curves[f"{name}, learned"] = frontier(
            outputs(tier1.dev_logits, 1.0, learned_dev_confidences(tier1, tier2_unlabelled, 0)),
            tier2_dev, labels)
    text = "\n".join([
        "# Tier 1 routing frontier: plain and distilled tiers, max_prob and learned deferral",
        "", f"`python -m bench.deferral_frontier --splits {args.splits} --repeats "
        f"{args.repeats}`: SST-2, tier 2 the "
        f"reference MiniLM-L6 ({tier2_accuracy:.2%} dev). Medians over {args.splits} rounds; "
        "each round halves dev (tune / unseen) and the 1,821 test sentences (router fit / "
        "disagreement sample). Guaranteed: calibrate's rule (90% bound on the drop within 0.5 "
        "points) on the tuning half; estimate: lowest threshold within 0.5 points on the "
        "tuning half, no bound; both replayed on the unseen half. AUC: how well the routing "
        "ranks the held-out test sentences tier 2 answers otherwise (0.5 is chance). Speed "
        "bound: bare loops over dev + test (medians of interleaved rounds after a warm-up), "
        "tier 2's cost over tier 1's plus the guaranteed escalation's.", "",
        markdown_table(["tier 1", "routing", "accuracy alone", "oracle escalation",
                        "escalation within 0.5 (all dev, max_prob, in sample)", "AUC",
                        "escalation (guaranteed)", "drop (guaranteed, unseen)",
                        "rounds over 0.5", "escalation (estimate)", "drop (estimate, unseen)",
                        "speed bound vs tier 2", "tier 1 cheaper by"], rows),
        "", "![frontier](deferral_frontier.png)"]) + "\n"
    write_results(args.results, "deferral_frontier", text,
                  {"splits": args.splits, "tier2_accuracy": tier2_accuracy,
                   "tier2_seconds": tier2_seconds, "tiers": record})
    plot(curves, tier2_accuracy, result_file(args.results, "deferral_frontier", "png"))


if __name__ == "__main__":
    main()
