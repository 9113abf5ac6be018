"""The tools an app has, which an agent may use, and the runtime's authorization."""

from __future__ import annotations

from collections.abc import Iterable

from stalwart.errors import ConfigError
from stalwart.llm import ToolSpec
from stalwart.observe import get_logger
from stalwart.resilience import BreakerRegistry
from stalwart.tools._tool import Tool, ToolResult

__all__ = ["ToolRegistry"]

_log = get_logger("stalwart.tools")


class ToolRegistry:
    """Tools by name, with switches to disable one (GD-2 tests) and scope checks.

    Authorization is the runtime's, never the prompt's: ``authorize`` refuses a
    tool the agent was not granted every scope of, whatever the model says.
    """

    def __init__(
        self, tools: Iterable[Tool] = (), *, breakers: BreakerRegistry | None = None
    ) -> None:
        """``breakers``: where the tools' circuit breakers live (default: process-wide)."""
        self._tools: dict[str, Tool] = {}
        self.breakers = breakers
        for t in tools:
            self.add(t)

    def add(self, t: Tool) -> Tool:
        if t.name in self._tools:
            raise ConfigError(f"two tools are named {t.name!r}")
        self._tools[t.name] = t
        return t

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    async def invoke(self, name: str, arguments: object, **kwargs: object) -> ToolResult:
        """Invoke tool ``name`` with this registry's breakers (no authorization here)."""
        return await self[name].invoke(arguments, breakers=self.breakers, **kwargs)  # type: ignore[arg-type]

    def disable(self, name: str) -> None:
        self[name].enabled = False

    def enable(self, name: str) -> None:
        self[name].enabled = True

    def allowed(self, granted: Iterable[str]) -> list[Tool]:
        """The tools whose scopes are all within ``granted``."""
        scopes = frozenset(granted)
        return [t for t in self._tools.values() if t.scopes <= scopes]

    def specs(self, granted: Iterable[str]) -> list[ToolSpec]:
        return [t.spec for t in self.allowed(granted)]

    def authorize(self, name: str, granted: Iterable[str]) -> str | None:
        """None if an agent with ``granted`` scopes may call ``name``; else why not."""
        t = self._tools.get(name)
        if t is None:
            return f"there is no tool named {name!r}"
        missing = sorted(t.scopes - frozenset(granted))
        if missing:
            return f"{name!r} needs scope(s) {missing}, which this agent was not granted"
        return None

    def minimal_scopes(self, names: Iterable[str]) -> frozenset[str]:
        """The least scopes needed to use the named tools (least privilege, SE-3)."""
        out: set[str] = set()
        for n in names:
            out |= self[n].scopes
        return frozenset(out)
