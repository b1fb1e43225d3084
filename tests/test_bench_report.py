"""The benchmark's arithmetic: medians, speedups, efficiency and the pick within tolerance."""
import dataclasses
import json

from bench.compare import table as config_table
from bench.lib.jobs import records_per_tier
from bench.report import best_within_tolerance, markdown, rows
from models.config import CascadeConfig, TierConfig
from transforms.statistics_extraction import RoutingStatsFn


def stats_json(accuracy, tiers, predictions=0):
    """Routing statistics as a timed job gives them (bench/timed_job.py): those of an empty
    run of tiers t0, t1, ..., with the figures the report reads (each tier's fields)."""
    fn = RoutingStatsFn([TierConfig(f"t{i}", "m") for i in range(len(tiers))])
    empty = fn.extract_output(fn.create_accumulator())
    return dataclasses.replace(
        empty, accuracy=accuracy, predictions=predictions,
        tiers=tuple(dataclasses.replace(t, **fields) for t, fields in zip(empty.tiers, tiers))
    ).to_json()


def job(seconds, accuracy, escalation_rate=None, tiers=2):
    first = {"threshold": 0.8, "escalation_rate": escalation_rate}
    return {"seconds": seconds, "stats": stats_json(accuracy, [first] * tiers)}


FACTS = {"records": 1000, "dev_records": 100, "thresholds": [0.7, 0.9], "command": "bench",
         "date": "2026-01-01", "startup_records": 16, "cpus": 2, "torch_threads": 2,
         "python": "3.11",
         "tier1": "t1", "tier2": "t2", "tier1_dev_accuracy": 0.8, "tier1_batch_size": 256,
         "tier2_batch_size": 64, "peer_batch_size": 64, "oracle_escalated_dev": 0.2,
         "configs": ["alone.yaml", "tuned.yaml"]}
RUNS = {
    "tier2": [job(11, 0.90), job(10, 0.90), job(30, 0.90)],  # median 11 (an outlier ignored)
    "peer": [{"seconds": 33, "accuracy": 0.90}] * 3,
    "cascade@0.7": [job(3, 0.897, 0.25)] * 3,
    "cascade@0.9": [job(5.5, 0.901, 0.45)] * 3,
    "bare_tier1": [0.1] * 3, "bare_tier2": [10.0] * 3, "bare_tier2_input_order": [12.0] * 3,
    "bare_tier2@0.7": [2.6] * 3, "bare_tier2@0.9": [4.9] * 3,
    "startup_tier2": [1.0] * 3, "startup_cascade": [1.5] * 3,
    "config@alone.yaml": [job(s, 0.899, tiers=1) for s in (5, 6, 7)],
    "startup_config@alone.yaml": [1.0] * 3, "bare_config@alone.yaml": [4.0] * 3,
    "config@tuned.yaml": [job(s, 0.896, 0.35) for s in (2.5, 2, 9)],
    "startup_config@tuned.yaml": [1.2] * 3, "bare_config@tuned.yaml": [0.5, 0.6, 0.7],
}


def test_rows_use_medians_and_relate_every_setting_to_tier2_and_the_peer():
    tier2, peer, low, high, _, _ = rows(FACTS, RUNS)
    assert tier2.seconds == 11 and tier2.records_per_s == 1000 / 11
    assert tier2.efficiency == 10.0 / 11
    assert peer.speedup_vs_tier2 == 11 / 33 and peer.efficiency is None
    assert low.speedup_vs_tier2 == 11 / 3 and low.speedup_vs_peer == 33 / 3
    assert low.ideal_seconds == 0.1 + 2.6 and low.efficiency == (0.1 + 2.6) / 3
    assert tier2.efficiency_after_startup == 10.0 / (11 - 1.0)
    assert low.efficiency_after_startup == (0.1 + 2.6) / (3 - 1.5)
    assert (low.escalated, high.accuracy) == (0.25, 0.901)


def test_a_config_row_is_timed_against_its_own_tiers_bare_loops():
    alone, tuned = rows(FACTS, RUNS)[-2:]
    assert (alone.setting, alone.tiers, alone.threshold, alone.escalated) == (
        "`alone.yaml`", 1, None, None)
    assert alone.seconds == 6 and alone.efficiency == 4.0 / 6
    assert (tuned.tiers, tuned.threshold, tuned.escalated) == (2, 0.8, 0.35)
    assert tuned.seconds == 2.5 and tuned.speedup_vs_peer == 33 / 2.5
    assert tuned.efficiency_after_startup == 0.6 / (2.5 - 1.2)


def test_fastest_point_within_half_a_point_of_tier2():
    without_configs = {**FACTS, "configs": []}
    table = rows(without_configs, RUNS)
    assert best_within_tolerance(table).threshold == 0.7  # 89.7% is within 0.5 of 90.0%
    slow_only = {**RUNS, "cascade@0.7": [job(3, 0.894, 0.25)] * 3}
    assert best_within_tolerance(rows(without_configs, slow_only)).threshold == 0.9
    best = best_within_tolerance(rows(FACTS, RUNS))  # a single tier is no cascade
    assert best.setting == "`tuned.yaml`" and best.speedup_vs_tier2 == 11 / 2.5
    text = markdown(FACTS, RUNS, table)
    assert "| cascade | 0.7 | 25.0% | 89.70% |" in text and "3.67x" in text


def test_config_comparison_uses_medians_against_the_first_config():
    def stats_job(seconds, seen):
        return {"seconds": seconds,
                "stats": stats_json(0.9, [{"seen": s} for s in seen], predictions=100)}
    runs = {"alone.yaml": [stats_job(s, [100]) for s in (10, 12, 30)],
            "cascade.yaml": [stats_job(s, [100, 25]) for s in (4, 3, 5)]}
    text = config_table(["alone.yaml", "cascade.yaml"], runs, records=1000)
    assert "| alone.yaml | 1 | 90.00% | t0 100.0% | 12.00 | 83 | 1.00x |" in text
    assert "| cascade.yaml | 2 | 90.00% | t0 100.0%, t1 25.0% | 4.00 | 250 | 3.00x |" in text


def test_records_per_tier_reads_which_records_each_tier_saw(tmp_path):
    rows_ = [{"id": "b", "confidence_t1": 0.9, "confidence_t2": None},
             {"id": "a", "confidence_t1": 0.6, "confidence_t2": 0.99}]
    (tmp_path / "predictions-00000-of-00001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows_))
    config = CascadeConfig((TierConfig("t1", "m1", threshold=0.7), TierConfig("t2", "m2")))
    assert records_per_tier(str(tmp_path), config, ["a", "b", "c"]) == {"t1": [1, 0],
                                                                        "t2": [0]}


def test_the_big_model_benchmark_picks_the_fastest_runtime_that_keeps_accuracy():
    from bench.big_cascade import fastest_kept
    bare = {"dev_accuracy": {"mpnet torch/": 0.92, "mpnet onnxruntime/": 0.92,
                             "mpnet onnxruntime/int8": 0.90},
            "ms_per_record": {"mpnet torch/": 30.0, "mpnet onnxruntime/": 20.0,
                              "mpnet onnxruntime/int8": 10.0}}
    assert fastest_kept(bare, ["torch/", "onnxruntime/", "onnxruntime/int8"]) == "onnxruntime/"


def test_the_big_model_benchmark_input_repeats_with_unique_ids_and_scores_every_copy(
        tmp_path):
    from bench.big_cascade import accuracy_by_group, write_job_input
    inputs = write_job_input({"dev": ["a", "b"], "test": ["c"], "held": ["d"]},
                             ["pos", "neg"], 10, str(tmp_path / "input.jsonl"))
    assert len(set(inputs.all_ids)) == 10
    assert inputs.all_ids[:5] == ["dev-0", "dev-1", "test-0", "held-0", "c1-dev-0"]
    assert inputs.all_texts[4] == "a"
    assert len((tmp_path / "startup.jsonl").read_text().splitlines()) == 10
    predicted = {"dev-0": "pos", "dev-1": "pos", "c1-dev-0": "pos", "c1-dev-1": "neg",
                 "held-0": "neg", "test-0": "pos"}
    truth = {"dev-0": "pos", "dev-1": "neg", "held-0": "pos"}
    assert accuracy_by_group(predicted, truth) == {"dev": 0.5, "held": 0.0}  # first copies
