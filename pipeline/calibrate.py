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
import os
import sys
from typing import Sequence

import yaml

from models.config import CascadeConfig, ConfigError, config_to_dict
from models.datasets import UnlabelledTexts, read_labelled
from models.validation import validate_models
from pipeline.config import load_config, relative_models

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
    policy.add_argument("--max_accuracy_drop", type=float,
                        help="points of accuracy the cascade may lose against the last tier "
                             f"alone, at --confidence; the cheapest such point wins (default "
                             f"{DEFAULT_MAX_ACCURACY_DROP})")
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
    p.add_argument("--batch_sizes", default=DEFAULT_BATCH_SIZES,
                   help="batch sizes whose throughput is measured for every tier")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (medians are used)")
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
    try:
        config = with_calibrated_fields(load_config(args.config), args)
        # torch and transformers load here, once the arguments and config are known right
        from models.operating_points import Policy
        from models.tuning.recipe import tune
        labels = validate_models(config, routers_fitted=False)
        dev = read_labelled(args.dev, config.text_field, config.label_field, labels,
                            text_pair_field=config.text_pair_field)
        if args.min_speedup is None and args.max_escalation_rate is None:
            args.max_accuracy_drop = (DEFAULT_MAX_ACCURACY_DROP if args.max_accuracy_drop is None
                                      else args.max_accuracy_drop)
        policy = Policy(args.max_accuracy_drop, args.min_speedup, args.max_escalation_rate,
                        args.confidence)
        unlabelled = read_unlabelled(args, config, labels)
        report_dir = args.report or os.path.splitext(args.output)[0] + "-report"
        result = tune(config, dev, policy, [int(b) for b in args.batch_sizes.split(",")],
                      args.repeats, report_dir, args.seed, unlabelled,
                      args.max_int8_drop if args.compare_runtimes else None,
                      args.int8_fallback)
    except (ConfigError, ValueError, OSError) as e:  # NoOperatingPoint is a ValueError
        print(f"beam-cascade calibrate: error: {e}", file=sys.stderr)
        return 2
    from pipeline.calibration_report import slower_than_last_tier, write_report  # matplotlib
    write_config(with_routers(result, args.output), args.output)
    print(write_report(result, report_dir))
    print(f"tuned config: {args.output}; report: {report_dir}")
    if warning := slower_than_last_tier(result):
        print(f"beam-cascade calibrate: warning: {warning}", file=sys.stderr)
    return 0


def with_calibrated_fields(config: CascadeConfig, args: argparse.Namespace) -> CascadeConfig:
    """The config with the fields the dev file is read by (--text_field, --label_field, else
    the config's, else 'label'): the tuned config is written from it, so it keeps them."""
    return dataclasses.replace(config, text_field=args.text_field or config.text_field,
                               label_field=args.label_field or config.label_field or "label")


def read_unlabelled(args: argparse.Namespace, config: CascadeConfig,
                    labels: tuple[str, ...]) -> UnlabelledTexts | None:
    """The --unlabelled sample, read as the job reads its input; None without --unlabelled."""
    if not args.unlabelled:
        return None
    from pipeline.unlabelled_sample import sample_unlabelled  # Beam's IO
    from transforms.parsing import RecordFields
    sample = sample_unlabelled(args.unlabelled, RecordFields.of(config, labels),
                               args.unlabelled_sample, args.seed)
    print(f"calibrate: {len(sample.texts.texts)} unlabelled records sampled of "
          f"{sample.records_read} read ({sample.invalid} invalid rows skipped)", file=sys.stderr)
    return sample.texts


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
