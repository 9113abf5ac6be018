"""The word shapes the name rules (:mod:`stalwart.guard._gazetteer`) and the street-address
rules (:mod:`stalwart.guard._addresses`) both read: a capitalised word, the particles of
names ("van", "de"), and :func:`trie`, which writes a word list as a regex tree."""

from __future__ import annotations

import re

Span = tuple[int, int, str]


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
