"""Every tier feature on an MPNet tier, not only on BERT: MPNet's layers take a relative
position bias its encoder computes, its head reads the first token's state (no pooler) and
its tokenizer gives no token type ids. Loading checks, scoring and predict, remote folders,
early exit and token dropping (also on RoBERTa, whose head is MPNet's), the exported runtimes
and int8, calibrate (runtimes and the int8 fallback, exits, lengths), train and distillation;
and the architectures that the layer-by-layer features do not support are refused by name."""
import dataclasses
import json
import math
import re
import shutil

import pytest
import torch
import yaml
from conftest import labelled_rows, run_job, upload, write_jsonl
from safetensors.torch import load_file, save_file
from tiny_models import (VOCAB, make_tiny_mpnet_classifier, tiny_mpnet_config,
                         tiny_mpnet_tokenizer, tiny_tokenizer)
from transformers import (DistilBertConfig, DistilBertForSequenceClassification,
                          MPNetForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification)
from transformers.masking_utils import create_bidirectional_mask

from models.checkpoint import inspect_checkpoint
from models.config import ConfigError, config_from_dict
from models.early_exit import HEADS_FILE, EarlyExit, MultiExitClassifier, choose_exits
from models.loading import CheckpointError, load_tier
from models.validation import validate_models
from pipeline.calibrate import main as calibrate_main
from pipeline.config import load_config
from pipeline.predict import Predictor
from pipeline.train import main as train_main

TEXTS = ["good", "the movie was not very good at all", "awful", "a great film",
         "the plot was dull and the actor was boring", "love it", "worst", "fun fun fun",
         "brilliant story", "hate the a an plot actor story"]
FP32_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.1  # on probabilities, as for BERT (tests/test_onnx_runtime.py)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BEAM_CASCADE_MODEL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory) -> str:
    """A 2-layer MPNet classifier."""
    return make_tiny_mpnet_classifier(tmp_path_factory.mktemp("mpnet"), seed=1, layers=2)


def _roberta(labels: tuple[str, ...], layers: int) -> RobertaForSequenceClassification:
    """RoBERTa's layout (absolute positions after the padding id, a head on the first token,
    no pooler); padding id 0 so that the tiny WordPiece tokenizer can feed it."""
    return RobertaForSequenceClassification(RobertaConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=130, pad_token_id=0,
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)}, initializer_range=0.5))


def _save(model, tokenizer, folder) -> str:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["mpnet", "roberta"])
def multi_exit(request, tmp_path_factory) -> str:
    """A 4-layer model with exits after layers 1, 2 and 4, of either architecture."""
    folder = tmp_path_factory.mktemp(f"{request.param}_exits")
    torch.manual_seed(3)
    labels = ("neg", "pos")
    if request.param == "mpnet":
        model = MPNetForSequenceClassification(tiny_mpnet_config(labels, layers=4))
        torch.nn.init.normal_(model.mpnet.encoder.relative_attention_bias.weight, std=2.0)
        tokenizer = tiny_mpnet_tokenizer()
    else:
        model, tokenizer = _roberta(labels, layers=4), tiny_tokenizer()
    network = MultiExitClassifier.add_exits(model, (1, 2))
    for head in network.heads.values():  # spread the inner exits' confidences
        torch.nn.init.normal_(head.classifier.weight, std=0.3)
    network.save_pretrained(str(folder))
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["mpnet", "roberta"])
def two_layers(request, tmp_path_factory, mpnet) -> str:
    if request.param == "mpnet":
        return mpnet
    torch.manual_seed(2)
    return _save(_roberta(("neg", "pos"), layers=2), tiny_tokenizer(),
                 tmp_path_factory.mktemp("roberta"))


def test_an_mpnet_tier_passes_the_launchers_checks_and_scores_as_transformers_does(mpnet):
    info = inspect_checkpoint(mpnet)
    assert (info.model_type, info.labels, info.max_length) == ("mpnet", ("neg", "pos"), 128)
    tier = load_tier(mpnet, device="cpu", batch_size=3)
    encoded = tier.tokenizer(TEXTS, padding="longest", return_tensors="pt")
    assert "token_type_ids" not in encoded
    with torch.inference_mode():
        expected = MPNetForSequenceClassification.from_pretrained(mpnet).eval()(
            **encoded).logits
    assert torch.allclose(tier.logits(TEXTS), expected, atol=1e-5)


def test_mpnet_weights_without_the_relative_attention_bias_are_refused(mpnet, tmp_path):
    folder = tmp_path / "no_bias"
    _save(MPNetForSequenceClassification.from_pretrained(mpnet), tiny_mpnet_tokenizer(), folder)
    weights = load_file(folder / "model.safetensors")
    del weights["mpnet.encoder.relative_attention_bias.weight"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="relative_attention_bias"):
        inspect_checkpoint(str(folder))


def test_an_mpnet_tier_loads_from_a_remote_folder(mpnet):
    url = upload(mpnet)
    assert inspect_checkpoint(url).model_type == "mpnet"
    assert torch.equal(load_tier(url, device="cpu").logits(TEXTS),
                       load_tier(mpnet, device="cpu").logits(TEXTS))


def test_predict_answers_with_mpnet_tiers_as_the_tiers_do(mpnet, models, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "big", "model": mpnet}]}))
    answers = Predictor.from_config(str(config)).predict(TEXTS)
    big = load_tier(mpnet, device="cpu").logits(TEXTS).argmax(-1).tolist()
    escalated = [(a.label, i) for i, a in enumerate(answers) if a.decided_by == "big"]
    assert escalated
    assert all(label == ("neg", "pos")[big[i]] for label, i in escalated)


@pytest.mark.parametrize("threshold", [0.0, 0.8, 0.93, 1.01])
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_batched_early_exit_matches_every_exits_full_forward(multi_exit, threshold, batch_size):
    """Layer by layer, with rows leaving, as the model's own forward computes every exit."""
    settings = EarlyExit(threshold, (0.7, 1.3, 1.0))
    tier = load_tier(multi_exit, batch_size=batch_size, device="cpu", early_exit=settings)
    logits, layers = tier.logits_and_exits(TEXTS)
    replayed, leaving = choose_exits(tier.exit_logits(TEXTS), settings)
    assert torch.allclose(logits, replayed, atol=1e-5)
    assert [(1, 2, 4)[i] for i in leaving.tolist()] == layers.tolist()
    if threshold == 0.0:
        assert set(layers.tolist()) == {1}
    if threshold > 1.0:
        assert set(layers.tolist()) == {4}


def test_train_with_exits_on_an_mpnet_base_saves_an_early_exit_tier(mpnet, tmp_path):
    rows = [{"text": f"{w} movie", "label": "pos" if w in ("good", "great") else "neg"}
            for w in ("good", "bad", "great", "awful") * 10]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "trained"
    assert train_main(["--train", str(train), "--dev", str(train), "--base", mpnet,
                       "--exits", "1", "--epochs", "2", "--lr", "1e-3", "--device", "cpu",
                       "--output", str(out)]) == 0
    report = json.loads((out / "TRAINING.json").read_text())
    assert set(report["dev_accuracy_per_exit"]) == {"1", "2"}
    assert inspect_checkpoint(str(out)).exit_layers == (1, 2)
    tier = load_tier(str(out), device="cpu", early_exit=EarlyExit(0.0, (1.0, 1.0)))
    assert tier.logits_and_exits(["good movie"])[1].tolist() == [1]


def test_keeping_every_token_is_the_plain_model(two_layers):
    tier = load_tier(two_layers, device="cpu")
    logits, costs = tier.logits_and_costs(TEXTS, None, (1.0,))
    assert torch.allclose(logits, tier.logits(TEXTS), atol=1e-5)
    lengths = [len(ids) for ids in tier.tokenizer(TEXTS)["input_ids"]]
    assert costs.tolist() == [2 * n for n in lengths]


@pytest.mark.parametrize("share", [0.75, 0.5, 0.2])
def test_a_text_gets_the_same_answer_alone_or_in_any_batch(two_layers, share):
    tier = load_tier(two_layers, device="cpu")
    together, costs = tier.with_settings(batch_size=64).logits_and_costs(TEXTS, None, (share,))
    alone, alone_costs = tier.with_settings(batch_size=1).logits_and_costs(TEXTS, None, (share,))
    assert torch.allclose(together, alone, atol=1e-5)
    assert costs.tolist() == alone_costs.tolist()


def test_mpnet_tokens_kept_keep_their_distances_as_if_the_rest_were_masked(mpnet):
    """Dropping after layer 1 equals running layer 2 with the dropped tokens masked out: the
    kept tokens are the most attended ones (attention with MPNet's relative position bias)
    and they keep their relative position bias of the whole text."""
    tier = load_tier(mpnet, device="cpu")
    model, base = tier.model, tier.model.base_model
    encoded = tier.tokenizer(["the movie was not very good at all"], return_tensors="pt")
    with torch.inference_mode():
        hidden = base.embeddings(input_ids=encoded["input_ids"])
        bias = base.encoder.compute_position_bias(hidden)
        hidden, probs = base.encoder.layer[0](hidden, None, bias, output_attentions=True)
        received = probs.sum(dim=(1, 2))[0]
        kept = math.ceil(0.4 * len(received))
        chosen = [0] + received[1:].topk(kept - 1).indices.add(1).tolist()
        only_chosen = torch.zeros(1, len(received), dtype=torch.long)
        only_chosen[0, chosen] = 1
        mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                         attention_mask=only_chosen)
        reference = model.classifier(base.encoder.layer[1](hidden, mask, bias)[0])
        dropped, cost = tier.logits_and_costs(["the movie was not very good at all"], None,
                                              (0.4,))
    assert 1 < kept < len(received) and cost.tolist() == [len(received) + kept]
    assert torch.allclose(dropped, reference, atol=1e-5)
    without_distances = model.classifier(base.encoder.layer[1](
        hidden[:, sorted(chosen)], None, base.encoder.compute_position_bias(
            hidden[:, sorted(chosen)]))[0])
    assert not torch.allclose(dropped, without_distances, atol=1e-3)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_an_exported_mpnet_graph_gives_pytorchs_logits_for_texts_and_pairs(mpnet, runtime):
    pairs = list(reversed(TEXTS))
    torch_tier = load_tier(mpnet, device="cpu")
    exported = load_tier(mpnet, runtime=runtime, batch_size=4)
    assert exported.graph.input_names == ["input_ids", "attention_mask"]
    for args in ((TEXTS,), (TEXTS, pairs)):
        assert (exported.logits(*args) - torch_tier.logits(*args)).abs().max() < FP32_TOLERANCE


@pytest.mark.parametrize("scheme", ["int8", "int8_attention"])
def test_int8_mpnet_stays_close_to_fp32(mpnet, scheme):
    fp32 = torch.softmax(load_tier(mpnet, device="cpu").logits(TEXTS), -1)
    int8 = torch.softmax(load_tier(mpnet, runtime="onnxruntime", quantize=scheme)
                         .logits(TEXTS), -1)
    assert (int8 - fp32).abs().max() < INT8_TOLERANCE


def test_calibrate_puts_an_int8_copy_before_an_mpnet_last_tier_and_the_job_runs(
        mpnet, models, tmp_path, monkeypatch):
    """As tests/test_onnx_runtime.py's BERT case: measured for real, timed as int8 would be on
    a real model (on tiny models ONNX Runtime's per-call cost can make int8 the slower)."""
    from models.tuning import runtime_choice
    measured = runtime_choice.measure_variants
    monkeypatch.setattr(runtime_choice, "measure_variants", lambda *args: [
        dataclasses.replace(v, seconds_per_record=0.5 if v.quantize else 1.0)
        for v in measured(*args)])
    rows = labelled_rows(200, "good bad movie plot fun dull great awful", 5, 6, 1)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    config, tuned, report = tmp_path / "c.yaml", tmp_path / "tuned.yaml", tmp_path / "report"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "big", "model": mpnet}]}))
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "8", "--repeats", "1",
                           "--max_accuracy_drop", "20", "--compare_runtimes",
                           "--max_int8_drop", "0", "--int8_fallback"]) == 0
    result = json.loads((report / "report.json").read_text())
    assert result["int8_fallback"]["name"] == "big_int8"
    written = load_config(str(tuned)).tiers
    assert written[-1].name == "big" and written[-1].quantize is None
    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.predictions == len(rows) and stats.errors == 0


def test_calibrate_tunes_mpnet_exits_and_lengths_and_run_reproduces_them(
        mpnet, tmp_path):
    exits = tmp_path / "exits"
    rows = [{"text": f"{w} movie", "label": "pos" if w in ("good", "great") else "neg"}
            for w in ("good", "bad", "great", "awful") * 10]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    assert train_main(["--train", str(train), "--base", mpnet, "--exits", "1", "--epochs",
                       "1", "--device", "cpu", "--output", str(exits)]) == 0
    dev = write_jsonl(tmp_path / "dev.jsonl", labelled_rows(
        120, "good bad movie plot fun dull great awful the a not very", 5, 11, 2))
    config, tuned, report = tmp_path / "c.yaml", tmp_path / "tuned.yaml", tmp_path / "report"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "exits", "model": str(exits), "threshold": 0.9, "exit_threshold": 0.8},
        {"name": "lengths", "model": mpnet, "length_budget": 0.8}]}))
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "8", "--repeats", "1",
                           "--max_accuracy_drop", "100"]) == 0
    result = json.loads((report / "report.json").read_text())
    written = load_config(str(tuned)).tiers
    assert len(written[0].exit_temperatures) == 2
    assert list(written[1].keep_tokens) == result["tiers"][1]["lengths"]["chosen"]["keep"]
    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.accuracy == pytest.approx(result["chosen"]["accuracy"])


def test_train_fine_tunes_an_mpnet_base_and_distils_from_an_mpnet_teacher(mpnet, models,
                                                                           tmp_path):
    rows = [{"text": f"{w} film", "label": label}
            for w, label in (("fun", "pos"), ("dull", "neg")) * 8]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    teacher = tmp_path / "teacher"
    assert train_main(["--train", str(train), "--base", mpnet, "--epochs", "1",
                       "--keep_layers", "1", "--device", "cpu", "--label_names", "neg,pos",
                       "--output", str(teacher)]) == 0
    assert inspect_checkpoint(str(teacher)).model_type == "mpnet"
    assert load_tier(str(teacher), device="cpu").depth == 1
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl", [{"text": r["text"]} for r in rows])
    student = tmp_path / "student"
    assert train_main(["--train", str(train), "--base", models["small"], "--epochs", "1",
                       "--device", "cpu", "--label_names", "neg,pos", "--teacher",
                       str(teacher), "--unlabelled", str(unlabelled),
                       "--output", str(student)]) == 0
    report = json.loads((student / "TRAINING.json").read_text())
    assert report["distillation"]["unlabelled_texts"] == len(rows)


@pytest.fixture(scope="module")
def distilbert(tmp_path_factory) -> str:
    """An architecture whose layers the layer-by-layer features do not know how to run."""
    torch.manual_seed(0)
    return _save(DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=128, id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1})), tiny_tokenizer(), tmp_path_factory.mktemp("distil"))


@pytest.mark.parametrize("setting", [{"keep_tokens": [0.5]}, {"length_budget": 0.8}])
def test_token_dropping_on_an_unsupported_architecture_is_refused_before_the_job(
        distilbert, setting):
    config = config_from_dict({"tiers": [{"name": "big", "model": distilbert, **setting}]})
    with pytest.raises(ConfigError, match=r"tier 'big'.*token dropping.*bert, roberta, mpnet"
                                          r".*distilbert"):
        validate_models(config)
    with pytest.raises(CheckpointError, match="token dropping.*distilbert"):
        load_tier(distilbert, device="cpu", keep_tokens=(0.5,))


def test_a_multi_exit_folder_of_an_unsupported_architecture_is_refused_before_the_job(
        distilbert, tmp_path):
    folder = tmp_path / "exits"
    shutil.copytree(distilbert, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "exit_layers": [1, 2]}))
    (folder / HEADS_FILE).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"exit layers \[1, 2\], but early exit .* "
                                              r"bert, roberta, mpnet; .* 'distilbert'"):
        inspect_checkpoint(str(folder))


@pytest.mark.parametrize("flag, message", [("--exits", "early exit .* 'distilbert'"),
                                           ("--keep_layers", "keep_layers .* 'distilbert'")])
def test_exits_and_fewer_layers_of_an_unsupported_architecture_are_refused_before_training(
        distilbert, tmp_path, capsys, flag, message):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "good", "label": "pos"},
                                               {"text": "bad", "label": "neg"}])
    assert train_main(["--train", str(train), "--base", distilbert, flag, "1",
                       "--output", str(tmp_path / "out")]) == 2
    assert re.search(message, capsys.readouterr().err) and not (tmp_path / "out").exists()
