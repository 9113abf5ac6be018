"""The node loads the output tier's model only for a view that needs it, off its loop.

A real `stalwart run` node: after it is ready, and while its task list (ids, statuses:
no capital to read) is polled, its process has not mapped spaCy. The first view of a
task whose input names a person loads it in a worker thread: the node answers /livez
meanwhile, and the view comes back redacted."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import httpx
import pytest
from tests._loopback import free_port

APP = textwrap.dedent(
    """
    from stalwart.agent import App, PythonAgent

    async def echo(ctx, task_input):
        return {"answer": task_input["text"]}

    app = App(agents=[PythonAgent(name="echo", fn=echo)])
    """
)
TOKEN = "view-model-token-0123456789"
TEXT = "Ada Lovelace wrote from London about her order."

pytestmark = [
    pytest.mark.accurate_redaction,  # the node's views load the model
    pytest.mark.skipif(
        importlib.util.find_spec("spacy") is None,
        reason="the accurate tier (spaCy) is not installed",
    ),
]


def _maps_spacy(pid: int) -> bool:
    return "/spacy/" in pathlib.Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.timeout(120)
async def test_the_model_loads_at_the_first_view_that_needs_it_off_the_loop(tmp_path):
    (tmp_path / "view_app.py").write_text(APP)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "STALWART_API_TOKEN": TOKEN,
    }
    env.pop("STALWART_NER_MODEL", None)
    env.pop("STALWART_REDACT_OUTPUTS", None)
    node = subprocess.Popen(
        [sys.executable, "-m", "stalwart.cli", "run", "view_app:app", "--http-port", str(port),
         "--store", f"sqlite:///{tmp_path}/s.db", "--log-db", str(tmp_path / "logs.db"),
         "--log-format", "json"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=30
        ) as c:
            async with asyncio.timeout(60):
                while True:
                    assert node.poll() is None, node.stderr.read() if node.stderr else ""
                    try:
                        if (await c.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
            assert not _maps_spacy(node.pid), "the node loaded the model while starting"

            r = await c.post("/v1/tasks", json={"agent": "echo", "input": {"text": TEXT}})
            assert r.status_code == 202, r.text
            task_id = r.json()["id"]
            async with asyncio.timeout(30):
                while True:
                    listing = (await c.get("/v1/tasks", params={"agent": "echo"})).json()
                    [row] = listing["tasks"]
                    if row["status"] == "succeeded":
                        break
                    await asyncio.sleep(0.05)
            assert not _maps_spacy(node.pid), "a view with no capital in it loaded the model"

            view = asyncio.create_task(c.get(f"/v1/tasks/{task_id}"))
            answered_meanwhile = 0
            while not view.done():
                assert (await c.get("/livez")).status_code == 200
                if not view.done():
                    answered_meanwhile += 1
            shown = (await view).json()
            # loading the model takes over a second of CPU: off the loop, ~290 /livez were
            # answered meanwhile (idle); on it, 2 (those read before the view's handler ran)
            assert answered_meanwhile >= 20, answered_meanwhile
            assert _maps_spacy(node.pid)
            assert "Lovelace" not in str(shown) and "London" not in str(shown)
            assert shown["input"]["text"].startswith("[REDACTED:person]"), shown
            assert shown["outcome"]["answer"] == shown["input"]["text"]
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(timeout=10)
