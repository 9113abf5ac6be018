"""Each notifier against a real loopback receiver: webhook retries, Slack, Alertmanager, SMTP,
and the `stalwart alerts test` / `alerts export` commands."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import pytest

from stalwart.observe import AlertNotice
from stalwart.server import (
    AlertmanagerNotifier,
    Dispatcher,
    SlackNotifier,
    SmtpNotifier,
    WebhookNotifier,
)

NOTICE = AlertNotice(
    "RestartStorm", "critical", "firing", {"alertname": "RestartStorm", "severity": "critical",
    "agent": "a"}, 6.0, 5.0, "Agent restarts in the last 5 minutes", 1_800_000_000.0,
)  # fmt: skip
RESOLVED = AlertNotice(
    "RestartStorm", "critical", "resolved", dict(NOTICE.labels), 0.0, 5.0, NOTICE.summary,
    NOTICE.starts_at, 1_800_000_060.0,
)  # fmt: skip


async def test_slack_and_alertmanager_payloads(receiver):
    d = Dispatcher([
        SlackNotifier(receiver.url, node="n1"), AlertmanagerNotifier(receiver.url, node="n1"),
    ])  # fmt: skip
    d.start()
    d.submit(NOTICE)
    d.submit(RESOLVED)
    await receiver.wait_for(lambda b: len(b) == 4)
    await d.close()
    slack = [b for b in receiver.bodies if isinstance(b, dict)]
    am = [b for b in receiver.bodies if isinstance(b, list)]
    assert slack[0]["text"].startswith("[FIRING:critical] RestartStorm")
    assert "agent=a" in slack[0]["text"] and "(node n1)" in slack[0]["text"]
    assert slack[1]["text"].startswith("[RESOLVED:critical]")
    assert am[0][0]["labels"] == {**NOTICE.labels, "node": "n1"}
    assert "endsAt" not in am[0][0] and am[1][0]["endsAt"] == "2027-01-15T08:01:00Z"


async def test_a_failing_receiver_is_retried_then_delivery_goes_on(receiver):
    calls = {"n": 0}

    class Flaky(WebhookNotifier):
        async def send(self, notice: AlertNotice) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("receiver restarting")
            await super().send(notice)

    d = Dispatcher([Flaky(receiver.url)], attempts=3)
    d.start()
    d.submit(NOTICE)
    await receiver.wait_for(lambda b: len(b) == 1)
    await d.close()
    assert calls["n"] == 2 and receiver.bodies[0]["status"] == "firing"


async def test_an_unreachable_receiver_costs_bounded_time():
    d = Dispatcher([WebhookNotifier("http://127.0.0.1:9/hook", timeout=1.0)], attempts=2)
    started = asyncio.get_running_loop().time()
    results = await d.send_now(NOTICE)
    assert results["webhook"].startswith("failed")
    assert asyncio.get_running_loop().time() - started < 10


class SmtpSink:
    """A minimal loopback SMTP server that records each message's DATA."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.got = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ready\r\n")
        data: list[bytes] = []
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    self.messages.append(b"".join(data).decode())
                    self.got.set()
                    writer.write(b"250 queued\r\n")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 sink\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


async def test_smtp_email_is_delivered():
    sink = SmtpSink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        d = Dispatcher([SmtpNotifier("127.0.0.1", port, "stalwart@test", ["oncall@test"])])
        results = await d.send_now(NOTICE)
        assert results == {"email": "sent"}
        async with asyncio.timeout(5):
            await sink.got.wait()
    finally:
        server.close()
        await server.wait_closed()
    assert "Subject: [FIRING:critical] RestartStorm" in sink.messages[0]
    assert "To: oncall@test" in sink.messages[0]


async def test_cli_alerts_test_fires_for_real_and_export_writes_rules(receiver, tmp_path):
    env = {**os.environ, "STALWART_ALERT_WEBHOOK_URL": receiver.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stalwart.cli", "alerts", "test", "MemoryGrowth",
        "--severity", "critical", stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.decode().strip() == "webhook: sent"
    assert [(b["alertname"], b["severity"], b["status"]) for b in receiver.bodies] == [
        ("MemoryGrowth", "critical", "firing"), ("MemoryGrowth", "critical", "resolved"),
    ]  # fmt: skip
    unknown = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "alerts", "test", "Nope"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2 and "no rule 'Nope'" in unknown.stderr
    rules = tmp_path / "rules.yml"
    export = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "alerts", "export", "-o", str(rules)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert export.returncode == 0 and "alert: RestartStorm" in rules.read_text()
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "rules", str(rules)],
                               capture_output=True, timeout=30, check=False)  # fmt: skip
        assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("url", ["ftp://x", "not a url"])
def test_bad_notifier_urls_are_refused(url):
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier(url)
