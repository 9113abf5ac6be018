"""systemd integration: ``READY=1`` once the tree runs, ``WATCHDOG=1`` while the loop does.

With ``Type=notify`` and ``WatchdogSec=`` in the unit (``deploy/systemd``), systemd
starts dependants only once the node is ready and kills and restarts a node
whose event loop stops answering: the pings come from the loop itself, so a
hung loop stops them. Without ``NOTIFY_SOCKET`` (not under systemd) this is a no-op.

Sending never blocks the loop: the socket is non-blocking, and a message the
receiver's queue has no room for (Linux queues about ten datagrams on a Unix
socket nobody reads) is dropped, counted in ``dropped`` and logged once as a
warning. A dropped ``WATCHDOG=1`` is sent again at the next half period; a
dropped ``READY=1`` is retried until it is sent.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from stalwart.observe import get_logger

__all__ = ["SystemdNotifier"]

_log = get_logger("stalwart.systemd")


class SystemdNotifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (see the module docstring)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Messages dropped because the receiver's queue was full (never waited for)."""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        """Send one message (``READY=1``, ``STOPPING=1``…); False if it could not be sent."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.setblocking(False)  # never wait on the loop: a full queue drops the message
                s.connect(self.address)
                s.send(message.encode())
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                _log.warning(
                    "systemd_notify_dropped", message=message, dropped=self.dropped,
                    why="the notify socket's queue is full (the receiver is not reading)",
                )  # fmt: skip
            return False
        except OSError:
            return False
        return True

    def start(self, ready: Callable[[], bool]) -> None:
        """Ping the watchdog every half period, and send READY=1 the first time ``ready()``."""
        if self.enabled:
            self._task = asyncio.create_task(self._loop(ready), name="stalwart-systemd")

    async def _loop(self, ready: Callable[[], bool]) -> None:
        sent_ready = False
        period = self.watchdog_s / 2 if self.watchdog_s else 0.5
        while True:
            if not sent_ready and ready():
                sent_ready = self.notify("READY=1")
            if self.watchdog_s:
                self.notify("WATCHDOG=1")
            if sent_ready and not self.watchdog_s:
                return
            await asyncio.sleep(min(period, 0.5) if not sent_ready else period)

    async def stop(self) -> None:
        self.notify("STOPPING=1")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
