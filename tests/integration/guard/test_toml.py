"""Security settings in an app's TOML: a reference or a table; provider keys are references."""

from __future__ import annotations

import pytest
from examples.helpdesk.app import SECURITY

from stalwart.agent import load_app
from stalwart.errors import ConfigError
from stalwart.guard import SECRET_SCHEME

BASE = """
[models]
main = ["sim:strong"]

[[agents]]
name = "a"
model = "main"
"""


def write(tmp_path, text: str):
    path = tmp_path / "app.toml"
    path.write_text(text)
    return str(path)


def test_the_helpdesk_toml_carries_the_helpdesk_policy() -> None:
    app = load_app("examples/helpdesk/helpdesk.toml")
    assert app.agent("resolver").security is SECURITY


def test_a_security_table(tmp_path) -> None:
    text = BASE + (
        '[agents.security]\noutput = "mask"\nbudget = { task_usd = 0.5, day_usd = 10.0 }\n'
        "inputs = { max_bytes = 4096 }\nrate = { requests_per_minute = 60 }\n"
        'taint = "examples.helpdesk.app:SECURITY.taint"\n'
    )
    with pytest.raises(ConfigError, match="cannot load"):  # attribute paths are not references
        load_app(write(tmp_path, text))
    text = text.replace("SECURITY.taint", "SCENARIO")
    with pytest.raises(ConfigError, match="is not a TaintPolicy"):
        load_app(write(tmp_path, text))
    security = (
        load_app(write(tmp_path, text.replace('taint = "examples.helpdesk.app:SCENARIO"\n', "")))
        .agent("a")
        .security
    )
    assert security.output == "mask" and security.budget.task_usd == 0.5
    assert security.inputs.max_bytes == 4096 and security.rate is not None


def test_unknown_security_keys_and_plaintext_keys_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_app(write(tmp_path, BASE + '[agents.security]\noutptu = "mask"\n'))
    providers = '[providers.openai]\nbase_url = "https://api.openai.com/v1"\napi_key = "{}"\n'
    with pytest.raises(ConfigError, match="secret reference"):
        load_app(write(tmp_path, providers.format("sk-live-value") + BASE))
    app = load_app(write(tmp_path, providers.format(SECRET_SCHEME + "openai-key") + BASE))
    assert app.providers["openai"].api_key == "secret://openai-key"


def test_scope_table_shows_least_privilege() -> None:
    from examples.helpdesk.app import app

    from stalwart.agent import scope_table

    rows = {r["agent"]: r for r in scope_table(app.agents)}
    resolver = rows["resolver"]
    assert resolver["excess"] == [] and resolver["granted"] == resolver["minimal"]
    assert resolver["sensitive"] == ["refund", "send_email"]
    assert rows["triage"]["granted"] == [] and rows["triage"]["tools"] == []


def test_prices_in_toml(tmp_path) -> None:
    app = load_app(write(tmp_path, '[prices]\n"sim:strong" = [1.0, 2.0]\n' + BASE))
    assert app.prices["sim:strong"].output_per_mtok == 2.0
    with pytest.raises(ConfigError, match="input_per_mtok"):
        load_app(write(tmp_path, '[prices]\n"sim:strong" = 3\n' + BASE))
