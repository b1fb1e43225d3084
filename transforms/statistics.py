"""Routing statistics, computed inside the pipeline by a CombineFn.

Being a combiner, the figures are exact on any runner and any number of workers: partial
accumulators are merged, nothing depends on driver-side state. The output is one JSON-ready
dict (see `RoutingStatsFn.extract_output` and the README's statistics reference).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.pvalue import PCollection

from pipeline.config import TierConfig

TIER_COUNTS = ("seen", "decided", "escalated", "labelled_seen", "correct_seen",
               "labelled_decided", "correct_decided")
TIER_SUMS = ("confidence_seen", "confidence_decided", "max_prob_decided", "ms")


def _new_tier() -> dict[str, Any]:
    return {**{key: 0 for key in TIER_COUNTS + TIER_SUMS}, "exits": Counter(),
            "batch_records": Counter()}


class RoutingStatsFn(beam.CombineFn):
    """Combines ('parsed', _), ('prediction', record) and ('error', dead letter) events.

    A tier's `seen` counts every record it received: decided + escalated + failed. Records
    that a later tier failed on still count at the tiers that escalated them.
    """

    def __init__(self, tiers: Sequence[TierConfig]):
        self._names = [t.name for t in tiers]
        self._thresholds = {t.name: t.threshold for t in tiers}

    def create_accumulator(self) -> dict[str, Any]:
        return {
            "parsed": 0, "predictions": 0, "labelled": 0, "correct": 0,
            "labels_unrecognized": 0, "errors": Counter(),
            "tiers": {name: _new_tier() for name in self._names},
        }

    def add_input(self, acc: dict[str, Any], event: tuple[str, Any]) -> dict[str, Any]:
        kind, row = event
        if kind == "parsed":
            acc["parsed"] += 1
        elif kind == "error":
            acc["errors"][row["stage"]] += 1
            for visit in row["tiers"]:
                self._count_visit(acc, visit, final=False, gold=None)
            if row["stage"].startswith("tier:"):
                acc["tiers"][row["stage"][len("tier:"):]]["seen"] += 1
        else:
            acc["predictions"] += 1
            acc["labels_unrecognized"] += "gold_unrecognized" in row
            visits = row["tiers"]
            for i, visit in enumerate(visits):
                self._count_visit(acc, visit, final=i == len(visits) - 1, gold=row["gold"])
        return acc

    @staticmethod
    def _count_visit(acc: dict[str, Any], visit: dict, final: bool, gold: int | None) -> None:
        tier = acc["tiers"][visit["tier"]]
        tier["seen"] += 1
        tier["decided" if final else "escalated"] += 1
        tier["confidence_seen"] += visit["confidence"]
        tier["ms"] += visit["ms"]
        tier["batch_records"][visit["batch"]] += 1
        if "exit_layer" in visit:
            tier["exits"][visit["exit_layer"]] += 1
        if final:
            tier["confidence_decided"] += visit["confidence"]
            tier["max_prob_decided"] += max(visit["probabilities"])
        if gold is None:
            return
        correct = visit["label_id"] == gold
        tier["labelled_seen"] += 1
        tier["correct_seen"] += correct
        if final:
            tier["labelled_decided"] += 1
            tier["correct_decided"] += correct
            acc["labelled"] += 1
            acc["correct"] += correct

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accumulators:
            for key in ("parsed", "predictions", "labelled", "correct", "labels_unrecognized"):
                merged[key] += acc[key]
            merged["errors"].update(acc["errors"])
            for name, tier in acc["tiers"].items():
                for key, value in tier.items():
                    merged["tiers"][name][key] += value
        return merged

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        predictions = acc["predictions"]
        errors = sum(acc["errors"].values())
        not_parsed = acc["errors"]["read"] + acc["errors"]["parse"]
        return {
            "records": predictions + errors,
            "records_read": acc["parsed"] + not_parsed,
            "unaccounted": acc["parsed"] + not_parsed - predictions - errors,
            "predictions": predictions,
            "errors": errors,
            "errors_by_stage": dict(sorted(acc["errors"].items())),
            "labelled": acc["labelled"],
            "labels_unrecognized": acc["labels_unrecognized"],
            "accuracy": _ratio(acc["correct"], acc["labelled"]),
            "estimated_accuracy": _ratio(
                sum(t["max_prob_decided"] for t in acc["tiers"].values()), predictions),
            "tiers": [self._tier_output(name, acc["tiers"][name], predictions, acc["errors"])
                      for name in self._names],
        }

    def _tier_output(self, name: str, t: dict[str, float], predictions: int,
                     errors: Counter) -> dict[str, Any]:
        return {
            "name": name,
            "threshold": self._thresholds[name],
            "seen": t["seen"],
            "decided": t["decided"],
            "escalated": t["escalated"],
            "failed": errors.get(f"tier:{name}", 0),
            "escalation_rate": _ratio(t["escalated"], t["seen"]),
            "decided_share": _ratio(t["decided"], predictions),
            "mean_confidence_seen": _ratio(t["confidence_seen"], t["seen"]),
            "mean_confidence_decided": _ratio(t["confidence_decided"], t["decided"]),
            "accuracy_decided": _ratio(t["correct_decided"], t["labelled_decided"]),
            "estimated_accuracy_decided": _ratio(t["max_prob_decided"], t["decided"]),
            "accuracy_seen": _ratio(t["correct_seen"], t["labelled_seen"]),
            "inference_seconds": t["ms"] / 1000.0,
            "ms_per_record": _ratio(t["ms"], t["seen"]),
            "records_per_exit": {str(layer): n for layer, n in sorted(t["exits"].items())},
            **batch_sizes(t["batch_records"]),
        }


def batch_sizes(records_by_batch_size: Counter) -> dict[str, Any]:
    """How big the tier's model batches were: their number, mean size, and a histogram of
    sizes in powers of two ("1", "2-3", "4-7", ...). A batch of n records is n visits that
    each carry n, so the batches are counted exactly from the records."""
    histogram: Counter = Counter()
    for size, records in records_by_batch_size.items():
        low = 1 << (size.bit_length() - 1)
        histogram[low] += records // size
    batches = sum(histogram.values())
    return {
        "batches": batches,
        "mean_batch_size": _ratio(sum(records_by_batch_size.values()), batches),
        "batch_size_histogram": {(str(low) if low == 1 else f"{low}-{2 * low - 1}"): n
                                 for low, n in sorted(histogram.items())},
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class AccumulateOnly(beam.CombineFn):
    """A CombineFn's accumulation without its final extraction: one PCollection's partial
    result, to be merged with others' by MergePartials."""

    def __init__(self, fn: beam.CombineFn):
        self._fn = fn

    def create_accumulator(self) -> Any:
        return self._fn.create_accumulator()

    def add_input(self, accumulator: Any, element: Any) -> Any:
        return self._fn.add_input(accumulator, element)

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        return self._fn.merge_accumulators(accumulators)

    def extract_output(self, accumulator: Any) -> Any:
        return accumulator


class MergePartials(beam.CombineFn):
    """Merges AccumulateOnly's partial results and extracts the CombineFn's output."""

    def __init__(self, fn: beam.CombineFn):
        self._fn = fn

    def create_accumulator(self) -> Any:
        return self._fn.create_accumulator()

    def add_input(self, accumulator: Any, partial: Any) -> Any:
        return self._fn.merge_accumulators([accumulator, partial])

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        return self._fn.merge_accumulators(accumulators)

    def extract_output(self, accumulator: Any) -> Any:
        return self._fn.extract_output(accumulator)


class ComputeRoutingStats(beam.PTransform):
    """(parsed records, predictions, dead letters) in; a single statistics dict out.

    Each input is combined on its own and only the three partial results are flattened:
    a Flatten of the records themselves is held whole in memory by the FnApiRunner (it
    materialises every multi-input Flatten), which made peak memory grow with the input.
    """

    def __init__(self, tiers: Sequence[TierConfig]):
        super().__init__()
        self._tiers = tuple(tiers)

    def expand(self, inputs: tuple[PCollection, PCollection, PCollection]) -> PCollection:
        stats = RoutingStatsFn(self._tiers)
        partials = [
            pcoll
            | f"Tag[{kind}]" >> beam.Map(lambda row, kind=kind: (kind, row))
            | f"Accumulate[{kind}]" >> beam.CombineGlobally(AccumulateOnly(stats))
            for kind, pcoll in zip(("parsed", "prediction", "error"), inputs)]
        return (partials | "AllPartials" >> beam.Flatten()
                | "Merge" >> beam.CombineGlobally(MergePartials(stats)))
