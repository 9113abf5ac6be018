"""A task's output goes through the accurate redaction tier (the NER model) when it is
installed: a name no list knows is removed from the answer the store keeps."""

from __future__ import annotations

import pytest

from stalwart.agent import App, LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._taskagent import build_models
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import RedactingEventBus, Redactor, Security
from stalwart.guard._ner import ner_model
from stalwart.llm.sim import SimServer
from stalwart.tools import ToolRegistry

pytestmark = pytest.mark.skipif(
    ner_model() is None, reason="the accurate tier's model is not installed (stalwart[ner])"
)
MESSAGE = "Hello, I spoke with Rajesh Venkataraman about the invoice."


async def test_an_answer_passes_the_accurate_tier(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STALWART_REDACT_OUTPUTS", raising=False)
    assert "Rajesh" in Redactor().redact(MESSAGE)  # the fast tier alone would leave it
    agent = LLMAgent(name="echo", model="main", security=Security(output="redact"))
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
            task_id = await runner.submit("echo", MESSAGE)
            result = await runner.run(task_id, workflow)
        finally:
            for m in models.values():
                await m.aclose()
            await store.close()
    assert result.status == "succeeded", result.result
    answer = result.result["answer"]
    assert "[REDACTED:person]" in answer, answer
    assert "Rajesh" not in answer and "Venkataraman" not in answer, answer
