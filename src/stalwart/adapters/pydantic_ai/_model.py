"""The Pydantic AI ``Model`` every request of a hosted agent goes through.

:class:`StalwartModel` answers ``request`` with one journaled
:meth:`TaskContext.call_model <stalwart.agent.TaskContext.call_model>`: the app's model
chain (deadline, retry, breaker, fallback), spend reservation, rate limits, redaction,
metrics and the journal. On replay the recorded reply is returned and no provider is
called. It is built per task by the adapter; user code never names it.

Streaming: when Pydantic AI streams (``request_stream``: an agent with an
``event_stream_handler``), or the hosted agent says ``stream=True``, the call is a
streamed ``call_model(stream=True)``: the answer's text goes out as it is generated to
``GET /v1/tasks/{id}/events``, and the journal records the whole answer. The
framework's own stream is then replayed from that whole answer
(``CompletedStreamedResponse``, as Pydantic AI's durable-execution capabilities do), so
an ``event_stream_handler`` still sees every part.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import (
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from stalwart.adapters.pydantic_ai._convert import to_messages, to_response, to_tool_specs
from stalwart.agent import TaskContext

__all__ = ["StalwartModel"]


class StalwartModel(Model):
    """A model whose requests are stalwart's journaled model calls on chain ``chain``."""

    def __init__(
        self,
        ctx: TaskContext,
        chain: str,
        *,
        started: datetime.datetime,
        max_tokens: int,
        stream: bool = False,
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._chain = chain
        self._started = started
        self._max_tokens = max_tokens
        self._stream = stream

    @property
    def model_name(self) -> str:
        return self._chain

    @property
    def system(self) -> str:
        return "stalwart"

    async def _call(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        *,
        stream: bool,
    ) -> tuple[ModelResponse, ModelRequestParameters]:
        model_settings, model_request_parameters = self.prepare_request(
            model_settings, model_request_parameters
        )
        max_tokens = (model_settings or {}).get("max_tokens") or self._max_tokens
        timeout = (model_settings or {}).get("timeout")
        reply = await self._ctx.call_model(
            to_messages(messages, model_request_parameters),
            tools=to_tool_specs(model_request_parameters),
            model=self._chain,
            max_tokens=int(max_tokens),
            timeout=float(timeout) if isinstance(timeout, int | float) else None,
            stream=stream,
            # a reply calling a function tool is followed by the run's next request: its
            # reservation rides on this call's settle (the run releases it if none comes);
            # one calling an output tool ends the run
            reserve_next=True,
            final_tools=[t.name for t in model_request_parameters.output_tools],
        )
        return to_response(reply, timestamp=self._started), model_request_parameters

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        response, _ = await self._call(
            messages, model_settings, model_request_parameters, stream=self._stream
        )
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """The framework streams: the text goes to the task's event stream as it comes,
        and the framework's stream is the journaled whole answer, part by part."""
        response, parameters = await self._call(
            messages, model_settings, model_request_parameters, stream=True
        )
        yield CompletedStreamedResponse(
            response, model_request_parameters=parameters, replay_events=True
        )
