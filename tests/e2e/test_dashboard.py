"""The dashboard in headless Debian chromium (Playwright): first paint under 1 s, live
numbers, and a SIGKILLed agent's restart shown within 2 s. Saves a screenshot."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import time

import pytest

from stalwart.config import RuntimeSettings
from stalwart.node import Node
from stalwart.observe import AlertRule, EventBus, Threshold, catalog
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.server import ObservabilityService, ServerSettings
from stalwart.testing import ProbeAgent
from stalwart.verify._checks_dashboard import CHROMIUM_ARGS, FIRST_PAINT_S, measure_paint

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.accurate_redaction,  # a whole node on the defaults, in a browser
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) or shutil.which("chromium") is None,
        reason="needs Debian chromium at /usr/bin/chromium",
    ),
]


@pytest.mark.timeout(90)
async def test_dashboard_loads_fast_and_shows_a_restart(tmp_path):
    import asyncio

    from playwright.async_api import async_playwright

    storm = AlertRule(
        "RestartStorm", "increase", "stalwart_agent_restarts_total", Threshold(1), Threshold(5),
        "Agent restarts in the window", by=("agent",), window_s=60,
    )  # fmt: skip
    service = ObservabilityService(
        ServerSettings(port=0, log_db=str(tmp_path / "logs.db"), alert_interval_s=0.2),
        rules=[storm],
    )
    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent), ChildSpec("b", ProbeAgent)])
    bus = EventBus(log=False)
    node = Node(root, RuntimeSettings(heartbeat_interval=0.2), events=bus, services=[service])
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = asyncio.Event()
    bus.subscribe(lambda e: started.set() if e.name == "node_started" else None)
    run = asyncio.create_task(node.run(until=stop))
    async with asyncio.timeout(20):
        await started.wait()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a fresh user-data-dir
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000,
                viewport={"width": 1280, "height": 900},
            )  # fmt: skip
            try:
                page = await browser.new_page()
                # MA-4's limit is the browser's first (contentful) paint under 1 s, taken as
                # verify takes it (measure_paint): the best of up to PAINT_TRIES loads (a
                # page slow to paint is slow every time; a busy machine is slow some of the
                # time). The data's arrival after it is a wall-clock time of the whole
                # machine (1.17 s at load 4 beside the suite on a slow machine): only a
                # stall fails on it.
                loads = await measure_paint(
                    page,
                    service.url + "/",
                    rendered='tr[data-agent="a"]',
                    rendered_timeout_ms=5_000,
                )
                for load in loads:
                    print(f"dashboard: {load}")
                    assert load.slowest_ms < float("inf"), "the browser reported no paint timing"
                    assert load.rendered_s < 5.0, load.rendered_s
                tries = [load.slowest_ms for load in loads]
                assert min(tries) < FIRST_PAINT_S * 1000, tries
                for panel in ("business", "system", "infrastructure", "alerts"):
                    assert await page.is_visible(f"#{panel}")
                assert await page.text_content('tr[data-agent="a"] td:nth-child(2)') == "running"
                assert await page.text_content("#agents_running") == "2"
                await page.wait_for_selector("#live.ok", timeout=2_000)  # SSE connected
                # live numbers: tasks finishing now show within 2 s, without a reload
                done = float(await page.text_content("#tasks_completed") or "0")
                catalog.TASKS_FINISHED.labels("completed").inc(3)
                await page.wait_for_function(
                    f"document.getElementById('tasks_completed').textContent == '{done + 3:.0f}'",
                    timeout=2_000,
                )
                # the restart count is the process's metric: other tests may have added to it
                restarts_before = int(await page.text_content("#restarts") or "0")
                old_pid = node.runtime.whereis("b").pid
                os.kill(old_pid, signal.SIGKILL)
                t_kill = time.monotonic()
                await page.wait_for_selector('tr[data-agent="b"][data-restarts="1"]', timeout=2_000)
                # the node's total comes in its own update, which may follow the row's: waited
                # for (read at once, it was still the old count on a machine at load 5)
                await page.wait_for_function(
                    f"document.getElementById('restarts').textContent == '{restarts_before + 1}'",
                    timeout=2_000,
                )
                shown_after = time.monotonic() - t_kill
                assert shown_after < 2.0
                # the restart storm alert it raised shows among active and recent alerts
                await page.wait_for_selector("#alerts_active li.warning", timeout=3_000)
                active = await page.text_content("#alerts_active")
                assert "RestartStorm" in active and "agent=b" in active
                assert "firing warning RestartStorm" in await page.text_content("#alerts_recent")
                new_pid = await page.text_content('tr[data-agent="b"] td:nth-child(3)')
                assert new_pid != str(old_pid)
                # the cluster panel lists the nodes sharing the store (just this one here)
                await page.wait_for_selector("#cluster_nodes li", timeout=3_000)
                assert "(this node) alive" in await page.text_content("#cluster_nodes")
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                await browser.close()
    finally:
        stop.set_result(None)
        async with asyncio.timeout(30):
            assert await run == 0


TOKEN = "dashboard-token-0123456789"


@pytest.mark.timeout(90)
async def test_login_with_the_token_shows_the_dashboard_and_task_journals(tmp_path, monkeypatch):
    """With a token configured: without it the page is a login form and the data endpoints
    answer 401; after logging in, the dashboard is live, lists recent tasks, and clicking
    one shows its journal. The session cookie cannot change anything (CSRF)."""
    import asyncio

    import httpx
    from playwright.async_api import async_playwright

    from stalwart.node import app_node

    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    service = ObservabilityService(ServerSettings(port=0, api_token=TOKEN, log_db=None))
    bus = EventBus(log=False)
    started = asyncio.Event()
    bus.subscribe(lambda e: started.set() if e.name == "node_started" else None)
    node, app = app_node(
        "examples.helpdesk.app:app",
        store=f"sqlite:///{tmp_path}/hd.db",
        events=bus,
        settings=RuntimeSettings(heartbeat_interval=0.5),
        services=(service,),
    )
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    run = asyncio.create_task(node.run(until=stop))
    try:
        async with asyncio.timeout(30):
            await asyncio.wait(
                [run, asyncio.ensure_future(started.wait())], return_when=asyncio.FIRST_COMPLETED
            )
        assert not run.done(), f"the node exited during start with {run.result()}"
        ticket = {"id": "T-1", "text": "Where is my order #4521?", "from": "ann@example.com"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=auth, timeout=10) as c:
            r = await c.post("/v1/tasks", json={"agent": "triage", "input": ticket})
            assert r.status_code == 202, r.text
            task_id = r.json()["id"]
        assert app.tasks is not None
        assert (await app.tasks.wait(task_id, timeout=30)).status == "succeeded"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000,
                viewport={"width": 1280, "height": 1100},
            )  # fmt: skip
            try:
                page = await browser.new_page()
                first = await page.goto(service.url + "/", wait_until="load", timeout=10_000)
                assert first is not None and first.status == 401
                assert await page.is_visible("form#login")
                refused = await page.evaluate(
                    """Promise.all(["/v1/summary", "/v1/tasks", "/v1/agents", "/v1/events"]
                         .map((u) => fetch(u).then((r) => r.status)))"""
                )
                assert refused == [401, 401, 401, 401]
                await page.fill("#token", "not-the-token-at-all")
                await page.click("button[type=submit]")
                await page.wait_for_selector("#message", timeout=5_000)
                assert "wrong token" in (await page.text_content("#message") or "")
                await page.fill("#token", TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_selector('tr[data-agent="triage"]', timeout=5_000)
                await page.wait_for_selector("#live.ok", timeout=5_000)  # SSE with the cookie
                assert await page.evaluate("document.cookie") == ""  # HttpOnly
                row = f'#task_rows tr[data-task="{task_id}"]'
                await page.wait_for_selector(row, timeout=5_000)
                assert await page.get_attribute(row, "data-status") == "succeeded"
                await page.click(row)
                await page.wait_for_selector("#journal_steps tr[data-seq]", timeout=5_000)
                steps = await page.text_content("#journal_steps") or ""
                assert "agent:resolver" in steps and "ann@example.com" not in steps
                assert await page.text_content("#journal_status") == "succeeded"
                csrf = await page.evaluate(
                    "fetch('/v1/agents/triage/restart', {method: 'POST'}).then((r) => r.status)"
                )
                assert csrf == 401
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard-tasks.png"), full_page=True)
            finally:
                await browser.close()
    finally:
        if not stop.done():
            stop.set_result(None)
        async with asyncio.timeout(30):
            assert await run == 0
