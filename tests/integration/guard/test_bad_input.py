"""Acceptance 6: oversized, malformed, wrongly typed and hostile inputs get clear errors, and
nothing is lost: every good task still completes, every refused one says why."""

from __future__ import annotations

import asyncio

import pytest

from stalwart import RuntimeSettings
from stalwart.errors import InputRejected
from stalwart.node import app_node
from stalwart.observe import EventBus


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


REFUSED_AT_SUBMIT = [
    ({"text": "x" * 2000}, "max_string"),  # over the agent's own limit
    ({"text": "😀" * 80_000}, "max_string"),  # huge Unicode
    ({"text": "ok", "extra": nested(200)}, "deeper than"),
    ({"text": object()}, "JSON data"),
    ({"text": float("inf")}, "not finite"),
    (b'{"text": "unterminated', "not valid JSON"),
    ({1: "int key"}, "not a string"),
]


async def test_bad_inputs_are_refused_clearly_and_good_ones_complete(tmp_path, monkeypatch):
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    node, service = app_node(
        "tests.integration.guard.input_app:app",
        store=f"sqlite:///{tmp_path}/in.db",
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    outcome: dict[str, object] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        tasks = service.tasks
        assert tasks is not None
        good = [await tasks.submit("echo", {"text": f"hello {i}"}) for i in range(20)]
        hostile = await tasks.submit(
            "echo", {"text": "hi\x00 there\u200b" + "".join(chr(0xE0000 + ord(c)) for c in "pwn")}
        )
        off_schema = await tasks.submit("echo", {"text": "fine", "priority": "urgent"})
        for value, message in REFUSED_AT_SUBMIT:
            with pytest.raises(InputRejected, match=message):
                await tasks.submit("echo", value)
        records = {t: await tasks.wait(t, timeout=30) for t in [*good, hostile, off_schema]}
        outcome["good"] = [records[t].status for t in good]
        outcome["hostile"] = records[hostile].outcome
        outcome["off_schema"] = (records[off_schema].status, records[off_schema].outcome)
        outcome["kept_input"] = records[off_schema].input
        outcome["stored"] = len(await service.store.list_tasks(limit=1000))

    assert await node.run(until=work()) == 0
    assert outcome["good"] == ["succeeded"] * 20
    assert outcome["hostile"] == {"status": "completed", "text": "hi there", "priority": 0}
    status, error = outcome["off_schema"]
    assert status == "failed" and error["type"] == "InputRejected"
    assert "priority" in error["message"]
    assert outcome["kept_input"] == {"text": "fine", "priority": "urgent"}  # nothing lost
    assert outcome["stored"] == 22  # the refused-at-submit inputs created no task
