"""The frame channel over a real socket pair: frames of one loop turn leave in one write,
in order; drain and close write what was sent first."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from stalwart.runtime._channel import Channel, ChannelClosed
from stalwart.runtime._messages import Heartbeat, LogLine, encode_frame

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Channel, Channel, list[bytes]]]:
    a, b = socket.socketpair()
    sender = await Channel.open(a, 2**20)
    receiver = await Channel.open(b, 2**20)
    writes: list[bytes] = []  # every write the sender's stream was asked for
    real_write = sender._writer.write

    def counted(data: bytes) -> None:
        writes.append(bytes(data))
        real_write(data)

    sender._writer.write = counted  # type: ignore[method-assign]
    yield sender, receiver, writes
    sender.close()
    receiver.close()


async def test_frames_sent_in_one_turn_leave_in_one_write_in_order(pair) -> None:
    sender, receiver, writes = pair
    frames = [Heartbeat(seq=n) for n in range(5)] + [LogLine(line="done")]
    for frame in frames:
        sender.send(frame)
    assert writes == []  # nothing written before the loop's next turn
    got = [await asyncio.wait_for(receiver.receive(), 5) for _ in frames]
    assert got == frames
    assert writes == [b"".join(encode_frame(f) for f in frames)]


async def test_frames_of_later_turns_are_later_writes(pair) -> None:
    sender, receiver, writes = pair
    sender.send(Heartbeat(seq=1))
    assert await asyncio.wait_for(receiver.receive(), 5) == Heartbeat(seq=1)
    sender.send(Heartbeat(seq=2))
    assert await asyncio.wait_for(receiver.receive(), 5) == Heartbeat(seq=2)
    assert len(writes) == 2


async def test_drain_writes_this_turns_frames_first(pair) -> None:
    sender, receiver, writes = pair
    sender.send(Heartbeat(seq=1))
    await sender.drain()
    assert writes == [encode_frame(Heartbeat(seq=1))]
    assert await asyncio.wait_for(receiver.receive(), 5) == Heartbeat(seq=1)


async def test_close_writes_what_was_sent_then_the_peer_sees_the_end(pair) -> None:
    sender, receiver, _ = pair
    sender.send(LogLine(line="last words"))
    sender.close()
    assert await asyncio.wait_for(receiver.receive(), 5) == LogLine(line="last words")
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(receiver.receive(), 5)
    sender.send(LogLine(line="after close"))  # dropped, as before: never raises


async def test_raw_bytes_follow_the_frames_already_sent(pair) -> None:
    sender, receiver, _ = pair
    sender.send(Heartbeat(seq=1))
    sender.send_raw(encode_frame(Heartbeat(seq=2)))
    assert await asyncio.wait_for(receiver.receive(), 5) == Heartbeat(seq=1)
    assert await asyncio.wait_for(receiver.receive(), 5) == Heartbeat(seq=2)
