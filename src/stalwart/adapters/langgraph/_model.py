"""A LangChain chat model whose every call is a journaled stalwart model call.

:class:`ChatModel` is a ``BaseChatModel``: a graph uses it as it would ``ChatOpenAI``
(``model.bind_tools(tools)``, ``model.invoke(messages)`` in a node). Each call goes
through :meth:`stalwart.agent.TaskContext.call_model`: the agent's model chain with
its deadline, retries, breakers and fallbacks, the spend reservation, redaction,
metrics, and the journal, so a replayed call returns the recorded reply and the
provider is not called again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from stalwart.adapters.langgraph._run import current_run, run_sync
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

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
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
            reply = await run.ctx.call_model(
                sent,
                tools=specs,
                model=self.chain or run.model,
                max_tokens=self.max_tokens,
                digest=digest,
                stream=run.stream,
            )
        run.check_replayed(node, digest, reply, number)
        usage = reply["usage"]
        message = AIMessage(
            content=reply["content"],
            # deterministic: the same id when the call is replayed
            id=f"stalwart-{run.ctx.task_id}-{position}",
            # the provider's call ids are its own (a counter, a random string): a call's id
            # is its journal position and place in the answer instead, so the thread's
            # state is the same in two runs that took the same path (the journal replays
            # the provider's ids; the state would carry them otherwise)
            tool_calls=[
                tool_call(name=c["name"], args=c["arguments"], id=f"call_{position}_{i}")
                for i, c in enumerate(reply["tool_calls"])
            ],
            usage_metadata={
                "input_tokens": int(usage["prompt_tokens"]),
                "output_tokens": int(usage["completion_tokens"]),
                "total_tokens": int(usage["prompt_tokens"]) + int(usage["completion_tokens"]),
            },
            response_metadata={"model_name": reply["model"], "cost_usd": reply["cost_usd"]},
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
