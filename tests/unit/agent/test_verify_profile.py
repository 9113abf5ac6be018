"""The verification profile: Python and TOML alike, every key checked."""

from __future__ import annotations

import pytest

from stalwart.agent import App, PythonAgent, VerifyProfile
from stalwart.agent._profile import fault_mode, proxy_target
from stalwart.agent._toml import app_from_toml
from stalwart.errors import ConfigError
from stalwart.tools import tool


@tool(scopes=["x:write"], timeout=5, side_effect=True)
async def ship(parcel: str, idempotency_key: str) -> dict[str, str]:
    """Ship a parcel."""
    return {"parcel": parcel}


async def _fn(ctx, value):  # type: ignore[no-untyped-def]
    return value


def _app(**profile) -> App:  # type: ignore[no-untyped-def]
    agent = PythonAgent(name="desk", fn=_fn, tools=[ship], scopes=["x:write"])
    return App(agents=[agent], verify=VerifyProfile(**profile))


def test_the_profile_s_workload_is_the_app_s():
    assert _app(workload="pkg.mod:gen").workload == "pkg.mod:gen"


def test_fault_modes_and_tool_names_are_checked():
    assert _app(tools={"ship": "none"}).verify.tools == {"ship": "none"}
    assert _app(tools={"ship": "sim:parcels"}).verify.tools["ship"] == "sim:parcels"
    with pytest.raises(ConfigError, match="'proxy:http://x' is not one of"):
        _app(tools={"ship": "proxy:http://x"})
    with pytest.raises(ConfigError, match="'sim' is not one of"):
        _app(tools={"ship": "sim"})
    with pytest.raises(ConfigError, match=r"names tools no agent has: \['shipp'\]"):
        _app(tools={"shipp": "none"})
    with pytest.raises(ConfigError, match="latency_p99_s must be a positive"):
        _app(latency_p99_s=0)


def test_the_proxy_mode_names_the_variable_and_optionally_the_upstream():
    app = _app(tools={"ship": "proxy:PARCELS_URL=http://127.0.0.1:8123/v1"})
    assert fault_mode(app.verify.tools["ship"]) == ("proxy", "PARCELS_URL=http://127.0.0.1:8123/v1")
    assert proxy_target("PARCELS_URL=http://127.0.0.1:8123/v1") == (
        "PARCELS_URL",
        "http://127.0.0.1:8123/v1",
    )
    assert proxy_target("PARCELS_URL") == ("PARCELS_URL", None)  # the upstream: $PARCELS_URL
    for bad in ("proxy:", "proxy:9URL=http://127.0.0.1:1", "proxy:=http://127.0.0.1:1",
                "proxy:A-B", "none:x", "double:y"):  # fmt: skip
        with pytest.raises(ConfigError, match="'proxy:<VAR>=<url>'"):
            _app(tools={"ship": bad})


APP_TOML = """
entry = "desk"
[verify]
workload = "pkg.mod:gen"
tools = {{ ship = "proxy:PARCELS_URL=http://127.0.0.1:8123" }}
latency_p99_s = 4
manifest = "deploy/k8s.yaml"
{extra}
[[agents]]
name = "desk"
kind = "python"
fn = "tests.unit.agent.test_verify_profile:_fn"
tools = ["tests.unit.agent.test_verify_profile:ship"]
scopes = ["x:write"]
"""


def test_the_toml_verify_table(tmp_path):
    path = tmp_path / "app.toml"
    path.write_text(APP_TOML.format(extra=""))
    app = app_from_toml(path)
    assert app.workload == "pkg.mod:gen" and app.entry == "desk"
    assert app.verify == VerifyProfile(
        workload="pkg.mod:gen",
        tools={"ship": "proxy:PARCELS_URL=http://127.0.0.1:8123"},
        latency_p99_s=4.0,
        manifest="deploy/k8s.yaml",
    )
    path.write_text(APP_TOML.format(extra="seconds = 3"))
    with pytest.raises(ConfigError, match=r"verify: unknown key\(s\) \['seconds'\]"):
        app_from_toml(path)
