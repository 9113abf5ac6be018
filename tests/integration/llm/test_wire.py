"""The sim speaks the real OpenAI wire format: the official client works against it."""

from __future__ import annotations

import json

import openai
import pytest


def test_official_openai_client_multi_turn_tool_calling(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Find an order by id",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "integer"}},
                    "required": ["order_id"],
                },
            },
        }
    ]
    messages = [
        {"role": "system", "content": "You are a helpdesk agent."},
        {"role": "user", "content": "Where is my order #4521?"},
    ]
    first = client.chat.completions.create(model="strong", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": 4521}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append(
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"order_id": 4521, "status": "shipped"}),
        }
    )
    second = client.chat.completions.create(model="strong", messages=messages, tools=tools)
    answer = second.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"
    assert "4521" in answer and "shipped" in answer
    assert second.usage.prompt_tokens > first.usage.prompt_tokens > 0


def test_official_client_sees_api_errors_as_documented(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="wrong", max_retries=0, timeout=10)
    sim.world.set_keys("strong", ["right"])
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="strong", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert [m.id for m in client.models.list().data] == ["strong", "weak", "gullible", "reasoner"]


async def test_stalwart_sim_command_serves_until_sigterm(tmp_path):
    import asyncio
    import re
    import signal
    import sys

    import httpx

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "sim",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode()
        base = re.search(r"models at (\S+) ", line).group(1)
        async with httpx.AsyncClient(timeout=5) as http:
            models = (await http.get(f"{base}/models")).json()
        assert [m["id"] for m in models["data"]] == ["strong", "weak", "gullible", "reasoner"]
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_stalwart_sim_rejects_a_bad_scenario_file(tmp_path):
    import asyncio
    import sys

    bad = tmp_path / "scenario.json"
    bad.write_text('{"rules": [{"match": "("}]}')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "sim",
        "--port",
        "0",
        "--scenario",
        str(bad),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"cannot load scenario" in err and b"not a regex" in err
