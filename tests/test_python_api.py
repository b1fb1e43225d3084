"""The Python API: the cascade as a building block of a user's own Beam pipeline, and in this
process (`predict`, `beam-cascade predict`); both answer as `beam-cascade run` does."""
import json
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from conftest import ROOT, read_predictions, run_job

from pipeline.cascade import Cascade
from pipeline.predict import Predictor, main, predict

TEXTS = ["good movie", "bad plot", "the film was fun", "dull actor", "great story",
         "awful", "not very good", "a brilliant film"]




@pytest.fixture()
def job_predictions(tmp_path, two_tier_config):
    """What `beam-cascade run` writes for TEXTS: id -> (label, decided_by, confidence)."""
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n"
                            for i, t in enumerate(TEXTS)))
    run_job(["--input", str(data), "--output", str(tmp_path / "out"), "--config", two_tier_config])
    return {p["id"]: (p["label"], p["decided_by"], p["confidence"])
            for p in read_predictions(tmp_path / "out")}


def test_the_cascade_is_a_building_block_of_a_users_pipeline(two_tier_config, job_predictions):
    rows = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)] + [{"id": "bad"}]

    def same_as_the_job(predictions):
        got = {p["id"]: (p["label"], p["decided_by"], p["confidence"]) for p in predictions}
        assert got.keys() == job_predictions.keys()
        for record_id, (label, tier, confidence) in got.items():
            assert (label, tier) == job_predictions[record_id][:2]
            assert confidence == pytest.approx(job_predictions[record_id][2], abs=1e-6)

    def one_dead_letter(letters):
        assert [(d["stage"], d["reason"]) for d in letters] == [("parse", "no 'text' field")]

    with TestPipeline(runner="FnApiRunner") as p:
        outputs = p | beam.Create(rows) | Cascade.from_config(two_tier_config)
        assert_that(outputs["predictions"], same_as_the_job, label="predictions")
        assert_that(outputs["dead_letters"], one_dead_letter, label="dead letters")


def test_predict_in_process_answers_as_the_job(two_tier_config, job_predictions):
    answers = predict(TEXTS, two_tier_config)
    for i, answer in enumerate(answers):
        label, tier, confidence = job_predictions[f"t{i}"]
        assert (answer.label, answer.decided_by) == (label, tier)
        assert answer.confidence == pytest.approx(confidence, abs=1e-6)
        assert [v.tier for v in answer.tiers] == (["small"] if tier == "small"
                                                  else ["small", "large"])


def test_the_predict_command_prints_each_tiers_answer(two_tier_config, capsys):
    assert main(["--config", two_tier_config, "good movie", "dull actor"]) == 0
    out = capsys.readouterr().out
    answers = Predictor.from_config(two_tier_config).predict(["good movie", "dull actor"])
    for answer in answers:
        assert f"'{answer.text}': {answer.label} (decided by {answer.decided_by}" in out
    assert out.count("  small ") == 2 and "(threshold 0.9)" in out
    assert main(["--config", two_tier_config + ".missing", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predict_answers_without_loading_beam(two_tier_config):
    """`predict` runs in this process without Beam: its scoring is the job's, from models/."""
    probe = ("import sys\nfrom pipeline.predict import predict\n"
             f"predict(['good movie', 'dull actor'], {two_tier_config!r})\n"
             "print('apache_beam' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
    assert done.stdout.split()[-1] == "False"
