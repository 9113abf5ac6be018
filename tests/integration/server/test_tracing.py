"""OpenTelemetry traces of a real hand-over task, received by a real OTLP/HTTP receiver.

The helpdesk app runs on a real node (one process per agent, the simulated model):
triage hands the ticket over to resolver, whose model asks for ``lookup_order``.
The spans the three processes export (the node, triage, resolver) must form one
trace under the caller's ``traceparent``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests._loopback import serving

from stalwart import RuntimeSettings
from stalwart.cli import main
from stalwart.durable import open_store
from stalwart.node import app_node
from stalwart.observe import EventBus, configure_logging
from stalwart.testing import FakeClock

# the default start_timeout (30 s): with 10 s all three tests' nodes exited 2 at start (an
# agent not started in time) on a 2-core machine at a load average of 19
SETTINGS = RuntimeSettings(heartbeat_interval=0.5)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
HAND_OVER_SPAN = "a3ce929d0e0e4736"  # a span of the process that created a sub-task


class OtlpReceiver:
    """Decodes every ``ExportTraceServiceRequest`` POSTed to ``/v1/traces``."""

    def __init__(self) -> None:
        self.requests = 0
        self.auth: set[str] = set()
        self.signals: set[str] = set()
        self.spans: list[dict[str, Any]] = []
        self.url = ""

    async def other(self, request: Request) -> Response:
        self.requests += 1
        self.auth.add(request.headers.get("authorization", ""))
        self.signals.add(request.path_params["signal"])
        return Response("{}", media_type="application/json")

    async def traces(self, request: Request) -> Response:
        body = ExportTraceServiceRequest()
        body.ParseFromString(await request.body())
        self.requests += 1
        self.auth.add(request.headers.get("authorization", ""))
        self.signals.add("traces")
        for rs in body.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "kind": s.kind,
                            "attrs": {a.key: _value(a.value) for a in s.attributes},
                            "events": [e.name for e in s.events],
                            "status": s.status.code,
                            "resource": resource,
                        }
                    )
        reply = ExportTraceServiceResponse().SerializeToString()
        return Response(reply, media_type="application/x-protobuf")


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@pytest.fixture
async def otlp(monkeypatch) -> AsyncIterator[OtlpReceiver]:
    rec = OtlpReceiver()
    app = Starlette(
        routes=[
            Route("/v1/traces", rec.traces, methods=["POST"]),
            Route("/v1/{signal}", rec.other, methods=["POST"]),  # metrics and logs
        ]
    )
    async with serving(app) as url:
        rec.url = url
        # the standard variables, read by every process of the node (agents inherit them)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer collector-token")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "helpdesk-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        yield rec


async def _run_ticket(start_node, tmp_path, *, traceparent: str) -> dict[str, Any]:
    configure_logging()  # the JSON pipeline, whose sinks feed the node's log store
    node, service = app_node(
        "examples.helpdesk.app:app",
        store=f"sqlite:///{tmp_path}/hd.db",
        events=EventBus(log=False),
        settings=SETTINGS,
    )
    running = await start_node(node)
    async with asyncio.timeout(30):
        while not node.ready:
            await asyncio.sleep(0.01)
    r = await running.client.post(
        "/v1/tasks",
        json={"agent": "triage", "input": {"text": "Where is my order #88? (a@b.c)"}},
        headers={"traceparent": traceparent},
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    record = await service.tasks.wait(task_id, timeout=60)
    assert record.status == "succeeded", record.outcome
    resolver_task = record.outcome["resolver_task"]
    logs: dict[str, list[dict[str, Any]]] = {}
    for name, query in (
        ("tool", {"grep": "lookup_order", "event": "tool_call"}),
        ("model", {"task": resolver_task, "event": "model_call"}),
    ):
        for _ in range(200):  # agent lines reach the store through the node, batched
            rows = (await running.client.get("/v1/logs", params=query)).json()["lines"]
            if rows:
                break
            await asyncio.sleep(0.05)
        logs[name] = rows
    assert await running.close() == 0  # agents stop and flush their spans
    return {"task_id": task_id, "resolver_task": resolver_task, "logs": logs}


@pytest.mark.timeout(180)
async def test_a_hand_over_with_a_tool_call_is_one_trace_under_the_callers_traceparent(
    start_node, tmp_path, otlp, capsys
):
    run = await _run_ticket(start_node, tmp_path, traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
    spans = otlp.spans
    assert spans, "no span reached the receiver"
    others = [(s["name"], s["attrs"]) for s in spans if s["trace_id"] != TRACE_ID]
    assert not others, others  # ONE trace: the caller's
    # OTEL_EXPORTER_OTLP_HEADERS applies to every signal: the node's metrics and logs too
    assert otlp.auth == {"Bearer collector-token"}
    assert otlp.signals == {"traces", "metrics", "logs"}
    by_id = {s["span_id"]: s for s in spans}

    def one(name: str, **attrs: Any) -> dict[str, Any]:
        found = [
            s
            for s in spans
            if s["name"] == name and all(s["attrs"].get(k) == v for k, v in attrs.items())
        ]
        assert len(found) == 1, (name, attrs, [s["name"] for s in spans])
        return found[0]

    triage = one("invoke_agent triage", **{"stalwart.task.id": run["task_id"]})
    assert triage["parent"] == CALLER_SPAN  # the HTTP traceparent parents the task
    assert triage["attrs"]["gen_ai.operation.name"] == "invoke_agent"
    (hand_over,) = [s for s in spans if s["name"] == "invoke_agent resolver" and s["kind"] == 3]
    resolver = one("invoke_agent resolver", **{"stalwart.task.id": run["resolver_task"]})
    assert hand_over["parent"] == triage["span_id"]  # the hand-over: a client span
    assert hand_over["attrs"]["gen_ai.operation.name"] == "invoke_agent"
    assert resolver["parent"] == hand_over["span_id"]
    assert resolver["attrs"]["stalwart.task.status"] == "succeeded"
    # two agent processes: triage's spans and resolver's come from different instances
    assert triage["resource"]["service.instance.id"].startswith("triage/")
    assert resolver["resource"]["service.instance.id"].startswith("resolver/")
    assert triage["resource"]["service.name"] == "helpdesk-test"

    steps = [s for s in spans if s["name"] == "agent_step resolver"]
    assert len(steps) >= 2 and all(s["parent"] == resolver["span_id"] for s in steps)
    chats = [s for s in spans if s["name"].startswith("chat ")]
    assert len(chats) >= 2 and {by_id[c["parent"]]["name"] for c in chats} == {
        "agent_step resolver"
    }
    chat = chats[0]["attrs"]
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.provider.name"] == "sim"
    assert chat["gen_ai.request.model"] == chat["gen_ai.response.model"] == "strong"
    assert chat["gen_ai.usage.input_tokens"] > 0 and chat["gen_ai.usage.output_tokens"] > 0
    assert chats[0]["kind"] == 3  # client

    tool = one("execute_tool lookup_order")
    assert by_id[tool["parent"]]["name"] == "agent_step resolver"
    assert tool["attrs"]["gen_ai.tool.name"] == "lookup_order"
    assert tool["attrs"]["gen_ai.tool.call.id"]
    assert tool["attrs"]["stalwart.tool.status"] == "ok"
    # the model asked for the tool in the step that holds the tool's span
    assert any(c["parent"] == tool["parent"] for c in chats)

    # one log line per model call and per tool call, found by tool name and by task
    (tool_line,) = [x for x in run["logs"]["tool"] if x["task_id"] == run["resolver_task"]]
    assert tool_line["tool"] == "lookup_order" and tool_line["outcome"] == "ok"
    assert tool_line["latency_ms"] >= 0 and tool_line["trace_id"] == TRACE_ID
    model_lines = run["logs"]["model"]
    assert len(model_lines) == len(chats)
    assert {x["model"] for x in model_lines} == {"sim:strong"}
    assert all(x["outcome"] == "ok" and x["tokens_in"] > 0 for x in model_lines)
    assert all("cost_usd" in x and x["latency_ms"] > 0 for x in model_lines)
    # the command line finds the same lines in the store the node wrote
    capsys.readouterr()
    db = str(tmp_path / "logs.db")
    assert main(["logs", "--db", db, "--grep", "lookup_order", "--event", "tool_call"]) == 0
    found = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["tool"] for x in found] == ["lookup_order"]
    assert main(["logs", "--db", db, "--task", run["resolver_task"], "--event", "model_call"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(chats)


@pytest.mark.timeout(180)
async def test_with_otel_sdk_disabled_nothing_is_exported(start_node, tmp_path, otlp, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    await _run_ticket(start_node, tmp_path, traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
    assert otlp.requests == 0 and otlp.spans == []


@pytest.mark.timeout(180)
async def test_a_sub_task_continues_the_trace_claimed_before_any_message_or_after_a_kill(
    start_node, tmp_path, otlp
):
    """The trace parent travels with the task, in the store, not only in a message.

    Two sub-tasks are in the store before the node starts, as a hand-over left them:
    one whose creator died before its wake-up cast went out (the resolver finds it by
    its store scan, with no message at all), one a runner had claimed and was killed
    running (its lease lapsed; the resolver takes it over). Each one's span must still
    be a child of the hand-over's span, in the caller's trace. With the parent carried
    only by the cast, both started new traces (and a claim that beat the cast did so
    one run in six in the test above).
    """
    url = f"sqlite:///{tmp_path}/hd.db"
    hand_over = f"00-{TRACE_ID}-{HAND_OVER_SPAN}-01"
    ticket = {"text": "Where is my order #88?"}
    # the dead runner's clock: a minute ago, so its 10 s lease has long lapsed
    store = await open_store(url, clock=FakeClock(wall_start=time.time() - 60))
    try:
        await store.create_task("resolver", ticket, task_id="never-cast", trace=hand_over)
        await store.create_task("resolver", ticket, task_id="killed", trace=hand_over)
        assert await store.acquire("dead-node", 10, task_id="killed") is not None
    finally:
        await store.close()
    configure_logging()
    node, service = app_node(
        "examples.helpdesk.app:app", store=url, events=EventBus(log=False), settings=SETTINGS
    )
    running = await start_node(node)
    for task_id in ("never-cast", "killed"):
        record = await service.tasks.wait(task_id, timeout=60)
        assert record.status == "succeeded", record.outcome
    assert await running.close() == 0  # agents stop and flush their spans
    tasks = {
        s["attrs"]["stalwart.task.id"]: s
        for s in otlp.spans
        if s["name"] == "invoke_agent resolver" and s["kind"] != 3
    }
    assert set(tasks) == {"never-cast", "killed"}
    for span in tasks.values():
        assert (span["trace_id"], span["parent"]) == (TRACE_ID, HAND_OVER_SPAN)
    assert tasks["killed"]["attrs"]["stalwart.task.attempt"] == 2  # the resumed run
    chats = [s for s in otlp.spans if s["name"].startswith("chat ")]
    assert chats and {s["trace_id"] for s in chats} == {TRACE_ID}
