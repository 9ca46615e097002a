"""The plans' Stripe Prices (docs/billing.md "Stripe setup", decision 0166): each plan ×
interval of the plans file names a Stripe Price by ``lookup_key``; :func:`check_prices` says,
one line per mismatch, where Stripe's Prices differ from the file (``Kijko.start`` refuses to
start on any, ``kijko billing check`` prints them), and :func:`sync_prices` creates what is
missing in a **test-mode** account (``kijko billing sync``).

Prices are immutable at Stripe: an existing Price with another amount, currency or interval is
never changed. :func:`sync_prices` reports it; once the operator archives it, the next sync
creates the right Price and moves the lookup_key to it (``transfer_lookup_key``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import stripe as stripe_sdk

from kijko_core.billing.plans import Interval, Plan, Plans
from kijko_core.billing.stripe_api import Stripe, field, idempotency_key, writes
from kijko_core.errors import ConfigurationError, KijkoError

#: Stripe's recurring interval per interval of the plans file (always ``interval_count`` 1).
STRIPE_INTERVALS: dict[str, str] = {"monthly": "month", "annually": "year"}
#: Stripe lists at most 10 ``lookup_keys`` per request.
_KEYS_PER_LIST = 10


@dataclass(frozen=True)
class WantedPrice:
    """One Price the plans file asks for."""

    plan: Plan
    interval: Interval
    lookup_key: str
    #: Integer cents: a month's price, or a year's for ``annually``.
    unit_amount: int

    @property
    def currency(self) -> str:
        return self.plan.currency

    @property
    def stripe_interval(self) -> str:
        return STRIPE_INTERVALS[self.interval]

    @property
    def label(self) -> str:
        return f"Stripe Price {self.lookup_key} (plan {self.plan.id}, {self.interval})"

    def describe(self) -> str:
        return f"unit_amount {self.unit_amount} {self.currency} every 1 {self.stripe_interval}"


def wanted_prices(plans: Iterable[Plan]) -> list[WantedPrice]:
    """The Prices of the plans file: every interval with a lookup_key and a price (a custom
    price, "contact sales", has none to check)."""
    found = []
    for plan in plans:
        for interval, key in plan.lookup_keys.items():
            amount = plan.monthly_price_cents if interval == "monthly" else plan.annual_price_cents
            if amount is not None:
                found.append(WantedPrice(plan, interval, key, amount))  # type: ignore[arg-type]
    return found


async def _prices_by_key(stripe: Stripe, keys: list[str]) -> dict[str, Any]:
    """Stripe's Price (active or archived, its product expanded) per lookup_key that has one."""
    found: dict[str, Any] = {}
    for start in range(0, len(keys), _KEYS_PER_LIST):
        chunk = keys[start : start + _KEYS_PER_LIST]
        page = await stripe.call(
            stripe.v1.prices.list_async({"lookup_keys": chunk, "limit": 100, "expand": ["data.product"]})
        )
        for price in page.data:
            stripe.check_livemode(price)
            if price.lookup_key in chunk:
                found[price.lookup_key] = price
    return found


def differences(wanted: WantedPrice, price: Any) -> list[str]:
    """What of ``price`` differs from ``wanted``, one line each ('expected …, found …')."""
    where = f"{wanted.label}: {price.id}"
    lines = []
    if not price.active:
        lines.append(f"{where} is archived (inactive); expected an active Price")
    if price.unit_amount != wanted.unit_amount:
        found = "none (not a per-unit price)" if price.unit_amount is None else f"{price.unit_amount}"
        lines.append(f"{where}: amount differs: expected unit_amount {wanted.unit_amount}, found {found}")
    if price.currency != wanted.currency:
        lines.append(f"{where}: currency differs: expected {wanted.currency}, found {price.currency}")
    recurring = price.recurring
    if price.type != "recurring" or recurring is None:
        lines.append(f"{where} is not recurring (a one-time price); expected every 1 {wanted.stripe_interval}")
    else:
        interval, count = field(recurring, "interval"), field(recurring, "interval_count")
        if (interval, count) != (wanted.stripe_interval, 1):
            lines.append(
                f"{where}: interval differs: expected every 1 {wanted.stripe_interval}, found every {count} {interval}"
            )
        usage = field(recurring, "usage_type")
        if usage not in (None, "licensed"):
            lines.append(f"{where}: usage type differs: expected licensed, found {usage}")
    product = price.product
    if isinstance(product, stripe_sdk.StripeObject) and field(product, "active") is False:
        lines.append(f"{where}: its product {field(product, 'id')} is archived; expected an active product")
    return lines


def _missing_line(wanted: WantedPrice) -> str:
    return (
        f"{wanted.label}: missing: no Stripe Price has this lookup_key; expected {wanted.describe()} "
        "(`kijko billing sync` creates it in a test-mode account)"
    )


async def check_prices(stripe: Stripe, plans: Iterable[Plan]) -> list[str]:
    """One line per way Stripe's Prices differ from the plans file; empty when all match."""
    wanted = wanted_prices(plans)
    prices = await _prices_by_key(stripe, [w.lookup_key for w in wanted])
    lines: list[str] = []
    for item in wanted:
        price = prices.get(item.lookup_key)
        lines.extend([_missing_line(item)] if price is None else differences(item, price))
    return lines


async def require_prices(stripe: Stripe, plans: Plans) -> None:
    """``Kijko.start``'s check: a :class:`ConfigurationError` with one line per mismatch, or
    one line when Stripe cannot be asked (Kijko does not start on unchecked prices)."""
    try:
        problems = await check_prices(stripe, plans)
    except (KijkoError, stripe_sdk.StripeError) as error:
        line = f"KIJKO_STRIPE_SECRET_KEY: cannot check the plans' Stripe Prices: {_why(error)}"
        raise ConfigurationError([line]) from None
    if problems:
        raise ConfigurationError(
            [*problems, "the Stripe Prices differ from the plans file: `kijko billing check` lists them again"]
        )


def _why(error: BaseException) -> str:
    cause = error.__cause__ or error
    if isinstance(cause, stripe_sdk.APIConnectionError):
        return "Stripe is unreachable (KIJKO_STRIPE_API_BASE); Kijko does not start with unchecked prices"
    if isinstance(cause, (stripe_sdk.AuthenticationError, stripe_sdk.PermissionError)):
        return "Stripe refused the key"
    if isinstance(cause, stripe_sdk.StripeError):
        status = f"HTTP {cause.http_status}: " if cause.http_status else ""
        return f"{status}{cause.user_message or type(cause).__name__}"
    message = getattr(error, "message", None) or str(error)
    return f"{message}; Kijko does not start with unchecked prices"


class LiveKeyRefused(ConfigurationError):
    def __init__(self) -> None:
        super().__init__(
            [
                "KIJKO_STRIPE_SECRET_KEY: `kijko billing sync` creates Prices in a test-mode account only "
                "(an sk_test_… or rk_test_… key); create live Prices in the Stripe Dashboard and check them "
                "with `kijko billing check`"
            ]
        )


async def sync_prices(stripe: Stripe, plans: Iterable[Plan]) -> list[str]:
    """Create the plans' missing Products (one per plan, ``metadata.plan``) and Prices in a
    test-mode account; one line per thing done or left alone. A Price that exists with other
    terms is left alone (Prices are immutable) and reported; an archived one is replaced (the
    new Price takes over its lookup_key)."""
    if stripe.livemode:
        raise LiveKeyRefused()
    wanted = wanted_prices(plans)
    prices = await _prices_by_key(stripe, [w.lookup_key for w in wanted])
    products: dict[str, str] = {}
    done: list[str] = []
    for item in wanted:
        price = prices.get(item.lookup_key)
        if price is not None and price.active:
            problems = differences(item, price)
            if not problems:
                done.append(f"{item.label}: {price.id} matches")
                continue
            done.extend(f"left alone: {line}" for line in problems)
            done.append(
                f"{item.label}: Stripe Prices cannot be changed: archive {price.id} (Dashboard, or "
                f"`stripe prices update {price.id} --active=false`) and run `kijko billing sync` again"
            )
            continue
        product = products.get(item.plan.id)
        if product is None:
            product, line = await _product(stripe, item.plan, prices, wanted)
            products[item.plan.id] = product
            if line:
                done.append(line)
        replaced = None if price is None else price.id
        params: dict[str, Any] = {
            "product": product,
            "currency": item.currency,
            "unit_amount": item.unit_amount,
            "recurring": {"interval": item.stripe_interval, "interval_count": 1},
            "lookup_key": item.lookup_key,
            "metadata": {"plan": item.plan.id, "interval": item.interval},
        }
        if replaced is not None:
            params["transfer_lookup_key"] = True
        key = idempotency_key(
            "catalog-price", item.lookup_key, product, item.unit_amount, item.currency, item.stripe_interval, replaced
        )
        created = await stripe.call(stripe.v1.prices.create_async(params, writes(key)))
        stripe.check_livemode(created)
        if replaced is None:
            done.append(f"created {created.id}: {item.label}: {item.describe()}")
        else:
            done.append(f"created {created.id}: {item.label}: {item.describe()}, replacing the archived {replaced}")
    return done


async def _product(
    stripe: Stripe, plan: Plan, prices: dict[str, Any], wanted: list[WantedPrice]
) -> tuple[str, str | None]:
    """The plan's Product: that of one of its active Prices, an active Product with
    ``metadata.plan`` = the plan's id, or a new one. Returns its id and what was done."""
    for item in wanted:
        price = prices.get(item.lookup_key)
        if item.plan.id == plan.id and price is not None and price.active:
            product = price.product
            if field(product, "active") is not False:
                return (product if isinstance(product, str) else product.id), None
    starting_after: str | None = None
    while True:
        params: dict[str, Any] = {"active": True, "limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = await stripe.call(stripe.v1.products.list_async(params))
        for product in page.data:
            if product.metadata is not None and product.metadata.to_dict().get("plan") == plan.id:
                return product.id, None
        if not page.has_more or not page.data:
            break
        starting_after = page.data[-1].id
    # The key names the plan and the state of its Prices (their lookup keys, and the archived
    # Prices being replaced): a product archived since, or another plans file, is a new write.
    mine = [item.lookup_key for item in wanted if item.plan.id == plan.id]
    state = [f"{key}={field(prices.get(key), 'id')}" for key in mine]
    created = await stripe.call(
        stripe.v1.products.create_async(
            {"name": f"Kijko {plan.name}", "metadata": {"plan": plan.id}},
            writes(idempotency_key("catalog-product", plan.id, plan.name, *state)),
        )
    )
    stripe.check_livemode(created)
    return created.id, f"created {created.id}: the Stripe Product of plan {plan.id} (Kijko {plan.name})"
