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

from typing import Any, Literal

import openai

from stalwart.errors import ConfigError
from stalwart.llm._capabilities import Capabilities
from stalwart.llm._client import WireFormat
from stalwart.llm._openai import OpenAIChatWire
from stalwart.llm._responses import OpenAIResponsesWire
from stalwart.llm.sdk._base import GeneratedSDKClient, SDKErrors, sdk_arguments

__all__ = ["ERRORS", "OpenAISDKClient"]

ERRORS = SDKErrors(openai.APIStatusError, openai.APIConnectionError, openai.APITimeoutError)
"""The ``openai`` SDK's errors that stalwart translates (LiteLLM raises them too)."""


class OpenAISDKClient(GeneratedSDKClient):
    """``model`` through ``client`` (an ``openai.AsyncOpenAI`` you configured; default: a
    new one from ``options``, e.g. ``base_url=``, ``api_key=``), named
    ``{provider}:{model}``. ``api`` is ``"chat"`` (Chat Completions) or
    ``"responses"``. The client is used with ``max_retries=0``: retries are stalwart's.
    ``capabilities`` as for ``Provider(capabilities=...)``.
    """

    errors = ERRORS

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
        super().__init__(
            wire,
            openai.AsyncOpenAI(max_retries=0, **options)
            if client is None
            else client.with_options(max_retries=0),
            own=client is None,
        )
        self.api = api

    def _create(self) -> Any:
        return self.sdk.chat.completions.create if self.api == "chat" else self.sdk.responses.create

    def _arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        named = ("model", "messages", "stream") if self.api == "chat" else ("model", "stream")
        return sdk_arguments(body, named)
