"""Output policies per agent: redact, mask, or block an answer that holds PII; and the
answer goes through the accurate redaction tier (the NER model) when it is installed."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from stalwart.agent import App, LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._setup import build_models
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import RedactingEventBus, Redactor, Security
from stalwart.guard._ner import ner_model
from stalwart.llm.sim import SimServer
from stalwart.tools import ToolRegistry

pytestmark = pytest.mark.accurate_redaction  # agents' outputs on the accurate tier


async def _echo(tmp_path: pathlib.Path, policy: str, message: str) -> Any:
    """An LLM agent with output policy ``policy`` answers ``message`` (the sim echoes
    it); the task's result, as the runner stored it."""
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

        async def workflow(ctx: Any, value: Any) -> Any:
            return await run_llm_agent(TaskContext(ctx, resources, model="main"), agent, value)

        try:
            task_id = await runner.submit("echo", message)
            return await runner.run(task_id, workflow)
        finally:
            for m in models.values():
                await m.aclose()
            await store.close()


@pytest.mark.parametrize(
    ("policy", "expect"),
    [("redact", "[REDACTED:email]"), ("mask", "[email:****.com]"), ("block", None)],
)
async def test_output_policy(tmp_path, policy, expect) -> None:
    result = await _echo(tmp_path, policy, "Hello, I am ann.lee@example.com")
    if expect is None:
        assert result.status == "failed" and result.result["type"] == "OutputBlocked"
        assert "ann.lee" not in result.result["message"]
    else:
        assert result.status == "succeeded", result.result
        assert expect in result.result["answer"] and "ann.lee" not in result.result["answer"]


@pytest.mark.skipif(
    ner_model() is None, reason="the accurate tier's model is not installed (stalwart[ner])"
)
async def test_an_answer_passes_the_accurate_tier(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STALWART_REDACT_OUTPUTS", raising=False)
    message = "Hello, I spoke with Chinua about the invoice."
    assert "Chinua" in Redactor().redact(message)  # the fast tier alone would leave it
    result = await _echo(tmp_path, "redact", message)
    assert result.status == "succeeded", result.result
    answer = result.result["answer"]
    assert "[REDACTED:person]" in answer, answer
    assert "Chinua" not in answer, answer
