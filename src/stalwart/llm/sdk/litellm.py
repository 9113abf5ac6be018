"""``LiteLLMClient``: a model called through LiteLLM as a library
(``pip install 'stalwart[litellm]'``), any provider LiteLLM routes to.

```python
from stalwart.llm import Price, Provider
from stalwart.llm.sdk.litellm import LiteLLMClient

providers = {"litellm": Provider(client=LiteLLMClient)}  # litellm:bedrock/anthropic.claude-3-haiku
prices = {"litellm:bedrock/anthropic.claude-3-haiku": Price(0.25, 1.25)}
```

LiteLLM speaks the Chat Completions format to every provider, so the request is
encoded as for an OpenAI-compatible model and LiteLLM translates it. Its errors are the
``openai`` SDK's classes (LiteLLM's subclass them) and are translated as
:mod:`stalwart.llm.sdk.openai` translates them. Set ``LITELLM_LOCAL_MODEL_COST_MAP=True``
so that importing LiteLLM does not fetch its price map from the network (stalwart prices
the calls itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import litellm

from stalwart.llm._capabilities import Capabilities, capabilities_for
from stalwart.llm._openai import OpenAIChatWire
from stalwart.llm._sse import SSEvent
from stalwart.llm.sdk._base import SDKClient, dump, sdk_error
from stalwart.llm.sdk.openai import ERRORS

__all__ = ["LiteLLMClient"]


class LiteLLMClient(SDKClient):
    """``model`` (LiteLLM's name, e.g. ``bedrock/anthropic.claude-3-haiku`` or
    ``openai/gpt-4o``) through ``litellm.acompletion``, named ``{provider}:{model}``.
    ``options`` go to every call (``api_base=``, ``api_key=``, ...); LiteLLM's own
    retries are off (``num_retries=0``): retries are stalwart's. The capabilities are
    those of the model's last path part (``gpt-5`` in ``openai/gpt-5``) unless given.
    """

    def __init__(
        self,
        model: str,
        *,
        provider: str = "litellm",
        capabilities: Capabilities | None = None,
        **options: Any,
    ) -> None:
        caps = capabilities or capabilities_for("openai", model.rpartition("/")[2])
        super().__init__(OpenAIChatWire(model, provider=provider, capabilities=caps))
        self.options = {**options, "num_retries": 0}

    async def aclose(self) -> None:
        pass  # LiteLLM keeps its HTTP clients process-wide

    async def _call(self, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        return dump(await litellm.acompletion(**body, **self.options, timeout=timeout))

    async def _open(self, body: dict[str, Any], timeout: float | None) -> AsyncIterator[SSEvent]:
        stream: Any = await litellm.acompletion(**body, **self.options, timeout=timeout)
        async for chunk in stream:
            yield SSEvent(event="", data=dump(chunk))

    def _error(self, exc: Exception) -> Exception:
        return sdk_error(self.name, exc, ERRORS)  # LiteLLM raises the openai SDK's errors
