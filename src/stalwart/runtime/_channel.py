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
        self._writer.write(encode_frame(msg))

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes (tests use it to inject malformed frames)."""
        self._writer.write(data)

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError:
            pass

    def close(self) -> None:
        self.closed = True
        self._writer.close()
