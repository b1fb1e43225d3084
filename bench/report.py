"""Turns the benchmark's timed runs into a markdown table, a PNG plot and a JSON record.

Every time is the median over the rounds; accuracies come from the pipeline's own routing
statistics (the 872 labelled dev records), so the table reports what a user's job reports.
"""
from __future__ import annotations

import itertools
import os
import statistics
from dataclasses import asdict, dataclass

from bench.lib.jobs import job_stats
from bench.lib.results import result_file, write_results

ACCURACY_TOLERANCE = 0.005  # "nearly tier 2's accuracy": within half a point


@dataclass(frozen=True)
class Row:
    setting: str
    tiers: int
    threshold: float | None
    escalated: float | None
    accuracy: float
    seconds: float
    records_per_s: float
    speedup_vs_tier2: float
    speedup_vs_peer: float | None
    ideal_seconds: float | None
    efficiency: float | None
    startup_seconds: float | None  # the same job on a few records: imports, build, loads
    efficiency_after_startup: float | None  # ideal / (measured - startup)


def median_seconds(runs: list) -> float:
    return statistics.median(r["seconds"] if isinstance(r, dict) else r for r in runs)


def rows(facts: dict, runs: dict) -> list[Row]:
    """One row for tier 2 alone, the peer (when run), each threshold of the cascade and each
    --config."""
    n = facts["records"]
    tier2_s = median_seconds(runs["tier2"])
    peer_s = median_seconds(runs["peer"]) if runs["peer"] else None
    bare1, bare2 = median_seconds(runs["bare_tier1"]), median_seconds(runs["bare_tier2"])
    startup = {name: median_seconds(runs[f"startup_{name}"]) for name in ("tier2", "cascade")}

    def row(setting, tiers, threshold, escalated, accuracy, seconds, ideal=None,
            startup_s=None):
        return Row(setting, tiers, threshold, escalated, accuracy, seconds, n / seconds,
                   tier2_s / seconds, peer_s / seconds if peer_s else None, ideal,
                   ideal / seconds if ideal else None, startup_s,
                   ideal / (seconds - startup_s) if ideal and startup_s else None)

    table = [row("tier 2 alone, this pipeline", 1, None, None,
                 job_stats(runs["tier2"][0]).accuracy, tier2_s, bare2, startup["tier2"])]
    if peer_s:
        table.append(row("tier 2 alone, stock Beam HF handler", 1, None, None,
                         runs["peer"][0]["accuracy"], peer_s))
    for t in facts["thresholds"]:
        first = job_stats(runs[f"cascade@{t}"][0])
        table.append(row("cascade", 2, t, first.tiers[0].escalation_rate,
                         first.accuracy, median_seconds(runs[f"cascade@{t}"]),
                         bare1 + median_seconds(runs[f"bare_tier2@{t}"]), startup["cascade"]))
    for path in facts.get("configs", []):
        stats = job_stats(runs[f"config@{path}"][0])
        first, cascade = stats.tiers[0], len(stats.tiers) > 1
        table.append(row(f"`{path}`", len(stats.tiers),
                         first.threshold if cascade else None,
                         first.escalation_rate if cascade else None, stats.accuracy,
                         median_seconds(runs[f"config@{path}"]),
                         median_seconds(runs[f"bare_config@{path}"]),
                         median_seconds(runs[f"startup_config@{path}"])))
    return table


def best_within_tolerance(table: list[Row]) -> Row | None:
    """The fastest cascade (of two tiers or more) within ACCURACY_TOLERANCE of tier 2
    alone."""
    target = table[0].accuracy - ACCURACY_TOLERANCE - 1e-9
    ok = [r for r in table if r.tiers > 1 and r.accuracy >= target]
    return max(ok, key=lambda r: r.speedup_vs_tier2) if ok else None


def oracle_speedup(facts: dict, runs: dict) -> float:
    """Bare-loop speedup over tier 2 of a cascade escalating exactly tier 1's dev errors,
    costed at tier 2's mean time per record."""
    bare1, bare2 = median_seconds(runs["bare_tier1"]), median_seconds(runs["bare_tier2"])
    return bare2 / (bare1 + facts["oracle_escalated_dev"] * bare2)


def _fmt(value, spec: str, unit: str = "") -> str:
    return "-" if value is None else format(value, spec) + unit


def markdown(facts: dict, runs: dict, table: list[Row]) -> str:
    bare1, bare2 = median_seconds(runs["bare_tier1"]), median_seconds(runs["bare_tier2"])
    input_order = median_seconds(runs["bare_tier2_input_order"])
    n = facts["records"]
    lines = [
        "# SST-2 cascade benchmark",
        "",
        f"Reproduce: `{facts['command']}` (from the repository root, in the project's "
        f"environment; {facts['date']}, {facts['cpus']} CPUs, {facts['torch_threads']} torch "
        f"threads, Python {facts['python']}).",
        "",
        f"- Input: {n} SST-2 sentences (dev {facts['dev_records']} labelled + test "
        f"unlabelled); accuracy on the {facts['dev_records']} dev sentences.",
        f"- Tier 1: `{facts['tier1']}` ({facts['tier1_dev_accuracy']:.2%} dev alone), batch "
        f"{facts['tier1_batch_size']}; tier 2: `{facts['tier2']}`, batch "
        f"{facts['tier2_batch_size']} (best of the bare-loop sweep), length-sorted within each "
        "Beam batch.",
        f"- Peer: Beam's RunInference + HuggingFacePipelineModelHandler (text-classification, "
        f"CPU), Beam batches of {facts['peer_batch_size']} and HF pipeline "
        f"`batch_size={facts['peer_batch_size']}`, `truncation=True`, keyed by id.",
        "- Every job: a fresh process, FnApiRunner, JSONL in and out, timed from pipeline "
        f"construction to the end (model loads included); medians of "
        f"{len(runs['tier2'])} interleaved rounds.",
        f"- Bare loops (no Beam): tier 1 {n / bare1:,.0f} rec/s, tier 2 {n / bare2:,.0f} rec/s "
        f"sorted by length, {n / input_order:,.0f} rec/s in input order; tier 1 is "
        f"{bare2 / bare1:,.0f}x cheaper per record.",
        "",
        "| setting | threshold | escalated | dev accuracy | records/s | speedup vs tier 2 "
        "(pipeline) | speedup vs stock handler | ideal s | measured s | efficiency | "
        "startup s | efficiency after startup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r.setting} | {_fmt(r.threshold, '.4g')} | {_fmt(r.escalated, '.1%')} | "
            f"{r.accuracy:.2%} | {r.records_per_s:,.0f} | {r.speedup_vs_tier2:.2f}x | "
            f"{_fmt(r.speedup_vs_peer, '.2f', 'x')} | {_fmt(r.ideal_seconds, '.2f')} | "
            f"{r.seconds:.2f} | {_fmt(r.efficiency, '.2f')} | "
            f"{_fmt(r.startup_seconds, '.2f')} | {_fmt(r.efficiency_after_startup, '.2f')} |")
    best = best_within_tolerance(table)
    lines += ["", "Efficiency = ideal time (bare loops: tier 1 on all, tier 2 on the escalated "
              "records; for a config, each of its tiers on the records that reached it) / "
              "measured time of the whole job. Startup = the same job on the first "
              f"{facts['startup_records']} records (imports, pipeline construction, runner "
              "stages, model loads): the fixed cost a larger input amortises; efficiency after "
              "startup = ideal / (measured - startup).", ""]
    if best:
        lines.append(
            f"Fastest cascade within {100 * ACCURACY_TOLERANCE:g} point of tier 2's accuracy: "
            f"{best.setting}, threshold {best.threshold:.4g}, {best.accuracy:.2%} dev, "
            f"{best.speedup_vs_tier2:.2f}x tier 2 through this pipeline, "
            f"{_fmt(best.speedup_vs_peer, '.2f', 'x')} the stock handler, {best.escalated:.1%} "
            "escalated.")
    lines.append(
        f"Oracle (escalate exactly tier 1's dev errors): {facts['oracle_escalated_dev']:.1%} "
        f"escalated, a bare-loop bound of {oracle_speedup(facts, runs):.2f}x over tier 2.")
    return "\n".join(lines) + "\n"


def plot(table: list[Row], path: str) -> None:
    """Accuracy against speedup over tier 2 through this pipeline."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cascade = [r for r in table if r.setting == "cascade"]
    ax.plot([r.speedup_vs_tier2 for r in cascade], [100 * r.accuracy for r in cascade],
            "o-", label="cascade (share escalated to tier 2)")
    for r in cascade:
        ax.annotate(f"{r.escalated:.0%}", (r.speedup_vs_tier2, 100 * r.accuracy),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    markers = itertools.cycle("s^DvPX*hp<>")
    for r in table:
        if r.setting != "cascade":  # a config's point is named by its file
            ax.plot([r.speedup_vs_tier2], [100 * r.accuracy], next(markers), markersize=9,
                    label=os.path.basename(r.setting.strip("`")))
    ax.axhline(100 * (table[0].accuracy - ACCURACY_TOLERANCE), color="grey", ls=":",
               label="tier 2 - 0.5 point")
    ax.set_xscale("log")
    times = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}x")
    ax.xaxis.set_major_formatter(times)
    ax.xaxis.set_minor_formatter(times)
    ax.set_xlabel("speedup over tier 2 alone through this pipeline (records/s ratio)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(folder: str, facts: dict, runs: dict) -> None:
    table = rows(facts, runs)
    write_results(folder, "sst2", markdown(facts, runs, table),
                  {"facts": facts, "table": [asdict(r) for r in table], "runs": runs})
    plot(table, result_file(folder, "sst2", "png"))
