"""The OpenAI Agents SDK and LangGraph adapters stream model answers to callers: an agent
declared with ``stream=True`` sends each answer's text to ``GET /v1/tasks/{id}/events``
(server-sent events, read over HTTP on a real node) as the model generates it; per
journal position the text a client assembles equals the journaled answer, nothing lost,
nothing twice. The same agent without ``stream=True`` sends each answer whole, once it is
journaled."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from tests.integration.server.conftest import start_node  # noqa: F401 - the fixture
from tests.integration.server.test_task_stream import _answers, _assembled, _events

from stalwart.node import app_node

pytestmark = pytest.mark.timeout(180)

APPS = {
    "openai_agents": "tests.integration.adapters.stream_apps:oai_app",
    "langgraph": "tests.integration.adapters.stream_apps:lg_app",
}
TICKET = {
    "openai_agents": {"text": "Please refund 300 cents for order #4711, it broke."},
    "langgraph": {
        "messages": [{"role": "user", "content": "Please refund 300 cents on order 4711."}]
    },
}


async def _run(n: Any, framework: str, agent: str) -> tuple[list[dict[str, Any]], dict[int, str]]:
    r = await n.client.post("/v1/tasks", json={"agent": agent, "input": TICKET[framework]})
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    events = await _events(n.client, task_id)
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "succeeded", events
    return events, await _answers(n.client, task_id)


@pytest.mark.parametrize("framework", sorted(APPS))
async def test_an_adapter_streams_its_answers_when_asked(
    start_node,  # noqa: F811
    tmp_path: pathlib.Path,
    framework: str,
) -> None:
    node, service = app_node(APPS[framework], store=f"sqlite:///{tmp_path}/s.db")
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        service.sim.world.set_fault(model, latency_ms=300)  # answers come in over time
    events, answers = await _run(n, framework, "streamed")
    deltas = [e for e in events if e["event"] == "delta"]
    assert answers and _assembled(events) == answers, events  # nothing lost, nothing twice
    final = answers[max(answers)]
    assert "Refunded 300 cents" in final and "4711" in final
    # live: the last answer came in several pieces, as the sim generated it
    assert sum(e["data"]["seq"] == max(answers) for e in deltas) > 1, deltas
    ids = [tuple(map(int, e["id"].split(":"))) for e in deltas]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    # the control: each answer once, whole, after it is journaled
    events, answers = await _run(n, framework, "quiet")
    deltas = [e for e in events if e["event"] == "delta"]
    assert [e["data"]["seq"] for e in deltas] == sorted(answers), events
    assert _assembled(events) == answers


@pytest.mark.parametrize("agent", ["astreamed", "synced"])
async def test_a_graph_that_reads_its_model_as_a_stream_streams_to_callers_too(
    start_node,  # noqa: F811
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
) -> None:
    """LangGraph's own token stream, hosted: a node reading ``model.astream(...)`` (or
    ``model.stream`` in a sync node) gets the answer in pieces as the model generates it,
    and the same pieces reach ``GET /v1/tasks/{id}/events`` (tests.integration.adapters.
    lg_stream_app); what a client assembles is the journal's answers."""
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv("LG_STREAM_SEEN", str(seen))  # the agent processes inherit it
    node, service = app_node(
        "tests.integration.adapters.lg_stream_app:app", store=f"sqlite:///{tmp_path}/s.db"
    )
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        service.sim.world.set_fault(model, latency_ms=300)  # answers come in over time
    events, answers = await _run(n, "langgraph", agent)
    deltas = [e for e in events if e["event"] == "delta"]
    assert answers and _assembled(events) == answers, events  # nothing lost, nothing twice
    final = answers[max(answers)]
    assert "Refunded 300 cents" in final
    assert sum(e["data"]["seq"] == max(answers) for e in deltas) > 1, deltas  # live
    # the graph's node read the same answer in pieces (pieces, characters per model call)
    noted = [tuple(map(int, line.split())) for line in seen.read_text().splitlines()]
    assert noted[-1][0] > 1 and noted[-1][1] == len(final), noted


async def test_the_sdks_run_streamed_gives_the_agent_and_callers_the_text_as_it_comes(
    start_node,  # noqa: F811
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Runner.run_streamed``, hosted (``StalwartRunner.run_streamed``): the agent's code
    reads the SDK's own event stream and gets each answer's text deltas as the model
    generates them, and the same text reaches ``GET /v1/tasks/{id}/events``
    (tests.integration.adapters.oai_stream_app)."""
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv("OAI_STREAM_SEEN", str(seen))  # the agent processes inherit it
    node, service = app_node(
        "tests.integration.adapters.oai_stream_app:app", store=f"sqlite:///{tmp_path}/s.db"
    )
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        service.sim.world.set_fault(model, latency_ms=300)  # answers come in over time
    events, answers = await _run(n, "openai_agents", "run_streamed")
    deltas = [e for e in events if e["event"] == "delta"]
    assert answers and _assembled(events) == answers, events  # nothing lost, nothing twice
    final = answers[max(answers)]
    assert "Refunded 300 cents" in final and "4711" in final
    assert sum(e["data"]["seq"] == max(answers) for e in deltas) > 1, deltas  # live
    # the SDK's stream gave the agent's code the same answer in pieces
    noted = [tuple(map(int, line.split())) for line in seen.read_text().splitlines()]
    assert noted[-1][0] > 1 and noted[-1][1] == len(final), noted
