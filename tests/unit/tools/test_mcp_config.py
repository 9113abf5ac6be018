"""Declaring MCP servers: in Python and in TOML, checked before anything connects."""

from __future__ import annotations

import re

import pytest

from stalwart.agent._toml import app_from_toml
from stalwart.errors import ConfigError
from stalwart.guard import Origin, TaintPolicy
from stalwart.tools.mcp import MCPServer, MCPTool, MCPToolOptions

BASE = """
[models]
main = ["sim:strong"]

[[mcp_servers]]
name = "notes"
command = ["python", "server.py"]
prefix = "n_"
{extra}
[mcp_servers.tools.read_notes]
scopes = ["notes:read"]
record = true

[mcp_servers.tools.add_note]
scopes = ["notes:write"]
side_effect = true
key_argument = "idempotency_key"
retry = false

[[agents]]
name = "scribe"
model = "main"
tools = {tools}
scopes = ["notes:read", "notes:write"]
"""


def load(tmp_path, tools='["mcp:notes"]', extra=""):  # type: ignore[no-untyped-def]
    path = tmp_path / "app.toml"
    path.write_text(BASE.replace("{tools}", tools).replace("{extra}", extra))
    return app_from_toml(path)


def test_toml_declares_servers_and_agents_take_their_tools(tmp_path):
    app = load(tmp_path)
    tools = app.agent("scribe").tools
    assert [t.name for t in tools] == ["n_read_notes", "n_add_note"]
    read, add = tools
    assert isinstance(read, MCPTool) and isinstance(add, MCPTool)
    assert read.server is add.server and read.server.command == ("python", "server.py")
    assert read.scopes == {"notes:read"} and read.record and not read.side_effect
    assert add.side_effect and add.retry is None and add.key_argument == "idempotency_key"
    one = load(tmp_path, tools='["mcp:notes/add_note"]').agent("scribe").tools
    assert [t.name for t in one] == ["n_add_note"]


@pytest.mark.parametrize(
    ("tools", "extra", "message"),
    [
        ('["mcp:nope"]', "", "no [[mcp_servers]] is named 'nope'"),
        ('["mcp:notes/gone"]', "", "declares no tool 'gone'"),
        ('["mcp:notes"]', "colour = 1", "unknown key(s) ['colour']"),
        ('["mcp:notes"]', 'url = "http://x/mcp"', "exactly one of command= and url="),
    ],
)
def test_toml_mistakes_are_named(tmp_path, tools, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, tools=tools, extra=extra)


def test_results_are_untrusted_unless_the_app_lists_a_record_tool():
    server = MCPServer(
        "crm",
        url="http://127.0.0.1:1/mcp",
        tools={"find": MCPToolOptions(record=True), "notes": MCPToolOptions()},
        prefix="crm_",
    )
    assert server.record_tools == ("crm_find",)
    assert TaintPolicy().origin_of_result("crm_find") == Origin.TOOL  # untrusted by default
    trusted = TaintPolicy(record_tools=server.record_tools)
    assert trusted.origin_of_result("crm_find") == Origin.RECORD
    assert trusted.origin_of_result("crm_notes") == Origin.TOOL


def test_the_key_argument_is_hidden_from_the_model_and_supplied_by_the_runtime():
    server = MCPServer(
        "s",
        command=["true"],
        tools={"send": MCPToolOptions(side_effect=True, key_argument="key")},
    )
    (send,) = server.tools
    send._absorb(
        "Send it.",
        {"type": "object", "properties": {"to": {"type": "string"}, "key": {"type": "string"}},
         "required": ["to", "key"], "title": "sendArguments"},
    )  # fmt: skip
    assert send.spec.parameters == {
        "type": "object",
        "properties": {"to": {"type": "string"}},
        "required": ["to"],
    }
    assert send.spec.description == "Send it."
    assert send.validate({"to": "a", "key": "forged"}) == {"to": "a"}  # the model's key dropped
    with pytest.raises(Exception, match="'to' is a required property"):
        send.validate({})


async def test_under_verify_a_double_stands_in_for_the_server_and_deliveries_are_counted(
    tmp_path, monkeypatch
):
    from stalwart.resilience import BreakerRegistry
    from stalwart.tools._verifying import BLOCKED_ENV, VERIFY_DIR_ENV

    sent: list[dict[str, object]] = []

    async def fake_send(to: str, idempotency_key: str) -> dict[str, object]:
        sent.append({"to": to, "key": idempotency_key})
        return {"queued": to}

    server = MCPServer(
        "mail",
        command=["true"],  # never started: the double answers
        tools={
            "send": MCPToolOptions(side_effect=True, key_argument="key", double=fake_send),
            "blast": MCPToolOptions(side_effect=True),
        },
    )
    send, blast = server.tools
    monkeypatch.setenv(VERIFY_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(BLOCKED_ENV, "blast")
    breakers = BreakerRegistry()
    result = await send.invoke({"to": "a@example.com"}, idempotency_key="k1", breakers=breakers)
    assert result.ok and result.value == {"queued": "a@example.com"}
    assert sent == [{"to": "a@example.com", "key": "k1"}]
    assert (tmp_path / "calls" / "send.keys").read_text() == "k1\n"
    refused = await blast.invoke({}, idempotency_key="k2", breakers=breakers)
    assert refused.status == "error" and "no double" in refused.error
    with pytest.raises(ConfigError, match="must be a function"):
        MCPToolOptions(double="module:fn")  # type: ignore[arg-type]
