"""schemathesis drives the served OpenAPI spec against a real node: no request gets a 5xx."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

import pytest

from stalwart.durable import store_from_url
from stalwart.node import Tasks
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

from .conftest import TOKEN

ST = shutil.which("st", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(ST is None, reason="needs schemathesis (the test extra)")
@pytest.mark.slow  # about 50 s idle: 900-odd requests
@pytest.mark.timeout(180)
async def test_no_generated_request_gets_a_5xx(start_node, tmp_path):
    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)], intensity=100, period=60)
    # hundreds of requests in a few seconds from one client: lift the rate limit (its 429s
    # are documented, but would cut the run short of the handlers)
    n = await start_node(root, rate_limit_per_s=1e6, rate_limit_burst=1_000_000)
    # the task and approval endpoints over a real store (no agent runs the tasks): what
    # an app's node gives them, so generated bodies reach the handlers, not a 404
    url = f"sqlite:///{tmp_path}/tasks.db"
    store = store_from_url(url)
    await store.open()
    n.node.tasks = Tasks(None, store, store_url=url)
    assert ST is not None
    proc = await asyncio.create_subprocess_exec(
        ST, "run", f"{n.url}/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance",
        "--max-examples", "12", "--workers", "1", "--request-timeout", "10",
        "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
        # the event streams stay open while their subject lives (tasks here never run)
        "--exclude-path", "/v1/events", "--exclude-path", "/v1/tasks/{id}/events",
        "-H", f"Authorization: Bearer {TOKEN}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
    )  # fmt: skip
    try:
        async with asyncio.timeout(170):
            out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        assert "No issues found" in text or " passed" in text, text[-3000:]
        assert (await n.client.get("/livez")).status_code == 200
        assert (await n.client.get("/v1/tasks")).json()["count"] > 0  # some were accepted
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await n.close()
        await store.close()
