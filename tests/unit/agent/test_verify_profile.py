"""The verification profile: Python and TOML alike, every key checked."""

from __future__ import annotations

import pytest

from stalwart.agent import App, PythonAgent, VerifyProfile
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


APP_TOML = """
entry = "desk"
[verify]
workload = "pkg.mod:gen"
tools = {{ ship = "none" }}
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
        tools={"ship": "none"},
        latency_p99_s=4.0,
        manifest="deploy/k8s.yaml",
    )
    path.write_text(APP_TOML.format(extra="seconds = 3"))
    with pytest.raises(ConfigError, match=r"verify: unknown key\(s\) \['seconds'\]"):
        app_from_toml(path)
