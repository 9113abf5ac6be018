"""What a tool call does while `stalwart verify` runs the app: doubles, taken down,
real side effects blocked, deliveries recorded per key -- and nothing of it otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.tools import tool
from stalwart.tools._verifying import BLOCKED_ENV, PROXIED_ENV, VERIFY_DIR_ENV

real_calls: list[str] = []


async def _send_double(to: str, idempotency_key: str) -> dict[str, Any]:
    return {"to": to, "double": True}


@tool(scopes=["mail:send"], timeout=5, side_effect=True, double=_send_double)
async def send(to: str, idempotency_key: str) -> dict[str, Any]:
    """Send for real."""
    real_calls.append(to)
    return {"to": to, "double": False}


@tool(scopes=["money:move"], timeout=5, side_effect=True)
async def pay(cents: int, idempotency_key: str) -> dict[str, Any]:
    """Move money for real (no double)."""
    real_calls.append(f"pay {cents}")
    return {"paid": cents}


@pytest.fixture(autouse=True)
def _clean() -> None:
    real_calls.clear()


async def test_outside_verification_the_real_function_runs(monkeypatch):
    monkeypatch.delenv(VERIFY_DIR_ENV, raising=False)
    result = await send.invoke({"to": "a@example.org"}, idempotency_key="k1")
    assert result.ok and result.value == {"to": "a@example.org", "double": False}
    assert real_calls == ["a@example.org"]


async def test_during_verification_the_double_runs_and_deliveries_are_recorded(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(VERIFY_DIR_ENV, str(tmp_path))
    for key in ("k1", "k2", "k1"):
        result = await send.invoke({"to": "a@example.org"}, idempotency_key=key)
        assert result.ok and result.value["double"] is True
    assert real_calls == []
    assert (tmp_path / "calls" / "send.keys").read_text().split() == ["k1", "k2", "k1"]


async def test_a_tool_taken_down_is_unavailable_and_its_refusals_counted(tmp_path, monkeypatch):
    monkeypatch.setenv(VERIFY_DIR_ENV, str(tmp_path))
    (tmp_path / "down").mkdir()
    (tmp_path / "down" / "send").touch()
    result = await send.invoke({"to": "a@example.org"}, idempotency_key="k1")
    assert result.status == "unavailable" and "took it down" in result.error
    assert (tmp_path / "down" / "send.hits").read_text().count("\n") == 1
    assert real_calls == [] and not (tmp_path / "calls").exists()


async def test_a_blocked_side_effect_never_reaches_its_target(tmp_path, monkeypatch):
    monkeypatch.setenv(VERIFY_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(BLOCKED_ENV, "pay")
    result = await pay.invoke({"cents": 500}, idempotency_key="k1")
    assert result.status == "error" and "--allow-real-side-effects" in result.error
    assert real_calls == []
    monkeypatch.setenv(BLOCKED_ENV, "")  # allowed: it runs, and is recorded
    result = await pay.invoke({"cents": 500}, idempotency_key="k2")
    assert result.ok and real_calls == ["pay 500"]
    assert (tmp_path / "calls" / "pay.keys").read_text().split() == ["k2"]


async def test_a_proxied_tool_runs_its_own_function_not_its_double(tmp_path, monkeypatch):
    """The profile put its upstream behind verify's fault proxy: the real code path runs
    (and is recorded); taken down, it is still refused."""
    monkeypatch.setenv(VERIFY_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(PROXIED_ENV, "other,send")
    result = await send.invoke({"to": "a@example.org"}, idempotency_key="k1")
    assert result.ok and result.value["double"] is False
    assert real_calls == ["a@example.org"]
    assert (tmp_path / "calls" / "send.keys").read_text().split() == ["k1"]
    monkeypatch.setenv(PROXIED_ENV, "other")  # not named: the double again
    result = await send.invoke({"to": "b@example.org"}, idempotency_key="k2")
    assert result.value["double"] is True and real_calls == ["a@example.org"]
