"""SE-3 seeds its canaries in the app's own workload inputs, whatever their shape."""

from __future__ import annotations

import pytest

from stalwart.agent import load_app
from stalwart.config import load_ref
from stalwart.verify._checks_security import CANARY_SEED, canary_inputs

pytestmark = pytest.mark.timeout(60)

TEXT = "My details: card 4111 1111 1111 1111"


def test_the_canaries_take_the_message_field_and_keep_the_rest():
    base = {"customer_id": "c-12", "question": "What is my balance?", "lang": "en"}
    inputs, where = canary_inputs(base, TEXT)
    assert where == "field 'question'"
    assert inputs == [
        {"customer_id": "c-12", "question": TEXT, "lang": "en"},
        {"customer_id": "c-12", "question": f"What is my balance?\n{TEXT}", "lang": "en"},
    ]


def test_a_string_input_a_dict_without_text_and_an_unusable_shape():
    assert canary_inputs("hello there", TEXT) == ([TEXT, f"hello there\n{TEXT}"],
                                                  "the input (a string)")  # fmt: skip
    # no string of several words: the longest string field
    assert canary_inputs({"sku": "A-1", "qty": 2}, TEXT)[0][0] == {"sku": TEXT, "qty": 2}
    # no string at all: the canaries in a text field beside the app's own fields
    assert canary_inputs({"ok": True, "n": 3}, TEXT) == (
        [{"ok": True, "n": 3, "text": TEXT}],
        "a 'text' field added (the input has no string field)",
    )
    inputs, where = canary_inputs([1, 2], TEXT)
    assert inputs == [] and "lists" in where


@pytest.mark.parametrize(
    "ref",
    [
        "examples.warehouse.app:app",
        "examples/expenses/expenses.toml",
        "tests.fixtures.foreign_apps.bank_support:app",
        "examples.helpdesk.app:app",
    ],
)
def test_every_example_workload_carries_the_canaries(ref):
    app = load_app(ref)
    assert app.workload
    [base] = load_ref(app.workload, "workload")(1, seed=CANARY_SEED)
    inputs, _ = canary_inputs(base, TEXT)
    assert inputs and all(TEXT in str(i) for i in inputs)
    # the app's other fields are kept as the workload made them
    if isinstance(base, dict):
        assert all(i.keys() >= base.keys() for i in inputs)
