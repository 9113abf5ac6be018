"""Model clients, fallback chains, pricing, and the simulated model world (``llm.sim``).

See ``docs/models.md``.
"""

from stalwart.llm._anthropic import AnthropicClient
from stalwart.llm._client import HTTPModelClient
from stalwart.llm._evalset import EVAL_SET, EvalItem, EvalReport, evaluate, score_answer
from stalwart.llm._fallback import FallbackChain
from stalwart.llm._openai import OpenAIClient
from stalwart.llm._pricing import DEFAULT_PRICES, Price, PriceTable
from stalwart.llm._resolve import Provider, model_chain, model_client
from stalwart.llm._types import (
    Message,
    ModelClient,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "DEFAULT_PRICES",
    "EVAL_SET",
    "AnthropicClient",
    "EvalItem",
    "EvalReport",
    "FallbackChain",
    "HTTPModelClient",
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "OpenAIClient",
    "Price",
    "PriceTable",
    "Provider",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "evaluate",
    "model_chain",
    "model_client",
    "score_answer",
]
