"""Admission control: overload is refused (429 / exit 2), every accepted task finishes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client import generate_latest

from stalwart.agent import App, PythonAgent
from stalwart.durable import SQLiteStore
from stalwart.errors import ConfigError, Overloaded
from stalwart.node import Tasks, app_node
from stalwart.observe import REGISTRY, EventBus

pytestmark = pytest.mark.timeout(120)
TIGHT = "tests.integration.faults.poison_apps:tight"


def test_the_app_checks_its_limits_and_defaults_them_on():
    async def fn(ctx: Any, task_input: Any) -> Any:
        return task_input

    app = App(agents=[PythonAgent(name="a", fn=fn)])
    assert (app.max_pending, app.max_pending_node) == (1000, 10_000)  # on by default
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="max_pending"):
            App(agents=[PythonAgent(name="a", fn=fn)], max_pending=bad)


async def test_per_agent_and_per_node_limits_refuse_with_a_retry_after(tmp_path):
    store = SQLiteStore(str(tmp_path / "a.db"))
    await store.open()
    try:
        tasks = Tasks(None, store, max_pending=2, max_pending_node=3)
        await tasks.submit("a", 1)
        await tasks.submit("a", 2)
        with pytest.raises(Overloaded, match=r"agent 'a' has 2 tasks waiting.*max_pending=2") as e:
            await tasks.submit("a", 3)
        assert e.value.retry_after == 1.0
        await tasks.submit("b", 1)  # another agent has room...
        with pytest.raises(Overloaded, match=r"max_pending_node=3"):  # ...the node has not
            await tasks.submit("c", 1)
        assert await store.count_pending() == 3 and await store.count_pending("a") == 2
        text = generate_latest(REGISTRY).decode()
        assert 'stalwart_tasks_shed_total{agent="a"}' in text
    finally:
        await store.close()


async def test_a_burst_of_submissions_shares_its_reads_and_admits_exactly_the_limit(tmp_path):
    # each submission read the count itself: 2,000 at once queued 2,000 reads (past
    # their deadline on a busy node), and each could read the count before the others'
    # tasks were written
    store = SQLiteStore(str(tmp_path / "burst.db"))
    await store.open()
    reads = 0
    read = store.count_pending_each

    async def counted(agents: Any) -> list[int]:
        nonlocal reads
        reads += 1
        return await read(agents)

    store.count_pending_each = counted  # type: ignore[method-assign]
    try:
        await Tasks(None, store).submit("a", 0)  # one already waiting
        tasks = Tasks(None, store, max_pending=50, max_pending_node=10_000)
        reads = 0
        outcomes = await asyncio.gather(
            *(tasks.submit("a", i) for i in range(1, 301)), return_exceptions=True
        )
        accepted = [o for o in outcomes if isinstance(o, str)]
        refused = [o for o in outcomes if isinstance(o, Overloaded)]
        assert len(accepted) == 49 and len(refused) == 251  # 50 waiting, not one more
        assert await store.count_pending("a") == 50
        assert reads < 30, reads  # shared: not one read per submission
        # later, a fresh read sees what was written (and what was claimed meanwhile)
        await store.acquire("w", 30.0, agent="a")
        assert isinstance(await tasks.submit("a", "after a claim"), str)
        with pytest.raises(Overloaded):
            await tasks.submit("a", "over")
    finally:
        await store.close()


async def test_overload_is_shed_and_every_accepted_task_completes(tmp_path):
    node, service = app_node(TIGHT, store=f"sqlite:///{tmp_path}/o.db", events=EventBus(log=False))
    seen: dict[str, Any] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        tasks = service.tasks
        assert tasks is not None
        accepted, shed = [], 0
        for _ in range(60):  # far more than 4 slots of 0.05 s tasks can take
            try:
                accepted.append(await tasks.submit("worker", {"kind": "work", "s": 0.05}))
            except Overloaded:
                shed += 1
            await asyncio.sleep(0.002)
        seen["shed"] = shed
        seen["done"] = [await tasks.wait(t, timeout=60) for t in accepted]

    assert await node.run(until=work()) == 0
    assert seen["shed"] > 0
    assert seen["done"] and all(r.status == "succeeded" for r in seen["done"])  # lost 0


async def test_cli_submit_past_the_limit_exits_2_with_a_clear_error(tmp_path):
    store = SQLiteStore(str(tmp_path / "c.db"))
    await store.open()
    try:
        for n in range(5):  # the tight app's max_pending
            await store.create_task("worker", {"kind": "ok", "n": n})
    finally:
        await store.close()
    refused = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "task", "submit", "worker", '{"kind": "ok"}',
         "--app", TIGHT, "--store", f"sqlite:///{tmp_path}/c.db"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "5 tasks waiting" in refused.stderr and "retry later" in refused.stderr
    assert "Traceback" not in refused.stderr
