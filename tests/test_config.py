import json
import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from models.config import ConfigError, config_from_dict
from models.validation import validate_models
from pipeline.config import cascade_config, config_from_flags, load_config
from pipeline.options import CascadeOptions


def tiers_config(models, **tier1_overrides):
    return {"tiers": [{"name": "small", "model": models["small"], "threshold": 0.9,
                       **tier1_overrides},
                      {"name": "large", "model": models["large"]}]}


def test_yaml_and_json_configs_load_the_same(tmp_path, models):
    raw = {"text_field": "sentence", "label_field": "label", **tiers_config(models)}
    (tmp_path / "c.json").write_text(json.dumps(raw))
    (tmp_path / "c.yaml").write_text(
        f"text_field: sentence\nlabel_field: label\ntiers:\n"
        f"  - {{name: small, model: {models['small']}, threshold: 0.9}}\n"
        f"  - {{name: large, model: {models['large']}}}\n")
    assert load_config(str(tmp_path / "c.json")) == load_config(str(tmp_path / "c.yaml"))
    config = load_config(str(tmp_path / "c.json"))
    assert config.tier_names == ("small", "large")
    assert config.tiers[0].confidence == "max_prob" and config.tiers[1].threshold is None


def test_flags_alone_make_a_two_or_three_tier_cascade(models):
    two = config_from_flags([models["small"], models["large"]], [0.8])
    assert [t.threshold for t in two.tiers] == [0.8, None]
    three = config_from_flags([models["small"], models["medium"], models["large"]], [0.8, 0.7])
    assert [t.threshold for t in three.tiers] == [0.8, 0.7, None]


@pytest.mark.parametrize("change, message", [
    ({"threshold": 1.5}, "must be a number in \\[0, 1\\]"),
    ({"threshold": None}, "'threshold' is required"),
    ({"confidence": "variance"}, "unknown confidence 'variance'"),
    ({"temperature": 0}, "temperature 0 must be a number > 0"),
    ({"batch_size": 0}, "batch_size 0 must be a whole number"),
    ({"sort_window": 1.5}, "sort_window 1.5 must be a whole number"),
    ({"thresold": 0.9}, "unknown key\\(s\\) \\['thresold'\\]"),
    ({"name": "has space"}, "name must be letters"),
    ({"exit_threshold": 2}, "exit_threshold 2 must be a number in \\[0, 1\\]"),
    ({"exit_temperatures": [1.0, -1]}, "must be a list of numbers > 0"),
    ({"exit_temperatures": "1.0"}, "must be a list of numbers > 0"),
    ({"audit_rate": 2}, "audit_rate 2 must be a share in \\[0, 1\\]"),
    ({"max_disagreement": 0.05}, "max_disagreement needs an audit_rate"),
    ({"max_disagreement": 0, "audit_rate": 0.1}, "max_disagreement 0 must be a share in"),
])
def test_bad_tier_values_are_refused_with_what_to_fix(models, change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(tiers_config(models, **change))


def test_no_tiers_and_last_tier_threshold_are_refused(models):
    with pytest.raises(ConfigError, match="'tiers' must be a non-empty list"):
        config_from_dict({"tiers": []})
    raw = tiers_config(models)
    raw["tiers"][1]["threshold"] = 0.5
    with pytest.raises(ConfigError, match="last tier decides every record"):
        config_from_dict(raw)


def test_missing_model_folder_is_named(models, tmp_path):
    config = config_from_dict(tiers_config(models, model=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="tier 'small'.*nope.*does not exist"):
        validate_models(config)


def test_tiers_with_different_labels_are_refused(models):
    config = config_from_dict(tiers_config(models, model=models["three_labels"]))
    with pytest.raises(ConfigError, match="tiers disagree on labels"):
        validate_models(config)


def test_a_folder_without_classification_head_is_refused(models):
    config = config_from_dict(tiers_config(models, model=models["encoder"]))
    with pytest.raises(ConfigError, match="not a sequence-classification checkpoint"):
        validate_models(config)


def test_shared_labels_are_returned(models):
    assert validate_models(config_from_dict(tiers_config(models))) == ("neg", "pos")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_passthrough_fields_must_be_a_list_of_names(models):
    with pytest.raises(ConfigError, match="must be a list of field names"):
        config_from_dict({**tiers_config(models), "passthrough_fields": "lang"})
    with pytest.raises(ConfigError, match="non-empty field names"):
        config_from_dict({**tiers_config(models), "passthrough_fields": ["lang", 5]})


def test_max_length_beyond_the_tokenizer_limit_is_refused(models):
    config = config_from_dict(tiers_config(models, max_length=100_000))
    with pytest.raises(ConfigError, match="max_length 100000 exceeds"):
        validate_models(config)


@pytest.mark.parametrize("change, message", [
    ({"exit_threshold": 0.9}, "has no inner exits; train one with `beam-cascade train --exits"),
    ({"exit_temperatures": [1.0, 1.0]}, "need a multi-exit model"),
])
def test_early_exit_settings_need_a_multi_exit_model(models, change, message):
    with pytest.raises(ConfigError, match=message):
        validate_models(config_from_dict(tiers_config(models, **change)))


def test_tier_flags_fill_only_what_the_config_leaves_unset(tmp_path, models):
    """--max_batch_duration_secs, --max_escalation_rate, --audit_rate and --max_disagreement
    apply to tiers that do not set them; all but the first only to tiers that escalate (not
    the last)."""
    path = tmp_path / "cascade.yaml"
    path.write_text(
        "tiers:\n"
        f"  - {{name: a, model: {models['small']}, threshold: 0.9, max_escalation_rate: 0.1}}\n"
        f"  - {{name: b, model: {models['medium']}, threshold: 0.9, max_batch_duration_secs: 3}}\n"
        f"  - {{name: c, model: {models['large']}}}\n")
    options = PipelineOptions(["--config", str(path), "--max_escalation_rate", "0.3",
                               "--max_batch_duration_secs", "1", "--audit_rate", "0.05",
                               "--max_disagreement", "0.1"]).view_as(CascadeOptions)
    tiers = cascade_config(options).tiers
    assert [t.max_escalation_rate for t in tiers] == [0.1, 0.3, None]
    assert [t.audit_rate for t in tiers] == [0.05, 0.05, None]
    assert [t.max_disagreement for t in tiers] == [0.1, 0.1, None]
    assert [t.max_batch_duration_secs for t in tiers] == [1, 3, 1]


def test_relative_model_paths_are_resolved_against_the_config_files_folder(
        models, tmp_path, monkeypatch):
    """A cron job does not choose its current folder: `model: ../models/small` in
    configs/c.yaml names the folder beside configs/, from wherever the job starts."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "c.yaml").write_text(
        f"tiers:\n  - model: {os.path.relpath(models['small'], folder)}\n")
    monkeypatch.chdir(models["large"])
    assert load_config(str(folder / "c.yaml")).tiers[0].model == models["small"]
    monkeypatch.chdir(tmp_path)
    assert load_config("configs/c.yaml").tiers[0].model == models["small"]


def test_a_key_twice_at_the_top_of_a_yaml_config_is_refused_naming_its_lines(tmp_path, models):
    """YAML keeps the last of two `tiers:` silently: a two-tier cascade became one tier."""
    path = tmp_path / "c.yaml"
    path.write_text(f"tiers:\n  - {{name: small, model: {models['small']}, threshold: 0.9}}\n"
                    f"  - {{name: large, model: {models['large']}}}\n"
                    f"text_field: text\ntiers:\n  - {{name: large, model: {models['large']}}}\n")
    with pytest.raises(ConfigError, match=r"config file '.*c\.yaml' has the key 'tiers' twice "
                                          r"\(lines 1 and 5\); keep one"):
        load_config(str(path))


def test_a_key_twice_inside_a_yaml_tier_is_refused_naming_the_tier_and_lines(tmp_path, models):
    path = tmp_path / "c.yaml"
    path.write_text(f"tiers:\n  - name: small\n    model: {models['small']}\n"
                    f"    threshold: 0.9\n    threshold: 0.5\n"
                    f"  - name: large\n    model: {models['large']}\n")
    with pytest.raises(ConfigError, match=r"has the key 'tiers\[0\]\.threshold' twice "
                                          r"\(lines 4 and 5\)"):
        load_config(str(path))


def test_yaml_merge_keys_still_fill_a_tier(tmp_path, models):
    """`<<: *anchor` is YAML's way to share settings; the keys it brings in are not duplicates
    of the tier's own (the tier's own win, as YAML says)."""
    path = tmp_path / "c.yaml"
    path.write_text(f"tiers:\n  - &first {{name: small, model: {models['small']}, "
                    f"threshold: 0.9, batch_size: 8}}\n"
                    f"  - {{<<: *first, name: large, model: {models['large']}, "
                    f"threshold: null}}\n")
    tiers = load_config(str(path)).tiers
    assert [(t.name, t.batch_size, t.threshold) for t in tiers] == [
        ("small", 8, 0.9), ("large", 8, None)]


def test_a_key_twice_in_a_json_config_is_refused_naming_its_path_and_lines(tmp_path, models):
    raw = json.dumps(tiers_config(models), indent=1)
    path = tmp_path / "c.json"
    path.write_text(raw.replace('"threshold": 0.9', '"threshold": 0.9,\n   "threshold": 0.5'))
    lines = path.read_text().splitlines()
    first, second = [i + 1 for i, line in enumerate(lines) if '"threshold"' in line]
    with pytest.raises(ConfigError, match=rf"config file '.*c\.json' has the key "
                                          rf"'tiers\[0\]\.threshold' twice \(lines {first} "
                                          rf"and {second}\); keep one"):
        load_config(str(path))


def test_run_exits_2_on_a_config_with_a_key_twice(tmp_path, models, capsys):
    from pipeline.run import main
    config = tmp_path / "c.yaml"
    config.write_text(f"tiers:\n  - {{name: small, model: {models['small']}, threshold: 0.9,"
                      f" threshold: 0.5}}\n  - {{name: large, model: {models['large']}}}\n")
    data = tmp_path / "x.jsonl"
    data.write_text('{"text": "good"}\n')
    assert main(["--config", str(config), "--input", str(data),
                 "--output", str(tmp_path / "out")]) == 2
    assert "has the key 'tiers[0].threshold' twice (line 2); keep one" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
