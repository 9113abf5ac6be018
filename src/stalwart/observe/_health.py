"""Readiness checks: named, pluggable, each under its own deadline.

The node registers ``supervisor`` (root supervisor up, not shutting down); the
store and the model chains register theirs (``store``, ``model:<chain>``) when
they exist. ``/readyz`` runs them all concurrently, each bounded by
``timeout`` (3 s by default, the health kind's deadline), and answers 503 naming
every check that failed, timed out or raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Gauge

from stalwart.observe._metrics import REGISTRY

__all__ = ["CheckResult", "Readiness", "ReadinessReport"]

CheckFn = Callable[[], "bool | str | Awaitable[bool | str | None] | None"]
"""A check returns True/None when fine, False or a reason string when not, or raises."""

READY = Gauge("stalwart_ready", "1 while every readiness check passes", registry=REGISTRY)
CHECK_OK = Gauge(
    "stalwart_readiness_check_ok", "1 while this readiness check passes", ["check"],
    registry=REGISTRY,
)  # fmt: skip
NOT_READY_SECONDS = Gauge(
    "stalwart_not_ready_seconds",
    "Seconds readiness has been failing without a break (0 while ready)",
    registry=REGISTRY,
)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: ``ok``, why not (``detail``) and how long it took."""

    name: str
    ok: bool
    detail: str
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class ReadinessReport:
    """Every check's result; ``ready`` only if all passed."""

    checks: tuple[CheckResult, ...]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "failed": self.failed,
            "checks": {
                c.name: {"ok": c.ok, "detail": c.detail, "ms": round(c.seconds * 1000, 1)}
                for c in self.checks
            },
        }


class Readiness:
    """A registry of readiness checks (see the module docstring)."""

    def __init__(self, *, timeout: float = 3.0) -> None:
        self.timeout = timeout
        self._checks: dict[str, CheckFn] = {}
        self._failing_since: float | None = None

    def add(self, name: str, check: CheckFn) -> None:
        """Register (or replace) the check called ``name``."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        """Unregister the check called ``name`` (and drop its gauge)."""
        self._checks.pop(name, None)
        with contextlib.suppress(KeyError):
            CHECK_OK.remove(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._checks)

    async def run(self) -> ReadinessReport:
        """Run every check concurrently, each under ``timeout``; update the gauges."""
        results = await asyncio.gather(
            *(self._one(name, fn) for name, fn in sorted(self._checks.items()))
        )
        report = ReadinessReport(tuple(results))
        for r in results:
            CHECK_OK.labels(r.name).set(1 if r.ok else 0)
        now = time.monotonic()
        if report.ready:
            self._failing_since = None
            READY.set(1)
            NOT_READY_SECONDS.set(0)
        else:
            if self._failing_since is None:
                self._failing_since = now
            READY.set(0)
            NOT_READY_SECONDS.set(now - self._failing_since)
        return report

    async def _one(self, name: str, fn: CheckFn) -> CheckResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                value = fn()
                if inspect.isawaitable(value):
                    value = await value
        except TimeoutError:
            return CheckResult(
                name, False, f"no answer within {self.timeout:g} s", time.monotonic() - started
            )
        except Exception as exc:
            return CheckResult(
                name, False, f"{type(exc).__name__}: {exc}"[:500], time.monotonic() - started
            )
        took = time.monotonic() - started
        if value is None or value is True:
            return CheckResult(name, True, "ok", took)
        if value is False:
            return CheckResult(name, False, "check returned false", took)
        return CheckResult(name, False, str(value)[:500], took)
