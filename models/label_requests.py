"""Label requests: which records of the unlabelled sample to have labelled, so that the
guarantee's bound stops being blind where the cascade and the last tier disagree.

A cascade loses accuracy against its last tier only on records where their answers differ,
and whether it loses there is a question of labels. Random labelled records hold few such
disagreements (a few dozen in a thousand); asking for labels on the disagreements
themselves settles the question where it matters. Which disagreements matter depends on the
threshold: a record whose cascade answer differs from the last tier's from threshold e
down (its *entry*) counts in the bound of every threshold at or below e. The fixed-sequence
search goes from the safest threshold down, so records that enter early count in every
bound it computes, those that enter late only in the deep ones.

The design: the sample's disagreeing records, ordered by entry, highest first, fall into
bands of growing size. The first band (half the requests) is labelled whole: at the
thresholds it covers the bound is exact. The next two bands, twice and four times the
requests, are sampled at random, a quarter of the requests each; the rest are a band with
no requests yet. Each band's records are in a random order fixed by the seed, and
requests always take the next ones in that order, so the labelled records of a band are a
uniform sample without replacement of it (and of any part of it), whatever the number of
rounds. The bands are fixed before any label is seen; the bound (models/guarantee.py)
uses each band's labels with betting bounds for sampling without replacement, which stay
valid however many rounds deepen a band.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

FIRST_BAND_SHARE = 0.5  # of a first round's requests: the band labelled whole
SAMPLED_BANDS = (2, 4)  # sizes of the sampled bands, in requests
DESIGN_VERSION = 1


def record_key(text: str, text_pair: str | None = None) -> str:
    """A record's identity in a request design: a hash of what the models read, so a
    request file matches the unlabelled sample whatever the order, source or ids."""
    content = text if text_pair is None else f"{text}\x1f{text_pair}"
    return hashlib.sha1(content.encode("utf-8")).hexdigest()[:20]


def record_keys(texts: Sequence[str], text_pairs: Sequence[str] | None = None
                ) -> tuple[str, ...]:
    """`record_key` of every record of a sample."""
    pairs = text_pairs if text_pairs is not None else [None] * len(texts)
    return tuple(record_key(t, p) for t, p in zip(texts, pairs))


@dataclass(frozen=True)
class Band:
    """Records whose cascade answer starts to differ from the last tier's between two
    thresholds, in their fixed random order, and how many of the first are requested."""

    keys: tuple[str, ...]
    requested: int
    entry_high: float  # the highest entry threshold of its records
    entry_low: float

    @property
    def inclusion(self) -> float:
        """The chance each of its records is requested."""
        return self.requested / len(self.keys) if self.keys else 0.0


@dataclass(frozen=True)
class RequestDesign:
    """The bands of one sample's disagreements and what has been requested of each."""

    seed: int
    bands: tuple[Band, ...]

    @property
    def requested(self) -> int:
        return sum(b.requested for b in self.bands)

    def to_json(self) -> str:
        return json.dumps({"version": DESIGN_VERSION, "seed": self.seed,
                           "bands": [asdict(b) for b in self.bands]})

    @staticmethod
    def from_json(text: str) -> "RequestDesign":
        raw = json.loads(text)
        if raw.get("version") != DESIGN_VERSION:
            raise ValueError(f"request design version {raw.get('version')!r} is not "
                             f"{DESIGN_VERSION}: request labels again with this version")
        return RequestDesign(raw["seed"], tuple(
            Band(tuple(b["keys"]), b["requested"], b["entry_high"], b["entry_low"])
            for b in raw["bands"]))


def entries(disagree_at: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Per record, the highest threshold at which it disagrees ([thresholds x records]
    mask, thresholds safest first); -inf where it never does."""
    first = np.where(disagree_at.any(axis=0), disagree_at.argmax(axis=0), -1)
    sequence = np.asarray(thresholds, dtype=float)
    return np.where(first >= 0, sequence[np.maximum(first, 0)], -np.inf)


def new_design(keys: Sequence[str], entry: np.ndarray, requests: int, seed: int
               ) -> RequestDesign:
    """The bands for a first round of `requests` labels (see the module's docstring)."""
    if requests < 1:
        raise ValueError(f"--request_labels {requests}: ask for at least one label")
    order = _disagreeing_by_entry(keys, entry, seed)
    census = max(1, round(requests * FIRST_BAND_SHARE))
    sizes = [census] + [requests * s for s in SAMPLED_BANDS]
    wanted = [census] + [(requests - census) // len(SAMPLED_BANDS)] * len(SAMPLED_BANDS)
    wanted[-1] = requests - sum(wanted[:-1])
    bands, start = [], 0
    for size, asked in zip(sizes, wanted):
        if start >= len(order):
            break
        bands.append(_band(order[start:start + size], keys, entry, seed, len(bands)))
        start += size
    if start < len(order):
        bands.append(_band(order[start:], keys, entry, seed, len(bands)))
    design = _requesting(RequestDesign(seed, tuple(bands)), wanted + [0] * len(bands))
    unplaced = requests - design.requested  # bands that did not fill: the rest go in order
    return _requesting(design, [unplaced] + [0] * len(bands)) if unplaced else design


def more_requests(design: RequestDesign, requests: int) -> RequestDesign:
    """A later round: `requests` more labels in the same bands, half to the first band not
    yet labelled whole, a quarter to each of the next two (what a band cannot take goes on)."""
    if requests < 1:
        raise ValueError(f"--request_labels {requests}: ask for at least one label")
    open_bands = [k for k, b in enumerate(design.bands) if b.requested < len(b.keys)]
    wanted = [0] * len(design.bands)
    for k, share in zip(open_bands, (0.5, 0.25, 0.25)):
        wanted[k] = round(requests * share)
    if open_bands:
        wanted[open_bands[min(2, len(open_bands) - 1)]] += requests - sum(wanted)
    return _requesting(design, wanted)


def newly_requested(before: RequestDesign | None, after: RequestDesign) -> list[str]:
    """The keys `after` requests that `before` did not, band by band."""
    done = [0] * len(after.bands) if before is None else [b.requested for b in before.bands]
    return [key for band, start in zip(after.bands, done)
            for key in band.keys[start:band.requested]]


def _disagreeing_by_entry(keys: Sequence[str], entry: np.ndarray, seed: int) -> list[int]:
    """Indices of the records that disagree somewhere, each key once, by entry (highest
    first), ties in a seeded random order."""
    tie = random.Random(seed)
    first: dict[str, int] = {}
    for i in np.flatnonzero(np.isfinite(entry)):
        first.setdefault(keys[i], int(i))
    shuffled = list(first.values())
    tie.shuffle(shuffled)
    return sorted(shuffled, key=lambda i: -entry[i])


def _band(indices: list[int], keys: Sequence[str], entry: np.ndarray, seed: int, number: int
          ) -> Band:
    ordered = [keys[i] for i in indices]
    random.Random(f"{seed}:{number}").shuffle(ordered)
    return Band(tuple(ordered), 0, float(entry[indices[0]]), float(entry[indices[-1]]))


def _requesting(design: RequestDesign, wanted: list[int]) -> RequestDesign:
    """The design with `wanted[k]` more requested in band k, what a band cannot take
    moving on to the next."""
    bands, spill = [], 0
    for band, asked in zip(design.bands, wanted):
        take = min(len(band.keys) - band.requested, asked + spill)
        spill = asked + spill - take
        bands.append(Band(band.keys, band.requested + take, band.entry_high, band.entry_low))
    return RequestDesign(design.seed, tuple(bands))
