"""The main of an agent process: mailbox, handlers, heartbeats.

Runs in a process forked from the forkserver. It owns one end of a socket pair
whose other end the node holds; everything it learns or says goes through it.
When the node's end closes, the agent exits: an orphan never runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from stalwart.errors import InvalidMessage, ProtocolError, Shutdown
from stalwart.guard import install_redactor
from stalwart.observe import (
    MetricShipper,
    attach_traceparent,
    capture_std_streams,
    configure_logging,
    configure_tracing,
    shutdown_tracing,
)
from stalwart.resilience import BREAKERS
from stalwart.runtime._agent import CALL_DEADLINE, AgentContext
from stalwart.runtime._channel import Channel, ChannelClosed, StreamBroken
from stalwart.runtime._messages import (
    Call,
    CallResult,
    Cast,
    Exiting,
    Heartbeat,
    InitFailed,
    LogLine,
    MetricSamples,
    Ready,
    Reply,
    Stop,
    Sync,
    check_json,
)
from stalwart.runtime._pulse import IDLE_SLOWDOWN, LoopWatch
from stalwart.runtime._spec import load_agent

__all__ = ["SpawnRequest", "run_agent"]


@dataclasses.dataclass(frozen=True, slots=True)
class SpawnRequest:
    """Everything a forked child needs to become an agent (sent to the forkserver)."""

    name: str
    incarnation: int
    agent_ref: str
    args: Any
    heartbeat_interval: float
    start_timeout: float
    default_call_timeout: float
    max_frame_bytes: int


def run_agent(
    sock: socket.socket, req: SpawnRequest, pulse_sock: socket.socket | None = None
) -> int:
    """Run the agent until it stops; return the process exit code.

    ``pulse_sock`` (a datagram socket to the node) carries the pulse (see
    :mod:`stalwart.runtime._pulse`); without it only loop heartbeats are sent.
    """
    return asyncio.run(_AgentMain(sock, req, pulse_sock).run())


def _shipper(channel: Channel) -> Callable[[str], None]:
    """Send log lines on ``channel``, from the loop thread or (thread-safely) any other."""
    loop = asyncio.get_running_loop()
    owner = threading.get_ident()

    def ship(line: str) -> None:
        if threading.get_ident() == owner:
            channel.send(LogLine(line=line))
        else:
            loop.call_soon_threadsafe(channel.send, LogLine(line=line))

    return ship


class _AgentMain:
    def __init__(
        self, sock: socket.socket, req: SpawnRequest, pulse_sock: socket.socket | None
    ) -> None:
        self.sock = sock
        self.req = req
        self.watch = None if pulse_sock is None else LoopWatch(pulse_sock, req.heartbeat_interval)
        self.mailbox: asyncio.Queue[Call | Cast] = asyncio.Queue()
        self.exit_code = 0
        self.stop_reason: str | None = None
        self.shutdown_detail: str | None = None  # set when a handler raised Shutdown
        self.crash: BaseException | None = None
        self.done = asyncio.Event()
        self.received = 0  # frames read from the node (work may have come)

    async def run(self) -> int:
        channel = await Channel.open(self.sock, self.req.max_frame_bytes)
        self.channel = channel
        # this process's lines, with the secrets it resolves, are redacted here, once: the
        # node takes them as they come (it redacts again only what its own redactor flags)
        install_redactor()
        # Log lines travel to the node over this channel (no shared files or streams).
        configure_logging(
            ship=_shipper(channel),
            capture_stdlib=True,
            agent_id=self.req.name,
            pid=os.getpid(),
        )
        # print() and sys.stderr writes in agent code become redacted log lines
        # (``agent_output``) with the task that printed them, never raw node output
        self.restore_streams = capture_std_streams()
        # spans go straight to the collector (OTEL_* variables), from this process's provider
        configure_tracing(instance=f"{self.req.name}/{os.getpid()}")
        self.shipper = MetricShipper()  # metrics the agent records reach the node's /metrics
        background: list[asyncio.Task[None]] = []
        if self.watch is not None:  # before init: a blocking init is caught (and blamed) too
            self.watch.start(asyncio.get_running_loop())
        ctx = AgentContext(
            name=self.req.name,
            incarnation=self.req.incarnation,
            channel=channel,
            default_timeout=self.req.default_call_timeout,
        )
        try:
            cls = load_agent(self.req.agent_ref)
            agent = cls()
            agent.ctx = ctx
            async with asyncio.timeout(self.req.start_timeout):
                await agent.init(self.req.args)
        except BaseException as exc:  # init failed: report why, then exit non-zero
            for task in background:
                task.cancel()
            channel.send(InitFailed(error_type=type(exc).__name__, error=str(exc)[:2000]))
            self.restore_streams()  # a partial line printed before the failure is logged
            await channel.drain()
            channel.close()
            return 1
        self.agent = agent
        self.ctx = ctx
        channel.send(Ready(pid=os.getpid()))
        workers = [asyncio.create_task(self._worker()) for _ in range(max(1, cls.max_concurrency))]
        background += [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._reader())]
        # no-deadline: the agent lives until stopped, crashed, or its node goes away.
        await self.done.wait()
        for task in workers + background:
            task.cancel()
        await asyncio.gather(*workers, *background, return_exceptions=True)
        if self.watch is not None:
            self.watch.stop()
        if self.stop_reason is not None:
            try:
                async with asyncio.timeout(max(self.req.start_timeout, 1.0)):
                    await agent.terminate(self.stop_reason)
            except Exception:
                self.exit_code = 1
        if self.crash is None and self.exit_code == 0 and self.shutdown_detail is not None:
            # say why before exiting 0: the node reads the exit as OTP's `shutdown` (or
            # `{shutdown, Reason}`), a normal exit for a transient child
            self.channel.send(Exiting(reason="shutdown", detail=self.shutdown_detail))
        self._ship_metrics()
        await self._flush_spans()
        self.restore_streams()  # a last partial line is logged before the channel closes
        await channel.drain()
        channel.close()
        if self.crash is not None:
            raise self.crash
        return self.exit_code

    async def _flush_spans(self) -> None:
        """Export the spans still buffered, within the start timeout (then they are lost)."""
        try:
            async with asyncio.timeout(max(self.req.start_timeout, 1.0)):
                await asyncio.to_thread(shutdown_tracing)
        except TimeoutError:
            pass

    async def _heartbeat(self) -> None:
        seq = 0
        seen = -1
        shipped = 0.0
        interval = self.req.heartbeat_interval
        while True:
            seq += 1
            self.channel.send(Heartbeat(seq=seq))
            # Collecting the registry was most of an idle agent's CPU (~0.4 ms a beat):
            # collect when work may have recorded something (a frame came, a task ran or
            # runs), and otherwise every IDLE_SLOWDOWN intervals (so metrics recorded by
            # the agent's own timers arrive that much later).
            work = self.received + (0 if self.watch is None else self.watch.started)
            # an open breaker turns half-open with time alone: look again at the busy pace
            timed = BREAKERS.refresh()
            busy = self.watch is None or not self.watch.idle() or timed
            now = time.monotonic()
            if busy or work != seen or now - shipped >= interval * (IDLE_SLOWDOWN - 0.5):
                seen, shipped = work, now
                self._ship_metrics(refresh=False)
            if self.watch is None or busy or not self.mailbox.empty():
                await asyncio.sleep(interval)
                continue
            # an idle process beats at its pulse's idle cadence (the pulse tells the node)
            # until work starts
            woken = self.watch.woken
            woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval * IDLE_SLOWDOWN):
                    await woken.wait()
                    # never faster than the busy pace, however often work comes
                    await asyncio.sleep(max(0.0, now + interval - time.monotonic()))

    def _ship_metrics(self, refresh: bool = True) -> None:
        # An open breaker turns half-open when its wait has passed, but only when someone
        # looks: so one no call reaches (a fallback while the primary serves) does not
        # report "open" forever
        if refresh:
            BREAKERS.refresh()
        samples = self.shipper.collect()
        if samples:
            self.channel.send(MetricSamples(samples=samples))

    async def _reader(self) -> None:
        while True:
            try:
                frame = await self.channel.receive()
            except (ChannelClosed, StreamBroken):
                self.exit_code = 0 if isinstance(self.stop_reason, str) else 1
                self.done.set()  # the node is gone or the stream is poisoned: exit
                return
            except ProtocolError:
                continue  # a bad but well-delimited frame: dropped, stream intact
            self.received += 1
            if isinstance(frame, Call | Cast):
                self.mailbox.put_nowait(frame)
            elif isinstance(frame, CallResult):
                self.ctx._resolve(frame)
            elif isinstance(frame, Sync):  # a barrier: after every frame sent before it
                self.channel.send(Reply(ref=frame.ref, ok=True))
            elif isinstance(frame, Stop):
                self.stop_reason = frame.reason
                self.done.set()
                return
            # other frame types are not meant for an agent: ignored

    async def _worker(self) -> None:
        while True:
            # no-deadline: an idle agent waits for mail for as long as it lives.
            msg = await self.mailbox.get()
            if self.watch is not None:
                self.watch.work_started()
            try:
                # the sender's span is the parent of what this message starts
                with attach_traceparent(msg.trace):
                    if isinstance(msg, Call):
                        await self._handle_call(msg)
                    else:
                        await self.agent.handle_cast(msg.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # a failing cast handler is the agent's business; it keeps running
            except Shutdown as exc:  # the agent stops itself: terminate runs, exit 0
                self.stop_reason = "shutdown"
                self.shutdown_detail = str(exc)[:2000]
                self.done.set()
                return
            except BaseException as exc:  # SystemExit, Shutdown: end the process
                self.crash = exc
                self.done.set()
                return
            finally:
                if self.watch is not None:
                    self.watch.work_ended()

    async def _handle_call(self, call: Call) -> None:
        deadline = time.monotonic() + call.timeout
        CALL_DEADLINE.set(deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return  # the caller gave up while this waited in the mailbox
        timer = asyncio.timeout(remaining)
        try:
            async with timer:
                result = await self.agent.handle_call(call.payload)
            check_json(result, what="reply")
        except TimeoutError as exc:
            if timer.expired():
                return  # the caller has its CallTimeout already; nobody reads a reply
            # the handler's own timeout (a CallTimeout of a call it made): the caller's to see
            self.channel.send(
                Reply(ref=call.ref, ok=False, error_type=type(exc).__name__, error=str(exc)[:4000])
            )
            return
        except InvalidMessage as exc:
            self.channel.send(
                Reply(ref=call.ref, ok=False, error_type="InvalidMessage", error=str(exc))
            )
            return
        except Exception as exc:
            self.channel.send(
                Reply(ref=call.ref, ok=False, error_type=type(exc).__name__, error=str(exc)[:4000])
            )
            return
        self.channel.send(Reply(ref=call.ref, ok=True, payload=result))
