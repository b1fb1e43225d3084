"""A transformer tier run from its exported ONNX graph by ONNX Runtime (`runtime:
onnxruntime`) or OpenVINO (`runtime: openvino`, models/onnx_engines.py): same tokenizer, same
sorted passes, same outputs as the PyTorch tier.

ONNX Runtime fuses the encoder's GELU and residual layer norms into kernels eager PyTorch
does not have, and runs int8 matrix multiplications: on this project's 2-core machines the
reference MiniLM-L6 tier ran 1.15x faster in fp32 at identical predictions, 1.44x with int8
attention and 2.39x with int8 everywhere (bench/results/runtimes.md). The session is
made once per worker process, with the threads the process gave torch and ONNX Runtime's
waiting threads following the same policy as OpenMP's (models/cpus.py). OpenVINO runs the
fp32 graph only: ONNX Runtime's int8 graph ran at half of PyTorch's speed on it.
"""
from __future__ import annotations

import torch

from models.onnx_export import CHECK_TEXTS, TOLERANCE, exported_model
from models.onnx_engines import ENGINES, OnnxRuntimeGraph, import_openvino
from models.transformer_tier import TransformerTier
from models.weights import CheckpointError, check_weights


class OnnxTier(TransformerTier):
    """A sequence classifier's ONNX graph on an engine (`ENGINES`), and its tokenizer (what
    every runtime shares: models/transformer_tier.py). Exits are not exported: early exit
    runs on the torch runtime."""

    def __init__(self, graph, tokenizer, labels: tuple[str, ...], max_length: int,
                 batch_size: int, depth: int):
        super().__init__(tokenizer, labels, max_length, batch_size, depth)
        self.graph = graph

    @classmethod
    def load(cls, path: str, max_length: int = 128, batch_size: int = 64,
             quantize: str | None = None, allow_pickle_weights: bool = False,
             trust_remote_code: bool = False, runtime: str = "onnxruntime") -> "OnnxTier":
        """The tier's engine over its cached export (made now if this machine has none)."""
        from transformers import AutoConfig, AutoTokenizer
        if runtime == "openvino":
            import_openvino()  # before the export, which is minutes of work for nothing
        check_weights(path, allow_pickle_weights)
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        onnx_path = exported_model(path, quantize, allow_pickle_weights, trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        labels = tuple(str(config.id2label[i]) for i in range(config.num_labels))
        try:
            graph = ENGINES[runtime](onnx_path)
        except Exception as e:  # noqa: BLE001 - a damaged cached file, an unknown operator
            raise CheckpointError(f"{path!r}: {runtime} cannot load its export {onnx_path!r} "
                                  f"({type(e).__name__}: {e}); delete that file to export "
                                  "again, or run the tier with runtime: torch") from None
        if runtime != "onnxruntime":
            _check_against_onnxruntime(graph, onnx_path, tokenizer, path, runtime)
        return cls(graph, tokenizer, labels, max_length, batch_size,
                   getattr(config, "num_hidden_layers", 0))

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        if not texts:
            return torch.empty(0, len(self.labels))
        return self._tokenized_passes(texts, text_pairs, self._forward, tensors="np")[0]

    def logits_and_exits(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits, and every text through all `depth` layers."""
        return self.logits(texts, text_pairs), torch.full((len(texts),), self.depth)

    def exit_logits(self, texts: list[str], text_pairs: list[str] | None = None
                    ) -> torch.Tensor:
        return self.logits(texts, text_pairs).unsqueeze(0)

    def _forward(self, encoded) -> tuple[torch.Tensor]:
        feed = {name: encoded[name].astype("int64", copy=False)
                for name in self.graph.input_names}
        return (torch.from_numpy(self.graph(feed)),)


def _check_against_onnxruntime(graph, onnx_path: str, tokenizer, path: str,
                               runtime: str) -> None:
    """Another engine compiles the graph its own way (and meets ONNX Runtime's fused
    operators in it); its logits on the export's check texts must be ONNX Runtime's, which
    the export checked against PyTorch's, or the tier is refused."""
    example = tokenizer(list(CHECK_TEXTS), padding=True, return_tensors="np")
    feed = {name: example[name].astype("int64", copy=False) for name in graph.input_names}
    difference = float(abs(graph(feed) - OnnxRuntimeGraph(onnx_path)(feed)).max())
    if difference > TOLERANCE:
        raise CheckpointError(f"{path!r}: {runtime} gives other logits than PyTorch on example "
                              f"texts (by {difference:.3g}, more than {TOLERANCE}); run this "
                              "tier with runtime: onnxruntime")
