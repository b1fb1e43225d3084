"""`beam-cascade calibrate`: turns a labelled dev file into a tuned cascade config.

Reads the config, the dev file and, with --unlabelled, a sample of unlabelled records, runs
the tuning (models/tuning/: temperatures, exits, lengths, tier costs, thresholds for the
policy with its guarantee, batch sizes, a split-half check), writes the tuned config, which
`run` takes as is, and the report (pipeline/calibration_report.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import TYPE_CHECKING, Sequence

import yaml

from models.config import CascadeConfig, ConfigError, config_to_dict
from models.datasets import read_labelled
from models.validation import validate_models
from models.records_bound import EVIDENCE
from pipeline.config import load_config, relative_models

if TYPE_CHECKING:  # they load torch or Beam, once the flags and config are known right
    from models.operating_points import Policy, TierOutputs
    from pipeline.label_requests import Answers
    from pipeline.unlabelled_sample import UnlabelledSample
    from transforms.parsing import RecordFields
    from models.tuning.recipe import MeasuredCascade
    from models.tuning.results import TuningResult

DEFAULT_BATCH_SIZES = "8,16,32,64,128"
DEFAULT_MAX_ACCURACY_DROP = 0.5
DEFAULT_CONFIDENCE = 0.9
DEFAULT_UNLABELLED_SAMPLE = 20_000
DEFAULT_MAX_INT8_DROP = 0.3  # points an int8 tier may lose against its fp32 self
# the input fields calibrate reads (not ids): the tuned config names them even at their
# defaults, so that `run --config tuned.yaml` reads the fields the thresholds were chosen on
CALIBRATED_FIELDS = ("text_field", "text_pair_field", "label_field")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beam-cascade calibrate",
        description="Fit temperatures, measure tier costs and choose thresholds on a labelled "
                    "dev file; write the tuned cascade config.")
    p.add_argument("--config", required=True, help="the cascade config to tune (YAML/JSON)")
    p.add_argument("--dev", required=True, help="labelled .tsv, .jsonl or .parquet file")
    p.add_argument("--output", required=True, help="where to write the tuned config (.yaml)")
    p.add_argument("--report", help="folder for the report, plots and logits cache "
                                    "(default: next to --output, named after it)")
    p.add_argument("--text_field", help="dev file's text field (default: the config's)")
    p.add_argument("--label_field", help="dev file's label field (default: the config's, "
                                         "else 'label')")
    policy = p.add_mutually_exclusive_group()
    policy.add_argument("--max_accuracy_drop", type=accuracy_drop_budgets,
                        help="points of accuracy the cascade may lose against the last tier "
                             f"alone, at --confidence; the cheapest such point wins (default "
                             f"{DEFAULT_MAX_ACCURACY_DROP}). Several, separated by commas "
                             "(0.5,1,2), are tuned on one measurement, each written to its "
                             "own config: --output tuned.yaml gives tuned-0.5.yaml with "
                             "tuned-0.5-report/, and so on")
    policy.add_argument("--min_speedup", type=float,
                        help="the most accurate point at least this much faster than the last "
                             "tier alone")
    policy.add_argument("--max_escalation_rate", type=float,
                        help="the most accurate point sending at most this share of records "
                             "to the last tier (its capacity; in a two-tier cascade the same "
                             "share as run's --max_escalation_rate caps)")
    p.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE,
                   help="how sure the accuracy-drop promise must be: the chosen thresholds' "
                        "upper confidence bound on the drop stays within --max_accuracy_drop "
                        f"(default {DEFAULT_CONFIDENCE}: it fails in at most 1 calibration "
                        "in 10)")
    p.add_argument("--unlabelled", action="append", default=[], metavar="PATTERN",
                   help="unlabelled records (any input run reads; repeatable) on which the "
                        "disagreement with the last tier is measured: it tightens the bound, "
                        "so a budget costs less escalation")
    p.add_argument("--unlabelled_sample", type=int, default=DEFAULT_UNLABELLED_SAMPLE,
                   help="records drawn at random from --unlabelled (every tier runs on them; "
                        f"default {DEFAULT_UNLABELLED_SAMPLE})")
    requests = p.add_argument_group("label requests (docs/label-requests.md)")
    requests.add_argument("--request_labels", type=int, metavar="N",
                          help="after tuning, write the N records of the --unlabelled sample "
                               "whose labels tighten the bound most to <output>-requests.<ext> "
                               "(the input's format, label empty) with their design beside; "
                               "label them and calibrate again with --labelled_requests")
    requests.add_argument("--labelled_requests", action="append", default=[], metavar="FILE",
                          help="a request file with its labels filled in (repeat for each "
                               "round): the bound then rests on them, for the records of the "
                               "--unlabelled sample")
    requests.add_argument("--request_evidence", choices=EVIDENCE, default="both",
                          help="how a band sampled by the requests bounds the cascade's "
                               "mistakes: its labels, the last tier's probabilities corrected "
                               "by them (prediction-powered), or both at half the risk each "
                               "(default)")
    p.add_argument("--batch_sizes", default=DEFAULT_BATCH_SIZES,
                   help="batch sizes whose throughput is measured for every tier")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (medians are used)")
    p.add_argument("--remeasure", action="store_true",
                   help="time every tier again instead of reusing the costs this machine "
                        "measured in an earlier run on the same model, settings and texts")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split-half check and the unlabelled sample")
    p.add_argument("--compare_runtimes", action="store_true",
                   help="time each plain transformer tier on PyTorch, on ONNX Runtime in "
                        "fp32 and int8 and on OpenVINO (where installed) and keep the "
                        "fastest within --max_int8_drop")
    p.add_argument("--max_int8_drop", type=float, default=DEFAULT_MAX_INT8_DROP,
                   help="with --compare_runtimes: the most accuracy (points, upper "
                        "confidence bound against the tier in fp32) an int8 tier may lose; "
                        "an int8 last tier also takes at most half of --max_accuracy_drop, "
                        f"and the cascade the rest (default {DEFAULT_MAX_INT8_DROP})")
    p.add_argument("--int8_fallback", action="store_true",
                   help="with --compare_runtimes: when the last tier's int8 is refused, put "
                        "its int8 copy before it as a tier of its own, which decides the "
                        "records it is sure of and sends the rest to the last tier in fp32 "
                        "(its threshold tuned under the same guarantee; kept only where "
                        "the cascade is cheaper with it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    flags = parser()
    args = flags.parse_args(argv)
    if args.int8_fallback and not args.compare_runtimes:
        flags.error("--int8_fallback needs --compare_runtimes (the int8 copy is measured "
                    "against the tier in fp32 there); add it")
    if args.int8_fallback and (args.min_speedup is not None
                               or args.max_escalation_rate is not None):
        flags.error("--int8_fallback works with an accuracy-drop budget (--max_accuracy_drop), "
                    "where the cheaper cascade is the better one; under --min_speedup or "
                    "--max_escalation_rate the records the int8 copy decides would escape the "
                    "policy's measure: drop those flags or --int8_fallback")
    if (args.request_labels is not None or args.labelled_requests) and not args.unlabelled:
        flags.error("--request_labels and --labelled_requests work on the --unlabelled "
                    "sample (the records the labels are requested on): add --unlabelled "
                    "naming the input, as when the labels were requested")
    if args.request_labels is not None and args.request_labels < 1:
        flags.error(f"--request_labels {args.request_labels}: ask for at least one label")
    if args.compare_runtimes and len(args.max_accuracy_drop or ()) > 1:
        flags.error("--compare_runtimes spends part of the accuracy-drop budget on an int8 "
                    "last tier, so it tunes one budget a run: give one --max_accuracy_drop "
                    "value, and run calibrate once per budget")
    try:
        config = with_calibrated_fields(load_config(args.config), args)
        # torch and transformers load here, once the arguments and config are known right
        from models.operating_points import Policy
        from models.tuning.recipe import measure_cascade
        from pipeline.label_requests import read_answers
        from transforms.parsing import RecordFields
        labels = validate_models(config, routers_fitted=False)
        dev = read_labelled(args.dev, config.text_field, config.label_field, labels,
                            text_pair_field=config.text_pair_field)
        if args.min_speedup is None and args.max_escalation_rate is None:
            args.max_accuracy_drop = args.max_accuracy_drop or [DEFAULT_MAX_ACCURACY_DROP]
        fields = RecordFields.of(config, labels)
        sample = read_unlabelled(args, fields)
        unlabelled = sample.texts if sample else None
        answers = (read_answers(args.labelled_requests, fields, labels)
                   if args.labelled_requests else None)
        requests = answers and answers.on_sample(sample, args.request_evidence)
        policies = [Policy(budget, args.min_speedup, args.max_escalation_rate, args.confidence,
                           requests)
                    for budget in args.max_accuracy_drop or [None]]
        measured = measure_cascade(config, dev, policies,
                                   [int(b) for b in args.batch_sizes.split(",")],
                                   args.repeats, args.seed, unlabelled,
                                   args.max_int8_drop if args.compare_runtimes else None,
                                   args.int8_fallback, args.remeasure)
    except (ConfigError, ValueError, OSError) as e:  # NoOperatingPoint is a ValueError
        print(f"beam-cascade calibrate: error: {e}", file=sys.stderr)
        return 2
    several = len(policies) > 1
    tuned = [write_tuned(measured, policy, output, report_dir, several)
             for policy, (output, report_dir) in zip(measured.policies, tuned_paths(args))]
    if several:
        for budget, (output, report_dir), result in zip(args.max_accuracy_drop,
                                                         tuned_paths(args), tuned):
            print(f"budget {budget:g} points: " + (
                f"{result.chosen.reach[-1]:.1%} of records to the last tier, expected speedup "
                f"{result.chosen.speedup:.2f}x: {output} (report: {report_dir})" if result
                else "refused, as said above"))
    if args.request_labels:
        request_round(args, sample, answers, unlabelled_outputs(measured, tuned[0]),
                      tuned_paths(args)[0][1] if tuned[0] else None, fields)
    return 0 if all(result is not None for result in tuned) else 2


def accuracy_drop_budgets(value: str) -> list[float]:
    """--max_accuracy_drop's value: one budget in points, or several separated by commas."""
    budgets: list[float] = []
    for part in value.split(","):
        try:
            budget = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a number of points: give one budget, or several "
                "separated by commas, such as 0.5,1,2") from None
        if not 0 < budget < math.inf:
            raise argparse.ArgumentTypeError(
                f"{part.strip()} is not a budget: each must be a number of points above 0, "
                "such as 0.5")
        if budget in budgets:
            raise argparse.ArgumentTypeError(
                f"budget {budget:g} is given twice: give each budget once")
        budgets.append(budget)
    return budgets


def tuned_paths(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The tuned config and report folder of each budget: --output and --report (default
    `<output>-report`) for one; for several, each named with its budget (tuned.yaml ->
    tuned-0.5.yaml and tuned-0.5-report/, or `<report>-0.5`)."""
    stem, extension = os.path.splitext(args.output)
    budgets = args.max_accuracy_drop or []
    if len(budgets) < 2:
        return [(args.output, args.report or stem + "-report")]
    return [(f"{stem}-{b:g}{extension}",
             f"{args.report}-{b:g}" if args.report else f"{stem}-{b:g}-report")
            for b in budgets]


def write_tuned(measured: MeasuredCascade, policy: Policy, output: str, report_dir: str,
                several: bool) -> TuningResult | None:
    """Chooses the policy's point on what was measured and writes its config and report;
    the result, or None when the data supports no point for it (the error said why)."""
    from models.tuning.recipe import choose_for_policy
    from pipeline.calibration_report import slower_than_last_tier, write_report  # matplotlib
    if several:
        print(f"calibrate: budget {policy.max_accuracy_drop:g} points, for {output}",
              file=sys.stderr)
    try:
        result = choose_for_policy(measured, policy)
    except (ValueError, OSError) as e:  # NoOperatingPoint is a ValueError
        print(f"beam-cascade calibrate: error: {e}", file=sys.stderr)
        return None
    write_config(with_routers(result, output), output)
    summary = write_report(result, report_dir)
    if not several:
        print(summary)
        print(f"tuned config: {output}; report: {report_dir}")
    if warning := slower_than_last_tier(result):
        print(f"beam-cascade calibrate: warning: {warning}", file=sys.stderr)
    return result


def with_calibrated_fields(config: CascadeConfig, args: argparse.Namespace) -> CascadeConfig:
    """The config with the fields the dev file is read by (--text_field, --label_field, else
    the config's, else 'label'): the tuned config is written from it, so it keeps them."""
    return dataclasses.replace(config, text_field=args.text_field or config.text_field,
                               label_field=args.label_field or config.label_field or "label")


def read_unlabelled(args: argparse.Namespace, fields: RecordFields) -> UnlabelledSample | None:
    """The --unlabelled sample, read as the job reads its input; None without --unlabelled."""
    if not args.unlabelled:
        return None
    from pipeline.unlabelled_sample import sample_unlabelled  # Beam's IO
    sample = sample_unlabelled(args.unlabelled, fields, args.unlabelled_sample, args.seed)
    print(f"calibrate: {len(sample.texts.texts)} unlabelled records sampled of "
          f"{sample.records_read} read ({sample.invalid} invalid rows skipped)", file=sys.stderr)
    return sample


def unlabelled_outputs(measured: MeasuredCascade, result: TuningResult | None
                       ) -> list[TierOutputs] | None:
    """The calibrated tiers' outputs on the unlabelled sample: the tuned cascade's, or, where
    the budget was refused (labels are wanted most then), the measured tiers' but the int8
    fallback."""
    if result is not None:
        return result.unlabelled_tiers
    if measured.unlabelled is None:
        return None
    return [t.unlabelled for k, t in enumerate(measured.tiers) if k != measured.fallback]


def request_round(args: argparse.Namespace, sample: UnlabelledSample, answers: Answers | None,
                  tiers: list[TierOutputs] | None, report_dir: str | None,
                  fields: RecordFields) -> None:
    """Writes --request_labels more records to label (a first round, or the next of the
    answered ones' design) and says what they are for: in the report, or here where the
    budget was refused and no report was written."""
    from pipeline.label_requests import (bands_section, design_path, design_requests,
                                         requests_file, sample_keys, write_requests)
    path = requests_file(args.output, args.unlabelled[0])
    before = answers.design if answers else None
    design = design_requests(tiers, sample, before, args.request_labels, args.seed)
    written = write_requests(path, sample.records, before, design, fields)
    if not written:
        print("calibrate: every disagreement of the sample is requested already: no more "
              "labels can tighten the bound; calibrate with the answered files alone",
              file=sys.stderr)
        return
    section = "\n".join(bands_section(design, sample_keys(sample), tiers, before)) + "\n"
    if report_dir is None:
        print(section, file=sys.stderr)
    else:
        with open(os.path.join(report_dir, "report.md"), "a", encoding="utf-8") as f:
            f.write(section)
    print(f"calibrate: {written} records to label in {path} (design beside it: "
          f"{design_path(path)}); label them, then calibrate again with "
          f"--labelled_requests {' --labelled_requests '.join([*args.labelled_requests, path])}",
          file=sys.stderr)


def with_routers(result, config_path: str) -> CascadeConfig:
    """Writes each learned tier's router beside the tuned config (`<config>.<tier>.router.json`)
    and returns the config that names them."""
    from models.learned_deferral import save_router
    stem = os.path.splitext(os.path.abspath(config_path))[0]
    paths = {}
    for tier in result.tiers:
        if tier.learned is not None:
            paths[tier.name] = f"{stem}.{tier.name}.router.json"
            os.makedirs(os.path.dirname(paths[tier.name]), exist_ok=True)
            save_router(tier.learned.router, paths[tier.name])
    return dataclasses.replace(result.config, tiers=tuple(
        dataclasses.replace(tier, router=paths.get(tier.name, tier.router))
        for tier in result.config.tiers))


def write_config(config: CascadeConfig, path: str) -> None:
    """Writes the tuned config, its local model paths relative to the file's folder, and the
    input fields it was calibrated on, first, even where they are the defaults."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    raw = {**{key: getattr(config, key) for key in CALIBRATED_FIELDS
              if getattr(config, key) is not None},
           **config_to_dict(relative_models(config, path), defaults=False)}
    with open(path, "w", encoding="utf-8") as f:
        if path.endswith(".json"):
            json.dump(raw, f, indent=2)
        else:
            yaml.safe_dump(raw, f, sort_keys=False)


if __name__ == "__main__":
    sys.exit(main())
