"""int8 dynamic quantisation as a tier option: which layers it converts, that the tier still
classifies like its fp32 self, and the config checks around it."""
import pytest
import torch
import yaml
from conftest import run_job

from models.config import ConfigError, config_from_dict, validate_models
from models.loading import load_tier
from models.ngram import HashedNgramClassifier, NgramConfig
from models.quantization import quantize

TEXTS = ["good movie", "the plot was dull", "a great film and a fun story", "awful", "not bad"]


def _quantized_layers(model) -> set[str]:
    return {name for name, module in model.named_modules()
            if type(module).__module__.startswith("torch.ao.nn.quantized")
            and not name.endswith("._packed_params")}


def test_int8_converts_every_linear_layer_and_attention_only_the_attention(models):
    model = load_tier(models["large"], device="cpu").model
    linear = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert _quantized_layers(quantize(model, "int8")) == linear
    attention = _quantized_layers(quantize(model, "int8_attention"))
    assert attention and attention == {n for n in linear if ".attention." in n}
    assert not _quantized_layers(model)  # the fp32 model is left as it was


@pytest.mark.parametrize("scheme", ["int8", "int8_attention"])
def test_quantized_tier_stays_close_to_its_fp32_self(models, scheme):
    fp32 = torch.softmax(load_tier(models["large"], device="cpu").logits(TEXTS), -1)
    int8 = torch.softmax(load_tier(models["large"], device="cpu", quantize=scheme)
                         .logits(TEXTS), -1)
    assert (int8 - fp32).abs().max() < 0.1


def test_a_quantized_tier_runs_in_the_cascade(models, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(f'{{"text": "{t}"}}\n' for t in TEXTS))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9, "quantize": "int8"},
        {"name": "large", "model": models["large"], "quantize": "int8_attention"}]}))
    stats = run_job(["--input", str(data), "--output", str(tmp_path / "out"),
                     "--config", str(config)])
    assert stats["predictions"] == len(TEXTS) and stats["errors"] == 0


@pytest.mark.parametrize("change, message", [
    ({"quantize": "int4"}, "quantize 'int4' must be one of"),
    ({"quantize": "int8", "device": "cuda"}, "runs on the CPU only"),
])
def test_bad_quantisation_settings_are_refused(models, change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"tiers": [{"model": models["small"], "threshold": 0.9, **change},
                                    {"model": models["large"]}]})


def test_quantising_an_ngram_tier_is_refused(models, tmp_path):
    folder = tmp_path / "ngram"
    HashedNgramClassifier(NgramConfig(("neg", "pos"), 64, 2)).save_pretrained(str(folder))
    config = config_from_dict({"tiers": [
        {"model": str(folder), "threshold": 0.9, "quantize": "int8"},
        {"model": models["large"]}]})
    with pytest.raises(ConfigError, match="n-gram model"):
        validate_models(config)
