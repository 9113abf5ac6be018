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
import ipaddress
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from stalwart.errors import OutputBlocked

__all__ = ["Finding", "OutputPolicy", "Redactor", "default_redactor", "luhn_ok", "iban_ok"]

OutputPolicy = Literal["redact", "mask", "block"]

_SECRET_KEYS = re.compile(
    r"(?i)^(?:.*[_-])?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|"
    r"cookie|private[_-]?key|access[_-]?key|client[_-]?secret|credentials?)$"
)

_CRED_PREFIXES = (
    "-----BEGIN", "eyJ", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
    "gh", "github_pat_", "glpat-", "xox", "hooks.slack.com", "AIza", "_live_", "_test_", "sk-",
)  # fmt: skip
_CREDS = re.compile(
    "|".join(
        f"(?P<{k}>{p})"
        for k, p in (
            (
                "private_key",
                r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----[\s\S]{0,8000}?"
                r"(?:-----END[A-Z ]{0,20} PRIVATE KEY-----|\Z)",
            ),
            ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
            ("aws_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
            (
                "github_token",
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{40,255})",
            ),
            ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
            (
                "slack_token",
                r"\bxox[abprse]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/\S+",
            ),
            ("google_key", r"\bAIza[0-9A-Za-z_-]{35}"),
            ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
            ("openai_key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"),
        )
    )
)
_BEARER = re.compile(r"(?i:\b(?:bearer|basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{16,})")
_URL_CREDENTIALS = re.compile(
    r"\b[a-z][a-z0-9+.-]{1,20}://[^/\s:@]{1,64}:(?P<value>[^/\s@]{1,128})@"
)
_ASSIGN_KEYWORDS = ("key", "secret", "token", "passw", "pwd", "auth", "credential")
_ASSIGN_TAIL = re.compile(
    r"[A-Za-z_-]{0,12}[\"']?\s{0,3}[:=]\s{0,3}[\"']?(?P<value>[^\s\"',;]{6,200})"
)
_EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_IPV6_ANCHOR = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_NUM_CANDIDATE = re.compile(r"\d[\d ().:/-]{5,60}\d")
_NUMBERS = re.compile(
    "|".join(
        f"(?P<{k}>{p})"
        for k, p in (
            ("card", r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\d.])"),
            ("ssn", r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)"),
            ("ipv4", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),
            (
                "phone",
                r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}"
                r"(?!\d)",
            ),
        )
    )
)
_DIGIT = re.compile(r"\d")
_LETTERS_ONLY_HINTS = re.compile(
    r"(?i:bearer|basic)|xox|gh[pousr]_|github_pat|glpat|sk-|_live_|_test_|AIza|eyJ|"
    r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)"
)
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_IBAN_BEFORE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})*\s?$")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
KINDS = (
    "private_key", "jwt", "aws_key", "github_token", "gitlab_token", "slack_token",
    "google_key", "stripe_key", "openai_key", "assignment", "email", "iban", "ipv6",
    "card", "ssn", "ipv4", "phone", "bearer_token", "url_password",
)  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """True if ``digits`` pass the Luhn checksum (payment cards)."""
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
        digits = re.sub(r"\D", "", text)
        return 13 <= len(digits) <= 19 and luhn_ok(digits)
    if kind == "ipv4":  # loopback and "any" name no one: kept
        return all(int(p) <= 255 for p in text.split(".")) and not text.startswith(("127.", "0."))
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        if _DATE.fullmatch(text) or _SSN_SHAPE.fullmatch(text):
            return False
        if text.startswith("+"):
            return 8 <= len(digits) <= 15
        return 9 <= len(digits) <= 15 and bool(re.search(r"[ .()-]", text))
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
            digits = re.sub(r"\D", "", text[a:b])
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                best = (a, b)
    return best


def _scan(text: str, kinds: frozenset[str], known: frozenset[str]) -> list[Span]:
    """Every finding as (start, end, kind), earlier passes winning overlaps."""
    spans: list[Span] = []
    if (
        not known
        and _DIGIT.search(text) is None
        and "@" not in text
        and ":" not in text
        and "=" not in text
        and "-----" not in text
        and not _LETTERS_ONLY_HINTS.search(text)
    ):
        return spans  # nothing any pass could find: no digit, @, :, =, key or token prefix
    for value in known:
        start = text.find(value)
        while start >= 0:
            spans.append((start, start + len(value), "secret"))
            start = text.find(value, start + len(value))
    if any(p in text for p in _CRED_PREFIXES):
        spans += [(m.start(), m.end(), m.lastgroup or "") for m in _CREDS.finditer(text)]
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
        spans += [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    spans += [(m.start(), m.end(), "iban") for m in _IBAN.finditer(text) if iban_ok(m.group())]
    if "::" in text or _IPV6_ANCHOR.search(text):
        for m in _IPV6.finditer(text):
            try:
                address = ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            if address.is_loopback or address.is_unspecified:
                continue
            spans.append((m.start(), m.end(), "ipv6"))
    for cand in _NUM_CANDIDATE.finditer(text):
        base = cand.start()
        while base > 0 and text[base - 1] in "+(" and base > cand.start() - 2:
            base -= 1  # a phone's leading "+44" or "(415)"
        for m in _NUMBERS.finditer(text, base, cand.end()):  # lookbehinds see the context
            kind = m.lastgroup or ""
            at, end = m.start(), m.end()
            if not _valid_number(kind, m.group()):
                inner = _card_within(text, at, end) if kind == "card" else None
                if inner is None:  # "1 4111 1111 1111 1111 2 items" holds a card
                    continue
                at, end = inner
            if kind != "ipv4" and _IBAN_BEFORE.search(text, max(0, at - 40), at):
                continue  # the tail of an IBAN (a bad one: good ones were found above)
            spans.append((at, end, kind))
    spans = [s for s in spans if s[2] in kinds or s[2] == "secret"]
    if not spans:
        return spans
    spans.sort(key=lambda s: s[0])  # stable: at one start, the earlier pass (credentials) wins
    out: list[Span] = []
    end = -1
    for span in spans:
        if span[0] >= end:
            out.append(span)
            end = span[1]
    return out


_PLAIN_FIELDS = frozenset({"ts", "level", "logger", "error_class"})
"""Log fields the runtime itself writes, never user data: not scanned (they are on every line)."""


class Finding:
    """One thing the redactor found: its kind and where (for reports; never the value)."""

    __slots__ = ("end", "kind", "start")

    def __init__(self, kind: str, start: int, end: int) -> None:
        self.kind, self.start, self.end = kind, start, end

    def __repr__(self) -> str:
        return f"Finding({self.kind!r}, {self.start}, {self.end})"


class Redactor:
    """Finds and removes PII and credentials in text and in nested data.

    Thread-safe; ``add_known`` registers exact values (resolved secrets,
    canaries) that are removed wherever they appear.
    """

    def __init__(
        self, *, policy: OutputPolicy = "redact", kinds: Iterable[str] | None = None
    ) -> None:
        self.policy: OutputPolicy = policy
        self.kinds = frozenset(kinds) if kinds is not None else frozenset(KINDS)
        self._known: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add_known(self, *values: str) -> None:
        """Always remove these exact values (secrets the process has resolved)."""
        with self._lock:
            self._known = self._known | {v for v in values if isinstance(v, str) and len(v) >= 4}

    def with_policy(self, policy: OutputPolicy) -> Redactor:
        """The same redactor (sharing its known values) with another policy."""
        clone = copy.copy(self)
        clone.policy = policy
        return clone

    # -- text ----------------------------------------------------------------------------
    def findings(self, text: str) -> list[Finding]:
        """What :meth:`redact` would remove, without removing it."""
        return [Finding(k, a, b) for a, b, k in _scan(text, self.kinds, self._known)]

    def redact(self, text: str, *, policy: OutputPolicy | None = None) -> str:
        """``text`` without the PII and credentials found in it (per ``policy``)."""
        if not text or len(text) < 4:
            return text
        spans = _scan(text, self.kinds, self._known)
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
            parts.append(_replacement(kind, text[start:end], mode))
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    # -- data ------------------------------------------------------------------------------
    def redact_data(
        self, value: Any, *, policy: OutputPolicy | None = None, _depth: int = 0
    ) -> Any:
        """A copy of ``value`` (JSON-like data) with every string redacted; values under
        keys that name a secret (``password``, ``api_key``, ``token``…) are removed whole."""
        if isinstance(value, str):
            return self.redact(value, policy=policy)
        if _depth > 64:
            return "[REDACTED:too_deep]"
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str) and _SECRET_KEYS.match(k) and isinstance(v, str) and v:
                    if (policy or self.policy) == "block" and not v.startswith("secret://"):
                        raise OutputBlocked(f"the output has a {k!r} field; blocked by policy")
                    out[k] = v if v.startswith("secret://") else "[REDACTED:secret]"
                else:
                    out[k] = self.redact_data(v, policy=policy, _depth=_depth + 1)
            return out
        if isinstance(value, list | tuple):
            items = [self.redact_data(v, policy=policy, _depth=_depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        return value

    def redact_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """For :func:`stalwart.observe.set_redactor`: log records are always redacted,
        never blocked (a blocked log line would hide that something happened)."""
        result: dict[str, Any] = {
            k: v if k in _PLAIN_FIELDS else self.redact_data(v, policy="redact", _depth=1)
            for k, v in record.items()
        }
        for k, v in record.items():  # a secret-named field is removed whole, as in redact_data
            if k not in _PLAIN_FIELDS and _SECRET_KEYS.match(k) and isinstance(v, str) and v:
                result[k] = v if v.startswith("secret://") else "[REDACTED:secret]"
        return result

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


def _replacement(kind: str, found: str, mode: OutputPolicy) -> str:
    if mode == "mask":
        tail = found[-4:] if len(found) > 8 else ""
        return f"[{kind}:****{tail}]"
    return f"[REDACTED:{kind}]"


_DEFAULT = Redactor()


def default_redactor() -> Redactor:
    """The process-wide redactor (the one installed into logging by ``install``)."""
    return _DEFAULT
