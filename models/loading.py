"""Loading tier models from Hugging Face checkpoint folders, safely and checked up front.

`inspect_checkpoint` reads only `config.json` and the tokenizer, so a launcher can refuse a
bad tier before any worker starts; `load_tier` does the real `from_pretrained` on the worker.
Both take a local folder or any fsspec URL (gs://, s3://, ...), copied to a local cache
first (models/model_cache.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as transformers_logging

from models.cpus import available_cpus
from models.early_exit import (EXIT_LAYERS_KEY, HEADS_FILE, EarlyExit, MultiExitClassifier,
                               has_exits)
from models.layerwise import EARLY_EXIT, TOKEN_DROPPING, check_layerwise
from models.model_cache import ModelFolderError, local_model_folder
from models.names import EXPORTED_RUNTIMES
from models.ngram import (MODEL_TYPE, HashedNgramClassifier, NgramConfig, NgramTier,
                          check_scoring_settings, is_ngram_checkpoint)
from models.tier import Tier
from models.token_dropping import forward_dropping_tokens
from models.transformer_tier import TransformerTier
from models.weights import (PICKLE_WEIGHTS, CheckpointError, WeightsError,
                            check_weights, check_weights_fit, checkpoint_shapes,
                            safetensors_shapes)
from models.word_cnn import PIECES_FILE, WEIGHTS_FILE, WordCNN, WordCnnConfig

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
MIN_VOCABULARY = 20  # fewer tokens than this is no tokenizer at all
MIN_VOCABULARY_SHARE = 0.5  # a tokenizer covering less of the embedding table is another's


@dataclass(frozen=True)
class CheckpointInfo:
    """What the launcher needs to know about a tier before the job starts."""

    path: str
    labels: tuple[str, ...]
    model_type: str
    max_length: int | None  # longest input in tokens; None when unlimited
    pickle_weights: bool
    exit_layers: tuple[int, ...] = ()  # a multi-exit model's exits (models/early_exit.py)
    trained_on_pairs: bool | None = None  # from `beam-cascade train`'s TRAINING.json; else None


def inspect_checkpoint(path: str, allow_pickle_weights: bool = False,
                       trust_remote_code: bool = False) -> CheckpointInfo:
    """Checks that `path` holds a sequence-classification checkpoint and returns its labels.

    Raises CheckpointError naming the folder and what is wrong with it. Python code shipped
    in the folder (config.json's `auto_map`) is never imported unless `trust_remote_code`.
    """
    try:
        path = local_model_folder(path)
    except ModelFolderError as e:
        raise CheckpointError(str(e)) from None
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
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path!r}: config.json cannot be read: {e!r}") from e
    if ngram:
        check_weights(path, allow_pickle_weights=False)
        _check_shapes(path, lambda: HashedNgramClassifier(ngram))
        check_scoring_settings(path, ngram)
        if ngram.word_cnn:
            _check_word_cnn(path, ngram.word_cnn, len(ngram.labels))
        return CheckpointInfo(path, ngram.labels, MODEL_TYPE, None, pickle_weights=False,
                              trained_on_pairs=_trained_on_pairs(path))
    architectures = raw.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise CheckpointError(
            f"{path!r} is not a sequence-classification checkpoint (architectures: "
            f"{architectures or 'none'}); fine-tune it with a classification head first "
            "(e.g. `beam-cascade train`)")
    pickle_weights = check_weights(path, allow_pickle_weights)
    _check_shapes(path, lambda: AutoModelForSequenceClassification.from_config(
        config, trust_remote_code=trust_remote_code), pickle_weights)
    return CheckpointInfo(
        path=path,
        labels=tuple(str(config.id2label[i]) for i in range(config.num_labels)),
        model_type=config.model_type,
        max_length=_check_tokenizer(path, config, trust_remote_code) or getattr(
            config, "max_position_embeddings", None),
        pickle_weights=pickle_weights,
        exit_layers=_exit_layers(path, raw, config.model_type),
        trained_on_pairs=_trained_on_pairs(path),
    )


def _check_word_cnn(path: str, config: WordCnnConfig, labels: int) -> None:
    """An n-gram folder whose config.json names a word CNN must hold its weights, of the
    shapes the config gives, and a word-piece tokenizer whose ids fit its piece table."""
    missing = [name for name in (WEIGHTS_FILE, PIECES_FILE)
               if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise CheckpointError(f"{path!r}: config.json names a word CNN but {missing} are "
                              "missing; copy the whole folder `beam-cascade train "
                              "--word_vectors` wrote")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in
                    WordCNN(config, labels, config.width).state_dict().items()}
    try:
        check_weights_fit(path, safetensors_shapes(os.path.join(path, WEIGHTS_FILE)),
                          expected)
        pieces = Tokenizer.from_file(os.path.join(path, PIECES_FILE)).get_vocab_size()
    except WeightsError as e:
        raise CheckpointError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception
        raise CheckpointError(f"{path!r}: {PIECES_FILE} is not a tokenizer file: {e}; copy "
                              "the whole folder `beam-cascade train --word_vectors` "
                              "wrote") from None
    if not MIN_VOCABULARY <= pieces <= config.pieces:
        raise CheckpointError(f"{path!r}: {PIECES_FILE} has {pieces} word pieces but the word "
                              f"CNN's table has {config.pieces} rows; the tokenizer belongs to "
                              "another model. Copy the whole folder `beam-cascade train "
                              "--word_vectors` wrote")


def _trained_on_pairs(path: str) -> bool | None:
    """Whether `beam-cascade train` trained the folder's model on text pairs (TRAINING.json's
    `text_pairs`); None for a model trained elsewhere, or before train recorded it."""
    try:
        with open(os.path.join(path, "TRAINING.json"), encoding="utf-8") as f:
            value = json.load(f).get("text_pairs")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def _check_shapes(path: str, architecture: Callable[[], torch.nn.Module],
                  pickle_weights: bool = False) -> None:
    """Refuses weights that are truncated, lack a tensor of the architecture, or hold one of
    another shape. The architecture is built on the meta device: shapes, no memory."""
    try:
        with torch.device("meta"):
            model = architecture()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path!r}: no sequence-classification model can be built from "
                              f"its config.json: {type(e).__name__}: {e}") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    try:
        saved = _pickle_shapes(path) if pickle_weights else checkpoint_shapes(path)
        if saved is not None:
            check_weights_fit(path, saved, expected, getattr(model, "base_model_prefix", ""))
    except WeightsError as e:
        raise CheckpointError(str(e)) from None


def _pickle_shapes(path: str) -> dict[str, tuple[int, ...]] | None:
    """Shapes in pytorch_model.bin (trusted by allow_pickle_weights), memory-mapped; None
    for sharded pickle weights, which are not checked."""
    weights = os.path.join(path, PICKLE_WEIGHTS[0])
    if not os.path.isfile(weights):
        return None
    try:
        state = torch.load(weights, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling error means a damaged file
        raise WeightsError(f"{weights!r} cannot be read: {type(e).__name__}: {e}") from None
    return {name: tuple(t.shape) for name, t in state.items()}


def _exit_layers(path: str, raw: dict, model_type: str) -> tuple[int, ...]:
    """A multi-exit checkpoint's exit layers; () for a plain classifier."""
    layers = raw.get(EXIT_LAYERS_KEY) or ()
    if layers and not os.path.isfile(os.path.join(path, HEADS_FILE)):
        raise CheckpointError(
            f"{path!r}: config.json lists exit layers {layers} but {HEADS_FILE} is missing; "
            "copy the whole folder that `beam-cascade train --exits` wrote")
    if layers:
        try:
            check_layerwise(model_type, EARLY_EXIT)
        except CheckpointError as e:
            raise CheckpointError(f"{path!r}: config.json lists exit layers {layers}, but "
                                  f"{e}") from None
    return tuple(layers)


def _check_tokenizer(path: str, config, trust_remote_code: bool) -> int | None:
    """Loads the tokenizer (cheap), checks that it is a fast one whose vocabulary fits the
    model's embedding table, and returns its length limit.

    Without tokenizer files transformers builds an empty-vocabulary tokenizer that maps
    every text to the same ids: a tier that gives one class for everything. The tokenizer's
    model_max_length already allows for special position offsets (RoBERTa's 514 positions
    hold 512 tokens), unlike the config's max_position_embeddings.
    """
    if not set(os.listdir(path)) & set(TOKENIZER_FILES):
        raise CheckpointError(
            f"{path!r} has no tokenizer files (one of {list(TOKENIZER_FILES)}); save the "
            "tokenizer into the folder with tokenizer.save_pretrained(folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError) as e:
        raise CheckpointError(f"{path!r}: its tokenizer cannot be loaded: {e}") from e
    if not tokenizer.is_fast:
        raise CheckpointError(
            f"{path!r}: no fast tokenizer (tokenizer.json) could be built; save the "
            "tokenizer with a recent transformers so that tokenizer.json is present")
    _check_vocabulary(path, len(tokenizer), getattr(config, "vocab_size", None))
    limit = tokenizer.model_max_length
    return limit if limit < 10 ** 6 else None  # transformers' "no limit" is a huge int


def _check_vocabulary(path: str, tokens: int, embeddings: int | None) -> None:
    """The tokenizer must be plausible and belong to the model: no id past the embedding
    table (a crash on the worker), and not a small fraction of it (another model's)."""
    if tokens < MIN_VOCABULARY:
        raise CheckpointError(
            f"{path!r}: the tokenizer has only {tokens} tokens, which cannot be a real "
            "vocabulary; save the model's own tokenizer into the folder")
    if embeddings and not embeddings * MIN_VOCABULARY_SHARE <= tokens <= embeddings:
        raise CheckpointError(
            f"{path!r}: the tokenizer has {tokens} tokens but the model's embedding table "
            f"has {embeddings} rows (config.json vocab_size); the tokenizer belongs to "
            "another model. Save the tokenizer the model was trained with into the folder")


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

        The full checks (`inspect_checkpoint`) ran on the launcher; a worker only re-checks
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
