"""The load driver's HTTP task API (``HttpTasks``) against a real HTTP server on loopback:
each answer of ``POST /v1/tasks`` maps onto stalwart's error for it, and a submission
whose answer is lost is looked up by its id before it is called refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import ClassVar

import pytest
from tests._loopback import JsonHandler, free_port, threaded

from stalwart.chaos._http_tasks import HttpTasks
from stalwart.errors import InputRejected, Overloaded, StalwartError, StoreUnavailable

STORED = {"cut-stored"}
"""Tasks the server holds though it never answered their submission."""


class _Api(JsonHandler):
    protocol_version = "HTTP/1.1"  # kept alive, as a node's API
    posted: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer tok"
        task_id = body["task_id"]
        self.posted.append(task_id)
        kind = task_id.partition("-")[0]
        if kind == "cut":  # the request arrived; the answer never leaves
            self.close_connection = True
            return
        answers = {
            "ok": (202, {"id": task_id, "agent": body["agent"], "status": "pending"}, {}),
            "full": (429, {"error": "12 tasks wait: the queue is full"}, {"Retry-After": "2"}),
            "bad": (400, {"error": "input: 'sku' is required"}, {}),
            "down": (503, {"error": "the store is unavailable"}, {}),
            "odd": (418, {"error": "a teapot"}, {}),
        }
        self.reply(*answers[kind])

    def do_GET(self) -> None:
        task_id = self.path.rsplit("/", 1)[-1]
        if task_id not in STORED:
            self.reply(404, {"error": f"no task {task_id!r}"}, {})
            return
        view = {"id": task_id, "agent": "triage", "status": "pending", "created_at": 1.0}
        self.reply(200, view, {})


@pytest.fixture
def api() -> Iterator[str]:
    _Api.posted = []
    with threaded(_Api) as url:
        yield url


async def test_each_answer_maps_onto_its_error(api):
    tasks = HttpTasks(api, token="tok")
    try:
        assert await tasks.submit("triage", {"x": 1}, task_id="ok-1", seed=3) == "ok-1"
        with pytest.raises(Overloaded, match="the queue is full") as shed:
            await tasks.submit("triage", {}, task_id="full-1")
        assert shed.value.retry_after == 2.0
        with pytest.raises(InputRejected, match="'sku' is required"):
            await tasks.submit("triage", {}, task_id="bad-1")
        with pytest.raises(StoreUnavailable, match="the store is unavailable"):
            await tasks.submit("triage", {}, task_id="down-1")
        with pytest.raises(StalwartError, match="418: a teapot"):
            await tasks.submit("triage", {}, task_id="odd-1")
        assert await tasks.get("ok-1") is None  # this server stores only the cut one
    finally:
        await tasks.aclose()
    assert _Api.posted == ["ok-1", "full-1", "bad-1", "down-1", "odd-1"]


async def test_a_lost_answer_is_looked_up_before_it_counts_as_refused(api):
    tasks = HttpTasks(api, token="tok")
    try:
        # stored, though the connection closed before the answer: accepted
        assert await tasks.submit("triage", {}, task_id="cut-stored") == "cut-stored"
        record = await tasks.get("cut-stored")
        assert record is not None and record.agent == "triage" and record.status == "pending"
        # not stored: refused, saying so
        with pytest.raises(StoreUnavailable, match=r"did not answer .* does not hold it"):
            await tasks.submit("triage", {}, task_id="cut-lost")
    finally:
        await tasks.aclose()


async def test_an_unreachable_node_is_a_store_unavailable_naming_its_url():
    url = f"http://127.0.0.1:{free_port()}"
    tasks = HttpTasks(url, token="tok")
    try:
        with pytest.raises(StoreUnavailable, match=f"the node's API at {url} is unreachable"):
            await tasks.submit("triage", {}, task_id="ok-1")
    finally:
        await tasks.aclose()
