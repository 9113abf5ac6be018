"""Properties of the redactor, over generated text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.guard import Redactor, luhn_ok

R = Redactor()
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(text)
def test_redaction_is_idempotent_and_never_raises(s: str) -> None:
    once = R.redact(s)
    assert R.redact(once) == once


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=80),
    st.lists(st.integers(0, 9), min_size=15, max_size=15),
    st.text(max_size=80),
)
def test_a_valid_card_never_survives(before: str, digits: list[int], after: str) -> None:
    body = "4" + "".join(map(str, digits))
    card = next(body + d for d in "0123456789" if luhn_ok(body + d))
    out = R.redact(f"{before} {card} {after}")
    assert card not in out
