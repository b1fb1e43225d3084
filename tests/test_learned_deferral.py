"""Learned deferral (`confidence: learned`): the router's features, fit, file, config checks,
and calibrate -> run with a router end to end."""
import json

import pytest
import torch
import yaml
from conftest import labelled_rows, read_predictions, run_job, write_jsonl
from tiny_models import tiny_config, tiny_tokenizer
from transformers import BertForSequenceClassification

from models.config import ConfigError, config_from_dict
from models.early_exit import MultiExitClassifier
from models.learned_deferral import (Router, RouterError, deferral_inputs, feature_names,
                                     fit_router, load_router, ranking_auc, save_router)
from models.loading import load_tier
from models.validation import validate_models
from pipeline.calibrate import main as calibrate_main
from pipeline.config import load_config
from pipeline.predict import Predictor
from pipeline.train import main as train_main

WORDS = "the a movie film good bad great awful not very plot actor story fun dull"


class KnownShares:
    """A stand-in tier whose unfamiliar share is given."""

    def __init__(self, shares: list[float]):
        self.shares = torch.tensor(shares)

    def unfamiliar_share(self, texts, text_pairs=None):
        return self.shares


def test_the_features_are_read_off_the_logits_and_the_texts():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    inputs = deferral_inputs(KnownShares([0.5, 0.0]), logits, ["one two three", "one"])
    assert inputs.shape == (2, len(feature_names(("neg", "pos"))))
    named = dict(zip(feature_names(("neg", "pos")), inputs.T))
    assert named["max_prob_logit"][0] == pytest.approx(0.0, abs=1e-5)
    assert named["margin"].tolist() == pytest.approx([0.0, 0.7616], abs=1e-4)
    assert named["entropy"][0] == pytest.approx(0.0, abs=1e-6)  # uniform: no confidence
    assert named["log_words"].tolist() == pytest.approx([torch.log1p(torch.tensor(3.)).item(),
                                                          torch.log1p(torch.tensor(1.)).item()])
    assert named["unfamiliar_share"].tolist() == [0.5, 0.0]
    assert named["probability_neg"].tolist() == pytest.approx([0.5, 0.8808], abs=1e-4)


def test_inner_exits_add_their_confidence_and_agreement():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    inner = torch.tensor([[[0.0, 1.0], [0.0, 3.0]]])  # one inner exit
    inputs = deferral_inputs(KnownShares([0.0, 0.0]), logits, ["a", "b"], None, inner)
    names = feature_names(("neg", "pos"), (2,))
    assert names[-2:] == ("exit2_max_prob", "exit2_agrees")
    named = dict(zip(names, inputs.T))
    assert named["exit2_agrees"].tolist() == [0.0, 1.0]
    assert named["exit2_max_prob"].tolist() == pytest.approx([0.7311, 0.9526], abs=1e-4)


def test_a_router_learns_what_max_prob_cannot_see():
    """Disagreement here depends on the share of unfamiliar text, which the probabilities do
    not show: the router ranks disagreements far better than max_prob, on fresh records."""
    generator = torch.Generator().manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = torch.randn(n, 2, generator=generator) * 2
        shares = torch.rand(n, generator=generator)
        disagrees = torch.rand(n, generator=generator) < shares ** 3
        inputs = deferral_inputs(KnownShares(shares.tolist()), logits, ["a b"] * n)
        return inputs, disagrees, torch.softmax(logits, -1).max(-1).values

    inputs, disagrees, _ = sample(1000)
    router = fit_router("tier1", ("neg", "pos"), inputs, disagrees)
    assert router.fitted_on == 1000 and router.disagreements == int(disagrees.sum())
    fresh, fresh_disagrees, max_prob = sample(1000)
    confidences = router.confidences(fresh)
    assert 0.0 <= confidences.min() and confidences.max() <= 1.0
    assert ranking_auc(-confidences, fresh_disagrees) > 0.75
    assert abs(ranking_auc(-max_prob, fresh_disagrees) - 0.5) < 0.08


def test_too_few_disagreements_to_learn_from_are_refused():
    inputs = torch.randn(500, len(feature_names(("neg", "pos"))))
    disagrees = torch.zeros(500, dtype=torch.bool)
    disagrees[:3] = True
    with pytest.raises(RouterError, match="too few to fit its router"):
        fit_router("tier1", ("neg", "pos"), inputs, disagrees)


def test_ranking_auc_counts_ties_as_half():
    assert ranking_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert ranking_auc(torch.tensor([0.5, 0.5]), torch.tensor([False, True])) == 0.5


def test_a_router_file_round_trips_and_a_wrong_file_is_refused(tmp_path):
    router = Router("tier1", ("neg", "pos"), (), feature_names(("neg", "pos")), (0.0,) * 6,
                    (1.0,) * 6, (0.5, 0.0, 0.0, 0.0, 1.0, 0.0), -1.0, 200, 40)
    save_router(router, str(tmp_path / "r.json"))
    assert load_router(str(tmp_path / "r.json")) == router
    (tmp_path / "other.json").write_text(json.dumps({"weights": [1]}))
    (tmp_path / "short.json").write_text(json.dumps(
        {**json.loads((tmp_path / "r.json").read_text()), "weights": [1.0]}))
    (tmp_path / "broken.json").write_text("{")
    for name, message in (("missing.json", "does not exist"), ("other.json", "not a beam-cascade"),
                          ("short.json", "values per feature"), ("broken.json", "is not JSON")):
        with pytest.raises(RouterError, match=message):
            load_router(str(tmp_path / name))


def test_unfamiliar_shares_of_the_ngram_and_the_transformer_tiers(tmp_path, models):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "good film", "label": "pos"},
                                               {"text": "bad film", "label": "neg"}])
    assert train_main(["--kind", "ngram", "--train", str(train), "--output",
                       str(tmp_path / "ngram"), "--epochs", "1"]) == 0
    ngram = load_tier(str(tmp_path / "ngram"))
    assert ngram.unfamiliar_share(["good film", "zebra quagga", "good zebra"]).tolist() == \
        pytest.approx([0.0, 1.0, 2 / 3])  # good, zebra, "good zebra": one of three seen
    transformer = load_tier(models["small"])  # its vocabulary: letters and a few words
    assert transformer.unfamiliar_share(["good film", "zebra", "good zebra"]).tolist() == \
        pytest.approx([0.0, 1.0, 0.5])


@pytest.mark.parametrize("tier, message", [
    ({"confidence": "learned"}, "the last tier routes none"),
    ({"router": "r.json"}, "only with confidence: learned"),
    ({"confidence": "learned", "threshold": 0.5, "exit_threshold": 0.9}, "early exit"),
    ({"confidence": "learnt", "threshold": 0.5}, "unknown confidence"),
])
def test_bad_learned_settings_are_refused(tier, message):
    """On a tier before the last; `confidence: learned` alone goes on the last one."""
    tiers = [{"model": "a", **tier}] if "threshold" not in tier else \
        [{"model": "a", **tier}, {"model": "b"}]
    if tier == {"router": "r.json"}:
        tiers = [{"model": "a", "threshold": 0.5, **tier}, {"model": "b"}]
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"tiers": tiers})


def test_a_learned_tier_without_its_router_is_refused_before_a_job(models):
    config = config_from_dict({"tiers": [
        {"model": models["small"], "threshold": 0.5, "confidence": "learned"},
        {"model": models["large"]}]})
    with pytest.raises(ConfigError, match="run beam-cascade calibrate with --unlabelled"):
        validate_models(config)
    assert validate_models(config, routers_fitted=False) == ("neg", "pos")
    missing = config_from_dict({"tiers": [
        {"model": models["small"], "threshold": 0.5, "confidence": "learned",
         "router": "/nowhere/r.json"}, {"model": models["large"]}]})
    with pytest.raises(ConfigError, match="does not exist"):
        validate_models(missing)


def test_a_router_fitted_for_other_exits_or_labels_is_refused(tmp_path, models):
    names = feature_names(("neg", "pos"), (1,))
    save_router(Router("small", ("neg", "pos"), (1,), names, (0.0,) * len(names),
                       (1.0,) * len(names), (0.0,) * len(names), 0.0, 200, 40),
                str(tmp_path / "exits.json"))
    names = feature_names(("no", "yes"))
    save_router(Router("small", ("no", "yes"), (), names, (0.0,) * len(names),
                       (1.0,) * len(names), (0.0,) * len(names), 0.0, 200, 40),
                str(tmp_path / "labels.json"))
    for router, message in (("exits.json", "reads the inner exits"),
                            ("labels.json", "was fitted for labels")):
        config = config_from_dict({"tiers": [
            {"model": models["small"], "threshold": 0.5, "confidence": "learned",
             "router": str(tmp_path / router)}, {"model": models["large"]}]})
        with pytest.raises(ConfigError, match=message):
            validate_models(config)


def test_calibrate_without_unlabelled_records_says_the_router_needs_them(tmp_path, models,
                                                                         capsys):
    dev = write_jsonl(tmp_path / "dev.jsonl", labelled_rows(120, WORDS, 3, 6, 7))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.5, "confidence": "learned"},
        {"name": "large", "model": models["large"]}]}))
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output",
                           str(tmp_path / "tuned.yaml"), "--batch_sizes", "8",
                           "--repeats", "1"]) == 2
    assert "give calibrate --unlabelled" in capsys.readouterr().err


def _multi_exit_tier(folder) -> str:
    """A randomly initialised 2-layer model with an inner exit after layer 1, its heads'
    weights spread so that it disagrees with tier large on some records, not all."""
    torch.manual_seed(0)
    network = MultiExitClassifier.add_exits(
        BertForSequenceClassification(tiny_config(("neg", "pos"), layers=2)), (1,))
    for head in (network.heads["1"], network.model):
        torch.nn.init.normal_(head.classifier.weight, std=0.3)
    network.save_pretrained(str(folder))
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("tier1", ["plain", "multi-exit"])
def test_calibrate_fits_the_router_and_the_job_routes_by_it(tmp_path, models, tier1):
    """The router is fitted on half the unlabelled sample, the guarantee counts on the other
    half; the tuned config names the router file beside it, and the job (and the Python API)
    replay calibrate's choice exactly. A multi-exit tier's router reads its inner exit too."""
    rows = [{"id": f"r{i}", **row} for i, row in enumerate(labelled_rows(160, WORDS, 3, 6, 7))]
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl",
                             [{"text": r["text"]} for r in labelled_rows(600, WORDS, 5, 7, 3)])
    model = models["small"] if tier1 == "plain" else _multi_exit_tier(tmp_path / "exits")
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": model, "threshold": 0.5, "confidence": "learned"},
        {"name": "large", "model": models["large"]}]}))
    tuned, report = tmp_path / "configs" / "tuned.yaml", tmp_path / "report"
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "8", "--repeats", "1",
                           "--max_accuracy_drop", "20", "--confidence", "0.8",
                           "--unlabelled", str(unlabelled)]) == 0
    raw = yaml.safe_load(tuned.read_text())
    assert raw["tiers"][0]["confidence"] == "learned"
    assert raw["tiers"][0]["router"] == "tuned.small.router.json"  # beside the config
    written = load_config(str(tuned))
    router = load_router(written.tiers[0].router)
    assert router.fitted_on == 300
    assert router.inner_exits == ((1,) if tier1 == "multi-exit" else ())
    result = json.loads((report / "report.json").read_text())
    assert result["unlabelled_records"] == 300 and result["bound"]["compared"] == 300
    learned = result["tiers"][0]["learned"]
    assert learned["held_out"] == 300 and 0.0 <= learned["auc_learned"] <= 1.0
    assert "Learned routers" in (report / "report.md").read_text()

    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.accuracy == pytest.approx(result["chosen"]["accuracy"])
    assert stats.tiers[1].seen / stats.predictions == pytest.approx(
        result["chosen"]["reach"][1])
    answers = Predictor(written).predict([r["text"] for r in rows])
    by_id = {row["id"]: row for row in read_predictions(tmp_path / "out")}
    for row, answer in zip(rows, answers):
        assert by_id[row["id"]]["decided_by"] == answer.decided_by
        assert answer.tiers[0].confidence == pytest.approx(
            by_id[row["id"]]["confidence_small"], abs=1e-5)
