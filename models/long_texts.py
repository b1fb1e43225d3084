"""Long texts cut before they are tokenized, without changing a single token the model reads.

A fast tokenizer truncates only after it has tokenized the whole text: one 54 MB text cost
2 minutes and 6.7 GB to keep its first 128 tokens. Every transformer tier tokenizes in
models/batching.py `sorted_passes`, and training in models/training.py, each first cutting
its texts here.

Why a cut loses nothing. A tokenizer normalizes a text, splits it into words (its
pre-tokenizer: at spaces, punctuation, bytes-level regular expressions, `▁` markers) and
then tokenizes each word on its own. Normalizers work character by character, and splitters
look at most a character ahead, so a prefix of a text splits into the same words as the
whole text but for its last one or two (the word the cut splits, and the one before it
where a splitter looked ahead). The tokens of the prefix's other words, its "settled"
tokens, are therefore the whole text's first tokens. A text is cut only where it keeps at
least `max_length` settled tokens: truncation then keeps settled tokens only, the same ones
as from the whole text. A pair is truncated longest first, taking from each text a number
that depends on both lengths and on which is longer: a text of a pair is cut only where it
keeps `max_length` settled tokens and more than its partner has in all (the partner whole).
Where a cut does not keep enough, the cut doubles, for as long as it would still leave out
half of the text; then the text is tokenized whole. The rule is lossless whatever a token
spans (an unknown word of 100 characters can be one token). A text of words costs a check of
its first `max_length * CHARS_PER_TOKEN` characters; one that cannot be cut (a single word
of megabytes, such as Chinese without spaces for a SentencePiece tokenizer) costs at most
twice what it cost before.
"""
from __future__ import annotations

import weakref
from itertools import takewhile
from typing import Any

from tokenizers import Encoding, Tokenizer

CHARS_PER_TOKEN = 64  # the first cut, in characters per token of max_length: English spends
# about 4 a token, and a text shorter than twice the cut (16,384 characters for 128 tokens)
# is never cut, so never tokenized twice
UNSETTLED_WORDS = 2  # a prefix's last words, which the cut can change

_plain_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cut_long_texts(tokenizer: Any, texts: list[str], text_pairs: list[str] | None,
                   max_length: int) -> tuple[list[str], list[str] | None]:
    """`texts` (and `text_pairs`) with each text of at least twice `max_length *
    CHARS_PER_TOKEN` characters cut where that loses no token (the module's docstring):
    `tokenizer(texts, text_pairs, truncation=True, max_length=max_length)` gives the same
    ids for the cut texts as for the whole ones.

    Only a fast tokenizer (every tier has one: the launcher refuses slow ones) that
    truncates on the right tells which words its tokens come from; others get the texts
    whole."""
    bound = max_length * CHARS_PER_TOKEN
    long = [i for i, text in enumerate(texts) if _worth_cutting(text, bound)
            or (text_pairs is not None and _worth_cutting(text_pairs[i], bound))]
    if not long or not getattr(tokenizer, "is_fast", False) \
            or tokenizer.truncation_side != "right":
        return texts, text_pairs
    plain = _plain_copy(tokenizer)
    texts = list(texts)
    text_pairs = list(text_pairs) if text_pairs is not None else None
    for i in long:
        whole = (texts[i],) if text_pairs is None else (texts[i], text_pairs[i])
        cut = lossless_prefixes(plain, whole, max_length, bound)
        texts[i] = cut[0]
        if text_pairs is not None:
            text_pairs[i] = cut[1]
    return texts, text_pairs


def lossless_prefixes(plain: Tokenizer, sequences: tuple[str, ...], max_length: int,
                      chars: int) -> tuple[str, ...]:
    """The shortest prefixes, of `chars` characters doubled as often as needed, of a text
    or a pair that truncate to the same tokens as the whole `sequences`; these whole when
    no cut that leaves out half of the longest does."""
    while any(_worth_cutting(sequence, chars) for sequence in sequences):
        prefixes = tuple(sequence[:chars] for sequence in sequences)
        encodings = plain.encode_batch(list(prefixes), add_special_tokens=False)
        cut = [len(sequence) > chars for sequence in sequences]
        if all(_keeps_every_token(i, cut, encodings, max_length) for i in range(len(cut))):
            return prefixes
        chars *= 2
    return sequences


def _worth_cutting(text: str, chars: int) -> bool:
    """Whether cutting `text` to `chars` characters would leave out at least half of it."""
    return len(text) >= 2 * chars


def _keeps_every_token(i: int, cut: list[bool], encodings: list[Encoding],
                       max_length: int) -> bool:
    """Whether cutting sequence `i` (if it was cut) leaves truncation's result as it was:
    `max_length` settled tokens, and more than a pair's other text has, that one whole."""
    if not cut[i]:
        return True
    settled = settled_tokens(encodings[i])
    return settled >= max_length and all(
        not cut[j] and len(encodings[j].ids) < settled for j in range(len(cut)) if j != i)


def settled_tokens(encoding: Encoding) -> int:
    """How many of a prefix's first tokens belong to words before its last
    UNSETTLED_WORDS (a token that belongs to no word ends the count)."""
    words = encoding.word_ids
    known = [word for word in words if word is not None]
    if not known:
        return 0
    first_unsettled = known[-1] - UNSETTLED_WORDS + 1
    return sum(1 for _ in takewhile(
        lambda word: word is not None and word < first_unsettled, words))


def plain_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer without padding or truncation (a saved tokenizer.json may carry
    either, which would add pad pieces to a word or cut it)."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _plain_copy(tokenizer: Any) -> Tokenizer:
    """A copy of the fast tokenizer's own tokenizer without padding or truncation, made once
    per tokenizer: the original's settings are changed by every call, from every thread
    sharing the tier."""
    plain = _plain_copies.get(tokenizer)
    if plain is None:
        plain = _plain_copies[tokenizer] = plain_tokenizer(
            Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()))
    return plain
