"""MCP tool servers as stalwart tools, against a real MCP server process (stdio and HTTP).

The server is ``mcp_notes_server.py`` beside this file (the official ``mcp`` package's
MCPServer): a read tool, a side-effect tool that appends to a file, a slow tool and a
failing one. Kills are real SIGKILLs of the server process.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from stalwart.errors import ConfigError
from stalwart.observe import REGISTRY
from stalwart.resilience import BreakerConfig, BreakerRegistry
from stalwart.tools import ToolRegistry, ToolResult
from stalwart.tools.mcp import MCPServer, MCPToolOptions, servers_of

SERVER = pathlib.Path(__file__).with_name("mcp_notes_server.py")
FAST_BREAKER = BreakerConfig(
    minimum_calls=2, window_size=4, wait_duration_in_open=0.5, permitted_calls_in_half_open=1
)


def options() -> dict[str, MCPToolOptions]:
    return {
        "read_notes": MCPToolOptions(scopes=["notes:read"]),
        "add_note": MCPToolOptions(
            scopes=["notes:write"], side_effect=True, key_argument="idempotency_key"
        ),
        "slow": MCPToolOptions(scopes=["notes:read"], timeout=5, retry=None),
        "fail": MCPToolOptions(),
    }


def stdio_server(tmp_path: pathlib.Path, **kwargs: object) -> MCPServer:
    command = [sys.executable, str(SERVER), "--notes", str(tmp_path / "notes.txt")]
    command += ["--log", str(tmp_path / "calls.log"), "--refuse-if", str(tmp_path / "refuse")]
    return MCPServer("notes", command=command, tools=options(), prefix="notes_", **kwargs)  # type: ignore[arg-type]


def notes(tmp_path: pathlib.Path) -> list[str]:
    path = tmp_path / "notes.txt"
    return path.read_text().splitlines() if path.exists() else []


async def until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll ``check`` (sync or async) until it returns a true value, within ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.2)


def degraded(component: str) -> float | None:
    return REGISTRY.get_sample_value("stalwart_degraded", {"component": component})


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie child of this process counts as gone (its parent reaps it)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- declaring -------------------------------------------------------------------------------


def test_a_server_is_declared_without_connecting_and_checked():
    server = MCPServer("s", command=["true"], tools=["a", "b"], prefix="s_")
    assert [t.name for t in server.tools] == ["s_a", "s_b"]
    assert server.state == "stopped" and not server.connected
    assert servers_of([*server.tools, *server.tools]) == [server]
    with pytest.raises(ConfigError, match="exactly one of command= and url="):
        MCPServer("s", tools=["a"])
    with pytest.raises(ConfigError, match="name the tools"):
        MCPServer("s", command=["true"])
    with pytest.raises(ConfigError, match="needs side_effect=True and the key_argument"):
        MCPToolOptions(deduplicates=True)
    with pytest.raises(ConfigError, match="outside the allowed 5-30 s"):
        MCPServer("s", command=["true"], tools={"a": MCPToolOptions(timeout=600)})


async def test_a_call_before_start_names_the_server_and_what_to_do():
    server = MCPServer("idle", command=["true"], tools=["a"])
    result = await server.tools[0].invoke({}, breakers=BreakerRegistry())
    assert result.status == "unavailable"
    assert "'idle' is not started" in result.error and "async with server" in result.error


# -- stdio ---------------------------------------------------------------------------------


async def test_stdio_tools_are_listed_called_and_authorized_by_scope(tmp_path):
    server = stdio_server(tmp_path)
    async with server:
        assert server.state == "connected"
        registry = ToolRegistry(server.tools, breakers=BreakerRegistry())
        read = registry["notes_read_notes"]
        # description and schema come from the server; the key argument is hidden
        assert read.spec.description.startswith("Read the notes")
        assert read.spec.parameters["properties"]["prefix"]["type"] == "string"
        add = registry["notes_add_note"].spec.parameters
        assert add["required"] == ["text"] and "idempotency_key" not in add["properties"]

        result = await registry.invoke("notes_add_note", {"text": "hello"}, idempotency_key="k-1")
        assert result.status == "ok" and result.value == {"added": "hello"}
        assert notes(tmp_path) == ["k-1\thello"]  # the key reached the server as its argument
        result = await registry.invoke("notes_read_notes", {"prefix": "he"})
        assert result.status == "ok" and result.value["notes"] == ["hello"]

        bad = await registry.invoke("notes_add_note", {"text": 3}, idempotency_key="k-2")
        assert bad.status == "invalid_arguments" and "text" in bad.error
        failed = await registry.invoke("notes_fail", {"reason": "boom"})
        assert failed.status == "error" and "fail failed on MCP server 'notes'" in failed.error
        assert notes(tmp_path) == ["k-1\thello"]  # neither reached the tool's effect

        # scopes the app assigned: the registry (the runtime) decides, not the server
        assert registry.authorize("notes_read_notes", ["notes:read"]) is None
        why = registry.authorize("notes_add_note", ["notes:read"])
        assert why is not None and "notes:write" in why
        offered = [s.name for s in registry.specs(["notes:read"])]
        assert "notes_add_note" not in offered and "notes_read_notes" in offered
        pid = int(result.value["pid"])
    assert server.state == "stopped"
    await until(lambda: pid_gone(pid), 10, "the stdio server exits when its server is stopped")


async def test_a_slow_tool_ends_at_its_deadline_and_the_server_keeps_answering(tmp_path):
    async with stdio_server(tmp_path) as server:
        registry = ToolRegistry(server.tools, breakers=BreakerRegistry())
        started = time.monotonic()
        result = await registry.invoke("notes_slow", {"seconds": 60})
        elapsed = time.monotonic() - started
        assert result.status == "unavailable" and "no answer within 5 s" in result.error
        assert 4.5 < elapsed < 8
        again = await registry.invoke("notes_read_notes", {})
        assert again.ok  # the same connection, still usable


async def test_a_killed_stdio_server_opens_its_breaker_and_is_restarted(tmp_path):
    breakers = BreakerRegistry()
    server = stdio_server(tmp_path, breaker=FAST_BREAKER, reconnect_max=0.5, ping_interval=1)
    async with server:
        registry = ToolRegistry(server.tools, breakers=breakers)
        first = await registry.invoke("notes_read_notes", {})
        old_pid = int(first.value["pid"])
        (tmp_path / "refuse").touch()  # the restarted server cannot start for now
        os.kill(old_pid, signal.SIGKILL)

        async def rejected() -> ToolResult | None:
            result = await registry.invoke("notes_read_notes", {})
            assert result.status == "unavailable", result
            return result if "breaker is open" in result.error else None

        await until(rejected, 20, "the server's breaker opens")
        assert breakers.get("mcp:notes").state.name == "OPEN"
        # one breaker per server: its other tools are rejected too, without a call
        other = await registry.invoke("notes_add_note", {"text": "x"}, idempotency_key="k")
        assert other.status == "unavailable" and "breaker is open" in other.error
        await until(lambda: not server.connected, 10, "the server is seen down")
        await until(lambda: degraded("mcp:notes") == 1, 10, "the outage is a degradation")
        down = await registry.invoke("notes_read_notes", {})
        assert down.status == "unavailable"
        message = server._down_message()
        assert "'notes' is not connected" in message and "--refuse-if" in message

        (tmp_path / "refuse").unlink()  # the server can start again: it is restarted
        assert await server.wait_connected(20)

        async def recovered() -> ToolResult | None:
            result = await registry.invoke("notes_read_notes", {})
            return result if result.ok else None

        again = await until(recovered, 20, "calls succeed again after the restart")
        assert int(again.value["pid"]) != old_pid
        assert breakers.get("mcp:notes").state.name == "CLOSED"
        assert server.connections == 2
        assert degraded("mcp:notes") == 0
    assert notes(tmp_path) == []  # the rejected side effect never ran


# -- streamable HTTP ------------------------------------------------------------------------


class HTTPServer:
    """The notes server over streamable HTTP on 127.0.0.1, as a real process."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> str:
        port_file = self.tmp_path / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--notes", str(self.tmp_path / "notes.txt"),
             "--http", str(port_file), "--port", str(self.port)],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        text = await until(lambda: port_file.exists() and port_file.read_text(), 30, "listening")
        self.port = int(text)
        return f"http://127.0.0.1:{self.port}/mcp"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
async def http_server(tmp_path) -> AsyncIterator[HTTPServer]:
    server = HTTPServer(tmp_path)
    try:
        yield server
    finally:
        server.kill()


async def test_http_tools_are_called_and_reconnected_after_the_server_is_killed(
    tmp_path, http_server
):
    url = await http_server.start()
    breakers = BreakerRegistry()
    server = MCPServer(
        "notes-http", url=url, tools=options(), breaker=FAST_BREAKER, reconnect_max=0.5,
        ping_interval=1,
    )  # fmt: skip
    async with server:
        assert server.state == "connected"
        registry = ToolRegistry(server.tools, breakers=breakers)
        assert registry["add_note"].spec.parameters["required"] == ["text"]
        done = await registry.invoke("add_note", {"text": "over http"}, idempotency_key="h-1")
        assert done.ok and notes(tmp_path) == ["h-1\tover http"]
        first = await registry.invoke("read_notes", {})
        assert first.ok and first.value["notes"] == ["over http"]
        # with request headers (its own HTTP client), a second session to the same server
        headed = MCPServer("headed", url=url, tools=["read_notes"], headers={"X-Team": "a"})
        async with headed:
            (read,) = headed.tools
            seen = await read.invoke({}, breakers=breakers)
            assert seen.ok and seen.value["pid"] == first.value["pid"]

        http_server.kill()

        async def rejected() -> ToolResult | None:
            result = await registry.invoke("read_notes", {})
            assert result.status == "unavailable", result
            return result if "breaker is open" in result.error else None

        await until(rejected, 30, "the server's breaker opens")
        assert breakers.get("mcp:notes-http").state.name == "OPEN"

        await http_server.start()  # the same port: the same URL
        assert await server.wait_connected(30)

        async def recovered() -> ToolResult | None:
            result = await registry.invoke("read_notes", {})
            return result if result.ok else None

        again = await until(recovered, 30, "calls succeed again after the restart")
        assert again.value["pid"] != first.value["pid"]
        assert again.value["notes"] == ["over http"]
        assert server.connections >= 2
    assert server.state == "stopped"


def test_import_stalwart_does_not_import_mcp():
    code = "import sys, stalwart, stalwart.agent, stalwart.tools.mcp; print('mcp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


async def test_a_declared_tool_the_server_lacks_is_an_error_not_a_crash(tmp_path):
    command = [sys.executable, str(SERVER), "--notes", str(tmp_path / "notes.txt")]
    server = MCPServer("notes", command=command, tools=["read_notes", "nope"])
    async with server:
        registry = ToolRegistry(server.tools, breakers=BreakerRegistry())
        assert registry["nope"].spec.parameters == {"type": "object"}  # never listed
        result = await registry.invoke("nope", {})
        assert result.status == "error" and "'notes'" in result.error
        assert (await registry.invoke("read_notes", {})).ok


async def test_a_server_that_cannot_start_leaves_its_tools_unavailable_with_the_reason(tmp_path):
    missing = MCPServer(
        "ghost", command=[str(tmp_path / "no-such-server")], tools=["read"], reconnect_max=0.5
    )
    refused = MCPServer("closed", url="http://127.0.0.1:9/mcp", tools=["read"], reconnect_max=0.5)
    breakers = BreakerRegistry()
    for server, reason in ((missing, "No such file"), (refused, "ConnectError")):
        async with server:  # starting does not raise: the agent runs, the tools are down
            assert server.state in ("down", "connecting") and not server.connected
            result = await server.tools[0].invoke({}, breakers=breakers)
            assert result.status == "unavailable"
            assert f"MCP server {server.name!r} is not connected" in result.error
            assert reason in result.error  # what failed, in the model's and the log's words
        assert server.state == "stopped"
