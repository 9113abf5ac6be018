"""Under systemd (NOTIFY_SOCKET set), a node sends READY=1 and keeps pinging the watchdog."""

from __future__ import annotations

import asyncio
import socket

from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.server._systemd import SystemdNotifier
from stalwart.testing import ProbeAgent


async def test_ready_then_watchdog_pings(start_node, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    try:
        n = await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]))
        assert isinstance(n.service.systemd, SystemdNotifier) and n.service.systemd.enabled
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        async with asyncio.timeout(5):
            while got.count(b"WATCHDOG=1") < 3 or b"READY=1" not in got:
                got.append(await loop.sock_recv(sock, 1024))

        async def drain() -> None:  # systemd reads its socket all the time; so does this
            while b"STOPPING=1" not in got:
                got.append(await loop.sock_recv(sock, 1024))

        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            group.create_task(drain())
            await n.close()
    finally:
        sock.close()


async def test_a_full_notify_socket_drops_messages_without_blocking(tmp_path):
    """Nobody reads the socket: its queue fills, and notify() drops (counted) at once."""
    path = str(tmp_path / "full.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
        sent = [notifier.notify("WATCHDOG=1") for _ in range(500)]  # would block before
        assert sent[0] is True
        assert sent.count(False) == notifier.dropped > 0
        assert sent.count(True) + notifier.dropped == 500
    finally:
        sock.close()
