"""Tiny, randomly initialised BERT classifiers saved as real checkpoint folders.

They load through the same `from_pretrained` path as real tiers, in milliseconds. A large
initializer range spreads their confidences, so thresholds can split inputs meaningfully.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (BertConfig, BertForSequenceClassification, BertModel,
                          PreTrainedTokenizerFast)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FIRST_WORD_ID = len(SPECIALS) + 2 * len(string.ascii_lowercase + string.digits)
WORDS = ("the a an movie film good bad great awful not very plot actor story fun dull "
         "boring brilliant love hate best worst").split()
CHARS = list(string.ascii_lowercase + string.digits)
VOCAB = SPECIALS + CHARS + [f"##{c}" for c in CHARS] + WORDS
assert VOCAB[FIRST_WORD_ID] == WORDS[0]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer over letters, digits and a few words: no out-of-vocabulary text."""
    vocab = {token: i for i, token in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(
        ("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")


def tiny_config(labels: tuple[str, ...], layers: int, vocab_size: int = len(VOCAB)
                ) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, initializer_range=0.5)


def make_tiny_classifier(folder: Path, seed: int, labels: tuple[str, ...] = ("neg", "pos"),
                         layers: int = 1, vocab_size: int = len(VOCAB)) -> str:
    """Writes a sequence-classification checkpoint (safetensors + tokenizer.json).

    A `vocab_size` below the tokenizer's makes a model that would raise on any batch holding
    a whole-word token (ids past the embedding table), which the launcher must refuse.
    """
    torch.manual_seed(seed)
    BertForSequenceClassification(tiny_config(labels, layers, vocab_size)).save_pretrained(
        folder)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def make_tiny_encoder(folder: Path) -> str:
    """A checkpoint with no classification head, which a tier must refuse."""
    torch.manual_seed(0)
    BertModel(tiny_config(("neg", "pos"), 1)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)
