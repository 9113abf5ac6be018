"""The dashboard's controls in headless Debian chromium (Playwright): a refund held under
durable approvals appears in the Approvals panel and the Approve button resumes its task;
the Cancel button of another parked task ends it ``cancelled``. Both ask for the API
token once (the login cookie cannot change anything)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

import httpx
import pytest

from stalwart.llm.sim import order_for
from stalwart.node import app_node
from stalwart.observe import EventBus
from stalwart.server import ObservabilityService, ServerSettings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "dashboard-token-0123456789"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) or shutil.which("chromium") is None,
    reason="needs Debian chromium at /usr/bin/chromium",
)


def _refund(n: int) -> dict[str, Any]:
    order = [o for o in range(1000, 9999) if order_for(o)["amount_cents"] >= 9000][n]
    return {
        "text": f"Hi, my order #{order} arrived damaged. Please issue a refund of 8000 "
        "cents. Thanks, from ann@example.com",
        "from": "ann@example.com",
    }


@pytest.mark.timeout(120)
async def test_approve_and_cancel_from_the_dashboard(tmp_path, monkeypatch):
    from playwright.async_api import async_playwright

    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    service = ObservabilityService(ServerSettings(port=0, api_token=TOKEN, log_db=None))
    bus = EventBus(log=False)
    started = asyncio.Event()
    bus.subscribe(lambda e: started.set() if e.name == "node_started" else None)
    node, app = app_node(
        "tests.integration.guard.durable_approval_app:app",
        store=f"sqlite:///{tmp_path}/hd.db",
        events=bus,
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
        assert app.tasks is not None and app.store is not None and app.sim is not None
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=auth, timeout=10) as c:
            for tid, n in (("A-1", 0), ("C-1", 1)):
                body = {"agent": "resolver", "input": _refund(n), "task_id": tid}
                assert (await c.post("/v1/tasks", json=body)).status_code == 202
        async with asyncio.timeout(60):
            for tid in ("A-1", "C-1"):
                while (await app.store.get_task(tid)).status != "awaiting_approval":
                    await asyncio.sleep(0.05)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM, args=ARGS, headless=True, timeout=30_000,
                viewport={"width": 1280, "height": 1100},
            )  # fmt: skip
            try:
                page = await browser.new_page()
                prompts: list[str] = []

                async def answer(dialog: Any) -> None:
                    prompts.append(dialog.type)
                    await (dialog.accept(TOKEN) if dialog.type == "prompt" else dialog.accept())

                page.on("dialog", lambda d: asyncio.ensure_future(answer(d)))
                await page.goto(service.url + "/", wait_until="load", timeout=10_000)
                await page.fill("#token", TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_selector("#approval_rows tr[data-approval]", timeout=10_000)
                rows = await page.locator("#approval_rows tr[data-approval]").count()
                assert rows == 2
                held = page.locator("#approval_rows tr", has_text="A-1")
                assert "refund" in (await held.text_content() or "")
                await held.locator("button[data-action=approve]").click()
                await app.tasks.wait("A-1", timeout=60)
                cancel = '#task_rows tr[data-task="C-1"] button[data-action=cancel]'
                await page.wait_for_selector(cancel, timeout=10_000)
                await page.click(cancel)
                record = await app.tasks.wait("C-1", timeout=30)
                assert record.status == "cancelled" and record.outcome["by"] == "dashboard"
                assert prompts == ["prompt"]  # the token is asked once per tab
                await page.wait_for_selector(
                    '#task_rows tr[data-task="C-1"][data-status="cancelled"]', timeout=10_000
                )
            finally:
                await browser.close()
        done = await app.store.get_task("A-1")
        assert done is not None and done.status == "succeeded", done.outcome
        assert len(app.sim.world.tools.report()["deliveries"]["payments"]) == 1
    finally:
        stop.set_result(None)
        assert await run == 0
