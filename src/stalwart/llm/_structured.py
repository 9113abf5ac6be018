"""Structured output: ask for a JSON schema, validate the answer into a pydantic model."""

from __future__ import annotations

from typing import TypeVar

import pydantic

from stalwart.errors import ConfigError, OutputInvalid
from stalwart.llm._types import Message, ModelClient, ModelRequest, ModelResponse, ResponseFormat

__all__ = ["structured"]

M = TypeVar("M", bound=pydantic.BaseModel)

_REPAIR = (
    "Your last answer did not match the schema {name}: {errors}. "
    "Answer again with one JSON object that matches it."
)


async def structured(
    client: ModelClient,
    request: ModelRequest,
    output: type[M],
    *,
    attempts: int = 2,
    timeout: float | None = None,
    strict: bool = False,
) -> tuple[M, ModelResponse]:
    """Ask ``client`` for an answer shaped like ``output`` and return it validated.

    The request carries ``output``'s JSON schema (``response_format``; each
    adapter encodes it as its API takes it). An answer that does not validate is
    sent back with the validation errors and the model asked to repair it, up to
    ``attempts`` answers in all; then :class:`~stalwart.errors.OutputInvalid` is
    raised, naming the model, the schema and the errors. Returns the validated
    value and the last response (whose usage and cost count every attempt's
    tokens only for that attempt: each attempt is a model call of its own).
    """
    if attempts < 1:
        raise ConfigError(f"structured(): attempts must be >= 1, got {attempts}")
    fmt = ResponseFormat(name=output.__name__, schema=output.model_json_schema(), strict=strict)
    messages = list(request.messages)
    errors: tuple[str, ...] = ()
    response: ModelResponse | None = None
    for _ in range(attempts):
        ask = ModelRequest(
            messages=tuple(messages),
            tools=request.tools,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            reasoning_effort=request.reasoning_effort,
            response_format=fmt,
            parallel_tool_calls=request.parallel_tool_calls,
            cache=request.cache,
        )
        response = await client.complete(ask, timeout=timeout)
        content = response.message.content
        try:
            return output.model_validate_json(content), response
        except pydantic.ValidationError as exc:
            errors = tuple(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()[:10]
            )
        messages += [
            Message(role="assistant", content=content),
            Message(role="user", content=_REPAIR.format(name=fmt.name, errors="; ".join(errors))),
        ]
    assert response is not None
    raise OutputInvalid(
        f"{response.model}: the answer did not match {fmt.name} after {attempts} attempt(s): "
        f"{'; '.join(errors)} (raise attempts=, simplify the schema, or use a stronger model)",
        model=response.model,
        errors=errors,
        content=response.message.content[:2000],
    )
