"""Task input validation and text normalization.

Inputs are checked before a task runs: JSON types only, bounded size, depth,
string length and item count, then (optionally) an agent's pydantic schema.
Text is normalized to NFKC and cleaned of characters that hide instructions
from people while models still read them: control characters (NUL
included), zero-width and bidirectional controls, and Unicode *tag*
characters (U+E0000..U+E007F, which can smuggle a whole ASCII sentence
invisibly). What was removed is reported as flags, and smuggled tag text is
decoded so the injection detector can score it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from typing import Any

from stalwart.errors import ConfigError, InputRejected

__all__ = ["InputLimits", "NormalizedText", "normalize_text", "validate_input"]

_ZERO_WIDTH = {0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E, 0x00AD}
_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}
_REMOVED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\U000e0000-\U000e007f"
    + "".join(re.escape(chr(cp)) for cp in sorted(_ZERO_WIDTH | _BIDI))
    + "]"
)
"""Any character :func:`normalize_text` removes (a text without one is only NFKC'd)."""
_NO_FLAGS: frozenset[str] = frozenset()
_NFKC_CHANGED = frozenset({"nfkc_changed"})


@dataclasses.dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on one task input (defaults fit chat-sized work; raise them per agent)."""

    max_bytes: int = 256 * 1024
    """Size of the input as JSON."""
    max_depth: int = 32
    """Nesting of lists and objects."""
    max_string: int = 64 * 1024
    """Characters in any one string."""
    max_items: int = 10_000
    """Values in all (strings, numbers, list items, object members)."""
    normalize: bool = True
    """NFKC and the removal of control, invisible and tag characters."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_string", "max_items"):
            if getattr(self, name) < 1:
                raise ConfigError(f"InputLimits.{name} must be >= 1")
        if self.max_depth > 200:  # the check walks the input recursively
            raise ConfigError("InputLimits.max_depth must be <= 200")


@dataclasses.dataclass(frozen=True, slots=True)
class NormalizedText:
    """Cleaned text, what was removed (``flags``), and any tag-smuggled text decoded."""

    text: str
    flags: frozenset[str]
    hidden: str = ""
    """Text that was smuggled in tag characters (decoded), for the detector."""


def normalize_text(text: str) -> NormalizedText:
    """NFKC, without control/invisible/tag characters; says what it removed."""
    if _REMOVED.search(text) is None:  # nothing to remove: no walk over the characters
        if text.isascii():  # (NFKC leaves ASCII as it is)
            return NormalizedText(text, _NO_FLAGS)
        nfkc = unicodedata.normalize("NFKC", text)
        return NormalizedText(nfkc, _NO_FLAGS if nfkc == text else _NFKC_CHANGED)
    flags: set[str] = set()
    hidden: list[str] = []
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if 0xE0000 <= cp <= 0xE007F:
            flags.add("tag_characters")
            if 0xE0020 <= cp <= 0xE007E:
                hidden.append(chr(cp - 0xE0000))
            continue
        if cp in _ZERO_WIDTH:
            flags.add("zero_width")
            continue
        if cp in _BIDI:
            flags.add("bidi_control")
            continue
        if cp == 0:
            flags.add("null_byte")
            continue
        if (cp < 32 and ch not in "\n\t\r") or 0x7F <= cp < 0xA0:
            flags.add("control_character")
            continue
        out.append(ch)
    cleaned = "".join(out)
    nfkc = unicodedata.normalize("NFKC", cleaned)
    if nfkc != cleaned:
        flags.add("nfkc_changed")
    return NormalizedText(nfkc, frozenset(flags), "".join(hidden))


def _walk(value: Any, limits: InputLimits, flags: set[str], hidden: list[str]) -> Any:
    """Check types and bounds iteratively-by-depth (no recursion blow-up) and clean text."""
    count = 0

    def visit(v: Any, depth: int, where: str) -> Any:
        nonlocal count
        count += 1
        if count > limits.max_items:
            raise InputRejected(
                f"input has more than {limits.max_items} values (max_items)", reason="too_large"
            )
        if depth > limits.max_depth:
            raise InputRejected(
                f"input is nested deeper than {limits.max_depth} levels at {where} (max_depth)",
                reason="too_deep",
            )
        if isinstance(v, str):
            if len(v) > limits.max_string:
                raise InputRejected(
                    f"string at {where} has {len(v)} characters, over max_string="
                    f"{limits.max_string}",
                    reason="too_large",
                )
            if not limits.normalize:
                return v
            norm = normalize_text(v)
            flags.update(norm.flags)
            if norm.hidden:
                hidden.append(norm.hidden)
            return norm.text
        if v is None or isinstance(v, bool | int):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise InputRejected(f"number at {where} is not finite", reason="bad_type")
            return v
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for k, item in v.items():
                if not isinstance(k, str):
                    raise InputRejected(
                        f"object key {k!r} at {where} is not a string", reason="bad_type"
                    )
                key = visit(k, depth + 1, f"{where}.<key>")
                out[key] = visit(item, depth + 1, f"{where}.{key[:40]}")
            return out
        if isinstance(v, list | tuple):
            return [visit(item, depth + 1, f"{where}[{i}]") for i, item in enumerate(v)]
        raise InputRejected(
            f"value at {where} is a {type(v).__name__}; inputs must be JSON data "
            "(str, number, bool, null, list, object)",
            reason="bad_type",
        )

    return visit(value, 0, "$")


def validate_input(
    value: Any, *, limits: InputLimits | None = None, schema: Any = None
) -> tuple[Any, frozenset[str], str]:
    """Check ``value`` against ``limits`` (and ``schema``: a pydantic model class or any
    type pydantic can validate). Returns the cleaned value, the normalization flags, and
    any text smuggled in tag characters. Raises :class:`InputRejected` with the reason."""
    import msgspec

    lim = limits or InputLimits()
    if isinstance(value, bytes | bytearray):
        if len(value) > lim.max_bytes:
            raise InputRejected(
                f"input is {len(value)} bytes, over max_bytes={lim.max_bytes}", reason="too_large"
            )
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            raise InputRejected(f"input is not valid JSON: {exc}", reason="malformed") from None
    flags: set[str] = set()
    hidden: list[str] = []
    cleaned = _walk(value, lim, flags, hidden)
    size = len(msgspec.json.encode(cleaned))
    if size > lim.max_bytes:
        raise InputRejected(
            f"input is {size} bytes as JSON, over max_bytes={lim.max_bytes}", reason="too_large"
        )
    if schema is not None:
        from pydantic import TypeAdapter, ValidationError

        try:
            model = TypeAdapter(schema).validate_python(cleaned)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '$'}: {e['msg']}" for e in exc.errors()
            )
            raise InputRejected(
                f"input does not match the agent's schema: {problems}", reason="schema"
            ) from None
        dump = getattr(model, "model_dump", None)
        cleaned = dump(mode="json") if callable(dump) else model
    return cleaned, frozenset(flags), " ".join(hidden)
