"""Early exit inside a tier: training a multi-exit model, saving and loading it, and batched
inference where confident rows leave the batch at an inner exit."""
import json
import shutil

import pytest
import torch
import yaml
from conftest import labelled_rows, run_job, write_jsonl
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from models.checkpoint import inspect_checkpoint
from models.confidence import probabilities
from models.config import ConfigError, config_from_dict
from models.early_exit import HEADS_FILE, EarlyExit, MultiExitClassifier, choose_exits
from models.loading import CheckpointError, load_tier
from models.training import effective_warmup_steps
from models.training_config import TrainingConfig
from models.validation import validate_models
from pipeline.calibrate import main as calibrate_main
from pipeline.config import load_config
from pipeline.train import main as train_main
from tiny_models import tiny_config, tiny_tokenizer

TEXTS = ["good", "the movie was not very good at all", "awful", "a great film",
         "the plot was dull and the actor was boring", "love it", "worst", "fun fun fun",
         "brilliant story", "hate the a an plot actor story"]


@pytest.fixture(scope="module")
def multi_exit_folder(tmp_path_factory):
    """A randomly initialised 4-layer model with exits after layers 1, 2 and 4."""
    folder = tmp_path_factory.mktemp("multi_exit")
    torch.manual_seed(3)
    model = BertForSequenceClassification(tiny_config(("neg", "pos"), layers=4))
    network = MultiExitClassifier.add_exits(model, (1, 2))
    for head in network.heads.values():  # spread the inner exits' confidences
        torch.nn.init.normal_(head.classifier.weight, std=0.3)
    network.save_pretrained(str(folder))
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def _first_confident_exit(all_exits: torch.Tensor, threshold: float, temperatures):
    """The reference rule, one row at a time: (logits / T, layer) of the first exit whose
    calibrated max probability reaches the threshold, else of the last exit."""
    layers = (1, 2, 4)
    chosen = []
    for row in range(all_exits.shape[1]):
        for k, layer in enumerate(layers):
            logits = all_exits[k, row] / temperatures[k]
            if k == len(layers) - 1 or probabilities(logits).max() >= threshold:
                chosen.append((logits, layer))
                break
    return torch.stack([c[0] for c in chosen]), torch.tensor([c[1] for c in chosen])


@pytest.mark.parametrize("threshold", [0.0, 0.6, 0.8, 0.93, 0.97, 1.01])
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_batched_early_exit_matches_the_row_by_row_rule(multi_exit_folder, threshold,
                                                        batch_size):
    temperatures = (0.7, 1.3, 1.0)
    tier = load_tier(multi_exit_folder, batch_size=batch_size, device="cpu",
                     early_exit=EarlyExit(threshold, temperatures))
    logits, layers = tier.logits_and_exits(TEXTS)
    expected_logits, expected_layers = _first_confident_exit(
        tier.exit_logits(TEXTS), threshold, temperatures)
    assert layers.tolist() == expected_layers.tolist()
    assert torch.allclose(logits, expected_logits, atol=1e-5)
    if threshold == 0.0:
        assert set(layers.tolist()) == {1}
    if threshold > 1.0:
        assert set(layers.tolist()) == {4}


def test_inner_exits_are_spread_so_the_thresholds_above_are_meaningful(multi_exit_folder):
    tier = load_tier(multi_exit_folder, device="cpu", early_exit=EarlyExit(0.93, (1, 1, 1)))
    assert len(set(tier.logits_and_exits(TEXTS)[1].tolist())) >= 2


def test_last_exit_is_the_plain_classifier_so_any_tool_loads_the_folder(multi_exit_folder):
    plain = AutoModelForSequenceClassification.from_pretrained(multi_exit_folder).eval()
    tier = load_tier(multi_exit_folder, device="cpu")
    encoded = tier.tokenizer(TEXTS, padding="longest", return_tensors="pt")
    with torch.inference_mode():
        expected = plain(**encoded).logits
    assert torch.allclose(tier.exit_logits(TEXTS)[-1], expected, atol=1e-5)
    logits, layers = tier.logits_and_exits(TEXTS)  # no early_exit set: all layers
    assert torch.allclose(logits, expected, atol=1e-5) and set(layers.tolist()) == {4}
    assert inspect_checkpoint(multi_exit_folder).exit_layers == (1, 2, 4)


def test_early_exit_on_a_model_without_exits_is_refused(models):
    with pytest.raises(CheckpointError, match="--exits"):
        load_tier(models["small"], early_exit=EarlyExit(0.9, (1.0,)))


def test_a_folder_missing_its_heads_is_refused_up_front(multi_exit_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(multi_exit_folder, copy)
    (copy / HEADS_FILE).unlink()
    with pytest.raises(CheckpointError, match=HEADS_FILE):
        inspect_checkpoint(str(copy))


def test_train_with_exits_reports_each_exit_and_saves_a_loadable_tier(models, tmp_path):
    train = tmp_path / "train.jsonl"
    rows = [{"text": f"{w} movie", "label": "pos" if w in ("good", "great") else "neg"}
            for w in ("good", "bad", "great", "awful") * 10]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "trained"
    assert train_main(["--train", str(train), "--dev", str(train), "--base", models["deep"],
                       "--exits", "1", "--epochs", "3", "--lr", "1e-3", "--device", "cpu",
                       "--output", str(out)]) == 0
    report = json.loads((out / "TRAINING.json").read_text())
    assert report["exits"] == [1]
    assert set(report["dev_accuracy_per_exit"]) == {"1", "2"}
    assert report["dev_accuracy_per_exit"]["2"] == report["dev_accuracy"]
    tier = load_tier(str(out), device="cpu", early_exit=EarlyExit(0.0, (1.0, 1.0)))
    assert tier.logits_and_exits(["good movie"])[1].tolist() == [1]


def test_exit_layers_must_exist_in_the_model(models, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", '
                     '"label": "neg"}\n')
    assert train_main(["--train", str(train), "--base", models["deep"], "--exits", "7",
                       "--output", str(tmp_path / "x")]) == 2
    with pytest.raises(SystemExit):
        train_main(["--train", str(train), "--base", models["deep"], "--exits", "a,b",
                    "--output", str(tmp_path / "y")])


def test_exits_only_trains_the_heads_and_keeps_the_base_exactly(models, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"{word} film", "label": label}) + "\n"
                             for word, label in (("fun", "pos"), ("dull", "neg")) * 5))
    out = tmp_path / "heads"
    assert train_main(["--train", str(train), "--dev", str(train), "--base", models["deep"],
                       "--exits", "1", "--exits_only", "--lr", "1e-2",
                       "--device", "cpu", "--label_names", "neg,pos",
                       "--output", str(out)]) == 0
    base, trained = load_tier(models["deep"], device="cpu"), load_tier(str(out), device="cpu")
    assert torch.equal(trained.exit_logits(TEXTS)[-1], base.logits(TEXTS))
    pooler = base.model.bert.pooler.dense.weight  # the inner head's starting point
    assert not torch.equal(trained.exits.heads["1"].dense.weight, pooler)


def test_replayed_early_exit_matches_the_batched_one(multi_exit_folder):
    temperatures = (0.7, 1.3, 1.0)
    tier = load_tier(multi_exit_folder, device="cpu", early_exit=EarlyExit(0.8, temperatures))
    logits, layers = tier.logits_and_exits(TEXTS)
    replayed, leaving = choose_exits(tier.exit_logits(TEXTS), EarlyExit(0.8, temperatures))
    assert torch.allclose(replayed, logits, atol=1e-5)
    assert [(1, 2, 4)[i] for i in leaving.tolist()] == layers.tolist()


def test_calibrated_early_exit_tier_runs_in_the_cascade_as_calibrate_predicted(
        multi_exit_folder, models, tmp_path):
    rows = labelled_rows(160, "good bad movie plot fun dull great awful", 3, 5, 3)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "exits", "model": multi_exit_folder, "threshold": 0.9, "exit_threshold": 0.8},
        {"name": "large", "model": models["large"]}]}))
    tuned, report = tmp_path / "tuned.yaml", tmp_path / "report"
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "8", "--repeats", "1",
                           "--max_accuracy_drop", "100"]) == 0
    written = load_config(str(tuned)).tiers[0]
    result = json.loads((report / "report.json").read_text())
    exits = result["tiers"][0]["exits"]
    assert written.exit_threshold == 0.8 and len(written.exit_temperatures) == 3
    assert list(written.exit_temperatures) == pytest.approx(
        [c["temperature"] for c in exits["calibrations"]])
    assert [p["threshold"] for p in exits["sweep"]][-1] > 1
    assert exits["sweep"][-1]["layer_share"] == 1.0
    assert "## Early exit: exits" in (report / "report.md").read_text()

    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.accuracy == pytest.approx(result["chosen"]["accuracy"])
    first = stats.tiers[0]
    assert sum(first.records_per_exit.values()) == first.seen == len(rows)
    tier = load_tier(multi_exit_folder, device="cpu", early_exit=EarlyExit(
        0.8, written.exit_temperatures))
    layers = tier.logits_and_exits([r["text"] for r in rows])[1].tolist()
    assert first.records_per_exit == {str(n): layers.count(n) for n in sorted(set(layers))}


def test_one_exit_temperature_per_exit_is_required(multi_exit_folder, models):
    config = config_from_dict({"tiers": [
        {"model": multi_exit_folder, "threshold": 0.9, "exit_temperatures": [1.0, 2.0]},
        {"model": models["large"]}]})
    with pytest.raises(ConfigError, match="2 exit_temperatures for the 3 exits"):
        validate_models(config)


def test_an_early_exit_tier_can_be_the_only_tier(multi_exit_folder, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "only", "model": multi_exit_folder, "exit_threshold": 0.8}]}))
    stats = run_job(["--input", str(data), "--output", str(tmp_path / "out"),
                     "--config", str(config)])
    layers = load_tier(multi_exit_folder, device="cpu", early_exit=EarlyExit(0.8)
                       ).logits_and_exits(TEXTS)[1].tolist()
    assert stats.predictions == len(TEXTS)
    assert stats.tiers[0].records_per_exit == {
        str(n): layers.count(n) for n in sorted(set(layers))}


def test_training_reports_the_warm_up_it_applied():
    """TRAINING.json used to say warmup_steps 200 where a tenth of the steps applied."""
    assert effective_warmup_steps(TrainingConfig(epochs=2, batch_size=32), 640) == 4
    assert effective_warmup_steps(TrainingConfig(epochs=3, batch_size=32), 67_349) == 200
