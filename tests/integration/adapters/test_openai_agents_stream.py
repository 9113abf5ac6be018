"""``Runner.run_streamed``, hosted (``StalwartRunner.run_streamed``), in one process with a
real simulated provider and a real SQLite store: the agent's code reads each answer's text
as deltas while the model generates it; a task resumed after a kill gets the journal's
answer back as one delta with the whole text, and the model is not asked again. (On a real
node with server-sent events: ``test_adapter_streams.py``.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from examples.openai_agents_support.app import SCENARIO, app
from tests.integration.adapters import oai_stream_app as streaming

from stalwart.agent import Resources, TaskContext
from stalwart.agent._guarded import prepare_input
from stalwart.agent._setup import build_models, secret_resolver
from stalwart.durable import Runner, SQLiteStore
from stalwart.llm.sim import SimServer
from stalwart.node._simkey import provision_sim_key
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

pytestmark = pytest.mark.timeout(60)

TICKET = {"text": "Please refund 300 cents for order #4711, it broke."}
ANSWER = "Refunded 300 cents for order #4711."


@pytest.fixture(autouse=True)
def _own_sim_key(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A vault of this test's own for the sim's key; the sim's address restored after."""
    monkeypatch.setenv("STALWART_SIM_URL", "")
    monkeypatch.setenv("STALWART_SECRETS", "vault")
    monkeypatch.setenv("STALWART_VAULT", str(tmp_path / "vault.enc"))
    monkeypatch.setenv("STALWART_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    monkeypatch.delenv("OAI_STREAM_SEEN", raising=False)
    assert provision_sim_key(app, EventBus(log=False))
    secret_resolver.cache_clear()
    streaming.SEEN.clear()
    yield
    streaming.KILL["after_answer"] = False
    secret_resolver.cache_clear()


async def test_a_streamed_run_reads_answers_as_they_come_and_whole_after_a_resume(tmp_path):
    agent = streaming.STREAMED
    with SimServer(scenario=SCENARIO) as sim:
        os.environ["STALWART_SIM_URL"] = sim.url
        sim.world.set_fault("strong", latency_ms=200)  # the answer comes in over time
        events = EventBus(log=False)
        models = build_models(app, {"main"}, sim.url, events)
        resources = Resources(
            agent=agent.name, models=models,
            tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()),
            scopes=frozenset(agent.scopes), callable_agents=frozenset(), runtime=None,
            events=events, prices=app.price_table(),
        )  # fmt: skip

        async def workflow(ctx: Any, value: Any) -> Any:
            tctx = TaskContext(ctx, resources, model="main")
            return await streaming.run_streamed(tctx, prepare_input(tctx, value))

        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        try:
            runner = Runner(store, owner="a", events=events)
            whole = await runner.run(await runner.submit(agent.name, TICKET), workflow)
            assert whole.result["answer"] == ANSWER
            live = streaming.SEEN.copy()
            assert [chars for _, chars in live] == [0, 0, len(ANSWER)] and live[-1][0] > 1, live

            streaming.SEEN.clear()
            streaming.KILL["after_answer"] = True  # killed once the answer was read
            task_id = await runner.submit(agent.name, TICKET)
            with pytest.raises(streaming.Killed):
                await runner.run(task_id, workflow)
            asked = sim.world.stats["strong:requests"]
            resumed = await Runner(store, owner="b", events=events).run(
                task_id, workflow, force=True
            )
        finally:
            await store.close()
            await models["main"].aclose()
    assert resumed.result["answer"] == ANSWER
    assert sim.world.stats["strong:requests"] == asked  # no answer asked for again
    first, again = streaming.SEEN[:3], streaming.SEEN[3:]
    assert first[2][0] > 1 and first[2][1] == len(ANSWER), first  # live, in pieces
    assert again == [(0, 0), (0, 0), (1, len(ANSWER))], streaming.SEEN  # the journal's, whole
