"""The price table (decision 0099): shipped and replaceable, validated line by line, and
exact money — Decimal costs, summed unrounded, shown in cents rounded half to even."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kijko_core.errors import ConfigurationError
from kijko_core.prices import ModelNotPriced, PriceTable, cents
from kijko_core.runtime import Kijko

#: The model ids the frontend offers (contract §3.2), its default included.
FRONTEND_MODELS = (
    "claude-sonnet-4-20250514",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    "claude-3-opus-20240229",
)

ONE = """
[models."local-llama"]
provider = "local"
currency = "eur"
input_per_million = "0.10"
output_per_million = "0.30"
"""


def test_the_shipped_table_prices_every_model_the_frontend_offers() -> None:
    table = PriceTable.shipped()
    for model in FRONTEND_MODELS:
        price = table.price(model)
        assert price.provider == "anthropic" and price.currency == "usd"
        assert price.input_per_million > 0 and price.output_per_million > price.input_per_million


def test_a_cost_is_exact_and_unrounded() -> None:
    sonnet = PriceTable.shipped().price("claude-3-5-sonnet-20241022")
    # 1,234 input tokens at $3/M and 567 output tokens at $15/M: 0.003702 + 0.008505 dollars.
    assert sonnet.cost(1234, 567) == Decimal("0.012207")
    assert sonnet.cost(0, 0) == 0
    with pytest.raises(ValueError):
        sonnet.cost(-1, 0)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("0.005", 0), ("0.015", 2), ("0.025", 2), ("0.0149", 1), ("1.234", 123), ("12.345", 1234), ("0", 0)],
)
def test_cents_round_half_to_even(amount: str, expected: int) -> None:
    assert cents(Decimal(amount)) == expected


def test_sums_are_rounded_once_not_term_by_term() -> None:
    haiku = PriceTable.shipped().price("claude-3-5-haiku-20241022")
    calls = [haiku.cost(5000, 0) for _ in range(1000)]  # 0.4 cent each
    assert sum(calls, Decimal(0)) == Decimal(4)
    assert cents(sum(calls, Decimal(0))) == 400
    assert sum(cents(c) for c in calls) == 0  # what rounding each term would have lost


def test_an_unpriced_model_is_a_422_on_the_model_field() -> None:
    with pytest.raises(ModelNotPriced) as refused:
        PriceTable.shipped().price("gpt-0-imaginary")
    assert refused.value.status == 422 and refused.value.code == "MODEL_NOT_PRICED"
    assert refused.value.field == "model"


def test_an_operators_file_replaces_the_whole_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(ONE)
    table = PriceTable.load(path)
    assert table.models == ["local-llama"]
    assert table.price("local-llama").cost(1_000_000, 1_000_000) == Decimal("0.40")
    assert table.get("claude-3-5-sonnet-20241022") is None  # replaced, not merged
    assert PriceTable.load(None).models == PriceTable.shipped().models


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not = [toml", "not TOML"),
        ("[other]\nx = 1\n", "no [models"),
        (ONE.replace('"0.10"', "0.10"), "decimal string"),
        (ONE.replace('"0.10"', '"-1"'), "between 0 and 10000"),
        (ONE.replace('"0.10"', '"NaN"'), "not a finite number"),
        (ONE.replace('"0.10"', '"ten"'), "not a decimal"),
        (ONE.replace('"eur"', '"EUR"'), "ISO 4217"),
        (ONE.replace('provider = "local"', 'provider = ""'), "provider"),
        (ONE + 'discount = "5"\n', "unknown keys ['discount']"),
        (ONE.replace("local-llama", "bad model id"), "not a model id"),
    ],
)
def test_every_problem_of_a_file_is_a_line_of_the_configuration_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as refused:
        PriceTable.load(path)
    assert any(problem in line for line in refused.value.problems), refused.value.problems
    assert all(line.startswith("KIJKO_MODEL_PRICES_FILE") for line in refused.value.problems)


def test_two_bad_models_give_two_lines(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(ONE.replace('"0.10"', "0.1") + ONE.replace("local-llama", "other").replace('"eur"', '"E"'))
    with pytest.raises(ConfigurationError) as refused:
        PriceTable.load(path)
    assert len(refused.value.problems) == 2


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        PriceTable.load(tmp_path / "absent.toml")


async def test_a_running_kijko_carries_the_table_and_a_bad_file_stops_start_up(
    kijko: Kijko, make_settings: Any, tmp_path: Path
) -> None:
    assert kijko.prices.models == PriceTable.shipped().models
    path = tmp_path / "prices.toml"
    path.write_text(ONE.replace('"0.10"', '"-0.10"'))
    with pytest.raises(ConfigurationError, match="input_per_million"):
        await Kijko.start(make_settings(model_prices_file=path))
