"""Prices for every model: the app's, self-hosted, built-in, then the genai-prices data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stalwart.agent import App, PythonAgent
from stalwart.errors import ConfigError
from stalwart.llm import Price, PriceTable, Provider, Usage, genai_price


async def _noop(ctx, task_input):  # type: ignore[no-untyped-def]
    return task_input


def test_current_models_are_priced_from_genai_prices():
    table = PriceTable()
    price, source = table.lookup("openai:gpt-5")
    assert source == "genai-prices"
    assert price.input_per_mtok > 0 and price.output_per_mtok > price.input_per_mtok
    assert price.cached_input_per_mtok is not None
    assert price.cached_input_per_mtok < price.input_per_mtok
    for model in ("anthropic:claude-sonnet-4-5", "openai:o3", "openai:gpt-4.1-mini"):
        assert genai_price(model) is not None, model


def test_the_apps_prices_come_first_and_self_hosted_is_free():
    table = PriceTable({"openai:gpt-5": Price(9.0, 9.0)}, self_hosted=["vllm"])
    assert table.lookup("openai:gpt-5") == (Price(9.0, 9.0), "app")
    assert table.lookup("vllm:meta-llama/Llama-3.1-8B") == (Price(0.0, 0.0), "self-hosted")
    assert table.cost("vllm:anything", Usage(10**6, 10**6)) == 0.0


def test_cached_tokens_cost_the_cached_rate():
    price = Price(2.0, 8.0, cached_input_per_mtok=0.5, cache_write_per_mtok=2.5)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=600_000)
    assert price.cost(usage) == pytest.approx(0.4 * 2.0 + 0.6 * 0.5)
    written = Usage(prompt_tokens=1_000_000, cache_write_tokens=1_000_000)
    assert price.cost(written) == pytest.approx(2.5)


def test_an_unknown_price_names_app_prices_and_self_hosted():
    with pytest.raises(ConfigError) as caught:
        PriceTable().price("vllm:my-model")
    text = str(caught.value)
    assert 'App(prices={"vllm:my-model": Price(' in text
    assert "self_hosted=True" in text


def test_an_app_checks_its_prices_and_a_self_hosted_provider_is_one_line():
    agent = PythonAgent("a", fn=_noop, model="main")
    bad = App(agents=[agent], models={"main": ["vllm:llama3"]})
    with pytest.raises(ConfigError, match="App\\(prices="):
        bad.check_prices()
    good = App(
        agents=[agent],
        models={"main": ["vllm:llama3"]},
        providers={"vllm": Provider("http://127.0.0.1:8000/v1", self_hosted=True)},
    )
    good.check_prices()
    assert good.price_table().lookup("vllm:llama3")[1] == "self-hosted"


def test_stalwart_models_price_prints_a_price():
    out = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "models", "price", "openai:gpt-5", "nope:x"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if x.startswith("openai:gpt-5"))
    assert "genai-prices" in line and float(line.split()[1]) > 0
    assert "no price for model 'nope:x'" in out.stderr and "App(prices=" in out.stderr


def test_stalwart_run_refuses_an_unpriced_model_on_stderr(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "run", "tests.unit.llm.unpriced_app:app",
         "--store", f"sqlite:///{tmp_path}/s.db"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith("stalwart run: no price for model 'vllm:llama3'")
    assert "App(prices=" in out.stderr and out.stdout == ""
