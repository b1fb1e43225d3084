"""The cascade configuration: which tiers, in which order, how records are read; its checks.

Plain data, no Beam, no file format and no model loading (models/loading.py loads what a
tier names): pipeline/config.py reads it from YAML or JSON files and command-line flags, the
transforms and tuning read it. `check_config` checks every value
that can be checked without the model folders; models/validation.py `validate_models` then
opens every tier folder and checks that all tiers share one label set, so a bad config fails
before a job starts.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from models.names import (CONFIDENCE_MEASURE_NAMES, LEARNED_CONFIDENCE, OPENVINO_MISSING,
                          QUANTIZATION_SCHEMES, RUNTIMES)

TIER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A cascade config that cannot run; the message says what to change."""


@dataclass(frozen=True)
class TierConfig:
    """One model of the cascade. `threshold` is required on every tier but the last.

    `model` is a checkpoint folder: a local path or any fsspec URL (gs://, s3://, https://),
    which each machine copies once into its local cache (models/model_cache.py).

    Beam hands the tier `batch_size * sort_window` records at a time; the tier sorts them by
    length and runs forward passes of `batch_size`, so each pass pads its texts to similar
    lengths (sort_window 1 keeps input order). 32 by default: on the 5,823 SST-2 sentences
    the reference tier 2 gets in the bulk cascade, windows of 1,024 records (batch 32) took
    12% less time than windows of 256 and as little as sorting them all (docs/benchmarks.md).

    A multi-exit model (`beam-cascade train --exits`) leaves early when `exit_threshold` is
    set: each record stops at the first exit whose confidence, divided by that exit's
    temperature (`exit_temperatures`, fitted by `beam-cascade calibrate`), reaches it.
    `runtime` runs a transformer tier on PyTorch, or its graph exported once per machine
    (models/onnx_export.py) on ONNX Runtime or OpenVINO; `quantize` (onnxruntime only) runs
    its matrix multiplications in int8 on the CPU.
    `keep_tokens` is a length configuration (models/token_dropping.py): after layer i only
    the share keep_tokens[i-1] of each text's most attended tokens go on; `beam-cascade
    calibrate` searches one for a tier with `length_budget` (the share of the full model's
    token-layers it may use). `max_batch_duration_secs` batches across bundles (see
    transforms/scoring.py), for runners that hand out small bundles such as Flink.
    `confidence: learned` routes by a router `beam-cascade calibrate` fits and writes as
    JSON (`router`, a path or URL, read with the model on every worker): its estimate that
    the last tier would answer otherwise (models/learned_deferral.py).
    `max_escalation_rate` caps the share of the tier's records, per window, that go on to
    the next tier by lowering the threshold where needed (transforms/budget.py).
    `inference_timeout_secs` gives up on a model call that takes longer and sends its
    batch to the dead letters (a hung model must not hang the job). `audit_rate` sends that
    share of the records the tier decides (chosen by a hash of tier and id, the same on
    every runner) also to the last tier, only to measure how often the two disagree: the
    prediction keeps the tier's answer (transforms/cascade.py). `max_disagreement` (with
    `audit_rate`) closes the loop: each window's threshold is raised until the 95% bound on
    the share of the tier's records it decides against the last tier's answer, measured on
    that sample, is within it (transforms/budget.py). `reference_confidences`
    and `reference_records` describe the confidences calibration saw at this tier; the run
    tests its own against them and says when the input has shifted (models/shift.py).
    `seconds_per_record` is calibrate's timing of the tier on all its texts at its best batch
    size: the run scales the last tier's cost alone from it (transforms/statistics_extraction.py).
    """

    name: str
    model: str
    threshold: float | None = None
    confidence: str = "max_prob"
    temperature: float = 1.0
    batch_size: int = 64
    sort_window: int = 32
    max_length: int = 128
    device: str = "auto"
    allow_pickle_weights: bool = False
    trust_remote_code: bool = False
    exit_threshold: float | None = None
    exit_temperatures: tuple[float, ...] | None = None
    runtime: str = "torch"
    quantize: str | None = None
    keep_tokens: tuple[float, ...] | None = None
    length_budget: float | None = None
    max_batch_duration_secs: float | None = None
    max_escalation_rate: float | None = None
    inference_timeout_secs: float | None = None
    audit_rate: float | None = None
    max_disagreement: float | None = None
    reference_confidences: tuple[float, ...] | None = None  # written by calibrate
    reference_records: int | None = None
    router: str | None = None  # written by calibrate, with confidence: learned
    seconds_per_record: float | None = None  # written by calibrate

    @property
    def records_per_call(self) -> int:
        """The most records the pipeline hands the tier's model in one call."""
        return self.batch_size * self.sort_window

    @property
    def model_spec(self) -> "ModelSpec":
        """What loads the tier's model; the other fields say how the tier routes."""
        return ModelSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSpec)})


@dataclass(frozen=True)
class ModelSpec:
    """The part of a tier that makes its model: the checkpoint, where and how it runs, and
    the run settings fixed when it loads (runtime, early exit, int8, token dropping): all that
    models/loading.py `load_configured_tier` reads. The rest of TierConfig (name, threshold,
    temperature, budgets, timeouts) says how the tier routes and is batched by Beam. One YAML
    mapping per tier holds both."""

    model: str
    device: str
    max_length: int
    batch_size: int
    runtime: str
    quantize: str | None
    exit_threshold: float | None
    exit_temperatures: tuple[float, ...] | None
    confidence: str  # early exit compares exits' confidences by the tier's measure
    keep_tokens: tuple[float, ...] | None
    allow_pickle_weights: bool
    trust_remote_code: bool


LIST_KEYS = ("exit_temperatures", "keep_tokens", "reference_confidences")  # YAML lists, tuples in TierConfig


DEFAULT_MAX_ERROR_RATE = 0.01  # of a run's records that may be dead letters (docs/reliability.md)


@dataclass(frozen=True)
class Guarantee:
    """What `calibrate` promised for the thresholds it wrote, recorded in the tuned config
    so that every run can say what it rests on: the cascade's accuracy is at most
    `max_accuracy_drop` points below its last tier alone, with probability `confidence`
    over calibrations on data like `evidence` describes. `drop_bound` is the upper bound
    (points) that the chosen thresholds reached; the expected figures are calibrate's,
    measured on its records, not promises."""

    max_accuracy_drop: float  # points
    confidence: float
    drop_bound: float  # points
    labelled_records: int
    unlabelled_records: int
    evidence: str  # which evidence set the bound, in words
    expected_escalation: float  # share of the records calibrate expects at the last tier
    expected_speedup: float  # against the last tier alone, by calibrate's measured costs
    calibrated_on: str  # the date (ISO 8601)

    def describe(self) -> str:
        """One sentence: the promise and what it rests on."""
        unlabelled = (f" and {self.unlabelled_records:,} unlabelled"
                      if self.unlabelled_records else "")
        points = "point" if self.max_accuracy_drop == 1 else "points"
        return (f"accuracy at most {self.max_accuracy_drop:g} {points} below the last tier "
                f"alone, at confidence {self.confidence:.0%} (calibrated {self.calibrated_on} "
                f"on {self.labelled_records:,} labelled records{unlabelled}: upper bound "
                f"{self.drop_bound:.2f} points from {self.evidence})")


DEFAULT_INPUT_SAMPLE = 20_000  # records calibrate_on_input samples, unless told
DEFAULT_INPUT_BUDGET = 0.5  # points, where the config carries no guarantee to keep
DEFAULT_INPUT_CONFIDENCE = 0.9


@dataclass(frozen=True)
class CalibrateOnInput:
    """`calibrate_on_input`: before routing, the job scores a hash sample of `records` of
    its own input records with every tier and chooses the thresholds under the accuracy
    guarantee from that sample (the disagreement rate) and the `labelled` file (who is
    wrong when the tiers disagree), as calibrate does (pipeline/input_calibration.py).
    The budget (points) and confidence default to the config's `guarantee`, else
    DEFAULT_INPUT_BUDGET and DEFAULT_INPUT_CONFIDENCE."""

    labelled: str  # a labelled .tsv, .jsonl or .parquet file: local path or URL
    records: int = DEFAULT_INPUT_SAMPLE
    max_accuracy_drop: float | None = None  # points
    confidence: float | None = None


@dataclass(frozen=True)
class CascadeConfig:
    """The tiers in escalation order, the input fields they read, and the job's error limit.

    `id_field` names the records' own ids; a record without one (or `id_field: null`) gets
    `file:line`. `max_error_rate` fails the job (exit status 3, `_FAILED`) when a larger
    share of its records end as dead letters; unset (None) it is DEFAULT_MAX_ERROR_RATE, as
    load jobs fail on bad records unless told otherwise (1 never fails on dead letters).
    """

    tiers: tuple[TierConfig, ...]
    text_field: str = "text"
    id_field: str | None = "id"
    label_field: str | None = None
    text_pair_field: str | None = None
    passthrough_fields: tuple[str, ...] = field(default_factory=tuple)
    max_error_rate: float | None = None
    guarantee: Guarantee | None = None  # written by calibrate under an accuracy budget
    calibrate_on_input: CalibrateOnInput | None = None

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    @property
    def error_rate_limit(self) -> float:
        return DEFAULT_MAX_ERROR_RATE if self.max_error_rate is None else self.max_error_rate


def config_from_dict(raw: Any, source: str = "config") -> CascadeConfig:
    """Builds and checks a CascadeConfig from plain data (the parsed YAML/JSON)."""
    config = parse_config(raw, source)
    check_config(config, source)
    return config


def parse_config(raw: Any, source: str = "config") -> CascadeConfig:
    """Builds a CascadeConfig from plain data, refusing unknown keys and a malformed tier
    list; its values are checked by `check_config`, once any overrides are applied."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a mapping with a 'tiers' list")
    _reject_unknown_keys(raw, CascadeConfig, source)
    tiers_raw = raw.get("tiers")
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise ConfigError(f"{source}: 'tiers' must be a non-empty list of tiers, cheapest first")
    tiers = []
    for i, tier_raw in enumerate(tiers_raw):
        if not isinstance(tier_raw, dict):
            raise ConfigError(f"{source}: tier {i + 1} must be a mapping with at least 'model'")
        _reject_unknown_keys(tier_raw, TierConfig, f"{source}: tier {i + 1}")
        if "model" not in tier_raw:
            raise ConfigError(f"{source}: tier {i + 1} has no 'model' (path to its folder)")
        tier_raw = {key: tuple(value) if key in LIST_KEYS and isinstance(value, list) else value
                    for key, value in tier_raw.items()}
        tiers.append(TierConfig(**{"name": f"tier{i + 1}", **tier_raw}))
    fields = {k: v for k, v in raw.items() if k != "tiers"}
    passthrough = fields.get("passthrough_fields") or []
    if not isinstance(passthrough, list):
        raise ConfigError(f"{source}: 'passthrough_fields' must be a list of field names, "
                          f"e.g. [lang, source], not {passthrough!r}")
    fields["passthrough_fields"] = tuple(passthrough)
    if fields.get("guarantee") is not None:
        fields["guarantee"] = _parse_guarantee(fields["guarantee"], source)
    if fields.get("calibrate_on_input") is not None:
        fields["calibrate_on_input"] = _parse_calibrate_on_input(fields["calibrate_on_input"],
                                                                 source)
    return CascadeConfig(tiers=tuple(tiers), **fields)


def _parse_guarantee(raw: Any, source: str) -> Guarantee:
    """The `guarantee` block calibrate writes (left as it wrote it: a config whose
    thresholds were edited by hand no longer carries the promise)."""
    where = f"{source}: guarantee"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be the mapping calibrate writes, or be removed")
    _reject_unknown_keys(raw, Guarantee, where)
    missing = sorted({f.name for f in dataclasses.fields(Guarantee)} - set(raw))
    if missing:
        raise ConfigError(f"{where} lacks {missing}; calibrate writes it whole: recalibrate, "
                          "or remove the block")
    return Guarantee(**raw)


def _parse_calibrate_on_input(raw: Any, source: str) -> CalibrateOnInput:
    where = f"{source}: calibrate_on_input"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping such as {{labelled: dev.tsv, "
                          f"records: 20000}}, not {raw!r}")
    _reject_unknown_keys(raw, CalibrateOnInput, where)
    if "labelled" not in raw:
        raise ConfigError(f"{where} lacks 'labelled': the labelled file (.tsv, .jsonl or "
                          ".parquet) that says who is wrong where the tiers disagree")
    return CalibrateOnInput(**raw)


def config_to_dict(config: CascadeConfig, defaults: bool = True) -> dict[str, Any]:
    """Plain data that `config_from_dict` reads back to the same config (for writing YAML);
    without `defaults`, only the values that differ from the defaults (what a person reads)."""
    raw = _differing(config, defaults, keep=("tiers",))
    raw["tiers"] = [_differing(tier, defaults, keep=("name", "model")) for tier in config.tiers]
    if config.guarantee is not None:
        raw["guarantee"] = dataclasses.asdict(config.guarantee)
    if config.calibrate_on_input is not None:
        raw["calibrate_on_input"] = dataclasses.asdict(config.calibrate_on_input)
    return raw


def _differing(config: Any, defaults: bool, keep: tuple[str, ...]) -> dict[str, Any]:
    """A config dataclass's fields as plain data (tuples as lists), all of them or only
    those that differ from the field's default (and `keep`)."""
    raw = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        if defaults or f.name in keep or value != default:
            raw[f.name] = list(value) if isinstance(value, tuple) and f.name != "tiers" \
                else value
    return raw


def check_config(config: CascadeConfig, source: str) -> None:
    """Checks every value that can be checked without opening the model folders."""
    if not config.tiers:
        raise ConfigError(f"{source}: no tiers; give at least one model")
    names = [t.name for t in config.tiers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: tier names must be unique, got {names}")
    for i, tier in enumerate(config.tiers):
        _check_tier(tier, is_last=i == len(config.tiers) - 1, source=source)
    for key in ("text_field", "id_field", "label_field", "text_pair_field"):
        value = getattr(config, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{source}: '{key}' must be a non-empty field name")
    if config.text_field is None:
        raise ConfigError(f"{source}: 'text_field' cannot be null")
    rate = config.max_error_rate
    if rate is not None and not (_is_number(rate) and 0.0 <= rate <= 1.0):
        raise ConfigError(f"{source}: max_error_rate {rate!r} must be a share in [0, 1] of the "
                          f"records (1: no limit), or null for the default "
                          f"{DEFAULT_MAX_ERROR_RATE:.0%}")
    if not all(isinstance(f, str) and f for f in config.passthrough_fields):
        raise ConfigError(f"{source}: 'passthrough_fields' must hold non-empty field names, "
                          f"got {list(config.passthrough_fields)}")
    if config.calibrate_on_input is not None:
        _check_calibrate_on_input(config, f"{source}: calibrate_on_input")


def _check_calibrate_on_input(config: CascadeConfig, where: str) -> None:
    """The sample's size, the evidence, the budget, and thresholds to choose. That the tiers
    are calibrated is checked by the run (pipeline/input_calibration.py): `calibrate` reads
    this config too, before its tiers are."""
    settings = config.calibrate_on_input
    records = settings.records
    if not isinstance(records, int) or isinstance(records, bool) or records < 1:
        raise ConfigError(f"{where}: records {records!r} must be a whole number >= 1 (the "
                          "input records to sample; --calibrate_on_input N sets it)")
    if not isinstance(settings.labelled, str) or not settings.labelled:
        raise ConfigError(f"{where}: labelled {settings.labelled!r} must be the path of a "
                          "labelled .tsv, .jsonl or .parquet file")
    budget = settings.max_accuracy_drop
    if budget is not None and not (_is_number(budget) and 0 < budget <= 100):
        raise ConfigError(f"{where}: max_accuracy_drop {budget!r} must be a number of points "
                          "in (0, 100], or null for the config's guarantee's (else "
                          f"{DEFAULT_INPUT_BUDGET})")
    confidence = settings.confidence
    if confidence is not None and not (_is_number(confidence) and 0 < confidence < 1):
        raise ConfigError(f"{where}: confidence {confidence!r} must be between 0 and 1 "
                          "(0.9: the promise holds in 9 of 10 calibrations), or null")
    if len(config.tiers) < 2:
        raise ConfigError(f"{where}: it chooses the thresholds of the tiers before the last, "
                          "and this cascade has one tier; add a tier or remove it")


def _check_tier(tier: TierConfig, is_last: bool, source: str) -> None:
    where = f"{source}: tier {tier.name!r}"
    if not isinstance(tier.name, str) or not TIER_NAME.match(tier.name):
        raise ConfigError(f"{where}: name must be letters, digits and _ (it names output columns)")
    if not isinstance(tier.model, str) or not tier.model:
        raise ConfigError(f"{where}: 'model' must be the path of a checkpoint folder")
    if is_last and tier.threshold is not None:
        raise ConfigError(
            f"{where}: the last tier decides every record it receives, so it takes no "
            "threshold; remove it (or add a tier after it)")
    if not is_last:
        if tier.threshold is None:
            raise ConfigError(f"{where}: 'threshold' is required on every tier but the last")
        if not _is_number(tier.threshold) or not 0.0 <= tier.threshold <= 1.0:
            raise ConfigError(f"{where}: threshold {tier.threshold!r} must be a number in [0, 1]")
    rate = tier.max_escalation_rate
    if rate is not None and (is_last or not (_is_number(rate) and 0.0 <= rate <= 1.0)):
        raise ConfigError(f"{where}: max_escalation_rate {rate!r} must be a number in [0, 1] "
                          "on a tier that escalates (not the last), or null for no budget")
    audit = tier.audit_rate
    if audit is not None and (is_last or not (_is_number(audit) and 0.0 <= audit <= 1.0)):
        raise ConfigError(f"{where}: audit_rate {audit!r} must be a share in [0, 1] of the "
                          "records the tier decides, on a tier before the last (whose answers "
                          "it checks against), or null for no audit")
    target = tier.max_disagreement
    if target is not None and (is_last or not (_is_number(target) and 0.0 < target <= 1.0)):
        raise ConfigError(f"{where}: max_disagreement {target!r} must be a share in (0, 1] of "
                          "the tier's records, on a tier before the last, or null for none")
    if target is not None and not audit:
        raise ConfigError(f"{where}: max_disagreement needs an audit_rate (the sample that "
                          "measures the disagreement), e.g. audit_rate: 0.02")
    reference = tier.reference_confidences
    if reference is not None and not (
            isinstance(reference, tuple) and all(_is_number(q) for q in reference)
            and isinstance(tier.reference_records, int) and tier.reference_records > 0):
        raise ConfigError(f"{where}: reference_confidences must be a list of numbers with "
                          "reference_records, their sample's size (beam-cascade calibrate "
                          "writes both); remove both to skip the shift test")
    _check_confidence(tier, is_last, where)
    cost = tier.seconds_per_record
    if cost is not None and not (_is_number(cost) and cost > 0):
        raise ConfigError(f"{where}: seconds_per_record {cost!r} must be a number > 0 "
                          "(beam-cascade calibrate writes it), or be removed")
    if not _is_number(tier.temperature) or tier.temperature <= 0:
        raise ConfigError(f"{where}: temperature {tier.temperature!r} must be a number > 0")
    for key in ("batch_size", "sort_window", "max_length"):
        value = getattr(tier, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: {key} {value!r} must be a whole number >= 1")
    for key in ("allow_pickle_weights", "trust_remote_code"):
        if not isinstance(getattr(tier, key), bool):
            raise ConfigError(f"{where}: {key} must be true or false, not "
                              f"{getattr(tier, key)!r}")
    duration = tier.max_batch_duration_secs
    if duration is not None and not (_is_number(duration) and duration > 0):
        raise ConfigError(f"{where}: max_batch_duration_secs {duration!r} must be a number of "
                          "seconds > 0, or null to batch within bundles only")
    timeout = tier.inference_timeout_secs
    if timeout is not None and not (_is_number(timeout) and timeout > 0):
        raise ConfigError(f"{where}: inference_timeout_secs {timeout!r} must be a number of "
                          "seconds > 0, or null to wait for every model call")
    if tier.device not in DEVICES:
        raise ConfigError(f"{where}: device {tier.device!r} must be one of {DEVICES}")
    if tier.exit_threshold is not None and not (
            _is_number(tier.exit_threshold) and 0.0 <= tier.exit_threshold <= 1.0):
        raise ConfigError(f"{where}: exit_threshold {tier.exit_threshold!r} must be a number "
                          "in [0, 1], or null for no early exit")
    _check_runtime(tier, where)
    _check_token_dropping(tier, where)
    temperatures = tier.exit_temperatures
    if temperatures is not None and not (
            isinstance(temperatures, tuple) and temperatures
            and all(_is_number(t) and t > 0 for t in temperatures)):
        raise ConfigError(f"{where}: exit_temperatures {temperatures!r} must be a list of "
                          "numbers > 0, one per exit (beam-cascade calibrate writes it)")


def _check_confidence(tier: TierConfig, is_last: bool, where: str) -> None:
    """A probability measure anywhere; a learned router on a tier that routes, with no early
    exit (whose exits compare probabilities), and a router file only with it."""
    measures = (*CONFIDENCE_MEASURE_NAMES, LEARNED_CONFIDENCE)
    if tier.confidence not in measures:
        raise ConfigError(f"{where}: unknown confidence {tier.confidence!r}; use one of "
                          f"{sorted(measures)}")
    if tier.router is not None and (not isinstance(tier.router, str) or not tier.router):
        raise ConfigError(f"{where}: router {tier.router!r} must be the path or URL of the "
                          "router JSON beam-cascade calibrate writes")
    if tier.confidence != LEARNED_CONFIDENCE:
        if tier.router is not None:
            raise ConfigError(f"{where}: a router is read only with confidence: learned; set "
                              "it, or remove router")
        return
    if is_last:
        raise ConfigError(f"{where}: confidence: learned routes a tier's records onward, and "
                          "the last tier routes none; use it on an earlier tier")
    if tier.exit_threshold is not None:
        raise ConfigError(f"{where}: early exit compares the exits' probabilities, so it does "
                          "not combine with confidence: learned; drop exit_threshold or use "
                          "max_prob")


def _check_runtime(tier: TierConfig, where: str) -> None:
    """ONNX Runtime runs the plain classifier on the CPU, in fp32 or int8, and OpenVINO in
    fp32; early exit, token dropping and GPUs stay with PyTorch."""
    if tier.runtime not in RUNTIMES:
        raise ConfigError(f"{where}: runtime {tier.runtime!r} must be one of {RUNTIMES}")
    if tier.quantize is not None and tier.quantize not in QUANTIZATION_SCHEMES:
        raise ConfigError(f"{where}: quantize {tier.quantize!r} must be one of "
                          f"{QUANTIZATION_SCHEMES}, or null for full precision")
    if tier.quantize is not None and tier.runtime != "onnxruntime":
        raise ConfigError(f"{where}: int8 (quantize) runs on ONNX Runtime; set runtime: "
                          "onnxruntime for this tier, or drop quantize")
    if tier.runtime == "torch":
        return
    if tier.device == "cuda":
        raise ConfigError(f"{where}: runtime {tier.runtime} runs on the CPU here; set device "
                          "to cpu or auto, or use runtime: torch on a GPU")
    unsupported = [key for key in ("exit_threshold", "keep_tokens", "length_budget")
                   if getattr(tier, key) is not None]
    if unsupported:
        raise ConfigError(f"{where}: {', '.join(unsupported)} run on runtime: torch only; use "
                          "runtime: torch for this tier, or drop them")
    if tier.runtime == "openvino" and importlib.util.find_spec("openvino") is None:
        raise ConfigError(f"{where}: {OPENVINO_MISSING} (checked where the config is read: "
                          "the launcher too)")


def _check_token_dropping(tier: TierConfig, where: str) -> None:
    keep = tier.keep_tokens
    if keep is not None and not (isinstance(keep, tuple) and keep and all(
            _is_number(k) and 0.0 < k <= 1.0 for k in keep)):
        raise ConfigError(f"{where}: keep_tokens {keep!r} must be a list of shares in (0, 1], "
                          "one per layer after which tokens are dropped")
    budget = tier.length_budget
    if budget is not None and not (_is_number(budget) and 0.0 < budget <= 1.0):
        raise ConfigError(f"{where}: length_budget {budget!r} must be a share in (0, 1] of "
                          "the full model's compute")
    if (keep is not None or budget is not None) and tier.exit_threshold is not None:
        raise ConfigError(f"{where}: token dropping and early exit in one tier are not "
                          "supported yet; drop keep_tokens/length_budget or exit_threshold")


def _reject_unknown_keys(raw: dict, cls: type, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
