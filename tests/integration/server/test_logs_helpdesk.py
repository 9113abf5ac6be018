"""A `stalwart run` of the helpdesk example: its logs found by agent, task and time range
through the CLI and the API, and the schema checked on every line of the run."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys

import httpx

from stalwart.observe import COMMON_FIELDS

ROOT = pathlib.Path(__file__).resolve().parents[3]


async def test_helpdesk_logs_are_searchable_and_well_formed(tmp_path):
    db, store = tmp_path / "logs.db", f"sqlite:///{tmp_path}/hd.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "run",
        "examples.helpdesk.app:app",
        "--http-port",
        "0",
        "--log-db",
        str(db),
        "--store",
        store,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    lines: list[dict] = []

    async def read_until(event: str) -> dict:
        async with asyncio.timeout(30):
            while True:
                raw = await proc.stderr.readline()
                assert raw, "the node exited early"
                lines.append(json.loads(raw))  # every line is JSON
                if lines[-1]["event"] == event:
                    return lines[-1]

    try:
        port = (await read_until("http_listening"))["port"]
        await read_until("node_started")
        ticket = json.dumps({"text": "Where is my order #4242? (ana@example.com)"})
        submitted = subprocess.run(
            [
                sys.executable,
                "-m",
                "stalwart.cli",
                "task",
                "submit",
                "triage",
                ticket,
                "--id",
                "hd-1",
                "--store",
                store,
                "--wait",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=ROOT,
            check=False,
        )
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["status"] == "succeeded"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            async with asyncio.timeout(10):
                while True:  # the store commits in batches: wait (bounded) for the task's end
                    r = await c.get(
                        "/v1/logs", params={"task": "hd-1.resolver.1", "event": "task_finished"}
                    )
                    if r.json()["count"] == 1:
                        break
                    await asyncio.sleep(0.1)
            by_task = (
                await c.get("/v1/logs", params={"task": "hd-1.resolver.1", "since": "10m"})
            ).json()
            events = [x["event"] for x in by_task["lines"]]
            assert events[0] == "task_claimed" and "task_finished" in events
            assert all(x["task_id"] == "hd-1.resolver.1" for x in by_task["lines"])
            assert all(x["agent_id"] == "resolver" for x in by_task["lines"])
            by_agent = (await c.get("/v1/logs", params={"agent": "triage", "since": "10m"})).json()
            assert by_agent["count"] > 0
            assert {x["agent_id"] for x in by_agent["lines"]} == {"triage"}
            none_yet = await c.get("/v1/logs", params={"agent": "triage", "since": "2100-01-01"})
            assert none_yet.json()["count"] == 0
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "stalwart.cli",
                "logs",
                "--db",
                str(db),
                "--agent",
                "triage",
                "--task",
                "hd-1",
                "--since",
                "10m",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            cwd=ROOT,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        found = [json.loads(line) for line in cli.stdout.splitlines()]
        assert found and {(x["agent_id"], x["task_id"]) for x in found} == {("triage", "hd-1")}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                rest = await proc.stderr.read()
                assert await proc.wait() == 0
            lines += [json.loads(x) for x in rest.decode().splitlines() if x.strip()]
    # the schema, on every line of the run (the node's and its agents')
    assert len(lines) > 10
    for record in lines:
        assert list(record)[: len(COMMON_FIELDS)] == list(COMMON_FIELDS), record
        assert record["node"], record
    assert {x["agent_id"] for x in lines if x["agent_id"]} >= {"triage", "resolver"}
