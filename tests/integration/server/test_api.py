"""The node's HTTP API against a real node on a loopback port: probes, 4xx, auth, SSE, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest

from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

from .conftest import TOKEN

ROOT = SupervisorSpec("root", [ChildSpec("a", ProbeAgent), ChildSpec("b", ProbeAgent)])
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_livez_and_readyz_answer(start_node):
    n = await start_node(ROOT)
    live = await n.client.get("/livez")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = await n.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["supervisor"]["ok"] is True


async def test_every_accepted_connection_has_nagle_off(start_node):
    """The API's connections have Nagle's algorithm off (TCP_NODELAY). With it on (the
    listening socket made with proto 0, so asyncio left it on), a client that kept its
    connection open waited about 40 ms for every answer: the body was held behind the
    headers until the client's delayed ACK (44 ms against 2-4 ms a request, 2026-12-06)."""
    n = await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]))
    async with httpx.AsyncClient(base_url=n.url, timeout=10) as client:
        for _ in range(3):  # one connection, kept open
            assert (await client.get("/livez")).status_code == 200
        # the server's side of the connections it holds open (uvicorn's own record of them)
        server = n.service._server
        assert server is not None
        sockets = [c.transport.get_extra_info("socket") for c in server.server_state.connections]
        assert sockets, "the kept-open connection is not among the server's connections"
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)


async def test_readyz_fails_within_3s_naming_the_check_and_recovers(start_node):
    n = await start_node(ROOT)
    store_up = True
    n.node.readiness.add(
        "store", lambda: True if store_up else "store unreachable: connection refused"
    )
    assert (await n.client.get("/readyz")).status_code == 200
    store_up = False
    started = time.monotonic()
    r = await n.client.get("/readyz")
    assert r.status_code == 503 and time.monotonic() - started < 3.0
    body = r.json()
    assert body["failed"] == ["store"]
    assert "unreachable" in body["checks"]["store"]["detail"]
    assert (await n.client.get("/livez")).status_code == 200  # the loop runs: still live
    store_up = True
    assert (await n.client.get("/readyz")).status_code == 200


async def test_a_hanging_check_times_out_at_its_deadline(start_node):
    n = await start_node(ROOT, health_timeout_s=0.5)

    async def hangs() -> bool:
        await asyncio.Event().wait()  # never answers: the probe's deadline must cut it
        return True

    n.node.readiness.add("model:default", hangs)
    started = time.monotonic()
    r = await n.client.get("/readyz")
    assert r.status_code == 503
    assert time.monotonic() - started < 2.0
    assert "no answer within 0.5 s" in r.json()["checks"]["model:default"]["detail"]


async def test_readyz_fails_when_the_root_supervisor_gives_up(start_node):
    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)], intensity=0)
    n = await start_node(root)
    pid = n.node.runtime.whereis("a").pid
    os.kill(pid, signal.SIGKILL)
    await n.waiter.wait("supervisor_gave_up", timeout=5)
    report = await n.node.readiness.run()
    assert not report.ready and report.failed == ["supervisor"]
    assert await n.close() == 1  # and the node exits non-zero for the orchestrator


async def test_agents_listing_and_unknown_ids(start_node):
    n = await start_node(ROOT)
    body = (await n.client.get("/v1/agents")).json()
    assert [a["name"] for a in body["agents"]] == ["a", "b"]
    assert all(a["state"] == "running" and a["rss_bytes"] > 0 for a in body["agents"])
    assert (await n.client.get("/v1/agents/a")).json()["restarts"] == 0
    missing = await n.client.get("/v1/agents/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    bad = await n.client.get("/v1/agents/" + "x" * 300)
    assert bad.status_code == 400


async def test_mutating_endpoints_need_the_bearer_token(start_node):
    n = await start_node(ROOT)
    assert (await n.anon.post("/v1/agents/a/restart")).status_code == 401
    wrong = await n.anon.post("/v1/agents/a/restart", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert (await n.client.post("/v1/agents/zz/restart", headers=AUTH)).status_code == 404
    old = n.node.runtime.whereis("a").pid
    r = await n.client.post("/v1/agents/a/restart", headers=AUTH)
    assert r.status_code == 202
    await n.waiter.wait("agent_restarted", agent="a", timeout=5)
    assert n.node.runtime.whereis("a").pid != old


async def test_no_token_configured_disables_mutations(start_node):
    n = await start_node(ROOT, api_token=None)
    r = await n.client.post("/v1/agents/a/restart", headers=AUTH)
    assert r.status_code == 403 and "no API token" in r.json()["error"]
    # on loopback (development) reads stay open without a token
    assert (await n.anon.get("/v1/agents")).status_code == 200


async def test_bad_inputs_get_clear_4xx(start_node):
    n = await start_node(ROOT)
    c = n.client
    cases = {
        "/v1/logs?limit=abc": "limit",
        "/v1/logs?limit=0": "limit",
        "/v1/logs?since=yesterday": "since",
        "/v1/logs?level=loud": "level",
        "/v1/logs?agent=a&agent=b": "once",
        "/v1/logs?grep=" + "x" * 500: "longer",
    }
    for path, word in cases.items():
        r = await c.get(path)
        assert r.status_code == 400, (path, r.text)
        assert word in r.json()["error"], (path, r.json())
    huge = await c.post("/v1/agents/a/restart", headers=AUTH, content=b"x" * (2 * 2**20))
    assert huge.status_code == 413

    assert (await c.get("/v1/nothing")).status_code == 404
    assert (await c.delete("/v1/agents")).status_code == 405
    assert (await c.post("/v1/alerts/NoSuchRule/test", headers=AUTH)).status_code == 404


async def test_events_stream_delivers_agent_events(start_node):
    n = await start_node(ROOT)
    async with (
        httpx.AsyncClient(base_url=n.url, timeout=10, headers=AUTH) as c,
        c.stream("GET", "/v1/events?types=agent_restarted") as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        async with asyncio.timeout(5):
            while "summary" not in await anext(lines):
                pass
        os.kill(n.node.runtime.whereis("b").pid, signal.SIGKILL)
        async with asyncio.timeout(5):
            while await anext(lines) != "event: agent_restarted":
                pass
            data = json.loads((await anext(lines)).removeprefix("data: "))
    assert data["agent"] == "b"


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian prometheus)")
async def test_metrics_exposition_passes_promtool(start_node):
    n = await start_node(ROOT)
    r = await n.client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    for series in (
        "stalwart_agents_running",
        'stalwart_agent_resident_memory_bytes{agent="a"}',
        'stalwart_agent_cpu_seconds_total{agent="b"}',
        "stalwart_agent_open_fds",
        "stalwart_ready",
    ):
        assert series in text, series
    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=r.content,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()


async def test_the_node_stops_promptly_with_an_event_stream_open(start_node):
    n = await start_node(ROOT)
    async with (
        httpx.AsyncClient(base_url=n.url, timeout=10, headers=AUTH) as c,
        c.stream("GET", "/v1/events") as r,
    ):
        lines = r.aiter_lines()
        async with asyncio.timeout(5):
            while "summary" not in await anext(lines):
                pass
        started = time.monotonic()
        assert await n.close() == 0
        assert time.monotonic() - started < 8.0
