"""``@tool``: a function the model may call, with its schema, scopes, deadline and breaker.

What a call of a tool guarantees (``Tool.invoke``):

- It never raises into the agent. Every outcome is a :class:`ToolResult` the
  model can read: ``ok``; ``invalid_arguments`` (what was wrong, so the model
  can correct itself); ``error`` (the tool failed permanently); ``unavailable``
  (disabled, its breaker open, its retries exhausted, or it hung past its
  timeout), which names the tool's ``alternatives`` so the model can use one or
  tell the user.
- Each attempt ends by its timeout (default 15 s, allowed 5-30 s, the checklist's
  range). An async tool is cancelled at it; a sync tool runs in a forked child
  process that is SIGKILLed at it (a stuck thread would not be a timeout). A tool
  that is retried (one without side effects, or with ``deduplicates=True``: up to
  3 attempts) ends by its attempts' timeouts plus the waits between them.
- A ``side_effect=True`` tool receives the idempotency key of the call (a
  parameter named ``idempotency_key``, hidden from the model's schema) and is
  not retried unless it declares ``deduplicates=True`` (the service dedupes on
  the key, so a retry cannot deliver twice).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

import msgspec
import pydantic

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.config import TIMEOUT_RANGES
from stalwart.errors import (
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    InvalidMessage,
    RetriesExhausted,
)
from stalwart.llm import ToolSpec
from stalwart.observe import EventBus, catalog
from stalwart.resilience import (
    DEFAULT_BREAKER,
    BreakerConfig,
    BreakerRegistry,
    Policy,
    RetryPolicy,
    classify,
    gave_up,
)
from stalwart.runtime._messages import check_json
from stalwart.tools._subprocess import run_in_child
from stalwart.tools._verifying import delivered, route, verifying

__all__ = ["Tool", "ToolResult", "ToolStatus", "tool"]

ToolStatus = Literal["ok", "error", "unavailable", "invalid_arguments", "denied"]
KEY_PARAM = "idempotency_key"
_TOOL_RETRY = RetryPolicy(max_attempts=3, base=0.2, cap=2.0)

F = TypeVar("F", bound=Callable[..., Any])


class ToolResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """The outcome of one tool call, as the model sees it (``content()``)."""

    tool: str
    status: ToolStatus
    value: Any = None
    error: str = ""
    alternatives: tuple[str, ...] = ()
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_data(self) -> dict[str, Any]:
        """This result as JSON data (for the journal)."""
        data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return data

    def content(self) -> str:
        """The JSON text put in the conversation as this call's result."""
        if self.status == "ok":
            return msgspec.json.encode(self.value).decode()
        body: dict[str, Any] = {"status": self.status, "tool": self.tool, "error": self.error}
        if self.alternatives:
            body["alternatives"] = list(self.alternatives)
        return msgspec.json.encode(body).decode()


def _check_timeout(name: str, timeout: float) -> float:
    low, high = TIMEOUT_RANGES["tool"]
    if not isinstance(timeout, int | float) or not math.isfinite(timeout):
        raise ConfigError(f"tool {name!r}: timeout must be a number of seconds")
    if not low <= timeout <= high:
        raise ConfigError(
            f"tool {name!r}: timeout {timeout:g} s is outside the allowed {low:g}-{high:g} s "
            "(the checklist's range for tool calls)"
        )
    return float(timeout)


def _arguments_model(fn: Callable[..., Any], name: str) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    hints = inspect.get_annotations(fn, eval_str=True)
    for param in inspect.signature(fn).parameters.values():
        if param.name == KEY_PARAM:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"tool {name!r}: *args/**kwargs cannot be described to a model")
        if param.name not in hints:
            raise ConfigError(f"tool {name!r}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    config = pydantic.ConfigDict(extra="forbid", strict=False)
    return pydantic.create_model(f"{name}_arguments", __config__=config, **fields)


@dataclasses.dataclass(eq=False)
class _Binding:
    breakers: BreakerRegistry | None
    policy: Policy
    degraded_since: float | None = None


@dataclasses.dataclass(eq=False)
class Tool:
    """A callable tool. Build it with :func:`tool`; see the module docstring."""

    fn: Callable[..., Any]
    name: str
    description: str
    scopes: frozenset[str]
    timeout: float = 15.0
    side_effect: bool = False
    deduplicates: bool = False
    alternatives: tuple[str, ...] = ()
    retry: RetryPolicy | None = _TOOL_RETRY
    breaker: BreakerConfig | None = DEFAULT_BREAKER
    reconcile: Callable[..., Any] | None = None
    enabled: bool = True
    double: Callable[..., Any] | None = None
    """Runs instead of ``fn`` while ``stalwart verify`` runs the app (same parameters):
    a stand-in for the real target, so verify can exercise and fault the tool without
    its real side effects (see ``stalwart.tools._verifying``)."""

    def __post_init__(self) -> None:
        self.timeout = _check_timeout(self.name, self.timeout)
        self._model = _arguments_model(self.fn, self.name)
        self._spec: ToolSpec | None = None
        self._is_async = inspect.iscoroutinefunction(self.fn)
        self._takes_key = KEY_PARAM in inspect.signature(self.fn).parameters
        if self.side_effect and not self._takes_key:
            raise ConfigError(
                f"tool {self.name!r} has side effects: give it an {KEY_PARAM!r} parameter "
                "and pass it to the service, so a retry or resume cannot deliver twice"
            )
        if self.side_effect and not self.deduplicates:
            self.retry = None  # without dedup on the key, a retry could deliver twice
        # Per breaker registry: the policy, and since when the tool is unavailable. A tool
        # object is usually a module-level singleton; keeping this state per registry lets
        # separate nodes (and tests) in one process each see their own breaker and outage.
        self._bindings: dict[int, _Binding] = {}

    @property
    def spec(self) -> ToolSpec:
        """The schema the model is shown. Built once: pydantic's ``model_json_schema()``
        costs ~8% of a short task's CPU when rebuilt for every task (issue 19's profile)."""
        if self._spec is None:
            schema = self._model.model_json_schema()
            schema.pop("title", None)
            self._spec = ToolSpec(self.name, self.description, schema)
        return self._spec

    def policy(
        self,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        breakers: BreakerRegistry | None = None,
    ) -> Policy:
        """This tool's policy; its breaker lives in ``breakers`` (default: process-wide)."""
        return self._binding(events, clock, breakers).policy

    def _binding(
        self, events: EventBus | None, clock: Clock, breakers: BreakerRegistry | None
    ) -> _Binding:
        binding = self._bindings.get(id(breakers))
        if binding is None or binding.breakers is not breakers:
            policy = Policy(
                f"tool:{self.name}",
                timeout=self.timeout,
                retry=self.retry,
                breaker=self.breaker,
                registry=breakers,
                events=events,
                clock=clock,
            )
            binding = self._bindings[id(breakers)] = _Binding(breakers, policy)
        return binding

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The arguments, checked and converted; raises InvalidMessage naming the problem."""
        if not isinstance(arguments, dict):
            raise InvalidMessage(f"arguments of {self.name!r} must be a JSON object")
        try:
            return self._model.model_validate(arguments).model_dump()
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidMessage(f"invalid arguments for {self.name!r}: {problems}") from None

    async def invoke(
        self,
        arguments: Any,
        *,
        idempotency_key: str | None = None,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        breakers: BreakerRegistry | None = None,
    ) -> ToolResult:
        """Run the tool once (with its policy) and report the outcome; never raises."""
        started = time.perf_counter()
        events = events or EventBus(log=False)

        def result(status: ToolStatus, value: Any = None, error: str = "") -> ToolResult:
            alts = self.alternatives if status == "unavailable" else ()
            catalog.TOOL_CALLS.labels(self.name, status).inc()
            self._track(status, events, clock, error, breakers)
            return ToolResult(
                self.name, status, value, error[:1000], alts, time.perf_counter() - started
            )

        if not self.enabled:
            return result("unavailable", error=f"{self.name} is disabled")
        try:
            kwargs = self.validate(arguments)
        except InvalidMessage as exc:
            return result("invalid_arguments", error=str(exc))
        if self._takes_key:
            if self.side_effect and not idempotency_key:
                return result("error", error=f"{self.name}: no idempotency key was provided")
            kwargs[KEY_PARAM] = idempotency_key
        try:
            value = await self.policy(events, clock, breakers).acall(self._call, kwargs)
            check_json(value, what=f"{self.name} result")
        except CircuitOpen:
            return result("unavailable", error=f"{self.name} is failing; its breaker is open")
        except InvalidMessage as exc:
            return result("error", error=str(exc))
        except Exception as exc:
            # retries used up, or out of time: the service is not answering (unavailable);
            # a permanent failure (a 400, a bug in the tool) is an error of this call
            gone = gave_up(exc) is not None or isinstance(
                exc, RetriesExhausted | DeadlineExceeded | TimeoutError
            )
            status: ToolStatus = "unavailable" if gone or classify(exc).retryable else "error"
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError | DeadlineExceeded):
                detail = f"no answer within {self.timeout:g} s"
            return result(status, error=f"{self.name}: {detail}")
        return result("ok", value)

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        verify = verifying()
        fn = self.fn
        if verify:
            # verify's switches are small files: read and appended in a thread, never on
            # the event loop (only while `stalwart verify` runs the app)
            fn = await asyncio.to_thread(route, self.name, self.fn, self.double, self.side_effect)
        if inspect.iscoroutinefunction(fn):
            async with asyncio.timeout(self.timeout):
                value = await fn(**kwargs)
        else:
            value = await run_in_child(fn, kwargs, self.timeout)
        if verify and self.side_effect:
            await asyncio.to_thread(delivered, self.name, kwargs.get(KEY_PARAM))
        return value

    def _track(
        self,
        status: ToolStatus,
        events: EventBus,
        clock: Clock,
        error: str,
        breakers: BreakerRegistry | None,
    ) -> None:
        binding = self._binding(events, clock, breakers)
        component = f"tool:{self.name}"
        now = clock.monotonic()
        if status == "unavailable" and binding.degraded_since is None:
            binding.degraded_since = now
            catalog.DEGRADED.labels(component).set(1)
            catalog.DEGRADATION_EVENTS.labels(component, "tool_unavailable").inc()
            events.emit(
                "degradation_started",
                component=component,
                kind="tool_unavailable",
                error=error[:300],
            )
        elif status == "ok" and binding.degraded_since is not None:
            duration = now - binding.degraded_since
            binding.degraded_since = None
            catalog.DEGRADED.labels(component).set(0)
            catalog.DEGRADATION_SECONDS.labels(component).inc(duration)
            events.emit(
                "degradation_ended",
                component=component,
                kind="tool_unavailable",
                duration_s=round(duration, 3),
            )


@overload
def tool(fn: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    scopes: Sequence[str] = (),
    timeout: float = 15.0,
    side_effect: bool = False,
    deduplicates: bool = False,
    alternatives: Sequence[str] = (),
    retry: RetryPolicy | None = _TOOL_RETRY,
    breaker: BreakerConfig | None = DEFAULT_BREAKER,
    reconcile: Callable[..., Any] | None = None,
    double: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    scopes: Sequence[str] = (),
    timeout: float = 15.0,
    side_effect: bool = False,
    deduplicates: bool = False,
    alternatives: Sequence[str] = (),
    retry: RetryPolicy | None = _TOOL_RETRY,
    breaker: BreakerConfig | None = DEFAULT_BREAKER,
    reconcile: Callable[..., Any] | None = None,
    double: Callable[..., Any] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make ``fn`` (sync or async) a :class:`Tool`. Its JSON schema comes from its type hints.

    ``scopes`` are the permissions it needs (``"orders:read"``, ``"payments:write"``);
    an agent may call it only if granted all of them. ``double`` runs instead of ``fn``
    while ``stalwart verify`` runs the app (docs/verify.md, The profile).
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        doc = inspect.getdoc(f) or ""
        return Tool(
            fn=f,
            name=name or f.__name__,
            description=description if description is not None else doc.split("\n\n")[0],
            scopes=frozenset(scopes),
            timeout=timeout,
            side_effect=side_effect,
            deduplicates=deduplicates,
            alternatives=tuple(alternatives),
            retry=retry,
            breaker=breaker,
            reconcile=reconcile,
            double=double,
        )

    return wrap(fn) if fn is not None else wrap
