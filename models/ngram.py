"""A hashed word n-gram linear classifier: a tier-1 model two orders of magnitude cheaper than
a transformer. Logistic regression on L2-normalised TF-IDF vectors of word 1..n-grams, the
classic strong baseline, with the n-grams hashed into a fixed table (no vocabulary to ship).

Saved like a Hugging Face checkpoint (config.json with id2label, model.safetensors), so the
cascade config names it the same way as any tier, and it can be mixed with transformer tiers.
Hashing uses crc32, never Python's per-process salted hash(), so every worker agrees. The
folder may also hold a word CNN (models/word_cnn.py) that the tier averages with the linear
model.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.batching import pass_count
from models.names import NGRAM_MODEL_TYPE
from models.tensors import int64_tensor
from models.weights import SAFETENSORS, CheckpointError
from models.word_cnn import CONFIG_KEY, PASS, WordCnnConfig, WordCnnScorer

MODEL_TYPE = NGRAM_MODEL_TYPE
ARCHITECTURE = "HashedNgramForSequenceClassification"
TOKEN = re.compile(r"\w+|[^\w\s]")
# How a text becomes bucket ids, beyond config.json's settings: recorded with the weights, so
# that a model is never scored by a scheme other than the one it was trained with.
ID_SCHEME = f"crc32 of lower-cased words ({TOKEN.pattern}) joined by spaces"


@dataclass(frozen=True)
class NgramConfig:
    labels: tuple[str, ...]
    num_buckets: int = 2 ** 20
    max_n: int = 2
    word_cnn: WordCnnConfig | None = None  # the CNN beside the linear model, if any

    def to_json(self) -> dict:
        return {"model_type": MODEL_TYPE, "architectures": [ARCHITECTURE],
                "id2label": {str(i): name for i, name in enumerate(self.labels)},
                "num_buckets": self.num_buckets, "max_n": self.max_n,
                **({CONFIG_KEY: self.word_cnn.to_json()} if self.word_cnn else {})}

    @classmethod
    def from_json(cls, raw: dict) -> "NgramConfig":
        labels = tuple(raw["id2label"][str(i)] for i in range(len(raw["id2label"])))
        word_cnn = WordCnnConfig.from_json(raw[CONFIG_KEY]) if CONFIG_KEY in raw else None
        return cls(labels=labels, num_buckets=raw["num_buckets"], max_n=raw["max_n"],
                   word_cnn=word_cnn)


def words_of(text: str) -> list[str]:
    """The lower-cased word tokens both the n-gram model and the word CNN read."""
    return TOKEN.findall(text.lower())


def ngram_ids(text: str, num_buckets: int, max_n: int) -> list[int]:
    """Bucket ids of the lower-cased word 1..max_n-grams of `text`."""
    return word_ngram_ids(words_of(text), num_buckets, max_n)


def word_ngram_ids(words: list[str], num_buckets: int, max_n: int) -> list[int]:
    """Bucket ids of the 1..max_n-grams of a text's `words`: crc32 of each n-gram's words
    joined by spaces, all unigrams first. An n-gram's checksum continues its first n-1
    words' (crc32 takes a running value), so no n-gram string is ever built: 25% less time
    than joining them."""
    spaced = [(" " + w).encode("utf-8") for w in words]
    level = [zlib.crc32(s[1:]) for s in spaced]
    checksums = list(level)
    for n in range(1, max_n):
        level = [zlib.crc32(spaced[i + n], c) for i, c in enumerate(level[:-1])]
        checksums += level
    return [c % num_buckets for c in checksums] or [0]


def inverse_document_frequency(features: list[list[int]], num_buckets: int) -> torch.Tensor:
    """Smoothed idf per bucket, log((1 + N) / (1 + df)) + 1, over the training texts' n-grams."""
    df = torch.zeros(num_buckets)
    for ids in features:
        df[torch.tensor(sorted(set(ids)))] += 1
    return torch.log((1 + len(features)) / (1 + df)) + 1


class HashedNgramClassifier(torch.nn.Module):
    """logits = bias + (the text's L2-normalised TF-IDF vector) @ weights.

    Normalising makes a long text no more confident than a short one for the same evidence,
    which matters more for a cascade's routing than for accuracy alone.
    """

    def __init__(self, config: NgramConfig):
        super().__init__()
        self.config = config
        # Zeros given, not drawn at random and zeroed: the random draw on the meta device
        # (models/loading.py checks shapes there) cost 1-2 s of every job's start-up.
        self.weights = torch.nn.EmbeddingBag(
            config.num_buckets, len(config.labels), mode="sum",
            _weight=torch.zeros(config.num_buckets, len(config.labels)))
        self.bias = torch.nn.Parameter(torch.zeros(len(config.labels)))
        self.register_buffer("idf", torch.ones(config.num_buckets))

    def encode(self, texts: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat bucket ids and per-text offsets (the EmbeddingBag input) of texts given as
        their words."""
        ids, offsets = [], []
        for words in texts:
            offsets.append(len(ids))
            ids.extend(word_ngram_ids(words, self.config.num_buckets, self.config.max_n))
        return int64_tensor(ids), int64_tensor(offsets)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        tfidf = self.idf[ids]
        lengths = torch.diff(offsets, append=torch.tensor([len(ids)]))
        text_of = torch.repeat_interleave(torch.arange(len(offsets)), lengths)
        norms = torch.zeros(len(offsets)).index_add_(0, text_of, tfidf ** 2).sqrt()
        return self.weights(ids, offsets, per_sample_weights=tfidf / norms[text_of]) + self.bias

    def save_pretrained(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.config.to_json(), f, indent=1)
        save_file(self.state_dict(), os.path.join(folder, SAFETENSORS),
                  metadata=scoring_settings(self.config))

    @classmethod
    def from_pretrained(cls, folder: str) -> "HashedNgramClassifier":
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            config = NgramConfig.from_json(json.load(f))
        check_scoring_settings(folder, config)
        model = cls(config)
        model.load_state_dict(load_file(os.path.join(folder, SAFETENSORS)))
        return model.eval()


def scoring_settings(config: NgramConfig) -> dict[str, str]:
    """What turns a text into the bucket ids the weights were trained on. num_buckets shows
    in the weights' shapes, max_n nowhere: an edited config.json would score texts by
    n-grams the model never learnt, so the weights file's metadata keeps all of it."""
    return {"num_buckets": str(config.num_buckets), "max_n": str(config.max_n),
            "ngram_ids": ID_SCHEME}


def check_scoring_settings(folder: str, config: NgramConfig) -> None:
    """Refuses a folder whose config.json (or this version's id scheme) differs from what its
    weights were trained with. Weights saved before the record was kept hold none of it and
    are taken at config.json's word."""
    with safe_open(os.path.join(folder, SAFETENSORS), "pt") as f:
        trained = f.metadata() or {}
    for key, found in scoring_settings(config).items():
        if trained.get(key, found) == found:
            continue
        if key == "ngram_ids":
            raise CheckpointError(
                f"{folder!r}: the model was trained with n-gram ids made by "
                f"{trained[key]!r}, but this version makes them by {found!r}; train the model "
                "again with this version")
        raise CheckpointError(
            f"{folder!r}: config.json gives {key} {found} but the model was trained with "
            f"{key} {trained[key]} (recorded in {SAFETENSORS}); the tier would read texts as "
            f"n-grams it never learnt. Set {key} back to {trained[key]} in config.json, or "
            "train a new model")


def is_ngram_checkpoint(raw_config: dict) -> bool:
    return raw_config.get("model_type") == MODEL_TYPE


def joined_pairs(texts: list[str], text_pairs: list[str] | None) -> list[str]:
    """The texts the n-gram model scores: each pair joined by a separator no word contains
    (training and scoring join alike), the texts as they are without pairs."""
    if text_pairs is None:
        return texts
    return [f"{a} ||| {b}" for a, b in zip(texts, text_pairs)]


class NgramTier:
    """The n-gram classifier as a `Tier` (models/tier.py), like a transformer TierModel. A
    text pair is scored as one text joined by a separator. With a word CNN, the tier's
    logits are the mean of the two models' log-probabilities (one tier made of two models,
    reading the same words)."""

    early_exit = None  # one layer: nothing to leave early

    def __init__(self, model: HashedNgramClassifier, word_cnn: WordCnnScorer | None = None):
        self.model = model
        self.word_cnn = word_cnn
        self.labels = model.config.labels

    @classmethod
    def load(cls, folder: str) -> "NgramTier":
        model = HashedNgramClassifier.from_pretrained(folder)
        config = model.config.word_cnn
        if config is None:
            return cls(model)
        return cls(model, WordCnnScorer.load(folder, config, len(model.config.labels)))

    def save_pretrained(self, folder: str) -> None:
        self.model.save_pretrained(folder)
        if self.word_cnn:
            self.word_cnn.save(folder)

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        linear, cnn = self.parts_logits(texts, text_pairs)
        if cnn is None:
            return linear
        return (F.log_softmax(linear, -1) + F.log_softmax(cnn, -1)) / 2

    def parts_logits(self, texts: list[str], text_pairs: list[str] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The linear model's logits and the word CNN's (None without one), each alone."""
        words = [words_of(text) for text in joined_pairs(texts, text_pairs)]
        with torch.inference_mode():
            linear = self.model(*self.model.encode(words))
        return linear, self.word_cnn.logits(words) if self.word_cnn else None

    def logits_and_exits(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits; every text runs the model's one layer."""
        return self.logits(texts, text_pairs), torch.ones(len(texts), dtype=torch.long)

    def exit_logits(self, texts: list[str], text_pairs: list[str] | None = None
                    ) -> torch.Tensor:
        """The logits as the model's one exit (1 x texts x labels)."""
        return self.logits(texts, text_pairs).unsqueeze(0)

    def forward_passes(self, texts: int) -> int:
        """One pass of the linear model over all of a call's texts, and the word CNN's
        passes of PASS texts."""
        if not texts:
            return 0
        return 1 + (pass_count(texts, PASS) if self.word_cnn else 0)

    def unfamiliar_share(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> torch.Tensor:
        """Per text, the share of its n-grams no training text held: their buckets have the
        largest idf, that of a document frequency of 0 (a million buckets always leave
        some unseen)."""
        unseen_idf = self.model.idf.max()
        config = self.model.config
        return torch.tensor([
            (self.model.idf[torch.tensor(ngram_ids(text, config.num_buckets, config.max_n))]
             >= unseen_idf).double().mean().item()
            for text in joined_pairs(texts, text_pairs)])
