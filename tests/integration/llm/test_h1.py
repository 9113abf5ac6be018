"""The model clients' HTTP/1.1 connections (``stalwart.llm._h1`` under the transport)
against raw servers on loopback: how an answer's body is framed (length, chunks, until
the close, none), informational answers, a read's deadline as httpx's (no byte within
it), a header with a line break refused, a server's ``Connection: close`` honoured, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from stalwart.errors import BadModelResponse
from stalwart.llm._http import post_json
from stalwart.llm._netbackend import AsyncioTransport

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    tasks: list[asyncio.Task[None]] = []
    accepted: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        accepted.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, (await reader.readexactly(length) if length else b"")


def replies(*answers: bytes, close_after: bool = False) -> Handler:
    """A server answering each request on a connection with the next of ``answers``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for data in answers:
            await read_request(reader)
            writer.write(data)
            await writer.drain()
        if not close_after:
            await reader.read()

    return handler


async def call(
    http: httpx.AsyncClient, t: AsyncioTransport, url: str, *, timeout: float = 5
) -> dict[str, object]:
    """A model call's POST, straight to the transport (as the model clients send)."""
    return await post_json(
        http, url, model="m", headers={}, body={}, timeout=timeout, max_bytes=1000, transport=t
    )


def transport(**limits: int) -> AsyncioTransport:
    return AsyncioTransport(limits=httpx.Limits(**limits) if limits else httpx.Limits())


async def test_bodies_framed_by_length_by_chunks_and_by_the_close() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b'\r\n4;ext=1\r\n{"a"\r\n6\r\n: [1, \r\n3\r\n2]}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    sized = (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"b": 2}'
    )
    until_close = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"c": 3}'
    t = transport()
    async with serve(replies(chunked, sized, until_close, close_after=True)) as port:
        url = f"http://127.0.0.1:{port}/v1/chat"
        async with httpx.AsyncClient(transport=t) as http:
            got = [await call(http, t, url) for _ in range(3)]
        assert got == [{"a": [1, 2]}, {"b": 2}, {"c": 3}]
        # one connection served the first two; a body read to the close ends it
        assert t.pool.connections == []


async def test_chunked_bodies_stream_through_httpx_and_an_informational_answer_is_skipped() -> None:
    events = b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n'
    stream = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
        + b"0\r\n\r\n"
    )
    t = transport()
    async with serve(replies(stream, stream)) as port, httpx.AsyncClient(transport=t) as http:
        for _ in range(2):  # the second on the kept-alive connection
            async with http.stream("POST", f"http://127.0.0.1:{port}/s", content=b"{}") as r:
                assert r.status_code == 200
                assert [line async for line in r.aiter_lines()] == [
                    'data: {"n": 1}',
                    "",
                    'data: {"n": 2}',
                    "",
                ]
        assert len(t.pool.connections) == 1


async def test_an_answer_with_bare_line_feeds_is_read() -> None:
    """A head ended by LFs alone (some servers send them; h11 took them too)."""
    bare = b'HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 8\n\n{"d": 4}'
    crlf = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    t = transport()
    async with serve(replies(bare, crlf)) as port, httpx.AsyncClient(transport=t) as http:
        url = f"http://127.0.0.1:{port}/x"
        assert await call(http, t, url) == {"d": 4}
        r = await http.post(url, content=b"{}")  # the same connection, kept alive
        assert r.json() == {} and r.headers["content-length"] == "2"
        assert len(t.pool.connections) == 1


async def test_no_body_after_head_204_and_a_body_cut_short_is_truncated() -> None:
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    cut = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"x"'
    t = transport()
    async with serve(replies(head_answer, no_content, cut, close_after=True)) as port:
        url = f"http://127.0.0.1:{port}/x"
        async with httpx.AsyncClient(transport=t) as http:
            r = await http.head(url)
            assert (r.status_code, r.content) == (200, b"")
            r = await http.post(url, content=b"1")
            assert (r.status_code, r.content) == (204, b"")
            with pytest.raises(BadModelResponse, match="truncated response body"):
                await call(http, t, url)


async def test_a_read_deadline_is_a_gap_without_bytes_not_the_whole_answer() -> None:
    """Bytes every 0.1 s for 0.8 s under a 0.3 s read timeout: answered (httpx's
    meaning of a read timeout); a server silent for longer times out."""
    body = b'{"slow": "' + b"x" * 8 + b'"}'

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body))
        for n in range(len(body)):
            writer.write(body[n : n + 1])
            await writer.drain()
            await asyncio.sleep(0.8 / len(body))
        await read_request(reader)
        await asyncio.sleep(10)

    t = transport()
    async with serve(drip) as port, httpx.AsyncClient(transport=t) as http:
        url = f"http://127.0.0.1:{port}/x"
        got = await call(http, t, url, timeout=0.3)
        assert got == {"slow": "x" * 8}
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await call(http, t, url, timeout=0.3)
        assert 0.25 < asyncio.get_running_loop().time() - started < 3


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(100))

    t = transport()
    async with serve(record) as port, httpx.AsyncClient(transport=t) as http:
        url = f"http://127.0.0.1:{port}/x"
        with pytest.raises(httpx.LocalProtocolError):
            await post_json(
                http, url, model="m", headers={"authorization": "Bearer k\r\nx-evil: 1"},
                body={}, timeout=5, max_bytes=1000, transport=t,
            )  # fmt: skip
    assert seen == []


async def test_a_connection_the_server_says_it_closes_is_not_reused() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    accepted = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()

    t = transport()
    async with serve(handler) as port, httpx.AsyncClient(transport=t) as http:
        for _ in range(3):
            got = await call(http, t, f"http://127.0.0.1:{port}/x")
            assert got == {}
    assert accepted == 3


def _self_signed(tmp_path: object) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    path = f"{tmp_path}/cert.pem"
    with open(path, "wb") as f:
        f.write(pem)
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(path)
    client = ssl.create_default_context(cafile=path)
    return server, client


async def test_https_verifies_the_server_and_reuses_the_connection(tmp_path: object) -> None:
    server, client = _self_signed(tmp_path)
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    t = AsyncioTransport(limits=httpx.Limits(), verify=client)
    async with serve(replies(ok, ok), server) as port, httpx.AsyncClient(transport=t) as http:
        for _ in range(2):
            got = await call(http, t, f"https://localhost:{port}/x")
            assert got == {}
        assert len(t.pool.connections) == 1
    untrusted = transport()  # the system's CAs: the self-signed certificate is refused
    async with serve(replies(ok), server) as port, httpx.AsyncClient(transport=untrusted) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"https://localhost:{port}/x", content=b"{}")


async def test_a_call_cancelled_mid_answer_frees_its_connection_and_slot() -> None:
    """A deadline that cancels a call while it waits for the answer closes that
    connection (half an answer may follow) and frees its slot: with one connection
    allowed, the next call gets a new one."""
    arrived = asyncio.Event()
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    accepted = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        if accepted == 1:
            arrived.set()
            await asyncio.sleep(10)  # never answers the first call
        writer.write(ok)
        await writer.drain()
        await reader.read()

    t = transport(max_connections=1)
    async with serve(handler) as port, httpx.AsyncClient(transport=t) as http:
        url = f"http://127.0.0.1:{port}/x"
        first = asyncio.ensure_future(call(http, t, url))
        async with asyncio.timeout(5):
            await arrived.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert t.pool.connections == []
        async with asyncio.timeout(5):
            assert await call(http, t, url) == {}
        assert accepted == 2
