"""``POST /v1/tasks/{id}/cancel`` on a real node: a running task stops and ends
``cancelled`` (200), a finished one answers 409 with its status, an unknown id 404;
the CLI's ``stalwart task cancel`` does the same against the store."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from stalwart.cli import main
from stalwart.node import app_node
from stalwart.testing import eventually

pytestmark = pytest.mark.timeout(90)


async def test_cancel_over_http_and_from_the_cli(start_node, tmp_path: pathlib.Path, capsys):
    store = f"sqlite:///{tmp_path}/c.db"
    node, _ = app_node("tests.integration.node.cancel_app:app", store=store)
    n = await start_node(node)
    c = n.client
    r = await c.post(
        "/v1/tasks", json={"agent": "worker", "input": {"dir": str(tmp_path), "mode": "sleep"}}
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    await eventually((tmp_path / f"{task_id}.started").exists, timeout=30)
    bad = await c.post(f"/v1/tasks/{task_id}/cancel", json={"who": "ann"})
    assert bad.status_code == 400 and "'by'" in bad.json()["error"]
    done = await c.post(f"/v1/tasks/{task_id}/cancel", json={"by": "ann"})
    assert done.status_code == 200, done.text
    view = done.json()
    assert view["status"] == "cancelled" and view["stopped"] == "yielded"
    assert view["outcome"] == {"type": "Cancelled", "message": "cancelled by ann", "by": "ann"}
    assert view["cancel_seconds"] < 5.0  # 1 s guaranteed; generous on a busy machine
    await n.waiter.wait("task_cancelled", task_id=task_id, timeout=5)
    twice = await c.post(f"/v1/tasks/{task_id}/cancel")
    assert twice.status_code == 409 and twice.json()["status"] == "cancelled"
    assert (await c.post("/v1/tasks/no-such-task/cancel")).status_code == 404
    listed = (await c.get("/v1/tasks?status=cancelled")).json()["tasks"]
    assert [t["id"] for t in listed] == [task_id]
    assert (await c.get("/v1/tasks?status=awaiting_approval")).json()["count"] == 0

    # the CLI cancels through the store; the node's sweep stops the process's step
    r = await c.post(
        "/v1/tasks", json={"agent": "worker", "input": {"dir": str(tmp_path), "mode": "sleep"}}
    )
    second = r.json()["id"]
    await eventually((tmp_path / f"{second}.started").exists, timeout=30)
    code = await asyncio.to_thread(main, ["task", "cancel", second, "--store", store])
    assert code == 0
    assert '"status": "cancelled"' in capsys.readouterr().out
    async with asyncio.timeout(10):  # interrupted in the process within the sweep interval
        while second in await node.call("worker", {"op": "running"}, timeout=5):
            await asyncio.sleep(0.05)
    assert not (tmp_path / f"{second}.effect").exists()
    again = await asyncio.to_thread(main, ["task", "cancel", second, "--store", store])
    assert again == 3 and "already finished (cancelled)" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["task", "cancel", "nope", "--store", store]) == 1
