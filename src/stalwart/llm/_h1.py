"""One HTTP/1.1 client connection as an :class:`asyncio.Protocol`: a request sent in one
write, the answer's head parsed from the protocol's own buffer, its body read by length,
in chunks, or until the close.

It replaces httpcore's connection and h11 under the model clients' transport: per call
they built h11 event objects, ran its state machine per event, took an anyio lock and a
cancel scope per read; here a call is one ``write``, one wait for the head (woken when
enough bytes arrived, not per packet) and a slice of the buffer (issue 19: about half a
model call's client CPU went to that layer, ``bench/http_client.py``).

Errors are httpx's (``ReadTimeout``, ``WriteTimeout``, ``ReadError``, ``WriteError``,
``RemoteProtocolError``), which the resilience layer classifies as it did.
A read's deadline is httpx's: no byte within ``timeout`` seconds (one timer per wait,
moved on when bytes came in meanwhile, not re-armed per packet).
"""

from __future__ import annotations

import asyncio
import re

import httpx

__all__ = ["BodyTooLarge", "Connection", "Stale", "Truncated"]

_HIGH_WATER = 256 * 1024
"""Bytes buffered before the protocol stops reading from the socket (resumes under half);
a body read whole (:meth:`Connection.read_all`) raises it to the body's length."""
_MAX_HEAD = 64 * 1024
"""The longest response head taken (status line and headers)."""

_BLANK_LINE = re.compile(rb"\n\r?\n")
"""The end of an answer's head (CRLF CRLF, or bare LFs as some servers send)."""

_UNTIL_CLOSE = -1
_CHUNKED = -2
# chunked decoding states
_SIZE, _DATA, _CRLF, _TRAILER = range(4)


class BodyTooLarge(Exception):
    """The body is longer than the caller's limit (``declared``: its Content-Length)."""

    def __init__(self, declared: int | None) -> None:
        super().__init__(declared)
        self.declared = declared


class Stale(httpx.RemoteProtocolError):
    """The server closed the connection before any byte of the answer (a kept-alive
    connection it closed while the request was on its way: the request may be re-sent)."""


class Truncated(httpx.RemoteProtocolError):
    """The connection ended before the body did."""


class Connection(asyncio.Protocol):
    """An HTTP/1.1 connection: one request at a time, kept alive between them."""

    def __init__(self, key: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.paused_reading = False
        self.paused_writing = False
        self.high_water = _HIGH_WATER
        self.need = 1  # the waiter wakes once the buffer holds this much (or at the end)
        self.waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.armed_at = 0.0
        self.last_data = 0.0
        self.idle_since: float | None = None
        self.served = 0  # answers read to their end on this connection
        # the current answer
        self.status = 0
        self.reason = b""
        self.headers: dict[str, str] = {}
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.remaining = 0  # body bytes left (or _UNTIL_CLOSE, _CHUNKED)
        self.chunk_state = _SIZE
        self.keep_alive = False
        self.done = True  # the last answer was read to its end

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        self.last_data = self.loop.time()
        if len(buffer) > self.high_water and self.transport is not None:
            self.transport.pause_reading()
            self.paused_reading = True
        waiter = self.waiter
        if waiter is not None and len(buffer) >= self.need and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.waiter)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self.waiter)
        _wake(self.write_waiter)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        _wake(self.write_waiter)

    # -- state for the pool ---------------------------------------------------------------------
    def is_closed(self) -> bool:
        return self.eof or self.transport is None or self.transport.is_closing()

    def has_expired(self, expiry: float | None = None) -> bool:
        """Closed by the server, sent bytes nobody asked for, or idle past ``expiry`` s."""
        if self.is_closed() or self.buffer:
            return True
        since = self.idle_since
        return expiry is not None and since is not None and self.loop.time() - since > expiry

    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.buffer and not self.is_closed()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.eof = True

    # -- one exchange ---------------------------------------------------------------------------
    async def send(self, data: bytes, timeout: float | None) -> None:
        """Write a whole request (one ``write``); WriteTimeout when the socket's buffer does
        not drain within ``timeout`` s."""
        transport = self.transport
        if self.is_closed() or transport is None:
            raise Stale("the connection is closed")
        self.done = False
        self.idle_since = None
        transport.write(data)
        if self.paused_writing:
            self.write_waiter = self.loop.create_future()
            timer = None if timeout is None else self.loop.call_later(timeout, _expire, self)
            try:
                await self.write_waiter
            except TimeoutError:
                raise httpx.WriteTimeout(f"could not write within {timeout} s") from None
            finally:
                self.write_waiter = None
                if timer is not None:
                    timer.cancel()
            if self.error is not None:
                raise httpx.WriteError(str(self.error))

    async def read_head(self, timeout: float | None, *, head_request: bool = False) -> None:
        """Read the answer's status and headers (informational 1xx answers skipped) and how
        its body is framed. Stale when the connection ended before any byte of it."""
        first = True
        while True:
            found = _BLANK_LINE.search(self.buffer)
            while found is None:
                if len(self.buffer) > _MAX_HEAD:
                    raise httpx.RemoteProtocolError("the answer's head is too long")
                if self.eof:
                    if first and not self.buffer:
                        if self.error is not None and not isinstance(self.error, OSError):
                            raise httpx.ReadError(str(self.error))
                        raise Stale("Server disconnected without sending a response.")
                    raise httpx.RemoteProtocolError("the connection closed mid-head")
                scanned = max(0, len(self.buffer) - 2)
                await self._wait(len(self.buffer) + 1, timeout)
                found = _BLANK_LINE.search(self.buffer, scanned)
            first = False
            end = found.start()
            if end and self.buffer[end - 1] == 13:  # the CR of the last line's CRLF
                end -= 1
            block = bytes(self.buffer[:end])
            del self.buffer[: found.end()]
            self._parse_head(block)
            if not 100 <= self.status < 200:
                break
            if self.status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols")
        self._frame(head_request)

    def _parse_head(self, block: bytes) -> None:
        lines = block.replace(b"\r\n", b"\n").split(b"\n")  # bare LFs taken, as h11 did
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else b""
        version_11 = parts[0] == b"HTTP/1.1"
        raw: list[tuple[bytes, bytes]] = []
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in b" \t" or name[:1] in b" \t":
                raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
            value = value.strip(b" \t")
            raw.append((name, value))
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        self.raw_headers = raw
        self.headers = fields
        connection = fields.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (version_11 or "keep-alive" in connection)

    def _frame(self, head_request: bool) -> None:
        fields = self.headers
        if head_request or self.status in (204, 304):
            self.remaining = 0
        elif "transfer-encoding" in fields:
            chunked = fields["transfer-encoding"].lower().rstrip().endswith("chunked")
            self.remaining = _CHUNKED if chunked else _UNTIL_CLOSE
            self.chunk_state = _SIZE
        elif "content-length" in fields:
            values = {v.strip() for v in fields["content-length"].split(",")}
            value = values.pop() if len(values) == 1 else ""
            if not value.isdigit():
                raise httpx.RemoteProtocolError(f"bad Content-Length {fields['content-length']!r}")
            self.remaining = int(value)
        else:
            self.remaining = _UNTIL_CLOSE
        if self.remaining == _UNTIL_CLOSE:
            self.keep_alive = False
        self.done = self.remaining == 0

    async def read_all(self, limit: int, timeout: float | None) -> bytes:
        """The whole body, at most ``limit`` bytes (else :class:`BodyTooLarge`)."""
        remaining = self.remaining
        if remaining >= 0:
            if remaining > limit:
                raise BodyTooLarge(remaining)
            if len(self.buffer) < remaining:  # one wake for the whole body
                self.high_water = max(_HIGH_WATER, remaining + 1)
                if self.paused_reading and self.transport is not None:
                    self.paused_reading = False  # paused while the head was read
                    self.transport.resume_reading()
                try:
                    while len(self.buffer) < remaining:
                        if self.eof:
                            raise Truncated(
                                f"the connection closed {remaining - len(self.buffer)} bytes "
                                "before the body's end"
                            )
                        await self._wait(remaining, timeout)
                finally:
                    self.high_water = _HIGH_WATER
            return self._take(remaining)
        parts: list[bytes] = []
        size = 0
        while part := await self.read_some(timeout):
            size += len(part)
            if size > limit:
                raise BodyTooLarge(None)
            parts.append(part)
        return b"".join(parts)

    async def read_some(self, timeout: float | None) -> bytes:
        """The next piece of the body; ``b""`` at its end."""
        while True:
            remaining = self.remaining
            if remaining == 0 or self.done:
                self.done = True
                return b""
            buffer = self.buffer
            if remaining > 0:
                if buffer:
                    return self._take(min(remaining, len(buffer)))
            elif remaining == _UNTIL_CLOSE:
                if buffer:
                    return self._take_raw(len(buffer))
                if self.eof:
                    self.done = True
                    return b""
            else:
                part = self._chunk()
                if part is not None:
                    if part:
                        return part
                    continue  # a chunk's boundary passed, or the end reached
            if self.eof:
                raise Truncated("the connection closed before the body's end")
            await self._wait(len(buffer) + 1, timeout)

    def _take(self, n: int) -> bytes:
        data = self._take_raw(n)
        self.remaining -= n
        if self.remaining == 0:
            self.done = True
        return data

    def _take_raw(self, n: int) -> bytes:
        buffer = self.buffer
        if n == len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:n])
            del buffer[:n]
        if self.paused_reading and len(buffer) <= self.high_water // 2:
            self.paused_reading = False
            if self.transport is not None:
                self.transport.resume_reading()
        return data

    def _chunk(self) -> bytes | None:
        """Advance the chunked decoding: data (``b""`` when only framing was consumed),
        or None when more bytes are needed."""
        buffer = self.buffer
        state = self.chunk_state
        if state == _DATA:
            if not buffer:
                return None
            n = min(self.chunk_left, len(buffer))
            data = self._take_raw(n)
            self.chunk_left -= n
            if self.chunk_left == 0:
                self.chunk_state = _CRLF
            return data
        if state == _CRLF:
            if len(buffer) < 2:
                return None
            if buffer[:2] != b"\r\n":
                raise httpx.RemoteProtocolError("a chunk did not end with CRLF")
            del buffer[:2]
            self.chunk_state = _SIZE
            return b""
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise httpx.RemoteProtocolError("a chunk's size line is too long")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        if state == _TRAILER:
            if not line:
                self.remaining = 0
                self.done = True
            return b""
        size = line.split(b";", 1)[0].strip()
        try:
            self.chunk_left = int(size, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size {size[:20]!r}") from None
        self.chunk_state = _DATA if self.chunk_left else _TRAILER
        return b""

    chunk_left = 0

    async def _wait(self, need: int, timeout: float | None) -> None:
        """Until the buffer holds ``need`` bytes or the connection ends; ReadTimeout when
        no byte arrives for ``timeout`` s."""
        loop = self.loop
        self.need = need
        waiter = self.waiter = loop.create_future()
        if timeout is not None:
            self.armed_at = loop.time()
            self.timer = loop.call_at(self.armed_at + timeout, self._lapse, timeout)
        try:
            await waiter
        except TimeoutError:
            raise httpx.ReadTimeout(f"no data within {timeout} s") from None
        finally:
            self.waiter = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

    def _lapse(self, timeout: float) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.last_data > self.armed_at:  # bytes came in since: the deadline moves on
            self.armed_at = self.last_data
            self.timer = self.loop.call_at(self.last_data + timeout, self._lapse, timeout)
            return
        waiter.set_exception(TimeoutError())


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _expire(connection: Connection) -> None:
    waiter = connection.write_waiter
    if waiter is not None and not waiter.done():
        waiter.set_exception(TimeoutError())
