"""Agent definitions refuse bad settings with errors that name them."""

from __future__ import annotations

import pathlib

import pytest

from stalwart import App
from stalwart.agent import PythonAgent, load_app
from stalwart.errors import ConfigError


async def noop(ctx: object, task_input: object) -> None:
    return None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_tasks", 0, "max_tasks must be an int in 1..100000"),
        ("max_running", 0, "max_running must be a positive int"),
        ("max_running", True, "max_running must be a positive int"),
        ("task_timeout", -1, "task_timeout must be in"),
    ],
)
def test_bad_limits_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PythonAgent(name="a", fn=noop, **{field: value})  # type: ignore[arg-type]


def test_the_entry_agent_is_entry_else_the_first_and_must_exist() -> None:
    agents = [PythonAgent(name="front", fn=noop), PythonAgent(name="back", fn=noop)]
    assert App(agents=agents).entry_agent == "front"
    assert App(agents=agents, entry="back").entry_agent == "back"
    with pytest.raises(ConfigError, match=r"App.entry names no agent of the app: 'bak'"):
        App(agents=agents, entry="bak")


def test_max_running_comes_from_toml(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        '[[agents]]\nname = "a"\nkind = "python"\nfn = "tests_unit_agent_fn:noop"\n'
        "max_running = 3\n"
    )
    (tmp_path / "tests_unit_agent_fn.py").write_text("async def noop(ctx, x):\n    return x\n")

    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app(str(path))
    assert [a.max_running for a in app.agents] == [3]


def test_a_toml_app_has_the_python_apps_defaults(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key left out of the TOML file means what the App field's default means (the
    lease once defaulted to 10 s in TOML against 4 s in Python)."""
    import dataclasses

    from stalwart import App

    (tmp_path / "tests_unit_agent_fn2.py").write_text("async def noop(ctx, x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "app.toml"
    path.write_text('[[agents]]\nname = "a"\nkind = "python"\nfn = "tests_unit_agent_fn2:noop"\n')
    from_toml = load_app(str(path))
    from_python = App(agents=[PythonAgent(name="a", fn=noop)])
    for f in dataclasses.fields(App):
        if f.name != "agents":
            assert getattr(from_toml, f.name) == getattr(from_python, f.name), f.name
    path.write_text(
        'redteam = "tests_unit_agent_fn2:noop"\nlease_seconds = 2.5\n'
        '[[agents]]\nname = "a"\nkind = "python"\nfn = "tests_unit_agent_fn2:noop"\n'
    )
    app = load_app(str(path))
    assert (app.redteam, app.lease_seconds) == ("tests_unit_agent_fn2:noop", 2.5)


def test_toml_sets_a_self_hosted_provider_and_per_chain_rates(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tests_unit_agent_fn3.py").write_text("async def noop(ctx, x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "app.toml"
    path.write_text(
        '[models]\nmain = ["vllm:llama3"]\n'
        '[providers.vllm]\nbase_url = "http://127.0.0.1:8000/v1"\nself_hosted = true\n'
        '[[agents]]\nname = "a"\nkind = "python"\nfn = "tests_unit_agent_fn3:noop"\n'
        'model = "main"\n'
        "[agents.security]\nmodel_rates = { main = { requests_per_minute = 60 } }\n"
    )
    app = load_app(str(path))
    assert app.providers["vllm"].self_hosted
    app.check_prices()  # a self-hosted model needs no price
    assert app.agents[0].security.model_rates["main"].requests_per_minute == 60
    path.write_text(path.read_text().replace("self_hosted = true", 'self_hosted = "yes"'))
    with pytest.raises(ConfigError, match="self_hosted must be true or false"):
        load_app(str(path))
