"""A job's own outputs as training data: `run --training_examples` writes the records its last
tier scored, `train --from_outputs` retrains a cheaper tier on them."""
import json

import pytest
import yaml
from conftest import read_predictions, run_job, write_jsonl

from models.loading import load_tier
from pipeline.train import main as train_main

WORDS = "the a movie film good bad great awful not very plot actor story fun dull".split()


def _rows(count: int) -> list[dict]:
    return [{"id": f"r{i}", "text": " ".join(WORDS[(i * 7 + j) % len(WORDS)]
                                             for j in range(1 + i % 5)),
             "label": ["neg", "pos"][i % 2]} for i in range(count)]


def _config(tmp_path, models) -> str:
    """Tier small keeps half the records (its median confidence), audits 30% of those."""
    confidences = load_tier(models["small"]).logits([r["text"] for r in _rows(120)]
                                                    ).softmax(-1).max(-1).values
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"],
         "threshold": float(confidences.median()), "audit_rate": 0.3},
        {"name": "large", "model": models["large"]}]}))
    return str(config)


def test_the_job_writes_what_its_last_tier_scored_as_training_examples(tmp_path, models):
    rows = _rows(120)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    config = _config(tmp_path, models)
    plain = tmp_path / "plain"
    run_job(["--input", str(data), "--output", str(plain), "--config", config,
             "--output_format", "jsonl"])
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--config", config,
                     "--output_format", "jsonl", "--training_examples"])
    assert sorted(map(json.dumps, read_predictions(out))) == \
        sorted(map(json.dumps, read_predictions(plain)))  # predictions unchanged
    examples = [json.loads(line) for path in sorted(out.glob("training-*.jsonl"))
                for line in path.read_text().splitlines()]
    escalated = [e for e in examples if e["why"] == "escalated"]
    audited = [e for e in examples if e["why"] == "audit"]
    assert len(escalated) == stats.tiers[1].decided > 0
    assert len(audited) == stats.audit.audited > 0
    texts = {r["id"]: r["text"] for r in rows}
    large = load_tier(models["large"])
    probabilities = large.logits([texts[e["id"]] for e in examples]).softmax(-1)
    for example, expected in zip(examples, probabilities.tolist()):
        assert example["text"] == texts[example["id"]]
        assert example["probabilities"] == pytest.approx(expected, abs=1e-5)
        assert example["label"] == ("neg", "pos")[example["label_id"]]
        assert set(example["confidences"]) == {"small"}
    assert "training-" in (out / "_MANIFEST.json").read_text()


def test_train_from_outputs_adds_the_runs_examples_as_soft_targets(tmp_path, models):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(80))
    out = tmp_path / "night1"
    run_job(["--input", str(data), "--output", str(out), "--config", _config(tmp_path, models),
             "--output_format", "jsonl", "--training_examples"])
    examples = sum(1 for path in out.glob("training-*.jsonl")
                   for _ in path.read_text().splitlines())
    train = write_jsonl(tmp_path / "train.jsonl", _rows(40))
    assert train_main(["--kind", "ngram", "--train", str(train), "--label_names", "neg,pos",
                       "--from_outputs", str(out), "--from_outputs", str(out),
                       "--output", str(tmp_path / "retrained"), "--epochs", "1"]) == 0
    report = json.loads((tmp_path / "retrained" / "TRAINING.json").read_text())
    assert report["train_examples"] == 40 + 2 * examples
    assert report["distillation"]["examples_from_outputs"] == 2 * examples
    assert report["distillation"]["from_outputs"] == [str(out), str(out)]


def test_bad_from_outputs_folders_are_refused(tmp_path, models, capsys):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(40))
    without = tmp_path / "without"
    run_job(["--input", str(data), "--output", str(without), "--config",
             _config(tmp_path, models), "--output_format", "jsonl"])
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    train = write_jsonl(tmp_path / "train.jsonl", _rows(10))
    other_labels = write_jsonl(tmp_path / "yes_no.jsonl",
                               [{"text": "good", "label": "yes"}, {"text": "bad", "label": "no"}])
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "_SUCCESS").write_text("")
    (damaged / "training-00000-of-00001.jsonl").write_text('{"text": "good"}\n')
    for folder, train_file, message in ((without, train, "run the job with --training_examples"),
                                        (unfinished, train, "not the output of a finished run"),
                                        (damaged, train, "line 1: not a training example")):
        assert train_main(["--kind", "ngram", "--train", str(train_file), "--from_outputs",
                           str(folder), "--output", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    with_examples = tmp_path / "with"
    run_job(["--input", str(data), "--output", str(with_examples), "--config",
             _config(tmp_path, models), "--output_format", "jsonl", "--training_examples"])
    assert train_main(["--kind", "ngram", "--train", str(other_labels), "--label_names", "no,yes",
                       "--from_outputs", str(with_examples), "--output",
                       str(tmp_path / "x")]) == 2
    assert "give --label_names in the cascade's order" in capsys.readouterr().err
