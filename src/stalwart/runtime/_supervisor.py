"""Supervisors, with the semantics of OTP's ``supervisor`` behaviour.

A supervisor starts, watches and restarts its children: agent processes
(:class:`ChildSpec`), other supervisors (:class:`SupervisorSpec`) and dynamic
supervisors (:class:`DynamicSupervisorSpec`, see ``_dynamic.py``). The rules,
stated before the code; ``docs/runtime.md`` sets them beside OTP's and names
every difference. Tests: ``tests/integration/runtime/test_supervisor.py`` and
``test_child_api.py`` (real processes), ``tests/unit/runtime/test_supervisor_model.py``
(a state machine against a reference model of these rules).

Start
    Children start one by one in the order given; ``start`` returns when all
    have reported ready. If one fails to start, the ones already started are
    stopped in reverse order and the supervisor's start fails with
    :class:`StartError`.

Restart types (what happens when a child terminates on its own)
    ``permanent``: always restarted. ``transient``: restarted only after an
    abnormal exit; the normal exits are ``normal`` (exit code 0) and
    ``shutdown`` (it raised :class:`stalwart.errors.Shutdown` -- with a text, OTP's
    ``{shutdown, Reason}`` -- or a SIGTERM from outside ended it).
    ``temporary``: never restarted, and its spec is removed when it ends (also
    when a sibling's failure makes the strategy stop it, and when an operator
    terminates it).

Strategies (what is restarted)
    ``one_for_one``: only the terminated child. ``one_for_all``: all other
    children are stopped (in reverse start order), then all are started again
    (in start order). ``rest_for_one``: the children started after the
    terminated one are stopped (reverse order), then it and they are started
    again (in order). As in OTP, a group restart starts every member with a
    spec, including one an operator terminated or a transient one that had
    ended normally.

A restart that fails to start (its ``init`` raised, no ready in time)
    The child is marked ``restarting``. Under ``one_for_all`` the members of
    the group started in this attempt are stopped again (reverse order), so no
    part of the group runs alone; under ``rest_for_one`` the children after
    the failed one are not started. The supervisor then queues a retry of the
    failed child (OTP's ``try_again_restart``), handled after the exits and
    operator requests already queued: each retry costs one restart of the
    intensity and restarts the failed child's group by the strategy again.

Restart intensity
    At most ``intensity`` restarts in any ``period`` seconds (default 5 in 60):
    the restarts counted are those in the last ``period`` seconds, the window
    ``(now - period, now]``. One failure costs one restart, whatever the
    strategy restarts with it; each retry of a failed restart costs one more.
    When a restart would exceed the intensity, the supervisor *gives up*: it
    stops all its children in reverse start order and terminates with reason
    ``gave_up``. Its parent handles that like any child termination (so
    escalation climbs the tree). When the root supervisor gives up, the node
    becomes not-ready and exits non-zero, so the orchestrator restarts it.

Stop
    Children are stopped in reverse start order. Each gets its ``shutdown``:
    it is asked to stop (its ``terminate`` runs) and killed with SIGKILL if it
    has not exited within that many seconds; ``brutal_kill`` kills at once. A
    child supervisor stops its own subtree the same way, bounded by its own
    ``shutdown``. A child stopped by its supervisor is never restarted.

Operator API (OTP's names; errors are :class:`ChildError` with OTP's reason)
    ``start_child(spec)`` starts and adds a child at the end (``already_started``
    if the id runs, ``already_present`` if its spec is kept but not running;
    :class:`StartError` if it fails to start, and then nothing is kept).
    ``terminate_child(id)`` stops it (by its ``shutdown``) and keeps the spec,
    except a temporary child's, which is deleted (``not_found``). ``restart_child(id)``
    starts a kept spec that is not running (``running``, ``restarting``,
    ``not_found``; StartError). ``delete_child(id)`` removes a spec that is not
    running (``running``, ``restarting``, ``not_found``). ``which_children()``
    and ``count_children()`` inspect. Requests and exits are handled one at a
    time, in arrival order (as a gen_server handles its mailbox); a stopped or
    given-up supervisor answers ``not_running``.

Events
    Every start (``agent_started``), exit (``agent_exited``, with reason, exit
    code or signal), restart (``agent_restarted``, with the latency from the
    exit to the new process being ready), failed restart (``agent_restart_failed``),
    give-up (``supervisor_gave_up``) and operator action (``child_terminated``,
    ``child_restarted``, ``child_started``, ``child_deleted``) is a structured
    event on the node's bus.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Literal

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ChildError, StartError
from stalwart.runtime import _metrics as m
from stalwart.runtime._host import ProcessHost
from stalwart.runtime._intensity import RestartIntensity
from stalwart.runtime._process import AgentProcess, ExitInfo
from stalwart.runtime._spec import AnySpec, ChildSpec, DynamicSupervisorSpec, SupervisorSpec

__all__ = ["ChildCounts", "ChildInfo", "Supervisor"]

ExitCallback = Callable[["Supervisor", ExitInfo], None]
ChildStatus = Literal["running", "restarting", "undefined"]


@dataclasses.dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children` (OTP: ``{Id, Child, Type, Modules}``).

    ``status`` is OTP's ``Child`` field: ``running`` (a pid), ``restarting``
    (its restart failed and a retry is queued) or ``undefined`` (its spec is
    kept but it does not run: terminated, or a transient child that ended).
    """

    id: str
    type: str  # "worker" | "supervisor"
    pid: int | None
    running: bool
    restarts: int
    restart: str = "permanent"
    status: ChildStatus = "undefined"


@dataclasses.dataclass(frozen=True, slots=True)
class ChildCounts:
    """OTP's ``count_children``: specs kept, children running, and by type."""

    specs: int
    active: int
    supervisors: int
    workers: int


@dataclasses.dataclass(slots=True, eq=False)
class _Child:
    spec: AnySpec
    current: AgentProcess | Supervisor | None = None
    restarts: int = 0
    restarting: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Exited:
    child_id: str
    token: object  # the AgentProcess or Supervisor that ended (stale ones are ignored)
    info: ExitInfo
    detected_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class _TryAgain:
    child_id: str
    info: ExitInfo  # the exit that began this restart
    detected_at: float


def _running(current: AgentProcess | Supervisor | None) -> bool:
    if isinstance(current, Supervisor):
        return current.state == "running"
    return current is not None and current.state == "running"


class Supervisor:
    """A running supervisor (see the module docstring for its rules)."""

    def __init__(
        self,
        spec: SupervisorSpec | DynamicSupervisorSpec,
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
        self._queue: asyncio.Queue[_Exited | _TryAgain] = asyncio.Queue()
        self._lock = asyncio.Lock()  # one request or exit at a time: OTP's mailbox
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
        if isinstance(spec, SupervisorSpec | DynamicSupervisorSpec):
            sup = make_supervisor(spec, self.host, clock=self.clock, on_exit=self._child_sup_exited)
            await sup.start()
            child.current = sup
        else:
            child.current = await self.host.spawn(spec, self._child_proc_exited)
        child.restarting = False

    # -- exits --------------------------------------------------------------------------
    def _child_proc_exited(self, proc: AgentProcess, info: ExitInfo) -> None:
        self._queue.put_nowait(_Exited(proc.name, proc, info, time.monotonic()))

    def _child_sup_exited(self, sup: Supervisor, info: ExitInfo) -> None:
        self._queue.put_nowait(_Exited(sup.id, sup, info, time.monotonic()))

    async def _loop(self) -> None:
        while True:
            # no-deadline: a supervisor waits for its children's exits for as long as it runs
            item = await self._queue.get()
            async with self._lock:
                if self.state != "running":
                    return
                if isinstance(item, _TryAgain):
                    await self._try_again(item)
                else:
                    await self._handle(item)

    def _find(self, child_id: str) -> _Child | None:
        return next((c for c in self._children if c.spec.id == child_id), None)

    async def _handle(self, exited: _Exited) -> None:
        child = self._find(exited.child_id)
        if child is None or child.current is not exited.token:
            return  # stale: that incarnation was already replaced or removed
        child.current = None
        restart = child.spec.restart
        if restart == "permanent" or (restart == "transient" and not exited.info.normal):
            await self._restart(child, exited.info, exited.detected_at)
        else:
            self._ended(child, exited.info)

    def _ended(self, child: _Child, info: ExitInfo) -> None:
        """A child that is not restarted has ended: a temporary one's spec goes."""
        if child.spec.restart == "temporary":
            self._children.remove(child)

    async def _restart(self, failed: _Child, info: ExitInfo, detected_at: float) -> None:
        if not self._intensity.record():
            await self._give_up(failed, info)
            return
        await self._restart_group(failed, info, detected_at)

    def _group(self, failed: _Child) -> list[_Child]:
        strategy = self.spec.strategy
        if strategy == "one_for_one":
            return [failed]
        if strategy == "one_for_all":
            return list(self._children)
        return self._children[self._children.index(failed) :]

    async def _restart_group(self, failed: _Child, info: ExitInfo, detected_at: float) -> None:
        group = self._group(failed)
        others = [c for c in group if c is not failed]
        await self._stop_children(reversed(others))
        for child in others:
            if child.spec.restart == "temporary":
                self._children.remove(child)
        group = [c for c in group if c in self._children]
        started: list[_Child] = []
        for child in group:
            try:
                await self._start_child(child)
            except StartError as exc:
                self.host.events.emit(
                    "agent_restart_failed",
                    supervisor=self.id,
                    agent=child.spec.id,
                    error=str(exc),
                )
                if self.spec.strategy == "one_for_all":
                    # no part of the group runs alone: those started in this attempt stop
                    await self._stop_children(reversed(started))
                child.restarting = True
                self._queue.put_nowait(_TryAgain(child.spec.id, info, detected_at))
                return
            started.append(child)
        for child in started:
            child.restarts += 1
            m.AGENT_RESTARTS.labels(child.spec.id).inc()
            current = child.current
            self.host.events.emit(
                "agent_restarted",
                supervisor=self.id,
                agent=child.spec.id,
                strategy=self.spec.strategy,
                cause=failed.spec.id,
                reason=info.reason,
                pid=current.pid if isinstance(current, AgentProcess) else None,
                restart_ms=round((time.monotonic() - detected_at) * 1000, 3),
            )

    async def _try_again(self, item: _TryAgain) -> None:
        child = self._find(item.child_id)
        if child is None or not child.restarting:
            return  # terminated or deleted by an operator meanwhile: nothing to retry
        await self._restart(child, item.info, item.detected_at)

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
        for c in self._children:
            c.restarting = False
        if not self.gave_up.done():
            self.gave_up.set_result(None)
        if self._on_exit is not None and not self.stop_requested:
            self._on_exit(self, ExitInfo(self.id, 0, 0, None, None, "gave_up"))

    # -- stop -----------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop every child in reverse start order (each bounded by its shutdown)."""
        self.stop_requested = True
        if self.state in ("new", "running"):
            self.state = "stopped"
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        async with self._lock:  # an operator request in progress finishes first (bounded)
            await self._stop_children(reversed(self._children))

    async def _stop_children(self, children: Iterable[_Child]) -> None:
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

    # -- the operator API (OTP's names and errors) --------------------------------------
    def _check_running(self) -> None:
        if self.state != "running":
            raise ChildError(
                f"supervisor {self.id!r} is not running (state {self.state})",
                reason="not_running",
            )

    def _existing(self, child_id: str) -> _Child:
        child = self._find(child_id)
        if child is None:
            raise ChildError(
                f"supervisor {self.id!r} has no child {child_id!r}",
                reason="not_found",
                child=child_id,
            )
        return child

    async def start_child(self, spec: AnySpec) -> AgentProcess | Supervisor:
        """Start ``spec`` as a new last child; see the module docstring for the errors."""
        async with self._lock:
            self._check_running()
            self._check_startable(spec)
            child = _Child(spec)
            await self._start_child(child)  # StartError: nothing is kept
            self._children.append(child)
            assert child.current is not None
            self.host.events.emit("child_started", supervisor=self.id, child=spec.id)
            return child.current

    def _check_startable(self, spec: AnySpec) -> None:
        existing = self._find(spec.id)
        if existing is None:
            return
        if _running(existing.current):
            raise ChildError(
                f"child {spec.id!r} of {self.id!r} is already started",
                reason="already_started",
                child=spec.id,
            )
        raise ChildError(
            f"child {spec.id!r} of {self.id!r} is already present (not running): "
            "use restart_child, or delete_child first",
            reason="already_present",
            child=spec.id,
        )

    async def terminate_child(self, child_id: str) -> None:
        """Stop child ``child_id`` (by its shutdown); it is not restarted.

        The spec is kept (restart it with :meth:`restart_child`), except a
        temporary child's, which is deleted. Terminating a child that does not
        run succeeds (it stays stopped; a queued retry is cancelled).
        """
        async with self._lock:
            self._check_running()
            child = self._existing(child_id)
            child.restarting = False
            await self._stop_children([child])
            if child.spec.restart == "temporary":
                self._children.remove(child)
            self.host.events.emit("child_terminated", supervisor=self.id, child=child_id)

    async def restart_child(self, child_id: str) -> AgentProcess | Supervisor:
        """Start the kept spec ``child_id`` again (it must not be running)."""
        async with self._lock:
            self._check_running()
            child = self._existing(child_id)
            self._check_stopped(child, "restart")
            await self._start_child(child)  # StartError: the spec stays, not running
            assert child.current is not None
            self.host.events.emit("child_restarted", supervisor=self.id, child=child_id)
            return child.current

    async def delete_child(self, child_id: str) -> None:
        """Remove the spec ``child_id`` (the child must not be running)."""
        async with self._lock:
            self._check_running()
            child = self._existing(child_id)
            self._check_stopped(child, "delete")
            self._children.remove(child)
            self.host.events.emit("child_deleted", supervisor=self.id, child=child_id)

    def _check_stopped(self, child: _Child, verb: str) -> None:
        if child.restarting:
            raise ChildError(
                f"cannot {verb} {child.spec.id!r}: its restart failed and is being retried "
                "(terminate_child stops the retries)",
                reason="restarting",
                child=child.spec.id,
            )
        if _running(child.current):
            raise ChildError(
                f"cannot {verb} {child.spec.id!r}: it is running (terminate_child first)",
                reason="running",
                child=child.spec.id,
            )

    # -- inspection -----------------------------------------------------------------------
    def which_children(self) -> list[ChildInfo]:
        out = []
        for child in self._children:
            cur = child.current
            running = _running(cur)
            status: ChildStatus = (
                "running" if running else "restarting" if child.restarting else "undefined"
            )
            kind = "worker" if isinstance(child.spec, ChildSpec) else "supervisor"
            pid = cur.pid if isinstance(cur, AgentProcess) else None
            out.append(
                ChildInfo(
                    child.spec.id, kind, pid, running, child.restarts, child.spec.restart, status
                )
            )
        return out

    def count_children(self) -> ChildCounts:
        rows = self.which_children()
        return ChildCounts(
            specs=len(rows),
            active=sum(1 for r in rows if r.running),
            supervisors=sum(1 for r in rows if r.type == "supervisor"),
            workers=sum(1 for r in rows if r.type == "worker"),
        )

    def child(self, child_id: str) -> Supervisor | AgentProcess | None:
        """The running child supervisor or process with this id, if any."""
        for child in self._children:
            if child.spec.id == child_id:
                return child.current
        return None


def make_supervisor(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    host: ProcessHost,
    *,
    clock: Clock = SYSTEM_CLOCK,
    on_exit: ExitCallback | None = None,
) -> Supervisor:
    """A :class:`Supervisor` for a SupervisorSpec, a DynamicSupervisor for the other."""
    if isinstance(spec, DynamicSupervisorSpec):
        from stalwart.runtime._dynamic import DynamicSupervisor

        return DynamicSupervisor(spec, host, clock=clock, on_exit=on_exit)
    return Supervisor(spec, host, clock=clock, on_exit=on_exit)
