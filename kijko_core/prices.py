"""What a model's tokens cost: the price table, shipped as data and replaceable by an operator
(``KIJKO_MODEL_PRICES_FILE``), and exact money arithmetic (decision 0099, docs/model-prices.md).

Costs are :class:`~decimal.Decimal` amounts in the model's currency, never floats: computed and
stored unrounded, summed unrounded, and rounded only where they are shown — to whole cents,
half to even (:func:`cents`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from kijko_core.errors import ConfigurationError, ValidationFailed
from kijko_core.money import exact_decimal

MILLION = Decimal(1_000_000)
_CURRENCY = re.compile(r"^[a-z]{3}$")
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


class ModelNotPriced(ValidationFailed):
    code = "MODEL_NOT_PRICED"
    default_message = "This model has no price in the price table, so it cannot be run"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model {model[:200]!r} has no price in the price table", field="model")


@dataclass(frozen=True)
class ModelPrice:
    model: str
    provider: str
    #: Lower-case ISO 4217 code (``usd``, ``eur``), as Stripe writes currencies.
    currency: str
    input_per_million: Decimal
    output_per_million: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The exact, unrounded cost of one call."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts are never negative")
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / MILLION


def cents(amount: Decimal) -> int:
    """``amount`` (in a currency's main unit) as whole cents, rounded half to even: round a sum,
    never the terms of a sum."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class PriceTable:
    """The models Kijko can price, by model id."""

    def __init__(self, prices: dict[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    @property
    def models(self) -> list[str]:
        return sorted(self._prices)

    def get(self, model: str) -> ModelPrice | None:
        return self._prices.get(model)

    def price(self, model: str) -> ModelPrice:
        """The price of ``model``; :class:`ModelNotPriced` (422, ``field: "model"``) if none."""
        found = self._prices.get(model)
        if found is None:
            raise ModelNotPriced(model)
        return found

    @classmethod
    def shipped(cls) -> PriceTable:
        text = resources.files("kijko_core").joinpath("data/model_prices.toml").read_text(encoding="utf-8")
        return cls.parse(text, "the shipped price table")

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        """The table in ``path`` (``KIJKO_MODEL_PRICES_FILE``), or the shipped one."""
        if path is None:
            return cls.shipped()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError([f"KIJKO_MODEL_PRICES_FILE: cannot read {path}: {error.strerror}"]) from None
        return cls.parse(text, "KIJKO_MODEL_PRICES_FILE")

    @classmethod
    def parse(cls, text: str, origin: str) -> PriceTable:
        """Parse a price table; every problem is one line of the :class:`ConfigurationError`."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError([f"{origin}: not TOML: {error}"]) from None
        models = document.get("models")
        if not isinstance(models, dict) or not models:
            raise ConfigurationError([f'{origin}: no [models."<id>"] tables'])
        problems: list[str] = []
        prices: dict[str, ModelPrice] = {}
        for model, entry in models.items():
            price = _entry(model, entry, f"{origin}: models.{model!r}", problems)
            if price is not None:
                prices[model] = price
        if problems:
            raise ConfigurationError(problems)
        return cls(prices)


def _entry(model: str, entry: Any, where: str, problems: list[str]) -> ModelPrice | None:
    before = len(problems)
    if not _MODEL.fullmatch(model):
        problems.append(f"{where}: not a model id")
        return None
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a table")
        return None
    unknown = set(entry) - {"provider", "currency", "input_per_million", "output_per_million"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    provider, currency = entry.get("provider"), entry.get("currency")
    if not isinstance(provider, str) or not _PROVIDER.fullmatch(provider):
        problems.append(f'{where}.provider: a lower-case name such as "openai"')
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        problems.append(f'{where}.currency: a lower-case ISO 4217 code such as "usd"')
    paid_in = _amount(entry.get("input_per_million"), f"{where}.input_per_million", problems)
    paid_out = _amount(entry.get("output_per_million"), f"{where}.output_per_million", problems)
    if len(problems) > before or paid_in is None or paid_out is None:
        return None
    return ModelPrice(model, str(provider), str(currency), paid_in, paid_out)


def _amount(value: Any, where: str, problems: list[str]) -> Decimal | None:
    """A price: a decimal string (exact), zero or more, at most 10,000 per million tokens."""
    amount = exact_decimal(value, where, "3.00", problems)
    if amount is not None and not 0 <= amount <= 10_000:
        problems.append(f"{where}: between 0 and 10000")
        return None
    return amount
