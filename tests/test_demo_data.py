"""The demo's generated reviews (demo/reviews.py): what makes the demo's tiers differ is the
mix of hard cases and where the long sentences' verdicts fall, so those are checked here, on
the generator alone (no training)."""
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from demo import reviews
from demo.prepare import CASCADE_ORDER, MALFORMED, SAMPLE, TIERS, write_sample
from models.config import DEFAULT_MAX_ERROR_RATE

DRAWN = reviews.draw(6000, seed=11)
POLARITY = {word: p for p in (0, 1) for word in reviews.COMMON[p] + reviews.RARE[p]}


def adjectives(review: reviews.Review) -> list[int]:
    """The polarities of the sentiment words in the review, in order."""
    return [POLARITY[w] for w in review.text.split() if w in POLARITY]


def of_kind(kind: str) -> list[reviews.Review]:
    return [r for r in DRAWN if r.kind == kind and not r.noisy]


def test_same_seed_same_reviews_other_seed_others():
    assert reviews.draw(200, seed=5) == reviews.draw(200, seed=5)
    assert reviews.draw(200, seed=5) != reviews.draw(200, seed=6)


def test_labels_are_balanced():
    positive = sum(r.label == "positive" for r in DRAWN) / len(DRAWN)
    assert 0.47 < positive < 0.53


@pytest.mark.parametrize("kind,share", reviews.KIND_SHARES)
def test_each_kind_comes_in_its_share(kind, share):
    assert abs(sum(r.kind == kind for r in DRAWN) / len(DRAWN) - share) < 0.02


def test_a_few_labels_are_flipped_and_none_of_the_ambiguous_ones():
    clear = [r for r in DRAWN if r.kind != "ambiguous"]
    assert abs(sum(r.noisy for r in clear) / len(clear) - reviews.LABEL_NOISE) < 0.01
    assert not any(r.noisy for r in DRAWN if r.kind == "ambiguous")


@pytest.mark.parametrize("kind", ["plain", "rare", "double_negation"])
def test_the_sentiment_word_decides_plain_rare_and_double_negated_reviews(kind):
    assert all(adjectives(r) == [reviews.LABELS.index(r.label)] for r in of_kind(kind))


def test_a_negated_word_means_the_opposite():
    assert all(adjectives(r) == [1 - reviews.LABELS.index(r.label)] for r in of_kind("negation"))


def test_contrasts_hold_both_polarities_and_the_main_clause_decides():
    for r in of_kind("contrast"):
        label = reviews.LABELS.index(r.label)
        assert sorted(adjectives(r)) == [0, 1]
        main_first = " , even though " in r.text
        assert adjectives(r)[0 if main_first else 1] == label, r.text


def test_long_verdicts_come_late_and_decide_the_label():
    """A long sentence's verdict starts at word LONG_PREFIX_WORDS or later, after an opener
    that says nothing of it or expects the opposite, and the verdict, the last sentiment
    word, decides the label."""
    long_ones = of_kind("long")
    assert long_ones
    for r in long_ones:
        assert r.verdict_word >= reviews.LONG_PREFIX_WORDS, r.text
        verdict = r.text.split()[r.verdict_word:]
        assert [POLARITY[w] for w in verdict if w in POLARITY] == [
            reviews.LABELS.index(r.label)], r.text


def test_rare_words_are_rare():
    """The tail: in the demo's training draw each rare word is seen only a few times."""
    counts = Counter(w for r in of_kind("rare") for w in r.text.split() if w in POLARITY)
    assert len(counts) == sum(map(len, reviews.RARE))
    assert max(counts.values()) / len(DRAWN) < 1 / 300


def test_the_sample_dead_letters_stay_well_under_the_job_error_limit(tmp_path):
    write_sample(str(tmp_path))
    rows = pq.read_table(tmp_path / "reviews.parquet").num_rows
    lines = (tmp_path / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
    bad = [line for line in lines if line in MALFORMED]
    assert len(bad) == len(MALFORMED)
    assert rows + len(lines) == SAMPLE[1] + len(MALFORMED)
    assert len(bad) / (rows + len(lines)) < DEFAULT_MAX_ERROR_RATE / 2
    assert all(json.loads(line)["text"] for line in lines if line not in MALFORMED)
