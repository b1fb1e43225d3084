"""What calibrate learns and chooses, as types: per tier (`TierMeasurements`, with its
exits, length configuration, router and calibration on the records that reach it), the
choice (`Choice`, `FallbackChoice`, `SplitHalfCheck`) and the whole (`TuningResult`, with the
`TierReport`s the report prints)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.calibration import Calibration
from models.config import CascadeConfig
from models.early_exit import ExitPoint
from models.guarantee import DropBound, GuaranteeSearch
from models.records_bound import RecordsDropBound
from models.learned_deferral import Router
from models.operating_points import OperatingPoint, Policy, TierOutputs
from models.tier import Tier
from models.token_dropping import LengthPoint
from models.tuning.runtime_choice import RuntimeVariant


@dataclass(frozen=True)
class ExitMeasurements:
    """What calibrate learnt about a multi-exit tier's exits."""

    layers: tuple[int, ...]
    calibrations: list[Calibration]  # one per exit
    sweep: list[ExitPoint]  # the exit-threshold knob, at fitting.py EXIT_THRESHOLDS

    @property
    def temperatures(self) -> tuple[float, ...]:
        return tuple(c.temperature for c in self.calibrations)


@dataclass(frozen=True)
class LengthMeasurements:
    """The length configurations tried for a tier with a length_budget, and the choice."""

    budget: float
    points: list[LengthPoint]  # the full model first
    chosen: LengthPoint


@dataclass(frozen=True)
class LearnedRouting:
    """A tier's fitted router, its confidences on the dev records and on the held-out
    unlabelled records (fixed once fitted: the router reads temperature-1 logits), and how
    well it and max_prob rank the held-out records the last tier answers otherwise (AUC)."""

    router: Router
    dev: torch.Tensor
    unlabelled: torch.Tensor
    held_out: int
    auc_learned: float
    auc_max_prob: float


@dataclass(frozen=True)
class TierMeasurements:
    """What calibrate learnt about one tier."""

    model: Tier  # the tier as measured (its exits and length configuration set)
    calibration: Calibration
    raw: TierOutputs  # confidences at temperature 1
    calibrated: TierOutputs
    costs: dict[int, float]  # seconds per record by batch size, on all dev texts
    dev_logits: torch.Tensor  # every exit's (exits x records x labels), temperature 1
    unlabelled_logits: torch.Tensor | None = None
    unlabelled: TierOutputs | None = None  # calibrated, on the unlabelled sample
    exits: ExitMeasurements | None = None
    lengths: LengthMeasurements | None = None
    reached: ReachedCalibration | None = None  # tiers after the first, once refitted
    learned: LearnedRouting | None = None  # confidence: learned, once its router is fitted

    @property
    def best_batch_size(self) -> int:
        return min(self.costs, key=self.costs.get)


@dataclass(frozen=True)
class TierFit:
    """A tier's temperatures fitted on some dev records, and its outputs with them."""

    model: Tier  # exiting early (at its exit_threshold, if set) with the fitted exit temperatures
    calibration: Calibration
    raw: TierOutputs
    calibrated: TierOutputs
    unlabelled: TierOutputs | None
    exits: ExitMeasurements | None


@dataclass(frozen=True)
class ReachedCalibration:
    """A later tier's calibration on the dev records that reach it at the chosen thresholds
    (the harder ones): its temperature fitted on all dev records against the one fitted on
    those, with the ECE and the label-free accuracy estimate (mean max-prob) on those records
    under each. `temperature_reached` is None when too few records reach it (or too few of
    them are right or wrong) to fit on: the all-records temperature is kept."""

    records: int
    accuracy: float
    temperature_all: float
    temperature_reached: float | None
    ece_all: float
    ece_reached: float
    estimate_all: float
    estimate_reached: float


@dataclass(frozen=True)
class ExitReport:
    """A multi-exit tier's exits as the report shows them."""

    layers: tuple[int, ...]
    exit_threshold: float | None
    calibrations: list[Calibration]
    sweep: list[ExitPoint]


@dataclass(frozen=True)
class TierReport:
    """What the report says of one tier."""

    name: str
    model: str
    batch_size: int
    calibration: Calibration
    seconds_per_record: dict[int, float]
    exits: ExitReport | None = None
    lengths: LengthMeasurements | None = None
    reached: ReachedCalibration | None = None
    runtimes: list[RuntimeVariant] | None = None  # with --compare_runtimes
    learned: LearnedRouting | None = None  # confidence: learned


@dataclass(frozen=True)
class HalfCheck:
    """The chosen thresholds replayed on one half of dev."""

    records: int
    accuracy: float
    last_tier_accuracy: float
    accuracy_drop_points: float
    speedup: float
    estimated_accuracy: float


@dataclass(frozen=True)
class SplitHalfCheck:
    """Thresholds tuned on one random half of dev, replayed on both halves."""

    thresholds: tuple[float, ...]
    seed: int
    tuned: HalfCheck
    held_out: HalfCheck


@dataclass(frozen=True)
class Choice:
    """The operating point the policy picked, its drop bound, and the guarantee's search
    (the policy searched it when it is an accuracy-drop budget)."""

    point: OperatingPoint
    bound: DropBound | RecordsDropBound
    search: GuaranteeSearch


@dataclass(frozen=True)
class FallbackChoice:
    """Whether the int8 copy of the last tier (calibrate --int8_fallback) stayed in the
    cascade, and the expected seconds per record at the policy with and without it (None
    where no point met the policy)."""

    name: str
    kept: bool
    seconds_with: float | None
    seconds_without: float | None


@dataclass(frozen=True)
class TuningResult:
    """The tuned config and everything measured to choose it."""

    config: CascadeConfig
    policy: Policy
    tiers: list[TierReport]
    reference: OperatingPoint
    chosen: OperatingPoint
    bound: DropBound | RecordsDropBound  # at the chosen thresholds
    guarantee: GuaranteeSearch
    point_estimate: OperatingPoint | None  # what the drop budget picks without a guarantee
    unlabelled_records: int
    frontier: list[OperatingPoint]
    frontier_uncalibrated: list[OperatingPoint]
    split_half: SplitHalfCheck
    reliability: dict[str, tuple[TierOutputs, TierOutputs]]  # per tier: raw, calibrated
    labels: torch.Tensor
    fallback: FallbackChoice | None = None  # with calibrate --int8_fallback
    unlabelled_tiers: list[TierOutputs] | None = None  # calibrated, on the unlabelled sample

    @property
    def dev_records(self) -> int:
        return len(self.labels)
