"""The word CNN an n-gram tier carries beside its linear model (`beam-cascade train --kind
ngram --word_vectors TIER`): trained, folded, saved, checked, loaded and run in a job."""
import json
import random
import shutil
import threading

import pytest
import torch
import torch.nn.functional as F
from conftest import read_predictions, run_job, upload, write_jsonl
from safetensors.torch import load_file, save_file

from models.checkpoint import inspect_checkpoint
from models.loading import load_tier
from models.ngram import NgramTier, words_of
from models.training import borrowed_pieces
from models.weights import CheckpointError
from models.word_cnn import (PASS, PIECES_FILE, WEIGHTS_FILE, WordCNN, WordCnnConfig,
                             WordVectors, piece_ids)
from pipeline.train import main as train_main

FILLER = "the a movie plot story film some very".split()


def _rows(count: int, seed: int) -> list[dict]:
    """Texts labelled by the cue word they hold among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        cue, label = rng.choice([("good", "pos"), ("great", "pos"), ("bad", "neg"),
                                 ("awful", "neg")])
        words = rng.sample(FILLER, 3) + [cue]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def pair(tmp_path_factory, models) -> str:
    """An n-gram tier with a word CNN, its word vectors from the tiny 'large' tier."""
    root = tmp_path_factory.mktemp("pair")
    train = write_jsonl(root / "train.jsonl", _rows(300, 0))
    assert train_main(["--kind", "ngram", "--train", str(train), "--dev", str(train),
                       "--output", str(root / "tier"), "--label_names", "neg,pos",
                       "--epochs", "5", "--lr", "0.1", "--word_vectors", models["large"],
                       "--cnn_epochs", "30", "--cnn_width", "8"]) == 0
    return str(root / "tier")


def test_the_tier_averages_the_two_models_log_probabilities(pair):
    report = json.loads(open(f"{pair}/TRAINING.json").read())
    assert report["dev_accuracy"] >= 0.95
    assert report["dev_accuracy_alone"]["word_cnn"] >= 0.9  # the CNN learnt the cues too
    assert report["word_cnn"]["width"] == 8
    tier = load_tier(pair)
    assert isinstance(tier, NgramTier) and tier.word_cnn is not None
    texts = ["a good movie", "the awful plot", "zq unheard-of words", ""]
    linear = F.log_softmax(NgramTier(tier.model).logits(texts), -1)
    cnn = F.log_softmax(tier.word_cnn.logits([words_of(t) for t in texts]), -1)
    assert torch.allclose(tier.logits(texts), (linear + cnn) / 2)
    assert torch.allclose(tier.parts_logits(texts)[1].log_softmax(-1), cnn)
    assert tier.logits(texts[:2]).argmax(-1).tolist() == [1, 0]


def test_the_tier_loads_from_a_url_and_trains_from_word_vectors_at_a_url(pair, models,
                                                                         tmp_path):
    texts = ["a good movie", "the awful plot"]
    assert torch.allclose(load_tier(upload(pair)).logits(texts), load_tier(pair).logits(texts))
    train = write_jsonl(tmp_path / "train.jsonl", _rows(40, 5))
    assert train_main(["--kind", "ngram", "--train", str(train), "--output",
                       str(tmp_path / "tier"), "--epochs", "1", "--cnn_epochs", "1",
                       "--word_vectors", upload(models["large"])]) == 0
    assert load_tier(str(tmp_path / "tier")).word_cnn is not None


def test_the_tier_counts_the_word_cnns_passes(pair):
    tier = load_tier(pair)
    assert [tier.forward_passes(n) for n in (0, 1, PASS, PASS + 1)] == [0, 2, 2, 3]
    assert NgramTier(tier.model).forward_passes(PASS + 1) == 1


def test_folding_the_projection_gives_every_word_the_vector_training_gave_it(models):
    """A word no training text held gets, from the folded piece table, the vector the
    unfolded model would have made: the projection is linear, so it commutes with the mean."""
    tokenizer, table, unknown = borrowed_pieces(models["large"])
    torch.manual_seed(0)
    model = WordCNN(WordCnnConfig(len(table), unknown, width=8), 2, table.shape[1])
    with torch.no_grad():
        model.pieces.weight.copy_(table)
    folded = model.folded()
    words = ["good", "goodfilm", "x7q", "\u200b", "movie"]
    pieces = piece_ids(tokenizer, words, unknown)
    with torch.no_grad():
        expected = model.word_vectors(model.piece_means(*pieces))
        assert torch.allclose(folded.word_vectors(folded.piece_means(*pieces)), expected,
                              atol=1e-6)
    rows, table = WordVectors(folded, tokenizer).lookup([words[:3], words[2:]])
    assert rows[0][2] == rows[1][0]  # a word is made once and kept
    assert torch.allclose(table[[r for row in rows for r in row]],
                          expected[[0, 1, 2, 2, 3, 4]], atol=1e-6)


def test_a_full_word_store_starts_afresh_with_the_same_answers(pair):
    first = [row["text"] for row in _rows(50, 1)]
    second = ["brand new words here", "and more unseen ones"]
    unbounded = load_tier(pair)
    expected = [unbounded.logits(first), unbounded.logits(second)]
    tier = load_tier(pair)
    store = tier.word_cnn.vectors
    store.capacity = len({w for t in first for w in words_of(t)})  # full after `first`
    assert torch.allclose(tier.logits(first), expected[0], atol=1e-6)
    assert "brand" not in store.rows
    assert torch.allclose(tier.logits(second), expected[1], atol=1e-6)
    assert set(store.rows) == {w for t in second for w in words_of(t)}  # started afresh


def test_threads_sharing_the_tier_get_the_answers_one_thread_gets(pair):
    """Beam's worker threads share a process's tier: its word store is made under a lock,
    and a store grown or started afresh for one thread leaves another's rows right."""
    texts = [f"{row['text']} w{i} x{i % 7}" for i, row in enumerate(_rows(400, 4))]
    expected = load_tier(pair).logits(texts)
    tier = load_tier(pair)
    tier.word_cnn.vectors.capacity = 300
    results = {}

    def score(part: int) -> None:
        results[part] = [tier.logits(texts[i:i + 40]) for i in range(part * 40, 400, 80)]

    threads = [threading.Thread(target=score, args=(part,)) for part in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for part, chunks in results.items():
        got = torch.cat(chunks)
        want = torch.cat([expected[i:i + 40] for i in range(part * 40, 400, 80)])
        assert torch.allclose(got, want, atol=1e-6)


def test_the_tier_runs_in_a_job_as_any_tier_1(pair, models, tmp_path):
    rows = _rows(40, 2) + [{"text": "entirely unheard of"}]
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": r["text"]} for r in rows])
    stats = run_job(["--input", str(data), "--output", str(tmp_path / "out"),
                     "--tier1", pair, "--tier2", models["large"], "--threshold", "0.7"])
    lines = {int(p["id"].rsplit(":", 1)[1]): p for p in read_predictions(tmp_path / "out")}
    assert stats.predictions == len(rows) and stats.errors == 0
    expected = load_tier(pair).logits([r["text"] for r in rows]).softmax(-1)
    assert sorted(lines) == list(range(1, len(rows) + 1))
    for i, probabilities in enumerate(expected):
        assert lines[i + 1]["confidence_tier1"] == pytest.approx(float(probabilities.max()),
                                                                 abs=1e-5)
    tier1_labels = [lines[i + 1]["label"] for i in range(len(rows))
                    if lines[i + 1]["decided_by"] == "tier1"]
    assert tier1_labels == [("neg", "pos")[int(p.argmax())] for i, p in enumerate(expected)
                            if lines[i + 1]["decided_by"] == "tier1"]
    assert {p["decided_by"] for p in lines.values()} == {"tier1", "tier2"}


def _damaged(pair: str, tmp_path, damage) -> str:
    folder = tmp_path / "damaged"
    shutil.copytree(pair, folder)
    damage(folder)
    return str(folder)


def _set_word_cnn(folder, **settings) -> None:
    raw = json.loads((folder / "config.json").read_text())
    raw["word_cnn"].update(settings)
    (folder / "config.json").write_text(json.dumps(raw))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / PIECES_FILE).unlink(), "are missing"),
    (lambda f: (f / PIECES_FILE).write_text("{not json"), "is not a tokenizer file"),
    (lambda f: save_file({k: v[:1].contiguous() if k == "out.weight" else v
                          for k, v in load_file(str(f / WEIGHTS_FILE)).items()},
                         str(f / WEIGHTS_FILE)), "out.weight"),
    (lambda f: (f / "config.json").write_text(json.dumps(
        {**json.loads((f / "config.json").read_text()),
         "word_cnn": {**json.loads((f / "config.json").read_text())["word_cnn"],
                      "pieces": 10}})), "pieces.weight"),
    (lambda f: _set_word_cnn(f, width="x"), "whole numbers"),
    (lambda f: _set_word_cnn(f, width=-8), "at least 1"),
    (lambda f: _set_word_cnn(f, max_words=0), "at least 1"),
    (lambda f: _set_word_cnn(f, unknown_piece=10 ** 6), "not a row"),
    (lambda f: (f / "config.json").write_text(json.dumps(
        {**json.loads((f / "config.json").read_text()), "word_cnn": {}})), "pieces"),
])
def test_a_damaged_word_cnn_is_refused_before_the_job_starts(pair, tmp_path, damage, message):
    with pytest.raises(CheckpointError, match=message):
        inspect_checkpoint(_damaged(pair, tmp_path, damage))


def test_a_tokenizer_larger_than_the_piece_table_is_refused(pair, tmp_path):
    def shrink_table(folder):
        raw = json.loads((folder / "config.json").read_text())
        raw["word_cnn"]["pieces"] = 30
        (folder / "config.json").write_text(json.dumps(raw))
        weights = load_file(str(folder / WEIGHTS_FILE))
        weights["pieces.weight"] = weights["pieces.weight"][:30].contiguous()
        save_file(weights, str(folder / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="belongs to another model"):
        inspect_checkpoint(_damaged(pair, tmp_path, shrink_table))


@pytest.mark.parametrize("extra, message", [
    (["--kind", "transformer", "--word_vectors", "{large}"], "give --kind ngram"),
    (["--kind", "ngram", "--word_vectors", "{ngram}"], "is an n-gram tier"),
    (["--kind", "ngram", "--word_vectors", "{large}", "--cnn_width", "0"], "at least 1"),
    (["--kind", "ngram", "--word_vectors", "{missing}"], "does not exist"),
    (["--kind", "ngram", "--cnn_width", "64"], "give --word_vectors"),
])
def test_bad_word_cnn_arguments_are_refused(pair, models, tmp_path, capsys, extra, message):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(20, 3))
    folders = {"large": models["large"], "ngram": pair, "missing": str(tmp_path / "none")}
    args = [a.format(**folders) for a in extra]
    assert train_main(["--train", str(train), "--output", str(tmp_path / "out"),
                       "--epochs", "1", *args]) == 2
    error = capsys.readouterr().err
    assert message in error and "training" not in error  # refused before any training
    assert not (tmp_path / "out").exists()
