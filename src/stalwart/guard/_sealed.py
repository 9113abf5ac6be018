"""Resolved secrets never stored: journaled values hold references, replay resolves them.

Every value a :class:`~stalwart.guard.SecretResolver` hands out is remembered here
with its name. Before anything is written to the task journal (a step's result, a
side effect's result, a failure's message, a checkpoint, a task's outcome),
:func:`seal` replaces each occurrence of a remembered value with a reference
marker: its ``secret://`` reference between the private-use characters U+E000 and
U+E001. :func:`unseal` turns markers back into the *current* value of the
secret when a journal is loaded for replay, so a resumed task gets a usable value
(the rotated one, if it was rotated) while the store, the journal endpoint, the
CLI and every copy of the database hold only the name.

The markers cannot be forged by data: :func:`seal` replaces any private-use
``\\ue000``/``\\ue001`` a value already holds with U+FFFD, so each marker in a
sealed value was put there by :func:`seal`. Sealing is cheap when no secret was
resolved (one walk of the value looking for the two characters).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from stalwart.guard._secrets import SecretResolver

__all__ = ["MARK_END", "MARK_START", "remember_secret", "seal", "sealed_names", "unseal"]

MARK_START = "\ue000"
MARK_END = "\ue001"
_MARKER = re.compile("\ue000secret://([A-Za-z][A-Za-z0-9_.-]{0,127})\ue001")
_START_BYTES = MARK_START.encode()
_END_BYTES = MARK_END.encode()
_MIN_LENGTH = 4
"""Shorter values are not sealed (a 3-character "secret" would replace every "abc")."""


class _Registry:
    """This process's resolved secrets: value -> name, and name -> the resolver that knows it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.resolvers: dict[str, SecretResolver] = {}
        self.ordered: tuple[tuple[str, str], ...] = ()  # (value, name), longest value first
        # the values as UTF-8, when each reads the same inside a JSON string (the fast path)
        self.encoded: tuple[bytes, ...] | None = ()
        self.fallback: SecretResolver | None = None


_REG = _Registry()


def remember_secret(name: str, value: str, resolver: SecretResolver | None = None) -> None:
    """Seal ``value`` as ``secret://name`` in everything journaled from now on."""
    if not isinstance(value, str) or len(value) < _MIN_LENGTH:
        return
    with _REG.lock:
        if resolver is not None:
            _REG.resolvers[name] = resolver
        if _REG.values.get(value) == name:
            return
        _REG.values[value] = name
        _REG.ordered = tuple(
            sorted(_REG.values.items(), key=lambda item: len(item[0]), reverse=True)
        )
        raw = tuple(v.encode() for v, _ in _REG.ordered)
        plain = all(msgspec.json.encode(v)[1:-1] == v.encode() for v, _ in _REG.ordered)
        _REG.encoded = raw if plain else None


def sealed_names() -> list[str]:
    """The names of the secrets this process seals (for reports; never the values)."""
    with _REG.lock:
        return sorted(set(_REG.values.values()))


def _seal_text(text: str, ordered: tuple[tuple[str, str], ...]) -> str:
    if MARK_START in text or MARK_END in text:
        text = text.replace(MARK_START, "\ufffd").replace(MARK_END, "\ufffd")
    for value, name in ordered:
        if value in text:
            text = text.replace(value, f"{MARK_START}secret://{name}{MARK_END}")
    return text


def seal(value: Any) -> Any:
    """``value`` (JSON data) with every resolved secret replaced by its reference marker.

    Returns ``value`` itself when nothing needed replacing (no copy). The common case
    costs one C-speed JSON encoding: only a value whose encoding holds a secret or a
    marker character is walked.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    ordered, encoded = _REG.ordered, _REG.encoded
    if encoded is not None:
        try:
            data = msgspec.json.encode(value)
        except (TypeError, ValueError, msgspec.EncodeError):  # not JSON data: walk it
            data = None
        if (
            data is not None
            and _START_BYTES not in data
            and _END_BYTES not in data
            and not any(secret in data for secret in encoded)
        ):
            return value
    return _walk(value, lambda s: _seal_text(s, ordered), 0)


def _walk(value: Any, fn: Any, depth: int) -> Any:
    if isinstance(value, str):
        return fn(value)
    if depth > 200:
        return value
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        changed = False
        for k, v in value.items():
            nk = fn(k) if isinstance(k, str) else k
            nv = _walk(v, fn, depth + 1)
            changed = changed or nk is not k or nv is not v
            out[nk] = nv
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [_walk(v, fn, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def _resolver_for(name: str) -> SecretResolver:
    with _REG.lock:
        known = _REG.resolvers.get(name)
        if known is not None:
            return known
        if _REG.fallback is None:
            from stalwart.guard._secrets import SecretResolver, provider_from_env

            _REG.fallback = SecretResolver(provider_from_env())
        return _REG.fallback


def _unseal_text(text: str) -> str:
    if MARK_START not in text:
        return text
    return _MARKER.sub(lambda m: _resolver_for(m.group(1)).resolve(m.group(1)), text)


def unseal(value: Any) -> Any:
    """``value`` with every reference marker replaced by the secret's current value.

    Raises :class:`~stalwart.errors.SecretNotFound` when a referenced secret no longer
    exists (the replay cannot go on with a value it does not have).
    """
    return _walk(value, _unseal_text, 0)
