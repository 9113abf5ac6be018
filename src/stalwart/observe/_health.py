"""Readiness checks: named, pluggable, each under its own deadline.

The node registers ``supervisor`` (root supervisor up, not shutting down); the
store and the model chains register theirs (``store``, ``model:<chain>``) when
they exist. ``/readyz`` runs them all concurrently, each bounded by
``timeout`` (3 s by default, the health kind's deadline), and answers 503 naming
every check that failed, timed out or raised.

A check registered with ``critical=False`` (the model chains') *degrades* the
node instead: while it fails, ``/readyz`` still answers 200 (the node is alive,
keeps its tasks and serves what needs no model) with ``"status": "degraded"``,
the failing check in ``degraded`` and its reason in ``checks``; the gauge
``stalwart_degraded{component=<check>}`` is 1 meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Gauge

from stalwart.observe._catalog import DEGRADED
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
    critical: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class ReadinessReport:
    """Every check's result; ``ready`` only if all passed."""

    checks: tuple[CheckResult, ...]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks if c.critical)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok and c.critical]

    @property
    def degraded(self) -> list[str]:
        """Failing checks registered with ``critical=False``."""
        return [c.name for c in self.checks if not c.ok and not c.critical]

    @property
    def status(self) -> str:
        """``ready``, ``degraded`` (ready, with non-critical checks failing) or ``not_ready``."""
        if not self.ready:
            return "not_ready"
        return "degraded" if self.degraded else "ready"

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "status": self.status,
            "failed": self.failed,
            "degraded": self.degraded,
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
        self._soft: set[str] = set()
        self._failing_since: float | None = None

    def add(self, name: str, check: CheckFn, *, critical: bool = True) -> None:
        """Register (or replace) the check called ``name``; a failing non-``critical``
        check degrades the node instead of making it not ready."""
        self._checks[name] = check
        if critical:
            self._soft.discard(name)
        else:
            self._soft.add(name)

    def remove(self, name: str) -> None:
        """Unregister the check called ``name`` (and drop its gauge)."""
        self._checks.pop(name, None)
        self._soft.discard(name)
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
            if not r.critical:
                DEGRADED.labels(r.name).set(0 if r.ok else 1)
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
        result = await self._run_one(name, fn)
        if name in self._soft:
            return dataclasses.replace(result, critical=False)
        return result

    async def _run_one(self, name: str, fn: CheckFn) -> CheckResult:
        started = time.monotonic()
        timer = asyncio.timeout(self.timeout)
        try:
            async with timer:
                value = fn()
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            if isinstance(exc, TimeoutError) and timer.expired():
                return CheckResult(
                    name, False, f"no answer within {self.timeout:g} s", time.monotonic() - started
                )
            return CheckResult(
                name, False, f"{type(exc).__name__}: {exc}"[:500], time.monotonic() - started
            )
        took = time.monotonic() - started
        if value is None or value is True:
            return CheckResult(name, True, "ok", took)
        if value is False:
            return CheckResult(name, False, "check returned false", took)
        return CheckResult(name, False, str(value)[:500], took)
