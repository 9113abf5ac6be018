"""``/v1/breakers``: the node's circuit breakers, and an operator's orders for them.

- ``GET /v1/breakers`` — every breaker the node knows: its own and the ones its
  agent processes ship (``stalwart_breaker_state``), with the operator override
  in force, if any.
- ``GET /v1/breakers/{name}`` — one of them (404 if unknown).
- ``POST /v1/breakers/{name}/state`` with ``{"state": "forced_open" | "disabled" |
  "metrics_only" | "closed" | "open" | "half_open"}`` — resilience4j's manual
  transitions. ``forced_open``, ``disabled`` and ``metrics_only`` stick until
  the next order (``closed`` ends them); the order reaches every agent process
  at its next heartbeat, and breakers created later start in it. Answers 202
  with what was ordered. A mutation, so it needs the API token like every other
  one (see :mod:`stalwart.server._auth`); a name no process uses yet is allowed
  (an operator may fence a dependency before the first call).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart.errors import ConfigError
from stalwart.observe import REGISTRY, EventBus
from stalwart.resilience import BREAKERS, BreakerRegistry, BreakerState
from stalwart.server._http import BadRequest, error, json_body
from stalwart.server._http import name as _name

__all__ = ["BreakerApi", "breaker_rows"]

_BY_VALUE = {float(s.value): s for s in BreakerState}


def breaker_rows(registry: BreakerRegistry = BREAKERS) -> list[dict[str, Any]]:
    """One row per breaker: ``dependency``, ``state`` (label), ``override`` (label or None).

    States come from the ``stalwart_breaker_state`` gauge, which holds this
    process's breakers and the ones agent processes ship (the largest value any
    live process reported). Blocking (walks the metric registry): call it in a
    thread from the event loop.
    """
    registry.refresh()
    states: dict[str, BreakerState] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name != "stalwart_breaker_state":
                continue
            dependency = sample.labels.get("dependency")
            state = _BY_VALUE.get(float(sample.value))
            if dependency and state is not None:
                states[dependency] = state
    overrides = registry.overrides()
    rows = []
    for dependency in sorted(set(states) | set(overrides)):
        state = states.get(dependency, overrides.get(dependency, BreakerState.CLOSED))
        override = overrides.get(dependency)
        rows.append(
            {
                "dependency": dependency,
                "state": state.label,
                "override": override.label if override is not None else None,
            }
        )
    return rows


class BreakerApi:
    """The ``/v1/breakers`` routes, over ``registry`` (default the process-wide one)."""

    def __init__(self, events: EventBus, registry: BreakerRegistry = BREAKERS) -> None:
        self.events = events
        self.registry = registry

    def routes(self) -> list[Route]:
        return [
            Route("/v1/breakers", self.list_breakers, methods=["GET"]),
            Route("/v1/breakers/{name}", self.get_breaker, methods=["GET"]),
            Route("/v1/breakers/{name}/state", self.set_state, methods=["POST"]),
        ]

    async def list_breakers(self, _request: Request) -> Response:
        rows = await asyncio.to_thread(breaker_rows, self.registry)
        return JSONResponse({"breakers": rows})

    async def get_breaker(self, request: Request) -> Response:
        name = _name(request.path_params["name"], "breaker name")
        for row in await asyncio.to_thread(breaker_rows, self.registry):
            if row["dependency"] == name:
                return JSONResponse(row)
        return error(404, f"no circuit breaker named {name!r} on this node")

    async def set_state(self, request: Request) -> Response:
        name = _name(request.path_params["name"], "breaker name")
        assert name is not None
        body = await json_body(request)
        raw = body.get("state")
        if not isinstance(raw, str):
            raise BadRequest(
                400,
                'send {"state": "forced_open" | "disabled" | "metrics_only" | "closed" | '
                '"open" | "half_open"}',
            )
        try:
            state = BreakerState.parse(raw)
        except ConfigError as exc:
            raise BadRequest(400, str(exc)) from None
        try:
            # a file write under a lock: off the event loop
            await asyncio.to_thread(self.registry.set_override, name, state)
        except (ConfigError, OSError) as exc:
            return error(503, f"could not record the order for {name!r}: {exc}")
        self.events.emit("breaker_override", dependency=name, state=state.label)
        return JSONResponse(
            {"dependency": name, "state": state.label, "sticky": state.operator}, 202
        )
