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
        await n.close()
        async with asyncio.timeout(5):
            while b"STOPPING=1" not in got:
                got.append(await loop.sock_recv(sock, 1024))
    finally:
        sock.close()
