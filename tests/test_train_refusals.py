"""`train` refuses data it cannot learn a classifier from (no rows, one class), in --train,
--dev, --unlabelled and --from_outputs, before training and before writing anything: a
nightly retrain that exits 0 with a one-label model would break the next night's job."""
import json

import pytest
from conftest import write_jsonl

from pipeline.train import main as train_main

WORDS = "good bad movie plot fun dull great awful".split()


def _rows(count: int, labels: tuple[str, ...] = ("negative", "positive")) -> list[dict]:
    return [{"text": " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + i % 4)),
             "label": labels[i % len(labels)]} for i in range(count)]


def _refused(args: list[str], output, capsys) -> str:
    """The message of a refused `train`, which must have written nothing."""
    assert train_main([*args, "--output", str(output), "--epochs", "1"]) == 2
    assert not output.exists()
    return capsys.readouterr().err


def _finished_run(folder, examples: list[dict]):
    """An output folder of a finished `run --training_examples` holding `examples`."""
    folder.mkdir()
    (folder / "_SUCCESS").write_text("")
    write_jsonl(folder / "training-00000-of-00001.jsonl", examples)
    return folder


def _example(text: str, label_id: int) -> dict:
    probabilities = [0.1, 0.9] if label_id else [0.9, 0.1]
    return {"text": text, "label": ["negative", "positive"][label_id], "label_id": label_id,
            "probabilities": probabilities}


def test_a_header_only_file_is_refused(tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n")
    err = _refused(["--kind", "ngram", "--train", str(train), "--text_field", "sentence"],
                   tmp_path / "out", capsys)
    assert f"--train {str(train)!r} holds 0 labelled rows: nothing to train on" in err


@pytest.mark.parametrize("kind", [
    ["--kind", "ngram"],
    ["--kind", "transformer", "--base", "{small}"],
    ["--kind", "ngram", "--word_vectors", "{large}"],
])
def test_a_single_class_file_is_refused_by_every_kind_of_tier(tmp_path, models, capsys, kind):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(1204, ("positive",)))
    args = [a.format(**models) for a in kind]
    err = _refused([*args, "--train", str(train)], tmp_path / "out", capsys)
    assert (f"every one of the 1,204 rows of --train {str(train)!r} has label 'positive': a "
            "classifier needs at least 2 classes") in err


def test_a_single_class_file_is_refused_even_when_label_names_lists_the_others(
        tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(10, ("positive",)))
    err = _refused(["--kind", "ngram", "--train", str(train), "--label_names",
                    "negative,positive"], tmp_path / "out", capsys)
    assert "has label 'positive'" in err and "add rows labelled 'negative'" in err


@pytest.mark.parametrize("dev_rows, message", [
    ([], "--dev {dev!r} holds 0 labelled rows: nothing to evaluate on"),
    (_rows(7, ("negative",)), "every one of the 7 rows of --dev {dev!r} has label 'negative'"),
    (_rows(6, ("negative", "positive", "neutral")), "2 rows have labels ['neutral']"),
])
def test_a_dev_file_without_both_classes_or_with_unknown_labels_is_refused(
        tmp_path, capsys, dev_rows, message):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(20))
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_rows)
    err = _refused(["--kind", "ngram", "--train", str(train), "--dev", str(dev)],
                   tmp_path / "out", capsys)
    assert message.format(dev=str(dev)) in err


def test_a_from_outputs_folder_without_examples_is_refused(tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(20))
    quiet_night = _finished_run(tmp_path / "night", [])
    err = _refused(["--kind", "ngram", "--train", str(train), "--from_outputs",
                    str(quiet_night)], tmp_path / "out", capsys)
    assert f"--from_outputs {str(quiet_night)!r} holds 0 training examples" in err


def test_the_training_set_with_past_runs_needs_two_classes_in_all(tmp_path, capsys):
    """A --train of one class is refused when the past runs add no other class, and
    accepted when they do: the check is on what the model is trained on."""
    train = write_jsonl(tmp_path / "train.jsonl", _rows(20, ("positive",)))
    positive = _finished_run(tmp_path / "positive", [_example("good fun", 1)] * 3)
    names = ["--label_names", "negative,positive"]
    err = _refused(["--kind", "ngram", "--train", str(train), *names, "--from_outputs",
                    str(positive)], tmp_path / "out", capsys)
    assert ("every one of the 23 rows of the training set (--train and --from_outputs) has "
            "label 'positive'") in err
    negative = _finished_run(tmp_path / "negative", [_example("dull plot", 0)] * 3)
    assert train_main(["--kind", "ngram", "--train", str(train), *names, "--from_outputs",
                       str(negative), "--output", str(tmp_path / "out"), "--epochs", "1"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {
        "0": "negative", "1": "positive"}


def test_unlabelled_files_without_texts_give_the_teacher_nothing_to_label(
        tmp_path, models, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(20, ("neg", "pos")))
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text("")
    err = _refused(["--kind", "ngram", "--train", str(train), "--teacher", models["small"],
                    "--unlabelled", str(unlabelled)], tmp_path / "out", capsys)
    assert "--unlabelled ['" in err and "hold 0 texts: the teacher has nothing to label" in err
