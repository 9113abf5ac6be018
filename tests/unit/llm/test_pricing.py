import pytest

from stalwart.errors import ConfigError
from stalwart.llm import Price, PriceTable, Usage


def test_cost_from_usage():
    table = PriceTable({"x:m": Price(2.0, 10.0)})
    assert table.cost("x:m", Usage(1_000_000, 500_000)) == pytest.approx(7.0)
    assert table.worst_case("x:m", 1000, 1000) == pytest.approx(0.012)


def test_unknown_model_is_an_error_not_free():
    with pytest.raises(ConfigError, match="no price for model 'x:unknown'"):
        PriceTable().cost("x:unknown", Usage(1, 1))


def test_negative_prices_are_rejected():
    with pytest.raises(ConfigError):
        Price(-1.0, 0.0)
