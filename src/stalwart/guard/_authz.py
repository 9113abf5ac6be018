"""Principal-aware authorization rules: permit and forbid on tool, argument and provenance.

The form is Cedar's (AWS Verified Permissions, AgentCore Policy), cut to what an
agent's tool calls need::

    permit(principal, action == "refund", resource = lookup_order(order_id))
    when { resource.email == principal.id && arg.amount_cents <= resource.amount_cents };

is, in stalwart::

    Rule.permit("refund", resource=Resource("lookup_order", arg="order_id"),
                when=["resource.email == principal.id",
                      "arg.amount_cents <= resource.amount_cents"])

- ``principal`` is the task's :class:`Principal`: who the task is for, set when the
  task was submitted (or, failing that, from the input fields the channel vouches for).
- ``arg.NAME`` is an argument the model proposed.
- ``resource.FIELD`` is a field of the record a **trusted lookup** returns for an
  argument: the runtime itself calls the named tool with that argument (a journaled
  step the model never sees), so the record is the system of record's answer about
  *that* key, whatever text the key came from.
- ``provenance(arg.NAME)`` is the set of origins the value was found in
  (:class:`~stalwart.guard.Origin`); ``provenance(arg.to) in [principal, user]``
  holds when it was found in at least one of them.

Conditions are ``left OP right`` with ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``,
``in``; operands are the references above, numbers, ``"strings"`` and ``[lists]``.
Values compare canonically (:mod:`stalwart.guard._canon`: 100 = 100.0 = "100",
text case-folded). A reference that cannot be resolved (no principal, no such
argument, the lookup failed) makes its condition **unknown**: a permit does not hold,
a forbid does (fail closed). An attribute the principal does not have
(``principal.tier`` of a principal without one) makes its condition false.

Decision, per call (Cedar's, with one stated difference):

1. a ``forbid`` rule of the tool whose conditions all hold decides against the call;
   a forbid whose condition cannot be evaluated also counts as holding (fail closed;
   Cedar skips a policy that errors);
2. if the tool has ``permit`` rules, one of them must hold entirely, else the call is
   not permitted (Cedar's default deny);
3. a tool with no rules is governed by the taint defaults (``TaintPolicy``).

"Against the call" means the rule's ``then`` (``approve``: held for a person;
``refuse``), or the tool's or policy's action.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from stalwart.errors import ConfigError
from stalwart.guard._canon import canonical, canonical_number

__all__ = [
    "Condition",
    "Principal",
    "Resource",
    "Rule",
    "RuleOutcome",
    "evaluate_rules",
    "forbid",
    "owned",
    "parse_condition",
    "permit",
]

Effect = Literal["permit", "forbid"]
Then = Literal["approve", "refuse"]
Scalar = str | int | float | bool


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a task is for: ``id`` (a customer id or e-mail, an account), its ``kind``, and
    attributes the caller vouches for (``{"tier": "gold", "tenant": "acme"}``)."""

    id: str
    kind: str = "customer"
    attrs: Mapping[str, Scalar] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > 512:
            raise ConfigError("Principal.id must be a non-empty string of at most 512 characters")
        for key, value in self.attrs.items():
            if not isinstance(key, str) or not isinstance(value, Scalar):
                raise ConfigError(
                    f"Principal.attrs[{key!r}] must be a string, number or bool, got "
                    f"{type(value).__name__}"
                )

    def get(self, attr: str) -> Any:
        """``id``, ``kind`` or an attribute (None if it has none)."""
        if attr == "id":
            return self.id
        if attr == "kind":
            return self.kind
        return self.attrs.get(attr)

    def as_data(self) -> dict[str, Any]:
        """As JSON data (how it is stored with the task)."""
        return {"id": self.id, "kind": self.kind, "attrs": dict(self.attrs)}

    @classmethod
    def from_data(cls, data: Any) -> Principal:
        """From ``"alice@example.com"`` or ``{"id": ..., "kind": ..., "attrs": {...}}``."""
        if isinstance(data, Principal):
            return data
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise ConfigError(
                'a principal is a string id or {"id": "...", "kind": "...", "attrs": {...}}'
            )
        unknown = set(data) - {"id", "kind", "attrs"}
        if unknown:
            raise ConfigError(f"unknown principal field {sorted(unknown)[0]!r} (id, kind, attrs)")
        attrs = data.get("attrs") or {}
        if not isinstance(attrs, Mapping):
            raise ConfigError("a principal's attrs must be an object of strings and numbers")
        return cls(str(data["id"]), str(data.get("kind") or "customer"), dict(attrs))


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    """The record a rule's conditions call ``resource``: what the trusted tool ``lookup``
    returns when the runtime calls it with the call's argument ``arg`` (passed as the
    lookup's parameter ``key``, by default of the same name)."""

    lookup: str
    arg: str
    key: str | None = None

    @property
    def param(self) -> str:
        return self.key or self.arg


class _Missing:
    """A reference that cannot be resolved."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()
ABSENT = _Missing()
"""An attribute the (known) principal does not have: its condition is false, not unknown."""
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_CONDITION = re.compile(r"^\s*(?P<left>.+?)\s+(?P<op>==|!=|<=|>=|<|>|in)\s+(?P<right>.+?)\s*$")
_REF = re.compile(r"^(?P<root>arg|principal|resource)\.(?P<name>[A-Za-z_][\w.]*)$")
_PROVENANCE = re.compile(r"^provenance\(\s*arg\.(?P<name>[A-Za-z_]\w*)\s*\)$")


@dataclasses.dataclass(frozen=True, slots=True)
class Operand:
    """One side of a condition: a reference (``arg.x``), ``provenance(arg.x)`` or a literal."""

    kind: Literal["arg", "principal", "resource", "provenance", "literal"]
    name: str = ""
    value: Any = None


def _operand(text: str, where: str) -> Operand:
    text = text.strip()
    if m := _PROVENANCE.match(text):
        return Operand("provenance", m["name"])
    if m := _REF.match(text):
        root: Literal["arg", "principal", "resource"] = m["root"]  # type: ignore[assignment]
        return Operand(root, m["name"])
    if text.startswith("[") and text.endswith("]"):
        items = [i.strip() for i in text[1:-1].split(",") if i.strip()]
        return Operand("literal", value=tuple(_literal(i, where) for i in items))
    return Operand("literal", value=_literal(text, where))


def _literal(text: str, where: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    number = canonical_number(text)
    if number is not None:
        return float(number) if "." in number else int(number)
    if re.fullmatch(r"[A-Za-z_]\w*", text):
        return text  # a bare word: an origin name in ``provenance(...) in [user, record]``
    raise ConfigError(
        f"{where}: cannot read {text!r}: an operand is arg.NAME, principal.ATTR, "
        'resource.FIELD, provenance(arg.NAME), a number, a "string" or a [list]'
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """``left op right``, parsed once from its text (see the module docstring)."""

    text: str
    left: Operand
    op: str
    right: Operand

    def refs(self, root: str) -> set[str]:
        return {o.name for o in (self.left, self.right) if o.kind == root}


def parse_condition(text: str, *, where: str = "condition") -> Condition:
    """Parse ``"resource.email == principal.id"`` (raises ConfigError saying what is wrong)."""
    if not isinstance(text, str):
        raise ConfigError(f"{where}: a condition is a string like 'arg.x == principal.id'")
    m = _CONDITION.match(text)
    if m is None:
        raise ConfigError(
            f"{where}: {text!r} is not 'LEFT OP RIGHT' (OP one of == != < <= > >= in)"
        )
    left, right = _operand(m["left"], where), _operand(m["right"], where)
    if left.kind == "provenance" and m["op"] != "in":
        raise ConfigError(f"{where}: provenance(...) is compared with 'in [origins]' only")
    if m["op"] == "in" and not isinstance(right.value, tuple):
        raise ConfigError(f"{where}: the right side of 'in' must be a [list]")
    return Condition(text, left, m["op"], right)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One permit or forbid rule for a tool (``"*"``: every sensitive tool).

    ``when`` lists conditions that must all hold; ``resource`` names the trusted
    lookup behind ``resource.FIELD``; ``then`` is what a forbid (or a failed permit)
    does to the call (default: the tool's or the policy's action); ``reason`` is told
    to the person deciding and to the model.
    """

    effect: Effect
    tool: str
    when: tuple[str, ...] = ()
    resource: Resource | None = None
    then: Then | None = None
    reason: str = ""
    conditions: tuple[Condition, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"{self.effect} rule for {self.tool!r}"
        if self.effect not in ("permit", "forbid"):
            raise ConfigError(f"a rule's effect is 'permit' or 'forbid', got {self.effect!r}")
        if not isinstance(self.tool, str) or not self.tool:
            raise ConfigError("a rule names its tool (or '*')")
        if self.then not in (None, "approve", "refuse"):
            raise ConfigError(f"{where}: then must be 'approve' or 'refuse', got {self.then!r}")
        when = (self.when,) if isinstance(self.when, str) else tuple(self.when)
        object.__setattr__(self, "when", when)
        parsed = tuple(parse_condition(c, where=where) for c in when)
        if self.resource is None and any(c.refs("resource") for c in parsed):
            raise ConfigError(f"{where}: it uses resource.FIELD but names no resource lookup")
        object.__setattr__(self, "conditions", parsed)

    @classmethod
    def permit(
        cls,
        tool: str,
        *,
        when: Sequence[str] | str = (),
        resource: Resource | None = None,
        reason: str = "",
        then: Then | None = None,
    ) -> Rule:
        """``Rule.permit("refund", resource=..., when=[...])``."""
        return cls("permit", tool, tuple([when] if isinstance(when, str) else when),
                   resource, then, reason)  # fmt: skip

    @classmethod
    def forbid(
        cls,
        tool: str,
        *,
        when: Sequence[str] | str = (),
        resource: Resource | None = None,
        reason: str = "",
        then: Then | None = None,
    ) -> Rule:
        """``Rule.forbid("refund", when="arg.amount_cents > 5000", then="approve")``."""
        return cls("forbid", tool, tuple([when] if isinstance(when, str) else when),
                   resource, then, reason)  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, where: str = "rule") -> Rule:
        """From a TOML table: ``{effect, tool, when, resource = {lookup, arg, key}, then,
        reason}``."""
        known = {"effect", "tool", "when", "resource", "then", "reason"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} ({', '.join(known)})")
        resource = data.get("resource")
        if resource is not None:
            if not isinstance(resource, Mapping) or not {"lookup", "arg"} <= set(resource):
                raise ConfigError(f"{where}.resource must be {{lookup = 'tool', arg = 'name'}}")
            resource = Resource(str(resource["lookup"]), str(resource["arg"]),
                                resource.get("key"))  # fmt: skip
        when = data.get("when", ())
        return cls(
            data.get("effect", ""),
            data.get("tool", ""),
            tuple([when] if isinstance(when, str) else when),
            resource,
            data.get("then"),
            str(data.get("reason", "")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What the rules say about one call: ``applies`` (the tool has rules), ``permitted``,
    the problems found (each a sentence), and the action a forbid asked for."""

    applies: bool
    permitted: bool
    problems: tuple[str, ...] = ()
    then: Then | None = None


Origins = Callable[[Any], set[str]]


def _resolve(
    op: Operand,
    args: Mapping[str, Any],
    principal: Principal | None,
    resource: Any,
    origins: Origins,
) -> Any:
    if op.kind == "literal":
        return op.value
    if op.kind == "arg":
        return args.get(op.name, MISSING) if op.name in args else MISSING
    if op.kind == "provenance":
        return origins(args[op.name]) if op.name in args else MISSING
    if op.kind == "principal":
        if principal is None:
            return MISSING
        found = principal.get(op.name)
        return ABSENT if found is None else found
    # resource: a dotted path into the lookup's record
    value = resource
    for part in op.name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return MISSING if value is None else value


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "in":
        if isinstance(left, set | frozenset):  # provenance(...) in [origins]
            return bool({canonical(o) for o in left} & {canonical(r) for r in right})
        return canonical(left) in {canonical(r) for r in right}
    if op in ("==", "!="):
        equal = canonical(left) == canonical(right)
        return equal if op == "==" else not equal
    a, b = canonical_number(left), canonical_number(right)
    if a is None or b is None:
        return False  # an order needs two numbers
    from decimal import Decimal

    return _OPS[op](Decimal(a), Decimal(b))


def holds(
    cond: Condition,
    args: Mapping[str, Any],
    principal: Principal | None,
    resource: Any,
    origins: Origins,
) -> bool | None:
    """True or False; None when a reference cannot be resolved."""
    left = _resolve(cond.left, args, principal, resource, origins)
    right = _resolve(cond.right, args, principal, resource, origins)
    if left is MISSING or right is MISSING:
        return None
    if left is ABSENT or right is ABSENT:
        return False
    return _compare(left, cond.op, right)


def evaluate_rules(
    rules: Sequence[Rule],
    tool: str,
    args: Mapping[str, Any],
    *,
    principal: Principal | None,
    lookups: Mapping[tuple[str, str, str], Any],
    origins: Origins,
) -> RuleOutcome:
    """Apply ``rules`` to one call (see the module docstring). ``lookups`` maps
    ``(lookup tool, parameter, canonical key)`` to the trusted record (None: not found)."""
    mine = [r for r in rules if r.tool in (tool, "*")]
    if not mine:
        return RuleOutcome(applies=False, permitted=True)
    problems: list[str] = []
    then: Then | None = None
    permits = [r for r in mine if r.effect == "permit"]
    permitted = not permits
    closest: tuple[Rule, list[str]] | None = None
    for rule in mine:
        resource = None
        if rule.resource is not None:
            key = args.get(rule.resource.arg)
            resource = lookups.get((rule.resource.lookup, rule.resource.param, canonical(key)))
        verdicts = [holds(c, args, principal, resource, origins) for c in rule.conditions]
        failed = [
            _why(c, v, principal, rule, resource)
            for c, v in zip(rule.conditions, verdicts, strict=True)
            if v is not True
        ]
        if rule.effect == "forbid":
            # fail closed: a forbid that cannot be evaluated counts as holding
            if all(v is not False for v in verdicts):
                problems.append(rule.reason or f"forbidden: {' and '.join(rule.when) or tool}")
                then = _stricter(then, rule.then)
        elif not failed:
            permitted = True
        elif closest is None or len(failed) < len(closest[1]):
            closest = (rule, failed)
    if not permitted:
        rule, failed = closest if closest is not None else (permits[0], [])
        detail = "; ".join(failed)
        reason = rule.reason or "no permit rule holds"
        problems.append(f"{reason}: {detail}" if detail else reason)
        then = _stricter(then, rule.then)
    return RuleOutcome(True, not problems, tuple(problems), then)


def _stricter(a: Then | None, b: Then | None) -> Then | None:
    """``refuse`` over ``approve`` over nothing."""
    if "refuse" in (a, b):
        return "refuse"
    return a or b


def _why(
    cond: Condition, verdict: bool | None, principal: Principal | None, rule: Rule, resource: Any
) -> str:
    if verdict is False:
        return f"not ({cond.text})"
    if cond.refs("principal") and principal is None:
        return f"{cond.text}: the task has no principal"
    if cond.refs("resource") and rule.resource is not None and resource is None:
        return f"{cond.text}: {rule.resource.lookup} found no record for {rule.resource.arg}"
    return f"{cond.text}: a value is missing"


def owned(
    tool: str,
    *,
    lookup: str,
    arg: str,
    owner: str = "owner",
    principal: str = "id",
    key: str | None = None,
    when: Sequence[str] = (),
    reason: str = "",
) -> Rule:
    """The common case in one line: permit ``tool`` when the record ``lookup`` returns for
    argument ``arg`` names the principal as its ``owner`` (plus any ``when`` conditions).

    ``owned("refund", lookup="lookup_order", arg="order_id", owner="email",
    when=["arg.amount_cents <= resource.amount_cents"])`` is the helpdesk's refund rule.
    """
    return Rule.permit(
        tool,
        resource=Resource(lookup, arg, key),
        when=[f"resource.{owner} == principal.{principal}", *when],
        reason=reason or f"{arg} must name a {lookup} record the principal owns",
    )


permit = Rule.permit
"""``permit("refund", resource=Resource(...), when=[...])``: a :class:`Rule` that allows."""
forbid = Rule.forbid
"""``forbid("refund", when="arg.amount_cents > 5000", then="approve")``: one that stops."""
