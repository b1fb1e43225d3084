"""Safe model loading: no code from a model folder and no pickle weights unless the tier's
config explicitly allows it, and a clear refusal before the job starts otherwise."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from models.loading import TierModel
from pipeline.config import ConfigError, config_from_dict, validate_models

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
