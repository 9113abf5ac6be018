"""Supervisors, with the semantics of OTP's ``supervisor`` behaviour.

A supervisor starts, watches and restarts its children: agent processes
(:class:`ChildSpec`) and other supervisors (:class:`SupervisorSpec`). The rules,
stated before the code and each covered by a test in
``tests/unit/runtime/test_supervisor.py``:

Start
    Children start one by one in the order given; ``start`` returns when all
    have reported ready. If one fails to start, the ones already started are
    stopped in reverse order and the supervisor's start fails with
    :class:`StartError`.

Restart types (what happens when a child terminates on its own)
    ``permanent``: always restarted. ``transient``: restarted only if it
    terminated abnormally (a non-zero exit code, a signal, killed as hung or
    over its memory limit); exit code 0 is normal. ``temporary``: never
    restarted, and removed from the supervisor; it is not restarted even when a
    sibling's failure makes the strategy stop it.

Strategies (what is restarted)
    ``one_for_one``: only the terminated child. ``one_for_all``: all other
    children are stopped (in reverse start order), then all are started again
    (in start order). ``rest_for_one``: the children started after the
    terminated one are stopped (reverse order), then it and they are started
    again (in order).

Restart intensity
    At most ``intensity`` restarts in any ``period`` seconds (default 5 in 60).
    One failure costs one restart, whatever the strategy restarts with it; a
    restart that itself fails to start costs another. When a restart would
    exceed the intensity, the supervisor *gives up*: it stops all its children
    in reverse start order and terminates with reason ``gave_up``. Its parent
    handles that like any child termination (so escalation climbs the tree).
    When the root supervisor gives up, the node becomes not-ready and exits
    non-zero, so the orchestrator restarts it.

Stop
    Children are stopped in reverse start order. Each gets its ``shutdown``:
    it is asked to stop (its ``terminate`` runs) and killed with SIGKILL if it
    has not exited within that many seconds; ``brutal_kill`` kills at once. A
    child supervisor stops its own subtree the same way, bounded by its own
    ``shutdown``. A child stopped by its supervisor is never restarted.

Events
    Every start (``agent_started``), exit (``agent_exited``, with reason, exit
    code or signal), restart (``agent_restarted``, with the latency from the
    exit to the new process being ready) and give-up (``supervisor_gave_up``)
    is a structured event on the node's bus.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import StartError
from stalwart.runtime import _metrics as m
from stalwart.runtime._host import AgentProcess, ExitInfo, ProcessHost
from stalwart.runtime._intensity import RestartIntensity
from stalwart.runtime._spec import ChildSpec, SupervisorSpec

__all__ = ["ChildInfo", "Supervisor"]

ExitCallback = Callable[["Supervisor", ExitInfo], None]


@dataclasses.dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`."""

    id: str
    type: str  # "worker" | "supervisor"
    pid: int | None
    running: bool
    restarts: int


@dataclasses.dataclass(slots=True, eq=False)
class _Child:
    spec: ChildSpec | SupervisorSpec
    current: AgentProcess | Supervisor | None = None
    restarts: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Exited:
    child_id: str
    token: object  # the AgentProcess or Supervisor that ended (stale ones are ignored)
    info: ExitInfo
    detected_at: float


class Supervisor:
    """A running supervisor (see the module docstring for its rules)."""

    def __init__(
        self,
        spec: SupervisorSpec,
        host: ProcessHost,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_exit: ExitCallback | None = None,
    ) -> None:
        self.spec = spec
        self.host = host
        self.clock = clock
        self._on_exit = on_exit
        self._children = [_Child(c) for c in spec.children]
        self._intensity = RestartIntensity(spec.intensity, spec.period, clock)
        self._queue: asyncio.Queue[_Exited] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None
        self.state = "new"  # new -> running -> stopped | gave_up
        self.stop_requested = False
        self.gave_up = asyncio.get_running_loop().create_future()

    @property
    def id(self) -> str:
        return self.spec.id

    # -- start ----------------------------------------------------------------------
    async def start(self) -> None:
        started: list[_Child] = []
        for child in self._children:
            try:
                await self._start_child(child)
            except StartError as exc:
                await self._stop_children(reversed(started))
                self.state = "stopped"
                raise StartError(
                    f"supervisor {self.id!r} could not start child {child.spec.id!r}: {exc}"
                ) from exc
            started.append(child)
        self.state = "running"
        self._loop_task = asyncio.create_task(self._loop(), name=f"supervisor:{self.id}")

    async def _start_child(self, child: _Child) -> None:
        spec = child.spec
        if isinstance(spec, SupervisorSpec):
            sup = Supervisor(spec, self.host, clock=self.clock, on_exit=self._child_sup_exited)
            await sup.start()
            child.current = sup
        else:
            child.current = await self.host.spawn(spec, self._child_proc_exited)

    # -- exits --------------------------------------------------------------------------
    def _child_proc_exited(self, proc: AgentProcess, info: ExitInfo) -> None:
        self._queue.put_nowait(_Exited(proc.name, proc, info, time.monotonic()))

    def _child_sup_exited(self, sup: Supervisor, info: ExitInfo) -> None:
        self._queue.put_nowait(_Exited(sup.id, sup, info, time.monotonic()))

    async def _loop(self) -> None:
        while True:
            # no-deadline: a supervisor waits for its children's exits for as long as it runs
            exited = await self._queue.get()
            if self.state != "running":
                return
            await self._handle(exited)

    async def _handle(self, exited: _Exited) -> None:
        child = next((c for c in self._children if c.spec.id == exited.child_id), None)
        if child is None or child.current is not exited.token:
            return  # stale: that incarnation was already replaced or removed
        child.current = None
        restart = child.spec.restart
        if restart == "temporary":
            self._children.remove(child)
            return
        if restart == "transient" and exited.info.normal:
            return
        await self._restart(child, exited)

    async def _restart(self, failed: _Child, exited: _Exited) -> None:
        if not self._intensity.record():
            await self._give_up(failed, exited.info)
            return
        index = self._children.index(failed)
        strategy = self.spec.strategy
        if strategy == "one_for_one":
            group = [failed]
        elif strategy == "one_for_all":
            group = list(self._children)
        else:
            group = self._children[index:]
        others = [c for c in group if c is not failed]
        await self._stop_children(reversed(others))
        for child in others:
            if child.spec.restart == "temporary":
                self._children.remove(child)
        group = [c for c in group if c in self._children]
        for child in group:
            while True:
                try:
                    await self._start_child(child)
                    break
                except StartError as exc:
                    self.host.events.emit(
                        "agent_restart_failed",
                        supervisor=self.id,
                        agent=child.spec.id,
                        error=str(exc),
                    )
                    if not self._intensity.record():
                        await self._give_up(child, exited.info)
                        return
            child.restarts += 1
            m.AGENT_RESTARTS.labels(child.spec.id).inc()
            current = child.current
            self.host.events.emit(
                "agent_restarted",
                supervisor=self.id,
                agent=child.spec.id,
                strategy=strategy,
                cause=failed.spec.id,
                reason=exited.info.reason,
                pid=current.pid if isinstance(current, AgentProcess) else None,
                restart_ms=round((time.monotonic() - exited.detected_at) * 1000, 3),
            )

    async def _give_up(self, child: _Child, info: ExitInfo) -> None:
        self.state = "gave_up"
        m.SUPERVISOR_GIVE_UPS.labels(self.id).inc()
        self.host.events.emit(
            "supervisor_gave_up",
            supervisor=self.id,
            child=child.spec.id,
            reason=info.reason,
            intensity=self.spec.intensity,
            period_s=self.spec.period,
        )
        await self._stop_children(reversed(self._children))
        if not self.gave_up.done():
            self.gave_up.set_result(None)
        if self._on_exit is not None and not self.stop_requested:
            self._on_exit(self, ExitInfo(self.id, 0, 0, None, None, "gave_up"))

    # -- stop -----------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop every child in reverse start order (each bounded by its shutdown)."""
        self.stop_requested = True
        if self.state == "running":
            self.state = "stopped"
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._stop_children(reversed(self._children))

    async def _stop_children(self, children: object) -> None:
        assert hasattr(children, "__iter__")
        for child in list(children):
            current, child.current = child.current, None
            if isinstance(current, AgentProcess):
                await self.host.terminate(current, child.spec.shutdown)
            elif isinstance(current, Supervisor):
                await current._stop_bounded()

    async def _stop_bounded(self) -> None:
        shutdown = self.spec.shutdown
        if shutdown == "brutal_kill":
            self._kill_subtree()
            await self.stop()
            return
        try:
            async with asyncio.timeout(float(shutdown)):
                await self.stop()
        except TimeoutError:
            self.host.events.emit("supervisor_shutdown_timeout", supervisor=self.id)
            self._kill_subtree()
            await self.stop()

    def _kill_subtree(self) -> None:
        for child in self._children:
            if isinstance(child.current, AgentProcess):
                self.host.kill(child.current, "shutdown")
            elif isinstance(child.current, Supervisor):
                child.current._kill_subtree()

    # -- inspection -----------------------------------------------------------------------
    def which_children(self) -> list[ChildInfo]:
        out = []
        for child in self._children:
            cur = child.current
            if isinstance(cur, Supervisor):
                out.append(
                    ChildInfo(
                        child.spec.id, "supervisor", None, cur.state == "running", child.restarts
                    )
                )
            else:
                running = cur is not None and cur.state == "running"
                pid = cur.pid if cur is not None else None
                out.append(ChildInfo(child.spec.id, "worker", pid, running, child.restarts))
        return out

    def child(self, child_id: str) -> Supervisor | AgentProcess | None:
        """The running child supervisor or process with this id, if any."""
        for child in self._children:
            if child.spec.id == child_id:
                return child.current
        return None
