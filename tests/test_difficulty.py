"""Difficulty-aware training (CascadeBERT): the ranking loss, fold-based difficulty labels,
and `train --difficulty_aware` for n-gram and transformer tiers."""
import json
import random

import pytest
import torch

from models.datasets import LabelledTexts
from models.difficulty import difficulty_labels, ranking_loss
from models.loading import load_tier
from pipeline.train import main as train_main


def test_ranking_loss_on_a_hand_computed_batch():
    # confidences: easy 0.9 and 0.8, hard 0.6 -> pairs (0.9, 0.6) and (0.8, 0.6)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    hard = torch.tensor([False, False, True])
    expected = (max(0, 0.5 - 0.3) + max(0, 0.5 - 0.2)) / 2
    assert ranking_loss(probs.log(), hard, margin=0.5).item() == pytest.approx(expected)
    assert ranking_loss(probs.log(), hard, margin=0.1).item() == pytest.approx(0.0)
    assert ranking_loss(probs.log(), torch.tensor([False] * 3), 0.5).item() == 0.0


def test_each_example_is_judged_by_a_model_that_did_not_see_it():
    data = LabelledTexts([f"t{i}" for i in range(10)], [i % 3 % 2 for i in range(10)],
                         ("neg", "pos"))
    seen_by_fold = []

    def fit_and_predict(part, held_out):
        seen_by_fold.append(set(part.texts))
        assert not set(held_out.texts) & set(part.texts)
        return [0] * len(held_out.texts)  # a model that always says "neg"

    hard = difficulty_labels(data, folds=3, seed=1, fit_and_predict=fit_and_predict)
    assert hard == [label != 0 for label in data.label_ids]
    assert len(seen_by_fold) == 3 and all(len(s) in (6, 7) for s in seen_by_fold)


def _noisy_sentiment(path):
    """Clear phrases, a fifth of them at random with the wrong label: the hard ones."""
    rng = random.Random(0)
    good = ["great fun", "brilliant acting", "a great movie", "fun and brilliant", "loved it"]
    bad = ["dull plot", "awful acting", "a dull movie", "boring and awful", "hated it"]
    rows = []
    for i in range(200):
        positive, noisy = rng.random() < 0.5, rng.random() < 0.2
        text = f"{rng.choice(good if positive else bad)} take {i}"
        rows.append({"text": text, "label": "pos" if positive != noisy else "neg",
                     "noisy": noisy})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _confidence_gap(folder, rows):
    """Mean confidence on correctly labelled rows minus on mislabelled ones."""
    probs = torch.softmax(load_tier(str(folder)).logits([r["text"] for r in rows]), -1)
    conf = probs.max(-1).values
    noisy = torch.tensor([r["noisy"] for r in rows])
    return (conf[~noisy].mean() - conf[noisy].mean()).item()


def test_difficulty_aware_ngram_tier_separates_hard_from_easy_examples(tmp_path):
    train = tmp_path / "train.jsonl"
    rows = _noisy_sentiment(train)
    common = ["--kind", "ngram", "--train", str(train), "--label_names", "neg,pos",
              "--epochs", "20", "--lr", "0.1"]
    assert train_main(common + ["--output", str(tmp_path / "plain")]) == 0
    assert train_main(common + ["--output", str(tmp_path / "aware"), "--difficulty_aware",
                                "--difficulty_margin", "0.3"]) == 0
    report = json.loads((tmp_path / "aware" / "TRAINING.json").read_text())
    assert report["difficulty_aware"]["margin"] == 0.3
    assert report["difficulty_aware"]["hard_examples"] >= 30
    assert _confidence_gap(tmp_path / "aware", rows) > _confidence_gap(tmp_path / "plain", rows)


def test_difficulty_aware_transformer_tier_trains_and_loads(tmp_path, models):
    train = tmp_path / "train.jsonl"
    _noisy_sentiment(train)
    out = tmp_path / "aware"
    assert train_main(["--train", str(train), "--base", models["small"], "--limit", "60",
                       "--label_names", "neg,pos", "--epochs", "1", "--batch_size", "16",
                       "--output", str(out), "--difficulty_aware"]) == 0
    report = json.loads((out / "TRAINING.json").read_text())
    assert report["difficulty_aware"]["folds"] == 2
    assert load_tier(str(out)).labels == ("neg", "pos")
