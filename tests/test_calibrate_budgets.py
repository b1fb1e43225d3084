"""`calibrate --max_accuracy_drop 5,10,20`: several budgets tuned on one measurement, each
written to its own config; a later calibrate on the same data scores and times nothing."""
import argparse
import json

import pytest
import yaml
from conftest import labelled_rows, write_jsonl

from models import model_cache
from models.tuning import cost_cache
from pipeline.calibrate import main as calibrate_main
from pipeline.calibrate import tuned_paths
from pipeline.config import load_config

BUDGETS = (5, 10, 20)  # points; the tiny tiers' choices differ at each


@pytest.fixture()
def timed(monkeypatch, tmp_path) -> list:
    """This machine's caches in tmp_path; the number of texts of each timing, in order."""
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    texts = []
    timing = cost_cache.seconds_per_record

    def counted(model, timed_texts, *args, **kwargs):
        texts.append(len(timed_texts))
        return timing(model, timed_texts, *args, **kwargs)

    monkeypatch.setattr(cost_cache, "seconds_per_record", counted)
    return texts


def calibrate(tmp_path, models, output: str, budgets: str) -> int:
    dev = write_jsonl(tmp_path / "dev.jsonl", labelled_rows(200, "good bad movie plot fun dull "
                                                                 "great awful", 5, 6, 1))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    return calibrate_main(["--config", str(config), "--dev", str(dev),
                           "--output", str(tmp_path / output), "--batch_sizes", "4",
                           "--repeats", "1", "--max_accuracy_drop", budgets])


def test_several_budgets_share_one_measurement_and_a_second_run_measures_nothing(
        tmp_path, models, timed, capsys):
    assert calibrate(tmp_path, models, "tuned.yaml", ",".join(map(str, BUDGETS))) == 0
    assert timed.count(200) == 2  # each tier timed once on all dev texts, for every budget
    out = capsys.readouterr().out
    tuned = {b: load_config(str(tmp_path / f"tuned-{b}.yaml")) for b in BUDGETS}
    for b in BUDGETS:
        assert tuned[b].guarantee.max_accuracy_drop == b
        assert (tmp_path / f"tuned-{b}-report" / "report.md").stat().st_size > 0
        assert f"budget {b} points: " in out and f"tuned-{b}.yaml" in out
    thresholds = [tuned[b].tiers[0].threshold for b in BUDGETS]
    escalation = [tuned[b].guarantee.expected_escalation for b in BUDGETS]
    assert thresholds == sorted(thresholds, reverse=True) and thresholds[0] > thresholds[-1]
    assert escalation == sorted(escalation, reverse=True)
    assert not (tmp_path / "tuned.yaml").exists()

    timings = len(timed)
    assert calibrate(tmp_path, models, "again.yaml", "10") == 0  # another --output, one budget
    assert len(timed) == timings  # every cost reused
    steps = capsys.readouterr().err.splitlines()
    assert "calibrate: tier small: logits on the 200 dev texts from the cache" in steps
    assert "calibrate: tier large: logits on the 200 dev texts from the cache" in steps
    assert any(s.startswith("calibrate: costs of tier large (the 200 dev texts): reused from ")
               for s in steps)
    again = load_config(str(tmp_path / "again.yaml"))  # one budget: the names as before
    assert (tmp_path / "again-report" / "report.md").exists()
    assert again.tiers[0].threshold == tuned[10].tiers[0].threshold
    report = json.loads((tmp_path / "again-report" / "report.json").read_text())
    assert report["policy"]["max_accuracy_drop"] == 10


def test_several_budgets_with_a_report_folder_each_get_it_with_their_budget():
    args = argparse.Namespace(output="out/tuned.yaml", report="reports/r",
                              max_accuracy_drop=[0.5, 1.0, 2.0])
    assert tuned_paths(args) == [("out/tuned-0.5.yaml", "reports/r-0.5"),
                                 ("out/tuned-1.yaml", "reports/r-1"),
                                 ("out/tuned-2.yaml", "reports/r-2")]
    one = argparse.Namespace(output="out/tuned.yaml", report=None, max_accuracy_drop=[0.5])
    assert tuned_paths(one) == [("out/tuned.yaml", "out/tuned-report")]


@pytest.mark.parametrize("flags, message", [
    (["--max_accuracy_drop", "0.5,x"],
     "argument --max_accuracy_drop: 'x' is not a number of points: give one budget, or "
     "several separated by commas, such as 0.5,1,2"),
    (["--max_accuracy_drop", "0.5,0"],
     "argument --max_accuracy_drop: 0 is not a budget: each must be a number of points "
     "above 0"),
    (["--max_accuracy_drop", "1,1.0"], "budget 1 is given twice"),
    (["--max_accuracy_drop", "0.5,1", "--min_speedup", "2"],
     "argument --min_speedup: not allowed with argument --max_accuracy_drop"),
    (["--max_accuracy_drop", "0.5,1", "--compare_runtimes"],
     "--compare_runtimes spends part of the accuracy-drop budget on an int8 last tier, so it "
     "tunes one budget a run: give one --max_accuracy_drop value"),
])
def test_budgets_that_cannot_be_tuned_are_refused_before_anything_loads(flags, message,
                                                                         capsys):
    with pytest.raises(SystemExit) as exit_:
        calibrate_main(["--config", "missing.yaml", "--dev", "missing.jsonl",
                        "--output", "tuned.yaml", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
