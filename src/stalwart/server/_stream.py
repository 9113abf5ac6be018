"""A task's model text as it is generated: ``GET /v1/tasks/{id}/events`` (server-sent events).

An agent with ``stream=True`` publishes each piece of a model answer as a
``task.delta`` event naming the call's journal position (``seq``) and the piece's
character offsets in the answer (``start``, ``end``). This endpoint sends them on:

- ``event: delta``, ``id: SEQ:END``, ``data: {"seq", "start", "text"}``: new text of the
  answer at journal position ``SEQ``, up to character ``END``;
- ``event: end``, ``data: {"status", "outcome"}``: the task finished; the stream closes.

**No text twice.** The event id is where the client is: after a reconnect with
``Last-Event-ID`` (browsers' ``EventSource`` sends it by itself), the stream starts
after it. What the client missed comes from the journal (whole answers of finished
calls) and from the node's buffer of the answer being generated, then live. A task
resumed after a crash replays its journaled calls without calling the model, so it
publishes nothing for them; a call that had not been journaled is made again, and its
pieces up to the client's offset are skipped.

**Live before whole.** The agent publishes an answer's pieces before it journals the
answer, but they take another path to the node (the agent process's channel) than the
answer does (the store), so a node busy elsewhere can read the journal first. Before it
sends a journaled answer the client lacks, the stream catches up with that channel
(``delivered``: on the node running the task's agent, a sync through the process's
channel, which its reader answers at once; at most ``LIVE_GRACE_S``): every piece
published before the journal read has then been delivered, the pieces go out first and
the journal sends only what they miss. A task leased by another node is not waited for
(its pieces never come here); an agent process that does not answer in time (its loop
blocked) gets its answer sent whole from the journal.

**What it cannot promise.** A model call re-made after a crash may answer differently
from the partial text a client already got (a real model is not deterministic); the
journal's whole answer is the truth, in ``GET /v1/tasks/{id}/journal``. Live pieces
reach the node running the task's agent; a client connected to another node of a
cluster gets each answer whole, from the journal, once its call is journaled. Text is
redacted piece by piece (a secret split across two pieces can escape a pattern that
needs it whole; the journal view redacts whole answers).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from stalwart.durable import JournalEntry, Store, TaskRecord
from stalwart.guard import default_redactor
from stalwart.observe import Event, EventBus, Subscription

__all__ = ["LIVE_GRACE_S", "Delivered", "StreamBuffer", "parse_event_id", "task_events"]

_EVENT_ID = re.compile(r"^(\d{1,9}):(\d{1,12})$")
POLL_S = 0.5
"""How often an idle stream looks at the task (finished?) and its journal (another
node's answers)."""
LIVE_GRACE_S = 2.0
"""The longest a stream waits for this node to catch up with the task's agent process
before it sends a journaled answer whole (see ``Delivered``)."""
MAX_BUFFERED_TASKS = 10_000
MAX_BUFFERED_CHARS = 256 * 1024
"""Per task, the most text of its current answer the node keeps for late joiners."""


def parse_event_id(text: str | None) -> tuple[int, int]:
    """``SEQ:END`` -> (seq, end); anything else (none, malformed) -> from the start."""
    if text:
        match = _EVENT_ID.match(text.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    return -1, 0


class StreamBuffer:
    """The node's memory of each running task's answer in progress, so a client joining
    mid-answer gets its beginning: per task, the pieces of its latest ``seq`` only
    (bounded in tasks and characters; a finished answer is read from the journal)."""

    def __init__(self, events: EventBus) -> None:
        self._tasks: collections.OrderedDict[str, tuple[int, list[dict[str, Any]], int]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()  # events may be emitted from worker threads
        self._sub: Subscription = events.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.name != "task.delta":
            return
        piece = _piece(event.fields)
        if piece is None:
            return
        task_id = str(event.fields["task_id"])
        with self._lock:
            seq, pieces, chars = self._tasks.pop(task_id, (piece["seq"], [], 0))
            if piece["seq"] > seq:  # a new answer: the previous one is (being) journaled
                seq, pieces, chars = piece["seq"], [], 0
            if piece["seq"] == seq and chars + len(piece["text"]) <= MAX_BUFFERED_CHARS:
                pieces.append(piece)
                chars += len(piece["text"])
            self._tasks[task_id] = (seq, pieces, chars)
            while len(self._tasks) > MAX_BUFFERED_TASKS:
                self._tasks.popitem(last=False)

    def pieces(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            got = self._tasks.get(task_id)
            return list(got[1]) if got else []

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def close(self) -> None:
        self._sub.close()


def _piece(fields: dict[str, Any]) -> dict[str, Any] | None:
    """A well-formed ``task.delta``'s fields, or None."""
    seq, start, text = fields.get("seq"), fields.get("start"), fields.get("text")
    end = fields.get("end")
    if not (isinstance(seq, int) and isinstance(start, int) and isinstance(text, str)):
        return None
    if not isinstance(end, int):
        end = start + len(text)
    return {"seq": seq, "start": start, "end": end, "text": text}


class _Cursor:
    """Where the client is: journal position and character offset of the answer there."""

    def __init__(self, seq: int, offset: int) -> None:
        self.seq, self.offset = seq, offset

    def take(self, seq: int, start: int, end: int, text: str) -> str | None:
        """The part of a piece the client has not had (None: nothing new); advances."""
        if seq < self.seq or (seq == self.seq and end <= self.offset):
            return None
        if seq == self.seq and start < self.offset:
            cut = self.offset - start
            if len(text) != end - start:  # redaction changed its length: cannot cut it
                return None
            text = text[cut:]
            start = self.offset
        self.seq, self.offset = seq, end
        return text

    def behind(self, seq: int, end: int) -> bool:
        """Whether the client lacks some of the text at ``seq`` up to character ``end``."""
        return seq > self.seq or (seq == self.seq and end > self.offset)

    def joins(self, seq: int, start: int) -> bool:
        """Whether a piece starting at ``start`` of the answer at ``seq`` continues the
        client's text without a gap."""
        return (seq == self.seq and start <= self.offset) or (seq > self.seq and start == 0)


def _frame(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _answers(entries: list[JournalEntry]) -> list[tuple[int, str]]:
    """The whole model answers in a journal: (seq, text)."""
    found = []
    for entry in entries:
        value = entry.value
        if entry.kind == "step" and entry.name == "model" and isinstance(value, dict):
            content = value.get("content")
            if isinstance(content, str) and content:
                found.append((entry.seq, content))
    return found


Delivered = Callable[[TaskRecord | None], Awaitable[None]]
"""Waits until this node has delivered (on its event bus) every ``task.delta`` the task's
agent process published before the caller's last journal read, or ``LIVE_GRACE_S`` has
passed; returns at once when no process of this node can be running the task. The
server's is a sync through the agent's channel (:meth:`stalwart.runtime.Runtime.sync`)."""


async def task_events(
    store: Store,
    events: EventBus,
    buffer: StreamBuffer,
    *,
    task_id: str,
    last_event_id: str | None,
    closing: asyncio.Event,
    delivered: Delivered | None = None,
) -> AsyncIterator[str]:
    """The server-sent events of ``task_id`` after ``last_event_id`` (see the module doc).

    ``delivered``: how this node catches up with the task's live pieces before it sends
    a journaled answer whole (None: it does not wait; the journal's answer goes out as
    soon as the stream reads it)."""
    redact = default_redactor().redact
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
    held: collections.deque[dict[str, Any]] = collections.deque()
    """Live pieces taken from the queue early (to go before a journaled answer), not sent."""
    loop = asyncio.get_running_loop()
    owner = threading.get_ident()

    def put(piece: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # lost live text comes from the journal
            queue.put_nowait(piece)

    def on_event(event: Event) -> None:
        if event.name == "task.delta" and event.fields.get("task_id") == task_id:
            piece = _piece(event.fields)
            if piece is not None:
                if threading.get_ident() == owner:
                    put(piece)
                else:
                    loop.call_soon_threadsafe(put, piece)

    cursor = _Cursor(*parse_event_id(last_event_id))

    def send(seq: int, start: int, end: int, text: str, *, raw: bool) -> str | None:
        new = cursor.take(seq, start, end, text)
        if not new:
            return None
        if raw:  # journal text: redacted here (live pieces were redacted when emitted)
            new = redact(new)
        return _frame("delta", {"seq": seq, "start": end - len(new), "text": new}, f"{seq}:{end}")

    def send_piece(piece: dict[str, Any]) -> str | None:
        return send(piece["seq"], piece["start"], piece["end"], piece["text"], raw=False)

    async def from_journal(task: TaskRecord | None) -> AsyncIterator[str]:
        """The journaled answers the client lacks: their live pieces first, when this
        node streams them, then what the pieces did not bring, from the journal."""
        load = await store.load_journal(task_id)
        answers = _answers(list(load.entries))
        if not any(cursor.behind(seq, len(content)) for seq, content in answers):
            return
        if delivered is not None:
            # The agent publishes an answer's pieces before it journals the answer, but
            # they reach this node by another path (its channel) than the journal does
            # (the store): wait until that path has caught up with what was just read.
            await delivered(task)
        while not queue.empty():
            held.append(queue.get_nowait())
        for seq, content in answers:
            while held and held[0]["seq"] <= seq:
                piece = held.popleft()
                # a piece after a gap (the queue overflowed, the buffer was full) is left
                # to the journal, which has the whole answer
                if cursor.joins(piece["seq"], piece["start"]) and (live := send_piece(piece)):
                    yield live
            if frame := send(seq, 0, len(content), content, raw=True):
                yield frame

    async def next_piece() -> dict[str, Any]:
        return held.popleft() if held else await queue.get()

    sub = events.subscribe(on_event)  # before reading what happened: no gap between
    try:
        yield "retry: 1000\n\n"
        async for caught_up in from_journal(await store.get_task(task_id)):
            yield caught_up
        for piece in buffer.pieces(task_id):  # the answer being generated, so far
            if buffered := send_piece(piece):
                yield buffered
        while not closing.is_set():
            try:
                async with asyncio.timeout(POLL_S):
                    piece = await next_piece()
            except TimeoutError:
                task = await store.get_task(task_id)
                async for journaled in from_journal(task):  # answers not streamed here
                    yield journaled
                if task is None or task.finished:
                    buffer.forget(task_id)
                    outcome = default_redactor().redact_data(
                        task.outcome if task else None, policy="redact"
                    )
                    status = task.status if task else "deleted"
                    yield _frame("end", {"status": status, "outcome": outcome})
                    return
                continue
            if live := send_piece(piece):
                yield live
    finally:
        sub.close()
