"""Loading tier models from local Hugging Face checkpoint folders, safely and checked up front.

`inspect_checkpoint` reads only `config.json`, so a launcher can refuse a bad tier before any
worker starts; `TierModel.load` does the real `from_pretrained` on the worker.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as transformers_logging

from models.ngram import (MODEL_TYPE, HashedNgramClassifier, NgramConfig, NgramTier,
                          is_ngram_checkpoint)

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


class CheckpointError(ValueError):
    """A tier folder that cannot be used as a sequence-classification checkpoint."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What the launcher needs to know about a tier before the job starts."""

    path: str
    labels: tuple[str, ...]
    model_type: str
    max_length: int | None  # longest input in tokens; None when unlimited
    pickle_weights: bool


def inspect_checkpoint(path: str, allow_pickle_weights: bool = False,
                       trust_remote_code: bool = False) -> CheckpointInfo:
    """Checks that `path` holds a sequence-classification checkpoint and returns its labels.

    Raises CheckpointError naming the folder and what is wrong with it. Python code shipped
    in the folder (config.json's `auto_map`) is never imported unless `trust_remote_code`.
    """
    if not os.path.isdir(path):
        raise CheckpointError(f"model folder {path!r} does not exist or is not a folder")
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise CheckpointError(
            f"{path!r} has no config.json: give a Hugging Face checkpoint folder "
            "(saved with save_pretrained)")
    try:
        with open(config_path, encoding="utf-8") as f:
            raw = json.load(f)
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path!r}: config.json is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path!r}: config.json holds a {type(raw).__name__}, not an "
                              "object; give a Hugging Face checkpoint folder")
    if raw.get("auto_map") and not trust_remote_code:
        raise CheckpointError(
            f"{path!r} loads Python code from the folder (config.json auto_map: "
            f"{sorted(raw['auto_map'])}), which beam-cascade never runs by default; set "
            "trust_remote_code: true for this tier only if you trust who wrote the folder")
    try:
        ngram = NgramConfig.from_json(raw) if is_ngram_checkpoint(raw) else None
        config = None if ngram else AutoConfig.from_pretrained(
            path, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError) as e:
        raise CheckpointError(f"{path!r}: config.json cannot be read: {e}") from e
    if ngram:
        return CheckpointInfo(path, ngram.labels, MODEL_TYPE, None,
                              _check_weights(path, allow_pickle_weights=False))
    architectures = raw.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise CheckpointError(
            f"{path!r} is not a sequence-classification checkpoint (architectures: "
            f"{architectures or 'none'}); fine-tune it with a classification head first "
            "(e.g. `beam-cascade train`)")
    return CheckpointInfo(
        path=path,
        labels=tuple(str(config.id2label[i]) for i in range(config.num_labels)),
        model_type=config.model_type,
        max_length=_tokenizer_max_length(path, trust_remote_code) or getattr(
            config, "max_position_embeddings", None),
        pickle_weights=_check_weights(path, allow_pickle_weights),
    )


def _tokenizer_max_length(path: str, trust_remote_code: bool) -> int | None:
    """Loads the tokenizer (cheap) to check it is a fast one; returns its length limit.

    The tokenizer's model_max_length already allows for special position offsets (RoBERTa's
    514 positions hold 512 tokens), unlike the config's max_position_embeddings.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError) as e:
        raise CheckpointError(f"{path!r}: its tokenizer cannot be loaded: {e}") from e
    if not tokenizer.is_fast:
        raise CheckpointError(
            f"{path!r}: no fast tokenizer (tokenizer.json) could be built; save the "
            "tokenizer with a recent transformers so that tokenizer.json is present")
    limit = tokenizer.model_max_length
    return limit if limit < 10 ** 6 else None  # transformers' "no limit" is a huge int


def _check_weights(path: str, allow_pickle_weights: bool) -> bool:
    """Returns whether the weights are pickle-based; refuses them unless explicitly allowed."""
    files = set(os.listdir(path))
    if files & set(SAFE_WEIGHTS):
        return False
    if files & set(PICKLE_WEIGHTS):
        if allow_pickle_weights:
            return True
        raise CheckpointError(
            f"{path!r} holds only pickle weights (pytorch_model.bin), which can run arbitrary "
            "code when loaded; convert them to safetensors, or set allow_pickle_weights: true "
            "for this tier if you trust the folder")
    raise CheckpointError(f"{path!r} has no model weights (expected {SAFE_WEIGHTS[0]})")


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when a GPU is visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tier(path: str, max_length: int = 128, batch_size: int = 64, device: str = "auto",
              allow_pickle_weights: bool = False, trust_remote_code: bool = False
              ) -> "TierModel | NgramTier":
    """Loads any kind of tier folder: a transformer checkpoint or a hashed n-gram model."""
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        if is_ngram_checkpoint(json.load(f)):
            return NgramTier(HashedNgramClassifier.from_pretrained(path))
    return TierModel.load(path, max_length, batch_size, device, allow_pickle_weights,
                          trust_remote_code)


class TierModel:
    """A transformer sequence classifier and its fast tokenizer, for batched inference."""

    def __init__(self, model, tokenizer, labels: tuple[str, ...], max_length: int,
                 batch_size: int, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device

    @classmethod
    def load(cls, path: str, max_length: int = 128, batch_size: int = 64, device: str = "auto",
             allow_pickle_weights: bool = False, trust_remote_code: bool = False
             ) -> "TierModel":
        """Loads the checkpoint and tokenizer at `path`; runs code from the folder only when
        `trust_remote_code`.

        The full checks (`inspect_checkpoint`) ran on the launcher; a worker only re-checks
        the weights format, so the tokenizer is not loaded twice.
        """
        pickle_weights = _check_weights(path, allow_pickle_weights)
        transformers_logging.disable_progress_bar()  # one bar per worker load is just noise
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        torch_device = resolve_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust_remote_code, use_safetensors=not pickle_weights)
        model.to(torch_device).eval()
        labels = tuple(str(model.config.id2label[i]) for i in range(model.config.num_labels))
        return cls(model, tokenizer, labels, max_length, batch_size, torch_device)

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        """Classifies `texts` (in their order) in forward passes of at most `batch_size`.

        The texts are sorted by length first and each pass is padded only to its own longest
        text, so little compute goes to padding (on SST-2's dev and test sentences a loop
        sorted by length ran 1.55x faster than one in input order: bench/results/sst2.md).
        Character length stands in for token length, which saves tokenizing twice.
        """
        lengths = [len(t) + (len(text_pairs[i]) if text_pairs else 0)
                   for i, t in enumerate(texts)]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        logits = torch.empty(len(texts), len(self.labels))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            encoded = self.tokenizer(
                [texts[i] for i in chunk], [text_pairs[i] for i in chunk] if text_pairs else None,
                truncation=True, max_length=self.max_length, padding="longest",
                return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits[chunk] = self.model(**encoded).logits.float().cpu()
        return logits
