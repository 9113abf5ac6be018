"""Token counting for history bounding: pluggable, and the default works offline.

The default is tiktoken's ``cl100k_base`` BPE, built from the rank file stalwart
ships (``stalwart/durable/data/cl100k_base.tiktoken.gz``, OpenAI's published file,
checked against the SHA-256 tiktoken pins; provenance and licence in
``data/NOTICE.md``). A plain ``tiktoken.get_encoding("cl100k_base")`` downloads
that file on first use, which fails on machines without internet access --
avoided on purpose: nothing is downloaded at run time. If tiktoken cannot be
loaded at all, :class:`ApproxCounter` (a deliberate over-estimate) is used and a
warning is logged once.
"""

from __future__ import annotations

import binascii
import functools
import gzip
import hashlib
import math
import pathlib
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


_CL100K_FILE = pathlib.Path(__file__).parent / "data" / "cl100k_base.tiktoken.gz"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_BUNDLED = ("cl100k_base", "cl100k_base_offline")  # the second: the name used before


def _cl100k_base() -> Any:
    """The ``cl100k_base`` encoding from the shipped rank file (no network)."""
    import tiktoken

    raw = gzip.decompress(_CL100K_FILE.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _CL100K_SHA256:
        raise ValueError(
            f"{_CL100K_FILE} is damaged (SHA-256 {digest}, expected {_CL100K_SHA256}); "
            "reinstall stalwart"
        )
    # "token rank" lines, verified above: every other word is a token. binascii's decoder
    # is what base64.b64decode calls after checking its argument's type; called directly
    # over the split words, the 100,256 ranks take about half the CPU (0.10 against 0.20
    # s, 2026-12-07), in every fork server's boot
    words = raw.split()
    ranks = dict(zip(map(binascii.a2b_base64, words[0::2]), map(int, words[1::2]), strict=True))
    # The encoding's split pattern and special tokens, as tiktoken defines cl100k_base.
    pattern = (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
        r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    )
    special = {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    }
    return tiktoken.Encoding(
        "cl100k_base", pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
    )


COUNT_CACHE_ENTRIES = 2048
COUNT_CACHE_CHARS = 4096


class TiktokenCounter:
    """Exact counts with a tiktoken encoding (default: ``cl100k_base`` from the shipped file).

    Another encoding name goes to ``tiktoken.get_encoding``, which may download its file.
    """

    def __init__(self, encoding: str = "cl100k_base") -> None:
        import tiktoken

        self.encoding_name = encoding
        self._count_short = functools.lru_cache(maxsize=COUNT_CACHE_ENTRIES)(self._count)
        self._encoding: Any = (
            _cl100k_base() if encoding in _BUNDLED else tiktoken.get_encoding(encoding)
        )

    def count(self, text: str) -> int:
        """Tokens in ``text``; a text counted before (up to ``COUNT_CACHE_ENTRIES`` texts
        of at most ``COUNT_CACHE_CHARS``) is not encoded again: the loop counts its whole
        history before every model call, so each message was counted at every step."""
        if len(text) <= COUNT_CACHE_CHARS:
            return self._count_short(text)
        return self._count(text)

    def _count(self, text: str) -> int:
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
