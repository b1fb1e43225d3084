"""Routing statistics from the combiner equal a direct computation over the same records."""
import copy
import dataclasses
import json
import random
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.utils.timestamp import Timestamp

from models.config import TierConfig
from transforms.records import DeadLetter, Record, Visit
from models.routing_stats import RoutingStats
from transforms.statistics import ComputeRoutingStats, StatisticsInputs
from transforms.statistics_extraction import RoutingStatsFn, in_window
from transforms.statistics_tally import (count_audits, count_error, count_parsed,
                                         count_predictions)

FAILED = Record("failed", "a record parsed, then failed on")
TIERS = [TierConfig("small", "m1", threshold=0.8), TierConfig("medium", "m2", threshold=0.7),
         TierConfig("large", "m3")]


def synthetic_predictions(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        depth = rng.choice([1, 1, 2, 3])
        visits = []
        for t in TIERS[:depth]:
            p = rng.random()
            visits.append({"tier": t.name, "label_id": int(p > 0.5), "probabilities": [1 - p, p],
                           "confidence": rng.random(), "ms": rng.random()})
            if t.name == "medium":  # an early-exit tier
                visits[-1]["exit_layer"] = rng.choice([2, 4, 6])
        records.append({"id": str(i), "text": "x" * rng.randint(1, 40) * depth,
                        "gold": rng.choice([0, 1, None]), "tiers": visits})
    return records


def with_batches(records: list[dict], errors: list[dict], seed: int = 0
                 ) -> tuple[list[dict], list[dict], dict[str, list[int]]]:
    """Copies of the records and errors whose visits are cut into batches of random sizes,
    each visit carrying its batch's size, and those sizes per tier."""
    rng = random.Random(seed)
    records, errors = copy.deepcopy(records), copy.deepcopy(errors)
    sizes: dict[str, list[int]] = {}
    for t in TIERS:
        visits = [v for r in records + errors for v in r["tiers"] if v["tier"] == t.name]
        sizes[t.name] = []
        while visits:
            size = min(rng.choice([1, 2, 3, 5, 8, 13, 64]), len(visits))
            for visit in visits[:size]:
                visit["batch"] = size
            sizes[t.name].append(size)
            visits = visits[size:]
    return records, errors, sizes


def size_bucket(size: int) -> str:
    low = 1
    while low * 2 <= size:
        low *= 2
    return str(low) if low == 1 else f"{low}-{2 * low - 1}"


def direct_stats(records: list[dict], errors: list[dict], sizes: dict[str, list[int]]
                 ) -> dict:
    """The statistics written out longhand, one definition at a time."""
    out = {"records": len(records) + len(errors), "predictions": len(records),
           "errors": len(errors), "records_read": len(records) + len(errors),
           "unaccounted": 0}
    labelled = [r for r in records if r["gold"] is not None]
    out["accuracy"] = sum(r["tiers"][-1]["label_id"] == r["gold"] for r in labelled) / len(
        labelled)
    out["estimated_accuracy"] = sum(max(r["tiers"][-1]["probabilities"]) for r in records) / len(
        records)
    for t in TIERS:
        seen = [r for r in records if any(v["tier"] == t.name for v in r["tiers"])]
        decided = [r for r in seen if r["tiers"][-1]["tier"] == t.name]
        visit = {r["id"]: next(v for v in r["tiers"] if v["tier"] == t.name) for r in seen}
        decided_labelled = [r for r in decided if r["gold"] is not None]
        seen_labelled = [r for r in seen if r["gold"] is not None]
        failed = sum(e["stage"] == f"tier:{t.name}" for e in errors)
        escalated_then_failed = sum(any(v["tier"] == t.name for v in e["tiers"]) for e in errors)
        out[t.name] = {
            "seen": len(seen) + failed + escalated_then_failed, "decided": len(decided),
            "escalated": len(seen) - len(decided) + escalated_then_failed, "failed": failed,
            "accuracy_seen": sum(visit[r["id"]]["label_id"] == r["gold"]
                                 for r in seen_labelled) / len(seen_labelled),
            "decided_share": len(decided) / len(records),
            "mean_confidence_decided": sum(visit[r["id"]]["confidence"] for r in decided)
            / len(decided),
            "accuracy_decided": sum(visit[r["id"]]["label_id"] == r["gold"]
                                    for r in decided_labelled) / len(decided_labelled),
            "estimated_accuracy_decided": sum(max(visit[r["id"]]["probabilities"])
                                              for r in decided) / len(decided),
            "inference_seconds": (sum(visit[r["id"]]["ms"] for r in seen) + sum(
                v["ms"] for e in errors for v in e["tiers"] if v["tier"] == t.name)) / 1000,
        }
        out[t.name]["escalation_rate"] = out[t.name]["escalated"] / out[t.name]["seen"]
        layers = [visit[r["id"]]["exit_layer"] for r in seen if "exit_layer" in visit[r["id"]]]
        out[t.name]["records_per_exit"] = {str(n): layers.count(n) for n in sorted(set(layers))}
        out[t.name]["calls"] = len(sizes[t.name])
        out[t.name]["mean_records_per_call"] = sum(sizes[t.name]) / len(sizes[t.name])
        out[t.name]["records_per_call_histogram"] = dict(Counter(map(size_bucket,
                                                                 sizes[t.name])))
        out[t.name]["model_passes"] = sum(-(-size // PASS_SIZE) for size in sizes[t.name])
        out[t.name]["mean_records_per_pass"] = sum(sizes[t.name]) / out[t.name]["model_passes"]
    out["cost"] = direct_cost(records, errors, out)
    return out


def direct_cost(records: list[dict], errors: list[dict], out: dict) -> dict:
    """The job's model time, and the last tier alone on every predicted record estimated
    from its measured cost per record and per character, the lower of the two."""
    last = TIERS[-1].name
    scored = [r for r in records if r["tiers"][-1]["tier"] == last]
    ms = sum(r["tiers"][-1]["ms"] for r in scored)  # no error visited the last tier
    by_record = ms / out[last]["seen"] * len(records) / 1000
    by_character = ms / sum(len(r["text"]) for r in scored) * sum(
        len(r["text"]) for r in records) / 1000
    spent = sum(out[t.name]["inference_seconds"] for t in TIERS)
    return {"model_seconds": spent, "last_tier_alone_seconds": min(by_record, by_character),
            "times_cheaper": min(by_record, by_character) / spent}


PASS_SIZE = 4  # the synthetic tiers' batch_size: a call of n records makes ceil(n / 4) passes


def typed_visit(visit: dict) -> Visit:
    return Visit(visit["tier"], visit["label_id"], tuple(visit["probabilities"]),
                 visit["confidence"], visit["ms"], visit["batch"], visit.get("exit_layer"),
                 passes=-(-visit["batch"] // PASS_SIZE))


def typed_record(record: dict) -> Record:
    """The pipeline's Record for a synthetic record written as plain data."""
    return Record(record["id"], record["text"], gold=record["gold"],
                  tiers=tuple(map(typed_visit, record["tiers"])))


def typed_error(error: dict) -> DeadLetter:
    return DeadLetter(error["stage"], "", "", tiers=tuple(map(typed_visit, error["tiers"])))


def check(stats: RoutingStats, expected: dict) -> None:
    """The statistics against the direct computation, field by field (by the names the
    expectation uses)."""
    for key in ("records", "predictions", "errors", "records_read", "unaccounted"):
        assert getattr(stats, key) == expected[key]
    assert stats.accuracy == pytest.approx(expected["accuracy"])
    assert stats.estimated_accuracy == pytest.approx(expected["estimated_accuracy"])
    for tier in stats.tiers:
        for key, value in expected[tier.name].items():
            assert getattr(tier, key) == pytest.approx(value), (tier.name, key)
    for key, value in expected["cost"].items():
        assert getattr(stats.cost, key) == pytest.approx(value), key


ERRORS = [{"stage": "parse", "tiers": []}, {"stage": "parse", "tiers": []},
          {"stage": "tier:medium", "tiers": [{"tier": "small", "label_id": 1,
                                              "probabilities": [0.4, 0.6],
                                              "confidence": 0.5, "ms": 2.0}]}]


def test_combiner_matches_direct_computation_across_merged_accumulators():
    records, errors, sizes = with_batches(synthetic_predictions(500), ERRORS)
    fn = RoutingStatsFn(TIERS)
    parts = []
    for part in (records[:123], records[123:400], records[400:]):
        acc = fn.create_accumulator()
        for start in range(0, len(part), 50):  # chunks of records, as they travel
            chunk = list(map(typed_record, part[start:start + 50]))
            count_parsed(acc, chunk)
            count_predictions(acc, chunk)
        parts.append(acc)
    acc = fn.create_accumulator()
    count_parsed(acc, [FAILED])  # the record that tier medium failed on
    parts.append(acc)
    acc = fn.create_accumulator()
    for e in errors:
        count_error(acc, typed_error(e))
    stats = fn.extract_output(fn.merge_accumulators(parts + [acc]))
    check(stats, direct_stats(records, errors, sizes))
    assert stats.errors_by_stage == {"parse": 2, "tier:medium": 1}


def test_statistics_transform_in_a_pipeline():
    records, errors, sizes = with_batches(synthetic_predictions(200, seed=1), ERRORS, seed=1)
    expected = direct_stats(records, errors, sizes)

    def matches(results):
        assert len(results) == 1
        check(results[0], expected)

    typed = list(map(typed_record, records))
    parsed = [typed[:150], typed[150:] + [FAILED]]  # and the record tier medium failed on
    branches = [[typed[:60], typed[60:100]], [typed[100:]]]
    with TestPipeline(runner="FnApiRunner") as p:
        inputs = StatisticsInputs(
            parsed=p | "Parsed" >> beam.Create(parsed),
            dead_letters=p | "E" >> beam.Create(list(map(typed_error, errors))),
            decided={str(i): p | f"P{i}" >> beam.Create(chunks)
                     for i, chunks in enumerate(branches)})
        stats = (inputs | ComputeRoutingStats(TIERS)).windows
        assert_that(stats, matches)


def test_empty_input_gives_zero_counts_and_no_ratios():
    fn = RoutingStatsFn(TIERS)
    stats = fn.extract_output(fn.create_accumulator())
    assert stats.records == 0 and stats.accuracy is None and stats.unaccounted == 0
    assert all(t.seen == 0 and t.escalation_rate is None for t in stats.tiers)


def test_a_record_lost_inside_the_cascade_shows_as_unaccounted():
    fn = RoutingStatsFn(TIERS)
    acc = fn.create_accumulator()
    count_parsed(acc, [FAILED])
    assert fn.extract_output(acc).unaccounted == 1


@pytest.mark.parametrize("reason, kind", [
    ("invalid JSON: Expecting value at column 5", "invalid JSON"),
    ("line is not valid UTF-8 (invalid continuation byte at byte 3)", "line is not valid UTF-8"),
    ("'id' is a dict; an id must be a string or a number", "'id' is a dict"),
    ("no 'text' field", "no 'text' field")])
def test_dead_letters_are_counted_by_their_reason_without_its_particulars(reason, kind):
    fn = RoutingStatsFn(TIERS)
    acc = fn.create_accumulator()
    for position in range(3):
        count_error(acc, DeadLetter("parse", reason, "", position=position))
    count_error(acc, DeadLetter("read", "cannot read parquet file", ""))
    assert fn.extract_output(acc).errors_by_reason == {kind: 3}  # a file is no record


def test_the_json_round_trip_gives_the_files_keys_and_the_same_statistics():
    """routing_stats.json's keys (docs/outputs.md), the streaming ones and the launcher's
    `failures` only where they apply; read back, the same statistics."""
    records, errors, _ = with_batches(synthetic_predictions(100), ERRORS)
    fn = RoutingStatsFn(TIERS)
    acc = fn.create_accumulator()
    typed = list(map(typed_record, records))
    count_parsed(acc, typed)
    count_predictions(acc, typed)
    for e in errors:
        count_error(acc, typed_error(e))
    decided_first = [r for r in typed if len(r.tiers) == 1]
    count_audits(acc, [r.visited(r.tiers[0]) for r in decided_first])  # the last tier agrees
    batch = fn.extract_output(acc)
    assert batch.audit is not None and batch.tiers[0].audit.agreed == len(decided_first)
    window = in_window(batch, Timestamp(60), Timestamp(120))
    running = dataclasses.replace(window, windows=2)
    judged = dataclasses.replace(batch, failures=("a reason",))
    keys = {name: list(stats.to_json()) for name, stats in (
        ("batch", batch), ("window", window), ("running", running), ("judged", judged))}
    assert keys["batch"][:2] == ["records", "records_read"] and keys["batch"][-1] == "tiers"
    assert keys["window"] == ["window", *keys["batch"], "records_per_second"]
    assert keys["running"] == ["windows", *keys["window"]]
    assert keys["judged"] == [*keys["batch"], "failures"]
    assert window.to_json()["window"] == {"start": "1970-01-01T00:01:00Z",
                                          "end": "1970-01-01T00:02:00Z"}
    assert window.records_per_second == batch.records / 60
    for stats in (batch, window, running, judged):
        assert RoutingStats.from_json(json.loads(json.dumps(stats.to_json()))) == stats
    with pytest.raises(ValueError, match="no field.*'renamed'"):
        RoutingStats.from_json({**batch.to_json(), "renamed": 1})


def test_with_calibrates_timings_the_last_tier_alone_is_scaled_from_the_first_tiers_cost():
    """The last tier's own cost in the job, on the hard records only, overstated the saving
    (the demo: 1.7x estimated, 1.1x measured); calibrate's timings of every tier on all its
    texts give the cost ratio, the first tier's cost in the job (every record) the scale."""
    timed = [dataclasses.replace(t, seconds_per_record=cost)
             for t, cost in zip(TIERS, (0.0005, 0.002, 0.004))]
    records, errors, _ = with_batches(synthetic_predictions(300, seed=3), [], seed=3)
    fn = RoutingStatsFn(timed)
    acc = fn.create_accumulator()
    count_predictions(acc, list(map(typed_record, records)))
    cost = fn.extract_output(acc).cost
    first_ms = sum(r["tiers"][0]["ms"] for r in records)
    assert cost.last_tier_alone_seconds_by.calibration == pytest.approx(
        0.004 / 0.0005 * first_ms / len(records) * len(records) / 1000)
    assert cost.last_tier_alone_seconds == cost.last_tier_alone_seconds_by.calibration
    assert cost.times_cheaper == pytest.approx(cost.last_tier_alone_seconds / cost.model_seconds)
    assert RoutingStatsFn(TIERS).extract_output(acc).cost.last_tier_alone_seconds_by \
        .calibration is None  # without calibrate's timings: the job's own, said so
