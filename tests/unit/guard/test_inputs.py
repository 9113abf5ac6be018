"""Input validation and normalization: bounds, types, schemas, invisible characters."""

from __future__ import annotations

import unicodedata

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.errors import InputRejected
from stalwart.guard import InputLimits, NormalizedText, normalize_text, validate_input


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


def _walked(text: str) -> NormalizedText:
    """normalize_text as it was before its fast path: every character looked at."""
    zero_width = {0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E, 0x00AD}
    bidi = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}
    flags: set[str] = set()
    hidden: list[str] = []
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if 0xE0000 <= cp <= 0xE007F:
            flags.add("tag_characters")
            if 0xE0020 <= cp <= 0xE007E:
                hidden.append(chr(cp - 0xE0000))
        elif cp in zero_width:
            flags.add("zero_width")
        elif cp in bidi:
            flags.add("bidi_control")
        elif cp == 0:
            flags.add("null_byte")
        elif (cp < 32 and ch not in "\n\t\r") or 0x7F <= cp < 0xA0:
            flags.add("control_character")
        else:
            out.append(ch)
    cleaned = "".join(out)
    nfkc = unicodedata.normalize("NFKC", cleaned)
    if nfkc != cleaned:
        flags.add("nfkc_changed")
    return NormalizedText(nfkc, frozenset(flags), "".join(hidden))


_TRICKY = st.sampled_from(
    [chr(c) for c in (0, 9, 10, 13, 11, 27, 0x7F, 0x85, 0x9F, 0xA0, 0xAD, 0x61C, 0x180E)]
    + [chr(c) for c in (0x200B, 0x200E, 0x202A, 0x202E, 0x202F, 0x2060, 0x2066, 0x2069)]
    + [chr(c) for c in (0xFEFF, 0xFF21, 0xE0000, 0xE0041, 0xE007F, 0xE0080, 0x1D400)]
    + ["e\u0301", "ﬁ", "½", "Å", "ö"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), _TRICKY), max_size=12).map("".join))
def test_fast_path_normalizes_as_the_character_walk(text: str) -> None:
    # a text with nothing to remove skips the walk; every text still comes out the same
    assert normalize_text(text) == _walked(text)


def test_plain_text_takes_the_fast_path_unchanged() -> None:
    assert normalize_text("Order #1234 shipped.\n\tThanks") == NormalizedText(
        "Order #1234 shipped.\n\tThanks", frozenset()
    )
    assert normalize_text("\uff46\uff55\uff4c\uff4c") == NormalizedText(
        "full", frozenset({"nfkc_changed"})
    )
