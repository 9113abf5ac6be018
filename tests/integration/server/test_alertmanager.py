"""A real Alertmanager (Debian prometheus-alertmanager) accepts the node's payload, routes
the alert to its webhook receiver, and sends the resolution when the node resolves it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import httpx
import pytest
from tests._loopback import free_port

from stalwart.observe import AlertNotice
from stalwart.server import AlertmanagerNotifier, Dispatcher

AM = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(AM is None, reason="needs Debian prometheus-alertmanager")


@pytest.mark.timeout(60)
async def test_alertmanager_routes_fire_and_resolve(receiver, tmp_path):
    config = tmp_path / "am.yml"
    config.write_text(
        "route:\n  receiver: hook\n  group_by: [alertname, severity]\n"
        "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: hook\n    webhook_configs:\n"
        f"      - url: '{receiver.url}'\n        send_resolved: true\n"
    )
    port = free_port()
    assert AM is not None
    proc = subprocess.Popen(
        [AM, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as c, asyncio.timeout(20):
            while True:  # bounded wait for it to listen
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                try:
                    if (await c.get("/-/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        labels = {"alertname": "BreakerOpen", "severity": "warning", "dependency": "sim"}
        now = time.time()
        firing = AlertNotice("BreakerOpen", "warning", "firing", labels, 1.0, 1.0, "open", now)
        d = Dispatcher([AlertmanagerNotifier(f"{base}/api/v2/alerts", node="n1")])
        assert await d.send_now(firing) == {"alertmanager": "sent"}
        await receiver.wait_for(lambda b: any(x["status"] == "firing" for x in b), timeout=20)
        got = next(x for x in receiver.bodies if x["status"] == "firing")
        assert got["alerts"][0]["labels"] == {**labels, "node": "n1"}
        assert got["alerts"][0]["annotations"]["summary"] == "open"
        resolved = AlertNotice(
            "BreakerOpen", "warning", "resolved", labels, 0.0, 1.0, "open", now, time.time()
        )
        assert await d.send_now(resolved) == {"alertmanager": "sent"}
        await receiver.wait_for(lambda b: any(x["status"] == "resolved" for x in b), timeout=20)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
