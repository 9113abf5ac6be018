"""``OpenAISDKClient``: a model called through the official ``openai`` SDK
(``pip install 'stalwart[openai]'``), Chat Completions or the Responses API.

```python
import openai
from stalwart.llm import Provider
from stalwart.llm.sdk.openai import OpenAISDKClient

mine = openai.AsyncOpenAI(base_url="https://gateway.example/v1", api_key="...")
providers = {"openai": Provider(client=lambda model: OpenAISDKClient(model, client=mine))}
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import openai

from stalwart.errors import ConfigError
from stalwart.llm._capabilities import Capabilities
from stalwart.llm._client import WireFormat
from stalwart.llm._openai import OpenAIChatWire
from stalwart.llm._responses import OpenAIResponsesWire
from stalwart.llm._sse import SSEvent
from stalwart.llm.sdk._base import SDKClient, SDKErrors, dump, sdk_arguments, sdk_error, sdk_events

__all__ = ["ERRORS", "OpenAISDKClient"]

ERRORS = SDKErrors(openai.APIStatusError, openai.APIConnectionError, openai.APITimeoutError)
"""The ``openai`` SDK's errors that stalwart translates (LiteLLM raises them too)."""


class OpenAISDKClient(SDKClient):
    """``model`` through ``client`` (an ``openai.AsyncOpenAI`` you configured; default: a
    new one from ``options``, e.g. ``base_url=``, ``api_key=``), named
    ``{provider}:{model}``. ``api`` is ``"chat"`` (Chat Completions) or
    ``"responses"``. The client is used with ``max_retries=0``: retries are stalwart's.
    ``capabilities`` as for ``Provider(capabilities=...)``.
    """

    def __init__(
        self,
        model: str,
        *,
        client: openai.AsyncOpenAI | None = None,
        provider: str = "openai",
        api: Literal["chat", "responses"] = "chat",
        capabilities: Capabilities | None = None,
        **options: Any,
    ) -> None:
        if api not in ("chat", "responses"):
            raise ConfigError(f"OpenAISDKClient: api must be 'chat' or 'responses', not {api!r}")
        wire: WireFormat = (OpenAIChatWire if api == "chat" else OpenAIResponsesWire)(
            model, provider=provider, capabilities=capabilities
        )
        super().__init__(wire)
        self.api = api
        self._own = client is None
        self.sdk = (
            openai.AsyncOpenAI(max_retries=0, **options)
            if client is None
            else client.with_options(max_retries=0)
        )

    async def aclose(self) -> None:
        if self._own:
            await self.sdk.close()

    def _create(self) -> Any:
        # the SDK's typed overloads take keyword arguments; ours is the wire body as a dict
        return self.sdk.chat.completions.create if self.api == "chat" else self.sdk.responses.create

    def _arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        named = ("model", "messages", "stream") if self.api == "chat" else ("model", "stream")
        return sdk_arguments(body, named)

    async def _call(self, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        return dump(await self._create()(**self._arguments(body), timeout=timeout))

    async def _open(self, body: dict[str, Any], timeout: float | None) -> AsyncIterator[SSEvent]:
        async for event in sdk_events(
            await self._create()(**self._arguments(body), timeout=timeout)
        ):
            yield event

    def _error(self, exc: Exception) -> Exception:
        return sdk_error(self.name, exc, ERRORS)
