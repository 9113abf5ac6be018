"""Provenance of text, and the taint policy the runtime applies to every tool call.

Where the trust boundary is, for an agent serving a customer:

- ``system`` — the agent's own configuration and prompt: trusted.
- ``principal`` — facts the *channel* vouches for, not the customer's words
  (the ticket's sender address, the account id of a signed-in user): trusted.
  An agent lists them in ``TaintPolicy.principal_fields``.
- ``user`` — the customer's own free text. It can state *their* request (refund
  my order #1234), so values from it may drive a sensitive tool, within the
  tool's limits (an amount above ``max_value`` needs approval; a check can bind
  a value to a record, e.g. the order must have been looked up). Segments the
  injection detector flags are demoted to ``suspect``.
- ``record`` — results of tools declared as systems of record
  (``record_tools``: our own order database): trusted facts, usable by checks.
- ``tool`` / ``document`` — every other tool result or retrieved text: tainted.
- ``model`` — a value found in no source: the model made it up.

A *sensitive* tool (side effects, money, outbound messages, data export;
by default every ``side_effect`` tool) runs only if each argument's value is
found in a source its :class:`ArgRule` allows. A value found only in tainted
text, or made up where that is not allowed, sends the call to approval (or
refuses it). Free-text arguments (an e-mail body) may be composed by the model,
but links, addresses and wording found only in untrusted text hold the call
(:class:`~stalwart.guard.TextCheck`).

Provenance is **transitive**: a record tool's result counts as ``record`` only when
every key it was called with came from a trusted source. A record fetched with a key
found only in tainted text (or made up) is itself tainted (``tool``): an attacker's
order number, looked up, does not become a trusted fact ("record laundering").

On top of the taint defaults, :class:`~stalwart.guard.Rule` s permit and forbid calls
by the task's principal, the arguments, their provenance and trusted lookups
(``stalwart.guard._authz``). Values are matched canonically (``stalwart.guard._canon``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from stalwart.errors import ConfigError
from stalwart.guard._authz import Principal, Rule, evaluate_rules
from stalwart.guard._canon import canonical, canonical_number, numbers_in
from stalwart.guard._detect import InjectionDetector
from stalwart.guard._freetext import TextCheck, contacts_in, shingles, words_of

__all__ = [
    "ArgRule",
    "Decision",
    "Origin",
    "Provenance",
    "Segment",
    "TaintPolicy",
    "ToolRule",
    "policy_from_data",
]


class Origin(StrEnum):
    """Where a piece of text came from (see the module docstring for what is trusted)."""

    SYSTEM = "system"
    PRINCIPAL = "principal"
    USER = "user"
    RECORD = "record"
    TOOL = "tool"
    DOCUMENT = "document"
    SUSPECT = "suspect"
    MODEL = "model"


TAINTED = frozenset({Origin.TOOL, Origin.DOCUMENT, Origin.SUSPECT})
DEFAULT_TEXT_CHECK = TextCheck()
TRUSTED = frozenset({Origin.SYSTEM, Origin.PRINCIPAL, Origin.USER, Origin.RECORD})
"""Sources a key may come from for what it fetches to stay trusted."""
Action = Literal["approve", "refuse"]
_SCORED_PARTS = 200
_MAX_DEPTH = 32
_SENTENCE = re.compile(r"(?<=[.!?\n])\s+|(?=<tool_call>)|(?=\bSYSTEM\s*:)")


def _norm(value: Any) -> str:
    return canonical(value)


SEEN_ENTRIES = 2048
"""Texts whose canonical form and numbers a segment reuses (every task is told the same
system prompt; tool results repeat articles and values); least recently used dropped first."""
SEEN_CHARS = 1024
"""A longer text is canonicalized every time (not kept): at most ~2 M characters are kept
with their canonical forms."""


def _canonical_and_numbers(text: str) -> tuple[str, frozenset[str]]:
    norm = _norm(text)
    return norm, numbers_in(norm)


_canonical_kept = functools.lru_cache(maxsize=SEEN_ENTRIES)(_canonical_and_numbers)


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    """One piece of text a task has seen: its origin, where from, its canonical text and
    the numbers written in it."""

    origin: Origin
    source: str
    text: str
    numbers: frozenset[str]


class Provenance:
    """Every piece of text a task has seen, with its origin (rebuilt the same on replay)."""

    def __init__(self, detector: InjectionDetector | None = None) -> None:
        self.detector = detector or InjectionDetector()
        self.segments: list[Segment] = []
        self.records: dict[str, list[Any]] = {}
        """Trusted records by tool (fetched with trusted keys only)."""
        self.laundered: dict[str, list[Any]] = {}
        """Results of record tools fetched with an untrusted key: tainted, kept apart."""
        self.principal: dict[str, Any] = {}
        """The input fields the channel vouches for (``TaintPolicy.principal_fields``)."""
        self.identity: Principal | None = None
        """The task's principal (set at submission, else from the principal fields)."""
        self.flagged = 0
        self._shingles: dict[int, dict[str, set[tuple[str, ...]]]] = {}
        self._shingled: dict[int, int] = {}

    def add(self, origin: Origin, text: str, *, source: str = "") -> None:
        """Record ``text`` from ``origin``; user text is split and flagged parts demoted."""
        if not text:
            return
        if origin in (Origin.USER, Origin.TOOL, Origin.DOCUMENT):
            for i, part in enumerate(_SENTENCE.split(text)):
                if not part:
                    continue
                # the detector scores the first parts only: a huge result costs no more
                flagged = i < _SCORED_PARTS and self.detector.score(part, origin=origin).flagged
                if flagged:
                    self.flagged += 1
                where = Origin.SUSPECT if flagged and origin == Origin.USER else origin
                self._append(where, source, part)
            return
        self._append(origin, source, text)

    def _append(self, origin: Origin, source: str, text: str) -> None:
        kept = len(text) <= SEEN_CHARS
        found = _canonical_kept(text) if kept else _canonical_and_numbers(text)
        self.segments.append(Segment(origin, source, *found))

    def add_input(self, task_input: Any, principal_fields: Sequence[str]) -> None:
        """The task input: listed fields are ``principal``, all other text ``user``."""
        if isinstance(task_input, Mapping):
            for key, value in task_input.items():
                if key in principal_fields:
                    self.principal[key] = value
                    self.add(Origin.PRINCIPAL, str(value), source=f"input.{key}")
                else:
                    self._add_data(Origin.USER, value, f"input.{key}")
        else:
            self._add_data(Origin.USER, task_input, "input")

    def set_identity(self, principal: Principal | None) -> None:
        """The task's principal; its id and attributes are ``principal`` text too."""
        self.identity = principal
        if principal is not None:
            self.add(Origin.PRINCIPAL, principal.id, source="principal.id")
            for key, value in principal.attrs.items():
                self.add(Origin.PRINCIPAL, str(value), source=f"principal.{key}")

    def trusted_key(self, arguments: Mapping[str, Any]) -> bool:
        """Whether every argument value (the key a tool was called with) was found in a
        trusted source: system, principal, the customer's own text, or a record."""
        for name, value in arguments.items():
            if name == "idempotency_key" or value is None:
                continue
            if isinstance(value, Mapping | list | tuple):
                return False  # a structured key: no way to tell where it came from
            if not self.origins_of(value) & TRUSTED:
                return False
        return True

    def add_result(
        self, tool: str, value: Any, *, origin: Origin, key: Mapping[str, Any] | None = None
    ) -> None:
        """A tool's result. A system of record's is kept whole for checks (``records``) if
        the ``key`` it was called with is trusted; with an untrusted key it is tainted
        (``tool``) and kept in ``laundered`` (transitive provenance)."""
        if origin == Origin.RECORD:
            if key is not None and not self.trusted_key(key):
                self.laundered.setdefault(tool, []).append(value)
                origin = Origin.TOOL
            else:
                self.records.setdefault(tool, []).append(value)
        self._add_data(origin, value, f"tool.{tool}")

    def _add_data(self, origin: Origin, value: Any, source: str, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:  # pathological nesting: its leaves, as untrusted text
            stack = [value]
            while stack:
                item = stack.pop()
                if isinstance(item, Mapping):
                    stack.extend(item.values())
                elif isinstance(item, list | tuple):
                    stack.extend(item)
                elif item is not None:
                    self.add(Origin.DOCUMENT, str(item), source=source)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                self._add_data(origin, v, f"{source}.{k}", depth + 1)
        elif isinstance(value, list | tuple):
            for v in value:
                self._add_data(origin, v, source, depth + 1)
        elif value is not None:
            if origin == Origin.RECORD and _is_free_text(value):
                origin = Origin.DOCUMENT  # prose inside a record (order notes) is not a fact
            self.add(origin, value if isinstance(value, str) else _scalar(value), source=source)

    def origins_of(self, value: Any) -> set[Origin]:
        """Where ``value`` appears: a number as a whole number token (100 = 100.0 = "100"),
        text as a whole-token, case-folded, whitespace-collapsed match."""
        number = canonical_number(value)
        if number is not None:
            return {s.origin for s in self.segments if number in s.numbers}
        needle = _norm(value)
        if not needle:
            return set()
        return {s.origin for s in self.segments if whole_token_in(needle, s.text)}

    def contact_origins(self, kind: str, item: str) -> set[str]:
        """Where a link, address or phone number (canonical, from :func:`contacts_in`)
        appears."""
        found: set[str] = set()
        for s in self.segments:
            if kind == "phone number":  # written any way: compare the digits
                if (kind, item) in contacts_in(s.text):
                    found.add(str(s.origin))
            elif item in s.text:
                found.add(str(s.origin))
        return found

    def copied_runs(
        self, words: list[str], size: int, trusted: frozenset[str], sources: frozenset[str]
    ) -> list[tuple[str, ...]]:
        """Runs of ``size`` words of ``words`` found in text of an origin in ``sources``
        and in no text of a ``trusted`` origin."""
        if len(words) < size:
            return []
        by_origin = self._shingles.setdefault(size, {})
        done = self._shingled.get(size, 0)
        for s in self.segments[done:]:
            by_origin.setdefault(str(s.origin), set()).update(shingles(words_of(s.text), size))
        self._shingled[size] = len(self.segments)
        good: set[tuple[str, ...]] = set()
        for origin in trusted:
            good |= by_origin.get(origin, set())
        found = []
        for run in sorted(shingles(words, size)):
            if run not in good and any(run in by_origin.get(o, ()) for o in sources):
                found.append(run)
        return found


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"  # what ``\w`` matches in a str pattern


def whole_token_in(needle: str, text: str) -> bool:
    r"""Whether ``needle`` is in ``text`` as a whole token: what the pattern
    ``(?<![\w@.-])NEEDLE(?![\w@-]|\.\w)`` finds, without compiling one for every value
    checked (a tool call's arguments each were, ~50 us apiece)."""
    size = len(needle)
    start = text.find(needle)
    while start >= 0:
        end = start + size
        before = text[start - 1] if start else ""
        after = text[end : end + 2]
        if not (before and (_word(before) or before in "@.-")) and not (
            after
            and (
                _word(after[0])
                or after[0] in "@-"
                or (after[0] == "." and len(after) == 2 and _word(after[1]))
            )
        ):
            return True
        start = text.find(needle, start + 1)
    return False


def _scalar(value: Any) -> str:
    number = canonical_number(value)
    return number if number is not None else str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class ArgRule:
    """Where one argument's value may come from, and its auto-approval bound."""

    allow: frozenset[Origin] = frozenset(
        {Origin.SYSTEM, Origin.PRINCIPAL, Origin.USER, Origin.RECORD}
    )
    free_text: bool = False
    """The model may compose it (a message body); not origin-checked."""
    max_value: float | None = None
    """A number above this needs approval even from an allowed source."""

    @classmethod
    def of(cls, *origins: str, max_value: float | None = None) -> ArgRule:
        """``ArgRule.of("user", "record", max_value=5000)``."""
        return cls(frozenset(Origin(o) for o in origins), max_value=max_value)


Check = Callable[[Mapping[str, Any], Provenance], str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class ToolRule:
    """How one tool is guarded. ``sensitive=None``: sensitive if it has side effects."""

    sensitive: bool | None = None
    args: Mapping[str, ArgRule] = dataclasses.field(default_factory=dict)
    default: ArgRule = ArgRule()
    check: Check | None = None
    """Extra condition: returns why the call needs approval, or None."""
    text: TextCheck | None = DEFAULT_TEXT_CHECK
    """How its free-text arguments are checked (None: not at all)."""
    action: Action | None = None
    approval_deadline_s: float | None = None
    """This tool's approval deadline (None: the policy's ``approval_deadline_s``)."""

    def __post_init__(self) -> None:
        if self.approval_deadline_s is not None and not 1 <= self.approval_deadline_s <= 2_592_000:
            raise ConfigError("ToolRule.approval_deadline_s must be in [1, 2592000] s (30 days)")


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """``allow``, ``approve`` (held for a person) or ``refuse``, and why."""

    verdict: Literal["allow", "approve", "refuse"]
    reason: str = ""
    tainted_args: tuple[str, ...] = ()


def _is_free_text(value: Any) -> bool:
    return isinstance(value, str) and (len(value) > 60 or len(value.split()) >= 4)


@dataclasses.dataclass(frozen=True, slots=True)
class TaintPolicy:
    """The taint policy of one agent (see the module docstring for the origins)."""

    tools: Mapping[str, ToolRule] = dataclasses.field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    """Permit and forbid rules (:class:`~stalwart.guard.Rule`), checked after the taint
    defaults; a tool with permit rules runs only if one holds."""
    principal_fields: tuple[str, ...] = ()
    record_tools: tuple[str, ...] = ()
    document_tools: tuple[str, ...] = ()
    action: Action = "approve"
    """What happens to a sensitive call with tainted arguments (``approve`` or ``refuse``)."""
    max_refusals: int = 3
    """Held or refused calls after which an LLM task stops (status ``refused``)."""
    approval_wait_s: float = 0.0
    """With ``durable_approvals=False`` only: how long a task waits in its process for a
    person to decide a held call (0: it goes on at once, told the call is pending). An
    approval within the wait runs the call."""
    durable_approvals: bool = True
    """A held call suspends the task durably (the default): it becomes
    ``awaiting_approval``, holds no lease and no process, and resumes -- on any node
    sharing the store, after restarts -- when a person decides (or the deadline denies
    the call). ``False``: the call is not run and the task goes on (after
    ``approval_wait_s``), told it is pending -- for harnesses that want the model to
    keep going, such as a red team."""
    approval_deadline_s: float = 86_400.0
    """With ``durable_approvals``: how long a held call waits for a decision before it
    is denied (default one day; a tool's ``ToolRule.approval_deadline_s`` overrides)."""

    def __post_init__(self) -> None:
        if self.action not in ("approve", "refuse"):
            raise ConfigError(
                f"TaintPolicy.action must be 'approve' or 'refuse', got {self.action!r}"
            )
        if not 0 <= self.approval_wait_s <= 86_400:
            raise ConfigError("TaintPolicy.approval_wait_s must be in [0, 86400] s")
        if self.approval_wait_s and self.durable_approvals:
            raise ConfigError(
                "TaintPolicy.approval_wait_s is for in-process waits: a held call parks the "
                "task durably by default (approval_deadline_s bounds that wait); set "
                "durable_approvals=False to wait in the process instead"
            )
        if not 1 <= self.approval_deadline_s <= 2_592_000:
            raise ConfigError("TaintPolicy.approval_deadline_s must be in [1, 2592000] s (30 days)")
        if self.max_refusals < 1:
            raise ConfigError("TaintPolicy.max_refusals must be >= 1")
        object.__setattr__(self, "rules", tuple(self.rules))
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise ConfigError(f"TaintPolicy.rules holds Rule objects, got {rule!r}")

    def lookups_needed(self, tool: str, arguments: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
        """The trusted lookups the rules of ``tool`` need for these arguments, as
        ``(lookup tool, its parameter, the key)`` (the runtime runs each once)."""
        needed: list[tuple[str, str, Any]] = []
        for rule in self.rules:
            res = rule.resource
            if rule.tool in (tool, "*") and res is not None and arguments.get(res.arg) is not None:
                item = (res.lookup, res.param, arguments[res.arg])
                if item not in needed:
                    needed.append(item)
        return needed

    def approval_deadline(self, tool: str) -> float:
        """Seconds a held call of ``tool`` waits for a decision (durable approvals)."""
        rule = self.tools.get(tool)
        if rule is not None and rule.approval_deadline_s is not None:
            return rule.approval_deadline_s
        return self.approval_deadline_s

    def origin_of_result(self, tool: str) -> Origin:
        """The origin of ``tool``'s results under this policy."""
        if tool in self.record_tools:
            return Origin.RECORD
        if tool in self.document_tools:
            return Origin.DOCUMENT
        return Origin.TOOL

    def decide(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        provenance: Provenance,
        *,
        side_effect: bool,
        principal: Principal | None = None,
        lookups: Mapping[tuple[str, str, str], Any] | None = None,
    ) -> Decision:
        """Whether a model-proposed call of ``tool`` with ``arguments`` may run now.

        ``principal`` defaults to the provenance's; ``lookups`` holds the trusted records
        of :meth:`lookups_needed`, keyed ``(tool, parameter, canonical key)``."""
        rule = self.tools.get(tool, ToolRule())
        sensitive = side_effect if rule.sensitive is None else rule.sensitive
        has_rules = any(r.tool in (tool, "*") for r in self.rules)
        if not sensitive and not any(r.tool == tool for r in self.rules):
            return Decision("allow")
        action = rule.action or self.action
        problems: list[str] = []
        tainted: list[str] = []
        for name, raw in arguments.items() if sensitive else ():
            if name == "idempotency_key":
                continue
            arg = rule.args.get(name, rule.default)
            value = str(raw) if isinstance(raw, Mapping | list | tuple) else raw
            limit = arg.max_value
            number = canonical_number(value)
            if limit is not None and number is not None and float(number) > limit:
                problems.append(f"{name}={value} is above the auto-approval limit")
            if arg.free_text or (name not in rule.args and _is_free_text(value)):
                if rule.text is not None:
                    found = rule.text.problems(name, value, provenance)
                    problems += found
                    tainted += [name] if found else []
                continue
            origins = provenance.origins_of(value)
            if origins & arg.allow:
                continue
            tainted.append(name)
            where = "/".join(sorted(origins)) or "no source (made up by the model)"
            problems.append(f"{name} comes from {where}")
        if rule.check is not None and sensitive:
            why = rule.check(arguments, provenance)
            if why:
                problems.append(why)
        if has_rules:
            outcome = evaluate_rules(
                self.rules,
                tool,
                arguments,
                principal=principal if principal is not None else provenance.identity,
                lookups=lookups or {},
                origins=lambda v: {str(o) for o in provenance.origins_of(v)},
            )
            problems += outcome.problems
            if outcome.then is not None and not outcome.permitted:
                action = outcome.then if action == "approve" else action
        if not problems:
            return Decision("allow")
        return Decision(action, "; ".join(problems), tuple(tainted))


_POLICY_KEYS = {
    "tools", "rules", "principal_fields", "record_tools", "document_tools", "action",
    "max_refusals", "approval_wait_s", "durable_approvals", "approval_deadline_s",
}  # fmt: skip
_TOOL_KEYS = {"sensitive", "args", "action", "text", "approval_deadline_s"}
_ARG_KEYS = {"allow", "free_text", "max_value"}


def _unknown(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(raw) - known)
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})")


def _arg_rule(raw: Any, where: str) -> ArgRule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table like {{allow = ['user', 'record']}}")
    _unknown(raw, _ARG_KEYS, where)
    default = ArgRule()
    try:
        allow = frozenset(Origin(o) for o in raw.get("allow", [str(o) for o in default.allow]))
    except ValueError as exc:
        raise ConfigError(f"{where}.allow: {exc} (origins: {[str(o) for o in Origin]})") from None
    limit = raw.get("max_value")
    return ArgRule(allow, bool(raw.get("free_text", False)),
                   None if limit is None else float(limit))  # fmt: skip


def policy_from_data(raw: Mapping[str, Any], *, where: str = "taint") -> TaintPolicy:
    """A :class:`TaintPolicy` from TOML data (``[agents.security.taint]``); see
    ``docs/security.md`` for the keys. A ``check`` function cannot be given here: use
    rules, or a Python policy."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    _unknown(raw, _POLICY_KEYS, where)
    tools: dict[str, ToolRule] = {}
    for name, spec in (raw.get("tools") or {}).items():
        at = f"{where}.tools.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{at} must be a table")
        _unknown(spec, _TOOL_KEYS, at)
        args = {k: _arg_rule(v, f"{at}.args.{k}") for k, v in (spec.get("args") or {}).items()}
        text = TextCheck.from_data(spec.get("text"), where=f"{at}.text")
        tools[str(name)] = ToolRule(
            sensitive=spec.get("sensitive"),
            args=args,
            text=text,
            action=spec.get("action"),
            approval_deadline_s=spec.get("approval_deadline_s"),
        )
    rules = tuple(
        Rule.from_data(r, where=f"{where}.rules[{i}]") for i, r in enumerate(raw.get("rules") or ())
    )
    fields: dict[str, Any] = {
        k: raw[k]
        for k in ("action", "max_refusals", "approval_wait_s", "durable_approvals",
                  "approval_deadline_s")
        if k in raw
    }  # fmt: skip
    for key in ("principal_fields", "record_tools", "document_tools"):
        if key in raw:
            fields[key] = tuple(str(v) for v in raw[key])
    return TaintPolicy(tools=tools, rules=rules, **fields)
