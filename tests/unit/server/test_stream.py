"""The task event stream's order of live pieces and journaled answers (``_stream``), on a
real SQLite store and event bus: an answer found in the journal before its pieces were
delivered goes out in those pieces once the node has caught up (``delivered``), a piece
after a gap is left to the journal, and pieces of an answer not yet journaled wait
until after the journaled ones."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stalwart.durable import JournalEntry, Store, TaskRecord, open_store
from stalwart.observe import EventBus
from stalwart.server._stream import StreamBuffer, task_events

ANSWER = "Your order #1234 shipped on Monday."


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/s.db")
    yield opened
    await opened.close()


async def _finished_task(store: Store, answers: list[str]) -> str:
    """A succeeded task whose journal holds ``answers`` as model steps 0, 1, ..."""
    task = await store.create_task("helper", {})
    lease = await store.acquire("node-a/helper", 60.0, task_id=task.id)
    assert lease is not None
    entries = [
        JournalEntry(seq, "step", "model", {"content": text, "tool_calls": []})
        for seq, text in enumerate(answers)
    ]
    await store.append(lease, entries)
    await store.finish(lease, "succeeded", {"ok": True})
    return task.id


def _deltas(frames: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(id, data) of each delta frame; the last frame must be the end."""
    assert frames[-1].startswith("event: end"), frames
    out = []
    for frame in frames:
        if "event: delta" in frame:
            lines = dict(line.split(": ", 1) for line in frame.strip().splitlines())
            out.append((lines["id"], json.loads(lines["data"])))
    return out


async def _stream(
    store: Store,
    bus: EventBus,
    task_id: str,
    delivered: _CatchUp | None,
) -> list[str]:
    buffer = StreamBuffer(bus)
    frames = []
    try:
        async with asyncio.timeout(10):
            async for frame in task_events(
                store,
                bus,
                buffer,
                task_id=task_id,
                last_event_id=None,
                closing=asyncio.Event(),
                delivered=delivered,
            ):
                frames.append(frame)
    finally:
        buffer.close()
    return frames[1:]  # after the retry line


class _CatchUp:
    """A ``delivered`` that delivers ``pieces`` (seq, start, text) when called, as a node
    catching up with the agent's channel does; records the task it was given."""

    def __init__(self, bus: EventBus, task_id: str, pieces: list[tuple[int, int, str]]) -> None:
        self.bus, self.task_id, self.pieces = bus, task_id, pieces
        self.seen: list[TaskRecord | None] = []

    async def __call__(self, task: TaskRecord | None) -> None:
        self.seen.append(task)
        for seq, start, text in self.pieces:
            self.bus.notify(
                "task.delta", task_id=self.task_id, seq=seq, start=start, end=start + len(text),
                text=text, agent="helper",
            )  # fmt: skip


def _split(text: str, size: int) -> list[tuple[int, int, str]]:
    return [(0, i, text[i : i + size]) for i in range(0, len(text), size)]


async def test_journaled_answer_goes_out_in_its_live_pieces_once_they_are_delivered(
    store: Store,
) -> None:
    task_id = await _finished_task(store, [ANSWER])
    bus = EventBus(log=False)
    delivered = _CatchUp(bus, task_id, _split(ANSWER, 10))
    deltas = _deltas(await _stream(store, bus, task_id, delivered))
    assert [d["text"] for _, d in deltas] == [ANSWER[i : i + 10] for i in range(0, 35, 10)]
    assert [i for i, _ in deltas] == ["0:10", "0:20", "0:30", f"0:{len(ANSWER)}"]
    seen = delivered.seen
    assert len(seen) == 1 and seen[0] is not None and seen[0].id == task_id

    # without a way to catch up, the journal's whole answer goes out (other nodes' view)
    whole = _deltas(await _stream(store, EventBus(log=False), task_id, None))
    assert whole == [(f"0:{len(ANSWER)}", {"seq": 0, "start": 0, "text": ANSWER})]


async def test_a_piece_after_a_gap_is_left_to_the_journal(store: Store) -> None:
    task_id = await _finished_task(store, [ANSWER])
    bus = EventBus(log=False)
    # the first piece never came (the buffer was full): the later ones would leave a hole
    delivered = _CatchUp(bus, task_id, _split(ANSWER, 10)[1:])
    deltas = _deltas(await _stream(store, bus, task_id, delivered))
    assert deltas == [(f"0:{len(ANSWER)}", {"seq": 0, "start": 0, "text": ANSWER})]


async def test_pieces_of_an_answer_not_journaled_yet_follow_the_journaled_ones(
    store: Store,
) -> None:
    first, second = ANSWER, "Anything else?"
    task_id = await _finished_task(store, [first])
    bus = EventBus(log=False)
    # the node catches up with both: the end of answer 0 and the start of answer 1
    delivered = _CatchUp(bus, task_id, [(0, 0, first[:20]), (1, 0, second[:8])])
    deltas = _deltas(await _stream(store, bus, task_id, delivered))
    assert (
        deltas
        == [
            ("0:20", {"seq": 0, "start": 0, "text": first[:20]}),
            (f"0:{len(first)}", {"seq": 0, "start": 20, "text": first[20:]}),  # the journal's rest
            ("1:8", {"seq": 1, "start": 0, "text": second[:8]}),
        ]
    )
