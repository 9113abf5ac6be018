"""A rule-based prompt-injection detector: a second signal, never the authorization.

It scores a text in [0, 1] from the families of known injections
(instruction override, role play, system/format spoofing, fake tool-call
syntax, exfiltration asks, encoded payloads, tag-character smuggling,
several languages). Base64 blobs are decoded and scored too. Scores are
logged and counted (``stalwart_injection_detections_total``); the runtime's
tool authorization does not depend on them, but user-text segments the
detector flags are additionally treated as untrusted by the taint policy.
An optional classifier (any ``Callable[[str], float]``) can be combined in.

Beside the direct families, rules for instructions planted in data (indirect
injection: the reader addressed, its task re-ordered, a directive with an outside
destination, a covert ask) were tuned on the tuning half of a public corpus derived
from AgentDojo and are measured on the other half only (``bench/detector.py``;
figures and corpus in ``docs/data-protection.md``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import re
from collections.abc import Callable

from prometheus_client import Counter

from stalwart.guard._inputs import normalize_text
from stalwart.guard._literals import required_literals
from stalwart.observe import REGISTRY

__all__ = ["Detection", "InjectionDetector"]

DETECTIONS = Counter(
    "stalwart_injection_detections",
    "Texts the injection detector flagged, by where they came from",
    ["origin"],
    registry=REGISTRY,
)

_F = re.IGNORECASE | re.UNICODE
_RULES: tuple[tuple[str, str, float], ...] = (
    # instruction override, several languages
    ("override", r"\b(?:ignore|disregard|forget|override|bypass|skip)\b.{0,40}"
     r"\b(?:previous|prior|above|earlier|all|any|your|the|system)\b.{0,30}"
     r"\b(?:instructions?|rules?|prompts?|directions?|guidelines?|polic(?:y|ies))", 0.9),
    ("override", r"\bnew (?:instructions?|rules?|task)\s*:", 0.7),
    ("override", r"\bignor(?:ez|iere|a|e|ar)\b.{0,40}\b(?:instructions?|anweisungen|"
     r"instrucciones|istruzioni|instruções|consignes)", 0.9),
    ("override", r"(?:忽略|无视|無視).{0,20}(?:指令|指示|说明|命令)", 0.9),
    ("override", r"(?:игнорируй|забудь).{0,40}(?:инструкци|правил)", 0.9),
    ("override", r"(?:تجاهل).{0,40}(?:التعليمات)", 0.9),
    ("override", r"(?:以前|前).{0,10}の指示を無視", 0.9),
    ("role_play", r"\byou are (?:now|no longer)\b|\bfrom now on,? you\b", 0.45),
    ("role_play", r"\b(?:pretend|act|behave) (?:to be|as|like)\b.{0,40}"
     r"\b(?:admin|administrator|developer|root|system|unrestricted|dan|jailbr)", 0.8),
    ("role_play", r"\b(?:enter|enable|activate|switch to|in|now in|into)\s+(?:developer|admin|god|"
     r"debug|maintenance|jailbreak|dan|unrestricted) mode\b|\b(?:developer|admin|god|debug|"
     r"jailbreak|dan) mode (?:is )?(?:enabled|activated|on)\b", 0.8),
    # the model addressed directly, authority claimed, the rules set aside
    ("addressed", r"\b(?:note|message|instructions?|command)s? (?:to|for) (?:the |any )?(?:ai|"
     r"assistant|model|agent|llm|bot|language model)\b|\bif you are an? (?:ai|assistant|bot|"
     r"language model|llm)\b|\b(?:ai|llm) (?:agent|assistant)\s*[:,]|\bhidden (?:instruction|"
     r"prompt|command)s?\b", 0.7),
    ("authority", r"\b(?:as|i am) your (?:supervisor|manager|admin|administrator|developer|"
     r"creator|owner|operator)\b|\bi (?:hereby )?authori[sz]e you\b|\bthe manager said\b", 0.5),
    ("override", r"\b(?:set aside|disregard|ignore|forget|bypass|skip|override)\b.{0,20}\b(?:what "
     r"you were told|your (?:rules|limits?|guidelines|polic(?:y|ies)|restrictions|checks|"
     r"verification)|the (?:refund |spending |approval )?limits?|(?:all )?verification)\b", 0.8),
    ("override", r"\byour (?:real|actual|true|new) (?:job|task|instructions?|purpose|goal)\b|"
     r"\bthe above was (?:a test|fake|not real)\b|\byou must (?:obey|follow) (?:the following|"
     r"these|my)\b|\btreat everything (?:after|below) this\b", 0.8),
    ("override", r"\b(?:olvida|ignora) (?:tus|las) (?:reglas|instrucciones)|\bvergiss (?:deine|"
     r"alle) (?:regeln|anweisungen)|\boublie[sz]? (?:tes|vos|les) (?:règles|consignes)|"
     r"(?:忘记|忘掉)(?:你的)?(?:规则|指令)", 0.8),
    ("exfiltrate", r"\b(?:respond|reply|answer) (?:only )?with (?:the contents of )?your (?:system "
     r"prompt|instructions)|\b(?:print|show|reveal|dump)\b.{0,30}\b(?:hidden configuration|"
     r"system prompt|api keys?)\b", 0.8),
    ("spoof", r"\[\[/?system\]\]|\bBEGIN (?:ADMIN|SYSTEM|DEVELOPER) (?:OVERRIDE|MODE|MESSAGE)\b|"
     r"\b(?:ADMIN|SYSTEM) OVERRIDE\b|</?(?:ticket|user|assistant)>", 0.8),
    ("role_play", r"\b(?:simulate|enable|enter)\b.{0,20}\b(?:mode|persona)\b.{0,20}"
     r"\b(?:no|without) (?:restrictions|limits|rules|filters|checks)\b", 0.8),
    ("encoded", r"\bdecode\b.{0,30}\b(?:run|execute|follow|obey)\b|\b(?:then|and) (?:execute|run|"
     r"perform)\s*:", 0.7),
    ("role_play", r"\bDAN\b|\bdo anything now\b", 0.6),
    ("spoof", r"(?:^|\n|\s)(?:SYSTEM|ADMIN|ASSISTANT|DEVELOPER)\s*"
     r"(?:MESSAGE|OVERRIDE|NOTE)?\s*:", 0.6),
    ("spoof", r"<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?(?:INST|SYS)\]|</?system>", 0.9),
    ("spoof", r"#{2,}\s*(?:system|instructions?)\b", 0.6),
    ("tool_syntax", r"<\s*/?\s*(?:tool_call|function_call|tool_use|invoke)\b", 0.9),
    ("tool_syntax", r"\"(?:name|function|tool)\"\s*:\s*\"[A-Za-z_][\w.-]*\"\s*,\s*\"(?:arguments|"
     r"parameters|args|input)\"", 0.8),
    ("tool_syntax", r"\b(?:call|invoke|execute|run|trigger|use)\s+(?:the\s+)?"
     r"(?:tool|function)\b(?!-)", 0.45),
    ("tool_syntax", r"\b(?:call|invoke|execute|trigger)\s+`?[a-z]+_[a-z_]+`?\s*"
     r"(?:with|\(|\{)", 0.7),
    ("exfiltrate", r"\b(?:send|forward|email|e-mail|export|upload|post|leak)\b.{0,60}"
     r"\b(?:all|every|entire|full)\b.{0,40}\b(?:customers?|users?|records?|data|emails?|"
     r"conversations?|history|database|keys?|secrets?|passwords?)", 0.7),
    ("exfiltrate", r"\b(?:reveal|print|show|output|repeat)\b.{0,30}\b(?:system prompt|your "
     r"instructions|api key|secret|password)", 0.7),
    ("urgency", r"\b(?:immediately|urgent|right now)\b.{0,40}\b(?:refund|transfer|wire|send)\b"
     r".{0,40}\b\d{4,}", 0.4),
    # Instructions planted in data (indirect injection). Tuned on the tuning half of the
    # AgentDojo-derived corpus only (bench/data/injections; docs/data-protection.md).
    ("override", r"\b(?:ignore|disregard|forget|override)\b.{0,20}\b(?:your|all|any|the|previous|"
     r"prior|above|earlier)\b.{0,20}\b\w{0,3}struct\w*", 0.9),  # typos: "iunstructions"
    ("addressed", r"\b(?:message|note|request|instructions?)\b.{0,40}\bfrom me\b.{0,60}\bto you\b|"
     r"\bto you,\s*(?:the\s+)?(?:ai|gpt|claude|llama|gemini|mistral|assistant|model|language "
     r"model|llm)\b", 0.7),
    ("hijack", r"\bbefore you (?:can |do |start |continue |proceed )?(?:solve|complete|do|answer|"
     r"continue|finish|proceed|start|work on|respond)\b|\b(?:task|request|question)s? (?:that )?"
     r"(?:i|the user) (?:gave|asked|sent) you\b|\bafter you (?:do|have done|did|finish|complete) "
     r"(?:that|this|it)\b|\b(?:original|initial) task\b", 0.7),
    ("hijack", r"\b(?:please )?do the following\b", 0.4),
    ("spoof", r"<\s*/?\s*[A-Z][A-Z_ ]{3,24}\s*>", 0.5),  # all-capitals pseudo tags
    ("directive", r"(?<!\w)(?:TODO|TASK|ACTION)\s*:\s*(?:please\s+)?(?:send|email|"
     r"e-mail|forward|transfer|wire|pay|post|visit|invite|delete|change|modify|create|update|add|"
     r"remove|share|upload|concatenate|get|tell|give|make|book|reserve|say)\b", 0.6),
    ("covert", r"\bwithout (?:asking|telling|notifying|informing|confirming|checking with|"
     r"alerting)\b|\b(?:do not|don't|never) (?:tell|inform|mention|notify|alert|ask)\b.{0,20}"
     r"\b(?:the user|user|anyone|them|me)\b", 0.45),
    ("exfiltrate", r"\b(?:send|email|e-mail|forward|post|upload|share|concatenate|copy)\b.{0,80}"
     r"\b(?:contents?|body|bodies|(?:all|every) (?:\w+ )?(?:messages?|emails?|files?)|security "
     r"code|password|passport|credit card|iban|api key)\b.{0,120}\bto\b", 0.45),
    ("side_effect", r"\b(?:change|modify|update|set)\b.{0,30}\b(?:password|recipient|iban|payee|"
     r"account number|e-?mail address)\b.{0,40}\bto\b", 0.45),
    ("side_effect", r"\b(?:transfer|wire|send|pay)\b.{0,30}(?:[$€£]\s?\d|\b\d[\d,.]*\s?(?:usd|"
     r"eur|gbp|dollars|euros|chf)\b)", 0.35),
    ("destination", r"\bto (?:the )?(?:account|iban|website|address|e-?mail(?: address)?|link)?"
     r"\s*:?\s*['\"]?(?:[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|www\.\S+|https?://\S+|"
     r"[A-Z]{2}\d{2}[A-Z0-9]{10,30})", 0.3),
    ("destination", r"\b(?:visit|open|go to)\b.{0,20}\b(?:website|link|url|page)\b.{0,20}"
     r"(?:www\.|https?://)", 0.35),
)  # fmt: skip
# each rule with the literals one of which its every match holds (``_literals``): a new
# text is mostly a tool result's value or sentence that holds none of most rules' words,
# and a substring test costs a tenth of a pattern's search
_COMPILED = tuple(
    (family, re.compile(p, _F), w, required_literals(p, _F)) for family, p, w in _RULES
)
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


@dataclasses.dataclass(frozen=True, slots=True)
class Detection:
    """How likely a text is an injection, and which families matched (no text kept)."""

    score: float
    families: tuple[str, ...]
    flagged: bool


class InjectionDetector:
    """Scores texts; ``threshold`` (default 0.5) decides ``flagged``."""

    def __init__(
        self, *, threshold: float = 0.5, classifier: Callable[[str], float] | None = None
    ) -> None:
        self.threshold = threshold
        self.classifier = classifier

    def score(self, text: str, *, origin: str = "unknown") -> Detection:
        """Score ``text``; counted under ``origin`` when flagged. The rules' verdict on a
        text scored before (up to ``SCORED_ENTRIES`` texts of at most ``SCORED_CHARS``) is
        not worked out again: a task's tool results repeat the same values and articles,
        and every step's result is scored."""
        seen = _by_rules_kept(text) if len(text) <= SCORED_CHARS else _by_rules(text)
        cleaned, score, families = seen
        if self.classifier is not None:
            score = max(score, float(self.classifier(cleaned)))
        flagged = score >= self.threshold
        if flagged:
            DETECTIONS.labels(origin).inc()
        return Detection(round(score, 4), tuple(sorted(families)), flagged)

    def forget(self) -> None:
        """Drop the rules' verdicts kept for texts scored before (kept for the process,
        not per detector): a bench that times a first reading calls it before each call."""
        _by_rules_kept.cache_clear()


SCORED_ENTRIES = 2048
"""Texts whose rules' verdict :meth:`InjectionDetector.score` keeps (least recently used
dropped first)."""
SCORED_CHARS = 1024
"""Longer texts are scored afresh every time (not kept): at most ~2 M characters are kept
(scored texts are a result's sentences and values, most far shorter)."""


def _by_rules(text: str) -> tuple[str, float, frozenset[str]]:
    """The normalized text, its score by the rules (hidden and encoded text included) and
    the families that matched: what :meth:`InjectionDetector.score` gets before its
    classifier, a function of the text alone."""
    norm = normalize_text(text)
    score, families = _rules(norm.text)
    if norm.hidden:
        families.add("tag_smuggling")
        hidden_score, hidden_families = _rules(norm.hidden)
        families |= hidden_families
        score = max(score, 0.9, hidden_score)
    for blob in _B64.findall(norm.text)[:8]:
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=False)
            plain = decoded.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if sum(c.isprintable() for c in plain) < 0.9 * max(1, len(plain)):
            continue
        inner, inner_families = _rules(plain)
        if inner > 0:
            families |= inner_families | {"encoded"}
            score = max(score, inner)
    return norm.text, score, frozenset(families)


@functools.lru_cache(maxsize=SCORED_ENTRIES)
def _by_rules_kept(text: str) -> tuple[str, float, frozenset[str]]:
    """:func:`_by_rules`, remembered for a short text (a pure function of it)."""
    return _by_rules(text)


def _rules(text: str) -> tuple[float, set[str]]:
    miss = 1.0
    families: set[str] = set()
    lowered = text.lower() if text.isascii() else None  # see _literals: exact for ASCII
    for family, rx, weight, literals in _COMPILED:
        if lowered is not None and literals is not None:
            for literal in literals:  # (a loop: a generator per rule cost more than it saved)
                if literal in lowered:
                    break
            else:
                continue  # none of the words every match of this rule holds
        if rx.search(text):
            families.add(family)
            miss *= 1.0 - weight
    return 1.0 - miss, families
