"""Sentence pairs end to end: `train --text_pair_field` trains each tier kind on pairs the way
the pipeline scores them (the same logits), and a config refuses a tier trained the other way."""
import json

import pytest
import torch
from conftest import read_predictions, run_job, write_jsonl

from models.config import ConfigError
from models.loading import load_tier
from models.validation import validate_models
from pipeline.config import load_config
from pipeline.train import main as train_main

WORDS = "good bad great awful fun dull".split()
POSITIVE = {"good", "great", "fun"}
ROWS = [{"id": f"p{i}", "premise": f"the movie {WORDS[i % 6]}",
         "hypothesis": f"a film {WORDS[(i * 5 + i // 6) % 6]}",
         "label": "some" if {WORDS[i % 6], WORDS[(i * 5 + i // 6) % 6]} & POSITIVE
         else "none"} for i in range(48)]  # is either text positive? Needs both texts


@pytest.fixture(scope="module")
def pair_tiers(tmp_path_factory, models) -> dict[str, str]:
    """An n-gram and a (tiny) transformer tier trained on the pairs, and an n-gram tier
    trained on the first texts alone."""
    work = tmp_path_factory.mktemp("pairs")
    data = write_jsonl(work / "train.jsonl", ROWS)
    common = ["--train", str(data), "--text_field", "premise", "--label_names",
              "none,some", "--epochs", "5"]
    folders = {name: str(work / name) for name in ("ngram", "transformer", "single")}
    assert train_main(common + ["--kind", "ngram", "--text_pair_field", "hypothesis",
                                "--lr", "0.1", "--output", folders["ngram"]]) == 0
    assert train_main(common + ["--base", models["small"], "--text_pair_field", "hypothesis",
                                "--batch_size", "8", "--output", folders["transformer"]]) == 0
    assert train_main(common + ["--kind", "ngram", "--output", folders["single"]]) == 0
    return folders


def config_file(path, tier1: str, tier2: str, pairs: bool, threshold: float = 0.7):
    pair = "text_pair_field: hypothesis\n" if pairs else ""
    path.write_text(f"text_field: premise\n{pair}label_field: label\ntiers:\n"
                    f"  - {{name: cheap, model: {tier1}, threshold: {threshold}}}\n"
                    f"  - {{name: exact, model: {tier2}}}\n")
    return path


def test_pair_tiers_score_in_the_pipeline_as_trained(tmp_path, pair_tiers):
    """Every prediction's probabilities are the deciding tier's own on the pair, computed
    directly from the trained model (tokenizer pairs, joined n-grams)."""
    for folder in ("ngram", "transformer"):
        with open(f"{pair_tiers[folder]}/TRAINING.json", encoding="utf-8") as f:
            assert json.load(f)["text_pairs"] is True
    premises, hypotheses = [r["premise"] for r in ROWS], [r["hypothesis"] for r in ROWS]
    direct = {name: torch.softmax(load_tier(pair_tiers[folder]).logits(premises, hypotheses), -1)
              for name, folder in (("cheap", "ngram"), ("exact", "transformer"))}
    confidences = sorted(set(direct["cheap"].max(-1).values.tolist()))
    middle = len(confidences) // 2  # a threshold between two confidences: both tiers decide
    data = write_jsonl(tmp_path / "in.jsonl", ROWS)
    config = config_file(tmp_path / "c.yaml", pair_tiers["ngram"], pair_tiers["transformer"],
                         pairs=True, threshold=sum(confidences[middle - 1:middle + 1]) / 2)
    stats = run_job(["--input", str(data), "--output", str(tmp_path / "out"),
                     "--config", str(config)])
    assert stats.predictions == len(ROWS) and stats.errors == 0
    by_id = {r["id"]: i for i, r in enumerate(ROWS)}
    rows = read_predictions(tmp_path / "out")
    assert {r["decided_by"] for r in rows} == {"cheap", "exact"}
    for row in rows:
        expected = direct[row["decided_by"]][by_id[row["id"]]].tolist()
        assert row["probabilities"] == pytest.approx(expected, abs=1e-5)
    # the transformer really saw pairs: without the second text its outputs differ
    alone = torch.softmax(load_tier(pair_tiers["transformer"]).logits(premises), -1)
    assert not torch.allclose(alone, direct["exact"], atol=1e-4)


def test_a_tier_trained_the_other_way_is_refused(tmp_path, pair_tiers):
    with pytest.raises(ConfigError, match="trained on text pairs but the config has no "
                                          "text_pair_field"):
        validate_models(load_config(str(config_file(
            tmp_path / "a.yaml", pair_tiers["ngram"], pair_tiers["transformer"], pairs=False))))
    with pytest.raises(ConfigError, match="trained on single texts but the config scores "
                                          "pairs .* --text_pair_field hypothesis"):
        validate_models(load_config(str(config_file(
            tmp_path / "b.yaml", pair_tiers["single"], pair_tiers["transformer"], pairs=True))))
