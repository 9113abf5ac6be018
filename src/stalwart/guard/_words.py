"""The word shapes the name rules (:mod:`stalwart.guard._gazetteer`,
:mod:`stalwart.guard._shapes`) and the street-address rules (:mod:`stalwart.guard._addresses`)
read: a capitalised word, the particles of names ("van", "de"), :func:`trie`, which writes a
word list as a regex tree, and the words around a name or a place that say one follows
(titles, cues) or ends it (place endings, surname endings)."""

from __future__ import annotations

import re

Span = tuple[int, int, str]
US_STATE_CODES = frozenset(
    ("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
     "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
     "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT",
     "VA", "WA", "WV", "WI", "WY", "DC")
)  # fmt: skip
"""The US states' (and DC's) USPS codes: a place's name after ", " or before a ZIP code."""


class _Node(dict[str, "_Node"]):
    """A node of :func:`trie`'s tree: the letters that may come next ("" ends a word)."""


def trie(words: str) -> str:
    """The alternation ``words`` ("st|street|...") as a tree of common beginnings
    ("s(?:t(?:reet)?)?..."): the regex engine tries the few branches that begin with the
    text's next letter instead of every word in turn. Used only where every word is followed
    by what no word goes on with (a word boundary, a dot, a space), so that at most one word
    can match at a place and the order of the branches changes nothing."""
    tree = _Node()
    for word in words.split("|"):
        node = tree
        for ch in word:
            node = node.setdefault(ch, _Node())
        node[""] = _Node()

    def emit(node: _Node) -> str:
        branches = [re.escape(ch) + emit(sub) for ch, sub in node.items() if ch]
        if not branches:
            return ""
        single = len(branches) == 1 and ("" not in node or len(branches[0]) == 1)
        body = branches[0] if single else f"(?:{'|'.join(branches)})"
        return body + "?" if "" in node else body

    return emit(tree)


# a capital: Latin (with Latin Extended-A, whose capitals and small letters alternate),
# Greek or Cyrillic
_UP = "A-ZÀ-ÖØ-ÞĀ-ſΆ-ΏΑ-ΩА-ЯЁ"
# (U+2206, the increment sign, stands in for a Greek capital delta in some place records)
# (its letters as runs of a single class, "[^\W\d_]*", between the rare "'", "-": the
# regex engine reads such a run in one step, where "(?:[^\W\d_]|['-])+" tried the two
# alternatives at every letter; the same matches, backtracking through the same lengths)
_LETTER, _JOINER = r"[^\W\d_]", r"['\u2019\u2206-]"
_WORD = rf"[{_UP}](?:{_LETTER}|{_JOINER}){_LETTER}*(?:{_JOINER}{_LETTER}*)*(?!\d)"  # not "DE89"
_PARTICLE = (
    r"(?:de|da|do|dos|das|van|von|der|den|del|della|la|le|les|di|du|bin|ibn|al|el|nad|na|"
    r"pod|pri|u|v|ob|am|an|im|sur|sous|en|y|zu|ter|op)"
)
# the same as a tree, where a particle is followed by a space (so at most one can match)
_PARTICLE_TRIE = trie(_PARTICLE[3:-1])

# particles of names and street names, as a set (and "des", in French street names)
_PARTICLES = frozenset(_PARTICLE[3:-1].split("|")) | {"des"}


_TITLES = frozenset(
    ("mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "mme", "mlle", "herr",
     "frau", "sr", "sra", "sig", "dott")
)  # fmt: skip
# the word just before a capitalised run that says a name follows ("my name is", "Hi",
# "Dear", "my partner's name"), and weaker ones that only confirm a listed name ("to", "by")
_NAME_CUES = frozenset(
    ("is", "named", "called", "dear", "hi", "hello", "hey", "signed", "sincerely", "regards",
     "cheers", "thanks", "kid", "child", "son", "daughter", "partner", "wife", "husband",
     "mother", "father", "guardian", "user", "customer", "patient", "attn", "name", "names",
     "surname", "am", "i'm", "mr", "mrs", "ms", "dr")
)  # fmt: skip
_WEAK_CUES = frozenset(
    ("from", "by", "with", "to", "tell", "call", "ask", "contact", "for", "and", "cc", "met",
     "him", "her", "add", "leave", "me", "of", "about", "that")
)  # fmt: skip
# "originally from X", "flew to X", "I'm in X": the two words before a place
_PLACE_PREPOSITIONS = frozenset(("from", "to", "in", "into", "near", "visit", "visiting"))
_PLACE_VERBS = frozenset(
    ("originally", "moved", "here", "flew", "fly", "flying", "travelling", "traveling",
     "travel", "returned", "return", "going", "went", "live", "lives", "living", "lived",
     "born", "based", "located", "i'm", "am", "stay", "staying", "stayed", "arrived",
     "arriving", "relocated", "relocating", "headed", "heading", "came", "come", "comes",
     "drove", "driving", "trip", "moving", "grew", "raised")
)  # fmt: skip
# the last word of a place's name that says it is one ("Castor Bay", "Pine Park", "Cabbage
# Tree Creek", "BLACKBUTT SOUTH"): a capitalised run ending in one is a place
PLACE_ENDINGS = frozenset(
    ("bay", "beach", "brook", "creek", "lake", "lakes", "park", "hill", "hills", "springs",
     "falls", "heights", "valley", "vale", "dale", "glen", "island", "islands", "isle",
     "harbour", "harbor", "haven", "port", "cove", "shores", "plains", "meadows", "mount",
     "mountain", "mountains", "river", "ridge", "point", "junction", "crossing", "landing",
     "village", "town", "township", "city", "ville", "burg", "borough", "county", "parish",
     "south", "north", "east", "west", "upper", "lower", "centre", "center", "downs",
     "flat", "flats", "gully", "forest", "woods", "wells", "sound", "peninsula", "estate")
)  # fmt: skip
# surnames of a shape common in many languages: with a capitalised word before them, a name
# (compared with str.endswith: a search for "(?:...)$" tries the alternation at every
# character of the word, ~8 us a word on this machine)
_SURNAME_ENDINGS = (
    "dóttir", "dottir", "sson", "ović", "ovic", "ević", "evic", "vić", "ski", "ska", "cki",
    "cka", "dzki", "enko", "chuk", "czuk", "shvili", "dze", "yan", "ov", "ova", "ev", "eva",
    "escu", "akis", "opoulos", "oglu", "oğlu",
)  # fmt: skip


def _surname_shape(word: str) -> bool:
    """Whether ``word`` (a possessive too: "Petrović's") ends like a common surname."""
    return word.removesuffix("'s").removesuffix("\u2019s").endswith(_SURNAME_ENDINGS)


_ANY_CUE = _NAME_CUES | _WEAK_CUES | _PLACE_PREPOSITIONS | _TITLES
_INITIAL = re.compile(r"[A-Z]\.?")
