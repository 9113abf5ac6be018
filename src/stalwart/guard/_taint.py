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
refuses it). Free-text arguments (an e-mail body) may be composed by the model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from stalwart.errors import ConfigError
from stalwart.guard._detect import InjectionDetector
from stalwart.guard._inputs import normalize_text

__all__ = [
    "ArgRule",
    "Decision",
    "Origin",
    "Provenance",
    "TaintPolicy",
    "ToolRule",
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
Action = Literal["approve", "refuse"]
_SCORED_PARTS = 200
_MAX_DEPTH = 32
_SENTENCE = re.compile(r"(?<=[.!?\n])\s+|(?=<tool_call>)|(?=\bSYSTEM\s*:)")


def _norm(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return normalize_text(text).text.casefold().strip()


class Provenance:
    """Every piece of text a task has seen, with its origin (rebuilt the same on replay)."""

    def __init__(self, detector: InjectionDetector | None = None) -> None:
        self.detector = detector or InjectionDetector()
        self.segments: list[tuple[Origin, str, str]] = []
        self.records: dict[str, list[Any]] = {}
        self.principal: dict[str, Any] = {}
        self.flagged = 0

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
                self.segments.append((where, source, _norm(part)))
            return
        self.segments.append((origin, source, _norm(text)))

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

    def add_result(self, tool: str, value: Any, *, origin: Origin) -> None:
        """A tool's result; a system of record's is also kept whole for checks (``records``)."""
        if origin == Origin.RECORD:
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
            self.add(origin, str(value), source=source)

    def origins_of(self, value: Any) -> set[Origin]:
        """Where ``value`` (as text, whole-token match) appears."""
        needle = _norm(value)
        if not needle:
            return set()
        pattern = re.compile(r"(?<![\w@.-])" + re.escape(needle) + r"(?![\w@-]|\.\w)")
        return {origin for origin, _, text in self.segments if pattern.search(text)}


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
    principal_fields: tuple[str, ...] = ()
    record_tools: tuple[str, ...] = ()
    document_tools: tuple[str, ...] = ()
    action: Action = "approve"
    """What happens to a sensitive call with tainted arguments (``approve`` or ``refuse``)."""
    max_refusals: int = 3
    """Held or refused calls after which an LLM task stops (status ``refused``)."""
    approval_wait_s: float = 0.0
    """How long a task waits for a person to decide a held call (0: it goes on at once,
    told the call is pending). An approval within the wait runs the call."""
    durable_approvals: bool = False
    """Held calls suspend the task durably instead: it becomes ``awaiting_approval``,
    holds no lease and no process, and resumes when a person decides (or the
    deadline denies the call). ``approval_wait_s`` is then not used."""
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
        if not 1 <= self.approval_deadline_s <= 2_592_000:
            raise ConfigError("TaintPolicy.approval_deadline_s must be in [1, 2592000] s (30 days)")
        if self.max_refusals < 1:
            raise ConfigError("TaintPolicy.max_refusals must be >= 1")

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
        self, tool: str, arguments: Mapping[str, Any], provenance: Provenance, *, side_effect: bool
    ) -> Decision:
        """Whether a model-proposed call of ``tool`` with ``arguments`` may run now."""
        rule = self.tools.get(tool, ToolRule())
        sensitive = side_effect if rule.sensitive is None else rule.sensitive
        if not sensitive:
            return Decision("allow")
        action = rule.action or self.action
        problems: list[str] = []
        tainted: list[str] = []
        for name, raw in arguments.items():
            if name == "idempotency_key":
                continue
            arg = rule.args.get(name, rule.default)
            value = str(raw) if isinstance(raw, Mapping | list | tuple) else raw
            limit = arg.max_value
            if limit is not None and isinstance(value, int | float) and value > limit:
                problems.append(f"{name}={value} is above the auto-approval limit")
            if arg.free_text or (name not in rule.args and _is_free_text(value)):
                continue
            origins = provenance.origins_of(value)
            if origins & arg.allow:
                continue
            tainted.append(name)
            where = "/".join(sorted(origins)) or "no source (made up by the model)"
            problems.append(f"{name} comes from {where}")
        if rule.check is not None:
            why = rule.check(arguments, provenance)
            if why:
                problems.append(why)
        if not problems:
            return Decision("allow")
        return Decision(action, "; ".join(problems), tuple(tainted))
