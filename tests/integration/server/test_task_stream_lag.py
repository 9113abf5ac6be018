"""A node that lags behind its agent process still streams: the agent publishes an
answer's pieces before it journals the answer, but the pieces reach the node through
the process's channel and the journal through the store, so a busy node can read the
journal first. ``GET /v1/tasks/{id}/events`` then catches up with the channel (a sync
through it) and sends the live pieces, not the journal's whole answer.

The lag is real: once the client has the first piece, the node's event loop is held (a
blocking wait in it, as a long CPU burst would) until the task has finished in the
store, so the rest of the pieces are still in the channel when the stream's idle poll
reads the finished task's journal."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.integration.server.test_task_stream import _answers, _assembled

from stalwart.durable import open_store
from stalwart.node import Tasks, app_node
from stalwart.server._stream import POLL_S

pytestmark = pytest.mark.timeout(120)

APP = "tests.integration.server.stream_plain_app:app"


async def _read(
    client: httpx.AsyncClient, task_id: str, on_first_delta: Callable[[], None]
) -> list[dict[str, Any]]:
    """The stream's events; ``on_first_delta`` runs (in this loop) once the first piece
    has arrived: the server's stream then waits, idle, for the next one."""
    got: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    async with client.stream("GET", f"/v1/tasks/{task_id}/events", timeout=60) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                event[key] = value.strip()
            elif not line and "event" in event:
                event["data"] = json.loads(event["data"])
                got.append(event)
                event = {}
                if got[-1]["event"] == "end":
                    return got
                if sum(e["event"] == "delta" for e in got) == 1:
                    on_first_delta()
    return got


def _hold_the_loop_until_finished(url: str, task_id: str) -> float:
    """Block the calling (the node's) event loop until the task has finished in the
    store, read from another thread's loop; the seconds it was held."""

    async def finished() -> None:
        store = await open_store(url)
        try:
            await Tasks(None, store).wait(task_id, timeout=60.0)
        finally:
            await store.close()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, finished()).result(timeout=90.0)
    return time.monotonic() - started


async def test_live_pieces_win_over_the_journal_when_the_node_lags(
    start_node, tmp_path: pathlib.Path
) -> None:
    url = f"sqlite:///{tmp_path}/lag.db"
    node, service = app_node(APP, store=url)
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        # the second call alone takes longer than the stream's idle poll
        service.sim.world.set_fault(model, latency_ms=int(POLL_S * 1000) + 100)
    text = "The nightly export failed twice because the disk was full; it was freed at 04:10."
    r = await n.client.post("/v1/tasks", json={"agent": "briefer", "input": {"text": text}})
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    held: list[float] = []

    def lag() -> None:  # from the first piece on, the node reads nothing of the agent
        held.append(_hold_the_loop_until_finished(url, task_id))

    events = await _read(n.client, task_id, lag)
    # the premise: the stream's idle poll came due while the node read nothing of the
    # agent's channel, so its next look finds the task finished and its journal whole
    assert held and held[0] > POLL_S, held
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "succeeded"
    answers = await _answers(n.client, task_id)
    assert len(answers) == 2 and _assembled(events) == answers  # nothing lost, nothing twice
    deltas = [e for e in events if e["event"] == "delta"]
    pieces = {seq: sum(e["data"]["seq"] == seq for e in deltas) for seq in answers}
    # live: each answer in the pieces the model generated, not whole from the journal
    assert all(count > 1 for count in pieces.values()), (pieces, events)
    ids = [tuple(map(int, e["id"].split(":"))) for e in deltas]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
