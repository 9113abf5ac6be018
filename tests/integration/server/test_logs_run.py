"""A whole `stalwart run`: every stderr line has the common fields; the log store finds
the agents' lines by agent, task, time range and text, through the CLI and the API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import httpx

from stalwart.observe import COMMON_FIELDS

APP = textwrap.dedent(
    """
    import asyncio
    from stalwart import Agent, ChildSpec, SupervisorSpec
    from stalwart.observe import get_logger, log_context

    log = get_logger("helpdesk")

    class Helpdesk(Agent):
        async def init(self, args):
            self._work = asyncio.get_running_loop().create_task(self.work())

        async def work(self):
            for t in range(3):
                task_id = f"{self.ctx.name}-t{t}"
                with log_context(task_id=task_id, trace_id=f"trace-{task_id}"):
                    for step in range(2):
                        log.info("ticket_step", step=step, text=f"customer says hello {t}")
                    try:
                        raise TimeoutError("model timed out")
                    except TimeoutError:
                        log.warning("model_call_failed", exc_info=True, dependency="sim")
            log.info("helpdesk_done")

    root = SupervisorSpec("root", [ChildSpec("desk1", Helpdesk), ChildSpec("desk2", Helpdesk)])
    """
)


async def test_logs_of_a_run_have_the_schema_and_are_searchable(tmp_path):
    (tmp_path / "helpdesk_app.py").write_text(APP)
    db = tmp_path / "logs.db"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stalwart.cli", "run", "helpdesk_app:root",
        "--http-port", "0", "--log-db", str(db),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    lines: list[dict] = []
    try:
        port = None
        done = 0
        async with asyncio.timeout(20):
            while done < 2 or port is None:
                raw = await proc.stderr.readline()
                assert raw, "node exited early"
                record = json.loads(raw)  # every line is JSON
                lines.append(record)
                if record["event"] == "http_listening":
                    port = record["port"]
                if record["event"] == "helpdesk_done":
                    done += 1
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as c:
            async with asyncio.timeout(10):
                while True:  # the store commits in batches: wait (bounded) for the last lines
                    r = await c.get("/v1/logs", params={"event": "helpdesk_done"})
                    if r.json()["count"] == 2:
                        break
                    await asyncio.sleep(0.1)
            by_task = (await c.get("/v1/logs", params={"task": "desk1-t1", "since": "10m"})).json()
            assert [(x["event"], x["step"]) for x in by_task["lines"]] == [
                ("ticket_step", 0), ("ticket_step", 1), ("model_call_failed", None),
            ]  # fmt: skip
            assert all(x["agent_id"] == "desk1" and x["node"] for x in by_task["lines"])
            failed = by_task["lines"][-1]
            assert (
                failed["error_class"] == "TimeoutError" and failed["trace_id"] == "trace-desk1-t1"
            )
            by_agent = (
                await c.get("/v1/logs", params={"agent": "desk2", "grep": "hello 2"})
            ).json()
            assert by_agent["count"] == 2
            assert {x["task_id"] for x in by_agent["lines"]} == {"desk2-t2"}
            future = await c.get("/v1/logs", params={"agent": "desk2", "since": "2100-01-01"})
            assert future.json()["count"] == 0
        cli = subprocess.run(
            [sys.executable, "-m", "stalwart.cli", "logs", "--db", str(db), "--agent", "desk1",
             "--task", "desk1-t0", "--since", "10m", "--grep", "customer"],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        found = [json.loads(line) for line in cli.stdout.splitlines()]
        assert [(x["task_id"], x["step"]) for x in found] == [("desk1-t0", 0), ("desk1-t0", 1)]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                rest = await proc.stderr.read()
                assert await proc.wait() == 0
            lines += [json.loads(x) for x in rest.decode().splitlines() if x.strip()]
    # the schema check, on every line of the run (node and agents alike)
    assert len(lines) > 20
    for record in lines:
        assert list(record)[: len(COMMON_FIELDS)] == list(COMMON_FIELDS), record
        assert record["level"] in ("debug", "info", "warning", "error", "critical"), record
        assert record["node"], record
    agent_lines = [x for x in lines if x["event"] == "ticket_step"]
    assert len(agent_lines) == 12 and {x["agent_id"] for x in agent_lines} == {"desk1", "desk2"}
