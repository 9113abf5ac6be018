"""Prices per model, and the cost of a call from its usage.

Where a price comes from, first match wins:

1. the app's own prices (``App(prices={"openai:gpt-4o": Price(2.5, 10)})``);
2. a self-hosted provider (``Provider(..., self_hosted=True)``): every model is free;
3. the built-in table below (the simulated models, and a few real ones);
4. the ``genai-prices`` package (pydantic's maintained price data, MIT licence,
   bundled in the wheel: nothing is fetched at run time), by provider and model.

No price at all is a :class:`~stalwart.errors.ConfigError` when the model's
client is built (at start-up), never a silent $0.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Literal

from stalwart.errors import ConfigError
from stalwart.llm._types import Usage

__all__ = ["DEFAULT_PRICES", "FREE", "Price", "PriceSource", "PriceTable", "genai_price"]

PriceSource = Literal["app", "self-hosted", "built-in", "genai-prices"]


@dataclasses.dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens, for input (prompt) and output (completion).

    ``cached_input_per_mtok`` prices prompt tokens read from the provider's cache
    (default: the input price), ``cache_write_per_mtok`` those written to it
    (Anthropic; default: the input price).
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def __post_init__(self) -> None:
        values = (
            self.input_per_mtok,
            self.output_per_mtok,
            self.cached_input_per_mtok or 0.0,
            self.cache_write_per_mtok or 0.0,
        )
        if any(v < 0 for v in values):
            raise ConfigError(f"prices must be >= 0, got {self}")

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
        fresh = usage.prompt_tokens - cached - written
        read_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else (self.cached_input_per_mtok)
        )
        write_rate = (
            self.input_per_mtok
            if self.cache_write_per_mtok is None
            else (self.cache_write_per_mtok)
        )
        return (
            fresh * self.input_per_mtok
            + cached * read_rate
            + written * write_rate
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000


FREE = Price(0.0, 0.0)


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
    "sim:strong": Price(2.50, 10.00, cached_input_per_mtok=1.25),
    "sim:weak": Price(0.15, 0.60, cached_input_per_mtok=0.075),
    "sim:gullible": Price(2.50, 10.00, cached_input_per_mtok=1.25),
    "sim:reasoner": Price(1.25, 10.00, cached_input_per_mtok=0.125),
}


class PriceTable:
    """Looks up a model's price (see the module docstring for the sources, in order);
    an unknown model is a ConfigError, never a silent $0.

    ``overrides`` are the app's prices; ``self_hosted`` names providers whose
    models cost nothing.
    """

    def __init__(
        self,
        overrides: Mapping[str, Price] | None = None,
        *,
        self_hosted: Collection[str] = (),
    ) -> None:
        self._overrides = dict(overrides or {})
        self._self_hosted = frozenset(self_hosted)
        self._found: dict[str, tuple[Price, PriceSource]] = {}

    def price(self, model: str) -> Price:
        return self.lookup(model)[0]

    def lookup(self, model: str) -> tuple[Price, PriceSource]:
        """The price of ``model`` (``provider:name``) and where it came from."""
        cached = self._found.get(model)
        if cached is not None:
            return cached
        found: tuple[Price, PriceSource]
        provider = model.partition(":")[0]
        if model in self._overrides:
            found = (self._overrides[model], "app")
        elif provider in self._self_hosted:
            found = (FREE, "self-hosted")
        elif model in DEFAULT_PRICES:
            found = (DEFAULT_PRICES[model], "built-in")
        else:
            external = genai_price(model)
            if external is None:
                raise ConfigError(
                    f"no price for model {model!r}: neither the app's prices, the built-in "
                    "table nor the genai-prices data know it. Give one with "
                    f'App(prices={{"{model}": Price(input_per_mtok, output_per_mtok)}}), or, '
                    f"for a server of your own, declare its provider free with "
                    f'App(providers={{"{provider}": Provider(base_url, self_hosted=True)}})'
                )
            found = (external, "genai-prices")
        self._found[model] = found
        return found

    def cost(self, model: str, usage: Usage) -> float:
        return self.price(model).cost(usage)

    def worst_case(self, model: str, prompt_tokens: int, max_tokens: int) -> float:
        """The most a call can cost: its prompt plus the longest answer it may get."""
        return self.cost(model, Usage(prompt_tokens, max_tokens))


def genai_price(model: str, *, when: datetime.datetime | None = None) -> Price | None:
    """``model``'s price (``provider:name``) in the ``genai-prices`` data, or None.

    Tiered prices (a higher rate past a prompt length) give their base tier: a
    prompt past the tier (200 K tokens for some models) costs more than reported;
    give such a model its price in ``App(prices=...)`` if that matters to you.
    """
    from genai_prices import data_snapshot  # imported on first use: 1.6 MB of data
    from genai_prices.types import TieredPrices

    provider, _, name = model.partition(":")
    if not name:
        return None
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(name, None, provider, None)
        prices = info.get_prices(when or datetime.datetime.now(tz=datetime.UTC))
    except LookupError:
        return None
    amounts = vars(prices)  # ModelPrice keeps its amounts as plain instance attributes
    if any(isinstance(v, TieredPrices) for v in amounts.values()):
        amounts = {k: v.base if isinstance(v, TieredPrices) else v for k, v in amounts.items()}
    read = _base(amounts.get("cache_read_mtok"))
    write = _base(amounts.get("cache_write_mtok"))
    input_ = _base(amounts.get("input_mtok"))
    output = _base(amounts.get("output_mtok"))
    if input_ is None or output is None:
        return None
    return Price(input_, output, read, write)


def _base(value: object) -> float | None:
    """A genai-prices amount (a Decimal, or tiered prices with a ``base``) in dollars."""
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    return None
