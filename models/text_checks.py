"""What makes a text one the tiers can classify: the one check `run` (transforms/parsing.py)
and `predict` (pipeline/predict.py) both apply, so that a text the job dead-letters is
refused in this process too, for the same reason. No Beam: `predict` needs none.
"""
from __future__ import annotations

import re
from typing import Any

SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidRecord(ValueError):
    """A row that cannot be classified; the message is the dead-letter reason."""


def checked_text(value: Any, field: str) -> str:
    """`value`, when it is a text the tiers can classify; raises InvalidRecord naming
    `field` otherwise: null, not a string, an unpaired surrogate, or nothing visible."""
    if value is None:
        raise InvalidRecord(f"{field!r} is null")
    if not isinstance(value, str):
        raise InvalidRecord(f"{field!r} is a {type(value).__name__}, not a string")
    if not value.isprintable():  # a surrogate is not printable: most texts skip the search
        _reject_surrogates(value, field)
    if not has_visible_character(value):
        raise InvalidRecord(f"{field!r} is empty (nothing but spaces, control or invisible "
                            "characters)")
    return value


def _reject_surrogates(text: str, field: str) -> None:
    """A str may hold half a UTF-16 pair: JSON's lone `\\ud800` escape decodes to one, and
    so does a command-line byte that is not UTF-8 (Python's os.fsdecode). No encoder
    accepts it (the tokenizer raised a TypeError), so the text is refused. Raises
    InvalidRecord."""
    found = SURROGATE.search(text)
    if found:
        raise InvalidRecord(
            f"{field!r} holds an unpaired UTF-16 surrogate \\u{ord(found.group()):04x} "
            f"(character {found.start()}), which is not valid Unicode (a lone JSON escape "
            "\\ud800 to \\udfff, or a command-line byte that is not UTF-8)")


def has_visible_character(text: str) -> bool:
    """Whether the text holds a character that is printable and not a space. A text that
    is printable throughout (most are) is answered by str's own loops in C; the Python loop
    over its characters cost more per record than the n-gram tier's model."""
    if text.isprintable():
        return bool(text.strip())
    return any(c.isprintable() and not c.isspace() for c in text)
