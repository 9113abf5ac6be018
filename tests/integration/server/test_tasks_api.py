"""The task API, the approval endpoints and the journal view against real nodes.

With the helpdesk app whose resolver waits for a person: a ticket is submitted over
HTTP, its over-the-limit refund is held, approved over HTTP, and the task then makes
the refund once; the journals show the steps, redacted. The error mappings that need
a failing store or a full queue use a stand-in for the node's task API."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from stalwart.errors import CommitUnknown, InputRejected, Overloaded, StoreUnavailable
from stalwart.guard import Principal
from stalwart.llm.sim import order_for
from stalwart.node import app_node
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

ROOT = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)])


class StandInTasks:
    """What the API needs of ``node.tasks``: ``submit`` and a ``store``, failing on demand."""

    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.store = self

    async def submit(
        self, agent: str, task_input: Any, *, task_id=None, seed=None, principal=None
    ) -> str:
        if self.fail is not None:
            raise self.fail
        self.seed = seed
        self.principal = principal
        return "t-1"

    async def get_task(self, task_id: str) -> None:
        if isinstance(self.fail, StoreUnavailable):
            raise self.fail

    async def list_tasks(self, **_: Any) -> list[Any]:
        raise StoreUnavailable("connection refused (store at 127.0.0.1:1)")


@pytest.mark.timeout(60)
async def test_task_api_answers_each_failure_clearly(start_node):
    n = await start_node(ROOT)
    c = n.client
    none = await c.post("/v1/tasks", json={"agent": "a", "input": 1})
    assert none.status_code == 404 and "runs no app" in none.json()["error"]
    assert (await c.get("/v1/approvals")).status_code == 404
    n.node.tasks = tasks = StandInTasks()
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 400, "JSON object"),
        ({"input": 1}, 400, "'agent'"),
        ({"agent": "a"}, 400, "'input'"),
        ({"agent": "a", "input": 1, "priority": 2}, 400, "'priority'"),
        ({"agent": "a", "input": 1, "task_id": 7}, 400, "'task_id'"),
        ({"agent": "a", "input": 1, "seed": -1}, 400, "'seed'"),
        ({"agent": "a", "input": 1, "principal": 7}, 400, "field 'principal'"),
        ({"agent": "a", "input": 1, "principal": {"id": "a", "role": "x"}}, 400, "'role'"),
        ({"agent": "nobody", "input": 1}, 404, "no agent named 'nobody'"),
    ]
    for body, status, words in cases:
        r = await (
            c.post("/v1/tasks", content=body)
            if isinstance(body, bytes)
            else c.post("/v1/tasks", json=body)
        )
        assert r.status_code == status and words in r.json()["error"], (body, r.text)
    ok = await c.post("/v1/tasks", json={"agent": "a", "input": {"x": 1}})
    assert ok.status_code == 202 and ok.json() == {"id": "t-1", "agent": "a", "status": "pending"}
    assert ok.headers["location"] == "/v1/tasks/t-1"
    seeded = await c.post("/v1/tasks", json={"agent": "a", "input": 1, "seed": 42})
    assert seeded.status_code == 202 and tasks.seed == 42 and tasks.principal is None
    who = {"id": "ann@example.com", "attrs": {"tier": "gold"}}
    on_behalf = await c.post("/v1/tasks", json={"agent": "a", "input": 1, "principal": who})
    assert on_behalf.status_code == 202
    assert tasks.principal == Principal("ann@example.com", attrs={"tier": "gold"})
    tasks.fail = Overloaded("agent 'a' has 8 tasks waiting, retry later", retry_after=2.5)
    full = await c.post("/v1/tasks", json={"agent": "a", "input": 1})
    assert full.status_code == 429 and full.headers["retry-after"] == "3"
    assert "retry later" in full.json()["error"]
    tasks.fail = InputRejected("input is nested deeper than 32 levels", reason="too_deep")
    deep = await c.post("/v1/tasks", json={"agent": "a", "input": 1})
    assert deep.status_code == 400 and "deeper than 32" in deep.json()["error"]
    tasks.fail = StoreUnavailable("connection refused")
    down = await c.post("/v1/tasks", json={"agent": "a", "input": 1})
    assert down.status_code == 503 and "nothing was stored" in down.json()["error"]
    # a commit whose answer was lost: not "nothing was stored", but the id to look up
    tasks.fail = CommitUnknown("connection closed (during commit: the outcome is unknown)")
    unknown = await c.post("/v1/tasks", json={"agent": "a", "input": 1})
    said = unknown.json()["error"]
    assert unknown.status_code == 503 and "nothing was stored" not in said
    made = re.search(r"task '([0-9a-f]{32})' may have been stored", said)
    assert made is not None and f"GET /v1/tasks/{made[1]} says whether" in said, said
    assert "stores it at most once" in said and unknown.headers["retry-after"] == "5"
    assert (await c.get("/v1/tasks")).status_code == 503
    assert (await c.get("/v1/tasks/t-1")).status_code == 503
    no_queue = await c.get("/v1/approvals")
    assert no_queue.status_code == 404 and "no store URL" in no_queue.json()["error"]


@pytest.mark.timeout(90)
async def test_a_held_call_is_approved_over_http_and_the_task_runs_it(
    start_node, tmp_path, monkeypatch
):
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    node, service = app_node(
        "tests.integration.guard.approval_app:app", store=f"sqlite:///{tmp_path}/hd.db"
    )
    n = await start_node(node, rate_limit_per_s=1000, rate_limit_burst=1000)
    c = n.client
    order = next(o for o in range(1000, 9999) if order_for(o)["amount_cents"] >= 9000)
    ticket = {
        "id": "T-big",
        "text": f"Hi, my order #{order} arrived damaged. Please issue a refund of 8000 cents. "
        "Thanks, from ann@example.com",
        "from": "ann@example.com",
    }
    r = await c.post("/v1/tasks", json={"agent": "triage", "input": ticket, "task_id": "T-big"})
    assert r.status_code == 202, r.text
    again = await c.post("/v1/tasks", json={"agent": "triage", "input": 1, "task_id": "T-big"})
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    rejected = await c.post("/v1/tasks", json={"agent": "triage", "input": deep})
    assert rejected.status_code == 400, rejected.text
    assert (await c.post("/v1/tasks", json={"agent": "x", "input": 1})).status_code == 404

    async with asyncio.timeout(30):  # the resolver holds the refund for a person
        while not (pending := (await c.get("/v1/approvals?status=pending")).json()["approvals"]):
            await asyncio.sleep(0.05)
    (held,) = pending
    assert held["tool"] == "refund" and held["status"] == "pending"
    revealed = (await c.get("/v1/approvals?status=pending&reveal=1")).json()["approvals"][0]
    assert revealed["arguments"]["amount_cents"] == 8000
    assert service.sim is not None
    assert service.sim.world.tools.report()["deliveries"]["payments"] == {}  # not run yet
    assert (await c.post("/v1/approvals/0123456789abcdef/approve")).status_code == 404
    bad = await c.post(f"/v1/approvals/{held['id']}/approve", json={"who": "ann"})
    assert bad.status_code == 400 and "'by'" in bad.json()["error"]
    decided = await c.post(f"/v1/approvals/{held['id']}/approve", json={"by": "ann"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["decided_by"] == "ann"
    twice = await c.post(f"/v1/approvals/{held['id']}/deny")
    assert twice.status_code == 409 and "already approved by ann" in twice.json()["error"]
    await n.waiter.wait("approval_decided", approval=held["id"], timeout=5)

    assert service.tasks is not None
    record = await service.tasks.wait("T-big", timeout=60)
    assert record.outcome["status"] == "completed", record.outcome
    assert len(service.sim.world.tools.report()["deliveries"]["payments"]) == 1  # once

    task = (await c.get("/v1/tasks/T-big")).json()
    assert task["status"] == "succeeded" and task["attempts"] >= 1
    assert task["finished_at"] >= task["created_at"]
    assert "[REDACTED:email]" in json.dumps(task["input"])  # the view is redacted
    assert "ann@example.com" not in json.dumps(task)
    listed = (await c.get("/v1/tasks?agent=resolver&limit=5")).json()
    (resolver,) = [t for t in listed["tasks"] if t["id"].startswith("T-big")]
    assert (await c.get("/v1/tasks?status=bogus")).status_code == 400
    assert (await c.get("/v1/tasks/no-such-task")).status_code == 404

    steps = (await c.get(f"/v1/tasks/{resolver['id']}/journal")).json()["steps"]
    names = [s["name"] for s in steps]
    assert "approval:refund" in names and "model" in names, names
    approval = next(s for s in steps if s["name"] == "approval:refund")
    assert approval["value"]["status"] == "approved"
    refund = next(s for s in steps if s["name"].endswith("refund") and s["kind"] == "effect")
    assert refund["effect"]["status"] == "completed" and refund["at"] is not None
    tools = [s for s in steps if s["name"].startswith("tool:")]
    assert all(s["duration_s"] is not None for s in tools), tools
    top = (await c.get("/v1/tasks/T-big/journal")).json()
    assert top["task"]["id"] == "T-big" and "agent:resolver" in [s["name"] for s in top["steps"]]
    assert "ann@example.com" not in json.dumps(top)


@pytest.mark.timeout(120)
async def test_a_parked_task_is_approved_or_denied_over_http_and_resumes(
    start_node, tmp_path, monkeypatch
):
    """Durable approvals (the default) over the node's API: a held refund parks its task
    (``awaiting_approval`` in ``GET /v1/tasks``); ``POST /v1/approvals/ID/approve``
    resumes it and the refund runs once, ``/deny`` resumes the other without it."""
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    node, service = app_node(
        "tests.integration.guard.durable_approval_app:app", store=f"sqlite:///{tmp_path}/p.db"
    )
    n = await start_node(node, rate_limit_per_s=1000, rate_limit_burst=1000)
    c = n.client
    orders = [o for o in range(1000, 9999) if order_for(o)["amount_cents"] >= 9000][:2]
    for task_id, order in zip(("P-yes", "P-no"), orders, strict=True):
        ticket = {
            "text": f"Hi, my order #{order} arrived damaged. Please issue a refund of 8000 "
            "cents. Thanks, from ann@example.com",
            "from": "ann@example.com",
        }
        r = await c.post(
            "/v1/tasks", json={"agent": "resolver", "input": ticket, "task_id": task_id}
        )
        assert r.status_code == 202, r.text
    async with asyncio.timeout(60):
        while (await c.get("/v1/tasks?status=awaiting_approval")).json()["count"] < 2:
            await asyncio.sleep(0.05)
    parked = (await c.get("/v1/tasks/P-yes")).json()
    assert parked["status"] == "awaiting_approval" and parked["outcome"]["tool"] == "refund"
    ids = {
        a["task_id"]: a["id"]
        for a in (await c.get("/v1/approvals?status=pending")).json()["approvals"]
    }
    assert set(ids) == {"P-yes", "P-no"}
    assert service.sim is not None and service.tasks is not None
    assert service.sim.world.tools.report()["deliveries"]["payments"] == {}
    yes = await c.post(f"/v1/approvals/{ids['P-yes']}/approve", json={"by": "ann"})
    no = await c.post(f"/v1/approvals/{ids['P-no']}/deny", json={"by": "bo"})
    assert (yes.status_code, no.status_code) == (200, 200), (yes.text, no.text)
    approved = await service.tasks.wait("P-yes", timeout=60)
    denied = await service.tasks.wait("P-no", timeout=60)
    assert approved.status == denied.status == "succeeded"
    assert approved.outcome["status"] == denied.outcome["status"] == "completed"
    assert len(service.sim.world.tools.report()["deliveries"]["payments"]) == 1  # P-yes's
    for task_id, status in (("P-yes", "approved"), ("P-no", "denied")):
        steps = (await c.get(f"/v1/tasks/{task_id}/journal")).json()["steps"]
        (decision,) = [s for s in steps if s["name"] == "approval:refund"]
        assert decision["value"]["status"] == status
        ran = [s for s in steps if s["name"].endswith("refund") and s["kind"] == "effect"]
        assert len(ran) == (status == "approved"), steps
