"""Model clients, fallback chains, pricing, and the simulated model world (``llm.sim``).

See ``docs/models.md``.
"""

from stalwart.llm._anthropic import AnthropicClient
from stalwart.llm._capabilities import (
    CAPABILITY_TABLE,
    DEFAULT_CAPABILITIES,
    Capabilities,
    capabilities_for,
)
from stalwart.llm._client import HTTPModelClient
from stalwart.llm._evalset import EVAL_SET, EvalItem, EvalReport, evaluate, score_answer
from stalwart.llm._fallback import FallbackChain
from stalwart.llm._guarded import GuardedModel
from stalwart.llm._health import ChainHealth, probe_endpoint
from stalwart.llm._netbackend import AsyncioTransport
from stalwart.llm._openai import OpenAIClient
from stalwart.llm._pricing import DEFAULT_PRICES, Price, PriceTable, genai_price
from stalwart.llm._resolve import Provider, model_chain, model_client
from stalwart.llm._responses import OpenAIResponsesClient
from stalwart.llm._structured import structured
from stalwart.llm._types import (
    Message,
    ModelClient,
    ModelRequest,
    ModelResponse,
    ResponseFormat,
    StreamDelta,
    StreamingModelClient,
    ToolCall,
    ToolSpec,
    Usage,
    close_stream,
)

__all__ = [
    "AsyncioTransport",
    "CAPABILITY_TABLE",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PRICES",
    "EVAL_SET",
    "AnthropicClient",
    "Capabilities",
    "ChainHealth",
    "EvalItem",
    "EvalReport",
    "FallbackChain",
    "GuardedModel",
    "HTTPModelClient",
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "OpenAIClient",
    "OpenAIResponsesClient",
    "Price",
    "PriceTable",
    "Provider",
    "ResponseFormat",
    "StreamDelta",
    "StreamingModelClient",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "close_stream",
    "capabilities_for",
    "evaluate",
    "genai_price",
    "model_chain",
    "model_client",
    "probe_endpoint",
    "score_answer",
    "structured",
]
