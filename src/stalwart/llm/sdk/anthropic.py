"""``AnthropicSDKClient``: a model called through the official ``anthropic`` SDK
(``pip install 'stalwart[anthropic]'``), the Messages API.

```python
import anthropic
from stalwart.llm import Provider
from stalwart.llm.sdk.anthropic import AnthropicSDKClient

mine = anthropic.AsyncAnthropic()  # ANTHROPIC_API_KEY, or Bedrock/Vertex clients alike
providers = {"anthropic": Provider(client=lambda model: AnthropicSDKClient(model, client=mine))}
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic

from stalwart.llm._anthropic import AnthropicWire
from stalwart.llm._capabilities import Capabilities
from stalwart.llm._sse import SSEvent
from stalwart.llm.sdk._base import SDKClient, SDKErrors, dump, sdk_arguments, sdk_error, sdk_events

__all__ = ["AnthropicSDKClient"]

_NAMED = ("model", "max_tokens", "messages", "stream")
_ERRORS = SDKErrors(
    anthropic.APIStatusError, anthropic.APIConnectionError, anthropic.APITimeoutError
)


class AnthropicSDKClient(SDKClient):
    """``model`` through ``client`` (an ``anthropic.AsyncAnthropic`` you configured;
    default: a new one from ``options``), named ``{provider}:{model}``; used with
    ``max_retries=0``: retries are stalwart's. Prompt-cache marks and structured output
    are encoded as :class:`~stalwart.llm.AnthropicClient` encodes them.
    """

    def __init__(
        self,
        model: str,
        *,
        client: anthropic.AsyncAnthropic | None = None,
        provider: str = "anthropic",
        capabilities: Capabilities | None = None,
        **options: Any,
    ) -> None:
        super().__init__(AnthropicWire(model, provider=provider, capabilities=capabilities))
        self._own = client is None
        self.sdk = (
            anthropic.AsyncAnthropic(max_retries=0, **options)
            if client is None
            else client.with_options(max_retries=0)
        )

    async def aclose(self) -> None:
        if self._own:
            await self.sdk.close()

    def _create(self) -> Any:
        # the SDK's typed overloads take keyword arguments; ours is the wire body as a dict
        return self.sdk.messages.create

    async def _call(self, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        return dump(await self._create()(**sdk_arguments(body, _NAMED), timeout=timeout))

    async def _open(self, body: dict[str, Any], timeout: float | None) -> AsyncIterator[SSEvent]:
        async for event in sdk_events(
            await self._create()(**sdk_arguments(body, _NAMED), timeout=timeout)
        ):
            yield event

    def _error(self, exc: Exception) -> Exception:
        return sdk_error(self.name, exc, _ERRORS)
