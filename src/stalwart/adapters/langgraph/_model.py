"""A LangChain chat model whose every call is a journaled stalwart model call.

:class:`ChatModel` is a ``BaseChatModel``: a graph uses it as it would ``ChatOpenAI``
(``model.bind_tools(tools)``, ``model.invoke(messages)`` in a node). Each call goes
through :meth:`stalwart.agent.TaskContext.call_model`: the agent's model chain with
its deadline, retries, breakers and fallbacks, the spend reservation, redaction,
metrics, and the journal, so a replayed call returns the recorded reply and the
provider is not called again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    UsageMetadata,
    convert_to_openai_messages,
)
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from stalwart.adapters.langgraph._run import GraphRun, current_run, run_sync
from stalwart.llm import ToolSpec

__all__ = ["ChatModel"]


def _node() -> str:
    """The LangGraph node calling (``graph`` when called outside a node)."""
    from langgraph.config import get_config

    try:
        name = get_config().get("metadata", {}).get("langgraph_node")
    except RuntimeError:
        return "graph"
    return str(name) if name else "graph"


class ChatModel(BaseChatModel):
    """A chat model that is a stalwart model chain (see the module docstring).

    ``chain`` names a chain of ``App.models``; None uses the agent's ``model``.
    """

    chain: str | None = None
    max_tokens: int = 1024

    @property
    def _llm_type(self) -> str:
        return "stalwart"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"chain": self.chain, "max_tokens": self.max_tokens}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    async def _call(
        self,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        on_text: Callable[[str], None] | None = None,
        where: list[str] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """One journaled model call: the reply and its journal position. ``on_text`` gets
        the answer's text as it is generated (a live call only); ``where`` gets the
        message id before the first piece comes."""
        run = current_run("stalwart.adapters.langgraph.ChatModel")
        sent = convert_to_openai_messages(messages)
        assert isinstance(sent, list)
        specs = tuple(
            ToolSpec(
                str(t["function"]["name"]),
                str(t["function"].get("description", "")),
                dict(t["function"].get("parameters") or {"type": "object", "properties": {}}),
            )
            for t in kwargs.get("tools") or ()
        )
        node = _node()
        digest = run.digest(sent)
        async with run.lock:
            run.model_calls += 1
            number = run.model_calls
            position = run.ctx.durable.position
            if where is not None:
                where.append(_message_id(run, position))
            reply = await run.ctx.call_model(
                sent,
                tools=specs,
                model=self.chain or run.model,
                max_tokens=self.max_tokens,
                digest=digest,
                stream=run.stream,
                on_text=on_text,
                # a reply with tool calls is followed by another model call in a tool-calling
                # graph: its reservation rides on this call's settle (released when the run
                # ends without it)
                reserve_next=True,
            )
        run.check_replayed(node, digest, reply, number)
        return reply, position

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply, position = await self._call(messages, kwargs)
        run = current_run("stalwart.adapters.langgraph.ChatModel")
        message = AIMessage(
            content=reply["content"],
            # deterministic: the same id when the call is replayed
            id=_message_id(run, position),
            tool_calls=[
                tool_call(name=c["name"], args=c["arguments"], id=_call_id(position, i))
                for i, c in enumerate(reply["tool_calls"])
            ],
            usage_metadata=_usage(reply),
            response_metadata=_metadata(reply),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        run = current_run("stalwart.adapters.langgraph.ChatModel")
        result: ChatResult = run_sync(
            run, self._agenerate(messages, stop, **kwargs), "ChatModel.invoke"
        )
        return result

    # -- streaming: LangGraph's stream_mode="messages", model.astream() in a node ----------
    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """The answer's text as the model generates it, then a last chunk with the tool
        calls and usage (and the text not streamed: all of it for an answer the journal
        gives back). The chunks add up to :meth:`_agenerate`'s message."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        where: list[str] = []
        call = asyncio.ensure_future(self._call(messages, kwargs, pieces.put_nowait, where))
        call.add_done_callback(lambda _: pieces.put_nowait(None))
        streamed = 0
        try:
            while (piece := await pieces.get()) is not None:
                streamed += len(piece)
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece, id=where[0]))
            reply, position = await call
        finally:  # the reader left early: the call it started ends with it
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
        yield _last_chunk(reply, position, where[0], streamed)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """:meth:`_astream` for a sync node: the call runs on the task's loop, its pieces
        come to this worker thread through a queue."""
        run = current_run("stalwart.adapters.langgraph.ChatModel")
        pieces: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        where: list[str] = []
        future = run_sync(
            run,
            self._call(messages, kwargs, pieces.put, where),
            "ChatModel.stream",
            wait=False,
        )
        future.add_done_callback(lambda _: pieces.put(None))
        streamed = 0
        try:
            # no-deadline: the call feeding the queue has its own, and ends it when done
            while (piece := pieces.get()) is not None:
                streamed += len(piece)
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece, id=where[0]))
            reply, position = future.result()  # done: its end was queued last
        finally:
            future.cancel()  # the reader left early (a no-op once done)
        yield _last_chunk(reply, position, where[0], streamed)


def _message_id(run: GraphRun, position: int) -> str:
    return f"stalwart-{run.ctx.task_id}-{position}"


def _call_id(position: int, index: int) -> str:
    # the provider's call ids are its own (a counter, a random string): a call's id is its
    # journal position and place in the answer instead, so the thread's state is the same
    # in two runs that took the same path (the journal replays the provider's ids; the
    # state would carry them otherwise)
    return f"call_{position}_{index}"


def _usage(reply: dict[str, Any]) -> UsageMetadata:
    usage = reply["usage"]
    return {
        "input_tokens": int(usage["prompt_tokens"]),
        "output_tokens": int(usage["completion_tokens"]),
        "total_tokens": int(usage["prompt_tokens"]) + int(usage["completion_tokens"]),
    }


def _metadata(reply: dict[str, Any]) -> dict[str, Any]:
    return {"model_name": reply["model"], "cost_usd": reply["cost_usd"]}


def _last_chunk(
    reply: dict[str, Any], position: int, message_id: str, streamed: int
) -> ChatGenerationChunk:
    """The stream's last chunk: the text not streamed yet, the tool calls, the usage."""
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=reply["content"][streamed:],
            id=message_id,
            tool_call_chunks=[
                tool_call_chunk(
                    name=c["name"],
                    args=json.dumps(c["arguments"]),
                    id=_call_id(position, i),
                    index=i,
                )
                for i, c in enumerate(reply["tool_calls"])
            ],
            usage_metadata=_usage(reply),
            response_metadata=_metadata(reply),
            chunk_position="last",
        )
    )
