"""A short human-readable account of a run, printed by `beam-cascade run` at the end."""
from __future__ import annotations

from models.routing_stats import InputCalibration, RoutingStats, ThresholdRange


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_summary(stats: RoutingStats | None, output: str) -> str:
    """The routing statistics as a small table, then where the outputs are. None: a
    streaming job stopped before any window closed."""
    if stats is None:
        return (f"no window closed before the job stopped: nothing written to {output}; "
                "records in open windows are classified again when the job restarts")
    windows = (f" in {stats.windows} windows, {stats.window.start} to {stats.window.end}"
               if stats.windows is not None else "")
    errors = f" {stats.errors_by_stage}" if stats.errors else ""
    unread = (f"; {stats.files_unread} input file(s) not read to the end"
              if stats.files_unread else "")
    lines = [
        f"records {stats.records}{windows}: {stats.predictions} predicted, "
        f"{stats.errors} errors{errors}{unread}",
        f"{'tier':<12}{'seen':>9}{'decided':>9}{'escal.':>8}{'share':>8}"
        f"{'mean conf':>10}{'accuracy':>10}{'ms/rec':>8}",
    ]
    for t in stats.tiers:
        lines.append(
            f"{t.name:<12}{t.seen:>9}{t.decided:>9}"
            f"{_fmt(t.escalation_rate, '.1%'):>8}{_fmt(t.decided_share, '.1%'):>8}"
            f"{_fmt(t.mean_confidence_seen, '.3f'):>10}"
            f"{_fmt(t.accuracy_decided, '.1%'):>10}{_fmt(t.ms_per_record, '.2f'):>8}")
    lines += cost_lines(stats)
    for t in stats.tiers:
        if t.effective_threshold:
            lines.append(f"{t.name} routed by thresholds "
                         f"{threshold_range(t.effective_threshold)} (configured "
                         f"{t.threshold:.4f}; escalation budget or disagreement target)")
    for t in stats.tiers:
        if t.records_per_exit:
            exits = ", ".join(f"layer {layer}: {n}" for layer, n in t.records_per_exit.items())
            lines.append(f"{t.name} early exits: {exits}")
    if stats.labelled:
        lines.append(f"cascade accuracy {_fmt(stats.accuracy, '.2%')} on "
                     f"{stats.labelled} labelled records")
    lines += audit_lines(stats)
    if stats.shifted_tiers:
        lines.append(
            f"INPUT SHIFT: the confidences of {', '.join(stats.shifted_tiers)} differ from "
            "those calibration saw (routing_stats.json, tiers[].shift): the thresholds' "
            "promise and the label-free estimate may not hold; audit (audit_rate) or "
            "recalibrate on recent data")
    if stats.predictions and not stats.audit:
        lines.append(f"estimated accuracy {_fmt(stats.estimated_accuracy, '.2%')} (mean "
                     "probability of the decisions: trust it only for tiers calibrated by "
                     "`beam-cascade calibrate` on data like this; an audit corrects it)")
    lines.append(f"outputs in {output}: predictions-*, errors-*.jsonl, routing_stats.json")
    return "\n".join(lines)


def cost_lines(stats: RoutingStats) -> list[str]:
    """What the cascade saved against its last tier alone, and the promise it carries."""
    lines = []
    cost = stats.cost
    if cost.times_cheaper and len(stats.tiers) > 1:
        lines.append(
            f"{cost.times_cheaper:.1f}x cheaper than tier {cost.last_tier!r} alone: "
            f"{cost.model_seconds:.1f} s of model time instead of an estimated "
            f"{cost.last_tier_alone_seconds:.1f} s ({alone_basis(stats)})")
    if stats.input_calibration:
        lines.append(input_calibration_line(stats.input_calibration, stats.tiers[-1].name))
    elif stats.guarantee:
        lines.append(f"guarantee: {stats.guarantee.describe()}")
    return lines


def input_calibration_line(calibration: InputCalibration, last_tier: str) -> str:
    """The thresholds calibrate_on_input chose, the bound and what it rests on; or that none
    kept the bound within the budget, so the last tier decided every record."""
    c = calibration
    points = "point" if c.max_accuracy_drop == 1 else "points"
    evidence = (f"{c.records_sampled:,} records sampled of {c.records_read:,} read and "
                f"{c.labelled_records:,} labelled records ({c.labelled})")
    if c.thresholds is None:
        return (f"calibrated on this input: NO threshold keeps the accuracy drop within the "
                f"budget of {c.max_accuracy_drop:g} {points} at confidence {c.confidence:.0%} "
                f"on {evidence}: every record went to the last tier, {last_tier!r}, alone; "
                "raise max_accuracy_drop, lower confidence or label more records")
    which = "threshold" if len(c.thresholds) == 1 else "thresholds"
    chosen = ", ".join(f"{t:.4f}" for t in c.thresholds)
    return (f"calibrated on this input: {which} {chosen} chosen on {evidence}: accuracy at "
            f"most {c.drop_bound:.2f} points below the last tier alone (budget "
            f"{c.max_accuracy_drop:g} {points}) at confidence {c.confidence:.0%}, from "
            f"{c.evidence}")


def alone_basis(stats: RoutingStats) -> str:
    """How the last tier's cost alone was estimated
    (transforms/statistics_extraction.cost_summary)."""
    first, last = stats.tiers[0], stats.tiers[-1]
    if stats.cost.last_tier_alone_seconds_by.calibration is not None:
        return (f"{first.name}'s cost per record in this job times {last.name}'s cost "
                f"relative to it, as calibrate timed both on all its texts")
    return (f"its cost on the {last.seen:,} records it scored, per record or per character, "
            f"whichever is lower, scaled to all {stats.predictions:,}; those were the hard "
            "ones, often in passes of mixed lengths, so the estimate runs high: calibrate "
            "the config, or time the last tier alone on a sample, to know")


def threshold_range(used: ThresholdRange) -> str:
    """A window-budgeted tier's thresholds; above 1 means every record escalated."""
    def shown(value: float) -> str:
        return "above 1 (all escalated)" if value > 1 else f"{value:.4f}"
    if used.min == used.max:
        return shown(used.min)
    return f"{shown(used.min)} to {shown(used.max)}"


def audit_lines(stats: RoutingStats) -> list[str]:
    """Per audited tier its agreement with the last tier, then the whole output's bound."""
    lines = []
    for t in stats.tiers:
        a = t.audit
        if a and a.audited:
            low, high = a.agreement_interval_95
            lines.append(f"audit {t.name}: {a.audited} decisions also sent to the last "
                         f"tier, agreement {a.agreement:.1%} (95%: {low:.1%} to {high:.1%})")
    whole = stats.audit
    if whole:
        lines.append(f"audit: the cascade disagrees with the last tier on "
                     f"{whole.disagreement:.2%} of its decisions (from "
                     f"{whole.audited} audited); the accuracy drop against the last tier "
                     f"alone is at most {100 * whole.drop_bound_95:.2f} points (95%); the "
                     f"last tier gives the cascade's answers a mean probability of "
                     f"{_fmt(whole.last_tier_probability, '.2%')} (the cascade's accuracy "
                     "only if the last tier is calibrated on this data)")
    return lines
