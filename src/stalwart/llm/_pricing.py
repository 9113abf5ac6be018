"""Prices per model, and the cost of a call from its usage."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from stalwart.errors import ConfigError
from stalwart.llm._types import Usage

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable"]


@dataclasses.dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens, for input (prompt) and output (completion)."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ConfigError(f"prices must be >= 0, got {self}")

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000


# List prices as published by the providers when this table was written; override
# them in config (PriceTable(overrides=...)) when yours differ.
DEFAULT_PRICES: Mapping[str, Price] = {
    "openai:gpt-4o": Price(2.50, 10.00),
    "openai:gpt-4o-mini": Price(0.15, 0.60),
    "openai:gpt-4.1": Price(2.00, 8.00),
    "openai:gpt-4.1-mini": Price(0.40, 1.60),
    "anthropic:claude-3-5-sonnet-latest": Price(3.00, 15.00),
    "anthropic:claude-3-5-haiku-latest": Price(0.80, 4.00),
    "anthropic:claude-sonnet-4-0": Price(3.00, 15.00),
    # the simulated models are priced like a strong and a small real model, so that
    # budgets and cost reports behave as they would in production
    "sim:strong": Price(2.50, 10.00),
    "sim:weak": Price(0.15, 0.60),
    "sim:gullible": Price(2.50, 10.00),
}


class PriceTable:
    """Looks up a model's price; an unknown model is a ConfigError, never a silent $0."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}

    def price(self, model: str) -> Price:
        try:
            return self._prices[model]
        except KeyError:
            raise ConfigError(
                f"no price for model {model!r}; add it with PriceTable(overrides={{...}})"
            ) from None

    def cost(self, model: str, usage: Usage) -> float:
        return self.price(model).cost(usage)

    def worst_case(self, model: str, prompt_tokens: int, max_tokens: int) -> float:
        """The most a call can cost: its prompt plus the longest answer it may get."""
        return self.cost(model, Usage(prompt_tokens, max_tokens))
