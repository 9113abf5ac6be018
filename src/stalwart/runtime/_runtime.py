from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.config import RuntimeSettings
from stalwart.errors import ConfigError
from stalwart.observe import EventBus
from stalwart.runtime._dynamic import DynamicSupervisor
from stalwart.runtime._host import ProcessHost
from stalwart.runtime._process import AgentProcess, AgentRef
from stalwart.runtime._spec import SupervisorSpec, iter_specs
from stalwart.runtime._supervisor import Supervisor

__all__ = ["Runtime"]


class Runtime:
    """A supervision tree of agent processes, with message passing between them.

    Use it as an async context manager; leaving the block stops every child in
    order and the fork server::

        async with Runtime(SupervisorSpec("root", [ChildSpec("echo", Echo)])) as rt:
            print(await rt.call("echo", {"hi": 1}, timeout=2.0))

    ``failed`` completes when the root supervisor gives up (restart intensity
    exceeded): the runtime is then not ready, and a node exits non-zero.
    """

    def __init__(
        self,
        root: SupervisorSpec,
        settings: RuntimeSettings | None = None,
        *,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        preload: Sequence[str] = (),
    ) -> None:
        names = [s.id for s in iter_specs(root)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(
                f"ids must be unique across the supervision tree (they are registered "
                f"names); duplicated: {duplicates}"
            )
        self.root_spec = root
        self.settings = settings or RuntimeSettings()
        self.events = events or EventBus()
        self.clock = clock
        self.host = ProcessHost(self.settings, self.events, preload=preload)
        self.root: Supervisor | None = None

    async def start(self) -> None:
        await self.host.start()
        try:
            self.root = Supervisor(self.root_spec, self.host, clock=self.clock)
            await self.root.start()
        except BaseException:
            await self.host.close()
            raise

    async def stop(self) -> None:
        """Stop the tree in reverse start order, then the fork server. Bounded."""
        if self.root is not None:
            await self.root._stop_bounded()
        await self.host.close()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def failed(self) -> asyncio.Future[None]:
        """Done when the root supervisor has given up."""
        assert self.root is not None, "Runtime.start() first"
        return self.root.gave_up

    @property
    def ready(self) -> bool:
        return self.root is not None and self.root.state == "running"

    async def call(
        self, target: str | AgentRef, payload: Any, *, timeout: float | None = None
    ) -> Any:
        """Call an agent by registered name or ref; see :meth:`ProcessHost.call`."""
        return await self.host.call(target, payload, timeout=timeout)

    async def sync(self, target: str | AgentRef, *, timeout: float) -> None:
        """Wait until the node has handled every frame ``target`` sent before it read
        this request; see :meth:`ProcessHost.sync`."""
        await self.host.sync(target, timeout=timeout)

    def cast(self, target: str | AgentRef, payload: Any) -> None:
        self.host.cast(target, payload)

    def whereis(self, name: str) -> AgentRef | None:
        return self.host.whereis(name)

    def process(self, name: str | AgentRef) -> AgentProcess:
        return self.host.process(name)

    def supervisor(self, supervisor_id: str) -> Supervisor:
        """The running supervisor with this id (the root, or a nested one)."""
        assert self.root is not None
        stack: list[Supervisor] = [self.root]
        while stack:
            sup = stack.pop()
            if sup.id == supervisor_id:
                return sup
            stack.extend(
                c
                for c in (sup.child(ci.id) for ci in sup.which_children())
                if isinstance(c, Supervisor)
            )
        raise KeyError(f"no running supervisor {supervisor_id!r}")

    def dynamic_supervisor(self, supervisor_id: str) -> DynamicSupervisor:
        """The running dynamic supervisor with this id (KeyError if there is none)."""
        sup = self.supervisor(supervisor_id)
        if not isinstance(sup, DynamicSupervisor):
            raise KeyError(f"supervisor {supervisor_id!r} is not a dynamic supervisor")
        return sup

    def supervisors(self) -> list[Supervisor]:
        """Every running supervisor of the tree, the root first, depth first."""
        if self.root is None:
            return []
        out: list[Supervisor] = []
        stack: list[Supervisor] = [self.root]
        while stack:
            sup = stack.pop(0)
            out.append(sup)
            stack[:0] = [
                c
                for c in (sup.child(ci.id) for ci in sup.which_children())
                if isinstance(c, Supervisor)
            ]
        return out
