"""The literal strings a regular expression's every match contains, for a cheap pre-test.

:func:`required_literals` reads a pattern's parse tree and returns strings, one of which
every match of the pattern must contain (in small letters, for a case-insensitive
pattern); a text that holds none of them (``str.__contains__``, in C) cannot match, so the
pattern need not run over it. The injection detector runs 42 case-insensitive patterns
over every new text a task reads; each ``search`` cost ~0.7 µs even on a 15-character
value, where a few substring tests cost a tenth of that.

The reading is conservative: where it cannot tell (a class such as ``\\w``, a repeat that
may be empty, a lookaround), it asks nothing of that part, and a pattern of which it can
tell nothing gets None (always run). The test is exact for ASCII texts only: with
``re.IGNORECASE`` a few non-ASCII characters match ASCII ones (the long s, U+017F,
matches ``s``; the Kelvin sign, ``k``), so a caller runs every pattern on any other
text, and a pattern whose literals hold such a character gets None.

Read with ``re._parser`` (the parser ``re.compile`` itself uses; no public API gives the
tree): a test checks, on the detector's corpora, that the pre-test changes no verdict.
"""

from __future__ import annotations

import re._constants as sre  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from typing import Any

__all__ = ["required_literals"]

# Characters that re.IGNORECASE matches to an ASCII letter, or that lower to one:
# a literal holding one of them could match an ASCII text that does not contain it.
_FOLDS_TO_ASCII = frozenset("\u017f\u212a\u0131\u0130\u212b")  # long s, Kelvin, dotless i...


def required_literals(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Strings, in small letters, one of which the small letters of every match of
    ``pattern`` contain, or None when nothing can be said. (Small letters whatever the
    flags: a text that holds a literal holds its small letters once lowered, so the test
    is sound for case-sensitive parts too, only less selective.)"""
    found = _sequence(sre_parse.parse(pattern, flags))
    if found is None or any(
        not s or any(c in _FOLDS_TO_ASCII or (not c.isascii() and c.lower().isascii()) for c in s)
        for s in found
    ):
        return None
    return tuple(sorted(found))


def _sequence(items: Any) -> frozenset[str] | None:
    """The best set of required literals of one sequence of parse items: the one whose
    shortest literal is longest (the most selective test)."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            candidates.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is sre.LITERAL:
            char = chr(av)
            run.append(char.lower())
            continue
        flush()
        found = _item(op, av)
        if found is not None:
            candidates.append(found)
    flush()
    if not candidates:
        return None
    return max(candidates, key=lambda s: (min(map(len, s)), -len(s)))


def _item(op: Any, av: Any) -> frozenset[str] | None:
    if op is sre.SUBPATTERN:
        return _sequence(av[-1])
    if op is sre.BRANCH:
        union: set[str] = set()
        for alternative in av[1]:
            found = _sequence(alternative)
            if found is None:
                return None  # an alternative that requires nothing: the branch neither
            union |= found
        return frozenset(union)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, _high, body = av
        return _sequence(body) if low >= 1 else None
    if op is sre.ATOMIC_GROUP:
        return _sequence(av)
    if op is sre.IN and all(kind is sre.LITERAL for kind, _ in av):
        return frozenset(chr(c).lower() for _, c in av)
    return None  # a class, any character, an anchor, a lookaround, a back reference
