"""Render deploy/helm/stalwart as `helm template` would, for the subset of Go templates it uses.

No `helm` binary comes from Debian's packages, so the chart's tests render it with this.
It is honest about its limits: anything outside the subset (an unknown function, a
variable other than ``$``, a field of a missing value) raises ``TemplateError`` instead of
rendering something Helm would not. Where real Helm is at hand (the ``helm_python``
module of the helm-python-sdk package, Helm's own Go SDK in a shared library, or a
``helm`` binary on PATH) the chart tests render with both and compare the objects.

Helm's semantics this follows, beyond Go's template syntax: a number from a values file
is a float64 (Helm reads values through JSON), so it prints as Go's ``%v`` does
(``1000000`` as ``1e+06``, ``1234567`` as ``1.234567e+06``), ``toYaml``/``toJson`` write
it as an integer again, and comparing it with an integer literal (``gt .Values.n 1``) is
an error ("incompatible types for comparison") until ``int`` converts it; ``printf``'s
``%d`` takes only integers and ``%s`` only strings.

The subset: ``{{ pipeline }}`` with ``{{-``/``-}}`` trimming and ``{{/* comments */}}``;
``if``/``else if``/``else``, ``with``, ``range`` (lists and maps, no variables),
``define``/``include``; fields of ``.``, ``$``; string, number and boolean literals;
parenthesised commands and ``|`` pipelines; the functions in ``FUNCTIONS`` (Helm's sprig
names, same argument order); ``.Files.Get``.
"""

from __future__ import annotations

import copy
import decimal
import json
import math
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["TemplateError", "render_chart"]


class TemplateError(Exception):
    """The template uses something outside the subset, or fails as Helm's would."""


ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)
     |(?P<field>\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\$|\.)
     |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[()|])
    )""",
    re.X,
)


# -- parse -------------------------------------------------------------------------------
@dataclass
class Node:
    kind: str  # text | action | if | with | range
    text: str = ""
    branches: list[tuple[str | None, list[Node]]] = field(default_factory=list)


def _actions(source: str) -> list[tuple[str, str]]:
    """The template as ("text", s) and ("action", s) pieces, trim markers applied."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            pieces.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = source[pos:]
    pieces.append(("text", tail.lstrip() if trim_next else tail))
    return pieces


def parse(source: str, defines: dict[str, list[Node]]) -> list[Node]:
    pieces = _actions(source)
    top: list[Node] = []
    # each frame: the open block node (None at top level) and the list being filled
    stack: list[tuple[Node | None, list[Node]]] = [(None, top)]
    for kind, body in pieces:
        block, out = stack[-1]
        if kind == "text":
            if body:
                out.append(Node("text", body))
            continue
        word, _, rest = body.partition(" ")
        rest = rest.strip()
        if word in ("if", "with", "range"):
            node = Node(word, branches=[(rest, [])])
            out.append(node)
            stack.append((node, node.branches[0][1]))
        elif word == "define":
            node = Node("define", text=json.loads(rest), branches=[(None, [])])
            stack.append((node, node.branches[0][1]))
        elif word == "else":
            if block is None:
                raise TemplateError("{{ else }} outside a block")
            cond: str | None = None
            if rest.startswith("if "):
                if block.kind != "if":
                    raise TemplateError("{{ else if }} outside an if")
                cond = rest[3:].strip()
            block.branches.append((cond, []))
            stack[-1] = (block, block.branches[-1][1])
        elif word == "end":
            if block is None:
                raise TemplateError("{{ end }} with no open block")
            stack.pop()
            if block.kind == "define":
                defines[block.text] = block.branches[0][1]
        elif word in ("template", "block", "break", "continue") or ":=" in body or "=" in word:
            raise TemplateError(f"not in the supported subset: {{{{ {body} }}}}")
        else:
            out.append(Node("action", body))
    if len(stack) != 1:
        raise TemplateError("a block is not closed with {{ end }}")
    return top


# -- evaluate ------------------------------------------------------------------------------
def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, list | dict) and not value)


def go_float(f: float) -> str:
    """``f`` as Go's ``%v`` prints a float64 (strconv 'g', shortest): the exponent form
    from 1e+06 up and below 1e-04, as Helm prints a large number from a values file."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # digits before the decimal point
    minus = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:  # Go: shortest precision decides with eprec 6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return minus + digits + "0" * (point - len(digits))
    return f"{minus}{digits[:point]}.{digits[point:]}"


def text(value: Any) -> str:
    """A value as Go's text/template prints it (maps and lists are refused: use toYaml)."""
    if value is None:
        return ""  # Helm turns "<no value>" into ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict | list):
        raise TemplateError(f"printing a {type(value).__name__} (use toYaml): {value!r}")
    return str(value)


def as_float64(value: Any) -> Any:
    """Values as Helm holds them: every number a float64 (it reads values through JSON)."""
    if isinstance(value, dict):
        return {k: as_float64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_float64(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def as_json(value: Any) -> Any:
    """Values as Helm's toYaml/toJson write them: through Go's JSON encoder, which writes a
    whole float64 below 1e21 without a fraction."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    dumped = yaml.safe_dump(as_json(value), default_flow_style=False, sort_keys=True)
    return dumped.removesuffix("...\n").rstrip("\n")  # a scalar: no document end marker


def _indent(n: int, text: str) -> str:
    pad = " " * int(n)
    return "\n".join(pad + line for line in str(text).split("\n"))


VERB = re.compile(r"%([-+# 0]*\d*(?:\.\d+)?)([a-zA-Z%])")


def _printf(fmt: str, *args: Any) -> str:
    """Go's Sprintf for %s (strings), %d (integers), %v (anything printable) and %%."""
    pending = list(args)

    def one(m: re.Match[str]) -> str:
        flags, verb = m.groups()
        if verb == "%":
            return "%"
        if not pending:
            raise TemplateError(f"printf {fmt!r}: too few arguments (Go prints %!{verb}(MISSING))")
        arg = pending.pop(0)
        if verb == "v" and not flags:
            return text(arg)
        if verb == "s" and isinstance(arg, str):
            return ("%" + flags + "s") % arg
        if verb == "d" and isinstance(arg, int) and not isinstance(arg, bool):
            return ("%" + flags + "d") % arg
        kind = "float64" if isinstance(arg, float) else type(arg).__name__
        raise TemplateError(
            f"printf {fmt!r}: %{verb} of a {kind} ({arg!r}); Go prints %!{verb}({kind}=...)"
            + (" (a number from values is a float64: use int)" if kind == "float64" else "")
        )

    out = VERB.sub(one, fmt)
    if pending:
        raise TemplateError(f"printf {fmt!r}: too many arguments (Go appends %!(EXTRA ...))")
    return out


def _kind(value: Any) -> str:
    """Go's basicKind for the template comparison functions (None: a missing value)."""
    if value is None:
        return "invalid"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    """Go's eq: true when ``a`` equals one of ``bs``; values of different kinds (a float64
    from values and an integer literal) are an error, a missing value is unequal."""
    if not bs:
        raise TemplateError("eq: missing argument for comparison")
    for b in bs:
        ka, kb = _kind(a), _kind(b)
        if ka != kb:
            if "invalid" not in (ka, kb):
                raise TemplateError(
                    f"error calling eq: incompatible types for comparison: {ka} and {kb} "
                    "(a number from values is a float64: compare (int .Values.x) or 1.0)"
                )
            continue
        if ka == "other":
            raise TemplateError(f"error calling eq: non-comparable type {type(a).__name__}")
        if a == b:
            return True
    return False


def _ordered(name: str, a: Any, b: Any) -> int:
    """-1, 0 or 1 as ``a`` is below, equal to or above ``b``, under Go's lt rules."""
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise TemplateError(f"error calling {name}: invalid type for comparison")
    if ka != kb:
        raise TemplateError(
            f"error calling {name}: incompatible types for comparison: {ka} and {kb} "
            "(a number from values is a float64: compare (int .Values.x) or 1.0)"
        )
    return (a > b) - (a < b)


def _int(value: Any) -> int:
    """sprig's int (cast.ToInt): numbers truncated, numeric strings parsed, else 0."""
    if value is None:
        return 0
    if isinstance(value, bool | int | float):
        return int(value)
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        return 0


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(f"required: {message}")
    return value


def _and(*args: Any) -> Any:
    for a in args:
        if not truthy(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truthy(a):
            return a
    return args[-1]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toYaml": to_yaml,
    "toJson": lambda v: json.dumps(as_json(v), separators=(",", ":"), sort_keys=True),
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "quote": lambda *vs: " ".join(json.dumps(text(v)) for v in vs if v is not None),
    "default": lambda d, v=None: v if truthy(v) else d,
    "required": _required,
    "printf": _printf,
    "trunc": lambda n, s: s[:n] if n >= 0 else s[n:],
    "trimSuffix": lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "toString": text,
    "int": _int,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "gt": lambda a, b: _ordered("gt", a, b) > 0,
    "ge": lambda a, b: _ordered("ge", a, b) >= 0,
    "lt": lambda a, b: _ordered("lt", a, b) < 0,
    "le": lambda a, b: _ordered("le", a, b) <= 0,
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
}


class Files:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root

    def Get(self, name: str) -> str:
        path = self.root / name
        return path.read_text() if path.is_file() else ""


@dataclass
class Renderer:
    root: dict[str, Any]
    defines: dict[str, list[Node]]

    def run(self, nodes: list[Node], dot: Any) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(text(self.pipeline(node.text, dot)))
            elif node.kind == "if":
                for cond, body in node.branches:
                    if cond is None or truthy(self.pipeline(cond, dot)):
                        out.append(self.run(body, dot))
                        break
            elif node.kind == "with":
                value = self.pipeline(node.branches[0][0] or "", dot)
                if truthy(value):
                    out.append(self.run(node.branches[0][1], value))
                elif len(node.branches) > 1:
                    out.append(self.run(node.branches[1][1], dot))
            elif node.kind == "range":
                value = self.pipeline(node.branches[0][0] or "", dot)
                items = [value[k] for k in sorted(value)] if isinstance(value, dict) else value
                items = items or []
                for item in items:
                    out.append(self.run(node.branches[0][1], item))
                if not items and len(node.branches) > 1:
                    out.append(self.run(node.branches[1][1], dot))
        return "".join(out)

    def pipeline(self, source: str, dot: Any) -> Any:
        tokens = [(m.lastgroup, m.group(m.lastgroup or "")) for m in TOKEN.finditer(source)]
        if "".join(t for _, t in tokens).replace(" ", "") != source.replace(" ", "").replace(
            "\n", ""
        ).replace("\t", ""):
            raise TemplateError(f"cannot read {{{{ {source} }}}}")
        value, rest = self._pipe(tokens, dot)
        if rest:
            raise TemplateError(f"unexpected {rest[0][1]!r} in {{{{ {source} }}}}")
        return value

    def _pipe(self, tokens: list[tuple[str | None, str]], dot: Any) -> tuple[Any, list[Any]]:
        value, tokens = self._command(tokens, dot, piped=())
        while tokens and tokens[0] == ("punct", "|"):
            value, tokens = self._command(tokens[1:], dot, piped=(value,))
        return value, tokens

    def _command(
        self, tokens: list[tuple[str | None, str]], dot: Any, piped: tuple[Any, ...]
    ) -> tuple[Any, list[Any]]:
        operands: list[tuple[str | None, Any]] = []
        while tokens and tokens[0][1] not in ("|", ")"):
            kind, tok = tokens[0]
            tokens = tokens[1:]
            if tok == "(":
                value, tokens = self._pipe(tokens, dot)
                if not tokens or tokens[0][1] != ")":
                    raise TemplateError("a '(' is not closed")
                tokens = tokens[1:]
                operands.append(("value", value))
            elif kind == "ident" and tok in ("true", "false", "nil"):
                operands.append(("value", {"true": True, "false": False, "nil": None}[tok]))
            elif kind == "ident":
                if tok not in FUNCTIONS and tok != "include":
                    raise TemplateError(f"function {tok!r} is not in the supported subset")
                operands.append(("func", tok))
            elif kind == "str":
                operands.append(("value", json.loads(tok)))
            elif kind == "raw":
                operands.append(("value", tok[1:-1]))
            elif kind == "num":
                operands.append(("value", float(tok) if "." in tok else int(tok)))
            else:
                operands.append(("value", self.field(tok, dot)))
        if not operands:
            raise TemplateError("an empty command")
        head_kind, head = operands[0]
        args = [v for _, v in operands[1:]] + list(piped)
        if head_kind == "func":
            if head == "include":
                name, data = args
                return self.run(self.defines[name], data), tokens
            try:
                return FUNCTIONS[head](*args), tokens
            except TypeError as exc:
                raise TemplateError(f"{head}: {exc}") from None
        if callable(head):
            return head(*args), tokens
        if args:
            raise TemplateError(f"{head!r} is not a function but has arguments")
        return head, tokens

    def field(self, path: str, dot: Any) -> Any:
        value = self.root if path.startswith("$") else dot
        for name in [p for p in path.lstrip("$").split(".") if p]:
            if isinstance(value, dict):
                value = value.get(name)
            elif value is not None and callable(getattr(value, name, None)):
                value = getattr(value, name)
            else:
                raise TemplateError(f"nil pointer evaluating {path} (at {name!r})")
        return value


# -- the chart -----------------------------------------------------------------------------
def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_chart(
    chart: pathlib.Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "stalwart",
    namespace: str = "default",
) -> dict[str, str]:
    """Every template of ``chart`` rendered: path (as Helm names it) -> text."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    merged = merge(defaults, values or {})
    schema_file = chart / "values.schema.json"
    if schema_file.is_file():  # as Helm does: the merged values against the chart's schema
        import jsonschema

        errors = sorted(
            jsonschema.Draft7Validator(json.loads(schema_file.read_text())).iter_errors(merged),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            raise TemplateError(
                "values don't meet the schema: "
                + "; ".join(
                    f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                    for e in errors
                )
            )
    root = {
        "Values": as_float64(merged),
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {
            "Name": meta["name"],
            "Version": meta["version"],
            "AppVersion": meta.get("appVersion"),
        },
        "Files": Files(chart),
    }
    defines: dict[str, list[Node]] = {}
    parsed: dict[str, list[Node]] = {}
    for path in sorted((chart / "templates").iterdir()):
        nodes = parse(path.read_text(), defines)
        if not path.name.startswith("_") and path.suffix in (".yaml", ".yml"):
            parsed[f"{meta['name']}/templates/{path.name}"] = nodes
    renderer = Renderer(root, defines)
    return {name: renderer.run(nodes, root) for name, nodes in parsed.items()}


def render_objects(
    chart: pathlib.Path, values: dict[str, Any] | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """The Kubernetes objects the chart makes (empty documents dropped)."""
    objects: list[dict[str, Any]] = []
    for text_ in render_chart(chart, values, **kw).values():
        objects += [d for d in yaml.safe_load_all(text_) if d]
    return objects
