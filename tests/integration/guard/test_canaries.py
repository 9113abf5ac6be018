"""Issue 16, "no sink left unredacted": canaries -- a vault secret, a card number, a
name with an address, vendor tokens and a driver's licence number -- pushed through a real
node (``stalwart run`` in its own process, the agent in a forked process) must appear in
none of its sinks: the journal endpoint, the task API, the dashboard's data, the CLI's
output, the log store (its API and its file), the node's own stdout and stderr, /metrics,
the traces, metrics and logs it exports over OTLP, and the store file (for the resolved
secret, which is kept there only as a reference).

The name+address and Discord-token canaries are found by the redactor's name/location
tier and vendor-token formats (docs/redaction.md), and asserted like the others.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests._loopback import serving
from tests.integration.guard.canaries_app import CARD, PENDING, STRICT, VAULT_SECRET

from stalwart.guard import LocalVault

pytestmark = pytest.mark.accurate_redaction  # every sink of a node on the default tiers

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "canaries-api-token-0123456789"


class Collector:
    """An OTLP/HTTP receiver on loopback keeping every body it is sent (traces, metrics, logs)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.url = ""

    async def receive(self, request: Request) -> Response:
        self.bodies.setdefault(request.path_params["signal"], []).append(await request.body())
        return Response(b"", media_type=request.headers.get("content-type", "application/json"))


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    rec = Collector()
    app = Starlette(routes=[Route("/v1/{signal}", rec.receive, methods=["POST"])])
    async with serving(app) as url:
        rec.url = url
        yield rec


def _cli(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode in ok, (args, done.stderr)
    return done.stdout + done.stderr


async def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.25)


@pytest.mark.timeout(120)
async def test_four_canaries_reach_no_sink_of_a_real_node(tmp_path, collector) -> None:
    vault, key_file = tmp_path / "vault.enc", tmp_path / "vault.key"
    LocalVault(vault, key_file=str(key_file)).set("canary-key", VAULT_SECRET)
    store = f"sqlite:///{tmp_path}/canary.db"
    logs = tmp_path / "logs.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STALWART_"))},
        "STALWART_VAULT": str(vault),
        "STALWART_VAULT_KEY_FILE": str(key_file),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "canaries",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "STALWART_OTLP_INTERVAL_S": "0.5",
        "STALWART_API_TOKEN": TOKEN,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stalwart.cli", "run", "tests.integration.guard.canaries_app:app",
        "--store", store, "--http-port", "0", "--log-db", str(logs),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        asyncio.create_task(_drain(proc.stdout, out)),
        asyncio.create_task(_drain(proc.stderr, err)),
    ]
    written: list[str] = []
    try:

        async def listening() -> int | None:
            for raw in list(err):
                if b'"http_listening"' in raw:
                    return int(json.loads(raw)["port"])
            assert proc.returncode is None, b"".join(err).decode()[-3000:]
            return None

        port = await _until("the node to listen", listening)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=10,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as c:

            async def ready() -> bool:
                return (await c.get("/readyz")).status_code == 200

            await _until("readiness", ready)
            ids = []
            for body in ({"ok": True}, {"fail": True}):
                r = await c.post("/v1/tasks", json={"agent": "leaky", "input": body})
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])

            async def finished() -> list[dict[str, Any]] | None:
                views = [(await c.get(f"/v1/tasks/{i}")).json() for i in ids]
                return views if all(v["finished_at"] for v in views) else None

            views = await _until("both tasks to finish", finished, 60)
            assert [v["status"] for v in views] == ["succeeded", "failed"], views
            written += [json.dumps(v) for v in views]
            journal = (await c.get(f"/v1/tasks/{ids[0]}/journal")).text
            # the step returned the resolved secret: the journal holds its reference
            assert "secret://canary-key" in journal, journal
            written.append(journal)
            written.append((await c.get(f"/v1/tasks/{ids[1]}/journal")).text)
            written.append((await c.get("/v1/tasks", params={"limit": 100})).text)
            written.append((await c.get("/v1/summary")).text)  # the dashboard's data
            written.append((await c.get("/metrics")).text)
            written.append((await c.get("/readyz")).text)

            async def printed() -> str | None:
                r = await c.get("/v1/logs", params={"event": "agent_output", "limit": 1000})
                text = r.text
                wanted = ("fd2:", "stderr:", "sub:")
                return text if all(w in text for w in wanted) else None

            store_api = await _until("the printed lines in the log store", printed)
            written.append(store_api)
            lines = json.loads(store_api)["lines"]
            by_stream = {(x["stream"], bool(x.get("raw"))) for x in lines}
            assert {("stdout", False), ("stderr", False), ("stdout", True), ("stderr", True)} <= (
                by_stream
            )
            prints = [x for x in lines if x["text"].startswith("debug:")]
            assert prints and all(x["task_id"] in ids for x in prints), prints
            partial = [x["text"] for x in lines if x["text"].startswith("partial line")]
            assert partial and CARD not in partial[0]
        for task_id in ids:
            # exit 4: the task ended failed (what it printed is checked all the same)
            written.append(_cli(env, "task", "status", task_id, "--store", store, ok=(0, 4)))
        written.append(_cli(env, "task", "list", "--store", store))
        written.append(_cli(env, "logs", "--db", str(logs), "--limit", "1000"))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
            await asyncio.gather(*readers)
    assert code == 0, b"".join(err).decode()[-3000:]
    node_output = b"".join(out).decode() + b"".join(err).decode()
    assert "agent_output" in node_output and "fd1:" in node_output  # captured, as log lines
    for raw in b"".join(err).splitlines():
        assert raw.startswith(b"{"), raw  # every line of the node's stderr is a JSON record
    written.append(node_output)
    with sqlite3.connect(logs) as db:
        written += [row[0] for row in db.execute("SELECT line FROM logs")]
    exported = b"".join(b for bodies in collector.bodies.values() for b in bodies)
    assert {"traces", "metrics", "logs"} <= set(collector.bodies), set(collector.bodies)
    written.append(exported.decode("utf-8", "replace"))
    everything = "\n".join(written)
    assert "[REDACTED:card]" in everything  # the canaries were there to be removed
    leaks = {c: everything.count(c) for c in STRICT if c in everything}
    assert leaks == {}
    # the store keeps what steps return (redacted at every boundary), but never a resolved
    # secret: the journal, the ledger and the outcomes hold its reference
    store_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("canary.db*"))
    assert VAULT_SECRET.encode() not in store_bytes
    assert b"secret://canary-key" in store_bytes
    pending = {c: everything.count(c) for c in PENDING if c in everything}
    assert pending == {}


async def _drain(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        into.append(line)


BARE_APP = """
import os
from stalwart import Agent, ChildSpec, SupervisorSpec

class Printer(Agent):
    async def init(self, args):
        print("card on file", "4539 1488 0343 6467")
        os.write(2, b"raw card 4539148803436467 then exit\\n")

root = SupervisorSpec("root", [ChildSpec("printer", Printer)])
"""


@pytest.mark.timeout(60)
async def test_a_bare_supervisor_run_redacts_what_its_agents_print(tmp_path) -> None:
    """`stalwart run module:root` (no App): printed lines are logged redacted too."""
    (tmp_path / "bare_app.py").write_text(BARE_APP)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stalwart.cli", "run", "bare_app:root", "--http-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(30):
            while sum(1 for r in seen if r.get("event") == "agent_output") < 2:
                raw = await proc.stderr.readline()
                assert raw, "the node exited early"
                seen.append(json.loads(raw))
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest, _ = await asyncio.gather(proc.stderr.read(), proc.wait())
            out = await proc.stdout.read()
    printed = {
        (r["stream"], bool(r.get("raw"))): r["text"] for r in seen if r["event"] == "agent_output"
    }
    assert printed == {
        ("stdout", False): "card on file [REDACTED:card]",
        ("stderr", True): "raw card [REDACTED:card] then exit",
    }
    everything = json.dumps(seen) + rest.decode() + out.decode()
    assert CARD not in everything and CARD.replace(" ", "") not in everything


@pytest.mark.timeout(180)
def test_the_readiness_report_of_verify_carries_no_canary(tmp_path) -> None:
    """`stalwart verify --only SE-3` drives the same agent: its report (Markdown, HTML, JSON),
    the node log it keeps and what it prints hold none of the canaries. (Verify runs apps
    on a vault of its own, so the secret comes from the env provider here.)"""
    out = tmp_path / "out"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STALWART_"))},
        "STALWART_SECRETS": "env",
        "STALWART_SECRET_CANARY_KEY": VAULT_SECRET,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "verify", "tests.integration.guard.canaries_app:app",
         "--only", "SE-3", "--out", str(out)],
        capture_output=True, text=True, timeout=170, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "readiness.json").read_text())
    assert [(i["id"], i["status"]) for i in report["items"]] == [("SE-3", "complete")]
    node_log = (out / "node.log").read_text()
    assert "agent_output" in node_log and "fd1:" in node_log  # the agent ran and printed
    everything = "\n".join(
        [done.stdout, done.stderr, node_log]
        + [(out / f"readiness.{ext}").read_text() for ext in ("md", "html", "json")]
    )
    leaks = {c: everything.count(c) for c in STRICT if c in everything}
    assert leaks == {}
    pending = {c: everything.count(c) for c in PENDING if c in everything}
    assert pending == {}
