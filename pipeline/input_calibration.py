"""`calibrate_on_input`: the job chooses its thresholds on its own input before it routes.

The launcher draws a sample of the job's input records by id hash (models/hash_sample.py:
the same records on every runner, whatever the files' order or split), read with the job's
own readers and parser so that a record counts exactly when the job would classify it, in
memory for the sample alone. Every tier scores the sample and the labelled file the config
names, as the job scores records (`score_texts`, with the tier's temperature, measure and
router), and the thresholds are chosen as calibrate chooses them (`choose_point`, costs
from calibrate's `seconds_per_record`): the sample measures how often the cascade and the
last tier disagree on this very input, the labelled records who is wrong when they do.

Where no threshold keeps the drop's bound within the budget, the job runs the last tier
alone, and the statistics say so. A streaming source cannot be sampled ahead (pipeline/
job.py refuses it).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from models.config import (DEFAULT_INPUT_BUDGET, DEFAULT_INPUT_CONFIDENCE, CascadeConfig,
                           ConfigError, Guarantee)
from models.datasets import LabelledTexts, read_labelled
from models.hash_sample import BottomHashSample, stable_hash
from models.loading import load_configured_router, load_configured_tier
from models.operating_points import NoOperatingPoint, Policy, TierOutputs
from models.routing_stats import InputCalibration
from models.shift import reference_quantiles
from models.tier_scoring import score_texts
from models.tuning.choice import choose_point, reached_confidences, recorded_guarantee
from pipeline.sources import InputError
from pipeline.unlabelled_sample import parsed_rows
from transforms.parsing import RecordFields
from transforms.records import Record

_LOG = logging.getLogger(__name__)
SETTING = "calibrate_on_input"


@dataclass(frozen=True)
class InputSample:
    """The sampled records (smallest key first) and what reading the input met."""

    records: list[Record]
    records_read: int  # valid records in the input
    invalid: int  # rows the job would dead-letter, never sampled


def sample_input(patterns: Sequence[str], fields: RecordFields, size: int,
                 input_format: str | None) -> InputSample:
    """The `size` valid input records with the smallest keys (`sample_key`), streaming the
    inputs once with `size` records in memory."""
    sample: BottomHashSample[Record] = BottomHashSample(size)
    read = invalid = 0
    for item in parsed_rows(patterns, fields, input_format, reading_for=SETTING):
        if not isinstance(item, Record):
            invalid += 1
            continue
        read += 1
        sample.offer(sample_key(item), item)
    return InputSample(sample.items(), read, invalid)


def sample_key(record: Record) -> tuple[int, int]:
    """The hash of the record's own id, else of its text: a generated id (`file:line`) says
    where the record lies, which another split of the input changes. The text's hash breaks
    ties between records that share an id."""
    content = stable_hash([record.text, record.text_pair])
    generated = record.id == f"{record.source}:{record.position}"
    return (content if generated else stable_hash([record.id]), content)


def input_policy(config: CascadeConfig) -> Policy:
    """The accuracy-drop budget and confidence: the setting's own, else those of the
    guarantee calibrate recorded in the config, else the defaults."""
    settings, promise = config.calibrate_on_input, config.guarantee
    budget = settings.max_accuracy_drop
    confidence = settings.confidence
    if budget is None:
        budget = promise.max_accuracy_drop if promise else DEFAULT_INPUT_BUDGET
    if confidence is None:
        confidence = promise.confidence if promise else DEFAULT_INPUT_CONFIDENCE
    return Policy(max_accuracy_drop=budget, confidence=confidence)


def calibrated_on_input(config: CascadeConfig, labels: tuple[str, ...],
                        patterns: Sequence[str], input_format: str | None
                        ) -> tuple[CascadeConfig, InputCalibration]:
    """The config with the thresholds chosen on a sample of the input and the labelled
    evidence (or its last tier alone, where none passes the budget), and what they rest
    on, for the statistics."""
    check_calibrated(config)
    settings = config.calibrate_on_input
    evidence = read_evidence(config, labels)
    sample = sample_input(patterns, RecordFields.of(config, labels), settings.records,
                          input_format)
    if not sample.records:
        raise InputError(f"{SETTING}: the input holds no valid record to sample "
                         f"({sample.invalid} rows the job would dead-letter); check --input "
                         "and text_field")
    _LOG.info("%s: scoring %d records sampled of %d read and %d labelled records with "
              "every tier", SETTING, len(sample.records), sample.records_read,
              len(evidence.texts))
    labelled, unlabelled = every_tier_outputs(config, [
        (evidence.texts, evidence.text_pairs),
        ([r.text for r in sample.records],
         [r.text_pair for r in sample.records] if config.text_pair_field else None)])
    policy = input_policy(config)
    found = dict(records_sampled=len(sample.records), records_read=sample.records_read,
                 labelled=settings.labelled, labelled_records=len(evidence.texts),
                 max_accuracy_drop=policy.max_accuracy_drop, confidence=policy.confidence)
    try:
        choice = choose_point(labelled, torch.tensor(evidence.label_ids), unlabelled,
                              [t.seconds_per_record for t in config.tiers], policy)
    except NoOperatingPoint:
        _LOG.warning("%s: no threshold keeps the accuracy drop within %g points at "
                     "confidence %g: every record goes to the last tier alone", SETTING,
                     policy.max_accuracy_drop, policy.confidence)
        alone = dataclasses.replace(config, tiers=config.tiers[-1:])
        return (routed_by(alone, (), unlabelled[-1:], None),
                InputCalibration(**found, thresholds=None, drop_bound=None, evidence=None))
    thresholds = choice.point.thresholds
    promise = recorded_guarantee(policy, choice.bound, choice.point, len(evidence.texts),
                                 len(sample.records))
    return (routed_by(config, thresholds, unlabelled, promise),
            InputCalibration(**found, thresholds=tuple(thresholds),
                             drop_bound=promise.drop_bound, evidence=promise.evidence))


def check_calibrated(config: CascadeConfig) -> None:
    """Refuses tiers calibrate has not tuned: their temperatures make the confidences of
    the tiers comparable (one threshold sequence serves them all) and their timings are the
    costs the cheapest threshold is chosen by."""
    untimed = [t.name for t in config.tiers if t.seconds_per_record is None]
    if untimed:
        raise ConfigError(f"{SETTING}: tier(s) {untimed} carry no temperature and timing "
                          "from calibrate (seconds_per_record): it re-chooses the thresholds "
                          "of a calibrated cascade; run beam-cascade calibrate first and run "
                          "the config it writes")


def read_evidence(config: CascadeConfig, labels: tuple[str, ...]) -> LabelledTexts:
    """The labelled file, read by the config's text, pair and label fields and the tiers'
    labels."""
    path = config.calibrate_on_input.labelled
    try:
        evidence = read_labelled(path, config.text_field, config.label_field or "label",
                                 labels, text_pair_field=config.text_pair_field)
    except FileNotFoundError:
        raise ConfigError(f"{SETTING}: the labelled file {path!r} does not exist; give the "
                          "path of a labelled .tsv, .jsonl or .parquet file (a relative path "
                          "is read beside the config file)") from None
    except ValueError as e:  # a wrong format, rows without text or label, other labels
        raise ConfigError(f"{SETTING}: {e}") from None
    if not evidence.texts:
        raise ConfigError(f"{SETTING}: the labelled file {path!r} holds no labelled rows; "
                          "the bound needs labelled records to say who is wrong where the "
                          "tiers disagree")
    return evidence


def every_tier_outputs(config: CascadeConfig,
                       texts: list[tuple[list[str], list[str] | None]]
                       ) -> list[list[TierOutputs]]:
    """For each set of texts (and pairs), every tier's outputs on it; each tier loaded
    once."""
    outputs: list[list[TierOutputs]] = [[] for _ in texts]
    for tier in config.tiers:
        model, router = load_configured_tier(tier), load_configured_router(tier)
        for found, (some_texts, pairs) in zip(outputs, texts):
            scores = [score for start in range(0, len(some_texts), tier.records_per_call)
                      for score in score_texts(
                          tier, model, some_texts[start:start + tier.records_per_call],
                          pairs[start:start + tier.records_per_call] if pairs else None,
                          router)]
            found.append(TierOutputs(
                predictions=torch.tensor([s.label_id for s in scores]),
                confidences=torch.tensor([s.confidence for s in scores], dtype=torch.float64),
                max_probs=torch.tensor([max(s.probabilities) for s in scores],
                                       dtype=torch.float64)))
    return outputs


def routed_by(config: CascadeConfig, thresholds: Sequence[float],
              sample: Sequence[TierOutputs], guarantee: Guarantee | None) -> CascadeConfig:
    """The config with these thresholds (chosen: nothing left to calibrate), the promise
    they carry, and as each tier's shift reference the sample's confidences that reach it
    there (as calibrate writes them from its unlabelled sample): the old ones describe the
    records that reached it at the old thresholds."""
    reached = reached_confidences(list(sample), tuple(thresholds))
    return dataclasses.replace(config, guarantee=guarantee, calibrate_on_input=None, tiers=tuple(
        dataclasses.replace(tier, threshold=threshold,
                            reference_confidences=reference_quantiles(r) if r else None,
                            reference_records=len(r) or None)
        for tier, threshold, r in zip(config.tiers, (*thresholds, None), reached)))
