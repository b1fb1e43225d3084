"""Exporting a transformer tier to ONNX, and its int8 variant, once per machine.

The export is a plain `torch.onnx.export` of the classifier (token ids in, logits out, any
number of texts and tokens), and int8 is ONNX Runtime's quantisation of that file. Both are
cached beside the model cache (models/model_cache.py `derived_file`) under a hash of the
model's config and weights and of this recipe, so a retrained model is exported anew and an
unchanged one never again: `beam-cascade export` makes them ahead of a job, and a worker
that finds none makes them itself on first load (once per machine, under a lock).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from typing import Iterator

import torch
from torch import nn

from models.model_cache import derived_file
from models.names import QUANTIZATION_SCHEMES
from models.onnx_engines import new_session
from models.weights import check_weights

RECIPE = "dynamo-opset18-logits-v1"  # change it when the export or quantisation steps change
OPSET = 18
KIND = "onnx"
FP32_FILE = "model.onnx"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")  # weights, sharded or not
TOLERANCE = 1e-3  # largest difference of an exported graph's logits from PyTorch's
CHECK_TEXTS = ("an example", "a somewhat longer example text to check the export with",
               "short")


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The exporter's and the quantiser's notes (skipped torchvision operators, tensors whose
    type shape inference leaves open) are about their internals, not the user's model: only
    their errors are shown while they run."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class ExportError(ValueError):
    """A tier that cannot be exported to ONNX; the message says what to do instead."""


def exported_model(folder: str, quantize: str | None = None,
                   allow_pickle_weights: bool = False, trust_remote_code: bool = False) -> str:
    """The path of the tier's ONNX file (int8 when `quantize` names a scheme), exported now
    when this machine has none for these weights."""
    if quantize is not None and quantize not in QUANTIZATION_SCHEMES:
        raise ExportError(f"unknown quantisation {quantize!r}; use one of {QUANTIZATION_SCHEMES}")
    key = weights_key(folder)
    with _quiet_logs():
        fp32 = derived_file(KIND, key, FP32_FILE, lambda path: export_onnx(
            folder, path, allow_pickle_weights, trust_remote_code))
        if quantize is None:
            return fp32
        return derived_file(KIND, key, f"model-{quantize}.onnx",
                            lambda path: quantize_onnx(fp32, path, quantize))


def weights_key(folder: str) -> str:
    """A hash of the recipe, config.json and the weights' bytes: what the export depends on."""
    digest = hashlib.sha256(RECIPE.encode())
    names = sorted(n for n in os.listdir(folder)
                   if n == "config.json" or n.endswith(WEIGHT_SUFFIXES))
    for name in names:
        digest.update(name.encode())
        with open(os.path.join(folder, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


class _LogitsOnly(nn.Module):
    """The classifier with positional inputs in the tokenizer's order and logits out: what
    the exporter traces (a model output object is not a tensor)."""

    def __init__(self, model: nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def export_onnx(folder: str, path: str, allow_pickle_weights: bool = False,
                trust_remote_code: bool = False) -> None:
    """Writes the checkpoint at `folder` as an ONNX graph to `path`, checked against PyTorch.

    ONNX Runtime's transformer optimiser fuses each layer's GELU and residual layer norms
    into single kernels; the fused graph is kept only when its logits match PyTorch's on
    example texts, else the plain export is (checked too), and a graph that matches neither
    is refused.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    pickle_weights = check_weights(folder, allow_pickle_weights)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, trust_remote_code=trust_remote_code, use_safetensors=not pickle_weights,
        attn_implementation="eager").eval()  # plain operators, what every opset has
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    names = list(tokenizer.model_input_names)
    example = tokenizer(list(CHECK_TEXTS), padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**{name: example[name] for name in names}).logits.numpy()
    plain = path + ".plain"
    _trace(model, names, example, plain, folder)
    feed = {name: example[name].numpy() for name in names}
    for candidate in (_fused(plain, model.config), plain):
        if candidate and _max_difference(candidate, feed, expected) <= TOLERANCE:
            os.replace(candidate, path)
            return
    raise ExportError(f"{folder!r}: its ONNX export gives other logits than PyTorch (by more "
                      f"than {TOLERANCE}); run this tier with runtime: torch")


def _trace(model: nn.Module, names: list[str], example, path: str, folder: str) -> None:
    """torch.export's ONNX exporter (the TorchScript one is deprecated), any number of texts
    and tokens, weights inside the one file."""
    dynamic = torch.export.Dim.DYNAMIC
    try:
        torch.onnx.export(_LogitsOnly(model, names).eval(),
                          tuple(example[name] for name in names), path, dynamo=True,
                          opset_version=OPSET, input_names=names, output_names=["logits"],
                          dynamic_shapes={"inputs": tuple({0: dynamic, 1: dynamic}
                                                          for _ in names)},
                          external_data=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; say which tier
        raise ExportError(f"{folder!r} cannot be exported to ONNX ({type(e).__name__}: {e}); "
                          "run this tier with runtime: torch") from None


def _fused(plain: str, config) -> str | None:
    """The graph with ONNX Runtime's BERT-family fusions, or None where they do not apply."""
    from onnxruntime.transformers.optimizer import optimize_model
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not heads or not hidden:
        return None
    try:
        optimized = optimize_model(plain, model_type="bert", num_heads=heads,
                                   hidden_size=hidden)
    except Exception:  # noqa: BLE001 - an architecture the optimiser does not know
        return None
    fused = plain + ".fused"
    optimized.save_model_to_file(fused)
    return fused


def _max_difference(onnx_path: str, feed: dict, expected) -> float:
    try:
        logits = new_session(onnx_path).run(None, feed)[0]
    except Exception:  # noqa: BLE001 - a fused graph ONNX Runtime cannot run
        return float("inf")
    return float(abs(logits - expected).max())


def quantize_onnx(fp32_path: str, path: str, scheme: str) -> None:
    """Writes the int8 variant of the ONNX file at `fp32_path` to `path`: the weights of the
    chosen matrix multiplications in int8, one scale per output channel, activations
    quantised per batch as they come (no calibration data needed on the worker)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic  # only for int8
    graph_model = onnx.load(fp32_path)
    del graph_model.graph.value_info[:]  # the exporter's shapes, stale once kernels are fused
    quantize_dynamic(graph_model, path, weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_quantize=int8_nodes(graph_model, scheme),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def int8_nodes(graph_model, scheme: str) -> list[str]:
    """The nodes a scheme runs in int8: every matrix multiplication and fused attention for
    "int8", the attention's only for "int8_attention"."""
    nodes = [node for node in graph_model.graph.node if node.op_type in ("MatMul", "Attention")]
    if scheme == "int8_attention":
        nodes = [n for n in nodes if n.op_type == "Attention" or ".attention." in module_scope(n)]
    return [n.name for n in nodes]


def module_scope(node) -> str:
    """The PyTorch module a node was exported from (e.g. `...layer.0.attention.self.query`),
    as the exporter records it."""
    return next((p.value for p in node.metadata_props
                 if p.key == "pkg.torch.onnx.name_scopes"), node.name)
