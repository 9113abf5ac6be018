"""MCP tools in a real node: an LLMAgent declared in TOML uses a stdio MCP server on the
simulated model; its agent process is SIGKILLed mid-task and the side effect is not
repeated on resume (the idempotency ledger); scopes deny a tool the agent lacks."""

from __future__ import annotations

import os
import pathlib
import signal
import sys

import pytest

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import EventBus

from .test_mcp import SERVER, pid_gone, until

TOML = """
sim = true
scenario = "tests.integration.tools.mcp_app:SCENARIO"
lease_seconds = 4

[models]
main = ["sim:strong"]

[[mcp_servers]]
name = "notes"
command = {command}
prefix = "notes_"
ping_interval = 1

[mcp_servers.tools.read_notes]
scopes = ["notes:read"]

[mcp_servers.tools.add_note]
scopes = ["notes:write"]
side_effect = true
key_argument = "idempotency_key"

[mcp_servers.tools.slow_add]
scopes = ["notes:write"]
side_effect = true
key_argument = "idempotency_key"

[mcp_servers.tools.slow]
scopes = ["notes:read"]
timeout = 10
retry = false

[[agents]]
name = "scribe"
model = "main"
system = "You keep notes."
tools = ["mcp:notes"]
scopes = ["notes:read", "notes:write"]

[[agents]]
name = "peek"
kind = "python"
fn = "tests.integration.tools.mcp_app:peek"
tools = ["mcp:notes/read_notes", "mcp:notes/add_note"]
scopes = ["notes:read"]
"""


def write_app(tmp_path: pathlib.Path) -> str:
    command = [sys.executable, str(SERVER), "--notes", str(tmp_path / "notes.txt"),
               "--log", str(tmp_path / "calls.log")]  # fmt: skip
    path = tmp_path / "app.toml"
    path.write_text(TOML.replace("{command}", repr(command).replace("'", '"')))
    return str(path)


def notes_of(tmp_path: pathlib.Path) -> list[str]:
    path = tmp_path / "notes.txt"
    return path.read_text().splitlines() if path.exists() else []


def calls(tmp_path: pathlib.Path) -> list[tuple[str, int]]:
    log = tmp_path / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(line.split()[0], int(line.split()[1])) for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_llm_agent_uses_mcp_tools_and_a_kill_mid_task_repeats_no_side_effect(tmp_path):
    node, service = app_node(
        write_app(tmp_path),
        store=f"sqlite:///{tmp_path}/node.db",
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    facts: dict[str, object] = {}

    async def work() -> None:
        await until(lambda: node.ready, 60, "the node is ready")
        tasks = service.tasks
        # 1. end to end, undisturbed
        await tasks.submit("scribe", {"text": "Please keep this note: buy milk."}, task_id="t1")
        record = await tasks.wait("t1", timeout=60)
        assert record.status == "succeeded", record.outcome
        facts["t1"] = record.outcome
        # 2. killed while its read step after the side effect runs
        await tasks.submit("scribe", {"text": "Please keep this note: call bob."}, task_id="t2")
        slow_before = sum(1 for name, _ in calls(tmp_path) if name == "slow")
        await until(
            lambda: sum(1 for name, _ in calls(tmp_path) if name == "slow") > slow_before,
            60, "t2 reaches its slow step (after its side effect)",
        )  # fmt: skip
        ref = node.runtime.whereis("scribe")
        assert ref is not None
        os.kill(ref.pid, signal.SIGKILL)
        facts["killed_pid"] = ref.pid
        record = await tasks.wait("t2", timeout=90)
        assert record.status == "succeeded", record.outcome
        facts["t2"] = record.outcome
        # 3. scopes: peek is granted notes:read only
        await tasks.submit("peek", {}, task_id="p1")
        record = await tasks.wait("p1", timeout=60)
        assert record.status == "succeeded", record.outcome
        facts["p1"] = record.outcome
        # 4. killed inside a side-effect call: the note is written, the answer never came
        await tasks.submit(
            "scribe", {"text": "Please remember: pay rent. Take 6 seconds."}, task_id="t3"
        )
        await until(lambda: any(line.endswith("\tpay rent") for line in notes_of(tmp_path)),
                    60, "t3's side effect reached the server")  # fmt: skip
        ref = node.runtime.whereis("scribe")
        assert ref is not None
        os.kill(ref.pid, signal.SIGKILL)
        record = await tasks.wait("t3", timeout=90)
        assert record.status == "succeeded", record.outcome
        facts["t3"] = record.outcome

    code = await node.run(until=work())
    assert code == 0

    t1, t2, p1 = facts["t1"], facts["t2"], facts["p1"]
    assert t1["status"] == "completed" and t1["answer"].startswith("Noted: buy milk.")
    assert t1["answer"].endswith('The server said {"added":"buy milk"}')
    assert t2["status"] == "completed" and t2["answer"].startswith("Noted: call bob.")

    lines = notes_of(tmp_path)
    texts = [line.split("\t")[1] for line in lines]
    assert texts == ["buy milk", "call bob", "pay rent"]  # each side effect exactly once
    keys = [line.split("\t")[0] for line in lines]
    assert len(set(keys)) == 3 and all(keys)  # ledger keys reached the server
    made = [name for name, _ in calls(tmp_path)]
    assert made.count("add_note") == 2  # not repeated on t2's resume
    assert made.count("slow_add") == 1  # interrupted mid-call: not made again (at most once)
    t3 = facts["t3"]
    assert t3["status"] == "outcome_unknown" and t3["outcome_unknown"] is True
    assert [e["tool"] for e in t3["effects"]] == ["notes_slow_add"]
    # t1 once; t2 at least twice: the kill landed mid-step, and the read is made again (a
    # read may run again, by design: only side effects go through the ledger)
    assert made.count("slow") >= 3
    assert p1["read"] == "ok" and p1["write"] == "denied" and "notes:write" in p1["why"]
    # every server process the agents started is gone once the node stopped
    pids = {pid for name, pid in calls(tmp_path) if name == "start"}
    assert len(pids) >= 4  # scribe's three (two kills), peek's
    await until(lambda: all(pid_gone(p) for p in pids), 20, "MCP server processes exit")


@pytest.mark.timeout(120)
async def test_the_mcp_notes_example_runs_on_a_node(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_FILE", str(tmp_path / "example-notes.txt"))
    node, service = app_node(
        "examples.mcp_notes.app:app",
        store=f"sqlite:///{tmp_path}/example.db",
        events=EventBus(log=False),
    )
    outcome: dict[str, object] = {}

    async def work() -> None:
        await until(lambda: node.ready, 60, "the node is ready")
        await service.tasks.submit(
            "scribe", {"text": "Take a note: water the plants."}, task_id="e1"
        )
        record = await service.tasks.wait("e1", timeout=60)
        assert record.status == "succeeded", record.outcome
        outcome.update(record.outcome)

    assert await node.run(until=work()) == 0
    assert outcome["status"] == "completed" and outcome["answer"] == "Noted: water the plants."
    lines = (tmp_path / "example-notes.txt").read_text().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["water the plants"]
