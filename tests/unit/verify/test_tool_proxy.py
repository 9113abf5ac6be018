"""Proxy mode's declarations (loopback only, the variable or the profile's URL, one
upstream per variable) and the proxies themselves, forwarding over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.agent import App, PythonAgent, VerifyProfile
from stalwart.errors import ConfigError
from stalwart.tools import tool
from stalwart.tools._verifying import PROXIED_ENV
from stalwart.verify._tool_proxy import ToolProxies, proxied_url, proxy_decls


@tool(scopes=["r:read"], timeout=5)
async def rates(currency: str) -> dict[str, str]:
    """Fetch a rate."""
    return {"currency": currency}


@tool(scopes=["r:read"], timeout=5)
async def convert(currency: str) -> dict[str, str]:
    """Convert."""
    return {"currency": currency}


async def _fn(ctx, value):  # type: ignore[no-untyped-def]
    return value


def _app(**tools: str) -> App:
    agent = PythonAgent(name="desk", fn=_fn, tools=[rates, convert], scopes=["r:read"])
    return App(agents=[agent], verify=VerifyProfile(tools=tools))


def test_the_upstream_comes_from_the_profile_or_the_variable():
    app = _app(rates="proxy:RATES_URL=http://127.0.0.1:8123/v1", convert="proxy:CONVERT_URL")
    decls = proxy_decls(app, {"CONVERT_URL": "https://localhost/api"})
    assert (decls["rates"].host, decls["rates"].port, decls["rates"].where) == (
        "127.0.0.1",
        8123,
        "the profile",
    )
    assert (decls["convert"].port, decls["convert"].where) == (443, "$CONVERT_URL")
    assert not decls["rates"].problem and not decls["convert"].problem


@pytest.mark.parametrize(
    ("mode", "env", "problem", "fix"),
    [
        ("proxy:RATES_URL=http://rates.example.com:8123", {}, "only forwards to loopback",
         "'proxy:RATES_URL=http://127.0.0.1:<port>'"),
        ("proxy:RATES_URL", {"RATES_URL": "http://10.0.0.7:80"}, "is on 10.0.0.7", "double"),
        ("proxy:RATES_URL", {}, "RATES_URL is not set", "set RATES_URL"),
        ("proxy:RATES_URL=127.0.0.1:8123", {}, "is not a URL", "'none'"),
        ("proxy:RATES_URL=redis://127.0.0.1", {}, "names no port", "redis://127.0.0.1:<port>"),
    ],
)  # fmt: skip
def test_an_unusable_upstream_is_a_problem_naming_the_tool_and_the_fix(mode, env, problem, fix):
    decl = proxy_decls(_app(rates=mode), env)["rates"]
    assert decl.problem.startswith("tool 'rates'") and problem in decl.problem
    assert fix in decl.fix
    with pytest.raises(ConfigError, match=problem):
        ToolProxies({"rates": decl})


def test_tools_sharing_a_variable_share_its_upstream():
    same = proxy_decls(
        _app(rates="proxy:FX_URL", convert="proxy:FX_URL"), {"FX_URL": "http://127.0.0.1:9"}
    )
    assert not any(d.problem for d in same.values())
    other = proxy_decls(
        _app(rates="proxy:FX_URL=http://127.0.0.1:9", convert="proxy:FX_URL=http://127.0.0.1:10")
    )
    assert "another upstream" in other["rates"].problem + other["convert"].problem


def test_the_proxied_url_keeps_all_but_host_and_port():
    assert proxied_url("http://127.0.0.1:8123/v1?x=1", 5000) == "http://127.0.0.1:5000/v1?x=1"
    assert (
        proxied_url("postgresql://u:pw@[::1]:5432/db", 5000)
        == "postgresql://u:pw@127.0.0.1:5000/db"
    )
    assert proxied_url("https://localhost/api", 5000) == "https://localhost:5000/api"


async def test_the_variable_leads_through_the_proxy_to_the_upstream_and_faults_apply():
    """A real echo server behind a real proxy: the variable's URL reaches it; a reset at
    the proxy makes a connection fail."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxies = ToolProxies(
        proxy_decls(
            _app(rates="proxy:FX_URL", convert="proxy:FX_URL"),
            {"FX_URL": f"tcp://127.0.0.1:{port}/x"},
        )
    )
    try:
        await proxies.start()
        env = proxies.environment()
        assert env[PROXIED_ENV] == "convert,rates"
        assert proxies.proxy("rates") is proxies.proxy("convert")  # one dependency, one proxy
        via = env["FX_URL"]
        assert via == f"tcp://127.0.0.1:{proxies.proxy('rates').port}/x" and str(port) not in via
        reader, writer = await asyncio.open_connection("127.0.0.1", proxies.proxy("rates").port)
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
        writer.close()
        proxies.proxy("rates").set(reset=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxies.proxy("rates").port)
        writer.write(b"ping\n")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        described = proxies.describe("rates")
        assert described["upstream_from"] == "$FX_URL"
        assert described["proxy_stats"]["resets"] == 1  # type: ignore[index]
    finally:
        await proxies.stop()
        server.close()
        await server.wait_closed()
