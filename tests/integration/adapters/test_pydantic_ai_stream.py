"""A Pydantic AI agent hosted by stalwart streams its model answers to
``GET /v1/tasks/{id}/events`` on a real node, read over HTTP as server-sent events: with
``PydanticAIAgent(stream=True)``, and when the framework streams by itself (an event
stream handler). Per journal position the text a client assembles equals the journaled
answer; an agent that does not ask to stream sends each answer whole, from the journal."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from tests.integration.server.conftest import start_node  # noqa: F401 - the fixture
from tests.integration.server.test_task_stream import _answers, _assembled, _events

from stalwart.node import app_node

pytestmark = pytest.mark.timeout(120)

APP = "tests.integration.adapters.pai_stream_app:app"


async def _run(n: Any, agent: str, order: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    r = await n.client.post(
        "/v1/tasks", json={"agent": agent, "input": {"text": f"Where is my order #{order}?"}}
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    events = await _events(n.client, task_id)
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "succeeded", events
    return events, await _answers(n.client, task_id)


@pytest.mark.parametrize("agent", ["plain", "watched", "quiet"])
async def test_a_hosted_pydantic_ai_agent_streams_its_answers(
    start_node,  # noqa: F811
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
) -> None:
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv("PAI_STREAM_SEEN", str(seen))  # the agent processes inherit it
    node, service = app_node(APP, store=f"sqlite:///{tmp_path}/s.db")
    n = await start_node(node)
    assert service.sim is not None
    for model in ("strong", "weak"):
        service.sim.world.set_fault(model, latency_ms=300)  # answers come in over time
    events, answers = await _run(n, agent, 4711)
    deltas = [e for e in events if e["event"] == "delta"]
    if agent == "quiet":  # the control: each answer once it is journaled, whole
        assert [e["data"]["seq"] for e in deltas] == sorted(answers), events
        assert _assembled(events) == answers and "order #4711 has shipped" in answers[max(answers)]
        return
    assert deltas, events
    assert answers and _assembled(events) == answers  # nothing lost, nothing twice
    final = answers[max(answers)]
    assert "order #4711 has shipped" in final
    # live: the answer came in several pieces, as the sim generated it
    assert sum(e["data"]["seq"] == max(answers) for e in deltas) > 1
    ids = [tuple(map(int, e["id"].split(":"))) for e in deltas]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    if agent == "watched":  # the user's handler saw the whole answer's text
        assert sum(int(x) for x in seen.read_text().split()) >= len(final)
    else:
        assert not seen.exists()  # no handler: Pydantic AI did not stream by itself
