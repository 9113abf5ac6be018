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

from typing import Any

import anthropic

from stalwart.llm._anthropic import AnthropicWire
from stalwart.llm._capabilities import Capabilities
from stalwart.llm.sdk._base import GeneratedSDKClient, SDKErrors, sdk_arguments

__all__ = ["AnthropicSDKClient"]

_NAMED = ("model", "max_tokens", "messages", "stream")


class AnthropicSDKClient(GeneratedSDKClient):
    """``model`` through ``client`` (an ``anthropic.AsyncAnthropic`` you configured;
    default: a new one from ``options``), named ``{provider}:{model}``; used with
    ``max_retries=0``: retries are stalwart's. Prompt-cache marks and structured output
    are encoded as :class:`~stalwart.llm.AnthropicClient` encodes them.
    """

    errors = SDKErrors(
        anthropic.APIStatusError, anthropic.APIConnectionError, anthropic.APITimeoutError
    )

    def __init__(
        self,
        model: str,
        *,
        client: anthropic.AsyncAnthropic | None = None,
        provider: str = "anthropic",
        capabilities: Capabilities | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            AnthropicWire(model, provider=provider, capabilities=capabilities),
            anthropic.AsyncAnthropic(max_retries=0, **options)
            if client is None
            else client.with_options(max_retries=0),
            own=client is None,
        )

    def _create(self) -> Any:
        return self.sdk.messages.create

    def _arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        return sdk_arguments(body, _NAMED)
