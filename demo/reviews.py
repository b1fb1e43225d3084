"""The demo's synthetic movie-review sentences, with their labels and the kind of case each is.

Written so that a cascade has something to trade: most sentences are plain ("the plot is
superb .") and any tier gets them right, confidently; the rest are the cases a small tier
(a bag of word n-grams, or a short-context transformer) gets wrong or is unsure of and a
larger one reads right: negation ("not
bad"), double negation, contrast where the main clause decides ("although X is dull , Y is
superb"), sarcasm and reluctant praise, rare words (a long tail of adjectives, each seen a
few times in training), and long sentences whose deciding clause comes after an opener that
says nothing of it or expects the opposite. A few are ambiguous (random labels) and a few labels are flipped, so that no
tier is perfect. Deterministic by seed, no downloads, no torch: tests import it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

LABELS = ("negative", "positive")
SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the script", "the score",
            "the ending", "the cast", "the direction", "the dialogue"]
COMMON = ([
    "dull", "tedious", "clumsy", "lifeless", "predictable", "bland", "messy", "painful",
    "forgettable", "awful"], [
    "wonderful", "moving", "brilliant", "charming", "gripping", "funny", "beautiful", "sharp",
    "delightful", "superb"])
# The tail: each word is drawn for about one sentence in 900, so 2 or 3 times in training.
RARE = ([
    "insipid", "turgid", "leaden", "vapid", "interminable", "ponderous", "hackneyed", "trite",
    "overwrought", "mawkish", "plodding", "listless", "inert", "stilted", "shoddy", "slapdash",
    "grating", "cloying", "tiresome", "derivative", "soporific", "incoherent", "wooden",
    "lumbering", "threadbare", "humdrum", "banal", "joyless", "muddled", "glib"], [
    "luminous", "exhilarating", "sublime", "transcendent", "riveting", "enthralling",
    "mesmerizing", "masterful", "resplendent", "incandescent", "ebullient", "sparkling",
    "poignant", "spellbinding", "exquisite", "virtuosic", "rapturous", "dazzling", "heartfelt",
    "inventive", "winsome", "buoyant", "sumptuous", "lyrical", "assured", "nimble", "elegant",
    "stirring", "witty", "radiant"])
INTENSIFIERS = ["", "very ", "truly ", "rather ", "remarkably "]
NEGATORS = ["not", "hardly", "never", "far from", "not at all", "by no means", "anything but",
            "scarcely"]
NEUTRAL = ["okay", "fine , i guess", "average", "watchable", "passable", "what you would expect",
           "neither good nor bad", "hard to judge"]
DULL_THINGS = ["shaky camera work", "wooden dialogue", "slow motion explosions",
               "characters i could not care less about", "plot holes", "speeches about destiny"]
# Long sentences open with at least LONG_PREFIX_WORDS words that say nothing of the verdict
# (sometimes a misleading expectation): a tier reading 16 tokens never sees the verdict.
OPENERS = ["i went to see it on a rainy tuesday night with two old friends from work",
           "my cousin picked it for our monthly movie night after a long week at the office",
           "having read the novel twice and waited almost a full year for the release",
           "the theatre was half empty and the popcorn machine was broken when we sat down",
           "everyone at work had told me for weeks that it would be {expected}",
           "the trailer made it look {expected} and i walked in with low hopes",
           "we arrived late , missed the first few minutes and had to sit in the front row"]
FILLERS = ["and after the usual trailers and a short delay", "and to be completely honest",
           "but once the lights finally went down", "and somewhere around the second hour",
           "and looking back on it a few days later"]
VERDICTS = ["{s} turned out to be {i}{a} .", "i found {s} {i}{a} .", "in the end {s} was {i}{a} ."]
LONG_PREFIX_WORDS = 16
# (kind, share of sentences); `LABEL_NOISE` of the non-ambiguous ones have their label flipped.
KIND_SHARES = (("plain", 0.38), ("negation", 0.10), ("double_negation", 0.05),
               ("contrast", 0.10), ("sarcasm", 0.06), ("rare", 0.07), ("long", 0.20),
               ("ambiguous", 0.04))
LABEL_NOISE = 0.02


@dataclass(frozen=True)
class Review:
    """One sentence; `verdict_word` is the index of the first word of the clause that decides
    its label (0 unless it comes late), `noisy` whether its label was flipped."""

    text: str
    label: str
    kind: str
    noisy: bool = False
    verdict_word: int = 0


def _adjective(rng: random.Random, polarity: int) -> str:
    return rng.choice(COMMON[polarity])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plain(rng: random.Random, p: int) -> str:
    s, i, a = rng.choice(SUBJECTS), rng.choice(INTENSIFIERS), _adjective(rng, p)
    return rng.choice([f"{s} is {i}{a} .", f"{_article(a)} {a} film .", f"i found {s} {i}{a} ."])


def _negation(rng: random.Random, p: int) -> str:
    return f"{rng.choice(SUBJECTS)} is {rng.choice(NEGATORS)} {_adjective(rng, 1 - p)} ."


def _double_negation(rng: random.Random, p: int) -> str:
    s, a = rng.choice(SUBJECTS), _adjective(rng, p)
    return rng.choice([f"it is not true that {s} is not {a} .",
                       f"i would not say {s} is never {a} .",
                       f"nobody could claim {s} is not {a} ."])


def _contrast(rng: random.Random, p: int) -> str:
    """Both polarities in one sentence; the main clause (not always the last) decides."""
    minor_subject, main_subject = rng.sample(SUBJECTS, 2)
    minor = f"{minor_subject} is {_adjective(rng, 1 - p)}"
    main = f"{main_subject} is {rng.choice(INTENSIFIERS)}{_adjective(rng, p)}"
    return rng.choice([f"{minor} , but {main} .", f"although {minor} , {main} .",
                       f"{main} , even though {minor} .", f"{minor} ; yet {main} ."])


def _sarcasm(rng: random.Random, p: int) -> str:
    """Praise that means the opposite, or scorn that turns into praise."""
    s = rng.choice(SUBJECTS)
    if p:
        a = _adjective(rng, 0)
        return rng.choice([f"i expected {s} to be {a} , and i could not have been more wrong .",
                           f"{s} should have been {a} , yet somehow it is not .",
                           f"i wanted to call {s} {a} , but i laughed the whole way through ."])
    a = _adjective(rng, 1)
    return rng.choice([f"oh great , another two hours of {rng.choice(DULL_THINGS)} .",
                       f"what a {a} way to waste an evening .",
                       f"{s} is so {a} that i checked my watch every five minutes .",
                       f"sure , {s} is {a} , if you enjoy watching paint dry ."])


def _rare(rng: random.Random, p: int) -> str:
    s, i, a = rng.choice(SUBJECTS), rng.choice(INTENSIFIERS), rng.choice(RARE[p])
    return rng.choice([f"{s} is {i}{a} .", f"{_article(a)} {a} piece of work ."])


def _long(rng: random.Random, p: int) -> tuple[str, int]:
    """A neutral or misleading opening of at least LONG_PREFIX_WORDS words, then the verdict."""
    prefix = rng.choice(OPENERS).format(expected=_adjective(rng, 1 - p)) + " ,"
    while len(prefix.split()) < LONG_PREFIX_WORDS:
        prefix += " " + rng.choice(FILLERS) + " ,"
    verdict = rng.choice(VERDICTS).format(s=rng.choice(SUBJECTS), i=rng.choice(INTENSIFIERS),
                                          a=_adjective(rng, p))
    return f"{prefix} {verdict}", len(prefix.split())


def _ambiguous(rng: random.Random, p: int) -> str:
    s = rng.choice(SUBJECTS)
    return rng.choice([f"{s} is {rng.choice(NEUTRAL)} .", f"i have mixed feelings about {s} ."])


WRITERS = {"plain": _plain, "negation": _negation, "double_negation": _double_negation,
           "contrast": _contrast, "sarcasm": _sarcasm, "rare": _rare, "long": _long,
           "ambiguous": _ambiguous}


def _kind(rng: random.Random) -> str:
    point, total = rng.random(), 0.0
    for kind, share in KIND_SHARES:
        total += share
        if point < total:
            return kind
    return KIND_SHARES[-1][0]


def review(rng: random.Random) -> Review:
    """One sentence of a kind drawn by KIND_SHARES, its label drawn 50/50 (then flipped with
    probability LABEL_NOISE, unless the sentence is ambiguous and its label random anyway)."""
    kind, polarity = _kind(rng), rng.randint(0, 1)
    written = WRITERS[kind](rng, polarity)
    text, verdict_word = written if isinstance(written, tuple) else (written, 0)
    noisy = kind != "ambiguous" and rng.random() < LABEL_NOISE
    return Review(text, LABELS[polarity ^ noisy], kind, noisy, verdict_word)


def draw(n: int, seed: int) -> list[Review]:
    """`n` reviews, the same for the same seed."""
    rng = random.Random(seed)
    return [review(rng) for _ in range(n)]


def rows(n: int, seed: int) -> list[dict]:
    """`draw`'s reviews as input rows: text, label, kind and an id unique across seeds."""
    return [{"review_id": f"r{seed}-{i}", "text": r.text, "label": r.label, "kind": r.kind}
            for i, r in enumerate(draw(n, seed))]
