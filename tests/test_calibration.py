"""Temperature scaling, calibration error, operating points and the calibrate command."""
import dataclasses
import json
from types import SimpleNamespace

import fsspec
import pytest
import torch
import yaml
from conftest import run_job, upload

from models import model_cache
from models.calibration import calibrate, expected_calibration_error, fit_temperature
from models.operating_points import (NoOperatingPoint, OperatingPoint, Policy, TierOutputs,
                                     candidate_thresholds, choose, pareto_frontier, replay,
                                     sweep)
from models.config import TierConfig
from models.tuning.fitting import fit_tier, refit_on_reached
from models.tuning.results import TierMeasurements
from pipeline.calibrate import main as calibrate_main
from pipeline.calibration_report import slower_than_last_tier
from pipeline.config import load_config
from pipeline.summary import format_summary


@pytest.mark.parametrize("true_temperature", [0.3, 1.0, 2.5, 8.0])
def test_fitting_recovers_a_known_temperature(true_temperature):
    """Labels drawn from softmax(z / T) for known T: the fit finds T from any scale."""
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20_000, 3, generator=generator)
    labels = torch.multinomial(torch.softmax(logits / true_temperature, -1), 1,
                               generator=generator).squeeze(1)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.06)
    assert fitted == float(f"{fitted:.4g}")  # what a tuned config writes is what was used


def test_calibration_lowers_nll_and_ece_of_an_overconfident_model():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5000, 2, generator=generator)
    labels = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
    result = calibrate(10 * logits, labels)  # 10x over-confident
    assert result.temperature == pytest.approx(10, rel=0.1)
    assert result.nll_after < result.nll_before and result.ece_after < result.ece_before / 3


def test_a_later_tier_is_calibrated_on_the_records_that_reach_it():
    """Tier 2 as confident on the hard records tier 1 sends it (70% right) as on the rest
    (98% right): fitted on all records its estimate there runs high; refitted on the
    reached records the estimate meets the truth and the ECE there falls."""
    generator = torch.Generator().manual_seed(0)
    n, hard = 4000, 1200
    labels = torch.randint(0, 2, (n,), generator=generator)
    right = torch.rand(n, generator=generator) < torch.where(torch.arange(n) < hard, 0.7, 0.98)
    predicted = torch.where(right, labels, 1 - labels)
    logits = torch.nn.functional.one_hot(predicted, 2).float() * 4.0
    tier = TierConfig("late", "unused")
    fit = fit_tier(tier, None, logits.unsqueeze(0), labels, None, torch.ones(n, dtype=torch.bool))
    measured = TierMeasurements(**vars(fit), costs={1: 1.0}, dev_logits=logits.unsqueeze(0))
    reaching = torch.arange(n) < hard
    refitted = refit_on_reached(tier, measured, labels, reaching)
    r = refitted.reached
    assert r.records == hard and r.accuracy == pytest.approx(0.7, abs=0.03)
    assert r.estimate_all - r.accuracy > 0.1  # the trouble
    assert abs(r.estimate_reached - r.accuracy) < 0.01
    assert r.ece_reached < r.ece_all / 5
    assert refitted.calibration.temperature == pytest.approx(r.temperature_reached)
    few = refit_on_reached(tier, measured, labels, torch.arange(n) < 20)
    assert few.reached.temperature_reached is None  # too few to fit on: kept
    assert few.calibration == measured.calibration


def test_ece_on_a_hand_computed_case():
    # Bin (0.933, 1]: 2 records, confidence 0.95, accuracy 1 -> gap 0.05 x 2 records.
    # Bin (0.533, 0.6]: 3 records, confidence 0.55, accuracy 1/3 -> gap 0.2167 x 3 records.
    confidences = torch.tensor([0.95, 0.95, 0.55, 0.55, 0.55])
    correct = torch.tensor([True, True, True, False, False])
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.15)


def _tiers():
    """Three tiers over six records with hand-picked confidences; labels all 1."""
    def tier(predictions, confidences):
        c = torch.tensor(confidences)
        return TierOutputs(torch.tensor(predictions), c, c)
    return ([tier([1, 0, 1, 0, 1, 1], [0.9, 0.6, 0.95, 0.7, 0.55, 0.99]),
             tier([1, 1, 1, 0, 0, 1], [0.9, 0.9, 0.9, 0.6, 0.6, 0.9]),
             tier([1, 1, 1, 1, 1, 1], [0.8] * 6)], torch.ones(6, dtype=torch.long))


def test_replay_decides_each_record_at_the_first_confident_tier():
    tiers, labels = _tiers()
    point = replay(tiers, labels, (0.8, 0.8), costs=(1.0, 10.0, 100.0))
    # tier 1 decides records 0, 2, 5 (all right); tier 2 decides 1 (right); tier 3: 3, 4.
    assert point.accuracy == 1.0
    assert point.reach == (1.0, 0.5, pytest.approx(2 / 6))
    assert point.cost == pytest.approx(1 + 0.5 * 10 + 100 * 2 / 6)
    assert point.escalation == (0.5, pytest.approx(2 / 3))
    assert point.estimated_accuracy == pytest.approx((0.9 + 0.95 + 0.99 + 0.9 + 0.8 + 0.8) / 6)
    lax = replay(tiers, labels, (0.5, 0.5), costs=(1.0, 10.0, 100.0))
    assert lax.accuracy == pytest.approx(4 / 6) and lax.reach == (1.0, 0.0, 0.0)


def test_sweep_searches_the_threshold_vector_and_the_frontier_is_monotone():
    tiers, labels = _tiers()
    points = sweep(tiers, labels, costs=(1.0, 10.0, 100.0), steps=4)
    grids = [candidate_thresholds(t.confidences, steps=4) for t in tiers[:2]]
    assert grids[1] == [0.0, 0.75, 1.0]  # halfway between its two distinct confidences
    assert {p.thresholds for p in points} == {(a, b) for a in grids[0] for b in grids[1]}
    frontier = pareto_frontier(points)
    assert all(a.cost < b.cost and a.accuracy < b.accuracy
               for a, b in zip(frontier, frontier[1:]))
    assert frontier[-1].accuracy == 1.0


def _point(accuracy, speedup, reach_last):
    return OperatingPoint((0.5,), accuracy, (1.0, reach_last), 1 / speedup, speedup, accuracy)


def test_each_policy_picks_its_point_on_a_synthetic_frontier():
    reference = _point(0.900, 1.0, 1.0)
    points = [_point(0.899, 2, 0.5), _point(0.896, 3, 0.3), _point(0.894, 4, 0.2),
              _point(0.850, 10, 0.05), reference]
    assert choose(points, reference, Policy(max_accuracy_drop=0.5)).speedup == 3
    assert choose(points, reference, Policy(max_accuracy_drop=0.1)).speedup == 2
    assert choose(points, reference, Policy(min_speedup=3.5)).accuracy == 0.894
    assert choose(points, reference, Policy(max_escalation=0.25)).speedup == 4
    with pytest.raises(NoOperatingPoint, match="fastest reaches 10.00x"):
        choose(points, reference, Policy(min_speedup=20))
    with pytest.raises(ValueError, match="exactly one policy"):
        Policy(max_accuracy_drop=0.5, min_speedup=2)


def _dev_rows() -> list[dict]:
    words = "good bad movie plot fun dull great awful".split()
    return [{"text": " ".join(words[(i * 5 + j) % 8] for j in range(1 + i % 6)),
             "label": ["neg", "pos"][i % 2]} for i in range(200)]


def test_calibrate_reads_tiers_config_and_dev_data_at_urls(tmp_path, models,
                                                           monkeypatch, capsys):
    """Tier folders at URLs go through the same model cache as `run` (calibrate listed
    them with os.listdir), and the config and dev files are read through fsspec. It says
    what it is doing as it goes (it used to be silent for minutes)."""
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    fs.pipe("memory://calibrate/dev.jsonl",
            "".join(json.dumps(r) + "\n" for r in _dev_rows()).encode())
    fs.pipe("memory://calibrate/cascade.yaml", yaml.safe_dump({"tiers": [
        {"name": "small", "model": upload(models["small"]), "threshold": 0.9},
        {"name": "large", "model": upload(models["large"])}]}).encode())
    tuned = tmp_path / "tuned.yaml"
    assert calibrate_main(["--config", "memory://calibrate/cascade.yaml",
                           "--dev", "memory://calibrate/dev.jsonl", "--output", str(tuned),
                           "--report", str(tmp_path / "report"), "--batch_sizes", "4",
                           "--repeats", "1", "--max_accuracy_drop", "20"]) == 0
    assert load_config(str(tuned)).tiers[1].model.startswith("memory://models/")
    steps = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("calibrate: ")]
    assert steps[0] == "calibrate: loading 2 tiers"
    assert "calibrate: tier small: logits on the 200 dev texts" in steps
    assert any(s.startswith("calibrate: tier large: temperature ") for s in steps)
    assert "calibrate: replaying the cascade at every threshold vector" in steps


def test_the_written_config_runs_unchanged(tmp_path, models):
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in _dev_rows()))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "medium", "model": models["medium"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    tuned, report = tmp_path / "tuned.yaml", tmp_path / "report"
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "4,8",
                           "--repeats", "1", "--max_accuracy_drop", "20"]) == 0

    written = load_config(str(tuned))
    result = json.loads((report / "report.json").read_text())
    assert [t.threshold for t in written.tiers[:2]] == pytest.approx(
        result["chosen"]["thresholds"], abs=1e-6)
    assert [t.temperature for t in written.tiers] == pytest.approx(
        [t["calibration"]["temperature"] for t in result["tiers"]], abs=1e-6)
    assert {t.batch_size for t in written.tiers} <= {4, 8}
    assert all(len(t.reference_confidences) == 49 and t.reference_records
               for t in written.tiers)
    for name in ("report.md", "frontier.png", "reliability-small.png", "reliability-large.png"):
        assert (report / name).stat().st_size > 0

    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.accuracy == pytest.approx(result["chosen"]["accuracy"])
    reach = [t.seen / stats.predictions for t in stats.tiers]
    assert reach == pytest.approx(result["chosen"]["reach"])
    assert stats.shifted_tiers == ()  # the data it was calibrated on
    promise = written.guarantee  # what calibrate promised travels with the config, and is said
    assert (promise.max_accuracy_drop, promise.labelled_records) == (20, len(_dev_rows()))
    assert promise.drop_bound == pytest.approx(result["bound"]["bound_points"])
    assert promise.expected_escalation == pytest.approx(result["chosen"]["reach"][-1])
    assert stats.guarantee == promise
    assert all(t.seconds_per_record > 0 for t in written.tiers)  # calibrate's timings, and
    assert stats.cost.last_tier_alone_seconds_by.calibration is not None  # the run uses them
    assert f"guarantee: {promise.describe()}" in format_summary(stats, "out")
    for k, tier in enumerate(result["tiers"][1:], start=1):  # refitted where they are reached
        assert tier["reached"]["records"] == round(result["chosen"]["reach"][k] * len(_dev_rows()))


def test_calibrate_bounds_the_drop_with_an_unlabelled_sample(tmp_path, models, capsys):
    """--unlabelled is read as the job reads input (here gzipped JSON Lines with one bad
    line, which is skipped as the job would dead-letter it), sampled, and measures the
    disagreement rate; the report states the bound, its evidence and the budget table."""
    import gzip
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in _dev_rows()))
    with gzip.open(tmp_path / "unlabelled.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"text": r["text"] + " again"}) + "\n"
                        for r in _dev_rows() * 3) + "{not json\n")
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    tuned, report = tmp_path / "tuned.yaml", tmp_path / "report"
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "4", "--repeats", "1",
                           "--max_accuracy_drop", "20", "--confidence", "0.8",
                           "--unlabelled", str(tmp_path / "unlabelled.jsonl.gz"),
                           "--unlabelled_sample", "500"]) == 0
    assert "500 unlabelled records sampled of 600 read (1 invalid rows skipped)" in (
        capsys.readouterr().err)
    result = json.loads((report / "report.json").read_text())
    bound = result["bound"]
    assert result["unlabelled_records"] == 500 and bound["compared"] == 500
    assert bound["confidence"] == 0.8
    assert bound["bound_points"] <= 20
    assert bound["bound_points"] == pytest.approx(
        100 * bound["disagreement_bound"] * max(0, 2 * bound["wrong_share_bound"] - 1))
    assert "## Guarantee" in (report / "report.md").read_text()


def test_a_cascade_slower_than_its_last_tier_alone_is_said_so():
    """A first tier that decides too few records to pay for itself: the report and calibrate's
    stderr say so and what to do instead; a cascade that pays off gets no warning."""
    tiers = [SimpleNamespace(name="pairs2"), SimpleNamespace(name="pairs6")]

    def result(speedup: float, reach: float) -> SimpleNamespace:
        return SimpleNamespace(tiers=tiers, chosen=OperatingPoint(
            thresholds=(0.8,), accuracy=0.8, reach=(1.0, reach), cost=1.0, speedup=speedup,
            estimated_accuracy=0.8))

    warning = slower_than_last_tier(result(0.77, 0.945))
    assert warning.startswith("the tuned cascade is slower than its last tier 'pairs6' alone "
                              "(0.77x the speed): 'pairs2' decides 5.5% of the dev records")
    assert "Run 'pairs6' alone" in warning
    assert slower_than_last_tier(result(2.5, 0.3)) is None


def test_a_budget_the_data_cannot_support_is_refused_with_the_smallest_it_can(
        tmp_path, models, capsys):
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in _dev_rows()[:40]))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output",
                           str(tmp_path / "tuned.yaml"), "--batch_sizes", "4", "--repeats", "1",
                           "--max_accuracy_drop", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "supports no accuracy-drop budget below" in err and "--unlabelled" in err
    assert not (tmp_path / "tuned.yaml").exists()


def test_the_tuned_config_records_the_fields_it_was_calibrated_on(tmp_path, models):
    """calibrate --text_field sentence read the dev file's `sentence`; a tuned config without
    it made `run --config tuned.yaml` on the same kind of file read `text` and dead-letter
    every record."""
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"sentence": r["text"], "gold": r["label"]}) + "\n"
                           for r in _dev_rows()))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    tuned = tmp_path / "tuned.yaml"
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--text_field", "sentence", "--label_field", "gold",
                           "--batch_sizes", "4", "--repeats", "1",
                           "--max_accuracy_drop", "20"]) == 0
    written = yaml.safe_load(tuned.read_text())
    assert (written["text_field"], written["label_field"]) == ("sentence", "gold")
    loaded = load_config(str(tuned))
    assert (loaded.text_field, loaded.label_field) == ("sentence", "gold")
    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned)])
    assert (stats.predictions, stats.errors) == (len(_dev_rows()), 0)


def test_a_flag_that_lowers_the_calibrated_thresholds_drops_the_guarantee(tmp_path, models):
    """--max_escalation_rate may lower thresholds below calibrate's: the promise would be
    false, so the run does not state it; other flags keep it."""
    from pipeline.config import cascade_config
    from pipeline.flags import run_parser
    promise = {"max_accuracy_drop": 1.0, "confidence": 0.9, "drop_bound": 0.8,
               "labelled_records": 872, "unlabelled_records": 0, "evidence": "the labels",
               "expected_escalation": 0.3, "expected_speedup": 2.5,
               "calibrated_on": "2026-12-07"}
    config = tmp_path / "tuned.yaml"
    config.write_text(yaml.safe_dump({"guarantee": promise, "tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))

    def built(*flags):
        return cascade_config(run_parser().parse_known_args(["--config", str(config),
                                                             *flags])[0])

    assert dataclasses.asdict(built().guarantee) == promise
    assert built("--audit_rate", "0.1").guarantee is not None
    assert built("--max_escalation_rate", "0.2").guarantee is None
