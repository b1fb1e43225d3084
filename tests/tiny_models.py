"""Tiny, randomly initialised BERT (and MPNet) classifiers saved as real checkpoint folders.

They load through the same `from_pretrained` path as real tiers, in milliseconds. A large
initializer range spreads their confidences, so thresholds can split inputs meaningfully.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (BertConfig, BertForSequenceClassification, BertModel,
                          MPNetConfig, MPNetForSequenceClassification, MPNetTokenizer,
                          PreTrainedTokenizerFast)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FIRST_WORD_ID = len(SPECIALS) + 2 * len(string.ascii_lowercase + string.digits)
WORDS = ("the a an movie film good bad great awful not very plot actor story fun dull "
         "boring brilliant love hate best worst").split()
CHARS = list(string.ascii_lowercase + string.digits)
VOCAB = SPECIALS + CHARS + [f"##{c}" for c in CHARS] + WORDS
# MPNet's specials, in its own order: its embeddings take id 1 as padding
MPNET_VOCAB = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"] + VOCAB[len(SPECIALS):]
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


def tiny_mpnet_tokenizer() -> MPNetTokenizer:
    """MPNet's own fast tokenizer (WordPiece, `<s> text </s>`, no token type ids) over the
    same letters, digits and words as `tiny_tokenizer`."""
    return MPNetTokenizer(vocab={token: i for i, token in enumerate(MPNET_VOCAB)},
                          model_max_length=128)


def tiny_mpnet_config(labels: tuple[str, ...], layers: int) -> MPNetConfig:
    return MPNetConfig(
        vocab_size=len(MPNET_VOCAB), hidden_size=32, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=130,
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, initializer_range=0.5)


def make_tiny_mpnet_classifier(folder: Path, seed: int,
                               labels: tuple[str, ...] = ("neg", "pos"), layers: int = 1) -> str:
    """An MPNet sequence-classification checkpoint (relative position bias in every layer,
    a head on the first token's state, no pooler), saved as `make_tiny_classifier` saves
    BERT's; its relative attention bias is spread too, so that it changes the answers."""
    torch.manual_seed(seed)
    model = MPNetForSequenceClassification(tiny_mpnet_config(labels, layers))
    torch.nn.init.normal_(model.mpnet.encoder.relative_attention_bias.weight, std=2.0)
    model.save_pretrained(folder)
    tiny_mpnet_tokenizer().save_pretrained(folder)
    return str(folder)
