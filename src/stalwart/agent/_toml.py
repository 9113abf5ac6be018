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
    tools = ["examples.helpdesk.app:lookup_order", "examples.helpdesk.app:refund"]
    scopes = ["orders:read", "payments:write"]

    [[agents]]
    name = "triage"
    kind = "python"
    fn = "examples.helpdesk.app:triage"
    agents = ["resolver"]

Every key is checked: an unknown key or a wrong type is a ConfigError that
names it, never a silently ignored setting.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

from stalwart.agent._spec import App, LLMAgent, PythonAgent
from stalwart.errors import ConfigError
from stalwart.llm.sim import Scenario
from stalwart.tools import Tool

__all__ = ["app_from_toml"]

_TOP = {"store", "sim", "models", "supervision", "agents", "lease_seconds", "scenario"}
_COMMON = {"name", "kind", "max_tasks", "restart", "memory_limit_mb", "task_timeout", "agents"}
_LLM = _COMMON | {"model", "system", "tools", "scopes", "max_steps", "history_tokens", "max_tokens"}
_PY = _COMMON | {"fn", "model", "tools", "scopes"}


def _object(ref: str, where: str) -> Any:
    module_name, _, attr = str(ref).partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {ref!r} must look like 'package.module:name'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot load {ref!r}: {exc}") from exc


def _tool(ref: str, where: str) -> Tool:
    obj = _object(ref, where)
    if not isinstance(obj, Tool):
        raise ConfigError(f"{where}: {ref!r} is not a @tool")
    return obj


def app_from_toml(path: str | Path) -> App:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read app file {str(p)!r}: {exc}") from exc
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"{p}: unknown top-level key(s) {sorted(unknown)}; known: {sorted(_TOP)}")
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
        fields["tools"] = [_tool(t, f"{where}.tools") for t in raw.get("tools", [])]
        if "agents" in fields:
            fields["agents"] = tuple(fields["agents"])
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
        agents=agents,
        models={k: list(v) for k, v in data.get("models", {}).items()},
        store=data.get("store", "sqlite:///stalwart.db"),
        sim=bool(data.get("sim", False)),
        scenario=scenario,
        intensity=supervision.get("intensity", 5),
        period=supervision.get("period", 60.0),
        lease_seconds=data.get("lease_seconds", 10.0),
    )
