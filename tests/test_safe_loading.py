"""Safe model loading: no code from a model folder and no pickle weights unless the tier's
config explicitly allows it; no tier whose weights or tokenizer are missing, damaged or
another model's. Each is refused on the launcher, before the job starts, with the reason."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from models.config import ConfigError, config_from_dict
from models.loading import TierModel
from models.validation import validate_models

CUSTOM_CONFIG = '''
from transformers import BertConfig
with open({marker!r}, "a") as f:
    f.write("code from the model folder ran\\n")


class CustomBertConfig(BertConfig):
    model_type = "custom-bert"
'''
CUSTOM_MODEL = '''
from transformers import BertForSequenceClassification
from .configuration_custom import CustomBertConfig


class CustomBertForSequenceClassification(BertForSequenceClassification):
    config_class = CustomBertConfig
'''


def _config(models, folder, **tier2):
    return config_from_dict({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "custom", "model": str(folder), **tier2}]})


@pytest.fixture()
def remote_code_folder(models, tmp_path):
    """A checkpoint whose config.json asks to import Python files shipped in the folder."""
    folder = tmp_path / "custom"
    shutil.copytree(models["large"], folder)
    marker = tmp_path / "marker.txt"
    (folder / "configuration_custom.py").write_text(CUSTOM_CONFIG.format(marker=str(marker)))
    (folder / "modeling_custom.py").write_text(CUSTOM_MODEL)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-bert", architectures=["CustomBertForSequenceClassification"],
                  auto_map={"AutoConfig": "configuration_custom.CustomBertConfig",
                            "AutoModelForSequenceClassification":
                                "modeling_custom.CustomBertForSequenceClassification"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_code_in_a_model_folder_never_runs_unless_the_tier_trusts_it(models, remote_code_folder):
    folder, marker = remote_code_folder
    with pytest.raises(ConfigError, match="tier 'custom'.*loads Python code from the folder.*"
                                          "trust_remote_code: true"):
        validate_models(_config(models, folder))
    assert not marker.exists()

    trusted = _config(models, folder, trust_remote_code=True)
    assert validate_models(trusted) == ("neg", "pos")
    tier = TierModel.load(str(folder), trust_remote_code=True)
    assert type(tier.model).__name__ == "CustomBertForSequenceClassification"
    assert tier.logits(["good movie"]).shape == (1, 2)
    assert marker.exists()


def test_trust_remote_code_must_be_a_boolean(models, remote_code_folder):
    with pytest.raises(ConfigError, match="trust_remote_code must be true or false"):
        _config(models, remote_code_folder[0], trust_remote_code="yes please")


def test_pickle_weights_are_refused_unless_the_tier_allows_them(models, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(models["large"], folder)
    weights = load_file(folder / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="tier 'custom'.*only pickle weights.*can run "
                                          "arbitrary code.*allow_pickle_weights: true"):
        validate_models(_config(models, folder))

    assert validate_models(_config(models, folder, allow_pickle_weights=True)) == ("neg", "pos")
    pickled = TierModel.load(str(folder), allow_pickle_weights=True).logits(["good movie"])
    safe = TierModel.load(models["large"]).logits(["good movie"])
    assert torch.allclose(pickled, safe)


def _copy_with_weights(models, tmp_path, edit) -> str:
    """A copy of the large tier whose weights dict `edit` changed in place."""
    folder = tmp_path / "damaged"
    shutil.copytree(models["large"], folder)
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors")
    return str(folder)


@pytest.mark.parametrize("tensor", ["classifier.weight",
                                    "bert.encoder.layer.0.attention.self.query.weight"])
def test_weights_missing_a_tensor_of_the_architecture_are_refused(models, tmp_path, tensor):
    """transformers would initialise the tensor at random and log a line: a tier that
    answers confidently and wrongly, with exit 0."""
    folder = _copy_with_weights(models, tmp_path, lambda weights: weights.pop(tensor))
    with pytest.raises(ConfigError, match=f"tier 'custom'.*lack 1 of the architecture's .*"
                                          f"tensors \\({tensor}\\)"):
        validate_models(_config(models, folder))


def test_weights_of_another_shape_are_refused(models, tmp_path):
    folder = _copy_with_weights(models, tmp_path, lambda weights: weights.update(
        {"classifier.weight": torch.zeros(3, weights["classifier.weight"].shape[1])}))
    with pytest.raises(ConfigError, match=r"classifier.weight \[3, 32\] \(the architecture "
                                          r"needs \[2, 32\]\)"):
        validate_models(_config(models, folder))


def test_truncated_weights_are_refused_on_the_launcher(models, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(models["large"], folder)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) - 100])
    with pytest.raises(ConfigError, match="model.safetensors' is truncated"):
        validate_models(_config(models, folder))
    (folder / "model.safetensors").write_bytes(weights[:4])
    with pytest.raises(ConfigError, match="too short to be a safetensors file"):
        validate_models(_config(models, folder))


def test_sharded_weights_are_checked_shard_by_shard(models, tmp_path):
    folder = tmp_path / "sharded"
    shutil.copytree(models["large"], folder)
    (folder / "model.safetensors").unlink()
    TierModel.load(models["large"]).model.save_pretrained(folder, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    assert validate_models(_config(models, folder)) == ("neg", "pos")
    shards[-1].unlink()
    with pytest.raises(ConfigError, match=f"names shard '{shards[-1].name}', which is not a "
                                          "file in the folder"):
        validate_models(_config(models, folder))


def test_a_folder_without_tokenizer_files_is_refused(models, tmp_path):
    folder = tmp_path / "no_tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(models["large"], name), folder / name)
    with pytest.raises(ConfigError, match="has no tokenizer files"):
        validate_models(_config(models, folder))


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(models, tmp_path):
    """Ids past the embedding table crash on the worker; a vocabulary that is no vocabulary
    gives one class for everything."""
    with pytest.raises(ConfigError, match="the tokenizer has 98 tokens but the model's "
                                          "embedding table has 77 rows"):
        validate_models(_config(models, models["vocab_mismatch"]))
    folder = tmp_path / "tiny_vocabulary"
    shutil.copytree(models["large"], folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    words = Tokenizer(WordLevel({"[UNK]": 0, "[PAD]": 1, "good": 2}, unk_token="[UNK]"))
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]",
                            pad_token="[PAD]").save_pretrained(folder)
    with pytest.raises(ConfigError, match="the tokenizer has only 3 tokens"):
        validate_models(_config(models, folder))
