"""`stalwart.http_client()`: one client per process and event loop, against a real HTTP
server on loopback (its connections counted by the server)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import ClassVar

import pytest
from tests._loopback import JsonHandler, threaded

from stalwart import http_client
from stalwart.llm import AsyncioTransport


class _Echo(JsonHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a reused connection shows as one port
    peers: ClassVar[set[int]] = set()

    def do_GET(self) -> None:
        self.peers.add(self.client_address[1])
        self.reply(200, {"path": self.path})


@pytest.fixture
def echo() -> Iterator[str]:
    _Echo.peers = set()
    with threaded(_Echo) as url:
        yield url


def test_one_client_per_loop_its_connections_kept_alive(echo, monkeypatch):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def calls() -> tuple[object, int]:
        first = http_client()
        assert http_client() is first  # the same in this loop
        for i in range(5):  # one after another: one kept-alive connection
            r = await first.get(f"{echo}/{i}")
            assert r.json() == {"path": f"/{i}"}
        assert isinstance(first._transport, AsyncioTransport)  # no proxy: ours
        return first, len(_Echo.peers)

    # the clients themselves, not their id()s: a freed client's id may come back
    first, connections = asyncio.run(calls())
    assert connections == 1
    second, _ = asyncio.run(calls())  # a new loop (the last one is closed): a new client
    assert second is not first


def test_a_forked_child_gets_its_own_client(echo):
    async def parent_then_child() -> int:
        mine = http_client()
        await mine.get(f"{echo}/parent")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child (asyncio gives it no running loop: it runs its own)
            try:

                async def child() -> bytes:
                    theirs = http_client()
                    await theirs.get(f"{echo}/child")  # its own connection works
                    return b"new" if theirs is not mine else b"same"

                os.write(write, asyncio.run(child()))
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        said = os.read(read, 16)
        os.close(read)
        assert said == b"new", said
        return status

    assert asyncio.run(parent_then_child()) == 0


def test_outside_an_event_loop_it_says_so():
    with pytest.raises(RuntimeError):
        http_client()


def test_a_proxy_in_the_environment_gets_httpx_s_own_transport(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")

    async def transport() -> object:
        return http_client()._transport

    assert not isinstance(asyncio.run(transport()), AsyncioTransport)
