"""A framed, typed message channel over a stream socket (both ends use it)."""

from __future__ import annotations

import asyncio
import socket

from stalwart.errors import ProtocolError
from stalwart.runtime._messages import HEADER, Frame, decode_frame, encode_frame

__all__ = ["Channel", "ChannelClosed", "StreamBroken"]


class ChannelClosed(Exception):
    """The peer closed the channel cleanly (between frames)."""


class StreamBroken(ProtocolError):
    """The byte stream cannot be trusted any more (oversized length, EOF inside a frame)."""


class Channel:
    """Frames over one connected socket.

    ``receive()`` returns the next decoded frame; it raises :class:`ChannelClosed`
    at a clean EOF, :class:`StreamBroken` when framing is lost, and a plain
    :class:`ProtocolError` for a frame that is well delimited but undecodable
    (the caller may log it and keep reading).
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_bytes: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max = max_frame_bytes
        self.closed = False
        # Frames sent in one turn of the event loop leave in one write (see :meth:`send`).
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None

    @classmethod
    async def open(cls, sock: socket.socket, max_frame_bytes: int) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer, max_frame_bytes)

    async def receive(self) -> Frame:
        try:
            header = await self._reader.readexactly(HEADER.size)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise ChannelClosed from None
            raise StreamBroken("stream ended inside a frame header") from None
        except ConnectionError:
            raise ChannelClosed from None
        (length,) = HEADER.unpack(header)
        if length > self._max:
            raise StreamBroken(
                f"frame of {length} bytes exceeds max_frame_bytes={self._max}; "
                "the stream cannot be resynchronised"
            )
        try:
            body = await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise StreamBroken(f"stream ended inside a frame of {length} bytes") from None
        return decode_frame(body)

    def send(self, msg: Frame) -> None:
        """Queue ``msg`` for writing. Never blocks; a closed channel drops it silently.

        Back-pressure is the caller's job (calls are bounded by their deadlines);
        a dead peer is detected by the reader side, not here.
        """
        if self.closed or self._writer.is_closing():
            return
        self._pending.append(encode_frame(msg))
        if self._flush_handle is None:
            # One write per loop turn, not one per frame: a task's step sends its log
            # line, its events and its reply in one turn, and each write is a syscall
            # that also gives up the GIL to the process's other threads (the SQLite
            # writer, the redaction thread), which the loop then waits to get back
            # (bench/agent.py: ~14% of an agent's busy samples were in the socket
            # write). Order is kept; a frame waits at most until the loop's next turn.
            try:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no loop runs (a process ending): write it now
                self._flush()

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        if pending and not self._writer.is_closing():
            self._writer.write(b"".join(pending))

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes (tests use it to inject malformed frames), after the frames
        already sent."""
        self._flush_now()
        self._writer.write(data)

    def _flush_now(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()

    async def drain(self) -> None:
        """Wait until what was sent is handed to the socket (the frames of this turn
        included)."""
        self._flush_now()
        try:
            await self._writer.drain()
        except ConnectionError:
            pass

    def close(self) -> None:
        """Close after writing what was sent."""
        self._flush_now()
        self.closed = True
        self._writer.close()
