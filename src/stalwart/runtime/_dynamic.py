"""A dynamic supervisor: many instances of one child spec, keyed, started on demand.

OTP's ``simple_one_for_one`` / Elixir's ``DynamicSupervisor``, for one agent
process per session or per task. The rules (tests:
``tests/integration/runtime/test_dynamic.py``):

- It starts with no children. ``start_instance(key, args)`` starts one from the
  template (registered name ``"<template id>:<key>"``); ``start_child(spec)``
  takes any worker :class:`ChildSpec`, as Elixir's does.
- Each instance is restarted on its own (``one_for_one``) by its restart type,
  and every restart counts against this supervisor's intensity; past it, the
  supervisor gives up and stops all its instances, as any supervisor.
- An instance that ends and is not restarted is removed (OTP: dynamic children
  are not kept), and so is one an operator terminates (``terminate_child``).
- ``max_children`` bounds the instances running (or restarting) at once: one
  more start raises :class:`ChildError` ``max_children``; nothing is queued.
- With ``idle_timeout``, an instance that got no message through
  :meth:`DynamicSupervisor.call` / :meth:`cast` for that long (and is handling
  none) is stopped like any child (``terminate`` runs; reason ``shutdown``).
  Its key is kept, *idle*: the next ``call``/``cast`` for it starts it again
  with the same ``args`` (a *resume*: a start, not a restart, so it costs no
  intensity). What it knew is what its ``init`` reloads (from the journal or
  its own store): the process's memory is gone. ``restart_child`` resumes an
  idle instance too; ``delete_child`` forgets it.
- Messages sent to an instance by name from elsewhere (``Runtime.call``,
  another agent's ``ctx.call``) reach it while it runs but neither count as
  activity nor resume it: route a session's messages through this supervisor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ChildError, NoProcess
from stalwart.runtime._host import ProcessHost
from stalwart.runtime._process import AgentProcess, AgentRef, ExitInfo
from stalwart.runtime._spec import AnySpec, ChildSpec, DynamicSupervisorSpec
from stalwart.runtime._supervisor import ExitCallback, Supervisor, _Child, _running

__all__ = ["DynamicSupervisor"]


class DynamicSupervisor(Supervisor):
    """A running dynamic supervisor (see the module docstring for its rules)."""

    spec: DynamicSupervisorSpec

    def __init__(
        self,
        spec: DynamicSupervisorSpec,
        host: ProcessHost,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_exit: ExitCallback | None = None,
    ) -> None:
        super().__init__(spec, host, clock=clock, on_exit=on_exit)
        self._last_active: dict[str, float] = {}
        self._busy: dict[str, int] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        if self.spec.idle_timeout is not None:
            self._sweeper = asyncio.create_task(self._sweep(), name=f"idle:{self.id}")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await super().stop()

    # -- rules that differ from a static supervisor ------------------------------------
    def _ended(self, child: _Child, info: ExitInfo) -> None:
        self._forget(child)

    def _forget(self, child: _Child) -> None:
        if child in self._children:
            self._children.remove(child)
        self._last_active.pop(child.spec.id, None)
        self._busy.pop(child.spec.id, None)

    def _active(self) -> int:
        return sum(1 for c in self._children if _running(c.current) or c.restarting)

    def _check_room(self) -> None:
        limit = self.spec.max_children
        if limit is not None and self._active() >= limit:
            raise ChildError(
                f"dynamic supervisor {self.id!r} already runs max_children={limit} instances: "
                "stop one (terminate_child) or raise max_children",
                reason="max_children",
            )

    async def _begin(self, child: _Child) -> AgentProcess:
        self._check_room()
        await self._start_child(child)
        self._last_active[child.spec.id] = self.clock.monotonic()
        assert isinstance(child.current, AgentProcess)
        return child.current

    # -- starting -----------------------------------------------------------------------
    async def start_child(self, spec: AnySpec) -> AgentProcess | Supervisor:
        """Start a worker ``spec`` as a new instance (any id; ``max_children`` applies)."""
        if not isinstance(spec, ChildSpec):
            raise ChildError(
                f"dynamic supervisor {self.id!r} runs worker processes only, "
                f"not {type(spec).__name__}",
                reason="dynamic",
            )
        async with self._lock:
            self._check_running()
            self._check_startable(spec)
            child = _Child(spec)
            proc = await self._begin(child)  # StartError: nothing is kept
            self._children.append(child)
            self.host.events.emit("child_started", supervisor=self.id, child=spec.id)
            return proc

    async def start_instance(self, key: str, args: Any = None) -> AgentRef:
        """Start the instance for ``key`` (``args``: its init args; default the template's)."""
        proc = await self.start_child(self.spec.instance(key, args))
        assert isinstance(proc, AgentProcess)
        return proc.ref

    async def terminate_child(self, child_id: str) -> None:
        """Stop the instance ``child_id`` and remove it (OTP: dynamic children are not kept)."""
        await super().terminate_child(child_id)
        async with self._lock:
            child = self._find(child_id)
            if child is not None and not _running(child.current):
                self._forget(child)

    async def restart_child(self, child_id: str) -> AgentProcess | Supervisor:
        """Start an idle instance again (a resume; see the module docstring)."""
        async with self._lock:
            self._check_running()
            child = self._existing(child_id)
            self._check_stopped(child, "restart")
            proc = await self._begin(child)
            self.host.events.emit("instance_resumed", supervisor=self.id, child=child_id)
            return proc

    async def delete_child(self, child_id: str) -> None:
        await super().delete_child(child_id)
        self._last_active.pop(child_id, None)
        self._busy.pop(child_id, None)

    # -- messages -----------------------------------------------------------------------
    async def _ensure(self, key: str) -> AgentProcess:
        name = self.spec.instance_id(key)
        child = self._find(name)
        if child is None:
            raise NoProcess(
                f"dynamic supervisor {self.id!r} has no instance {key!r}: start_instance first",
                target=name,
            )
        current = child.current
        if isinstance(current, AgentProcess) and current.state == "running":
            return current
        async with self._lock:
            self._check_running()
            child = self._existing(name)
            if isinstance(child.current, AgentProcess) and child.current.state == "running":
                return child.current
            if child.restarting:
                raise NoProcess(f"instance {key!r} is restarting", target=name)
            proc = await self._begin(child)
            self.host.events.emit("instance_resumed", supervisor=self.id, child=name)
            return proc

    async def call(self, key: str, payload: Any, *, timeout: float | None = None) -> Any:
        """Call ``key``'s instance, resuming it if it was stopped for idleness.

        Raises :class:`NoProcess` for an unknown key, :class:`ChildError`
        ``max_children`` if resuming it would exceed the limit, :class:`StartError`
        if it cannot start, and whatever :meth:`ProcessHost.call` raises.
        """
        proc = await self._ensure(key)
        name = proc.name
        self._busy[name] = self._busy.get(name, 0) + 1
        try:
            return await self.host.call(proc.ref, payload, timeout=timeout)
        finally:
            self._busy[name] -= 1
            self._last_active[name] = self.clock.monotonic()

    async def cast(self, key: str, payload: Any) -> None:
        """Cast to ``key``'s instance, resuming it if it was stopped for idleness."""
        proc = await self._ensure(key)
        self._last_active[proc.name] = self.clock.monotonic()
        self.host.cast(proc.ref, payload)

    # -- idleness -----------------------------------------------------------------------
    async def stop_idle(self) -> list[str]:
        """Stop every instance idle for ``idle_timeout`` or more; return their ids."""
        timeout = self.spec.idle_timeout
        if timeout is None or self.state != "running":
            return []
        async with self._lock:
            now = self.clock.monotonic()
            idle = [
                c
                for c in self._children
                if _running(c.current)
                and self._busy.get(c.spec.id, 0) == 0
                and now - self._last_active.get(c.spec.id, now) >= timeout
            ]
            async with asyncio.TaskGroup() as tg:
                for child in idle:
                    tg.create_task(self._stop_children([child]))
        for child in idle:
            self.host.events.emit("instance_idle_stopped", supervisor=self.id, child=child.spec.id)
        return [c.spec.id for c in idle]

    async def _sweep(self) -> None:
        timeout = self.spec.idle_timeout
        assert timeout is not None
        tick = min(timeout / 4, 1.0)
        while True:
            await self.clock.sleep(tick)
            await self.stop_idle()

    def idle_children(self) -> list[str]:
        """Ids of instances kept but not running (stopped for idleness): resumable."""
        return [c.spec.id for c in self._children if c.current is None and not c.restarting]
