"""The process host: agent processes, the registry, message routing, the watchdog.

The host is the part of the node that touches processes. Supervisors decide
*what* to start and stop; the host starts, stops, watches and routes. It runs
in the node's event loop and never blocks it.

Detection of a dead agent is event-driven, never polled: the fork server reaps
each child the moment SIGCHLD arrives and tells the host the exact wait status;
the agent's socket reaching EOF marks it unreachable at once (calls to it fail
immediately). Detection of a *hung* agent is by its pulse (see :mod:`stalwart.runtime._pulse`):
a thread in the agent reports, every ``heartbeat_interval``, how long its event
loop has not run (its *lag*) and which task holds it. An agent is killed
(SIGTERM, SIGCONT, then SIGKILL after its grace) with reason

- ``hung`` when its loop is stuck: no frame came from the loop for
  ``heartbeat_interval * hang_after_missed`` seconds *and* the pulse reports a
  loop lag past that threshold (a loop that is only slow, on a busy machine or
  in a burst of work, still sends frames and is left alone); without a fresh
  pulse (a stopped or frozen process) the silence alone decides;
- ``task_timeout`` when the task holding its loop is past its deadline (the
  task's ``task_timeout``, which the agent cannot enforce itself while blocked);
- ``memory_limit`` when its own memory (USS: pages it does not share with the fork
  server) passes its ``memory_limit_mb``.

The exit of a killed agent names the *blame* its last pulse gave (the task that
held the loop, or the only task in flight). Exit hooks (:meth:`ProcessHost.add_exit_hook`)
see such an exit before its supervisor does, so the node can record it against
the task durably (quarantine) before the agent restarts and resumes that task.
A starved machine does not look like a hang: the pulse thread drops a round it
woke late for, and the watchdog forgives silences when it ran late itself.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stalwart.config import RuntimeSettings
from stalwart.errors import (
    CallError,
    CallTimeout,
    InvalidMessage,
    NoProcess,
    ProtocolError,
    RemoteError,
    StartError,
)
from stalwart.observe import (
    EventBus,
    apply_samples,
    current_traceparent,
    forget_source,
    ingest_redacted,
)
from stalwart.runtime import _metrics as m
from stalwart.runtime._channel import Channel, ChannelClosed, StreamBroken
from stalwart.runtime._child import SpawnRequest
from stalwart.runtime._fsclient import ForkServer
from stalwart.runtime._messages import (
    Call,
    CallResult,
    Cast,
    Exiting,
    Heartbeat,
    InitFailed,
    LogLine,
    MetricSamples,
    OutCall,
    OutCast,
    Publish,
    Ready,
    Reply,
    Stop,
    Sync,
    check_json,
)
from stalwart.runtime._process import AgentProcess, AgentRef, ExitInfo, work_handed
from stalwart.runtime._pulse import decode_pulse
from stalwart.runtime._spec import ChildSpec
from stalwart.runtime._watchdog import judge

__all__ = ["ProcessHost"]

_BLAMED = frozenset({"hung", "task_timeout", "memory_limit"})
"""Kill reasons the host charges to the task the agent's last pulse named."""
EXIT_HOOK_TIMEOUT = 5.0
"""Seconds each exit hook may take before the exit reaches the supervisor anyway."""
FORK_SERVER_START_S = 60.0
"""The least time a node's fork server gets to start and preload (see ``start``)."""


class ProcessHost:
    """Starts, stops, watches and routes messages to agent processes."""

    def __init__(
        self,
        settings: RuntimeSettings | None = None,
        events: EventBus | None = None,
        *,
        preload: Sequence[str] = (),
    ) -> None:
        self.settings = settings or RuntimeSettings()
        self.events = events or EventBus()
        self._preload = tuple(preload)
        self._registry: dict[str, AgentProcess] = {}
        self._by_pid: dict[int, AgentProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._incarnations: dict[str, itertools.count[int]] = {}
        self._refs = itertools.count(1)
        self._fs: ForkServer | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._fs_restart: asyncio.Task[None] | None = None
        self._closing = False
        self._exit_hooks: list[Callable[[ExitInfo], Awaitable[None]]] = []
        self._hook_runs: set[asyncio.Task[None]] = set()
        self.late_replies = 0
        self.malformed_frames = 0
        self.dropped_casts = 0
        self.dropped_log_lines = 0

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self._fs = ForkServer(self._on_child_exit, self._on_forkserver_lost, self._preload)
        # The fork server loads the runtime, the log redactor's lists and the app's preloads
        # once per node: about 1 s of CPU, and 6 s of wall time at a load average of 19.
        # start_timeout (an agent's init, milliseconds after a fork) was too short for it:
        # a busy machine failed the node's start ("the fork server did not start within
        # 10 s"). It gets at least FORK_SERVER_START_S.
        await self._fs.start(max(self.settings.start_timeout, FORK_SERVER_START_S))
        self._watchdog = asyncio.create_task(self._watch(), name="stalwart-watchdog")

    async def close(self) -> None:
        """Kill every remaining agent and stop the fork server (bounded)."""
        self._closing = True
        if self._fs_restart is not None:
            self._fs_restart.cancel()
            await asyncio.gather(self._fs_restart, return_exceptions=True)
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self._hook_runs:  # an exit being recorded: let it land (bounded)
            await asyncio.wait(set(self._hook_runs), timeout=EXIT_HOOK_TIMEOUT)
        procs = list(self._by_pid.values())
        for proc in procs:
            proc.kill_reason = proc.kill_reason or "shutdown"
            proc.stop_requested = True
            proc.signal(signal.SIGKILL)
        if procs:
            await asyncio.wait([p.exited for p in procs], timeout=5.0)
        if self._fs is not None:
            self._fs.close()
            await asyncio.to_thread(self._fs.wait_exited, 5.0)
            await self._fs.drain_output(2.0)  # their last lines are logged, not lost

    @property
    def forkserver(self) -> ForkServer | None:
        return self._fs

    # -- starting ---------------------------------------------------------------------
    async def spawn(
        self, spec: ChildSpec, on_exit: Callable[[AgentProcess, ExitInfo], None] | None = None
    ) -> AgentProcess:
        """Start ``spec`` as a new process and wait until its ``init`` has returned.

        Raises :class:`StartError` (after killing what was started) if the fork
        fails, ``init`` raises, or ready is not reported within ``start_timeout``.
        """
        if self._fs is None and self._fs_restart is not None and not self._closing:
            # the fork server died and is being replaced: wait for it (bounded)
            try:
                async with asyncio.timeout(self.settings.start_timeout):
                    await asyncio.shield(self._fs_restart)
            except (TimeoutError, StartError):
                pass
        if self._fs is None or self._closing:
            raise StartError(f"cannot start {spec.id!r}: the host is not running")
        current = self._registry.get(spec.id)
        if current is not None and current.exit is None:
            raise StartError(f"cannot start {spec.id!r}: a process with that name is running")
        incarnation = next(self._incarnations.setdefault(spec.id, itertools.count(1)))
        settings = self.settings
        request = SpawnRequest(
            name=spec.id,
            incarnation=incarnation,
            agent_ref=spec.ref,
            args=spec.args,
            heartbeat_interval=settings.heartbeat_interval,
            start_timeout=settings.start_timeout,
            default_call_timeout=settings.timeouts.agent_call,
            max_frame_bytes=settings.max_frame_bytes,
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pulse_ours, pulse_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            pid = await self._fs.spawn(request, theirs, settings.start_timeout, pulse_theirs)
        except BaseException:
            ours.close()
            pulse_ours.close()
            raise
        finally:
            theirs.close()
            pulse_theirs.close()
        proc = AgentProcess(spec, incarnation, pid)
        self._by_pid[pid] = proc
        pulse_ours.setblocking(False)
        proc.pulse_sock = pulse_ours
        asyncio.get_running_loop().add_reader(pulse_ours.fileno(), self._on_pulse, proc)
        try:
            # from here the node knows the pid: a child that never says it is ready within
            # start_timeout (one blocked right after its fork, say) is killed by that pid
            async with asyncio.timeout(settings.start_timeout):
                proc.channel = await Channel.open(ours, settings.max_frame_bytes)
                self._task(proc, self._serve(proc))
                if pid in self._early_exits:
                    self._on_child_exit(pid, self._early_exits.pop(pid))
                await proc.ready
        except (TimeoutError, StartError) as exc:
            if proc.channel is None:
                ours.close()
            proc.kill_reason = proc.kill_reason or "start_failed"
            proc.stop_requested = True
            proc.signal(signal.SIGKILL)
            await asyncio.wait([proc.exited], timeout=5.0)
            why = str(exc) or f"no ready within start_timeout={settings.start_timeout:g} s"
            raise StartError(f"agent {spec.id!r} failed to start: {why}") from None
        except asyncio.CancelledError:  # whoever started it is gone: so is the process
            if proc.channel is None:
                ours.close()
            proc.stop_requested = True
            proc.kill_reason = proc.kill_reason or "shutdown"
            proc.signal(signal.SIGKILL)
            raise
        proc.state = "running"
        proc.on_exit = on_exit
        self._registry[spec.id] = proc
        m.AGENTS_RUNNING.inc()
        self.events.emit(
            "agent_started",
            agent=spec.id,
            incarnation=incarnation,
            pid=pid,
            start_ms=round((time.monotonic() - proc.started_at) * 1000, 3),
        )
        return proc

    def _task(self, proc: AgentProcess, coro: Any) -> None:
        task = asyncio.create_task(coro)
        proc.tasks.add(task)
        task.add_done_callback(proc.tasks.discard)

    # -- the per-agent reader ---------------------------------------------------------
    async def _serve(self, proc: AgentProcess) -> None:
        channel = proc.channel
        assert channel is not None
        while True:
            try:
                frame = await channel.receive()
            except ChannelClosed:
                break
            except StreamBroken as exc:
                self.events.emit("protocol_error", agent=proc.name, pid=proc.pid, error=str(exc))
                proc.kill_reason = proc.kill_reason or "protocol_error"
                proc.signal(signal.SIGKILL)
                break
            except ProtocolError as exc:
                self.malformed_frames += 1
                m.MALFORMED_FRAMES.labels(proc.name).inc()
                self.events.emit("malformed_frame", agent=proc.name, pid=proc.pid, error=str(exc))
                continue
            proc.last_seen = time.monotonic()
            if isinstance(frame, Heartbeat):
                continue
            if isinstance(frame, LogLine):
                try:
                    ingest_redacted(frame.line, agent_id=proc.name)
                except Exception:  # a log line must never stop this reader
                    # (a broken stream or sink ended this task once, and with it every
                    # later frame of the agent: its streamed text, its replies)
                    self.dropped_log_lines += 1
                continue
            if isinstance(frame, MetricSamples):
                apply_samples(frame.samples, source=f"{proc.name}/{proc.pid}")
                continue
            if isinstance(frame, Reply):
                fut = proc.pending.get(frame.ref)
                if fut is None or fut.done():
                    self.late_replies += 1
                    m.LATE_REPLIES.inc()
                else:
                    fut.set_result(frame)
            elif isinstance(frame, OutCall):
                self._task(proc, self._forward_call(proc, frame))
            elif isinstance(frame, OutCast):
                self._forward_cast(proc, frame)
            elif isinstance(frame, Publish):
                if frame.name.startswith("task."):  # the agent speaks of its tasks only
                    self.events.notify(frame.name, **{**frame.fields, "agent": proc.name})
            elif isinstance(frame, Exiting):
                proc.reported_exit = frame
            elif isinstance(frame, Ready):
                if not proc.ready.done():
                    proc.ready.set_result(None)
            elif isinstance(frame, InitFailed) and not proc.ready.done():
                proc.ready.set_exception(
                    StartError(f"init raised {frame.error_type}: {frame.error}")
                )
        proc.channel_eof = True
        self._disconnected(proc)
        if proc.exit_code_pending is not None:
            self._finalize(proc, proc.exit_code_pending)
        # The agent's end closed. A process that closed its channel but lives on is
        # useless (nothing can reach it): give it a moment to exit, then kill it.
        if proc.exit is None:
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(proc.exited)
            except TimeoutError:
                proc.kill_reason = proc.kill_reason or "channel_closed"
                proc.signal(signal.SIGKILL)

    def _on_pulse(self, proc: AgentProcess) -> None:
        sock = proc.pulse_sock
        while sock is not None:
            try:
                data = sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close_pulse(proc)
                return
            pulse = decode_pulse(data)
            if pulse is not None:
                proc.pulse = pulse
                proc.last_pulse = time.monotonic()

    def _close_pulse(self, proc: AgentProcess) -> None:
        sock, proc.pulse_sock = proc.pulse_sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def _disconnected(self, proc: AgentProcess) -> None:
        self._close_pulse(proc)
        if proc.channel is not None:
            proc.channel.close()
        if self._registry.get(proc.name) is proc:
            del self._registry[proc.name]
            if proc.state == "running":
                m.AGENTS_RUNNING.dec()
        if proc.state == "running":
            proc.state = "stopping"
        for fut in proc.pending.values():
            if not fut.done():
                fut.set_exception(
                    NoProcess(f"agent {proc.name!r} exited before replying", target=proc.name)
                )
        if not proc.ready.done():
            proc.ready.set_exception(StartError("the process exited during start"))

    # -- exits --------------------------------------------------------------------------
    def _on_child_exit(self, pid: int, code: int) -> None:
        proc = self._by_pid.pop(pid, None)
        if proc is None:
            self._early_exits[pid] = code
            return
        if (code == 0 or not proc.ready.done()) and not proc.channel_eof and proc.channel:
            # Its last frames (an Exiting naming the reason, an InitFailed naming the
            # error) may still be unread: finalize at the channel's EOF, which follows
            # at once (bounded, should a child of the agent hold the socket open).
            proc.exit_code_pending = code
            asyncio.get_running_loop().call_later(2.0, self._finalize, proc, code)
            return
        self._finalize(proc, code)

    def _finalize(self, proc: AgentProcess, code: int | None) -> None:
        if proc.exit is not None:
            return
        self._disconnected(proc)
        sig = signal.Signals(-code).name if code is not None and code < 0 else None
        detail = ""
        if proc.kill_reason is not None:
            reason = proc.kill_reason
        elif code == 0 and proc.reported_exit is not None:
            reason, detail = proc.reported_exit.reason, proc.reported_exit.detail
        elif code == 0:
            reason = "normal"
        elif code == -signal.SIGTERM:
            reason = "shutdown"  # OTP: exit(Pid, shutdown) from anyone is a normal exit
        elif code is not None and code > 0:
            reason = "exit_code"
        else:
            reason = "killed"
        blame = None
        if proc.kill_reason in _BLAMED and proc.pulse is not None:
            blame = proc.pulse.busy or proc.pulse.sole or None
        info = ExitInfo(
            proc.name,
            proc.incarnation,
            proc.pid,
            code,
            sig,
            reason,
            blame,
            proc.kill_detail or detail,
        )
        proc.exit = info
        proc.state = "exited"
        forget_source(f"{proc.name}/{proc.pid}")  # its gauges (breaker states...) go with it
        m.AGENT_EXITS.labels(proc.name, reason).inc()
        self.events.emit(
            "agent_exited",
            agent=proc.name,
            incarnation=proc.incarnation,
            pid=proc.pid,
            exit_code=code,
            signal=sig,
            reason=reason,
            **({"detail": info.detail} if info.detail else {}),
        )
        if not proc.exited.done():
            proc.exited.set_result(info)
        if info.blame is not None and self._exit_hooks:
            # the hooks record the exit against its task before the supervisor restarts
            # the agent (which would otherwise resume that task at once)
            run = asyncio.create_task(self._after_hooks(proc, info))
            self._hook_runs.add(run)
            run.add_done_callback(self._hook_runs.discard)
            return
        self._notify_exit(proc, info)

    def _notify_exit(self, proc: AgentProcess, info: ExitInfo) -> None:
        if proc.on_exit is not None and not proc.stop_requested and not self._closing:
            proc.on_exit(proc, info)

    def add_exit_hook(self, hook: Callable[[ExitInfo], Awaitable[None]]) -> None:
        """Run ``hook`` on every exit with a blame, before the supervisor hears of it.

        Each hook is bounded by ``EXIT_HOOK_TIMEOUT`` seconds; one that raises or
        overruns is reported (``exit_hook_failed``) and the exit goes on to the
        supervisor all the same.
        """
        self._exit_hooks.append(hook)

    async def _after_hooks(self, proc: AgentProcess, info: ExitInfo) -> None:
        for hook in list(self._exit_hooks):
            try:
                async with asyncio.timeout(EXIT_HOOK_TIMEOUT):
                    await hook(info)
            except Exception as exc:
                self.events.emit(
                    "exit_hook_failed", severity="warning", agent=info.name, error=repr(exc)
                )
        self._notify_exit(proc, info)

    def _on_forkserver_lost(self) -> None:
        if self._closing:
            return
        self.events.emit("forkserver_died", agents=len(self._by_pid))
        for pid, proc in list(self._by_pid.items()):
            proc.signal(signal.SIGKILL)
            proc.kill_reason = proc.kill_reason or "forkserver_died"
            self._by_pid.pop(pid, None)
            self._finalize(proc, None)
        dead, self._fs = self._fs, None
        self._fs_restart = asyncio.create_task(self._restart_forkserver(dead))

    async def _restart_forkserver(self, dead: ForkServer | None) -> None:
        if dead is not None:  # reap it, so no zombie is left behind
            await asyncio.to_thread(dead.wait_exited, 5.0)
            await dead.drain_output(2.0)
        fs = ForkServer(self._on_child_exit, self._on_forkserver_lost, self._preload)
        # the replacement boots and preloads as the first did: the same budget (a loaded
        # machine took longer than start_timeout for it)
        await fs.start(max(self.settings.start_timeout, FORK_SERVER_START_S))
        self._fs = fs
        self.events.emit("forkserver_restarted", pid=fs.pid)

    # -- stopping -----------------------------------------------------------------------
    async def terminate(self, proc: AgentProcess, shutdown: float | str) -> ExitInfo:
        """Stop ``proc`` as OTP does: ask, wait up to ``shutdown`` seconds, then kill.

        ``"brutal_kill"`` kills at once. Returns the exit info; never waits
        without bound (a SIGKILLed process is reaped within milliseconds).
        """
        if proc.exit is not None:
            return proc.exit
        proc.stop_requested = True
        proc.kill_reason = proc.kill_reason or "shutdown"
        if shutdown == "brutal_kill":
            proc.signal(signal.SIGKILL)
        else:
            if proc.channel is not None:
                proc.channel.send(Stop(reason="shutdown"))
            proc.signal(signal.SIGCONT)  # a stopped process cannot act on the request
            assert isinstance(shutdown, int | float)
            done, _ = await asyncio.wait([proc.exited], timeout=shutdown)
            if not done:
                self.events.emit("agent_shutdown_timeout", agent=proc.name, timeout_s=shutdown)
                proc.signal(signal.SIGKILL)
        done, _ = await asyncio.wait([proc.exited], timeout=10.0)
        if not done:  # the fork server is gone and cannot report: account for it here
            self._by_pid.pop(proc.pid, None)
            self._finalize(proc, None)
        assert proc.exit is not None
        return proc.exit

    def kill(self, proc: AgentProcess, reason: str, *, grace: float = 0.0) -> None:
        """Kill ``proc`` for ``reason``: SIGTERM+SIGCONT, then SIGKILL after ``grace``."""
        if proc.exit is not None:
            return
        proc.kill_reason = proc.kill_reason or reason
        if grace <= 0:
            proc.signal(signal.SIGKILL)
            return
        proc.signal(signal.SIGTERM)
        proc.signal(signal.SIGCONT)
        self._task(proc, self._kill_after(proc, grace))

    async def _kill_after(self, proc: AgentProcess, grace: float) -> None:
        done, _ = await asyncio.wait([proc.exited], timeout=grace)
        if not done:
            proc.signal(signal.SIGKILL)

    # -- the watchdog -------------------------------------------------------------------
    async def _watch(self) -> None:
        interval = self.settings.heartbeat_interval
        tick = interval / 4
        threshold = self.settings.hang_threshold
        next_memory_check = 0.0
        last_tick = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            late = now - last_tick - tick
            last_tick = now
            if late > threshold / 2:
                # The watchdog itself did not run for a while: this node was paused
                # (SIGSTOP, a VM freeze) or starved. Its agents' silence is then the
                # node's own, not theirs: give every agent a fresh threshold instead
                # of killing healthy processes as hung.
                # (The memory checks below still run: on a machine busy enough to make
                # every tick late, skipping the round skipped them all, and an agent over
                # its memory_limit_mb was never killed.)
                self.events.emit("node_stalled", stalled_s=round(late, 3))
                for proc in self._registry.values():
                    proc.last_seen = max(proc.last_seen, now)
                    proc.last_pulse = max(proc.last_pulse, now) if proc.pulse else 0.0
            check_memory = now >= next_memory_check
            if check_memory:
                next_memory_check = now + interval
            for proc in list(self._registry.values()):
                if proc.state != "running" or proc.kill_reason is not None:
                    continue
                verdict = judge(proc, now, interval, threshold, check_memory=check_memory)
                if verdict is not None:
                    proc.kill_detail = verdict.detail
                    self.events.emit(verdict.event, **verdict.fields)
                    self.kill(proc, verdict.reason, grace=verdict.grace)

    # -- messages -----------------------------------------------------------------------
    def whereis(self, name: str) -> AgentRef | None:
        proc = self._registry.get(name)
        return proc.ref if proc is not None and proc.state == "running" else None

    def process(self, target: str | AgentRef) -> AgentProcess:
        """The running process for a name or ref, else :class:`NoProcess` at once."""
        name = target.name if isinstance(target, AgentRef) else target
        proc = self._registry.get(name)
        if proc is None or proc.state != "running":
            raise NoProcess(f"no running agent named {name!r}", target=name)
        if isinstance(target, AgentRef) and target.incarnation != proc.incarnation:
            raise NoProcess(
                f"{name!r} incarnation {target.incarnation} has exited "
                f"(now running: {proc.incarnation})",
                target=name,
            )
        return proc

    def _timeout(self, timeout: float | None) -> float:
        seconds = self.settings.timeouts.agent_call if timeout is None else timeout
        if not (isinstance(seconds, int | float) and 0 < seconds < float("inf")):
            raise ValueError(
                f"timeout must be a positive finite number of seconds, got {timeout!r}"
            )
        return float(seconds)

    async def call(
        self,
        target: str | AgentRef,
        payload: Any,
        *,
        timeout: float | None = None,
        sender: str = "",
        trace: str | None = None,
    ) -> Any:
        """Send ``payload`` to ``target`` and return its reply.

        ``trace`` is the caller's span context (default: the current one here).

        Raises :class:`InvalidMessage` (payload not JSON-compatible) or
        :class:`NoProcess` (unknown, dead, stale) at once, :class:`CallTimeout`
        at the deadline, :class:`RemoteError` if the handler raised.
        """
        check_json(payload)
        seconds = self._timeout(timeout)
        proc = self.process(target)
        started = time.perf_counter()
        trace = current_traceparent() if trace is None else trace
        work_handed(proc)
        try:
            reply = await self._request(
                proc,
                lambda ref: Call(
                    ref=ref, payload=payload, timeout=seconds, sender=sender, trace=trace
                ),
                seconds,
            )
        except TimeoutError:
            m.CALLS.labels("timeout").inc()
            raise CallTimeout(
                f"call to {proc.name!r} got no reply within {seconds:g} s", target=proc.name
            ) from None
        except NoProcess:
            m.CALLS.labels("no_process").inc()
            raise
        m.CALL_SECONDS.observe(time.perf_counter() - started)
        if reply.ok:
            m.CALLS.labels("ok").inc()
            return reply.payload
        m.CALLS.labels("remote_error").inc()
        if reply.error_type == "InvalidMessage":
            raise InvalidMessage(f"{proc.name!r} replied with invalid data: {reply.error}")
        raise RemoteError(
            f"{proc.name!r} raised {reply.error_type}: {reply.error}",
            target=proc.name,
            remote_type=reply.error_type,
        )

    async def sync(self, target: str | AgentRef, *, timeout: float) -> None:
        """Return once this host has handled every frame ``target`` sent before it read
        this request (its published events delivered on the bus, in order).

        A barrier through the agent's own channel: the agent's reader answers at once,
        whatever its handlers are doing, and the channel keeps order. What the agent did
        before it read the request (an event it published before a store write that the
        caller has since seen, say) has then reached the node. Raises :class:`NoProcess`
        (no such process, or it exited before answering) and :class:`CallTimeout` (its
        loop did not answer within ``timeout``: blocked, or the node's reader lags)."""
        seconds = self._timeout(timeout)
        proc = self.process(target)
        try:
            await self._request(proc, lambda ref: Sync(ref=ref), seconds)
        except TimeoutError:
            raise CallTimeout(
                f"{proc.name!r} did not answer a sync within {seconds:g} s", target=proc.name
            ) from None

    async def _request(
        self, proc: AgentProcess, frame: Callable[[int], Call | Sync], seconds: float
    ) -> Reply:
        """Send ``frame(ref)`` to ``proc`` and wait for the :class:`Reply` with that ref:
        :class:`NoProcess` when the process exits first, ``TimeoutError`` after
        ``seconds`` (the callers say which request timed out)."""
        ref = next(self._refs)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        proc.pending[ref] = fut
        assert proc.channel is not None
        proc.channel.send(frame(ref))
        try:
            async with asyncio.timeout(seconds):
                return await fut
        finally:
            proc.pending.pop(ref, None)

    def cast(
        self, target: str | AgentRef, payload: Any, *, sender: str = "", trace: str | None = None
    ) -> None:
        """Send a one-way message. Raises InvalidMessage or NoProcess at once.

        ``trace`` is the sender's span context (default: the current one here)."""
        check_json(payload)
        proc = self.process(target)
        assert proc.channel is not None
        trace = current_traceparent() if trace is None else trace
        work_handed(proc)
        proc.channel.send(Cast(payload=payload, sender=sender, trace=trace))

    async def _forward_call(self, caller: AgentProcess, out: OutCall) -> None:
        try:
            result = await self.call(
                out.target, out.payload, timeout=out.timeout, sender=caller.name, trace=out.trace
            )
            reply = CallResult(ref=out.ref, ok=True, payload=result)
        except RemoteError as exc:
            reply = CallResult(ref=out.ref, ok=False, error_type=exc.remote_type, error=str(exc))
        except (CallError, InvalidMessage, ValueError) as exc:
            reply = CallResult(ref=out.ref, ok=False, error_type=type(exc).__name__, error=str(exc))
        if caller.channel is not None:
            caller.channel.send(reply)

    def _forward_cast(self, caller: AgentProcess, out: OutCast) -> None:
        try:
            self.cast(out.target, out.payload, sender=caller.name, trace=out.trace)
        except (NoProcess, InvalidMessage) as exc:
            self.dropped_casts += 1
            self.events.emit("cast_dropped", agent=caller.name, target=out.target, error=str(exc))

    def processes(self) -> list[AgentProcess]:
        """Every process the host knows that has not been reaped yet."""
        return list(self._by_pid.values())
