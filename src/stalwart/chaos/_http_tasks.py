"""The node's task API over HTTP, as the load driver uses it (``submit`` and ``get``).

``stalwart load`` drives a node the way its users do: ``POST /v1/tasks`` and
``GET /v1/tasks/{id}``. The answers map back onto stalwart's errors, so the
driver counts a refusal the same whichever way it came: 429 is
:class:`~stalwart.errors.Overloaded` (with the server's ``Retry-After``), 400
:class:`~stalwart.errors.InputRejected`, 503
:class:`~stalwart.errors.StoreUnavailable`.

A submission whose answer is lost (a timeout or a dropped connection after the
request went out) may still have been stored: it is looked up by its id before
it is called refused, so a task the node holds is never counted as never sent.
"""

from __future__ import annotations

from typing import Any

import httpx

from stalwart.durable import TaskRecord
from stalwart.errors import (
    ConfigError,
    InputRejected,
    Overloaded,
    StalwartError,
    StoreUnavailable,
)
from stalwart.llm import AsyncioTransport

__all__ = ["HttpTasks"]


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:300]


def _record(view: dict[str, Any]) -> TaskRecord:
    """A task view of the API as the store's record type (lease fields are not shown)."""
    return TaskRecord(
        id=str(view["id"]),
        agent=str(view["agent"]),
        input=view.get("input"),
        status=view["status"],
        seed=int(view.get("seed") or 0),
        attempts=int(view.get("attempts") or 0),
        lease_owner=view.get("owner"),
        lease_token=0,
        lease_expires=None,
        outcome=view.get("outcome"),
        created_at=float(view["created_at"]),
        updated_at=float(view.get("updated_at") or view["created_at"]),
        finished_at=None if view.get("finished_at") is None else float(view["finished_at"]),
    )


class HttpTasks:
    """``submit`` / ``get`` against a node's HTTP API at ``base_url``."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        # one pooled client for the whole run: a load test measures the node, not TLS
        # or connection setup; the transport makes no retries (a refusal is data here).
        # The transport is stalwart's (the model clients'), not httpx's: httpcore's pool
        # scans every connection (a socket poll each) per request, and with 256 of them a
        # 3x level's arrival process spent 7 s of CPU on 1,100 submissions and fell behind
        # its schedule on a busy machine (CI, 2026-12-07: 81 sent/s of 132 asked)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            # an open loop's submissions must reach the node, not queue in this pool: with
            # 64 connections held by answers near the client's timeout, later submissions
            # waited here past it (PoolTimeout) and counted as the node's errors though
            # they never reached it; 256 stays well inside a default limit of 1,024 fds
            transport=AsyncioTransport(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, agent: str, task_input: Any, *, task_id: str | None = None, seed: int | None = None
    ) -> str:
        """Submit a task; its id once the node has stored it (see the module docstring)."""
        body: dict[str, Any] = {"agent": agent, "input": task_input}
        if task_id is not None:
            body["task_id"] = task_id
        if seed is not None:
            body["seed"] = seed
        try:
            response = await self._http.post("/v1/tasks", json=body)
        except httpx.ConnectError as exc:  # never reached the node: nothing was stored
            raise StoreUnavailable(
                f"the node's API at {self.base_url} is unreachable: {exc}"
            ) from None
        except httpx.TransportError as exc:
            if task_id is not None and await self._exists(task_id):
                return task_id
            raise StoreUnavailable(
                f"the node's API at {self.base_url} did not answer the submission of "
                f"{task_id!r} and does not hold it: {type(exc).__name__}"
            ) from None
        if response.status_code in (200, 201, 202):
            return str(response.json()["id"])
        text = _error_text(response)
        if response.status_code == 429:
            raw = response.headers.get("retry-after")
            retry_after = float(raw) if raw and raw.replace(".", "", 1).isdigit() else None
            raise Overloaded(text, retry_after=retry_after)
        if response.status_code == 400:
            raise InputRejected(text)
        if response.status_code in (401, 403, 404):
            raise ConfigError(f"POST /v1/tasks: {response.status_code}: {text}")
        if response.status_code == 503:
            raise StoreUnavailable(text)
        raise StalwartError(f"POST /v1/tasks: {response.status_code}: {text}")

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None if the node has no such task."""
        try:
            response = await self._http.get(f"/v1/tasks/{task_id}")
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the node's API at {self.base_url}: {exc!r}") from None
        if response.status_code == 404:
            return None
        if response.status_code == 503:
            raise StoreUnavailable(_error_text(response))
        if response.status_code != 200:
            raise StalwartError(f"GET /v1/tasks/{task_id}: {response.status_code}")
        return _record(response.json())

    async def _exists(self, task_id: str) -> bool:
        try:
            return await self.get(task_id) is not None
        except StalwartError:
            return False
