"""Distillation into the n-gram and transformer tiers: the teacher's probabilities over
unlabelled texts as training targets (`beam-cascade train --teacher --unlabelled`)."""
import json
import random

import pytest
import torch
from conftest import write_jsonl

from models.datasets import LabelledTexts, UnlabelledTexts
from models.distillation import distillation_set
from models.loading import load_tier
from pipeline.train import main as train_main

FILLER = "the a movie plot story film some very".split()


def _texts(count: int, seed: int) -> list[tuple[str, str]]:
    """Texts whose label is the one of 'good'/'bad' they hold, among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        cue, label = rng.choice([("good", "pos"), ("bad", "neg")])
        words = rng.sample(FILLER, 4) + [cue]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _train_teacher(tmp_path) -> None:
    """An n-gram teacher at tmp_path/teacher that knows the cue."""
    teacher_train = write_jsonl(tmp_path / "teacher.jsonl",
                                [{"text": t, "label": y} for t, y in _texts(400, 0)])
    assert train_main(["--kind", "ngram", "--train", str(teacher_train), "--output",
                       str(tmp_path / "teacher"), "--label_names", "neg,pos",
                       "--epochs", "5", "--lr", "0.1"]) == 0


def test_the_training_set_holds_teacher_targets_then_one_hot_gold_labels():
    unlabelled = UnlabelledTexts(["u1", "u2"])
    probabilities = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    labelled = LabelledTexts(["l1"], [1], ("neg", "pos"))
    train = distillation_set(unlabelled, probabilities, ("neg", "pos"), labelled)
    assert train.texts == ["u1", "u2", "l1"] and train.label_ids == [0, 1, 1]
    assert torch.allclose(torch.tensor(train.soft_targets),
                          torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.0, 1.0]]))
    assert torch.allclose(torch.tensor(train.subset([2, 0]).soft_targets),
                          torch.tensor([[0.0, 1.0], [0.7, 0.3]]))


def test_a_student_learns_the_teachers_answers_from_unlabelled_text(tmp_path):
    """The teacher knows the cue; the student sees two labelled examples and 400 unlabelled
    texts the teacher labels, and then answers new texts as the teacher does."""
    _train_teacher(tmp_path)
    few = write_jsonl(tmp_path / "few.jsonl", [{"text": "the good", "label": "pos"},
                                               {"text": "the bad", "label": "neg"}])
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl",
                             [{"text": t} for t, _ in _texts(400, 1)])
    assert train_main(["--kind", "ngram", "--train", str(few), "--output",
                       str(tmp_path / "student"), "--label_names", "neg,pos", "--epochs", "5",
                       "--lr", "0.1", "--teacher", str(tmp_path / "teacher"),
                       "--unlabelled", str(unlabelled)]) == 0
    report = json.loads((tmp_path / "student" / "TRAINING.json").read_text())
    assert report["distillation"]["unlabelled_texts"] == 400
    assert report["distillation"]["labelled_examples"] == 2 and report["train_examples"] == 402
    new = [t for t, _ in _texts(200, 2)]
    teacher = load_tier(str(tmp_path / "teacher")).logits(new)
    student = load_tier(str(tmp_path / "student")).logits(new)
    assert (teacher.argmax(-1) == student.argmax(-1)).double().mean() >= 0.95
    # soft targets: the student is about as sure as its teacher, not sure of everything
    gap = (torch.softmax(teacher, -1) - torch.softmax(student, -1)).abs().max(-1).values
    assert gap.median() < 0.2


def test_a_transformer_student_learns_from_the_teachers_probabilities(tmp_path, models):
    """A tiny transformer with no labelled example of the cue learns it from 300 texts an
    n-gram teacher labels: its loss is the teacher's soft targets, not gold labels."""
    _train_teacher(tmp_path)
    neutral = write_jsonl(tmp_path / "neutral.jsonl", [{"text": "the movie", "label": "neg"},
                                                       {"text": "a plot", "label": "pos"}])
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl",
                             [{"text": t} for t, _ in _texts(300, 1)])
    assert train_main(["--train", str(neutral), "--base", models["small"], "--output",
                       str(tmp_path / "student"), "--label_names", "neg,pos", "--epochs", "6",
                       "--batch_size", "16", "--lr", "0.01", "--teacher",
                       str(tmp_path / "teacher"), "--unlabelled", str(unlabelled)]) == 0
    report = json.loads((tmp_path / "student" / "TRAINING.json").read_text())
    assert report["kind"] == "transformer" and report["train_examples"] == 302
    assert report["distillation"]["unlabelled_texts"] == 300
    new = [t for t, _ in _texts(200, 2)]
    teacher = load_tier(str(tmp_path / "teacher")).logits(new).argmax(-1)
    student = load_tier(str(tmp_path / "student")).logits(new).argmax(-1)
    assert (teacher == student).double().mean() >= 0.9


@pytest.mark.parametrize("extra, message", [
    (["--teacher", "x"], "--teacher and --unlabelled go together"),
    (["--unlabelled", "x.jsonl"], "--teacher and --unlabelled go together"),
    (["--teacher", "x", "--unlabelled", "x.jsonl", "--kind", "ngram", "--difficulty_aware"],
     "do not combine"),
])
def test_bad_distillation_arguments_are_refused(tmp_path, capsys, extra, message):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "good", "label": "pos"}])
    assert train_main(["--train", str(train), "--output", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_teacher_with_other_labels_is_refused(tmp_path, models, capsys):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "good", "label": "yes"},
                                               {"text": "bad", "label": "no"}])
    unlabelled = write_jsonl(tmp_path / "u.jsonl", [{"text": "fine"}])
    assert train_main(["--kind", "ngram", "--train", str(train), "--output",
                       str(tmp_path / "out"), "--teacher", models["small"],
                       "--unlabelled", str(unlabelled)]) == 2
    assert "the teacher" in capsys.readouterr().err
