"""`stalwart run` of an app (TOML) and `stalwart task submit|status|list`, as processes."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


async def stalwart(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_run_a_toml_app_and_drive_it_with_the_task_commands(tmp_path):
    store = f"sqlite:///{tmp_path}/cli.db"
    node = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "run",
        "examples/helpdesk/helpdesk.toml",
        "--store",
        store,
        "--no-http",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            while b"node_started" not in (line := await node.stderr.readline()):
                assert line, "the node exited before it started"
        ticket = json.dumps({"text": "Where is my order #321? (kim@example.com)"})
        code, out, err = await stalwart(
            "task", "submit", "triage", ticket, "--id", "t-1", "--store", store, "--wait", "30",
            "--principal", '{"id": "kim@example.com", "attrs": {"tier": "gold"}}',
        )  # fmt: skip
        assert code == 0, err
        done = json.loads(out)
        assert done["status"] == "succeeded" and done["outcome"]["answer"].startswith("Order #321")
        code, out, _ = await stalwart("task", "status", "t-1", "--store", store)
        assert code == 0 and json.loads(out)["id"] == "t-1"
        code, out, _ = await stalwart("task", "list", "--store", store)
        agents = {json.loads(line)["agent"] for line in out.splitlines()}
        assert agents == {"triage", "resolver"}  # the ticket and its hand-over sub-task
        # the principal is stored with the task, and the hand-over passed it on
        from stalwart.durable import open_store

        db = await open_store(store, migrate=False)
        try:
            tasks = await db.list_tasks(limit=10)
        finally:
            await db.close()
        assert len(tasks) == 2
        for task in tasks:
            assert task.input["$principal"] == {
                "id": "kim@example.com", "kind": "customer", "attrs": {"tier": "gold"}
            }  # fmt: skip
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await node.wait() == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'store = "sqlite:///x.db"\nunknown = 1\n[[agents]]\nname = "a"\nkind = "python"\n'
            'fn = "examples.helpdesk.app:triage"\n',
            "unknown top-level key(s) ['unknown']",
        ),
        (
            '[[agents]]\nname = "a"\nkind = "llm"\nmodel = "nope"\n',
            "uses model chain 'nope', which App.models does not define",
        ),
        (
            '[[agents]]\nname = "a"\nkind = "python"\nfn = "examples.helpdesk.app:nothing"\n',
            "cannot load 'examples.helpdesk.app:nothing'",
        ),
    ],
)
async def test_a_wrong_app_file_is_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    code, _, err = await stalwart("run", str(bad), "--no-http")
    assert code == 2
    assert message in err


async def test_task_commands_need_a_store_and_json(tmp_path):
    code, _, err = await stalwart("task", "list")
    assert code == 2 and "--app" in err
    code, _, err = await stalwart(
        "task", "submit", "triage", "{not json", "--store", f"sqlite:///{tmp_path}/x.db"
    )
    assert code == 2 and "not JSON" in err
    code, _, err = await stalwart(
        "task", "submit", "triage", "{}", "--store", f"sqlite:///{tmp_path}/x.db",
        "--principal", '{"name": "x"}',
    )  # fmt: skip
    assert code == 2 and "principal" in err
