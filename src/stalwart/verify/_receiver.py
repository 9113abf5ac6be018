"""A loopback webhook receiver: where the node's alert notifications arrive during verify."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

__all__ = ["Receiver"]


class Receiver:
    """Accepts ``POST``s on 127.0.0.1 and keeps their JSON bodies (bounded, 1 MiB each).

    ``times[i]`` is the wall time ``bodies[i]`` arrived (delivery latencies: MA-3).
    """

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.times: list[float] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(min(length, 2**20))
            try:
                parsed: Any = json.loads(body)
            except json.JSONDecodeError:
                parsed = {"raw": body[:200].decode("utf-8", "replace")}
            self.times.append(time.time())
            self.bodies.append(parsed)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, OSError):
            pass
        finally:
            writer.close()
