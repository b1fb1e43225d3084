"""The drop bound from requested labels: on the records of the unlabelled sample itself.

With r_t the sample's records on which the cascade at threshold t and the last tier answer
differ (known exactly: no labels needed) and W_t those of them on which the cascade is the
wrong one, the cascade's accuracy on the n sampled records is at most

    (2 W_t - r_t) / n

below the last tier's (equal with two classes; with more, both may be wrong, which counts
against the cascade). Only W_t needs labels, and the request design (label_requests.py)
put them on exactly these records: in a band labelled whole W is counted; in a sampled
band it is bounded from the band's labels, drawn without replacement, by a betting bound
(betting.py); a disagreement with no requested label counts as wrong. So one bound
covers the drop directly, with no product of two factors each at half the risk.

Two ways to bound a sampled band's wrong count, and `evidence` picks:
- "labels": the share wrong among the labelled records of the band;
- "prediction-powered": the last tier's calibrated probability that the cascade's answer
  is the wrong one, summed over the band's unlabelled records, corrected by what the
  labelled ones show of its error (prediction-powered inference, Angelopoulos et al.,
  Science 2023, with a finite-sample betting bound in place of the normal interval);
  narrower when the last tier is calibrated on these records, no worse than "labels" by
  more than the risk split when it is not;
- "both" (the default): each at half the band's risk, the smaller bound kept, so the choice
  spends nothing.
The risk is split evenly between the sampled bands. Bands labelled whole spend none.

Scope: this bounds the drop on the sampled records. Where they are the whole input (a job
calibrated on what it classifies) that is the promise. Where they are a sample of a larger
input, a Bernstein term for drawing the sample adds to it (its variance bounded by the
disagreement rate's exact upper bound), at a quarter of the risk each, half staying
for the labels.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from models.betting import upper_mean_bound
from models.binomial import binomial_upper_bound
from models.label_requests import RequestDesign, record_keys

EVIDENCE = ("both", "labels", "prediction-powered")


@dataclass(frozen=True)
class AnsweredRequests:
    """Requested labels, matched to the unlabelled sample they were drawn from."""

    design: RequestDesign
    keys: tuple[str, ...]  # per record of the unlabelled sample
    labels: dict[str, int]  # key -> label id, for the requests answered
    input_records: int | None = None  # records the sample was drawn from; None: unknown
    evidence: str = "both"

    def __post_init__(self):
        if self.evidence not in EVIDENCE:
            raise ValueError(f"evidence {self.evidence!r}: choose one of {', '.join(EVIDENCE)}")

    def matched_to(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None
                   ) -> "AnsweredRequests":
        """The same answers on this unlabelled sample (after calibrate set some records
        aside, for instance to fit a learned router)."""
        return dataclasses.replace(self, keys=record_keys(texts, text_pairs))

    @property
    def whole_input(self) -> bool:
        """Whether the sample is every record of the input (the promise is then on them)."""
        return self.input_records is not None and self.input_records <= len(self.keys)


@dataclass(frozen=True)
class RecordsDropBound:
    """An upper confidence bound on the drop, on the sampled records (and, with
    `sampling_margin` added, on the input they were drawn from)."""

    confidence: float
    compared: int  # records of the sample
    disagreements: int  # ... on which the cascade and the last tier differ
    labelled_disagreements: int  # ... of them labelled by request
    cascade_wrong: int  # ... of those, the cascade's answer wrong
    unrequested: int  # disagreements with no label, counted as wrong
    wrong_bound: float  # the upper bound on the disagreements where the cascade is wrong
    wrong_estimate: float  # their number, estimated (inverse-probability weighted)
    sampling_margin: float  # 0 where the sample is the whole input
    evidence: str  # which evidence set the sampled bands' bounds

    @property
    def disagreement_rate(self) -> float:
        return self.disagreements / self.compared if self.compared else 0.0

    @property
    def bound(self) -> float:
        """The drop's upper bound, as a rate (0.005 is half a point)."""
        if not self.compared:
            return 1.0
        return (2 * self.wrong_bound - self.disagreements) / self.compared + self.sampling_margin

    @property
    def drop_estimate(self) -> float:
        """The drop on the sampled records, estimated without bias from the labels in each
        band that has some (the last tier's probabilities stand in where a band has none)."""
        if not self.compared:
            return 0.0
        return (2 * self.wrong_estimate - self.disagreements) / self.compared

    @property
    def source(self) -> str:
        scope = ("these records" if self.sampling_margin == 0 else
                 f"the input (+{100 * self.sampling_margin:.2f} points for sampling it)")
        return (f"{self.labelled_disagreements} requested labels on {self.disagreements} "
                f"disagreements ({self.unrequested} unlabelled, counted as wrong; sampled "
                f"bands bounded by {self.evidence}), on {scope}")

    def describe(self) -> str:
        return (f"the cascade and the last tier disagree on {self.disagreements} of "
                f"{self.compared} sampled records; {self.labelled_disagreements} of them "
                f"labelled on request, the cascade wrong on {self.cascade_wrong}; at most "
                f"{self.wrong_bound:.1f} of the {self.disagreements} are the cascade's "
                f"mistakes (estimated with inverse-probability weights: "
                f"{self.wrong_estimate:.1f}, a drop of {100 * self.drop_estimate:+.2f} points); "
                f"set by {self.source}.")


class RecordsBounder:
    """Bounds the drop at any thresholds from one sample's requested labels; built once
    per search (the bands' positions in the sample), then called per threshold."""

    def __init__(self, answered: AnsweredRequests, confidence: float):
        self.answered, self.confidence = answered, confidence
        position = {}
        for i, key in enumerate(answered.keys):
            position.setdefault(key, []).append(i)
        self.bands = [_BandInSample(band.keys, band.requested, position, answered.labels)
                      for band in answered.design.bands]
        self.in_bands = np.zeros(len(answered.keys), dtype=bool)
        for band in self.bands:
            self.in_bands[band.records] = True
        sampled = sum(1 for b in self.bands if 0 < b.labelled < len(b.units))
        self.labels_risk = (1 - confidence) / (1 if answered.whole_input else 2)
        self.band_risk = self.labels_risk / max(1, sampled)
        self._cache: dict = {}

    def bound(self, cascade: np.ndarray, last: np.ndarray, last_max_prob: np.ndarray
              ) -> RecordsDropBound:
        """The bound for these answers of the cascade and of the last tier (and the last
        tier's calibrated largest probability) on the sampled records."""
        differs = cascade != last
        outside = differs & ~self.in_bands
        wrong_bound, labelled, wrong = float(outside.sum()), 0, 0
        estimate = float(last_max_prob[outside].sum())
        for band in self.bands:
            part = band.bounded(differs, cascade, last_max_prob, self.band_risk,
                                self.answered.evidence, self._cache)
            wrong_bound += part.wrong_bound
            estimate += part.wrong_estimate
            labelled += part.labelled
            wrong += part.wrong
        n, d = len(differs), int(differs.sum())
        return RecordsDropBound(self.confidence, n, d, labelled, wrong, max(0, d - labelled),
                                min(wrong_bound, d), estimate, self._sampling_margin(n, d),
                                self.answered.evidence)

    def _sampling_margin(self, n: int, disagreements: int) -> float:
        """How far the input's drop may lie above the sample's: Bernstein's inequality for
        the mean of n per-record differences in [-1, 1] whose variance is at most the
        disagreement rate (its exact upper bound), a quarter of the risk each."""
        if self.answered.whole_input or n == 0:
            return 0.0
        risk = (1 - self.confidence) / 4
        variance = binomial_upper_bound(disagreements, n, risk)
        log_term = math.log(1 / risk)
        spread = 2 * log_term / (3 * n)
        return spread + math.sqrt(spread ** 2 + 2 * variance * log_term / n)


@dataclass(frozen=True)
class _BandPart:
    wrong_bound: float
    wrong_estimate: float  # inverse-probability weighted: unbiased where the band has labels
    labelled: int
    wrong: int


class _BandInSample:
    """One band of the design as it falls on this sample: its distinct records (units) in
    the band's order, each unit's occurrences in the sample, and the labelled prefix."""

    def __init__(self, keys: Sequence[str], requested: int, position: dict[str, list[int]],
                 labels: dict[str, int]):
        present = [(k, key) for k, key in enumerate(keys) if key in position]
        self.units = [position[key] for _, key in present]
        self.records = [i for unit in self.units for i in unit]
        self.labelled = 0  # a prefix: the first requested record without an answer ends it
        for k, key in present:
            if k >= requested or key not in labels:
                break
            self.labelled += 1
        self.label = np.array([labels[key] for _, key in present[:self.labelled]], dtype=int)
        # Fixed for the sample: each unit's first record, its copies, which are labelled.
        self.first = np.array([unit[0] for unit in self.units], dtype=int)
        self.copies = np.array([len(unit) for unit in self.units], dtype=float)
        self.labelled_mask = np.arange(len(self.units)) < self.labelled

    def bounded(self, differs: np.ndarray, cascade: np.ndarray, last_max_prob: np.ndarray,
                risk: float, evidence: str, cache: dict) -> _BandPart:
        first, copies = self.first, self.copies
        inside = differs[first]
        wrong = np.zeros(len(first), dtype=bool)
        wrong[:self.labelled] = cascade[first[:self.labelled]] != self.label
        known, unknown = inside & self.labelled_mask, inside & ~self.labelled_mask
        known_wrong = known & wrong
        counted = float((copies * known_wrong).sum())
        if not unknown.any():
            return _BandPart(counted, counted, int(known.sum()), int(known_wrong.sum()))
        key = (id(self), inside.tobytes(), wrong[known].tobytes(), evidence)
        if key not in cache:
            cache[key] = _sampled_wrong_bound(
                wrong[known].astype(float), last_max_prob[first[inside]],
                last_max_prob[first[known]], int(inside.sum()), risk, evidence)
        # copies beyond a unit's first: known where it is labelled, else counted as wrong
        total = (cache[key] + float(((copies - 1) * known_wrong).sum())
                 + float(((copies - 1) * unknown).sum()))
        return _BandPart(total, self._weighted(inside, known, wrong, copies, last_max_prob, first),
                         int(known.sum()), int(known_wrong.sum()))

    @staticmethod
    def _weighted(inside: np.ndarray, known: np.ndarray, wrong: np.ndarray,
                  copies: np.ndarray, last_max_prob: np.ndarray, first: np.ndarray) -> float:
        """The band's wrong count estimated with inverse-probability weights: each labelled
        record stands for 1 / (its chance of being labelled) records; the chance is the
        labelled share of the band's disagreeing records, since the labels are a uniform
        sample of the band. With no label, the last tier's probabilities predict it."""
        if not known.any():
            return float((copies * last_max_prob[first] * inside).sum())
        weight = (copies * inside).sum() / known.sum()
        return float(weight * (known & wrong).sum())


def _sampled_wrong_bound(wrong: np.ndarray, predicted_all: np.ndarray,
                         predicted_labelled: np.ndarray, units: int, risk: float,
                         evidence: str) -> float:
    """An upper bound on how many of a band's `units` disagreeing records have the cascade
    wrong, from the labelled ones (`wrong`, in the band's random order) and the last tier's
    probability that it is (its largest probability: where the two differ, the cascade's
    answer is not the last tier's)."""
    if len(wrong) == 0:
        return float(units)
    bounds = []
    split = 2 if evidence == "both" else 1
    if evidence in ("both", "labels"):
        bounds.append(units * upper_mean_bound(wrong, units, risk / split))
    if evidence in ("both", "prediction-powered"):
        residual = (wrong - predicted_labelled + 1) / 2  # in [0, 1]
        bounds.append(float(predicted_all.sum())
                      + units * (2 * upper_mean_bound(residual, units, risk / split) - 1))
    return min(float(units), *bounds)
