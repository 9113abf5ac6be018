"""The capability table, and which 400s mean "this model cannot serve this request"."""

from __future__ import annotations

import json

import httpx
import pytest

from stalwart.errors import ContextLengthExceeded, ModelCannotServe, ModelHTTPError
from stalwart.llm import DEFAULT_CAPABILITIES, capabilities_for
from stalwart.llm._http import status_error


@pytest.mark.parametrize(
    ("wire", "model", "param", "temperature", "reasoning"),
    [
        ("openai", "gpt-5", "max_completion_tokens", False, True),
        ("openai", "gpt-5-mini-2025-08-07", "max_completion_tokens", False, True),
        ("openai", "gpt-5-chat-latest", "max_completion_tokens", True, False),
        ("openai", "o3-mini", "max_completion_tokens", False, True),
        ("openai", "o4-mini", "max_completion_tokens", False, True),
        ("openai", "gpt-4.1-nano", "max_completion_tokens", True, False),
        ("openai", "gpt-4o-mini", "max_completion_tokens", True, False),
        ("openai", "Qwen/Qwen3-8B", "max_tokens", True, False),  # a vLLM model: compatible
        ("anthropic", "claude-sonnet-4-5", "max_tokens", True, False),
    ],
)
def test_the_table_chooses_parameters_per_model(wire, model, param, temperature, reasoning):
    caps = capabilities_for(wire, model)
    assert (caps.max_tokens_param, caps.temperature, caps.reasoning) == (
        param,
        temperature,
        reasoning,
    )


def test_an_unknown_model_gets_the_most_compatible_encoding():
    assert capabilities_for("openai", "llama3.1") == DEFAULT_CAPABILITIES
    assert DEFAULT_CAPABILITIES.max_tokens_param == "max_tokens"


def _error(status: int, body: object) -> Exception:
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return status_error("openai:x", status, httpx.Headers(), raw)


def test_parameter_incompatibility_is_cannot_serve():
    openai_param = _error(
        400,
        {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this "
                   "model. Use 'max_completion_tokens' instead.", "type": "invalid_request_error",
                   "param": "max_tokens", "code": "unsupported_parameter"}},
    )  # fmt: skip
    assert isinstance(openai_param, ModelCannotServe) and openai_param.param == "max_tokens"
    value = _error(
        400,
        {"error": {"message": "Unsupported value: 'temperature' does not support 0.0 with this "
                   "model.", "param": "temperature", "code": "unsupported_value"}},
    )  # fmt: skip
    assert isinstance(value, ModelCannotServe) and value.param == "temperature"
    # an OpenAI-compatible server's own words, no code
    vllm = _error(400, {"error": {"message": "This model does not support tools"}})
    assert isinstance(vllm, ModelCannotServe) and vllm.param is None
    assert vllm.retryable == "permanent"  # the same request would be refused again


def test_other_400s_keep_their_meaning():
    malformed = _error(400, {"error": {"message": "'messages' must be a non-empty list"}})
    assert type(malformed) is ModelHTTPError and malformed.status_code == 400
    context = _error(400, {"error": {"message": "maximum context length is 16000 tokens"}})
    assert isinstance(context, ContextLengthExceeded)
    server = _error(500, {"error": {"message": "does not support this right now"}})
    assert type(server) is ModelHTTPError  # only a 400/422 says the model cannot serve
