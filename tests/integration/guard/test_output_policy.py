"""Output policies per agent: redact, mask, or block an answer that holds PII."""

from __future__ import annotations

import pytest

from stalwart.agent import App, LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._taskagent import build_models
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import RedactingEventBus, Security
from stalwart.llm.sim import SimServer
from stalwart.tools import ToolRegistry


@pytest.mark.parametrize(
    ("policy", "expect"),
    [("redact", "[REDACTED:email]"), ("mask", "[email:****.com]"), ("block", None)],
)
async def test_output_policy(tmp_path, policy, expect) -> None:
    agent = LLMAgent(name="echo", model="main", security=Security(output=policy))
    store = SQLiteStore(str(tmp_path / "o.db"))
    await store.open()
    events = RedactingEventBus(log=False)
    with SimServer() as sim:
        models = build_models(App(agents=[agent], models={"main": ["sim:strong"]}), {"main"},
                              sim.url, events)  # fmt: skip
        resources = Resources(
            agent="echo", models=models, tools=ToolRegistry(), scopes=frozenset(),
            callable_agents=frozenset(), runtime=None, events=events, security=agent.security,
        )  # fmt: skip
        runner = Runner(store, owner="o", events=events)

        async def workflow(ctx, value):
            return await run_llm_agent(TaskContext(ctx, resources, model="main"), agent, value)

        try:
            task_id = await runner.submit("echo", "Hello, I am ann.lee@example.com")
            result = await runner.run(task_id, workflow)
        finally:
            for m in models.values():
                await m.aclose()
            await store.close()
    if expect is None:
        assert result.status == "failed" and result.result["type"] == "OutputBlocked"
        assert "ann.lee" not in result.result["message"]
    else:
        assert result.status == "succeeded", result.result
        assert expect in result.result["answer"] and "ann.lee" not in result.result["answer"]
