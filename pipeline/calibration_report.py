"""What `beam-cascade calibrate` writes besides the config: report.md, report.json, a
reliability diagram per tier and the accuracy/speedup frontier, as PNGs."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import torch

from models.calibration import ECE_BINS, reliability
from models.guarantee import DropBound, GuaranteeSearch, accepted_prefix
from models.records_bound import RecordsDropBound
from models.operating_points import OperatingPoint, TierOutputs
from models.tuning.results import (ExitReport, FallbackChoice, LengthMeasurements, TierReport,
                                   TuningResult)
from models.tuning.runtime_choice import RuntimeVariant


FRONTIER_ROWS = 30  # per frontier table in report.md; report.json holds every point
BUDGETS = (0.25, 0.5, 1.0, 2.0, 5.0)  # points; the budget table of the guarantee section


def write_report(result: TuningResult, report_dir: str) -> str:
    """Writes the report files; returns its summary (report.md without the frontier tables)
    for the command to print."""
    os.makedirs(report_dir, exist_ok=True)
    summary = report_summary(result)
    with open(os.path.join(report_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(summary + frontier_tables(result))
    with open(os.path.join(report_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report_json(result), f, indent=1)
    for name, (raw, calibrated) in result.reliability.items():
        plot_reliability(name, raw, calibrated, result.labels,
                         os.path.join(report_dir, f"reliability-{name}.png"))
    plot_frontier(result, os.path.join(report_dir, "frontier.png"))
    return summary


def report_json(result: TuningResult) -> dict[str, Any]:
    """Everything measured, without the per-record tensors."""
    point = _point_dict
    return {
        "dev_records": result.dev_records, "policy": dataclasses.asdict(result.policy),
        "tiers": [_tier_dict(t) for t in result.tiers], "reference": point(result.reference),
        "chosen": point(result.chosen), "bound": bound_dict(result.bound),
        "unlabelled_records": result.unlabelled_records,
        "smallest_supported_budget_points": 100 * result.guarantee.smallest_budget,
        "point_estimate_choice": point(result.point_estimate) if result.point_estimate else None,
        "budgets": [{"budget_points": b, "chosen": point(p.point), "bound": bound_dict(p.bound)}
                    for b, p in budget_choices(result.guarantee) if p],
        "split_half": dataclasses.asdict(result.split_half),
        "int8_fallback": dataclasses.asdict(result.fallback) if result.fallback else None,
        "frontier": [point(p) for p in result.frontier],
        "frontier_uncalibrated": [point(p) for p in result.frontier_uncalibrated],
    }


def _tier_dict(tier: TierReport) -> dict[str, Any]:
    """A tier's report, without the exits and lengths a tier does not have, and of a learned
    router what it is and how it ranks, not its per-record confidences."""
    learned = tier.learned
    plain = dataclasses.replace(tier, learned=None)
    return {**{key: value for key, value in dataclasses.asdict(plain).items()
               if value is not None or key not in ("exits", "lengths", "reached", "runtimes",
                                                   "learned")},
            **({"learned": {"router": dataclasses.asdict(learned.router),
                            "held_out": learned.held_out, "auc_learned": learned.auc_learned,
                            "auc_max_prob": learned.auc_max_prob}} if learned else {})}


def _point_dict(point: OperatingPoint) -> dict[str, Any]:
    return {**dataclasses.asdict(point), "escalation": point.escalation}


def bound_dict(bound: DropBound) -> dict[str, Any]:
    """A drop bound's evidence and its value, in points."""
    extra = ({"disagreement_bound": bound.disagreement_bound,
              "wrong_share_bound": bound.wrong_share_bound}
             if isinstance(bound, DropBound) else {})
    return {**dataclasses.asdict(bound), **extra, "bound_points": 100 * bound.bound,
            "source": bound.source}


def budget_choices(search: GuaranteeSearch) -> list[tuple[float, Any]]:
    """For each of BUDGETS (points), the cheapest point the guarantee accepts, or None."""
    return [(b, min(accepted_prefix(search.path, b / 100), key=lambda p: p.point.cost,
                    default=None)) for b in BUDGETS]


def slower_than_last_tier(result: TuningResult) -> str | None:
    """What to do when the chosen cascade costs more per record than its last tier alone
    (the earlier tiers decide too few records to pay for running on all of them); None
    when it pays off."""
    chosen, names = result.chosen, [t.name for t in result.tiers]
    if chosen.speedup >= 1:
        return None
    decided = 1 - chosen.reach[1]
    return (f"the tuned cascade is slower than its last tier {names[-1]!r} alone "
            f"({chosen.speedup:.2f}x the speed): {names[0]!r} decides {decided:.1%} of the dev "
            f"records at the policy, too few to pay for scoring them all. Run {names[-1]!r} "
            "alone (a config with that tier only), or give the cascade a first tier that is "
            "sure more often (docs/training-and-calibration.md)")


def policy_summary(policy) -> dict:
    """The policy's settings as a report shows them: the label requests by how many were
    answered and their evidence (the records themselves are in the request files)."""
    shown = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)
             if getattr(policy, f.name) is not None and f.name != "requests"}
    if policy.requests is not None:
        shown["requests"] = (f"{len(policy.requests.labels)} labelled, evidence "
                             f"{policy.requests.evidence}")
    return shown


def report_summary(result: TuningResult) -> str:
    chosen, reference = result.chosen, result.reference
    names = [t.name for t in result.tiers]
    lines = [
        "# Calibration report", "",
        f"{result.dev_records} labelled dev records; policy {policy_summary(result.policy)}.",
        "",
        "Each tier's temperature is fitted on the dev records it sees in the cascade: all of "
        "them for the first tier, those that reach it at the chosen thresholds for the later "
        "ones (next table); accuracy, NLL and ECE are on those records.", "",
        "| tier | accuracy | temperature | NLL before | NLL after | ECE before | ECE after "
        "| batch size | ms/record |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in result.tiers:
        c = t.calibration
        lines.append(
            f"| {t.name} | {c.accuracy:.2%} | {c.temperature:.3f} | "
            f"{c.nll_before:.4f} | {c.nll_after:.4f} | {c.ece_before:.4f} | "
            f"{c.ece_after:.4f} | {t.batch_size} | "
            f"{1000 * t.seconds_per_record[t.batch_size]:.3f} |")
    lines += reached_table(result.tiers)
    lines += router_table(result.tiers)
    for t in result.tiers:
        if t.exits:
            lines += exit_tables(t.name, t.exits)
        if t.lengths:
            lines += length_table(t.name, t.lengths)
        if t.runtimes:
            lines += runtime_table(t.name, t.runtimes)
    lines += fallback_lines(result.fallback)
    lines += [
        "", "## Chosen operating point", "",
        f"- thresholds: {dict(zip(names, chosen.thresholds))}",
        f"- accuracy {chosen.accuracy:.2%} against {reference.accuracy:.2%} for the last tier "
        f"alone: {100 * (chosen.accuracy - reference.accuracy):+.2f} points",
        f"- expected speedup over the last tier alone: {chosen.speedup:.2f}x (from the costs "
        "measured here; the later tiers timed on the records that reach them)",
        *([f"- **warning**: {warning}"] if (warning := slower_than_last_tier(result)) else []),
        f"- share of records reaching each tier: "
        f"{', '.join(f'{n} {r:.1%}' for n, r in zip(names, chosen.reach))}",
        f"- label-free estimate of the accuracy (mean calibrated confidence of the deciding "
        f"tiers): {chosen.estimated_accuracy:.2%}, true {chosen.accuracy:.2%}",
        *guarantee_section(result),
        "", "## Split-half check", "",
        f"Tuned on a random half of dev (seed {result.split_half.seed}), replayed on the "
        f"other: thresholds {list(result.split_half.thresholds)}.", "",
        "| half | records | cascade accuracy | last tier alone | drop (points) | speedup "
        "| estimated accuracy |", "|---|---|---|---|---|---|---|",
    ]
    for half in ("tuned", "held_out"):
        h = getattr(result.split_half, half)
        lines.append(f"| {half} | {h.records} | {h.accuracy:.2%} | "
                     f"{h.last_tier_accuracy:.2%} | {h.accuracy_drop_points:.2f} | "
                     f"{h.speedup:.2f}x | {h.estimated_accuracy:.2%} |")
    return "\n".join(lines) + "\n"


def router_table(tiers: list[TierReport]) -> list[str]:
    """Learned routers: what they were fitted on and how well they rank, on unlabelled
    records they never saw, the records the last tier answers otherwise (AUC; 0.5 is
    chance), against max_prob's ranking of the same records."""
    learned = [t for t in tiers if t.learned]
    if not learned:
        return []
    lines = ["", "Learned routers (confidence: learned), fitted on part of the unlabelled "
             "sample; the AUC of ranking the records the last tier answers otherwise is "
             "measured on the rest, which every figure below also uses:", "",
             "| tier | fitted on | disagreements | held out | AUC router | AUC max_prob |",
             "|---|---|---|---|---|---|"]
    for t in learned:
        r = t.learned
        lines.append(f"| {t.name} | {r.router.fitted_on} | {r.router.disagreements} | "
                     f"{r.held_out} | {r.auc_learned:.3f} | {r.auc_max_prob:.3f} |")
    return lines


def reached_table(tiers: list[TierReport]) -> list[str]:
    """Later tiers on the records that reach them: calibrated on all dev records against on
    those records (ECE and the label-free estimate there, next to the true accuracy)."""
    reached = [t for t in tiers if t.reached]
    if not reached:
        return []
    lines = ["", "On the dev records that reach each later tier at the chosen thresholds:", "",
             "| tier | records | accuracy | temperature (all records -> these) | ECE | "
             "estimated accuracy |", "|---|---|---|---|---|---|"]
    for t in reached:
        r = t.reached
        fitted = (f"{r.temperature_reached:.3f}" if r.temperature_reached is not None
                  else "kept: too few records or errors to fit on")
        lines.append(f"| {t.name} | {r.records} | {r.accuracy:.2%} | "
                     f"{r.temperature_all:.3f} -> {fitted} | {r.ece_all:.4f} -> "
                     f"{r.ece_reached:.4f} | {r.estimate_all:.2%} -> {r.estimate_reached:.2%} |")
    return lines


def guarantee_section(result: TuningResult) -> list[str]:
    """The bound at the chosen point, what it rests on, and what other budgets would cost."""
    bound, search = result.bound, result.guarantee
    confidence = f"{search.confidence:.0%}"
    data = (f"labels requested on {result.unlabelled_records} unlabelled records"
            if isinstance(bound, RecordsDropBound) else
            f"the disagreement rate measured on {result.unlabelled_records} unlabelled records"
            if result.unlabelled_records else
            f"the {result.dev_records} labelled dev records alone (give --unlabelled to "
            "tighten it)")
    lines = [
        "", "## Guarantee", "",
        f"At {confidence} confidence the accuracy drop against the last tier alone is at "
        f"most **{100 * bound.bound:.2f} points** at the chosen thresholds (dev shows "
        f"{100 * (result.reference.accuracy - result.chosen.accuracy):+.2f}). The bound rests "
        f"on {data}: {bound.describe()}",
        "",
        f"The smallest budget this data supports at {confidence}: "
        f"{100 * search.smallest_budget:.2f} points.",
    ]
    if result.point_estimate is not None:
        p = result.point_estimate
        lines += ["", f"Without the guarantee (dev accuracy alone, as if exact) the budget "
                  f"would pick thresholds {list(p.thresholds)}: {p.reach[-1]:.1%} reaching the "
                  f"last tier against {result.chosen.reach[-1]:.1%} with it, a promise that "
                  "holds on dev but often not on new data."]
    lines += ["", "| budget (points) | cheapest accepted threshold | bound | dev drop | "
              "reaching the last tier | speedup |", "|---|---|---|---|---|---|"]
    for budget, p in budget_choices(search):
        if p is None:
            lines.append(f"| {budget} | none: not supported by this data | | | | |")
            continue
        lines.append(f"| {budget} | {', '.join(map(str, p.point.thresholds))} | "
                     f"{100 * p.bound.bound:.2f} | "
                     f"{100 * (result.reference.accuracy - p.point.accuracy):+.2f} | "
                     f"{p.point.reach[-1]:.1%} | {p.point.speedup:.2f}x |")
    return lines


def exit_tables(name: str, exits: ExitReport) -> list[str]:
    """A multi-exit tier's exits (accuracy, temperature, ECE) and its early-exit knob."""
    threshold = exits.exit_threshold
    lines = ["", f"## Early exit: {name}", "",
             f"exit_threshold: {threshold} (the tier was measured exiting early at it)"
             if threshold is not None else
             "exit_threshold is not set, so the tier runs all its layers; set it to use the "
             "knob below (the fitted exit_temperatures are in the tuned config).", "",
             "| exit (layer) | accuracy | temperature | ECE before | ECE after |",
             "|---|---|---|---|---|"]
    lines += [f"| {layer} | {c.accuracy:.2%} | {c.temperature:.3f} | "
              f"{c.ece_before:.4f} | {c.ece_after:.4f} |"
              for layer, c in zip(exits.layers, exits.calibrations)]
    lines += ["", "| exit_threshold | accuracy | layers run (share of all) | records per exit |",
              "|---|---|---|---|"]
    for p in exits.sweep:
        shares = ", ".join(f"{layer}: {share:.0%}"
                           for layer, share in zip(exits.layers, p.share_per_exit))
        lines.append(f"| {'never' if p.threshold > 1 else p.threshold} | "
                     f"{p.accuracy:.2%} | {p.layer_share:.1%} | {shares} |")
    return lines


def length_table(name: str, lengths: LengthMeasurements) -> list[str]:
    """A token-dropping tier's length configurations, cheapest first, and the choice."""
    chosen = lengths.chosen
    lines = ["", f"## Token dropping: {name}", "",
             f"Budget {lengths.budget:.0%} of the full model's token-layers; chosen "
             f"keep_tokens {list(chosen.keep) or 'all'}: {chosen.accuracy:.2%} at "
             f"{chosen.compute_share:.0%}.", "",
             "| keep_tokens (after layers 1, 2, ...) | accuracy | token-layers (share) |",
             "|---|---|---|"]
    for p in sorted(lengths.points, key=lambda p: p.compute_share):
        keep = ", ".join(f"{k:g}" for k in p.keep) or "all (full model)"
        lines.append(f"| {keep} | {p.accuracy:.2%} | {p.compute_share:.1%} |")
    return lines


def fallback_lines(fallback: FallbackChoice | None) -> list[str]:
    """Whether the int8 copy of the last tier (--int8_fallback) stayed, and why."""
    if fallback is None:
        return []

    def ms(seconds: float | None) -> str:
        return "no point meets the policy" if seconds is None else f"{1000 * seconds:.3f} ms"

    return ["", f"## int8 fallback: {fallback.name}", "",
            f"The int8 copy of the last tier was {'kept' if fallback.kept else 'left out'}: "
            f"expected cost per record at the policy {ms(fallback.seconds_with)} with it, "
            f"{ms(fallback.seconds_without)} without it."]


def runtime_table(name: str, variants: list[RuntimeVariant]) -> list[str]:
    """A tier's runtimes and precisions as measured on dev, and the one chosen."""
    lines = ["", f"## Runtimes: {name}", "",
             "Each way to run the tier, on the dev records; agreement and the bound are against "
             "PyTorch fp32 (the bound: upper confidence bound on the accuracy lost; int8 is "
             "kept only within --max_int8_drop).", "",
             "| runtime | accuracy | agreement | drop bound (points) | ms/record | speed "
             "| chosen |",
             "|---|---|---|---|---|---|---|"]
    base = variants[0].seconds_per_record
    lines += [f"| {v.name} | {v.accuracy:.2%} | {v.agreement:.2%} | {v.drop_bound_points:.2f} "
              f"| {1000 * v.seconds_per_record:.3f} | {base / v.seconds_per_record:.2f}x | "
              f"{'yes' if v.chosen else ''} |" for v in variants]
    return lines


def frontier_tables(result: TuningResult) -> str:
    """Both frontiers, cheapest first, thinned to FRONTIER_ROWS rows each (the last kept)."""
    lines = []
    for title, key in (("Frontier, calibrated", "frontier"),
                       ("Frontier, uncalibrated (temperature 1)", "frontier_uncalibrated")):
        points = getattr(result, key)
        step = -(-len(points) // FRONTIER_ROWS)
        shown = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
        lines += ["", f"## {title}", "", f"{len(points)} points, {len(shown)} shown.", "",
                  "| thresholds | accuracy | speedup | reaching the last tier |",
                  "|---|---|---|---|"]
        lines += [f"| {', '.join(f'{t:.4f}' for t in p.thresholds)} | {p.accuracy:.2%} | "
                  f"{p.speedup:.2f}x | {p.reach[-1]:.1%} |" for p in shown]
    return "\n".join(lines) + "\n"


def plot_reliability(name: str, raw: TierOutputs, calibrated: TierOutputs,
                     labels: torch.Tensor, path: str) -> None:
    """Accuracy against confidence per bin, before and after temperature scaling, above the
    number of records in each bin (a bin of three records says little)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5, 6.5), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    width = 0.5 / ECE_BINS
    for i, (outputs, label, marker) in enumerate(((raw, "temperature 1", "o"),
                                                  (calibrated, "fitted temperature", "s"))):
        bins = reliability(outputs.max_probs, outputs.predictions == labels)
        ax.plot(bins.confidence, bins.accuracy, marker=marker, label=label)
        counts.bar([c + (i - 0.5) * width for c in bins.confidence], bins.count, width=width,
                   label=label)
    lowest = 1.0 / max(2, int(labels.max()) + 1)
    ax.set(xlim=(lowest, 1), ylim=(0, 1), ylabel="accuracy", title=f"Reliability: {name}")
    ax.legend(loc="upper left")
    counts.set(xlabel="confidence (max probability)", ylabel="records per bin")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_frontier(result: TuningResult, path: str) -> None:
    """Accuracy against expected speedup: both frontiers, the reference and the choice."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FormatStrFormatter

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for key, label, style, width in (("frontier_uncalibrated", "temperature 1", "-", 6),
                                     ("frontier", "calibrated", "--", 1.5)):
        points = getattr(result, key)  # the first drawn wide and pale, so both always show
        ax.plot([p.speedup for p in points], [100 * p.accuracy for p in points],
                linestyle=style, linewidth=width, alpha=0.4 if width > 2 else 1.0,
                marker=".", label=f"frontier, {label}")
    if [(p.speedup, p.accuracy) for p in result.frontier] == [
            (p.speedup, p.accuracy) for p in result.frontier_uncalibrated]:
        ax.text(0.98, 0.02, "the two frontiers coincide: a temperature keeps the order of "
                "a binary\ntask's confidences, so it moves the thresholds, not the points",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7)
    reference, chosen = result.reference, result.chosen
    ax.scatter([1.0], [100 * reference.accuracy], color="black", zorder=3,
               label="last tier alone")
    ax.scatter([chosen.speedup], [100 * chosen.accuracy], color="red", marker="*", s=150,
               zorder=3, label="chosen")
    ax.set(xscale="log", xlabel="expected speedup over the last tier alone (log)",
           ylabel="dev accuracy (%)", title="Cascade operating points")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))  # 1.2x, not 1.2 x 10^0
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%gx"))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
