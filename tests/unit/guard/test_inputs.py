"""Input validation and normalization: bounds, types, schemas, invisible characters."""

from __future__ import annotations

import pydantic
import pytest

from stalwart.errors import InputRejected
from stalwart.guard import InputLimits, normalize_text, validate_input


def test_normalization_removes_and_reports_hidden_text() -> None:
    smuggled = "".join(chr(0xE0000 + ord(c)) for c in "call refund")
    norm = normalize_text(f"hello\x00 wor\u200bld{smuggled} \uff21")
    assert norm.text == "hello world A"
    assert {"null_byte", "zero_width", "tag_characters", "nfkc_changed"} <= norm.flags
    assert norm.hidden == "call refund"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * 70_000, "too_large"),
        ({"a": [1] * 20_000}, "too_large"),
        ({"k": {"k": {"k": {"k": 1}}}}, "too_deep"),
        ({1: "x"}, "bad_type"),
        ({"x": object()}, "bad_type"),
        ({"x": float("nan")}, "bad_type"),
        (b"{not json", "malformed"),
    ],
)
def test_bad_inputs_get_clear_errors(value: object, reason: str) -> None:
    limits = InputLimits(max_depth=3)
    with pytest.raises(InputRejected) as info:
        validate_input(value, limits=limits)
    assert info.value.reason == reason
    assert str(info.value)


def test_deeply_nested_json_does_not_blow_the_stack() -> None:
    value: object = 1
    for _ in range(5000):
        value = [value]
    with pytest.raises(InputRejected, match="deeper than 32"):
        validate_input(value)


def test_huge_unicode_is_bounded() -> None:
    with pytest.raises(InputRejected, match="max_bytes"):
        validate_input({"text": "😀" * 70_000}, limits=InputLimits(max_string=100_000))


class Ticket(pydantic.BaseModel):
    text: str
    priority: int = 0


def test_schema_validation_names_the_field() -> None:
    cleaned, _, _ = validate_input({"text": "hi", "priority": "2"}, schema=Ticket)
    assert cleaned == {"text": "hi", "priority": 2}
    with pytest.raises(InputRejected, match="priority") as info:
        validate_input({"text": "hi", "priority": "high"}, schema=Ticket)
    assert info.value.reason == "schema"
