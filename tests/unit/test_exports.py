"""The public API is exactly stalwart.__all__ (as httpx checks its own): a curated list of
what an app is written with; every exception lives in stalwart.errors."""

import inspect
import types
import warnings

import pytest

import stalwart
from stalwart import errors

CURATED = {
    # writing an app
    "App", "LLMAgent", "PythonAgent", "TaskContext", "VerifyProfile", "tool",
    "Provider", "Budget", "Security",
    # the process layer: agents, supervision trees, the node
    "Agent", "AgentContext", "AgentRef", "ChildSpec", "DynamicSupervisorSpec",
    "SupervisorSpec", "Runtime", "Node", "app_node",
    # settings, time, resilience for one's own calls, logging
    "RuntimeSettings", "Timeouts", "Clock", "SystemClock",
    "RetryPolicy", "BreakerConfig", "Policy", "get_logger", "log_context",
    # one HTTP client per process and loop, for tools' calls
    "http_client",
    "__version__",
}  # fmt: skip


def test_all_is_the_deliberate_list_and_sorted():
    assert set(stalwart.__all__) == CURATED, "change CURATED here when the API changes"
    assert stalwart.__all__ == sorted(stalwart.__all__)
    assert len(stalwart.__all__) == len(set(stalwart.__all__))
    for name in stalwart.__all__:
        assert hasattr(stalwart, name), name


def test_every_public_name_of_the_module_is_in_all():
    """Nothing public sneaks in beside __all__ (httpx's test_all_imports_are_exported)."""
    public = {
        name
        for name, value in vars(stalwart).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(stalwart.__all__), public - set(stalwart.__all__)


def test_no_private_module_leaks_into_the_api():
    for name in stalwart.__all__:
        obj = getattr(stalwart, name)
        module = getattr(obj, "__module__", "stalwart") or "stalwart"
        assert module.startswith("stalwart"), (name, module)
        assert not name.startswith("_") or name == "__version__"


def test_what_an_app_is_written_with_comes_from_the_top():
    from stalwart import App, LLMAgent, PythonAgent, TaskContext, tool

    @tool(scopes=["notes:read"], timeout=5)
    async def read_note(note_id: int) -> str:
        """Read a note."""
        return f"note {note_id}"

    async def echo(ctx: TaskContext, text: str) -> str:
        return text

    app = App(
        agents=[
            LLMAgent(name="writer", model="main", tools=[read_note], scopes=["notes:read"]),
            PythonAgent(name="echo", fn=echo),
        ],
        models={"main": ["sim:strong"]},
        sim=True,
    )
    assert [a.name for a in app.agents] == ["writer", "echo"]


def test_exceptions_live_in_stalwart_errors_not_in_all():
    for name in errors.__all__:
        assert name not in stalwart.__all__, name
        value = getattr(errors, name)
        assert inspect.isclass(value), name
        assert value.__module__ == "stalwart.errors", name


def test_an_old_top_level_exception_import_still_works_but_says_where_it_moved():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from stalwart import ConfigError
    assert ConfigError is errors.ConfigError
    assert any("stalwart.errors" in str(w.message) for w in caught)
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        _ = stalwart.NotAThing  # type: ignore[attr-defined]


def test_every_timeout_error_is_also_a_builtin_timeout_error():
    timeouts = [getattr(errors, n) for n in errors.__all__ if "Timeout" in n or "Deadline" in n]
    assert {t.__name__ for t in timeouts} >= {"CallTimeout", "DeadlineExceeded"}
    for cls in timeouts:
        assert issubclass(cls, TimeoutError), cls
        assert issubclass(cls, errors.StalwartError), cls
    try:
        raise errors.CallTimeout("no reply from 'a' within 1 s", target="a")
    except TimeoutError as exc:  # as the builtin: `except TimeoutError` code catches it
        assert isinstance(exc, errors.CallTimeout) and exc.target == "a"
        assert str(exc) == "no reply from 'a' within 1 s"
        assert exc.error_class == "retryable/transient"


def test_the_version_is_written_once():
    """pyproject.toml reads the version from stalwart.__version__ (hatch), so the installed
    distribution's metadata and the module always agree."""
    import importlib.metadata

    assert importlib.metadata.version("stalwart") == stalwart.__version__
