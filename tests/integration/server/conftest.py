"""Real nodes with their HTTP server on a loopback port, and a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests._loopback import serving

from stalwart.config import RuntimeSettings
from stalwart.node import Node
from stalwart.observe import EventBus, catalog
from stalwart.runtime import SupervisorSpec
from stalwart.server import ObservabilityService, ServerSettings
from stalwart.testing import EventWaiter


@pytest.fixture(autouse=True)
def _fresh_budget_gauge() -> None:
    """The budget gauge lives in this process's registry, as the node's own series do:
    ratios other tests left behind (the guard suite spends budgets in-process) would
    read as this node's and keep BudgetLimit firing."""

    catalog.BUDGET_USED_RATIO.clear()


# start_timeout: the default (30 s). It bounds the fork server's start too, which took
# more than 10 s under two CPU hogs ("the fork server did not start within 10 s").
# Heartbeats five times a second (the memory alerts see agents' memory at once), but an
# agent is hung only after 2 s of silence: at 0.3 s (1.5 intervals) a Hog filling 50 MiB
# on a loaded CI machine was killed as hung mid-call ("exited before replying").
FAST = RuntimeSettings(heartbeat_interval=0.2, hang_after_missed=10)
TOKEN = "test-token-0123456789abcdef"


class RunningNode:
    def __init__(
        self,
        node: Node,
        service: ObservabilityService,
        waiter: EventWaiter,
        task: asyncio.Task[int],
        stop: asyncio.Future[None],
    ) -> None:
        self.node, self.service, self.waiter, self.task, self._stop = (
            node,
            service,
            waiter,
            task,
            stop,
        )
        token = service.settings.api_token
        auth = {"Authorization": f"Bearer {TOKEN}"} if token == TOKEN else {}
        self.client = httpx.AsyncClient(base_url=service.url, timeout=10.0, headers=auth)
        """Sends the API token (every non-public path needs it)."""
        self.anon = httpx.AsyncClient(base_url=service.url, timeout=10.0)
        """Sends no credentials."""

    @property
    def url(self) -> str:
        return self.service.url

    async def close(self) -> int:
        await self.client.aclose()
        await self.anon.aclose()
        if not self._stop.done():
            self._stop.set_result(None)
        async with asyncio.timeout(30):
            return await self.task


@pytest.fixture
async def start_node(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process nodes with an ObservabilityService on 127.0.0.1:0; all stopped after."""
    started: list[RunningNode] = []

    async def make(root: SupervisorSpec | Node, **settings: Any) -> RunningNode:
        """``root``: a tree to run on a new node, or a node (e.g. from ``app_node``) to which
        the service is added; ``settings`` are ServerSettings fields, plus ``rules``,
        ``notifiers`` and ``secrets`` for the service."""
        rules = settings.pop("rules", None)
        notifiers = settings.pop("notifiers", ())
        secrets = settings.pop("secrets", None)
        base: dict[str, Any] = {"port": 0, "api_token": TOKEN, "log_db": str(tmp_path / "logs.db")}
        service = ObservabilityService(
            ServerSettings(**(base | settings)), rules=rules, notifiers=notifiers, secrets=secrets
        )
        if isinstance(root, Node):
            node = root
            node.services = (*node.services, service)
            bus = node.events
        else:
            bus = EventBus(log=False)
            node = Node(root, FAST, events=bus, services=[service])
        waiter = EventWaiter(bus)
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(node.run(until=stop))
        done, _ = await asyncio.wait(
            [task, asyncio.ensure_future(waiter.wait("node_started", timeout=20))],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            raise RuntimeError(f"node exited during start with {task.result()}")
        running = RunningNode(node, service, waiter, task, stop)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        with contextlib.suppress(Exception):
            await running.close()


class Receiver:
    """A loopback HTTP receiver recording every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self._cond = asyncio.Condition()
        self.url = ""

    async def _post(self, request: Request) -> JSONResponse:
        self.bodies.append(await request.json())
        async with self._cond:
            self._cond.notify_all()
        return JSONResponse({"ok": True})

    async def wait_for(self, pred: Callable[[list[Any]], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: pred(self.bodies))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/{path:path}", rec._post, methods=["POST"])])
    async with serving(app) as url:
        rec.url = f"{url}/hook"
        yield rec
