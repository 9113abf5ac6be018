"""Poison tasks against a real node: real agent processes, real kills, a real SQLite store.

A step that blocks the event loop, busy-loops, or grows past its agent's memory limit
gets its process killed; after ``quarantine_after`` such kills the task ends
``quarantined``, the node never exits, and the agent keeps serving other tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import EventBus

pytestmark = pytest.mark.timeout(120)

APP = "tests.integration.faults.poison_apps:app"
FAST = RuntimeSettings(heartbeat_interval=0.5)


async def _ready(node: Any) -> None:
    async with asyncio.timeout(30):
        while not node.ready:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("agent", "kind"), [("worker", "block"), ("worker", "spin"), ("hog", "memory")]
)
async def test_a_poison_task_is_quarantined_and_the_node_serves_on(tmp_path, agent, kind):
    events = EventBus(log=False)
    node, service = app_node(APP, store=f"sqlite:///{tmp_path}/p.db", events=events, settings=FAST)
    seen: dict[str, Any] = {}

    async def work() -> None:
        await _ready(node)
        tasks = service.tasks
        assert tasks is not None
        poison = await tasks.submit(agent, {"kind": kind}, task_id=f"poison-{kind}")
        record = await tasks.wait(poison, timeout=60)
        seen["poison"] = record
        # the same agent serves new work after the quarantine
        ok = [await tasks.submit(agent, {"kind": "ok"}) for _ in range(5)]
        seen["ok"] = [await tasks.wait(t, timeout=30) for t in ok]
        seen["kills"] = [e.fields["reason"] for e in events.recent("agent_exited")]

    code = await node.run(until=work())
    assert code == 0  # the node never gave up
    record = seen["poison"]
    assert record.status == "quarantined", record.outcome
    assert record.outcome["type"] == "Quarantined"
    assert record.outcome["kills"] == 3
    expected = "memory_limit" if kind == "memory" else "hung"
    assert record.outcome["reason"] == expected
    assert "killed" in record.outcome["last_error"]["message"]
    assert [r.status for r in seen["ok"]] == ["succeeded"] * 5
    assert seen["kills"].count(expected) == 3


async def test_a_blocking_step_past_its_task_timeout_fails_at_the_deadline(tmp_path):
    # a hang threshold above the task's timeout: the deadline is what must fire
    settings = RuntimeSettings(heartbeat_interval=0.5, hang_after_missed=8.0)
    events = EventBus(log=False)
    node, service = app_node(
        APP, store=f"sqlite:///{tmp_path}/t.db", events=events, settings=settings
    )
    seen: dict[str, Any] = {}

    async def work() -> None:
        await _ready(node)
        tasks = service.tasks
        assert tasks is not None
        record = await tasks.wait(await tasks.submit("timed", {"kind": "slow"}), timeout=30)
        seen["slow"] = record
        seen["ok"] = await tasks.wait(await tasks.submit("timed", {"kind": "ok"}), timeout=30)

    assert await node.run(until=work()) == 0
    slow = seen["slow"]
    assert slow.status == "failed"
    assert slow.outcome["type"] == "TaskTimeout" and "task_timeout" in slow.outcome["message"]
    assert seen["ok"].status == "succeeded"
    kills = [e.fields["reason"] for e in events.recent("agent_exited")]
    assert [r for r in kills if r != "shutdown"] == ["task_timeout"]


async def test_retry_puts_a_quarantined_task_back_and_it_runs_again(tmp_path):
    from stalwart.durable import SQLiteStore

    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        task = await store.create_task("worker", {"kind": "ok"}, task_id="r1")
        lease = await store.acquire("n/worker", 5, task_id=task.id)
        assert lease is not None
        await store.finish(lease, "quarantined", {"type": "Quarantined", "message": "x"})
        assert not await store.retry("unknown")
        assert await store.retry("r1")
        again = await store.get_task("r1")
        assert again is not None
        assert (again.status, again.attempts, again.outcome) == ("pending", 0, None)
        assert not await store.retry("r1")  # pending: nothing to retry
    finally:
        await store.close()


async def test_a_quarantined_task_runs_again_after_a_fix_with_task_retry(tmp_path):
    """The operator's story: quarantined, seen over HTTP, fixed, retried (HTTP and CLI)."""
    import sys

    import httpx

    from stalwart.server import ObservabilityService, ServerSettings

    token = "test-token-0123456789abcdef"
    api = ObservabilityService(
        ServerSettings(port=0, api_token=token, log_db=str(tmp_path / "logs.db"))
    )
    store = f"sqlite:///{tmp_path}/q.db"
    node, service = app_node(APP, store=store, events=EventBus(log=False), settings=FAST)
    node.services = (*node.services, api)
    fix = tmp_path / "fixed"
    seen: dict[str, Any] = {}

    async def cli(*argv: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stalwart.cli", "task", *argv, "--store", store,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def work() -> None:
        await _ready(node)
        tasks = service.tasks
        assert tasks is not None
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=10) as c:
            tid = await tasks.submit("worker", {"kind": "fixable", "fix": str(fix)})
            assert (await tasks.wait(tid, timeout=60)).status == "quarantined"
            view = (await c.get(f"/v1/tasks/{tid}")).json()
            assert view["status"] == "quarantined" and view["outcome"]["reason"] == "hung"
            listed = (await c.get("/v1/tasks", params={"status": "quarantined"})).json()
            assert [t["id"] for t in listed["tasks"]] == [tid]
            fix.write_text("deployed")
            r = await c.post(f"/v1/tasks/{tid}/retry")
            assert r.status_code == 202 and r.json()["retried_from"] == "quarantined"
            again = await c.post(f"/v1/tasks/{tid}/retry")  # pending (or done): refused
            assert again.status_code == 409 and "only a failed or" in again.json()["error"]
            assert (await c.post("/v1/tasks/nope/retry")).status_code == 404
            seen["task"] = await tasks.wait(tid, timeout=30)

    assert await node.run(until=work()) == 0
    assert seen["task"].status == "succeeded" and seen["task"].attempts == 1
    # the CLI, on the same store: a succeeded task is refused, a quarantined one goes back
    code, _, err = await cli("retry", seen["task"].id)
    assert code == 1 and "only a failed or quarantined" in err
    from stalwart.durable import SQLiteStore

    direct = SQLiteStore(str(tmp_path / "q.db"))
    await direct.open()
    try:
        await direct.create_task("worker", {"kind": "ok"}, task_id="via-cli")
        lease = await direct.acquire("n/worker", 5, task_id="via-cli")
        assert lease is not None
        await direct.finish(lease, "quarantined", {"type": "Quarantined", "message": "x"})
    finally:
        await direct.close()
    code, out, _ = await cli("retry", "via-cli")
    assert code == 0 and '"status": "pending"' in out
