"""What each model accepts: the parameters a request is encoded with, per model.

Providers' models differ in the parameters they take, and refuse the others
with a 400: OpenAI's reasoning models (``o1``, ``o3``, ``o4-mini``, ``gpt-5``…)
refuse ``max_tokens`` (they take ``max_completion_tokens``) and any
``temperature`` but the default; they take a reasoning effort. The adapters
encode each request from the model's :class:`Capabilities`, looked up in
:data:`CAPABILITY_TABLE` by the model's name (the first pattern that matches,
``fnmatch`` style). A model no pattern matches gets the most compatible
encoding (``max_tokens``, ``temperature``), which every OpenAI-compatible
server (vLLM, Ollama, LiteLLM, the sim) accepts. Give a provider's models
their own with ``Provider(capabilities=Capabilities(...))``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Literal

__all__ = ["CAPABILITY_TABLE", "DEFAULT_CAPABILITIES", "Capabilities", "capabilities_for"]

Effort = Literal["minimal", "low", "medium", "high"]


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """How to ask one model.

    max_tokens_param
        The name of the answer-length bound on the Chat Completions wire:
        ``max_tokens`` (the historic one, default) or ``max_completion_tokens``
        (OpenAI's current one, the only one its reasoning models take).
    temperature
        Whether the model takes a ``temperature`` other than its default;
        ``False`` leaves it out of the request.
    reasoning
        Whether the model takes a reasoning effort (``reasoning_effort`` on Chat
        Completions, ``reasoning.effort`` on Responses).
    json_schema
        Whether the model takes a JSON schema for its answer (structured
        output); without it the schema is asked for in the system prompt and the
        answer is still validated.
    prompt_cache
        ``"automatic"`` (OpenAI: repeated prefixes are cached by the provider,
        cached tokens reported in the usage), ``"explicit"`` (Anthropic: the
        request marks the stable prefix with ``cache_control``), or ``"none"``.
    parallel_tool_calls
        Whether the model may ask for several tool calls in one answer.
    """

    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    temperature: bool = True
    reasoning: bool = False
    json_schema: bool = True
    prompt_cache: Literal["automatic", "explicit", "none"] = "none"
    parallel_tool_calls: bool = True


DEFAULT_CAPABILITIES = Capabilities()

_REASONING = Capabilities(
    max_tokens_param="max_completion_tokens",
    temperature=False,
    reasoning=True,
    prompt_cache="automatic",
)
_OPENAI_CHAT = Capabilities(max_tokens_param="max_completion_tokens", prompt_cache="automatic")
_CLAUDE = Capabilities(prompt_cache="explicit")

CAPABILITY_TABLE: tuple[tuple[str, str, Capabilities], ...] = (
    # (provider wire, model-name pattern, capabilities); first match wins
    ("openai", "gpt-5-chat*", _OPENAI_CHAT),
    ("openai", "gpt-5*", _REASONING),
    ("openai", "o1*", _REASONING),
    ("openai", "o3*", _REASONING),
    ("openai", "o4*", _REASONING),
    ("openai", "gpt-4.1*", _OPENAI_CHAT),
    ("openai", "gpt-4o*", _OPENAI_CHAT),
    ("openai", "chatgpt-4o*", _OPENAI_CHAT),
    # the sim's reasoning model behaves like o-series models (see llm.sim)
    ("openai", "reasoner*", _REASONING),
    ("anthropic", "claude-*", _CLAUDE),
    ("anthropic", "*", _CLAUDE),
)


def capabilities_for(wire: str, model: str) -> Capabilities:
    """The capabilities of ``model`` spoken to over ``wire`` (``openai`` or ``anthropic``)."""
    for table_wire, pattern, caps in CAPABILITY_TABLE:
        if table_wire == wire and fnmatch.fnmatchcase(model, pattern):
            return caps
    return DEFAULT_CAPABILITIES
