"""Kijko with Stripe on, against the Stripe stand-in (tests/stripe_server.py), for the billing
tests: a runtime on the free plan whose ``KIJKO_STRIPE_API_BASE`` is the stand-in, with the
stand-in's Products and Prices made from the shipped plans' lookup_keys."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kijko_core.billing.plans import Plans, plans_of
from kijko_core.billing.stripe_api import Stripe
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.stripe_server import StripeServer

#: The key Kijko is configured with; the tests' own SDK clients use the stand-in's default key,
#: so the stand-in's record tells Kijko's requests from the tests' set-up.
KIJKO_KEY = "sk_test_kijko_app"
#: The webhook signing secrets Kijko is configured with: the new one first, the old one still
#: accepted (rotation).
WEBHOOK_SECRET = "whsec_kijko_test_current"
OLD_WEBHOOK_SECRET = "whsec_kijko_test_previous"


def stripe_settings(server: StripeServer, **overrides: Any) -> dict[str, Any]:
    server.api_keys.add(KIJKO_KEY)
    values: dict[str, Any] = {
        "stripe_secret_key": KIJKO_KEY,
        "stripe_webhook_secrets": f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}",
        "stripe_api_base": server.url,
        "stripe_max_network_retries": 0,
        "default_plan": "free",
    }
    return values | overrides


def make_prices(server: StripeServer, plans: Plans) -> None:
    """The Products and Prices ``kijko billing sync`` would make, straight on the stand-in."""
    client = server.client()
    for plan in plans:
        if not plan.lookup_keys:
            continue
        product = client.v1.products.create({"name": f"Kijko {plan.name}", "metadata": {"plan": plan.id}})
        for interval, key in plan.lookup_keys.items():
            amount = plan.monthly_price_cents if interval == "monthly" else plan.annual_price_cents
            if amount is None:
                continue
            client.v1.prices.create(
                {
                    "product": product.id,
                    "currency": plan.currency,
                    "unit_amount": amount,
                    "lookup_key": key,
                    "recurring": {"interval": "month" if interval == "monthly" else "year"},
                }
            )


@asynccontextmanager
async def billing_runtime(
    kijko: Kijko, make_settings: Any, server: StripeServer, **overrides: Any
) -> AsyncIterator[Kijko]:
    """The test run's runtime with Stripe on (the stand-in) and the free plan as default."""
    settings = make_settings(**stripe_settings(server, **overrides))
    account = Stripe.from_settings(settings)
    make_prices(server, kijko.plans)
    try:
        yield dataclasses.replace(kijko, settings=settings, stripe=account, plans=plans_of(settings))
    finally:
        assert account is not None
        await account.aclose()
    assert unkeyed_writes(server) == [], "Kijko wrote to Stripe without an idempotency key"


def unkeyed_writes(server: StripeServer) -> list[str]:
    """Kijko's POSTs to the stand-in without a key of Kijko's (``kijko-…``, from
    ``stripe_api.idempotency_key``): the SDK gives such a write a random key of its own, which
    a double click or a retried job would not repeat, so the write could happen twice."""
    return [
        f"{r.method} {r.path}"
        for r in server.requests
        if r.method == "POST"
        and r.headers.get("authorization") == f"Bearer {KIJKO_KEY}"
        and not r.headers.get("idempotency-key", "").startswith("kijko-")
    ]


@asynccontextmanager
async def billing_client(runtime: Kijko) -> AsyncIterator[Any]:
    application = create_app(kijko=runtime)
    async with application.test_app():
        yield application.test_client()


@asynccontextmanager
async def stripe_app(
    kijko: Kijko, make_settings: Any, server: StripeServer, **overrides: Any
) -> AsyncIterator[tuple[Kijko, Any]]:
    """The runtime with Stripe on (:func:`billing_runtime`) and a test client of its app."""
    async with billing_runtime(kijko, make_settings, server, **overrides) as runtime, billing_client(runtime) as web:
        yield runtime, web


@asynccontextmanager
async def wrong_key_client(kijko: Kijko, make_settings: Any, server: StripeServer) -> AsyncIterator[Any]:
    """A test client of Kijko configured with a Stripe key the stand-in does not know (Stripe
    answers 401)."""
    settings = make_settings(**stripe_settings(server, stripe_secret_key="sk_test_not_the_stand_ins"))
    account = Stripe.from_settings(settings)
    assert account is not None
    try:
        async with billing_client(dataclasses.replace(kijko, settings=settings, stripe=account)) as web:
            yield web
    finally:
        await account.aclose()
