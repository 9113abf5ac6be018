"""Bounded conversation history for agent state (SM-3).

A :class:`History` holds chat messages (OpenAI format: ``role``, ``content``,
optional ``tool_calls`` / ``tool_call_id``) under a token budget. Before every
model call, ``await history.fit(ctx)`` makes it fit:

- :class:`SlidingWindow` drops the oldest turns. It always keeps the leading
  system prompt and the first user message (the task), and it treats an
  assistant message with tool calls together with its tool results as one
  unit, so the model never sees a result without its call (providers reject
  that) or a call without its result.
- :class:`Summarize` replaces the oldest turns with a summary written by a
  function you give (usually a model call). The summary is a journaled step,
  so a resumed task gets the same summary and replays exactly.

Both end with a hard guarantee: if a single remaining message is still too big
(a huge tool output), its content is truncated with a marker.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stalwart.durable._integrity import check_json
from stalwart.durable._tokens import TokenCounter, default_counter
from stalwart.errors import ConfigError, InvalidMessage

if TYPE_CHECKING:
    from stalwart.durable._journal import Context

__all__ = ["History", "HistoryStrategy", "SlidingWindow", "Summarize", "count_messages"]

Message = dict[str, Any]
_ROLES = frozenset({"system", "user", "assistant", "tool"})
_PER_MESSAGE = 4  # role and separators, as OpenAI's counting guide does
_PER_REPLY = 3
SUMMARY_NAME = "history_summary"


def _message_tokens(message: Message, counter: TokenCounter) -> int:
    total = _PER_MESSAGE
    content = message.get("content")
    if isinstance(content, str):
        total += counter.count(content)
    elif content is not None:
        total += counter.count(json.dumps(content))
    if message.get("tool_calls"):
        total += counter.count(json.dumps(message["tool_calls"]))
    if message.get("name"):
        total += counter.count(str(message["name"])) + 1
    return total


def count_messages(messages: Sequence[Message], counter: TokenCounter | None = None) -> int:
    """Tokens a model is sent for ``messages`` (content, tool calls, names, overhead)."""
    c = counter or default_counter()
    return _PER_REPLY + sum(_message_tokens(m, c) for m in messages)


def _units(messages: Sequence[Message]) -> list[list[Message]]:
    """Split into droppable units: a tool-calling assistant turn stays with its results."""
    units: list[list[Message]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        unit = [message]
        i += 1
        if message.get("role") == "assistant" and message.get("tool_calls"):
            ids = {c.get("id") for c in message["tool_calls"] if isinstance(c, dict)}
            while (
                i < len(messages)
                and messages[i].get("role") == "tool"
                and (messages[i].get("tool_call_id") in ids)
            ):
                unit.append(messages[i])
                i += 1
        units.append(unit)
    return units


def _split_pinned(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """The pinned head and the rest: the leading system prompt and the task's first
    user message (the statement of the task: without it a long-running agent forgets
    what it is doing). A summary is not pinned."""
    n = 0
    while (
        n < len(messages)
        and messages[n].get("role") == "system"
        and messages[n].get("name") != SUMMARY_NAME
    ):
        n += 1
    if n < len(messages) and messages[n].get("role") == "user":
        n += 1
    return list(messages[:n]), list(messages[n:])


class HistoryStrategy(Protocol):
    """How a :class:`History` over its budget is made to fit."""

    async def shrink(
        self, history: History, ctx: Context | None
    ) -> list[Message]:  # pragma: no cover - protocol
        ...


class SlidingWindow:
    """Drop the oldest units until the history fits (system prompt and pairs kept)."""

    async def shrink(self, history: History, ctx: Context | None) -> list[Message]:
        pinned, rest = _split_pinned(history.messages)
        units = _units(rest)
        budget = history.budget_tokens
        used = count_messages(pinned, history.counter)
        sizes = [sum(_message_tokens(m, history.counter) for m in u) for u in units]
        total = used + sum(sizes)
        start = 0
        while total > budget and start < len(units) - 1:
            total -= sizes[start]
            start += 1
        return pinned + [m for u in units[start:] for m in u]


class Summarize:
    """Replace the oldest turns with a summary made by ``summarizer(messages) -> str``.

    ``keep_recent`` is the share of the budget kept for the newest turns
    verbatim (default 0.5). The summarizer may be sync or async; with a context
    it runs as the journaled step ``history.summarize``.
    """

    def __init__(
        self,
        summarizer: Callable[[list[Message]], str | Awaitable[str]],
        *,
        keep_recent: float = 0.5,
    ) -> None:
        if not 0.0 < keep_recent < 1.0:
            raise ConfigError(f"Summarize.keep_recent = {keep_recent!r} must be in (0, 1)")
        self._summarizer = summarizer
        self._keep_recent = keep_recent

    async def shrink(self, history: History, ctx: Context | None) -> list[Message]:
        from stalwart.durable._journal import call

        pinned, rest = _split_pinned(history.messages)
        units = _units(rest)
        room = int(history.budget_tokens * self._keep_recent)
        keep: list[list[Message]] = []
        used = 0
        for unit in reversed(units[1:]):  # the oldest unit is always summarized
            size = sum(_message_tokens(m, history.counter) for m in unit)
            if used + size > room:
                break
            keep.insert(0, unit)
            used += size
        old = [m for u in units[: len(units) - len(keep)] for m in u]
        if not old:
            return list(history.messages)
        if ctx is not None:
            summary = await ctx.step("history.summarize", self._summarizer, old)
        else:
            summary = await call(self._summarizer, old)
        if not isinstance(summary, str):
            raise InvalidMessage(f"summarizer returned {type(summary).__name__}, expected str")
        note = {"role": "system", "name": SUMMARY_NAME,
                "content": f"Summary of the earlier conversation:\n{summary}"}  # fmt: skip
        return [*pinned, note, *(m for u in keep for m in u)]


class History:
    """Chat messages kept under ``budget_tokens``; see the module doc.

    ``counter`` defaults to the offline tiktoken counter; ``strategy`` to
    :class:`SlidingWindow`. ``messages`` is JSON data: store it in a checkpoint
    (``ctx.checkpoint({"history": history.messages, ...})``) and rebuild with
    ``History(budget, messages=state["history"])``.
    """

    def __init__(
        self,
        budget_tokens: int,
        *,
        counter: TokenCounter | None = None,
        strategy: HistoryStrategy | None = None,
        messages: Sequence[Message] = (),
    ) -> None:
        if not isinstance(budget_tokens, int) or budget_tokens < 64:
            raise ConfigError(f"History.budget_tokens = {budget_tokens!r} must be an int >= 64")
        self.budget_tokens = budget_tokens
        self.counter: TokenCounter = counter or default_counter()
        self.strategy: HistoryStrategy = strategy or SlidingWindow()
        self.messages: list[Message] = []
        self.fitted_tokens = 0
        """What the messages the last :meth:`fit` returned cost (``count_messages``)."""
        for message in messages:
            self.add(message)

    def add(self, message: Message) -> None:
        """Append a message (validated: a dict with a known role, JSON data)."""
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise InvalidMessage(
                f"history message must be a dict with role in {sorted(_ROLES)}, "
                f"got {message!r:.200}"
            )
        check_json(message, "history message")
        self.messages.append(message)

    def tokens(self) -> int:
        """Tokens the current messages cost."""
        return count_messages(self.messages, self.counter)

    async def fit(self, ctx: Context | None = None) -> list[Message]:
        """Shrink to the budget (if needed) and return the messages to send.

        With a durable ``ctx``, any summarization is a journaled step.
        """
        tokens = self.tokens()
        if tokens > self.budget_tokens:
            self.messages = await self.strategy.shrink(self, ctx)
            tokens = self.tokens()
            if tokens > self.budget_tokens:
                self.messages = await SlidingWindow().shrink(self, ctx)
                tokens = self.tokens()
            if tokens > self.budget_tokens:
                self._truncate()
                tokens = self.tokens()
        self.fitted_tokens = tokens
        return list(self.messages)

    def _truncate(self) -> None:
        """Last resort: cut the largest contents (the task statement too, never the
        system prompt) until the budget holds."""
        pinned, _ = _split_pinned(self.messages)
        if pinned and pinned[-1].get("role") == "user":
            pinned = pinned[:-1]  # the task statement may be shortened; the prompt may not
        if count_messages(pinned, self.counter) > self.budget_tokens:
            raise ConfigError(
                f"the system prompt alone is {count_messages(pinned, self.counter)} tokens, "
                f"over History.budget_tokens = {self.budget_tokens}"
            )
        while (over := self.tokens() - self.budget_tokens) > 0:
            index = max(
                range(len(pinned), len(self.messages)),
                key=lambda i: _message_tokens(self.messages[i], self.counter),
            )
            message = dict(self.messages[index])
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            have = self.counter.count(text)
            keep = max(have - over - 16, 0)
            message["content"] = self._cut(text, keep) + f"\n[truncated {have - keep} tokens]"
            if message == self.messages[index]:  # nothing left to cut
                raise ConfigError(
                    f"History.budget_tokens = {self.budget_tokens} is too small for the "
                    "messages' fixed overhead"
                )
            self.messages[index] = message

    def _cut(self, text: str, tokens: int) -> str:
        truncate = getattr(self.counter, "truncate", None)
        if callable(truncate):
            return str(truncate(text, tokens))
        low, high = 0, len(text)  # longest prefix within `tokens`, by bisection
        while low < high:
            mid = (low + high + 1) // 2
            if self.counter.count(text[:mid]) <= tokens:
                low = mid
            else:
                high = mid - 1
        return text[:low]
