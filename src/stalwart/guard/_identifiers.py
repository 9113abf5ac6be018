"""Identity document numbers and postal codes, found by the words that name them.

A driver's licence or passport number has no checksum and no shape of its own (the US
states alone use some forty formats: five to thirteen characters, digits with a letter or
two), and a US ZIP code is any five digits: read without context they are order numbers,
counts, ports and durations, which a log line is full of. So both are found only where
the text says what they are (both tiers; written from the formats' definitions, not from
the evaluation corpus: see ``docs/redaction.md``):

- ``id_number``: after the name of an identity document -- ``driver's license``,
  ``driving licence``, ``DL``, ``licence number``, ``passport``, ``ID number``, ``national
  ID``, ``ID card`` -- the first word within :data:`REACH` characters (no sentence end in
  between) of 5-20 letters and digits, dashes or single spaces between groups, with at
  least two digits: ``driver's license: X1234567``, ``DL# 123-456-789``, ``passport no.
  is 533380006``. Only a few words may come between (``number``, ``is``, ``the``,
  ``of``, ``my``...: ``_GAP_WORDS``), so ``passport photo taken 12345 days ago`` holds
  none. Not a date (``2025-01-31``).
- ``postal_code``: a US ZIP code (``62704``, ``62704-1234``) after a US state's
  two-letter code or name (``Springfield, IL 62704``, ``Austin, Texas 78701``: with the
  address pass, :func:`zip_after_state`); any
  postal code (4-10 letters and digits, one space or dash inside, a digit in it: ``SW1A
  1AA``, ``K1A 0B1``, ``75008``) after ``zip``, ``zip code``, ``postal code`` or
  ``postcode``.

A state's two-letter code counts in capitals, or in small letters after a comma (``in
10000 cases`` is no Indiana ZIP code; ``boston, ma 02115`` is one); a state's name, in
any case.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from stalwart.guard._words import US_STATE_CODES, Span

__all__ = [
    "IDENTIFIER_KINDS",
    "REACH",
    "identifier_spans",
    "keyed_kind",
    "keyed_value",
    "zip_after_state",
]

IDENTIFIER_KINDS = ("id_number", "postal_code")
REACH = 32
"""How far after a document's or a postal code's name its value may start (characters)."""


# The names of documents and of postal codes, each read where one of its words starts in
# the lowered text (found with str.find: a pattern that scans a text for them, with its
# leading \b, tried every position: ~300 us per 4 KB, more than the rest of the pass)
_DOCUMENT_AT = {
    "licen": re.compile(r"licen[cs]e\b(?:[ ]?(?:number|no\b\.?|num\b\.?|#|id\b))?"),
    "passport": re.compile(r"passport"),
    "id ": re.compile(
        r"id[ ](?:card|number|no\b\.?|#)"
        r"|(?:(?<=national[ ])|(?<=state[ ])|(?<=government[ ]))id(?:[ ]card)?"
    ),
}
_POSTAL_AT = {
    "zip": re.compile(r"zip(?:[ ]?code)?\b"),
    "postal": re.compile(r"postal(?:[ ]?code|(?=[ ]?:))"),  # "Postal: 78701" too
    "postcode": re.compile(r"postcode"),
}
# A document's number: one token of letters and digits (dashes between groups), or groups
# of digits with single spaces between ("533 380 006"); checked by _document_value.
_DOCUMENT_VALUE = re.compile(
    r"\d{2,6}(?:[ ]\d{2,6}){1,3}(?![\w-])|[A-Za-z0-9]+(?:-[A-Za-z0-9]+){0,3}(?![\w-])"
)
# A postal code: a group with a digit in its first seven characters, and perhaps a
# second group with a digit, or two capitals ("1234 AB"): "62704-1234", "SW1A 1AA"
_POSTAL_VALUE = re.compile(
    r"(?=[A-Za-z]{0,6}\d)[A-Za-z0-9]{2,7}"
    r"(?:[ -](?:(?=[A-Za-z]{0,3}\d)[A-Za-z0-9]{2,4}|[A-Z]{2})(?![\w-]))?(?![\w-])"
)
# what may come between the name and the value: these words ("driver's license number
# is ...", "zip code of ...") and punctuation ("passport (no.): ..."), nothing else
_GAP = re.compile(r"[^\W\d]+\.?|[:#=,()'\"/+-]+")
_GAP_WORDS = frozenset(
    ("number", "numbers", "no", "no.", "nr", "nr.", "num", "num.", "id", "card", "code", "is",
     "was", "are", "of", "the", "my", "your", "his", "her", "their", "our", "reads", "be",
     "will", "should", "on", "ending", "starting", "with", "s")
)  # fmt: skip
# where a sentence ends (not the full stop of "no.", "nr.", "num.", "lic.")
_BREAK = re.compile(r"(?<!\bno)(?<!\bNo)(?<!\bNO)(?<!\bnr)(?<!\bnum)(?<!\blic)[.!?;](?:\s|$)|\n")
_DATE_LIKE = re.compile(r"\d{1,4}[-/ ]\d{1,2}[-/ ]\d{1,4}")
# the states' USPS codes, and the territories' and freely associated states' (an address
# there has a ZIP code too)
_STATE_CODES = US_STATE_CODES | {"PR", "GU", "VI", "AS", "MP", "FM", "MH", "PW"}
_STATE_NAMES = frozenset(
    ("alabama", "alaska", "arizona", "arkansas", "california", "colorado", "connecticut",
     "delaware", "florida", "georgia", "hawaii", "idaho", "illinois", "indiana", "iowa",
     "kansas", "kentucky", "louisiana", "maine", "maryland", "massachusetts", "michigan",
     "minnesota", "mississippi", "missouri", "montana", "nebraska", "nevada",
     "new hampshire", "new jersey", "new mexico", "new york", "north carolina",
     "north dakota", "ohio", "oklahoma", "oregon", "pennsylvania", "rhode island",
     "south carolina", "south dakota", "tennessee", "texas", "utah", "vermont", "virginia",
     "washington", "west virginia", "wisconsin", "wyoming", "district of columbia",
     "puerto rico", "guam", "united states", "united states of america")
)  # fmt: skip
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_STATE_LAST_WORDS = frozenset(name.rsplit(" ", 1)[-1] for name in _STATE_NAMES)


def identifier_spans(text: str, masked: str, lowered: str) -> list[Span]:
    """Identity document numbers and postal codes in ``text`` (``masked``:
    :func:`~stalwart.guard._addresses.mask_opaque` of it, where ids and timestamps hold
    no digits; ``lowered``: ``text.lower()``)."""
    if len(lowered) != len(text):  # "İ" lowers to two characters: the offsets would shift
        lowered = text.translate(_ASCII_LOWER)
    spans: list[Span] = []
    _after_names(
        text, masked, lowered, _DOCUMENT_AT, value=_document_value, kind="id_number", spans=spans
    )
    at = text.find("DL")
    while at >= 0:  # "DL" in capitals only: "dl" is a download as often
        end = at + 2
        if (at == 0 or not text[at - 1].isalnum()) and not text[end : end + 1].isalnum():
            found = _value_after(text, masked, end, _document_value)
            if found is not None:
                spans.append((*found, "id_number"))
        at = text.find("DL", end)
    _after_names(
        text, masked, lowered, _POSTAL_AT, value=_postal_value, kind="postal_code", spans=spans,
        before=_zip_before,
    )  # fmt: skip
    return spans


# a US ZIP code that ends where a postal code's name follows ("the 78701 zip code")
_ZIP_BEFORE = re.compile(r"(?<![\w.-])\d{5}(?:-\d{4})?[ ]{1,2}$")


def _zip_before(masked: str, lowered: str, at: int, end: int) -> tuple[int, int] | None:
    """A US ZIP code just before the postal code's name at ``at:end``, when no word
    follows the name ("the 78701 zip code"; not "12345 zip files": the name named
    something else)."""
    if lowered[end : end + 2].lstrip(" ")[:1].isalnum():
        return None
    found = _ZIP_BEFORE.search(masked, max(0, at - 14), at)
    if found is None:
        return None
    return found.start(), found.start() + len(found.group().rstrip())


def _after_names(
    text: str,
    masked: str,
    lowered: str,
    names: dict[str, re.Pattern[str]],
    *,
    value: _Value,
    kind: str,
    spans: list[Span],
    before: Callable[[str, str, int, int], tuple[int, int] | None] | None = None,
) -> None:
    """Add to ``spans`` the value after each name of ``names`` (a word that starts it, and
    the pattern that reads the whole name from there) that ``value`` accepts, and the one
    ``before`` finds ahead of the name (given ``masked``, ``lowered`` and the name's span)."""
    for word, pattern in names.items():
        for at in _starts(lowered, word):
            m = pattern.match(lowered, at)
            if m is None:
                continue
            found = _value_after(text, masked, m.end(), value)
            if found is not None:
                spans.append((*found, kind))
            ahead = before(masked, lowered, at, m.end()) if before is not None else None
            if ahead is not None:
                spans.append((*ahead, kind))


def zip_after_state(text: str, start: int, end: int) -> bool:
    """Whether the number ``text[start:end]`` is a US ZIP code after its state: asked by
    the address pass (``_addresses``) of every number that follows a word, which it reads
    anyway (a pass of its own over the digits of a text cost ~50 us per 4 KB)."""
    size = end - start
    if size not in (5, 10):  # most numbers: told by their length alone
        return False
    if not text[start : start + 5].isdigit():
        return False
    if size == 10 and not (text[start + 5] == "-" and text[start + 6 : end].isdigit()):
        return False
    return _state_before(text, start)


def _starts(lowered: str, word: str) -> list[int]:
    """Where ``word`` starts a word in ``lowered``: not inside one, nor after ".", "/" or
    "_" (``plugin.zip``, ``files/zip/``, ``driver_license``: a file, a path, a name)."""
    found: list[int] = []
    at = lowered.find(word)
    while at >= 0:
        if at == 0 or not (lowered[at - 1].isalnum() or lowered[at - 1] in "./_"):
            found.append(at)
        at = lowered.find(word, at + len(word))
    return found


_Value = Callable[[str, int, int], "tuple[int, int] | None"]


def _value_after(text: str, masked: str, at: int, value: _Value) -> tuple[int, int] | None:
    """The first value ``value`` accepts after ``at``, within :data:`REACH` characters and
    before a sentence's end, past punctuation and the words of ``_GAP_WORDS``."""
    limit = min(len(text), at + REACH)
    stop = _BREAK.search(text, at, limit)
    if stop is not None:
        limit = stop.start()
    pos = at
    for _ in range(8):
        while pos < limit and text[pos].isspace():
            pos += 1
        if pos >= limit:
            return None
        found = value(masked, pos, min(len(text), limit + 24))
        if found is not None:
            return found
        gap = _GAP.match(text, pos, limit)
        if gap is None or (gap.group()[0].isalpha() and gap.group().lower() not in _GAP_WORDS):
            return None  # "zip file", "passport photo": the words named something else
        pos = gap.end()
    return None


def _document_value(masked: str, pos: int, end: int) -> tuple[int, int] | None:
    m = _DOCUMENT_VALUE.match(masked, pos, end)
    if m is None:
        return None
    value = m.group()
    compact = value.replace(" ", "").replace("-", "")
    digits = sum(c.isdigit() for c in compact)
    if 5 <= len(compact) <= 20 and digits >= 2 and not _DATE_LIKE.fullmatch(value):
        return pos, m.end()
    return None


def _postal_value(masked: str, pos: int, end: int) -> tuple[int, int] | None:
    m = _POSTAL_VALUE.match(masked, pos, end)
    if m is None or len(m.group().replace(" ", "").replace("-", "")) < 4:
        return None
    if sum(c.isdigit() for c in m.group()) < 2:  # "zip(state1, state2)": code, not a place
        return None
    return pos, m.end()


def _state_before(text: str, at: int) -> bool:
    """Whether a US state's code or name, or the country's (``USA``, ``United States``),
    ends just before ``at`` (then perhaps "." or "," and white space: an address's lines
    may break there): a code in capitals, or in small letters after a comma, as the line
    of an address has it (``boston, ma``). Read by hand, from the last word back: asked of
    every number after a word, where a pattern searched over the characters before it
    cost ~4 us a call."""
    end = at
    breaks = 0
    while end > 0 and text[end - 1] in " \t\r\n":
        end -= 1
        breaks += text[end] == "\n"
    if breaks > 1:  # a blank line between: "Ohio\n\n12345 rows were read"
        return False
    if end == at:
        return False
    if text[end - 1 : end] in (",", "."):
        end -= 1
    start = end
    while start > 0 and text[start - 1].isascii() and text[start - 1].isalpha():
        start -= 1
    last = text[start:end]
    if len(last) == 2:
        return last.upper() in _STATE_CODES and (last.isupper() or text[start - 2 : start] == ", ")
    if last == "USA":
        return True
    if last.lower() not in _STATE_LAST_WORDS:
        return False
    words = text[max(0, start - 28) : end].lower().split()
    return any(" ".join(words[i:]) in _STATE_NAMES for i in range(len(words)))


# A field's name that names a document's number or a postal code: the name is the cue
# its value has no words for ({"drivers_license": "X1234567"}, {"zip": 62704}). A bare
# "license" is left out: {"license": "GPL-3.0"} names a software licence; and "id_number"
# or "id_no", which name a record's number as often as an identity card's.
_KEYED = re.compile(
    r"(?P<id_number>(?:drivers?|driving)(?:licen[cs]e|lic|permit)\w*|(?:licen[cs]e|dl)"
    r"(?:number|no|num|nr|id)|passport\w*|(?:national|state|government)id(?:card|number|no)?"
    r"|idcard)"
    r"|(?P<postal_code>zip(?:code)?(?:plus4)?|post(?:al)?code|postcode)"
)


@functools.lru_cache(maxsize=1024)
def keyed_kind(key: str) -> str | None:
    """``id_number`` or ``postal_code`` when a field's name names one (``driver_license``,
    ``passportNumber``, ``DL_no``, ``zip``, ``postal_code``), else None; letters and
    digits only are compared, in small letters."""
    m = _KEYED.fullmatch("".join(c for c in key.lower() if c.isalnum()))
    return None if m is None else m.lastgroup


def keyed_value(kind: str, value: str) -> bool:
    """Whether ``value``, all of it, is such a value (:func:`keyed_kind`'s ``kind``)."""
    value = value.strip()
    check = _document_value if kind == "id_number" else _postal_value
    found = check(value, 0, len(value))
    return found is not None and found[1] == len(value)
