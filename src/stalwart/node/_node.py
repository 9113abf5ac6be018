from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.config import RuntimeSettings
from stalwart.errors import ConfigError, StartError
from stalwart.observe import EventBus, Readiness, catalog, log_context
from stalwart.resilience import share_overrides
from stalwart.runtime import AgentRef, Runtime, SupervisorSpec

__all__ = ["Node", "NodeService"]

EXIT_OK = 0
EXIT_ROOT_GAVE_UP = 1
EXIT_START_FAILED = 2


class NodeService(Protocol):
    """Something that runs beside the tree for the node's lifetime (the HTTP server…).

    ``start`` runs before the tree starts (so probes answer during startup) and
    may raise to make the node exit 2; ``stop`` runs after the tree has stopped
    and must return within a few seconds.
    """

    async def start(self, node: Node) -> None: ...

    async def stop(self) -> None: ...


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stalwart")
    except PackageNotFoundError:
        return "unknown"


_RUNNING: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
"""The stop events of the nodes running on each loop. SIGTERM/SIGINT stop them all: one
handler per loop, installed by the first node and removed by the last, so a node that
ends (a load run's node inside ``stalwart verify``) leaves the others' handler in place."""


def _stop_all(loop: asyncio.AbstractEventLoop) -> None:
    for stop in _RUNNING.get(loop, ()):
        stop.set()


def _watch_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    running = _RUNNING.setdefault(loop, [])
    if not running:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop_all, loop)
    running.append(stop)


def _unwatch_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    running = _RUNNING.get(loop, [])
    if stop in running:
        running.remove(stop)
    if not running:
        _RUNNING.pop(loop, None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class Node:
    """One stalwart node: the root supervisor of its agents, and its lifecycle.

    ``run()`` starts the tree, serves until told to stop (SIGTERM, SIGINT, or
    the ``until`` awaitable finishing) and returns the process exit code:

    - ``0`` after a graceful stop (children stopped in reverse order);
    - ``1`` when the root supervisor gave up (restart intensity exceeded): the
      node stops being ready at once, so an orchestrator restarts it;
    - ``2`` when the tree (or one of its ``services``) could not start.

    ``readiness`` holds the checks ``/readyz`` runs: ``supervisor`` is built in
    (root supervisor running, node not shutting down); the store and model
    chains add theirs. ``services`` start before the tree and stop after it.
    """

    def __init__(
        self,
        root: SupervisorSpec,
        settings: RuntimeSettings | None = None,
        *,
        node_id: str | None = None,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        preload: Sequence[str] = (),
        services: Sequence[NodeService] = (),
    ) -> None:
        self.id = node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.events = events or EventBus()
        # before the fork server starts: every agent process inherits the override file's path
        self.breaker_overrides = share_overrides()
        self.runtime = Runtime(root, settings, events=self.events, clock=clock, preload=preload)
        self.clock = clock
        self.services = tuple(services)
        self._stopping = False
        self._started = False
        self.tasks: Any = None
        """The task API of the app this node runs (set by its app service when it starts;
        the HTTP API's ``/v1/tasks`` and ``/v1/approvals`` reach the app through it)."""
        self.cluster_view: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None
        """The nodes sharing this node's store, for ``/v1/cluster`` (set by its app)."""
        self.readiness = Readiness(timeout=self.runtime.settings.timeouts.health)
        self.readiness.add("supervisor", self._supervisor_check)

    def _supervisor_check(self) -> bool | str:
        if self._stopping:
            return "the node is shutting down"
        if not self._started:
            return "the supervision tree is starting"
        if self.runtime.root is not None and self.runtime.root.state == "gave_up":
            return "the root supervisor gave up (restart intensity exceeded)"
        return self.ready or "the root supervisor is not running"

    @property
    def ready(self) -> bool:
        """True while the root supervisor runs and the node is not shutting down."""
        return self.runtime.ready and not self._stopping

    async def call(
        self, target: str | AgentRef, payload: Any, *, timeout: float | None = None
    ) -> Any:
        return await self.runtime.call(target, payload, timeout=timeout)

    def cast(self, target: str | AgentRef, payload: Any) -> None:
        self.runtime.cast(target, payload)

    async def submit(self, agent: str, task_input: Any, **options: Any) -> str:
        """Store a task for ``agent`` of this node's app; returns its id (durable on return)."""
        return str(await self._app_tasks().submit(agent, task_input, **options))

    async def result(self, task_id: str, *, timeout: float) -> Any:
        """The finished task record; :class:`DeadlineExceeded` if not done by ``timeout``."""
        return await self._app_tasks().wait(task_id, timeout=timeout)

    def _app_tasks(self) -> Any:
        if self.tasks is None:
            raise ConfigError(
                "this node runs no app: submit tasks to a node built with app_node(), once it runs"
            )
        return self.tasks

    async def run(self, until: Awaitable[Any] | None = None) -> int:
        """Serve until stopped (SIGTERM/SIGINT), the root supervisor gives up, or
        ``until`` ends; returns the exit code. If ``until`` raised, the node still stops
        in order, then the exception propagates (a failure is never reported as 0)."""
        # every line the node logs, and every agent line it ingests, names the node: in a
        # cluster the shared log store is searched across nodes
        with log_context(node=self.id):
            return await self._run(until)

    async def _run(self, until: Awaitable[Any] | None) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        _watch_signals(loop, stop)
        started: list[NodeService] = []
        try:
            try:
                for service in self.services:
                    await service.start(self)
                    started.append(service)
                await self.runtime.start()
            except (StartError, OSError) as exc:
                self.events.emit("node_start_failed", node=self.id, error=str(exc))
                return EXIT_START_FAILED
            self._started = True
            self.events.emit("node_started", node=self.id, pid=os.getpid())
            catalog.NODE_INFO.labels(self.id, _version()).set(1)
            waiters: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(stop.wait()),
                self.runtime.failed,
            ]
            until_done: asyncio.Future[Any] | None = None
            if until is not None:
                until_done = asyncio.ensure_future(until)
                waiters.append(until_done)
            # no-deadline: a node serves until it is told to stop or its root gives up
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            gave_up = self.runtime.failed.done()
            self._stopping = True
            for w in waiters:
                if w is not self.runtime.failed:
                    w.cancel()
            await self.runtime.stop()
            code = EXIT_ROOT_GAVE_UP if gave_up else EXIT_OK
            self.events.emit("node_stopped", node=self.id, exit_code=code)
            if until_done is not None and until_done.done() and not until_done.cancelled():
                failure = until_done.exception()
                if failure is not None:  # what the node ran until failed: say so, not "ok"
                    raise failure
            return code
        finally:
            self._stopping = True
            for service in reversed(started):
                try:
                    async with asyncio.timeout(10.0):
                        await service.stop()
                except (Exception, TimeoutError) as exc:
                    self.events.emit("node_service_stop_failed", node=self.id, error=repr(exc))
            _unwatch_signals(loop, stop)
