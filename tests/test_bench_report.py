"""The benchmark's arithmetic: medians, speedups, efficiency and the pick within tolerance."""
from bench.compare import table as config_table
from bench.report import best_within_tolerance, markdown, rows


def job(seconds, accuracy, escalation_rate=None):
    tiers = [{"escalation_rate": escalation_rate}] if escalation_rate is not None else []
    return {"seconds": seconds, "stats": {"accuracy": accuracy, "tiers": tiers}}


FACTS = {"records": 1000, "dev_records": 100, "thresholds": [0.7, 0.9], "command": "bench",
         "date": "2026-01-01", "startup_records": 16, "cpus": 2, "torch_threads": 2,
         "python": "3.11",
         "tier1": "t1", "tier2": "t2", "tier1_dev_accuracy": 0.8, "tier1_batch_size": 256,
         "tier2_batch_size": 64, "peer_batch_size": 64, "oracle_escalated_dev": 0.2}
RUNS = {
    "tier2": [job(11, 0.90), job(10, 0.90), job(30, 0.90)],  # median 11 (an outlier ignored)
    "peer": [{"seconds": 33, "accuracy": 0.90}] * 3,
    "cascade@0.7": [job(3, 0.897, 0.25)] * 3,
    "cascade@0.9": [job(5.5, 0.901, 0.45)] * 3,
    "bare_tier1": [0.1] * 3, "bare_tier2": [10.0] * 3, "bare_tier2_input_order": [12.0] * 3,
    "bare_tier2@0.7": [2.6] * 3, "bare_tier2@0.9": [4.9] * 3,
    "startup_tier2": [1.0] * 3, "startup_cascade": [1.5] * 3,
}


def test_rows_use_medians_and_relate_every_setting_to_tier2_and_the_peer():
    tier2, peer, low, high = rows(FACTS, RUNS)
    assert tier2.seconds == 11 and tier2.records_per_s == 1000 / 11
    assert tier2.efficiency == 10.0 / 11
    assert peer.speedup_vs_tier2 == 11 / 33 and peer.efficiency is None
    assert low.speedup_vs_tier2 == 11 / 3 and low.speedup_vs_peer == 33 / 3
    assert low.ideal_seconds == 0.1 + 2.6 and low.efficiency == (0.1 + 2.6) / 3
    assert tier2.efficiency_after_startup == 10.0 / (11 - 1.0)
    assert low.efficiency_after_startup == (0.1 + 2.6) / (3 - 1.5)
    assert (low.escalated, high.accuracy) == (0.25, 0.901)


def test_fastest_point_within_half_a_point_of_tier2():
    table = rows(FACTS, RUNS)
    assert best_within_tolerance(table).threshold == 0.7  # 89.7% is within 0.5 of 90.0%
    slow_only = {**RUNS, "cascade@0.7": [job(3, 0.894, 0.25)] * 3}
    assert best_within_tolerance(rows(FACTS, slow_only)).threshold == 0.9
    text = markdown(FACTS, RUNS, table)
    assert "| cascade | 0.7 | 25.0% | 89.70% |" in text and "3.67x" in text


def test_config_comparison_uses_medians_against_the_first_config():
    def stats_job(seconds, seen):
        tiers = [{"name": f"t{i}", "seen": s} for i, s in enumerate(seen)]
        return {"seconds": seconds, "stats": {"accuracy": 0.9, "predictions": 100,
                                              "tiers": tiers}}
    runs = {"alone.yaml": [stats_job(s, [100]) for s in (10, 12, 30)],
            "cascade.yaml": [stats_job(s, [100, 25]) for s in (4, 3, 5)]}
    text = config_table(["alone.yaml", "cascade.yaml"], runs, records=1000)
    assert "| alone.yaml | 1 | 90.00% | t0 100.0% | 12.00 | 83 | 1.00x |" in text
    assert "| cascade.yaml | 2 | 90.00% | t0 100.0%, t1 25.0% | 4.00 | 250 | 3.00x |" in text
