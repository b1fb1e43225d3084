"""Long texts are cut before tokenizing (models/long_texts.py), keeping every token a model
reads: one 54 MB text cost 2 minutes and 6.7 GB when it was tokenized whole."""
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import WORDS, tiny_tokenizer
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from models import long_texts
from models.datasets import LabelledTexts
from models.loading import load_tier
from models.long_texts import CHARS_PER_TOKEN, cut_long_texts
from models.training import _encoded

CORPUS = [" ".join(WORDS[i:] + WORDS[:i]) + " don't, it's 42 e\u0301t\u00e9 日本語" for i in
          range(len(WORDS))]
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"]


def trained(model, pre_tokenizer, trainer, normalizer=None) -> PreTrainedTokenizerFast:
    """A tiny tokenizer of another family than the tiers' WordPiece, trained on CORPUS."""
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizer
    if normalizer:
        tokenizer.normalizer = normalizer
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


TOKENIZERS = {
    "wordpiece": tiny_tokenizer(),  # BERT's normalizer and splitter, as the tiny tiers
    "byte-level BPE": trained(  # GPT-2 and RoBERTa's splitter, which looks ahead
        models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=False),
        trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())),
    "unigram": trained(  # SentencePiece's: NFKC, ▁ markers, a best segmentation per word
        models.Unigram(), pre_tokenizers.Metaspace(),
        trainers.UnigramTrainer(vocab_size=120, special_tokens=SPECIALS, unk_token="<unk>"),
        normalizers.NFKC()),
}

pieces = st.sampled_from(WORDS + [" ", "  ", "\n", "\t ", ",", ".", "'s", "don't", "e\u0301",
                                  "\u00e9", "日本語", "😀", "\x00", "\u200b", "unbelievably"])
texts = st.lists(pieces | st.text(max_size=6), max_size=60).map("".join)


def truncated(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> dict:
    return dict(tokenizer(texts, pairs, truncation=True, max_length=max_length))


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=150, deadline=None)
@given(batch=st.lists(st.tuples(texts, texts), min_size=1, max_size=3), pairs=st.booleans(),
       max_length=st.integers(4, 24))
def test_cut_texts_give_the_tokens_the_whole_texts_give(name, batch, pairs, max_length):
    """A first cut of one character per token, so that random texts are cut (and the cut
    doubled) often: the ids, masks and types after truncation are those of the whole."""
    tokenizer = TOKENIZERS[name]
    firsts = [a for a, _ in batch]
    seconds = [b for _, b in batch] if pairs else None
    with mock.patch.object(long_texts, "CHARS_PER_TOKEN", 1):
        cut, cut_pairs = cut_long_texts(tokenizer, firsts, seconds, max_length)
    assert truncated(tokenizer, cut, cut_pairs, max_length) == truncated(
        tokenizer, firsts, seconds, max_length)


@given(text=texts, max_length=st.integers(4, 24))
@settings(max_examples=50, deadline=None)
def test_a_cut_text_is_a_prefix_and_a_short_one_is_whole(text, max_length):
    tokenizer = TOKENIZERS["wordpiece"]
    with mock.patch.object(long_texts, "CHARS_PER_TOKEN", 1):
        (cut,), _ = cut_long_texts(tokenizer, [text], None, max_length)
    assert text.startswith(cut)
    assert cut_long_texts(tokenizer, [text], None, len(text) + 1) == ([text], None)


class RecordingTokenizer:
    """A tokenizer that notes the length of every text it is asked to tokenize."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.lengths: list[int] = []

    def __call__(self, texts, pairs=None, **kwargs):
        self.lengths += [len(t) for t in texts + (pairs or [])]
        return self.tokenizer(texts, pairs, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


LONG_TEXT = " ".join(WORDS * 45_000)  # 5 MB of words


def test_a_tier_tokenizes_a_5_mb_text_from_a_bounded_prefix(models):
    tier = load_tier(models["small"], max_length=32)
    tier.tokenizer = recording = RecordingTokenizer(tier.tokenizer)
    assert len(LONG_TEXT) > 5_000_000
    logits = tier.logits([LONG_TEXT, "good"])
    assert sorted(recording.lengths) == [4, 32 * CHARS_PER_TOKEN]
    assert logits.shape == (2, 2)


def test_training_tokenizes_a_5_mb_text_from_a_bounded_prefix():
    recording = RecordingTokenizer(tiny_tokenizer())
    data = LabelledTexts([LONG_TEXT], [0], ("neg", "pos"), text_pairs=["good " * 10])
    encoded = _encoded(recording, data, [0], 16, "cpu")
    assert recording.lengths == [16 * CHARS_PER_TOKEN, 50]
    assert encoded["input_ids"].shape == (1, 16)
