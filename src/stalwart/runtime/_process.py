"""The node's handle on one agent process (:class:`AgentProcess`), the reference callers
hold (:class:`AgentRef`), and why a process ended (:class:`ExitInfo`).

Split from :mod:`stalwart.runtime._host`, which starts, watches and routes these
handles: here is only what one process is and what it knows of itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from stalwart.runtime._channel import Channel
from stalwart.runtime._messages import Exiting, Reply
from stalwart.runtime._pulse import Pulse
from stalwart.runtime._spec import ChildSpec

__all__ = ["AgentProcess", "AgentRef", "ExitInfo", "work_handed"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentRef:
    """One incarnation of a registered agent. Calls to a stale ref fail with NoProcess."""

    name: str
    incarnation: int
    pid: int


@dataclasses.dataclass(frozen=True, slots=True)
class ExitInfo:
    """Why an agent process ended.

    ``reason`` is one of ``normal`` (exit 0), ``shutdown`` (stopped by its
    supervisor, by a SIGTERM from outside -- OTP's ``exit(Pid, shutdown)`` -- or
    by raising :class:`stalwart.errors.Shutdown`, whose text is ``detail``: OTP's
    ``{shutdown, Reason}``), ``exit_code`` (non-zero exit), ``killed`` (any
    other signal from outside), ``hung``, ``memory_limit``, ``task_timeout``,
    ``protocol_error``, ``channel_closed`` or ``forkserver_died``. ``normal`` and
    ``shutdown`` are the normal exits: they decide restarts of ``transient``
    children. ``blame`` is the tag of the task the agent's last pulse charged (the
    one holding its loop, or the only one in flight) for an exit the host caused
    (hung, task_timeout, memory_limit); ``detail`` says what the host saw, or the
    text of the agent's ``Shutdown``.
    """

    name: str
    incarnation: int
    pid: int
    exit_code: int | None
    signal: str | None
    reason: str
    blame: str | None = None
    detail: str = ""

    @property
    def normal(self) -> bool:
        return self.reason in ("normal", "shutdown")


class AgentProcess:
    """The node's handle on one running agent process."""

    def __init__(self, spec: ChildSpec, incarnation: int, pid: int) -> None:
        self.spec = spec
        self.name = spec.id
        self.incarnation = incarnation
        self.pid = pid
        self.state = "starting"  # starting -> running -> exited
        self.channel: Channel | None = None
        self.last_seen = time.monotonic()
        self.started_at = time.monotonic()
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.kill_reason: str | None = None
        self.reported_exit: Exiting | None = None  # what the agent said before exiting 0
        self.channel_eof = False
        self.exit_code_pending: int | None = None
        self.kill_detail = ""
        self.pulse: Pulse | None = None
        self.last_pulse = 0.0
        self.pulse_sock: socket.socket | None = None
        self.stop_requested = False
        self.exit: ExitInfo | None = None
        self.exited = asyncio.get_running_loop().create_future()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_exit: Callable[[AgentProcess, ExitInfo], None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def ref(self) -> AgentRef:
        return AgentRef(self.name, self.incarnation, self.pid)

    def signal(self, sig: int) -> None:
        if self.exit is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def own_bytes(self) -> int | None:
        """The memory this process holds alone (its USS: private resident pages), what
        ``memory_limit_mb`` is checked against.

        Not the RSS: an agent is forked from the fork server, which preloads the app and
        models (the output redactor's, a few hundred MiB) that every agent maps, shared
        copy-on-write; counting them would charge each agent for memory it does not own
        and kill a healthy one under a limit its own work never reaches. A page the agent
        writes becomes private and counts. One read of ``smaps_rollup`` (Linux 4.14+),
        else the RSS from ``statm``."""
        try:
            with open(f"/proc/{self.pid}/smaps_rollup", "rb") as f:
                total = 0
                for line in f:
                    if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Private_Hugetlb:")):
                        total += int(line.split()[1]) * 1024
                return total
        except FileNotFoundError:
            pass
        except (OSError, ValueError, IndexError):
            return None
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return None


def work_handed(proc: AgentProcess) -> None:
    """The node hands an idle agent work: its silence is counted from now.

    An idle agent beats at the idle pace (its last pulse said ``quiet``), so the frame
    the watchdog last saw from its loop may be several intervals old; without this, the
    first moments of work on a starved machine would count that idle quiet as silence.
    Only an agent whose last pulse said it was idle (its loop had run its last probe,
    nothing in flight) gets it: a busy or hung one keeps its silence however many calls
    are sent to it."""
    if proc.pulse is not None and proc.pulse.quiet > 0:
        proc.last_seen = max(proc.last_seen, time.monotonic())
