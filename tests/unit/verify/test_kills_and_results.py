"""What verify counts as an item's kills, and what SM-2 compares of a task's result."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from stalwart.agent import load_app
from stalwart.verify._checks_state import _compared, _result
from stalwart.verify._registry import item_kills

pytestmark = pytest.mark.timeout(60)


def test_items_that_restart_model_agents_declare_those_kills():
    bank = load_app("tests.fixtures.foreign_apps.bank_support:app")  # one model agent
    warehouse = load_app("examples.warehouse.app:app")  # none
    assert [item_kills(i, bank) for i in ("EH-1", "EH-2", "EH-4")] == [5, 1, 4]
    assert [item_kills(i, warehouse) for i in ("EH-1", "EH-2", "EH-4")] == [0, 0, 0]
    assert item_kills("PA-2", bank) == item_kills("PA-2", warehouse) == 5
    # SM-4 kills the agents holding side-effect tools: the bank example has none
    assert (item_kills("SM-4", bank), item_kills("SM-4", warehouse)) == (0, 5)
    assert item_kills("LC-4", bank) == 0


@dataclasses.dataclass
class _Record:
    status: str
    outcome: Any


def test_sm2_compares_the_answer_else_the_output_else_scalar_fields():
    answered = _Record("succeeded", {"answer": "hi", "received_at": 1.0})
    run = _Record("succeeded", {"status": "completed", "output": {"risk": 1}, "usage": {"n": 3}})
    plain = _Record("succeeded", {"status": "completed", "sku": "A", "result": {"key": "k1"}})
    assert _result(answered) == ("succeeded", "hi")
    assert _result(run) == ("succeeded", {"risk": 1})  # usage is not the result
    # nested values may carry idempotency keys derived from the task's id: left out
    assert _result(plain) == ("succeeded", {"status": "completed", "sku": "A"})
    assert _result(_Record("succeeded", {"status": "completed", "output": {"risk": 2}})) != (
        _result(run)
    )
    failed = _Record("failed", {"type": "KeyError", "message": "x", "traceback": "..."})
    assert _result(failed) == ("failed", "KeyError", "x")
    assert _compared([run]) == "the output" and _compared([answered]) == "the answer"
    assert _compared([plain]) == "the status and top-level scalar fields of each result"


async def test_the_sim_answers_a_request_its_caller_cut_off_without_a_traceback():
    """A SIGKILLed agent's model request ends mid-body: the simulated provider answers
    499 instead of raising ClientDisconnect (a traceback on verify's terminal)."""
    from starlette.requests import Request

    from stalwart.llm.sim._server import _read_json

    messages = [
        {"type": "http.request", "body": b'{"model": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    answer = await _read_json(request)
    assert not isinstance(answer, dict)
    assert answer.status_code == 499
