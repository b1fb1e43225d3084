"""The bulk benchmark against a 110M-parameter last tier: MPNet-base alone, the stock-handler
peer, and the guaranteed two- and three-tier cascades in front of it.

    python -m bench.big_cascade [--seed 0] [--records 10000] [--requests 300]
        [--budgets 0.5,1] [--rounds 3] [--big_rounds 2]
        [--runtimes torch/,onnxruntime/,openvino/,onnxruntime/int8]

It needs bench.heldout_sst2's split and MPNet-base fine-tuned on what that split left to
train on (docs/benchmarks.md, "The big model"):

    python -m bench.heldout_sst2
    python -m bench.big_model fine-tune --train bench/cache/heldout-0/train_rest.tsv \\
        --output bench/cache/heldout-0/tier3-mpnet --precision bf16

Then, each step cached in bench/cache/heldout-<seed>/ and bench/cache/big_cascade-<seed>/:
1. the cheaper tiers, both distilled from MPNet (its probabilities on train_rest.tsv's
   phrases, beside their gold labels): MiniLM-L6 (1 epoch, bf16), and the n-gram + word
   CNN (width 32, its word pieces from that MiniLM);
2. MPNet's runtime: the fastest of --runtimes in bare loops over SST-2 dev whose dev accuracy
   is within KEPT_ACCURACY of PyTorch fp32's; MiniLM runs on the same runtime in fp32. The
   same loops give the tiers' bare cost per record (kept in bare.json: delete it to time
   them again);
3. the held-out pool split in two at random: on the calibration half `calibrate` requests
   --requests labels (answered from the pool's labels), then tunes the two-tier (MiniLM ->
   MPNet) and three-tier (n-gram + CNN -> MiniLM -> MPNet) cascades at every budget with
   the guarantee; the other half no tier and no calibration sees;
4. the job input: SST-2 dev (872, labelled), test (1,821) and both pool halves (5,693
   sentences), cycled with unique ids up to --records records (10,000: the first 4,307 twice;
   accuracies count each sentence once);
5. in each of --rounds interleaved rounds (--big_rounds for the jobs that run MPNet on every
   record) every setting as a job in a fresh process (FnApiRunner, start-up and model loading
   included), and as a 16-record job for its start-up cost: the stock-handler peer
   (bench/peer.py) on the fine-tuned MPNet, MPNet alone through this pipeline, each cascade.
Reports per setting the median seconds, records/s overall and after start-up, the ratio to
the peer, peak memory, dev accuracy, held-out accuracy and drop against MPNet alone, and the
share of records each tier decided. Writes big_cascade.{md,json} into --results.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import random
import re
import statistics
import sys
from dataclasses import dataclass

import torch
import yaml

from bench.lib.calibrate_runs import answer_requests, calibrate_allowing_refusals
from bench.lib.cli import study_parser
from bench.lib.configs import TierConfig, config_to_dict
from bench.lib.data import read_tsv, sst2_labelled, sst2_unlabelled, write_jsonl
from bench.lib.jobs import (PEER, PEER_BATCH_SIZE, STARTUP_RECORDS, Inputs, job_stats,
                            peer_python, run_job, run_peer)
from bench.lib.paths import CACHE, LABELS, sst2_file
from bench.lib.results import command_line, markdown_table, write_results
from bench.lib.scoring import calibrated_outputs, last_tier_alone, score, sweep, tier_logits
from bench.lib.tiers import (heldout_tiers, load_configured_tier, sst2_training,
                             trained_tier)
from bench.lib.timing import ONE_PASS, interleaved_medians, scoring_seconds
from pipeline.config import load_config

KEPT_ACCURACY = 0.0025  # a runtime "keeps accuracy" within 2 of SST-2 dev's 872 sentences
BATCH_SIZES = {"tier1": 256, "minilm": 64, "mpnet": 64}  # the bare loops' passes
BIG = "mpnet"
# calibrate times each tier at these batch sizes: its default (8 to 128) times MPNet over dev
# 20 times, about 8 minutes on 2 cores; these take 16 passes, 256 for the n-gram + CNN tier
CALIBRATE_BATCH_SIZES = "16,32,64,256"


@dataclass(frozen=True)
class Tiers:
    """The three tiers' folders."""

    tier1: str
    minilm: str
    mpnet: str


def distilled_tiers(heldout: str, data: str) -> Tiers:
    """MPNet, and the MiniLM and n-gram + CNN tiers distilled from it (trained when absent)."""
    big = os.path.join(heldout, "tier3-mpnet")
    if not os.path.isfile(os.path.join(big, "TRAINING.json")):
        sys.exit(f"big_cascade: {big} holds no fine-tuned MPNet: run python -m "
                 f"bench.big_model fine-tune --train {heldout}/train_rest.tsv --output {big} "
                 "--precision bf16 first")
    rest = os.path.join(heldout, "train_rest.tsv")
    teacher = [*sst2_training(rest, data), "--teacher", big, "--unlabelled", rest]
    minilm = trained_tier(os.path.join(heldout, "minilm-from-mpnet"),
                          [*teacher, "--epochs", "1", "--precision", "bf16"])
    tier1 = trained_tier(os.path.join(heldout, "ngram-cnn32-from-mpnet"),
                         ["--kind", "ngram", *teacher, "--word_vectors", minilm,
                          "--cnn_width", "32"])
    return Tiers(tier1, minilm, big)


def runtime_of(setting: str) -> tuple[str, str | None]:
    """"onnxruntime/int8" -> ("onnxruntime", "int8"); "torch/" -> ("torch", None)."""
    runtime, _, quantize = setting.partition("/")
    return runtime, quantize or None


def bare_loops(tiers: Tiers, runtimes: list[str], dev_texts: list[str], dev_labels: list[int]
               ) -> dict:
    """Dev accuracy of MPNet on each runtime, and median bare-loop seconds over dev of MPNet
    on each runtime and of the cheaper tiers (MiniLM on each fp32 runtime), interleaved."""
    models = {}
    for setting in runtimes:
        runtime, quantize = runtime_of(setting)
        models[f"{BIG} {setting}"] = (tiers.mpnet, runtime, quantize, BATCH_SIZES[BIG])
        models[f"minilm {runtime}/"] = (tiers.minilm, runtime, None, BATCH_SIZES["minilm"])
    models["tier1"] = (tiers.tier1, "torch", None, BATCH_SIZES["tier1"])
    loaded = {name: load_configured_tier(TierConfig(name="t", model=model, runtime=runtime,
                                                    quantize=quantize), ONE_PASS)
              for name, (model, runtime, quantize, _) in models.items()}
    accuracy = {name: sum(y == g for y, g in zip(score(tier.logits(dev_texts)).label_ids,
                                                 dev_labels)) / len(dev_labels)
                for name, tier in loaded.items()}
    seconds = interleaved_medians(
        {name: (lambda tier=tier, batch=models[name][3]:
                scoring_seconds(tier, dev_texts, batch)) for name, tier in loaded.items()},
        repeats=2, progress="bare loops")
    return {"dev_accuracy": accuracy,
            "ms_per_record": {n: 1000 * s / len(dev_texts) for n, s in seconds.items()}}


def fastest_kept(bare: dict, runtimes: list[str]) -> str:
    """The fastest MPNet runtime whose dev accuracy is within KEPT_ACCURACY of torch fp32's."""
    reference = bare["dev_accuracy"][f"{BIG} torch/"]
    kept = [s for s in runtimes
            if bare["dev_accuracy"][f"{BIG} {s}"] >= reference - KEPT_ACCURACY]
    return min(kept, key=lambda s: bare["ms_per_record"][f"{BIG} {s}"])


def cascade_tiers(tiers: Tiers, runtime: str, three: bool) -> list[dict]:
    """The two-tier (MiniLM -> MPNet) or three-tier (n-gram + CNN first) cascade's tiers,
    the transformers on MPNet's chosen runtime (MiniLM in fp32)."""
    name, quantize = runtime_of(runtime)
    chain = [{"name": "minilm", "model": os.path.abspath(tiers.minilm), "threshold": 0.9,
              "runtime": name},
             {"name": BIG, "model": os.path.abspath(tiers.mpnet), "runtime": name,
              "quantize": quantize}]
    if three:
        chain.insert(0, {"name": "ngram_cnn", "model": os.path.abspath(tiers.tier1),
                         "threshold": 0.9})
    return chain


def calibrated(name: str, chain: list[dict], work: str, sample: str, truth: dict[str, str],
               args) -> dict:
    """`calibrate` with --requests label requests on the calibration half, the requests
    answered, and `calibrate` again with them (skipped when done before): each budget's tuned
    config (None where refused), the calibrate seconds and the labels given."""
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    config, tuned = os.path.join(folder, "cascade.yaml"), os.path.join(folder, "tuned.yaml")
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump({"text_field": "sentence", "id_field": "id", "tiers": chain}, f)
    common = ["--config", config, "--dev", sst2_file(args.data, "dev.tsv"), "--label_field",
              "label", "--unlabelled", sample, "--max_accuracy_drop", args.budgets,
              "--batch_sizes", CALIBRATE_BATCH_SIZES, "--output", tuned]
    record = os.path.join(folder, "calibration.json")
    budgets = [float(b) for b in args.budgets.split(",")]
    paths = {f"{b:g}": f"{os.path.splitext(tuned)[0]}-{b:g}.yaml" if len(budgets) > 1
             else tuned for b in budgets}
    asked = {"chain": chain, "budgets": list(paths), "requests": args.requests}
    done = _read_json(record)
    if done is None or done.get("asked") != asked:
        done = {"asked": asked, **calibrate_twice(common, folder, paths, truth, args.requests)}
        with open(record, "w", encoding="utf-8") as f:
            json.dump(done, f, indent=1)
    done["tuned"] = {b: (p if os.path.isfile(p) else None) for b, p in paths.items()}
    done["promise"] = {b: load_config(p).guarantee.describe()
                       for b, p in done["tuned"].items() if p}
    return done


def calibrate_twice(common: list[str], folder: str, paths: dict[str, str],
                    truth: dict[str, str], requests: int) -> dict:
    """The first calibrate with label requests, the requests answered, the second with
    them; the tuned configs of the first are removed before the second, so that a budget the
    second refuses leaves none behind."""
    first, said = calibrate_allowing_refusals([*common, "--request_labels", str(requests)])
    request_file = os.path.join(folder, "tuned-requests.jsonl")
    if not os.path.isfile(request_file):
        sys.exit(f"big_cascade: calibrate wrote no label requests:\n{said[-3000:]}")
    labelled = answer_requests(request_file, truth, "sentence")
    for path in paths.values():
        if os.path.isfile(path):
            os.remove(path)
    second, said = calibrate_allowing_refusals([*common, "--labelled_requests", request_file])
    return {"seconds": [first, second], "labels": labelled, "stderr": said[-2000:]}


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def oracles(tiers: Tiers, runtime: str, held: list[tuple[str, str]], budgets: list[float],
            ms_per_record: dict[str, float]) -> dict[str, dict[str, dict | None]]:
    """What no guarantee can beat: per cascade and budget, the cheapest thresholds (a grid
    over every tier's, bench.lib.scoring's sweep) whose drop on the held-out half, against
    MPNet alone, is within the budget; chosen on those sentences' own labels. Each tier
    answers on the runtime it runs on in the cascades."""
    texts = [t for t, _ in held]
    labels = torch.tensor([int(y) for _, y in held])
    name, quantize = runtime_of(runtime)
    outputs = {tier: calibrated_outputs(tier_logits(
        model, f"big_cascade-{tier}", texts, "held-out half", runtime=tier_runtime,
        quantize=tier_quantize), 1.0)
        for tier, model, tier_runtime, tier_quantize in (
            ("tier1", tiers.tier1, "torch", None), ("minilm", tiers.minilm, name, None),
            (BIG, tiers.mpnet, name, quantize))}
    found = {}
    for cascade, names in (("two-tier", ("minilm", BIG)),
                           ("three-tier", ("tier1", "minilm", BIG))):
        chain = [outputs[n] for n in names]
        costs = [ms_per_record[n] for n in names]
        reference = last_tier_alone(chain, labels, costs)
        points = sweep(chain, labels, costs)
        found[cascade] = {}
        for budget in budgets:
            kept = [p for p in points if p.accuracy >= reference.accuracy - budget / 100]
            best = min(kept, key=lambda p: p.cost) if kept else None
            found[cascade][f"{budget:g}"] = best and {
                "reach": list(best.reach), "speedup_over_mpnet": best.speedup,
                "drop_points": 100 * (reference.accuracy - best.accuracy)}
    return found


def job_config(path: str) -> dict:
    """A tuned config reading the benchmark input's fields."""
    return {**config_to_dict(load_config(path)), "text_field": "text", "id_field": "id",
            "label_field": None}


def write_job_input(groups: dict[str, list[str]], dev_labels: list[str], records: int,
                    path: str) -> Inputs:
    """The groups' texts (ids `<group>-<i>`) cycled to `records` records, a copy after the
    first with ids `c<copy>-<group>-<i>`; and its first STARTUP_RECORDS as the start-up
    input."""
    base = [(f"{group}-{i}", text) for group, texts in groups.items()
            for i, text in enumerate(texts)]
    rows = [{"id": key if n < len(base) else f"c{n // len(base)}-{key}", "text": text}
            for n, (key, text) in zip(range(records), itertools.cycle(base))]
    write_jsonl(path, rows)
    startup = write_jsonl(os.path.join(os.path.dirname(path), "startup.jsonl"),
                          rows[:STARTUP_RECORDS])
    return Inputs(groups["dev"], dev_labels, [r["text"] for r in rows],
                  [r["id"] for r in rows], path, startup)


def predicted_labels(output: str) -> dict[str, str]:
    """Record id -> predicted label name, from a job's prediction files."""
    labels = {}
    for path in glob.glob(os.path.join(output, "predictions*.jsonl")):
        with open(path, encoding="utf-8") as f:
            labels.update((row["id"], row["label"]) for row in map(json.loads, f))
    return labels


def accuracy_by_group(labels: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    """Accuracy of each labelled group ("dev", "held"), every sentence counted once (its
    first copy's answer) however many copies the input cycled to."""
    answers: dict[str, str] = {}
    for key in sorted(labels, key=lambda k: k.startswith("c")):  # first copies first
        answers.setdefault(re.sub(r"^c\d+-", "", key), labels[key])
    right: dict[str, list[bool]] = {}
    for plain, label in answers.items():
        if plain in truth:
            right.setdefault(plain.split("-")[0], []).append(label == truth[plain])
    return {group: sum(r) / len(r) for group, r in right.items()}


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.big_cascade", __doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="bench.heldout_sst2's seed")
    p.add_argument("--records", type=int, default=10000)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--budgets", default="0.5,1", help="accuracy-drop budgets, points")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--big_rounds", type=int, default=2,
                   help="rounds of the jobs that run MPNet on every record")
    p.add_argument("--runtimes", default="torch/,onnxruntime/,openvino/,onnxruntime/int8",
                   help="MPNet's candidate runtime/precision settings (nothing after the "
                        "slash: fp32); torch/ is the reference")
    args = p.parse_args(argv)
    heldout = heldout_tiers(args.seed, "big_cascade")
    tiers = distilled_tiers(heldout, args.data)
    work = os.path.join(CACHE, f"big_cascade-{args.seed}")
    os.makedirs(work, exist_ok=True)
    dev = sst2_labelled(args.data, "dev.tsv")
    runtimes = args.runtimes.split(",")
    if "torch/" not in runtimes or any("/" not in r for r in runtimes):
        p.error(f"--runtimes {args.runtimes}: give runtime/precision pairs (torch/ for "
                "PyTorch fp32, onnxruntime/int8, ...) including torch/, the reference the "
                "others must keep the accuracy of")
    bare = _read_json(os.path.join(work, "bare.json"))
    if bare is None or bare.get("runtimes") != runtimes:
        bare = {"runtimes": runtimes, **bare_loops(tiers, runtimes, dev.texts, dev.label_ids)}
        with open(os.path.join(work, "bare.json"), "w", encoding="utf-8") as f:
            json.dump(bare, f, indent=1)
    runtime = fastest_kept(bare, runtimes)
    print(f"big_cascade: MPNet runs on {runtime}", file=sys.stderr)

    pool = read_tsv(os.path.join(heldout, "pool.tsv"))
    random.Random(args.seed).shuffle(pool)
    calibration, held = pool[:len(pool) // 2], pool[len(pool) // 2:]
    pool_truth = {text: LABELS[int(label)] for text, label in pool}
    sample = write_jsonl(os.path.join(work, "calibration-half.jsonl"),
                         [{"id": i, "sentence": t} for i, (t, _) in enumerate(calibration)])
    cascades = {name: calibrated(name, cascade_tiers(tiers, runtime, three), work, sample,
                                 pool_truth, args)
                for name, three in (("two-tier", False), ("three-tier", True))}
    inputs = write_job_input({"dev": dev.texts, "test": sst2_unlabelled(args.data),
                              "calib": [t for t, _ in calibration],
                              "held": [t for t, _ in held]},
                             [LABELS[y] for y in dev.label_ids], args.records,
                             os.path.join(work, "input.jsonl"))
    truth = {**{f"dev-{i}": LABELS[y] for i, y in enumerate(dev.label_ids)},
             **{f"held-{i}": LABELS[int(y)] for i, (_, y) in enumerate(held)}}

    settings = job_settings(tiers, runtime, cascades)
    costs = tier_costs(bare, runtime)
    oracle = oracles(tiers, runtime, held, [float(b) for b in args.budgets.split(",")], costs)
    peer = peer_python()
    runs = time_settings(settings, peer, tiers.mpnet, inputs, work, args)
    with open(os.path.join(work, "runs.json"), "w", encoding="utf-8") as f:
        json.dump(runs, f)  # every run, kept before anything reads them
    results = summarise(runs, truth, inputs)
    command = command_line("bench.big_cascade", argv)
    record = {"command": command, "records": args.records, "runtime": runtime,
              "sentences": sum(not re.match(r"c\d+-", key) for key in inputs.all_ids),
              "bare": bare, "costs_ms": costs, "oracle": oracle, "calibration": cascades,
              "results": results,
              "held_out_sentences": len(held), "calibration_sentences": len(calibration)}
    write_results(args.results, "big_cascade", markdown(record, args), record)


def job_settings(tiers: Tiers, runtime: str, cascades: dict) -> dict[str, dict]:
    """The jobs to time besides the peer: MPNet alone on `runtime` (at the batch size
    calibrate found best for it) and every tuned cascade."""
    name, quantize = runtime_of(runtime)
    settings = {f"MPNet alone ({runtime.rstrip('/')})": {
        "text_field": "text", "id_field": "id", "tiers": [
            {"name": BIG, "model": os.path.abspath(tiers.mpnet), "runtime": name,
             "quantize": quantize,
             "batch_size": _last_tier_batch(cascades) or BATCH_SIZES[BIG]}]}}
    for cascade, done in cascades.items():
        for budget, path in done["tuned"].items():
            if path:
                settings[f"{cascade} cascade, budget {budget}"] = job_config(path)
    return settings


def tier_costs(bare: dict, runtime: str) -> dict[str, float]:
    """Milliseconds per record of each tier in its bare loop, on the runtime it runs on in
    the cascades (MiniLM in fp32 on MPNet's runtime)."""
    name, _ = runtime_of(runtime)
    return {"tier1": bare["ms_per_record"]["tier1"],
            "minilm": bare["ms_per_record"][f"minilm {name}/"],
            BIG: bare["ms_per_record"][f"{BIG} {runtime}"]}


def _last_tier_batch(cascades: dict) -> int | None:
    """The batch size calibrate measured best for MPNet (from any tuned config)."""
    for done in cascades.values():
        for path in done["tuned"].values():
            if path:
                return load_config(path).tiers[-1].batch_size
    return None


def time_settings(settings: dict[str, dict], peer: str, big: str, inputs: Inputs, work: str,
                  args) -> dict[str, dict[str, list[dict]]]:
    """Every setting's full and start-up jobs, interleaved in rounds; the jobs that run MPNet
    on every record (the peer, MPNet alone) in the first --big_rounds only."""
    startup_inputs = Inputs(inputs.dev_texts, inputs.dev_labels, [], [], inputs.startup_path,
                            inputs.startup_path)
    names = [PEER, *settings]
    runs = {name: {"full": [], "startup": []} for name in names}
    for round_ in range(args.rounds):
        for index, name in enumerate(names):
            if round_ >= args.big_rounds and (name == PEER or name.startswith("MPNet alone")):
                continue
            print(f"big_cascade: round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr,
                  flush=True)
            for kind, given in (("full", inputs), ("startup", startup_inputs)):
                if name == PEER:
                    result = run_peer(peer, big, given, work, PEER_BATCH_SIZE)
                    if kind == "full":
                        result["labels"] = predicted_labels(os.path.join(work, "out", "peer"))
                else:
                    result = run_job(settings[name], given.all_path, work, f"job-{index}")
                    if kind == "full":
                        result["labels"] = predicted_labels(
                            os.path.join(work, "out", f"job-{index}"))
                runs[name][kind].append(result)
    return runs


def summarise(runs: dict[str, dict[str, list[dict]]], truth: dict[str, str],
              inputs: Inputs) -> dict[str, dict]:
    """Per setting: median seconds (full and start-up), records/s, peak memory, accuracies,
    and the share of records each tier decided."""
    records = len(inputs.all_ids)
    results = {}
    for name, kinds in runs.items():
        if not kinds["full"]:
            continue
        full = statistics.median(r["seconds"] for r in kinds["full"])
        startup = statistics.median(r["seconds"] for r in kinds["startup"])
        last = kinds["full"][-1]
        result = {
            "seconds": full, "seconds_all": [r["seconds"] for r in kinds["full"]],
            "startup_seconds": startup, "records_per_second": records / full,
            "records_per_second_after_startup": ((records - STARTUP_RECORDS) / (full - startup)
                                                 if full > startup else None),
            "peak_rss_mib": statistics.median(sum(r["peak_rss_mib"].values())
                                              for r in kinds["full"]),
            "accuracy": accuracy_by_group(last["labels"], truth),
            "predicted": len(last["labels"])}
        if "stats" in last:
            stats = job_stats(last)
            result["decided_share"] = {t.name: t.decided_share for t in stats.tiers}
        results[name] = result
    return results


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def markdown(record: dict, args) -> str:
    results = record["results"]
    peer = results[PEER]
    alone = next(r for n, r in results.items() if n.startswith("MPNet alone"))
    rows = []
    for name, r in results.items():
        acc = r["accuracy"]
        shares = r.get("decided_share")
        rows.append([
            name, f"{acc.get('dev', float('nan')):.2%}",
            f"{acc.get('held', float('nan')):.2%}",
            f"{100 * (alone['accuracy']['held'] - acc['held']):+.2f}" if "held" in acc else "",
            " / ".join(f"{v:.1%}" for v in shares.values()) if shares else "all by MPNet",
            f"{r['seconds']:.0f}", f"{r['records_per_second']:.1f}",
            _figure(r["records_per_second_after_startup"]),
            f"{peer['seconds'] / r['seconds']:.2f}x", f"{r['peak_rss_mib']:.0f}"])
    table = markdown_table(
        ["setting", "dev accuracy", "held-out accuracy", "held-out drop (points)",
         "decided by each tier", "seconds", "records/s", "records/s after start-up",
         "vs peer", "peak memory (MiB)"], rows)
    bare = record["bare"]
    bare_rows = [[name, f"{bare['dev_accuracy'][name]:.2%}", f"{ms:.2f}"]
                 for name, ms in bare["ms_per_record"].items()]
    costs = record["costs_ms"]
    calibration = [
        f"- {name}: {done['labels']} labels requested and answered; calibrate "
        f"{done['seconds'][0]:.0f} s, then {done['seconds'][1]:.0f} s; "
        + "; ".join(f"budget {b}: " + (done["promise"][b] if p else "refused")
                    for b, p in done["tuned"].items())
        for name, done in record["calibration"].items()]
    oracle_rows = [[cascade, budget, " / ".join(f"{r:.1%}" for r in point["reach"]),
                    f"{point['drop_points']:.2f}", f"{point['speedup_over_mpnet']:.2f}x"]
                   if point else [cascade, budget, "no thresholds within budget", "", ""]
                   for cascade, by_budget in record["oracle"].items()
                   for budget, point in by_budget.items()]
    return "\n".join([
        "# The big model: MPNet-base as the last tier", "",
        f"`{record['command']}`", "",
        f"{record['records']:,} records: SST-2 dev (872, labelled), test (1,821) and the "
        f"{record['calibration_sentences'] + record['held_out_sentences']:,} held-out SST-2 "
        "train sentences of bench.heldout_sst2, cycled with unique ids (the first "
        f"{record['records'] - record['sentences']:,} twice; accuracies count each sentence "
        "once). Each job in a fresh process on the FnApiRunner (one process, 2 cores), "
        "start-up and model loading included; medians of interleaved rounds "
        f"({args.big_rounds} for the peer and MPNet alone, {args.rounds} for the cascades). "
        f"MPNet runs on {record['runtime'].rstrip('/')} (the fastest runtime within "
        f"{100 * KEPT_ACCURACY:g} points of PyTorch fp32 on dev). Held-out: the "
        f"{record['held_out_sentences']:,} pool sentences no tier and no calibration saw; its "
        "drop is against MPNet alone through this pipeline. The peer: Beam's stock "
        f"RunInference + HuggingFacePipelineModelHandler, batch {PEER_BATCH_SIZE} in Beam and "
        "in the HF pipeline, PyTorch fp32. Records/s after start-up: (records - "
        f"{STARTUP_RECORDS}) / (seconds - the median seconds of the same job on "
        f"{STARTUP_RECORDS} records). Peak memory: the job process's peak resident memory "
        "plus that of its largest child process (an upper bound: the two peaks need not "
        "coincide).", "", table, "",
        "## Calibration", "", *calibration, "",
        "## What bounds the speed-up", "",
        "Bare-loop cost per record over SST-2 dev (tokenization included): "
        + ", ".join(f"{n} {ms:.2f} ms" for n, ms in costs.items())
        + f"; MPNet costs {costs[BIG] / costs['minilm']:.1f}x MiniLM and "
        f"{costs[BIG] / costs['tier1']:.0f}x the n-gram + CNN tier.", "",
        "The oracle: the cheapest thresholds whose drop on the held-out half (against MPNet "
        "alone) is within the budget, chosen on those sentences' own labels (so in-sample by "
        "construction); no guarantee can beat it. Its speed-up is in bare-loop costs.", "",
        markdown_table(["cascade", "budget", "reach of each tier", "held-out drop",
                        "ideal speed-up over MPNet"], oracle_rows), "",
        "## Bare loops over SST-2 dev", "",
        markdown_table(["tier / runtime", "dev accuracy", "ms per record"], bare_rows), ""])


if __name__ == "__main__":
    main()
