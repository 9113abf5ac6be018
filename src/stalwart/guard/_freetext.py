"""Checks on the free text a side-effect tool sends (an e-mail body, a message, a note).

The model composes these, so they are not origin-checked like an order id; but an
injected instruction's real goal is often exactly this text ("tell the customer to
re-enter their card at http://…"). A free-text argument of a sensitive tool is held
(or refused) when it carries:

- a **link** (URL or bare domain), an **e-mail address** or a **phone number** that
  appears in no trusted source (``trusted``: by default the system prompt, the
  principal and records, the places an agent's own links and addresses come from);
- **copied wording**: ``copied_words`` consecutive words (5) that appear in untrusted
  text (tool results, documents, flagged input) but in no trusted source, or
  ``copied_user_words`` (8) that appear in the customer's own free text: a reply may
  restate the customer's request ("1250 cents for order 4521"), not relay a paragraph
  planted in their ticket. A reply quoting an injected instruction is caught here.

Configure per tool with ``ToolRule(text=TextCheck(...))``; ``text=None`` turns it off.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from stalwart.errors import ConfigError
from stalwart.guard._canon import canonical

if TYPE_CHECKING:
    from stalwart.guard._taint import Provenance

__all__ = ["TextCheck", "contacts_in", "shingles"]

_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b(?:/[^\s<>\"']*)?",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d(?![\w.])")
_WORD = re.compile(r"\w+")


def _phone_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def contacts_in(text: str) -> list[tuple[str, str]]:
    """The links, e-mail addresses and phone numbers in ``text`` as ``(kind, canonical)``."""
    found: list[tuple[str, str]] = []
    emails = [m.group() for m in _EMAIL.finditer(text)]
    found += [("e-mail address", canonical(e)) for e in emails]
    rest = _EMAIL.sub(" ", text)
    for m in _URL.finditer(rest):
        url = canonical(m.group().rstrip(".,;:!?)"))
        if re.fullmatch(r"[\d.]+", url):
            continue  # a number with dots (1.2.3) is no address
        found.append(("link", url))
    for m in _PHONE.finditer(rest):
        digits = _phone_digits(m.group())
        if len(digits) >= 9:
            found.append(("phone number", digits))
    return found


def shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    """Every run of ``size`` consecutive words."""
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def words_of(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


TRUSTED_FOR_TEXT = frozenset({"system", "principal", "record"})
_UNTRUSTED = frozenset({"tool", "document", "suspect", "model"})


@dataclasses.dataclass(frozen=True, slots=True)
class TextCheck:
    """How a sensitive tool's free-text arguments are checked (see the module docstring)."""

    contacts: bool = True
    """Links, e-mail addresses and phone numbers must come from a trusted source."""
    copied_words: int = 5
    """Consecutive words copied from untrusted text that make the text suspect (0: off)."""
    copied_user_words: int = 8
    """The same for words copied from the customer's own text (0: off)."""
    trusted: frozenset[str] = TRUSTED_FOR_TEXT
    """Origins a link or wording may come from (``system``, ``principal``, ``record``,
    ``user``...)."""

    def __post_init__(self) -> None:
        for name in ("copied_words", "copied_user_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0 or value == 1:
                raise ConfigError(f"TextCheck.{name} must be 0 (off) or >= 2, got {value!r}")
        valid = {"system", "principal", "user", "record", "tool", "document", "suspect", "model"}
        bad = set(self.trusted) - valid
        if bad:
            raise ConfigError(f"TextCheck.trusted: unknown origin {sorted(bad)[0]!r}")
        object.__setattr__(self, "trusted", frozenset(self.trusted))

    def problems(self, name: str, value: Any, seen: Provenance) -> list[str]:
        """Why the free text ``value`` of argument ``name`` must not go out unreviewed."""
        if not isinstance(value, str) or not value.strip():
            return []
        out: list[str] = []
        if self.contacts:
            for kind, item in contacts_in(value):
                where = seen.contact_origins(kind, item)
                if not where & self.trusted:
                    src = f"only in {'/'.join(sorted(where))}" if where else "in no source"
                    out.append(f"{name} has a {kind} ({item[:60]}) found {src}")
        words = words_of(value)
        for size, sources in (
            (self.copied_words, _UNTRUSTED - self.trusted),
            (self.copied_user_words, frozenset({"user"}) - self.trusted),
        ):
            copied = seen.copied_runs(words, size, self.trusted, sources) if size else []
            if copied:
                found = " ".join(copied[0])
                out.append(f"{name} repeats wording found only in untrusted text ({found!r})")
                break
        return out

    @classmethod
    def from_data(cls, data: Any, *, where: str = "text") -> TextCheck | None:
        """From a TOML value: ``false`` (off), ``true`` (defaults) or a table."""
        if data is False:
            return None
        if data is True or data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be true, false or a table")
        unknown = set(data) - {"contacts", "copied_words", "copied_user_words", "trusted"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        trusted: Iterable[str] = data.get("trusted", TRUSTED_FOR_TEXT)
        return cls(
            contacts=bool(data.get("contacts", True)),
            copied_words=int(data.get("copied_words", 5)),
            copied_user_words=int(data.get("copied_user_words", 8)),
            trusted=frozenset(trusted),
        )
