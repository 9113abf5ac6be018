"""Apps described in TOML: agents, models, tools, supervision flags and the store URL.

Example::

    store = "sqlite:///helpdesk.db"
    sim = true

    [models]
    main = ["sim:strong", "sim:weak"]

    [supervision]
    intensity = 20
    period = 60

    [[agents]]
    name = "resolver"
    kind = "llm"                      # or "python"
    model = "main"
    system = "You resolve support tickets."
    tools = ["stalwart.demo.app:lookup_order", "stalwart.demo.app:refund"]
    scopes = ["orders:read", "payments:write"]

    security = "stalwart.demo.app:SECURITY"   # optional; or a table:
    # [agents.security]  output = "mask", taint = "pkg.mod:POLICY" (or a table: its
    #                    rules and tools, see docs/security.md),
    #                    budget = { task_usd = 0.5, day_usd = 100.0 }, inputs = { ... }

    [[agents]]
    name = "triage"
    kind = "python"
    fn = "stalwart.demo.app:triage"
    agents = ["resolver"]

    [[mcp_servers]]                   # tools served over MCP (docs/mcp.md)
    name = "notes"
    command = ["python", "-m", "notes_server"]     # or url = "http://127.0.0.1:8000/mcp"
    prefix = "notes_"
    [mcp_servers.tools.read_notes]
    scopes = ["notes:read"]
    [mcp_servers.tools.add_note]
    scopes = ["notes:write"]
    side_effect = true
    key_argument = "idempotency_key"
    # an agent takes them as tools = ["mcp:notes"] (all) or ["mcp:notes/read_notes"]

    [prices]                          # dollars per million tokens, over the built-in table
    "sim:strong" = [2.5, 10.0]

    [providers.openai]                # keys are secret references, never values
    base_url = "https://api.openai.com/v1"
    api_key = "secret://openai-key"
    [providers.vllm]                  # a server of your own: its models cost nothing
    base_url = "http://gpu-1:8000/v1"
    self_hosted = true

The full list of keys, with their defaults: docs/reference/app.md.

Every key is checked: an unknown key or a wrong type is a ConfigError that
names it, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from stalwart.agent._profile import VerifyProfile
from stalwart.agent._spec import App, LLMAgent, PythonAgent
from stalwart.config import load_ref
from stalwart.errors import ConfigError
from stalwart.guard import (
    Budget,
    InputLimits,
    RateLimit,
    Security,
    TaintPolicy,
    is_secret_ref,
    policy_from_data,
)
from stalwart.llm import Price, Provider
from stalwart.llm.sim import Scenario
from stalwart.tools import Tool
from stalwart.tools.mcp import MCPServer, MCPToolOptions

__all__ = ["app_from_toml"]

_TOP = {
    "store", "sim", "models", "supervision", "agents", "lease_seconds", "scenario", "providers",
    "prices", "max_pending", "max_pending_node", "verify", "entry", "mcp_servers", "redteam",
}  # fmt: skip
_COMMON = {
    "name", "kind", "max_tasks", "max_running", "restart", "memory_limit_mb", "task_timeout",
    "quarantine_after",
    "agents", "security",
}  # fmt: skip
_SECURITY = {"output", "taint", "budget", "inputs", "input_schema", "rate", "model_rates"}
_LLM = _COMMON | {
    "model", "system", "tools", "scopes", "max_steps", "history_tokens", "max_tokens", "stream",
}  # fmt: skip
_PY = _COMMON | {"fn", "model", "tools", "scopes"}


def _object(ref: str, where: str) -> Any:
    try:
        return load_ref(ref, "referenced")
    except ConfigError as exc:
        raise ConfigError(f"{where}: cannot load {ref!r}: {exc}") from exc


def _tools(ref: str, where: str, servers: dict[str, MCPServer]) -> list[Tool]:
    """``module:name`` of a @tool (or of an MCPServer: its tools), or ``mcp:server`` /
    ``mcp:server/tool`` naming a ``[[mcp_servers]]`` entry (a tool by its server name)."""
    if isinstance(ref, str) and ref.startswith("mcp:"):
        name, _, remote = ref.removeprefix("mcp:").partition("/")
        server = servers.get(name)
        if server is None:
            raise ConfigError(f"{where}: {ref!r}: no [[mcp_servers]] is named {name!r}")
        if not remote:
            return list(server.tools)
        found: list[Tool] = [t for t in server.tools if t.remote == remote]
        if not found:
            known = sorted(t.remote for t in server.tools)
            raise ConfigError(f"{where}: {ref!r}: server {name!r} declares no tool {remote!r} "
                              f"(declared: {known})")  # fmt: skip
        return found
    obj = _object(ref, where)
    if isinstance(obj, MCPServer):
        return list(obj.tools)
    if not isinstance(obj, Tool):
        raise ConfigError(f"{where}: {ref!r} is not a @tool")
    return [obj]


_MCP = {"name", "command", "url", "tools", "prefix", "env", "cwd", "headers", "timeout",
        "connect_timeout", "ping_interval", "reconnect_min", "reconnect_max"}  # fmt: skip
_MCP_TOOL = {f.name for f in dataclasses.fields(MCPToolOptions)}


def _mcp_servers(raw: Any, where: str) -> dict[str, MCPServer]:
    """``[[mcp_servers]]``: MCP servers and the tools of each the app uses."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be an array of tables ([[mcp_servers]])")
    out: dict[str, MCPServer] = {}
    for i, spec in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{at} must be a table")
        extra = set(spec) - _MCP
        if extra:
            raise ConfigError(f"{at}: unknown key(s) {sorted(extra)}; known: {sorted(_MCP)}")
        tools = spec.get("tools", {})
        if not isinstance(tools, dict | list):
            raise ConfigError(f"{at}.tools must be a list of names or a table per tool")
        options: dict[str, MCPToolOptions] = {}
        for remote, given in (tools.items() if isinstance(tools, dict) else
                              ((t, {}) for t in tools)):  # fmt: skip
            bad = set(given) - _MCP_TOOL if isinstance(given, dict) else {"(not a table)"}
            if bad:
                raise ConfigError(
                    f"{at}.tools.{remote}: unknown key(s) {sorted(bad)}; known: {sorted(_MCP_TOOL)}"
                )
            opts = dict(given)
            if "double" in opts:  # "module:function", as @tool(double=...)
                opts["double"] = _object(opts["double"], f"{at}.tools.{remote}.double")
            if "retry" in opts:  # true: the default retries; false: one attempt
                if not isinstance(opts["retry"], bool):
                    raise ConfigError(f"{at}.tools.{remote}.retry must be true or false")
                if opts["retry"]:
                    del opts["retry"]
                else:
                    opts["retry"] = None
            try:
                options[remote] = MCPToolOptions(**opts)
            except TypeError as exc:
                raise ConfigError(f"{at}.tools.{remote}: {exc}") from None
        fields = {k: v for k, v in spec.items() if k not in ("name", "tools")}
        try:
            server = MCPServer(str(spec.get("name", "")), tools=options, **fields)
        except TypeError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
        if server.name in out:
            raise ConfigError(f"{at}: two [[mcp_servers]] are named {server.name!r}")
        out[server.name] = server
    return out


def _security(raw: Any, where: str) -> Security:
    """``security``: a reference to a :class:`Security`, or a table of its parts."""
    if isinstance(raw, str):
        obj = _object(raw, where)
        if not isinstance(obj, Security):
            raise ConfigError(f"{where}: {raw!r} is not a stalwart.guard.Security")
        return obj
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table or a 'module:name' reference")
    extra = set(raw) - _SECURITY
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(_SECURITY)}")
    fields: dict[str, Any] = {}
    try:
        if "output" in raw:
            fields["output"] = raw["output"]
        if "budget" in raw:
            fields["budget"] = Budget(**raw["budget"])
        if "inputs" in raw:
            fields["inputs"] = InputLimits(**raw["inputs"])
        if "rate" in raw:
            fields["rate"] = RateLimit(**raw["rate"])
        if "model_rates" in raw:  # per chain name: { main = { requests_per_minute = 60 } }
            fields["model_rates"] = {
                chain: RateLimit(**limits) for chain, limits in raw["model_rates"].items()
            }
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if isinstance(raw.get("taint"), dict):  # the policy itself, rules and all
        fields["taint"] = policy_from_data(raw["taint"], where=f"{where}.taint")
    elif "taint" in raw:
        taint = _object(raw["taint"], f"{where}.taint")
        if not isinstance(taint, TaintPolicy):
            raise ConfigError(f"{where}.taint: {raw['taint']!r} is not a TaintPolicy")
        fields["taint"] = taint
    if "input_schema" in raw:
        fields["input_schema"] = _object(raw["input_schema"], f"{where}.input_schema")
    return Security(**fields)


_PROVIDER = {"base_url", "api_key", "wire", "self_hosted"}


def _providers(raw: Any, where: str) -> dict[str, Provider]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table of providers")
    out: dict[str, Provider] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or set(spec) - _PROVIDER:
            raise ConfigError(f"{where}.{name}: expected {', '.join(sorted(_PROVIDER))}")
        if not isinstance(spec.get("self_hosted", False), bool):
            raise ConfigError(f"{where}.{name}.self_hosted must be true or false")
        key = spec.get("api_key")
        if key is not None and not is_secret_ref(key):
            raise ConfigError(
                f"{where}.{name}.api_key must be a secret reference (secret://name), not a "
                "value: store it with `stalwart secrets set NAME`"
            )
        out[name] = Provider(
            str(spec.get("base_url", "")),
            api_key=key,
            wire=spec.get("wire", "openai"),
            self_hosted=spec.get("self_hosted", False),
        )
    return out


def _prices(raw: Any, where: str) -> dict[str, Price]:
    """``[prices]`` ``"openai:gpt-4o" = [2.5, 10.0]``: dollars per million tokens in, out."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table of model = [input, output]")
    out: dict[str, Price] = {}
    for model, pair in raw.items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(f"{where}.{model} must be [input_per_mtok, output_per_mtok]")
        out[model] = Price(float(pair[0]), float(pair[1]))
    return out


_VERIFY = {"workload", "tools", "latency_p99_s", "manifest"}


def _verify(raw: Any, where: str) -> VerifyProfile:
    """The ``[verify]`` table: the app's verification profile (see VerifyProfile)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    extra = set(raw) - _VERIFY
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(_VERIFY)}")
    tools = raw.get("tools", {})
    if not isinstance(tools, dict) or not all(isinstance(v, str) for v in tools.values()):
        raise ConfigError(f"{where}.tools must map tool names to fault modes (strings)")
    for key in ("workload", "manifest"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where}.{key} must be a string")
    bound = raw.get("latency_p99_s")
    if bound is not None and not isinstance(bound, int | float):
        raise ConfigError(f"{where}.latency_p99_s must be a number of seconds")
    return VerifyProfile(
        workload=raw.get("workload"),
        tools=dict(tools),
        latency_p99_s=float(bound) if bound is not None else None,
        manifest=raw.get("manifest"),
    )


def app_from_toml(path: str | Path) -> App:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read app file {str(p)!r}: {exc}") from exc
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"{p}: unknown top-level key(s) {sorted(unknown)}; known: {sorted(_TOP)}")
    servers = _mcp_servers(data.get("mcp_servers", []), f"{p}: mcp_servers")
    agents: list[LLMAgent | PythonAgent] = []
    for i, raw in enumerate(data.get("agents", [])):
        where = f"{p}: agents[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        kind = raw.get("kind", "llm")
        allowed = _LLM if kind == "llm" else _PY if kind == "python" else None
        if allowed is None:
            raise ConfigError(f"{where}.kind must be 'llm' or 'python', got {kind!r}")
        extra = set(raw) - allowed
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {sorted(extra)} for a {kind} agent")
        fields = {k: v for k, v in raw.items() if k != "kind"}
        fields["tools"] = [
            t for ref in raw.get("tools", []) for t in _tools(ref, f"{where}.tools", servers)
        ]
        if "agents" in fields:
            fields["agents"] = tuple(fields["agents"])
        if "security" in fields:
            fields["security"] = _security(fields["security"], f"{where}.security")
        try:
            if kind == "llm":
                agents.append(LLMAgent(**fields))
            else:
                fields["fn"] = _object(raw.get("fn", ""), f"{where}.fn")
                agents.append(PythonAgent(**fields))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    supervision = data.get("supervision", {})
    extra = set(supervision) - {"intensity", "period"}
    if extra:
        raise ConfigError(f"{p}: unknown supervision key(s) {sorted(extra)}")
    scenario = data.get("scenario")
    if isinstance(scenario, str):
        scenario = _object(scenario, f"{p}: scenario")
    if scenario is not None and not isinstance(scenario, Scenario):
        raise ConfigError(f"{p}: scenario must name a stalwart.llm.sim.Scenario")
    return App(
        verify=_verify(data.get("verify", {}), f"{p}: verify"),
        entry=data.get("entry"),
        redteam=data.get("redteam"),
        agents=agents,
        models={k: list(v) for k, v in data.get("models", {}).items()},
        providers=_providers(data.get("providers", {}), f"{p}: providers"),
        prices=_prices(data.get("prices", {}), f"{p}: prices"),
        store=data.get("store", "sqlite:///stalwart.db"),
        sim=bool(data.get("sim", False)),
        scenario=scenario,
        intensity=supervision.get("intensity", 5),
        period=supervision.get("period", 60.0),
        lease_seconds=data.get("lease_seconds", App.lease_seconds),
        max_pending=data.get("max_pending", App.max_pending),
        max_pending_node=data.get("max_pending_node", App.max_pending_node),
    )
