"""Loading tier models from Hugging Face checkpoint folders, safely, on the worker.

`load_tier` does the real `from_pretrained` of any kind of tier folder (the launcher checked
it first: models/checkpoint.py `inspect_checkpoint`); `load_configured_tier` and
`load_configured_router` load what a config's tier names. A folder may be local or any
fsspec URL (gs://, s3://, ...), copied to a local cache first (models/model_cache.py).
"""
from __future__ import annotations

import json
import os
from typing import Callable

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as transformers_logging

from models.config import TierConfig
from models.cpus import available_cpus
from models.early_exit import EarlyExit, MultiExitClassifier, has_exits
from models.layerwise import TOKEN_DROPPING, check_layerwise
from models.learned_deferral import Router, load_router
from models.model_cache import local_model_folder
from models.names import EXPORTED_RUNTIMES
from models.ngram import NgramTier, is_ngram_checkpoint
from models.tier import Tier
from models.token_dropping import forward_dropping_tokens
from models.transformer_tier import TransformerTier
from models.weights import CheckpointError, check_weights


def set_torch_threads(threads: int | None, workers_per_machine: int) -> int:
    """Sets torch's intra-op threads for this process and returns the number.

    Every worker on a machine runs its own forward passes at once, so `threads` defaults to
    the CPUs this process may use (affinity and cgroup quota, models/cpus.py) shared out
    over its workers: more threads than cores in all makes the workers wait on each other
    (docs/deployment.md, sizing threads).
    """
    if threads is None:
        threads = max(1, available_cpus() // max(1, workers_per_machine))
    torch.set_num_threads(threads)
    return threads


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when a GPU is visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tier(path: str, max_length: int = 128, batch_size: int = 64, device: str = "auto",
              allow_pickle_weights: bool = False, trust_remote_code: bool = False,
              early_exit: EarlyExit | None = None, quantize: str | None = None,
              keep_tokens: tuple[float, ...] | None = None, runtime: str = "torch") -> Tier:
    """Loads any kind of tier folder, local or a URL: a transformer checkpoint or a hashed
    n-gram model; a transformer on PyTorch, or its exported graph on ONNX Runtime or OpenVINO
    (`runtime`, models/names.py)."""
    path = local_model_folder(path)
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        if is_ngram_checkpoint(json.load(f)):
            return NgramTier.load(path)
    if quantize and runtime != "onnxruntime":
        raise CheckpointError(f"{path!r}: int8 ({quantize}) runs on ONNX Runtime; set "
                              "runtime: onnxruntime for this tier, or drop quantize")
    if runtime in EXPORTED_RUNTIMES:
        if early_exit is not None or keep_tokens is not None:
            raise CheckpointError(f"{path!r}: early exit and token dropping run on runtime: "
                                  "torch only; use one or the other")
        from models.onnx_tier import OnnxTier  # its engine loads only for such tiers
        return OnnxTier.load(path, max_length, batch_size, quantize, allow_pickle_weights,
                             trust_remote_code, runtime)
    return TierModel.load(path, max_length, batch_size, device, allow_pickle_weights,
                          trust_remote_code, early_exit, keep_tokens)


def load_configured_tier(tier: TierConfig, batch_size: int | None = None) -> Tier:
    """The tier's model as the pipeline runs it, made from its ModelSpec alone, with forward
    passes of `batch_size` (default: the tier's)."""
    spec = tier.model_spec
    early_exit = None if spec.exit_threshold is None else EarlyExit(
        spec.exit_threshold, spec.exit_temperatures or (), spec.confidence)
    return load_tier(spec.model, max_length=spec.max_length,
                     batch_size=batch_size or spec.batch_size, device=spec.device,
                     allow_pickle_weights=spec.allow_pickle_weights,
                     trust_remote_code=spec.trust_remote_code, early_exit=early_exit,
                     quantize=spec.quantize, keep_tokens=spec.keep_tokens,
                     runtime=spec.runtime)


def load_configured_router(tier: TierConfig) -> Router | None:
    """The learned router the tier routes by (confidence: learned), or None for a
    probability measure."""
    return None if tier.router is None else load_router(tier.router)


class TierModel(TransformerTier):
    """A transformer sequence classifier and its fast tokenizer, for batched inference on
    PyTorch (what every runtime shares: models/transformer_tier.py).

    A multi-exit checkpoint also gets its inner exits (`exits`); with `early_exit` set, rows
    leave the forward pass at the first confident exit. With a length configuration
    (`keep_tokens`: after layer i the share keep_tokens[i-1] of each text's most attended
    tokens go on), later layers run on fewer tokens. These run settings are fixed when the
    TierModel is made; `with_settings` makes another over the same loaded network.
    """

    def __init__(self, model, tokenizer, labels: tuple[str, ...], max_length: int,
                 batch_size: int, device: torch.device,
                 exits: MultiExitClassifier | None = None,
                 early_exit: EarlyExit | None = None,
                 keep_tokens: tuple[float, ...] | None = None):
        if early_exit is not None and exits is None:
            raise CheckpointError("this model has no inner exits, so early exit cannot apply; "
                                  "train one with `beam-cascade train --exits 2,4,6`")
        if keep_tokens is not None and early_exit is not None:
            raise CheckpointError("token dropping and early exit in one tier are not "
                                  "supported yet; use one of them per tier")
        if keep_tokens is not None:
            # refuses other architectures now, not on every batch
            check_layerwise(model.config.model_type, TOKEN_DROPPING)
        super().__init__(tokenizer, labels, max_length, batch_size,
                         model.config.num_hidden_layers)
        self.model = model
        self.device = device
        self.exits = exits
        self.early_exit = early_exit
        self.keep_tokens = keep_tokens

    def with_settings(self, **settings) -> "TierModel":
        """The same loaded network and tokenizer with other run settings (`batch_size`,
        `early_exit`, `keep_tokens`): calibrate and the benchmarks compare settings without
        loading the model again, and no caller changes a model another one holds."""
        current = {"batch_size": self.batch_size, "early_exit": self.early_exit,
                   "keep_tokens": self.keep_tokens}
        unknown = set(settings) - set(current)
        if unknown:
            raise TypeError(f"unknown run settings {sorted(unknown)}; known: {sorted(current)}")
        current.update(settings)
        return TierModel(self.model, self.tokenizer, self.labels, self.max_length,
                         current["batch_size"], self.device, self.exits,
                         current["early_exit"], current["keep_tokens"])

    @classmethod
    def load(cls, path: str, max_length: int = 128, batch_size: int = 64, device: str = "auto",
             allow_pickle_weights: bool = False, trust_remote_code: bool = False,
             early_exit: EarlyExit | None = None,
             keep_tokens: tuple[float, ...] | None = None) -> "TierModel":
        """Loads the checkpoint and tokenizer at `path`; runs code from the folder only when
        `trust_remote_code` (int8 runs on ONNX Runtime: models/onnx_tier.py).

        The full checks (models/checkpoint.py) ran on the launcher; a worker only re-checks
        the weights format, so the tokenizer is not loaded twice.
        """
        pickle_weights = check_weights(path, allow_pickle_weights)
        transformers_logging.disable_progress_bar()  # one bar per worker load is just noise
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        torch_device = resolve_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust_remote_code, use_safetensors=not pickle_weights)
        model.to(torch_device).eval()
        exits = MultiExitClassifier.from_model(model, path) if has_exits(model.config) else None
        labels = tuple(str(model.config.id2label[i]) for i in range(model.config.num_labels))
        try:
            return cls(model, tokenizer, labels, max_length, batch_size, torch_device, exits,
                       early_exit, keep_tokens)
        except CheckpointError as e:
            raise CheckpointError(f"{path!r}: {e}") from None

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        """Classifies `texts` (in their order); see `logits_and_exits`."""
        return self.logits_and_exits(texts, text_pairs)[0]

    def logits_and_exits(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each text's logits and the number of encoder layers it went through (fewer than
        the model's depth when it left at an early exit; with early exit the logits are
        already divided by that exit's temperature)."""
        if not texts:
            return torch.empty(0, len(self.labels)), torch.empty(0, dtype=torch.long)
        if self.early_exit and self.exits:
            return self._sorted_passes(texts, text_pairs, lambda encoded: self.exits.early_exit(
                encoded, self.early_exit))
        if self.keep_tokens is not None:
            logits = self.logits_and_costs(texts, text_pairs, self.keep_tokens)[0]
            return logits, torch.full((len(texts),), self.depth)
        return self._sorted_passes(texts, text_pairs, lambda encoded: (
            self.model(**encoded).logits,
            torch.full((len(encoded["input_ids"]),), self.depth)))

    def logits_and_costs(self, texts: list[str], text_pairs: list[str] | None,
                         keep: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits with the length configuration `keep`, and each text's token-layers."""
        return self._sorted_passes(texts, text_pairs, lambda encoded: forward_dropping_tokens(
            self.model, encoded, keep))

    def exit_logits(self, texts: list[str], text_pairs: list[str] | None = None
                    ) -> torch.Tensor:
        """Every exit's raw logits, shape (exits, texts, labels), for calibration."""
        network = self.exits
        if network is None:
            return self.logits(texts, text_pairs).unsqueeze(0)
        return self._sorted_passes(texts, text_pairs, lambda encoded: (
            torch.stack(network.exit_logits(encoded), dim=1),))[0].transpose(0, 1)

    def _sorted_passes(self, texts: list[str], text_pairs: list[str] | None,
                       forward: Callable[[dict], tuple[torch.Tensor, ...]]
                       ) -> tuple[torch.Tensor, ...]:
        """`forward` on this tier's device, without autograd, over the texts' passes."""
        def on_device(encoded) -> tuple[torch.Tensor, ...]:
            with torch.inference_mode():
                return forward(encoded.to(self.device))
        return self._tokenized_passes(texts, text_pairs, on_device)
