"""How a model client's requests leave and its answers are read, against raw servers on
loopback: a request in one write, bodies asked for unencoded (and decoded when a server
encodes anyway, bounded after decoding), and a proxy from the environment still used."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from stalwart.errors import BadModelResponse
from stalwart.llm import Message, ModelRequest, OpenAIClient
from stalwart.llm._http import environment_proxy, post_json
from stalwart.llm._netbackend import AsyncioTransport

pytestmark = pytest.mark.timeout(30)

CHAT = {
    "id": "c1",
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


class _Recorder(asyncio.Protocol):
    """A raw HTTP/1.1 server connection: keeps each chunk as one read returned it, and
    answers every complete request with ``respond(head, body)``."""

    def __init__(self, chunks: list[bytes], respond: Callable[[bytes, bytes], bytes]) -> None:
        self.chunks = chunks
        self.respond = respond
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.transport.write(self.respond(head, rest[:length]))


@contextlib.asynccontextmanager
async def raw_server(
    respond: Callable[[bytes, bytes], bytes],
) -> AsyncIterator[tuple[str, list[bytes]]]:
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Recorder(chunks, respond), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", chunks
    finally:
        server.close()
        await server.wait_closed()


def answer(body: bytes, *headers: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def chat_answer(_head: bytes, _body: bytes) -> bytes:
    return answer(json.dumps(CHAT).encode())


def ask() -> ModelRequest:
    return ModelRequest(messages=(Message("user", "hello " * 200),), max_tokens=16)


async def test_each_request_leaves_in_one_write() -> None:
    """httpcore writes a request's head and body apart; the connection sends them as one
    write, so the server's first read of every request holds all of it."""
    async with raw_server(chat_answer) as (url, chunks):
        client = OpenAIClient("gpt-4o-mini", base_url=f"{url}/v1", retry=None, breaker=None)
        try:
            for n in range(5):  # a new connection, then the kept-alive one
                before = len(chunks)
                reply = await client.complete(ask(), timeout=10)
                assert reply.message.content == "hi"
                first = chunks[before]
                head, body = first.split(b"\r\n\r\n", 1)
                assert head.startswith(b"POST /v1/chat/completions HTTP/1.1"), n
                assert json.loads(body)["messages"][0]["content"].startswith("hello")
                assert len(chunks) == before + 1, "the request came in more than one read"
        finally:
            await client.aclose()


async def test_a_request_reaches_the_socket_in_one_write() -> None:
    """Counted at the connection's socket transport, for a plain call (the model
    client's own path) and one through httpx's client (the tools'): head and body go
    out as one write. (The server's first read holding the whole request, above, can
    happen either way on loopback; this count cannot.)"""
    async with raw_server(chat_answer) as (url, _):
        transport = AsyncioTransport(limits=httpx.Limits())
        async with httpx.AsyncClient(transport=transport, timeout=5) as http:
            await post_json(
                http, f"{url}/v1/chat/completions", model="m", headers={}, body={"q": 0},
                timeout=5, max_bytes=100_000, transport=transport,
            )  # fmt: skip
            (connection,) = transport.pool.connections  # kept alive for the next ones
            socket_transport = connection.transport
            assert socket_transport is not None
            sent: list[bytes] = []
            real_write = socket_transport.write

            def counted(data: bytes) -> None:
                sent.append(bytes(data))
                real_write(data)

            socket_transport.write = counted  # type: ignore[method-assign]
            got = await post_json(
                http, f"{url}/v1/chat/completions", model="m", headers={}, body={"q": 1},
                timeout=5, max_bytes=100_000, transport=transport,
            )  # fmt: skip
            assert got == CHAT
            r = await http.post(f"{url}/v1/chat/completions", json={"q": 2})
            assert r.json() == CHAT
        assert len(sent) == 2
        for n, data in enumerate(sent, 1):
            head, body = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert json.loads(body) == {"q": n}


async def test_a_body_larger_than_what_is_held_streams_out_whole() -> None:
    received: list[int] = []

    def sizes(_head: bytes, body: bytes) -> bytes:
        received.append(len(body))
        return answer(b'{"ok": true}')

    async with raw_server(sizes) as (url, _):
        limits = httpx.Limits()
        transport = AsyncioTransport(limits=limits)
        async with httpx.AsyncClient(transport=transport, timeout=10) as http:
            big = {"text": "x" * 300_000}
            got = await post_json(
                http, f"{url}/big", model="m", headers={"content-type": "application/json"},
                body=big, timeout=10, max_bytes=1000, transport=transport,
            )  # fmt: skip
    assert got == {"ok": True}
    assert received == [len(json.dumps(big, separators=(",", ":")))]


async def test_answers_are_asked_for_unencoded_and_decoded_when_encoded_anyway() -> None:
    heads: list[bytes] = []

    def gzipped(head: bytes, _body: bytes) -> bytes:
        heads.append(head)
        return answer(gzip.compress(json.dumps(CHAT).encode()), b"Content-Encoding: gzip")

    async with raw_server(gzipped) as (url, _):
        for direct in (True, False):  # straight to the transport, and through the client
            http = httpx.AsyncClient(transport=AsyncioTransport(limits=httpx.Limits()))
            async with http:
                transport = AsyncioTransport(limits=httpx.Limits()) if direct else None
                got = await post_json(
                    http, f"{url}/v1/chat/completions", model="m", headers={},
                    body={"q": 1}, timeout=10, max_bytes=100_000, transport=transport,
                )  # fmt: skip
                assert got == CHAT
                if transport is not None:
                    await transport.aclose()
    assert all(b"accept-encoding: identity" in h.lower() for h in heads) and len(heads) == 2


async def test_the_size_bound_holds_for_the_decoded_body() -> None:
    bomb = gzip.compress(b'{"a": "' + b"0" * 200_000 + b'"}')  # ~200 KB from a few hundred

    def bombed(_head: bytes, _body: bytes) -> bytes:
        return answer(bomb, b"Content-Encoding: gzip")

    async with raw_server(bombed) as (url, _):
        transport = AsyncioTransport(limits=httpx.Limits())
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(BadModelResponse, match="exceeds the 50000-byte limit"):
                await post_json(
                    http, f"{url}/x", model="m", headers={}, body={}, timeout=10,
                    max_bytes=50_000, transport=transport,
                )  # fmt: skip


async def test_a_proxy_named_by_the_environment_carries_the_requests(monkeypatch) -> None:
    """With ``HTTP_PROXY`` set the client's own proxy routing is used, not its transport
    directly: the proxy gets the request in absolute form."""
    heads: list[bytes] = []

    def proxy(head: bytes, body: bytes) -> bytes:
        heads.append(head)
        return chat_answer(head, body)

    async with raw_server(proxy) as (proxy_url, _):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = OpenAIClient(
            "gpt-4o-mini", base_url="http://model.test:9/v1", retry=None, breaker=None
        )
        try:
            reply = await client.complete(ask(), timeout=10)
        finally:
            await client.aclose()
    assert reply.message.content == "hi"
    assert heads and heads[0].startswith(b"POST http://model.test:9/v1/chat/completions ")


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({}, "https://api.openai.com/v1", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.openai.com/v1", "http://proxy:3128"),
        ({"https_proxy": "http://p:1"}, "http://api.example.com", None),
        ({"ALL_PROXY": "http://p:1"}, "http://api.example.com", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "openai.com"}, "https://api.openai.com", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".openai.com:443"},
            "https://api.openai.com",
            None,
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://api.openai.com", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "penai.com"},
            "https://api.openai.com",
            "http://p:1",
        ),
    ],
)
def test_the_proxy_for_a_url_is_read_from_the_environment(monkeypatch, environment, url, expected):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert environment_proxy(url) == expected
