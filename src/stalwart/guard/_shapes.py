"""Names read from their shape, where no list knows them and no cue comes before them.

The fast tier's lists (:mod:`stalwart.guard._gazetteer`) know given names, surnames and
places, and drop the ones that are common English words ("John", "Mark", "Will"); its cues
("my name is", "Dear", a title) read a name the lists do not know. What neither reaches,
a name in a sentence that says nothing of one, is read here from the shape of a run of
capitalised words (:func:`shaped_name`):

- a given name, an initial and a surname ("Ruman D. Bataev", "Tom I. Holzman");
- a given name that is a common English word before a surname ("John Blakey");
- a word before a surname of a common shape ("Ana Petrović", "Sawa Bazhenov");
- two or more words, particles between them, that no list knows and that are no English
  word ("Meltem Vledder", "Haroun van der Kruk"), or such a word before a listed surname
  ("Kauan Cunha").

"English word" is a lemma of WordNet 3.0 or one of its regular inflections
(:func:`english_word`; ``data/english.json.gz``, provenance and licence in
``data/NOTICE.md``): "String Formatting" and "Byte Arrays" are words, not names. A run with
a company word ("Brightwell Ltd") is no name. One word alone is never read this way: in
technical prose one paragraph in five holds a capitalised word no list or dictionary knows
("Unicode", "Traceback"), where two together are rare (docs/redaction.md).

What a run is by its shape depends on its words alone, so :func:`shaped_name` runs once per
run the gazetteer has not seen (its memory of runs), not once per occurrence.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import threading
from importlib import resources
from typing import TYPE_CHECKING

from stalwart.guard._words import (
    _ANY_CUE,
    _INITIAL,
    _PARTICLES,
    _TITLES,
    PLACE_ENDINGS,
    Span,
    _surname_shape,
)  # fmt: skip

if TYPE_CHECKING:
    from stalwart.guard._gazetteer import Gazetteer

__all__ = [
    "COMMON_GIVEN",
    "ENGLISH_FILE",
    "NO_SHAPE",
    "add_shaped",
    "english",
    "english_word",
    "shaped_name",
    "shaped_place",
]

ENGLISH_FILE = "english.json.gz"
"""English dictionary words (WordNet's lemmas), in ``stalwart/guard/data``: :func:`english`."""
_ENGLISH_LOCK = threading.Lock()

# given names that are also common English words, dropped from the lists for that
# ("Will", "Mark", "John"), and so a name only where a surname follows ("John Blakey",
# "Max Schmitz", "Tom I. Holzman"; :func:`shaped_name`)
COMMON_GIVEN = frozenset(
    ("will", "may", "mark", "bill", "rose", "hope", "grant", "joy", "faith", "grace", "art",
     "april", "june", "august", "ray", "dawn", "drew", "gene", "guy", "jack", "jean", "lance",
     "lee", "max", "miles", "pat", "penny", "rob", "rod", "sal", "sol", "sue", "ted", "tom",
     "mary", "john", "ben", "dan", "don", "eve", "frank", "christian", "roman",
     "jordan", "victoria", "florence", "aurora", "summer", "autumn", "sky", "chance",
     "sterling", "carter", "mason", "hunter", "porter", "dean", "earl", "rex", "bob", "jim",
     "joe", "tim", "tony", "harry", "sam", "ivy", "holly", "iris", "daisy", "ruby", "pearl",
     "amber", "crystal", "destiny", "heather", "olive", "violet", "angel", "basil", "bud",
     "chip", "clay", "cliff", "dale", "dell", "glen", "herb", "jay", "jewel", "kit", "lily",
     "lyn", "marina", "mickey", "nick", "norm", "patience", "pepper", "robin", "rusty",
     "sandy", "shelby", "stan", "sunny", "terry", "wade", "wren")
)  # fmt: skip


_ENGLISH: list[frozenset[str]] = []


def english() -> frozenset[str]:
    """The English dictionary words the fast tier knows, in lower case (``data/
    english.json.gz``: WordNet 3.0's single-word lemmas, 77,546 words; loaded on first
    call, then shared)."""
    if not _ENGLISH:
        with _ENGLISH_LOCK:
            if not _ENGLISH:
                raw = resources.files("stalwart.guard").joinpath("data", ENGLISH_FILE)
                _ENGLISH.append(frozenset(json.loads(gzip.decompress(raw.read_bytes()))["words"]))
    return _ENGLISH[0]


# inflections a dictionary word takes: "Arrays", "Annotations", "Imports", "Studies",
# "Formatted", "Settings" are words; what is left must be one (no "-er": "Becker")
_INFLECTIONS = (("ies", "y"), ("es", ""), ("s", ""), ("ings", ""), ("ing", ""), ("ing", "e"),
                ("ed", ""), ("ed", "e"), ("d", ""))  # fmt: skip


@functools.lru_cache(maxsize=8192)
def english_word(key: str) -> bool:
    """Whether ``key`` (a word's list form) is an English dictionary word or an inflection of
    one; remembered, as a word's list form is (:func:`stalwart.guard._gazetteer._key`)."""
    lower = key.lower()
    words = english()
    if lower in words:
        return True
    if lower[-1:] not in ("s", "d", "g"):  # what every inflection ends with; most names do not
        return False
    for suffix, stem in _INFLECTIONS:
        if not lower.endswith(suffix) or len(lower) - len(suffix) < 3:
            continue
        base = lower[: len(lower) - len(suffix)]
        if base + stem in words:
            return True
        if not stem and suffix[0] in "ei" and base[-1] == base[-2] and base[:-1] in words:
            return True  # "Formatted", "Mapping": the consonant doubled
    return False


NO_SHAPE = (0, 0)
""":func:`shaped_name`'s answer for a run that holds no name by its shape."""
# how English places' names end ("Pottersville", "Edinburgh", "Marlborough", "Kevinmouth",
# "Brookton", "Daylesford"): a word no list or dictionary knows that ends so is a place.
# Not "-port", "-field", "-view", "-side": in the text of 22,000 Python files of installed
# packages they made "Backport", "Subfield", "Memoryview", "Clientside"
_TOPONYM_ENDINGS = (
    "ville", "burgh", "burg", "borough", "bury", "mouth", "chester", "haven", "shire",
    "stad", "furt", "berg", "ton", "town", "ford", "fort", "land",
)  # fmt: skip
# endings that make a place only after a listed given name or surname ("Williamsport",
# "Jenniferside", "Kevinview", "Smithfield"): alone they made "Backport", "Clientside",
# "Memoryview", "Subfield"
_NAMED_TOPONYM_ENDINGS = ("port", "side", "view", "field")
# the first word of a place's name before a word no list knows or a given name ("East
# Christopher", "Lake Jennifer", "Mount Kosciuszko"); "New" only before a given name, as it
# starts too much else ("New Keywords")
_PLACE_HEADS = frozenset(("North", "South", "East", "West", "Lake", "Port", "Fort", "Mount"))
# the words that make a run of capitalised words a company's name
_COMPANY_WORDS = frozenset(
    ("ltd", "inc", "llc", "llp", "plc", "corp", "co", "gmbh", "ag", "sa", "sas", "sarl", "bv",
     "nv", "oy", "ab", "as", "asa", "spa", "srl", "kk", "pty", "limited", "incorporated",
     "corporation", "company", "group", "holdings", "partners", "associates", "labs")
)  # fmt: skip


def shaped_place(words: list[str], keys: list[str], g: Gazetteer) -> bool:
    """Whether a run of capitalised ``words`` (``keys``: their list forms; not in capitals)
    is a place by its shape: one word no list or dictionary knows that ends as English
    places' names do (``_TOPONYM_ENDINGS``, a stem of three letters or more before it;
    ``_NAMED_TOPONYM_ENDINGS`` after a listed name only), or a compass point, "Lake",
    "Port", "Fort" or "Mount" before a word no list knows or a given name ("New" before a
    given name only), the two no listed place."""
    if len(words) == 1:
        key = keys[0]
        low = key.lower()
        if not _unknown(key, g):
            return False
        if any(low.endswith(e) and len(low) - len(e) >= 3 for e in _TOPONYM_ENDINGS):
            return True
        for ending in _NAMED_TOPONYM_ENDINGS:
            if low.endswith(ending):
                stem = key[: len(key) - len(ending)]
                return len(stem) >= 3 and (stem in g.first or stem in g.last)
        return False
    if len(words) != 2 or " ".join(keys) in g.places:  # "South Africa": the lists'
        return False
    if words[0] == "New":  # "New Amanda"; "New" before any other word starts too much else
        return keys[1] in g.first and keys[1] not in g.common
    return words[0] in _PLACE_HEADS and (_unknown(keys[1], g) or keys[1] in g.first)


def shaped_name(words: list[str], keys: list[str], g: Gazetteer) -> tuple[int, int]:
    """Where the run of capitalised ``words`` (``keys``: their list forms) holds a name by
    its shape alone, as (start, end) in characters from the run's start; :data:`NO_SHAPE`
    if it holds none (the module docstring says which shapes). The first word that may be
    a given name and starts one wins."""
    at = 0
    for j in range(len(words) - 1):
        start, at = at, at + len(words[j]) + 1
        last = _name_from(words, keys, j, g)
        if last:
            if any(w.lower().rstrip(".,") in _COMPANY_WORDS for w in words):
                return NO_SHAPE  # "Brightwell Ltd": a company (organisations: the model's)
            return (start, start + sum(len(w) + 1 for w in words[j : last + 1]) - 1)
    return NO_SHAPE


def _name_from(words: list[str], keys: list[str], j: int, g: Gazetteer) -> int:
    """The index of the last word of the name that starts at ``words[j]``, 0 if none does."""
    word, key, n = words[j], keys[j], len(words)
    following = keys[j + 1]
    if not _given_like(word, key, g):
        # a place's name as a given name, before a surname of a common shape ("Sawa
        # Bazhenov", "Zama Timayev"): the lists hold small places of every name
        shaped = len(words[j + 1]) >= 5 and _surname_shape(words[j + 1])
        if key in g.place_heads and _given_like(word, key, g, place=True) and shaped:
            return j + 1 if following not in g.known else 0
        return 0
    k = j + 1  # past particles: "Haroun van der Kruk"
    while k < n - 1 and k < j + 3 and words[k].lower() in _PARTICLES:
        k += 1
    if k > j + 1:
        surname = _surname_like(words[k], keys[k], g) and _unknown(keys[k], g)
        return k if surname and _unknown(key, g) else 0
    if j + 2 < n and _INITIAL.fullmatch(words[j + 1]):
        return j + 2 if _surname_like(words[j + 2], keys[j + 2], g) else 0  # "Tom I. Holzman"
    if not _surname_like(words[j + 1], following, g):
        return 0
    if key.lower() in COMMON_GIVEN:  # "John Blakey"; not "Grant Access", "Mark Complete"
        return j + 1 if following in g.last or _unknown(following, g) else 0
    if len(words[j + 1]) >= 5 and _surname_shape(words[j + 1]) and key not in g.known:
        return j + 1  # "Ana Petrović"
    if not _unknown(key, g):
        return 0
    if following in g.last:
        return j + 1  # "Kauan Cunha": a listed surname after a word no list knows
    if not _unknown(following, g):
        return 0
    last = j + 1  # "Meltem Vledder": no list knows either word, nor the dictionary
    while last + 1 < n and last < j + 3 and _goes_on(words[last + 1], keys[last + 1], g):
        last += 1
    return last


def _goes_on(word: str, key: str, g: Gazetteer) -> bool:
    """Whether ``word`` continues a name of unknown words: a particle, an initial or
    another unknown word."""
    if word.lower() in _PARTICLES or _INITIAL.fullmatch(word):
        return True
    return _surname_like(word, key, g) and _unknown(key, g)


def add_shaped(spans: list[Span], found: int, start: int, end: int) -> None:
    """Add the name a run holds by its shape (``start``-``end``) to ``spans``, whose items
    from ``found`` on are the run's other findings: what was found within it grows to it
    ("Schmitz" of "Max N. Schmitz"), a listed surname that is also a place's name too
    ("Wilson" of "Mark Wilson": :func:`_surname_like` takes a place only when the lists
    know it as a surname, and :func:`_given_like` no place but a given name)."""
    inside = [i for i in range(found, len(spans)) if spans[i][0] < end and start < spans[i][1]]
    for i in reversed(inside):
        s, e, _ = spans.pop(i)
        start, end = min(start, s), max(end, e)
    spans.append((start, end, "person"))


# a name's capital inside the word ("McBryde", "MacDonald", "DeLuca", "O'Brien")
_INNER_CAPITAL = re.compile(r"(?:Mc|Mac|Fitz|De|Di|Da|Du|La|Le|Van|Von|O'|D')[A-Z][a-z]+")


@functools.lru_cache(maxsize=8192)  # per word, as english_word
def _unknown(key: str, g: Gazetteer) -> bool:
    """Whether no list knows ``key``, nor the English dictionary (:func:`english`), and it
    is written as a name is: a capital inside it only after a name's prefix ("McBryde"),
    so that product names ("PostgreSQL", "OpenTelemetry GenAI", "JFrog Artifactory",
    found in stalwart's own docs) are not read as names."""
    if key not in g.known and not english_word(key):
        return key[1:] == key[1:].lower() or _INNER_CAPITAL.fullmatch(key) is not None
    return False


@functools.lru_cache(maxsize=8192)  # per word, as english_word
def _given_like(word: str, key: str, g: Gazetteer, *, place: bool = False) -> bool:
    """Whether ``word`` may be a given name before a surname: capitalised (not in capitals),
    three letters or more, no title or cue, no common word unless a common given name
    ("John"), and no place unless a listed given name (or ``place``: a place will do)."""
    lower = key.lower()
    return (
        len(key) >= 3
        and not word.isupper()
        and lower.rstrip(".") not in _TITLES
        and lower not in _ANY_CUE
        and (
            lower in COMMON_GIVEN
            or (key not in g.common and (place or key in g.first or key not in g.place_heads))
        )
    )


@functools.lru_cache(maxsize=8192)  # per word, as english_word
def _surname_like(word: str, key: str, g: Gazetteer) -> bool:
    """Whether ``word`` may be a surname: capitalised, three letters or more, no common
    word, no word that ends a place's name ("Bay"), no place unless a listed surname."""
    return (
        len(key) >= 3
        and not word.isupper()
        and key not in g.common
        and key.lower() not in PLACE_ENDINGS
        and (key in g.last or key not in g.place_heads)
    )
