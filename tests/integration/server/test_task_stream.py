"""``GET /v1/tasks/{id}/events`` on a real node: a streaming agent's model text reaches
the client as it is generated, a reconnect with ``Last-Event-ID`` continues where the
client was, and a task killed mid-way and resumed never sends the same text twice: per
journal position, the text a client assembled equals the journaled answer exactly."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pathlib
import signal
from typing import Any

import httpx
import pytest
from tests.integration.server.conftest import TOKEN

from stalwart.cli._watch import watch
from stalwart.node import app_node

pytestmark = pytest.mark.timeout(120)

APP = "tests.integration.server.stream_app:app"
TICKET = {"text": "Where is my order #1234? Thanks, bo@example.com", "from": "bo@example.com"}


async def _events(
    client: httpx.AsyncClient, task_id: str, last: str | None = None, stop_after: int = 0
) -> list[dict[str, Any]]:
    """The stream's events (``stop_after``: hang up after that many deltas)."""
    headers = {"Last-Event-ID": last} if last else {}
    got: list[dict[str, Any]] = []
    async with client.stream(
        "GET", f"/v1/tasks/{task_id}/events", headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                event[key] = value.strip()
            elif not line and event:
                event["data"] = json.loads(event["data"]) if "data" in event else None
                got.append(event)
                event = {}
                deltas = [e for e in got if e["event"] == "delta"]
                if got[-1]["event"] == "end" or (stop_after and len(deltas) >= stop_after):
                    return got
    return got


def _assembled(events: list[dict[str, Any]]) -> dict[int, str]:
    text: dict[int, str] = {}
    for e in events:
        if e["event"] == "delta":
            text[e["data"]["seq"]] = text.get(e["data"]["seq"], "") + e["data"]["text"]
    return text


async def _answers(client: httpx.AsyncClient, task_id: str) -> dict[int, str]:
    journal = (await client.get(f"/v1/tasks/{task_id}/journal")).json()
    found = {}
    for step in journal["steps"]:
        value = step.get("value")
        if step["name"] == "model" and isinstance(value, dict) and value.get("content"):
            found[step["seq"]] = value["content"]
    return found


async def _streaming_task(start_node: Any, store: str) -> tuple[Any, Any, str]:
    """A node of the streaming app whose model answers take 0.3 s (long enough to join
    mid-way), and the id of a resolver task submitted to it."""
    node, service = app_node(APP, store=store)
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        service.sim.world.set_fault(model, latency_ms=300)
    r = await n.client.post("/v1/tasks", json={"agent": "resolver", "input": TICKET})
    assert r.status_code == 202, r.text
    return node, n, r.json()["id"]


async def test_streamed_text_equals_the_journal_and_resumes_after_last_event_id(
    start_node, tmp_path: pathlib.Path
) -> None:
    _, n, task_id = await _streaming_task(start_node, f"sqlite:///{tmp_path}/s.db")
    events = await _events(n.client, task_id)
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "succeeded"
    deltas = [e for e in events if e["event"] == "delta"]
    assert deltas, events
    ids = [tuple(map(int, e["id"].split(":"))) for e in deltas]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    answers = await _answers(n.client, task_id)
    assert answers and _assembled(events) == answers  # nothing lost, nothing twice
    # live: some answer came in several pieces, as generated (the journal has it whole)
    pieces = [sum(e["data"]["seq"] == seq for e in deltas) for seq in answers]
    assert max(pieces) > 1, pieces

    # a client that got the first piece reconnects: it gets exactly the rest
    first = deltas[0]
    rest = await _events(n.client, task_id, last=first["id"])
    whole = _assembled([first, *rest])
    assert whole == answers
    # an unknown task is 404; a malformed Last-Event-ID starts from the beginning
    assert (await n.client.get("/v1/tasks/nope/events")).status_code == 404
    again = await _events(n.client, task_id, last="garbage")
    assert _assembled(again) == answers

    # the CLI prints the same text and exits 0 for a succeeded task
    out = io.StringIO()
    args = argparse.Namespace(task_id=task_id, url=n.url, token=TOKEN, timeout=60.0, json=False)
    code = await asyncio.to_thread(watch, args, out)
    assert code == 0
    assert out.getvalue() == "".join(answers[seq] for seq in sorted(answers)) + "\n"


async def test_a_task_killed_mid_stream_resumes_without_sending_text_twice(
    start_node, tmp_path: pathlib.Path
) -> None:
    node, n, task_id = await _streaming_task(start_node, f"sqlite:///{tmp_path}/k.db")
    head = await _events(n.client, task_id, stop_after=1)  # the client got a first piece
    pid = node.runtime.whereis("resolver").pid
    os.kill(pid, signal.SIGKILL)  # the resolver dies mid-task; its supervisor restarts it
    tail = await _events(n.client, task_id, last=head[-1]["id"])
    assert tail[-1]["event"] == "end" and tail[-1]["data"]["status"] == "succeeded"
    record = (await n.client.get(f"/v1/tasks/{task_id}")).json()
    assert record["attempts"] >= 2  # it was resumed
    assert _assembled(head + tail) == await _answers(n.client, task_id)


async def test_a_plain_python_agent_streams_each_of_its_calls(
    start_node, tmp_path: pathlib.Path
) -> None:
    """Not the helpdesk: a PythonAgent's own ``ctx.call_model(stream=True)`` calls, two
    journal positions, each streamed and each equal to its journaled answer."""
    node, service = app_node(
        "tests.integration.server.stream_plain_app:app", store=f"sqlite:///{tmp_path}/p.db"
    )
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        service.sim.world.set_fault(model, latency_ms=300)
    text = "The nightly export failed twice because the disk was full; it was freed at 04:10."
    r = await n.client.post("/v1/tasks", json={"agent": "briefer", "input": {"text": text}})
    assert r.status_code == 202, r.text
    events = await _events(n.client, r.json()["id"])
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "succeeded"
    answers = await _answers(n.client, r.json()["id"])
    assert len(answers) == 2 and _assembled(events) == answers


async def test_watch_exits_4_for_a_task_that_did_not_succeed(
    start_node, tmp_path: pathlib.Path, capsys
) -> None:
    """`stalwart task watch` of a cancelled task ends with exit 4, as `task status` does,
    saying how it ended; an unknown task is exit 2."""
    _, n, task_id = await _streaming_task(start_node, f"sqlite:///{tmp_path}/c.db")
    # at once: its model calls take 0.3 s each, so it is pending or running still
    cancelled = await n.client.post(f"/v1/tasks/{task_id}/cancel", json={"by": "test"})
    assert cancelled.status_code in (200, 202), cancelled.text
    args = argparse.Namespace(task_id=task_id, url=n.url, token=TOKEN, timeout=60.0, json=False)
    assert await asyncio.to_thread(watch, args, io.StringIO()) == 4
    assert "the task ended cancelled" in capsys.readouterr().err
    args.task_id = "nope"
    assert await asyncio.to_thread(watch, args, io.StringIO()) == 2
