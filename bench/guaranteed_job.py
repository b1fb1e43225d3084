"""The three-command story, measured: calibrate with label requests, label, calibrate again,
and the guaranteed cascade as a job against its last tier alone.

    python -m bench.guaranteed_job [--seed 0] [--budget 1] [--requests 300]
        [--copies 17] [--rounds 3] [--tier1 ngram-cnn32]

On bench.heldout_sst2's 3,000 held-out SST-2 train sentences (no tier saw them) with its
retrained tiers (tier 1: --tier1, default the n-gram + word CNN; tier 2: MiniLM-L6):
1. `calibrate --unlabelled <the sentences> --request_labels N` (dev: SST-2 dev), timed;
2. the requests answered from the held-out labels (what a person labelling them does);
3. `calibrate --labelled_requests`, timed (its costs and scores come from the first run's
   caches);
4. the job input: the sentences --copies times over (51,000 records by default, unique ids,
   gold labels in a field the job scores accuracy by), run through `run` with the tuned
   config and with its last tier alone, interleaved in each of --rounds rounds, each job in
   a fresh process (FnApiRunner), model loading included.
Reports the calibrate times, the promise, the escalation, the realised drop on the records
(each sentence counts --copies times, so the drop is the sentences'), and the median job
seconds with their ratio. Writes guaranteed_job.{md,json} into --results (default
bench/results).
"""
from __future__ import annotations

import argparse
import os
import statistics

import yaml

from bench.lib.cli import study_parser
from bench.lib.calibrate_runs import answer_requests, timed_calibrate
from bench.lib.configs import config_to_dict
from bench.lib.data import read_tsv, write_jsonl
from bench.lib.jobs import job_stats, run_job
from bench.lib.paths import CACHE, LABELS, sst2_file
from bench.lib.results import command_line, write_results
from bench.lib.tiers import heldout_tiers
from pipeline.config import load_config


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.guaranteed_job", __doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="bench.heldout_sst2's seed")
    p.add_argument("--tier1", default="ngram-cnn32")
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--copies", type=int, default=17)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    heldout = heldout_tiers(args.seed, "guaranteed_job")
    work = os.path.join(CACHE, f"guaranteed_job-{args.seed}")
    os.makedirs(work, exist_ok=True)
    pool = read_tsv(os.path.join(heldout, "pool.tsv"))
    truth = {text: LABELS[int(label)] for text, label in pool}
    sentences = write_jsonl(os.path.join(work, "sentences.jsonl"),
                            [{"id": i, "sentence": t} for i, (t, _) in enumerate(pool)])
    config = os.path.join(work, "cascade.yaml")
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump({"text_field": "sentence", "id_field": "id", "tiers": [
            {"name": "small", "model": os.path.abspath(os.path.join(heldout, args.tier1)),
             "threshold": 0.9},
            {"name": "large", "model": os.path.abspath(os.path.join(heldout, "tier2"))}]}, f)
    tuned = os.path.join(work, "tuned.yaml")
    common = ["--config", config, "--dev", sst2_file(args.data, "dev.tsv"), "--label_field",
              "label", "--unlabelled", sentences, "--max_accuracy_drop", f"{args.budget:g}",
              "--output", tuned]
    first = timed_calibrate([*common, "--request_labels", str(args.requests)])
    requests = os.path.join(work, "tuned-requests.jsonl")
    labelled = answer_requests(requests, truth, "sentence")
    second = timed_calibrate([*common, "--labelled_requests", requests])
    guarantee = load_config(tuned).guarantee
    cascade = config_to_dict(load_config(tuned))
    alone = {**cascade, "tiers": cascade["tiers"][-1:], "guarantee": None}
    job_input = write_jsonl(os.path.join(work, "input.jsonl"), [
        {"id": f"{copy}-{i}", "sentence": t, "label": truth[t]}
        for copy in range(args.copies) for i, (t, _) in enumerate(pool)])
    for setting in (cascade, alone):
        setting["label_field"] = "label"
    runs: dict[str, list[dict]] = {"cascade": [], "alone": []}
    for _ in range(args.rounds):
        for name, setting in (("cascade", cascade), ("alone", alone)):
            runs[name].append(run_job(setting, job_input, work, name))
    stats = {name: job_stats(r[-1]) for name, r in runs.items()}
    seconds = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    result = {
        "command": command_line("bench.guaranteed_job", argv),
        "records": args.copies * len(pool), "sentences": len(pool),
        "calibrate_seconds": {"first": first, "second": second},
        "requests_labelled": labelled, "guarantee": guarantee.describe(),
        "drop_bound": guarantee.drop_bound,
        "escalation": stats["cascade"].tiers[-1].seen / stats["cascade"].records,
        "accuracy": {n: s.accuracy for n, s in stats.items()},
        "job_seconds": seconds, "job_seconds_all": {n: [r["seconds"] for r in rs]
                                                    for n, rs in runs.items()},
        "speedup": seconds["alone"] / seconds["cascade"]}
    result["drop_points"] = 100 * (result["accuracy"]["alone"] - result["accuracy"]["cascade"])
    write_results(args.results, "guaranteed_job", report(result, args), result)


def report(r: dict, args: argparse.Namespace) -> str:
    return "\n".join([
        "# The guaranteed cascade as a job", "", f"`{r['command']}`", "",
        f"Tier 1 {args.tier1}, tier 2 MiniLM-L6, both retrained without the {r['sentences']:,} "
        f"held-out SST-2 train sentences (bench.heldout_sst2); budget {args.budget:g} point(s), "
        f"{args.requests} labels requested on the sentences.", "",
        f"- calibrate with --request_labels: {r['calibrate_seconds']['first']:.0f} s; again "
        f"with --labelled_requests ({r['requests_labelled']} labelled): "
        f"{r['calibrate_seconds']['second']:.0f} s",
        f"- promise: {r['guarantee']}",
        f"- job of {r['records']:,} records ({args.copies} copies of each sentence): "
        f"{r['escalation']:.1%} to the last tier; accuracy {100 * r['accuracy']['cascade']:.2f}% "
        f"against {100 * r['accuracy']['alone']:.2f}% for the last tier alone (realised drop "
        f"{r['drop_points']:+.2f} points)",
        f"- job seconds, median of {args.rounds} interleaved rounds: cascade "
        f"{r['job_seconds']['cascade']:.1f}, last tier alone {r['job_seconds']['alone']:.1f}: "
        f"**{r['speedup']:.2f}x** (all: {r['job_seconds_all']})", ""])


if __name__ == "__main__":
    main()
