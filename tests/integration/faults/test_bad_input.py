"""Bad input gets a clear 400 (API) or exit 2 (CLI), never a 500 or a traceback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stalwart.cli._main import main
from stalwart.node import app_node
from stalwart.observe import EventBus
from stalwart.server import ObservabilityService, ServerSettings

pytestmark = pytest.mark.timeout(120)
TOKEN = "test-token-0123456789abcdef"
NESTED = "[" * 20_000 + "]" * 20_000
BIG_INT = "1" * 5000


async def test_the_api_answers_400_to_json_it_cannot_take(tmp_path):
    api = ObservabilityService(
        ServerSettings(port=0, api_token=TOKEN, log_db=str(tmp_path / "logs.db"))
    )
    node, _ = app_node(
        "tests.integration.faults.poison_apps:tight", store=f"sqlite:///{tmp_path}/b.db",
        events=EventBus(log=False), services=(api,),
    )  # fmt: skip
    answers: dict[str, Any] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as c:
            bodies = {
                "nested": '{"agent": "worker", "input": ' + NESTED + "}",
                "big_int": '{"agent": "worker", "input": ' + BIG_INT + "}",
                "surrogate": '{"agent": "worker", "input": "\\ud800"}',
            }
            for name, body in bodies.items():
                r = await c.post("/v1/tasks", content=body.encode())
                answers[name] = (r.status_code, r.json()["error"])

    assert await node.run(until=work()) == 0
    assert answers["nested"][0] == 400 and "nested too deeply" in answers["nested"][1]
    assert answers["big_int"][0] == 400 and "4300 digits" in answers["big_int"][1]
    assert answers["surrogate"][0] == 400 and "lone surrogate" in answers["surrogate"][1]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["task", "submit", "a", NESTED], "nested too deeply"),
        (["task", "submit", "a", BIG_INT], "4300 digits"),
        (["task", "submit", "a", '"\\ud800"'], "surrogates not allowed"),
        (["task", "list", "--store", "postgresql://"], "names no host and no database"),
        (["logs", "--db", "bogus://x"], "unsupported scheme 'bogus'"),
        (["logs", "--db", "postgresql://127.0.0.1:1/x"], "cannot read the log store"),
    ],
)
async def test_the_cli_exits_2_with_a_clear_error(tmp_path, capsys, argv, words):
    if argv[0] == "task" and "--store" not in argv:
        argv = [*argv, "--store", f"sqlite:///{tmp_path}/c.db"]
    code = await asyncio.to_thread(main, argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert "Traceback" not in err
