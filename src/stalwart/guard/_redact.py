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
from stalwart.guard._identifiers import (
    IDENTIFIER_KINDS,
    identifier_spans,
    keyed_kind,
    keyed_value,
)
from stalwart.guard._ner import ner_model
from stalwart.guard._numbers import iban_ok, luhn_ok, number_spans
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
_DIGIT = re.compile(r"\d")
_CAPITALISED = re.compile(r"[A-ZÀ-ÖØ-Þ][^\W\d_]")  # no such word: nothing for the model
_ESCAPES = (("\\n", " \n"), ("\\r", " \r"), ("\\t", " \t"))
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


Span = tuple[int, int, str]


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
        spans += number_spans(text, masked)
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
                elif isinstance(k, str) and (keyed := self._keyed(k, v, policy)) is not None:
                    out[k] = keyed
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
            if role == "keyed" and (keyed := self._keyed(k, v, "redact")) is not None:
                result[k] = keyed
            elif role == "plain" or v is None or type(v) in _SCALARS:
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

    def _keyed(self, key: str, value: Any, policy: OutputPolicy | None) -> str | None:
        """``value`` redacted whole when ``key`` names a document's number or a postal
        code and ``value`` (a string or an integer) is one (``_identifiers.keyed_kind``):
        ``{"drivers_license": "X1234567"}``, ``{"zip": 62704}``; else None."""
        kind = keyed_kind(key)
        if (
            kind is None
            or kind not in self.kinds
            or not (isinstance(value, str) or type(value) is int)
        ):
            return None
        text = str(value)
        if not keyed_value(kind, text):
            return None
        return self._apply(text, [(0, len(text), kind)], policy)

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
    never scanned), ``secret`` (named like a credential: removed whole), ``keyed`` (named
    like a document's number or a postal code: removed whole when it is one), ``id`` (an
    identifier: :meth:`Redactor._redact_id`) or ``data``. Log lines reuse a few dozen
    field names: the answer is remembered, not matched again on every line."""
    if key in _PLAIN_FIELDS:
        return "plain"
    if _SECRET_KEYS.match(key):
        return "secret"
    if keyed_kind(key) is not None:
        return "keyed"
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
