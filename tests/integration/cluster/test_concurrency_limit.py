"""A per-agent concurrency limit (`max_running`) holds across every node of a cluster."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from stalwart.durable import open_store
from stalwart.node import Tasks

from .conftest import ROOT, start_node

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

# Each node alone could run 4 tasks of `slow` at once (12 in the cluster); the
# cluster-wide limit is 2.
APP = textwrap.dedent(
    """
    import asyncio, time
    from stalwart.agent import App, PythonAgent

    async def slow(ctx, task_input):
        started = await ctx.step("started", time.time)
        await asyncio.sleep(0.4)
        ended = await ctx.step("ended", time.time)
        return {"started": started, "ended": ended}

    app = App(agents=[PythonAgent(name="slow", fn=slow, max_tasks=4, max_running=2)])
    """
)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


async def test_max_running_is_a_cluster_wide_limit(pg_url, sim_url, tmp_path):
    (tmp_path / "limited_app.py").write_text(APP)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    nodes = []
    store = await open_store(pg_url)
    try:
        for i in range(3):
            nodes.append(
                await start_node(f"n{i}", pg_url, sim_url, app="limited_app:app", extra_env=env)
            )
        tasks = Tasks(None, store)
        ids = [await tasks.submit("slow", {"n": n}, task_id=f"s{n:02d}") for n in range(10)]
        records = [await tasks.wait(i, timeout=90) for i in ids]
        assert [r.status for r in records] == ["succeeded"] * 10
        spans = [(r.outcome["started"], r.outcome["ended"]) for r in records]
        # The limit was used and never exceeded, though any one node had room for 4
        # and the cluster for 12.
        assert most_at_once(spans) == 2
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
        await store.close()
