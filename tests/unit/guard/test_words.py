"""The capitalised word of the name and address rules (``stalwart.guard._words._WORD``): its
letters are written as runs of one class between the joiners ("'", "-"), which the regex
engine reads faster than an alternation tried at every letter; every pattern built on it
must match exactly what it matched as that alternation (the fast tier's findings stay)."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.guard import _addresses, _gazetteer
from stalwart.guard._words import _UP, _WORD

# the word as it was written before (one alternation repeated per letter)
_ALTERNATION = rf"[{_UP}](?:[^\W\d_]|['\u2019\u2206-])+(?!\d)"
_STREET_WORD = rf"(?!(?i:{_addresses._UNIT_TRIE})\b){_ALTERNATION}"  # _SWORD as it was

# capitals and small letters (Latin, accented, Greek, Cyrillic), the joiners, digits (one
# not ASCII), separators: where the two forms could part (a joiner last, a digit after)
_ALPHABET = "AaBbZzÉéŁłΩωЯя'\u2019\u2206-_ 0123456789\u0663.,\n#/"


def _as_before(pattern: re.Pattern[str]) -> re.Pattern[str]:
    source = pattern.pattern.replace(_addresses._SWORD, _STREET_WORD)
    return re.compile(source.replace(_WORD, _ALTERNATION))


_PATTERNS = {
    "word": re.compile(_WORD),
    "capitalised runs": _gazetteer._CAPS,
    "address numbers": _addresses._ADDRESS_NUMBER,
    "address tail": _addresses._TAIL_PIECE,
    "street line": _addresses._HEAD,
    "corner": _addresses._CORNER,
}


def _matches(
    pattern: re.Pattern[str], text: str
) -> list[tuple[tuple[int, int], tuple[str | None, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


def test_the_patterns_are_built_on_the_new_form() -> None:
    for name, pattern in _PATTERNS.items():
        assert _as_before(pattern).pattern != pattern.pattern, name


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_every_pattern_matches_as_the_alternation_did(text: str) -> None:
    for name, pattern in _PATTERNS.items():
        assert _matches(pattern, text) == _matches(_as_before(pattern), text), name


def test_the_same_matches_on_address_like_text() -> None:
    """Words, house numbers and street words in the orders the address rules read."""
    rng = random.Random(16)
    pieces = ["12", "221B", "4/2", "Baker", "Street", "St.", "Apt", "apt.", "O'Neil", "Jean-Luc",
              "Dóttir", "rue", "de", "van", "corner of", "and", "Ω", "DE89", "Štefanikova", ",",
              "\n", "#", "x", "Suite"]  # fmt: skip
    before = {name: _as_before(p) for name, p in _PATTERNS.items()}
    for _ in range(3000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        for name, pattern in _PATTERNS.items():
            assert _matches(pattern, text) == _matches(before[name], text), (name, text)
