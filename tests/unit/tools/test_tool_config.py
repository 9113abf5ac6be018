import pytest

from stalwart.errors import ConfigError
from stalwart.tools import ToolRegistry, tool


def test_timeout_outside_the_checklist_range_is_refused():
    with pytest.raises(ConfigError, match="outside the allowed 5-30 s"):

        @tool(timeout=60)
        async def slow() -> None: ...


def test_side_effect_tools_must_take_the_idempotency_key():
    with pytest.raises(ConfigError, match="idempotency_key"):

        @tool(side_effect=True)
        async def send(to: str) -> None: ...


def test_parameters_need_type_hints():
    with pytest.raises(ConfigError, match="needs a type hint"):

        @tool
        async def untyped(x) -> None: ...


def test_non_deduplicating_side_effects_are_never_retried():
    @tool(side_effect=True)
    async def send(to: str, idempotency_key: str) -> None: ...

    assert send.retry is None


def test_duplicate_names_are_refused():
    @tool
    async def a() -> None: ...

    with pytest.raises(ConfigError, match="two tools are named 'a'"):
        ToolRegistry([a, a])


def test_the_schema_is_built_once_per_tool() -> None:
    """The agent loop asks for every tool's spec at every task: pydantic's schema build is
    paid once per tool, not per task."""
    from stalwart.tools import tool

    @tool(scopes=["orders:read"])
    def lookup(order_id: int, verbose: bool = False) -> dict[str, int]:
        """Look up an order."""
        return {"order_id": order_id}

    first = lookup.spec
    assert first is lookup.spec
    assert first.parameters["required"] == ["order_id"]
    assert "title" not in first.parameters
