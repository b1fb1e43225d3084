"""A tier folder checked before any worker loads it (`inspect_checkpoint`).

It reads `config.json`, the tokenizer and the shapes of the weights (held against the
architecture built on the meta device: shapes, no memory), so a launcher can refuse a bad
tier before the job starts; models/loading.py `load_tier` does the real `from_pretrained` on
the worker. Both take a local folder or any fsspec URL (gs://, s3://, ...), copied to a
local cache first (models/model_cache.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from models.early_exit import EXIT_LAYERS_KEY, HEADS_FILE
from models.layerwise import EARLY_EXIT, check_layerwise
from models.model_cache import ModelFolderError, local_model_folder
from models.ngram import (MODEL_TYPE, HashedNgramClassifier, NgramConfig,
                          check_scoring_settings, is_ngram_checkpoint)
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
