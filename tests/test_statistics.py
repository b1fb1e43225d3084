"""Routing statistics from the combiner equal a direct computation over the same records."""
import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipeline.config import TierConfig
from transforms.statistics import ComputeRoutingStats, RoutingStatsFn

TIERS = [TierConfig("small", "m1", threshold=0.8), TierConfig("medium", "m2", threshold=0.7),
         TierConfig("large", "m3")]


def synthetic_predictions(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        depth = rng.choice([1, 1, 2, 3])
        visits = [{"tier": t.name, "label_id": rng.randint(0, 1),
                   "confidence": rng.random(), "ms": rng.random()} for t in TIERS[:depth]]
        records.append({"id": str(i), "gold": rng.choice([0, 1, None]), "tiers": visits})
    return records


def direct_stats(records: list[dict], errors: list[dict]) -> dict:
    """The statistics written out longhand, one definition at a time."""
    out = {"records": len(records) + len(errors), "predictions": len(records),
           "errors": len(errors)}
    labelled = [r for r in records if r["gold"] is not None]
    out["accuracy"] = sum(r["tiers"][-1]["label_id"] == r["gold"] for r in labelled) / len(
        labelled)
    for t in TIERS:
        seen = [r for r in records if any(v["tier"] == t.name for v in r["tiers"])]
        decided = [r for r in seen if r["tiers"][-1]["tier"] == t.name]
        visit = {r["id"]: next(v for v in r["tiers"] if v["tier"] == t.name) for r in seen}
        decided_labelled = [r for r in decided if r["gold"] is not None]
        out[t.name] = {
            "seen": len(seen), "decided": len(decided),
            "escalated": len(seen) - len(decided),
            "escalation_rate": (len(seen) - len(decided)) / len(seen),
            "decided_share": len(decided) / len(records),
            "mean_confidence_decided": sum(visit[r["id"]]["confidence"] for r in decided)
            / len(decided),
            "accuracy_decided": sum(visit[r["id"]]["label_id"] == r["gold"]
                                    for r in decided_labelled) / len(decided_labelled),
            "inference_seconds": sum(visit[r["id"]]["ms"] for r in seen) / 1000,
            "failed": sum(e["stage"] == f"tier:{t.name}" for e in errors),
        }
    return out


def check(stats: dict, expected: dict) -> None:
    for key in ("records", "predictions", "errors"):
        assert stats[key] == expected[key]
    assert stats["accuracy"] == pytest.approx(expected["accuracy"])
    for tier in stats["tiers"]:
        for key, value in expected[tier["name"]].items():
            assert tier[key] == pytest.approx(value), (tier["name"], key)


ERRORS = [{"stage": "parse"}, {"stage": "parse"}, {"stage": "tier:medium"}]


def test_combiner_matches_direct_computation_across_merged_accumulators():
    records = synthetic_predictions(500)
    fn = RoutingStatsFn(TIERS)
    parts = []
    for chunk in (records[:123], records[123:400], records[400:]):
        acc = fn.create_accumulator()
        for r in chunk:
            acc = fn.add_input(acc, ("prediction", r))
        parts.append(acc)
    acc = fn.create_accumulator()
    for e in ERRORS:
        acc = fn.add_input(acc, ("error", e))
    stats = fn.extract_output(fn.merge_accumulators(parts + [acc]))
    check(stats, direct_stats(records, ERRORS))
    assert stats["errors_by_stage"] == {"parse": 2, "tier:medium": 1}


def test_statistics_transform_in_a_pipeline():
    records = synthetic_predictions(200, seed=1)
    expected = direct_stats(records, ERRORS)

    def matches(results):
        assert len(results) == 1
        check(results[0], expected)

    with TestPipeline(runner="FnApiRunner") as p:
        stats = (p | "P" >> beam.Create(records), p | "E" >> beam.Create(ERRORS)
                 ) | ComputeRoutingStats(TIERS)
        assert_that(stats, matches)


def test_empty_input_gives_zero_counts_and_no_ratios():
    fn = RoutingStatsFn(TIERS)
    stats = fn.extract_output(fn.create_accumulator())
    assert stats["records"] == 0 and stats["accuracy"] is None
    assert all(t["seen"] == 0 and t["escalation_rate"] is None for t in stats["tiers"])
