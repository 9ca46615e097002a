"""Property tests of money (issue 9 §6, ``hypothesis``), each against an exact model in
:class:`fractions.Fraction`:

- rounding (``kijko_core.prices``): a cost is exact, ``cents`` rounds half to even, is
  idempotent and — rounding the sum, never the terms — a total is never off by half a cent;
- plan prices (``PlanOut``): whole euros per month and per month billed annually, exactly the
  cents of the plans file (the file accepts only amounts that divide exactly);
- proration: Stripe prorates an upgrade, so the proof is that the Stripe stand-in, driven by the
  real SDK, prorates as Stripe documents it: a credit for the unused time on the old price and a
  charge for the remaining time on the new one, by the second, each line rounded to a cent.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kijko_core.billing.models import PlanOut
from kijko_core.billing.plans import Plans
from kijko_core.errors import ConfigurationError
from kijko_core.prices import ModelPrice, cents
from tests.stripe_server import StripeServer
from tests.test_stripe_stand_in import subscribe

FEW = settings(max_examples=200, deadline=None)
SOME = settings(max_examples=50, deadline=None)

#: Decimal amounts as the price table and the database hold them: up to 10 decimal places.
amounts = st.decimals(min_value=Decimal("-100000"), max_value=Decimal("100000"), places=10, allow_nan=False)
per_million = st.decimals(min_value=Decimal(0), max_value=Decimal(10_000), places=6, allow_nan=False)
tokens = st.integers(min_value=0, max_value=10_000_000)


def half_even(value: Fraction) -> int:
    """The exact model: the nearest integer, ties to the even one (``round`` of a Fraction)."""
    return round(value)


def half_up(value: Fraction) -> int:
    """The nearest integer, ties away from zero."""
    sign = -1 if value < 0 else 1
    return sign * math.floor(abs(value) + Fraction(1, 2))


# --- rounding --------------------------------------------------------------------------------


@FEW
@given(amounts)
def test_cents_rounds_half_to_even_exactly(amount: Decimal) -> None:
    exact = Fraction(amount) * 100
    assert cents(amount) == half_even(exact)
    assert cents(amount) == int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert abs(cents(amount) - exact) <= Fraction(1, 2)


@FEW
@given(amounts)
def test_cents_is_idempotent(amount: Decimal) -> None:
    once = cents(amount)
    assert cents(Decimal(once).scaleb(-2)) == once


@FEW
@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_half_a_cent_goes_to_the_even_cent(whole_cents: int) -> None:
    tie = (Decimal(whole_cents) + Decimal("0.5")).scaleb(-2)
    expected = whole_cents if whole_cents % 2 == 0 else whole_cents + 1
    assert cents(tie) == expected


@FEW
@given(st.lists(st.tuples(per_million, per_million, tokens, tokens), min_size=1, max_size=30))
def test_a_total_is_the_exact_sum_rounded_once(calls: list[tuple[Decimal, Decimal, int, int]]) -> None:
    """Costs are summed unrounded and rounded once: the shown total is within half a cent of the
    exact sum, whatever the number of calls (rounding each call could drift by half a cent per
    call)."""
    costs = []
    exact = Fraction(0)
    for paid_in, paid_out, prompt, completion in calls:
        cost = ModelPrice("m", "p", "eur", paid_in, paid_out).cost(prompt, completion)
        # A cost is exact: the Decimal division by a million loses nothing.
        assert Fraction(cost) == Fraction(prompt * paid_in + completion * paid_out) / 1_000_000
        costs.append(cost)
        exact += Fraction(cost)
    total = sum(costs, Decimal(0))
    assert Fraction(total) == exact  # Decimal sums of these are exact
    assert cents(total) == half_even(exact * 100)
    assert abs(cents(total) - exact * 100) <= Fraction(1, 2)
    assert abs(sum(cents(c) for c in costs) - cents(total)) <= Fraction(len(costs) + 1, 2)


@FEW
@given(amounts, st.integers(min_value=1, max_value=366))
def test_a_decimal_share_of_days_rounds_as_the_exact_share(amount: Decimal, days: int) -> None:
    """Decimal division by a whole number (days of a projection) is not exact, but its 28
    significant digits are far closer than any half-cent boundary, so the cents are exact."""
    assert cents(amount * 7 / Decimal(days)) == half_even(Fraction(amount) * 7 / days * 100)


# --- plan prices -----------------------------------------------------------------------------


def _plans(monthly: int, annual: int) -> Plans:
    text = (
        Plans.shipped_text()
        .replace("monthly_price_cents = 2900", f"monthly_price_cents = {monthly}")
        .replace("annual_price_cents = 28800", f"annual_price_cents = {annual}")
    )
    return Plans.parse(text, "generated")


@FEW
@given(st.integers(min_value=0, max_value=1_000_000), st.integers(min_value=0, max_value=100_000_000))
def test_plan_prices_are_the_files_cents_in_whole_euros_exactly(monthly: int, annual: int) -> None:
    """The wire's whole euros (``price``; ``annualPrice`` per month) equal the file's cents
    exactly: the file refuses what would not divide, so the integer division never drops a cent."""
    try:
        plans = _plans(monthly, annual)
    except ConfigurationError:
        assert monthly % 100 or annual % 1200
        return
    assert monthly % 100 == 0 and annual % 1200 == 0
    out = PlanOut.of(plans.get("pro"))
    assert Fraction(out.price) == Fraction(monthly, 100)
    assert Fraction(out.annual_price) == Fraction(annual, 100) / 12
    assert out.annual_price * 12 * 100 == annual  # a year billed annually is what the file says


@FEW
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=10_000))
def test_whole_euro_amounts_always_parse(euros: int, euros_a_month_annually: int) -> None:
    monthly, annual = euros * 100, euros_a_month_annually * 1200
    out = PlanOut.of(_plans(monthly, annual).get("pro"))
    assert (out.price, out.annual_price) == (euros, euros_a_month_annually)


@FEW
@given(st.integers(min_value=0, max_value=10_000))
def test_a_plan_without_annual_billing_shows_its_monthly_price(euros: int) -> None:
    text = (
        Plans.shipped_text()
        .replace("monthly_price_cents = 2900", f"monthly_price_cents = {euros * 100}")
        .replace("annual_price_cents = 28800\n", "")
        .replace('annually = "kijko_pro_annually"\n', "")
    )
    out = PlanOut.of(Plans.parse(text, "generated").get("pro"))
    assert (Fraction(out.price), Fraction(out.annual_price)) == (Fraction(euros * 100, 100), euros)


# --- proration -------------------------------------------------------------------------------


def stripe_proration(amount: int, remaining: int, period: int) -> int:
    """Stripe's proration of ``amount`` cents for ``remaining`` of ``period`` seconds, to a cent
    (half up, the stand-in's documented choice; decision 0146)."""
    return half_up(Fraction(amount * remaining, period))


@pytest.fixture(scope="module")
def stand_in() -> Any:
    with StripeServer() as server:
        yield server


def _monthly_price(client: Any, amount: int) -> Any:
    product = client.v1.products.create({"name": "Kijko property"})
    return client.v1.prices.create(
        {"product": product.id, "unit_amount": amount, "currency": "eur", "recurring": {"interval": "month"}}
    )


def test_an_upgrade_is_prorated_as_stripe_documents(stand_in: StripeServer) -> None:
    client = stand_in.client()

    @SOME
    @given(
        st.integers(min_value=1, max_value=10_000_000),
        st.integers(min_value=1, max_value=10_000_000),
        st.fractions(min_value=0, max_value=1).filter(lambda f: f < 1),
    )
    def prorated(old_amount: int, new_amount: int, position: Fraction) -> None:
        old, new = _monthly_price(client, old_amount), _monthly_price(client, new_amount)
        sub = subscribe(stand_in, client, old).subscription
        item = sub["items"].data[0]
        start, end = item.current_period_start, item.current_period_end
        period = end - start
        stand_in.advance_time(math.floor(position * period))

        updated = client.v1.subscriptions.update(
            sub.id,
            {
                "items": [{"id": item.id, "price": new.id}],
                "proration_behavior": "always_invoice",
                "expand": ["latest_invoice"],
            },
            {"idempotency_key": f"upgrade-{sub.id}"},
        )

        invoice = updated.latest_invoice
        credit, charge = invoice.lines.data
        now = credit.period.start
        remaining = end - now
        assert (credit.period.end, charge.period.start, charge.period.end) == (end, now, end)
        assert 0 < remaining <= period
        assert credit.amount == -stripe_proration(old_amount, remaining, period)
        assert charge.amount == stripe_proration(new_amount, remaining, period)
        assert invoice.total == credit.amount + charge.amount
        assert invoice.amount_due == max(0, invoice.total)  # a net credit is due to the customer, not charged
        # Never more than a cent from the exact difference, and never more than a period's price.
        assert abs(invoice.total - Fraction((new_amount - old_amount) * remaining, period)) <= 1
        assert -credit.amount <= old_amount and charge.amount <= new_amount
        assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)

    prorated()
