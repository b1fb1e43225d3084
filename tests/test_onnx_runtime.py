"""Tiers on ONNX Runtime and OpenVINO (`runtime: onnxruntime | openvino`): the same answers as
PyTorch in fp32, close ones in int8, the export made once per machine and again for new
weights, the config checks around it, `beam-cascade export`, and calibrate's choice between
runtimes."""
import dataclasses
import json
import os
import sys
import threading

import pytest
import torch
import yaml
from conftest import read_predictions, run_job
from tiny_models import make_tiny_classifier

from models.config import ConfigError, TierConfig, config_from_dict
from models.loading import CheckpointError, load_tier
from models.ngram import HashedNgramClassifier, NgramConfig
from models.onnx_export import module_scope, exported_model, int8_nodes
from models import onnx_tier
from models.tuning import runtime_choice
from models.tuning.runtime_choice import OPENVINO, VARIANTS, RuntimeVariant, choose_variant
from models.validation import validate_models
from pipeline.calibrate import main as calibrate_main
from pipeline.config import load_config
from pipeline.export import main as export_main

TEXTS = ["good movie", "the plot was dull", "a great film and a fun story", "awful", "not bad",
         "a long and winding story about nothing much that goes on and on"]
FP32_TOLERANCE = 1e-4  # float rounding of fused kernels; answers and confidences agree
INT8_TOLERANCE = 0.1  # on probabilities: int8 weights move each a little


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BEAM_CASCADE_MODEL_CACHE", str(tmp_path / "cache"))


EXPORTED = ["onnxruntime", "openvino"]


@pytest.mark.parametrize("runtime", EXPORTED)
@pytest.mark.parametrize("model", ["small", "deep"])
def test_an_exported_graph_gives_pytorchs_logits(models, model, runtime):
    torch_logits = load_tier(models[model], device="cpu").logits(TEXTS)
    onnx_logits = load_tier(models[model], runtime=runtime, batch_size=4).logits(TEXTS)
    assert (onnx_logits - torch_logits).abs().max() < FP32_TOLERANCE


@pytest.mark.parametrize("runtime", EXPORTED)
def test_an_exported_graph_scores_text_pairs_like_pytorch(models, runtime):
    pairs = list(reversed(TEXTS))
    torch_logits = load_tier(models["deep"], device="cpu").logits(TEXTS, pairs)
    onnx_logits = load_tier(models["deep"], runtime=runtime).logits(TEXTS, pairs)
    assert (onnx_logits - torch_logits).abs().max() < FP32_TOLERANCE


def test_threads_sharing_an_openvino_tier_get_what_one_thread_gets(models):
    """Worker threads share a tier; an OpenVINO infer request holds its buffers, so each
    thread has its own: passes of different lengths, interleaved, keep their answers."""
    tier = load_tier(models["deep"], runtime="openvino", batch_size=2)
    texts = [TEXTS, list(reversed(TEXTS)) * 3]
    alone = [tier.logits(t) for t in texts]
    got, errors = {}, []

    def score(k):
        try:
            got[k] = [tier.logits(texts[k % 2]) for _ in range(20)]
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, results in got.items():
        assert all(torch.equal(r, alone[k % 2]) for r in results)


def test_openvino_not_installed_is_named_with_the_fix(models, monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'beam-cascade\[openvino\]'"):
        config_from_dict({"tiers": [{"model": models["small"], "runtime": "openvino"}]})
    assert runtime_choice.variants_here() == VARIANTS  # calibrate compares what there is
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails
    monkeypatch.setattr(onnx_tier, "exported_model", _not_called)  # said before exporting
    with pytest.raises(ImportError, match="or use runtime: onnxruntime"):
        load_tier(models["small"], runtime="openvino")


def _not_called(*args):
    raise AssertionError("exported without the engine to run the export")


def test_a_broken_openvino_install_shows_its_own_error(monkeypatch):
    """Installed but broken (its compiled part missing): not told to install it again."""
    import builtins
    from models import onnx_engines
    real_import = builtins.__import__

    def broken_import(name, *args, **kwargs):
        if name == "openvino":
            raise ModuleNotFoundError("No module named 'openvino._pyopenvino'",
                                      name="openvino._pyopenvino")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken_import)
    with pytest.raises(ModuleNotFoundError, match="_pyopenvino"):
        onnx_engines.import_openvino()


def test_openvino_answers_other_than_onnxruntimes_are_refused(models, monkeypatch):
    from models import onnx_engines
    plain = onnx_engines.OpenVinoGraph.__call__
    monkeypatch.setattr(onnx_engines.OpenVinoGraph, "__call__",
                        lambda self, feed: plain(self, feed) + 0.01)
    with pytest.raises(CheckpointError, match="openvino gives other logits than PyTorch"):
        load_tier(models["small"], runtime="openvino")


def test_openvino_gives_each_sharing_thread_a_stream(models):
    """With one torch thread per worker (worker threads sharing the process), the graph has
    a stream for each of the process's CPUs, so their calls run side by side."""
    from models.cpus import available_cpus
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tier = load_tier(models["small"], runtime="openvino")
    finally:
        torch.set_num_threads(threads)
    assert tier.graph.compiled.get_property("NUM_STREAMS") == available_cpus()


@pytest.mark.parametrize("scheme", ["int8", "int8_attention"])
def test_int8_stays_close_to_fp32(models, scheme):
    fp32 = torch.softmax(load_tier(models["deep"], device="cpu").logits(TEXTS), -1)
    int8 = torch.softmax(load_tier(models["deep"], runtime="onnxruntime", quantize=scheme)
                         .logits(TEXTS), -1)
    assert (int8 - fp32).abs().max() < INT8_TOLERANCE


def test_int8_attention_quantises_only_the_attention(models):
    import onnx
    graph = onnx.load(exported_model(models["deep"]))
    every, attention = int8_nodes(graph, "int8"), int8_nodes(graph, "int8_attention")
    assert attention and set(attention) < set(every)
    scopes = {n.name: module_scope(n) for n in graph.graph.node}
    assert all(".attention." in scopes[n] for n in attention)
    assert any(".intermediate." in scopes[n] for n in every)


def test_the_export_is_made_once_and_again_for_new_weights(tmp_path):
    folder = make_tiny_classifier(tmp_path / "tier", seed=1)
    first = exported_model(folder)
    made = os.path.getmtime(first)
    assert exported_model(folder) == first and os.path.getmtime(first) == made
    make_tiny_classifier(tmp_path / "tier", seed=2)  # retrained in the same folder
    second = exported_model(folder)
    assert second != first
    new = load_tier(folder, runtime="onnxruntime").logits(TEXTS)
    assert (new - load_tier(folder, device="cpu").logits(TEXTS)).abs().max() < FP32_TOLERANCE


def test_cascades_on_exported_graphs_run_and_match_pytorch(models, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(f'{{"id": "{i}", "text": "{t}"}}\n' for i, t in enumerate(TEXTS)))
    outputs = {}
    for runtime in ("torch", *EXPORTED):
        config = tmp_path / f"{runtime}.yaml"
        config.write_text(yaml.safe_dump({"tiers": [
            {"name": "small", "model": models["small"], "threshold": 0.6, "runtime": runtime},
            {"name": "large", "model": models["large"], "runtime": runtime}]}))
        stats = run_job(["--input", str(data), "--output", str(tmp_path / runtime),
                         "--config", str(config)])
        assert stats.predictions == len(TEXTS) and stats.errors == 0
        outputs[runtime] = {row["id"]: (row["label"], row["decided_by"], row["confidence"])
                            for row in read_predictions(tmp_path / runtime)}
    for runtime in EXPORTED:
        assert outputs["torch"].keys() == outputs[runtime].keys()
        for key, (label, tier, confidence) in outputs["torch"].items():
            assert outputs[runtime][key][:2] == (label, tier)
            assert outputs[runtime][key][2] == pytest.approx(confidence, abs=FP32_TOLERANCE)


@pytest.mark.parametrize("change, message", [
    ({"runtime": "tensorrt"}, "runtime 'tensorrt' must be one of"),
    ({"quantize": "int4", "runtime": "onnxruntime"}, "quantize 'int4' must be one of"),
    ({"quantize": "int8"}, "int8 .quantize. runs on ONNX Runtime; set runtime: onnxruntime"),
    ({"quantize": "int8", "runtime": "openvino"}, "int8 .quantize. runs on ONNX Runtime"),
    ({"runtime": "onnxruntime", "device": "cuda"}, "runs on the CPU here"),
    ({"runtime": "openvino", "device": "cuda"}, "runtime openvino runs on the CPU here"),
    ({"runtime": "openvino", "keep_tokens": [0.5]}, "keep_tokens run on runtime: torch"),
    ({"runtime": "onnxruntime", "keep_tokens": [0.5]}, "keep_tokens run on runtime: torch"),
    ({"runtime": "onnxruntime", "exit_threshold": 0.9}, "exit_threshold run on runtime: torch"),
])
def test_bad_runtime_settings_are_refused(models, change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"tiers": [{"model": models["small"], "threshold": 0.9, **change},
                                    {"model": models["large"]}]})


def test_int8_on_pytorch_is_refused_when_loading_directly(models):
    with pytest.raises(CheckpointError, match="runtime: onnxruntime"):
        load_tier(models["small"], device="cpu", quantize="int8")


@pytest.mark.parametrize("runtime", EXPORTED)
def test_an_ngram_tier_on_an_exported_runtime_is_refused(models, tmp_path, runtime):
    folder = tmp_path / "ngram"
    HashedNgramClassifier(NgramConfig(("neg", "pos"), 64, 2)).save_pretrained(str(folder))
    config = config_from_dict({"tiers": [
        {"model": str(folder), "threshold": 0.9, "runtime": runtime},
        {"model": models["large"]}]})
    with pytest.raises(ConfigError, match=f"runtime: {runtime} apply to transformer"):
        validate_models(config)


def test_export_command_exports_a_configs_onnx_tiers(models, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9, "runtime": "openvino"},
        {"name": "large", "model": models["large"], "runtime": "onnxruntime",
         "quantize": "int8"}]}))
    assert export_main(["--config", str(config)]) == 0
    paths = capsys.readouterr().out.split()
    assert all(os.path.isfile(p) for p in paths)  # before exported_model would make them
    assert paths == [exported_model(models["small"]), exported_model(models["large"], "int8")]


def test_export_command_says_when_a_config_has_nothing_to_export(models, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tiers": [{"model": models["large"]}]}))
    assert export_main(["--config", str(config)]) == 2
    assert "no tier has runtime: onnxruntime" in capsys.readouterr().err


def _variant(runtime, quantize, seconds, bound):
    return RuntimeVariant(runtime, quantize, 0.9, 0.99, bound, seconds)


def test_int8_is_chosen_only_within_its_drop_budget():
    variants = [_variant("torch", None, 3.0, 1.0), _variant("onnxruntime", None, 2.9, 1.0),
                _variant("onnxruntime", "int8", 1.5, 0.4)]
    assert [v.chosen for v in choose_variant(variants, 0.3)] == [False, True, False]
    assert [v.chosen for v in choose_variant(variants, 0.5)] == [False, False, True]


def _calibrate_small_then_deep(models, tmp_path, *flags):
    """calibrate --compare_runtimes (and `flags`) on a small -> deep cascade over 200 short
    labelled texts; (rows, dev file, tuned config, report folder)."""
    words = "good bad movie plot fun dull great awful".split()
    rows = [{"text": " ".join(words[(i * 5 + j) % 8] for j in range(1 + i % 6)),
             "label": ["neg", "pos"][i % 2]} for i in range(200)]
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config, tuned, report = tmp_path / "c.yaml", tmp_path / "tuned.yaml", tmp_path / "report"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["deep"]}]}))
    assert calibrate_main(["--config", str(config), "--dev", str(dev), "--output", str(tuned),
                           "--report", str(report), "--batch_sizes", "8", "--repeats", "1",
                           "--max_accuracy_drop", "20", "--compare_runtimes", *flags]) == 0
    return rows, dev, tuned, report


def test_calibrate_compares_runtimes_and_writes_the_chosen_one(models, tmp_path):
    """Each tier is measured on PyTorch, ONNX Runtime fp32 and int8 and OpenVINO fp32; the
    written config runs the chosen variant, an int8 one only within its drop bound, and runs
    as tuned."""
    rows, dev, tuned, report = _calibrate_small_then_deep(models, tmp_path, "--max_int8_drop",
                                                          "1")
    measured = {t["name"]: t["runtimes"] for t in
                json.loads((report / "report.json").read_text())["tiers"]}
    written = {t.name: t for t in load_config(str(tuned)).tiers}
    for name, variants in measured.items():
        assert [(v["runtime"], v["quantize"]) for v in variants] == [*VARIANTS, OPENVINO]
        chosen = [v for v in variants if v["chosen"]]
        assert len(chosen) == 1
        assert (written[name].runtime, written[name].quantize) == (
            chosen[0]["runtime"], chosen[0]["quantize"])
        for other in variants[1:]:
            assert 0 <= other["drop_bound_points"] and 0 < other["agreement"] <= 1
        if chosen[0]["quantize"]:
            assert chosen[0]["drop_bound_points"] <= 1
    assert "## Runtimes: large" in (report / "report.md").read_text()
    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.predictions == len(rows) and stats.errors == 0


@pytest.mark.parametrize("int8_bound, first, last, budget", [
    (0.2, "int8", "int8", 0.3),  # within both: the last tier's 0.2 comes off the budget
    (0.28, "int8", None, 0.5),  # within --max_int8_drop, not within half the budget
])
def test_an_int8_last_tier_takes_its_bound_from_the_cascades_budget(
        models, monkeypatch, int8_bound, first, last, budget):
    from models.tuning import runtime_choice
    from models.config import CascadeConfig
    from models.operating_points import Policy
    monkeypatch.setattr(runtime_choice, "measure_variants", lambda *args: [
        _variant("torch", None, 3.0, 0.1), _variant("onnxruntime", None, 2.9, 0.1),
        _variant("onnxruntime", "int8", 1.5, int8_bound)])
    config = CascadeConfig(tiers=(TierConfig("a", models["small"], threshold=0.9),
                                  TierConfig("b", models["large"])))
    tuned, policy, measured = runtime_choice.choose_runtimes(
        config, None, None, Policy(max_accuracy_drop=0.5), max_int8_drop=0.3, repeats=1,
        say=lambda message: None)
    assert [t.quantize for t in tuned.tiers] == [first, last]
    assert [t.runtime for t in tuned.tiers] == ["onnxruntime", "onnxruntime"]
    assert policy.max_accuracy_drop == pytest.approx(budget)
    assert set(measured) == {"a", "b"}


@pytest.mark.parametrize("int8_bound, fallback, tiers", [
    (0.4, True, [("a", None), ("b_int8", "int8"), ("b", None)]),  # refused: a tier before
    (0.2, True, [("a", "int8"), ("b", "int8")]),  # chosen: nothing to fall back to
    (0.4, False, [("a", None), ("b", None)]),  # refused, no fallback asked for
])
def test_a_refused_int8_last_tier_can_go_before_itself_as_a_tier(
        models, monkeypatch, int8_bound, fallback, tiers):
    from models.tuning import runtime_choice
    from models.config import CascadeConfig
    from models.operating_points import Policy
    monkeypatch.setattr(runtime_choice, "measure_variants", lambda *args: [
        _variant("torch", None, 3.0, 0.0), _variant("onnxruntime", None, 2.9, 0.0),
        _variant("onnxruntime", "int8", 1.5, int8_bound)])
    config = CascadeConfig(tiers=(
        TierConfig("a", models["small"], threshold=0.9),
        TierConfig("b", models["large"], batch_size=16, audit_rate=0.1)))
    tuned, policy, _ = runtime_choice.choose_runtimes(
        config, None, None, Policy(max_accuracy_drop=1.0), max_int8_drop=0.3, repeats=1,
        say=lambda message: None, int8_fallback=fallback)
    assert [(t.name, t.quantize) for t in tuned.tiers] == tiers
    if len(tiers) == 3:
        copy, last = tuned.tiers[1:]
        assert (copy.model, copy.runtime, copy.batch_size) == (last.model, "onnxruntime", 16)
        assert copy.audit_rate is None and copy.threshold is None
        assert policy.max_accuracy_drop == 1.0  # the last tier stays fp32: the whole budget


def test_calibrate_puts_a_refused_int8_copy_before_the_last_tier_and_the_job_runs(
        models, tmp_path, monkeypatch):
    """Measured for real, but timed as int8 would be on a real model (twice as fast):
    on tiny models ONNX Runtime's per-call cost can make int8 the slower one."""
    from models.tuning import runtime_choice
    measured = runtime_choice.measure_variants
    monkeypatch.setattr(runtime_choice, "measure_variants", lambda *args: [
        dataclasses.replace(v, seconds_per_record=0.5 if v.quantize else 1.0)
        for v in measured(*args)])
    rows, dev, tuned, report = _calibrate_small_then_deep(models, tmp_path, "--max_int8_drop",
                                                          "0", "--int8_fallback")
    written = load_config(str(tuned)).tiers
    fallback = json.loads((report / "report.json").read_text())["int8_fallback"]
    assert fallback["name"] == "large_int8"
    assert "## int8 fallback: large_int8" in (report / "report.md").read_text()
    names = ["small", "large_int8", "large"] if fallback["kept"] else ["small", "large"]
    assert [t.name for t in written] == names
    if fallback["kept"]:
        assert written[1].quantize in ("int8", "int8_attention") and written[2].quantize is None
        assert written[1].model == written[2].model and written[1].threshold is not None
    stats = run_job(["--input", str(dev), "--output", str(tmp_path / "out"),
                     "--config", str(tuned), "--label_field", "label"])
    assert stats.predictions == len(rows) and stats.errors == 0


@pytest.mark.parametrize("flags, message", [
    ([], "--int8_fallback needs --compare_runtimes"),
    (["--compare_runtimes", "--min_speedup", "2"], "works with an accuracy-drop budget"),
    (["--compare_runtimes", "--max_escalation_rate", "0.2"], "works with an accuracy-drop"),
])
def test_int8_fallback_with_flags_it_cannot_serve_says_what_to_change(capsys, flags, message):
    with pytest.raises(SystemExit):
        calibrate_main(["--config", "c.yaml", "--dev", "d.jsonl", "--output", "t.yaml",
                        "--int8_fallback", *flags])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("costs, kept", [
    ({3: 2.0, 2: 1.0}, [0, 2]),  # cheaper without the int8 copy: left out
    ({3: 0.5, 2: 1.0}, [0, 1, 2]),  # cheaper with it: kept
    ({2: 1.0}, [0, 2]),  # no point meets the policy with it
])
def test_calibrate_keeps_the_int8_copy_only_where_the_cascade_is_cheaper_with_it(
        monkeypatch, costs, kept):
    from models.operating_points import NoOperatingPoint, OperatingPoint
    from models.tuning import choice
    from models.tuning.results import Choice

    def choose(configs, *args):
        if len(configs) not in costs:
            raise NoOperatingPoint("no point")
        point = OperatingPoint((0.9,) * (len(configs) - 1), 0.9, (1.0,) * len(configs),
                               costs[len(configs)], 1.0, 0.9)
        return Choice(point, None, None), None

    monkeypatch.setattr(choice, "choose_with_reached_calibration", choose)
    configs = tuple(TierConfig(name, "m") for name in ("a", "b_int8", "b"))
    indices, fallback = choice.tiers_to_keep(configs, [None] * 3, None, [0.0] * 3, None,
                                             fallback=1)
    assert indices == kept and fallback.kept == (kept == [0, 1, 2]) and fallback.name == "b_int8"
    assert (fallback.seconds_with, fallback.seconds_without) == (costs.get(3), costs.get(2))
    assert choice.tiers_to_keep(configs, [None] * 3, None, [0.0] * 3, None,
                                fallback=None) == ([0, 1, 2], None)
