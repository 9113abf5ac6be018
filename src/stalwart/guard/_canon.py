"""Canonical forms of the values a policy compares, so that 100 = 100.0 = "100".

The rules (``docs/security.md`` lists them for users):

- **numbers**: an ``int``, a ``float`` or a string that is a plain decimal number
  (``"100"``, ``"100.0"``, ``" 0100.50 "``, ``"-3"``) become one canonical decimal
  text without exponent, trailing zeros or a leading ``+``: 100, 100.0 and "100"
  are ``"100"``; 100.5 and "100.50" are ``"100.5"``. Thousands separators, currency
  signs and exponents are *not* numbers ("1,000" stays text): a value is not guessed.
  ``True``/``False`` are ``"true"``/``"false"``, never 1 and 0.
- **text**: Unicode NFKC with invisible and control characters removed
  (:func:`~stalwart.guard.normalize_text`), case-folded (``"Alice@Example.COM"`` is
  ``"alice@example.com"``), runs of whitespace collapsed to one space, and trimmed.
- ``None`` is ``""``: it matches nothing.

In free text (a ticket, a tool result) numbers are found as whole tokens: ``#1234``,
``1234.`` and ``1234.00`` all hold the number 1234, but ``12345`` and ``1234-5`` do not.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from stalwart.guard._inputs import normalize_text

__all__ = ["canonical", "canonical_number", "numbers_in", "same_value"]

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?![\w-]|\.\d)")
_SPACE = re.compile(r"\s+")


def canonical_number(value: Any) -> str | None:
    """The canonical decimal text of ``value`` if it is a number (see the module), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            return None
    else:
        return None
    if number == 0:
        return "0"
    out = format(number.normalize(), "f")
    return out


def canonical(value: Any) -> str:
    """The canonical text of ``value``: numbers as :func:`canonical_number`, text
    normalized, case-folded and whitespace-collapsed (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    number = canonical_number(value)
    if number is not None:
        return number
    text = value if isinstance(value, str) else str(value)
    return _SPACE.sub(" ", normalize_text(text).text.casefold()).strip()


def same_value(a: Any, b: Any) -> bool:
    """Whether two values are equal under the canonical rules (None equals nothing)."""
    if a is None or b is None:
        return False
    return canonical(a) == canonical(b)


def numbers_in(text: str) -> frozenset[str]:
    """The canonical numbers written in ``text`` as whole tokens."""
    found = set()
    for match in _NUMBER_IN_TEXT.finditer(text):
        number = canonical_number(match.group())
        if number is not None:
            found.add(number)
    return frozenset(found)
