"""One redactor for everything the runtime writes: PII and credentials out.

A single compiled alternation finds candidates in one pass; validators then
confirm the ones a regex alone over-matches (payment cards must pass Luhn,
IBANs mod-97, IP addresses must parse, generic secret assignments must look
random). Exact values registered with :meth:`Redactor.add_known` (every
secret a provider resolves) are removed first, whatever they look like.

Three policies (per agent): ``redact`` replaces a finding with
``[REDACTED:kind]``, ``mask`` keeps its last four characters, ``block``
refuses the whole text (:class:`~stalwart.errors.OutputBlocked`).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import math
import operator
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from stalwart.errors import ConfigError, OutputBlocked
from stalwart.guard._addresses import mask_opaque
from stalwart.guard._gazetteer import gazetteer, name_spans
from stalwart.guard._identifiers import IDENTIFIER_KINDS, identifier_spans, zip_after_state
from stalwart.guard._ner import ner_model
from stalwart.guard._shapes import english
from stalwart.guard._vendors import CREDENTIAL_KINDS, credential_spans

__all__ = [
    "KINDS", "Finding", "OutputPolicy", "Redactor", "Tier", "default_redactor", "iban_ok",
    "luhn_ok", "output_redactor", "tier_setting", "warm_fast_tier", "warm_output_redactor",
]  # fmt: skip

OutputPolicy = Literal["redact", "mask", "block"]

_SECRET_KEYS = re.compile(
    r"(?i)^(?:.*[_-])?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|"
    r"cookie|private[_-]?key|access[_-]?key|client[_-]?secret|credentials?)$"
)

_BEARER = re.compile(r"(?i:\b(?:bearer|basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{16,})")
# a password in a URL, found from each "://" (its literal start is searched for in C; a
# pattern that began with the scheme was tried at every word of prose)
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]{1,64}:(?P<value>[^/\s@]{1,128})@")
_SCHEME_BEFORE = re.compile(r"\b[a-z][a-z0-9+.-]{1,20}$")
_ASSIGN_KEYWORDS = ("key", "secret", "token", "passw", "pwd", "auth", "credential")
_ASSIGN_TAIL = re.compile(
    r"[A-Za-z_-]{0,12}[\"']?\s{0,3}[:=]\s{0,3}[\"']?(?P<value>[^\s\"',;]{6,200})"
)
_EMAIL_LOCAL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}$")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b")
# a capital first (the regex engine skips to capitals), then "not after a letter or digit"
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"
)
_IPV6_ANCHOR = re.compile(r"::|:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:")  # not "16:32:21"
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# digits with separators ("x": a phone extension), not an ISO date or time or a short
# decimal ("2024-03-02T", "16:32:21", "561.292": every log line has them)
_NUM_CANDIDATE = re.compile(
    r"\d(?<!\d\d)(?<!\d[:.]\d)(?!\d{3}-\d\d-\d\d(?:T|$|[^\d-])|\d:\d\d:\d\d"
    r"|\d{0,5}\.\d{1,3}(?![\d.]))[\d ().:/x-]{5,60}\d"
)
_NUMBERS = re.compile(
    "|".join(
        f"(?P<{k}>{p})"
        for k, p in (
            (  # 13-19 digits, grouped by spaces or hyphens, or dots in fours
                "card",
                r"(?<![\w.])(?:\d(?:[ -]?\d){12,18}|\d{4}(?:\.\d{4}){2}\.\d{1,7})(?![\d.])",
            ),
            ("ssn", r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)"),
            ("ipv4", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),
            (  # E.123 international and national forms: "+44 (0)20 7946 0958", "(07700)
                # 073564", "036481 87 62" (area codes of up to 6 digits), "030/1234567"
                "phone",
                r"(?<![\w.+/])(?:\+\d{1,3}[ .-]?(?:\(0?\d{1,4}\)[ .-]?)?\d{1,5}"
                r"(?:[ .-]?\d{2,8}){0,4}|(?:\(\d{1,5}\)[ .-]?)?\d{1,6}(?:[ .-]\d{2,8}){1,4}"
                r"|\(\d{1,5}\)[ .-]?\d{3,9}(?:[ .-]\d{2,8}){0,3}|\d{2,5}/\d{3,9}|\d{9,12})"
                r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?!\d)",
            ),
        )
    )
)
_DIGIT = re.compile(r"\d")
_NON_DIGIT = re.compile(r"\D")
_ASCII_DIGITS = str.maketrans("", "", "0123456789")  # deletes them: what is left is not one
_EXTENSION = re.compile(r"[ ]?(?:x|ext\.?)[ ]?(?=\d+$)")
_EXTENSION_AFTER = re.compile(r"[ ]?(?i:ext\.?|extension)[ ]?\d{1,5}\b")  # "ext. 23"
_CARD_GROUPS = re.compile(r"\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}|\d{4}([ -])\d{6}\2\d{4,5}")
_MONEY = re.compile(r"\d{1,3}(?:[,. ]\d{3})*[.,]\d{2}|\d+[.,]\d{1,2}")
_CURRENCY = frozenset("$€£¥₹")
_CAPITALISED = re.compile(r"[A-ZÀ-ÖØ-Þ][^\W\d_]")  # no such word: nothing for the model
_ESCAPES = (("\\n", " \n"), ("\\r", " \r"), ("\\t", " \t"))
_PHONE = re.compile(_NUMBERS.pattern.split("(?P<phone>", 1)[1][:-1])
_PHONE_CUES = (
    "phone", "tel", "telephone", "call", "called", "mobile", "cell", "cellphone", "fax",
    "number", "no", "contact", "reach", "text", "texts", "sms", "message", "messages",
    "whatsapp", "ring", "dial", "landline", "desk", "office", "home", "work",
)  # fmt: skip
_NO_BREAK = re.compile(r"[^.\d]*")
_PHONE_CUE_SET = frozenset(_PHONE_CUES)
_LONGEST_CUE = max(map(len, _PHONE_CUES))
_LETTERS = re.compile(r"[^\W\d_]+")
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_IBAN_BEFORE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})*\s?$")
# what :data:`_IBAN_BEFORE` needs in the last 3 characters (its "\s?$" takes at most two)
_IBAN_END = re.compile(r"[A-Z0-9]")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
KINDS = (
    *CREDENTIAL_KINDS, "assignment", "email", "iban", "ipv6", "card", "ssn", "ipv4", "phone",
    "bearer_token", "url_password", "person", "location", "address", *IDENTIFIER_KINDS,
)  # fmt: skip
"""What a redactor finds by default (``organization`` is opt-in: the accurate tier only)."""
NAME_KINDS = frozenset({"person", "location", "address", "organization"})
Tier = Literal["fast", "accurate"]
_ALL_KINDS = frozenset(KINDS)
_IDENTIFIERS = frozenset(IDENTIFIER_KINDS)
_NAME_PASS = NAME_KINDS | {"postal_code"}
_START = operator.itemgetter(0)


_LUHN_DOUBLED = {str(d): 2 * d - 9 if d > 4 else 2 * d for d in range(10)}


def luhn_ok(digits: str) -> bool:
    """True if ``digits`` pass the Luhn checksum (payment cards)."""
    if digits.isascii() and digits.isdigit():  # the digits' sums in C, not a loop per digit
        doubled = sum(map(_LUHN_DOUBLED.__getitem__, digits[-2::-2]))
        return (sum(map(int, digits[-1::-2])) + doubled) % 10 == 0
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """True if ``text`` (spaces allowed) is an IBAN with a valid mod-97 check."""
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


_CODE_LIKE = re.compile(
    r"[()\[\]{}<>$]|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$|^[A-Za-z_]+_(?:key|token|password)$"
)


def _looks_secret(value: str, key_text: str) -> bool:
    """A value assigned to a secret-named key that looks like a real secret, not code or a
    placeholder: long enough, random enough, mixing letter cases and digits."""
    if value.startswith(("[REDACTED", "secret://", "*")) or _CODE_LIKE.search(value):
        return False
    if re.search(r"(?i)passw|pwd", key_text):
        return len(value) >= 6 and not re.fullmatch(r"[a-z_]+", value)
    if len(value) < 12:
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return _entropy(value) >= 3.2 and classes >= 2


def _valid_number(kind: str, text: str) -> bool:
    if kind == "card":
        digits = _NON_DIGIT.sub("", text)
        return 13 <= len(digits) <= 19 and luhn_ok(digits)
    if kind == "ipv4":  # loopback and "any" name no one: kept
        return all(int(p) <= 255 for p in text.split(".")) and not text.startswith(("127.", "0."))
    if kind == "phone":
        main = _EXTENSION.split(text)[0] if "x" in text else text  # the number before "x12"
        digits = _NON_DIGIT.sub("", main)
        if _DATE.fullmatch(main) or _SSN_SHAPE.fullmatch(main):
            return False
        if text.startswith("+"):
            return 8 <= len(digits) <= 15  # E.164: at most 15 digits
        return 6 <= len(digits) <= 15  # 6 to 8 digits, or no separator: only after a cue
    return True  # ssn: the pattern itself excludes the invalid ranges


Span = tuple[int, int, str]


def _card_within(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The longest Luhn-valid card (13-19 digits) inside ``text[start:end]`` that begins and
    ends at a group boundary ("1 4111 1111 1111 1111 2" holds one); None if there is none."""
    seps = [i for i in range(start + 1, end) if text[i] in " -"]
    starts = [start, *(i + 1 for i in seps)]
    ends = [*seps, end]
    best: tuple[int, int] | None = None
    for a in starts:
        for b in ends:
            if b <= a or (best is not None and b - a <= best[1] - best[0]):
                continue
            digits = _NON_DIGIT.sub("", text[a:b])
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                best = (a, b)
    return best


SCAN_CACHE_CHARS = 256
"""Texts up to this long have their fast-tier scan remembered (:func:`_scan_short`)."""


@functools.lru_cache(maxsize=4096)
def _scan_short(text: str, kinds: frozenset[str], known: frozenset[str]) -> tuple[Span, ...]:
    """:func:`_scan` of a short text, remembered: the scan is a pure function of its
    arguments, and the same short values come back on line after line (a model's name,
    a tool's, an outcome, a task id), each costing a full scan (tens of microseconds)
    in the agent that logs it and again in the node that stores it."""
    return tuple(_scan(text, kinds, known))


def _scan(
    text: str, kinds: frozenset[str], known: frozenset[str], extra: Iterable[Span] = ()
) -> list[Span]:
    """Every finding as (start, end, kind); overlapping findings merge into one (the
    earlier pass names it), so a value is never half removed."""
    spans: list[Span] = []
    for value in known:
        start = text.find(value)
        while start >= 0:
            spans.append((start, start + len(value), "secret"))
            start = text.find(value, start + len(value))
    if "\\" in text:  # JSON-escaped breaks ("Phone:\\n555 0100") read as breaks; each
        for escaped, plain in _ESCAPES:  # replacement has the same length: offsets hold
            text = text.replace(escaped, plain)
    spans += credential_spans(text)
    lowered = text.lower()
    if "bearer_token" in kinds and ("bearer" in lowered or "basic" in lowered):
        for m in _BEARER.finditer(text):
            value = m.group("value")
            mixed = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d")) >= 2
            if mixed or len(value) >= 32:
                spans.append((m.start("value"), m.end("value"), "bearer_token"))
    if "url_password" in kinds and "://" in text and "@" in text:
        spans += [
            (m.start("value"), m.end("value"), "url_password")
            for m in _URL_CREDENTIALS.finditer(text)
            if _SCHEME_BEFORE.search(text, max(0, m.start() - 21), m.start()) is not None
        ]
    if "assignment" in kinds and ("=" in text or ":" in text):
        for word in _ASSIGN_KEYWORDS:
            at = lowered.find(word)
            while at >= 0:
                tail = _ASSIGN_TAIL.match(text, at + len(word))
                if tail is not None and _looks_secret(
                    tail.group("value"), text[at : tail.start("value")]
                ):
                    spans.append((tail.start("value"), tail.end("value"), "secret"))
                at = lowered.find(word, at + len(word))
    if "@" in text:
        spans += _emails(text)
    masked: str | None = None  # the ids and timestamps hidden from the digit passes
    if _DIGIT.search(text) is not None:
        masked = mask_opaque(text)
        if kinds & _IDENTIFIERS:  # first: "DL 123-456-789" is named an id, not a phone
            spans += identifier_spans(text, masked, lowered)
        spans += _number_spans(text, masked)
    if kinds & _NAME_PASS:  # ZIP codes after their states come with the address pass
        spans += name_spans(text, masked=masked)
    if extra or not kinds >= _ALL_KINDS:  # else every kind found is asked for
        spans += extra
        spans = [s for s in spans if s[2] in kinds or s[2] == "secret"]
    if "(" in text and "location" in kinds:  # "Cyprus (Greek)", "Unionville (Orange)"
        spans = [
            _qualified(text, s) if s[2] == "location" and "(" in text[s[1] : s[1] + 2] else s
            for s in spans
        ]
    if not spans:
        return spans
    spans.sort(key=_START)  # stable: at one start, the earlier pass (credentials) wins
    out: list[Span] = []
    for start, end, kind in spans:
        if out and start < out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end, out[-1][2])
            continue
        out.append((start, end, kind))
    return out


_QUALIFIER = re.compile(r"[ ]?\((?=[A-ZÀ-ÖØ-ÞΑ-ΩА-Я])[^()\n\d]{2,30}\)")


def _qualified(text: str, span: Span) -> Span:
    """A place with the capitalised qualifier after it in brackets ("Cyprus (Greek)",
    "Newport (Gwent)"): the qualifier names it too."""
    m = _QUALIFIER.match(text, span[1])
    return span if m is None else (span[0], m.end(), span[2])


def _emails(text: str) -> list[Span]:
    """E-mail addresses, found from each "@" outwards (a scan from every letter would try
    64 characters ahead at each one)."""
    out: list[Span] = []
    at = text.find("@")
    while at > 0:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local is not None else None
        if local is not None and domain is not None:
            out.append((local.start(), domain.end(), "email"))
        at = text.find("@", at + 1)
    return out


_CARD_CUE = re.compile(r"(?i:card|visa|maestro|mastercard|amex|\bcc\b|\bpan\b)[^.\d]{0,24}$")


def _maestro(text: str, at: int, end: int) -> bool:
    """A 12-digit number that passes Luhn right after words about a card ("card number
    5018 2340 1234"): the shortest card numbers ISO/IEC 7812 allows (Maestro)."""
    digits = _NON_DIGIT.sub("", text[at:end])
    return luhn_ok(digits) and _CARD_CUE.search(text, max(0, at - 40), at) is not None


class _PhoneCues:
    """Whether the words that speak of a phone ("call", "fax:") come just before a number:
    the few characters before it are read when asked (a log line has many numbers, few of
    which need it; a pass over the whole text for every cue word cost more)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def before(self, at: int) -> bool:
        """Whether such a word ends within 24 characters before ``at``, with no digit or
        full stop in between."""
        text = self.text
        low = max(0, at - 24 - _LONGEST_CUE)
        end = -1
        for m in _LETTERS.finditer(text, low, at):
            if m.group().lower() in _PHONE_CUE_SET and (
                m.start() > low or low == 0 or not text[low - 1].isalpha()
            ):
                end = m.end()
        return end >= 0 and at - end <= 24 and _NO_BREAK.fullmatch(text, end, at) is not None


def _number_spans(text: str, masked: str) -> list[Span]:
    """IBANs, IPv6 addresses, cards, SSNs, IPv4 addresses and phone numbers (the candidate
    numbers found in ``masked``, :func:`mask_opaque` of ``text``: UUIDs and ISO date-times
    are no numbers)."""
    cues = _PhoneCues(text)
    spans = [(m.start(), m.end(), "iban") for m in _IBAN.finditer(text) if iban_ok(m.group())]
    if "::" in text or _IPV6_ANCHOR.search(text):
        for m in _IPV6.finditer(text):
            try:
                address = ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            if address.is_loopback or address.is_unspecified:
                continue
            spans.append((m.start(), m.end(), "ipv6"))
    for cand in _NUM_CANDIDATE.finditer(masked):
        found = cand.group()
        opening = text[cand.start() - 1 : cand.start()] == "("
        if (
            len(found) - len(found.translate(_ASCII_DIGITS)) < 9
            and found.count(".") < 3
            and not cues.before(cand.start() - opening)
        ):
            continue  # too short for a card or an SSN, no IPv4: a phone only after a cue
        base = cand.start()
        while base > 0 and text[base - 1] in "+(" and base > cand.start() - 2:
            base -= 1  # a phone's leading "+44" or "(415)"
        for m in _NUMBERS.finditer(text, base, cand.end()):  # lookbehinds see the context
            kind = m.lastgroup or ""
            at, end = m.start(), m.end()
            if text[end : end + 1] in _HEX_LETTERS and _in_hex_id(text, at, end):
                continue
            if not _valid_number(kind, m.group()):
                inner = _card_within(text, at, end) if kind == "card" else None
                if inner is not None:  # "1 4111 1111 1111 1111 2 items" holds a card
                    at, end = inner
                else:  # not a card: "001-871-584-1560" may still be a phone number
                    phone = _PHONE.match(text, at) if kind == "card" else None
                    if (
                        phone is None
                        or _CARD_GROUPS.fullmatch(phone.group())  # a mistyped card stays
                        or len(_NON_DIGIT.sub("", phone.group())) > 13
                        or not _valid_number("phone", phone.group())
                    ):
                        continue
                    kind, end = "phone", phone.end()
            if kind == "phone":
                if _MONEY.fullmatch(text, at, end) or text[at - 1 : at] in _CURRENCY:
                    continue  # "$6260.72", "1,250.00"
                if zip_after_state(text, at, end):
                    continue  # "Austin, TX 78701-1234": the address pass names it
                digits = len(_NON_DIGIT.sub("", text[at:end]))
                if digits == 12 and _maestro(text, at, end):
                    kind = "card"  # ISO/IEC 7812: a Maestro card may have 12 digits
                else:
                    bare = text[at:end].isdigit()  # an id or a timestamp, unless the words
                    if (bare or digits < 9) and not cues.before(at):
                        continue  # before it speak of a phone
            if (
                kind != "ipv4"
                and _IBAN_END.search(text, max(0, at - 3), at)  # an IBAN's group ends here
                and _IBAN_BEFORE.search(text, max(0, at - 40), at)
            ):
                continue  # the tail of an IBAN (a bad one: good ones were found above)
            if kind == "phone" and text[end : end + 1] in (" ", "e", "E"):
                extension = _EXTENSION_AFTER.match(text, end)
                end = end if extension is None else extension.end()
            spans.append((at, end, kind))
    return spans


_HEX_LETTERS = frozenset("abcdef")
_HEX = frozenset("0123456789abcdef")
_HEX_ID_CHARS = 16
"""A lower-case hex token this long, with a letter in it, is an id or a digest."""


def _in_hex_id(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` (digits a number pass found, a hex letter just after
    them) lies in a whole token of at least :data:`_HEX_ID_CHARS` lower-case hex
    characters: a task id (``uuid4().hex``), a commit or a digest, never a card or a
    phone number. ``8984610692474a519cc5e7c403eaaa9a``, a task id, was redacted as the
    card its first 13 digits make, in the task API's listing and in every log line.
    Found digits only: checked where a number pass finds one, not over the whole text.
    An IBAN is upper case, and a card or a phone number is never glued to letters."""
    if not _HEX.issuperset(text[start:end]):  # "4000 0000 0000 0006 0a": spaced, a number
        return False
    left = start
    while left > 0 and text[left - 1] in _HEX:
        left -= 1
    right = end
    while right < len(text) and text[right] in _HEX:
        right += 1
    if right - left < _HEX_ID_CHARS:
        return False
    # a whole token: not part of a longer word, nor of a dashed or underscored name
    return not _glued(text[left - 1 : left]) and not _glued(text[right : right + 1])


def _glued(char: str) -> bool:
    return char != "" and (char.isalnum() or char in "_-")


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')
"""Characters a JSON string shows escaped (a known value holding one is looked for escaped)."""

_PLAIN_FIELDS = frozenset({"ts", "level", "logger", "error_class"})
"""Log fields the runtime itself writes, never user data: not scanned (they are on every line)."""
_ID_FIELDS = frozenset({"task_id", "trace_id", "span_id", "agent_id", "node", "parent_task_id"})
"""Log fields that hold identifiers: scanned for every kind but the loose number kinds
(:data:`_LOOSE_NUMBERS`). A task id may be the client's own (``ma3-recover-00012-34567``),
and read as a phone number it was cut from the line, and searching the logs by it found
nothing. A credential, an e-mail or a card (checksummed) in an id is still removed."""
_LOOSE_NUMBERS = frozenset({"phone", "ssn"})
"""Kinds told by their digits' grouping alone, with no checksum: in an identifier, a run of
numbers grouped that way is far likelier a counter or a date than a phone or an SSN."""


class Finding:
    """One thing the redactor found: its kind and where (for reports; never the value)."""

    __slots__ = ("end", "kind", "start")

    def __init__(self, kind: str, start: int, end: int) -> None:
        self.kind, self.start, self.end = kind, start, end

    def __repr__(self) -> str:
        return f"Finding({self.kind!r}, {self.start}, {self.end})"


class _Known:
    """Exact values to remove, shared by a redactor and its clones (other policy or tier)."""

    __slots__ = ("lock", "values")

    def __init__(self) -> None:
        self.values: frozenset[str] = frozenset()
        self.lock = threading.Lock()


class Redactor:
    """Finds and removes PII and credentials in text and in nested data.

    Thread-safe; ``add_known`` registers exact values (resolved secrets,
    canaries) that are removed wherever they appear.

    ``tier``: ``"fast"`` (patterns, checksums, vendor token formats and the name/place
    gazetteer: what every log line gets) or ``"accurate"`` (the same plus a named-entity
    model, :mod:`stalwart.guard._ner`, when it is installed; the fast tier alone when it
    is not: :attr:`effective_tier` says which ran).
    """

    def __init__(
        self,
        *,
        policy: OutputPolicy = "redact",
        kinds: Iterable[str] | None = None,
        tier: Tier = "fast",
    ) -> None:
        if tier not in ("fast", "accurate"):
            raise ConfigError(f"Redactor tier must be 'fast' or 'accurate', got {tier!r}")
        self.policy: OutputPolicy = policy
        self.kinds = frozenset(kinds) if kinds is not None else frozenset(KINDS)
        self.tier: Tier = tier
        self._box = _Known()

    @property
    def _known(self) -> frozenset[str]:
        return self._box.values

    @property
    def effective_tier(self) -> Tier:
        """``accurate`` only if the named-entity model is installed and in use."""
        if self.tier == "accurate" and ner_model() is not None:
            return "accurate"
        return "fast"

    def add_known(self, *values: str) -> None:
        """Always remove these exact values (secrets the process has resolved)."""
        with self._box.lock:
            before = self._box.values
            self._box.values = before | {v for v in values if isinstance(v, str) and len(v) >= 4}
            changed = self._box.values != before
        if changed:  # the remembered scans name the old set: let them go (they hold it)
            _scan_short.cache_clear()

    def holds_known_value(self, rendered: str) -> bool:
        """Whether ``rendered`` (a JSON line) contains one of the values :meth:`add_known`
        registered, as it is or as JSON escapes it."""
        for value in self._known:
            if value in rendered:
                return True
            escaped = _JSON_ESCAPED.search(value) is not None
            if escaped and json.dumps(value, ensure_ascii=False)[1:-1] in rendered:
                return True
        return False

    def with_policy(self, policy: OutputPolicy) -> Redactor:
        """The same redactor (sharing its known values) with another policy."""
        clone = copy.copy(self)
        clone.policy = policy
        return clone

    def with_tier(self, tier: Tier) -> Redactor:
        """The same redactor (sharing its known values) on another tier."""
        if tier not in ("fast", "accurate"):
            raise ConfigError(f"Redactor tier must be 'fast' or 'accurate', got {tier!r}")
        clone = copy.copy(self)
        clone.tier = tier
        return clone

    def _spans(self, text: str, *, entities: bool = True) -> list[Span]:
        extra: list[Span] = []
        # a text without a capital is not worth the model, nor worth loading it for (the
        # node's views of ids and statuses never load it: node/_app.py)
        if (
            entities
            and self.tier == "accurate"
            and self.kinds & NAME_KINDS
            and _CAPITALISED.search(text) is not None
        ):
            model = ner_model()
            if model is not None and model.worth_reading(text):  # else nothing it finds is kept
                extra = model.spans(text, organizations="organization" in self.kinds)
        if not extra and len(text) <= SCAN_CACHE_CHARS:
            return list(_scan_short(text, self.kinds, self._known))
        return _scan(text, self.kinds, self._known, extra)

    # -- text ----------------------------------------------------------------------------
    def findings(self, text: str) -> list[Finding]:
        """What :meth:`redact` would remove, without removing it."""
        return [Finding(k, a, b) for a, b, k in self._spans(text)]

    def redact(
        self, text: str, *, policy: OutputPolicy | None = None, entities: bool = True
    ) -> str:
        """``text`` without the PII and credentials found in it (per ``policy``).

        ``entities=False`` skips the named-entity model (the fast tier alone): for text
        the accurate tier already redacted (a sub-task's output, see :meth:`redact_data`)."""
        if not text or len(text) < 4:
            return text
        return self._apply(text, self._spans(text, entities=entities), policy)

    def _apply(self, text: str, spans: list[Span], policy: OutputPolicy | None) -> str:
        if not spans:
            return text
        mode = policy or self.policy
        if mode == "block":
            kinds = sorted({k for _, _, k in spans})
            raise OutputBlocked(f"the output contains {', '.join(kinds)}; blocked by policy")
        parts: list[str] = []
        pos = 0
        for start, end, kind in spans:
            parts.append(text[pos:start])
            if mode == "redact":
                parts.append(f"[REDACTED:{kind}]")
            else:
                parts.append(_replacement(kind, text[start:end], mode))
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    # -- data ------------------------------------------------------------------------------
    def redact_data(
        self,
        value: Any,
        *,
        policy: OutputPolicy | None = None,
        vetted: AbstractSet[str] = frozenset(),
        _depth: int = 0,
    ) -> Any:
        """A copy of ``value`` (JSON-like data) with every string redacted; values under
        keys that name a secret (``password``, ``api_key``, ``token``…) are removed whole.

        ``vetted``: strings the output tier already redacted (what a sub-task succeeded
        with, redacted as its output): they get the fast tier only (patterns, checksums,
        this process's known values, the gazetteer), not the named-entity model again."""
        if isinstance(value, str):
            return self.redact(value, policy=policy, entities=value not in vetted)
        if _depth > 64:
            return "[REDACTED:too_deep]"
        if value is None or type(value) in _SCALARS:  # nothing to find in a number
            return value
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str) and _SECRET_KEYS.match(k) and isinstance(v, str) and v:
                    if (policy or self.policy) == "block" and not v.startswith("secret://"):
                        raise OutputBlocked(f"the output has a {k!r} field; blocked by policy")
                    out[k] = v if v.startswith("secret://") else "[REDACTED:secret]"
                else:
                    out[k] = self.redact_data(v, policy=policy, vetted=vetted, _depth=_depth + 1)
            return out
        if isinstance(value, list | tuple):
            items = [
                self.redact_data(v, policy=policy, vetted=vetted, _depth=_depth + 1) for v in value
            ]
            return items if isinstance(value, list) else tuple(items)
        return value

    def redact_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """For :func:`stalwart.observe.set_redactor`: log records are always redacted,
        never blocked (a blocked log line would hide that something happened)."""
        result: dict[str, Any] = {}
        for k, v in record.items():
            role = _field_role(k)
            if role == "plain" or v is None or type(v) in _SCALARS:
                result[k] = v
            elif role == "secret" and isinstance(v, str):
                # a secret-named field is removed whole, as in redact_data
                result[k] = v if v.startswith("secret://") or not v else "[REDACTED:secret]"
            elif role == "id" and isinstance(v, str):
                result[k] = self._redact_id(v)
            elif isinstance(v, str):
                result[k] = self.redact(v, policy="redact")
            else:
                result[k] = self.redact_data(v, policy="redact", _depth=1)
        return result

    def _redact_id(self, text: str) -> str:
        """An identifier field's value: every kind but :data:`_LOOSE_NUMBERS`, the fast
        tier (an id is not prose for the named-entity model)."""
        if len(text) < 4:
            return text
        kinds = _id_kinds(self.kinds)
        if len(text) <= SCAN_CACHE_CHARS:
            spans = list(_scan_short(text, kinds, self._known))
        else:
            spans = _scan(text, kinds, self._known)
        return self._apply(text, spans, "redact")

    def redact_exception(self, exc: BaseException) -> BaseException:
        """``exc`` itself if its text is clean, else a copy of the same type whose
        message is redacted (so stored errors and logs never carry the values)."""
        text = str(exc)
        clean = self.redact(text, policy="redact")
        if clean == text:
            return exc
        try:
            clone = copy.copy(exc)
            clone.args = (clean,)
            if str(clone) == clean:
                return clone
        except Exception:  # a type that cannot be copied: the plain error below
            pass
        # a custom __str__ (or an uncopyable type) would still show the values: plain error
        return RuntimeError(f"{type(exc).__name__}: {clean}")


_SCALARS = frozenset({int, float, bool})
"""Types of JSON values with nothing in them to redact (``type(v) in``: a subclass, an
enum say, goes the long way)."""


@functools.lru_cache(maxsize=1024)
def _field_role(key: str) -> str:
    """How :meth:`Redactor.redact_record` treats a log field: ``plain`` (the runtime's own,
    never scanned), ``secret`` (named like a credential: removed whole), ``id`` (an
    identifier: :meth:`Redactor._redact_id`) or ``data``. Log lines reuse a few dozen
    field names: the answer is remembered, not matched again on every line."""
    if key in _PLAIN_FIELDS:
        return "plain"
    if _SECRET_KEYS.match(key):
        return "secret"
    return "id" if key in _ID_FIELDS else "data"


@functools.lru_cache(maxsize=64)
def _id_kinds(kinds: frozenset[str]) -> frozenset[str]:
    """The kinds an identifier is scanned for: all but :data:`_LOOSE_NUMBERS`."""
    return kinds - _LOOSE_NUMBERS


def _replacement(kind: str, found: str, mode: OutputPolicy) -> str:
    if mode == "mask":
        tail = found[-4:] if len(found) > 8 else ""
        return f"[{kind}:****{tail}]"
    return f"[REDACTED:{kind}]"


_DEFAULT = Redactor()
_SETTINGS = {"STALWART_REDACT_OUTPUTS": "accurate", "STALWART_REDACT_LOGS": "fast"}


def default_redactor() -> Redactor:
    """The process-wide redactor on the fast tier: log lines, events, tracebacks."""
    return _DEFAULT


def tier_setting(name: str) -> Tier:
    """The tier an environment setting names (``STALWART_REDACT_OUTPUTS``, default
    ``accurate``; ``STALWART_REDACT_LOGS``, default ``fast``)."""
    value = os.environ.get(name, "").strip().lower() or _SETTINGS[name]
    if value not in ("fast", "accurate"):
        raise ConfigError(f"{name} must be 'fast' or 'accurate', got {value!r}")
    return "accurate" if value == "accurate" else "fast"


def output_redactor() -> Redactor:
    """The redactor for task outputs and for what the API, CLI and dashboard show: the
    process one (same known values) on the tier ``STALWART_REDACT_OUTPUTS`` names
    (default ``accurate``: the named-entity model when installed, else the fast tier)."""
    tier = tier_setting("STALWART_REDACT_OUTPUTS")
    return _DEFAULT if tier == "fast" else _ACCURATE


def warm_fast_tier() -> None:
    """Load the fast tier's name and place lists and its English dictionary now (about
    0.25 s of CPU the first time; call it off the event loop), so that no log line loads
    them on the loop; a process forked afterwards has them."""
    gazetteer()
    english()


def warm_output_redactor() -> Redactor:
    """Load the output tier's model now (1-3 s of CPU the first time; call it off the event
    loop) so that no task's output loads it on the loop; returns the output redactor."""
    redactor = output_redactor()
    if redactor.effective_tier == "accurate":
        redactor.redact("Warm-up for Ada Lovelace in London.")
    return redactor


_ACCURATE = _DEFAULT.with_tier("accurate")
