"""The hashed n-gram tier: trained by `beam-cascade train --kind ngram`, mixed with
transformer tiers in one cascade."""
import json
import zlib

import pytest
from conftest import read_predictions, run_job
from safetensors.torch import load_file, save_file

from models.checkpoint import inspect_checkpoint
from models.loading import load_tier
from models.ngram import HashedNgramClassifier, NgramConfig, ngram_ids
from models.weights import CheckpointError
from pipeline.train import main as train_main

POSITIVE = ["great fun", "brilliant acting", "a great movie", "fun and brilliant"]
NEGATIVE = ["dull plot", "awful acting", "a dull movie", "boring and awful"]


def test_ngram_ids_are_stable_across_processes():
    """crc32 of the lower-cased n-grams, not Python's salted hash(): workers must agree."""
    grams = ["a", "good", "movie", "a good", "good movie"]
    assert ngram_ids("A good  movie", 1000, 2) == [zlib.crc32(g.encode()) % 1000 for g in grams]
    assert ngram_ids("", 1000, 2) == [0]


def test_trained_ngram_tier_learns_and_runs_before_a_transformer(tmp_path, models):
    train = tmp_path / "train.jsonl"
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [
        {"text": t, "label": "neg"} for t in NEGATIVE]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows * 20))
    folder = tmp_path / "ngram"
    assert train_main(["--kind", "ngram", "--train", str(train), "--dev", str(train),
                       "--output", str(folder), "--label_names", "neg,pos",
                       "--epochs", "5", "--lr", "0.1"]) == 0
    report = json.loads((folder / "TRAINING.json").read_text())
    assert report["kind"] == "ngram" and report["dev_accuracy"] == 1.0

    tier = load_tier(str(folder))
    assert tier.labels == ("neg", "pos")
    assert tier.logits(["great fun", "dull plot"]).argmax(-1).tolist() == [1, 0]

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n"
                            for t in POSITIVE + NEGATIVE + ["unseen words entirely"]))
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--tier1", str(folder),
                     "--tier2", models["large"], "--threshold", "0.6"])
    decided = {p["id"].rsplit(":", 1)[1]: p["decided_by"] for p in read_predictions(out)}
    assert stats.predictions == 9 and stats.errors == 0
    assert decided["9"] == "tier2"  # no known n-gram: 50/50, so it escalates
    assert set(decided.values()) == {"tier1", "tier2"}


def test_train_refuses_to_overwrite_a_trained_tier_unless_asked(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": label}) + "\n"
                             for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE))
                             for t in texts))
    folder = tmp_path / "ngram"
    args = ["--kind", "ngram", "--train", str(train), "--output", str(folder),
            "--epochs", "1"]
    assert train_main(args) == 0
    weights = (folder / "model.safetensors").read_bytes()
    assert train_main(args + ["--seed", "7"]) == 2
    assert "already holds files (a trained model?)" in capsys.readouterr().err
    assert (folder / "model.safetensors").read_bytes() == weights
    assert train_main(args + ["--overwrite"]) == 0


def test_train_reads_the_text_field_everyone_reads_and_names_the_columns_it_found(
        tmp_path, capsys):
    """`text` by default, as in run and calibrate (train used to default to `sentence`)."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"sentence": t, "label": "pos"}) + "\n"
                             for t in POSITIVE))
    assert train_main(["--kind", "ngram", "--train", str(train), "--output",
                       str(tmp_path / "ngram")]) == 2
    assert "lack 'text' or 'label' (first at row 0, whose fields are ['label', 'sentence'])" in (
        capsys.readouterr().err)


def test_a_trained_tier_is_readable_like_its_other_files(tmp_path):
    """safetensors writes its file 0600; the checkpoint gets the umask's mode throughout."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": "pos"}) + "\n"
                             for t in POSITIVE) + json.dumps({"text": "dull", "label": "neg"}))
    folder = tmp_path / "ngram"
    assert train_main(["--kind", "ngram", "--train", str(train), "--output", str(folder),
                       "--epochs", "1"]) == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert len(set(modes.values())) == 1, modes


def tiny_ngram_tier(folder, max_n: int = 2) -> str:
    HashedNgramClassifier(NgramConfig(("neg", "pos"), 64, max_n)).save_pretrained(str(folder))
    return str(folder)


def edit_config(folder, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_an_edited_max_n_is_refused_naming_the_value_trained_and_found(tmp_path):
    """max_n changes every text's bucket ids but no tensor's shape: the weights record it."""
    folder = tmp_path / "ngram"
    tiny_ngram_tier(folder, max_n=2)
    edit_config(folder, max_n=3)
    for load in (inspect_checkpoint, load_tier):  # the launcher's check, the worker's load
        with pytest.raises(CheckpointError, match="config.json gives max_n 3 but the model "
                                                  "was trained with max_n 2"):
            load(str(folder))


def test_a_model_from_before_the_record_still_loads(tmp_path):
    """Weights saved without the scoring settings (older versions) are taken at their
    config.json's word, as before."""
    folder = tmp_path / "ngram"
    tiny_ngram_tier(folder)
    weights = str(folder / "model.safetensors")
    save_file(load_file(weights), weights)  # no metadata, as older versions saved it
    edit_config(folder, max_n=3)
    assert inspect_checkpoint(str(folder)).labels == ("neg", "pos")
    assert load_tier(str(folder)).model.config.max_n == 3


def test_weights_trained_with_another_id_scheme_are_refused(tmp_path):
    """A later version that made n-gram ids otherwise must not score an older model."""
    folder = tmp_path / "ngram"
    tiny_ngram_tier(folder)
    weights = str(folder / "model.safetensors")
    save_file(load_file(weights), weights, metadata={"max_n": "2", "ngram_ids": "xxhash"})
    with pytest.raises(CheckpointError, match="trained with n-gram ids made by 'xxhash'"):
        load_tier(str(folder))
