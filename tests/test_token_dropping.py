"""Token dropping (Length-Adaptive Transformer): the kept tokens, batching invariance, costs,
and the search of length configurations within a compute budget."""
import json
import math

import pytest
import torch
import yaml
from conftest import labelled_rows, run_job, write_jsonl
from transformers.masking_utils import create_bidirectional_mask

from models.config import ConfigError, config_from_dict
from models.loading import load_tier
from models.token_dropping import (LengthPoint, best_within_budget, forward_dropping_tokens,
                                   length_family)
from pipeline.calibrate import main as calibrate_main
from pipeline.config import load_config

TEXTS = ["good", "the movie was not very good at all and the plot was dull", "awful film",
         "a great film with a fun story and a brilliant actor", "love it", "worst plot",
         "the actor was boring but the story was not bad at all", "fun"]


@pytest.fixture(scope="module")
def deep(models):
    return load_tier(models["deep"], device="cpu")


def test_keeping_every_token_is_the_plain_model(deep):
    plain = deep.logits(TEXTS)
    logits, costs = deep.logits_and_costs(TEXTS, None, (1.0,))
    assert torch.allclose(logits, plain, atol=1e-5)
    lengths = [len(ids) for ids in deep.tokenizer(TEXTS)["input_ids"]]
    assert costs.tolist() == [2 * n for n in lengths]  # two layers, every token


@pytest.mark.parametrize("share", [0.75, 0.5, 0.2])
def test_a_text_gets_the_same_answer_alone_or_in_any_batch(deep, share):
    together, costs = deep.with_settings(batch_size=64).logits_and_costs(TEXTS, None, (share,))
    alone, alone_costs = deep.with_settings(batch_size=1).logits_and_costs(TEXTS, None, (share,))
    assert torch.allclose(together, alone, atol=1e-5)
    assert costs.tolist() == alone_costs.tolist()
    lengths = [len(ids) for ids in deep.tokenizer(TEXTS)["input_ids"]]
    assert costs.tolist() == [n + math.ceil(share * n) for n in lengths]


def test_cls_and_the_most_attended_tokens_are_the_ones_kept(deep):
    """Dropping after layer 1 equals running layer 2 with every other token masked out."""
    encoded = deep.tokenizer(["the movie was not very good at all"], return_tensors="pt")
    model, base = deep.model, deep.model.base_model
    model.set_attn_implementation("eager")  # the reference reads the layer's own probabilities
    with torch.inference_mode():
        hidden = base.embeddings(input_ids=encoded["input_ids"])
        attended, probs = base.encoder.layer[0].attention(hidden, None)
        hidden = base.encoder.layer[0].feed_forward_chunk(attended)
        received = probs.sum(dim=(1, 2))[0]
        kept = math.ceil(0.4 * len(received))
        chosen = [0] + received[1:].topk(kept - 1).indices.add(1).tolist()
        only_chosen = torch.zeros(1, len(received), dtype=torch.long)
        only_chosen[0, chosen] = 1
        mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                         attention_mask=only_chosen)
        reference = model.classifier(base.pooler(base.encoder.layer[1](hidden, mask)))
        dropped, cost = forward_dropping_tokens(model, encoded, (0.4,))
    model.set_attn_implementation("sdpa")
    with torch.inference_mode():
        dropped_sdpa, _ = forward_dropping_tokens(model, encoded, (0.4,))
    assert 1 < kept < len(received)
    assert torch.allclose(dropped, reference, atol=1e-5)
    assert torch.allclose(dropped_sdpa, reference, atol=1e-5)
    assert cost.tolist() == [len(received) + kept]


def test_the_family_and_the_budget_choice():
    family = length_family(6)
    assert len(family) == 25 and all(len(k) == 5 for k in family)
    assert all(all(a >= b for a, b in zip(k, k[1:])) for k in family)
    points = [LengthPoint((1.0,), 0.90, 1.0), LengthPoint((0.8,), 0.89, 0.7),
              LengthPoint((0.6,), 0.89, 0.5), LengthPoint((0.4,), 0.80, 0.3)]
    assert best_within_budget(points, 0.75).keep == (0.6,)
    assert best_within_budget(points, 0.4).keep == (0.4,)
    assert best_within_budget(points, 0.1).keep == (1.0,)


def test_calibrate_chooses_a_length_configuration_that_run_reproduces(models, tmp_path):
    rows = labelled_rows(120, "good bad movie plot fun dull great awful the a not very", 5,
                         11, 2)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "deep", "model": models["deep"], "length_budget": 0.8}]}))
    tuned, report = tmp_path / "tuned.yaml", tmp_path / "report"
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "8", "--repeats", "1",
                           "--max_accuracy_drop", "100"]) == 0
    result = json.loads((report / "report.json").read_text())
    lengths = result["tiers"][1]["lengths"]
    assert lengths["chosen"]["compute_share"] <= 0.8
    assert len(lengths["points"]) == 1 + len(length_family(2))
    written = load_config(str(tuned)).tiers[1]
    assert list(written.keep_tokens) == lengths["chosen"]["keep"]
    assert "## Token dropping: deep" in (report / "report.md").read_text()

    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.accuracy == pytest.approx(result["chosen"]["accuracy"])


@pytest.mark.parametrize("change, message", [
    ({"keep_tokens": [0.5, 1.5]}, "keep_tokens .* must be a list of shares"),
    ({"keep_tokens": "0.5"}, "keep_tokens .* must be a list of shares"),
    ({"length_budget": 0}, "length_budget 0 must be a share"),
    ({"keep_tokens": [0.5], "exit_threshold": 0.9}, "not supported yet"),
])
def test_bad_token_dropping_settings_are_refused(models, change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"tiers": [{"model": models["small"], "threshold": 0.9, **change},
                                    {"model": models["large"]}]})
