"""Numbers that are personal data, told by their checksums and shapes: payment cards
(Luhn), IBANs (mod-97), US SSNs, IPv4 and IPv6 addresses and phone numbers (the forms of
ITU-T E.123 and national practice; a bare run of digits only after words that speak of a
phone). One pass finds the candidates in a text whose ids and timestamps are masked
(``_addresses.mask_opaque``); validators confirm the ones a pattern alone over-matches.
Split from ``_redact``, which runs it as one of its passes.
"""

from __future__ import annotations

import ipaddress
import re

from stalwart.guard._identifiers import zip_after_state
from stalwart.guard._words import Span

__all__ = ["iban_ok", "luhn_ok", "number_spans"]


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


_NON_DIGIT = re.compile(r"\D")


_ASCII_DIGITS = str.maketrans("", "", "0123456789")  # deletes them: what is left is not one


_EXTENSION = re.compile(r"[ ]?(?:x|ext\.?)[ ]?(?=\d+$)")


_EXTENSION_AFTER = re.compile(r"[ ]?(?i:ext\.?|extension)[ ]?\d{1,5}\b")  # "ext. 23"


_CARD_GROUPS = re.compile(r"\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}|\d{4}([ -])\d{6}\2\d{4,5}")


_MONEY = re.compile(r"\d{1,3}(?:[,. ]\d{3})*[.,]\d{2}|\d+[.,]\d{1,2}")


_CURRENCY = frozenset("$€£¥₹")


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


def number_spans(text: str, masked: str) -> list[Span]:
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
