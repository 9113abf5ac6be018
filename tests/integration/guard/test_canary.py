"""Acceptance 2: canary PII, credentials and a secret, seeded in inputs, tool results, errors
and careless log calls, appear nowhere the node writes: log lines, events, stored errors,
task outputs, metric labels -- nor in what its HTTP API answers about every task of the run
(the task records, the task list, each task's journal view, the approval queue)."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
import structlog
from prometheus_client import generate_latest
from tests.integration.guard.canary_app import CANARIES, CARD, EMAIL, PHONE, SECRET, SSN

from stalwart import RuntimeSettings
from stalwart.guard import LocalVault, RedactingEventBus
from stalwart.node import app_node
from stalwart.observe import REGISTRY, LogQuery, add_log_sink, configure_logging
from stalwart.server import LogStore, ObservabilityService, ServerSettings

pytestmark = pytest.mark.accurate_redaction  # every sink of a node on the default tiers

TOKEN = "canary-api-token-0123456789"


async def test_no_canary_reaches_anything_the_node_writes(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    monkeypatch.setenv("STALWART_VAULT", str(tmp_path / "vault.enc"))
    monkeypatch.setenv("STALWART_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    LocalVault(tmp_path / "vault.enc", key_file=str(tmp_path / "vault.key")).set(
        "model-key", SECRET
    )
    lines: list[str] = []
    stream = io.StringIO()  # the node's own log output, as it would go to stderr
    configure_logging(stream=stream, capture_stdlib=False)
    remove = add_log_sink(lambda _record, line: lines.append(line))
    logstore = LogStore(str(tmp_path / "logs.db"))  # the searchable log store's rows too
    logstore.start()
    events = RedactingEventBus(keep=10_000)
    http = ObservabilityService(ServerSettings(port=0, api_token=TOKEN, log_db=None))
    node, service = app_node(
        "tests.integration.guard.canary_app:app",
        store=f"sqlite:///{tmp_path}/c.db",
        events=events,
        settings=RuntimeSettings(heartbeat_interval=0.5),
        services=(http,),
    )
    written: list[str] = []

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert service.tasks is not None and service.sim is not None
        service.sim.world.set_keys("strong", [SECRET])
        text = f"Where is order #{4242}? I am {EMAIL}, phone {PHONE}, ssn {SSN}, card {CARD}."
        desk = [await service.tasks.submit("desk", {"text": text}) for _ in range(3)]
        bad = await service.tasks.submit("careless", {"text": text, "password": "hunter2!!"})
        for task_id in [*desk, bad]:
            record = await service.tasks.wait(task_id, timeout=60)
            written.append(json.dumps(record.outcome, default=str))
            if task_id in desk:
                assert record.status == "succeeded", record.outcome
                assert record.outcome["status"] == "completed"
                assert "[REDACTED:email]" in record.outcome["answer"]
            else:
                assert record.status == "failed"
                assert "[REDACTED:card]" in json.dumps(record.outcome)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=http.url, headers=auth, timeout=10) as c:
            listing = await c.get("/v1/tasks", params={"limit": 1000})
            assert listing.status_code == 200, listing.text
            written.append(listing.text)
            ids = [t["id"] for t in listing.json()["tasks"]]
            assert set(desk) | {bad} <= set(ids)  # and the subtasks they started
            steps = 0
            for task_id in ids:
                for path in (f"/v1/tasks/{task_id}", f"/v1/tasks/{task_id}/journal"):
                    r = await c.get(path)
                    assert r.status_code == 200, (path, r.text)
                    written.append(r.text)
                steps += len(r.json()["steps"])
            assert steps > len(ids)  # the journals were there to search
            for query in ("", "?reveal=0"):
                r = await c.get("/v1/approvals" + query)
                assert r.status_code == 200, r.text
                written.append(r.text)

    try:
        assert await node.run(until=work()) == 0
    finally:
        remove()
        logstore.flush()
        logstore.close()
        structlog.reset_defaults()
    rows = [str(row) for row in logstore.query(LogQuery(limit=100_000))]
    assert any("order_looked_up" in row for row in rows)
    written += rows
    written += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.glob("logs.db*")]
    written += lines
    written.append(stream.getvalue())
    written += [json.dumps({"name": e.name, **e.fields}, default=str) for e in events.recent()]
    written.append(generate_latest(REGISTRY).decode())
    everything = "\n".join(written)
    assert any("careless_debug" in line for line in lines)  # the agents' lines were captured
    assert any("order_looked_up" in line for line in lines)
    hits = {c: everything.count(c) for c in CANARIES if c in everything}
    assert hits == {}
